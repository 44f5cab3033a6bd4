//! Projection and process-manager threads: each drives one core reader machine from the
//! store-wide order (woken whenever the durable watermark moves), fulfils its IO on real files
//! (checkpoints, `ReadAll` through the index, dispatch to aggregate actors, dead letters), and
//! answers state / rebuild / run requests once caught up.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use evfold_core::{
    Checkpoint, CommandEnvelope, DeadLetter, DynProcessManager, DynProjection, IdSeed, Io, IoError, IoErrorKind, IoId,
    IoResult, Notification, Output, Position, ProcessManagerMachine, ProjectionMachine, ReaderConfig, ReaderInput,
    StoredEvent, Timestamp,
};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::error::{ExecuteError, StoreError};
use crate::fsio;
use crate::layout::{StoreLayout, CHECKPOINT_FILE};
use crate::ledger::{Ledger, Wake};
use crate::log::TornTail;
use crate::mailbox::{Mailbox, Received};
use crate::store::Inner;

/// Which kind of reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderKind {
    /// A projection (read model).
    Projection,
    /// A process manager (workflow).
    ProcessManager,
}

/// What one `run_process_managers` call did, per process manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerReport {
    /// Process-manager name.
    pub name: String,
    /// Commands delivered since the previous report.
    pub dispatched: u64,
    /// Commands dead-lettered since the previous report.
    pub dead_lettered: u64,
    /// Commands delivered since the store opened.
    pub total_dispatched: u64,
    /// Commands dead-lettered since the store opened.
    pub total_dead_lettered: u64,
}

/// What `run_process_managers` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessManagerReport {
    /// Commands delivered since the previous report, all managers.
    pub dispatched: u64,
    /// Commands dead-lettered since the previous report, all managers.
    pub dead_lettered: u64,
    /// Per manager.
    pub managers: Vec<ManagerReport>,
}

/// What `redeliver_dead_letters` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedeliveryReport {
    /// Dead letters delivered (removed from the file).
    pub delivered: u64,
    /// Dead letters that failed again (kept, with the new error and attempt count).
    pub remaining: u64,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A request to a reader thread.
pub(crate) enum ReaderMsg {
    State(Reply<Value>),
    Rebuild(Reply<Value>),
    Run(Reply<ManagerReport>),
    Redeliver(Reply<RedeliveryReport>),
}

/// The store's handle on a reader thread.
pub(crate) struct ReaderRef {
    pub(crate) name: String,
    pub(crate) kind: ReaderKind,
    pub(crate) mailbox: Arc<Mailbox<ReaderMsg>>,
    /// Set when the reader's thread died (domain code panicked).
    failure: Arc<std::sync::Mutex<Option<String>>>,
    /// Last store position the reader has read through (for [`crate::StoreMetrics`]).
    pub(crate) position: Arc<std::sync::atomic::AtomicU64>,
}

enum Machine {
    Projection(ProjectionMachine),
    Manager(ProcessManagerMachine),
}

impl Machine {
    fn handle(&mut self, now: Timestamp, input: ReaderInput) {
        match self {
            Machine::Projection(m) => m.handle(now, input),
            Machine::Manager(m) => m.handle(now, input),
        }
    }
    fn poll(&mut self) -> Option<Output> {
        match self {
            Machine::Projection(m) => m.poll(),
            Machine::Manager(m) => m.poll(),
        }
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        match self {
            Machine::Projection(m) => m.poll_timeout().map(|t| t.0),
            Machine::Manager(m) => m.poll_timeout().map(|t| t.0),
        }
    }
    fn is_idle(&self) -> bool {
        match self {
            Machine::Projection(m) => m.is_idle(),
            Machine::Manager(m) => m.is_idle(),
        }
    }
    fn is_failed(&self) -> bool {
        match self {
            Machine::Projection(m) => m.is_failed(),
            Machine::Manager(m) => m.is_failed(),
        }
    }
    fn state(&mut self) -> Result<Value, StoreError> {
        match self {
            Machine::Projection(m) => m.state(),
            Machine::Manager(m) => m.state(),
        }
        .map_err(StoreError::Fault)
    }
}

enum Waiter {
    State(Reply<Value>),
    Run(Reply<ManagerReport>),
}

struct ReaderThread {
    inner: Arc<Inner>,
    name: String,
    kind: ReaderKind,
    dir: PathBuf,
    machine: Machine,
    mailbox: Arc<Mailbox<ReaderMsg>>,
    waiters: Vec<Waiter>,
    last_error: Option<String>,
    dispatched: (u64, u64),
    dead_lettered: (u64, u64),
    wake_at: Option<Instant>,
    /// The store is closing: the final checkpoint is written durably.
    closing: bool,
    /// Logs kept open between batches.
    files: HashMap<Arc<evfold_core::StreamId>, File>,
    /// Shared with [`ReaderRef::position`].
    position: Arc<std::sync::atomic::AtomicU64>,
    /// A process manager that dispatches only when asked
    /// ([`crate::StoreConfig::process_managers_on_demand`]): commits do not wake it.
    on_demand: bool,
    /// Whether the machine has been started: an on-demand process manager does not even
    /// catch up at open until the first request.
    started: bool,
}

/// Starts a projection's thread.
pub(crate) fn spawn_projection(
    inner: &Arc<Inner>,
    projection: Box<dyn DynProjection>,
) -> Result<ReaderRef, StoreError> {
    let name = projection.name().to_owned();
    let mut machine = ProjectionMachine::new(projection, inner.config.reader.clone(), inner.now());
    machine.set_schemas(inner.schemas());
    spawn(inner, name, ReaderKind::Projection, Machine::Projection(machine))
}

/// Starts a process manager's thread.
pub(crate) fn spawn_process_manager(
    inner: &Arc<Inner>,
    manager: Box<dyn DynProcessManager>,
) -> Result<ReaderRef, StoreError> {
    let name = manager.name().to_owned();
    // A process manager's checkpoint bounds re-dispatch after a crash: never coalesced, and
    // batches no larger than the core default (512), as before checkpoints were coalesced.
    let config = inner.config.reader.clone().every_batch();
    let config = ReaderConfig { batch_size: config.batch_size.min(ReaderConfig::default().batch_size), ..config };
    let mut machine = ProcessManagerMachine::new(manager, config, inner.now());
    machine.set_schemas(inner.schemas());
    spawn(inner, name, ReaderKind::ProcessManager, Machine::Manager(machine))
}

fn spawn(inner: &Arc<Inner>, name: String, kind: ReaderKind, machine: Machine) -> Result<ReaderRef, StoreError> {
    evfold_core::validate_name("reader name", &name).map_err(|reason| StoreError::InvalidStreamId {
        aggregate_type: name.clone(),
        instance_id: String::new(),
        reason,
    })?;
    let dir = match kind {
        ReaderKind::Projection => inner.layout.projection_dir(&name),
        ReaderKind::ProcessManager => inner.layout.process_manager_dir(&name),
    };
    let mailbox: Arc<Mailbox<ReaderMsg>> = Arc::new(Mailbox::default());
    let position = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let weak: Weak<dyn Wake> = Arc::downgrade(&mailbox) as Weak<dyn Wake>;
    inner.ledger.watch(weak);
    let thread = ReaderThread {
        inner: inner.clone(),
        name: name.clone(),
        kind,
        dir,
        machine,
        mailbox: mailbox.clone(),
        waiters: Vec::new(),
        last_error: None,
        dispatched: (0, 0),
        dead_lettered: (0, 0),
        wake_at: None,
        closing: false,
        files: HashMap::new(),
        position: position.clone(),
        on_demand: kind == ReaderKind::ProcessManager && inner.config.process_managers_on_demand,
        started: !(kind == ReaderKind::ProcessManager && inner.config.process_managers_on_demand),
    };
    let failure = Arc::new(std::sync::Mutex::new(None));
    let (thread_failure, thread_mailbox, thread_name) = (failure.clone(), mailbox.clone(), name.clone());
    let handle = std::thread::Builder::new()
        .name(format!("evfold-reader:{name}"))
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| thread.run()));
            if let Err(panic) = outcome {
                let reason = format!("panicked: {}", crate::store::panic_message(&*panic));
                tracing::error!(reader = %thread_name, %reason, "reader thread died");
                *thread_failure.lock().expect("failure lock") = Some(reason.clone());
                for message in thread_mailbox.close_and_take() {
                    fail_reader_message(message, &thread_name, &reason);
                }
            }
        })
        .map_err(|e| StoreError::io(inner.layout.root(), e))?;
    inner.push_thread(handle);
    Ok(ReaderRef { name, kind, mailbox, failure, position })
}

/// Asks a reader for its state once caught up.
pub(crate) async fn ask_state(reader: &ReaderRef) -> Result<Value, StoreError> {
    ask(reader, ReaderMsg::State).await
}

/// Asks a projection to rebuild; answers with the rebuilt state.
pub(crate) async fn ask_rebuild(reader: &ReaderRef) -> Result<Value, StoreError> {
    ask(reader, ReaderMsg::Rebuild).await
}

/// Asks a process manager to re-dispatch its dead letters.
pub(crate) async fn ask_redeliver(reader: &ReaderRef) -> Result<RedeliveryReport, StoreError> {
    ask(reader, ReaderMsg::Redeliver).await
}

/// Asks a process manager to catch up and report.
pub(crate) async fn ask_run(reader: &ReaderRef) -> Result<ManagerReport, StoreError> {
    ask(reader, ReaderMsg::Run).await
}

async fn ask<T>(reader: &ReaderRef, build: impl FnOnce(Reply<T>) -> ReaderMsg) -> Result<T, StoreError> {
    let (tx, rx) = oneshot::channel();
    let failed = || match reader.failure.lock().expect("failure lock").clone() {
        Some(reason) => StoreError::ReaderFailed { name: reader.name.clone(), reason },
        None => StoreError::Closed,
    };
    if reader.mailbox.send(build(tx)).is_err() {
        return Err(failed());
    }
    rx.await.map_err(|_| failed())?
}

fn fail_reader_message(message: ReaderMsg, name: &str, reason: &str) {
    let error = || StoreError::ReaderFailed { name: name.to_owned(), reason: reason.to_owned() };
    match message {
        ReaderMsg::State(reply) | ReaderMsg::Rebuild(reply) => drop(reply.send(Err(error()))),
        ReaderMsg::Run(reply) => drop(reply.send(Err(error()))),
        ReaderMsg::Redeliver(reply) => drop(reply.send(Err(error()))),
    }
}

impl ReaderThread {
    fn run(mut self) {
        let span = tracing::debug_span!("reader", name = %self.name);
        let _enter = span.enter();
        loop {
            if self.started {
                self.drain();
                self.answer_waiters();
            }
            let machine_deadline = self.machine.poll_timeout().map(|at| self.instant_for(at));
            let deadline = match (machine_deadline, self.wake_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let now = self.inner.now();
            match self.mailbox.recv(deadline) {
                Received::Message(message) => self.on_message(message),
                Received::Woken if self.on_demand => {}
                Received::Woken => {
                    let delay = self.inner.config.reader_wake_delay;
                    self.wake_at.get_or_insert_with(|| Instant::now() + delay);
                }
                Received::Timeout => self.on_deadline(now),
                Received::Closed => {
                    if self.started {
                        self.flush(now);
                    }
                    break;
                }
            }
        }
        for waiter in self.waiters.drain(..) {
            match waiter {
                Waiter::State(reply) => drop(reply.send(Err(StoreError::Closed))),
                Waiter::Run(reply) => drop(reply.send(Err(StoreError::Closed))),
            }
        }
    }

    /// The store is closing: save what is folded but unsaved, durably.
    fn flush(&mut self, now: Timestamp) {
        self.closing = true;
        self.machine.handle(now, ReaderInput::Flush);
        self.drain();
    }

    fn on_deadline(&mut self, now: Timestamp) {
        if self.wake_at.is_some_and(|at| Instant::now() >= at) {
            self.wake_at = None;
            self.machine.handle(now, ReaderInput::Wake);
        }
        self.machine.handle(now, ReaderInput::Timeout);
    }

    fn instant_for(&self, at: Timestamp) -> Instant {
        let now = self.inner.now();
        Instant::now() + Duration::from_millis(at.0.saturating_sub(now.0))
    }

    fn on_message(&mut self, message: ReaderMsg) {
        self.started = true;
        let now = self.inner.now();
        match message {
            ReaderMsg::State(reply) => {
                self.waiters.push(Waiter::State(reply));
                self.machine.handle(now, ReaderInput::Wake);
            }
            ReaderMsg::Rebuild(reply) => {
                if self.kind == ReaderKind::ProcessManager {
                    let reason = "process managers cannot be rebuilt".to_owned();
                    let _ = reply.send(Err(StoreError::ReaderFailed { name: self.name.clone(), reason }));
                    return;
                }
                self.last_error = None;
                self.waiters.push(Waiter::State(reply));
                self.machine.handle(now, ReaderInput::Rebuild);
            }
            ReaderMsg::Run(reply) => {
                self.waiters.push(Waiter::Run(reply));
                self.machine.handle(now, ReaderInput::Wake);
            }
            ReaderMsg::Redeliver(reply) => {
                let _ = reply.send(self.redeliver());
            }
        }
    }

    /// Re-dispatches every dead letter; keeps (with the new error) those that fail again. This
    /// thread is the only writer of the dead-letter file, so nothing is lost to a race.
    fn redeliver(&mut self) -> Result<RedeliveryReport, StoreError> {
        let path = self.inner.layout.dead_letters_file(&self.name);
        let letters = read_dead_letters(&path, TornTail::Quarantine)?;
        let mut report = RedeliveryReport::default();
        let mut kept = Vec::new();
        for (index, mut letter) in letters.into_iter().enumerate() {
            let seed = seed_for(&format!("{}:redeliver:{}:{index}", self.name, letter.cause));
            let command = letter.command.clone();
            match self.inner.execute_blocking(&command.target, command.command, command.context, Some(seed)) {
                Ok(_) => report.delivered += 1,
                Err(e) => {
                    letter.attempts += 1;
                    letter.error = e.to_string();
                    letter.ts = self.inner.now();
                    kept.push(letter);
                }
            }
        }
        report.remaining = kept.len() as u64;
        let mut bytes = Vec::new();
        for letter in &kept {
            bytes.extend_from_slice(&serde_json::to_vec(letter).expect("a dead letter serializes"));
            bytes.push(b'\n');
        }
        if report.delivered > 0 || !kept.is_empty() {
            fsio::atomic_write(&path, &bytes)?;
        }
        Ok(report)
    }

    fn drain(&mut self) {
        let _span = tracing::debug_span!("catch_up").entered();
        while let Some(output) = self.machine.poll() {
            match output {
                Output::Io { io, request } => self.complete(io, request),
                Output::Notify(notification) => self.notified(notification),
                Output::Reply { .. } | Output::State { .. } => {}
            }
        }
    }

    fn complete(&mut self, io: IoId, request: Io) {
        let result = self.fulfil(request);
        let now = self.inner.now();
        self.machine.handle(now, ReaderInput::Completed { io, result });
    }

    fn notified(&mut self, notification: Notification) {
        match notification {
            Notification::Poisoned { reason, .. } => {
                tracing::warn!(%reason, "reader failure");
                self.last_error = Some(reason);
            }
            Notification::DeadLettered { dispatch_id, .. } => {
                tracing::warn!(%dispatch_id, "command dead-lettered");
                self.dead_lettered.0 += 1;
                self.dead_lettered.1 += 1;
            }
            Notification::CaughtUp { .. } | Notification::CheckpointSaved { .. } => self.last_error = None,
            other => tracing::trace!(?other, "notification"),
        }
    }

    /// Answers waiters once the reader is caught up, has failed, or is backing off after an IO
    /// failure (then with that failure, rather than making the caller wait for the retry).
    fn answer_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let backing_off = self.last_error.is_some() && self.machine.poll_timeout().is_some();
        let failed = self.machine.is_failed() || (backing_off && !self.machine.is_idle());
        if !failed && !self.machine.is_idle() {
            return;
        }
        for waiter in std::mem::take(&mut self.waiters) {
            let error = || StoreError::ReaderFailed {
                name: self.name.clone(),
                reason: self.last_error.clone().unwrap_or_else(|| "failed".into()),
            };
            match waiter {
                Waiter::State(reply) => {
                    let result = if failed { Err(error()) } else { self.machine.state() };
                    let _ = reply.send(result);
                }
                Waiter::Run(reply) => {
                    let report = ManagerReport {
                        name: self.name.clone(),
                        dispatched: std::mem::take(&mut self.dispatched.0),
                        dead_lettered: std::mem::take(&mut self.dead_lettered.0),
                        total_dispatched: self.dispatched.1,
                        total_dead_lettered: self.dead_lettered.1,
                    };
                    let _ = reply.send(if failed { Err(error()) } else { Ok(report) });
                }
            }
        }
    }

    fn fulfil(&mut self, request: Io) -> IoResult {
        match request {
            Io::ReadCheckpoint { .. } => self.read_checkpoint(),
            Io::ReadAll { after, max_events } => self.read_all(&after, max_events),
            Io::WriteCheckpoint { checkpoint, .. } => self.write_checkpoint(&checkpoint),
            Io::Dispatch { dispatch_id, command } => self.dispatch(&dispatch_id, command),
            Io::WriteDeadLetter { letter, .. } => {
                let mut line = serde_json::to_vec(&letter).expect("a dead letter serializes");
                line.push(b'\n');
                let path = self.inner.layout.dead_letters_file(&self.name);
                done_or_storage(crate::sidefile::append_line::<DeadLetter>(&path, &line))
            }
            other => IoResult::Failed(IoError::new(IoErrorKind::Storage, format!("not a reader request: {other:?}"))),
        }
    }

    /// Process managers and the final save at close: temp file, fsync, rename, directory
    /// fsync. Other projection saves: temp file + rename only (atomic, not forced to disk; the
    /// kernel writes it back within seconds). A crash can then leave an older checkpoint or an
    /// unreadable one, and either only means folding again (see `unusable_checkpoint`).
    fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> IoResult {
        let bytes = serde_json::to_vec(checkpoint).expect("a checkpoint serializes");
        let path = self.dir.join(CHECKPOINT_FILE);
        let durable = self.kind == ReaderKind::ProcessManager || self.closing;
        done_or_storage(if durable { fsio::atomic_write(&path, &bytes) } else { fsio::atomic_replace(&path, &bytes) })
    }

    fn read_checkpoint(&mut self) -> IoResult {
        let path = self.dir.join(CHECKPOINT_FILE);
        let bytes = match fsio::read_optional(&path) {
            Ok(None) => return IoResult::Checkpoint(None),
            Ok(Some(bytes)) => bytes,
            Err(e) => return IoResult::Failed(IoError::new(IoErrorKind::Storage, e.to_string())),
        };
        let checkpoint = match serde_json::from_slice::<Checkpoint>(&bytes) {
            Ok(c) => c,
            Err(e) => return self.unusable_checkpoint(format!("{} does not decode: {e}", path.display())),
        };
        let position = checkpoint.position.0.as_u64().unwrap_or(0);
        let watermark = match self.inner.ledger.watermark() {
            Ok(watermark) => watermark,
            Err(e) => return IoResult::Failed(IoError::new(IoErrorKind::Storage, e.to_string())),
        };
        if position > watermark {
            let reason = format!("{} is at pos {position}, past the store's end {watermark}", path.display());
            return self.unusable_checkpoint(reason);
        }
        IoResult::Checkpoint(Some(checkpoint))
    }

    /// A projection folds again from the start; a process manager must not (it would
    /// re-dispatch everything), so it stops with the reason.
    fn unusable_checkpoint(&mut self, reason: String) -> IoResult {
        match self.kind {
            ReaderKind::Projection => {
                tracing::warn!(%reason, "checkpoint unusable; rebuilding the projection");
                IoResult::Checkpoint(None)
            }
            ReaderKind::ProcessManager => IoResult::Failed(IoError::new(IoErrorKind::Corrupt, reason)),
        }
    }

    fn read_all(&mut self, after: &Position, max_events: usize) -> IoResult {
        let after = after.0.as_u64().unwrap_or(0);
        let (layout, ledger) = (&self.inner.layout, &self.inner.ledger);
        match read_positions_with(layout, ledger, after, max_events, &mut self.files) {
            Ok((events, next)) => {
                self.inner.meters.events_folded.fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
                self.position.store(next, std::sync::atomic::Ordering::Relaxed);
                let next = if next == 0 { Position::start() } else { Position(Value::from(next)) };
                IoResult::Batch { events, next }
            }
            Err(e) => {
                self.files.clear(); // the retry reopens every log
                IoResult::Failed(IoError::new(IoErrorKind::Storage, e.to_string()))
            }
        }
    }

    fn dispatch(&mut self, dispatch_id: &str, envelope: CommandEnvelope) -> IoResult {
        let CommandEnvelope { target, command, context } = envelope;
        let seed = seed_for(dispatch_id);
        match self.inner.execute_blocking(&target, command, context, Some(seed)) {
            Ok(_) => {
                self.dispatched.0 += 1;
                self.dispatched.1 += 1;
                IoResult::Done
            }
            Err(e) => {
                let kind = match &e {
                    ExecuteError::Rejected(_)
                    | ExecuteError::Fault(_)
                    | ExecuteError::EventTooLarge { .. }
                    | ExecuteError::Store(StoreError::UnknownAggregateType(_))
                    | ExecuteError::Store(StoreError::InvalidStreamId { .. }) => IoErrorKind::Rejected,
                    _ => IoErrorKind::Unavailable,
                };
                IoResult::Failed(IoError::new(kind, e.to_string()))
            }
        }
    }
}

fn done_or_storage(result: Result<(), StoreError>) -> IoResult {
    match result {
        Ok(()) => IoResult::Done,
        Err(e) => IoResult::Failed(IoError::new(IoErrorKind::Storage, e.to_string())),
    }
}

/// Event ids of a dispatched command derive from its dispatch id (a stable FNV-1a hash, not
/// std's unspecified one), so a re-dispatch after a crash carries the same event ids and the
/// store recognises it as already delivered.
pub(crate) fn seed_for(dispatch_id: &str) -> IdSeed {
    let fnv = |salt: u8| {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in std::iter::once(salt).chain(dispatch_id.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    };
    IdSeed(((u128::from(fnv(1)) << 64) | u128::from(fnv(2))) & !0xfff)
}

/// Up to `max` settled events after `after`, read through the index; and the position scanned
/// to. A stream's events in a window of positions are consecutive lines of its log, so each
/// stream costs one read per batch.
pub(crate) fn read_positions(
    layout: &StoreLayout,
    ledger: &Ledger,
    after: u64,
    max: usize,
) -> Result<(Vec<StoredEvent>, u64), StoreError> {
    read_positions_with(layout, ledger, after, max, &mut HashMap::new())
}

/// [`read_positions`], keeping each log it opens in `files` for the next call (a reader thread
/// keeps them while it lives: logs are only appended to, or truncated in place).
pub(crate) fn read_positions_with(
    layout: &StoreLayout,
    ledger: &Ledger,
    after: u64,
    max: usize,
    files: &mut HashMap<Arc<evfold_core::StreamId>, File>,
) -> Result<(Vec<StoredEvent>, u64), StoreError> {
    let (entries, next) = ledger.slice(after, max)?;
    let mut groups: HashMap<Arc<evfold_core::StreamId>, Vec<(usize, u64, u64)>> = HashMap::new();
    for (i, (pos, entry)) in entries.iter().enumerate() {
        groups.entry(entry.stream.clone()).or_default().push((i, *pos, entry.offset));
    }
    let mut slots: Vec<Option<StoredEvent>> = vec![None; entries.len()];
    for (stream, items) in groups {
        let path = layout.events_file(&stream);
        let file = match files.entry(stream.clone()) {
            std::collections::hash_map::Entry::Occupied(file) => file.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => slot.insert(fsio::open_read(&path)?),
        };
        let first = items[0].2;
        let last = items[items.len() - 1].2;
        let bytes = read_lines(file, &path, first, last)?;
        for (slot, pos, offset) in items {
            let record = decode_at(&bytes, &path, first, offset)?;
            if record.pos != pos {
                return Err(StoreError::Corrupt {
                    path: path.clone(),
                    line: 0,
                    offset,
                    reason: format!("index says pos {pos}, line holds pos {}", record.pos),
                });
            }
            slots[slot] = Some(StoredEvent { stream: (*stream).clone(), record });
        }
    }
    Ok((slots.into_iter().flatten().collect(), next))
}

/// Reads the bytes from `first` through the end of the line that starts at `last`.
fn read_lines(file: &File, path: &Path, first: u64, last: u64) -> Result<Vec<u8>, StoreError> {
    use std::os::unix::fs::FileExt;
    let need = (last - first) as usize;
    let mut buf = vec![0u8; need + 4096];
    let mut filled = 0usize;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = file.read_at(&mut buf[filled..], first + filled as u64).map_err(|e| StoreError::io(path, e))?;
        let scan_from = filled.max(need);
        filled += n;
        if filled > need && buf[scan_from..filled].contains(&b'\n') {
            buf.truncate(filled);
            return Ok(buf);
        }
        if n == 0 {
            let reason = "indexed line has no end".to_owned();
            return Err(StoreError::Corrupt { path: path.to_owned(), line: 0, offset: last, reason });
        }
    }
}

fn decode_at(bytes: &[u8], path: &Path, first: u64, offset: u64) -> Result<evfold_core::EventRecord, StoreError> {
    let start = (offset - first) as usize;
    let corrupt = |reason: String| StoreError::Corrupt { path: path.to_owned(), line: 0, offset, reason };
    let len = bytes[start..].iter().position(|b| *b == b'\n').ok_or_else(|| corrupt("no line end".into()))?;
    evfold_core::decode_line(&bytes[start..start + len]).map_err(|e| corrupt(e.to_string()))
}

/// Reads a dead-letter log with the side-file rules (`sidefile`): a torn tail is ignored (cut
/// away with [`TornTail::Quarantine`], by the file's only writer), a bad line refused.
pub(crate) fn read_dead_letters(path: &Path, torn: TornTail) -> Result<Vec<DeadLetter>, StoreError> {
    crate::sidefile::read_values(path, torn)
}
