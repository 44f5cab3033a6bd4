//! Deterministic simulation of the core's machines against a crashing, failing disk (a VOPR in
//! the style of TigerBeetle's, a crash VFS in the style of SQLite's).
//!
//! - `SIM_SEEDS=N` (default 10,000) and `SIM_SEED_START=S` set the seed range of `sim::seeds`.
//! - `SIM_SEED=S cargo test -p evfold-tests --test main sim::one_seed -- --nocapture` replays one
//!   seed exactly and prints its trace; add `SIM_BUG=ack-before-sync` to replay a mutant's seed.

mod disk;
mod driver;
mod host;
mod invariants;
mod prng;
mod trace;
mod workload;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use driver::{Recorded, Sim, Stats};
pub use host::Bug;

/// What one successful run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// FNV-1a of the whole trace: equal for two runs of one seed.
    pub trace_hash: u64,
    /// Trace lines.
    pub trace_lines: u64,
    /// Counts.
    pub stats: Stats,
}

/// A failed run: the seed, what broke, the end of the trace, and how to replay it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The injected bug, if any.
    pub bug: Option<Bug>,
    /// What broke.
    pub message: String,
    /// The last trace lines.
    pub trace_tail: Vec<String>,
}

impl Failure {
    /// The one-line command that replays this seed exactly.
    pub fn command(&self) -> String {
        let bug = self.bug.map(|b| format!("SIM_BUG={} ", b.name())).unwrap_or_default();
        format!("{bug}SIM_SEED={} cargo test -p evfold-tests --test main sim::one_seed -- --nocapture", self.seed)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulation failed: seed={} bug={:?}: {}", self.seed, self.bug, self.message)?;
        writeln!(f, "last trace lines:")?;
        for line in &self.trace_tail {
            writeln!(f, "  {line}")?;
        }
        write!(f, "reproduce: {}", self.command())
    }
}

/// Runs one seed; panics inside the core or the harness count as failures of that seed.
pub fn run_seed(seed: u64, bug: Option<Bug>, print: bool) -> Result<Outcome, Failure> {
    let mut sim = Sim::new(seed, bug, print);
    let result = catch_unwind(AssertUnwindSafe(|| sim.run()));
    let message = match result {
        Ok(Ok(())) => {
            let stats = sim.stats.clone();
            return Ok(Outcome { trace_hash: sim.trace.hash(), trace_lines: sim.trace.len(), stats });
        }
        Ok(Err(message)) => message,
        Err(panic) => {
            let text =
                panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            format!("panicked: {}", text.unwrap_or_default())
        }
    };
    Err(Failure { seed, bug, message, trace_tail: sim.trace.tail() })
}

/// Runs `seeds` over all cores; returns the failures (lowest seed first) and the summed counts
/// of the runs that passed.
pub fn run_seeds(seeds: std::ops::Range<u64>, bug: Option<Bug>, stop_at_first: bool) -> (Vec<Failure>, Stats) {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<(Vec<Failure>, Stats)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (seeds, stop) = (seeds.clone(), &stop);
                scope.spawn(move || {
                    let (mut failures, mut ok) = (Vec::new(), Stats::default());
                    for seed in seeds.filter(|s| s % threads == t) {
                        if stop_at_first && stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        match run_seed(seed, bug, false) {
                            Ok(outcome) => ok.add(&outcome.stats),
                            Err(f) => {
                                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                                failures.push(f);
                            }
                        }
                    }
                    (failures, ok)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("seed threads do not panic")).collect()
    });
    let mut ok = Stats::default();
    results.iter().for_each(|r| ok.add(&r.1));
    let mut failures: Vec<Failure> = results.into_iter().flat_map(|r| r.0).collect();
    failures.sort_by_key(|f| f.seed);
    (failures, ok)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn env_bug() -> Option<Bug> {
    std::env::var("SIM_BUG").ok().map(|b| Bug::parse(&b).unwrap_or_else(|| panic!("unknown SIM_BUG {b:?}")))
}

/// The CI budget: 10,000 seeds (override with `SIM_SEEDS`, start with `SIM_SEED_START`).
#[test]
fn seeds() {
    let start = env_u64("SIM_SEED_START", 0);
    let n = env_u64("SIM_SEEDS", 10_000);
    let clock = std::time::Instant::now();
    let (failures, totals) = run_seeds(start..start + n, env_bug(), false);
    eprintln!(
        "sim: {n} seed(s), {} failed, in {:.1?}; totals of the passing runs: {totals:?}",
        failures.len(),
        clock.elapsed()
    );
    if let Some(first) = failures.first() {
        let seeds: Vec<u64> = failures.iter().map(|f| f.seed).take(20).collect();
        panic!("{} seed(s) failed (first: {seeds:?})\n{first}", failures.len());
    }
}

/// The simulator reaches the situations it exists for: if a change to the workload or the
/// fault model stopped producing them, the seeds would pass without testing anything.
#[test]
fn seeds_cover_the_fault_space() {
    let (failures, t) = run_seeds(0..300, None, false);
    assert!(failures.is_empty(), "{}", failures[0]);
    let covered = [
        ("crashes", t.crashes),
        ("injected IO failures", t.injected_failures),
        ("acknowledged commands", t.acked),
        ("append conflicts", t.conflicts),
        ("poisoned aggregates", t.poisoned),
        ("snapshot loads", t.snapshot_loads),
        ("idle evictions", t.evicted),
        ("torn tails truncated", t.torn_tails),
        ("transfers redelivered", t.redelivered),
        ("dead letters", t.dead_letters),
    ];
    for (what, n) in covered {
        assert!(n > 0, "300 seeds produced no {what}: {t:?}");
    }
}

/// Replays one retired machine's journal (after a JSONL round trip) into a fresh machine and
/// compares every output byte for byte.
fn replay_recorded(recorded: &Recorded) -> Result<(), String> {
    use evfold_core::examples::{Balances, BankAccount, Counter, Transfers};
    use evfold_core::journal::{outputs_jsonl, Journal, MachineSpec};
    use evfold_core::replay::{replay_aggregate, replay_process_manager, replay_projection};
    use evfold_core::{TypedAggregateFactory, TypedProcessManager, TypedProjection};

    let text = recorded.journal.to_jsonl();
    let journal = Journal::from_jsonl(&text).map_err(|e| e.to_string())?;
    let replayed = match &journal.header.machine {
        MachineSpec::Aggregate { stream, .. } if stream.aggregate_type() == "counter" => {
            replay_aggregate(&journal, &TypedAggregateFactory::<Counter>::default())
        }
        MachineSpec::Aggregate { .. } => replay_aggregate(&journal, &TypedAggregateFactory::<BankAccount>::default()),
        MachineSpec::Projection { name, .. } if name == "balances" => {
            replay_projection(&journal, Box::new(TypedProjection::<Balances>::default()))
        }
        MachineSpec::Projection { .. } => {
            replay_projection(&journal, Box::new(TypedProjection::<invariants::AuditLog>::default()))
        }
        MachineSpec::ProcessManager { .. } => {
            replay_process_manager(&journal, Box::new(TypedProcessManager::<Transfers>::default()))
        }
    }
    .map_err(|e| e.to_string())?;
    let (want, got) = (outputs_jsonl(&recorded.outputs), outputs_jsonl(&replayed));
    if want != got {
        let line = want.lines().zip(got.lines()).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!("{:?}: replay differs at output {line}", journal.header.machine));
    }
    Ok(())
}

/// Every machine the simulator ran — through crashes, IO failures, duplicate and reordered
/// completions, poisoning — replays from its journal to byte-identical outputs.
#[test]
fn simulated_machines_replay_from_their_journals() {
    let mut machines = 0;
    for seed in 0..env_u64("SIM_JOURNAL_SEEDS", 200) {
        let mut sim = Sim::new(seed, None, false);
        sim.journals = Some(Vec::new());
        sim.run().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        sim.retire_all();
        for recorded in sim.journals.take().unwrap_or_default() {
            machines += 1;
            replay_recorded(&recorded).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
    }
    assert!(machines > 1000, "only {machines} machines journaled");
}

/// Replays `SIM_SEED` (default 1) with its full trace on stderr.
#[test]
fn one_seed() {
    let seed = env_u64("SIM_SEED", 1);
    match run_seed(seed, env_bug(), true) {
        Ok(outcome) => eprintln!("seed {seed} passed: {outcome:?}"),
        Err(failure) => panic!("{failure}"),
    }
}

/// Same seed, same trace; different seeds, different traces.
#[test]
fn same_seed_same_trace() {
    for seed in [3, 77, 4242] {
        let a = run_seed(seed, None, false).unwrap_or_else(|f| panic!("{f}"));
        let b = run_seed(seed, None, false).unwrap_or_else(|f| panic!("{f}"));
        assert_eq!((a.trace_hash, a.trace_lines), (b.trace_hash, b.trace_lines), "seed {seed} diverged");
        assert!(a.trace_lines > 20, "seed {seed}: a trace of {} lines exercises nothing", a.trace_lines);
    }
    let hashes: std::collections::BTreeSet<u64> =
        (100..110).map(|s| run_seed(s, None, false).map(|o| o.trace_hash).unwrap_or_else(|f| panic!("{f}"))).collect();
    assert_eq!(hashes.len(), 10, "ten seeds, ten different runs");
}

/// Each injected bug makes the simulator fail within the CI budget (far fewer seeds, in fact).
#[test]
fn injected_bugs_are_caught() {
    let bugs = [
        Bug::AckBeforeSync,
        Bug::BufferedAggregates,
        Bug::ReadUnsynced,
        Bug::SwallowFsyncError,
        Bug::NextPastBatch,
        Bug::SplitAppends,
        Bug::ExposeFailedSync,
    ];
    for bug in bugs {
        let (failures, _) = run_seeds(0..10_000, Some(bug), true);
        let first = failures.first().unwrap_or_else(|| panic!("{bug:?} survived 10,000 seeds"));
        eprintln!("{bug:?} caught by seed {}: {}\n  {}", first.seed, first.message, first.command());
        let again = run_seed(first.seed, Some(bug), false).expect_err("a failing seed fails again");
        assert_eq!(again.message, first.message, "replaying the seed reproduces the failure");
        assert!(run_seed(first.seed, None, false).is_ok(), "without the bug, seed {} passes", first.seed);
    }
}
