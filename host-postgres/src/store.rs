//! The public store: `PgStore` (a cheap, cloneable handle) and its builder. It routes commands to
//! per-stream actors, answers direct reads with SQL, and talks to the reader tasks.
//!
//! Every command, its metadata and every appended event is measured against
//! [`evfold_core::depth::MAX_JSON_DEPTH`] (iteratively) before anything recursive touches it:
//! cloning, serializing and dropping a deep `serde_json::Value` recurse once per level and would
//! overflow the caller's stack. What the caller handed over and was refused is taken apart
//! without recursion ([`evfold_core::depth::admit`]); see [`evfold_core::depth`].

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use evfold_core::codec::json_len;
use evfold_core::{
    depth, into_payload, Aggregate, AggregateConfig, AggregateFactory, CommandContext, CommandEnvelope, CommandError,
    Committed, DeadLetter, DynProcessManager, DynProjection, EventRecord, ExpectedVersion, Fault, IdSeed, NewEvent,
    Payload, Position, ProcessManager, ProcessManagerMachine, Projection, ProjectionMachine, ReaderConfig, StoredEvent,
    StreamId, TypedAggregateFactory, TypedProcessManager, TypedProjection,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Config, NoTls};

use crate::aggregate::{Actor, AggMsg, Registry};
use crate::error::StoreError;
use crate::reader::{Machine, ReaderMsg, ReaderTask};
use crate::shared::{Shared, Stats};
use crate::sql::{AppendError, Backend};
use crate::{schema, tail};

/// An event store on PostgreSQL driving the core machines. Clone it freely: clones share one
/// pool, one set of aggregate actors and one set of readers. Must be used inside a tokio runtime.
///
/// Two `PgStore`s (in one process or on two servers) on the same database are safe: each append
/// is checked against the stream's version in one transaction, and the loser re-decides.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

/// What a `PgStore` handle points at.
pub struct Inner {
    shared: Arc<Shared>,
    factories: BTreeMap<String, Arc<dyn AggregateFactory>>,
    aggregate_config: AggregateConfig,
    actors: Arc<Registry>,
    readers: Vec<(String, bool, mpsc::Sender<ReaderMsg>)>,
}

/// Configures and connects a [`PgStore`].
pub struct PgStoreBuilder {
    conninfo: String,
    read_conninfo: Option<String>,
    factories: BTreeMap<String, Arc<dyn AggregateFactory>>,
    projections: Vec<Box<dyn DynProjection>>,
    managers: Vec<Box<dyn DynProcessManager>>,
    aggregate_config: AggregateConfig,
    reader_config: ReaderConfig,
    pool_size: usize,
    poll_interval: Duration,
    listen: bool,
    idle_timeout: Option<Duration>,
}

impl PgStoreBuilder {
    /// Registers a typed aggregate.
    pub fn aggregate<A: Aggregate>(self) -> Self {
        self.aggregate_factory(Arc::new(TypedAggregateFactory::<A>::default()))
    }

    /// Registers any aggregate factory (a WASM plugin, a JSON-level aggregate).
    pub fn aggregate_factory(mut self, factory: Arc<dyn AggregateFactory>) -> Self {
        self.factories.insert(factory.aggregate_type().to_owned(), factory);
        self
    }

    /// Registers a typed projection.
    pub fn projection<P: Projection>(self) -> Self {
        self.dyn_projection(Box::new(TypedProjection::<P>::default()))
    }

    /// Registers any projection (e.g. a plugin).
    pub fn dyn_projection(mut self, projection: Box<dyn DynProjection>) -> Self {
        self.projections.push(projection);
        self
    }

    /// Registers a typed process manager.
    pub fn process_manager<M: ProcessManager>(self) -> Self {
        self.dyn_process_manager(Box::new(TypedProcessManager::<M>::default()))
    }

    /// Registers any process manager.
    pub fn dyn_process_manager(mut self, manager: Box<dyn DynProcessManager>) -> Self {
        self.managers.push(manager);
        self
    }

    /// Readers fetch the store-wide order from this server (e.g. a streaming replica); writes,
    /// checkpoints and LISTEN stay on the primary.
    pub fn read_replica(mut self, conninfo: impl Into<String>) -> Self {
        self.read_conninfo = Some(conninfo.into());
        self
    }

    /// Tuning of every aggregate machine (snapshots, conflict retries, batch size).
    pub fn aggregate_config(mut self, config: AggregateConfig) -> Self {
        self.aggregate_config = config;
        self
    }

    /// Tuning of every reader machine (batch size, checkpoint frequency, dispatch retries).
    pub fn reader_config(mut self, config: ReaderConfig) -> Self {
        self.reader_config = config;
        self
    }

    /// Connections per pool (default 16).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How often readers poll when no wake-up came (default 500 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Drop an aggregate's actor (and its folded state) after this long without commands;
    /// `None` keeps every actor for the store's life. Default 5 minutes.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Whether to hold a LISTEN connection for wake-ups from other processes (default true).
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// Connects, applies missing migrations, and starts the reader tasks.
    pub async fn connect(self) -> Result<PgStore, StoreError> {
        let config = Config::from_str(&self.conninfo).map_err(StoreError::Config)?;
        migrate(&config).await?;
        let write = pool(config.clone(), self.pool_size)?;
        let read = match &self.read_conninfo {
            Some(conninfo) => pool(Config::from_str(conninfo).map_err(StoreError::Config)?, self.pool_size)?,
            None => write.clone(),
        };
        let shared = Arc::new(Shared::new(Backend { write, read }));
        let now = shared.now();
        let schemas = evfold_core::Schemas::of(self.factories.values().map(|f| &**f));
        let mut machines = Vec::new();
        for p in self.projections {
            let mut machine = ProjectionMachine::new(p, self.reader_config.clone(), now);
            machine.set_schemas(schemas.clone());
            machines.push(Machine::Projection(machine));
        }
        for m in self.managers {
            let mut machine = ProcessManagerMachine::new(m, self.reader_config.clone(), now);
            machine.set_schemas(schemas.clone());
            machines.push(Machine::Manager(machine));
        }
        let mut receivers = Vec::new();
        let mut readers = Vec::new();
        for machine in machines {
            let (tx, rx) = mpsc::channel(1024);
            readers.push((machine.name().to_owned(), matches!(machine, Machine::Manager(_)), tx));
            receivers.push((machine, rx));
        }
        let _ = shared.readers.set(readers.iter().map(|(_, _, tx)| tx.clone()).collect());
        let idle_timeout_ms = self.idle_timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        let inner = Arc::new(Inner {
            shared: shared.clone(),
            factories: self.factories,
            aggregate_config: AggregateConfig { idle_timeout_ms, ..self.aggregate_config },
            actors: Arc::new(Mutex::new(HashMap::new())),
            readers,
        });
        for (machine, rx) in receivers {
            let task = ReaderTask::new(machine, shared.clone(), Arc::downgrade(&inner), self.poll_interval);
            tokio::spawn(task.run(rx));
        }
        tokio::spawn(tail::notifier(Arc::downgrade(&shared)));
        if self.listen {
            tokio::spawn(tail::listener(config, Arc::downgrade(&shared)));
        }
        Ok(PgStore { inner })
    }
}

impl PgStore {
    /// A builder for a store on the database named by `conninfo` (libpq key=value or URL form,
    /// e.g. `host=127.0.0.1 port=5432 user=app dbname=app`).
    pub fn builder(conninfo: impl Into<String>) -> PgStoreBuilder {
        PgStoreBuilder {
            conninfo: conninfo.into(),
            read_conninfo: None,
            factories: BTreeMap::new(),
            projections: Vec::new(),
            managers: Vec::new(),
            aggregate_config: AggregateConfig::default(),
            reader_config: ReaderConfig::default(),
            pool_size: 16,
            poll_interval: Duration::from_millis(500),
            listen: true,
            idle_timeout: Some(Duration::from_secs(300)),
        }
    }

    /// Connects with nothing registered: direct reads and [`PgStore::append`] only.
    pub async fn connect(conninfo: impl Into<String>) -> Result<PgStore, StoreError> {
        Self::builder(conninfo).connect().await
    }

    /// Executes a typed command on instance `instance_id` of aggregate `A` (any version).
    pub async fn execute<A: Aggregate>(
        &self,
        instance_id: &str,
        command: A::Command,
        context: CommandContext,
    ) -> Result<Committed, CommandError> {
        self.execute_expected::<A>(instance_id, command, context, ExpectedVersion::Any).await
    }

    /// Executes a typed command only if the stream is at `expected`.
    pub async fn execute_expected<A: Aggregate>(
        &self,
        instance_id: &str,
        command: A::Command,
        context: CommandContext,
        expected: ExpectedVersion,
    ) -> Result<Committed, CommandError> {
        // Serialized depth-bounded: a command too deep is refused (and leaked, since dropping it
        // would recurse) on the caller's thread before it could overflow that thread's stack.
        // Everything the caller handed over is admitted before anything else can fail and drop it.
        let command = match into_payload(command) {
            Ok(command) => command,
            Err(fault) => {
                depth::dismantle_metadata(context);
                return Err(CommandError::Fault(fault));
            }
        };
        let (command, context) = depth::admit(command, context).map_err(|e| CommandError::Fault(Fault::new(e)))?;
        let target = StreamId::new(A::AGGREGATE_TYPE, instance_id).map_err(|e| CommandError::Fault(Fault::new(e)))?;
        Inner::send_command(&self.inner, &target, command, context, expected, None).await
    }

    /// Executes a JSON-level command (any registered aggregate type, plugins included). A
    /// command or metadata nested deeper than [`evfold_core::depth::MAX_JSON_DEPTH`] is refused
    /// with a [`CommandError::Fault`] that [`evfold_core::is_too_deep`] recognises. The envelope
    /// stays the caller's: one that deep must be dropped with [`evfold_core::depth::dismantle`].
    pub async fn execute_json(
        &self,
        envelope: &CommandEnvelope,
        expected: ExpectedVersion,
    ) -> Result<Committed, CommandError> {
        Inner::execute_envelope(&self.inner, envelope, expected, None).await
    }

    /// The typed state of one instance.
    pub async fn state<A: Aggregate>(&self, instance_id: &str) -> Result<A, CommandError> {
        let stream = StreamId::new(A::AGGREGATE_TYPE, instance_id).map_err(|e| CommandError::Fault(Fault::new(e)))?;
        let (_, state) = self.state_json(&stream).await?;
        serde_json::from_value(state).map_err(|e| CommandError::Fault(Fault::new(e)))
    }

    /// Version and JSON state of one instance, after every command sent before settled.
    pub async fn state_json(&self, stream: &StreamId) -> Result<(u64, Value), CommandError> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(stream, AggMsg::Query { reply })?;
        rx.await.unwrap_or_else(|_| Err(CommandError::Unavailable("aggregate actor stopped".into())))
    }

    /// Every event of a stream, in order.
    pub async fn read_events(&self, stream: &StreamId) -> Result<Vec<EventRecord>, StoreError> {
        self.read_events_from(stream, 0).await
    }

    /// The events of a stream with `seq > after_seq`, in order.
    pub async fn read_events_from(&self, stream: &StreamId, after_seq: u64) -> Result<Vec<EventRecord>, StoreError> {
        self.backend().read_stream(stream, after_seq).await.map_err(io_error)
    }

    /// The stream's version (0 = no events).
    pub async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.backend().stream_version(stream).await.map_err(io_error)
    }

    /// Up to `max_events` events after `after` in store-wide order, and the position to read on
    /// from. Never returns an event while an earlier one may still commit.
    pub async fn read_all(
        &self,
        after: &Position,
        max_events: usize,
    ) -> Result<(Vec<StoredEvent>, Position), StoreError> {
        self.backend().read_all(after, max_events).await.map_err(io_error)
    }

    /// Streams with their versions, ordered by name; `Some(type)` keeps one aggregate type.
    pub async fn list_streams(&self, aggregate_type: Option<&str>) -> Result<Vec<(StreamId, u64)>, StoreError> {
        self.backend().list_streams(aggregate_type).await.map_err(io_error)
    }

    /// Appends pre-decided events directly (relays, imports), bypassing aggregates, atomically
    /// and only if the stream is at `expected`. An event id already stored refuses the batch.
    /// So does an event whose data or metadata nests deeper than
    /// [`evfold_core::depth::MAX_JSON_DEPTH`] ([`StoreError::Fault`], recognised by
    /// [`evfold_core::is_too_deep`]) and one whose data is larger than the aggregates' limit
    /// ([`AggregateConfig::max_event_bytes`]: [`StoreError::EventTooLarge`]).
    pub async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        // Depth first (a refused batch is taken apart here): sizing serializes, which recurses.
        let events = depth::admit_events(events).map_err(|e| StoreError::Fault(Fault::new(e)))?;
        let limit = self.inner.aggregate_config.max_event_bytes;
        if let Some((event, bytes)) =
            events.iter().map(|e| (e, json_len(&e.payload.data))).find(|(_, bytes)| *bytes > limit)
        {
            return Err(StoreError::EventTooLarge { event_type: event.payload.type_name.clone(), bytes, limit });
        }
        let version = match expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(v) => Some(v),
        };
        match self.backend().append(stream, version, &events).await {
            Ok(records) => {
                self.inner.shared.committed(records.len() as u64);
                Ok(records)
            }
            Err(AppendError::Conflict { actual }) => Err(StoreError::WrongExpectedVersion { expected, actual }),
            Err(AppendError::Duplicate(m)) => Err(StoreError::DuplicateEventId(m)),
            Err(AppendError::Other(m)) => {
                Err(StoreError::Io(evfold_core::IoError::new(evfold_core::IoErrorKind::Storage, m)))
            }
        }
    }

    /// The typed read model of a registered projection (as folded so far; see [`PgStore::catch_up`]).
    pub async fn projection<P: Projection>(&self) -> Result<P, StoreError> {
        self.reader_state(P::NAME).await
    }

    /// The typed state of a registered process manager.
    pub async fn process_manager<M: ProcessManager>(&self) -> Result<M, StoreError> {
        self.reader_state(M::NAME).await
    }

    /// A reader's state as JSON.
    pub async fn reader_json(&self, name: &str) -> Result<Value, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.reader(name)?.send(ReaderMsg::State(tx)).await.map_err(|_| StoreError::ShutDown)?;
        Ok(rx.await.map_err(|_| StoreError::ShutDown)??)
    }

    /// Waits until every process manager, then every projection, has read everything visible
    /// when it was asked (process managers first, so projections see the commands they caused).
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        for managers_pass in [true, false] {
            let mut answers = Vec::new();
            for (_, _, tx) in self.inner.readers.iter().filter(|r| r.1 == managers_pass) {
                let (reply, rx) = oneshot::channel();
                tx.send(ReaderMsg::CatchUp(reply)).await.map_err(|_| StoreError::ShutDown)?;
                answers.push(rx);
            }
            for rx in answers {
                rx.await.map_err(|_| StoreError::ShutDown)?.map_err(|e| StoreError::Fault(Fault::msg(e)))?;
            }
        }
        Ok(())
    }

    /// Refolds a projection from the first event.
    pub async fn rebuild_projection(&self, name: &str) -> Result<(), StoreError> {
        self.reader(name)?.send(ReaderMsg::Rebuild).await.map_err(|_| StoreError::ShutDown)
    }

    /// A process manager's dead letters, oldest first.
    pub async fn dead_letters(&self, reader: &str) -> Result<Vec<DeadLetter>, StoreError> {
        self.backend().dead_letters(reader).await.map_err(io_error)
    }

    /// How many aggregate actors are live (idle ones are evicted after the idle timeout).
    pub fn live_aggregates(&self) -> usize {
        self.inner.actors.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Counters of this store instance.
    pub fn stats(&self) -> Stats {
        self.inner.shared.stats()
    }

    fn backend(&self) -> &Backend {
        &self.inner.shared.backend
    }

    fn reader(&self, name: &str) -> Result<&mpsc::Sender<ReaderMsg>, StoreError> {
        self.inner
            .readers
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, tx)| tx)
            .ok_or_else(|| StoreError::Fault(Fault::msg(format!("reader {name} is not registered"))))
    }

    async fn reader_state<T: DeserializeOwned>(&self, name: &str) -> Result<T, StoreError> {
        let state = self.reader_json(name).await?;
        serde_json::from_value(state).map_err(|e| StoreError::Decode(format!("{name}: {e}")))
    }
}

impl Inner {
    /// Routes a command the caller lends to its stream's actor and waits for the reply. Too
    /// deep a command or metadata is refused before it is cloned (cloning recurses).
    pub async fn execute_envelope(
        inner: &Arc<Inner>,
        envelope: &CommandEnvelope,
        expected: ExpectedVersion,
        ids: Option<IdSeed>,
    ) -> Result<Committed, CommandError> {
        depth::check(&envelope.command, &envelope.context).map_err(|e| CommandError::Fault(Fault::new(e)))?;
        let (command, context) = (envelope.command.clone(), envelope.context.clone());
        Self::send_command(inner, &envelope.target, command, context, expected, ids).await
    }

    /// Routes a command the caller hands over to its stream's actor and waits for the reply.
    /// Too deep a command or metadata is refused and taken apart here, without recursion.
    pub async fn execute_command(
        inner: &Arc<Inner>,
        target: &StreamId,
        command: Payload,
        context: CommandContext,
        expected: ExpectedVersion,
        ids: Option<IdSeed>,
    ) -> Result<Committed, CommandError> {
        let (command, context) = depth::admit(command, context).map_err(|e| CommandError::Fault(Fault::new(e)))?;
        Self::send_command(inner, target, command, context, expected, ids).await
    }

    /// Sends an admitted command (its depth checked) and waits for the reply.
    async fn send_command(
        inner: &Arc<Inner>,
        target: &StreamId,
        command: Payload,
        context: CommandContext,
        expected: ExpectedVersion,
        ids: Option<IdSeed>,
    ) -> Result<Committed, CommandError> {
        let (reply, rx) = oneshot::channel();
        let msg = AggMsg::Command { command, context, expected, ids, reply };
        inner.send(target, msg)?;
        rx.await.unwrap_or_else(|_| Err(CommandError::Unavailable("aggregate actor stopped".into())))
    }

    fn send(&self, stream: &StreamId, msg: AggMsg) -> Result<(), CommandError> {
        let mut actors = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = actors.get(stream) {
            return tx.send(msg).map_err(|_| CommandError::Unavailable("aggregate actor stopped".into()));
        }
        let factory = self.factories.get(stream.aggregate_type()).ok_or_else(|| {
            CommandError::Fault(Fault::msg(format!("aggregate type {} is not registered", stream.aggregate_type())))
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let actor = Actor::new(stream.clone(), factory.clone(), self.aggregate_config.clone(), self.shared.clone());
        tokio::spawn(actor.run(rx, self.actors.clone()));
        let sent = tx.send(msg).map_err(|_| CommandError::Unavailable("aggregate actor stopped".into()));
        actors.insert(stream.clone(), tx);
        sent
    }
}

async fn migrate(config: &Config) -> Result<i32, StoreError> {
    let (mut client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let result = schema::migrate(&mut client).await;
    drop(client);
    let _ = driver.await;
    result
}

fn pool(config: Config, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager).max_size(size).build().map_err(|e| StoreError::Pool(e.to_string()))
}

fn io_error(e: evfold_core::IoError) -> StoreError {
    StoreError::Io(e)
}
