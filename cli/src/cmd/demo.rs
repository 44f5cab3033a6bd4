//! `demo`: a bank scenario on an embedded store — accounts opened, deposits, withdrawals, refused
//! overdrafts — run through the example plugins (or the native examples if the plugins are not
//! built), printing every command, its outcome and events, the deposits the `transfers` process
//! manager dispatched, then the `balances` projection.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use evfold_core::{CommandContext, ExpectedVersion, Payload};
use evfold_native::{AggregateStore, ExecuteError};
use serde_json::{json, Value};

use crate::args::DemoArgs;
use crate::cmd::exec::pretty;
use crate::domain;
use crate::output::{self, Out};
use crate::store::{self, Code};

/// Default demo directory.
pub const DEMO_DIR: &str = "evfold-demo";
/// Marks a directory the demo created (and may therefore wipe on the next run).
const MARKER: &str = ".evfold-demo";

/// The scenario: (account, command type, command data).
fn scenario() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("alice", "Open", json!({ "owner": "Alice" })),
        ("alice", "Deposit", json!({ "amount": 10_000 })),
        ("bob", "Open", json!({ "owner": "Bob" })),
        ("bob", "Deposit", json!({ "amount": 2_500 })),
        ("alice", "Withdraw", json!({ "amount": 3_000 })),
        ("bob", "Withdraw", json!({ "amount": 5_000 })),
        ("carol", "Deposit", json!({ "amount": 100 })),
        ("alice", "Open", json!({ "owner": "Alice again" })),
        ("bob", "Deposit", json!({ "amount": 0 })),
        ("alice", "TransferOut", json!({ "to": "bob", "amount": 1_500 })),
    ]
}

/// `evfold demo`.
pub async fn run(store_dir: Option<PathBuf>, args: DemoArgs, out: &Out) -> Result<ExitCode> {
    let dir = store_dir.unwrap_or_else(|| PathBuf::from(DEMO_DIR));
    prepare_dir(&dir)?;
    let (_, source) = code(&args)?;
    if !out.json {
        output::line(&format!("evfold demo: store {} — domain code: {source}\n", dir.display()));
    }
    let store = store::open_writer_with(&dir, true, || code(&args).map(|(code, _)| code)).await?;
    let steps = run_scenario(&store, out).await;
    let transfers = store.run_process_managers().await.context("running the transfers process manager");
    if let (Ok(report), false) = (&transfers, out.json) {
        output::line(&format!(
            "\nprocess manager `transfers`: {} deposit(s) dispatched for TransferredOut events, {} dead-lettered",
            report.dispatched, report.dead_lettered
        ));
    }
    let projection = store.projection_json("balances").await.context("reading the balances projection");
    store.close().await;
    let (steps, transfers, projection) = (steps?, transfers?, projection?);
    out.emit(
        || {
            format!(
                "\nprojection `balances` (store-wide order, caught up with every durable event):\n{}\n\n\
                 next: evfold --store {d} events --pretty\n      evfold --store {d} streams\n      evfold --store {d} verify\n      \
                 evfold --store {d} replay --candidate {p}/bank-account-fees.wasm",
                pretty(&projection),
                d = dir.display(),
                p = plugin_dir(args.plugin_dir.as_deref()).unwrap_or_else(|| PathBuf::from("target/plugins")).display()
            )
        },
        || json!({ "store": dir, "code": source, "steps": steps, "dispatched": transfers.dispatched, "projection": projection }),
    );
    Ok(ExitCode::SUCCESS)
}

/// Creates the demo directory, wiping an earlier demo; refuses to touch anything else.
fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !empty && !dir.join(MARKER).exists() {
            bail!("{} exists and was not created by `evfold demo`; pass --store with a new directory", dir.display());
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("removing the previous demo in {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), b"created by `evfold demo`; the next demo run wipes this directory\n")?;
    Ok(())
}

/// The example plugins if they are built, else the native examples (with a note why).
fn code(args: &DemoArgs) -> Result<(Code, String)> {
    let native = || Code {
        factories: vec![domain::native_aggregate("bank-account").expect("native example")],
        projections: vec![domain::native_projection("balances").expect("native example")],
        managers: vec![transfers()],
    };
    if args.native {
        return Ok((native(), "native examples (--native)".into()));
    }
    let Some(plugins) = plugin_dir(args.plugin_dir.as_deref()) else {
        let note = "native examples (NOTE: example plugins not found; build them with scripts/build-plugins.sh)";
        return Ok((native(), note.into()));
    };
    let (bank, balances) = (plugins.join("bank-account.wasm"), plugins.join("balances.wasm"));
    if let Some(missing) = [&bank, &balances].into_iter().find(|p| !p.is_file()) {
        bail!("{} not found (--plugin-dir / EVFOLD_PLUGIN_DIR); build the plugins with scripts/build-plugins.sh, or pass --native", missing.display());
    }
    let code = Code {
        factories: vec![domain::plugin_aggregate(&bank)?],
        projections: vec![domain::plugin_projection(&balances)?],
        managers: vec![transfers()],
    };
    let source = format!(
        "WASM plugins {} and {} (+ the native `transfers` process manager)",
        bank.display(),
        balances.display()
    );
    Ok((code, source))
}

/// The `transfers` process manager: every TransferredOut becomes a Deposit on the target account.
fn transfers() -> Box<dyn evfold_core::DynProcessManager> {
    domain::native_manager("transfers").expect("native example")
}

/// The given directory (checked by the caller), else the first holding both example plugins:
/// `target/plugins` under the current directory, then `plugins` or `target/plugins` in up to 3
/// parents of this binary's directory (`target/<profile>/evfold` finds `target/plugins`).
fn plugin_dir(given: Option<&Path>) -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("bank-account.wasm").is_file() && d.join("balances.wasm").is_file();
    if let Some(dir) = given {
        return Some(dir.to_path_buf());
    }
    let mut candidates = vec![PathBuf::from("target/plugins")];
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(2).map(|a| a.join("plugins")).take(3));
        candidates.extend(exe.ancestors().skip(2).map(|a| a.join("target/plugins")).take(3));
    }
    candidates.into_iter().find(|d| has_both(d))
}

async fn run_scenario(store: &AggregateStore, out: &Out) -> Result<Vec<Value>> {
    let mut steps = Vec::new();
    for (account, command, data) in scenario() {
        let payload = Payload::new(command, data.clone());
        let context = CommandContext::default().with_actor("demo-teller");
        let result = store.execute_json("bank-account", account, payload, context, ExpectedVersion::Any).await;
        let step = match result {
            Ok(committed) => {
                let after = committed.version - committed.n_events;
                let events = store.read_events_from("bank-account", account, after).await?;
                let events: Vec<Value> =
                    events.iter().map(|e| json!({ "type": e.event_type, "data": e.data, "pos": e.pos })).collect();
                json!({ "account": account, "command": command, "data": data, "accepted": true, "version": committed.version, "events": events })
            }
            Err(ExecuteError::Rejected(rejection)) => {
                json!({ "account": account, "command": command, "data": data, "accepted": false, "reason": rejection.message })
            }
            Err(e) => bail!("demo command {command} on {account} failed: {e}"),
        };
        if !out.json {
            output::line(&describe(&step));
        }
        steps.push(step);
    }
    Ok(steps)
}

fn describe(step: &Value) -> String {
    let head = format!(
        "{:<6} {:<12} {:<28}",
        step["account"].as_str().unwrap_or(""),
        step["command"].as_str().unwrap_or(""),
        step["data"].to_string()
    );
    if step["accepted"] == true {
        let events: Vec<String> = step["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| format!("{} {} @pos {}", e["type"].as_str().unwrap_or(""), e["data"], e["pos"]))
                    .collect()
            })
            .unwrap_or_default();
        format!("{head} accepted  v{} -> {}", step["version"], events.join(", "))
    } else {
        format!("{head} REJECTED  {}", step["reason"].as_str().unwrap_or(""))
    }
}
