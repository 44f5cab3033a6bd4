//! Plugin vs native throughput and instantiation time (not a timed test: it prints figures).
//!
//! ```text
//! scripts/build-plugins.sh && cargo bench -p evfold-wasi --bench plugin
//! ```
//! Every figure is the best of several rounds (the machines this runs on are shared and noisy).
//! Targets from the design: plugin fold throughput >= 0.5x native, instantiation <= 50 us.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use evfold_core::examples::{BankAccount, BankEvent};
use evfold_core::{to_payload, AggregateFactory, Payload, TypedAggregateFactory};
use evfold_wasi::{Allocation, EngineOptions, Limits, PluginAggregateFactory, PluginEngine};
use serde_json::json;

const ROUNDS: usize = 9;
const EVENTS: usize = 20_000;
const BATCH: usize = 100;
const DECIDES: usize = 20_000;
const INSTANCES: usize = 500;

fn plugin_path() -> PathBuf {
    let dir = std::env::var_os("EVFOLD_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"));
    let path = dir.join("bank-account.wasm");
    assert!(path.exists(), "{} is missing: run scripts/build-plugins.sh first", path.display());
    path
}

/// Best (smallest) duration of `ROUNDS` runs of `f`.
fn best(mut f: impl FnMut() -> Duration) -> Duration {
    (0..ROUNDS).map(|_| f()).min().unwrap_or_default()
}

fn events() -> Vec<Payload> {
    let mut events = vec![to_payload(&BankEvent::Opened { owner: "bench owner".into() }).unwrap()];
    for i in 1..EVENTS as u64 {
        let event = match i % 3 {
            0 => BankEvent::Withdrew { amount: 1 },
            1 => BankEvent::Deposited { amount: 100 + i % 7 },
            _ => BankEvent::TransferredOut { to: format!("acc-{}", i % 50), amount: 2 },
        };
        events.push(to_payload(&event).unwrap());
    }
    events
}

/// Time to fold `events` in batches into fresh instances of `factory`.
fn fold_time(factory: &dyn AggregateFactory, events: &[Payload]) -> Duration {
    best(|| {
        let mut instance = factory.instantiate().unwrap();
        let started = Instant::now();
        for batch in events.chunks(BATCH) {
            instance.apply(batch).unwrap();
        }
        let took = started.elapsed();
        black_box(instance.snapshot().unwrap());
        took
    })
}

/// Time to decide `DECIDES` commands (half accepted, half rejected) on an open account.
fn decide_time(factory: &dyn AggregateFactory) -> Duration {
    let deposit = Payload::new("Deposit", json!({"amount": 25}));
    let overdraw = Payload::new("Withdraw", json!({"amount": 1_000_000_000}));
    best(|| {
        let mut instance = factory.instantiate().unwrap();
        instance.apply(&[to_payload(&BankEvent::Opened { owner: "o".into() }).unwrap()]).unwrap();
        let started = Instant::now();
        for i in 0..DECIDES {
            let command = if i % 2 == 0 { &deposit } else { &overdraw };
            black_box(instance.decide(command).unwrap()).ok();
        }
        started.elapsed()
    })
}

/// Time per ready instance: `bare` = store + instantiate; `ready` = + the first call returned.
fn instantiate_time(factory: &PluginAggregateFactory) -> (Duration, Duration) {
    let bare = best(|| {
        let started = Instant::now();
        for _ in 0..INSTANCES {
            black_box(factory.instance().unwrap());
        }
        started.elapsed()
    });
    let ready = best(|| {
        let started = Instant::now();
        for _ in 0..INSTANCES {
            let mut instance = factory.instance().unwrap();
            black_box(instance.try_snapshot().unwrap());
        }
        started.elapsed()
    });
    (bare / INSTANCES as u32, ready / INSTANCES as u32)
}

fn per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let path = plugin_path();
    let events = events();
    let native = TypedAggregateFactory::<BankAccount>::default();

    for (label, allocation) in
        [("on-demand", Allocation::OnDemand), ("pooling", Allocation::Pooling { max_instances: 1_000 })]
    {
        let engine =
            PluginEngine::with_options(EngineOptions { limits: Limits::default(), allocation, ..Default::default() })
                .expect("engine");
        let started = Instant::now();
        let plugin = engine.load_aggregate(&path).expect("load");
        let load = started.elapsed();

        let (native_fold, plugin_fold) = (fold_time(&native, &events), fold_time(&plugin, &events));
        let (native_decide, plugin_decide) = (decide_time(&native), decide_time(&plugin));
        let (bare, ready) = instantiate_time(&plugin);

        println!("== bank-account plugin, {label} allocation (best of {ROUNDS} rounds)");
        println!("load (read + compile + metadata): {:.1} ms", load.as_secs_f64() * 1e3);
        println!(
            "fold   ({EVENTS} events, batches of {BATCH}): native {:.3} us/event, plugin {:.3} us/event -> plugin = {:.2}x native throughput",
            per(native_fold, EVENTS),
            per(plugin_fold, EVENTS),
            native_fold.as_secs_f64() / plugin_fold.as_secs_f64()
        );
        println!(
            "decide ({DECIDES} commands, half rejected):  native {:.3} us/command, plugin {:.3} us/command -> plugin = {:.2}x native throughput",
            per(native_decide, DECIDES),
            per(plugin_decide, DECIDES),
            native_decide.as_secs_f64() / plugin_decide.as_secs_f64()
        );
        println!(
            "instantiation: {:.1} us bare (store + instance), {:.1} us until the first call returned",
            bare.as_secs_f64() * 1e6,
            ready.as_secs_f64() * 1e6
        );
    }
}
