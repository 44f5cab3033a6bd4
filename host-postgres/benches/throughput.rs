//! Side-by-side throughput of the PostgreSQL driver and the JSONL driver (evfold-native) on the
//! same machine, same domain code, same durability (fsync on both sides): sequential commands,
//! concurrent commands on many aggregates, and projection catch-up from the first event.
//!
//! `cargo bench -p evfold-postgres --bench throughput` (env `BENCH_N`, default 2000 commands per
//! phase). Starts its own PostgreSQL (see `evfold_postgres::testing`) and stops it at the end.

use std::time::{Duration, Instant};

use evfold_core::examples::{Counter, CounterCommand};
use evfold_core::{CommandContext, Projection, StoredEvent};
use evfold_native::AggregateStore;
use evfold_postgres::testing::{ClusterOptions, TempCluster};
use evfold_postgres::PgStore;
use serde::{Deserialize, Serialize};

/// Counts every event: the cheapest possible fold, so catch-up measures the driver.
#[derive(Debug, Default, Serialize, Deserialize)]
struct EventCount {
    n: u64,
}

impl Projection for EventCount {
    const NAME: &'static str = "event-count";
    fn apply(&mut self, _: &StoredEvent) {
        self.n += 1;
    }
}

/// One driver's figures.
#[derive(Debug, Default)]
struct Figures {
    sequential_per_s: f64,
    concurrent_per_s: f64,
    catch_up_per_s: f64,
    events: u64,
}

const WRITERS: usize = 16;

fn main() {
    let n: usize = std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let durable = ClusterOptions { durable: true };
    let cluster = TempCluster::start_with(durable).unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    let db = cluster.create_database("bench").expect("create database");
    println!("PostgreSQL on 127.0.0.1:{} (fsync=on, synchronous_commit=on); {n} commands per phase", cluster.port());
    let pg = rt.block_on(bench_pg(&db, n));
    let dir = tempfile::tempdir().expect("temp dir");
    let jsonl = rt.block_on(bench_jsonl(dir.path(), n));
    drop(cluster);
    report(&pg, &jsonl);
}

async fn bench_pg(db: &str, n: usize) -> Figures {
    let store = PgStore::builder(db).aggregate::<Counter>().pool_size(WRITERS + 4).connect().await.expect("connect");
    let sequential_per_s = timed(n, async {
        for _ in 0..n {
            store.execute::<Counter>("seq", CounterCommand::Increment, CommandContext::default()).await.unwrap();
        }
    })
    .await;
    let concurrent_per_s = timed(n, async {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..n / WRITERS {
                        let id = format!("w{w}");
                        store
                            .execute::<Counter>(&id, CounterCommand::Increment, CommandContext::default())
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await;
    let events = store.stats().events;
    // Timed from connect: the reader starts catching up as soon as it exists.
    let t = Instant::now();
    let reader = PgStore::builder(db).projection::<EventCount>().connect().await.expect("connect reader");
    reader.catch_up().await.unwrap();
    let catch_up_per_s = events as f64 / t.elapsed().as_secs_f64();
    let folded = reader.projection::<EventCount>().await.unwrap().n;
    assert_eq!(folded, events, "the projection folded every event");
    Figures { sequential_per_s, concurrent_per_s, catch_up_per_s, events }
}

async fn bench_jsonl(dir: &std::path::Path, n: usize) -> Figures {
    let store = AggregateStore::builder(dir).aggregate::<Counter>().open().await.expect("open");
    let handle = store.get::<Counter>("seq").await.unwrap();
    let sequential_per_s = timed(n, async {
        for _ in 0..n {
            handle.execute(CounterCommand::Increment, CommandContext::default()).await.unwrap();
        }
    })
    .await;
    let concurrent_per_s = timed(n, async {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let handle = store.get::<Counter>(&format!("w{w}")).await.unwrap();
                    for _ in 0..n / WRITERS {
                        handle.execute(CounterCommand::Increment, CommandContext::default()).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    })
    .await;
    let events = (n + n / WRITERS * WRITERS) as u64;
    drop(handle);
    drop(store);
    // Let the actor threads release the store lock.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Timed from open: the reader starts catching up as soon as it exists.
    let t = Instant::now();
    let reader = AggregateStore::builder(dir).projection::<EventCount>().open().await.expect("reopen");
    let folded = reader.projection::<EventCount>().await.unwrap().n;
    let catch_up_per_s = events as f64 / t.elapsed().as_secs_f64();
    assert_eq!(folded, events, "the projection folded every event");
    Figures { sequential_per_s, concurrent_per_s, catch_up_per_s, events }
}

async fn timed(count: usize, work: impl std::future::Future<Output = ()>) -> f64 {
    let t = Instant::now();
    work.await;
    count as f64 / t.elapsed().as_secs_f64()
}

fn report(pg: &Figures, jsonl: &Figures) {
    println!("\n| measure | PostgreSQL | JSONL (evfold-native) | PostgreSQL / JSONL |");
    println!("|---|---:|---:|---:|");
    let rows = [
        ("sequential commands/s (1 writer, 1 aggregate)", pg.sequential_per_s, jsonl.sequential_per_s),
        ("concurrent commands/s (16 writers, 16 aggregates)", pg.concurrent_per_s, jsonl.concurrent_per_s),
        ("projection catch-up events/s", pg.catch_up_per_s, jsonl.catch_up_per_s),
    ];
    for (name, a, b) in rows {
        println!("| {name} | {a:.0} | {b:.0} | {:.2} |", a / b);
    }
    println!("(events folded in catch-up: PostgreSQL {}, JSONL {})", pg.events, jsonl.events);
}
