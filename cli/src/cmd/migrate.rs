//! `import eventfold-es DIR --into STORE [--append] [--limit N]`: migrates an eventfold-es 0.2
//! store with [`evfold_native::import::eventfold_es::import`] (what it keeps and refuses is
//! documented there and in docs/migrating.md), with a progress bar on stderr (hidden unless
//! stderr is a terminal), then runs the check of `evfold verify` on the target and prints it:
//! the exit code is `verify`'s (0 clean, 3 damaged), or the import's error's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use evfold_native::import::eventfold_es::{self, ImportOptions, ImportReport};
use serde_json::json;

use crate::args::PeerImportArgs;
use crate::cmd::{exec, verify};
use crate::output::Out;
use crate::store;

/// `evfold import eventfold-es DIR [--into STORE]`; `global_store` is `--store`.
pub async fn run(global_store: Option<PathBuf>, args: PeerImportArgs, out: &Out) -> Result<ExitCode> {
    let target = match (args.into, global_store) {
        (Some(into), Some(global)) if into != global => {
            bail!("--into {} and --store {} name different stores: give one", into.display(), global.display())
        }
        (Some(into), _) => into,
        (None, global) => store::dir(global)?,
    };
    let types = peer_types(&args.dir)?;
    let factories = exec::factories(&types, &args.plugin)?;
    let store = store::open_writer(&target, factories, true).await?;
    // Reading and checking the source comes first; the bar fills as runs are appended.
    let bar = out.bar(0, "checking");
    let shown = bar.clone();
    let options = ImportOptions {
        append: args.append,
        limit: args.limit,
        progress: Some(Box::new(move |p| {
            shown.set_message("importing");
            shown.set_length(p.total);
            shown.set_position(p.done);
        })),
    };
    let result = eventfold_es::import(&args.dir, &store, options).await;
    bar.finish_and_clear();
    store.close().await;
    let report = result.with_context(|| format!("importing {} into {}", args.dir.display(), target.display()))?;
    print_report(&args.dir, &target, &report, out);
    verify::verify(&target, out)
}

/// The aggregate types of a peer store: the directories under `DIR/streams/` (the importer
/// itself refuses a directory that is no eventfold-es store, with a typed error).
fn peer_types(dir: &Path) -> Result<Vec<String>> {
    let streams = dir.join("streams");
    let Ok(entries) = std::fs::read_dir(&streams) else {
        bail!("{} is not an eventfold-es store: it has no streams/ directory", dir.display())
    };
    let mut types = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", streams.display()))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            types.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    types.sort();
    Ok(types)
}

fn print_report(dir: &Path, target: &Path, report: &ImportReport, out: &Out) {
    for torn in &report.torn_tails {
        out.note(&format!(
            "note: {} ends in a torn write (a last line without a newline); eventfold-es never read it, nor did the import",
            torn.display()
        ));
    }
    if report.remaining > 0 {
        out.note(&format!(
            "note: {} event(s) left by --limit; run the same command again to continue",
            report.remaining
        ));
    }
    out.emit(
        || {
            format!(
                "imported {} event(s) of {} stream(s) from {} into {}; {} already there (skipped); {} derived id(s)",
                report.imported,
                report.streams,
                dir.display(),
                target.display(),
                report.skipped,
                report.derived_ids
            )
        },
        || {
            json!({
                "imported": report.imported, "skipped": report.skipped, "streams": report.streams,
                "events": report.events, "derived_ids": report.derived_ids, "remaining": report.remaining,
                "torn_tails": report.torn_tails,
            })
        },
    );
}
