//! Read-only store-wide reads (what `evfold events` and `events --follow` do while another
//! process may hold the lock): paging through every event with one scan per process, against
//! the previous behaviour of one full scan per page (emulated by a fresh read-only open per
//! page); and how long a read-only follower takes to see an event a writer just appended,
//! against the previous 200 ms poll loop.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use evfold_core::examples::{BankAccount, BankCommand};
use evfold_native::AggregateStore;

use crate::native::context;
use crate::util::secs;

/// Events per page, as the CLI reads them.
const PAGE: usize = 1000;

async fn read_only(dir: &Path) -> Result<AggregateStore> {
    Ok(AggregateStore::builder(dir).read_only().open().await?)
}

/// (ms to page through all `n` events in one read-only process, ms for the per-page-rescan
/// emulation; the latter extrapolated from `sample_pages` pages when that is fewer than all).
pub async fn page_all(dir: &Path, n: usize, sample_pages: usize) -> Result<(f64, f64)> {
    let start = Instant::now();
    let store = read_only(dir).await?;
    let (mut from, mut seen) = (1, 0);
    loop {
        let page = store.read_all_page(from, PAGE).await?;
        let Some(last) = page.last() else { break };
        from = last.record.pos + 1;
        seen += page.len();
    }
    let once_ms = secs(start) * 1e3;
    ensure!(seen == n, "read {seen} of {n} events");
    ensure!(store.index_scans() == 1, "the read-only process scanned {} times", store.index_scans());
    drop(store);

    let pages = n.div_ceil(PAGE);
    let sample = sample_pages.min(pages).max(1);
    let start = Instant::now();
    let mut from = 1;
    for _ in 0..sample {
        let store = read_only(dir).await?; // the old read_all_page: a full scan per call
        let page = store.read_all_page(from, PAGE).await?;
        from = page.last().context("page")?.record.pos + 1;
    }
    let rescan_ms = secs(start) * 1e3 * pages as f64 / sample as f64;
    Ok((once_ms, rescan_ms))
}

/// Median ms from a writer's acknowledged append to a read-only follower receiving it:
/// (subscription woken by file changes, a 200 ms poll loop as `--follow` did before).
pub async fn follow_latency(dir: &Path, rounds: usize) -> Result<(f64, f64)> {
    let writer = AggregateStore::builder(dir).aggregate::<BankAccount>().open().await?;
    let handle = writer.get::<BankAccount>("follow-0").await?;
    handle.execute(BankCommand::Open { owner: "f".into() }, context()).await?;
    let reader = read_only(dir).await?;
    let next = writer.durable_position() + 1;
    let mut subscription = reader.subscribe(next)?;
    let mut woken = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let committed = handle.execute(BankCommand::Deposit { amount: 1 }, context()).await?;
        let start = Instant::now();
        let event = tokio::time::timeout(Duration::from_secs(10), subscription.recv()).await?.context("ended")??;
        woken.push(secs(start) * 1e3);
        ensure!(Some(&event.record.pos) == committed.positions.last(), "follower saw another event");
    }
    let mut polled = Vec::with_capacity(rounds);
    let mut from = writer.durable_position() + 1;
    for _ in 0..rounds.min(10) {
        handle.execute(BankCommand::Deposit { amount: 1 }, context()).await?;
        let start = Instant::now();
        loop {
            let page = reader.read_all_page(from, PAGE).await?;
            if let Some(last) = page.last() {
                from = last.record.pos + 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        polled.push(secs(start) * 1e3);
    }
    writer.close().await;
    Ok((crate::median(&mut woken), crate::median(&mut polled)))
}

/// CPU seconds this process used while a read-only follower sat idle for `idle`.
pub async fn idle_cpu(dir: &Path, idle: Duration) -> Result<f64> {
    let reader = read_only(dir).await?;
    let _subscription = reader.subscribe(u64::MAX / 2)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = cpu_secs()?;
    tokio::time::sleep(idle).await;
    Ok(cpu_secs()? - before)
}

/// utime + stime of this process (from /proc/self/stat, in clock ticks of 10 ms).
fn cpu_secs() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let fields: Vec<&str> = stat.rsplit(')').next().context("stat")?.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}
