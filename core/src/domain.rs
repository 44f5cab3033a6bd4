//! Domain traits: the typed `Aggregate` / `Projection` / `ProcessManager` that Rust users write,
//! the object-safe JSON-level traits the machines (and WASM plugins) speak, and the blanket
//! adapters from the first to the second.
//!
//! Commands and events cross the JSON boundary as [`Payload`]s. A typed enum maps to a payload
//! best by serde's adjacent tagging, the convention of the peer crate:
//! `#[serde(tag = "type", content = "data")]` turns `Deposited { amount: 5 }` into
//! `{"type":"Deposited","data":{"amount":5}}`, and a unit variant into `{"type":"Opened"}`.
//! Every other serde shape works too (serde's default enums, internally tagged enums, structs,
//! `String`, `()`), named by the rule in [`crate::shape`].

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec::MAX_JSON_DEPTH;
use crate::decide_context::DecideContext;
use crate::depth::{exceeds, to_value_within, Unserializable, MAX_STATE_DEPTH};
use crate::schema::{EventSchema, FIRST_VERSION};
use crate::shape;
use crate::types::{CommandContext, Payload, StoredEvent, StreamId};

/// A domain model: decides commands into events and folds events into state.
///
/// `Command` and `Event` are best adjacently tagged serde enums (see the module doc); any serde
/// shape works, named by the rule in [`crate::shape`].
pub trait Aggregate: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stream type name, a path-safe name such as `bank-account`.
    const AGGREGATE_TYPE: &'static str;
    /// What callers ask for.
    type Command: Serialize + DeserializeOwned + Send + 'static;
    /// What happened.
    type Event: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Why a command was refused.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Decides a command against the current state. Pure: no IO, no clock. The simple form:
    /// what [`Aggregate::handle_with`] calls unless an aggregate overrides that.
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
    /// Decides a command knowing its [`DecideContext`] (stream id, version, the engine's `now`,
    /// the caller's actor and correlation): for rules such as "this SKU only" or "stamp the
    /// actor". What the engine calls, natively and in a plugin alike; the default ignores the
    /// context and calls [`Aggregate::handle`]. Deterministic: the context comes from the
    /// machine's inputs, so a replay decides the same.
    fn handle_with(&self, command: Self::Command, context: &DecideContext) -> Result<Vec<Self::Event>, Self::Error> {
        let _ = context;
        self.handle(command)
    }
    /// Folds one event into the state. Must not fail: events are facts.
    fn apply(self, event: &Self::Event) -> Self;
    /// The version of the state's shape, recorded with every snapshot. Bump it when `Self`
    /// changes shape or meaning: snapshots written by another version are then refolded from
    /// the log, never trusted.
    const STATE_VERSION: u32 = 1;
    /// How this aggregate reads its stored events ([`crate::schema`]): the version each event
    /// type is written at, the upcasters from older versions, and what to do with an event it
    /// does not know. Called once per store and aggregate type. The default: every event at
    /// version 1, no upcasters, unknown events fail.
    fn schema() -> EventSchema {
        EventSchema::new()
    }
    /// The error as JSON data, so it survives the plugin boundary: a typed handle then decodes
    /// it with [`Aggregate::error_from_data`] into `ExecuteError::Domain`, as for native code.
    /// Opt-in (the default, `None`, sends only the message); for a serde error type:
    /// `fn error_to_data(e: &Self::Error) -> Option<Value> { evfold_core::error_to_data(e) }`.
    fn error_to_data(error: &Self::Error) -> Option<Value> {
        let _ = error;
        None
    }
    /// The error back from [`Aggregate::error_to_data`]'s data; `None` (the default) leaves the
    /// refusal untyped (`ExecuteError::Rejected`). For a serde error type:
    /// `fn error_from_data(data: &Value) -> Option<Self::Error> { evfold_core::error_from_data(data) }`.
    fn error_from_data(data: &Value) -> Option<Self::Error> {
        let _ = data;
        None
    }
}

/// A read model folded from events of any stream, in store-wide order.
pub trait Projection: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Unique name; also the checkpoint directory name.
    const NAME: &'static str;
    /// The version of this projection's fold, recorded with each checkpoint. Bump it when
    /// [`Projection::apply`] or the read model changes: a checkpoint of another version is
    /// dropped and the read model rebuilt from the first event.
    const VERSION: u32 = 1;
    /// The aggregate types whose events this projection folds, as eventfold-es's
    /// `subscriptions()`; empty (the default) means every stream. Events of other types never
    /// reach [`Projection::apply`]; the checkpoint still moves past them.
    fn subscriptions(&self) -> &'static [&'static str] {
        &[]
    }
    /// Folds one event (of a subscribed aggregate type; of any type without subscriptions).
    fn apply(&mut self, event: &StoredEvent);
}

/// Whether `subscriptions` (a projection's or process manager's) include `event`'s stream.
fn subscribed(subscriptions: &[&str], event: &StoredEvent) -> bool {
    subscriptions.is_empty() || subscriptions.contains(&event.stream.aggregate_type())
}

/// A workflow that reacts to events with commands for other aggregates.
pub trait ProcessManager: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Unique name; also the checkpoint directory name.
    const NAME: &'static str;
    /// The version of this workflow's state, recorded with each checkpoint: a checkpoint of
    /// another version is dropped and the state refolded from the first event. Commands it
    /// causes again on the way carry the same dispatch ids, so their effects are not repeated.
    const VERSION: u32 = 1;
    /// The aggregate types whose events this process manager reacts to (eventfold-es's
    /// `subscriptions()`); empty (the default) means every stream. Events of other types never
    /// reach [`ProcessManager::react`].
    fn subscriptions(&self) -> &'static [&'static str] {
        &[]
    }
    /// Folds one event and returns the commands it causes (possibly none).
    fn react(&mut self, event: &StoredEvent) -> Vec<CommandEnvelope>;
}

/// A command addressed to one aggregate instance, as process managers and the command bus send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandEnvelope {
    /// Target aggregate type + instance id.
    pub target: StreamId,
    /// The command as type name + JSON data.
    pub command: Payload,
    /// Who and why.
    pub context: CommandContext,
}

impl CommandEnvelope {
    /// Addresses a typed command to aggregate `A`, instance `instance_id`.
    pub fn to<A: Aggregate>(instance_id: &str, command: &A::Command, context: CommandContext) -> Result<Self, Fault> {
        let target = StreamId::new(A::AGGREGATE_TYPE, instance_id).map_err(Fault::new)?;
        Ok(CommandEnvelope { target, command: to_payload(command)?, context })
    }
}

/// A domain "no": the command was refused and produced nothing.
#[derive(Clone)]
pub struct Rejection {
    /// Human-readable reason (the error's `Display`).
    pub message: String,
    /// The typed error, when the aggregate is native Rust (`A::Error`): hosts downcast it.
    pub error: Option<Arc<dyn Any + Send + Sync>>,
    /// The error as JSON data ([`Aggregate::error_to_data`]), when the aggregate opted in: how a
    /// plugin's typed error reaches the host, which decodes it with [`Aggregate::error_from_data`].
    pub data: Option<Value>,
}

impl Rejection {
    /// A rejection carrying only a message (plugins, JSON-level code).
    pub fn message(message: impl Into<String>) -> Self {
        Rejection { message: message.into(), error: None, data: None }
    }

    /// The same rejection, carrying the error as data too.
    pub fn with_data(mut self, data: Option<Value>) -> Self {
        self.data = data;
        self
    }

    /// A typed aggregate's rejection: the message, the typed error and its data.
    fn of<A: Aggregate>(error: A::Error) -> Self {
        let data = A::error_to_data(&error);
        Rejection { message: error.to_string(), error: Some(Arc::new(error)), data }
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tuple = f.debug_tuple("Rejection");
        tuple.field(&self.message);
        if let Some(data) = &self.data {
            tuple.field(data);
        }
        tuple.finish()
    }
}

/// Equal message and data (the typed error, not comparable, is left out).
impl PartialEq for Rejection {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message && self.data == other.data
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Domain code failed to run (not a domain "no"): a payload that does not decode, a plugin trap,
/// a plugin out of fuel. Carries the source error so hosts can downcast it (e.g. to a plugin error).
#[derive(Clone)]
pub struct Fault(pub Arc<dyn std::error::Error + Send + Sync>);

impl Fault {
    /// Wraps any error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Fault(Arc::new(error))
    }
    /// A fault with only a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Fault::new(MessageError(message.into()))
    }
    /// The source error, for downcasting.
    pub fn source_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fault({})", self.0)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl PartialEq for Fault {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct MessageError(String);

/// The outcome of deciding one command at the JSON level: events, or a domain rejection.
pub type Decision = Result<Vec<Payload>, Rejection>;

/// One live aggregate instance at the JSON level. Object-safe: the machines hold a
/// `Box<dyn DynAggregate>`, whether the code behind it is typed Rust or a WASM plugin.
///
/// Methods take `&mut self` because a plugin instance needs its engine store mutably. After any
/// `Err(Fault)` the machine calls [`DynAggregate::reset`] and reloads from durable state.
pub trait DynAggregate: Send {
    /// Stream type name.
    fn aggregate_type(&self) -> &str;
    /// Decides a command against the current state, without changing it, in `context` (which
    /// the machine builds from its inputs).
    fn decide(&mut self, command: &Payload, context: &DecideContext) -> Result<Decision, Fault>;
    /// Folds events into the state, in order.
    fn apply(&mut self, events: &[Payload]) -> Result<(), Fault>;
    /// The state as JSON (what `state()` returns and snapshots store).
    fn snapshot(&mut self) -> Result<Value, Fault>;
    /// Replaces the state with a snapshot taken by [`DynAggregate::snapshot`].
    fn restore(&mut self, snapshot: &Value) -> Result<(), Fault>;
    /// Back to the initial (empty-stream) state; a plugin rebuilds its instance here.
    fn reset(&mut self) -> Result<(), Fault>;
    /// How this code reads stored events (upcasters, versions, unknown-event policy); `None`
    /// (the default) is every event at version 1, unknown events failing.
    fn schema(&self) -> Option<&EventSchema> {
        None
    }
    /// Whether this code can fold events of `event_type`; asked only under
    /// [`crate::schema::UnknownEvents::Skip`]. The default knows every type.
    fn knows(&self, event_type: &str) -> bool {
        let _ = event_type;
        true
    }
    /// The identity of the state's shape that snapshots record: a snapshot written under
    /// another one is refolded, not restored. The default is `"1"`, which snapshots written
    /// before versions existed also read as.
    fn snapshot_version(&self) -> String {
        FIRST_VERSION.to_string()
    }
}

/// Makes fresh instances of one aggregate type (a registry entry).
pub trait AggregateFactory: Send + Sync {
    /// Stream type name.
    fn aggregate_type(&self) -> &str;
    /// A new instance in the initial state.
    fn instantiate(&self) -> Result<Box<dyn DynAggregate>, Fault>;
    /// How this aggregate type's events are read ([`DynAggregate::schema`]), for the readers
    /// of every stream of the type; `None` (the default) is every event at version 1.
    fn schema(&self) -> Option<Arc<EventSchema>> {
        None
    }
}

/// A projection at the JSON level (typed Rust or plugin).
pub trait DynProjection: Send {
    /// Unique name.
    fn name(&self) -> &str;
    /// Folds events, in store-wide order.
    fn apply(&mut self, events: &[StoredEvent]) -> Result<(), Fault>;
    /// The read model as JSON (checkpointed together with the position).
    fn snapshot(&mut self) -> Result<Value, Fault>;
    /// Replaces the read model.
    fn restore(&mut self, snapshot: &Value) -> Result<(), Fault>;
    /// Back to the empty read model.
    fn reset(&mut self) -> Result<(), Fault>;
    /// The version of the fold that checkpoints record: a checkpoint of another version is
    /// dropped and the read model rebuilt. The default, `"1"`, is also what checkpoints written
    /// before versions existed read as.
    fn version(&self) -> String {
        FIRST_VERSION.to_string()
    }
}

/// A process manager at the JSON level.
pub trait DynProcessManager: Send {
    /// Unique name.
    fn name(&self) -> &str;
    /// Folds one event and returns the commands it causes.
    fn react(&mut self, event: &StoredEvent) -> Result<Vec<CommandEnvelope>, Fault>;
    /// The workflow state as JSON.
    fn snapshot(&mut self) -> Result<Value, Fault>;
    /// Replaces the workflow state.
    fn restore(&mut self, snapshot: &Value) -> Result<(), Fault>;
    /// Back to the initial state.
    fn reset(&mut self) -> Result<(), Fault>;
    /// As [`DynProjection::version`], for the workflow state.
    fn version(&self) -> String {
        FIRST_VERSION.to_string()
    }
}

/// Why a typed value and a payload did not convert.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// serde refused the value.
    #[error("{type_name}: {source}")]
    Serde {
        /// The Rust type or variant involved.
        type_name: String,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// The value nests deeper than a log line, snapshot or checkpoint can hold (and than is safe
    /// to recurse into): refused before anything recursive touched it. See [`crate::depth`].
    #[error("{what} nests deeper than {limit} levels")]
    TooDeep {
        /// What nests too deep: a type, a command's or event's data, a metadata key.
        what: String,
        /// The limit.
        limit: usize,
    },
    /// A stored event's version has no way to today's: newer than this code (written by a
    /// newer deployment), or older with no upcaster from it. See [`crate::schema`].
    #[error("{event_type} v{version} cannot be read by this code (its current version is {current})")]
    UnknownVersion {
        /// The stored event's type (after any upcasting steps that did apply).
        event_type: String,
        /// Its version.
        version: u32,
        /// The version this code reads `event_type` at.
        current: u32,
    },
    /// An upcaster refused the data it was given (its own message), or upcasters never reached
    /// a current version.
    #[error("upcasting {event_type} v{version}: {reason}")]
    Upcast {
        /// The type the failing step was registered for.
        event_type: String,
        /// The version it upcasts from.
        version: u32,
        /// Why.
        reason: String,
    },
    /// A stored event's type is one this code does not know (an aggregate under
    /// [`crate::schema::UnknownEvents::Skip`] leaves such events out).
    #[error("{event_type} is not an event type this code knows")]
    UnknownType {
        /// The type.
        event_type: String,
    },
}

impl PayloadError {
    /// Whether this says an event is unknown to this code (its type or its version), which
    /// [`crate::schema::UnknownEvents::Skip`] leaves out; every other error stays a fault.
    pub fn is_unknown_event(&self) -> bool {
        matches!(self, PayloadError::UnknownVersion { version, current, .. } if version > current)
            || matches!(self, PayloadError::UnknownType { .. })
    }
}

/// Converts a typed command or event into a payload: an adjacently tagged enum as its variant and
/// data; any other serde shape by the rule of [`crate::shape`]. Its data may
/// nest at most [`crate::codec::MAX_JSON_DEPTH`] levels: serialization stops there with
/// [`PayloadError::TooDeep`], so a deep value cannot overflow the stack.
pub fn to_payload<T: Serialize>(value: &T) -> Result<Payload, Fault> {
    payload_of(value).map_err(Fault::new)
}

/// [`to_payload`] for a value the caller hands over. One refused as too deep is *leaked*, not
/// dropped: its drop glue would recurse as deep as it nests (past any stack) and a generic
/// value cannot be taken apart from outside. Every other outcome drops it normally.
pub fn into_payload<T: Serialize>(value: T) -> Result<Payload, Fault> {
    let result = payload_of(&value);
    if matches!(result, Err(PayloadError::TooDeep { .. })) {
        std::mem::forget(value);
    }
    result.map_err(Fault::new)
}

/// Whether `fault` is a [`PayloadError::TooDeep`] refusal.
pub fn is_too_deep(fault: &Fault) -> bool {
    matches!(fault.source_error().downcast_ref::<PayloadError>(), Some(PayloadError::TooDeep { .. }))
}

fn payload_of<T: Serialize>(value: &T) -> Result<Payload, PayloadError> {
    let name = std::any::type_name::<T>();
    // The tagged form `{"type":..,"data":..}` is one level above the data.
    let json = to_value_within(value, MAX_JSON_DEPTH + 1).map_err(|e| unserializable(name, e, MAX_JSON_DEPTH))?;
    let (type_name, data) = shape::split(json, shape::shape_of(value), shape::plain_type_name::<T>());
    Ok(Payload { type_name, data })
}

fn unserializable(type_name: &str, error: Unserializable, limit: usize) -> PayloadError {
    match error {
        Unserializable::TooDeep => PayloadError::TooDeep { what: type_name.to_owned(), limit },
        Unserializable::Serde(source) => PayloadError::Serde { type_name: type_name.to_owned(), source },
    }
}

/// Converts a payload back into a typed command or event. Reads the payload in place (the data
/// tree is not cloned, and the tag comes first, so serde never buffers the data).
pub fn from_payload<T: DeserializeOwned>(payload: &Payload) -> Result<T, Fault> {
    let read = match shape::reading_of::<T>() {
        shape::Reading::Adjacent => T::deserialize(TaggedPayload(payload)),
        other => shape::read_other(other, &payload.type_name, &payload.data),
    };
    read.map_err(|source| Fault::new(PayloadError::Serde { type_name: payload.type_name.clone(), source }))
}

/// A borrowed payload seen by serde as the map `{"type": .., "data": ..}` (`data` left out when
/// null), which is what an adjacently tagged enum expects.
struct TaggedPayload<'a>(&'a Payload);

impl<'de> serde::Deserializer<'de> for TaggedPayload<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(TaggedPayloadEntries { payload: self.0, entries_read: 0 })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// The entries of a [`TaggedPayload`]: `type`, then `data` unless it is null.
struct TaggedPayloadEntries<'a> {
    payload: &'a Payload,
    entries_read: u8,
}

impl<'de> serde::de::MapAccess<'de> for TaggedPayloadEntries<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        let key = match self.entries_read {
            0 => "type",
            1 if !self.payload.data.is_null() => "data",
            _ => return Ok(None),
        };
        seed.deserialize(serde::de::value::BorrowedStrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        self.entries_read += 1;
        match self.entries_read {
            1 => seed.deserialize(serde::de::value::BorrowedStrDeserializer::new(self.payload.type_name.as_str())),
            _ => seed.deserialize(&self.payload.data),
        }
    }
}

/// A typed state as JSON, at most [`MAX_STATE_DEPTH`] levels deep (what a snapshot or a
/// checkpoint can hold and read back).
fn to_json<T: Serialize>(value: &T) -> Result<Value, Fault> {
    to_value_within(value, MAX_STATE_DEPTH)
        .map_err(|e| Fault::new(unserializable(std::any::type_name::<T>(), e, MAX_STATE_DEPTH)))
}

fn from_json<T: DeserializeOwned>(value: &Value) -> Result<T, Fault> {
    T::deserialize(value)
        .map_err(|source| Fault::new(PayloadError::Serde { type_name: std::any::type_name::<T>().to_owned(), source }))
}

/// The blanket adapter: a typed aggregate's state, driven at the JSON level.
pub struct TypedAggregate<A: Aggregate> {
    state: A,
    schema: Arc<EventSchema>,
    /// The event type names `A::Event` reads, when serde tells them (see [`shape::variant_names`]).
    known: Option<&'static [&'static str]>,
}

impl<A: Aggregate> Default for TypedAggregate<A> {
    fn default() -> Self {
        TypedAggregate::with_schema(Arc::new(A::schema()))
    }
}

impl<A: Aggregate> TypedAggregate<A> {
    /// An instance in the initial state reading with `schema` (built once per aggregate type).
    pub fn with_schema(schema: Arc<EventSchema>) -> Self {
        TypedAggregate { state: A::default(), schema, known: shape::variant_names::<A::Event>() }
    }

    /// The typed state.
    pub fn state(&self) -> &A {
        &self.state
    }
}

impl<A: Aggregate> DynAggregate for TypedAggregate<A> {
    fn aggregate_type(&self) -> &str {
        A::AGGREGATE_TYPE
    }

    fn decide(&mut self, command: &Payload, context: &DecideContext) -> Result<Decision, Fault> {
        // Deserializing from a `Value` recurses once per level: measure first.
        if exceeds(&command.data, MAX_JSON_DEPTH) {
            return Err(Fault::new(PayloadError::TooDeep {
                what: format!("{} data", command.type_name),
                limit: MAX_JSON_DEPTH,
            }));
        }
        let command: A::Command = from_payload(command)?;
        match self.state.handle_with(command, context) {
            Ok(events) => {
                let payloads: Result<Vec<Payload>, PayloadError> = events.iter().map(payload_of).collect();
                if matches!(payloads, Err(PayloadError::TooDeep { .. })) {
                    // Domain code nested an event too deep: dropping it would recurse as deep.
                    std::mem::forget(events);
                }
                Ok(Ok(payloads.map_err(Fault::new)?))
            }
            Err(error) => Ok(Err(Rejection::of::<A>(error))),
        }
    }

    fn apply(&mut self, events: &[Payload]) -> Result<(), Fault> {
        for payload in events {
            let event: A::Event = from_payload(payload)?;
            self.state = std::mem::take(&mut self.state).apply(&event);
        }
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Value, Fault> {
        to_json(&self.state)
    }

    fn restore(&mut self, snapshot: &Value) -> Result<(), Fault> {
        self.state = from_json(snapshot)?;
        Ok(())
    }

    fn reset(&mut self) -> Result<(), Fault> {
        self.state = A::default();
        Ok(())
    }

    fn schema(&self) -> Option<&EventSchema> {
        Some(&self.schema)
    }

    fn knows(&self, event_type: &str) -> bool {
        self.known.is_none_or(|names| names.contains(&event_type))
    }

    fn snapshot_version(&self) -> String {
        typed_snapshot_version(A::STATE_VERSION, &self.schema)
    }
}

/// `STATE_VERSION`, then the schema's [`EventSchema::fingerprint`] when it has one: a snapshot
/// is refolded when either changed.
fn typed_snapshot_version(state_version: u32, schema: &EventSchema) -> String {
    match schema.fingerprint() {
        events if events.is_empty() => state_version.to_string(),
        events => format!("{state_version};{events}"),
    }
}

/// Factory for a typed aggregate: builds `A::schema()` once and shares it with every instance.
pub struct TypedAggregateFactory<A> {
    schema: Arc<EventSchema>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Default for TypedAggregateFactory<A> {
    fn default() -> Self {
        TypedAggregateFactory { schema: Arc::new(A::schema()), aggregate: PhantomData }
    }
}

impl<A: Aggregate> AggregateFactory for TypedAggregateFactory<A> {
    fn aggregate_type(&self) -> &str {
        A::AGGREGATE_TYPE
    }
    fn instantiate(&self) -> Result<Box<dyn DynAggregate>, Fault> {
        Ok(Box::new(TypedAggregate::<A>::with_schema(self.schema.clone())))
    }
    fn schema(&self) -> Option<Arc<EventSchema>> {
        Some(self.schema.clone())
    }
}

/// The blanket adapter for typed projections.
#[derive(Default)]
pub struct TypedProjection<P: Projection> {
    /// The typed read model.
    pub state: P,
}

impl<P: Projection> DynProjection for TypedProjection<P> {
    fn name(&self) -> &str {
        P::NAME
    }
    fn apply(&mut self, events: &[StoredEvent]) -> Result<(), Fault> {
        let subscriptions = self.state.subscriptions();
        events.iter().filter(|e| subscribed(subscriptions, e)).for_each(|e| self.state.apply(e));
        Ok(())
    }
    fn snapshot(&mut self) -> Result<Value, Fault> {
        to_json(&self.state)
    }
    fn restore(&mut self, snapshot: &Value) -> Result<(), Fault> {
        self.state = from_json(snapshot)?;
        Ok(())
    }
    fn reset(&mut self) -> Result<(), Fault> {
        self.state = P::default();
        Ok(())
    }
    fn version(&self) -> String {
        P::VERSION.to_string()
    }
}

/// The blanket adapter for typed process managers.
#[derive(Default)]
pub struct TypedProcessManager<M: ProcessManager> {
    /// The typed workflow state.
    pub state: M,
}

impl<M: ProcessManager> DynProcessManager for TypedProcessManager<M> {
    fn name(&self) -> &str {
        M::NAME
    }
    fn react(&mut self, event: &StoredEvent) -> Result<Vec<CommandEnvelope>, Fault> {
        if !subscribed(self.state.subscriptions(), event) {
            return Ok(Vec::new());
        }
        Ok(self.state.react(event))
    }
    fn snapshot(&mut self) -> Result<Value, Fault> {
        to_json(&self.state)
    }
    fn restore(&mut self, snapshot: &Value) -> Result<(), Fault> {
        self.state = from_json(snapshot)?;
        Ok(())
    }
    fn reset(&mut self) -> Result<(), Fault> {
        self.state = M::default();
        Ok(())
    }
    fn version(&self) -> String {
        M::VERSION.to_string()
    }
}
