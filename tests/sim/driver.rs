//! The simulation driver: runs real aggregate, projection and process-manager machines against
//! the simulated store, delivering IO completions in random order and latency, injecting IO
//! failures, crashing and restarting, and checking the invariants after every restart.

use std::collections::BTreeMap;

use evfold_core::examples::{Balances, BankAccount, Counter, CounterEvent, Transfers};
use evfold_core::{
    to_payload, Aggregate, AggregateFactory, AggregateInput, AggregateMachine, CommandError, CommandId, Committed,
    DynAggregate, DynProjection, ExpectedVersion, IdSeed, Io, IoError, IoErrorKind, IoId, IoResult, NewEvent,
    Notification, Output, ProcessManager, ProcessManagerMachine, ProjectionMachine, ReaderInput, StreamId, Timestamp,
    TypedAggregateFactory, TypedProcessManager, TypedProjection,
};
use serde_json::Value;

use evfold_core::journal::{Journal, Journaled, Machine, OutputRecord};

use super::host::{Bug, Commit, SimStore};
use super::invariants::{check_final, check_store, fold_stream, AuditLog, LiveStates, Model};
use super::prng::SimRng;
use super::trace::{self, Trace};
use super::workload::{id_seed, Plan, Workload};

/// Most steps one phase may take before the run counts as livelocked.
const MAX_STEPS: u64 = 200_000;

/// Chance (per mille) that a completion is delivered twice.
const DUPLICATE_PER_MILLE: u64 = 10;

/// Which machine an IO belongs to, and which incarnation of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Aggregate(StreamId),
    Reader(usize),
}

#[derive(Debug)]
enum Status {
    /// Not yet executed; runs at `at`.
    Queued,
    /// A dispatch waiting for its target's reply.
    Awaiting,
    /// Executed; the completion (and the commit of a two-step write) is delivered at `at`.
    Executed(IoResult, Option<Commit>),
}

#[derive(Debug)]
struct Op {
    owner: Owner,
    generation: u64,
    io: IoId,
    request: Io,
    at: Timestamp,
    status: Status,
}

/// Someone waiting for an aggregate's reply: a client, or a process manager's dispatch.
struct Call {
    stream: StreamId,
    ids: IdSeed,
    dispatch: Option<(u64, String)>,
}

enum Reader {
    Projection(Journaled<ProjectionMachine>),
    Manager(Journaled<ProcessManagerMachine>),
}

impl Reader {
    fn handle(&mut self, now: Timestamp, input: ReaderInput) {
        match self {
            Reader::Projection(m) => m.handle(now, input),
            Reader::Manager(m) => m.handle(now, input),
        }
    }
    fn poll(&mut self) -> Option<Output> {
        match self {
            Reader::Projection(m) => m.poll(),
            Reader::Manager(m) => m.poll(),
        }
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        match self {
            Reader::Projection(m) => m.poll_timeout().map(|t| t.0),
            Reader::Manager(m) => m.poll_timeout().map(|t| t.0),
        }
    }
    fn name(&self) -> &str {
        match self {
            Reader::Projection(m) => m.machine().name(),
            Reader::Manager(m) => m.machine().name(),
        }
    }
    fn is_failed(&self) -> bool {
        match self {
            Reader::Projection(m) => m.machine().is_failed(),
            Reader::Manager(m) => m.machine().is_failed(),
        }
    }
    fn state(&mut self) -> Value {
        match self {
            Reader::Projection(m) => m.machine_mut().state().expect("typed projections serialize"),
            Reader::Manager(m) => m.machine_mut().state().expect("typed managers serialize"),
        }
    }
    fn into_journal(self) -> Recorded {
        let (journal, outputs) = match self {
            Reader::Projection(m) => split(m),
            Reader::Manager(m) => split(m),
        };
        Recorded { journal, outputs }
    }
}

/// A retired machine's journal and the outputs it gave (for replay checks).
pub struct Recorded {
    /// Every input it took.
    pub journal: Journal,
    /// Every output it gave.
    pub outputs: Vec<OutputRecord>,
}

fn split<M: Machine>(machine: Journaled<M>) -> (Journal, Vec<OutputRecord>) {
    let (journal, outputs, _) = machine.into_parts();
    (journal, outputs)
}

/// The next thing to happen.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Crash,
    Command,
    Op(u64),
    Timeout(Owner),
}

/// Counts for reports and measurements.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Steps taken.
    pub steps: u64,
    /// Crashes (the final one included).
    pub crashes: u64,
    /// IO requests that were made to fail.
    pub injected_failures: u64,
    /// Commands acknowledged.
    pub acked: u64,
    /// Durable events at the end.
    pub events: u64,
    /// Append conflicts (another writer came first).
    pub conflicts: u64,
    /// Aggregate machines dropped after a storage failure poisoned them.
    pub poisoned: u64,
    /// Aggregates that loaded from a snapshot.
    pub snapshot_loads: u64,
    /// Idle aggregates evicted (and reloaded by their next command).
    pub evicted: u64,
    /// Torn log tails truncated by recovery.
    pub torn_tails: u64,
    /// Transfers delivered more than once (allowed: after a crash or an unknown outcome).
    pub redelivered: u64,
    /// Dead letters at the end.
    pub dead_letters: u64,
}

impl Stats {
    /// Adds another run's counts.
    pub fn add(&mut self, o: &Stats) {
        self.steps += o.steps;
        self.crashes += o.crashes;
        self.injected_failures += o.injected_failures;
        self.acked += o.acked;
        self.events += o.events;
        self.conflicts += o.conflicts;
        self.poisoned += o.poisoned;
        self.snapshot_loads += o.snapshot_loads;
        self.evicted += o.evicted;
        self.torn_tails += o.torn_tails;
        self.redelivered += o.redelivered;
        self.dead_letters += o.dead_letters;
    }
}

/// One simulated run.
pub struct Sim {
    seed: u64,
    plan: Plan,
    now: Timestamp,
    store: SimStore,
    model: Model,
    workload: Workload,
    latency: SimRng,
    faults: SimRng,
    crashes: SimRng,
    faults_on: bool,
    aggregates: BTreeMap<StreamId, (u64, Journaled<AggregateMachine>)>,
    /// Journals of retired machines, when asked for (`keep_journals`).
    pub journals: Option<Vec<Recorded>>,
    readers: Vec<(u64, Reader)>,
    generation: u64,
    ops: BTreeMap<u64, Op>,
    next_op: u64,
    calls: BTreeMap<CommandId, Call>,
    next_call: u64,
    commands_left: u32,
    next_command_at: Timestamp,
    crash_at: Vec<Timestamp>,
    answers: BTreeMap<CommandId, (u64, Value)>,
    load_checks: BTreeMap<CommandId, StreamId>,
    /// Events appended by the simulated second writer (numbers their ids).
    foreign_writes: u64,
    violations: Option<String>,
    woken_at: (u64, u64),
    /// The trace of this run.
    pub trace: Trace,
    /// Counts.
    pub stats: Stats,
}

impl Sim {
    /// A run for `seed`, optionally with an injected bug; `print` echoes the trace to stderr.
    pub fn new(seed: u64, bug: Option<Bug>, print: bool) -> Self {
        let mut plan = Plan::draw(&mut SimRng::stream(seed, "plan"));
        if bug == Some(Bug::BufferedAggregates) {
            plan.aggregate.sync_each_batch = false;
        }
        let now = Timestamp(1_700_000_000_000);
        let mut crashes = SimRng::stream(seed, "crash");
        let horizon = u64::from(plan.n_commands) * 2 + 10;
        let mut crash_at: Vec<Timestamp> =
            (0..plan.n_crashes).map(|_| Timestamp(now.0 + crashes.below(horizon))).collect();
        crash_at.sort();
        let mut trace = Trace::new(print);
        trace.line(format!("seed {seed} bug {bug:?} {plan:?}"));
        Sim {
            seed,
            commands_left: plan.n_commands,
            plan,
            now,
            store: SimStore::new(bug),
            model: Model::default(),
            workload: Workload::new(SimRng::stream(seed, "workload")),
            latency: SimRng::stream(seed, "latency"),
            faults: SimRng::stream(seed, "faults"),
            crashes,
            faults_on: true,
            aggregates: BTreeMap::new(),
            journals: None,
            readers: Vec::new(),
            generation: 0,
            ops: BTreeMap::new(),
            next_op: 0,
            calls: BTreeMap::new(),
            next_call: 0,
            next_command_at: now,
            crash_at,
            answers: BTreeMap::new(),
            load_checks: BTreeMap::new(),
            foreign_writes: 0,
            violations: None,
            woken_at: (0, 0),
            trace,
            stats: Stats::default(),
        }
    }

    /// Workload with faults and crashes; then a quiet phase, a final crash, recovery, and the
    /// end-of-run checks.
    pub fn run(&mut self) -> Result<(), String> {
        self.start_readers();
        self.drive()?;
        self.faults_on = false;
        self.crash_restart()?;
        self.drive()?;
        self.final_checks()
    }

    /// Steps until nothing is left to happen.
    fn drive(&mut self) -> Result<(), String> {
        for _ in 0..MAX_STEPS {
            if !self.step()? {
                return Ok(());
            }
        }
        Err(format!("no quiescence after {MAX_STEPS} steps"))
    }

    fn step(&mut self) -> Result<bool, String> {
        let Some((at, event)) = self.next_event() else { return Ok(false) };
        self.stats.steps += 1;
        self.now = self.now.max(at);
        match event {
            Event::Crash => {
                self.crash_at.remove(0);
                self.crash_restart()?;
            }
            Event::Command => self.client_command(),
            Event::Op(id) => self.run_op(id),
            Event::Timeout(Owner::Aggregate(stream)) => self.feed_aggregate(&stream, AggregateInput::Timeout),
            Event::Timeout(Owner::Reader(i)) => self.feed_reader(i, ReaderInput::Timeout),
        }
        self.wake_readers();
        if let Some(violation) = self.violations.take() {
            return Err(violation);
        }
        if let Some((_, r)) = self.readers.iter().find(|(_, r)| r.is_failed()) {
            return Err(format!("reader {} failed (a gap or a fault)", r.name()));
        }
        Ok(true)
    }

    /// The earliest pending event; ties go crash < command < op < timeout, then by id.
    fn next_event(&self) -> Option<(Timestamp, Event)> {
        let mut candidates: Vec<(Timestamp, Event)> = Vec::new();
        if let Some(t) = self.crash_at.first() {
            candidates.push((*t, Event::Crash));
        }
        if self.commands_left > 0 {
            candidates.push((self.next_command_at, Event::Command));
        }
        for (id, op) in &self.ops {
            if !matches!(op.status, Status::Awaiting) {
                candidates.push((op.at, Event::Op(*id)));
            }
        }
        for (stream, (_, m)) in &self.aggregates {
            if let Some((t, _)) = m.poll_timeout() {
                candidates.push((t, Event::Timeout(Owner::Aggregate(stream.clone()))));
            }
        }
        for (i, (_, r)) in self.readers.iter().enumerate() {
            if let Some(t) = r.poll_timeout() {
                candidates.push((t, Event::Timeout(Owner::Reader(i))));
            }
        }
        candidates.into_iter().min()
    }

    fn latency(&mut self) -> u64 {
        self.latency.range(0, self.plan.latency_ms_max)
    }

    fn client_command(&mut self) {
        self.commands_left -= 1;
        self.next_command_at = Timestamp(self.now.0 + self.workload.gap_ms());
        let command = self.workload.next(&self.plan);
        let id = self.call_id();
        let ids = id_seed(self.seed, id.0);
        self.trace.line(format!("{} client #{} {} {}", self.now.0, id.0, command.stream, command.command.type_name));
        self.calls.insert(id, Call { stream: command.stream.clone(), ids, dispatch: None });
        let input = AggregateInput::Command {
            id,
            command: command.command,
            context: command.context,
            expected: command.expected,
            ids,
        };
        self.feed_aggregate(&command.stream, input);
    }

    fn call_id(&mut self) -> CommandId {
        self.next_call += 1;
        CommandId(self.next_call)
    }

    fn start_readers(&mut self) {
        let config = self.plan.reader.clone();
        let now = self.now;
        self.retire_readers();
        let projection = |p: Box<dyn DynProjection>| Reader::Projection(Journaled::projection(p, config.clone(), now));
        self.readers = vec![
            (0, projection(Box::<TypedProjection<Balances>>::default())),
            (0, projection(Box::<TypedProjection<AuditLog>>::default())),
            (
                0,
                Reader::Manager(Journaled::process_manager(
                    Box::new(TypedProcessManager::<Transfers>::default()),
                    config.clone(),
                    now,
                )),
            ),
        ];
        for i in 0..self.readers.len() {
            self.generation += 1;
            self.readers[i].0 = self.generation;
            self.drain_reader(i);
        }
    }

    fn retire_readers(&mut self) {
        for (_, reader) in std::mem::take(&mut self.readers) {
            if let Some(journals) = &mut self.journals {
                journals.push(reader.into_journal());
            }
        }
    }

    fn retire_aggregate(&mut self, stream: &StreamId) {
        if let Some((_, machine)) = self.aggregates.remove(stream) {
            if let Some(journals) = &mut self.journals {
                let (journal, outputs) = split(machine);
                journals.push(Recorded { journal, outputs });
            }
        }
    }

    /// Retires every machine (their journals are kept when asked for).
    pub fn retire_all(&mut self) {
        let streams: Vec<StreamId> = self.aggregates.keys().cloned().collect();
        streams.iter().for_each(|s| self.retire_aggregate(s));
        self.retire_readers();
    }

    fn wake_readers(&mut self) {
        let mark = (self.store.watermark(), self.store.assigned());
        if mark == self.woken_at {
            return;
        }
        self.woken_at = mark;
        for i in 0..self.readers.len() {
            self.feed_reader(i, ReaderInput::Wake);
        }
    }

    fn feed_reader(&mut self, i: usize, input: ReaderInput) {
        let now = self.now;
        self.readers[i].1.handle(now, input);
        self.drain_reader(i);
    }

    fn drain_reader(&mut self, i: usize) {
        while let Some(output) = self.readers[i].1.poll() {
            let name = self.readers[i].1.name().to_owned();
            self.trace.line(format!("{} {name} {}", self.now.0, trace::output(&output)));
            if let Output::Io { io, request } = output {
                let generation = self.readers[i].0;
                self.schedule(Owner::Reader(i), generation, io, request);
            }
        }
    }

    fn instantiate(stream: &StreamId) -> Box<dyn DynAggregate> {
        let factory: Box<dyn AggregateFactory> = match stream.aggregate_type() {
            Counter::AGGREGATE_TYPE => Box::new(TypedAggregateFactory::<Counter>::default()),
            _ => Box::new(TypedAggregateFactory::<BankAccount>::default()),
        };
        factory.instantiate().expect("typed aggregates instantiate")
    }

    fn feed_aggregate(&mut self, stream: &StreamId, input: AggregateInput) {
        if !self.aggregates.contains_key(stream) {
            self.generation += 1;
            let machine =
                Journaled::aggregate(stream.clone(), Self::instantiate(stream), self.plan.aggregate.clone(), self.now);
            self.aggregates.insert(stream.clone(), (self.generation, machine));
            self.drain_aggregate(stream);
        }
        let now = self.now;
        if let Some((_, machine)) = self.aggregates.get_mut(stream) {
            machine.handle(now, input);
        }
        self.drain_aggregate(stream);
    }

    fn drain_aggregate(&mut self, stream: &StreamId) {
        let (mut load_check, mut evict) = (false, false);
        loop {
            let Some((generation, machine)) = self.aggregates.get_mut(stream) else { return };
            let generation = *generation;
            let Some(output) = machine.poll() else { break };
            self.trace.line(format!("{} {stream} {}", self.now.0, trace::output(&output)));
            match output {
                Output::Io { io, request } => self.schedule(Owner::Aggregate(stream.clone()), generation, io, request),
                Output::Reply { id, result } => self.on_reply(id, result),
                Output::State { id, result: Ok(answer) } => match self.load_checks.remove(&id) {
                    Some(stream) => self.check_loaded(&stream, answer),
                    None => drop(self.answers.insert(id, answer)),
                },
                Output::State { .. } => {}
                Output::Notify(Notification::Loaded { .. }) => load_check = true,
                Output::Notify(Notification::Idle { .. }) => evict = true,
                Output::Notify(_) => {}
            }
        }
        if evict && self.aggregates.get(stream).is_some_and(|(_, m)| m.machine().is_quiescent()) {
            // Idle hand-off: drop the instance; the next command reloads it from disk.
            self.retire_aggregate(stream);
            self.stats.evicted += 1;
            return;
        }
        if load_check && self.aggregates.contains_key(stream) {
            // Every (re)load is checked: the state the machine built equals the fold of the log.
            let id = self.call_id();
            self.load_checks.insert(id, stream.clone());
            self.feed_aggregate(stream, AggregateInput::Query { id });
        }
        if self.aggregates.get(stream).is_some_and(|(_, m)| m.machine().is_poisoned()) {
            // Drop it (the next command builds a new one that re-reads the disk); its
            // not-yet-executed IO never happens.
            let generation = self.aggregates[stream].0;
            self.retire_aggregate(stream);
            self.stats.poisoned += 1;
            self.ops.retain(|_, op| !(op.generation == generation && matches!(op.status, Status::Queued)));
        }
    }

    /// A loaded machine's state (answered after every command queued before the check settled)
    /// must equal the fold of the log up to the version it reports.
    fn check_loaded(&mut self, stream: &StreamId, (version, state): (u64, Value)) {
        let log = self.store.readable(stream);
        let folded = match log.get(..version as usize) {
            Some(prefix) => fold_stream(stream, prefix),
            None => Err(format!("machine at v{version} but the log has {} events", log.len())),
        };
        match folded {
            Ok(folded) if folded == state => {}
            Ok(folded) => {
                self.violation(format!("{stream} loaded as {state} at v{version}, the log folds to {folded}"))
            }
            Err(e) => self.violation(format!("{stream}: {e}")),
        }
    }

    fn violation(&mut self, message: String) {
        self.violations.get_or_insert(message);
    }

    fn schedule(&mut self, owner: Owner, generation: u64, io: IoId, request: Io) {
        let at = Timestamp(self.now.0 + self.latency());
        self.next_op += 1;
        self.ops.insert(self.next_op, Op { owner, generation, io, request, at, status: Status::Queued });
    }

    fn on_reply(&mut self, id: CommandId, result: Result<Committed, CommandError>) {
        let Some(call) = self.calls.remove(&id) else { return };
        self.model.on_reply(&call.stream, call.ids, &result);
        if result.is_ok() {
            self.stats.acked += 1;
        }
        let Some((op_id, dispatch_id)) = call.dispatch else { return };
        let io_result = match result {
            Ok(_) => IoResult::Done,
            Err(CommandError::Rejected(r)) => IoResult::Failed(IoError::new(IoErrorKind::Rejected, r.message)),
            Err(e) => {
                self.model.on_dispatch_unknown(&dispatch_id);
                IoResult::Failed(IoError::new(IoErrorKind::Unavailable, e.to_string()))
            }
        };
        let at = Timestamp(self.now.0 + self.latency());
        if let Some(op) = self.ops.get_mut(&op_id) {
            op.status = Status::Executed(io_result, None);
            op.at = at;
        }
    }

    fn run_op(&mut self, id: u64) {
        let op = self.ops.get_mut(&id).expect("scheduled");
        if matches!(op.status, Status::Queued) {
            return self.execute(id);
        }
        let op = self.ops.remove(&id).expect("scheduled");
        let Status::Executed(result, commit) = op.status else { unreachable!("awaiting ops are not scheduled") };
        if let Some(commit) = &commit {
            if matches!(result, IoResult::Done) {
                self.store.commit(commit);
            }
        }
        self.trace.line(format!("{} deliver io#{} {}", self.now.0, op.io.0, trace::result(&result)));
        match &result {
            IoResult::Snapshot(Some(_)) => self.stats.snapshot_loads += 1,
            IoResult::Failed(IoError { kind: IoErrorKind::Conflict { .. }, .. }) => self.stats.conflicts += 1,
            _ => {}
        }
        if self.faults_on && self.faults.chance(DUPLICATE_PER_MILLE) {
            // Completions may arrive twice; the machine must ignore the second.
            let at = Timestamp(self.now.0 + self.latency());
            let copy = Op { owner: op.owner.clone(), status: Status::Executed(result.clone(), None), at, ..op };
            self.next_op += 1;
            self.ops.insert(self.next_op, copy);
            return self.deliver(op.owner, op.generation, op.io, result);
        }
        self.deliver(op.owner, op.generation, op.io, result);
    }

    /// Hands a completion to its machine, unless that machine was dropped since.
    fn deliver(&mut self, owner: Owner, generation: u64, io: IoId, result: IoResult) {
        match owner {
            Owner::Aggregate(stream) => {
                if self.aggregates.get(&stream).is_some_and(|(g, _)| *g == generation) {
                    self.feed_aggregate(&stream, AggregateInput::Completed { io, result });
                }
            }
            Owner::Reader(i) => {
                if self.readers[i].0 == generation {
                    self.feed_reader(i, ReaderInput::Completed { io, result });
                }
            }
        }
    }

    /// Performs an op's IO against the store (maybe failing it) and schedules its delivery.
    fn execute(&mut self, id: u64) {
        let request = self.ops[&id].request.clone();
        let fail = self.faults_on && self.faults.chance(self.plan.io_fail);
        if fail {
            self.stats.injected_failures += 1;
        }
        let rng = &mut self.faults;
        let store = &mut self.store;
        let failed =
            |what: &str| IoResult::Failed(IoError::new(IoErrorKind::Storage, format!("injected {what} failure")));
        let (result, commit) = match &request {
            Io::ReadSnapshot { stream } => (if fail { failed("read") } else { store.read_snapshot(stream) }, None),
            Io::ReadStream { stream, after_seq } => {
                (if fail { failed("read") } else { store.read_stream(stream, *after_seq) }, None)
            }
            Io::Append { stream, expected_seq, events } => {
                if self.faults_on
                    && stream.aggregate_type() == Counter::AGGREGATE_TYPE
                    && rng.chance(self.plan.foreign_write)
                {
                    self.foreign_writes += 1;
                    let n = self.foreign_writes;
                    let event = NewEvent {
                        version: 1,
                        id: IdSeed((1u128 << 127) | id_seed(self.seed, n).0).event_id(0),
                        payload: to_payload(&CounterEvent::Incremented).expect("tagged"),
                        ts: self.now,
                        meta: Default::default(),
                    };
                    store.foreign_append(stream, event, rng);
                }
                (store.append(stream, *expected_seq, events.clone(), fail, rng), None)
            }
            Io::Sync { stream } => (store.sync(stream, fail, rng), None),
            Io::WriteSnapshot { stream, snapshot } => {
                two_step(store.write_snapshot(stream, snapshot), fail, store, rng)
            }
            Io::ReadCheckpoint { reader } => (if fail { failed("read") } else { store.read_checkpoint(reader) }, None),
            Io::ReadAll { after, max_events } => {
                (if fail { failed("read") } else { store.read_all(after, *max_events) }, None)
            }
            Io::WriteCheckpoint { reader, checkpoint } => {
                two_step(store.write_checkpoint(reader, checkpoint), fail, store, rng)
            }
            Io::WriteDeadLetter { reader, letter } => {
                two_step(store.write_dead_letter(reader, letter), fail, store, rng)
            }
            Io::Dispatch { .. } if fail => {
                // The command never reached its target (a transport failure): not an attempt.
                (IoResult::Failed(IoError::new(IoErrorKind::Unavailable, "injected dispatch failure")), None)
            }
            Io::Dispatch { dispatch_id, command } => return self.dispatch(id, dispatch_id.clone(), command.clone()),
        };
        self.trace.line(format!("{} exec op{id} {} -> {}", self.now.0, trace::io(&request), trace::result(&result)));
        let at = Timestamp(self.now.0 + self.latency());
        let op = self.ops.get_mut(&id).expect("scheduled");
        op.status = Status::Executed(result, commit);
        op.at = at;
    }

    /// A process manager's dispatch: the command goes to its target aggregate like a client's.
    fn dispatch(&mut self, op_id: u64, dispatch_id: String, command: evfold_core::CommandEnvelope) {
        self.model.on_dispatch_attempt(&dispatch_id);
        let id = self.call_id();
        let ids = id_seed(self.seed, id.0);
        self.trace.line(format!("{} exec op{op_id} dispatch {dispatch_id} as #{}", self.now.0, id.0));
        self.calls.insert(id, Call { stream: command.target.clone(), ids, dispatch: Some((op_id, dispatch_id)) });
        self.ops.get_mut(&op_id).expect("scheduled").status = Status::Awaiting;
        let input = AggregateInput::Command {
            id,
            command: command.command,
            context: command.context,
            expected: ExpectedVersion::Any,
            ids,
        };
        self.feed_aggregate(&command.target, input);
    }

    /// Power loss and restart: every machine and in-flight IO is gone, the disk resolves its
    /// pending bytes, the host recovers, the invariants are checked, the readers restart.
    fn crash_restart(&mut self) -> Result<(), String> {
        self.stats.crashes += 1;
        self.trace.line(format!("{} CRASH", self.now.0));
        self.ops.clear();
        self.calls.clear();
        self.retire_all();
        self.load_checks.clear();
        self.store.crash(&mut self.crashes);
        self.model.on_crash(&self.store);
        self.store.restart()?;
        check_store(&self.store, &self.model).map_err(|e| format!("after crash {}: {e}", self.stats.crashes))?;
        self.woken_at = (0, 0);
        self.start_readers();
        Ok(())
    }

    /// Queries every aggregate, then checks everything against the disk.
    fn final_checks(&mut self) -> Result<(), String> {
        let streams: Vec<StreamId> = self.store.streams().cloned().collect();
        let mut queries = Vec::new();
        for stream in &streams {
            let id = self.call_id();
            queries.push((stream.clone(), id));
            self.feed_aggregate(stream, AggregateInput::Query { id });
        }
        self.drive()?;
        let mut live = LiveStates { aggregates: Vec::new(), readers: Vec::new() };
        for (stream, id) in queries {
            let (version, state) =
                self.answers.remove(&id).ok_or_else(|| format!("{stream}: state query not answered"))?;
            live.aggregates.push((stream, version, state));
        }
        for (_, reader) in &mut self.readers {
            live.readers.push((reader.name().to_owned(), reader.state()));
        }
        self.stats.events = self.store.durable_events().len() as u64;
        self.stats.torn_tails = self.store.torn_tails;
        self.stats.dead_letters = self.store.dead_letters(Transfers::NAME).len() as u64;
        self.stats.redelivered =
            check_final(&self.store, &self.model, &live).map_err(|e| format!("at the end: {e}"))?;
        Ok(())
    }
}

/// A two-step write: on failure the file ends up old or new at random; on success it becomes
/// durable when the completion is delivered.
fn two_step(commit: Commit, fail: bool, store: &mut SimStore, rng: &mut SimRng) -> (IoResult, Option<Commit>) {
    if fail {
        store.fail_commit(&commit, rng);
        (IoResult::Failed(IoError::new(IoErrorKind::Storage, "injected write failure")), None)
    } else {
        (IoResult::Done, Some(commit))
    }
}
