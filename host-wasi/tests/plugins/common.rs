//! Shared helpers of the plugin tests: where the built plugins are, a deterministic PRNG, the
//! bank scenario, a decide context for driving instances by hand, and log encoding.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use evfold_core::examples::{BankAccount, BankCommand, InventoryCommand};
use evfold_core::memory::MemoryStore;
use evfold_core::{encode_record, CommandContext, CommandError, Committed, DecideContext, StreamId};
use evfold_wasi::{Limits, PluginEngine};

/// Directory of the example plugins: built by cargo (`evfold-plugin-artifacts`), or
/// `EVFOLD_PLUGIN_DIR` when set.
pub fn plugin_dir() -> PathBuf {
    evfold_plugin_artifacts::plugin_dir()
}

/// Path of a built plugin.
pub fn plugin(name: &str) -> PathBuf {
    evfold_plugin_artifacts::plugin(name)
}

/// One engine with default limits, shared by the tests of a binary (compiles each plugin once).
pub fn engine() -> &'static PluginEngine {
    static ENGINE: OnceLock<PluginEngine> = OnceLock::new();
    ENGINE.get_or_init(|| PluginEngine::new(Limits::default()).expect("engine"))
}

/// A decide context for driving a plugin instance by hand (stream `test/t`, version and `now` 0).
pub fn decide_context() -> DecideContext {
    DecideContext::new(StreamId::new("test", "t").expect("valid"))
}

/// xorshift64*: deterministic test input without a dependency.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// Next value below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// `n` bank commands over `accounts` accounts: opens (some twice), deposits, withdrawals (many
/// overdrawing), transfers, zero amounts, commands to never-opened accounts.
pub fn bank_scenario(seed: u64, n: usize, accounts: usize) -> Vec<(String, BankCommand)> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let account = format!("acc-{}", rng.below(accounts as u64 + 1)); // the last one is never opened
            let amount = rng.below(5) * 50; // 0 sometimes
            let command = match rng.below(10) {
                0 => BankCommand::Open { owner: format!("owner {account} \"q\" ü") },
                1..=4 => BankCommand::Deposit { amount },
                5..=7 => BankCommand::Withdraw { amount: amount * 3 },
                _ => BankCommand::TransferOut { to: format!("acc-{}", rng.below(accounts as u64)), amount },
            };
            let open_first = rng.below(4) == 0 && account != format!("acc-{accounts}");
            let command = if open_first { BankCommand::Open { owner: account.clone() } } else { command };
            (account, command)
        })
        .collect()
}

/// One inventory command: the stream's SKU, the command, its actor.
pub type InventoryStep = (String, InventoryCommand, Option<String>);

/// `n` inventory commands over `skus` SKUs, the eventfold-es scenario: receipts and shipments
/// (many beyond the stock), zero quantities, commands naming another SKU than their stream's,
/// commands without an actor.
pub fn inventory_scenario(seed: u64, n: usize, skus: usize) -> Vec<InventoryStep> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let stream = format!("sku-{}", rng.below(skus as u64));
            let named = if rng.below(12) == 0 { format!("sku-{}", rng.below(skus as u64 + 3)) } else { stream.clone() };
            let quantity = rng.below(6) * 5; // 0 sometimes
            let command = match rng.below(2) {
                0 => InventoryCommand::Receive { sku: named, quantity },
                _ => InventoryCommand::Ship { sku: named, quantity: quantity * 2 },
            };
            let actor = match rng.below(15) {
                0 => None,
                k => Some(format!("clerk-{}", k % 4)),
            };
            (stream, command, actor)
        })
        .collect()
}

/// Runs the scenario through a store, returning every command's outcome.
pub fn run_bank(store: &mut MemoryStore, scenario: &[(String, BankCommand)]) -> Vec<Result<Committed, CommandError>> {
    scenario
        .iter()
        .map(|(account, command)| {
            let context = CommandContext::default().with_actor("conformance");
            store.execute::<BankAccount>(account, command.clone(), context)
        })
        .collect()
}

/// Every stream's log as JSONL bytes (`encode_record` per record), in stream order.
pub fn encoded_logs(store: &MemoryStore) -> Vec<(StreamId, Vec<u8>)> {
    let streams: Vec<StreamId> = store.streams().cloned().collect();
    streams
        .into_iter()
        .map(|stream| {
            let bytes = store.read_stream(&stream).iter().flat_map(encode_record).collect();
            (stream, bytes)
        })
        .collect()
}
