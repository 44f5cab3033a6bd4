//! Importers of other event stores' data into an evfold store.
//!
//! - `eventfold_es.rs` ([`eventfold_es`]): the public API: [`eventfold_es::import`], its
//!   options, progress and report, and the checks made before anything is written.
//! - `peer.rs`: reading an eventfold-es 0.2 store's files exactly as the peer crate reads
//!   them, turning its lines into evfold events (ids kept or derived, metadata mapped) and the
//!   deterministic cross-stream order of the import.
//!
//! A program can migrate at start-up, then run on the imported store:
//!
//! ```
//! use evfold_core::examples::BankAccount;
//! use evfold_native::import::eventfold_es::{self, ImportOptions};
//! use evfold_native::AggregateStore;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let peer_dir = tempfile::tempdir()?;
//! # let log = peer_dir.path().join("streams/bank-account/acc-1");
//! # std::fs::create_dir_all(&log)?;
//! # std::fs::write(log.join("app.jsonl"), concat!(
//! #     r#"{"type":"Opened","data":{"owner":"ada"},"ts":1795391254,"id":"f344a4ed-5cb4-45c8-84e0-a6f119a1b564"}"#, "\n",
//! #     r#"{"type":"Deposited","data":{"amount":100},"ts":1795391255}"#, "\n",
//! # ))?;
//! let dir = tempfile::tempdir()?;
//! let store = AggregateStore::builder(dir.path()).aggregate::<BankAccount>().open().await?;
//! let report = eventfold_es::import(peer_dir.path(), &store, ImportOptions::default()).await?;
//! assert_eq!((report.imported, report.derived_ids), (2, 1));
//!
//! let account = store.get::<BankAccount>("acc-1").await?;
//! assert_eq!(account.state().await?.balance, 100);
//! # Ok(())
//! # }
//! ```

pub mod eventfold_es;
mod peer;

/// The migration guide (`docs/migrating.md`): its Rust examples run as doctests, so the guide
/// cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/migrating.md")]
struct MigratingGuideDoctests;
