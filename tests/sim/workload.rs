//! Random client workloads over counters and bank accounts, and the seed-derived shape of a run
//! (sizes, fault rates, machine configuration).

use evfold_core::examples::{BankAccount, BankCommand, Counter, CounterCommand};
use evfold_core::{
    to_payload, Aggregate, AggregateConfig, CommandContext, ExpectedVersion, IdSeed, Payload, ReaderConfig, StreamId,
};

use super::prng::SimRng;

/// The seed-derived shape of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Counter streams.
    pub counters: Vec<StreamId>,
    /// Bank-account streams.
    pub accounts: Vec<StreamId>,
    /// Client commands to issue.
    pub n_commands: u32,
    /// Crashes during the workload (one more always follows it).
    pub n_crashes: u32,
    /// Per-mille chance that a storage IO fails.
    pub io_fail: u64,
    /// Per-mille chance that another writer appends just before an append (a `Conflict`).
    pub foreign_write: u64,
    /// Largest latency of one IO step, in ms.
    pub latency_ms_max: u64,
    /// Aggregate machine tuning.
    pub aggregate: AggregateConfig,
    /// Reader machine tuning.
    pub reader: ReaderConfig,
}

impl Plan {
    /// Draws a plan.
    pub fn draw(rng: &mut SimRng) -> Plan {
        let n_counters = rng.range(1, 2);
        let n_accounts = rng.range(2, 3);
        let stream = |kind: &str, prefix: &str, i: u64| StreamId::new(kind, format!("{prefix}{i}")).expect("valid");
        let plan = Plan {
            counters: (0..n_counters).map(|i| stream(Counter::AGGREGATE_TYPE, "c", i)).collect(),
            accounts: (0..n_accounts).map(|i| stream(BankAccount::AGGREGATE_TYPE, "a", i)).collect(),
            n_commands: rng.range(8, 30) as u32,
            n_crashes: *rng.pick(&[0, 1, 1, 2, 3]),
            io_fail: *rng.pick(&[0, 10, 30, 80]),
            foreign_write: *rng.pick(&[0, 0, 40]),
            latency_ms_max: rng.range(0, 3),
            aggregate: AggregateConfig {
                snapshot_every: [None, Some(2), Some(3), Some(5)][rng.below(4) as usize],
                sync_each_batch: true,
                max_batch_events: rng.range(1, 6) as usize,
                conflict_retries: rng.range(1, 4) as u32,
                idle_timeout_ms: [None, Some(rng.range(1, 8))][rng.below(2) as usize],
                ..AggregateConfig::default()
            },
            reader: ReaderConfig {
                batch_size: rng.range(1, 4) as usize,
                checkpoint_every_events: rng.range(1, 3),
                max_dispatch_attempts: rng.range(1, 3) as u32,
                retry_backoff_ms: rng.range(1, 4),
                ..ReaderConfig::default()
            },
        };
        coalesce_checkpoints(plan)
    }
}

/// About half the plans coalesce reader checkpoints (by count, by time, after a quiet period),
/// derived from values already drawn, so the random stream and every seed's workload stay the
/// same.
fn coalesce_checkpoints(mut plan: Plan) -> Plan {
    let reader = &mut plan.reader;
    if reader.retry_backoff_ms % 2 == 1 {
        reader.checkpoint_every_events = 3 + reader.checkpoint_every_events * 2;
        reader.checkpoint_every_ms = Some(5 + reader.retry_backoff_ms * 3);
        reader.checkpoint_quiet_ms = Some(reader.retry_backoff_ms);
    }
    plan
}

/// One client command.
#[derive(Debug, Clone)]
pub struct ClientCommand {
    /// Target stream.
    pub stream: StreamId,
    /// The command.
    pub command: Payload,
    /// Its context.
    pub context: CommandContext,
    /// Concurrency check.
    pub expected: ExpectedVersion,
}

/// Draws client commands and their arrival gaps.
pub struct Workload {
    rng: SimRng,
    issued: u32,
}

impl Workload {
    /// A workload drawing from `rng`.
    pub fn new(rng: SimRng) -> Self {
        Workload { rng, issued: 0 }
    }

    /// Milliseconds until the next command (0 often, to build group commits).
    pub fn gap_ms(&mut self) -> u64 {
        *self.rng.pick(&[0, 0, 1, 2, 5])
    }

    /// The next command.
    pub fn next(&mut self, plan: &Plan) -> ClientCommand {
        self.issued += 1;
        let bank = self.rng.below(3) > 0;
        let (stream, command) = if bank { self.bank(plan) } else { self.counter(plan) };
        let expected = match self.rng.below(20) {
            0 => ExpectedVersion::NoStream,
            1 => ExpectedVersion::Exact(self.rng.below(6)),
            _ => ExpectedVersion::Any,
        };
        let context = CommandContext::default()
            .with_actor("sim")
            .with_correlation_id(format!("w{}", self.issued))
            .with_extra("weight", serde_json::json!(f64::from(self.issued) / 8.0));
        ClientCommand { stream, command, context, expected }
    }

    fn counter(&mut self, plan: &Plan) -> (StreamId, Payload) {
        let stream = self.rng.pick(&plan.counters).clone();
        let command = match self.rng.below(10) {
            0..=4 => CounterCommand::Increment,
            5..=7 => CounterCommand::Decrement,
            _ => CounterCommand::Reset,
        };
        (stream, to_payload(&command).expect("counter commands are tagged"))
    }

    fn bank(&mut self, plan: &Plan) -> (StreamId, Payload) {
        let stream = self.rng.pick(&plan.accounts).clone();
        let command = match self.rng.below(20) {
            0..=3 => BankCommand::Open { owner: format!("owner-{}", stream.instance_id()) },
            4..=9 => BankCommand::Deposit { amount: self.rng.range(1, 100) },
            10..=12 => BankCommand::Withdraw { amount: self.rng.range(0, 120) },
            _ => {
                let to = self.rng.pick(&plan.accounts).instance_id().to_owned();
                BankCommand::TransferOut { to, amount: self.rng.range(1, 60) }
            }
        };
        (stream, to_payload(&command).expect("bank commands are tagged"))
    }
}

/// Unique event-id entropy for the `n`-th command of a run (room for 65,536 events each).
pub fn id_seed(seed: u64, n: u64) -> IdSeed {
    IdSeed((u128::from(seed) << 64) | (u128::from(n) << 16))
}
