//! The load test: concurrent writers over many streams for a bounded time, with the `Balances`
//! projection, the `Transfers` process manager and a live subscription running. Reports
//! throughput, latency percentiles and resident memory; checks nothing was lost, duplicated or
//! failed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evfold_native::AggregateStore;

use crate::check::{check_open_store, CheckReport};
use crate::error::ReliabilityError;
use crate::stats::{percentile, rss_kib};
use crate::workload::{builder, open_accounts, run_workers, Sink, WorkerStats, WorkloadConfig, TAG_KEY};

/// Shape of a load run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Concurrent writers.
    pub writers: usize,
    /// Bank accounts (streams).
    pub accounts: usize,
    /// Counters (streams).
    pub counters: usize,
    /// How long the writers run.
    pub duration: Duration,
    /// RSS growth is measured from this point on.
    pub warmup: Duration,
    /// Seeds the writers.
    pub seed: u64,
}

/// What a load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Commands sent.
    pub commands: u64,
    /// Acknowledged (each with one event).
    pub acked: u64,
    /// Refused by the domain (e.g. insufficient funds).
    pub rejected: u64,
    /// Store errors (must be 0).
    pub failed: u64,
    /// Events the subscription delivered.
    pub subscribed: u64,
    /// Acknowledged commands per second.
    pub throughput: f64,
    /// Median command latency.
    pub p50: Duration,
    /// 99th percentile command latency.
    pub p99: Duration,
    /// Slowest command.
    pub max: Duration,
    /// RSS at the end of warm-up, KiB.
    pub rss_warm_kib: u64,
    /// RSS at the end of the run, KiB.
    pub rss_end_kib: u64,
    /// Highest RSS sampled after warm-up, KiB.
    pub rss_peak_kib: u64,
    /// The store-wide invariants afterwards.
    pub check: CheckReport,
}

/// Runs the load test on a new store at `dir`.
pub fn run_load_test(dir: &Path, config: &LoadConfig) -> Result<LoadReport, ReliabilityError> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(load(dir, config))
}

async fn load(dir: &Path, config: &LoadConfig) -> Result<LoadReport, ReliabilityError> {
    let store = builder(dir).open().await?;
    let result = load_open(dir, &store, config).await;
    store.close().await;
    result
}

async fn load_open(dir: &Path, store: &AggregateStore, config: &LoadConfig) -> Result<LoadReport, ReliabilityError> {
    let stop = Arc::new(AtomicBool::new(false));
    let subscribed = spawn_subscriber(store)?;
    let sink = failure_sink(Arc::new(AtomicU64::new(0)));
    let workload = workload_config(config, Instant::now() + config.duration);
    open_accounts(store, &workload, &sink).await.map_err(ReliabilityError::Child)?;
    let sampler = spawn_rss_sampler(config.warmup, stop.clone());
    let started = Instant::now();
    let stats = run_workers(store, &workload, sink).await;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (rss_warm_kib, rss_peak_kib) = sampler.await.unwrap_or_default();
    let mut report = summarize(&stats, elapsed);
    report.rss_warm_kib = rss_warm_kib;
    report.rss_peak_kib = rss_peak_kib.max(rss_warm_kib);
    report.rss_end_kib = rss_kib().unwrap_or(0);
    report.check = check_open_store(dir, store, &[]).await?;
    let stored = check_tags(store, &stats).await?;
    report.check.acknowledged = report.acked;
    report.check.found = stored;
    report.subscribed = wait_for_subscriber(&subscribed, report.check.events).await;
    if report.subscribed != report.check.events {
        let msg = format!("subscription delivered {} of {} events", report.subscribed, report.check.events);
        return Err(ReliabilityError::Invariant(msg));
    }
    Ok(report)
}

fn workload_config(config: &LoadConfig, deadline: Instant) -> WorkloadConfig {
    WorkloadConfig {
        workers: config.writers,
        accounts: config.accounts,
        counters: config.counters,
        round: 0,
        seed: config.seed,
        max_commands: None,
        deadline: Some(deadline),
        blob_writer_kib: 0,
    }
}

/// Counts failures and prints the first few; acknowledgements are counted per worker instead of
/// kept (keeping them would grow the very memory being measured).
fn failure_sink(failures: Arc<AtomicU64>) -> Sink {
    Arc::new(move |event| {
        if let Err(e) = event {
            if failures.fetch_add(1, Ordering::SeqCst) < 5 {
                eprintln!("load: command failed: {e}");
            }
        }
    })
}

fn spawn_subscriber(store: &AggregateStore) -> Result<Arc<AtomicU64>, ReliabilityError> {
    let mut subscription = store.subscribe(1)?;
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        let mut last_pos = 0;
        while let Some(Ok(event)) = subscription.recv().await {
            assert!(event.record.pos > last_pos, "subscription went backwards");
            last_pos = event.record.pos;
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    Ok(count)
}

async fn wait_for_subscriber(count: &AtomicU64, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    while count.load(Ordering::SeqCst) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    count.load(Ordering::SeqCst)
}

/// Samples RSS every 100 ms; returns (RSS at the end of warm-up, peak after warm-up).
fn spawn_rss_sampler(warmup: Duration, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, u64)> {
    tokio::spawn(async move {
        let started = Instant::now();
        let (mut warm, mut peak) = (0, 0);
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let rss = rss_kib().unwrap_or(0);
            if started.elapsed() < warmup {
                warm = rss;
            } else {
                peak = peak.max(rss);
            }
        }
        (warm, peak)
    })
}

fn summarize(stats: &[WorkerStats], elapsed: Duration) -> LoadReport {
    let mut latencies: Vec<Duration> =
        stats.iter().flat_map(|s| s.latencies_us.iter().map(|&us| Duration::from_micros(u64::from(us)))).collect();
    latencies.sort_unstable();
    let acked: u64 = stats.iter().map(|s| s.acked).sum();
    LoadReport {
        commands: latencies.len() as u64,
        acked,
        rejected: stats.iter().map(|s| s.rejected).sum(),
        failed: stats.iter().map(|s| s.failed).sum(),
        throughput: acked as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        max: latencies.last().copied().unwrap_or_default(),
        ..LoadReport::default()
    }
}

/// Each worker's tagged events in the store: unique, and as many as it had acknowledged.
/// Returns how many workers' events were found.
async fn check_tags(store: &AggregateStore, stats: &[WorkerStats]) -> Result<u64, ReliabilityError> {
    let mut per_worker: HashMap<String, u64> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for event in store.read_all(1).await? {
        let Some(tag) = event.record.meta.extra.get(TAG_KEY).and_then(|t| t.as_str()).map(str::to_owned) else {
            continue;
        };
        if let Some(worker) = tag.strip_prefix("r0w").and_then(|t| t.split('n').next()) {
            *per_worker.entry(worker.to_owned()).or_default() += 1;
        }
        if !seen.insert(tag.clone()) {
            return Err(ReliabilityError::Invariant(format!("tag {tag} stored twice")));
        }
    }
    for (worker, stat) in stats.iter().enumerate() {
        let stored = per_worker.get(&worker.to_string()).copied().unwrap_or(0);
        if stored != stat.acked {
            let msg = format!("worker {worker}: {} acknowledged, {stored} stored", stat.acked);
            return Err(ReliabilityError::Invariant(msg));
        }
    }
    Ok(per_worker.values().sum())
}
