//! A wasm32-wasip1 build of the core's full in-memory scenario (aggregates, group commit,
//! snapshots, a projection, a process manager with a dead letter). `tests/tidy.rs` builds it and
//! checks its WASI imports: had the core read a clock, drawn randomness or opened a file, the
//! module would import `clock_time_get`, `random_get` or `path_open`.
#![allow(unsafe_code)] // `no_mangle` export only

use evfold_core::examples::{Balances, BankAccount, BankCommand, Counter, CounterCommand, Transfers};
use evfold_core::memory::MemoryStore;
use evfold_core::CommandContext;

/// Runs the scenario and returns a hash of its trace (FNV-1a), so none of it is optimised away.
#[no_mangle]
pub extern "C" fn evfold_probe_run() -> u64 {
    let trace = run_scenario();
    trace.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The scenario, as a text trace.
pub fn run_scenario() -> String {
    let mut store = MemoryStore::new();
    store.register::<BankAccount>();
    store.register::<Counter>();
    store.add_projection::<Balances>();
    store.add_process_manager::<Transfers>();
    store.record_trace();
    let ctx = CommandContext::default;
    for id in ["a", "b"] {
        let _ = store.execute::<BankAccount>(id, BankCommand::Open { owner: id.into() }, ctx());
    }
    let _ = store.execute::<BankAccount>("a", BankCommand::Deposit { amount: 90 }, ctx());
    let _ = store.execute::<BankAccount>("a", BankCommand::Withdraw { amount: 900 }, ctx());
    let _ = store.execute::<BankAccount>("a", BankCommand::TransferOut { to: "b".into(), amount: 40 }, ctx());
    let _ = store.execute::<BankAccount>("a", BankCommand::TransferOut { to: "nobody".into(), amount: 1 }, ctx());
    for _ in 0..3 {
        let _ = store.execute::<Counter>("c", CounterCommand::Increment, ctx());
    }
    store.take_trace()
}
