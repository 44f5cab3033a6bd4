//! `export` and `import`: moving events between stores as JSONL.
//!
//! `export` is `events --json` over the whole store (the same renderer, in `cmd::events`): one
//! line per event with `stream`, `seq`, `pos`, `id`, `type`, `data`, `ts`, `meta`.
//!
//! `import` appends each line's event to its stream in file order, keeping the event's `id`,
//! `ts` and `meta` (`seq` and `pos` are the target store's). An event whose id is already stored
//! is skipped, so an interrupted import is resumed by running it again. It stops at the first
//! line it cannot append (a malformed line, an event the aggregate's code does not know), naming
//! the line; everything before it is durable. It runs no process managers: the export already
//! holds the commands they dispatched.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use evfold_core::{EventRecord, NewEvent, Payload};
use evfold_native::InjectOutcome;
use serde_json::{json, Value};

use crate::args::{EventsArgs, ExportArgs, ImportArgs};
use crate::cmd::batch::join_in_order;
use crate::cmd::{events, exec};
use crate::exit::CliError;
use crate::input;
use crate::output::Out;

/// Events in flight at once.
const WINDOW: usize = 512;

/// `evfold export [--from POS]`.
pub async fn export(dir: &Path, args: ExportArgs, out: &Out) -> Result<ExitCode> {
    let events_args =
        EventsArgs { aggregate_type: None, id: None, from: args.from, pretty: false, follow: false, limit: None };
    events::events(dir, events_args, &Out { json: true, ..*out }).await
}

/// One event of an export: its stream and the event to append.
struct Imported {
    line: usize,
    aggregate_type: String,
    id: String,
    event: NewEvent,
}

fn parse_line(line: usize, text: &str) -> Result<Imported> {
    let bad = |why: String| CliError::Input(format!("line {line}: {why}"));
    let mut value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let stream = value
        .as_object_mut()
        .and_then(|m| m.remove("stream"))
        .and_then(|s| s.as_str().map(str::to_owned))
        .ok_or_else(|| bad("needs a \"stream\": \"TYPE/ID\" string (the `events --json` shape)".into()))?;
    let (aggregate_type, id) =
        stream.split_once('/').ok_or_else(|| bad(format!("stream {stream:?} is not TYPE/ID")))?;
    let record: EventRecord = serde_json::from_value(value).map_err(|e| bad(format!("not an event: {e}")))?;
    if record.id.is_missing() {
        // Every exported event has one (a stored line without one is read with a derived id);
        // dedup is by id, so an event without one cannot be imported safely.
        return Err(bad("has no \"id\" (every `export` line has one)".into()).into());
    }
    let event = NewEvent {
        version: 1,
        id: record.id,
        payload: Payload::new(record.event_type, record.data),
        ts: record.ts,
        meta: record.meta,
    };
    Ok(Imported { line, aggregate_type: aggregate_type.to_owned(), id: id.to_owned(), event })
}

/// `evfold import FILE [--plugin F]...`.
pub async fn import(dir: &Path, args: ImportArgs, out: &Out) -> Result<ExitCode> {
    let file = args.file.context("import needs FILE (or `eventfold-es DIR`)")?;
    let (reader, _) = input::lines(&file)?;
    let mut lines = Vec::new();
    for (index, text) in std::io::BufRead::lines(reader).enumerate() {
        let text = text.with_context(|| format!("reading {file}"))?;
        if !text.trim().is_empty() {
            lines.push(parse_line(index + 1, &text)?);
        }
    }
    let mut types: Vec<String> = lines.iter().map(|l| l.aggregate_type.clone()).collect();
    types.sort();
    types.dedup();
    let factories = exec::factories(&types, &args.plugin)?;
    // No process managers: the export already holds the commands they dispatched.
    let store = crate::store::open_writer(dir, factories, true).await?;
    let bar = out.bar(lines.len() as u64, "importing");
    let (mut appended, mut duplicates) = (0u64, 0u64);
    let mut failed = None;
    'windows: for window in lines.chunks(WINDOW) {
        let futures =
            window.iter().map(|l| store.inject_event(&l.aggregate_type, &l.id, l.event.clone())).collect::<Vec<_>>();
        for (line, result) in window.iter().zip(join_in_order(futures).await) {
            match result {
                Ok(InjectOutcome::Appended(_)) => appended += 1,
                Ok(InjectOutcome::Duplicate) => duplicates += 1,
                Err(e) => {
                    let stream = format!("{}/{}", line.aggregate_type, line.id);
                    let error = crate::store::explain_failure(dir, anyhow::Error::new(e));
                    failed = Some(
                        error.context(format!("line {}: importing event {} into {stream}", line.line, line.event.id)),
                    );
                    break 'windows;
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    store.close().await;
    if let Some(error) = failed {
        return Err(error.context(format!(
            "import stopped ({appended} appended, {duplicates} already stored; run it again to resume)"
        )));
    }
    out.emit(
        || format!("imported {appended} event(s); {duplicates} already stored (skipped)"),
        || json!({ "imported": appended, "duplicates": duplicates }),
    );
    Ok(ExitCode::SUCCESS)
}
