//! The crate's typed errors: what connecting, migrating and the direct store calls can fail with.

use evfold_core::{CommandError, ExpectedVersion, Fault, InvalidName};

/// Why a [`crate::PgStore`] call failed (commands fail with the core's [`CommandError`] instead).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The connection string did not parse.
    #[error("bad connection string: {0}")]
    Config(#[source] tokio_postgres::Error),
    /// No connection could be taken from the pool.
    #[error("no database connection: {0}")]
    Pool(String),
    /// PostgreSQL answered with an error.
    #[error("database error: {}", crate::sql::describe(.0))]
    Db(#[from] tokio_postgres::Error),
    /// A schema migration failed.
    #[error("migration {version} ({name}) failed: {}", crate::sql::describe(.source))]
    Migration {
        /// Migration number.
        version: i32,
        /// Migration file name.
        name: &'static str,
        /// The database's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The database holds a newer schema than this crate knows.
    #[error("database schema is at version {found}, this build knows up to {known}; upgrade evfold-postgres")]
    SchemaTooNew {
        /// Highest applied migration.
        found: i32,
        /// Highest migration in this build.
        known: i32,
    },
    /// The stream was not at the version the caller expected; nothing was written.
    #[error("expected version {expected:?}, stream is at {actual}")]
    WrongExpectedVersion {
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's version.
        actual: u64,
    },
    /// An event with one of these ids is already stored; nothing was written.
    #[error("duplicate event id: {0}")]
    DuplicateEventId(String),
    /// An appended event's data exceeds the store's limit
    /// ([`evfold_core::AggregateConfig::max_event_bytes`]); nothing was written. The same limit
    /// and message as [`CommandError::EventTooLarge`] for events decided by a command.
    #[error("event {event_type} is {bytes} bytes, over the {limit}-byte limit")]
    EventTooLarge {
        /// Offending event type.
        event_type: String,
        /// Its serialized data size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A storage request failed (connection lost, query failed, bad stored data).
    #[error("storage: {0}")]
    Io(#[from] evfold_core::IoError),
    /// A stored row did not decode (bad JSON, bad stream name, bad position token).
    #[error("stored data does not decode: {0}")]
    Decode(String),
    /// A stream id was refused.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// A registered projection, process manager or aggregate is unknown, or domain code failed.
    #[error("{0}")]
    Fault(Fault),
    /// A command failed (returned by helpers that execute commands).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The store's background task is gone (the store was shut down).
    #[error("store is shut down")]
    ShutDown,
}

impl From<Fault> for StoreError {
    fn from(fault: Fault) -> Self {
        StoreError::Fault(fault)
    }
}
