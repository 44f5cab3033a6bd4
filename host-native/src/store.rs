//! The store: open (lock, scan, recover, index), the actor registry (get-or-spawn, idle
//! handoff), and the public async API (`AggregateStore`, its builder, `AggregateHandle`).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use evfold_core::depth;
use evfold_core::{
    to_payload, Aggregate, AggregateConfig, AggregateFactory, CommandContext, Committed, DynProcessManager,
    DynProjection, EventRecord, ExpectedVersion, Fault, IdSeed, NewEvent, Payload, ProcessManager, Projection,
    ReaderConfig, StoredEvent, StreamId, Timestamp, TypedAggregateFactory, TypedProcessManager, TypedProjection,
};
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::actor::{fail_message, Actor, ActorMsg, InjectOutcome, Refusal};
pub use crate::config::Durability;
use crate::config::{Clock, Faults, IdSeedSource, Stats, StoreConfig, StoreStats};
use crate::error::{ExecuteError, JsonExecuteError, StoreError};
use crate::layout::{self, StoreLayout};
use crate::ledger::{Found, Ledger, Scan};
use crate::log::{self, TornTail};
use crate::mailbox::Mailbox;
use crate::readers::{self, ProcessManagerReport, ReaderKind, ReaderRef, RedeliveryReport};
use crate::subscribe::Subscription;

/// Shared state of one open store: every actor and reader thread holds it.
pub(crate) struct Inner {
    pub(crate) layout: StoreLayout,
    pub(crate) config: StoreConfig,
    pub(crate) read_only: bool,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) stats: Stats,
    pub(crate) meters: crate::metrics::Meters,
    factories: RwLock<BTreeMap<String, Arc<dyn AggregateFactory>>>,
    pub(crate) registry: Mutex<HashMap<StreamId, Arc<Mailbox<ActorMsg>>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) readers: OnceLock<BTreeMap<String, ReaderRef>>,
    /// Read-only stores fold projections on demand instead of running reader threads.
    folded: Mutex<BTreeMap<String, Box<dyn DynProjection>>>,
    closed: AtomicBool,
    lock: Mutex<Option<File>>,
    /// Streams whose log could not be cut back after a failed fdatasync: (log, durable
    /// length, why the cut failed). Refused until the store is reopened.
    pub(crate) sync_failed: Mutex<HashMap<StreamId, (std::path::PathBuf, u64, String)>>,
}

impl Inner {
    pub(crate) fn now(&self) -> Timestamp {
        (self.config.clock)()
    }

    pub(crate) fn next_seed(&self) -> IdSeed {
        (self.config.id_seeds)()
    }

    pub(crate) fn aggregate_config(&self) -> AggregateConfig {
        AggregateConfig {
            snapshot_every: self.config.snapshot_every,
            sync_each_batch: self.config.durability == Durability::Sync,
            max_batch_events: self.config.max_batch_events,
            max_event_bytes: self.config.max_event_bytes,
            max_command_bytes: self.config.max_command_bytes,
            idle_timeout_ms: self.config.idle_timeout.map(|d| d.as_millis() as u64),
            ..AggregateConfig::default()
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn factory(&self, aggregate_type: &str) -> Result<Arc<dyn AggregateFactory>, StoreError> {
        let factories = self.factories.read().expect("factories lock");
        factories
            .get(aggregate_type)
            .cloned()
            .ok_or_else(|| StoreError::UnknownAggregateType(aggregate_type.to_owned()))
    }

    fn register_factory(&self, factory: Arc<dyn AggregateFactory>) {
        let mut factories = self.factories.write().expect("factories lock");
        factories.entry(factory.aggregate_type().to_owned()).or_insert(factory);
    }

    /// Registers typed aggregate `A` on first use: its factory (which builds `A::schema()`) is
    /// made only when the type is not registered yet, not on every `get`.
    pub(crate) fn register_typed<A: Aggregate>(&self) {
        if !self.factories.read().expect("factories lock").contains_key(A::AGGREGATE_TYPE) {
            self.register_factory(Arc::new(TypedAggregateFactory::<A>::default()));
        }
    }

    /// How readers read each registered aggregate type's events (its upcasters). Readers take
    /// it when they start: a type registered later (first used after open) is read as stored
    /// by readers already running, so register aggregates with upcasters on the builder.
    pub(crate) fn schemas(&self) -> evfold_core::Schemas {
        let factories = self.factories.read().expect("factories lock");
        evfold_core::Schemas::of(factories.values().map(|f| &**f))
    }

    /// The live actor's mailbox for `stream`, spawning the actor if there is none. Under the
    /// registry lock, so concurrent first `get`s of one id share one actor.
    pub(crate) fn mailbox_for(self: &Arc<Self>, stream: &StreamId) -> Result<Arc<Mailbox<ActorMsg>>, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let factory = self.factory(stream.aggregate_type())?;
        let mut registry = self.registry.lock().expect("registry lock");
        if !registry.contains_key(stream) {
            self.check_available(stream)?;
        }
        if self.is_closed() {
            return Err(StoreError::Closed);
        }
        if let Some(mailbox) = registry.get(stream) {
            return Ok(mailbox.clone());
        }
        let mailbox = Arc::new(Mailbox::default());
        let actor = Actor::new(self.clone(), stream.clone(), mailbox.clone(), factory)?;
        let name = format!("evfold:{}", stream.instance_id());
        let (inner, owned_mailbox, owned_stream) = (self.clone(), mailbox.clone(), stream.clone());
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| actor.run()));
                if let Err(panic) = outcome {
                    inner.retire_panicked(&owned_stream, &owned_mailbox, &panic_message(&*panic));
                }
            })
            .map_err(|e| StoreError::io(self.layout.root(), e))?;
        registry.insert(stream.clone(), mailbox.clone());
        drop(registry);
        let mut threads = self.threads.lock().expect("threads lock");
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
        Ok(mailbox)
    }

    /// Refuses a stream that must not get an actor: one whose log's failed fdatasync could not
    /// be cut back (until reopen), or one whose directory, log or snapshot is a symbolic link.
    fn check_available(&self, stream: &StreamId) -> Result<(), StoreError> {
        if let Some(refused) = self.sync_failure(stream) {
            return Err(refused);
        }
        layout::check_contained(&self.layout, stream)
    }

    /// The typed refusal of a stream whose failed fdatasync could not be cut back, if it is one.
    pub(crate) fn sync_failure(&self, stream: &StreamId) -> Option<StoreError> {
        let failed = self.sync_failed.lock().expect("sync_failed lock");
        let (path, durable_len, reason) = failed.get(stream)?;
        Some(StoreError::SyncFailed { path: path.clone(), durable_len: *durable_len, reason: reason.clone() })
    }

    /// An actor's domain code panicked: drop its registry entry and hand what it left queued
    /// (never seen by the code that panicked) to a fresh actor, so nobody waits forever.
    fn retire_panicked(self: &Arc<Self>, stream: &StreamId, mailbox: &Arc<Mailbox<ActorMsg>>, message: &str) {
        tracing::error!(%stream, panic = %message, "aggregate actor panicked");
        let leftovers = {
            let mut registry = self.registry.lock().expect("registry lock");
            if registry.get(stream).is_some_and(|m| Arc::ptr_eq(m, mailbox)) {
                registry.remove(stream);
            }
            mailbox.close_and_take()
        };
        for leftover in leftovers {
            if let Err((leftover, error)) = self.route(stream, leftover) {
                fail_message(leftover, error);
            }
        }
    }

    /// Delivers a message to the stream's actor, respawning it if the one found just retired.
    #[allow(clippy::result_large_err)] // the message comes back to be answered, not propagated
    pub(crate) fn route(
        self: &Arc<Self>,
        stream: &StreamId,
        mut message: ActorMsg,
    ) -> Result<(), (ActorMsg, StoreError)> {
        loop {
            let mailbox = match self.mailbox_for(stream) {
                Ok(mailbox) => mailbox,
                Err(error) => return Err((message, error)),
            };
            match mailbox.send(message) {
                Ok(()) => return Ok(()),
                Err(back) => message = back,
            }
        }
    }

    /// Sends a message built around a reply channel and waits (async) for the answer.
    async fn ask<T>(
        self: &Arc<Self>,
        stream: &StreamId,
        build: impl FnOnce(oneshot::Sender<T>) -> ActorMsg,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        // On failure the message (and its reply sender) is ours to drop: the error is the answer.
        self.route(stream, build(tx)).map_err(|(_, error)| error)?;
        rx.await.map_err(|_| stopped())
    }

    /// Same, blocking (reader threads).
    pub(crate) fn ask_blocking<T>(
        self: &Arc<Self>,
        stream: &StreamId,
        build: impl FnOnce(oneshot::Sender<T>) -> ActorMsg,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.route(stream, build(tx)).map_err(|(_, error)| error)?;
        rx.blocking_recv().map_err(|_| stopped())
    }

    /// Executes a JSON-level command (blocking; process-manager dispatch).
    pub(crate) fn execute_blocking(
        self: &Arc<Self>,
        stream: &StreamId,
        command: Payload,
        context: CommandContext,
        ids: Option<IdSeed>,
    ) -> Result<Committed, JsonExecuteError> {
        let result = self.ask_blocking(stream, |reply| ActorMsg::Command {
            command,
            context,
            expected: ExpectedVersion::Any,
            ids,
            reply,
        })?;
        result.map(|(committed, _)| committed).map_err(Refusal::into_execute_untyped)
    }

    /// Stops everything: actors finish what they hold, readers stop, threads are joined, the
    /// lock is released.
    fn shutdown(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let mailboxes: Vec<_> = self.registry.lock().expect("registry lock").drain().map(|(_, m)| m).collect();
        for mailbox in mailboxes {
            mailbox.close();
        }
        if let Some(readers) = self.readers.get() {
            for reader in readers.values() {
                reader.mailbox.close();
            }
        }
        self.ledger.wake_all();
        loop {
            let threads: Vec<_> = std::mem::take(&mut *self.threads.lock().expect("threads lock"));
            if threads.is_empty() {
                break;
            }
            for thread in threads {
                let _ = thread.join();
            }
        }
        self.lock.lock().expect("lock slot").take();
    }

    pub(crate) fn push_thread(&self, thread: JoinHandle<()>) {
        self.threads.lock().expect("threads lock").push(thread);
    }
}

/// Shuts the store down when the last clone of the store (or of a handle) is dropped.
struct Guard(Arc<Inner>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// A durable event store on JSONL files: one writing process per directory (flocked `LOCK`),
/// one actor thread per live aggregate instance, projections and process managers driven from
/// the store-wide order. Cheap to clone; the last clone dropped (or [`AggregateStore::close`])
/// stops the threads and releases the lock.
#[derive(Clone)]
pub struct AggregateStore {
    inner: Arc<Inner>,
    guard: Arc<Guard>,
}

impl std::fmt::Debug for AggregateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateStore").field("root", &self.inner.layout.root()).finish_non_exhaustive()
    }
}

/// Configures a store before opening it.
pub struct AggregateStoreBuilder {
    layout: StoreLayout,
    config: StoreConfig,
    read_only: bool,
    factories: Vec<Arc<dyn AggregateFactory>>,
    projections: Vec<Box<dyn DynProjection>>,
    managers: Vec<Box<dyn DynProcessManager>>,
    faults: Arc<Faults>,
}

impl AggregateStoreBuilder {
    /// Registers a typed aggregate (also a process-manager dispatch target).
    pub fn aggregate<A: Aggregate>(self) -> Self {
        self.aggregate_factory(Arc::new(TypedAggregateFactory::<A>::default()))
    }

    /// Alias of [`AggregateStoreBuilder::aggregate`] (the peer crate's name).
    pub fn aggregate_type<A: Aggregate>(self) -> Self {
        self.aggregate::<A>()
    }

    /// Registers any aggregate factory, e.g. a WASM plugin's.
    pub fn aggregate_factory(mut self, factory: Arc<dyn AggregateFactory>) -> Self {
        self.factories.push(factory);
        self
    }

    /// Registers a typed projection.
    pub fn projection<P: Projection>(self) -> Self {
        self.projection_dyn(Box::new(TypedProjection::<P>::default()))
    }

    /// Registers any projection (e.g. a plugin's).
    pub fn projection_dyn(mut self, projection: Box<dyn DynProjection>) -> Self {
        self.projections.push(projection);
        self
    }

    /// Registers a typed process manager.
    pub fn process_manager<M: ProcessManager>(self) -> Self {
        self.process_manager_dyn(Box::new(TypedProcessManager::<M>::default()))
    }

    /// Registers any process manager.
    pub fn process_manager_dyn(mut self, manager: Box<dyn DynProcessManager>) -> Self {
        self.managers.push(manager);
        self
    }

    /// Evicts an idle aggregate actor after this long (default 300 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = Some(timeout);
        self
    }

    /// Never evicts idle actors.
    pub fn no_idle_timeout(mut self) -> Self {
        self.config.idle_timeout = None;
        self
    }

    /// Durable (default) or buffered acknowledgements.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.config.durability = durability;
        self
    }

    /// Snapshot every N events (default 1,000); `None` = never.
    pub fn snapshot_every(mut self, every: Option<u64>) -> Self {
        self.config.snapshot_every = every;
        self
    }

    /// Injects the time source (default: the system clock in ms).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.config.clock = clock;
        self
    }

    /// Injects the event-id entropy (default: UUIDv7-like random seeds).
    pub fn id_seed_source(mut self, seeds: IdSeedSource) -> Self {
        self.config.id_seeds = seeds;
        self
    }

    /// Tunes projections and process managers.
    pub fn reader_config(mut self, reader: ReaderConfig) -> Self {
        self.config.reader = reader;
        self
    }

    /// Largest serialized event `data` a command may produce (default 1 MiB); larger events
    /// are refused with [`ExecuteError::EventTooLarge`] before anything is written.
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.config.max_event_bytes = bytes;
        self
    }

    /// Largest serialized command `data` accepted (default 1 MiB); a larger command is refused
    /// with [`ExecuteError::CommandTooLarge`] before domain code (native or plugin) sees it.
    pub fn max_command_bytes(mut self, bytes: usize) -> Self {
        self.config.max_command_bytes = bytes;
        self
    }

    /// How long readers coalesce commit wake-ups before catching up (default 10 ms).
    pub fn reader_wake_delay(mut self, delay: Duration) -> Self {
        self.config.reader_wake_delay = delay;
        self
    }

    /// Process managers dispatch only on [`AggregateStore::run_process_managers`] (or a state
    /// query), not after every commit: eventfold-es's behaviour, for programs that decide when
    /// workflows run. Events appended meanwhile are dispatched at the next run; nothing is
    /// skipped.
    pub fn process_managers_on_demand(mut self) -> Self {
        self.config.process_managers_on_demand = true;
        self
    }

    /// Most events one group commit appends (default 1,024).
    pub fn max_batch_events(mut self, n: usize) -> Self {
        self.config.max_batch_events = n.max(1);
        self
    }

    /// Opens without taking the lock, for inspection while another process writes. Writes fail
    /// with [`StoreError::ReadOnly`]; torn tails are ignored, not repaired.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Test hook: the store's fault injector (fail the next N log writes / fsyncs).
    #[doc(hidden)]
    pub fn faults(mut self, faults: Arc<Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// Opens the store: takes the lock, scans and recovers every stream, rebuilds the index,
    /// starts the readers.
    pub async fn open(self) -> Result<AggregateStore, StoreError> {
        match tokio::task::spawn_blocking(move || self.open_blocking()).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::io("open", std::io::Error::other(e.to_string()))),
        }
    }

    /// [`AggregateStoreBuilder::open`] for synchronous callers (blocks).
    pub fn open_blocking(self) -> Result<AggregateStore, StoreError> {
        let _span =
            tracing::info_span!("open", root = %self.layout.root().display(), read_only = self.read_only).entered();
        let lock = if self.read_only { None } else { Some(take_lock(&self.layout, &self.faults)?) };
        let ledger = if self.read_only { scan_store(&self.layout, true)? } else { open_logs(&self.layout)? };
        let inner = Arc::new(Inner {
            layout: self.layout,
            config: self.config,
            read_only: self.read_only,
            ledger: Arc::new(ledger),
            faults: self.faults,
            stats: Stats::default(),
            meters: crate::metrics::Meters::default(),
            factories: RwLock::new(BTreeMap::new()),
            registry: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            readers: OnceLock::new(),
            folded: Mutex::new(BTreeMap::new()),
            closed: AtomicBool::new(false),
            lock: Mutex::new(lock),
            sync_failed: Mutex::new(HashMap::new()),
        });
        for factory in self.factories {
            inner.register_factory(factory);
        }
        let mut names: Vec<String> = self.projections.iter().map(|p| p.name().to_owned()).collect();
        names.extend(self.managers.iter().map(|m| m.name().to_owned()));
        names.sort();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(StoreError::DuplicateReader(pair[0].clone()));
        }
        let mut readers = BTreeMap::new();
        if inner.read_only {
            let mut folded = inner.folded.lock().expect("folded lock");
            for projection in self.projections {
                folded.insert(projection.name().to_owned(), projection);
            }
        } else {
            for projection in self.projections {
                let reader = readers::spawn_projection(&inner, projection)?;
                readers.insert(reader.name.clone(), reader);
            }
            for manager in self.managers {
                let reader = readers::spawn_process_manager(&inner, manager)?;
                readers.insert(reader.name.clone(), reader);
            }
        }
        let _ = inner.readers.set(readers);
        let guard = Arc::new(Guard(inner.clone()));
        Ok(AggregateStore { inner, guard })
    }
}

/// Creates the root if needed and takes its `LOCK` (never through a link: a `LOCK` that is a
/// symbolic link is refused with [`StoreError::Link`]).
fn take_lock(layout: &StoreLayout, faults: &Arc<Faults>) -> Result<File, StoreError> {
    crate::fsio::open_root(layout.root(), faults)?;
    let path = layout.lock_file();
    let file = crate::fsio::open_lock(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::LockHeld { path }),
        Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io(&path, e)),
    }
    // Fixed width, written in place: truncating the file costs a journal commit on every open.
    let diagnostic = format!("pid {:<20}\n", std::process::id());
    let _ = std::os::unix::fs::FileExt::write_all_at(&file, diagnostic.as_bytes(), 0);
    if file.metadata().is_ok_and(|m| m.len() != diagnostic.len() as u64) {
        let _ = file.set_len(diagnostic.len() as u64);
    }
    Ok(file)
}

/// Writer open without a full scan: checks the last line of every log (a torn one is
/// recovered exactly as a full scan would, by loading that log whole), records each log's
/// length and version, and leaves the store-wide index to be built on first need. A corrupt
/// log does not stop the open: only its stream is unavailable (every call on it returns
/// [`StoreError::Corrupt`]); its length is left unknown, so every use of it re-reads it.
fn open_logs(layout: &StoreLayout) -> Result<Ledger, StoreError> {
    let _span = tracing::debug_span!("open_logs").entered();
    let mut logs = Vec::new();
    for stream in layout::list_streams(layout, None)? {
        match log::open_state(&layout.events_file(&stream)) {
            Ok(Some((len, version))) => logs.push((stream, len, version)),
            Ok(None) => {}
            Err(e @ StoreError::Corrupt { .. }) => tracing::error!(%stream, error = %e, "stream unavailable"),
            Err(e) => return Err(e),
        }
    }
    let layout = layout.clone();
    let scanner = Box::new(move || scan_logs(&layout, false));
    Ok(Ledger::lazy(scanner, logs))
}

/// A read-only process's one full scan (torn tails ignored, corruption refused): the
/// store-wide index it then extends by tailing the logs (`index_read`).
pub(crate) fn scan_store(layout: &StoreLayout, read_only: bool) -> Result<Ledger, StoreError> {
    debug_assert!(read_only, "writers build their ledger lazily");
    let scan = scan_logs(layout, read_only)?;
    Ledger::read_only(scan).map_err(|dup| StoreError::Corrupt {
        path: layout.streams_dir(),
        line: 0,
        offset: 0,
        reason: format!("pos {} appears in both {} and {}", dup.pos, dup.streams.0, dup.streams.1),
    })
}

/// Reads and CRC-checks every log (without decoding JSON): every event's pos, offset and id.
///
/// A corrupt log contributes its valid prefix and one *barrier*: an index entry at the lowest
/// position its damaged line could hold (the lowest free position after its last valid one)
/// that points at the damaged line. A store-wide read that reaches the barrier decodes that
/// line and fails with [`StoreError::Corrupt`], so no reader moves past events it cannot read
/// (none is skipped silently), while every other stream appends and serves as usual.
fn scan_logs(layout: &StoreLayout, read_only: bool) -> Result<Scan, StoreError> {
    let _span = tracing::debug_span!("scan_store").entered();
    let torn = if read_only { TornTail::Ignore } else { TornTail::Quarantine };
    let mut found: Vec<Found> = Vec::new();
    let mut logs = Vec::new();
    let mut damaged = Vec::new();
    for stream in layout::list_streams(layout, None)? {
        let path = layout.events_file(&stream);
        let Some((headers, corrupt)) = log::load_headers_prefix(&path, torn)? else { continue };
        let stream = Arc::new(stream);
        match corrupt {
            None => logs.push(((*stream).clone(), headers.len(), headers.version())),
            Some(c) => damaged.push((stream.clone(), headers.lines.last().map_or(0, |l| l.pos), c.offset)),
        }
        for line in headers.lines {
            found.push((line.pos, stream.clone(), line.offset, line.id));
        }
    }
    let mut taken: std::collections::HashSet<u64> = found.iter().map(|f| f.0).collect();
    for (stream, last_pos, offset) in damaged {
        let barrier = (last_pos + 1..).find(|p| !taken.contains(p)).expect("positions are unbounded");
        taken.insert(barrier);
        // Not a real event id: NUL never occurs in an id written by evfold.
        let id = evfold_core::EventId(format!("\u{0}damaged:{stream}:{offset}"));
        found.push((barrier, stream, offset, id));
    }
    let settled_path = crate::settled::path(layout.root());
    let settled = crate::settled::read(&settled_path)?;
    Ok(Scan { found, logs, settled, settled_path })
}

/// One page of [`AggregateStore::list_streams_page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPage {
    /// Streams in this page, sorted by type then id.
    pub streams: Vec<StreamId>,
    /// Pass as `after` to get the next page; `None` when this was the last.
    pub next: Option<StreamId>,
}

impl AggregateStore {
    /// Opens (or creates) the store at `dir` with default settings.
    pub async fn open(dir: impl AsRef<Path>) -> Result<AggregateStore, StoreError> {
        Self::builder(dir).open().await
    }

    /// A builder for a store at `dir`.
    pub fn builder(dir: impl AsRef<Path>) -> AggregateStoreBuilder {
        AggregateStoreBuilder {
            layout: StoreLayout::new(dir.as_ref()),
            config: StoreConfig::default(),
            read_only: false,
            factories: Vec::new(),
            projections: Vec::new(),
            managers: Vec::new(),
            faults: Arc::new(Faults::default()),
        }
    }

    /// The store's paths.
    pub fn layout(&self) -> &StoreLayout {
        &self.inner.layout
    }

    /// The store's configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// Test hook: whether the store-wide index has been built (a writer builds it on first
    /// need, not at open).
    #[doc(hidden)]
    pub fn index_is_built(&self) -> bool {
        self.inner.ledger.is_built()
    }

    /// Test hook: full scans of every log this process did (one, then tails from known lengths).
    #[doc(hidden)]
    pub fn index_scans(&self) -> u64 {
        self.inner.ledger.scans()
    }

    /// Write counters since open (appends, fsyncs, events): group commit shows as fewer
    /// syncs than commands.
    pub fn stats(&self) -> StoreStats {
        self.inner.stats.snapshot()
    }

    /// How many aggregate actors are live (not evicted).
    pub fn live_instances(&self) -> usize {
        self.inner.registry.lock().expect("registry lock").len()
    }

    /// How each registered aggregate type's events are read today (upcasters, unknown-event
    /// policy): what this store's projections and process managers read them through.
    pub fn schemas(&self) -> evfold_core::Schemas {
        self.inner.schemas()
    }

    /// [`Inner::register_typed`], for the command bus.
    pub(crate) fn register_typed<A: Aggregate>(&self) {
        self.inner.register_typed::<A>();
    }

    /// Registers a factory after opening (no-op if the type is already registered).
    pub fn register_factory(&self, factory: Arc<dyn AggregateFactory>) {
        self.inner.register_factory(factory);
    }

    /// A handle to one aggregate instance, spawning its actor if needed. The id is validated
    /// first: nothing is created for an invalid one. `A` is registered on first use.
    pub async fn get<A: Aggregate>(&self, id: &str) -> Result<AggregateHandle<A>, StoreError> {
        let stream = layout::stream_id(A::AGGREGATE_TYPE, id)?;
        self.inner.register_typed::<A>();
        let mailbox = self.inner.mailbox_for(&stream)?;
        Ok(AggregateHandle {
            target: Arc::new(Target { store: self.clone(), stream, mailbox: Mutex::new(mailbox) }),
            _a: PhantomData,
        })
    }

    /// Executes a JSON-level command on `aggregate_type/id` (CLI, plugins, buses).
    pub async fn execute_json(
        &self,
        aggregate_type: &str,
        id: &str,
        command: Payload,
        context: CommandContext,
        expected: ExpectedVersion,
    ) -> Result<Committed, JsonExecuteError> {
        let stream = layout::stream_id(aggregate_type, id)?;
        // Refused (and taken apart) here if too deep: the actor never touches it.
        let (command, context) = depth::admit(command, context).map_err(|e| ExecuteError::Fault(Fault::new(e)))?;
        let span = execute_span(&stream, &command, &context);
        let result = self
            .inner
            .ask(&stream, |reply| ActorMsg::Command { command, context, expected, ids: None, reply })
            .instrument(span.clone())
            .await?;
        record_version(&span, &result);
        result.map(|(committed, _)| committed).map_err(Refusal::into_execute_untyped)
    }

    /// Version and JSON state of `aggregate_type/id`. Read-only stores fold the log directly.
    pub async fn state_json(&self, aggregate_type: &str, id: &str) -> Result<(u64, Value), StoreError> {
        let stream = layout::stream_id(aggregate_type, id)?;
        if self.inner.read_only {
            let inner = self.inner.clone();
            return blocking(move || fold_read_only(&inner, &stream)).await;
        }
        let result = self.inner.ask(&stream, |reply| ActorMsg::Query { reply }).await?;
        result.map_err(Refusal::into_store)
    }

    /// Instance ids of aggregate `A`, sorted.
    pub async fn list<A: Aggregate>(&self) -> Result<Vec<String>, StoreError> {
        let streams = self.list_streams(Some(A::AGGREGATE_TYPE)).await?;
        Ok(streams.into_iter().map(|s| s.instance_id().to_owned()).collect())
    }

    /// Every stream (optionally of one type), sorted by type then id.
    pub async fn list_streams(&self, aggregate_type: Option<&str>) -> Result<Vec<StreamId>, StoreError> {
        let layout = self.inner.layout.clone();
        let filter = aggregate_type.map(str::to_owned);
        if let Some(t) = &filter {
            evfold_core::validate_name("aggregate type", t).map_err(|reason| StoreError::InvalidStreamId {
                aggregate_type: t.clone(),
                instance_id: String::new(),
                reason,
            })?;
        }
        blocking(move || layout::list_streams(&layout, filter.as_deref())).await
    }

    /// One page of streams after `after` (exclusive), at most `limit`.
    pub async fn list_streams_page(
        &self,
        aggregate_type: Option<&str>,
        after: Option<&StreamId>,
        limit: usize,
    ) -> Result<StreamPage, StoreError> {
        let all = self.list_streams(aggregate_type).await?;
        let start = after.map_or(0, |a| all.partition_point(|s| s <= a));
        let streams: Vec<StreamId> = all.iter().skip(start).take(limit).cloned().collect();
        let next = (start + streams.len() < all.len()).then(|| streams.last().cloned()).flatten();
        Ok(StreamPage { streams, next })
    }

    /// Every event of one stream (durable ones, in a writing store).
    pub async fn read_events(&self, aggregate_type: &str, id: &str) -> Result<Vec<EventRecord>, StoreError> {
        self.read_events_from(aggregate_type, id, 0).await
    }

    /// Events of one stream with `seq > after_seq`.
    pub async fn read_events_from(
        &self,
        aggregate_type: &str,
        id: &str,
        after_seq: u64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let stream = layout::stream_id(aggregate_type, id)?;
        let inner = self.inner.clone();
        blocking(move || read_stream_records(&inner, &stream, after_seq)).await
    }

    /// The stream's version (last durable `seq`; 0 if it has no events).
    pub async fn stream_version(&self, aggregate_type: &str, id: &str) -> Result<u64, StoreError> {
        Ok(self.read_events(aggregate_type, id).await?.last().map_or(0, |r| r.seq))
    }

    /// Every durable event with `pos >= from_pos`, in store-wide order.
    pub async fn read_all(&self, from_pos: u64) -> Result<Vec<StoredEvent>, StoreError> {
        self.read_all_page(from_pos, usize::MAX).await
    }

    /// At most `limit` durable events with `pos >= from_pos`, in store-wide order.
    pub async fn read_all_page(&self, from_pos: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            if inner.read_only {
                return crate::index_read::read_page(&inner.layout, &inner.ledger, from_pos.saturating_sub(1), limit);
            }
            // In chunks, so writers never wait long on the ledger lock.
            let (mut after, mut events) = (from_pos.saturating_sub(1), Vec::new());
            while events.len() < limit {
                let chunk = (limit - events.len()).min(4096);
                let (batch, next) = readers::read_positions(&inner.layout, &inner.ledger, after, chunk)?;
                if next == after {
                    break;
                }
                events.extend(batch);
                after = next;
            }
            Ok(events)
        })
        .await
    }

    /// The highest position readers may see (every event at or below it is durable). Builds
    /// the store-wide index on first use; 0 (and an error in the log) if a log cannot be read.
    pub fn durable_position(&self) -> u64 {
        durable_position_of(&self.inner)
    }

    /// Appends a pre-validated event (relay sync) to `aggregate_type/id`, unless an event with
    /// its id is already stored (checked against every event on disk: survives restarts).
    /// The event must decode as one of the aggregate's events.
    pub async fn inject_event(
        &self,
        aggregate_type: &str,
        id: &str,
        event: NewEvent,
    ) -> Result<InjectOutcome, StoreError> {
        let stream = layout::stream_id(aggregate_type, id)?;
        let event = depth::admit_event(event).map_err(|e| StoreError::Fault(Fault::new(e)))?;
        self.inner.ask(&stream, |reply| ActorMsg::Inject { event, reply }).await?
    }

    /// Typed [`AggregateStore::inject_event`]: the event id and metadata come from the relay.
    pub async fn inject<A: Aggregate>(
        &self,
        id: &str,
        event_id: evfold_core::EventId,
        event: &A::Event,
        ts: Timestamp,
        meta: evfold_core::Metadata,
    ) -> Result<InjectOutcome, StoreError> {
        self.inner.register_typed::<A>();
        let payload = to_payload(event).map_err(StoreError::Fault)?;
        // Written at the version this code writes the type at, as a decided event would be.
        let version =
            self.inner.factory(A::AGGREGATE_TYPE)?.schema().map_or(1, |s| s.current_version(&payload.type_name));
        self.inject_event(A::AGGREGATE_TYPE, id, NewEvent { id: event_id, payload, version, ts, meta }).await
    }

    /// The typed read model of projection `P`, caught up with every event durable at the call.
    pub async fn projection<P: Projection>(&self) -> Result<P, StoreError> {
        let state = self.projection_json(P::NAME).await?;
        serde_json::from_value(state).map_err(|e| StoreError::Decode { path: P::NAME.into(), reason: e.to_string() })
    }

    /// The JSON read model of a projection, caught up with every event durable at the call.
    pub async fn projection_json(&self, name: &str) -> Result<Value, StoreError> {
        if self.inner.read_only {
            let (inner, name) = (self.inner.clone(), name.to_owned());
            return blocking(move || fold_projection_read_only(&inner, &name)).await;
        }
        let reader = self.reader(name, ReaderKind::Projection)?;
        readers::ask_state(reader).await
    }

    /// Forgets projection `P`'s state and checkpoint and folds every event again.
    pub async fn rebuild_projection<P: Projection>(&self) -> Result<P, StoreError> {
        let reader = self.reader(P::NAME, ReaderKind::Projection)?;
        let state = readers::ask_rebuild(reader).await?;
        serde_json::from_value(state).map_err(|e| StoreError::Decode { path: P::NAME.into(), reason: e.to_string() })
    }

    /// Rebuilds a projection by name; returns its JSON state.
    pub async fn rebuild_projection_json(&self, name: &str) -> Result<Value, StoreError> {
        let reader = self.reader(name, ReaderKind::Projection)?;
        readers::ask_rebuild(reader).await
    }

    /// The typed state of process manager `M`, caught up with every durable event (which
    /// dispatches what it must first, as [`AggregateStore::run_process_managers`] does).
    pub async fn process_manager<M: ProcessManager>(&self) -> Result<M, StoreError> {
        let state = self.process_manager_json(M::NAME).await?;
        serde_json::from_value(state).map_err(|e| StoreError::Decode { path: M::NAME.into(), reason: e.to_string() })
    }

    /// The JSON state of a process manager by name (see [`AggregateStore::process_manager`]).
    pub async fn process_manager_json(&self, name: &str) -> Result<Value, StoreError> {
        let reader = self.reader(name, ReaderKind::ProcessManager)?;
        readers::ask_state(reader).await
    }

    /// Creates a stream with no events, so it is listed ([`AggregateStore::list_streams`]) and
    /// [`AggregateStore::stream_exists`] says so before its first event (eventfold-es's
    /// `ensure_stream`). Idempotent; the empty log is durable when this returns.
    pub async fn ensure_stream(&self, aggregate_type: &str, id: &str) -> Result<(), StoreError> {
        if self.inner.read_only {
            return Err(StoreError::ReadOnly);
        }
        let stream = layout::stream_id(aggregate_type, id)?;
        let inner = self.inner.clone();
        blocking(move || {
            inner.check_available(&stream)?;
            crate::fsio::open_append(&inner.layout.events_file(&stream)).map(drop)
        })
        .await
    }

    /// Whether the stream has a log: it has events, or was created by
    /// [`AggregateStore::ensure_stream`]. Reading a stream that does not exist gives no
    /// events (not an error, as on every evfold driver); this tells the two apart.
    pub async fn stream_exists(&self, aggregate_type: &str, id: &str) -> Result<bool, StoreError> {
        let stream = layout::stream_id(aggregate_type, id)?;
        let inner = self.inner.clone();
        blocking(move || {
            inner.check_available(&stream)?;
            match crate::fsio::open_read(&inner.layout.events_file(&stream)) {
                Ok(_) => Ok(true),
                Err(e) if crate::fsio::is_not_found(&e) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// A snapshot of the store's metrics: commands, appends and their write and fsync latency,
    /// events read by projections and process managers, and how far each trails the log.
    /// With the cargo feature `otel`, [`crate::otel::register_metrics`] exports them.
    pub fn metrics(&self) -> crate::StoreMetrics {
        metrics_of(&self.inner)
    }

    /// The store's state, held weakly (for metric callbacks that must not keep it open).
    #[cfg(feature = "otel")]
    pub(crate) fn weak_inner(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// Lets every process manager catch up (dispatching what it must) and reports.
    pub async fn run_process_managers(&self) -> Result<ProcessManagerReport, StoreError> {
        let managers: Vec<&ReaderRef> = self
            .inner
            .readers
            .get()
            .map(|r| r.values().filter(|r| r.kind == ReaderKind::ProcessManager).collect())
            .unwrap_or_default();
        let mut report = ProcessManagerReport::default();
        for manager in managers {
            report.managers.push(readers::ask_run(manager).await?);
        }
        report.dispatched = report.managers.iter().map(|m| m.dispatched).sum();
        report.dead_lettered = report.managers.iter().map(|m| m.dead_lettered).sum();
        Ok(report)
    }

    /// The dead letters of a process manager, oldest first.
    pub async fn dead_letters(&self, name: &str) -> Result<Vec<evfold_core::DeadLetter>, StoreError> {
        let path = self.inner.layout.dead_letters_file(name);
        evfold_core::validate_name("process manager", name)
            .map_err(|_| StoreError::UnknownProcessManager(name.to_owned()))?;
        blocking(move || readers::read_dead_letters(&path, TornTail::Ignore)).await
    }

    /// Re-dispatches a process manager's dead letters (after fixing what made them fail);
    /// those that fail again stay in the file.
    pub async fn redeliver_dead_letters(&self, name: &str) -> Result<RedeliveryReport, StoreError> {
        let reader = self.reader(name, ReaderKind::ProcessManager)?;
        readers::ask_redeliver(reader).await
    }

    /// Past then live events with `pos >= from_pos`, in store-wide order.
    /// In a read-only store it tails the logs another process writes, woken by file-change
    /// notifications (polling where they are unavailable).
    pub fn subscribe(&self, from_pos: u64) -> Result<Subscription, StoreError> {
        crate::subscribe::spawn(&self.inner, from_pos)
    }

    /// Stops every thread, waits for them, and releases the lock.
    pub async fn close(self) {
        let guard = self.guard.clone();
        drop(self);
        let _ = tokio::task::spawn_blocking(move || guard.0.shutdown()).await;
    }

    fn reader(&self, name: &str, kind: ReaderKind) -> Result<&ReaderRef, StoreError> {
        let unknown = || match kind {
            ReaderKind::Projection => StoreError::UnknownProjection(name.to_owned()),
            ReaderKind::ProcessManager => StoreError::UnknownProcessManager(name.to_owned()),
        };
        let reader = self.inner.readers.get().and_then(|r| r.get(name)).ok_or_else(unknown)?;
        if reader.kind != kind {
            return Err(unknown());
        }
        Ok(reader)
    }

    /// Appends many pre-validated events to `aggregate_type/id` in one write and one
    /// `fdatasync` (one group commit), in the order given, keeping their ids, timestamps and
    /// metadata. An event whose id is already stored (or came earlier in `events`) is skipped
    /// and listed in [`crate::InjectRunOutcome::duplicates`]. Checked like
    /// [`AggregateStore::inject_event`] (each event must fold with the aggregate's code and
    /// encode as a line that decodes), except that the run folds in order onto the stream's
    /// current state instead of each event onto an empty one; if one event fails, nothing is
    /// written ([`StoreError::InvalidEvent`] names it by index and id).
    pub async fn inject_run(
        &self,
        aggregate_type: &str,
        id: &str,
        events: Vec<NewEvent>,
    ) -> Result<crate::InjectRunOutcome, StoreError> {
        let stream = layout::stream_id(aggregate_type, id)?;
        let events = depth::admit_events(events).map_err(|e| StoreError::Fault(Fault::new(e)))?;
        self.inner.ask(&stream, |reply| ActorMsg::InjectRun { events, reply }).await?
    }

    /// The registered factory of `aggregate_type` (importers check events against it).
    pub(crate) fn aggregate_factory(&self, aggregate_type: &str) -> Result<Arc<dyn AggregateFactory>, StoreError> {
        self.inner.factory(aggregate_type)
    }

    /// Names of the process managers this store runs.
    pub(crate) fn process_manager_names(&self) -> Vec<String> {
        let readers = self.inner.readers.get().into_iter().flat_map(|r| r.values());
        readers.filter(|r| r.kind == ReaderKind::ProcessManager).map(|r| r.name.clone()).collect()
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

/// [`AggregateStore::durable_position`] of a store's state.
fn durable_position_of(inner: &Inner) -> u64 {
    inner.ledger.watermark().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot build the store-wide index");
        0
    })
}

/// [`AggregateStore::metrics`] of a store's state.
pub(crate) fn metrics_of(inner: &Inner) -> crate::StoreMetrics {
    use std::sync::atomic::Ordering::Relaxed;
    let durable_position = durable_position_of(inner);
    let readers: Vec<crate::ReaderLag> = inner
        .readers
        .get()
        .map(|all| {
            all.values()
                .map(|r| {
                    let position = r.position.load(Relaxed);
                    crate::ReaderLag {
                        name: r.name.clone(),
                        kind: r.kind,
                        position,
                        lag_events: durable_position.saturating_sub(position),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let (stats, meters) = (inner.stats.snapshot(), &inner.meters);
    crate::StoreMetrics {
        commands_accepted: meters.commands_accepted.load(Relaxed),
        commands_rejected: meters.commands_rejected.load(Relaxed),
        appends: stats.appends,
        events_appended: stats.events,
        append_latency: meters.append_latency.summary(),
        fsync_latency: meters.fsync_latency.summary(),
        events_folded: meters.events_folded.load(Relaxed),
        durable_position,
        readers,
    }
}

/// The span of one command: its stream, command type and W3C trace context, and (recorded when
/// it commits) the stream version it reached.
fn execute_span(stream: &StreamId, command: &Payload, context: &CommandContext) -> tracing::Span {
    tracing::debug_span!(
        "execute",
        %stream,
        command = %command.type_name,
        traceparent = context.traceparent().unwrap_or(""),
        version = tracing::field::Empty,
    )
}

fn record_version<T, E>(span: &tracing::Span, result: &Result<(Committed, T), E>) {
    if let Ok((committed, _)) = result {
        span.record("version", committed.version);
    }
}

fn stopped() -> StoreError {
    StoreError::Stopped("the aggregate actor ended (store closed, or domain code panicked: see the log)".into())
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::io("blocking task", std::io::Error::other(e.to_string()))),
    }
}

fn read_stream_records(inner: &Inner, stream: &StreamId, after_seq: u64) -> Result<Vec<EventRecord>, StoreError> {
    inner.check_available(stream)?;
    let path = inner.layout.events_file(stream);
    let Some(loaded) = log::load(&path, TornTail::Ignore)? else { return Ok(Vec::new()) };
    let watermark = if inner.read_only { None } else { Some(inner.ledger.watermark()?) };
    Ok(loaded.records.into_iter().filter(|r| r.seq > after_seq && watermark.is_none_or(|w| r.pos <= w)).collect())
}

/// Read-only stores: folds a projection from the first durable event (no checkpoint is written).
fn fold_projection_read_only(inner: &Inner, name: &str) -> Result<Value, StoreError> {
    let mut folded = inner.folded.lock().expect("folded lock");
    let projection = folded.get_mut(name).ok_or_else(|| StoreError::UnknownProjection(name.to_owned()))?;
    projection.reset().map_err(StoreError::Fault)?;
    let schemas = inner.schemas();
    let mut after = 0;
    loop {
        let events = crate::index_read::read_page(&inner.layout, &inner.ledger, after, 4096)?;
        let Some(last) = events.last() else { break };
        after = last.record.pos;
        let (events, _skipped) = schemas.read_batch(events).map_err(|e| StoreError::Fault(Fault::msg(e)))?;
        projection.apply(&events).map_err(StoreError::Fault)?;
    }
    projection.snapshot().map_err(StoreError::Fault)
}

fn fold_read_only(inner: &Inner, stream: &StreamId) -> Result<(u64, Value), StoreError> {
    let factory = inner.factory(stream.aggregate_type())?;
    let mut aggregate = factory.instantiate().map_err(StoreError::Fault)?;
    let records = read_stream_records(inner, stream, 0)?;
    let version = records.len() as u64;
    let (payloads, _skipped) =
        evfold_core::schema::read_records(&*aggregate, records).map_err(|e| StoreError::Fault(Fault::new(e)))?;
    aggregate.apply(&payloads).map_err(StoreError::Fault)?;
    let state = aggregate.snapshot().map_err(StoreError::Fault)?;
    Ok((version, state))
}

struct Target {
    store: AggregateStore,
    stream: StreamId,
    mailbox: Mutex<Arc<Mailbox<ActorMsg>>>,
}

impl Target {
    /// Sends through the cached mailbox; if its actor retired (idle or poisoned), fetches the
    /// new one and resends. The message comes back on failure, so nothing is lost.
    fn send(&self, mut message: ActorMsg) -> Result<(), StoreError> {
        loop {
            let mailbox = self.mailbox.lock().expect("handle lock").clone();
            match mailbox.send(message) {
                Ok(()) => return Ok(()),
                Err(back) => message = back,
            }
            // On failure the message's reply is the caller's own, answered by this error.
            let fresh = self.store.inner.mailbox_for(&self.stream)?;
            *self.mailbox.lock().expect("handle lock") = fresh;
        }
    }
}

/// What [`AggregateHandle::execute_with_events`] returns.
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    /// Version and positions.
    pub committed: Committed,
    /// The events, typed.
    pub events: Vec<A::Event>,
    /// The events as stored (ids, positions, metadata).
    pub records: Vec<EventRecord>,
}

/// A cloneable async handle to one aggregate instance. It survives idle eviction: a command
/// sent after the actor retired transparently respawns it.
pub struct AggregateHandle<A: Aggregate> {
    target: Arc<Target>,
    _a: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Clone for AggregateHandle<A> {
    fn clone(&self) -> Self {
        AggregateHandle { target: self.target.clone(), _a: PhantomData }
    }
}

impl<A: Aggregate> std::fmt::Debug for AggregateHandle<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateHandle").field("stream", &self.target.stream).finish()
    }
}

impl<A: Aggregate> AggregateHandle<A> {
    /// The stream this handle addresses.
    pub fn stream(&self) -> &StreamId {
        &self.target.stream
    }

    /// Executes a command; returns once its events are durable (or buffered, if so configured).
    pub async fn execute(
        &self,
        command: A::Command,
        context: CommandContext,
    ) -> Result<Committed, ExecuteError<A::Error>> {
        self.execute_expecting(command, context, ExpectedVersion::Any).await
    }

    /// Executes a command and returns the events it appended (typed and as stored records),
    /// like the peer crate's `execute`.
    pub async fn execute_with_events(
        &self,
        command: A::Command,
        context: CommandContext,
    ) -> Result<Executed<A>, ExecuteError<A::Error>> {
        let (committed, records) = self.send_command(command, context, ExpectedVersion::Any).await?;
        let events = records
            .iter()
            .map(|r| evfold_core::from_payload::<A::Event>(&r.payload()))
            .collect::<Result<_, _>>()
            .map_err(ExecuteError::Fault)?;
        Ok(Executed { committed, events, records })
    }

    /// Executes a command if the stream is at the expected version.
    pub async fn execute_expecting(
        &self,
        command: A::Command,
        context: CommandContext,
        expected: ExpectedVersion,
    ) -> Result<Committed, ExecuteError<A::Error>> {
        Ok(self.send_command(command, context, expected).await?.0)
    }

    async fn send_command(
        &self,
        command: A::Command,
        context: CommandContext,
        expected: ExpectedVersion,
    ) -> Result<(Committed, Vec<EventRecord>), ExecuteError<A::Error>> {
        // Serialized depth-bounded: a command too deep is refused (and leaked, since dropping it
        // would recurse) on the caller's thread before it could overflow that thread's stack.
        let payload = evfold_core::into_payload(command).map_err(ExecuteError::Fault)?;
        let (payload, context) = depth::admit(payload, context).map_err(|e| ExecuteError::Fault(Fault::new(e)))?;
        let span = execute_span(&self.target.stream, &payload, &context);
        let (reply, rx) = oneshot::channel();
        self.target.send(ActorMsg::Command { command: payload, context, expected, ids: None, reply })?;
        let result = rx.instrument(span.clone()).await.map_err(|_| stopped())?;
        record_version(&span, &result);
        result.map_err(Refusal::into_execute::<A>)
    }

    /// Whether commands sent through this handle can still be served: false once the store is
    /// closed, or while the stream is refused (a failed fdatasync that could not be cut back).
    /// An evfold handle outlives its actor: eventfold-es's `is_alive` turned false when the
    /// actor retired after its idle timeout, here a command after that respawns the actor, so
    /// idleness never makes a handle dead.
    pub fn is_alive(&self) -> bool {
        let inner = &self.target.store.inner;
        !inner.is_closed() && inner.sync_failure(&self.target.stream).is_none()
    }

    /// The current state (after every earlier command of this process settled).
    pub async fn state(&self) -> Result<A, StoreError> {
        Ok(self.state_with_version().await?.1)
    }

    /// The current version and state.
    pub async fn state_with_version(&self) -> Result<(u64, A), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.target.send(ActorMsg::Query { reply })?;
        let (version, state) = rx.await.map_err(|_| stopped())?.map_err(Refusal::into_store)?;
        let state = serde_json::from_value(state)
            .map_err(|e| StoreError::Decode { path: self.target.stream.to_string().into(), reason: e.to_string() })?;
        Ok((version, state))
    }
}
