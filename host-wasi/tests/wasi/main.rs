//! WASI plugin tests against the real `wasi-probe` plugin (built for wasm32-wasip2 by cargo,
//! evfold-plugin-artifacts): deny-by-default and deterministic capabilities, grants, guest
//! stdout/stderr captured into `tracing` under the per-call cap, a stderr panic message in the
//! typed trap, the shadow-stack overflow, and the epoch (wall-clock) backstop.

#[path = "../plugins/common.rs"]
mod common;
mod recorder;

use std::time::{Duration, Instant};

use common::{decide_context, engine, plugin};
use evfold_core::Payload;
use evfold_wasi::{EngineOptions, Grants, Limits, PluginAggregate, PluginEngine, PluginError};
use serde_json::{json, Value};

/// Decides one command on a fresh `wasi-probe` instance of `engine`; returns the one event's data.
fn decide(instance: &mut PluginAggregate, command: &str, data: Value) -> Result<Value, PluginError> {
    let events =
        instance.try_decide(&Payload::new(command, data), &decide_context())?.expect("wasi-probe never rejects");
    assert_eq!(events.len(), 1, "{events:?}");
    Ok(events[0].data.clone())
}

fn probe_instance(engine: &PluginEngine) -> PluginAggregate {
    engine.load_aggregate(plugin("wasi-probe")).unwrap().instance().unwrap()
}

fn probe(engine: &PluginEngine) -> Value {
    decide(&mut probe_instance(engine), "Probe", Value::Null).unwrap()
}

#[test]
fn without_grants_clocks_are_fixed_random_is_seeded_and_env_is_empty() {
    let (first, second) = (probe(engine()), probe(engine()));
    assert_eq!(first["wall"], json!([0, 0]), "{first}");
    assert_eq!(first["monotonic"], json!([0, 0]), "{first}");
    assert_eq!(first["std_time_nanos"], json!(0), "{first}");
    assert_eq!(first["env"], json!([]), "{first}");
    assert_eq!(first["random"].as_str().unwrap().len(), 32);
    assert_ne!(first["random"], first["insecure"], "two different seeded generators");
    // Same bytes in every instance (and every engine, every run: the seeds are constants).
    assert_eq!(first, second);
    let other_engine = PluginEngine::new(Limits::default()).unwrap();
    assert_eq!(first, probe(&other_engine));
}

#[test]
fn wasi_plugins_run_under_the_pooling_allocator_too() {
    let options =
        EngineOptions { allocation: evfold_wasi::Allocation::Pooling { max_instances: 8 }, ..EngineOptions::default() };
    let engine = PluginEngine::with_options(options).unwrap();
    let instances: Vec<_> = (0..4).map(|_| probe_instance(&engine)).collect();
    for mut instance in instances {
        assert_eq!(decide(&mut instance, "Probe", Value::Null).unwrap()["wall"], json!([0, 0]));
    }
}

#[test]
fn network_and_files_are_denied_even_with_every_grant() {
    let grants = Grants { wall_clock: true, monotonic_clock: true, random: true, env: vec![] };
    let engine = PluginEngine::new(Limits { grants, ..Limits::default() }).unwrap();
    let reached = decide(&mut probe_instance(&engine), "Reach", Value::Null).unwrap();
    assert_eq!(reached["preopens"], json!(0), "{reached}");
    assert!(
        reached["tcp"].as_str().unwrap().starts_with("create: ErrorCode { code: 1, name: \"access-denied\""),
        "{reached}"
    );
    // wasmtime-wasi answers a disabled name lookup with permanent-resolver-failure, at once.
    assert!(reached["lookup"].as_str().unwrap().contains("permanent-resolver-failure"), "{reached}");
    assert!(reached["files"].as_str().unwrap().contains("No such file or directory"), "{reached}");
}

#[test]
fn granted_clocks_random_and_env_are_real() {
    let grants =
        Grants { wall_clock: true, monotonic_clock: true, random: true, env: vec![("TENANT".into(), "acme".into())] };
    assert!(!grants.is_deterministic());
    let engine = PluginEngine::new(Limits { grants, ..Limits::default() }).unwrap();
    let (first, second) = (probe(&engine), probe(&engine));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let wall = first["wall"][0].as_u64().unwrap();
    assert!(wall.abs_diff(now) < 60, "guest wall clock {wall}, host {now}");
    assert!(first["std_time_nanos"].as_u64().unwrap() > 1_700_000_000 * 1_000_000_000, "{first}");
    let (mono_a, mono_b) = (first["monotonic"][0].as_u64().unwrap(), first["monotonic"][1].as_u64().unwrap());
    assert!(mono_b >= mono_a && mono_b > 0, "{first}");
    assert_eq!(first["env"], json!([["TENANT", "acme"]]));
    assert_ne!(first["random"], second["random"]);
    assert_ne!(first["insecure"], second["insecure"]);
    assert_ne!(first["seed"], second["seed"]);
}

#[test]
fn guest_stdout_and_stderr_lines_reach_tracing() {
    recorder::install();
    let mut instance = probe_instance(engine());
    let printed = decide(&mut instance, "Print", json!({"text": "lines-mark", "lines": 3})).unwrap();
    assert_eq!(printed, json!({"lines": 3, "errors": 0}));
    let events = recorder::events_containing("lines-mark");
    let stdout: Vec<_> = events.iter().filter(|e| e.stream.as_deref() == Some("stdout")).collect();
    let stderr: Vec<_> = events.iter().filter(|e| e.stream.as_deref() == Some("stderr")).collect();
    let texts = |v: &[&recorder::Event]| v.iter().map(|e| e.message.clone()).collect::<Vec<_>>();
    assert_eq!(texts(&stdout), ["lines-mark out 0", "lines-mark out 1", "lines-mark out 2", "lines-mark tail"]);
    assert_eq!(texts(&stderr), ["lines-mark err 0", "lines-mark err 1", "lines-mark err 2"]);
    for event in &events {
        assert_eq!((event.target.as_str(), event.plugin.as_deref()), ("evfold_plugin", Some("wasi-probe")));
        let expected =
            if event.stream.as_deref() == Some("stdout") { tracing::Level::INFO } else { tracing::Level::WARN };
        assert_eq!(event.level, expected, "{event:?}");
    }
}

#[test]
fn output_over_the_cap_is_dropped_and_counted_and_the_guest_still_succeeds() {
    recorder::install();
    let cap = 1000;
    let engine = PluginEngine::new(Limits { log_bytes: cap, ..Limits::default() }).unwrap();
    let mut instance = probe_instance(&engine);
    let lines = 400u32;
    let printed = decide(&mut instance, "Print", json!({"text": "cap-mark", "lines": lines})).unwrap();
    assert_eq!(printed, json!({"lines": lines, "errors": 0}), "dropped output must not fail the guest");
    let written: usize =
        (0..lines).map(|i| format!("cap-mark out {i}\n").len() + format!("cap-mark err {i}\n").len()).sum::<usize>()
            + "cap-mark tail".len();
    let forwarded: usize = recorder::events_containing("cap-mark")
        .iter()
        .filter(|e| e.stream.is_some())
        .map(|e| e.message.len() + 1)
        .sum();
    assert!(forwarded <= cap + 1 && forwarded > cap / 2, "forwarded {forwarded} bytes");
    let dropped = recorder::dropped_reports("wasi-probe");
    assert!(dropped.contains(&(written - cap)), "dropped reports {dropped:?}, expected {}", written - cap);
    // The budget is per call: the next call forwards again.
    decide(&mut instance, "Print", json!({"text": "cap-next", "lines": 1})).unwrap();
    assert_eq!(recorder::events_containing("cap-next").len(), 3);
}

#[test]
fn a_panic_printed_to_stderr_becomes_the_traps_message() {
    let mut instance = probe_instance(engine());
    let error = decide(&mut instance, "Panic", Value::Null).unwrap_err();
    match &error {
        PluginError::Trap { panic: Some(panic), .. } => {
            assert!(panic.starts_with("panicked at"), "{panic}");
            assert!(panic.contains("wasi-probe panics on purpose"), "{panic}");
        }
        other => panic!("expected a trap with the panic message, got {other:?}"),
    }
    assert!(instance.is_discarded());
    instance.try_reset().unwrap();
    assert_eq!(decide(&mut instance, "Probe", Value::Null).unwrap()["wall"], json!([0, 0]));
}

#[test]
fn a_shadow_stack_overflow_is_typed_and_a_plain_out_of_bounds_read_is_not() {
    let mut instance = probe_instance(engine());
    // 4 KiB frames exhaust the 1 MiB shadow stack about 256 calls deep, long before wasmtime's
    // native stack limit: wasmtime sees an out-of-bounds access, not a stack overflow.
    let error = decide(&mut instance, "Recurse", json!({"frame_bytes": 4096})).unwrap_err();
    match &error {
        PluginError::ShadowStackOverflow { frames, .. } => {
            assert!(*frames >= evfold_wasi::SHADOW_RECURSION_FRAMES, "{error}")
        }
        other => panic!("expected ShadowStackOverflow, got {other:?}"),
    }
    assert!(instance.is_discarded());
    instance.try_reset().unwrap();
    let error = decide(&mut instance, "WildRead", Value::Null).unwrap_err();
    assert!(
        matches!(&error, PluginError::Trap { trap, .. } if trap.contains("out of bounds memory access")),
        "{error:?}"
    );
}

/// Waits (up to 2 s: a new thread names itself after it starts) until `n` threads are named
/// like the engine's epoch ticker; returns the last count seen.
fn ticker_threads(n: usize) -> usize {
    let started = Instant::now();
    loop {
        let count = count_ticker_threads();
        if count == n || started.elapsed() > Duration::from_secs(2) {
            return count;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn count_ticker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.trim() == "evfold-epoch")
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn the_wall_clock_backstop_stops_an_endless_loop_that_fuel_would_not() {
    let limit = Duration::from_millis(300);
    let limits = Limits { fuel: u64::MAX / 4, wall_clock_limit: Some(limit), ..Limits::default() };
    let engine = PluginEngine::with_options(EngineOptions { limits, ..EngineOptions::default() }).unwrap();
    assert_eq!(ticker_threads(1), 1);
    let mut hostile = engine.load_aggregate(plugin("hostile")).unwrap().instance().unwrap();
    let mut healthy = engine.load_aggregate(plugin("bank-account")).unwrap().instance().unwrap();
    for _ in 0..2 {
        let started = Instant::now();
        let error = hostile.try_decide(&Payload::new("Loop", Value::Null), &decide_context()).unwrap_err();
        let took = started.elapsed();
        assert!(matches!(&error, PluginError::WallClockTimeout { limit: l, .. } if *l == limit), "{error:?}");
        assert!(error.to_string().contains("not deterministic"), "{error}");
        assert!(took >= limit && took < limit * 4, "took {took:?}");
        eprintln!("wall-clock timeout after {took:?} (limit {limit:?})");
        // The engine and other instances keep serving; the trapped one is rebuilt.
        let open = Payload::new("Open", json!({"owner": "o"}));
        assert_eq!(healthy.try_decide(&open, &decide_context()).unwrap().unwrap().len(), 1);
        hostile.try_reset().unwrap();
        assert_eq!(
            hostile.try_decide(&Payload::new("Increment", Value::Null), &decide_context()).unwrap().unwrap().len(),
            1
        );
    }
    // No engine without a limit runs a ticker; the last owner's drop stops this one.
    drop((hostile, healthy, engine));
    assert_eq!(ticker_threads(0), 0);
}
