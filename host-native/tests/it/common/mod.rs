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

/// Opens bank account `id` (owner `id`) and deposits `amount` into it when it is not 0.
pub async fn open_account(store: &AggregateStore, id: &str, amount: u64) {
    use evfold_core::examples::BankCommand;
    let account = store.get::<BankAccount>(id).await.unwrap();
    account.execute(BankCommand::Open { owner: id.into() }, ctx()).await.unwrap();
    if amount > 0 {
        account.execute(BankCommand::Deposit { amount }, ctx()).await.unwrap();
    }
}

/// The context used by tests.
pub fn ctx() -> evfold_core::CommandContext {
    evfold_core::CommandContext::default().with_actor("test")
}

/// A projection that checks the store-wide order: every event's `pos` must be exactly one more
/// than the previous one (no gap, no reordering).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PosOrder {
    /// Last pos folded.
    pub last_pos: u64,
    /// Events folded.
    pub count: u64,
    /// Events whose pos was not `last_pos + 1`.
    pub breaks: u64,
    /// Distinct streams seen.
    pub streams: std::collections::BTreeSet<String>,
}

impl evfold_core::Projection for PosOrder {
    const NAME: &'static str = "pos-order";

    fn apply(&mut self, event: &evfold_core::StoredEvent) {
        if event.record.pos != self.last_pos + 1 {
            self.breaks += 1;
        }
        self.last_pos = event.record.pos;
        self.count += 1;
        self.streams.insert(event.stream.to_string());
    }
}
