//! The store lock: a second opener, in another process or this one, gets a typed error naming
//! the lock file; a read-only open works beside the writer.

use crate::common;

use std::process::Command;

use evfold_core::examples::{Counter, CounterCommand};
use evfold_native::{AggregateStore, StoreError};

const PROBE_DIR: &str = "EVFOLD_LOCK_PROBE_DIR";

/// Runs in the child process: opens the store named by the environment and reports the result
/// on stdout. Without the variable (a normal test run) there is nothing to probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_probe_child() {
    let Ok(dir) = std::env::var(PROBE_DIR) else { return };
    match AggregateStore::open(&dir).await {
        Ok(_) => println!("PROBE:OPENED"),
        Err(StoreError::LockHeld { path }) => println!("PROBE:LOCK_HELD:{}", path.display()),
        Err(other) => println!("PROBE:OTHER:{other}"),
    }
}

fn probe(dir: &std::path::Path) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lock::lock_probe_child", "--nocapture", "--test-threads=1"])
        .env(PROBE_DIR, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|l| l.find("PROBE:").map(|at| &l[at..]));
    line.unwrap_or("no probe output").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_process_gets_the_lock_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = AggregateStore::open(dir.path()).await.unwrap();
    let lock = dir.path().join("LOCK");
    assert_eq!(probe(dir.path()), format!("PROBE:LOCK_HELD:{}", lock.display()));
    store.close().await;
    assert_eq!(probe(dir.path()), "PROBE:OPENED", "the lock is released on close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_in_process_is_refused_and_read_only_works() {
    let dir = tempfile::tempdir().unwrap();
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
    let counter = store.get::<Counter>("c").await.unwrap();
    counter.execute(CounterCommand::Increment, common::ctx()).await.unwrap();
    let error = AggregateStore::open(dir.path()).await.unwrap_err();
    assert!(matches!(&error, StoreError::LockHeld { path } if path == &dir.path().join("LOCK")), "{error:?}");
    assert!(error.to_string().contains("LOCK"));
    let reader = AggregateStore::builder(dir.path())
        .aggregate::<Counter>()
        .projection::<common::PosOrder>()
        .read_only()
        .open()
        .await
        .unwrap();
    assert_eq!(reader.read_events("counter", "c").await.unwrap().len(), 1);
    counter.execute(CounterCommand::Increment, common::ctx()).await.unwrap();
    assert_eq!(reader.read_all(1).await.unwrap().len(), 2, "read-only sees new durable events");
    let folded: common::PosOrder = reader.projection().await.unwrap();
    assert_eq!((folded.count, folded.breaks), (2, 0), "read-only folds projections on demand");
    assert!(!dir.path().join("projections").exists(), "and writes no checkpoint");
    drop(store);
    assert!(AggregateStore::open(dir.path()).await.is_err(), "a live handle keeps the store open");
    drop(counter);
    AggregateStore::open(dir.path()).await.expect("dropping the last clone and handle releases the lock");
}
