//! Projections and process managers that declare the aggregate types they subscribe to (as
//! eventfold-es's `subscriptions()`) see only those streams' events; the default sees all.

use serde::{Deserialize, Serialize};

use crate::examples::{BankAccount, BankCommand, Counter, CounterCommand};
use crate::memory::MemoryStore;
use crate::{CommandContext, CommandEnvelope, ProcessManager, Projection, StoredEvent};

/// Counts the events it is given, per aggregate type.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SeenTypes {
    types: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CountersOnly(SeenTypes);

impl Projection for CountersOnly {
    const NAME: &'static str = "counters-only";
    fn subscriptions(&self) -> &'static [&'static str] {
        &["counter"]
    }
    fn apply(&mut self, event: &StoredEvent) {
        self.0.types.push(event.stream.aggregate_type().to_owned());
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Everything(SeenTypes);

impl Projection for Everything {
    const NAME: &'static str = "everything";
    fn apply(&mut self, event: &StoredEvent) {
        self.0.types.push(event.stream.aggregate_type().to_owned());
    }
}

/// Reacts to every event it sees with a counter increment on `echo`; subscribed to bank
/// accounts only, so its own counter events never reach it (no feedback loop).
#[derive(Debug, Default, Serialize, Deserialize)]
struct EchoBank {
    seen: Vec<String>,
}

impl ProcessManager for EchoBank {
    const NAME: &'static str = "echo-bank";
    fn subscriptions(&self) -> &'static [&'static str] {
        &["bank-account"]
    }
    fn react(&mut self, event: &StoredEvent) -> Vec<CommandEnvelope> {
        self.seen.push(event.stream.aggregate_type().to_owned());
        vec![CommandEnvelope::to::<Counter>("echo", &CounterCommand::Increment, CommandContext::default()).unwrap()]
    }
}

#[test]
fn eventfold_es_subscriptions_limit_what_a_projection_folds() {
    let mut store = MemoryStore::new();
    store.register::<Counter>();
    store.register::<BankAccount>();
    store.add_projection::<CountersOnly>();
    store.add_projection::<Everything>();
    store.execute::<Counter>("c1", CounterCommand::Increment, CommandContext::default()).unwrap();
    store.execute::<BankAccount>("a1", BankCommand::Open { owner: "ada".into() }, CommandContext::default()).unwrap();
    store.execute::<Counter>("c1", CounterCommand::Increment, CommandContext::default()).unwrap();
    assert_eq!(store.projection::<CountersOnly>().unwrap().0.types, ["counter", "counter"]);
    assert_eq!(store.projection::<Everything>().unwrap().0.types, ["counter", "bank-account", "counter"]);
}

#[test]
fn eventfold_es_subscriptions_limit_what_a_process_manager_reacts_to() {
    let mut store = MemoryStore::new();
    store.register::<Counter>();
    store.register::<BankAccount>();
    store.add_process_manager::<EchoBank>();
    store.execute::<BankAccount>("a1", BankCommand::Open { owner: "ada".into() }, CommandContext::default()).unwrap();
    store.execute::<BankAccount>("a1", BankCommand::Deposit { amount: 5 }, CommandContext::default()).unwrap();
    store.execute::<Counter>("c1", CounterCommand::Increment, CommandContext::default()).unwrap();
    // Two bank events -> two increments of `echo`; the counter events (c1's and echo's own) are
    // not reacted to, so `echo` stops at 2 instead of looping.
    assert_eq!(store.state::<Counter>("echo").unwrap().value, 2);
}
