//! `projection show` (read-only: starts from the saved checkpoint, folds the events after it,
//! and never writes the checkpoint or takes the lock) and `projection rebuild` (a writing open).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use evfold_core::{Checkpoint, DynProjection};
use evfold_native::{AggregateStore, CHECKPOINT_FILE};
use serde_json::{json, Value};

use crate::args::{ProjectionArgs, ProjectionCommand};
use crate::cmd::exec::pretty;
use crate::output::Out;
use crate::store::{self, Code};
use crate::{domain, exit};

/// Events per read while folding.
const PAGE: usize = 4096;

/// `evfold projection show|rebuild NAME [--plugin FILE]`.
pub async fn run(dir: &Path, command: ProjectionCommand, out: &Out) -> Result<ExitCode> {
    let (args, rebuild) = match command {
        ProjectionCommand::Show(a) => (a, false),
        ProjectionCommand::Rebuild(a) => (a, true),
    };
    let projection = domain::projection(args.name.as_deref(), args.plugin.as_deref())?;
    let name = projection.name().to_owned();
    let (state, how) = if rebuild {
        drop(projection);
        (rebuild_projection(dir, &args, out).await?, "rebuilt".to_owned())
    } else {
        show(dir, projection, out).await?
    };
    out.emit(
        || format!("projection {name} ({how})\n{}", pretty(&state)),
        || json!({ "projection": name, "state": state, "how": how }),
    );
    Ok(ExitCode::from(exit::OK))
}

async fn rebuild_projection(dir: &Path, args: &ProjectionArgs, out: &Out) -> Result<Value> {
    let make = || {
        let projection = domain::projection(args.name.as_deref(), args.plugin.as_deref())?;
        Ok(Code { projections: vec![projection], ..Code::default() })
    };
    let name = domain::projection(args.name.as_deref(), args.plugin.as_deref())?.name().to_owned();
    let store = store::open_writer_with(dir, false, make).await?;
    let spinner = out.spinner(&format!("rebuilding {name}"));
    let state = store.rebuild_projection_json(&name).await.context("rebuilding the projection");
    spinner.finish_and_clear();
    store.close().await;
    state.map_err(|e| store::explain_failure(dir, e))
}

/// The saved checkpoint's position and state, if there is a usable one: readable, and written
/// by this `version` of the projection's code.
fn saved(store: &AggregateStore, name: &str, version: &str) -> Option<(u64, Value)> {
    let path = store.layout().projection_dir(name).join(CHECKPOINT_FILE);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice::<Checkpoint>(&bytes) {
        Ok(checkpoint) if checkpoint.written_by() != version => {
            let written_by = checkpoint.written_by();
            tracing::info!(path = %path.display(), written_by, version, "checkpoint of another version; folding every event");
            None
        }
        Ok(checkpoint) => Some((checkpoint.position.0.as_u64().unwrap_or(0), checkpoint.state)),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "checkpoint unusable; folding every event");
            None
        }
    }
}

/// Read-only: restores the checkpoint (if any) and folds every durable event after it.
async fn show(dir: &Path, mut projection: Box<dyn DynProjection>, out: &Out) -> Result<(Value, String)> {
    let store = store::open_reader(dir, Vec::new()).await?;
    let name = projection.name().to_owned();
    let fault = |f: evfold_core::Fault| anyhow!("projection {name} failed: {f}");
    let mut from = 1;
    let mut how = "folded every event read-only; no checkpoint".to_owned();
    if let Some((position, state)) = saved(&store, &name, &projection.version()) {
        if projection.restore(&state).is_ok() {
            from = position + 1;
            how = format!("checkpoint at position {position}, then the events after it, read-only");
        } else {
            projection.reset().map_err(fault)?;
        }
    }
    let schemas = store.schemas();
    let bar = out.bar(store.durable_position(), "folding");
    bar.set_position(from - 1);
    loop {
        let page = store.read_all_page(from, PAGE).await.context("reading events")?;
        let Some(last) = page.last() else { break };
        from = last.record.pos + 1;
        let (page, _skipped) = schemas.read_batch(page).map_err(|e| anyhow!("projection {name}: {e}"))?;
        projection.apply(&page).map_err(fault)?;
        bar.set_position(from - 1);
    }
    bar.finish_and_clear();
    let state = projection.snapshot().map_err(fault)?;
    Ok((state, how))
}
