//! # evfold-postgres: the scale-out driver
//!
//! Runs the very same core machines ([`evfold_core::AggregateMachine`],
//! [`evfold_core::ProjectionMachine`], [`evfold_core::ProcessManagerMachine`]) and the very same
//! domain code (typed aggregates, or any `Arc<dyn AggregateFactory>` such as a WASM plugin)
//! against PostgreSQL, so several app servers can share one store. Switching from another driver
//! is a constructor change.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use evfold_core::examples::{BankAccount, BankCommand, Balances, Transfers};
//! use evfold_core::CommandContext;
//! use evfold_postgres::PgStore;
//!
//! let store = PgStore::builder("host=127.0.0.1 port=5432 user=app dbname=app")
//!     .aggregate::<BankAccount>()
//!     .projection::<Balances>()
//!     .process_manager::<Transfers>()
//!     .connect()
//!     .await?;
//! store.execute::<BankAccount>("acc-1", BankCommand::Open { owner: "ada".into() }, CommandContext::default()).await?;
//! store.catch_up().await?;
//! let balances: Balances = store.projection::<Balances>().await?;
//! # let _ = balances; Ok(()) }
//! ```
//!
//! ## How the IO maps to SQL (schema: `migrations/`, applied on connect)
//! - `Append`: `evfold.append()` takes a per-stream advisory lock, compares the stream's head
//!   row with the expected version (mismatch: `IoErrorKind::Conflict`, the core re-decides) and
//!   inserts every event in the same transaction. `(stream, seq)` is the primary key and
//!   `event_id` is unique, so a duplicate can never be stored.
//! - `ReadAll`: events ordered by `(tx_id xid8, global_seq)`, read only below
//!   `pg_snapshot_xmin(pg_current_snapshot())`: a transaction that commits late delays readers but
//!   is never skipped. The checkpoint position is the token `[tx_id, global_seq]`.
//! - Live tail: a coalesced `NOTIFY evfold_events` after each commit (never inside the append
//!   transaction), a `LISTEN` connection per store, and polling as the fallback.
//! - `Sync` is a no-op: a committed transaction is already durable.

mod aggregate;
mod error;
mod reader;
mod schema;
mod shared;
mod sql;
mod store;
mod tail;
pub mod testing;

pub use error::StoreError;
pub use schema::latest_version as schema_version;
pub use shared::Stats;
pub use sql::{decode_position, encode_position};
pub use store::{PgStore, PgStoreBuilder};
pub use tail::CHANNEL as NOTIFY_CHANNEL;
