//! Projections, process managers and subscriptions, driven from the store-wide order.

use crate::common;

use std::time::Duration;

use crate::common::{ctx, PosOrder};
use evfold_core::examples::{Balances, BankAccount, BankCommand, Counter, CounterCommand};
use evfold_native::{AggregateStore, StoreError};

async fn open_with_pos_order(dir: &std::path::Path) -> AggregateStore {
    common::builder(dir).projection::<PosOrder>().open().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projection_sees_many_streams_in_pos_order_without_gaps_under_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_pos_order(dir.path()).await;
    let mut subscription = store.subscribe(1).unwrap();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let counter = store.get::<Counter>(&format!("w{w}-{}", i % 5)).await.unwrap();
                    counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
                }
            })
        })
        .collect();
    let mut observed = 0;
    while writers.iter().any(|w| !w.is_finished()) {
        let seen = store.projection::<PosOrder>().await.unwrap();
        assert_eq!(seen.breaks, 0, "no gap or reordering while writers run");
        assert_eq!(seen.count, seen.last_pos);
        assert!(seen.count >= observed, "never moves backwards");
        observed = seen.count;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    let seen = store.projection::<PosOrder>().await.unwrap();
    assert_eq!((seen.count, seen.last_pos, seen.breaks, seen.streams.len()), (400, 400, 0, 40));
    for expected in 1..=400u64 {
        let event = tokio::time::timeout(Duration::from_secs(10), subscription.recv()).await.unwrap().unwrap().unwrap();
        assert_eq!(event.record.pos, expected, "subscription in pos order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_are_checkpointed_resumed_and_rebuildable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_pos_order(dir.path()).await;
    let account = store.get::<BankAccount>("a").await.unwrap();
    account.execute(BankCommand::Open { owner: "ada".into() }, ctx()).await.unwrap();
    account.execute(BankCommand::Deposit { amount: 40 }, ctx()).await.unwrap();
    assert_eq!(store.projection::<Balances>().await.unwrap().total, 40);
    let json = store.projection_json("balances").await.unwrap();
    assert_eq!(json["accounts"]["a"], 40);
    store.close().await;
    let checkpoint = dir.path().join("projections/balances/checkpoint.json");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    assert_eq!(saved["position"], 2);

    let store = open_with_pos_order(dir.path()).await;
    let account = store.get::<BankAccount>("a").await.unwrap();
    account.execute(BankCommand::Withdraw { amount: 15 }, ctx()).await.unwrap();
    let balances = store.projection::<Balances>().await.unwrap();
    assert_eq!((balances.total, balances.events), (25, 3), "resumed from the checkpoint, nothing folded twice");
    let rebuilt = store.rebuild_projection::<Balances>().await.unwrap();
    assert_eq!(rebuilt, balances);
    assert!(matches!(store.projection_json("nope").await, Err(StoreError::UnknownProjection(_))));
    assert!(matches!(store.projection_json("transfers").await, Err(StoreError::UnknownProjection(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_checkpoint_makes_the_projection_refold() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_pos_order(dir.path()).await;
    let counter = store.get::<Counter>("c").await.unwrap();
    counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    assert_eq!(store.projection::<PosOrder>().await.unwrap().count, 1);
    store.close().await;
    std::fs::write(dir.path().join("projections/pos-order/checkpoint.json"), b"{garbage").unwrap();
    let store = open_with_pos_order(dir.path()).await;
    assert_eq!(store.projection::<PosOrder>().await.unwrap().count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_manager_dispatches_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path()).await;
    let a = store.get::<BankAccount>("a").await.unwrap();
    let b = store.get::<BankAccount>("b").await.unwrap();
    a.execute(BankCommand::Open { owner: "ada".into() }, ctx()).await.unwrap();
    b.execute(BankCommand::Open { owner: "bob".into() }, ctx()).await.unwrap();
    a.execute(BankCommand::Deposit { amount: 100 }, ctx()).await.unwrap();
    a.execute(BankCommand::TransferOut { to: "b".into(), amount: 30 }, ctx()).await.unwrap();
    a.execute(BankCommand::TransferOut { to: "ghost".into(), amount: 5 }, ctx()).await.unwrap();
    let report = store.run_process_managers().await.unwrap();
    assert_eq!((report.dispatched, report.dead_lettered), (1, 1), "{report:?}");
    assert_eq!(report.managers[0].name, "transfers");
    assert_eq!(b.state().await.unwrap().balance, 30);
    let letters = store.dead_letters("transfers").await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].command.target.instance_id(), "ghost");
    assert!(letters[0].error.contains("not open"), "{}", letters[0].error);
    assert!(dir.path().join("process_managers/transfers/dead_letters.jsonl").is_file());
    let again = store.run_process_managers().await.unwrap();
    assert_eq!((again.dispatched, again.dead_lettered), (0, 0), "nothing new");
    let still = store.redeliver_dead_letters("transfers").await.unwrap();
    assert_eq!((still.delivered, still.remaining), (0, 1), "ghost is still not open");
    assert_eq!(store.dead_letters("transfers").await.unwrap()[0].attempts, letters[0].attempts + 1);
    let ghost = store.get::<BankAccount>("ghost").await.unwrap();
    ghost.execute(BankCommand::Open { owner: "gus".into() }, ctx()).await.unwrap();
    let fixed = store.redeliver_dead_letters("transfers").await.unwrap();
    assert_eq!((fixed.delivered, fixed.remaining), (1, 0));
    assert_eq!(ghost.state().await.unwrap().balance, 5);
    assert!(store.dead_letters("transfers").await.unwrap().is_empty());
    assert!(matches!(store.redeliver_dead_letters("balances").await, Err(StoreError::UnknownProcessManager(_))));
    drop(ghost);
    store.close().await;

    let store = common::open(dir.path()).await;
    let report = store.run_process_managers().await.unwrap();
    assert_eq!((report.dispatched, report.dead_lettered), (0, 0), "checkpoint survives restart");
    assert_eq!(store.get::<BankAccount>("b").await.unwrap().state().await.unwrap().balance, 30);
}

async fn recv(s: &mut evfold_native::Subscription) -> evfold_core::StoredEvent {
    tokio::time::timeout(Duration::from_secs(5), s.recv()).await.unwrap().unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_yields_past_then_live_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
    let counter = store.get::<Counter>("c").await.unwrap();
    for _ in 0..3 {
        counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    }
    let mut from_two = store.subscribe(2).unwrap();
    assert_eq!(recv(&mut from_two).await.record.pos, 2);
    assert_eq!(recv(&mut from_two).await.record.pos, 3);
    let pending = tokio::time::timeout(Duration::from_millis(50), from_two.recv()).await;
    assert!(pending.is_err(), "nothing more yet");
    counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    let live = recv(&mut from_two).await;
    assert_eq!((live.record.pos, live.stream.to_string()), (4, "counter/c".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redispatch_after_a_lost_checkpoint_is_recognised_and_not_applied_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path()).await;
    for id in ["a", "b"] {
        let account = store.get::<BankAccount>(id).await.unwrap();
        account.execute(BankCommand::Open { owner: id.into() }, ctx()).await.unwrap();
    }
    let a = store.get::<BankAccount>("a").await.unwrap();
    a.execute(BankCommand::Deposit { amount: 100 }, ctx()).await.unwrap();
    a.execute(BankCommand::TransferOut { to: "b".into(), amount: 40 }, ctx()).await.unwrap();
    assert_eq!(store.run_process_managers().await.unwrap().dispatched, 1);
    drop(a);
    store.close().await;
    // The crash window: the deposit is durable, the checkpoint covering its cause is not.
    std::fs::remove_file(dir.path().join("process_managers/transfers/checkpoint.json")).unwrap();

    let store = common::open(dir.path()).await;
    let report = store.run_process_managers().await.unwrap();
    assert_eq!(report.dead_lettered, 0);
    let b = store.read_events("bank-account", "b").await.unwrap();
    assert_eq!(b.iter().filter(|r| r.event_type == "Deposited").count(), 1, "deposited once");
    assert_eq!(store.get::<BankAccount>("b").await.unwrap().state().await.unwrap().balance, 40);
}
