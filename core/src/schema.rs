//! Schema evolution: the version each event type is written at, the upcasters that read events
//! stored at older versions as today's, and what to do with an event the code does not know.
//!
//! A stored event keeps the version it was written at (`"v"` in a log line, left out for
//! version 1, so every line written before versions existed reads as version 1). Reading never
//! rewrites the log: every read path (aggregate load, projections, process managers) passes each
//! stored event through [`EventSchema::read`], which chains upcasters from the stored version to
//! the current one. An upcaster is a pure function of one event's data at version `n` to the
//! event(s) it becomes: events of its own type come out at version `n + 1` (and go on through
//! that version's upcaster, if any); events of another type (a rename, a split) come out as that
//! type is written today, its current version. Data is never rewritten on disk.
//!
//! ```
//! use evfold_core::schema::EventSchema;
//! use evfold_core::Payload;
//! use serde_json::json;
//!
//! // v1 `Deposited {amount}` was in euros; v2 `Deposited {cents}`.
//! let schema = EventSchema::new().upcast("Deposited", 1, |mut data| {
//!     let euros = data["amount"].as_u64().ok_or("amount is not a number")?;
//!     data = json!({ "cents": euros * 100 });
//!     Ok(vec![Payload::new("Deposited", data)])
//! });
//! assert_eq!(schema.current_version("Deposited"), 2);
//! let read = schema.read("Deposited", 1, json!({"amount": 5})).unwrap();
//! assert_eq!(read, vec![Payload::new("Deposited", json!({"cents": 500}))]);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::domain::{AggregateFactory, DynAggregate, PayloadError};
use crate::types::{EventRecord, Payload, StoredEvent};

/// The version of an event type that never declared one, and of every line written before
/// versions were stored.
pub const FIRST_VERSION: u32 = 1;

/// Upcasting steps one stored event may take before it is current. Chains always end (a step
/// either raises its type's version or yields other types at their current one); this bounds
/// what splitting upcasters can make of one event.
const MAX_STEPS: usize = 256;

/// What a reader does with a stored event it cannot read: a type its code does not know, or a
/// version newer than its code (written by a newer deployment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownEvents {
    /// Refuse it: the stream (or the reader) is unavailable until the code knows the event.
    /// The default, because skipping an event a fold needed gives a wrong state silently.
    #[default]
    Fail,
    /// Leave it out of the fold and count it (`Notification::EventsSkipped`): for readers that
    /// must keep working while newer writers add event types (eventfold-es's behaviour).
    Skip,
}

/// One upcasting step: the data of an event at version `n` to the event(s) at version `n + 1`.
type Step = Arc<dyn Fn(Value) -> Result<Vec<Payload>, String> + Send + Sync>;

/// How one aggregate type's stored events are read by today's code: each event type's current
/// version, the upcasters from older versions, and the [`UnknownEvents`] policy. Built once per
/// aggregate type ([`crate::Aggregate::schema`]) and shared by its streams and by every reader.
#[derive(Clone, Default)]
pub struct EventSchema {
    versions: BTreeMap<String, u32>,
    steps: BTreeMap<(String, u32), Step>,
    unknown: UnknownEvents,
}

impl EventSchema {
    /// Every event type at version 1, no upcasters, unknown events fail.
    pub fn new() -> Self {
        EventSchema::default()
    }

    /// Adds the upcaster that reads `event_type` at `from_version` as the event(s) it becomes:
    /// of `event_type` at `from_version + 1`, or of other types (a rename, a split) as they are
    /// written today. The current version of `event_type` becomes at least `from_version + 1`.
    /// An `Err` is a fault: the stream or reader stops with its message.
    pub fn upcast<F>(mut self, event_type: &str, from_version: u32, step: F) -> Self
    where
        F: Fn(Value) -> Result<Vec<Payload>, String> + Send + Sync + 'static,
    {
        let next = from_version.saturating_add(1);
        let current = self.versions.entry(event_type.to_owned()).or_insert(FIRST_VERSION);
        *current = (*current).max(next);
        self.steps.insert((event_type.to_owned(), from_version), Arc::new(step));
        self
    }

    /// Declares `event_type`'s current version outright: for a type that an upcaster renames
    /// another into (it starts at the version after the rename) or whose version is bumped
    /// without old data to convert.
    pub fn version(mut self, event_type: &str, version: u32) -> Self {
        self.versions.insert(event_type.to_owned(), version.max(FIRST_VERSION));
        self
    }

    /// Sets the [`UnknownEvents`] policy.
    pub fn unknown_events(mut self, policy: UnknownEvents) -> Self {
        self.unknown = policy;
        self
    }

    /// The [`UnknownEvents`] policy.
    pub fn unknown(&self) -> UnknownEvents {
        self.unknown
    }

    /// The version `event_type` is written at today.
    pub fn current_version(&self, event_type: &str) -> u32 {
        self.versions.get(event_type).copied().unwrap_or(FIRST_VERSION)
    }

    /// Every type above version 1 with its version, `Deposited=2,Withdrawn=3`, in name order;
    /// empty when every type is at version 1. Part of what a snapshot records about the code
    /// that wrote it.
    pub fn fingerprint(&self) -> String {
        let above_first = self.versions.iter().filter(|(_, v)| **v > FIRST_VERSION);
        above_first.map(|(t, v)| format!("{t}={v}")).collect::<Vec<_>>().join(",")
    }

    /// Whether an event of `event_type` stored at `version` is read as it is.
    pub fn is_current(&self, event_type: &str, version: u32) -> bool {
        version == self.current_version(event_type)
    }

    /// Reads an event stored as `event_type` at `version` as today's event(s): unchanged when
    /// current, else through the chain of upcasters. Errors: [`PayloadError::UnknownVersion`]
    /// (a version newer than this code, or an old one without an upcaster) and
    /// [`PayloadError::Upcast`] (an upcaster refused, or upcasters that never reach a current
    /// version).
    pub fn read(&self, event_type: &str, version: u32, data: Value) -> Result<Vec<Payload>, PayloadError> {
        let mut current = Vec::new();
        let mut pending = vec![(Payload::new(event_type, data), version)];
        let mut steps = 0;
        while let Some((payload, version)) = pending.pop() {
            let latest = self.current_version(&payload.type_name);
            if version == latest {
                current.push(payload);
                continue;
            }
            let step = match self.steps.get(&(payload.type_name.clone(), version)) {
                Some(step) if version < latest => step,
                _ => {
                    return Err(PayloadError::UnknownVersion {
                        event_type: payload.type_name,
                        version,
                        current: latest,
                    })
                }
            };
            steps += 1;
            if steps > MAX_STEPS {
                let reason = format!("more than {MAX_STEPS} upcasting steps for one stored event");
                return Err(PayloadError::Upcast { event_type: event_type.to_owned(), version, reason });
            }
            let type_name = payload.type_name;
            let next = step(payload.data).map_err(|reason| PayloadError::Upcast {
                event_type: type_name.clone(),
                version,
                reason,
            })?;
            // Reversed onto the stack, so the outputs come out in the upcaster's order.
            pending.extend(next.into_iter().rev().map(|p| {
                let at = if p.type_name == type_name { version + 1 } else { self.current_version(&p.type_name) };
                (p, at)
            }));
        }
        Ok(current)
    }
}

impl fmt::Debug for EventSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSchema")
            .field("versions", &self.versions)
            .field("upcasters", &self.steps.keys().collect::<Vec<_>>())
            .field("unknown", &self.unknown)
            .finish()
    }
}

/// The [`EventSchema`] of every aggregate type a store knows, for the readers: projections and
/// process managers see each event as its aggregate's code reads it today. Cheap to clone.
#[derive(Clone, Default)]
pub struct Schemas(Arc<BTreeMap<String, Arc<EventSchema>>>);

/// What [`Schemas::read`] made of one stored event.
#[derive(Debug)]
pub enum ReadEvent {
    /// The event as today's code reads it: one event, or several when an upcaster split it
    /// (they share the stored event's position, seq and id).
    Current(Vec<StoredEvent>),
    /// Left out under [`UnknownEvents::Skip`]: why.
    Skipped(PayloadError),
}

impl Schemas {
    /// The registry of `schemas`, by aggregate type.
    pub fn new(schemas: impl IntoIterator<Item = (String, Arc<EventSchema>)>) -> Self {
        Schemas(Arc::new(schemas.into_iter().collect()))
    }

    /// The schemas `factories` declare.
    pub fn of<'a>(factories: impl IntoIterator<Item = &'a dyn AggregateFactory>) -> Self {
        Schemas::new(factories.into_iter().filter_map(|f| Some((f.aggregate_type().to_owned(), f.schema()?))))
    }

    /// The schema of `aggregate_type`, if the store knows one.
    pub fn get(&self, aggregate_type: &str) -> Option<&EventSchema> {
        self.0.get(aggregate_type).map(|s| &**s)
    }

    /// Whether `event` is read as it was stored: no schema for its type, or already current.
    pub fn reads_as_stored(&self, event: &StoredEvent) -> bool {
        self.get(event.stream.aggregate_type())
            .is_none_or(|schema| schema.is_current(&event.record.event_type, event.record.version))
    }

    /// `event` as today's code of its aggregate type reads it; unchanged for a type without a
    /// schema or an event already current.
    pub fn read(&self, event: StoredEvent) -> Result<ReadEvent, PayloadError> {
        let record = &event.record;
        let upcasting =
            self.get(event.stream.aggregate_type()).filter(|s| !s.is_current(&record.event_type, record.version));
        let Some(schema) = upcasting else {
            return Ok(ReadEvent::Current(vec![event]));
        };
        let StoredEvent { stream, mut record } = event;
        let data = std::mem::take(&mut record.data);
        match schema.read(&record.event_type, record.version, data) {
            Ok(payloads) => Ok(ReadEvent::Current(
                payloads
                    .into_iter()
                    .map(|payload| {
                        let mut record = record.clone();
                        record.version = schema.current_version(&payload.type_name);
                        record.event_type = payload.type_name;
                        record.data = payload.data;
                        StoredEvent { stream: stream.clone(), record }
                    })
                    .collect(),
            )),
            Err(error) if schema.unknown() == UnknownEvents::Skip && error.is_unknown_event() => {
                Ok(ReadEvent::Skipped(error))
            }
            Err(error) => Err(error),
        }
    }
}

impl Schemas {
    /// [`Schemas::read`] for a batch in store order: the events as today's code reads them, and
    /// what was left out. An event that cannot be read is an error naming it.
    pub fn read_batch(&self, events: Vec<StoredEvent>) -> Result<(Vec<StoredEvent>, Option<Skipped>), String> {
        let mut current = Vec::with_capacity(events.len());
        let mut skipped = None;
        for event in events {
            if self.reads_as_stored(&event) {
                current.push(event); // the common case: no upcaster, nothing to allocate
                continue;
            }
            let at = format!("{} seq {}", event.stream, event.record.seq);
            match self.read(event) {
                Ok(ReadEvent::Current(events)) => current.extend(events),
                Ok(ReadEvent::Skipped(error)) => Skipped::add(&mut skipped, || format!("{at}: {error}")),
                Err(error) => return Err(format!("{at}: {error}")),
            }
        }
        Ok((current, skipped))
    }
}

/// Events a read left out under [`UnknownEvents::Skip`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// How many.
    pub count: u64,
    /// Why the first was.
    pub first_reason: String,
}

impl Skipped {
    fn add(skipped: &mut Option<Skipped>, reason: impl FnOnce() -> String) {
        match skipped {
            Some(s) => s.count += 1,
            None => *skipped = Some(Skipped { count: 1, first_reason: reason() }),
        }
    }
}

/// One stream's stored records as `aggregate`'s code reads them, in order: upcast to their
/// current versions by its schema; under [`UnknownEvents::Skip`], events of a type it does not
/// [know](DynAggregate::knows) or of a newer version left out (and reported), else refused.
pub fn read_records(
    aggregate: &dyn DynAggregate,
    records: Vec<EventRecord>,
) -> Result<(Vec<Payload>, Option<Skipped>), PayloadError> {
    let Some(schema) = aggregate.schema() else {
        return Ok((records.into_iter().map(EventRecord::into_payload).collect(), None));
    };
    let skip = schema.unknown() == UnknownEvents::Skip;
    let mut payloads = Vec::with_capacity(records.len());
    let mut skipped = None;
    for record in records {
        if schema.is_current(&record.event_type, record.version) && (!skip || aggregate.knows(&record.event_type)) {
            payloads.push(record.into_payload()); // the common case: nothing to upcast
            continue;
        }
        // Upcast (a current event comes back as it is), then check every type it became.
        let read = schema.read(&record.event_type, record.version, record.data).and_then(|events| {
            match events.iter().find(|e| skip && !aggregate.knows(&e.type_name)) {
                Some(unknown) => Err(PayloadError::UnknownType { event_type: unknown.type_name.clone() }),
                None => Ok(events),
            }
        });
        match read {
            Ok(events) => payloads.extend(events),
            Err(error) if skip && error.is_unknown_event() => Skipped::add(&mut skipped, || error.to_string()),
            Err(error) => return Err(error),
        }
    }
    Ok((payloads, skipped))
}

impl fmt::Debug for Schemas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}
