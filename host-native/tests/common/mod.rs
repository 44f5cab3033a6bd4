//! Shared helpers for the native host's integration tests.
#![allow(dead_code)]

use std::path::Path;

use evfold_core::examples::{Balances, BankAccount, Counter, Transfers};
use evfold_native::{AggregateStore, AggregateStoreBuilder};

/// A builder with every example registered and deterministic time and ids.
pub fn builder(dir: &Path) -> AggregateStoreBuilder {
    AggregateStore::builder(dir)
        .aggregate::<BankAccount>()
        .aggregate::<Counter>()
        .projection::<Balances>()
        .process_manager::<Transfers>()
}

/// Opens with every example registered.
pub async fn open(dir: &Path) -> AggregateStore {
    builder(dir).open().await.expect("store opens")
}

/// The context used by tests.
pub fn ctx() -> evfold_core::CommandContext {
    evfold_core::CommandContext::default().with_actor("test")
}
