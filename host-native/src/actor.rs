//! One OS thread per live aggregate instance: it owns the stream's log handle and its
//! `AggregateMachine`, fulfils the machine's IO on real files, and feeds the results back.
//! Group commit falls out of the machine: the mailbox is drained into the machine before every
//! IO, so commands that arrive during a write+fsync go out together in the next one.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use evfold_core::{
    AggregateFactory, AggregateInput, AggregateMachine, CommandContext, CommandError, CommandId, Committed, EventId,
    ExpectedVersion, IdSeed, Io, IoError, IoErrorKind, IoId, IoResult, NewEvent, Notification, Output, Payload,
    Snapshot, StreamId, Timestamp,
};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::error::{Corruption, ExecuteError, StoreError};
use crate::fsio;
use crate::ledger::PosRange;
use crate::log::{self, TornTail};
use crate::mailbox::{Mailbox, Received};
use crate::store::{Durability, Inner};

mod inject_run;
pub use inject_run::InjectRunOutcome;

/// A reply channel.
pub(crate) type Reply<T> = oneshot::Sender<T>;
/// Where a command's answer goes: what it committed and the records it appended.
pub(crate) type CommandReply = Reply<Result<(Committed, Vec<evfold_core::EventRecord>), Refusal>>;
/// Where a state query's answer goes.
pub(crate) type StateReply = Reply<Result<(u64, Value), Refusal>>;

/// Why an actor did not do what a command or query asked: the machine's error, or a store-level
/// reason the stream cannot be served (its log is corrupt, its failed sync could not be cut
/// back, the store closed): the same typed error for every call on the stream.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The aggregate machine's answer.
    Command(CommandError),
    /// The stream cannot be served.
    Store(StoreError),
}

impl Refusal {
    /// For typed `execute` on aggregate `A`: domain errors become `A::Error`, downcast (native
    /// code) or decoded from their data (plugins, `Aggregate::error_from_data`).
    pub(crate) fn into_execute<A: evfold_core::Aggregate>(self) -> ExecuteError<A::Error> {
        match self {
            Refusal::Command(e) => ExecuteError::from_command_decoding(e, A::error_from_data),
            Refusal::Store(e) => ExecuteError::Store(e),
        }
    }

    /// For JSON-level execute.
    pub(crate) fn into_execute_untyped<E: std::error::Error + 'static>(self) -> ExecuteError<E> {
        match self {
            Refusal::Command(e) => ExecuteError::from_untyped(e),
            Refusal::Store(e) => ExecuteError::Store(e),
        }
    }

    /// For state queries.
    pub(crate) fn into_store(self) -> StoreError {
        match self {
            Refusal::Command(e) => StoreError::Command(e),
            Refusal::Store(e) => e,
        }
    }
}

/// What an injected event became.
// Returned once per inject and moved, never stored in bulk: a box would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum InjectOutcome {
    /// It was appended (durably, unless the store runs buffered) as this record.
    Appended(evfold_core::EventRecord),
    /// An event with this id is already stored: nothing was written.
    Duplicate,
}

/// A message to an aggregate actor.
pub(crate) enum ActorMsg {
    Command {
        command: Payload,
        context: CommandContext,
        expected: ExpectedVersion,
        ids: Option<IdSeed>,
        reply: CommandReply,
    },
    Query {
        reply: StateReply,
    },
    Inject {
        event: NewEvent,
        reply: Reply<Result<InjectOutcome, StoreError>>,
    },
    InjectRun {
        events: Vec<NewEvent>,
        reply: Reply<Result<InjectRunOutcome, StoreError>>,
    },
}

/// The stream's log as the actor sees it.
struct LogState {
    path: std::path::PathBuf,
    file: Option<File>,
    len: u64,
    /// Length after the last successful fdatasync (or as loaded): what a failed one cuts back to.
    durable_len: u64,
    version: u64,
    loaded: bool,
}

/// An append not yet synced: its positions and event ids.
struct Unsynced {
    range: PosRange,
    ids: Vec<EventId>,
}

pub(crate) struct Actor {
    inner: Arc<Inner>,
    stream: Arc<StreamId>,
    mailbox: Arc<Mailbox<ActorMsg>>,
    machine: AggregateMachine,
    factory: Arc<dyn AggregateFactory>,
    log: LogState,
    unsynced: Vec<Unsynced>,
    replies: HashMap<CommandId, CommandReply>,
    /// Records of the batch in flight, by pos, to hand back with each command's reply.
    appended: HashMap<u64, evfold_core::EventRecord>,
    queries: HashMap<CommandId, StateReply>,
    injects: Vec<(NewEvent, Reply<Result<InjectOutcome, StoreError>>)>,
    runs: Vec<inject_run::QueuedRun>,
    run_scratch: inject_run::RunScratch,
    preloaded: Option<log::Headers>,
    poison_reason: Option<String>,
    /// Set when loading found the log corrupt: every answer of this actor is that error.
    corrupt: Option<Corruption>,
    next_id: u64,
    exit: bool,
    poisoned: bool,
}

impl Actor {
    /// Builds the actor (instantiating the aggregate) without starting its thread.
    pub(crate) fn new(
        inner: Arc<Inner>,
        stream: StreamId,
        mailbox: Arc<Mailbox<ActorMsg>>,
        factory: Arc<dyn AggregateFactory>,
    ) -> Result<Actor, StoreError> {
        let aggregate = factory.instantiate().map_err(StoreError::Fault)?;
        let now = inner.now();
        let machine = AggregateMachine::new(stream.clone(), aggregate, inner.aggregate_config(), now);
        let path = inner.layout.events_file(&stream);
        Ok(Actor {
            inner,
            stream: Arc::new(stream),
            mailbox,
            machine,
            factory,
            log: LogState { path, file: None, len: 0, durable_len: 0, version: 0, loaded: false },
            unsynced: Vec::new(),
            replies: HashMap::new(),
            appended: HashMap::new(),
            queries: HashMap::new(),
            injects: Vec::new(),
            runs: Vec::new(),
            run_scratch: None,
            preloaded: None,
            poison_reason: None,
            corrupt: None,
            next_id: 0,
            exit: false,
            poisoned: false,
        })
    }

    /// The thread body: drive the machine until evicted, poisoned or shut down.
    pub(crate) fn run(mut self) {
        let span = tracing::debug_span!("actor", stream = %self.stream);
        let _enter = span.enter();
        loop {
            self.drain_outputs();
            if self.has_injects() && self.machine.is_quiescent() && !self.poisoned {
                self.run_injects();
                continue;
            }
            if self.poisoned {
                self.retire_poisoned();
            }
            if self.exit {
                break;
            }
            let deadline = self.machine.poll_timeout().map(|(at, _)| self.instant_for(at));
            match self.mailbox.recv(deadline) {
                Received::Message(message) => self.feed(message),
                Received::Woken => {}
                Received::Timeout => {
                    let now = self.inner.now();
                    self.machine.handle(now, AggregateInput::Timeout);
                }
                Received::Closed if !self.has_injects() => break,
                Received::Closed => {}
            }
        }
        tracing::debug!("actor stopped");
    }

    fn instant_for(&self, at: Timestamp) -> Instant {
        let now = self.inner.now();
        Instant::now() + Duration::from_millis(at.0.saturating_sub(now.0))
    }

    fn feed(&mut self, message: ActorMsg) {
        let now = self.inner.now();
        match message {
            ActorMsg::Command { command, context, expected, ids: Some(seed), reply }
                if matches!(self.inner.ledger.contains_id(&seed.event_id(0)), Ok(true)) =>
            {
                // An idempotent re-delivery (process-manager dispatch ids derive the event ids):
                // its events are already stored, so it is acknowledged without running again.
                tracing::debug!(command = %command.type_name, ?expected, "duplicate delivery skipped");
                drop(context);
                let version = self.log.version;
                let _ = reply.send(Ok((Committed { version, n_events: 0, positions: Vec::new() }, Vec::new())));
            }
            ActorMsg::Command { command, context, expected, ids, reply } => {
                let id = self.next_command_id();
                self.replies.insert(id, reply);
                let ids = ids.unwrap_or_else(|| self.inner.next_seed());
                self.machine.handle(now, AggregateInput::Command { id, command, context, expected, ids });
            }
            ActorMsg::Query { reply } => {
                let id = self.next_command_id();
                self.queries.insert(id, reply);
                self.machine.handle(now, AggregateInput::Query { id });
            }
            ActorMsg::Inject { event, reply } => self.injects.push((event, reply)),
            ActorMsg::InjectRun { events, reply } => self.runs.push((events, reply)),
        }
    }

    /// Commands queued behind a poisoning failure are refused with "poisoned; reopen it": say
    /// what the failure was (it names the file and the OS error). A corrupt log, or a failed
    /// sync that could not be cut back, is the stream's typed error instead, for every call.
    fn explain(&self, error: CommandError) -> Refusal {
        let CommandError::Unavailable(message) = error else { return Refusal::Command(error) };
        if let Some(corrupt) = &self.corrupt {
            return Refusal::Store(corrupt.clone().into());
        }
        if let Some(refused) = self.inner.sync_failure(&self.stream) {
            return Refusal::Store(refused);
        }
        match &self.poison_reason {
            Some(reason) if !message.contains(reason.as_str()) => {
                Refusal::Command(CommandError::Unavailable(format!("{message}: {reason}")))
            }
            _ => Refusal::Command(CommandError::Unavailable(message)),
        }
    }

    fn next_command_id(&mut self) -> CommandId {
        self.next_id += 1;
        CommandId(self.next_id)
    }

    /// Feeds every queued message into the machine (group commit).
    fn pull_mailbox(&mut self) {
        while let Some(message) = self.mailbox.try_recv() {
            self.feed(message);
        }
    }

    fn drain_outputs(&mut self) {
        while let Some(output) = self.machine.poll() {
            match output {
                Output::Io { io, request } => {
                    self.pull_mailbox();
                    self.complete(io, request);
                }
                Output::Reply { id, result } => {
                    let meters = &self.inner.meters;
                    match &result {
                        Ok(_) => meters.commands_accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                        Err(evfold_core::CommandError::Rejected(_)) => {
                            meters.commands_rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        }
                        Err(_) => 0,
                    };
                    if let Some(reply) = self.replies.remove(&id) {
                        let result = result.map_err(|e| self.explain(e)).map(|committed| {
                            let records = committed.positions.iter().filter_map(|p| self.appended.remove(p)).collect();
                            (committed, records)
                        });
                        let _ = reply.send(result);
                    }
                }
                Output::State { id, result } => {
                    if let Some(reply) = self.queries.remove(&id) {
                        let _ = reply.send(result.map_err(|e| self.explain(e)));
                    }
                }
                Output::Notify(notification) => self.notified(notification),
            }
        }
    }

    fn complete(&mut self, io: IoId, request: Io) {
        let result = self.fulfil(request);
        let now = self.inner.now();
        self.machine.handle(now, AggregateInput::Completed { io, result });
    }

    fn notified(&mut self, notification: Notification) {
        match notification {
            Notification::Idle { .. } => self.try_evict_idle(),
            Notification::Poisoned { reason, .. } => {
                tracing::error!(%reason, "stream poisoned; it is reopened and re-read on next use");
                self.poisoned = true;
                self.poison_reason = Some(reason);
            }
            Notification::SnapshotFailed { reason, .. } => tracing::warn!(%reason, "snapshot failed"),
            other => tracing::trace!(?other, "notification"),
        }
    }

    /// Idle: close the mailbox only if it is empty, and drop the registry entry, both under the
    /// registry lock, so a `get` either finds a live mailbox or spawns a fresh actor, and a send
    /// on a stale handle fails and is re-routed: no command is lost or failed.
    fn try_evict_idle(&mut self) {
        if self.has_injects() {
            return;
        }
        let mut registry = self.inner.registry.lock().expect("registry lock");
        if !self.mailbox.close_if_empty() {
            return;
        }
        if registry.get(&*self.stream).is_some_and(|m| Arc::ptr_eq(m, &self.mailbox)) {
            registry.remove(&*self.stream);
        }
        tracing::debug!("idle actor evicted");
        self.exit = true;
    }

    /// Poisoned: leave the registry and re-route messages the machine never saw to a fresh
    /// actor, which re-reads the stream from disk.
    fn retire_poisoned(&mut self) {
        let leftovers = {
            let mut registry = self.inner.registry.lock().expect("registry lock");
            if registry.get(&*self.stream).is_some_and(|m| Arc::ptr_eq(m, &self.mailbox)) {
                registry.remove(&*self.stream);
            }
            self.mailbox.close_and_take()
        };
        self.exit = true;
        let injects = std::mem::take(&mut self.injects);
        let injects = injects.into_iter().map(|(event, reply)| ActorMsg::Inject { event, reply });
        let runs =
            std::mem::take(&mut self.runs).into_iter().map(|(events, reply)| ActorMsg::InjectRun { events, reply });
        for message in injects.chain(runs).chain(leftovers) {
            if let Err((message, error)) = self.inner.route(&self.stream, message) {
                fail_message(message, error);
            }
        }
    }

    fn fulfil(&mut self, request: Io) -> IoResult {
        match request {
            Io::ReadSnapshot { .. } => self.read_snapshot(),
            Io::ReadStream { after_seq, .. } => self.read_stream(after_seq),
            Io::Append { expected_seq, events, .. } => self.append(expected_seq, events),
            Io::Sync { .. } => self.sync(),
            Io::WriteSnapshot { snapshot, .. } => self.write_snapshot(&snapshot),
            other => {
                IoResult::Failed(IoError::new(IoErrorKind::Storage, format!("not an aggregate request: {other:?}")))
            }
        }
    }

    /// Loads the snapshot, ignoring one that claims more events than the log holds (a
    /// buffered store can lose unsynced log lines in a crash while the snapshot survived).
    fn read_snapshot(&mut self) -> IoResult {
        let path = self.inner.layout.snapshot_file(&self.stream);
        let snapshot = match fsio::read_optional(&path) {
            Ok(None) => return IoResult::Snapshot(None),
            Ok(Some(bytes)) => match serde_json::from_slice::<Snapshot>(&bytes) {
                Ok(snapshot) => snapshot,
                Err(e) => return storage_failure(format!("{}: {e}", path.display())),
            },
            Err(e) => return storage_failure(e.to_string()),
        };
        if let Some(tail) = self.tail_after(snapshot.seq) {
            self.log = LogState {
                path: self.log.path.clone(),
                file: None,
                len: tail.len(),
                durable_len: tail.len(),
                version: tail.version(),
                loaded: true,
            };
            self.preloaded = Some(tail);
            return IoResult::Snapshot(Some(snapshot));
        }
        let Ok(version) = self.load_log() else { return IoResult::Snapshot(None) };
        if snapshot.seq > version {
            tracing::warn!(snapshot_seq = snapshot.seq, version, "snapshot is ahead of the log; folding from the log");
            return IoResult::Snapshot(None);
        }
        IoResult::Snapshot(Some(snapshot))
    }

    fn read_stream(&mut self, after_seq: u64) -> IoResult {
        // The tail read with the snapshot serves only a read from the snapshot on: a machine
        // that did not restore it (another state version, an unreadable state) reads it all.
        let records = match self.preloaded.take() {
            Some(headers) if after_seq >= headers.before_seq => headers.records_after(&self.log.path, after_seq),
            _ => self.load_records(after_seq),
        };
        match records {
            Ok(records) => IoResult::Stream(records),
            Err(StoreError::Corrupt { path, line, offset, reason }) => {
                let corruption = Corruption { path, line, offset, reason };
                let message = StoreError::from(corruption.clone()).to_string();
                self.corrupt = Some(corruption);
                IoResult::Failed(IoError::new(IoErrorKind::Corrupt, message))
            }
            Err(e) => storage_failure(e.to_string()),
        }
    }

    /// With a snapshot at `seq`: reads only the log's lines after it, when this process knows
    /// the log's length and version (it scanned it at open or wrote it since) and the file
    /// still has that length.
    fn tail_after(&mut self, seq: u64) -> Option<log::Headers> {
        let (len, version) = self.inner.ledger.log(&self.stream)?;
        log::load_tail(&self.log.path, len, version, seq)
    }

    /// Reads the whole log decoding each line once (no separate header pass: the load without
    /// a snapshot), sets length and version, and returns the records after `after_seq`.
    fn load_records(&mut self, after_seq: u64) -> Result<Vec<evfold_core::EventRecord>, StoreError> {
        self.log.file = None;
        self.log.loaded = false;
        let (records, len) = log::load_records(&self.log.path)?;
        let version = records.last().map_or(0, |r| r.seq);
        self.log.len = len;
        self.log.durable_len = len;
        self.log.version = version;
        self.log.loaded = true;
        self.inner.ledger.set_log(&self.stream, len, version);
        Ok(records.into_iter().filter(|r| r.seq > after_seq).collect())
    }

    /// (Re)reads the log from disk (CRC-checking every line, recovering a torn tail), sets
    /// length and version, and keeps the bytes for the `ReadStream` that follows.
    fn load_log(&mut self) -> Result<u64, StoreError> {
        self.log.file = None;
        self.log.loaded = false;
        self.preloaded = None;
        let headers = log::load_headers(&self.log.path, TornTail::Quarantine)?.unwrap_or_default();
        self.log.len = headers.len();
        self.log.durable_len = headers.len();
        self.log.version = headers.version();
        self.log.loaded = true;
        self.inner.ledger.set_log(&self.stream, headers.len(), headers.version());
        let version = headers.version();
        self.preloaded = Some(headers);
        Ok(version)
    }

    fn append(&mut self, expected_seq: u64, events: Vec<NewEvent>) -> IoResult {
        let _span = tracing::debug_span!("append", n_events = events.len(), expected_seq).entered();
        if !self.log.loaded {
            return storage_failure("append before the stream was loaded".into());
        }
        if expected_seq != self.log.version {
            let kind = IoErrorKind::Conflict { actual_seq: self.log.version };
            return IoResult::Failed(IoError::new(kind, "stream moved"));
        }
        self.appended.clear();
        match self.write_events(events, false) {
            Ok(Ok(records)) => {
                self.appended.extend(records.iter().map(|r| (r.pos, r.clone())));
                IoResult::Appended(records)
            }
            Ok(Err(duplicate)) => storage_failure(format!("duplicate event id {duplicate}")),
            Err(e) => storage_failure(e.to_string()),
        }
    }

    /// Allocates positions, writes the lines, and (buffered) publishes them.
    fn write_events(
        &mut self,
        events: Vec<NewEvent>,
        dedup: bool,
    ) -> Result<Result<Vec<evfold_core::EventRecord>, EventId>, StoreError> {
        self.ensure_file()?;
        let base = self.log.len;
        let allocated = match self.inner.ledger.allocate(&self.stream, base, self.log.version + 1, events, dedup)? {
            Ok(allocated) => allocated,
            Err(duplicate) => return Ok(Err(duplicate.0)),
        };
        let ids: Vec<EventId> = allocated.records.iter().map(|r| r.id.clone()).collect();
        self.unsynced.push(Unsynced { range: allocated.range, ids });
        let file = self.log.file.as_mut().expect("ensured above");
        let started = std::time::Instant::now();
        let written = self.inner.faults.check_write().and_then(|()| file.write_all(&allocated.bytes));
        self.inner.meters.append_latency.record(started.elapsed());
        if let Err(e) = written {
            self.recover_after_failure();
            return Err(StoreError::io(&self.log.path, e));
        }
        let stats = &self.inner.stats;
        stats.appends.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stats.events.fetch_add(allocated.records.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.log.len += allocated.bytes.len() as u64;
        self.log.version += allocated.records.len() as u64;
        if self.inner.config.durability == Durability::Buffered {
            self.publish_unsynced();
        }
        Ok(Ok(allocated.records))
    }

    fn ensure_file(&mut self) -> Result<(), StoreError> {
        if self.log.file.is_some() {
            return Ok(());
        }
        // Returns once the log's directory entry (and every directory above it, up to the root)
        // is durable, whoever created them.
        self.log.file = Some(fsio::open_append(&self.log.path)?);
        Ok(())
    }

    fn sync(&mut self) -> IoResult {
        let _span = tracing::debug_span!("sync").entered();
        let Some(file) = self.log.file.as_ref() else {
            return storage_failure("sync without an open log".into());
        };
        let started = std::time::Instant::now();
        let synced = self.inner.faults.check_sync().and_then(|()| file.sync_data());
        self.inner.meters.fsync_latency.record(started.elapsed());
        match synced {
            Ok(()) => {
                self.inner.stats.syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.log.durable_len = self.log.len;
                self.publish_unsynced();
                IoResult::Done
            }
            Err(e) => {
                tracing::error!(error = %e, path = %self.log.path.display(), "fdatasync failed");
                self.recover_after_failure();
                storage_failure(format!("fdatasync {}: {e}", self.log.path.display()))
            }
        }
    }

    fn publish_unsynced(&mut self) {
        for unsynced in self.unsynced.drain(..) {
            self.inner.ledger.publish(unsynced.range);
        }
    }

    /// A write or fsync failed. A synced store first cuts the log back to its last durable
    /// length, durably, before anything can read the failed bytes (after a failed fdatasync the
    /// page cache may still serve lines the disk never got: fsyncgate); if that cut fails, the
    /// stream is refused until the store is reopened and every unsynced position is a hole.
    /// Then: drop the handle, re-read the log from disk, keep the positions whose lines are
    /// there (a buffered store's, whose durability is unknown) and turn the rest into holes, so
    /// the watermark moves on. The machine poisons itself and this actor retires.
    fn recover_after_failure(&mut self) {
        let file = self.log.file.take();
        self.log.loaded = false;
        if self.inner.config.durability == Durability::Sync {
            if let Err(reason) = self.cut_back(file) {
                self.refuse_until_reopen(reason);
                return;
            }
        }
        let present: HashSet<u64> = match log::load_headers(&self.log.path, TornTail::Quarantine) {
            Ok(headers) => {
                let headers = headers.unwrap_or_default();
                self.inner.ledger.set_log(&self.stream, headers.len(), headers.version());
                headers.lines.iter().map(|l| l.pos).collect()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot re-read the log after a failure; its unsynced positions become holes");
                HashSet::new()
            }
        };
        for unsynced in std::mem::take(&mut self.unsynced) {
            let lost: Vec<EventId> = (unsynced.range.first..=unsynced.range.last)
                .zip(&unsynced.ids)
                .filter(|(pos, _)| !present.contains(pos))
                .map(|(_, id)| id.clone())
                .collect();
            self.inner.ledger.forget_ids(&lost);
            self.inner.ledger.resolve(unsynced.range, &|pos| present.contains(&pos));
        }
        self.poisoned = true;
    }

    /// Truncates the log to its last durable length and fsyncs that (through the fault hook).
    fn cut_back(&mut self, file: Option<File>) -> Result<(), String> {
        let len = self.log.durable_len;
        let file = match file {
            Some(file) => file,
            None => fsio::open_append(&self.log.path).map_err(|e| e.to_string())?,
        };
        file.set_len(len).map_err(|e| format!("truncate: {e}"))?;
        self.inner.faults.check_sync().and_then(|()| file.sync_all()).map_err(|e| format!("fsync: {e}"))?;
        tracing::warn!(path = %self.log.path.display(), len, "log cut back to its last durable length");
        Ok(())
    }

    /// The cut after a failed fdatasync failed: no reader may ever see the unsynced lines, so
    /// they become holes without re-reading the file, and the stream is refused until reopen.
    fn refuse_until_reopen(&mut self, reason: String) {
        tracing::error!(path = %self.log.path.display(), %reason, "cannot cut the log back; stream refused until reopen");
        let failed = (self.log.path.clone(), self.log.durable_len, reason);
        self.inner.sync_failed.lock().expect("sync_failed lock").insert((*self.stream).clone(), failed);
        for unsynced in std::mem::take(&mut self.unsynced) {
            self.inner.ledger.forget_ids(&unsynced.ids);
            self.inner.ledger.resolve(unsynced.range, &|_| false);
        }
        self.poisoned = true;
    }

    fn write_snapshot(&mut self, snapshot: &Snapshot) -> IoResult {
        let path = self.inner.layout.snapshot_file(&self.stream);
        let bytes = serde_json::to_vec(snapshot).expect("a snapshot serializes");
        match fsio::atomic_write(&path, &bytes) {
            Ok(()) => IoResult::Done,
            Err(e) => storage_failure(e.to_string()),
        }
    }

    /// Performs the queued injects while the machine is quiescent, then replaces the machine
    /// with a fresh one that reloads from disk (so it folds the injected events).
    fn run_injects(&mut self) {
        let mut appended = false;
        for (event, reply) in std::mem::take(&mut self.injects) {
            let result = self.inject(event);
            appended |= matches!(result, Ok(InjectOutcome::Appended(_)));
            let _ = reply.send(result);
        }
        appended |= self.run_queued_runs();
        if !appended || self.poisoned {
            return;
        }
        match self.factory.instantiate() {
            Ok(aggregate) => {
                let now = self.inner.now();
                let config = self.inner.aggregate_config();
                self.machine = AggregateMachine::new((*self.stream).clone(), aggregate, config, now);
            }
            Err(fault) => {
                tracing::error!(%fault, "cannot re-instantiate the aggregate after an inject");
                self.poisoned = true;
            }
        }
    }

    /// Appends a pre-validated event (relay sync) unless its id is already stored.
    fn inject(&mut self, event: NewEvent) -> Result<InjectOutcome, StoreError> {
        let _span = tracing::debug_span!("inject", id = %event.id).entered();
        if !self.log.loaded {
            self.load_log()?;
        }
        if self.inner.ledger.contains_id(&event.id)? {
            return Ok(InjectOutcome::Duplicate);
        }
        // Folded onto the stream's own state (as a run is): on an empty state a valid event
        // can fail, e.g. a withdrawal from a balance of 0.
        self.check_run(std::slice::from_ref(&event))?;
        let mut records = match self.write_events(vec![event], true)? {
            Ok(records) => records,
            Err(_) => {
                self.run_scratch = None; // it folded an event that was not written
                return Ok(InjectOutcome::Duplicate);
            }
        };
        self.preloaded = None;
        if self.inner.config.durability == Durability::Sync {
            if let IoResult::Failed(e) = self.sync() {
                return Err(StoreError::Command(CommandError::Storage(e)));
            }
        }
        Ok(InjectOutcome::Appended(records.remove(0)))
    }
}

fn storage_failure(message: String) -> IoResult {
    IoResult::Failed(IoError::new(IoErrorKind::Storage, message))
}

/// Answers a message that can no longer be delivered with why (the stream's typed refusal).
pub(crate) fn fail_message(message: ActorMsg, error: StoreError) {
    match message {
        ActorMsg::Command { reply, .. } => {
            let _ = reply.send(Err(Refusal::Store(error)));
        }
        ActorMsg::Query { reply } => {
            let _ = reply.send(Err(Refusal::Store(error)));
        }
        ActorMsg::Inject { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        ActorMsg::InjectRun { reply, .. } => {
            let _ = reply.send(Err(error));
        }
    }
}
