//! # evfold-native: a durable event store on flocked JSONL files
//!
//! The native host runs the core's sans-IO machines ([`evfold_core::AggregateMachine`],
//! [`evfold_core::ProjectionMachine`], [`evfold_core::ProcessManagerMachine`]) against real
//! files: it fulfils their `Io` requests and feeds back the results. No domain, ordering or retry
//! logic lives here.
//!
//! - One OS thread per live aggregate instance owns its log handle; concurrent commands share
//!   one write + one `fdatasync` (group commit). Idle actors are evicted and respawned
//!   transparently; no command is lost or failed around the timeout.
//! - By default `execute` returns only after `fdatasync` ([`Durability::Sync`]);
//!   [`Durability::Buffered`] is the explicit faster mode.
//! - Every event gets a store-wide `pos`; projections, process managers, [`AggregateStore::read_all`]
//!   and [`AggregateStore::subscribe`] follow that order through an index and never see a
//!   position before every earlier one is durable.
//! - On open, a torn last line is quarantined (`events.jsonl.torn-<offset>`) and truncated; a
//!   corrupt last line is refused with [`StoreError::Corrupt`] (file, line, offset), and so is a
//!   corrupt earlier line when its log is first read. [`verify_store`] checks every line, and
//!   [`repair_stream`] makes a repair explicit.
//!
//! Layout: see [`StoreLayout`].
//!
//! ## Guarantees and limits
//! - An `Ok` from `execute` means the command's events were `fdatasync`ed (default mode). A
//!   [`ExecuteError::Storage`] means "outcome unknown": the stream is dropped and re-read from
//!   disk, and whatever the re-read finds is the truth (the failed batch's lines may be there).
//! - Commands queued behind a failed batch get [`ExecuteError::Unavailable`] with the cause; they
//!   were never written.
//! - Idle eviction and respawn are invisible to callers: a send to a retired actor comes back
//!   and is re-routed, so no command is lost or failed around the timeout.
//! - Process-manager dispatch is at-least-once with stable event ids derived from the dispatch
//!   id: a re-dispatch after a crash is recognised and acknowledged without running again.
//! - `inject_event` dedups against every event id on disk (executed or injected), across restarts.
//! - Opening reads only the last line of every log. The position index and the id set (~30
//!   bytes per event in memory) are rebuilt by one CRC scan of every log (no JSON decoding) the
//!   first time an append, a dispatch, a reader or `read_all` needs them.
//! - Projection checkpoints are coalesced (see [`coalesced_reader_config`]) and written without
//!   fsync except at close: a crash costs a refold from an older checkpoint, never a wrong state.
//!   Process-manager checkpoints stay durable after every batch.
//! - Known limit: per-line CRCs cannot tell that a power cut kept only some whole lines of an
//!   unacknowledged multi-event command; fixing that needs a batch marker in the core format.
//!
//! ```
//! use evfold_core::examples::{BankAccount, BankCommand, BankError, Balances};
//! use evfold_core::CommandContext;
//! use evfold_native::{AggregateStore, ExecuteError};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = AggregateStore::builder(dir.path())
//!     .aggregate::<BankAccount>()
//!     .projection::<Balances>()
//!     .open()
//!     .await?;
//!
//! let account = store.get::<BankAccount>("acc-1").await?;
//! let ctx = CommandContext::default().with_actor("ada");
//! account.execute(BankCommand::Open { owner: "ada".into() }, ctx.clone()).await?;
//! let committed = account.execute(BankCommand::Deposit { amount: 100 }, ctx.clone()).await?;
//! assert_eq!(committed.version, 2); // durable: fdatasync'd before this returned
//!
//! // Domain refusals come back as the aggregate's own error type.
//! let refused = account.execute(BankCommand::Withdraw { amount: 500 }, ctx).await;
//! assert!(matches!(refused, Err(ExecuteError::Domain(BankError::InsufficientFunds { .. }))));
//!
//! assert_eq!(account.state().await?.balance, 100);
//! assert_eq!(store.projection::<Balances>().await?.total, 100);
//! assert_eq!(store.read_all(1).await?.len(), 2); // store-wide order
//! store.close().await;
//!
//! // Reopen: state and positions come back from the logs.
//! let store = AggregateStore::open(dir.path()).await?;
//! assert_eq!(store.get::<BankAccount>("acc-1").await?.state().await?.balance, 100);
//! # Ok(())
//! # }
//! ```

mod actor;
mod bus;
mod config;
mod contained;
mod error;
mod fsio;
pub mod import;
mod index_read;
mod layout;
mod ledger;
mod log;
mod mailbox;
mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
mod readers;
mod repair;
mod settled;
mod sidefile;
mod store;
mod subscribe;
pub mod verify;

pub use actor::InjectOutcome;
pub use actor::InjectRunOutcome;
pub use bus::{BusError, CommandBus};
pub use config::{
    coalesced_reader_config, counting_id_seeds, random_id_seeds, system_clock, Clock, Durability, Faults, IdSeedSource,
    ManualClock, StoreConfig, StoreStats,
};
pub use error::{Corruption, ExecuteError, JsonExecuteError, StoreError};
pub use layout::{StoreLayout, CHECKPOINT_FILE, DEAD_LETTERS_FILE, EVENTS_FILE, SNAPSHOT_FILE};
pub use metrics::{Latency, ReaderLag, StoreMetrics};
pub use readers::{ManagerReport, ProcessManagerReport, ReaderKind, RedeliveryReport};
pub use repair::settle_positions;
pub use settled::SETTLED_FILE;
pub use store::{AggregateHandle, AggregateStore, AggregateStoreBuilder, Executed, StreamPage};
pub use subscribe::Subscription;
pub use verify::{
    repair_stream, repair_stream_with, verify_store, RepairOptions, RepairReport, StreamReport, StreamStatus,
    VerifyReport,
};

/// The README's Rust examples, compiled and run as doctests so the README cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
