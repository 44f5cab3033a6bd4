//! Replay: feed a recorded [`Journal`] into a fresh machine (same inputs, same outputs, byte for
//! byte), and replay a store's history through a different aggregate version (a new plugin
//! build, a changed `apply`) to report every divergence as typed, serializable data.
//!
//! Two comparisons are offered:
//! - [`compare_events`]: a stream's stored events (no journal needed) folded through the
//!   baseline and the candidate side by side; reports every point where the states start to
//!   differ and every event the candidate cannot apply.
//! - [`compare_journal`]: an aggregate journal replayed through the machine with the baseline in
//!   charge and the candidate shadowing it in lockstep; besides state differences it reports
//!   each command the candidate now rejects, now accepts, or decides into different events —
//!   decided against exactly the state (group commit included) the original decision saw.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate_machine::{AggregateConfig, AggregateMachine};
use crate::decide_context::DecideContext;
use crate::domain::{AggregateFactory, Decision, DynAggregate, DynProcessManager, DynProjection, Fault};
use crate::io::IoResult;
use crate::journal::{InputRecord, Journal, JournalError, Machine, MachineSpec, OutputRecord};
use crate::reader::{ProcessManagerMachine, ProjectionMachine, ReaderConfig};
use crate::types::{EventRecord, Payload, StreamId};

/// Why a replay could not run (as opposed to a divergence, which is a result).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayError {
    /// The journal is for another kind of machine than the replay function.
    #[error("journal drives a {found} machine, not a {wanted}")]
    WrongMachine {
        /// Kind in the journal header.
        found: &'static str,
        /// Kind the caller asked to replay.
        wanted: &'static str,
    },
    /// The domain code given is for another aggregate type, projection or process manager.
    #[error("journal is for {journal}, the code given is for {code}")]
    WrongDomain {
        /// Name in the journal.
        journal: String,
        /// Name of the code.
        code: String,
    },
    /// A journal entry does not fit the machine.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The domain code could not be instantiated.
    #[error("could not instantiate the domain code: {0}")]
    Instantiate(Fault),
}

/// Replays an aggregate journal into a fresh machine built with `factory`; returns every output.
pub fn replay_aggregate(journal: &Journal, factory: &dyn AggregateFactory) -> Result<Vec<OutputRecord>, ReplayError> {
    let aggregate = factory.instantiate().map_err(ReplayError::Instantiate)?;
    let (stream, config) = aggregate_spec(journal, factory.aggregate_type())?;
    let machine = AggregateMachine::new(stream, aggregate, config, journal.header.start);
    drive(machine, journal, |_| {})
}

/// Replays a projection journal into a fresh machine around `projection`.
pub fn replay_projection(
    journal: &Journal,
    projection: Box<dyn DynProjection>,
) -> Result<Vec<OutputRecord>, ReplayError> {
    let MachineSpec::Projection { name, config } = &journal.header.machine else {
        return Err(wrong_machine(journal, "projection"));
    };
    check_name(name, projection.name())?;
    let machine = ProjectionMachine::new(projection, ReaderConfig::from(*config), journal.header.start);
    drive(machine, journal, |_| {})
}

/// Replays a process-manager journal into a fresh machine around `manager`.
pub fn replay_process_manager(
    journal: &Journal,
    manager: Box<dyn DynProcessManager>,
) -> Result<Vec<OutputRecord>, ReplayError> {
    let MachineSpec::ProcessManager { name, config } = &journal.header.machine else {
        return Err(wrong_machine(journal, "process_manager"));
    };
    check_name(name, manager.name())?;
    let machine = ProcessManagerMachine::new(manager, ReaderConfig::from(*config), journal.header.start);
    drive(machine, journal, |_| {})
}

fn wrong_machine(journal: &Journal, wanted: &'static str) -> ReplayError {
    ReplayError::WrongMachine { found: journal.header.machine.kind(), wanted }
}

fn check_name(journal: &str, code: &str) -> Result<(), ReplayError> {
    if journal == code {
        Ok(())
    } else {
        Err(ReplayError::WrongDomain { journal: journal.to_owned(), code: code.to_owned() })
    }
}

fn aggregate_spec(journal: &Journal, aggregate_type: &str) -> Result<(StreamId, AggregateConfig), ReplayError> {
    let MachineSpec::Aggregate { stream, config } = &journal.header.machine else {
        return Err(wrong_machine(journal, "aggregate"));
    };
    check_name(stream.aggregate_type(), aggregate_type)?;
    Ok((stream.clone(), AggregateConfig::from(*config)))
}

/// Feeds every entry (calling `before` with its index first), draining outputs after each.
fn drive<M: Machine>(
    mut machine: M,
    journal: &Journal,
    mut before: impl FnMut(usize),
) -> Result<Vec<OutputRecord>, ReplayError> {
    let mut outputs = Vec::new();
    drain(&mut machine, &mut outputs);
    for (index, entry) in journal.entries.iter().enumerate() {
        let input = M::unrecord(&entry.input).ok_or(JournalError::WrongInput {
            entry: index,
            input: entry.input.kind(),
            machine: M::KIND,
        })?;
        before(index);
        machine.handle(entry.now, input);
        drain(&mut machine, &mut outputs);
    }
    Ok(outputs)
}

fn drain<M: Machine>(machine: &mut M, outputs: &mut Vec<OutputRecord>) {
    while let Some(output) = machine.poll() {
        outputs.push((&output).into());
    }
}

/// Every divergence found by replaying history through a candidate aggregate version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DivergenceReport {
    /// Aggregate type compared.
    pub aggregate_type: String,
    /// Streams replayed.
    pub streams: u64,
    /// Events folded through both versions.
    pub events: u64,
    /// Commands decided by both versions (journal replays only).
    pub commands: u64,
    /// Events after which the two states differed (a long divergence is reported once, counted here per event).
    pub state_mismatches: u64,
    /// Each divergence, in replay order.
    pub divergences: Vec<Divergence>,
}

impl DivergenceReport {
    /// Whether the candidate behaved exactly like the baseline.
    pub fn is_clean(&self) -> bool {
        self.divergences.is_empty()
    }

    /// Adds another stream's report to this one.
    pub fn merge(&mut self, other: DivergenceReport) {
        if self.aggregate_type.is_empty() {
            self.aggregate_type = other.aggregate_type;
        }
        self.streams += other.streams;
        self.events += other.events;
        self.commands += other.commands;
        self.state_mismatches += other.state_mismatches;
        self.divergences.extend(other.divergences);
    }
}

impl fmt::Display for DivergenceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} stream(s), {} event(s), {} command(s) replayed; {} divergence(s)",
            self.aggregate_type,
            self.streams,
            self.events,
            self.commands,
            self.divergences.len()
        )?;
        for d in &self.divergences {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

/// One point where the candidate behaved differently from the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    /// The stream.
    pub stream: StreamId,
    /// Stream version at the divergence: after the event for a state difference, the version
    /// decided against for a command (group commit included); `None` when unknown.
    pub version: Option<u64>,
    /// Index of the journal entry being handled (`None` for an events-only replay).
    pub entry: Option<usize>,
    /// What differed.
    pub kind: DivergenceKind,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.stream)?;
        if let Some(v) = self.version {
            write!(f, " @v{v}")?;
        }
        if let Some(e) = self.entry {
            write!(f, " (entry {e})")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// What differed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DivergenceKind {
    /// After folding the same events, the states differ.
    StateDiffers {
        /// The baseline's state.
        baseline: Value,
        /// The candidate's state.
        candidate: Value,
    },
    /// A command the baseline accepted is now rejected.
    NowRejected {
        /// The command.
        command: Payload,
        /// The events the baseline decided.
        baseline: Vec<Payload>,
        /// The candidate's reason.
        reason: String,
    },
    /// A command the baseline rejected is now accepted.
    NowAccepted {
        /// The command.
        command: Payload,
        /// The baseline's reason.
        reason: String,
        /// The events the candidate decided.
        candidate: Vec<Payload>,
    },
    /// Both accepted the command but decided different events.
    DifferentEvents {
        /// The command.
        command: Payload,
        /// The baseline's events.
        baseline: Vec<Payload>,
        /// The candidate's events.
        candidate: Vec<Payload>,
    },
    /// The candidate's code failed (cannot decode an event, a snapshot, a command; a plugin trap).
    CandidateFault {
        /// What it was doing: `apply`, `decide`, `restore`, `snapshot`, `reset`.
        during: String,
        /// The error.
        error: String,
    },
}

impl fmt::Display for DivergenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |events: &[Payload]| events.iter().map(|e| e.type_name.as_str()).collect::<Vec<_>>().join(", ");
        match self {
            DivergenceKind::StateDiffers { baseline, candidate } => {
                write!(f, "state differs: baseline {baseline}, candidate {candidate}")
            }
            DivergenceKind::NowRejected { command, baseline, reason } => {
                write!(f, "{} now rejected ({reason}); baseline decided [{}]", command.type_name, names(baseline))
            }
            DivergenceKind::NowAccepted { command, reason, candidate } => {
                write!(
                    f,
                    "{} now accepted as [{}]; baseline rejected it ({reason})",
                    command.type_name,
                    names(candidate)
                )
            }
            DivergenceKind::DifferentEvents { command, baseline, candidate } => write!(
                f,
                "{} decided differently: baseline {}, candidate {}",
                command.type_name,
                serde_json::to_string(baseline).unwrap_or_default(),
                serde_json::to_string(candidate).unwrap_or_default()
            ),
            DivergenceKind::CandidateFault { during, error } => write!(f, "candidate failed in {during}: {error}"),
        }
    }
}

/// Folds a stream's stored events through `baseline` and `candidate` side by side.
pub fn compare_events(
    stream: &StreamId,
    records: &[EventRecord],
    baseline: &dyn AggregateFactory,
    candidate: &dyn AggregateFactory,
) -> Result<DivergenceReport, ReplayError> {
    let log = Arc::new(Mutex::new(ShadowLog::new(stream.clone())));
    let mut shadow = Shadow::new(baseline, candidate, log.clone())?;
    for record in records {
        shadow.apply(&[record.payload()]).map_err(ReplayError::Instantiate)?;
    }
    drop(shadow);
    Ok(finish(&log, baseline.aggregate_type()))
}

/// Replays an aggregate journal with `baseline` in charge and `candidate` shadowing it.
pub fn compare_journal(
    journal: &Journal,
    baseline: &dyn AggregateFactory,
    candidate: &dyn AggregateFactory,
) -> Result<DivergenceReport, ReplayError> {
    let (stream, config) = aggregate_spec(journal, baseline.aggregate_type())?;
    check_name(stream.aggregate_type(), candidate.aggregate_type())?;
    let log = Arc::new(Mutex::new(ShadowLog::new(stream.clone())));
    let shadow = Shadow::new(baseline, candidate, log.clone())?;
    let machine = AggregateMachine::new(stream, Box::new(shadow), config, journal.header.start);
    drive(machine, journal, |index| {
        let mut log = lock(&log);
        log.entry = Some(index);
        if let InputRecord::Completed { result: IoResult::Snapshot(Some(s)), .. } = &journal.entries[index].input {
            log.restore_seq = Some(s.seq);
        }
    })?;
    Ok(finish(&log, baseline.aggregate_type()))
}

fn finish(log: &Mutex<ShadowLog>, aggregate_type: &str) -> DivergenceReport {
    let mut log = lock(log);
    DivergenceReport {
        aggregate_type: aggregate_type.to_owned(),
        streams: 1,
        events: log.events,
        commands: log.commands,
        state_mismatches: log.state_mismatches,
        divergences: std::mem::take(&mut log.divergences),
    }
}

fn lock(log: &Mutex<ShadowLog>) -> std::sync::MutexGuard<'_, ShadowLog> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the shadow pair observed; shared with the driver, which sets the entry index.
struct ShadowLog {
    stream: StreamId,
    entry: Option<usize>,
    /// Seq of a snapshot about to be restored (set by the driver before the completion).
    restore_seq: Option<u64>,
    /// Version of the baseline's state, when known.
    version: Option<u64>,
    /// Whether the candidate lost track (a failed restore) until the next reset.
    desynced: bool,
    /// Whether the last comparison found the states different.
    differing: bool,
    events: u64,
    commands: u64,
    state_mismatches: u64,
    divergences: Vec<Divergence>,
}

impl ShadowLog {
    fn new(stream: StreamId) -> Self {
        ShadowLog {
            stream,
            entry: None,
            restore_seq: None,
            version: Some(0),
            desynced: false,
            differing: false,
            events: 0,
            commands: 0,
            state_mismatches: 0,
            divergences: Vec::new(),
        }
    }

    fn report(&mut self, kind: DivergenceKind) {
        let divergence = Divergence { stream: self.stream.clone(), version: self.version, entry: self.entry, kind };
        self.divergences.push(divergence);
    }

    fn candidate_fault(&mut self, during: &str, fault: &Fault) {
        self.report(DivergenceKind::CandidateFault { during: during.to_owned(), error: fault.to_string() });
    }
}

/// A `DynAggregate` that runs the baseline (whose results the machine uses) and the candidate
/// in lockstep, logging every difference.
struct Shadow {
    baseline: Box<dyn DynAggregate>,
    candidate: Box<dyn DynAggregate>,
    log: Arc<Mutex<ShadowLog>>,
}

impl Shadow {
    fn new(
        baseline: &dyn AggregateFactory,
        candidate: &dyn AggregateFactory,
        log: Arc<Mutex<ShadowLog>>,
    ) -> Result<Self, ReplayError> {
        check_name(baseline.aggregate_type(), candidate.aggregate_type())?;
        Ok(Shadow {
            baseline: baseline.instantiate().map_err(ReplayError::Instantiate)?,
            candidate: candidate.instantiate().map_err(ReplayError::Instantiate)?,
            log,
        })
    }

    fn desynced(&self) -> bool {
        lock(&self.log).desynced
    }

    fn compare_states(&mut self) {
        let baseline = self.baseline.snapshot();
        let mut log = lock(&self.log);
        if log.desynced {
            return;
        }
        let candidate = match self.candidate.snapshot() {
            Ok(c) => c,
            Err(fault) => return log.candidate_fault("snapshot", &fault),
        };
        let Ok(baseline) = baseline else { return };
        let differs = baseline != candidate;
        if differs {
            log.state_mismatches += 1;
            if !log.differing {
                log.report(DivergenceKind::StateDiffers { baseline, candidate });
            }
        }
        log.differing = differs;
    }

    fn compare_decisions(&self, command: &Payload, baseline: &Decision, candidate: Result<Decision, Fault>) {
        let mut log = lock(&self.log);
        log.commands += 1;
        if log.desynced {
            return;
        }
        let kind = match (baseline, candidate) {
            (_, Err(fault)) => return log.candidate_fault("decide", &fault),
            (Ok(b), Ok(Err(r))) => {
                DivergenceKind::NowRejected { command: command.clone(), baseline: b.clone(), reason: r.message }
            }
            (Err(r), Ok(Ok(c))) => {
                DivergenceKind::NowAccepted { command: command.clone(), reason: r.message.clone(), candidate: c }
            }
            (Ok(b), Ok(Ok(c))) if *b != c => {
                DivergenceKind::DifferentEvents { command: command.clone(), baseline: b.clone(), candidate: c }
            }
            _ => return,
        };
        log.report(kind);
    }
}

impl DynAggregate for Shadow {
    fn aggregate_type(&self) -> &str {
        self.baseline.aggregate_type()
    }

    fn decide(&mut self, command: &Payload, context: &DecideContext) -> Result<Decision, Fault> {
        let decision = self.baseline.decide(command, context)?;
        if self.desynced() {
            lock(&self.log).commands += 1;
        } else {
            let candidate = self.candidate.decide(command, context);
            self.compare_decisions(command, &decision, candidate);
        }
        Ok(decision)
    }

    fn apply(&mut self, events: &[Payload]) -> Result<(), Fault> {
        // One event at a time, so a state difference names the version where the states part.
        for event in events {
            self.baseline.apply(std::slice::from_ref(event))?;
            // A candidate that lost track is not fed further: its state is meaningless.
            let result = if self.desynced() { Ok(()) } else { self.candidate.apply(std::slice::from_ref(event)) };
            {
                let mut log = lock(&self.log);
                log.events += 1;
                log.version = log.version.map(|v| v + 1);
                if let Err(fault) = result {
                    if !log.desynced {
                        log.candidate_fault("apply", &fault);
                        log.desynced = true;
                    }
                }
            }
            self.compare_states();
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Value, Fault> {
        self.baseline.snapshot()
    }

    fn restore(&mut self, snapshot: &Value) -> Result<(), Fault> {
        self.baseline.restore(snapshot)?;
        let result = self.candidate.restore(snapshot);
        let mut log = lock(&self.log);
        log.version = log.restore_seq.take();
        log.differing = false;
        if let Err(fault) = result {
            log.candidate_fault("restore", &fault);
            log.desynced = true;
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<(), Fault> {
        self.baseline.reset()?;
        let result = self.candidate.reset();
        let mut log = lock(&self.log);
        log.version = Some(0);
        log.differing = false;
        log.desynced = false;
        if let Err(fault) = result {
            log.candidate_fault("reset", &fault);
            log.desynced = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Cross-target determinism: this test also runs on wasm32-wasip1, so the same checked-in
    //! inputs replayed there must give the same bytes as on x86_64. The fixture is recorded by
    //! `tests/journal` (`EVFOLD_BLESS=1 cargo test -p evfold-tests --test main journal::`).

    use super::{replay_aggregate, replay_process_manager, replay_projection, ReplayError};
    use crate::domain::{TypedAggregateFactory, TypedProcessManager, TypedProjection};
    use crate::examples::{Balances, BankAccount, Transfers};
    use crate::journal::{outputs_jsonl, Journal, OutputRecord};

    fn fnv1a(text: &str) -> u64 {
        text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    }

    fn check(
        journal_text: &str,
        outputs_text: &str,
        replay: impl Fn(&Journal) -> Result<Vec<OutputRecord>, ReplayError>,
    ) {
        let journal = Journal::from_jsonl(journal_text).expect("fixture parses");
        assert_eq!(journal.to_jsonl(), journal_text, "journal text round-trips byte for byte (floats included)");
        let text = outputs_jsonl(&replay(&journal).expect("replays"));
        assert_eq!(fnv1a(&text), fnv1a(outputs_text), "output hash differs from the x86_64 recording");
        assert_eq!(text, outputs_text);
    }

    #[test]
    fn checked_in_journals_replay_to_checked_in_outputs() {
        check(
            include_str!("../testdata/replay/bank.journal.jsonl"),
            include_str!("../testdata/replay/bank.outputs.jsonl"),
            |j| replay_aggregate(j, &TypedAggregateFactory::<BankAccount>::default()),
        );
        check(
            include_str!("../testdata/replay/balances.journal.jsonl"),
            include_str!("../testdata/replay/balances.outputs.jsonl"),
            |j| replay_projection(j, Box::new(TypedProjection::<Balances>::default())),
        );
        check(
            include_str!("../testdata/replay/transfers.journal.jsonl"),
            include_str!("../testdata/replay/transfers.outputs.jsonl"),
            |j| replay_process_manager(j, Box::new(TypedProcessManager::<Transfers>::default())),
        );
    }
}
