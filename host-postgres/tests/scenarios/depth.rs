//! Deeply nested and oversized input through the PostgreSQL driver's public calls: JSON and
//! typed commands, command metadata, direct appends and process-manager dispatches. Each must be
//! refused with a typed error and leave the store usable. A stack overflow aborts the whole
//! harness, so a regression shows up as the run dying at the scenario that overflowed.

use std::time::{Duration, Instant};

use evfold_core::depth::{dismantle, dismantle_metadata, MAX_JSON_DEPTH};
use evfold_core::{
    is_too_deep, CommandContext, CommandEnvelope, CommandError, DynProcessManager, EventId, ExpectedVersion, Fault,
    Metadata, NewEvent, Payload, ReaderConfig, StoredEvent, StreamId, Timestamp,
};
use evfold_postgres::testing::TempCluster;
use evfold_postgres::{PgStore, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::block_on;

/// Stores any JSON document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Doc {
    docs: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum DocCommand {
    Put { value: Value },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum DocEvent {
    Stored { value: Value },
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl evfold_core::Aggregate for Doc {
    const AGGREGATE_TYPE: &'static str = "doc";
    type Command = DocCommand;
    type Event = DocEvent;
    type Error = Never;

    fn handle(&self, command: DocCommand) -> Result<Vec<DocEvent>, Never> {
        let DocCommand::Put { value } = command;
        Ok(vec![DocEvent::Stored { value }])
    }

    fn apply(mut self, _: &DocEvent) -> Self {
        self.docs += 1;
        self
    }
}

const DEPTHS: [usize; 2] = [10_000, 100_000];

/// `[[[...1...]]]`, `depth` arrays deep, built without recursion.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| Value::Array(vec![inner]))
}

/// `{"value": inner}`, by moving `inner` in (`json!` would copy it, recursively).
fn value_of(inner: Value) -> Value {
    Value::Object(serde_json::Map::from_iter([("value".to_owned(), inner)]))
}

fn doc(id: &str) -> StreamId {
    StreamId::new("doc", id).unwrap()
}

fn ctx() -> CommandContext {
    CommandContext::default().with_actor("depth")
}

fn event(id: &str, data: Value, meta: Metadata) -> NewEvent {
    NewEvent { version: 1, id: EventId(id.into()), payload: Payload::new("Stored", data), ts: Timestamp(1), meta }
}

/// The caller still owns what it lent to a call: take it apart without recursing.
fn dismantle_envelope(envelope: CommandEnvelope) {
    dismantle(envelope.command.data);
    dismantle_metadata(envelope.context);
}

fn assert_too_deep(result: Result<evfold_core::Committed, CommandError>, what: &str) {
    match result {
        Err(CommandError::Fault(fault)) if is_too_deep(&fault) => {
            let text = fault.to_string();
            assert!(text.contains(&format!("nests deeper than {MAX_JSON_DEPTH} levels")), "{what}: {text}");
        }
        other => panic!("{what}: not the typed depth refusal: {other:?}"),
    }
}

/// The stream holds `before` events, takes a normal command, then holds one more.
async fn still_usable(store: &PgStore, id: &str, before: usize) {
    assert_eq!(store.read_events(&doc(id)).await.unwrap().len(), before, "nothing was written");
    store.execute::<Doc>(id, DocCommand::Put { value: json!({ "ok": true }) }, ctx()).await.expect("usable");
    assert_eq!(store.read_events(&doc(id)).await.unwrap().len(), before + 1);
}

/// `execute_json` with command data, and with metadata, nested 10,000 and 100,000 deep: the
/// typed depth refusal, nothing written, and the stream takes a normal command afterwards.
pub fn execute_json_refuses_deep_commands(_: &mut TempCluster, db: &str) {
    block_on(async {
        let store = PgStore::builder(db).aggregate::<Doc>().connect().await.unwrap();
        let mut events = 0;
        for depth in DEPTHS {
            let command = Payload::new("Put", value_of(nested(depth)));
            let envelope = CommandEnvelope { target: doc("d"), command, context: ctx() };
            let result = store.execute_json(&envelope, ExpectedVersion::Any).await;
            dismantle_envelope(envelope);
            assert_too_deep(result, &format!("data at {depth} levels"));
            still_usable(&store, "d", events).await;
            events += 1;

            let command = Payload::new("Put", json!({ "value": 1 }));
            let context = ctx().with_extra("trace", nested(depth));
            let envelope = CommandEnvelope { target: doc("d"), command, context };
            let result = store.execute_json(&envelope, ExpectedVersion::Any).await;
            dismantle_envelope(envelope);
            assert_too_deep(result, &format!("metadata at {depth} levels"));
            still_usable(&store, "d", events).await;
            events += 1;
        }
    });
}

/// Typed `execute` from inside `tokio::spawn` (a 2 MiB worker stack) of a command holding a
/// value, or metadata, nested 100,000 deep: the typed refusal, and the task survives.
pub fn typed_execute_refuses_deep_commands_in_tokio_spawn(_: &mut TempCluster, db: &str) {
    block_on(async {
        let store = PgStore::builder(db).aggregate::<Doc>().connect().await.unwrap();
        let (s, value) = (store.clone(), nested(100_000));
        let task = tokio::spawn(async move { s.execute::<Doc>("d", DocCommand::Put { value }, ctx()).await });
        assert_too_deep(task.await.expect("the task survives"), "typed command");
        still_usable(&store, "d", 0).await;

        let (s, context) = (store.clone(), ctx().with_extra("trace", nested(100_000)));
        let task =
            tokio::spawn(async move { s.execute::<Doc>("d", DocCommand::Put { value: json!(1) }, context).await });
        assert_too_deep(task.await.expect("the task survives"), "typed command's metadata");
        still_usable(&store, "d", 1).await;
    });
}

/// `append` of a 50 MiB event: the typed size refusal and nothing stored (in the same batch as
/// a small event, which is not stored either); of an event whose data or metadata nests 100,000
/// deep: the typed depth refusal. A normal append works afterwards.
pub fn append_refuses_oversized_and_deep_events(_: &mut TempCluster, db: &str) {
    block_on(async {
        let store = PgStore::connect(db).await.unwrap();
        let s = doc("raw");
        let limit = evfold_core::AggregateConfig::default().max_event_bytes;
        let huge = event("e-huge", json!({ "blob": "x".repeat(50 << 20) }), Metadata::default());
        let small = event("e-small", json!({ "ok": 1 }), Metadata::default());
        match store.append(&s, ExpectedVersion::Any, vec![small, huge]).await {
            Err(StoreError::EventTooLarge { event_type, bytes, limit: l }) => {
                assert_eq!((event_type.as_str(), l), ("Stored", limit));
                assert!(bytes > 50 << 20, "{bytes}");
            }
            other => panic!("a 50 MiB event was not refused as too large: {:?}", other.map(|r| r.len())),
        }
        assert!(store.read_events(&s).await.unwrap().is_empty(), "nothing was stored");
        assert_eq!(store.stream_version(&s).await.unwrap(), 0);

        let deep_data = event("e-deep", value_of(nested(100_000)), Metadata::default());
        let deep_meta = event("e-meta", json!({}), Metadata::default().with_extra("trace", nested(100_000)));
        for (what, deep) in [("data", deep_data), ("metadata", deep_meta)] {
            match store.append(&s, ExpectedVersion::Any, vec![deep]).await {
                Err(StoreError::Fault(fault)) if is_too_deep(&fault) => {}
                other => panic!("deep {what}: not the typed depth refusal: {:?}", other.map(|r| r.len())),
            }
        }
        assert!(store.read_events(&s).await.unwrap().is_empty(), "nothing was stored");

        let records =
            store.append(&s, ExpectedVersion::NoStream, vec![event("e-ok", json!({ "ok": 1 }), Metadata::default())]);
        assert_eq!(records.await.unwrap()[0].seq, 1, "a normal append still works");
        assert_eq!(store.read_events(&s).await.unwrap().len(), 1);
    });
}

/// Reacts to every event of `doc/src` with a `Put` to `doc/dst` whose data nests
/// `MAX_JSON_DEPTH + 5` levels: past the store's limit, shallow enough for every stack and for
/// the dead letter to be stored and read back.
struct DeepDispatcher;

impl DynProcessManager for DeepDispatcher {
    fn name(&self) -> &str {
        "deep-dispatcher"
    }
    fn react(&mut self, event: &StoredEvent) -> Result<Vec<CommandEnvelope>, Fault> {
        if event.stream != doc("src") {
            return Ok(Vec::new());
        }
        let command = Payload::new("Put", value_of(nested(MAX_JSON_DEPTH + 4)));
        Ok(vec![CommandEnvelope { target: doc("dst"), command, context: ctx() }])
    }
    fn snapshot(&mut self) -> Result<Value, Fault> {
        Ok(Value::Null)
    }
    fn restore(&mut self, _: &Value) -> Result<(), Fault> {
        Ok(())
    }
    fn reset(&mut self) -> Result<(), Fault> {
        Ok(())
    }
}

/// A process manager dispatching a command nested past the limit: refused as the typed depth
/// error on the first attempt (a permanent refusal, not retried) and dead-lettered with that
/// reason; nothing reaches the target stream, which still takes a normal command.
pub fn process_manager_dead_letters_a_deep_command_at_once(_: &mut TempCluster, db: &str) {
    block_on(async {
        let reader_config = ReaderConfig { max_dispatch_attempts: 4, retry_backoff_ms: 20, ..ReaderConfig::default() };
        let store = PgStore::builder(db)
            .aggregate::<Doc>()
            .dyn_process_manager(Box::new(DeepDispatcher))
            .reader_config(reader_config)
            .poll_interval(Duration::from_millis(50))
            .connect()
            .await
            .unwrap();
        store.execute::<Doc>("src", DocCommand::Put { value: json!(1) }, ctx()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let letters = loop {
            let letters = store.dead_letters("deep-dispatcher").await.unwrap();
            if !letters.is_empty() {
                break letters;
            }
            assert!(Instant::now() < deadline, "the deep command was never dead-lettered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(letters.len(), 1, "{letters:?}");
        let letter = &letters[0];
        assert_eq!(letter.attempts, 1, "a depth refusal is permanent, not retried: {}", letter.error);
        assert!(letter.error.contains(&format!("nests deeper than {MAX_JSON_DEPTH} levels")), "{}", letter.error);
        assert_eq!(letter.command.target, doc("dst"));
        still_usable(&store, "dst", 0).await;
    });
}
