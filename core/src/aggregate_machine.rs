//! The aggregate-instance machine: load (snapshot + tail), decide, fold, append, sync, reply —
//! with group commit — as a sans-IO state machine.
//!
//! Commands queue while a write is in flight; when it settles, every queued command is decided in
//! order against the evolving state and their events go out in one `Append` (+ one `Sync`).
//! A rejected command produces no IO. A storage failure fails the batch in flight and latches the
//! machine (`Poisoned`): the host drops it and builds a new one, which re-reads durable state.

use std::collections::{BTreeMap, VecDeque};

use crate::codec::json_len;
use crate::decide_context::DecideContext;
use crate::depth;
use crate::domain::{DynAggregate, Fault, PayloadError};
use crate::io::{
    recorded_version, CommandError, CommandId, Committed, Io, IoErrorKind, IoId, IoResult, Notification, Output,
    Snapshot,
};
use crate::schema::{read_records, Skipped, FIRST_VERSION};
use crate::types::{CommandContext, EventRecord, ExpectedVersion, IdSeed, NewEvent, Payload, StreamId, Timestamp};

/// Tuning of one aggregate machine. `Default` is durable, snapshots every 1,000 events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateConfig {
    /// Write a snapshot whenever the version crosses a multiple of this; `None` = never.
    pub snapshot_every: Option<u64>,
    /// Emit a `Sync` after every append and reply only after it (durable). `false` replies after
    /// the append alone (buffered: a crash may lose acknowledged commands).
    pub sync_each_batch: bool,
    /// Most events one group commit appends.
    pub max_batch_events: usize,
    /// Largest serialized event `data`, in bytes.
    pub max_event_bytes: usize,
    /// Largest serialized command `data`, in bytes; a larger command is refused before domain
    /// code (native or plugin) sees it.
    pub max_command_bytes: usize,
    /// How often a command is re-decided after losing an append race to another writer.
    pub conflict_retries: u32,
    /// Report `Notification::Idle` after this long without work; `None` = never.
    pub idle_timeout_ms: Option<u64>,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            snapshot_every: Some(1000),
            sync_each_batch: true,
            max_batch_events: 1024,
            max_event_bytes: 1 << 20,
            max_command_bytes: 1 << 20,
            conflict_retries: 8,
            idle_timeout_ms: None,
        }
    }
}

/// What the host feeds an aggregate machine.
#[derive(Debug, Clone)]
pub enum AggregateInput {
    /// A caller's command.
    Command {
        /// Echoed in the reply.
        id: CommandId,
        /// Type name + JSON data.
        command: Payload,
        /// Copied onto the events.
        context: CommandContext,
        /// Optimistic concurrency check.
        expected: ExpectedVersion,
        /// Entropy for the events' ids.
        ids: IdSeed,
    },
    /// A caller's state query; answered after every earlier command settled.
    Query {
        /// Echoed in the answer.
        id: CommandId,
    },
    /// The result of an earlier `Output::Io`.
    Completed {
        /// The request's id.
        io: IoId,
        /// Its result.
        result: IoResult,
    },
    /// Time has reached `now` (see `poll_timeout`); spurious calls are no-ops.
    Timeout,
}

// Nearly every entry is a command; boxing its context to shrink the rare query would cost an
// allocation per command.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Pending {
    Command {
        id: CommandId,
        command: Payload,
        context: CommandContext,
        expected: ExpectedVersion,
        ids: IdSeed,
        attempts: u32,
    },
    Query {
        id: CommandId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    ReadingSnapshot,
    ReadingStream,
    Ready,
    Appending,
    Syncing,
    Poisoned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Snapshot,
    Stream,
    Append,
    Sync,
    WriteSnapshot,
}

/// A command decided into the batch in flight.
#[derive(Debug)]
struct Decided {
    pending: Pending,
    n_events: usize,
}

/// One aggregate instance. Drive it: `handle`, then drain `poll`, then wait for `poll_timeout`.
pub struct AggregateMachine {
    stream: StreamId,
    aggregate: Box<dyn DynAggregate>,
    config: AggregateConfig,
    phase: Phase,
    now: Timestamp,
    last_activity: Timestamp,
    idle_reported: bool,
    /// Durable (acknowledged or loaded) version.
    version: u64,
    queue: VecDeque<Pending>,
    batch: Vec<Decided>,
    batch_events: Vec<NewEvent>,
    appended: Vec<EventRecord>,
    reload_after_batch: bool,
    /// Why the machine is poisoned: told to every command refused after it.
    poisoned_by: Option<String>,
    in_flight: BTreeMap<IoId, Purpose>,
    next_io: u64,
    outputs: VecDeque<Output>,
}

impl AggregateMachine {
    /// A machine for `stream` that starts loading at once (its first outputs are reads).
    pub fn new(stream: StreamId, aggregate: Box<dyn DynAggregate>, config: AggregateConfig, now: Timestamp) -> Self {
        let mut machine = AggregateMachine {
            stream,
            aggregate,
            config,
            phase: Phase::Ready,
            now,
            last_activity: now,
            idle_reported: false,
            version: 0,
            queue: VecDeque::new(),
            batch: Vec::new(),
            batch_events: Vec::new(),
            appended: Vec::new(),
            reload_after_batch: false,
            poisoned_by: None,
            in_flight: BTreeMap::new(),
            next_io: 0,
            outputs: VecDeque::new(),
        };
        machine.start_load();
        machine
    }

    /// The stream this machine owns.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// Durable version (0 before the first event).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether a storage failure latched the machine.
    pub fn is_poisoned(&self) -> bool {
        self.phase == Phase::Poisoned
    }

    /// Whether nothing is queued or in flight (safe to drop without losing a caller).
    pub fn is_quiescent(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty() && self.batch.is_empty()
    }

    /// Feeds one input. Never blocks, never fails: problems come out of `poll`.
    pub fn handle(&mut self, now: Timestamp, input: AggregateInput) {
        self.now = self.now.max(now);
        match input {
            AggregateInput::Command { id, command, context, expected, ids } => {
                self.touch();
                self.queue.push_back(Pending::Command { id, command, context, expected, ids, attempts: 0 });
            }
            AggregateInput::Query { id } => {
                self.touch();
                self.queue.push_back(Pending::Query { id });
            }
            AggregateInput::Completed { io, result } => self.complete(io, result),
            AggregateInput::Timeout => self.check_idle(),
        }
        self.pump();
    }

    /// Next output, if any.
    pub fn poll(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the machine next wants `Timeout` (idle check), and why.
    pub fn poll_timeout(&self) -> Option<(Timestamp, &'static str)> {
        let idle_ms = self.config.idle_timeout_ms?;
        (self.phase == Phase::Ready && self.is_quiescent() && !self.idle_reported)
            .then(|| (Timestamp(self.last_activity.0.saturating_add(idle_ms)), "idle"))
    }

    fn touch(&mut self) {
        self.last_activity = self.now;
        self.idle_reported = false;
    }

    fn check_idle(&mut self) {
        if let Some((deadline, _)) = self.poll_timeout() {
            if self.now >= deadline {
                self.idle_reported = true;
                self.outputs.push_back(Output::Notify(Notification::Idle { stream: self.stream.clone() }));
            }
        }
    }

    fn emit(&mut self, purpose: Purpose, request: Io) {
        let io = IoId(self.next_io);
        self.next_io += 1;
        self.in_flight.insert(io, purpose);
        self.outputs.push_back(Output::Io { io, request });
    }

    fn start_load(&mut self) {
        self.version = 0;
        if self.config.snapshot_every.is_some() {
            self.phase = Phase::ReadingSnapshot;
            self.emit(Purpose::Snapshot, Io::ReadSnapshot { stream: self.stream.clone() });
        } else {
            self.read_tail();
        }
    }

    fn read_tail(&mut self) {
        self.phase = Phase::ReadingStream;
        self.emit(Purpose::Stream, Io::ReadStream { stream: self.stream.clone(), after_seq: self.version });
    }

    fn complete(&mut self, io: IoId, result: IoResult) {
        let Some(purpose) = self.in_flight.remove(&io) else {
            debug_assert!(io.0 < self.next_io, "completion for an IoId never issued: {io:?}");
            return; // duplicate completion: no-op
        };
        match (purpose, result) {
            (Purpose::Snapshot, IoResult::Snapshot(snapshot)) => self.on_snapshot(snapshot),
            (Purpose::Stream, IoResult::Stream(records)) => self.on_stream(records),
            (Purpose::Append, IoResult::Appended(records)) => self.on_appended(records),
            (Purpose::Sync, IoResult::Done) => self.finish_batch(),
            (Purpose::WriteSnapshot, IoResult::Done) => {}
            (Purpose::WriteSnapshot, IoResult::Failed(e)) => {
                self.outputs.push_back(Output::Notify(Notification::SnapshotFailed {
                    stream: self.stream.clone(),
                    reason: e.to_string(),
                }))
            }
            (Purpose::Snapshot, IoResult::Failed(e)) => {
                // Snapshots are rebuildable: fold from the start instead.
                self.outputs.push_back(Output::Notify(Notification::SnapshotFailed {
                    stream: self.stream.clone(),
                    reason: e.to_string(),
                }));
                self.read_tail();
            }
            (Purpose::Append, IoResult::Failed(e)) => {
                if let IoErrorKind::Conflict { .. } = e.kind {
                    self.retry_after_conflict();
                } else {
                    self.poison(CommandError::Storage(e));
                }
            }
            (_, IoResult::Failed(e)) => {
                let error = if e.kind == IoErrorKind::Corrupt {
                    CommandError::Unavailable(e.to_string())
                } else {
                    CommandError::Storage(e)
                };
                self.poison(error);
            }
            (purpose, other) => {
                debug_assert!(false, "{purpose:?} answered with {other:?}");
                self.poison(CommandError::Unavailable(format!("host answered {purpose:?} with {other:?}")));
            }
        }
    }

    fn on_snapshot(&mut self, snapshot: Option<Snapshot>) {
        if let Some(snapshot) = snapshot {
            let reading_with = self.aggregate.snapshot_version();
            if snapshot.written_by() != reading_with {
                // Written by code of another state shape or event schema: refold instead.
                let (stream, written_by) = (self.stream.clone(), snapshot.written_by().to_owned());
                self.outputs.push_back(Output::Notify(Notification::SnapshotStale {
                    stream,
                    written_by,
                    reading_with,
                }));
                return self.read_tail();
            }
            match self.aggregate.restore(&snapshot.state) {
                Ok(()) => self.version = snapshot.seq,
                Err(_) => {
                    // An unreadable snapshot (e.g. written by an older aggregate version) is
                    // ignored: fold from the first event instead.
                    if let Err(fault) = self.aggregate.reset() {
                        return self.poison(CommandError::Fault(fault));
                    }
                    self.version = 0;
                }
            }
        }
        self.read_tail();
    }

    fn on_stream(&mut self, records: Vec<EventRecord>) {
        for (i, record) in records.iter().enumerate() {
            let want = self.version + 1 + i as u64;
            if record.seq != want {
                let reason = format!("stream {} read seq {} where {} was expected", self.stream, record.seq, want);
                return self.poison(CommandError::Unavailable(reason));
            }
        }
        let count = records.len() as u64;
        let payloads = match self.read_current(records) {
            Ok(payloads) => payloads,
            Err(error) => return self.poison(CommandError::Fault(Fault::new(error))),
        };
        if let Err(fault) = self.aggregate.apply(&payloads) {
            return self.poison(CommandError::Fault(fault));
        }
        self.version += count;
        self.phase = Phase::Ready;
        self.outputs
            .push_back(Output::Notify(Notification::Loaded { stream: self.stream.clone(), version: self.version }));
    }

    /// Stored records as this code reads them ([`crate::schema::read_records`]), announcing
    /// what it left out.
    fn read_current(&mut self, records: Vec<EventRecord>) -> Result<Vec<Payload>, PayloadError> {
        let (payloads, skipped) = read_records(&*self.aggregate, records)?;
        if let Some(Skipped { count, first_reason: reason }) = skipped {
            let what = self.stream.to_string();
            self.outputs.push_back(Output::Notify(Notification::EventsSkipped { what, count, reason }));
        }
        Ok(payloads)
    }

    /// Decides queued work while the machine is ready and nothing is in flight.
    fn pump(&mut self) {
        match self.phase {
            Phase::Ready => {}
            Phase::Poisoned => return self.fail_queue(),
            _ => return,
        }
        while let Some(front) = self.queue.front() {
            if matches!(front, Pending::Query { .. }) {
                if !self.batch.is_empty() {
                    break; // a query reads durable state: wait for the batch
                }
                let Some(Pending::Query { id }) = self.queue.pop_front() else { unreachable!() };
                let result = self.aggregate.snapshot().map(|s| (self.version, s)).map_err(CommandError::Fault);
                self.outputs.push_back(Output::State { id, result });
                continue;
            }
            if self.batch_events.len() >= self.config.max_batch_events {
                break;
            }
            let pending = self.queue.pop_front().expect("front exists");
            if !self.decide_one(pending) {
                break; // a fault: stop deciding, reload after the batch
            }
        }
        if !self.batch_events.is_empty() {
            self.phase = Phase::Appending;
            let events = self.batch_events.clone();
            self.emit(Purpose::Append, Io::Append { stream: self.stream.clone(), expected_seq: self.version, events });
        } else if !self.batch.is_empty() {
            self.finish_batch(); // only zero-event commands: nothing to write
        } else if self.reload_after_batch {
            self.reload();
        }
    }

    /// Decides one command into the batch. Returns false when domain code faulted.
    fn decide_one(&mut self, pending: Pending) -> bool {
        let Pending::Command { id, command, context, expected, ids, .. } = &pending else {
            unreachable!("queries are answered in pump")
        };
        // Depth first, iteratively, before anything else touches or drops the command: measuring
        // its size serializes it, and serializing, decoding, cloning and dropping a deep value
        // all recurse once per level.
        if let Err(error) = depth::check(command, context) {
            self.reply(*id, Err(CommandError::Fault(Fault::new(error))));
            let Pending::Command { command, context, .. } = pending else { unreachable!() };
            depth::dismantle(command.data);
            depth::dismantle_metadata(context);
            return true;
        }
        let speculative_version = self.version + self.batch_events.len() as u64;
        if !expected.admits(speculative_version) {
            self.reply(
                *id,
                Err(CommandError::WrongExpectedVersion { expected: *expected, actual: speculative_version }),
            );
            return true;
        }
        let command_bytes = json_len(&command.data);
        if command_bytes > self.config.max_command_bytes {
            let (command_type, limit) = (command.type_name.clone(), self.config.max_command_bytes);
            self.reply(*id, Err(CommandError::CommandTooLarge { command_type, bytes: command_bytes, limit }));
            return true;
        }
        // Only the machine's inputs: a replay of the journal decides in the same context.
        let decide_context = DecideContext {
            stream: self.stream.clone(),
            version: speculative_version,
            now: self.now,
            command_context: context.clone(),
        };
        let events = match self.aggregate.decide(command, &decide_context) {
            Ok(Ok(events)) => events,
            Ok(Err(rejection)) => {
                self.reply(*id, Err(CommandError::Rejected(rejection)));
                return true;
            }
            Err(fault) => return self.fault_command(*id, fault),
        };
        if let Some(error) = too_deep(&events) {
            // JSON-level domain code (not the typed adapter, which refuses this itself) nested an
            // event deeper than a log line can hold.
            self.reply(*id, Err(CommandError::Fault(Fault::new(error))));
            events.into_iter().for_each(|e| depth::dismantle(e.data));
            return true;
        }
        if let Some(error) = self.oversized(&events) {
            self.reply(*id, Err(error));
            return true;
        }
        if let Err(fault) = self.aggregate.apply(&events) {
            return self.fault_command(*id, fault);
        }
        let n_events = events.len();
        for (i, payload) in events.into_iter().enumerate() {
            let version = self.aggregate.schema().map_or(FIRST_VERSION, |s| s.current_version(&payload.type_name));
            let id = ids.event_id(i);
            self.batch_events.push(NewEvent { id, payload, version, ts: self.now, meta: context.clone() });
        }
        self.batch.push(Decided { pending, n_events });
        true
    }

    fn oversized(&self, events: &[Payload]) -> Option<CommandError> {
        events.iter().find_map(|e| {
            let bytes = json_len(&e.data);
            (bytes > self.config.max_event_bytes).then(|| CommandError::EventTooLarge {
                event_type: e.type_name.clone(),
                bytes,
                limit: self.config.max_event_bytes,
            })
        })
    }

    /// Domain code failed: the command fails, and after the batch the instance is rebuilt from
    /// durable state (a trapped plugin cannot be trusted, a typed adapter may be half-applied).
    fn fault_command(&mut self, id: CommandId, fault: Fault) -> bool {
        self.reply(id, Err(CommandError::Fault(fault)));
        self.reload_after_batch = true;
        false
    }

    fn on_appended(&mut self, records: Vec<EventRecord>) {
        if records.len() != self.batch_events.len() {
            let reason =
                format!("append of {} events answered with {} records", self.batch_events.len(), records.len());
            return self.poison(CommandError::Unavailable(reason));
        }
        self.appended = records;
        if self.config.sync_each_batch {
            self.phase = Phase::Syncing;
            self.emit(Purpose::Sync, Io::Sync { stream: self.stream.clone() });
        } else {
            self.finish_batch();
        }
    }

    /// The batch is durable: reply to every command in it, maybe snapshot, decide more.
    fn finish_batch(&mut self) {
        let before = self.version;
        let mut positions = std::mem::take(&mut self.appended).into_iter().map(|r| r.pos);
        for decided in std::mem::take(&mut self.batch) {
            let Pending::Command { id, .. } = decided.pending else { unreachable!() };
            self.version += decided.n_events as u64;
            let positions: Vec<u64> = positions.by_ref().take(decided.n_events).collect();
            let committed = Committed { version: self.version, n_events: decided.n_events as u64, positions };
            self.reply(id, Ok(committed));
        }
        self.batch_events.clear();
        self.phase = Phase::Ready;
        self.maybe_snapshot(before);
        self.touch();
        if self.reload_after_batch {
            self.reload();
        } else {
            self.pump();
        }
    }

    fn maybe_snapshot(&mut self, before: u64) {
        let Some(every) = self.config.snapshot_every.filter(|n| *n > 0) else { return };
        if self.version / every == before / every || self.reload_after_batch {
            return;
        }
        match self.aggregate.snapshot() {
            Ok(state) => {
                let version = recorded_version(self.aggregate.snapshot_version());
                let snapshot = Snapshot { seq: self.version, state, version };
                self.emit(Purpose::WriteSnapshot, Io::WriteSnapshot { stream: self.stream.clone(), snapshot });
            }
            Err(e) => self.outputs.push_back(Output::Notify(Notification::SnapshotFailed {
                stream: self.stream.clone(),
                reason: e.to_string(),
            })),
        }
    }

    /// Another writer won the append race: re-read and re-decide the batch (bounded).
    fn retry_after_conflict(&mut self) {
        let mut retry = Vec::new();
        for decided in std::mem::take(&mut self.batch).into_iter().rev() {
            let Pending::Command { id, command, context, expected, ids, attempts } = decided.pending else {
                unreachable!()
            };
            if attempts + 1 > self.config.conflict_retries {
                self.reply(id, Err(CommandError::Conflict { attempts: attempts + 1 }));
            } else {
                retry.push(Pending::Command { id, command, context, expected, ids, attempts: attempts + 1 });
            }
        }
        for pending in retry {
            self.queue.push_front(pending); // reversed above, so order is kept
        }
        self.batch_events.clear();
        self.reload();
    }

    fn reload(&mut self) {
        self.reload_after_batch = false;
        if let Err(fault) = self.aggregate.reset() {
            return self.poison(CommandError::Fault(fault));
        }
        self.start_load();
    }

    fn reply(&mut self, id: CommandId, result: Result<Committed, CommandError>) {
        self.outputs.push_back(Output::Reply { id, result });
    }

    /// Latches: fails the batch in flight and everything queued, now and later.
    fn poison(&mut self, error: CommandError) {
        let reason = error.to_string();
        for decided in std::mem::take(&mut self.batch) {
            match decided.pending {
                Pending::Command { id, .. } => self.reply(id, Err(error.clone())),
                Pending::Query { id } => self.outputs.push_back(Output::State { id, result: Err(error.clone()) }),
            }
        }
        self.batch_events.clear();
        if self.phase != Phase::Poisoned {
            self.phase = Phase::Poisoned;
            self.poisoned_by = Some(reason.clone());
            self.outputs.push_back(Output::Notify(Notification::Poisoned { what: self.stream.to_string(), reason }));
        }
        self.fail_queue();
    }

    fn fail_queue(&mut self) {
        let reason = self.poisoned_by.as_deref().unwrap_or("unknown cause");
        let error = CommandError::Unavailable(format!("stream {} is poisoned; reopen it: {reason}", self.stream));
        while let Some(pending) = self.queue.pop_front() {
            match pending {
                Pending::Command { id, .. } => self.reply(id, Err(error.clone())),
                Pending::Query { id } => self.outputs.push_back(Output::State { id, result: Err(error.clone()) }),
            }
        }
    }
}

/// The first event whose data nests deeper than [`crate::codec::MAX_JSON_DEPTH`]: it could be
/// written but never read back, so it is refused before anything is appended.
fn too_deep(events: &[Payload]) -> Option<crate::domain::PayloadError> {
    events.iter().find_map(|e| depth::check(e, &crate::types::Metadata::default()).err())
}
