//! Durability on the real error paths (the fault hook fails or delays real fsyncs):
//! a failed fdatasync never makes its bytes visible to any reader (the log is cut back to its
//! last durable length first, or the stream is refused until reopen), and directory entries are
//! durable before any acknowledgement that depends on them, whoever created them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::ctx;
use evfold_core::examples::{Balances, BankAccount, BankCommand, Counter, CounterCommand, Transfers};
use evfold_native::{AggregateStore, ExecuteError, Faults, StoreError};

async fn open_bank(dir: &std::path::Path, faults: &Arc<Faults>) -> AggregateStore {
    AggregateStore::builder(dir)
        .aggregate::<BankAccount>()
        .projection::<Balances>()
        .process_manager::<Transfers>()
        .faults(faults.clone())
        .open()
        .await
        .unwrap()
}

async fn balance(store: &AggregateStore, id: &str) -> u64 {
    store.get::<BankAccount>(id).await.unwrap().state().await.unwrap().balance
}

/// Opens a with 100 and b with 0; returns a's log length.
async fn two_accounts(store: &AggregateStore, dir: &std::path::Path) -> u64 {
    let a = store.get::<BankAccount>("a").await.unwrap();
    a.execute(BankCommand::Open { owner: "a".into() }, ctx()).await.unwrap();
    a.execute(BankCommand::Deposit { amount: 100 }, ctx()).await.unwrap();
    let b = store.get::<BankAccount>("b").await.unwrap();
    b.execute(BankCommand::Open { owner: "b".into() }, ctx()).await.unwrap();
    std::fs::metadata(dir.join("streams/bank-account/a/events.jsonl")).unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fdatasync_is_cut_back_before_any_reader_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let store = open_bank(dir.path(), &faults).await;
    let durable_len = two_accounts(&store, dir.path()).await;
    let a = store.get::<BankAccount>("a").await.unwrap();
    faults.fail_syncs(1);
    let failed = a.execute(BankCommand::TransferOut { to: "b".into(), amount: 60 }, ctx()).await;
    assert!(matches!(&failed, Err(ExecuteError::Storage(e)) if e.message.contains("fdatasync")), "{failed:?}");
    let log = dir.path().join("streams/bank-account/a/events.jsonl");
    assert_eq!(std::fs::metadata(&log).unwrap().len(), durable_len, "cut back to the last durable length");

    // No reader acts on the failed transfer: not the stream, not the store-wide order, not the
    // process manager, not a projection.
    assert_eq!(store.read_events("bank-account", "a").await.unwrap().len(), 2);
    assert!(store.read_all(1).await.unwrap().iter().all(|e| e.record.event_type != "TransferredOut"));
    let report = store.run_process_managers().await.unwrap();
    assert_eq!(report.dispatched, 0, "{report:?}");
    assert_eq!((balance(&store, "a").await, balance(&store, "b").await), (100, 0), "100 stays 100");
    let balances = store.projection::<Balances>().await.unwrap();
    assert_eq!((balances.accounts.get("b").copied().unwrap_or(0), balances.total), (0, 100), "{balances:?}");

    // The stream works on: the retried transfer is delivered once.
    a.execute(BankCommand::TransferOut { to: "b".into(), amount: 60 }, ctx()).await.unwrap();
    store.run_process_managers().await.unwrap();
    assert_eq!((balance(&store, "a").await, balance(&store, "b").await), (40, 60));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_failed_sync_cannot_be_cut_back_is_refused_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let store = open_bank(dir.path(), &faults).await;
    two_accounts(&store, dir.path()).await;
    let a = store.get::<BankAccount>("a").await.unwrap();
    faults.fail_syncs(2); // the fdatasync, then the fsync of the cut
    let failed = a.execute(BankCommand::TransferOut { to: "b".into(), amount: 60 }, ctx()).await;
    assert!(matches!(&failed, Err(ExecuteError::Storage(_))), "{failed:?}");

    let refused = store.state_json("bank-account", "a").await.unwrap_err();
    assert!(matches!(&refused, StoreError::SyncFailed { .. }), "{refused}");
    assert!(refused.to_string().contains("until the store is reopened"), "{refused}");
    let read = store.read_events("bank-account", "a").await.unwrap_err();
    assert!(matches!(&read, StoreError::SyncFailed { .. }), "{read}");
    let exec = a.execute(BankCommand::Deposit { amount: 1 }, ctx()).await;
    assert!(matches!(&exec, Err(ExecuteError::Store(StoreError::SyncFailed { .. }))), "{exec:?}");
    assert!(store.read_all(1).await.unwrap().iter().all(|e| e.record.event_type != "TransferredOut"));
    assert_eq!(store.run_process_managers().await.unwrap().dispatched, 0);
    assert_eq!(balance(&store, "b").await, 0, "another stream serves");
    drop(a);
    store.close().await;

    // Reopened: the stream is read from disk again (its last line is complete and valid).
    let store = open_bank(dir.path(), &faults).await;
    assert!(store.state_json("bank-account", "a").await.is_ok());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_left_by_a_process_that_died_before_its_fsync_are_fsynced_before_the_ack() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let open = || AggregateStore::builder(dir.path()).aggregate::<Counter>().faults(faults.clone()).open();
    open().await.unwrap().close().await;
    // What a process that died between mkdir/create and the parent's fsync leaves behind.
    let stream_dir = dir.path().join("streams/counter/x");
    std::fs::create_dir_all(&stream_dir).unwrap();
    std::fs::write(stream_dir.join("events.jsonl"), b"").unwrap();

    let store = open().await.unwrap();
    let counter = store.get::<Counter>("x").await.unwrap();
    faults.fail_dir_syncs(1);
    let failed = counter.execute(CounterCommand::Increment, ctx()).await;
    assert!(matches!(&failed, Err(ExecuteError::Storage(e)) if e.message.contains("directory fsync")), "{failed:?}");

    let root = store.layout().root().to_owned();
    let dirs = [root.clone(), root.join("streams"), root.join("streams/counter"), root.join("streams/counter/x")];
    let done = |faults: &Faults| dirs.iter().map(|d| faults.dir_syncs_done(d)).collect::<Vec<_>>();
    let before = done(&faults);
    assert_eq!(counter.execute(CounterCommand::Increment, ctx()).await.unwrap().version, 1);
    let after = done(&faults);
    let synced: Vec<u32> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    // root (entry streams/), streams/ (counter/), counter/ (x/), x/ (events.jsonl): each once.
    assert_eq!(synced, [1, 1, 1, 1], "every directory on the way is fsynced before the first ack");
    counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    assert_eq!(done(&faults), after, "and known durable afterwards (no fsync per command)");
    drop(counter);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_ack_waits_on_another_threads_pending_directory_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().faults(faults.clone()).open().await.unwrap();
    let root = store.layout().root().to_owned();
    // The first directory fsync (the root's, making streams/ durable) takes 800 ms.
    faults.delay_dir_syncs(1, Duration::from_millis(800));
    let first = store.get::<Counter>("a").await.unwrap();
    let started = Instant::now();
    let slow = tokio::spawn(async move { first.execute(CounterCommand::Increment, ctx()).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = store.get::<Counter>("b").await.unwrap();
    second.execute(CounterCommand::Increment, ctx()).await.unwrap();
    let root_syncs = faults.dir_syncs_done(&root);
    let elapsed = started.elapsed();
    assert!(
        root_syncs >= 1,
        "b was acknowledged after {elapsed:?} while streams/ was not yet durable (root fsyncs done: {root_syncs})"
    );
    slow.await.unwrap().unwrap();
    drop(second);
    store.close().await;
}
