//! Conformance against the real JSONL store (`evfold-native`): the native typed bank account and
//! its plugin build, driven through two stores with the same clock and id seeds, write
//! byte-identical `events.jsonl` files and equal projections; the hostile plugin's failures stay
//! typed inside the native store while its healthy aggregates keep serving. The eventfold-es
//! inventory (rules that read the decide context, typed errors carried as data) gives the same
//! typed `ExecuteError::Domain` and the same log bytes natively and as a plugin.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use evfold_core::examples::{
    Balances, BankAccount, BankCommand, Inventory, InventoryCommand, InventoryError, InventoryEvent,
};
use evfold_core::{to_payload, CommandContext, Committed, ExpectedVersion, Payload, Timestamp};
use evfold_native::{counting_id_seeds, AggregateStore, AggregateStoreBuilder, ExecuteError, ManualClock};
use evfold_wasi::{plugin_error, PluginError, PluginRegistration};
use serde_json::Value;

use crate::common::{bank_scenario, engine, inventory_scenario, plugin, InventoryStep};

fn builder(dir: &Path, plugin_build: bool) -> AggregateStoreBuilder {
    let clock = ManualClock::new(1_790_000_000_000);
    let builder = AggregateStore::builder(dir).clock(clock.clock()).id_seed_source(counting_id_seeds(1 << 64));
    if plugin_build {
        // Registration by file path, exactly like the native types below.
        builder
            .aggregate_plugin(engine(), plugin("bank-account"))
            .unwrap()
            .projection_plugin(engine(), plugin("balances"))
            .unwrap()
    } else {
        builder.aggregate::<BankAccount>().projection::<Balances>()
    }
}

/// Every `events.jsonl` under `root`, relative path -> bytes, sorted.
fn event_logs(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.file_name().is_some_and(|n| n == "events.jsonl") {
                out.push((path.strip_prefix(root).unwrap().to_owned(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&root.join("streams"), root, &mut out);
    out.sort();
    out
}

/// Runs the scenario; returns each outcome as text (committed version or error message).
async fn run(store: &AggregateStore, scenario: &[(String, BankCommand)]) -> Vec<String> {
    let mut outcomes = Vec::new();
    for (account, command) in scenario {
        let payload = to_payload(command).unwrap();
        let context = CommandContext::default().with_actor("conformance");
        let result = store.execute_json("bank-account", account, payload, context, ExpectedVersion::Any).await;
        outcomes.push(match result {
            Ok(committed) => format!("ok {committed:?}"),
            Err(evfold_native::ExecuteError::Rejected(rejection)) => format!("rejected {rejection}"),
            Err(error) => format!("err {error}"),
        });
    }
    outcomes
}

#[test]
fn native_jsonl_store_logs_are_byte_identical_with_the_plugin() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (native_dir, plugin_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let scenario = bank_scenario(21, 300, 5);
    let (native_outcomes, plugin_outcomes, native_balances, plugin_balances) = runtime.block_on(async {
        let native = builder(native_dir.path(), false).open().await.unwrap();
        let plugin = builder(plugin_dir.path(), true).open().await.unwrap();
        let native_outcomes = run(&native, &scenario).await;
        let plugin_outcomes = run(&plugin, &scenario).await;
        let native_balances = native.projection_json("balances").await.unwrap();
        let plugin_balances = plugin.projection_json("balances").await.unwrap();
        native.close().await;
        plugin.close().await;
        (native_outcomes, plugin_outcomes, native_balances, plugin_balances)
    });
    assert_eq!(native_outcomes, plugin_outcomes);
    assert!(native_outcomes.iter().filter(|o| o.starts_with("rejected ")).count() >= 30);
    let (native_logs, plugin_logs) = (event_logs(native_dir.path()), event_logs(plugin_dir.path()));
    assert!(native_logs.len() >= 5, "{native_logs:?}");
    assert_eq!(native_logs.len(), plugin_logs.len());
    for ((path, native_bytes), (plugin_path, plugin_bytes)) in native_logs.iter().zip(&plugin_logs) {
        assert_eq!(path, plugin_path);
        assert!(native_bytes == plugin_bytes, "{}: JSONL files differ", path.display());
    }
    assert_eq!(native_balances, plugin_balances);
    assert!(native_balances["total"].as_u64().unwrap() > 0);
}

#[test]
fn hostile_plugin_in_the_native_store_fails_typed_while_others_serve() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let hostile = engine().load_aggregate(plugin("hostile")).unwrap();
        let store = builder(dir.path(), true).aggregate_factory(Arc::new(hostile)).open().await.unwrap();
        let ctx = CommandContext::default;
        let bank = |command: &BankCommand| to_payload(command).unwrap();
        store
            .execute_json(
                "bank-account",
                "ok",
                bank(&BankCommand::Open { owner: "o".into() }),
                ctx(),
                ExpectedVersion::Any,
            )
            .await
            .unwrap();
        for command in ["Loop", "Bomb", "Panic", "Undeclared"] {
            let payload = Payload::new(command, Value::Null);
            let error = store.execute_json("hostile", "h", payload, ctx(), ExpectedVersion::Any).await.unwrap_err();
            let ExecuteError::Fault(fault) = &error else { panic!("{command}: {error:?}") };
            let typed = plugin_error(fault).unwrap_or_else(|| panic!("{command}: {fault}"));
            assert!(!matches!(typed, PluginError::Discarded { .. }), "{command}: {typed}");
            let deposit = bank(&BankCommand::Deposit { amount: 10 });
            store.execute_json("bank-account", "ok", deposit, ctx(), ExpectedVersion::Any).await.unwrap();
            let increment = Payload::new("Increment", Value::Null);
            store.execute_json("hostile", "h", increment, ctx(), ExpectedVersion::Any).await.unwrap();
        }
        assert_eq!(store.state_json("hostile", "h").await.unwrap().0, 4);
        store.close().await;
    });
}

const INVENTORY_T0: u64 = 1_790_000_000_000;

/// A store with the inventory, native or its plugin build, on `clock`.
async fn inventory_store(dir: &Path, plugin_build: bool, clock: &ManualClock) -> AggregateStore {
    let builder = AggregateStore::builder(dir).clock(clock.clock()).id_seed_source(counting_id_seeds(1 << 64));
    let builder = if plugin_build {
        builder.aggregate_plugin(engine(), plugin("inventory")).unwrap()
    } else {
        builder.aggregate::<Inventory>()
    };
    builder.open().await.unwrap()
}

/// Runs the scenario through the typed handle, the clock moving 7 ms per command. Every
/// refusal must be the typed `ExecuteError::Domain`.
async fn run_inventory(
    store: &AggregateStore,
    clock: &ManualClock,
    scenario: &[InventoryStep],
) -> Vec<Result<Committed, InventoryError>> {
    let mut outcomes = Vec::new();
    for (sku, command, actor) in scenario {
        clock.advance(7);
        let context = actor.as_ref().map_or_else(CommandContext::default, |a| CommandContext::default().with_actor(a));
        let handle = store.get::<Inventory>(sku).await.unwrap();
        outcomes.push(match handle.execute(command.clone(), context).await {
            Ok(committed) => Ok(committed),
            Err(ExecuteError::Domain(error)) => Err(error),
            Err(other) => panic!("{sku} {command:?}: not a typed domain error: {other:?}"),
        });
    }
    outcomes
}

#[test]
fn eventfold_es_typed_errors_survive_the_plugin_boundary() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (native_dir, plugin_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let scenario = inventory_scenario(16, 2_000, 4);
    let (native_outcomes, plugin_outcomes) = runtime.block_on(async {
        let (native_clock, plugin_clock) = (ManualClock::new(INVENTORY_T0), ManualClock::new(INVENTORY_T0));
        let native = inventory_store(native_dir.path(), false, &native_clock).await;
        let plugin = inventory_store(plugin_dir.path(), true, &plugin_clock).await;
        let native_outcomes = run_inventory(&native, &native_clock, &scenario).await;
        let plugin_outcomes = run_inventory(&plugin, &plugin_clock, &scenario).await;
        native.close().await;
        plugin.close().await;
        (native_outcomes, plugin_outcomes)
    });
    assert_eq!(native_outcomes, plugin_outcomes, "the same typed outcome for every command");
    let refusals: Vec<&InventoryError> = native_outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(refusals.len() >= 300, "{} refusals", refusals.len());
    let by_kind = ["WrongSku", "NoActor", "ZeroQuantity", "InsufficientStock"]
        .map(|kind| (kind, refusals.iter().filter(|e| format!("{e:?}").starts_with(kind)).count()));
    assert!(by_kind.iter().all(|(_, n)| *n > 0), "every refusal kind occurs: {by_kind:?}");
    println!("{} commands, {} typed refusals on both builds: {by_kind:?}", scenario.len(), refusals.len());
    // The events carry what the context said (actor, `now`): the same bytes on both builds.
    let (native_logs, plugin_logs) = (event_logs(native_dir.path()), event_logs(plugin_dir.path()));
    assert_eq!(native_logs.len(), 4, "{native_logs:?}");
    assert_eq!(native_logs, plugin_logs, "JSONL files differ");
    let text = String::from_utf8(native_logs[0].1.clone()).unwrap();
    assert!(text.contains(r#""by":"clerk-"#) && text.contains(r#""at":17900000"#), "{text}");
}

#[test]
fn eventfold_es_handle_with_sees_stream_actor_and_now_natively_and_in_a_plugin() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for plugin_build in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        runtime.block_on(async {
            let clock = ManualClock::new(INVENTORY_T0);
            let store = inventory_store(dir.path(), plugin_build, &clock).await;
            let handle = store.get::<Inventory>("sku-7").await.unwrap();
            clock.set(INVENTORY_T0 + 1_234);
            let receive = InventoryCommand::Receive { sku: "sku-7".into(), quantity: 5 };
            let executed =
                handle.execute_with_events(receive, CommandContext::default().with_actor("alice")).await.unwrap();
            let expected =
                InventoryEvent::Received { quantity: 5, by: "alice".into(), at: Timestamp(INVENTORY_T0 + 1_234) };
            assert_eq!(executed.events, [expected], "plugin build: {plugin_build}");
            let elsewhere = InventoryCommand::Ship { sku: "sku-8".into(), quantity: 1 };
            let refused = handle.execute(elsewhere, CommandContext::default().with_actor("bob")).await.unwrap_err();
            let wrong_sku = InventoryError::WrongSku { stream: "sku-7".into(), command: "sku-8".into() };
            assert!(
                matches!(&refused, ExecuteError::Domain(e) if *e == wrong_sku),
                "plugin build {plugin_build}: {refused:?}"
            );
            let ship = InventoryCommand::Ship { sku: "sku-7".into(), quantity: 1 };
            let anonymous = handle.execute(ship, CommandContext::default()).await.unwrap_err();
            assert!(matches!(anonymous, ExecuteError::Domain(InventoryError::NoActor)), "{anonymous:?}");
            store.close().await;
        });
    }
}
