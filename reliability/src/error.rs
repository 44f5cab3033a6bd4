//! Errors of the reliability harness: store failures, child-process failures and broken
//! invariants (each names what was expected and what was found).

use evfold_native::StoreError;

/// Why a reliability run failed.
#[derive(Debug, thiserror::Error)]
pub enum ReliabilityError {
    /// The store refused an operation.
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// Spawning, reading or waiting for the child failed.
    #[error("child process: {0}")]
    Child(String),
    /// A durability or consistency invariant does not hold.
    #[error("invariant broken: {0}")]
    Invariant(String),
    /// A filesystem operation of the harness itself failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}
