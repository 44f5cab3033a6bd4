//! Plugin vs native throughput and instantiation time (not a timed test: it prints figures).
//!
//! ```text
//! scripts/build-plugins.sh && cargo bench -p evfold-wasi --bench plugin
//! ```
//! Every figure is the best of several rounds (the machines this runs on are shared and noisy).
//! Targets from the design: plugin fold throughput >= 0.5x native, instantiation <= 50 us.
//!
//! Fold is measured two ways. "payloads" folds events already decoded into payloads (JSON trees
//! in memory): the native side deserializes the typed enum in place, the plugin side writes
//! JSONL, copies it into the sandbox and parses it there, so this isolates the boundary cost.
//! "log" is what loading a stream costs per event: CRC-check and decode each stored line of the
//! stream's JSONL, then fold; both sides pay the same decode.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use evfold_core::examples::{BankAccount, BankEvent};
use evfold_core::{
    decode_line, encode_record, to_payload, AggregateFactory, DecideContext, EventRecord, IdSeed, Metadata, NewEvent,
    Payload, StreamId, Timestamp, TypedAggregateFactory,
};
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

/// The stored JSONL lines of a stream holding `events` (as the native store writes them).
fn log_lines(events: &[Payload]) -> Vec<Vec<u8>> {
    let meta = Metadata { actor: Some("bench".into()), ..Metadata::default() };
    events
        .iter()
        .enumerate()
        .map(|(i, payload)| {
            let new = NewEvent {
                version: 1,
                id: IdSeed(7).event_id(i),
                payload: payload.clone(),
                ts: Timestamp(1_700_000_000_000),
                meta: meta.clone(),
            };
            let mut line = encode_record(&EventRecord::from_new(new, i as u64 + 1, i as u64 + 1));
            line.pop_if(|byte| *byte == b'\n');
            line
        })
        .collect()
}

/// Time to load a stream from its log lines: decode each line (CRC + JSON), then fold in batches.
fn load_time(factory: &dyn AggregateFactory, lines: &[Vec<u8>]) -> Duration {
    best(|| {
        let mut instance = factory.instantiate().unwrap();
        let started = Instant::now();
        for batch in lines.chunks(BATCH) {
            let payloads: Vec<Payload> =
                batch.iter().map(|line| decode_line(line).expect("bench log decodes").into_payload()).collect();
            instance.apply(&payloads).unwrap();
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
    let context = DecideContext::new(StreamId::new(factory.aggregate_type(), "bench").unwrap());
    best(|| {
        let mut instance = factory.instantiate().unwrap();
        instance.apply(&[to_payload(&BankEvent::Opened { owner: "o".into() }).unwrap()]).unwrap();
        let started = Instant::now();
        for i in 0..DECIDES {
            let command = if i % 2 == 0 { &deposit } else { &overdraw };
            black_box(instance.decide(command, &context).unwrap()).ok();
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
    let lines = log_lines(&events);
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
        let (native_load, plugin_load) = (load_time(&native, &lines), load_time(&plugin, &lines));
        let (native_decide, plugin_decide) = (decide_time(&native), decide_time(&plugin));
        let (bare, ready) = instantiate_time(&plugin);

        println!("== bank-account plugin, {label} allocation (best of {ROUNDS} rounds)");
        println!("load (read + compile + metadata): {:.1} ms", load.as_secs_f64() * 1e3);
        println!(
            "fold from payloads ({EVENTS} events, batches of {BATCH}): native {:.3} us/event, plugin {:.3} us/event -> plugin = {:.2}x native throughput",
            per(native_fold, EVENTS),
            per(plugin_fold, EVENTS),
            native_fold.as_secs_f64() / plugin_fold.as_secs_f64()
        );
        println!(
            "fold from log lines ({EVENTS} events, decode + fold): native {:.3} us/event, plugin {:.3} us/event -> plugin = {:.2}x native throughput",
            per(native_load, EVENTS),
            per(plugin_load, EVENTS),
            native_load.as_secs_f64() / plugin_load.as_secs_f64()
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
