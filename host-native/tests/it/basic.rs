//! The vertical slice: open, get, execute (durable), state, typed errors, restart.

use crate::common;

use crate::common::{ctx, open};
use evfold_core::examples::{BankAccount, BankCommand, BankError, Counter, CounterCommand};
use evfold_core::ExpectedVersion;
use evfold_native::{AggregateStore, ExecuteError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_state_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let account = store.get::<BankAccount>("acc-1").await.unwrap();
    account.execute(BankCommand::Open { owner: "ada".into() }, ctx()).await.unwrap();
    let committed = account.execute(BankCommand::Deposit { amount: 70 }, ctx()).await.unwrap();
    assert_eq!((committed.version, committed.n_events, committed.positions.clone()), (2, 1, vec![2]));
    let refused = account.execute(BankCommand::Withdraw { amount: 71 }, ctx()).await;
    assert!(matches!(refused, Err(ExecuteError::Domain(BankError::InsufficientFunds { balance: 70, requested: 71 }))));
    let counter = store.get::<Counter>("c").await.unwrap();
    counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    assert_eq!(account.state().await.unwrap().balance, 70);
    store.close().await;

    let store = open(dir.path()).await;
    let account = store.get::<BankAccount>("acc-1").await.unwrap();
    let (version, state) = account.state_with_version().await.unwrap();
    assert_eq!((version, state.balance, state.owner.as_deref()), (2, 70, Some("ada")));
    let committed = account.execute(BankCommand::Deposit { amount: 5 }, ctx()).await.unwrap();
    assert_eq!(committed.positions, vec![4], "positions continue after restart");
    let events = store.read_events("bank-account", "acc-1").await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(store.stream_version("counter", "c").await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_version_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let counter = store.get::<Counter>("c").await.unwrap();
    counter.execute_expecting(CounterCommand::Increment, ctx(), ExpectedVersion::NoStream).await.unwrap();
    let stale = counter.execute_expecting(CounterCommand::Increment, ctx(), ExpectedVersion::NoStream).await;
    assert!(matches!(stale, Err(ExecuteError::WrongExpectedVersion { actual: 1, .. })), "{stale:?}");
    counter.execute_expecting(CounterCommand::Increment, ctx(), ExpectedVersion::Exact(1)).await.unwrap();
    assert_eq!(counter.state().await.unwrap().value, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_open_registers_on_get() {
    let dir = tempfile::tempdir().unwrap();
    let store = AggregateStore::open(dir.path()).await.unwrap();
    let counter = store.get::<Counter>("x").await.unwrap();
    counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    let log = std::fs::read_to_string(dir.path().join("streams/counter/x/events.jsonl")).unwrap();
    assert!(log.starts_with("{\"seq\":1,\"pos\":1,"), "{log}");
    assert!(dir.path().join("LOCK").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_with_events_returns_what_was_appended() {
    use evfold_core::examples::BankEvent;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let account = store.get::<BankAccount>("e").await.unwrap();
    let opened = account.execute_with_events(BankCommand::Open { owner: "ada".into() }, ctx()).await.unwrap();
    assert_eq!(opened.events, vec![BankEvent::Opened { owner: "ada".into() }]);
    assert_eq!((opened.records[0].seq, opened.records[0].pos), (1, 1));
    assert_eq!(opened.records[0].meta.actor.as_deref(), Some("test"));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let account = account.clone();
            tokio::spawn(async move { account.execute_with_events(BankCommand::Deposit { amount: 1 }, ctx()).await })
        })
        .collect();
    for task in tasks {
        let executed = task.await.unwrap().unwrap();
        assert_eq!(executed.events, vec![BankEvent::Deposited { amount: 1 }], "each caller gets its own events");
        assert_eq!(executed.records[0].seq, executed.committed.version);
    }
}

#[tokio::test] // current-thread runtime: nothing may rely on a second worker
async fn works_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::builder(dir.path()).open().await.unwrap();
    let account = store.get::<BankAccount>("ct").await.unwrap();
    account.execute(BankCommand::Open { owner: "ada".into() }, ctx()).await.unwrap();
    account.execute(BankCommand::TransferOut { to: "nobody".into(), amount: 0 }, ctx()).await.unwrap_err();
    assert_eq!(store.projection::<evfold_core::examples::Balances>().await.unwrap().events, 1);
    assert_eq!(store.run_process_managers().await.unwrap().dispatched, 0);
    let mut subscription = store.subscribe(1).unwrap();
    assert_eq!(subscription.recv().await.unwrap().unwrap().record.pos, 1);
    drop((account, subscription));
    drop(store);
    AggregateStore::open(dir.path()).await.expect("dropping released the lock");
}
