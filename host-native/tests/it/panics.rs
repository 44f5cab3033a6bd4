//! Domain code that panics must not hang callers or take the store down: the actor or reader
//! thread is retired, callers get an error, and (for aggregates) the next use starts afresh.

use std::time::Duration;

use crate::common::ctx;
use evfold_core::{Aggregate, Projection, StoredEvent};
use evfold_native::{AggregateStore, ExecuteError, StoreError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Fragile {
    n: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum FragileCommand {
    Touch,
    Boom,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum FragileEvent {
    Touched,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Aggregate for Fragile {
    const AGGREGATE_TYPE: &'static str = "fragile";
    type Command = FragileCommand;
    type Event = FragileEvent;
    type Error = Never;
    fn handle(&self, command: FragileCommand) -> Result<Vec<FragileEvent>, Never> {
        match command {
            FragileCommand::Touch => Ok(vec![FragileEvent::Touched]),
            FragileCommand::Boom => panic!("boom in handle"),
        }
    }
    fn apply(mut self, _: &FragileEvent) -> Self {
        self.n += 1;
        self
    }
}

/// Panics on the third event it sees.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PanicsOnThird {
    seen: u32,
}

impl Projection for PanicsOnThird {
    const NAME: &'static str = "panics-on-third";
    fn apply(&mut self, _: &StoredEvent) {
        self.seen += 1;
        assert!(self.seen < 3, "projection gave up");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_aggregate_fails_its_callers_and_respawns() {
    let dir = tempfile::tempdir().unwrap();
    let store = AggregateStore::builder(dir.path()).aggregate::<Fragile>().open().await.unwrap();
    let handle = store.get::<Fragile>("f").await.unwrap();
    handle.execute(FragileCommand::Touch, ctx()).await.unwrap();
    let boom =
        tokio::time::timeout(Duration::from_secs(10), handle.execute(FragileCommand::Boom, ctx())).await.unwrap();
    assert!(matches!(boom, Err(ExecuteError::Store(StoreError::Stopped(_)))), "{boom:?}");
    let after = handle.execute(FragileCommand::Touch, ctx()).await.unwrap();
    assert_eq!(after.version, 2, "a fresh actor re-read the log");
    assert_eq!(handle.state().await.unwrap().n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_projection_reports_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        AggregateStore::builder(dir.path()).aggregate::<Fragile>().projection::<PanicsOnThird>().open().await.unwrap();
    let handle = store.get::<Fragile>("f").await.unwrap();
    for _ in 0..3 {
        handle.execute(FragileCommand::Touch, ctx()).await.unwrap();
    }
    let state = tokio::time::timeout(Duration::from_secs(10), store.projection_json("panics-on-third")).await.unwrap();
    assert!(state.is_err(), "{state:?}");
    let again = tokio::time::timeout(Duration::from_secs(10), store.projection_json("panics-on-third")).await.unwrap();
    assert!(
        matches!(&again, Err(StoreError::ReaderFailed { reason, .. }) if reason.contains("projection gave up")),
        "{again:?}"
    );
    assert_eq!(handle.execute(FragileCommand::Touch, ctx()).await.unwrap().version, 4, "writers unaffected");
}
