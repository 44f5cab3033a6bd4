//! Cold open without a full scan, and coalesced projection checkpoints, on real files: open
//! reads only each log's last line, a snapshot load reads only the log's tail, the store-wide
//! index is built on first need with positions continuing where the logs end; projection
//! checkpoints wait for a quiet period (state visible before), are written at close, and
//! process managers still checkpoint after every batch.

use std::path::Path;
use std::time::Duration;

use crate::common::ctx;
use evfold_core::examples::{Balances, BankAccount, BankCommand, Counter, CounterCommand};
use evfold_core::ReaderConfig;
use evfold_native::AggregateStore;

async fn write(dir: &Path, streams: &[&str], n: usize) {
    let store = AggregateStore::builder(dir).aggregate::<Counter>().snapshot_every(Some(5)).open().await.unwrap();
    for id in streams {
        let counter = store.get::<Counter>(id).await.unwrap();
        for _ in 0..n {
            counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
        }
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_and_a_snapshot_load_do_not_build_the_index_and_positions_continue_after_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &["a", "b"], 10).await;
    let store =
        AggregateStore::builder(dir.path()).aggregate::<Counter>().snapshot_every(Some(5)).open().await.unwrap();
    assert!(!store.index_is_built(), "open scans nothing");
    let a = store.get::<Counter>("a").await.unwrap();
    assert_eq!(a.state_with_version().await.unwrap().0, 10);
    assert!(!store.index_is_built(), "a load (snapshot + tail) needs no store-wide index");
    let committed = a.execute(CounterCommand::Increment, ctx()).await.unwrap();
    assert!(store.index_is_built(), "the first append builds it");
    assert_eq!((committed.version, committed.positions.as_slice()), (11, &[21][..]), "pos continues after 20");
    let all = store.read_all(1).await.unwrap();
    assert_eq!(all.iter().map(|e| e.record.pos).collect::<Vec<_>>(), (1..=21).collect::<Vec<_>>());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_ahead_of_a_shortened_log_is_ignored_after_a_lazy_open() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &["a"], 10).await;
    // Lose the last three lines (as a buffered store could in a crash): the snapshot at 10 is
    // now ahead of the log, so the state must come from the 7 lines that remain.
    let path = dir.path().join("streams/counter/a/events.jsonl");
    let bytes = std::fs::read(&path).unwrap();
    let cut = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(6).unwrap().0 + 1;
    std::fs::write(&path, &bytes[..cut]).unwrap();
    let store =
        AggregateStore::builder(dir.path()).aggregate::<Counter>().snapshot_every(Some(5)).open().await.unwrap();
    let a = store.get::<Counter>("a").await.unwrap();
    assert_eq!(a.state_with_version().await.unwrap(), (7, evfold_core::examples::Counter { value: 7 }));
    let committed = a.execute(CounterCommand::Increment, ctx()).await.unwrap();
    assert_eq!((committed.version, committed.positions.as_slice()), (8, &[8][..]));
    store.close().await;
}

fn checkpoint_events(dir: &Path) -> Option<u64> {
    let bytes = std::fs::read(dir.join("projections/balances/checkpoint.json")).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    value["state"]["events"].as_u64()
}

async fn bank(dir: &Path, reader: ReaderConfig) -> AggregateStore {
    AggregateStore::builder(dir)
        .aggregate::<BankAccount>()
        .projection::<Balances>()
        .reader_config(reader)
        .reader_wake_delay(Duration::from_millis(1))
        .open()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_checkpoints_wait_for_quiet_and_are_written_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = ReaderConfig { checkpoint_quiet_ms: Some(300), ..evfold_native::coalesced_reader_config() };
    let store = bank(dir.path(), quiet.clone()).await;
    let account = store.get::<BankAccount>("acc").await.unwrap();
    account.execute(BankCommand::Open { owner: "o".into() }, ctx()).await.unwrap();
    account.execute(BankCommand::Deposit { amount: 5 }, ctx()).await.unwrap();
    assert_eq!(store.projection::<Balances>().await.unwrap().total, 5, "visible before any save");
    assert_eq!(checkpoint_events(dir.path()), None, "the save waits for the quiet period");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(checkpoint_events(dir.path()), Some(2), "saved once quiet");
    account.execute(BankCommand::Deposit { amount: 7 }, ctx()).await.unwrap();
    assert_eq!(store.projection::<Balances>().await.unwrap().total, 12);
    store.close().await;
    assert_eq!(checkpoint_events(dir.path()), Some(3), "close saves what was unsaved");

    let store = bank(dir.path(), quiet).await;
    let balances = store.projection::<Balances>().await.unwrap();
    assert_eq!((balances.total, balances.events), (12, 3), "resumed from the checkpoint, nothing folded twice");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_projection_checkpoint_only_means_a_refold() {
    let dir = tempfile::tempdir().unwrap();
    let store = bank(dir.path(), evfold_native::coalesced_reader_config()).await;
    let account = store.get::<BankAccount>("acc").await.unwrap();
    account.execute(BankCommand::Open { owner: "o".into() }, ctx()).await.unwrap();
    account.execute(BankCommand::Deposit { amount: 5 }, ctx()).await.unwrap();
    assert_eq!(store.projection::<Balances>().await.unwrap().total, 5);
    store.close().await;
    // A crash before the checkpoint reached the disk: an empty file, as a reordering file
    // system can leave after a rename that was not fsynced.
    std::fs::write(dir.path().join("projections/balances/checkpoint.json"), b"").unwrap();
    let store = bank(dir.path(), evfold_native::coalesced_reader_config()).await;
    let balances = store.projection::<Balances>().await.unwrap();
    assert_eq!((balances.total, balances.events), (5, 2));
    store.close().await;
}
