//! Actors under contention: many concurrent first `get`s of one id, commands racing the idle
//! timeout, concurrent commands on one aggregate (group commit).

use crate::common;

use std::time::Duration;

use crate::common::ctx;
use evfold_core::examples::{Counter, CounterCommand};
use evfold_native::AggregateStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_gets_of_one_id_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
    let tasks: Vec<_> = (0..320)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let counter = store.get::<Counter>("hot").await?;
                counter.execute(CounterCommand::Increment, ctx()).await.map_err(|e| e.to_string())?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .collect();
    let mut failures = 0;
    for task in tasks {
        if task.await.unwrap().is_err() {
            failures += 1;
        }
    }
    assert_eq!(failures, 0);
    let counter = store.get::<Counter>("hot").await.unwrap();
    assert_eq!(counter.state_with_version().await.unwrap(), (320, Counter { value: 320 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_gets_across_ids_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
    let tasks: Vec<_> = (0..320)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let counter = store.get::<Counter>(&format!("id-{}", i % 20)).await.map_err(|e| e.to_string())?;
                counter.execute(CounterCommand::Increment, ctx()).await.map_err(|e| e.to_string())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(store.list::<Counter>().await.unwrap().len(), 20);
    assert_eq!(store.read_all(1).await.unwrap().len(), 320);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_around_the_idle_timeout_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = AggregateStore::builder(dir.path())
        .aggregate::<Counter>()
        .idle_timeout(Duration::from_millis(3))
        .open()
        .await
        .unwrap();
    let held = store.get::<Counter>("idle").await.unwrap();
    let mut failures = Vec::new();
    for i in 0..600u64 {
        let result = if i % 2 == 0 {
            held.execute(CounterCommand::Increment, ctx()).await
        } else {
            store.get::<Counter>("idle").await.unwrap().execute(CounterCommand::Increment, ctx()).await
        };
        if let Err(e) = result {
            failures.push(e.to_string());
        }
        // 2..=4 ms: straddles the 3 ms timeout from both sides.
        tokio::time::sleep(Duration::from_micros(2000 + (i * 677) % 2000)).await;
    }
    assert!(failures.is_empty(), "{} failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.live_instances(), 0, "the idle actor was evicted");
    assert_eq!(held.state_with_version().await.unwrap(), (600, Counter { value: 600 }), "held handle respawns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_race_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = AggregateStore::builder(dir.path())
        .aggregate::<Counter>()
        .idle_timeout(Duration::from_millis(1))
        .open()
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let handle = store.get::<Counter>("race").await.unwrap();
                for i in 0..75u64 {
                    handle.execute(CounterCommand::Increment, ctx()).await.map_err(|e| e.to_string())?;
                    tokio::time::sleep(Duration::from_micros(500 + (i * 331 + t * 97) % 1500)).await;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let handle = store.get::<Counter>("race").await.unwrap();
    assert_eq!(handle.state().await.unwrap().value, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_on_one_aggregate_share_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
    let counter = store.get::<Counter>("g").await.unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let counter = counter.clone();
            tokio::spawn(async move { counter.execute(CounterCommand::Increment, ctx()).await.map(|c| c.version) })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=200).collect::<Vec<_>>(), "each command got its own version");
    let events = store.read_events("counter", "g").await.unwrap();
    assert_eq!(events.len(), 200);
    let stats = store.stats();
    assert_eq!(stats.events, 200);
    assert!(stats.syncs < 200, "group commit: {stats:?}");
    assert_eq!(stats.syncs, stats.appends, "durable mode syncs every append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_operations_racing_eviction_keep_every_invariant() {
    use evfold_core::{EventId, Metadata, NewEvent, Payload, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let store = AggregateStore::builder(dir.path())
        .aggregate::<Counter>()
        .projection::<common::PosOrder>()
        .idle_timeout(Duration::from_millis(1))
        .open()
        .await
        .unwrap();
    let tasks: Vec<_> = (0..6u64)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut acked = 0u64;
                for i in 0..120u64 {
                    let id = format!("m{}", (i * 7 + t) % 5);
                    match (i + t) % 4 {
                        0 | 1 => {
                            let counter = store.get::<Counter>(&id).await.unwrap();
                            counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
                            acked += 1;
                        }
                        2 => {
                            let event = NewEvent {
                                version: 1,
                                id: EventId(format!("relay-{}", i % 40)),
                                payload: Payload::new("Incremented", serde_json::Value::Null),
                                ts: Timestamp(1),
                                meta: Metadata::default(),
                            };
                            store.inject_event("counter", &id, event).await.unwrap();
                        }
                        _ => {
                            store.get::<Counter>(&id).await.unwrap().state().await.unwrap();
                        }
                    }
                    if i % 10 == 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = 0;
    for task in tasks {
        acked += task.await.unwrap();
    }
    let all = store.read_all(1).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].record.pos < w[1].record.pos));
    let relay = all.iter().filter(|e| e.record.id.0.starts_with("relay-")).count();
    assert_eq!(relay, 40, "each relay id stored exactly once");
    assert_eq!(all.len() as u64, acked + 40);
    for i in 0..5 {
        let id = format!("m{i}");
        let log = store.read_events("counter", &id).await.unwrap();
        let state = store.get::<Counter>(&id).await.unwrap().state_with_version().await.unwrap();
        assert_eq!(state, (log.len() as u64, Counter { value: log.len() as u64 }), "{id}: state == fold(log)");
    }
    let seen = store.projection::<common::PosOrder>().await.unwrap();
    assert_eq!((seen.count, seen.breaks), (all.len() as u64, 0));
}
