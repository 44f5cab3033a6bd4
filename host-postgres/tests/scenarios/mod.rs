//! The scenarios the harness in `pg.rs` runs, each on its own fresh database.

mod depth;
mod evolution;

pub use depth::*;
pub use evolution::*;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use evfold_core::examples::{Balances, BankAccount, BankCommand, BankError, Counter, CounterCommand, Transfers};
use evfold_core::memory::MemoryStore;
use evfold_core::{
    AggregateConfig, CommandContext, CommandEnvelope, CommandError, DynProjection, EventId, ExpectedVersion, Fault,
    NewEvent, Payload, Position, StoredEvent, StreamId, Timestamp,
};
use evfold_postgres::testing::TempCluster;
use evfold_postgres::{PgStore, StoreError};
use serde_json::{json, Value};
use tokio_postgres::NoTls;

/// Runs an async test body on a fresh runtime, with a deadline.
fn block_on<F: Future<Output = ()>>(body: F) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), body).await.expect("test timed out after 120 s");
    });
}

fn ctx() -> CommandContext {
    CommandContext::default()
}

fn stream(kind: &str, id: &str) -> StreamId {
    StreamId::new(kind, id).unwrap()
}

fn new_event(id: String, type_name: &str) -> NewEvent {
    NewEvent {
        version: 1,
        id: EventId(id),
        payload: Payload::new(type_name, json!({})),
        ts: Timestamp(1),
        meta: Default::default(),
    }
}

/// A raw client for SQL the store does not offer (holding a transaction open, naive queries).
async fn raw_client(conninfo: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A projection that records the store-wide order it saw, under a name chosen at run time.
struct OrderLog {
    name: String,
    seen: Vec<String>,
}

impl OrderLog {
    fn boxed(name: &str) -> Box<dyn DynProjection> {
        Box::new(OrderLog { name: name.to_owned(), seen: Vec::new() })
    }
}

impl DynProjection for OrderLog {
    fn name(&self) -> &str {
        &self.name
    }
    fn apply(&mut self, events: &[StoredEvent]) -> Result<(), Fault> {
        self.seen.extend(events.iter().map(|e| format!("{}#{}", e.stream, e.record.seq)));
        Ok(())
    }
    fn snapshot(&mut self) -> Result<Value, Fault> {
        Ok(json!(self.seen))
    }
    fn restore(&mut self, snapshot: &Value) -> Result<(), Fault> {
        self.seen = serde_json::from_value(snapshot.clone()).map_err(Fault::new)?;
        Ok(())
    }
    fn reset(&mut self) -> Result<(), Fault> {
        self.seen.clear();
        Ok(())
    }
}

async fn order_of(store: &PgStore, name: &str) -> Vec<String> {
    serde_json::from_value(store.reader_json(name).await.unwrap()).unwrap()
}

/// 16 raw appends race with the same expectation: one wins, 15 get the typed conflict.
pub fn occ_16_concurrent_appends_one_wins(_: &mut TempCluster, db: &str) {
    block_on(async {
        let store = PgStore::connect(db).await.unwrap();
        let s = stream("race", "one");
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (store, s) = (store.clone(), s.clone());
            tasks.push(tokio::spawn(async move {
                let events = (0..3).map(|k| new_event(format!("ev-{i}-{k}"), "Raced")).collect();
                store.append(&s, ExpectedVersion::NoStream, events).await
            }));
        }
        let mut wins = 0;
        let mut conflicts = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(records) => {
                    wins += 1;
                    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
                }
                Err(StoreError::WrongExpectedVersion { expected: ExpectedVersion::NoStream, actual: 3 }) => {
                    conflicts += 1
                }
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        assert_eq!((wins, conflicts), (1, 15));
        let events = store.read_events(&s).await.unwrap();
        assert_eq!(events.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3], "no duplicate, no gap");
        assert_eq!(store.stream_version(&s).await.unwrap(), 3);
        // Exact(3) now wins once; a replayed event id is refused, not duplicated.
        let again = store.append(&s, ExpectedVersion::Exact(3), vec![new_event("ev-x".into(), "Next")]).await;
        assert_eq!(again.unwrap()[0].seq, 4);
        let dup = store.append(&s, ExpectedVersion::Any, vec![new_event("ev-x".into(), "Next")]).await;
        assert!(matches!(dup, Err(StoreError::DuplicateEventId(_))), "{dup:?}");
        assert_eq!(store.stream_version(&s).await.unwrap(), 4);
    });
}

/// 16 store instances (16 "app servers") send a command expecting version 1 at once.
pub fn occ_16_concurrent_commands_one_wins(_: &mut TempCluster, db: &str) {
    block_on(async {
        let first = PgStore::builder(db).aggregate::<Counter>().connect().await.unwrap();
        first.execute::<Counter>("c", CounterCommand::Increment, ctx()).await.unwrap();
        let mut stores = Vec::new();
        for _ in 0..16 {
            stores
                .push(PgStore::builder(db).aggregate::<Counter>().pool_size(2).listen(false).connect().await.unwrap());
        }
        let mut tasks = Vec::new();
        for store in &stores {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .execute_expected::<Counter>("c", CounterCommand::Increment, ctx(), ExpectedVersion::Exact(1))
                    .await
            }));
        }
        let (mut wins, mut wrong) = (0, 0);
        for task in tasks {
            match task.await.unwrap() {
                Ok(committed) => {
                    wins += 1;
                    assert_eq!(committed.version, 2);
                }
                Err(CommandError::WrongExpectedVersion { actual: 2, .. }) => wrong += 1,
                Err(other) => panic!("unexpected: {other}"),
            }
        }
        assert_eq!((wins, wrong), (1, 15));
        assert_eq!(first.state::<Counter>("c").await.unwrap().value, 2);
    });
}

/// Two stores execute increments on the same counters concurrently: every command commits and
/// every increment is in the final state (no lost update), with real conflicts along the way.
pub fn two_stores_lose_no_update(_: &mut TempCluster, db: &str) {
    block_on(async {
        let config = AggregateConfig { conflict_retries: 64, ..AggregateConfig::default() };
        let a = PgStore::builder(db).aggregate::<Counter>().aggregate_config(config.clone()).connect().await.unwrap();
        let b = PgStore::builder(db).aggregate::<Counter>().aggregate_config(config).connect().await.unwrap();
        let ids = ["c0", "c1", "c2", "c3"];
        // Per store and counter: 4 tasks, each sending 15 increments one after the other, so the
        // two stores interleave many small appends on the same streams.
        let (tasks_per_counter, sequential) = (4, 15);
        let per_store = tasks_per_counter * sequential;
        let mut rounds = 0;
        while a.stats().conflicts + b.stats().conflicts == 0 {
            rounds += 1;
            assert!(rounds <= 5, "no append conflict in 5 rounds: the test did not exercise the race");
            let mut tasks = Vec::new();
            for store in [&a, &b] {
                for id in ids {
                    for _ in 0..tasks_per_counter {
                        let store = store.clone();
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..sequential {
                                store.execute::<Counter>(id, CounterCommand::Increment, ctx()).await?;
                            }
                            Ok::<(), CommandError>(())
                        }));
                    }
                }
            }
            for task in tasks {
                task.await.unwrap().expect("every command commits");
            }
        }
        let expected = (2 * per_store * rounds) as u64;
        for id in ids {
            let s = stream("counter", id);
            let events = a.read_events(&s).await.unwrap();
            assert_eq!(events.len() as u64, expected, "{id}: every increment stored once");
            assert!(events.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1), "{id}: dense seq");
            assert_eq!(a.state::<Counter>(id).await.unwrap().value, expected);
            assert_eq!(b.state::<Counter>(id).await.unwrap().value, expected);
        }
        let (sa, sb) = (a.stats(), b.stats());
        println!("    rounds {rounds}; store A {sa:?}; store B {sb:?}");
        assert_eq!(sa.events + sb.events, expected * ids.len() as u64);
    });
}

/// The slow-transaction case: A takes an earlier position and stays open while B commits a later
/// one. A naive `global_seq` reader would pass B and skip A forever; the fenced reader shows
/// neither until A commits, then both, in order.
pub fn late_commit_is_never_skipped(_: &mut TempCluster, db: &str) {
    block_on(async {
        let store =
            PgStore::builder(db).aggregate::<Counter>().dyn_projection(OrderLog::boxed("order")).connect().await;
        let store = store.unwrap();
        store.execute::<Counter>("before", CounterCommand::Increment, ctx()).await.unwrap();
        store.catch_up().await.unwrap();
        assert_eq!(order_of(&store, "order").await, vec!["counter/before#1"]);

        let mut slow = raw_client(db).await;
        let tx = slow.transaction().await.unwrap();
        let row = tx
            .query_one(
                "SELECT max(out_global_seq) FROM evfold.append('counter/slow', 'counter', 'slow', 0,
                   ARRAY['slow-1'], ARRAY['Incremented'], ARRAY['null'::jsonb], ARRAY['{}'::jsonb], ARRAY[1::bigint], ARRAY[1])",
                &[],
            )
            .await
            .unwrap();
        let slow_seq: i64 = row.get(0);
        let fast = store.execute::<Counter>("fast", CounterCommand::Increment, ctx()).await.unwrap();
        assert!(fast.positions[0] > slow_seq as u64, "the fast event took the later position");

        // The trap: a plain sequence reader sees the later event and would move past the earlier.
        let naive = raw_client(db).await;
        let rows = naive.query("SELECT stream FROM evfold.events WHERE global_seq > 1 ORDER BY global_seq", &[]).await;
        let naive_streams: Vec<String> = rows.unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(naive_streams, vec!["counter/fast"], "naive read skips the uncommitted earlier event");

        // The fence: nothing after `before` is visible while the slow transaction is open.
        store.catch_up().await.unwrap();
        assert_eq!(order_of(&store, "order").await, vec!["counter/before#1"]);
        let (events, _) = store.read_all(&Position::start(), 100).await.unwrap();
        assert_eq!(events.len(), 1, "read_all stops at the fence");

        tx.commit().await.unwrap();
        store.catch_up().await.unwrap();
        assert_eq!(order_of(&store, "order").await, vec!["counter/before#1", "counter/slow#1", "counter/fast#1"]);
        let (events, next) = store.read_all(&Position::start(), 100).await.unwrap();
        let order: Vec<String> = events.iter().map(|e| e.stream.to_string()).collect();
        assert_eq!(order, vec!["counter/before", "counter/slow", "counter/fast"]);
        let (rest, _) = store.read_all(&next, 100).await.unwrap();
        assert!(rest.is_empty());
    });
}

/// Writers on several streams run concurrently; a projection on the writer's store, one on a
/// second store (own connections), one reading from a streaming replica, and paged `read_all`
/// all see the same order, and that order keeps every stream's seq order.
pub fn second_connection_and_replica_see_same_order(cluster: &mut TempCluster, db: &str) {
    let dbname = db.rsplit("dbname=").next().unwrap().to_owned();
    let t = std::time::Instant::now();
    let replica = cluster.start_replica(&dbname).expect("streaming replica starts");
    println!("    streaming replica up in {:.2} s", t.elapsed().as_secs_f64());
    block_on(async move {
        let a = PgStore::builder(db).aggregate::<Counter>().dyn_projection(OrderLog::boxed("order-a")).connect();
        let a = a.await.unwrap();
        let b = PgStore::builder(db).dyn_projection(OrderLog::boxed("order-b")).connect().await.unwrap();
        let r = PgStore::builder(db).read_replica(replica).dyn_projection(OrderLog::boxed("order-r")).connect();
        let r = r.await.unwrap();
        let mut tasks = Vec::new();
        for w in 0..8 {
            let a = a.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..25 {
                    a.execute::<Counter>(&format!("w{w}"), CounterCommand::Increment, ctx()).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let total = 8 * 25;
        let mut paged = Vec::new();
        let mut at = Position::start();
        // Paging stops at the fence, which any writing transaction still open (a checkpoint
        // save, say) holds back for a moment: keep paging until every event was seen.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while paged.len() < total {
            assert!(std::time::Instant::now() < deadline, "read_all stuck at {} of {total}", paged.len());
            let (events, next) = a.read_all(&at, 7).await.unwrap();
            if events.is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            paged.extend(events.iter().map(|e| format!("{}#{}", e.stream, e.record.seq)));
            at = next;
        }
        assert_eq!(paged.len(), total);
        for w in 0..8 {
            let seqs: Vec<&String> = paged.iter().filter(|e| e.starts_with(&format!("counter/w{w}#"))).collect();
            let want: Vec<String> = (1..=25).map(|s| format!("counter/w{w}#{s}")).collect();
            assert_eq!(seqs, want.iter().collect::<Vec<_>>(), "per-stream order kept in the global order");
        }
        for (store, name) in [(&a, "order-a"), (&b, "order-b"), (&r, "order-r")] {
            let mut seen = Vec::new();
            for _ in 0..200 {
                // The replica may not have replayed the schema yet: a transient error, retried.
                if let Err(e) = store.catch_up().await {
                    println!("    {name}: {e}");
                }
                seen = order_of(store, name).await;
                if seen.len() >= total {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await; // replica lag
            }
            assert_eq!(seen, paged, "{name} sees the same order");
        }
    });
}

/// The bank scenario on PostgreSQL gives the same replies, states, read model, workflow state and
/// dead letters as the in-memory reference driver and as the JSONL driver (evfold-native).
pub fn bank_scenario_matches_memory_store(_: &mut TempCluster, db: &str) {
    let script = bank_script();
    let mut memory = MemoryStore::new();
    memory.register::<BankAccount>();
    memory.add_projection::<Balances>();
    memory.add_process_manager::<Transfers>();
    let mut memory_replies = Vec::new();
    for (id, command) in &script {
        memory_replies.push(reply_text(memory.execute::<BankAccount>(id, command.clone(), ctx())));
    }
    let accounts: BTreeSet<&str> = script.iter().map(|(id, _)| *id).chain(["acc-ghost"]).collect();
    let memory_states: Vec<(String, BankAccount)> =
        accounts.iter().map(|id| ((*id).to_owned(), memory.state::<BankAccount>(id).unwrap())).collect();
    let memory_balances = memory.projection::<Balances>().unwrap();
    let memory_letters = memory.dead_letters("transfers").len();
    let memory_transfers = memory.read_all().iter().filter(|e| e.record.event_type == "TransferredOut").count() as u64;
    block_on(async {
        let store = PgStore::builder(db)
            .aggregate::<BankAccount>()
            .projection::<Balances>()
            .process_manager::<Transfers>()
            .connect()
            .await
            .unwrap();
        let mut replies = Vec::new();
        for (id, command) in &script {
            replies.push(reply_text(store.execute::<BankAccount>(id, command.clone(), ctx()).await));
            store.catch_up().await.unwrap(); // the memory driver runs readers after every command
        }
        assert_eq!(replies, memory_replies);
        for (id, want) in &memory_states {
            assert_eq!(&store.state::<BankAccount>(id).await.unwrap(), want, "{id}");
        }
        assert_eq!(store.projection::<Balances>().await.unwrap(), memory_balances);
        assert_eq!(store.process_manager::<Transfers>().await.unwrap(), Transfers { dispatched: memory_transfers });
        let letters = store.dead_letters("transfers").await.unwrap();
        assert_eq!(letters.len(), memory_letters);
        assert_eq!(letters.len(), 1, "the transfer to the never-opened account is dead-lettered");
        assert!(replies.iter().any(|r| r.contains("insufficient funds")), "{replies:?}");

        // The JSONL driver (evfold-native) on the same script: same answers, states, read model.
        let dir = tempfile::tempdir().unwrap();
        let jsonl = evfold_native::AggregateStore::builder(dir.path())
            .aggregate::<BankAccount>()
            .projection::<Balances>()
            .process_manager::<Transfers>()
            .open()
            .await
            .unwrap();
        let mut jsonl_replies = Vec::new();
        for (id, command) in &script {
            let result = jsonl.get::<BankAccount>(id).await.unwrap().execute(command.clone(), ctx()).await;
            jsonl_replies.push(match result {
                Ok(c) => format!("ok v{} n{}", c.version, c.n_events),
                Err(evfold_native::ExecuteError::Domain(e)) => format!("rejected {e} {e:?}"),
                Err(other) => format!("error {other}"),
            });
            jsonl.run_process_managers().await.unwrap();
        }
        assert_eq!(jsonl_replies, replies, "JSONL driver answers the same");
        for (id, want) in &memory_states {
            assert_eq!(&jsonl.get::<BankAccount>(id).await.unwrap().state().await.unwrap(), want, "{id}");
        }
        assert_eq!(jsonl.projection::<Balances>().await.unwrap(), memory_balances);
        assert_eq!(jsonl.dead_letters("transfers").await.unwrap().len(), letters.len());
    });
}

fn bank_script() -> Vec<(&'static str, BankCommand)> {
    use BankCommand::*;
    vec![
        ("acc-1", Open { owner: "ada".into() }),
        ("acc-2", Open { owner: "bob".into() }),
        ("acc-1", Deposit { amount: 1_000 }),
        ("acc-2", Deposit { amount: 50 }),
        ("acc-1", Withdraw { amount: 300 }),
        ("acc-2", Withdraw { amount: 500 }),
        ("acc-1", TransferOut { to: "acc-2".into(), amount: 400 }),
        ("acc-2", Withdraw { amount: 420 }),
        ("acc-2", TransferOut { to: "acc-ghost".into(), amount: 10 }),
        ("acc-1", Open { owner: "eve".into() }),
        ("acc-3", Deposit { amount: 5 }),
        ("acc-3", Open { owner: "cy".into() }),
        ("acc-2", TransferOut { to: "acc-3".into(), amount: 15 }),
        ("acc-3", Withdraw { amount: 0 }),
        ("acc-3", Withdraw { amount: 15 }),
    ]
}

fn reply_text(result: Result<evfold_core::Committed, CommandError>) -> String {
    match result {
        Ok(c) => format!("ok v{} n{}", c.version, c.n_events),
        Err(CommandError::Rejected(r)) => {
            let typed = r.error.as_ref().and_then(|e| e.downcast_ref::<BankError>()).map(|e| format!("{e:?}"));
            format!("rejected {} {}", r.message, typed.unwrap_or_default())
        }
        Err(other) => format!("error {other}"),
    }
}

/// A new store on the same database resumes projections from their checkpoints and aggregates
/// from snapshots plus the tail.
pub fn restart_resumes_from_checkpoint_and_snapshot(_: &mut TempCluster, db: &str) {
    block_on(async {
        let config = AggregateConfig { snapshot_every: Some(5), ..AggregateConfig::default() };
        let connect = || {
            PgStore::builder(db)
                .aggregate::<Counter>()
                .aggregate_config(config.clone())
                .dyn_projection(OrderLog::boxed("order"))
                .connect()
        };
        let first = connect().await.unwrap();
        for _ in 0..12 {
            first.execute::<Counter>("c", CounterCommand::Increment, ctx()).await.unwrap();
        }
        first.catch_up().await.unwrap();
        assert_eq!(order_of(&first, "order").await.len(), 12);
        drop(first);

        let raw = raw_client(db).await;
        let snap = raw.query_one("SELECT seq, state FROM evfold.snapshots WHERE stream = 'counter/c'", &[]).await;
        let snap = snap.unwrap();
        assert_eq!((snap.get::<_, i64>(0), snap.get::<_, Value>(1)), (10, json!({"value": 10})));
        let ck = raw.query_one("SELECT position, state FROM evfold.checkpoints WHERE reader = 'order'", &[]).await;
        let ck = ck.unwrap();
        assert!(ck.get::<_, Value>(0).is_array(), "position token is [tx_id, global_seq]");
        assert_eq!(ck.get::<_, Value>(1).as_array().map(Vec::len), Some(12));

        let second = connect().await.unwrap();
        assert_eq!(second.state::<Counter>("c").await.unwrap().value, 12);
        second.execute::<Counter>("c", CounterCommand::Increment, ctx()).await.unwrap();
        second.catch_up().await.unwrap();
        let order = order_of(&second, "order").await;
        assert_eq!(order.len(), 13, "resumed from the checkpoint: nothing folded twice");
        assert_eq!(order.last().unwrap(), "counter/c#13");
        second.rebuild_projection("order").await.unwrap();
        second.catch_up().await.unwrap();
        assert_eq!(order_of(&second, "order").await, order, "a rebuild refolds the same order");
    });
}

/// A store that polls only once a minute still sees another store's commit at once: NOTIFY.
pub fn notify_wakes_a_store_that_does_not_poll(_: &mut TempCluster, db: &str) {
    block_on(async {
        let writer = PgStore::builder(db).aggregate::<Counter>().listen(false).connect().await.unwrap();
        let watcher = PgStore::builder(db)
            .dyn_projection(OrderLog::boxed("watch"))
            .poll_interval(Duration::from_secs(60))
            .connect()
            .await
            .unwrap();
        watcher.catch_up().await.unwrap(); // idle, LISTEN connection up
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = std::time::Instant::now();
        writer.execute::<Counter>("n", CounterCommand::Increment, ctx()).await.unwrap();
        loop {
            if order_of(&watcher, "watch").await == vec!["counter/n#1"] {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no wake-up within 10 s (polling is at 60 s)");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!("    woken by NOTIFY after {} ms", started.elapsed().as_millis());
    });
}

/// Migrations apply once even when many stores connect at once; listing, filters, bad tokens.
pub fn migrations_reads_and_listing(_: &mut TempCluster, db: &str) {
    block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let db = db.to_owned();
            tasks.push(tokio::spawn(async move {
                PgStore::builder(db).aggregate::<Counter>().aggregate::<BankAccount>().connect().await
            }));
        }
        let mut stores = Vec::new();
        for task in tasks {
            stores.push(task.await.unwrap().unwrap());
        }
        let store = &stores[0];
        let raw = raw_client(db).await;
        let rows = raw.query("SELECT version FROM evfold.schema_migrations", &[]).await.unwrap();
        assert_eq!(rows.len(), evfold_postgres::schema_version() as usize);
        store.execute::<Counter>("x", CounterCommand::Increment, ctx()).await.unwrap();
        store.execute::<BankAccount>("a", BankCommand::Open { owner: "o".into() }, ctx()).await.unwrap();
        let all = store.list_streams(None).await.unwrap();
        assert_eq!(all, vec![(stream("bank-account", "a"), 1), (stream("counter", "x"), 1)]);
        assert_eq!(store.list_streams(Some("counter")).await.unwrap(), vec![(stream("counter", "x"), 1)]);
        let bad = store.read_all(&Position(json!("nonsense")), 10).await;
        assert!(matches!(bad, Err(StoreError::Io(_))), "{bad:?}");
        let envelope = CommandEnvelope {
            target: stream("unregistered", "t"),
            command: Payload::new("Anything", Value::Null),
            context: ctx(),
        };
        let unknown = store.execute_json(&envelope, ExpectedVersion::Any).await;
        assert!(matches!(unknown, Err(CommandError::Fault(_))), "unregistered aggregate type is a fault");
        let rejected = store.execute::<Counter>("x2", CounterCommand::Decrement, ctx()).await;
        assert!(matches!(rejected, Err(CommandError::Rejected(_))));
        assert_eq!(store.stream_version(&stream("counter", "x2")).await.unwrap(), 0, "a rejection writes nothing");
    });
}

/// The store-wide order compares transaction ids as numbers, also across a power of ten
/// (a text comparison would put xid 1000 before xid 999).
pub fn order_is_numeric_across_an_xid_digit_boundary(_: &mut TempCluster, db: &str) {
    block_on(async {
        let store = PgStore::builder(db).aggregate::<Counter>().dyn_projection(OrderLog::boxed("order")).connect();
        let store = store.await.unwrap();
        store.execute::<Counter>("d", CounterCommand::Increment, ctx()).await.unwrap();
        let raw = raw_client(db).await;
        let current = |row: tokio_postgres::Row| row.get::<_, String>(0).parse::<u64>().unwrap();
        let x = current(raw.query_one("SELECT pg_current_xact_id()::text", &[]).await.unwrap());
        let boundary = 10u64.pow(x.ilog10() + 1);
        // Burn transaction ids up to the boundary (pipelined autocommit statements, one xid each).
        let burns = (x..=boundary).map(|_| raw.query_one("SELECT pg_current_xact_id()::text", &[]));
        futures_util::future::try_join_all(burns).await.unwrap();
        store.execute::<Counter>("d", CounterCommand::Increment, ctx()).await.unwrap();
        let xids = raw.query("SELECT tx_id::text FROM evfold.events ORDER BY seq", &[]).await.unwrap();
        let xids: Vec<u64> = xids.into_iter().map(current).collect();
        assert!(xids[0] < boundary && xids[1] > boundary, "straddles {boundary}: {xids:?}");
        store.catch_up().await.unwrap();
        assert_eq!(order_of(&store, "order").await, vec!["counter/d#1", "counter/d#2"]);
        let (events, _) = store.read_all(&Position::start(), 10).await.unwrap();
        assert_eq!(events.iter().map(|e| e.record.seq).collect::<Vec<_>>(), vec![1, 2]);
    });
}

/// Two app servers both register the `transfers` process manager: only the instance holding its
/// advisory lock dispatches, so every transfer is deposited once, not twice.
pub fn process_manager_runs_on_one_instance(_: &mut TempCluster, db: &str) {
    block_on(async {
        let connect = || {
            PgStore::builder(db)
                .aggregate::<BankAccount>()
                .process_manager::<Transfers>()
                .poll_interval(Duration::from_millis(50))
                .connect()
        };
        let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
        for (id, owner) in [("from", "ada"), ("to", "bob")] {
            a.execute::<BankAccount>(id, BankCommand::Open { owner: owner.into() }, ctx()).await.unwrap();
        }
        a.execute::<BankAccount>("from", BankCommand::Deposit { amount: 100 }, ctx()).await.unwrap();
        for _ in 0..5 {
            let transfer = BankCommand::TransferOut { to: "to".into(), amount: 10 };
            b.execute::<BankAccount>("from", transfer, ctx()).await.unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while a.state::<BankAccount>("to").await.unwrap().balance < 50 {
            assert!(std::time::Instant::now() < deadline, "transfers not delivered");
            a.catch_up().await.unwrap();
            b.catch_up().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Give a would-be second dispatcher time to act, then check nothing was delivered twice.
        tokio::time::sleep(Duration::from_millis(500)).await;
        a.catch_up().await.unwrap();
        b.catch_up().await.unwrap();
        assert_eq!(a.state::<BankAccount>("to").await.unwrap().balance, 50, "each transfer deposited once");
        let dispatched = a.process_manager::<Transfers>().await.unwrap().dispatched
            + b.process_manager::<Transfers>().await.unwrap().dispatched;
        assert_eq!(dispatched, 5, "one instance dispatched, the other stayed passive");
    });
}

/// A process manager that lost its checkpoint (crash after dispatching, before saving) reads the
/// same events again and re-dispatches: the commands' stable event ids make the re-delivery a
/// no-op instead of a second deposit.
pub fn redelivered_commands_are_not_applied_twice(_: &mut TempCluster, db: &str) {
    block_on(async {
        let connect = || {
            PgStore::builder(db)
                .aggregate::<BankAccount>()
                .process_manager::<Transfers>()
                .poll_interval(Duration::from_millis(50))
                .connect()
        };
        let first = connect().await.unwrap();
        for (id, owner) in [("from", "ada"), ("to", "bob")] {
            first.execute::<BankAccount>(id, BankCommand::Open { owner: owner.into() }, ctx()).await.unwrap();
        }
        first.execute::<BankAccount>("from", BankCommand::Deposit { amount: 100 }, ctx()).await.unwrap();
        for _ in 0..3 {
            let transfer = BankCommand::TransferOut { to: "to".into(), amount: 10 };
            first.execute::<BankAccount>("from", transfer, ctx()).await.unwrap();
        }
        first.catch_up().await.unwrap();
        assert_eq!(first.state::<BankAccount>("to").await.unwrap().balance, 30);
        drop(first);

        let raw = raw_client(db).await;
        let deleted = raw.execute("DELETE FROM evfold.checkpoints WHERE reader = 'transfers'", &[]).await.unwrap();
        assert_eq!(deleted, 1, "the process manager had checkpointed");

        let second = connect().await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        // Wait until this instance leads (the dropped one releases the lock) and has re-read all.
        while second.process_manager::<Transfers>().await.unwrap().dispatched < 3 {
            assert!(std::time::Instant::now() < deadline, "process manager never re-read its events");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        second.catch_up().await.unwrap();
        assert_eq!(second.state::<BankAccount>("to").await.unwrap().balance, 30, "re-delivery applied nothing");
        assert_eq!(second.read_events(&stream("bank-account", "to")).await.unwrap().len(), 4);
    });
}

/// Actors are evicted after the idle timeout and respawned transparently: commands sent around
/// the timeout all succeed and nothing is lost.
pub fn idle_actors_are_evicted_without_losing_commands(_: &mut TempCluster, db: &str) {
    block_on(async {
        let store = PgStore::builder(db)
            .aggregate::<Counter>()
            .idle_timeout(Some(Duration::from_millis(30)))
            .connect()
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for id in ["i0", "i1", "i2"] {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for k in 0..40u64 {
                    store.execute::<Counter>(id, CounterCommand::Increment, ctx()).await.unwrap();
                    tokio::time::sleep(Duration::from_millis((k * 7) % 60)).await;
                    // around the 30 ms timeout
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(store.live_aggregates(), 0, "idle actors were evicted");
        for id in ["i0", "i1", "i2"] {
            assert_eq!(store.state::<Counter>(id).await.unwrap().value, 40, "{id}");
        }
        assert_eq!(store.live_aggregates(), 3, "a state query respawns the actor");
    });
}
