//! The in-memory driver: runs the machines and fulfils their IO from memory, synchronously. For
//! users' unit tests (like sourcery's `inmemory::Store`), doc examples and the simulator's model.
//!
//! Time and ids are deterministic: the clock advances 1 ms per command unless set, and event ids
//! come from a counter. An optional trace records every input and output as text.
//!
//! ```
//! use evfold_core::examples::{BankAccount, BankCommand};
//! use evfold_core::memory::MemoryStore;
//! use evfold_core::CommandContext;
//!
//! let mut store = MemoryStore::new();
//! store.register::<BankAccount>();
//! store.execute::<BankAccount>("acc-1", BankCommand::Open { owner: "ada".into() }, CommandContext::default()).unwrap();
//! store.execute::<BankAccount>("acc-1", BankCommand::Deposit { amount: 100 }, CommandContext::default()).unwrap();
//! let overdraw = store.execute::<BankAccount>("acc-1", BankCommand::Withdraw { amount: 500 }, CommandContext::default());
//! assert!(overdraw.is_err());
//! assert_eq!(store.state::<BankAccount>("acc-1").unwrap().balance, 100);
//! ```

use std::collections::BTreeMap;

use serde_json::Value;

use crate::aggregate_machine::{AggregateConfig, AggregateInput, AggregateMachine};
use crate::domain::{
    from_payload, into_payload, Aggregate, AggregateFactory, CommandEnvelope, DynProcessManager, DynProjection, Fault,
    ProcessManager, Projection, TypedAggregateFactory, TypedProcessManager, TypedProjection,
};
use crate::io::{
    Checkpoint, CommandError, CommandId, Committed, DeadLetter, Io, IoError, IoErrorKind, IoResult, Output, Snapshot,
};
use crate::reader::{ProcessManagerMachine, ProjectionMachine, ReaderConfig, ReaderInput};
use crate::schema::Schemas;
use crate::types::{
    CommandContext, EventRecord, ExpectedVersion, IdSeed, NewEvent, Payload, Position, StoredEvent, StreamId, Timestamp,
};

/// Which request the next injected failure hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    /// The next `Append`.
    Append,
    /// The next `Sync`.
    Sync,
    /// The next `Dispatch`.
    Dispatch,
}

/// An in-memory store driving real machines. Not thread-safe by design: it is a test double.
pub struct MemoryStore {
    now: Timestamp,
    manual_clock: bool,
    next_seed: u128,
    next_command: u64,
    streams: BTreeMap<StreamId, Vec<EventRecord>>,
    snapshots: BTreeMap<StreamId, Snapshot>,
    checkpoints: BTreeMap<String, Checkpoint>,
    dead_letters: BTreeMap<String, Vec<DeadLetter>>,
    all: Vec<StoredEvent>,
    factories: BTreeMap<String, Box<dyn AggregateFactory>>,
    instances: BTreeMap<StreamId, AggregateMachine>,
    projections: Vec<ProjectionMachine>,
    managers: Vec<ProcessManagerMachine>,
    aggregate_config: AggregateConfig,
    reader_config: ReaderConfig,
    failures: Vec<FailOn>,
    trace: Option<Vec<String>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_config(AggregateConfig::default(), ReaderConfig::default())
    }
}

impl MemoryStore {
    /// An empty store with default machine configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with the given machine configuration.
    pub fn with_config(aggregate_config: AggregateConfig, reader_config: ReaderConfig) -> Self {
        MemoryStore {
            now: Timestamp(1_700_000_000_000),
            manual_clock: false,
            next_seed: 1,
            next_command: 0,
            streams: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
            dead_letters: BTreeMap::new(),
            all: Vec::new(),
            factories: BTreeMap::new(),
            instances: BTreeMap::new(),
            projections: Vec::new(),
            managers: Vec::new(),
            aggregate_config,
            reader_config,
            failures: Vec::new(),
            trace: None,
        }
    }

    /// Starts recording every machine input and output as text lines.
    pub fn record_trace(&mut self) {
        self.trace = Some(Vec::new());
    }

    /// The recorded trace, one line per input or output.
    pub fn take_trace(&mut self) -> String {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default().join("\n")
    }

    /// Sets the clock (and stops it advancing on its own).
    pub fn set_now(&mut self, now: Timestamp) {
        self.now = now;
        self.manual_clock = true;
    }

    /// Makes the next request of this kind fail with a storage error.
    pub fn fail_next(&mut self, on: FailOn) {
        self.failures.push(on);
    }

    /// Registers a typed aggregate.
    pub fn register<A: Aggregate>(&mut self) {
        self.register_factory(Box::new(TypedAggregateFactory::<A>::default()));
    }

    /// Registers any aggregate factory (e.g. a plugin). Registering a type again deploys new
    /// code for it: its live instances are dropped and reload with the new code on next use
    /// (snapshot, then log), as after a restart: how a test tries upcasters on old history.
    pub fn register_factory(&mut self, factory: Box<dyn AggregateFactory>) {
        let aggregate_type = factory.aggregate_type().to_owned();
        self.instances.retain(|stream, _| stream.aggregate_type() != aggregate_type);
        self.factories.insert(aggregate_type, factory);
        let schemas = self.schemas();
        self.projections.iter_mut().for_each(|m| m.set_schemas(schemas.clone()));
        self.managers.iter_mut().for_each(|m| m.set_schemas(schemas.clone()));
    }

    /// How the readers read each registered aggregate type's events.
    fn schemas(&self) -> Schemas {
        Schemas::of(self.factories.values().map(|f| &**f))
    }

    /// Registers a typed projection.
    pub fn add_projection<P: Projection>(&mut self) {
        self.add_dyn_projection(Box::new(TypedProjection::<P>::default()));
    }

    /// Registers any projection; one of the name of a registered one replaces it (new code
    /// deployed: it starts again from its checkpoint).
    pub fn add_dyn_projection(&mut self, projection: Box<dyn DynProjection>) {
        self.projections.retain(|m| m.name() != projection.name());
        let mut machine = ProjectionMachine::new(projection, self.reader_config.clone(), self.now);
        machine.set_schemas(self.schemas());
        self.projections.push(machine);
        self.run_readers();
    }

    /// Registers a typed process manager.
    pub fn add_process_manager<M: ProcessManager>(&mut self) {
        self.add_dyn_process_manager(Box::new(TypedProcessManager::<M>::default()));
    }

    /// Registers any process manager; as [`MemoryStore::add_dyn_projection`], one of a
    /// registered name replaces it.
    pub fn add_dyn_process_manager(&mut self, manager: Box<dyn DynProcessManager>) {
        self.managers.retain(|m| m.name() != manager.name());
        let mut machine = ProcessManagerMachine::new(manager, self.reader_config.clone(), self.now);
        machine.set_schemas(self.schemas());
        self.managers.push(machine);
        self.run_readers();
    }

    /// Executes a typed command, then lets projections and process managers catch up.
    pub fn execute<A: Aggregate>(
        &mut self,
        instance_id: &str,
        command: A::Command,
        context: CommandContext,
    ) -> Result<Committed, CommandError> {
        let stream = StreamId::new(A::AGGREGATE_TYPE, instance_id).map_err(|e| CommandError::Fault(Fault::new(e)))?;
        let command = into_payload(command).map_err(CommandError::Fault)?;
        let (command, context) =
            crate::depth::admit(command, context).map_err(|e| CommandError::Fault(Fault::new(e)))?;
        let envelope = CommandEnvelope { target: stream, command, context };
        self.execute_envelope(&envelope, ExpectedVersion::Any)
    }

    /// Executes a JSON-level command, then lets readers catch up.
    pub fn execute_envelope(
        &mut self,
        envelope: &CommandEnvelope,
        expected: ExpectedVersion,
    ) -> Result<Committed, CommandError> {
        let result = self.execute_only(envelope, expected);
        self.run_readers();
        result
    }

    /// The typed state of one instance.
    pub fn state<A: Aggregate>(&mut self, instance_id: &str) -> Result<A, CommandError> {
        let stream = StreamId::new(A::AGGREGATE_TYPE, instance_id).map_err(|e| CommandError::Fault(Fault::new(e)))?;
        let (_, state) = self.state_json(&stream)?;
        serde_json::from_value(state).map_err(|e| CommandError::Fault(Fault::new(e)))
    }

    /// The version and JSON state of one instance.
    pub fn state_json(&mut self, stream: &StreamId) -> Result<(u64, Value), CommandError> {
        let id = self.next_command_id();
        let input = AggregateInput::Query { id };
        let outputs = self.drive_aggregate(stream, input)?;
        outputs
            .into_iter()
            .find_map(|o| match o {
                Output::State { id: got, result } if got == id => Some(result),
                _ => None,
            })
            .unwrap_or_else(|| Err(CommandError::Unavailable("no answer".into())))
    }

    /// The typed read model of a projection.
    pub fn projection<P: Projection>(&mut self) -> Result<P, Fault> {
        let machine = self
            .projections
            .iter_mut()
            .find(|m| m.name() == P::NAME)
            .ok_or_else(|| Fault::msg(format!("projection {} is not registered", P::NAME)))?;
        let state = machine.state()?;
        serde_json::from_value(state).map_err(Fault::new)
    }

    /// Refolds a projection from the first event.
    pub fn rebuild_projection(&mut self, name: &str) {
        let now = self.now;
        if let Some(machine) = self.projections.iter_mut().find(|m| m.name() == name) {
            machine.handle(now, ReaderInput::Rebuild);
        }
        self.run_readers();
    }

    /// Every event of one stream.
    pub fn read_stream(&self, stream: &StreamId) -> &[EventRecord] {
        self.streams.get(stream).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every event in store-wide order.
    pub fn read_all(&self) -> &[StoredEvent] {
        &self.all
    }

    /// A process manager's dead letters.
    pub fn dead_letters(&self, reader: &str) -> &[DeadLetter] {
        self.dead_letters.get(reader).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every stream with at least one event.
    pub fn streams(&self) -> impl Iterator<Item = &StreamId> {
        self.streams.keys()
    }

    fn next_command_id(&mut self) -> CommandId {
        self.next_command += 1;
        CommandId(self.next_command)
    }

    fn tick(&mut self) {
        if !self.manual_clock {
            self.now.0 += 1;
        }
    }

    fn execute_only(
        &mut self,
        envelope: &CommandEnvelope,
        expected: ExpectedVersion,
    ) -> Result<Committed, CommandError> {
        // Cloning a deep value recurses once per level: measure it first.
        crate::depth::check(&envelope.command, &envelope.context).map_err(|e| CommandError::Fault(Fault::new(e)))?;
        self.tick();
        let id = self.next_command_id();
        let ids = IdSeed(self.next_seed << 16);
        self.next_seed += 1;
        let input = AggregateInput::Command {
            id,
            command: envelope.command.clone(),
            context: envelope.context.clone(),
            expected,
            ids,
        };
        let outputs = self.drive_aggregate(&envelope.target, input)?;
        outputs
            .into_iter()
            .find_map(|o| match o {
                Output::Reply { id: got, result } if got == id => Some(result),
                _ => None,
            })
            .unwrap_or_else(|| Err(CommandError::Unavailable("no reply".into())))
    }

    /// Feeds one input to a stream's machine (creating it if needed) and runs it to quiescence,
    /// returning its non-IO outputs. A poisoned machine is dropped so the next call reloads.
    fn drive_aggregate(&mut self, stream: &StreamId, input: AggregateInput) -> Result<Vec<Output>, CommandError> {
        let now = self.now;
        if !self.instances.contains_key(stream) {
            let factory = self.factories.get(stream.aggregate_type()).ok_or_else(|| {
                CommandError::Fault(Fault::msg(format!("aggregate type {} is not registered", stream.aggregate_type())))
            })?;
            let aggregate = factory.instantiate().map_err(CommandError::Fault)?;
            let machine = AggregateMachine::new(stream.clone(), aggregate, self.aggregate_config.clone(), now);
            self.instances.insert(stream.clone(), machine);
        }
        let mut machine = self.instances.remove(stream).expect("inserted above");
        self.log(format!("in  {stream}: {}", render_input(&input)));
        machine.handle(now, input);
        let mut answers = Vec::new();
        while let Some(output) = machine.poll() {
            self.log(format!("out {stream}: {output}"));
            match output {
                Output::Io { io, request } => {
                    let result = self.fulfil(request);
                    self.log(format!("in  {stream}: io#{} {result}", io.0));
                    machine.handle(now, AggregateInput::Completed { io, result });
                }
                other => answers.push(other),
            }
        }
        if !machine.is_poisoned() {
            self.instances.insert(stream.clone(), machine);
        }
        Ok(answers)
    }

    /// Wakes every reader and runs them (and the commands process managers dispatch) until idle.
    fn run_readers(&mut self) {
        let now = self.now;
        for i in 0..self.projections.len() {
            self.projections[i].handle(now, ReaderInput::Wake);
            self.drain_projection(i);
        }
        for i in 0..self.managers.len() {
            self.managers[i].handle(now, ReaderInput::Wake);
            self.drain_manager(i);
        }
        // Commands dispatched above may have appended events: projections see them too.
        if self.projections.iter().any(|p| !p.is_idle() && !p.is_failed()) {
            return;
        }
        for i in 0..self.projections.len() {
            self.projections[i].handle(now, ReaderInput::Wake);
            self.drain_projection(i);
        }
    }

    fn drain_projection(&mut self, i: usize) {
        let now = self.now;
        while let Some(output) = self.projections[i].poll() {
            let name = self.projections[i].name().to_owned();
            self.log(format!("out {name}: {output}"));
            if let Output::Io { io, request } = output {
                let result = self.fulfil(request);
                self.log(format!("in  {name}: io#{} {result}", io.0));
                self.projections[i].handle(now, ReaderInput::Completed { io, result });
            }
        }
    }

    fn drain_manager(&mut self, i: usize) {
        let now = self.now;
        loop {
            let Some(output) = self.managers[i].poll() else {
                // Fire due retries at once: the in-memory clock jumps to the deadline.
                let Some((deadline, _)) = self.managers[i].poll_timeout() else { return };
                let at = deadline.max(now);
                self.managers[i].handle(at, ReaderInput::Timeout);
                continue;
            };
            let name = self.managers[i].name().to_owned();
            self.log(format!("out {name}: {output}"));
            if let Output::Io { io, request } = output {
                let result = match request {
                    Io::Dispatch { command, .. } => self.dispatch(&command),
                    other => self.fulfil(other),
                };
                self.log(format!("in  {name}: io#{} {result}", io.0));
                self.managers[i].handle(now, ReaderInput::Completed { io, result });
            }
        }
    }

    fn dispatch(&mut self, command: &CommandEnvelope) -> IoResult {
        if self.take_failure(FailOn::Dispatch) {
            return IoResult::Failed(IoError::new(IoErrorKind::Unavailable, "injected dispatch failure"));
        }
        match self.execute_only(command, ExpectedVersion::Any) {
            Ok(_) => IoResult::Done,
            Err(CommandError::Rejected(r)) => IoResult::Failed(IoError::new(IoErrorKind::Rejected, r.message)),
            Err(e) => IoResult::Failed(IoError::new(IoErrorKind::Unavailable, e.to_string())),
        }
    }

    fn take_failure(&mut self, on: FailOn) -> bool {
        match self.failures.iter().position(|f| *f == on) {
            Some(i) => {
                self.failures.remove(i);
                true
            }
            None => false,
        }
    }

    /// Appends a stored event as other code would have written it (its type, data and schema
    /// `version`), past the machines and without checks: how a test sets up the history an older
    /// or newer deployment left. Live instances of the stream keep their state until reloaded
    /// (register the type again).
    pub fn plant_event(&mut self, stream: &StreamId, payload: Payload, version: u32) {
        let log = self.streams.entry(stream.clone()).or_default();
        let seed = IdSeed(self.next_seed);
        self.next_seed += 1;
        let event = NewEvent { id: seed.event_id(0), payload, version, ts: self.now, meta: Default::default() };
        let record = EventRecord::from_new(event, log.len() as u64 + 1, self.all.len() as u64 + 1);
        log.push(record.clone());
        self.all.push(StoredEvent { stream: stream.clone(), record });
    }

    /// Replaces a stream's snapshot, as other code would have written it (see
    /// [`MemoryStore::plant_event`]).
    pub fn plant_snapshot(&mut self, stream: &StreamId, snapshot: Snapshot) {
        self.snapshots.insert(stream.clone(), snapshot);
    }

    /// Fulfils one storage request from memory.
    fn fulfil(&mut self, request: Io) -> IoResult {
        match request {
            Io::ReadSnapshot { stream } => IoResult::Snapshot(self.snapshots.get(&stream).cloned()),
            Io::ReadStream { stream, after_seq } => {
                let records = self.read_stream(&stream).iter().filter(|r| r.seq > after_seq).cloned().collect();
                IoResult::Stream(records)
            }
            Io::Append { stream, expected_seq, events } => {
                if self.take_failure(FailOn::Append) {
                    return IoResult::Failed(IoError::new(IoErrorKind::Storage, "injected append failure"));
                }
                let log = self.streams.entry(stream.clone()).or_default();
                let actual_seq = log.len() as u64;
                if actual_seq != expected_seq {
                    return IoResult::Failed(IoError::new(IoErrorKind::Conflict { actual_seq }, "version moved"));
                }
                let mut stored = Vec::with_capacity(events.len());
                for (i, event) in events.into_iter().enumerate() {
                    let record = EventRecord::from_new(event, expected_seq + 1 + i as u64, self.all.len() as u64 + 1);
                    log.push(record.clone());
                    self.all.push(StoredEvent { stream: stream.clone(), record: record.clone() });
                    stored.push(record);
                }
                IoResult::Appended(stored)
            }
            Io::Sync { .. } => {
                if self.take_failure(FailOn::Sync) {
                    return IoResult::Failed(IoError::new(IoErrorKind::Storage, "injected fsync failure"));
                }
                IoResult::Done
            }
            Io::WriteSnapshot { stream, snapshot } => {
                self.snapshots.insert(stream, snapshot);
                IoResult::Done
            }
            Io::ReadCheckpoint { reader } => IoResult::Checkpoint(self.checkpoints.get(&reader).cloned()),
            Io::ReadAll { after, max_events } => {
                let after = after.0.as_u64().unwrap_or(0);
                let events: Vec<StoredEvent> =
                    self.all.iter().filter(|e| e.record.pos > after).take(max_events).cloned().collect();
                let next = events.last().map_or(after, |e| e.record.pos);
                let next = if next == 0 { Position::start() } else { Position(Value::from(next)) };
                IoResult::Batch { events, next }
            }
            Io::WriteCheckpoint { reader, checkpoint } => {
                self.checkpoints.insert(reader, checkpoint);
                IoResult::Done
            }
            Io::WriteDeadLetter { reader, letter } => {
                self.dead_letters.entry(reader).or_default().push(letter);
                IoResult::Done
            }
            Io::Dispatch { command, .. } => self.dispatch(&command),
        }
    }

    fn log(&mut self, line: String) {
        if let Some(trace) = &mut self.trace {
            trace.push(line);
        }
    }
}

/// One line for an aggregate input in a trace.
fn render_input(input: &AggregateInput) -> String {
    match input {
        AggregateInput::Command { id, command, expected, .. } => {
            format!("command #{} {command} expecting {expected:?}", id.0)
        }
        AggregateInput::Query { id } => format!("query #{}", id.0),
        AggregateInput::Completed { io, result } => format!("io#{} {result}", io.0),
        AggregateInput::Timeout => "timeout".into(),
    }
}

/// Decodes a typed event from a stored record (convenience for projections and tests).
pub fn decode_event<A: Aggregate>(record: &EventRecord) -> Result<A::Event, Fault> {
    from_payload(&record.payload())
}
