//! The mixed workload the kill test's child and the load test run: concurrent workers sending
//! seeded random commands to many `BankAccount` and `Counter` instances (deposits, withdrawals,
//! transfers that the `Transfers` process manager turns into deposits), with the `Balances`
//! projection registered, plus occasional large `Blob` events (tens of KiB: a multi-page
//! `write(2)` that a `SIGKILL` can cut, so kills also produce torn tails). Every command carries
//! a unique tag in `meta.extra.tag`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use evfold_core::examples::{Balances, BankAccount, BankCommand, Counter, CounterCommand, Transfers};
use evfold_core::{Aggregate, CommandContext};
use evfold_native::{AggregateStore, AggregateStoreBuilder, ExecuteError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ack::Ack;
use crate::rng::SplitMix64;

/// Metadata key holding a command's unique tag.
pub const TAG_KEY: &str = "tag";

/// A store builder with every type the workload uses registered.
pub fn builder(dir: &std::path::Path) -> AggregateStoreBuilder {
    AggregateStore::builder(dir)
        .aggregate::<BankAccount>()
        .aggregate::<Counter>()
        .aggregate::<Blob>()
        .projection::<Balances>()
        .process_manager::<Transfers>()
}

/// An aggregate that stores large opaque chunks: the workload's multi-page writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// Chunks stored.
    pub chunks: u64,
    /// Bytes stored.
    pub bytes: u64,
}

/// `Blob`'s only command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum BlobCommand {
    /// Store a chunk.
    Put {
        /// The chunk.
        chunk: String,
    },
}

/// `Blob`'s only event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum BlobEvent {
    /// A chunk was stored.
    Stored {
        /// The chunk.
        chunk: String,
    },
}

/// `Blob` never refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("never")]
pub struct NeverRefused;

impl Aggregate for Blob {
    const AGGREGATE_TYPE: &'static str = "blob";
    type Command = BlobCommand;
    type Event = BlobEvent;
    type Error = NeverRefused;

    fn handle(&self, command: BlobCommand) -> Result<Vec<BlobEvent>, NeverRefused> {
        let BlobCommand::Put { chunk } = command;
        Ok(vec![BlobEvent::Stored { chunk }])
    }

    fn apply(mut self, event: &BlobEvent) -> Self {
        let BlobEvent::Stored { chunk } = event;
        self.chunks += 1;
        self.bytes += chunk.len() as u64;
        self
    }
}

/// Shape of one workload run.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Concurrent callers.
    pub workers: usize,
    /// Bank accounts `a-0..`.
    pub accounts: usize,
    /// Counters `c-0..`.
    pub counters: usize,
    /// Distinguishes tags across runs on one store (kill rounds).
    pub round: u64,
    /// Seeds each worker's choices.
    pub seed: u64,
    /// Stop each worker after this many commands (`None`: run until killed or `deadline`).
    pub max_commands: Option<u64>,
    /// Stop each worker at this instant.
    pub deadline: Option<Instant>,
    /// When non-zero, one extra worker writes `Blob` events of this many KiB back to back (soak
    /// runs: makes a kill during a multi-page `write(2)`, i.e. a torn tail, likely).
    pub blob_writer_kib: u64,
}

/// What happened to one command.
#[derive(Debug)]
pub enum Step {
    /// Committed at least one event.
    Acked(Ack),
    /// Committed but produced no event.
    Empty,
    /// The aggregate refused it (domain rule).
    Rejected,
    /// Any other error: a failure of the store.
    Failed(String),
}

/// Per-worker totals.
#[derive(Debug, Default, Clone)]
pub struct WorkerStats {
    /// Commands acknowledged with events.
    pub acked: u64,
    /// Domain refusals.
    pub rejected: u64,
    /// Store failures.
    pub failed: u64,
    /// Latency of each command, in microseconds.
    pub latencies_us: Vec<u32>,
}

/// Receives every acknowledgement and every failure message, as they happen.
pub type Sink = Arc<dyn Fn(Result<&Ack, &str>) + Send + Sync>;

/// Account name `i`.
pub fn account(i: usize) -> String {
    format!("a-{i}")
}

fn context(tag: &str) -> CommandContext {
    CommandContext::default().with_actor("reliability").with_extra(TAG_KEY, json!(tag))
}

/// Executes one typed command with `tag` and classifies the outcome.
pub async fn execute<A: Aggregate>(store: &AggregateStore, id: &str, command: A::Command, tag: &str) -> Step {
    let handle = match store.get::<A>(id).await {
        Ok(handle) => handle,
        Err(e) => return Step::Failed(format!("get {}/{id}: {e}", A::AGGREGATE_TYPE)),
    };
    match handle.execute(command, context(tag)).await {
        Ok(c) if c.n_events > 0 => Step::Acked(Ack {
            aggregate_type: A::AGGREGATE_TYPE.to_owned(),
            instance_id: id.to_owned(),
            version: c.version,
            tag: tag.to_owned(),
            positions: c.positions,
        }),
        Ok(_) => Step::Empty,
        Err(ExecuteError::Domain(_)) => Step::Rejected,
        Err(e) => Step::Failed(format!("{}/{id} {tag}: {e}", A::AGGREGATE_TYPE)),
    }
}

/// Opens every account (an `AlreadyOpen` refusal counts as open). Transfers only start after
/// this, so the process manager never targets an unopened account.
pub async fn open_accounts(store: &AggregateStore, config: &WorkloadConfig, sink: &Sink) -> Result<(), String> {
    for i in 0..config.accounts {
        let tag = format!("r{}open{i}", config.round);
        let owner = format!("owner-{i}");
        match execute::<BankAccount>(store, &account(i), BankCommand::Open { owner }, &tag).await {
            Step::Acked(ack) => sink(Ok(&ack)),
            Step::Empty | Step::Rejected => {}
            Step::Failed(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs `config.workers` concurrent workers until `max_commands` or `deadline`, reporting to
/// `sink`; returns per-worker totals.
pub async fn run_workers(store: &AggregateStore, config: &WorkloadConfig, sink: Sink) -> Vec<WorkerStats> {
    let mut tasks = Vec::new();
    for worker in 0..config.workers {
        let (store, config, sink) = (store.clone(), config.clone(), sink.clone());
        tasks.push(tokio::spawn(async move { run_worker(&store, &config, worker, &sink).await }));
    }
    if config.blob_writer_kib > 0 {
        let (store, config, sink) = (store.clone(), config.clone(), sink.clone());
        tasks.push(tokio::spawn(async move { run_blob_writer(&store, &config, &sink).await }));
    }
    let mut stats = Vec::new();
    for task in tasks {
        stats.push(task.await.unwrap_or_else(|e| WorkerStats { failed: 1, ..panic_stats(e) }));
    }
    stats
}

fn panic_stats(error: tokio::task::JoinError) -> WorkerStats {
    eprintln!("worker task failed: {error}");
    WorkerStats::default()
}

async fn run_worker(store: &AggregateStore, config: &WorkloadConfig, worker: usize, sink: &Sink) -> WorkerStats {
    let mut rng = SplitMix64::new(config.seed ^ ((worker as u64 + 1) << 40) ^ (config.round << 20));
    let mut stats = WorkerStats::default();
    for n in 0.. {
        if config.max_commands.is_some_and(|max| n >= max) || config.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let tag = format!("r{}w{worker}n{n}", config.round);
        let started = Instant::now();
        let step = random_step(store, config, &mut rng, &tag).await;
        stats.latencies_us.push(micros(started.elapsed()));
        match step {
            Step::Acked(ack) => {
                stats.acked += 1;
                sink(Ok(&ack));
            }
            Step::Empty => {}
            Step::Rejected => stats.rejected += 1,
            Step::Failed(e) => {
                stats.failed += 1;
                sink(Err(&e));
            }
        }
    }
    stats
}

async fn run_blob_writer(store: &AggregateStore, config: &WorkloadConfig, sink: &Sink) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let chunk = "t".repeat((config.blob_writer_kib << 10) as usize);
    for n in 0.. {
        if config.max_commands.is_some_and(|max| n >= max) || config.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let tag = format!("r{}bw{n}", config.round);
        match execute::<Blob>(store, "tear", BlobCommand::Put { chunk: chunk.clone() }, &tag).await {
            Step::Acked(ack) => {
                stats.acked += 1;
                sink(Ok(&ack));
            }
            Step::Failed(e) => {
                stats.failed += 1;
                sink(Err(&e));
            }
            Step::Empty | Step::Rejected => {}
        }
    }
    stats
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// One seeded random command: counters 45 %, deposits 25 %, withdrawals 10 %, transfers 17 %,
/// 16–80 KiB blobs 3 %.
async fn random_step(store: &AggregateStore, config: &WorkloadConfig, rng: &mut SplitMix64, tag: &str) -> Step {
    let roll = rng.below(100);
    let counter = format!("c-{}", rng.below(config.counters.max(1) as u64));
    let from = rng.below(config.accounts.max(1) as u64) as usize;
    let amount = rng.range(1, 100);
    match roll {
        0..=34 => execute::<Counter>(store, &counter, CounterCommand::Increment, tag).await,
        35..=44 => execute::<Counter>(store, &counter, CounterCommand::Decrement, tag).await,
        45..=69 => execute::<BankAccount>(store, &account(from), BankCommand::Deposit { amount }, tag).await,
        97..=99 => {
            let chunk = "b".repeat(rng.range(16 << 10, 80 << 10) as usize);
            let blob = format!("b-{}", rng.below(4));
            execute::<Blob>(store, &blob, BlobCommand::Put { chunk }, tag).await
        }
        70..=79 => {
            let command = BankCommand::Withdraw { amount: amount / 2 + 1 };
            execute::<BankAccount>(store, &account(from), command, tag).await
        }
        _ => {
            let offset = 1 + rng.below(config.accounts.saturating_sub(1).max(1) as u64) as usize;
            let to = account((from + offset) % config.accounts.max(1));
            let command = BankCommand::TransferOut { to, amount: amount / 3 + 1 };
            execute::<BankAccount>(store, &account(from), command, tag).await
        }
    }
}
