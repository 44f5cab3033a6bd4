//! Commands and events of every serde shape cross as payloads and come back equal (eventfold-es
//! required adjacently tagged enums; a `String`, `()` or serde-default enum compiled and then
//! failed at run time). The names follow the rule of [`crate::shape`].

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::memory::MemoryStore;
use crate::{from_payload, to_payload, Aggregate, CommandContext, Payload};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum External {
    Opened,
    Deposited { amount: u64 },
    Noted(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
enum Internal {
    Opened,
    Deposited { amount: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Deposit {
    amount: u64,
    memo: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ping;

fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(value: T, expected: Payload) {
    let payload = to_payload(&value).unwrap();
    assert_eq!(payload, expected);
    assert_eq!(from_payload::<T>(&payload).unwrap(), value);
}

#[test]
fn serde_default_enums_cross_as_their_variant() {
    round_trip(External::Opened, Payload::new("Opened", Value::Null));
    round_trip(External::Deposited { amount: 5 }, Payload::new("Deposited", json!({"amount": 5})));
    round_trip(External::Noted("hi".into()), Payload::new("Noted", json!("hi")));
}

#[test]
fn internally_tagged_enums_cross_with_their_tag_in_the_data() {
    round_trip(Internal::Opened, Payload::new("Opened", Value::Null));
    round_trip(Internal::Deposited { amount: 5 }, Payload::new("Deposited", json!({"type": "Deposited", "amount": 5})));
}

#[test]
fn structs_strings_and_units_cross_under_their_type_name() {
    round_trip(Deposit { amount: 5, memo: None }, Payload::new("Deposit", json!({"amount": 5, "memo": null})));
    round_trip(Ping, Payload::new("Ping", Value::Null));
    round_trip("hello".to_owned(), Payload::new("String", json!("hello")));
    round_trip((), Payload::new("()", Value::Null));
    round_trip(7u64, Payload::new("u64", json!(7)));
}

#[test]
fn a_struct_refuses_a_payload_of_another_type() {
    // All of Deposit's fields but one are optional: without the name check a `Withdraw` payload
    // with an `amount` would read as a deposit.
    let wrong = Payload::new("Withdraw", json!({"amount": 5}));
    let error = from_payload::<Deposit>(&wrong).unwrap_err();
    assert!(error.to_string().contains("\"Withdraw\" is not \"Deposit\""), "{error}");
}

/// An aggregate whose commands are plain strings and whose events are a serde-default enum.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Notes {
    lines: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("an empty note")]
struct EmptyNote;

impl Aggregate for Notes {
    const AGGREGATE_TYPE: &'static str = "notes";
    type Command = String;
    type Event = External;
    type Error = EmptyNote;

    fn handle(&self, command: String) -> Result<Vec<External>, EmptyNote> {
        if command.is_empty() {
            return Err(EmptyNote);
        }
        Ok(vec![External::Noted(command)])
    }

    fn apply(mut self, event: &External) -> Self {
        if let External::Noted(line) = event {
            self.lines.push(line.clone());
        }
        self
    }
}

#[test]
fn an_aggregate_with_string_commands_executes_and_folds() {
    let mut store = MemoryStore::new();
    store.register::<Notes>();
    store.execute::<Notes>("n1", "first".to_owned(), CommandContext::default()).unwrap();
    store.execute::<Notes>("n1", "second".to_owned(), CommandContext::default()).unwrap();
    assert!(store.execute::<Notes>("n1", String::new(), CommandContext::default()).is_err());
    let state: Notes = store.state::<Notes>("n1").unwrap();
    assert_eq!(state.lines, ["first", "second"]);
    let events = store.read_stream(&crate::StreamId::new("notes", "n1").unwrap());
    assert_eq!(events[0].event_type, "Noted");
    assert_eq!(events[0].data, json!("first"));
}
