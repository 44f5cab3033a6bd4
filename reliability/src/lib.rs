//! # evfold-reliability: real crashes, load and hostile input against the native store
//!
//! - [`kill`]: a parent that runs [`workload`] in a child process (`evfold-killee`), `SIGKILL`s it
//!   at seeded random moments, reopens the store and [`check`]s that every acknowledged command's
//!   event is present exactly once.
//! - [`load`]: concurrent writers × streams for a bounded time with a projection and a
//!   subscription running; throughput, latency percentiles and RSS.
//! - [`check`]: the store-wide invariants both use (acks found once, verify clean, projection
//!   equals rebuild equals a fresh fold, every transfer deposited exactly once).

pub mod ack;
pub mod check;
pub mod error;
pub mod kill;
pub mod load;
pub mod rng;
pub mod stats;
pub mod workload;

pub use ack::Ack;
pub use check::{check_store, CheckReport};
pub use error::ReliabilityError;
pub use kill::{run_kill_test, KillConfig, KillReport};
pub use load::{run_load_test, LoadConfig, LoadReport};
pub use rng::SplitMix64;
