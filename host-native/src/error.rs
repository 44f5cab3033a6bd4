//! Typed errors of the native host: store-level failures (`StoreError`) and command outcomes
//! (`ExecuteError`, whose domain variant is the aggregate's own error type).

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use evfold_core::{CommandError, ExpectedVersion, Fault, InvalidName, IoError, Rejection};
use serde_json::Value;

/// What can go wrong opening, reading or administering a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or another store in this process) holds the store's `LOCK`.
    #[error("store is locked by another writer: {path} (open it read-only to inspect it)")]
    LockHeld {
        /// The lock file.
        path: PathBuf,
    },
    /// A stream id (type or instance id) was refused; nothing was written.
    #[error("invalid stream id {aggregate_type:?}/{instance_id:?}: {reason}")]
    InvalidStreamId {
        /// The aggregate type given.
        aggregate_type: String,
        /// The instance id given.
        instance_id: String,
        /// Why it was refused.
        reason: InvalidName,
    },
    /// A log (or an append-only side file) holds an invalid complete line: refused, never
    /// skipped. Only that stream is unavailable; every call on it returns this error. The
    /// message says what to run (`evfold verify`, then `evfold repair TYPE ID`).
    #[error("corrupt log {path} at line {line} (byte offset {offset}): {reason}; {}", repair_hint(.path))]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Byte offset of the line.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A read-only read reached a position missing from every log while later ones exist, and
    /// nothing says it is final (it is above the store's settled mark): a live writer may still
    /// be appending it. Reported after waiting, never skipped. A writing open settles it.
    #[error(
        "pos {pos} is missing while later positions exist (next: {next}) and no writer has settled it: \
         a writer is still appending it, or died before writing it and none has opened since; \
         a writing open settles it (any write, or `evfold repair --all`)"
    )]
    PositionPending {
        /// The missing position.
        pos: u64,
        /// The next position present.
        next: u64,
    },
    /// An operating-system IO error on a path. The OS error is part of the message (and not
    /// also a `source()`, so error chains say it once).
    #[error("io error{}: {error}", on_path(.path))]
    Io {
        /// The file or directory (empty for an error converted with `?` from a bare
        /// `std::io::Error`, which names no path).
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A symbolic link inside the store: the store never follows one (it would read or write
    /// outside its root). Remove the link, or move what it points to into the store.
    #[error("{path} is a symbolic link; the store never follows links out of its directory (remove it, or move its target into the store)")]
    Link {
        /// The link.
        path: PathBuf,
    },
    /// A log's fdatasync failed and its unsynced bytes could not be cut back off (durably), so
    /// readers could see lines that may not be on disk: the stream is refused until the store
    /// is reopened (which re-reads and recovers the log).
    #[error("{path}: fdatasync failed and cutting the log back to its last durable length {durable_len} failed too ({reason}); the stream is unavailable until the store is reopened")]
    SyncFailed {
        /// The log.
        path: PathBuf,
        /// Its length after the last successful fdatasync.
        durable_len: u64,
        /// Why the cut failed.
        reason: String,
    },
    /// A JSON file (snapshot, checkpoint, dead letter) does not decode.
    #[error("cannot decode {path}: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// serde's message.
        reason: String,
    },
    /// No aggregate of this type is registered.
    #[error("unknown aggregate type {0:?}")]
    UnknownAggregateType(String),
    /// No projection of this name is registered.
    #[error("unknown projection {0:?}")]
    UnknownProjection(String),
    /// No process manager of this name is registered.
    #[error("unknown process manager {0:?}")]
    UnknownProcessManager(String),
    /// Two projections or process managers share a name (they would share a checkpoint).
    #[error("two readers are named {0:?}")]
    DuplicateReader(String),
    /// A projection or process manager stopped on a fatal error.
    #[error("reader {name} failed: {reason}")]
    ReaderFailed {
        /// Reader name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The store was opened read-only and the call would write.
    #[error("store is open read-only")]
    ReadOnly,
    /// The store was closed.
    #[error("store is closed")]
    Closed,
    /// The thread serving the request stopped before answering (store closing, or domain code
    /// panicked; the panic message is included when known).
    #[error("stopped before answering: {0}")]
    Stopped(String),
    /// Domain code (or a payload conversion) failed.
    #[error("domain code failed: {0}")]
    Fault(Fault),
    /// A state query failed inside the aggregate instance.
    #[error("{0}")]
    Command(CommandError),
    /// An injected event does not decode as one of the aggregate's events.
    #[error("injected event refused: {0}")]
    InvalidEvent(String),
    /// An import was asked to write into a store that already holds events it did not write
    /// (an interrupted import of the same source is resumed instead). Nothing was written.
    #[error(
        "{path} already holds {events} event(s) that are not from this import; \
         import into an empty store, or pass append (`--append`) to add the import to them"
    )]
    TargetNotEmpty {
        /// The target store's root.
        path: PathBuf,
        /// Events in the target that are not events of the source.
        events: u64,
    },
    /// A complete line of an eventfold-es log is not an eventfold event (not UTF-8, not JSON,
    /// a required field missing): the peer's log is corrupt there. Never skipped: the import
    /// refuses the source and writes nothing.
    #[error("malformed eventfold-es log {path} at line {line}: {reason}; fix or remove the line, then import again")]
    PeerLine {
        /// The peer's `app.jsonl`.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// An eventfold-es event the aggregate's evfold code does not fold (an unknown event type,
    /// data of another shape; the peer's reducer skips such events silently). Nothing was written.
    #[error("{path} line {line}: {reason}")]
    PeerEventRefused {
        /// The peer's `app.jsonl`.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What the aggregate's code said.
        reason: String,
    },
    /// An eventfold-es store holds something the importer cannot carry over faithfully (a
    /// rotated archive, a nested stream directory, an instance id evfold refuses). Nothing was
    /// written.
    #[error("cannot import {path}: {reason}")]
    PeerUnsupported {
        /// The file or directory.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// Two events of an import carry the same id (the peer's in-memory dedup lets a relay write
    /// one twice), or an event's id is already stored in another stream of the target. Nothing
    /// of that event was written.
    #[error(
        "event id {id:?} at {path} line {line} is already used by {other}; \
         delete the line's \"id\" to import it under a derived id, or delete the line to drop it"
    )]
    DuplicateEventId {
        /// The id.
        id: String,
        /// The peer log holding the second use.
        path: PathBuf,
        /// Its 1-based line number.
        line: u64,
        /// Where the id was seen first.
        other: String,
    },
    /// The import target runs process managers: they would dispatch again every command the
    /// source's history already holds. Nothing was written.
    #[error(
        "the import target runs process managers ({0}); open it without them for the import \
         (imported history already holds the commands they dispatched)"
    )]
    ImportWithProcessManagers(String),
}

/// ` on PATH`, or nothing for an error that names no path.
fn on_path(path: &std::path::Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!(" on {}", path.display())
    }
}

/// `?` on a bare `std::io::Error` in code that returns [`StoreError`] (as eventfold-es code
/// returning `io::Result` does): an [`StoreError::Io`] that names no path.
impl From<std::io::Error> for StoreError {
    fn from(error: std::io::Error) -> Self {
        StoreError::Io { path: PathBuf::new(), error }
    }
}

/// For code that returns `std::io::Result` (every eventfold-es call did): the error keeps its
/// message, and its kind says what happened where one fits (`NotFound`, `InvalidData` for
/// corruption, `WouldBlock` for a locked store, ...).
impl From<StoreError> for std::io::Error {
    fn from(error: StoreError) -> Self {
        use std::io::ErrorKind;
        let kind = match &error {
            StoreError::Io { error, .. } => error.kind(),
            StoreError::LockHeld { .. } => ErrorKind::WouldBlock,
            StoreError::InvalidStreamId { .. } => ErrorKind::InvalidInput,
            StoreError::Corrupt { .. } | StoreError::Decode { .. } | StoreError::PeerLine { .. } => {
                ErrorKind::InvalidData
            }
            StoreError::Link { .. } => ErrorKind::PermissionDenied,
            StoreError::UnknownAggregateType(_)
            | StoreError::UnknownProjection(_)
            | StoreError::UnknownProcessManager(_) => ErrorKind::NotFound,
            StoreError::ReadOnly => ErrorKind::PermissionDenied,
            StoreError::Closed | StoreError::Stopped(_) => ErrorKind::BrokenPipe,
            _ => ErrorKind::Other,
        };
        std::io::Error::new(kind, error)
    }
}

/// Where a file is corrupt: the fields of [`StoreError::Corrupt`], cloneable, so one stream's
/// actor answers every call on the stream with the same typed error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the line.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

impl From<Corruption> for StoreError {
    fn from(c: Corruption) -> Self {
        StoreError::Corrupt { path: c.path, line: c.line, offset: c.offset, reason: c.reason }
    }
}

/// What to run about a corrupt file: a stream log (`streams/TYPE/ID/events.jsonl`) names its
/// stream for `evfold repair`; other files are repaired by hand.
fn repair_hint(path: &std::path::Path) -> String {
    let names: Vec<&str> = path.iter().rev().take(4).filter_map(|c| c.to_str()).collect();
    match names[..] {
        ["events.jsonl", id, ty, "streams"] => {
            format!(
                "run `evfold verify` to see the damage, then `evfold repair {ty} {id}` (it keeps a backup of the cut)"
            )
        }
        _ => "run `evfold verify` to see the damage; move the bad line out of the file by hand".to_owned(),
    }
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io { path: path.into(), error: source }
    }
}

/// Why a command did not commit. `E` is the aggregate's error type (`A::Error`); JSON-level calls
/// use [`JsonExecuteError`], where every domain refusal is a [`ExecuteError::Rejected`].
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E: std::error::Error + 'static> {
    /// The aggregate refused the command with its typed error. Nothing was written. Displays
    /// as the domain error's own text.
    #[error("{0}")]
    Domain(E),
    /// The aggregate refused the command (plugins and JSON-level calls). Nothing was written.
    /// Displays as the domain's message, as [`ExecuteError::Domain`] does.
    #[error("{0}")]
    Rejected(Rejection),
    /// The stream was not at the expected version. Nothing was written.
    #[error("expected version {expected:?}, stream is at {actual}")]
    WrongExpectedVersion {
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's version.
        actual: u64,
    },
    /// An event exceeds the size limit. Nothing was written.
    #[error("event {event_type} is {bytes} bytes, over the {limit}-byte limit")]
    EventTooLarge {
        /// Offending event type.
        event_type: String,
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The command exceeds the size limit; domain code never saw it. Nothing was written.
    #[error("command {command_type} is {bytes} bytes, over the {limit}-byte limit")]
    CommandTooLarge {
        /// Offending command type.
        command_type: String,
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Domain code failed to run (bad payload, plugin trap). Nothing was written.
    #[error("domain code failed: {0}")]
    Fault(Fault),
    /// Concurrent writers kept winning. Nothing was written.
    #[error("conflict persisted after {attempts} attempts")]
    Conflict {
        /// Attempts made.
        attempts: u32,
    },
    /// The write or fsync failed: the command may or may not be durable. The stream was
    /// dropped and is re-read from disk on next use.
    #[error("storage failed, outcome unknown: {0}")]
    Storage(IoError),
    /// The stream is unavailable (poisoned or corrupt).
    #[error("stream unavailable: {0}")]
    Unavailable(String),
    /// The store refused the call (invalid id, unknown type, closed, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `?` on a bare `std::io::Error` in code that returns [`ExecuteError`].
impl<E: std::error::Error + 'static> From<std::io::Error> for ExecuteError<E> {
    fn from(error: std::io::Error) -> Self {
        ExecuteError::Store(StoreError::from(error))
    }
}

/// [`ExecuteError`] of JSON-level calls: domain refusals are [`ExecuteError::Rejected`].
pub type JsonExecuteError = ExecuteError<std::convert::Infallible>;

impl<E: std::error::Error + Send + Sync + 'static> ExecuteError<E> {
    /// Maps the core's command error, downcasting a typed rejection to `E`.
    pub fn from_command(error: CommandError) -> Self {
        Self::from_command_decoding(error, |_| None)
    }

    /// Maps the core's command error into [`ExecuteError::Domain`] wherever the rejection holds
    /// an `E`: the typed error of native code (downcast), else its error data decoded by
    /// `decode` (a plugin's typed error; the typed handle passes `Aggregate::error_from_data`).
    /// A rejection with neither stays [`ExecuteError::Rejected`].
    pub fn from_command_decoding(error: CommandError, decode: impl FnOnce(&Value) -> Option<E>) -> Self {
        let CommandError::Rejected(rejection) = error else {
            return Self::from_untyped(error);
        };
        let Rejection { message, error, data } = rejection;
        let error = match error.map(|any| any.downcast::<E>()) {
            Some(Ok(typed)) => match Arc::try_unwrap(typed) {
                Ok(typed) => return ExecuteError::Domain(typed),
                Err(shared) => Some(shared as Arc<dyn Any + Send + Sync>),
            },
            Some(Err(other)) => Some(other),
            None => None,
        };
        match data.as_ref().and_then(decode) {
            Some(typed) => ExecuteError::Domain(typed),
            None => ExecuteError::Rejected(Rejection { message, error, data }),
        }
    }
}

impl<E: std::error::Error + 'static> ExecuteError<E> {
    /// Maps the core's command error without downcasting rejections.
    pub fn from_untyped(error: CommandError) -> Self {
        match error {
            CommandError::Rejected(rejection) => ExecuteError::Rejected(rejection),
            CommandError::WrongExpectedVersion { expected, actual } => {
                ExecuteError::WrongExpectedVersion { expected, actual }
            }
            CommandError::EventTooLarge { event_type, bytes, limit } => {
                ExecuteError::EventTooLarge { event_type, bytes, limit }
            }
            CommandError::CommandTooLarge { command_type, bytes, limit } => {
                ExecuteError::CommandTooLarge { command_type, bytes, limit }
            }
            CommandError::Fault(fault) => ExecuteError::Fault(fault),
            CommandError::Conflict { attempts } => ExecuteError::Conflict { attempts },
            CommandError::Storage(e) => ExecuteError::Storage(e),
            CommandError::Unavailable(reason) => ExecuteError::Unavailable(reason),
        }
    }
}
