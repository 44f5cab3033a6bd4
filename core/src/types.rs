//! Core nouns shared by every layer: stream ids, event ids, time, metadata and event records.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest allowed aggregate type or instance id, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// Milliseconds since the Unix epoch. The core never reads a clock: hosts pass `now` in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

/// Why a stream id (or one of its parts) was refused. Nothing is written for a refused id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// The part is empty.
    #[error("{what} is empty")]
    Empty {
        /// Which part: "aggregate type", "instance id", …
        what: &'static str,
    },
    /// The part is longer than [`MAX_NAME_BYTES`].
    #[error("{what} is {len} bytes, more than the {MAX_NAME_BYTES} allowed")]
    TooLong {
        /// Which part.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The part is `.` or `..`, which would name a directory, not a stream.
    #[error("{what} may not be `.` or `..`")]
    DotName {
        /// Which part.
        what: &'static str,
    },
    /// The part holds a byte outside letters, digits, `-`, `_`, `.`.
    #[error("{what} {value:?} holds {byte:#04x} at byte {index}; allowed: ASCII letters, digits, '-', '_', '.'")]
    BadByte {
        /// Which part.
        what: &'static str,
        /// The refused value, lossily decoded for display.
        value: String,
        /// The first refused byte.
        byte: u8,
        /// Its index.
        index: usize,
    },
    /// The part is a device name Windows reserves (`CON`, `PRN`, `AUX`, `NUL`, `COM0`-`COM9`,
    /// `LPT0`-`LPT9`, any case, with or without an extension or trailing dots): a store holding it
    /// could not be copied to, or shared with, a Windows machine.
    #[error(
        "{what} {value:?} is a device name reserved on Windows (CON, PRN, AUX, NUL, COM0-9, LPT0-9, in any case, \
         with any extension): a store holding it could not be copied to or shared with Windows"
    )]
    ReservedOnWindows {
        /// Which part.
        what: &'static str,
        /// The refused value.
        value: String,
    },
}

/// Checks one path-safe name: ASCII letters, digits, `-`, `_`, `.`; 1..=128 bytes; not `.`/`..`;
/// not a device name reserved on Windows. Allocates only to describe a refusal.
pub fn validate_name(what: &'static str, value: &str) -> Result<(), InvalidName> {
    if value.is_empty() {
        return Err(InvalidName::Empty { what });
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(InvalidName::TooLong { what, len: value.len() });
    }
    if value == "." || value == ".." {
        return Err(InvalidName::DotName { what });
    }
    if let Some((index, &byte)) = value
        .as_bytes()
        .iter()
        .enumerate()
        .find(|(_, b)| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
    {
        return Err(InvalidName::BadByte { what, value: value.to_owned(), byte, index });
    }
    if reserved_on_windows(value) {
        return Err(InvalidName::ReservedOnWindows { what, value: value.to_owned() });
    }
    Ok(())
}

/// Whether Windows treats `value` as a device: its part before the first `.` (Windows ignores
/// any extension and trailing dots) is CON, PRN, AUX, NUL, COM0-9 or LPT0-9, in any case.
/// Spaces, the other way Windows trims a name, are refused before this runs.
fn reserved_on_windows(value: &str) -> bool {
    let stem = value.as_bytes().split(|b| *b == b'.').next().unwrap_or_default();
    match stem {
        [_, _, _] => [b"CON", b"PRN", b"AUX", b"NUL"].iter().any(|name| stem.eq_ignore_ascii_case(*name)),
        [a, b, c, digit] => {
            let prefix = [*a, *b, *c];
            (prefix.eq_ignore_ascii_case(b"COM") || prefix.eq_ignore_ascii_case(b"LPT")) && digit.is_ascii_digit()
        }
        _ => false,
    }
}

/// One event stream: an aggregate type plus an instance id, both validated path-safe names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct StreamId {
    aggregate_type: String,
    instance_id: String,
}

impl StreamId {
    /// Validates both parts; see [`validate_name`].
    pub fn new(aggregate_type: impl Into<String>, instance_id: impl Into<String>) -> Result<Self, InvalidName> {
        let (aggregate_type, instance_id) = (aggregate_type.into(), instance_id.into());
        validate_name("aggregate type", &aggregate_type)?;
        validate_name("instance id", &instance_id)?;
        Ok(StreamId { aggregate_type, instance_id })
    }

    /// The aggregate type, e.g. `bank-account`.
    pub fn aggregate_type(&self) -> &str {
        &self.aggregate_type
    }

    /// The instance id, e.g. `acc-42`.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.aggregate_type, self.instance_id)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            aggregate_type: String,
            instance_id: String,
        }
        let raw = Raw::deserialize(d)?;
        StreamId::new(raw.aggregate_type, raw.instance_id).map_err(serde::de::Error::custom)
    }
}

/// A globally unique event id (dedup key for relays). Hosts supply the entropy; see [`IdSeed`].
/// `Default` is the empty id, what a stored line without an `id` key deserializes to before the
/// codec derives one ([`EventId::for_position`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub String);

impl EventId {
    /// The id of a stored event whose line has none (written by another tool; eventfold-es
    /// lines may lack one): derived from its store position, so every read, on every run, gives
    /// the same id, and no two events of one store share it. A UUID of version 8 (custom):
    /// `00000000-PPPP-8000-8000-PPPPPPPPPPPP`, the 64-bit position in hex across the `P`s.
    pub fn for_position(pos: u64) -> EventId {
        EventId(format!("00000000-{:04x}-8000-8000-{:012x}", pos >> 48, pos & 0xffff_ffff_ffff))
    }

    /// Whether this is the empty id (a line without one, before the codec derives it).
    pub fn is_missing(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 128 bits chosen by the host (e.g. a UUIDv7 from clock + randomness) from which the core
/// derives the ids of all events one command produces: event `i` gets `seed + i`, formatted as a
/// UUID. Passing the seed in keeps the core deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdSeed(pub u128);

impl IdSeed {
    /// The id of the `index`-th event derived from this seed.
    pub fn event_id(self, index: usize) -> EventId {
        let v = self.0.wrapping_add(index as u128);
        let h = format!("{v:032x}");
        EventId(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
    }
}

/// Who and why: copied from the command onto every event it produces (`meta` in the log).
///
/// It also reads eventfold-es's `CommandContext` JSON: that context's `metadata` (any JSON) is
/// kept, its object entries merged into [`Metadata::extra`] (a value that is not an object is
/// kept whole under the key `metadata`), the same rule as [`Metadata::with_metadata`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "MetadataFields")]
pub struct Metadata {
    /// Identity of the user or system that issued the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Groups every event of one business transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Id of the event or command that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The device of the client that issued the command (eventfold-es's `source_device`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_device: Option<String>,
    /// Free-form application metadata (sorted, so logs are deterministic).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Value>,
}

/// The [`Metadata::extra`] key of the W3C trace context (the `traceparent` header's name).
pub const TRACEPARENT: &str = "traceparent";

/// What [`Metadata`] deserializes from: its own fields, plus eventfold-es's `metadata`.
#[derive(Deserialize)]
struct MetadataFields {
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    causation_id: Option<String>,
    #[serde(default)]
    source_device: Option<String>,
    #[serde(default)]
    extra: BTreeMap<String, Value>,
    #[serde(default)]
    metadata: Option<Value>,
}

impl From<MetadataFields> for Metadata {
    fn from(fields: MetadataFields) -> Self {
        let MetadataFields { actor, correlation_id, causation_id, source_device, extra, metadata } = fields;
        let meta = Metadata { actor, correlation_id, causation_id, source_device, extra };
        match metadata {
            None | Some(Value::Null) => meta,
            Some(value) => meta.with_metadata(value),
        }
    }
}

/// The context a command carries; the same fields become the events' metadata.
pub type CommandContext = Metadata;

impl Metadata {
    /// Sets the actor.
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }
    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }
    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }
    /// Adds one free-form entry.
    pub fn with_extra(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }
    /// Sets the W3C trace context (`traceparent`, e.g.
    /// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`), kept in [`Metadata::extra`]
    /// under [`TRACEPARENT`]: every event of the command carries it, and a process manager's
    /// commands inherit it from the event that caused them, so one trace spans the workflow.
    pub fn with_traceparent(self, traceparent: impl Into<String>) -> Self {
        self.with_extra(TRACEPARENT, Value::String(traceparent.into()))
    }
    /// The W3C trace context, if one was set (see [`Metadata::with_traceparent`]).
    pub fn traceparent(&self) -> Option<&str> {
        self.extra.get(TRACEPARENT).and_then(Value::as_str)
    }
    /// Sets the device of the client that issued the command.
    pub fn with_source_device(mut self, device: impl Into<String>) -> Self {
        self.source_device = Some(device.into());
        self
    }
    /// Adds arbitrary JSON metadata, as eventfold-es's `with_metadata` does: an object's
    /// entries are merged into [`Metadata::extra`] (later keys win); any other value is kept
    /// whole under the key `metadata`. `null` adds nothing.
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        match metadata {
            Value::Null => {}
            Value::Object(entries) => self.extra.extend(entries),
            other => {
                self.extra.insert("metadata".to_owned(), other);
            }
        }
        self
    }
}

/// What the caller expects the stream's version to be before its command is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check.
    #[default]
    Any,
    /// The stream must have no events yet.
    NoStream,
    /// The stream's last `seq` must be exactly this.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `version` (0 = empty) satisfies this expectation.
    pub fn admits(self, version: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => version == 0,
            ExpectedVersion::Exact(v) => v == version,
        }
    }
}

/// A command or event crossing the JSON boundary: its type name and its JSON data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// Variant name, e.g. `Deposited`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Variant data; `null` for a variant without data.
    #[serde(default)]
    pub data: Value,
}

impl Payload {
    /// Builds a payload.
    pub fn new(type_name: impl Into<String>, data: Value) -> Self {
        Payload { type_name: type_name.into(), data }
    }
}

impl fmt::Display for Payload {
    /// `Type` for a variant without data, `Type{...data json...}` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.type_name)?;
        if self.data.is_null() {
            Ok(())
        } else {
            write!(f, "{}", self.data)
        }
    }
}

/// An event decided but not yet stored: the store assigns `seq` and `pos` when it appends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Globally unique id.
    pub id: EventId,
    /// Type name and data.
    #[serde(flatten)]
    pub payload: Payload,
    /// The schema version of the event's type it is written at (see [`crate::schema`]).
    #[serde(rename = "v", default = "first_version", skip_serializing_if = "is_first_version")]
    pub version: u32,
    /// Time the command was decided.
    pub ts: Timestamp,
    /// Copied from the command context.
    pub meta: Metadata,
}

/// One stored event: a line of a stream's log. Field order is the on-disk key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// 1-based version of the stream after this event.
    pub seq: u64,
    /// Store-wide position (strictly increasing across all streams of one store).
    pub pos: u64,
    /// Globally unique id. A line without one reads with [`EventId::for_position`].
    #[serde(default)]
    pub id: EventId,
    /// Event type name.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The schema version of `event_type` the event was written at: `"v"` in a log line, left
    /// out for version 1, so lines written before versions existed read as version 1. Readers
    /// see it after upcasting ([`crate::schema`]), i.e. as the current version.
    #[serde(rename = "v", default = "first_version", skip_serializing_if = "is_first_version")]
    pub version: u32,
    /// Event data.
    #[serde(default)]
    pub data: Value,
    /// When the command that produced it was decided.
    pub ts: Timestamp,
    /// Who and why.
    #[serde(default)]
    pub meta: Metadata,
}

impl EventRecord {
    /// Builds the stored form of `event` at stream version `seq` and store position `pos`.
    pub fn from_new(event: NewEvent, seq: u64, pos: u64) -> Self {
        EventRecord {
            seq,
            pos,
            id: event.id,
            event_type: event.payload.type_name,
            version: event.version,
            data: event.payload.data,
            ts: event.ts,
            meta: event.meta,
        }
    }

    /// The event's type and data.
    pub fn payload(&self) -> Payload {
        Payload::new(self.event_type.clone(), self.data.clone())
    }

    /// The event's type and data, moved out of the record (no copy).
    pub fn into_payload(self) -> Payload {
        Payload { type_name: self.event_type, data: self.data }
    }
}

fn first_version() -> u32 {
    crate::schema::FIRST_VERSION
}

fn is_first_version(version: &u32) -> bool {
    *version == crate::schema::FIRST_VERSION
}

/// An event together with the stream it belongs to: what projections and process managers see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The stream.
    pub stream: StreamId,
    /// The stored record.
    pub record: EventRecord,
}

/// A read position in the store-wide order. Opaque to the core: only the driver that issued it
/// compares it (the JSONL driver uses its `pos`; a PostgreSQL driver a transaction-id pair).
/// `Position::start()` means "before every event".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub Value);

impl Position {
    /// Before every event.
    pub fn start() -> Self {
        Position(Value::Null)
    }
    /// Whether this is the start position.
    pub fn is_start(&self) -> bool {
        self.0.is_null()
    }
}
