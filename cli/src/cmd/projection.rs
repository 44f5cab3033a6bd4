//! `projection show` and `projection rebuild`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use evfold_core::DynProjection;
use evfold_native::StoreError;
use serde_json::{json, Value};

use crate::args::{ProjectionArgs, ProjectionCommand};
use crate::cmd::exec::pretty;
use crate::output::Out;
use crate::store::{self, Code};
use crate::{domain, exit};

/// Events per read while folding read-only.
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
        (rebuild_projection(dir, projection).await?, "rebuilt")
    } else {
        show(dir, projection, args, out).await?
    };
    out.emit(
        || format!("projection {name} ({how})\n{}", pretty(&state)),
        || json!({ "projection": name, "state": state, "how": how }),
    );
    Ok(ExitCode::from(exit::OK))
}

async fn rebuild_projection(dir: &Path, projection: Box<dyn DynProjection>) -> Result<Value> {
    let name = projection.name().to_owned();
    let store = store::open_writer(dir, Code { projections: vec![projection], ..Code::default() }, false).await?;
    let state = store.rebuild_projection_json(&name).await.context("rebuilding the projection");
    store.close().await;
    state
}

/// Catches up from the checkpoint in a writing open; if another process holds the store, folds
/// every event read-only instead (no checkpoint is written).
async fn show(
    dir: &Path,
    projection: Box<dyn DynProjection>,
    args: ProjectionArgs,
    out: &Out,
) -> Result<(Value, &'static str)> {
    let name = projection.name().to_owned();
    match store::open_writer(dir, Code { projections: vec![projection], ..Code::default() }, false).await {
        Ok(store) => {
            let state = store.projection_json(&name).await.context("catching up the projection");
            store.close().await;
            Ok((state?, "caught up from its checkpoint"))
        }
        Err(e) if matches!(e.downcast_ref::<StoreError>(), Some(StoreError::LockHeld { .. })) => {
            let projection = domain::projection(args.name.as_deref(), args.plugin.as_deref())?;
            Ok((fold_read_only(dir, projection, out).await?, "folded read-only: the store is locked by a writer"))
        }
        Err(e) => Err(e),
    }
}

async fn fold_read_only(dir: &Path, mut projection: Box<dyn DynProjection>, out: &Out) -> Result<Value> {
    let store = store::open_reader(dir, Vec::new()).await?;
    let bar = out.bar(store.durable_position(), "folding");
    let mut from = 1;
    loop {
        let page = store.read_all_page(from, PAGE).await?;
        let Some(last) = page.last() else { break };
        from = last.record.pos + 1;
        projection.apply(&page).map_err(|f| anyhow::anyhow!("projection failed: {f}"))?;
        bar.set_position(from - 1);
    }
    bar.finish_and_clear();
    projection.snapshot().map_err(|f| anyhow::anyhow!("projection failed: {f}"))
}
