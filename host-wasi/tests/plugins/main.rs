//! Plugin host tests against the real plugins (built by cargo: evfold-plugin-artifacts): native vs
//! plugin conformance through the core's in-memory store, every hostile behaviour mapped to its
//! typed error within bounded time and memory while healthy aggregates keep serving, ABI and
//! kind checks, the compiled-plugin cache.

mod common;
mod native_store;

use std::time::{Duration, Instant};

use common::{bank_scenario, decide_context, encoded_logs, engine, plugin, run_bank};
use evfold_core::examples::{Balances, BankAccount, Counter, CounterCommand};
use evfold_core::memory::MemoryStore;
use evfold_core::{CommandContext, CommandEnvelope, CommandError, DynAggregate, ExpectedVersion, Payload, StreamId};
use evfold_wasi::{plugin_error, EngineOptions, Limits, PluginEngine, PluginError, PluginKind};
use serde_json::{json, Value};

/// The longest any single hostile call may take (fuel stops loops in milliseconds).
const BOUNDED: Duration = Duration::from_secs(10);

fn bank_store(plugin_build: bool) -> MemoryStore {
    let mut store = MemoryStore::new();
    if plugin_build {
        store.register_factory(Box::new(engine().load_aggregate(plugin("bank-account")).unwrap()));
        store.add_dyn_projection(Box::new(engine().load_projection(plugin("balances")).unwrap()));
    } else {
        store.register::<BankAccount>();
        store.add_projection::<Balances>();
    }
    store
}

#[test]
fn bank_plugin_writes_byte_identical_logs_and_projection() {
    let scenario = bank_scenario(7, 400, 6);
    let (mut native, mut plugin) = (bank_store(false), bank_store(true));
    let native_results = run_bank(&mut native, &scenario);
    let plugin_results = run_bank(&mut plugin, &scenario);
    assert_eq!(native_results, plugin_results);
    let rejected = native_results.iter().filter(|r| matches!(r, Err(CommandError::Rejected(_)))).count();
    let committed = native_results.iter().filter(|r| r.is_ok()).count();
    assert!(rejected >= 50 && committed >= 150, "scenario too one-sided: {rejected} rejected, {committed} committed");

    let (native_logs, plugin_logs) = (encoded_logs(&native), encoded_logs(&plugin));
    assert!(native_logs.len() >= 6);
    assert_eq!(native_logs.len(), plugin_logs.len());
    for ((stream, native_bytes), (plugin_stream, plugin_bytes)) in native_logs.iter().zip(&plugin_logs) {
        assert_eq!(stream, plugin_stream);
        assert!(native_bytes == plugin_bytes, "{stream}: logs differ");
    }

    let native_balances = native.projection::<Balances>().unwrap();
    assert_eq!(native_balances, plugin.projection::<Balances>().unwrap());
    assert!(native_balances.total > 0);
    for stream in native.streams().cloned().collect::<Vec<_>>() {
        assert_eq!(native.state_json(&stream).unwrap(), plugin.state_json(&stream).unwrap());
    }
}

#[test]
fn plugin_metadata_lists_the_typed_enums() {
    let info = engine().info(plugin("bank-account")).unwrap();
    assert_eq!(info.kind, PluginKind::Aggregate);
    assert_eq!(
        (info.name.as_str(), info.plugin_version.as_str(), info.abi_version.as_str()),
        ("bank-account", "0.1.0", "0.3.0")
    );
    assert_eq!(info.aggregate_type.as_deref(), Some("bank-account"));
    assert_eq!(info.event_types, ["Opened", "Deposited", "Withdrew", "TransferredOut"]);
    assert_eq!(info.command_types, ["Open", "Deposit", "Withdraw", "TransferOut"]);
    assert_eq!(info.sha256.len(), 64);
    let balances = evfold_wasi::plugin_info(plugin("balances")).unwrap();
    assert_eq!((balances.kind, balances.projection_name.as_deref()), (PluginKind::Projection, Some("balances")));
}

#[test]
fn projection_plugin_answers_queries_by_json_pointer() {
    let mut store = bank_store(false);
    run_bank(&mut store, &bank_scenario(3, 200, 3));
    let mut projection = engine().load_projection(plugin("balances")).unwrap();
    projection.try_apply(store.read_all()).unwrap();
    let native = store.projection::<Balances>().unwrap();
    assert_eq!(projection.query("/total").unwrap(), json!(native.total));
    assert_eq!(projection.query("/accounts/acc-1").unwrap(), json!(native.accounts["acc-1"]));
    assert_eq!(projection.query("/accounts/nobody").unwrap(), Value::Null);
    assert_eq!(projection.query("").unwrap(), serde_json::to_value(&native).unwrap());
}

#[test]
fn counter_plugin_matches_native_counter() {
    let mut native = MemoryStore::new();
    native.register::<Counter>();
    let mut plugin_store = MemoryStore::new();
    plugin_store.register_factory(Box::new(engine().load_aggregate(plugin("counter")).unwrap()));
    let commands =
        [CounterCommand::Increment, CounterCommand::Decrement, CounterCommand::Decrement, CounterCommand::Reset];
    for (i, command) in commands.iter().cycle().take(40).enumerate() {
        let id = format!("c{}", i % 3);
        let a = native.execute::<Counter>(&id, command.clone(), CommandContext::default());
        let b = plugin_store.execute::<Counter>(&id, command.clone(), CommandContext::default());
        assert_eq!(a, b);
    }
    assert_eq!(encoded_logs(&native), encoded_logs(&plugin_store));
}

fn hostile(
    store: &mut MemoryStore,
    id: &str,
    command: &str,
) -> (Result<evfold_core::Committed, CommandError>, Duration) {
    let envelope = CommandEnvelope {
        target: StreamId::new("hostile", id).unwrap(),
        command: Payload::new(command, Value::Null),
        context: CommandContext::default(),
    };
    let started = Instant::now();
    let result = store.execute_envelope(&envelope, ExpectedVersion::Any);
    (result, started.elapsed())
}

/// Whether an error is the one a hostile command must produce.
type Expectation = fn(&PluginError) -> bool;

#[test]
fn hostile_plugin_errors_are_typed_bounded_and_healthy_aggregates_keep_serving() {
    let mut store = MemoryStore::new();
    store.register_factory(Box::new(engine().load_aggregate(plugin("hostile")).unwrap()));
    store.register_factory(Box::new(engine().load_aggregate(plugin("bank-account")).unwrap()));
    store.register::<Counter>();
    let ctx = CommandContext::default;
    store
        .execute::<BankAccount>("healthy", evfold_core::examples::BankCommand::Open { owner: "h".into() }, ctx())
        .unwrap();
    hostile(&mut store, "h1", "Increment").0.unwrap();

    let cases: [(&str, Expectation); 9] = [
        ("Loop", |e| matches!(e, PluginError::OutOfFuel { .. })),
        ("Bomb", |e| matches!(e, PluginError::MemoryLimit { .. })),
        ("Recurse", |e| matches!(e, PluginError::StackOverflow { .. })),
        (
            "Panic",
            |e| matches!(e, PluginError::Trap { panic: Some(p), .. } if p.contains("hostile plugin panics on purpose")),
        ),
        ("Huge", |e| matches!(e, PluginError::OutputTooLarge { size, .. } if *size > 20 << 20)),
        ("BadJson", |e| matches!(e, PluginError::BadOutput { reason, .. } if reason.contains("invalid JSON"))),
        ("Deep", |e| matches!(e, PluginError::BadOutput { reason, .. } if reason.contains("deeper"))),
        (
            "BadErrorData",
            |e| matches!(e, PluginError::BadOutput { reason, .. } if reason.starts_with("rejection error data")),
        ),
        (
            "Undeclared",
            |e| matches!(e, PluginError::UndeclaredEventType { event_type, .. } if event_type == "Surprise"),
        ),
    ];
    let mut deposits = 0;
    for (command, is_expected) in cases {
        let (result, took) = hostile(&mut store, "h1", command);
        let Err(CommandError::Fault(fault)) = &result else { panic!("{command}: expected a fault, got {result:?}") };
        let error = plugin_error(fault).unwrap_or_else(|| panic!("{command}: not a PluginError: {fault}"));
        assert!(is_expected(error), "{command}: unexpected error {error:?}");
        assert_eq!(error.plugin(), Some("hostile"), "{command}: {error}");
        assert!(error.to_string().contains(&format!("decide({command})")), "{command}: {error}");
        assert!(took < BOUNDED, "{command} took {took:?}");
        // Everything else keeps serving, and so does the hostile stream itself (rebuilt).
        store
            .execute::<BankAccount>("healthy", evfold_core::examples::BankCommand::Deposit { amount: 1 }, ctx())
            .unwrap();
        store.execute::<Counter>("native", CounterCommand::Increment, ctx()).unwrap();
        hostile(&mut store, "h1", "Increment").0.unwrap();
        deposits += 1;
    }
    assert_eq!(store.state::<BankAccount>("healthy").unwrap().balance, deposits);
    let (version, state) = store.state_json(&StreamId::new("hostile", "h1").unwrap()).unwrap();
    assert_eq!((version, state), (10, json!({"value": 10})));
    assert!(peak_rss_bytes() < 1 << 30, "peak RSS {} bytes", peak_rss_bytes());
}

/// Peak resident set size of this process (Linux), 0 where unknown.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn chatty_plugin_logs_are_capped_and_the_call_succeeds() {
    let mut store = MemoryStore::new();
    store.register_factory(Box::new(engine().load_aggregate(plugin("hostile")).unwrap()));
    let (result, took) = hostile(&mut store, "chatty", "Chatty");
    assert_eq!(result.unwrap().n_events, 1);
    assert!(took < BOUNDED);
}

#[test]
fn a_trap_discards_only_its_own_instance() {
    let factory = engine().load_aggregate(plugin("hostile")).unwrap();
    let (mut a, mut b) = (factory.instance().unwrap(), factory.instance().unwrap());
    let increment = Payload::new("Incremented", Value::Null);
    a.try_apply(&[increment.clone(), increment.clone()]).unwrap();
    b.try_apply(std::slice::from_ref(&increment)).unwrap();
    let error = a.try_decide(&Payload::new("Panic", Value::Null), &decide_context()).unwrap_err();
    assert!(matches!(error, PluginError::Trap { .. }), "{error:?}");
    assert!(a.is_discarded());
    assert!(matches!(a.try_snapshot(), Err(PluginError::Discarded { .. })));
    assert_eq!(b.try_snapshot().unwrap(), json!({"value": 1}));
    DynAggregate::reset(&mut a).unwrap();
    assert_eq!(a.try_snapshot().unwrap(), json!({"value": 0}));
}

#[test]
fn the_fuel_budget_is_configurable_and_exact() {
    let engine = PluginEngine::new(Limits { fuel: 1_000_000, ..Limits::default() }).unwrap();
    let mut hostile = engine.load_aggregate(plugin("hostile")).unwrap().instance().unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let error = hostile.try_decide(&Payload::new("Loop", Value::Null), &decide_context()).unwrap_err();
        assert!(matches!(error, PluginError::OutOfFuel { fuel: 1_000_000, .. }), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        hostile.try_reset().unwrap();
    }
    // A normal command fits easily in the same budget.
    let mut bank = engine.load_aggregate(plugin("bank-account")).unwrap().instance().unwrap();
    let open = Payload::new("Open", json!({"owner": "o"}));
    assert_eq!(bank.try_decide(&open, &decide_context()).unwrap().unwrap().len(), 1);
}

/// A plugin built against the previous ABI (0.2.0: no decide context, message-only rejections)
/// still loads and serves exactly like the native aggregate it implements.
#[test]
fn abi_0_2_0_plugins_still_load_and_decide_like_native_code() {
    let legacy = engine().load_aggregate(plugin("legacy-counter")).unwrap();
    assert_eq!((legacy.info().abi_version.as_str(), legacy.info().name.as_str()), ("0.2.0", "legacy-counter"));
    let (mut native, mut plugin_store) = (MemoryStore::new(), MemoryStore::new());
    native.register::<Counter>();
    plugin_store.register_factory(Box::new(legacy));
    let script = [
        ("c1", CounterCommand::Decrement),
        ("c1", CounterCommand::Increment),
        ("c1", CounterCommand::Increment),
        ("c2", CounterCommand::Reset),
        ("c1", CounterCommand::Decrement),
        ("c1", CounterCommand::Reset),
        ("c1", CounterCommand::Decrement),
    ];
    let run = |store: &mut MemoryStore| -> Vec<_> {
        let context = || CommandContext::default().with_actor("legacy");
        script.iter().map(|(id, command)| store.execute::<Counter>(id, command.clone(), context())).collect()
    };
    let (native_results, plugin_results) = (run(&mut native), run(&mut plugin_store));
    assert_eq!(native_results, plugin_results);
    assert_eq!(native_results.iter().filter(|r| matches!(r, Err(CommandError::Rejected(_)))).count(), 2);
    assert_eq!(encoded_logs(&native), encoded_logs(&plugin_store));
    let stream = StreamId::new("counter", "c1").unwrap();
    assert_eq!(native.state_json(&stream).unwrap(), plugin_store.state_json(&stream).unwrap());
}

#[test]
fn wrong_abi_version_is_refused_at_load() {
    let error = engine().load_aggregate(plugin("wrong-abi")).err().expect("must be refused");
    match &error {
        PluginError::AbiMismatch { plugin, found, supported } => {
            assert_eq!(plugin, "wrong-abi");
            assert!(found.iter().any(|f| f.contains("@0.1.0")), "{found:?}");
            assert!(supported.contains("0.3."), "{supported}");
        }
        other => panic!("expected AbiMismatch, got {other:?}"),
    }
}

#[test]
fn a_plugin_of_the_other_kind_is_refused() {
    let error = engine().load_projection(plugin("counter")).err().expect("must be refused");
    assert!(matches!(error, PluginError::WrongKind { expected: "projection", found: "aggregate", .. }), "{error:?}");
    let error = engine().load_aggregate(plugin("balances")).err().expect("must be refused");
    assert!(matches!(error, PluginError::WrongKind { expected: "aggregate", found: "projection", .. }), "{error:?}");
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.wasm");
    std::fs::write(&path, b"\0asm junk").unwrap();
    assert!(matches!(engine().load_aggregate(&path), Err(PluginError::Invalid { .. })));
    assert!(matches!(engine().load_aggregate(dir.path().join("missing.wasm")), Err(PluginError::Read { .. })));
}

#[test]
fn a_core_module_is_refused_with_the_command_that_componentizes_it() {
    // The counter plugin as rustc emits it for wasm32-unknown-unknown, before componentizing.
    let module = evfold_plugin_artifacts::module("counter");
    let error = engine().load_aggregate(&module).err().expect("a core module must be refused");
    assert!(matches!(error, PluginError::Invalid { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("core WebAssembly module, not a component"), "{message}");
    assert!(message.contains("evfold plugin build") && message.contains("evfold plugin componentize"), "{message}");
    assert!(!message.contains("component parser"), "wasmtime's parser message names no tool: {message}");
}

#[test]
fn compiled_plugins_are_cached_on_disk_by_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    let options = || EngineOptions { cache_dir: Some(dir.path().to_owned()), ..EngineOptions::default() };
    let first = PluginEngine::with_options(options()).unwrap();
    let info = first.info(plugin("counter")).unwrap();
    let cached: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let name = cached[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&info.sha256) && name.ends_with(".cwasm"), "{name}");

    // A second engine (a later process) loads the artifact instead of compiling.
    let second = PluginEngine::with_options(options()).unwrap();
    let started = Instant::now();
    let mut counter = second.load_aggregate(plugin("counter")).unwrap().instance().unwrap();
    let warm = started.elapsed();
    counter.try_apply(&[Payload::new("Incremented", Value::Null)]).unwrap();
    assert_eq!(counter.try_snapshot().unwrap(), json!({"value": 1}));
    assert!(warm < Duration::from_secs(2), "cached load took {warm:?}");

    // A damaged artifact is replaced, not trusted.
    std::fs::write(&cached[0], b"garbage").unwrap();
    let third = PluginEngine::with_options(options()).unwrap();
    assert!(third.load_aggregate(plugin("counter")).is_ok());
    assert!(std::fs::read(&cached[0]).unwrap().len() > 1000);
}

#[test]
fn pooling_allocation_runs_plugins_too() {
    let options = EngineOptions {
        allocation: evfold_wasi::Allocation::Pooling { max_instances: 16 },
        ..EngineOptions::default()
    };
    let engine = PluginEngine::with_options(options).unwrap();
    let mut store = MemoryStore::new();
    store.register_factory(Box::new(engine.load_aggregate(plugin("bank-account")).unwrap()));
    let results = run_bank(&mut store, &bank_scenario(11, 60, 3));
    assert!(results.iter().any(Result::is_ok));
}
