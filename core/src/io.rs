//! The IO vocabulary: requests the machines emit, results hosts feed back, and the shared
//! `Output` enum. Storage-neutral: streams, versions and opaque positions, never byte offsets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{CommandEnvelope, Fault, Rejection};
use crate::types::{EventRecord, NewEvent, Position, StoredEvent, StreamId, Timestamp};

/// Names one IO request; its completion must echo it. Unique per machine instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IoId(pub u64);

/// Names one caller request (command or state query); its reply echoes it. Chosen by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CommandId(pub u64);

/// A saved aggregate state: the fold of events `1..=seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Stream version the state includes.
    pub seq: u64,
    /// The state as returned by `DynAggregate::snapshot`.
    pub state: Value,
    /// [`crate::DynAggregate::snapshot_version`] of the code that wrote it; `None` is `"1"`
    /// (and what snapshots written before versions existed read as).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Snapshot {
    /// The version of the code that wrote it (`"1"` when it recorded none).
    pub fn written_by(&self) -> &str {
        self.version.as_deref().unwrap_or("1")
    }
}

/// `version` as a snapshot or checkpoint records it: nothing for `"1"`, so what version-less
/// code writes stays byte-identical.
pub(crate) fn recorded_version(version: String) -> Option<String> {
    (version != "1").then_some(version)
}

/// A saved reader (projection or process manager) state: its fold up to `position`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Driver token of the last event folded.
    pub position: Position,
    /// Last `seq` folded per stream (`type/id` → seq): duplicates below it are skipped, a gap is
    /// reported.
    pub cursors: BTreeMap<String, u64>,
    /// The reader's state.
    pub state: Value,
    /// [`crate::DynProjection::version`] of the code that wrote it; `None` is `"1"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Checkpoint {
    /// The version of the code that wrote it (`"1"` when it recorded none).
    pub fn written_by(&self) -> &str {
        self.version.as_deref().unwrap_or("1")
    }
}

/// A command a process manager could not deliver, kept for inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The undelivered command.
    pub command: CommandEnvelope,
    /// Id of the event that caused it.
    pub cause: String,
    /// How many times delivery was tried.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// When it was given up.
    pub ts: Timestamp,
}

/// One IO request. Every request is answered by exactly one [`IoResult`] with the same [`IoId`].
/// Serializable so journals can record it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "io", rename_all = "snake_case")]
pub enum Io {
    /// Load the latest snapshot of a stream → `IoResult::Snapshot`.
    ReadSnapshot {
        /// Which stream.
        stream: StreamId,
    },
    /// Read every event with `seq > after_seq`, in order → `IoResult::Stream`.
    ReadStream {
        /// Which stream.
        stream: StreamId,
        /// Version already folded.
        after_seq: u64,
    },
    /// Append events if the stream's version is still `expected_seq`; the driver assigns `seq`
    /// and `pos` → `IoResult::Appended` (or `Failed` with `IoErrorKind::Conflict`). Not yet
    /// durable: a `Sync` follows unless the machine runs buffered.
    Append {
        /// Which stream.
        stream: StreamId,
        /// Version the events were decided against.
        expected_seq: u64,
        /// The events, in order.
        events: Vec<NewEvent>,
    },
    /// Make every append to the stream durable (fdatasync) → `IoResult::Done`.
    Sync {
        /// Which stream.
        stream: StreamId,
    },
    /// Replace the stream's snapshot (atomically) → `IoResult::Done`.
    WriteSnapshot {
        /// Which stream.
        stream: StreamId,
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// Load a reader's checkpoint → `IoResult::Checkpoint`.
    ReadCheckpoint {
        /// Projection or process-manager name.
        reader: String,
    },
    /// Read up to `max_events` durable events after `after`, in store-wide order → `IoResult::Batch`.
    /// The driver must never return an event while an earlier position may still appear.
    ReadAll {
        /// Where the reader stands.
        after: Position,
        /// Batch size.
        max_events: usize,
    },
    /// Replace a reader's checkpoint (atomically, durably) → `IoResult::Done`.
    WriteCheckpoint {
        /// Projection or process-manager name.
        reader: String,
        /// The checkpoint.
        checkpoint: Checkpoint,
    },
    /// Execute a command on its target aggregate → `IoResult::Done`, or `Failed` (kind
    /// `Rejected` for a domain refusal, anything else is retried).
    Dispatch {
        /// Deterministic id: `<reader>:<cause event id>:<index>`.
        dispatch_id: String,
        /// The command.
        command: CommandEnvelope,
    },
    /// Append a dead letter to the reader's dead-letter log → `IoResult::Done`.
    WriteDeadLetter {
        /// Process-manager name.
        reader: String,
        /// The letter.
        letter: DeadLetter,
    },
}

/// The result of one [`Io`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", content = "data", rename_all = "snake_case")]
pub enum IoResult {
    /// A write, sync or dispatch succeeded.
    Done,
    /// Answer to `ReadSnapshot`.
    Snapshot(Option<Snapshot>),
    /// Answer to `ReadStream`.
    Stream(Vec<EventRecord>),
    /// Answer to `Append`: the stored records with `seq` and `pos` assigned.
    Appended(Vec<EventRecord>),
    /// Answer to `ReadCheckpoint`.
    Checkpoint(Option<Checkpoint>),
    /// Answer to `ReadAll`: events in store-wide order and the position after the last one.
    Batch {
        /// The events (possibly none).
        events: Vec<StoredEvent>,
        /// Where to read next.
        next: Position,
    },
    /// The request failed.
    Failed(IoError),
}

/// Why an IO request failed, as data: the machine decides what to do with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct IoError {
    /// What kind of failure.
    pub kind: IoErrorKind,
    /// Human-readable detail (path, errno, …).
    pub message: String,
}

impl IoError {
    /// Builds an error.
    pub fn new(kind: IoErrorKind, message: impl Into<String>) -> Self {
        IoError { kind, message: message.into() }
    }
}

/// Classes of IO failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IoErrorKind {
    /// Another writer appended first; the stream is now at `actual_seq`.
    Conflict {
        /// The stream's version in storage.
        actual_seq: u64,
    },
    /// A write or fsync failed: the outcome of the batch is unknown.
    Storage,
    /// Stored data failed verification.
    Corrupt,
    /// The target aggregate refused a dispatched command (not retried).
    Rejected,
    /// A transient failure (target unavailable, timeout): retried.
    Unavailable,
}

/// The result of one command, as committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// Stream version after this command's events.
    pub version: u64,
    /// How many events this command appended.
    pub n_events: u64,
    /// Store positions of the appended events, in order.
    pub positions: Vec<u64>,
}

/// Why a command did not commit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// The aggregate refused it (domain rule). Nothing was written.
    #[error("rejected: {0}")]
    Rejected(Rejection),
    /// The stream was not at the version the caller expected. Nothing was written.
    #[error("expected version {expected:?}, stream is at {actual}")]
    WrongExpectedVersion {
        /// What the caller expected.
        expected: crate::types::ExpectedVersion,
        /// The stream's version.
        actual: u64,
    },
    /// An event's data exceeds the configured limit. Nothing was written.
    #[error("event {event_type} is {bytes} bytes, over the {limit}-byte limit")]
    EventTooLarge {
        /// Offending event type.
        event_type: String,
        /// Its serialized data size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The command's data exceeds the configured limit; domain code never saw it. Nothing was
    /// written.
    #[error("command {command_type} is {bytes} bytes, over the {limit}-byte limit")]
    CommandTooLarge {
        /// Offending command type.
        command_type: String,
        /// Its serialized data size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Domain code failed to run (bad payload, plugin trap). Nothing was written.
    #[error("domain code failed: {0}")]
    Fault(Fault),
    /// Concurrent writers kept winning; retries exhausted. Nothing was written.
    #[error("conflict persisted after {attempts} attempts")]
    Conflict {
        /// Attempts made.
        attempts: u32,
    },
    /// The write or sync failed: the command may or may not be durable. The stream is poisoned
    /// until it is reopened and re-read.
    #[error("storage failed, outcome unknown: {0}")]
    Storage(IoError),
    /// The stream is poisoned by an earlier storage failure or corruption; reopen it.
    #[error("stream unavailable: {0}")]
    Unavailable(String),
}

/// Something a host may want to know; never needs an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "notify", rename_all = "snake_case")]
pub enum Notification {
    /// The aggregate finished loading at this version.
    Loaded {
        /// Which stream.
        stream: StreamId,
        /// Its version.
        version: u64,
    },
    /// Nothing in flight and nothing queued for the idle timeout: the host may evict it.
    Idle {
        /// Which stream.
        stream: StreamId,
    },
    /// A storage failure or corruption latched the machine; drop it, reopen, re-read.
    Poisoned {
        /// Which stream (or reader name).
        what: String,
        /// Why.
        reason: String,
    },
    /// A snapshot write failed (harmless: snapshots are rebuildable).
    SnapshotFailed {
        /// Which stream.
        stream: StreamId,
        /// Why.
        reason: String,
    },
    /// A snapshot was written by code of another state version ([`crate::DynAggregate::snapshot_version`]):
    /// not restored, the stream refolds from its first event (and writes a current one later).
    SnapshotStale {
        /// Which stream.
        stream: StreamId,
        /// The snapshot's version.
        written_by: String,
        /// This code's.
        reading_with: String,
    },
    /// A reader's checkpoint was written by another version of its code
    /// ([`crate::DynProjection::version`]): dropped, the reader rebuilds from the first event.
    CheckpointStale {
        /// Reader name.
        reader: String,
        /// The checkpoint's version.
        written_by: String,
        /// This code's.
        reading_with: String,
    },
    /// Events this code does not know were left out of a fold, as
    /// [`crate::schema::UnknownEvents::Skip`] says.
    EventsSkipped {
        /// Which stream (aggregate load) or reader.
        what: String,
        /// How many in this load or batch.
        count: u64,
        /// Why the first was skipped.
        reason: String,
    },
    /// A reader saved a checkpoint.
    CheckpointSaved {
        /// Reader name.
        reader: String,
        /// Its position.
        position: Position,
    },
    /// A reader is caught up with everything the driver had.
    CaughtUp {
        /// Reader name.
        reader: String,
    },
    /// A process manager dead-lettered a command.
    DeadLettered {
        /// Reader name.
        reader: String,
        /// Dispatch id.
        dispatch_id: String,
    },
}

/// What a machine wants next. Drain `poll` after every `handle`.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
#[allow(clippy::large_enum_variant)] // outputs are moved once, not stored in bulk
pub enum Output {
    /// Fulfil this request and feed the result back with the same id.
    Io {
        /// Echo this in the completion.
        io: IoId,
        /// What to do.
        request: Io,
    },
    /// Answer a command.
    Reply {
        /// The caller's id.
        id: CommandId,
        /// Committed, or why not.
        result: Result<Committed, CommandError>,
    },
    /// Answer a state query: version and state JSON, read after every earlier command settled.
    State {
        /// The caller's id.
        id: CommandId,
        /// Version and state, or why not.
        result: Result<(u64, Value), CommandError>,
    },
    /// For the host's information.
    Notify(Notification),
}

/// Compact one-line renderings, used by traces (memory driver, simulator, snapshot tests).
mod render {
    use std::fmt;

    use super::{CommandError, Io, IoResult, Output};
    use crate::types::{EventRecord, NewEvent};

    fn events(f: &mut fmt::Formatter<'_>, events: &[NewEvent]) -> fmt::Result {
        for (i, e) in events.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{}", e.payload)?;
        }
        Ok(())
    }

    fn seq_range(records: &[EventRecord]) -> String {
        match (records.first(), records.last()) {
            (Some(a), Some(b)) => format!("seq {}..={} pos {}..={}", a.seq, b.seq, a.pos, b.pos),
            _ => "nothing".into(),
        }
    }

    impl fmt::Display for Io {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Io::ReadSnapshot { stream } => write!(f, "read-snapshot {stream}"),
                Io::ReadStream { stream, after_seq } => write!(f, "read-stream {stream} after {after_seq}"),
                Io::Append { stream, expected_seq, events: list } => {
                    write!(f, "append {stream} at {expected_seq}: ")?;
                    events(f, list)
                }
                Io::Sync { stream } => write!(f, "sync {stream}"),
                Io::WriteSnapshot { stream, snapshot } => {
                    write!(f, "write-snapshot {stream} seq {} {}", snapshot.seq, snapshot.state)
                }
                Io::ReadCheckpoint { reader } => write!(f, "read-checkpoint {reader}"),
                Io::ReadAll { after, max_events } => write!(f, "read-all after {} max {max_events}", after.0),
                Io::WriteCheckpoint { reader, checkpoint } => {
                    write!(f, "write-checkpoint {reader} at {} {}", checkpoint.position.0, checkpoint.state)
                }
                Io::Dispatch { dispatch_id, command } => {
                    write!(f, "dispatch {dispatch_id} to {} {}", command.target, command.command)
                }
                Io::WriteDeadLetter { reader, letter } => write!(
                    f,
                    "dead-letter {reader}: {} {} after {} attempt(s): {}",
                    letter.command.target, letter.command.command.type_name, letter.attempts, letter.error
                ),
            }
        }
    }

    impl fmt::Display for IoResult {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                IoResult::Done => write!(f, "done"),
                IoResult::Snapshot(None) => write!(f, "no snapshot"),
                IoResult::Snapshot(Some(s)) => write!(f, "snapshot seq {}", s.seq),
                IoResult::Stream(records) => write!(f, "{} event(s) {}", records.len(), seq_range(records)),
                IoResult::Appended(records) => write!(f, "appended {}", seq_range(records)),
                IoResult::Checkpoint(None) => write!(f, "no checkpoint"),
                IoResult::Checkpoint(Some(c)) => write!(f, "checkpoint at {}", c.position.0),
                IoResult::Batch { events, next } => write!(f, "{} event(s), next {}", events.len(), next.0),
                IoResult::Failed(e) => write!(f, "failed: {e}"),
            }
        }
    }

    fn error(f: &mut fmt::Formatter<'_>, e: &CommandError) -> fmt::Result {
        write!(f, "err: {e}")
    }

    impl fmt::Display for Output {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Output::Io { io, request } => write!(f, "io#{} {request}", io.0),
                Output::Reply { id, result: Ok(c) } => {
                    write!(f, "reply #{} ok: version {} (+{}) pos {:?}", id.0, c.version, c.n_events, c.positions)
                }
                Output::Reply { id, result: Err(e) } => {
                    write!(f, "reply #{} ", id.0)?;
                    error(f, e)
                }
                Output::State { id, result: Ok((version, state)) } => {
                    write!(f, "state #{} version {version} {state}", id.0)
                }
                Output::State { id, result: Err(e) } => {
                    write!(f, "state #{} ", id.0)?;
                    error(f, e)
                }
                Output::Notify(n) => write!(f, "notify {n:?}"),
            }
        }
    }
}
