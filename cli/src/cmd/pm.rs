//! Process managers from the command line. The CLI knows the native `transfers` manager (every
//! `TransferredOut` becomes a `Deposit` on the target account). A writing command (`exec`,
//! `exec --batch`) registers it when the store already has its checkpoint directory
//! (`process_managers/transfers/`, e.g. after `evfold demo`, `pm run`) or when it writes the
//! first `bank-account` events of a new store, and lets it catch up before exiting, so a transfer
//! done with `exec` is delivered. (A store with history but no such directory, e.g. one filled
//! by `import`, starts the manager only through an explicit `pm run`, which handles the whole
//! history.)
//! `pm run` does the same on its own; `pm show` prints position, backlog and dead letters
//! read-only.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use evfold_core::{AggregateFactory, Checkpoint};
use evfold_native::{AggregateStore, StoreLayout, CHECKPOINT_FILE};
use serde_json::{json, Value};

use crate::args::PmCommand;
use crate::output::Out;
use crate::store::{self, Code};
use crate::{domain, exit};

/// Events read per page while counting a backlog.
const PAGE: usize = 4096;

/// The native managers that apply to a store: those it has a directory for, plus `transfers`
/// when `types` (what the command writes) includes `bank-account` and the store has no
/// streams yet.
fn managers_for(dir: &Path, types: &[String]) -> Vec<&'static str> {
    let layout = StoreLayout::new(dir);
    let no_streams = std::fs::read_dir(layout.streams_dir()).map_or(true, |mut entries| entries.next().is_none());
    domain::NATIVE_MANAGERS
        .into_iter()
        .filter(|name| {
            layout.process_manager_dir(name).is_dir()
                || (*name == "transfers" && no_streams && types.iter().any(|t| t == "bank-account"))
        })
        .collect()
}

/// Opens the store for writing with `factories` and the managers that apply (and the native
/// `bank-account` code the `transfers` manager dispatches to, unless a factory covers it).
pub async fn open_with_managers(
    dir: &Path,
    mut factories: Vec<Arc<dyn AggregateFactory>>,
    types: &[String],
) -> Result<AggregateStore> {
    let managers = managers_for(dir, types);
    if managers.contains(&"transfers") && !factories.iter().any(|f| f.aggregate_type() == "bank-account") {
        factories.extend(domain::native_aggregate("bank-account"));
    }
    store::open_writer_with(dir, true, || {
        Ok(Code {
            factories: factories.clone(),
            managers: managers.iter().filter_map(|name| domain::native_manager(name)).collect(),
            ..Code::default()
        })
    })
    .await
}

/// Lets the registered managers catch up; says on stderr what they dispatched.
pub async fn catch_up(store: &AggregateStore, out: &Out) -> Result<()> {
    let report = store.run_process_managers().await.context("running the process managers")?;
    for manager in &report.managers {
        if manager.dispatched + manager.dead_lettered > 0 {
            out.note(&format!(
                "process manager {}: {} command(s) dispatched, {} dead-lettered{}",
                manager.name,
                manager.dispatched,
                manager.dead_lettered,
                if manager.dead_lettered > 0 { " (see `evfold pm show`)" } else { "" }
            ));
        }
    }
    Ok(())
}

/// `evfold pm run|show`.
pub async fn run(dir: &Path, command: PmCommand, out: &Out) -> Result<ExitCode> {
    match command {
        PmCommand::Run => run_managers(dir, out).await,
        PmCommand::Show { name } => show(dir, name, out).await,
    }
}

async fn run_managers(dir: &Path, out: &Out) -> Result<ExitCode> {
    store::require_existing(dir)?;
    let managers: Vec<&str> = domain::NATIVE_MANAGERS.to_vec();
    let factories: Vec<_> = domain::native_aggregate("bank-account").into_iter().collect();
    let store = store::open_writer_with(dir, false, || {
        Ok(Code {
            factories: factories.clone(),
            managers: managers.iter().filter_map(|name| domain::native_manager(name)).collect(),
            ..Code::default()
        })
    })
    .await?;
    let report = store.run_process_managers().await.context("running the process managers");
    store.close().await;
    let report = report?;
    out.emit(
        || {
            report
                .managers
                .iter()
                .map(|m| format!("{}: {} dispatched, {} dead-lettered", m.name, m.dispatched, m.dead_lettered))
                .collect::<Vec<_>>()
                .join("\n")
        },
        || {
            json!(report
                .managers
                .iter()
                .map(|m| json!({ "name": m.name, "dispatched": m.dispatched, "dead_lettered": m.dead_lettered }))
                .collect::<Vec<_>>())
        },
    );
    Ok(ExitCode::from(exit::OK))
}

/// The managers a store has a directory for.
fn present(dir: &Path) -> Result<Vec<String>> {
    let root = dir.join("process_managers");
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&root).with_context(|| format!("listing {}", root.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

async fn show(dir: &Path, name: Option<String>, out: &Out) -> Result<ExitCode> {
    let store = store::open_reader(dir, Vec::new()).await?;
    let names = match name {
        Some(name) => vec![name],
        None => present(dir)?,
    };
    let mut rows = Vec::new();
    for name in names {
        rows.push(describe(&store, &name).await?);
    }
    out.emit(
        || {
            if rows.is_empty() {
                return "no process managers in this store".to_owned();
            }
            let mut text = String::new();
            for row in &rows {
                text.push_str(&format!(
                    "{}: at position {}, {} event(s) not yet handled (run `evfold pm run`), {} dead letter(s)",
                    row["name"].as_str().unwrap_or(""),
                    row["position"],
                    row["pending_events"],
                    row["dead_letters"].as_array().map_or(0, Vec::len)
                ));
                for letter in row["dead_letters"].as_array().into_iter().flatten() {
                    text.push_str(&format!(
                        "\n  dead: {} to {} after {} attempt(s): {}",
                        letter["command"].as_str().unwrap_or(""),
                        letter["target"].as_str().unwrap_or(""),
                        letter["attempts"],
                        letter["error"].as_str().unwrap_or("")
                    ));
                }
                text.push('\n');
            }
            text.trim_end().to_owned()
        },
        || json!(rows),
    );
    Ok(ExitCode::from(exit::OK))
}

/// One manager: checkpoint position, events after it, dead letters.
async fn describe(store: &AggregateStore, name: &str) -> Result<Value> {
    let path = store.layout().process_manager_dir(name).join(CHECKPOINT_FILE);
    let position = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Checkpoint>(&bytes)
            .with_context(|| format!("cannot decode {}", path.display()))?
            .position
            .0
            .as_u64()
            .unwrap_or(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut pending = 0;
    let mut from = position + 1;
    loop {
        let page = store.read_all_page(from, PAGE).await.context("reading events")?;
        let Some(last) = page.last() else { break };
        pending += page.len();
        from = last.record.pos + 1;
    }
    let letters = store.dead_letters(name).await.context("reading dead letters")?;
    let letters: Vec<Value> = letters
        .iter()
        .map(|l| {
            json!({ "command": l.command.command.type_name, "target": l.command.target.to_string(),
                    "attempts": l.attempts, "error": l.error, "cause": l.cause })
        })
        .collect();
    Ok(json!({ "name": name, "position": position, "pending_events": pending, "dead_letters": letters }))
}
