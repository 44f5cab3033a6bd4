//! Quick throughput and recovery-time measurements of the native store on the local disk:
//! raw append+fdatasync, durable commands at several concurrencies (group commit), buffered
//! mode, and the open-time scan. `cargo run --release -p evfold-native --example measure`.

use std::io::Write;
use std::time::Instant;

use evfold_core::examples::{Counter, CounterCommand};
use evfold_core::CommandContext;
use evfold_native::{AggregateStore, Durability};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    raw_fsync(500)?;
    for (streams, callers, n, durability) in [
        (1, 1, 500, Durability::Sync),
        (1, 16, 4_000, Durability::Sync),
        (1, 64, 8_000, Durability::Sync),
        (16, 64, 8_000, Durability::Sync),
        (16, 64, 40_000, Durability::Buffered),
    ] {
        run(streams, callers, n, durability).await?;
    }
    reopen(200, 500).await
}

fn raw_fsync(n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir_in(".")?;
    let mut file = std::fs::File::create(dir.path().join("raw"))?;
    let line = [b'x'; 200];
    let start = Instant::now();
    for _ in 0..n {
        file.write_all(&line)?;
        file.sync_data()?;
    }
    let per = start.elapsed() / n as u32;
    println!("raw 200-byte append+fdatasync: {per:?} each ({:.0}/s)", 1.0 / per.as_secs_f64());
    Ok(())
}

async fn run(
    streams: usize,
    callers: usize,
    n: usize,
    durability: Durability,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir_in(".")?;
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().durability(durability).open().await?;
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                let handle = store.get::<Counter>(&format!("s{}", c % streams)).await.unwrap();
                for _ in 0..n / callers {
                    handle.execute(CounterCommand::Increment, CommandContext::default()).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let elapsed = start.elapsed();
    let stats = store.stats();
    println!(
        "{durability:?} {streams} stream(s), {callers} callers: {} commands in {elapsed:.2?} = {:.0}/s, {} fsyncs ({:.1} commands per fsync)",
        stats.events,
        stats.events as f64 / elapsed.as_secs_f64(),
        stats.syncs,
        stats.events as f64 / stats.syncs.max(1) as f64
    );
    store.close().await;
    Ok(())
}

async fn reopen(streams: usize, per_stream: usize) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir_in(".")?;
    let store =
        AggregateStore::builder(dir.path()).aggregate::<Counter>().durability(Durability::Buffered).open().await?;
    let tasks: Vec<_> = (0..streams)
        .map(|s| {
            let store = store.clone();
            tokio::spawn(async move {
                let handle = store.get::<Counter>(&format!("s{s}")).await.unwrap();
                for _ in 0..per_stream {
                    handle.execute(CounterCommand::Increment, CommandContext::default()).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    store.close().await;
    let start = Instant::now();
    let store = AggregateStore::open(dir.path()).await?;
    let open = start.elapsed();
    let start = Instant::now();
    let all = store.read_all(1).await?;
    println!(
        "reopen with {} events in {streams} streams: open (scan + CRC + index) {open:.2?}, read_all {:.2?}",
        all.len(),
        start.elapsed()
    );
    Ok(())
}
