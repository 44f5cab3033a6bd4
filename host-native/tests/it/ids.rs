//! Stream ids are validated before any file is created: traversal, separators, empty, NUL and
//! over-long ids are refused.

use crate::common;

use evfold_core::examples::{Counter, CounterCommand};
use evfold_core::{CommandContext, EventId, ExpectedVersion, NewEvent, Payload, Timestamp};
use evfold_native::{ExecuteError, StoreError};

fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ids_are_rejected_before_any_file_is_created() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let store = common::open(&dir).await;
    let before = tree(root.path());
    let long = "a".repeat(200);
    for id in ["../x", "a/b", "", "a\0b", long.as_str(), "..", ".", "/abs", "a\\b"] {
        let got = store.get::<Counter>(id).await;
        assert!(matches!(got, Err(StoreError::InvalidStreamId { .. })), "{id:?}: {got:?}");
        let json = store
            .execute_json(
                "counter",
                id,
                Payload::new("Increment", serde_json::Value::Null),
                CommandContext::default(),
                ExpectedVersion::Any,
            )
            .await;
        assert!(matches!(json, Err(ExecuteError::Store(StoreError::InvalidStreamId { .. }))), "{id:?}");
        let event = NewEvent {
            version: 1,
            id: EventId("e".into()),
            payload: Payload::new("Incremented", serde_json::Value::Null),
            ts: Timestamp(0),
            meta: Default::default(),
        };
        assert!(matches!(store.inject_event("counter", id, event).await, Err(StoreError::InvalidStreamId { .. })));
        assert!(matches!(store.read_events("counter", id).await, Err(StoreError::InvalidStreamId { .. })));
        assert!(matches!(store.state_json("counter", id).await, Err(StoreError::InvalidStreamId { .. })));
    }
    let bad_type = store
        .execute_json(
            "../t",
            "x",
            Payload::new("Increment", serde_json::Value::Null),
            CommandContext::default(),
            ExpectedVersion::Any,
        )
        .await;
    assert!(matches!(bad_type, Err(ExecuteError::Store(StoreError::InvalidStreamId { .. }))));
    assert_eq!(tree(root.path()), before, "no file or directory was created");
    let ok = "a".repeat(128);
    store.get::<Counter>(&ok).await.unwrap().execute(CounterCommand::Increment, common::ctx()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_without_a_command_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path()).await;
    let before = tree(dir.path());
    let counter = store.get::<Counter>("never-written").await.unwrap();
    assert_eq!(counter.state().await.unwrap().value, 0);
    assert_eq!(tree(dir.path()), before);
    assert!(store.list::<Counter>().await.unwrap().is_empty());
}
