//! Readers of the store-wide order: the projection machine and the process-manager machine, and
//! the catch-up core they share (checkpoint load, batched `ReadAll`, per-stream cursors that drop
//! duplicates and refuse gaps, checkpoint save, retry with backoff).

use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;

use crate::domain::{CommandEnvelope, DynProcessManager, DynProjection, Fault};
use crate::io::{
    recorded_version, Checkpoint, DeadLetter, Io, IoError, IoErrorKind, IoId, IoResult, Notification, Output,
};
use crate::schema::{Schemas, Skipped};
use crate::types::{Position, StoredEvent, Timestamp};

/// Tuning shared by projections and process managers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderConfig {
    /// Events per `ReadAll`.
    pub batch_size: usize,
    /// Save a checkpoint once this many events were folded since the last save (and, unless
    /// `checkpoint_quiet_ms` is set, always when caught up with unsaved events). 1 = after every
    /// batch.
    pub checkpoint_every_events: u64,
    /// Also save once this many ms have passed since the last save (checked after each batch,
    /// with the `now` the host passes in). `None` = no time trigger.
    pub checkpoint_every_ms: Option<u64>,
    /// When caught up with unsaved events, wait until no new event arrived for this many ms
    /// before saving (the save is announced through `poll_timeout`; the folded state answers
    /// queries meanwhile). `None` = save as soon as caught up. A checkpoint is an optimization:
    /// losing the newest one only means folding again from an older one.
    pub checkpoint_quiet_ms: Option<u64>,
    /// Delivery attempts per dispatched command before it is dead-lettered (process managers).
    pub max_dispatch_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub retry_backoff_ms: u64,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            batch_size: 512,
            checkpoint_every_events: 1,
            checkpoint_every_ms: None,
            checkpoint_quiet_ms: None,
            max_dispatch_attempts: 3,
            retry_backoff_ms: 100,
        }
    }
}

impl ReaderConfig {
    /// This config with checkpoints after every batch and whenever caught up (no coalescing):
    /// what process managers use, since their checkpoint bounds re-dispatch after a crash.
    pub fn every_batch(self) -> Self {
        ReaderConfig { checkpoint_every_events: 1, checkpoint_every_ms: None, checkpoint_quiet_ms: None, ..self }
    }
}

/// What the host feeds a reader machine.
#[derive(Debug, Clone)]
pub enum ReaderInput {
    /// New events may exist: catch up.
    Wake,
    /// Forget the state and checkpoint; fold everything again from the start.
    Rebuild,
    /// The result of an earlier `Output::Io`.
    Completed {
        /// The request's id.
        io: IoId,
        /// Its result.
        result: IoResult,
    },
    /// Time has reached `now`; spurious calls are no-ops.
    Timeout,
    /// Save now if the reader is idle with unsaved events (the host is shutting down, or wants
    /// the checkpoint current); otherwise a no-op.
    Flush,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    LoadingCheckpoint,
    Reading,
    Dispatching,
    Saving,
    Idle,
    Waiting(Retry),
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Load,
    Read,
    Save,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Load,
    Read,
    Save,
    Dispatch,
    DeadLetter,
}

/// The catch-up state both reader kinds share.
struct Cursor {
    name: String,
    /// The reader code's version, recorded with each checkpoint.
    version: String,
    config: ReaderConfig,
    /// How each aggregate type's events are read today (upcasters, unknown-event policy).
    schemas: Schemas,
    phase: Phase,
    now: Timestamp,
    position: Position,
    cursors: BTreeMap<String, u64>,
    unsaved_events: u64,
    last_batch_full: bool,
    wake_pending: bool,
    rebuild_pending: bool,
    retry_at: Option<Timestamp>,
    /// A coalesced save waiting for a quiet period (`checkpoint_quiet_ms`).
    save_at: Option<Timestamp>,
    /// When the last save completed (or the checkpoint was loaded).
    last_save_at: Timestamp,
    failures: u32,
    in_flight: BTreeMap<IoId, Purpose>,
    next_io: u64,
    outputs: VecDeque<Output>,
}

impl Cursor {
    fn new(name: String, version: String, config: ReaderConfig, now: Timestamp) -> Self {
        let mut cursor = Cursor {
            name,
            version,
            config,
            schemas: Schemas::default(),
            phase: Phase::LoadingCheckpoint,
            now,
            position: Position::start(),
            cursors: BTreeMap::new(),
            unsaved_events: 0,
            last_batch_full: false,
            wake_pending: true,
            rebuild_pending: false,
            retry_at: None,
            save_at: None,
            last_save_at: now,
            failures: 0,
            in_flight: BTreeMap::new(),
            next_io: 0,
            outputs: VecDeque::new(),
        };
        cursor.load();
        cursor
    }

    fn emit(&mut self, purpose: Purpose, request: Io) {
        let io = IoId(self.next_io);
        self.next_io += 1;
        self.in_flight.insert(io, purpose);
        self.outputs.push_back(Output::Io { io, request });
    }

    fn load(&mut self) {
        self.phase = Phase::LoadingCheckpoint;
        self.emit(Purpose::Load, Io::ReadCheckpoint { reader: self.name.clone() });
    }

    fn read(&mut self) {
        self.phase = Phase::Reading;
        self.wake_pending = false;
        let request = Io::ReadAll { after: self.position.clone(), max_events: self.config.batch_size };
        self.emit(Purpose::Read, request);
    }

    fn save(&mut self, state: Value) {
        self.phase = Phase::Saving;
        self.save_at = None;
        let (position, cursors) = (self.position.clone(), self.cursors.clone());
        let checkpoint = Checkpoint { position, cursors, state, version: recorded_version(self.version.clone()) };
        self.emit(Purpose::Save, Io::WriteCheckpoint { reader: self.name.clone(), checkpoint });
    }

    fn restore(&mut self, checkpoint: Option<&Checkpoint>) {
        match checkpoint {
            Some(c) => {
                self.position = c.position.clone();
                self.cursors = c.cursors.clone();
            }
            None => {
                self.position = Position::start();
                self.cursors.clear();
            }
        }
        self.unsaved_events = 0;
        self.save_at = None;
        self.last_save_at = self.now;
    }

    /// A loaded checkpoint, unless another version of the reader's code wrote it (announced;
    /// the reader then rebuilds from the first event).
    fn current_checkpoint(&mut self, checkpoint: Option<Checkpoint>) -> Option<Checkpoint> {
        let checkpoint = checkpoint?;
        if checkpoint.written_by() == self.version {
            return Some(checkpoint);
        }
        let (reader, written_by, reading_with) =
            (self.name.clone(), checkpoint.written_by().to_owned(), self.version.clone());
        self.outputs.push_back(Output::Notify(Notification::CheckpointStale { reader, written_by, reading_with }));
        None
    }

    /// Keeps the events this reader has not folded yet, as today's code of their aggregate type
    /// reads them (upcast; left out and announced when unknown under `UnknownEvents::Skip`);
    /// a gap in a stream's `seq` is fatal, and so is an event that cannot be read.
    fn admit(&mut self, events: Vec<StoredEvent>) -> Result<Vec<StoredEvent>, String> {
        let fresh = self.admit_new(events)?;
        let (current, skipped) = self.schemas.read_batch(fresh).map_err(|e| format!("{}: {e}", self.name))?;
        if let Some(Skipped { count, first_reason: reason }) = skipped {
            let what = self.name.clone();
            self.outputs.push_back(Output::Notify(Notification::EventsSkipped { what, count, reason }));
        }
        Ok(current)
    }

    /// The events this reader has not folded yet.
    fn admit_new(&mut self, events: Vec<StoredEvent>) -> Result<Vec<StoredEvent>, String> {
        let mut fresh = Vec::with_capacity(events.len());
        for event in events {
            let key = event.stream.to_string();
            let seen = self.cursors.get(&key).copied().unwrap_or(0);
            if event.record.seq <= seen {
                continue; // delivered twice: already folded
            }
            if event.record.seq != seen + 1 {
                return Err(format!("{}: stream {key} jumped from seq {seen} to {}", self.name, event.record.seq));
            }
            self.cursors.insert(key, event.record.seq);
            fresh.push(event);
        }
        Ok(fresh)
    }

    fn should_save(&self, caught_up: bool) -> bool {
        if self.unsaved_events == 0 {
            return false;
        }
        let by_count = self.unsaved_events >= self.config.checkpoint_every_events.max(1);
        let by_time =
            self.config.checkpoint_every_ms.is_some_and(|ms| self.now.0 >= self.last_save_at.0.saturating_add(ms));
        by_count || by_time || (caught_up && self.config.checkpoint_quiet_ms.is_none())
    }

    /// A save completed: nothing is unsaved.
    fn saved(&mut self) {
        self.failures = 0;
        self.unsaved_events = 0;
        self.last_save_at = self.now;
        let (reader, position) = (self.name.clone(), self.position.clone());
        self.outputs.push_back(Output::Notify(Notification::CheckpointSaved { reader, position }));
    }

    /// After a batch settled (and maybe a save): read on, or go idle (scheduling a coalesced
    /// save after the quiet period if events are unsaved).
    fn continue_or_idle(&mut self) {
        if self.last_batch_full || self.wake_pending {
            self.read();
        } else {
            self.phase = Phase::Idle;
            self.save_at = match self.config.checkpoint_quiet_ms {
                Some(quiet) if self.unsaved_events > 0 => Some(Timestamp(self.now.0.saturating_add(quiet))),
                _ => None,
            };
            self.outputs.push_back(Output::Notify(Notification::CaughtUp { reader: self.name.clone() }));
        }
    }

    /// Whether an idle reader should save now: its quiet period is over, or the host flushes.
    fn take_due_save(&mut self, flush: bool) -> bool {
        if self.phase != Phase::Idle || self.unsaved_events == 0 {
            return false;
        }
        let due = flush || self.save_at.is_some_and(|at| self.now >= at);
        if due {
            self.save_at = None;
        }
        due
    }

    fn backoff(&mut self, retry: Retry, error: &IoError) {
        self.failures += 1;
        let delay = self.config.retry_backoff_ms.saturating_mul(1 << self.failures.min(10));
        self.retry_at = Some(Timestamp(self.now.0.saturating_add(delay)));
        self.phase = Phase::Waiting(retry);
        self.outputs.push_back(Output::Notify(Notification::Poisoned {
            what: self.name.clone(),
            reason: format!("{error}; retrying in {delay} ms"),
        }));
    }

    fn fail(&mut self, reason: String) {
        self.phase = Phase::Failed;
        self.outputs.push_back(Output::Notify(Notification::Poisoned { what: self.name.clone(), reason }));
    }

    fn poll_timeout(&self) -> Option<(Timestamp, &'static str)> {
        let save = self.save_at.filter(|_| self.phase == Phase::Idle).map(|t| (t, "coalesced checkpoint"));
        match (self.retry_at.map(|t| (t, "retry")), save) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

/// Folds a projection from the store-wide order, checkpointing state + position together.
pub struct ProjectionMachine {
    cursor: Cursor,
    projection: Box<dyn DynProjection>,
}

impl ProjectionMachine {
    /// Starts by loading the checkpoint, then catches up.
    pub fn new(projection: Box<dyn DynProjection>, config: ReaderConfig, now: Timestamp) -> Self {
        let (name, version) = (projection.name().to_owned(), projection.version());
        ProjectionMachine { cursor: Cursor::new(name, version, config, now), projection }
    }

    /// Reads each event from now on as `schemas` say its aggregate's code reads it today
    /// (upcasters, unknown-event policy); until set, every event is read as stored.
    pub fn set_schemas(&mut self, schemas: Schemas) {
        self.cursor.schemas = schemas;
    }

    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.cursor.name
    }

    /// The read model as JSON (what has been folded so far).
    pub fn state(&mut self) -> Result<Value, Fault> {
        self.projection.snapshot()
    }

    /// The position folded so far.
    pub fn position(&self) -> &Position {
        &self.cursor.position
    }

    /// Whether the projection is caught up and idle.
    pub fn is_idle(&self) -> bool {
        self.cursor.phase == Phase::Idle
    }

    /// Whether a fatal error (gap, fault) stopped it.
    pub fn is_failed(&self) -> bool {
        self.cursor.phase == Phase::Failed
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Timestamp, input: ReaderInput) {
        let c = &mut self.cursor;
        c.now = c.now.max(now);
        match input {
            ReaderInput::Wake => {
                c.wake_pending = true;
                if c.phase == Phase::Idle {
                    c.read();
                }
            }
            ReaderInput::Rebuild => {
                c.rebuild_pending = true;
                if matches!(c.phase, Phase::Idle | Phase::Failed | Phase::Waiting(_)) {
                    self.rebuild();
                }
            }
            ReaderInput::Timeout => {
                if let (Some(at), Phase::Waiting(retry)) = (c.retry_at, c.phase) {
                    if c.now >= at {
                        c.retry_at = None;
                        match retry {
                            Retry::Load => c.load(),
                            Retry::Read => c.read(),
                            Retry::Save => self.save(),
                        }
                    }
                } else if c.take_due_save(false) {
                    self.save();
                }
            }
            ReaderInput::Flush => {
                if c.take_due_save(true) {
                    self.save();
                }
            }
            ReaderInput::Completed { io, result } => self.complete(io, result),
        }
    }

    /// Next output, if any.
    pub fn poll(&mut self) -> Option<Output> {
        self.cursor.outputs.pop_front()
    }

    /// When the machine next wants `Timeout` (a retry), and why.
    pub fn poll_timeout(&self) -> Option<(Timestamp, &'static str)> {
        self.cursor.poll_timeout()
    }

    fn rebuild(&mut self) {
        self.cursor.rebuild_pending = false;
        self.cursor.retry_at = None;
        if let Err(fault) = self.projection.reset() {
            return self.cursor.fail(fault.to_string());
        }
        self.cursor.restore(None);
        self.cursor.unsaved_events = 1; // persist the reset even if there are no events
        self.cursor.read();
    }

    fn save(&mut self) {
        match self.projection.snapshot() {
            Ok(state) => self.cursor.save(state),
            Err(fault) => self.cursor.fail(fault.to_string()),
        }
    }

    fn complete(&mut self, io: IoId, result: IoResult) {
        let Some(purpose) = self.cursor.in_flight.remove(&io) else { return };
        match (purpose, result) {
            (Purpose::Load, IoResult::Checkpoint(checkpoint)) => self.on_checkpoint(checkpoint),
            (Purpose::Read, IoResult::Batch { events, next }) => self.on_batch(events, next),
            (Purpose::Save, IoResult::Done) => self.on_saved(),
            (Purpose::Load, IoResult::Failed(e)) => self.cursor.backoff(Retry::Load, &e),
            (Purpose::Read, IoResult::Failed(e)) => self.cursor.backoff(Retry::Read, &e),
            (Purpose::Save, IoResult::Failed(e)) => self.cursor.backoff(Retry::Save, &e),
            (purpose, other) => self.cursor.fail(format!("host answered {purpose:?} with {other:?}")),
        }
    }

    fn on_checkpoint(&mut self, checkpoint: Option<Checkpoint>) {
        let checkpoint = self.cursor.current_checkpoint(checkpoint);
        let restored = match &checkpoint {
            Some(c) => self.projection.restore(&c.state),
            None => self.projection.reset(),
        };
        if let Err(fault) = restored {
            return self.cursor.fail(format!("checkpoint does not restore ({fault}); rebuild the projection"));
        }
        self.cursor.restore(checkpoint.as_ref());
        self.cursor.failures = 0;
        if self.cursor.rebuild_pending {
            return self.rebuild();
        }
        self.cursor.read();
    }

    fn on_batch(&mut self, events: Vec<StoredEvent>, next: Position) {
        self.cursor.failures = 0;
        let full = events.len() >= self.cursor.config.batch_size;
        let fresh = match self.cursor.admit(events) {
            Ok(fresh) => fresh,
            Err(reason) => return self.cursor.fail(reason),
        };
        if let Err(fault) = self.projection.apply(&fresh) {
            return self.cursor.fail(fault.to_string());
        }
        self.cursor.position = next;
        self.cursor.unsaved_events += fresh.len() as u64;
        self.cursor.last_batch_full = full;
        if self.cursor.rebuild_pending {
            return self.rebuild();
        }
        if self.cursor.should_save(!full) {
            self.save();
        } else {
            self.cursor.continue_or_idle();
        }
    }

    fn on_saved(&mut self) {
        self.cursor.saved();
        if self.cursor.rebuild_pending {
            return self.rebuild();
        }
        self.cursor.continue_or_idle();
    }
}

/// A command waiting to be delivered.
#[derive(Debug, Clone)]
struct Outgoing {
    dispatch_id: String,
    command: CommandEnvelope,
    cause: String,
    attempts: u32,
    last_error: Option<IoError>,
}

/// Drives a process manager: fold events, dispatch the commands they cause one at a time (in
/// order), retry failed dispatches with backoff, dead-letter what still fails, and checkpoint
/// only after every dispatch of a batch settled. Delivery is at-least-once: after a crash the
/// commands of events past the last checkpoint are dispatched again, with the same dispatch ids.
pub struct ProcessManagerMachine {
    cursor: Cursor,
    manager: Box<dyn DynProcessManager>,
    outbox: VecDeque<Outgoing>,
    next_position: Option<Position>,
    dispatch_retry_at: Option<Timestamp>,
}

impl ProcessManagerMachine {
    /// Starts by loading the checkpoint, then catches up.
    pub fn new(manager: Box<dyn DynProcessManager>, config: ReaderConfig, now: Timestamp) -> Self {
        let (name, version) = (manager.name().to_owned(), manager.version());
        ProcessManagerMachine {
            cursor: Cursor::new(name, version, config, now),
            manager,
            outbox: VecDeque::new(),
            next_position: None,
            dispatch_retry_at: None,
        }
    }

    /// As [`ProjectionMachine::set_schemas`].
    pub fn set_schemas(&mut self, schemas: Schemas) {
        self.cursor.schemas = schemas;
    }

    /// The process manager's name.
    pub fn name(&self) -> &str {
        &self.cursor.name
    }

    /// Whether it is caught up and idle.
    pub fn is_idle(&self) -> bool {
        self.cursor.phase == Phase::Idle
    }

    /// Whether a fatal error stopped it.
    pub fn is_failed(&self) -> bool {
        self.cursor.phase == Phase::Failed
    }

    /// The workflow state as JSON.
    pub fn state(&mut self) -> Result<Value, Fault> {
        self.manager.snapshot()
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Timestamp, input: ReaderInput) {
        self.cursor.now = self.cursor.now.max(now);
        match input {
            ReaderInput::Wake => {
                self.cursor.wake_pending = true;
                if self.cursor.phase == Phase::Idle {
                    self.cursor.read();
                }
            }
            ReaderInput::Rebuild => {
                // Process managers have side effects: replaying them is not a rebuild.
                self.cursor.fail(format!("{}: process managers cannot be rebuilt", self.cursor.name));
            }
            ReaderInput::Timeout => self.on_timeout(),
            ReaderInput::Flush => {
                if self.cursor.take_due_save(true) {
                    self.save();
                }
            }
            ReaderInput::Completed { io, result } => self.complete(io, result),
        }
    }

    /// Next output, if any.
    pub fn poll(&mut self) -> Option<Output> {
        self.cursor.outputs.pop_front()
    }

    /// When the machine next wants `Timeout`, and why.
    pub fn poll_timeout(&self) -> Option<(Timestamp, &'static str)> {
        let dispatch = self.dispatch_retry_at.map(|t| (t, "dispatch retry"));
        match (self.cursor.poll_timeout(), dispatch) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    fn on_timeout(&mut self) {
        let now = self.cursor.now;
        if let Some(at) = self.dispatch_retry_at.filter(|at| now >= *at) {
            let _ = at;
            self.dispatch_retry_at = None;
            self.dispatch_front();
        }
        if let (Some(at), Phase::Waiting(retry)) = (self.cursor.retry_at, self.cursor.phase) {
            if now >= at {
                self.cursor.retry_at = None;
                match retry {
                    Retry::Load => self.cursor.load(),
                    Retry::Read => self.cursor.read(),
                    Retry::Save => self.save(),
                }
            }
        } else if self.cursor.take_due_save(false) {
            self.save();
        }
    }

    fn save(&mut self) {
        match self.manager.snapshot() {
            Ok(state) => self.cursor.save(state),
            Err(fault) => self.cursor.fail(fault.to_string()),
        }
    }

    fn complete(&mut self, io: IoId, result: IoResult) {
        let Some(purpose) = self.cursor.in_flight.remove(&io) else { return };
        match (purpose, result) {
            (Purpose::Load, IoResult::Checkpoint(checkpoint)) => self.on_checkpoint(checkpoint),
            (Purpose::Read, IoResult::Batch { events, next }) => self.on_batch(events, next),
            (Purpose::Save, IoResult::Done) => {
                self.cursor.saved();
                self.cursor.continue_or_idle();
            }
            (Purpose::Dispatch, IoResult::Done) => {
                self.outbox.pop_front();
                self.dispatch_front();
            }
            (Purpose::Dispatch, IoResult::Failed(e)) => self.on_dispatch_failed(e),
            (Purpose::DeadLetter, IoResult::Done) => {
                let letter = self.outbox.pop_front().expect("a dead letter was in flight");
                let (reader, dispatch_id) = (self.cursor.name.clone(), letter.dispatch_id);
                self.cursor.outputs.push_back(Output::Notify(Notification::DeadLettered { reader, dispatch_id }));
                self.dispatch_front();
            }
            (Purpose::DeadLetter, IoResult::Failed(_)) => self.schedule_dispatch_retry(),
            (Purpose::Load, IoResult::Failed(e)) => self.cursor.backoff(Retry::Load, &e),
            (Purpose::Read, IoResult::Failed(e)) => self.cursor.backoff(Retry::Read, &e),
            (Purpose::Save, IoResult::Failed(e)) => self.cursor.backoff(Retry::Save, &e),
            (purpose, other) => self.cursor.fail(format!("host answered {purpose:?} with {other:?}")),
        }
    }

    fn on_checkpoint(&mut self, checkpoint: Option<Checkpoint>) {
        let checkpoint = self.cursor.current_checkpoint(checkpoint);
        let restored = match &checkpoint {
            Some(c) => self.manager.restore(&c.state),
            None => self.manager.reset(),
        };
        if let Err(fault) = restored {
            return self.cursor.fail(format!("checkpoint does not restore: {fault}"));
        }
        self.cursor.restore(checkpoint.as_ref());
        self.cursor.read();
    }

    fn on_batch(&mut self, events: Vec<StoredEvent>, next: Position) {
        self.cursor.failures = 0;
        self.cursor.last_batch_full = events.len() >= self.cursor.config.batch_size;
        let fresh = match self.cursor.admit(events) {
            Ok(fresh) => fresh,
            Err(reason) => return self.cursor.fail(reason),
        };
        // An upcaster may split one stored event in several: they share its id, so their
        // commands are numbered on across them to keep every dispatch id unique.
        let mut numbering: Option<(&str, usize)> = None;
        for event in &fresh {
            let first_index = match numbering {
                Some((id, next)) if id == event.record.id.0 => next,
                _ => 0,
            };
            let commands = match self.manager.react(event) {
                Ok(commands) => commands,
                Err(fault) => return self.cursor.fail(fault.to_string()),
            };
            numbering = Some((&event.record.id.0, first_index + commands.len()));
            for (index, mut command) in commands.into_iter().enumerate() {
                let index = first_index + index;
                // One trace spans the workflow: the command continues the event's trace unless
                // the process manager chose one.
                if let (None, Some(trace)) = (command.context.traceparent(), event.record.meta.traceparent()) {
                    command.context = command.context.with_traceparent(trace);
                }
                let dispatch_id = format!("{}:{}:{index}", self.cursor.name, event.record.id);
                let cause = event.record.id.0.clone();
                self.outbox.push_back(Outgoing { dispatch_id, command, cause, attempts: 0, last_error: None });
            }
        }
        self.cursor.unsaved_events += fresh.len() as u64;
        self.next_position = Some(next);
        self.cursor.phase = Phase::Dispatching;
        self.dispatch_front();
    }

    /// Sends the first undelivered command, or — when all settled — moves on.
    fn dispatch_front(&mut self) {
        let Some(front) = self.outbox.front_mut() else {
            return self.batch_settled();
        };
        front.attempts += 1;
        let request = Io::Dispatch { dispatch_id: front.dispatch_id.clone(), command: front.command.clone() };
        self.cursor.emit(Purpose::Dispatch, request);
    }

    fn on_dispatch_failed(&mut self, error: IoError) {
        let max = self.cursor.config.max_dispatch_attempts.max(1);
        let front = self.outbox.front_mut().expect("a dispatch was in flight");
        let give_up = error.kind == IoErrorKind::Rejected || front.attempts >= max;
        front.last_error = Some(error);
        if give_up {
            self.dead_letter_front();
        } else {
            self.schedule_dispatch_retry();
        }
    }

    fn schedule_dispatch_retry(&mut self) {
        let attempts = self.outbox.front().map_or(1, |o| o.attempts.max(1));
        let delay = self.cursor.config.retry_backoff_ms.saturating_mul(1 << (attempts - 1).min(10));
        self.dispatch_retry_at = Some(Timestamp(self.cursor.now.0.saturating_add(delay)));
    }

    fn dead_letter_front(&mut self) {
        let front = self.outbox.front().expect("a dispatch was in flight");
        let letter = DeadLetter {
            command: front.command.clone(),
            cause: front.cause.clone(),
            attempts: front.attempts,
            error: front.last_error.as_ref().map(|e| e.to_string()).unwrap_or_default(),
            ts: self.cursor.now,
        };
        self.cursor.emit(Purpose::DeadLetter, Io::WriteDeadLetter { reader: self.cursor.name.clone(), letter });
    }

    fn batch_settled(&mut self) {
        if let Some(next) = self.next_position.take() {
            self.cursor.position = next;
        }
        let caught_up = !self.cursor.last_batch_full;
        if self.cursor.should_save(caught_up) {
            self.save();
        } else {
            self.cursor.continue_or_idle();
        }
    }
}

#[cfg(test)]
mod coalescing_tests {
    //! The checkpoint policy: by count, by time since the last save, after a quiet period once
    //! caught up, and on `Flush`; the default still saves after every batch.

    use serde_json::json;

    use super::*;
    use crate::domain::TypedProjection;
    use crate::examples::Balances;
    use crate::types::{EventId, EventRecord, Metadata, StreamId};

    fn deposit(pos: u64) -> StoredEvent {
        let record = EventRecord {
            version: 1,
            seq: pos,
            pos,
            id: EventId(format!("e{pos}")),
            event_type: "Deposited".into(),
            data: json!({"amount": 1}),
            ts: Timestamp(0),
            meta: Metadata::default(),
        };
        StoredEvent { stream: StreamId::new("bank-account", "a").unwrap(), record }
    }

    fn machine(config: ReaderConfig) -> ProjectionMachine {
        ProjectionMachine::new(Box::new(TypedProjection::<Balances>::default()), config, Timestamp(0))
    }

    /// Drains outputs, answering the checkpoint load with none and `ReadAll` from `log`; returns
    /// the positions of the checkpoints written.
    fn run(m: &mut ProjectionMachine, now: u64, log: &[StoredEvent]) -> Vec<u64> {
        let mut saved = Vec::new();
        while let Some(output) = m.poll() {
            let Output::Io { io, request } = output else { continue };
            let result = match request {
                Io::ReadCheckpoint { .. } => IoResult::Checkpoint(None),
                Io::ReadAll { after, max_events } => {
                    let after = after.0.as_u64().unwrap_or(0);
                    let events: Vec<_> =
                        log.iter().filter(|e| e.record.pos > after).take(max_events).cloned().collect();
                    let next = events.last().map_or(after, |e| e.record.pos);
                    IoResult::Batch { events, next: Position(Value::from(next)) }
                }
                Io::WriteCheckpoint { checkpoint, .. } => {
                    saved.push(checkpoint.position.0.as_u64().unwrap_or(0));
                    IoResult::Done
                }
                other => panic!("unexpected {other:?}"),
            };
            m.handle(Timestamp(now), ReaderInput::Completed { io, result });
        }
        saved
    }

    fn coalesced() -> ReaderConfig {
        ReaderConfig {
            batch_size: 4,
            checkpoint_every_events: 10,
            checkpoint_every_ms: Some(1_000),
            checkpoint_quiet_ms: Some(100),
            ..ReaderConfig::default()
        }
    }

    #[test]
    fn default_config_saves_after_every_batch_and_when_caught_up() {
        let log: Vec<_> = (1..=6).map(deposit).collect();
        let mut m = machine(ReaderConfig { batch_size: 4, ..ReaderConfig::default() });
        assert_eq!(run(&mut m, 0, &log), vec![4, 6]);
        assert!(m.is_idle());
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn caught_up_saves_wait_for_a_quiet_period_and_state_is_visible_before() {
        let mut log: Vec<_> = (1..=3).map(deposit).collect();
        let mut m = machine(coalesced());
        assert!(run(&mut m, 0, &log).is_empty(), "caught up: the save waits");
        assert!(m.is_idle());
        assert_eq!(m.state().unwrap()["events"], 3, "folded state is visible before the save");
        assert_eq!(m.poll_timeout(), Some((Timestamp(100), "coalesced checkpoint")));
        // A new event 50 ms later restarts the quiet period.
        log.push(deposit(4));
        m.handle(Timestamp(50), ReaderInput::Wake);
        assert!(run(&mut m, 50, &log).is_empty());
        assert_eq!(m.poll_timeout(), Some((Timestamp(150), "coalesced checkpoint")));
        m.handle(Timestamp(120), ReaderInput::Timeout);
        assert!(run(&mut m, 120, &log).is_empty(), "not yet quiet long enough");
        m.handle(Timestamp(150), ReaderInput::Timeout);
        assert_eq!(run(&mut m, 150, &log), vec![4]);
        assert_eq!(m.poll_timeout(), None, "nothing unsaved, nothing scheduled");
        m.handle(Timestamp(500), ReaderInput::Flush);
        assert!(run(&mut m, 500, &log).is_empty(), "flush with nothing unsaved writes nothing");
    }

    #[test]
    fn count_and_time_triggers_save_while_catching_up() {
        let log: Vec<_> = (1..=25).map(deposit).collect();
        let mut m = machine(coalesced());
        // Batches of 4: 12 >= 10 events unsaved after the third batch, then 24, then 25 waits.
        assert_eq!(run(&mut m, 0, &log), vec![12, 24]);
        let mut m = machine(ReaderConfig { checkpoint_every_events: 1_000, ..coalesced() });
        assert!(run(&mut m, 0, &log[..5]).is_empty());
        // 1 s after the last save (the load at t=0), the next batch saves although not quiet.
        m.handle(Timestamp(1_000), ReaderInput::Wake);
        assert_eq!(run(&mut m, 1_000, &log[..9]), vec![9]);
    }

    #[test]
    fn flush_saves_an_idle_reader_at_once() {
        let log: Vec<_> = (1..=3).map(deposit).collect();
        let mut m = machine(coalesced());
        assert!(run(&mut m, 0, &log).is_empty());
        m.handle(Timestamp(1), ReaderInput::Flush);
        assert_eq!(run(&mut m, 1, &log), vec![3]);
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn every_batch_turns_coalescing_off() {
        let config = coalesced().every_batch();
        assert_eq!(
            (config.checkpoint_every_events, config.checkpoint_every_ms, config.checkpoint_quiet_ms),
            (1, None, None)
        );
        assert_eq!(config.batch_size, 4);
    }
}
