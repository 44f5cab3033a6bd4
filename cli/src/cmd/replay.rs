//! `replay`: fold a store's history through another aggregate version (a new plugin build)
//! side by side with the version that wrote it, and report every divergence.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use evfold_core::replay::{compare_events, DivergenceReport};
use serde_json::json;

use crate::args::ReplayArgs;
use crate::output::Out;
use crate::{domain, exit, store};

/// `evfold replay --candidate NEW.wasm [--baseline OLD.wasm] [--id ID]`.
pub async fn run(dir: &Path, args: ReplayArgs, out: &Out) -> Result<ExitCode> {
    let candidate = domain::plugin_aggregate(&args.candidate)?;
    let aggregate_type = candidate.aggregate_type().to_owned();
    let baseline = domain::aggregate(&aggregate_type, args.baseline.as_deref(), "--baseline")?;
    let store = store::open_reader(dir, Vec::new()).await?;
    let mut streams = store.list_streams(Some(&aggregate_type)).await.context("listing streams")?;
    if let Some(id) = &args.id {
        streams.retain(|s| s.instance_id() == id);
    }
    let bar = out.bar(streams.len() as u64, "replaying");
    let mut report = DivergenceReport { aggregate_type: aggregate_type.clone(), ..DivergenceReport::default() };
    for stream in &streams {
        let records = store.read_events(stream.aggregate_type(), stream.instance_id()).await?;
        let one = compare_events(stream, &records, baseline.as_ref(), candidate.as_ref())
            .map_err(|e| anyhow!("replaying {stream}: {e}"))?;
        report.merge(one);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let baseline_name = args.baseline.as_ref().map_or_else(|| "native example".to_owned(), |p| p.display().to_string());
    out.emit(
        || format!("baseline: {baseline_name}\ncandidate: {}\n{report}", args.candidate.display()),
        || json!({ "clean": report.is_clean(), "report": report }),
    );
    Ok(ExitCode::from(if report.is_clean() { exit::OK } else { exit::DIVERGED }))
}
