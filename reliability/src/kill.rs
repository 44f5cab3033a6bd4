//! The kill-test driver: run the workload in a child process (`evfold-killee`), `SIGKILL` it at
//! a seeded random moment, reopen the store and check every acknowledgement; repeat.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ack::Ack;
use crate::check::{check_store, CheckReport};
use crate::error::ReliabilityError;
use crate::rng::SplitMix64;

/// Shape of a kill-test run.
#[derive(Debug, Clone)]
pub struct KillConfig {
    /// The child binary (`evfold-killee`).
    pub child: PathBuf,
    /// Kill rounds.
    pub rounds: u32,
    /// Seeds kill times and the child's workload.
    pub seed: u64,
    /// Kill between this many ms ...
    pub min_kill_ms: u64,
    /// ... and this many ms after the child reported READY.
    pub max_kill_ms: u64,
    /// One round in this many kills the child during open/recovery instead (0 = never).
    pub early_kill_every: u64,
    /// Concurrent callers in the child.
    pub workers: usize,
    /// Bank accounts.
    pub accounts: usize,
    /// Counters.
    pub counters: usize,
    /// Stop at the first round whose check counts a violation (the report still says which).
    pub stop_on_violation: bool,
    /// KiB per event of an extra back-to-back blob writer in the child (0 = none).
    pub blob_writer_kib: u64,
    /// Print one line per 10 rounds to stderr.
    pub progress: bool,
}

impl KillConfig {
    /// The CI defaults: 50 rounds, kills 10–150 ms into the workload (about 40 s in debug).
    pub fn ci(child: PathBuf) -> Self {
        KillConfig {
            child,
            rounds: 50,
            seed: 0x5eed,
            min_kill_ms: 10,
            max_kill_ms: 150,
            early_kill_every: 8,
            workers: 6,
            accounts: 12,
            counters: 16,
            stop_on_violation: true,
            blob_writer_kib: 0,
            progress: false,
        }
    }
}

/// Totals of a kill-test run.
#[derive(Debug, Clone, Default)]
pub struct KillReport {
    /// Rounds run.
    pub rounds: u32,
    /// Rounds whose kill landed during open/recovery (before READY).
    pub early_kills: u32,
    /// Torn tails repaired on reopen, summed over rounds.
    pub torn_tails: usize,
    /// Commands that failed in the child with a store error (should stay 0).
    pub child_errors: Vec<String>,
    /// The final check (cumulative over every round).
    pub last: CheckReport,
    /// Wall time.
    pub elapsed: Duration,
    /// Of which spent reopening and checking the store.
    pub checking: Duration,
}

/// Runs `config.rounds` kill rounds on the store at `dir`, checking after each. A hard error
/// (corrupt log, misplaced event, projection mismatch) ends the run with `Err`; counted
/// violations (lost, duplicated, ...) are in the report's `last.violations()`.
pub fn run_kill_test(dir: &Path, config: &KillConfig) -> Result<KillReport, ReliabilityError> {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut rng = SplitMix64::new(config.seed);
    let mut acks: Vec<Ack> = Vec::new();
    let mut report = KillReport::default();
    for round in 0..config.rounds {
        let early = config.early_kill_every > 0 && rng.below(config.early_kill_every) == 0;
        let delay = Duration::from_millis(if early {
            rng.range(0, 40)
        } else {
            rng.range(config.min_kill_ms, config.max_kill_ms)
        });
        let outcome = run_round(dir, config, u64::from(round), early, delay)?;
        report.early_kills += u32::from(outcome.early);
        report.child_errors.extend(outcome.errors);
        acks.extend(outcome.acks);
        let check_started = Instant::now();
        let check = runtime.block_on(check_store(dir, &acks))?;
        report.checking += check_started.elapsed();
        report.torn_tails += check.torn_tails;
        report.rounds = round + 1;
        report.last = check;
        if config.progress && (round + 1) % 10 == 0 {
            eprintln!("round {}: {} ({:.0} s)", round + 1, report.last.summary(), started.elapsed().as_secs_f64());
        }
        if config.stop_on_violation && !report.last.violations().is_empty() {
            break;
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// What one child run reported before it died.
struct RoundOutcome {
    acks: Vec<Ack>,
    errors: Vec<String>,
    early: bool,
}

fn run_round(
    dir: &Path,
    config: &KillConfig,
    round: u64,
    early: bool,
    delay: Duration,
) -> Result<RoundOutcome, ReliabilityError> {
    let mut child = spawn_child(dir, config, round)?;
    let stdout = child.stdout.take().ok_or_else(|| ReliabilityError::Child("no stdout".into()))?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let reader = read_lines(stdout, ready_tx);
    if !early && ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
        child.kill().ok();
        child.wait().ok();
        let lines = reader.join().unwrap_or_default();
        return Err(ReliabilityError::Child(format!("round {round}: no READY within 60 s: {lines:?}")));
    }
    std::thread::sleep(delay);
    if let Some(status) = child.try_wait()? {
        let lines = reader.join().unwrap_or_default();
        return Err(ReliabilityError::Child(format!("child exited by itself ({status}) in round {round}: {lines:?}")));
    }
    child.kill()?; // SIGKILL
    child.wait()?;
    let lines = reader.join().map_err(|_| ReliabilityError::Child("reader thread panicked".into()))?;
    let acks = lines.iter().filter_map(|l| Ack::parse(l)).collect();
    let errors = lines.iter().filter_map(|l| l.strip_prefix("ERR ").map(str::to_owned)).collect();
    Ok(RoundOutcome { acks, errors, early })
}

fn spawn_child(dir: &Path, config: &KillConfig, round: u64) -> Result<Child, ReliabilityError> {
    Command::new(&config.child)
        .arg(dir)
        .args([config.seed, round].map(|n| n.to_string()))
        .args([config.workers, config.accounts, config.counters].map(|n| n.to_string()))
        .arg(config.blob_writer_kib.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| ReliabilityError::Child(format!("spawn {}: {e}", config.child.display())))
}

/// Collects complete lines until EOF (the kill closes the pipe); signals READY once. A last line
/// cut by the kill has no newline and is dropped: it was never fully acknowledged.
fn read_lines(stdout: std::process::ChildStdout, ready: mpsc::Sender<()>) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        let mut buf = String::new();
        while matches!(reader.read_line(&mut buf), Ok(n) if n > 0) {
            if let Some(line) = buf.strip_suffix('\n') {
                if line == "READY" {
                    let _ = ready.send(());
                }
                lines.push(line.to_owned());
            }
            buf.clear();
        }
        lines
    })
}
