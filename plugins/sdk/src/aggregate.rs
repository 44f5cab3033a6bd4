//! Export glue for aggregates: runs a typed `evfold_core::Aggregate` behind the WIT `aggregate`
//! interface. One component instance holds one aggregate state.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

use evfold_core::{Aggregate, DecideContext};

use crate::bindings::aggregate::exports::evfold::plugin::aggregate::{AggregateInfo, Decision, Guest, Rejection};
use crate::host::install_panic_hook;
use crate::probe::variant_names;

/// Ties a typed aggregate to the plugin crate's name and version; `export_aggregate!` implements
/// it for you.
pub trait AggregatePlugin: 'static {
    /// The typed aggregate this plugin runs.
    type Aggregate: Aggregate;
    /// Plugin (crate) name.
    const NAME: &'static str;
    /// Plugin (crate) version.
    const VERSION: &'static str;
}

/// The WIT export implementation for plugin `P`; used by `export_aggregate!`.
pub struct AggregateExport<P>(PhantomData<P>);

thread_local! {
    /// The state of the single aggregate this instance holds (type-erased: statics can't be generic).
    static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Runs `f` on the aggregate state, creating the default state on first use.
fn with_state<A: Aggregate, R>(f: impl FnOnce(&mut A) -> R) -> R {
    STATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let state = slot.get_or_insert_with(|| Box::new(A::default()));
        match state.downcast_mut::<A>() {
            Some(state) => f(state),
            None => panic!("evfold-plugin-sdk: one aggregate type per plugin"),
        }
    })
}

/// Parses one command: a tagged JSON object, straight into the typed enum.
pub(crate) fn parse_command<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("command: {e}"))
}

/// Parses the decide context the host sends with every command (`DecideContext`'s serde form).
pub(crate) fn parse_context(text: &str) -> Result<DecideContext, String> {
    serde_json::from_str(text).map_err(|e| format!("decide context: {e}"))
}

/// A domain error as the WIT rejection: its message, and its data when the aggregate opted in
/// (`Aggregate::error_to_data`), so the host's typed handle can decode it.
pub(crate) fn rejection<A: Aggregate>(error: &A::Error) -> Rejection {
    Rejection { message: error.to_string(), error: A::error_to_data(error).map(|data| data.to_string()) }
}

/// Serializes events as JSONL (one tagged object per line), the form `decide` returns them in.
pub(crate) fn to_jsonl<T: serde::Serialize>(events: &[T]) -> Result<String, String> {
    let mut out = Vec::with_capacity(64 * events.len());
    for event in events {
        serde_json::to_writer(&mut out, event).map_err(|e| e.to_string())?;
        out.push(b'\n');
    }
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// Calls `each` on every tagged event of a JSONL batch, parsed straight into the typed enum (no
/// intermediate JSON tree). Stops at the first event that does not decode and names it.
pub(crate) fn for_each_event<T: serde::de::DeserializeOwned>(
    jsonl: &str,
    mut each: impl FnMut(T),
) -> Result<(), String> {
    for (index, event) in serde_json::Deserializer::from_str(jsonl).into_iter::<T>().enumerate() {
        each(event.map_err(|e| format!("event {index} of the batch: {e}"))?);
    }
    Ok(())
}

impl<P: AggregatePlugin> Guest for AggregateExport<P> {
    fn metadata() -> AggregateInfo {
        install_panic_hook();
        AggregateInfo {
            name: P::NAME.to_owned(),
            plugin_version: P::VERSION.to_owned(),
            sdk_version: crate::SDK_VERSION.to_owned(),
            aggregate_type: <P::Aggregate as Aggregate>::AGGREGATE_TYPE.to_owned(),
            event_types: variant_names::<<P::Aggregate as Aggregate>::Event>(),
            command_types: variant_names::<<P::Aggregate as Aggregate>::Command>(),
        }
    }

    fn decide(command: String, context: String) -> Result<Decision, String> {
        install_panic_hook();
        let command = parse_command(&command)?;
        let context = parse_context(&context)?;
        match with_state::<P::Aggregate, _>(|state| state.handle_with(command, &context)) {
            Ok(events) => Ok(Decision::Accepted(to_jsonl(&events)?)),
            Err(error) => Ok(Decision::Rejected(rejection::<P::Aggregate>(&error))),
        }
    }

    fn fold(events: String) -> Result<(), String> {
        install_panic_hook();
        with_state::<P::Aggregate, _>(|state| {
            for_each_event(&events, |event: <P::Aggregate as Aggregate>::Event| {
                *state = std::mem::take(state).apply(&event);
            })
        })
    }

    fn snapshot() -> Result<String, String> {
        install_panic_hook();
        with_state::<P::Aggregate, _>(|state| serde_json::to_string(state).map_err(|e| e.to_string()))
    }

    fn restore(state: String) -> Result<(), String> {
        install_panic_hook();
        let restored: P::Aggregate = serde_json::from_str(&state).map_err(|e| format!("snapshot: {e}"))?;
        with_state::<P::Aggregate, _>(|current| *current = restored);
        Ok(())
    }

    fn reset() {
        install_panic_hook();
        with_state::<P::Aggregate, _>(|state| *state = P::Aggregate::default());
    }
}

#[cfg(test)]
mod tests {
    use evfold_core::examples::{BankAccount, BankCommand, BankError, BankEvent, Counter, CounterError, CounterEvent};
    use evfold_core::{to_payload, CommandContext, DecideContext, StreamId, Timestamp};

    use super::{for_each_event, parse_command, parse_context, rejection, to_jsonl};

    #[test]
    fn the_context_the_host_serializes_parses_back_equal() {
        let context = DecideContext {
            version: 3,
            now: Timestamp(42),
            command_context: CommandContext::default().with_actor("ada"),
            ..DecideContext::new(StreamId::new("bank-account", "a").unwrap())
        };
        assert_eq!(parse_context(&serde_json::to_string(&context).unwrap()).unwrap(), context);
        assert!(parse_context("{}").unwrap_err().starts_with("decide context: "));
    }

    #[test]
    fn a_rejection_carries_the_error_as_data_only_when_the_aggregate_opted_in() {
        let bank = rejection::<BankAccount>(&BankError::InsufficientFunds { balance: 1, requested: 2 });
        assert_eq!(bank.message, "insufficient funds: balance 1, requested 2");
        assert_eq!(bank.error.as_deref(), Some(r#"{"InsufficientFunds":{"balance":1,"requested":2}}"#));
        let counter = rejection::<Counter>(&CounterError::AtZero);
        assert_eq!((counter.message.as_str(), counter.error), ("counter is already at zero", None));
    }

    #[test]
    fn events_cross_as_tagged_jsonl_that_matches_the_core_payload_form() {
        let events = [BankEvent::Deposited { amount: 42 }, BankEvent::Withdrew { amount: 2 }];
        let jsonl = to_jsonl(&events).unwrap();
        assert_eq!(
            jsonl,
            "{\"type\":\"Deposited\",\"data\":{\"amount\":42}}\n{\"type\":\"Withdrew\",\"data\":{\"amount\":2}}\n"
        );
        let line: evfold_core::Payload = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
        assert_eq!(line, to_payload(&events[0]).unwrap());
        let mut back = Vec::new();
        for_each_event(&jsonl, |event: BankEvent| back.push(event)).unwrap();
        assert_eq!(back, events);
    }

    #[test]
    fn unit_variants_omit_data_and_also_accept_null() {
        assert_eq!(to_jsonl(&[CounterEvent::Incremented]).unwrap(), "{\"type\":\"Incremented\"}\n");
        let mut back = Vec::new();
        for_each_event(r#"{"type":"Incremented"} {"type":"Incremented","data":null}"#, |e: CounterEvent| back.push(e))
            .unwrap();
        assert_eq!(back, [CounterEvent::Incremented, CounterEvent::Incremented]);
    }

    #[test]
    fn a_bad_event_or_command_is_named_not_skipped() {
        let mut seen = 0;
        let error = for_each_event("{\"type\":\"Incremented\"}\n{\"type\":\"Nope\"}\n", |_: CounterEvent| seen += 1)
            .unwrap_err();
        assert_eq!(seen, 1);
        assert!(error.starts_with("event 1 of the batch: unknown variant `Nope`"), "{error}");
        assert!(parse_command::<BankCommand>(r#"{"type":"Deposit","data":{"amount":"x"}}"#).is_err());
        assert_eq!(
            parse_command::<BankCommand>(r#"{"type":"Deposit","data":{"amount":3}}"#).unwrap(),
            BankCommand::Deposit { amount: 3 }
        );
    }
}
