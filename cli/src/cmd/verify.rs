//! `verify` (CRC + structure check of every log, per-stream report, exit 3 on damage) and
//! `repair` (explicit cut at the first bad line, with a backup of what is cut).

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use evfold_core::{scan_log, ScanStart, StreamId};
use evfold_native::verify::verify_stream;
use evfold_native::{repair_stream_with, settle_positions, RepairOptions, StoreLayout, StreamReport, StreamStatus};
use serde_json::{json, Value};

use crate::args::RepairArgs;
use crate::output::Out;
use crate::{exit, store};

/// Every stream directory under `streams/<type>/<id>/`, sorted; names that are not valid stream
/// ids are returned as errors to report (a store never creates them).
fn list_streams(layout: &StoreLayout) -> Result<(Vec<StreamId>, Vec<String>)> {
    let (mut streams, mut strays) = (Vec::new(), Vec::new());
    let Ok(types) = std::fs::read_dir(layout.streams_dir()) else { return Ok((streams, strays)) };
    for t in types {
        let t = t?;
        if !t.file_type()?.is_dir() {
            continue;
        }
        for id in std::fs::read_dir(t.path())? {
            let id = id?;
            let (ty, name) =
                (t.file_name().to_string_lossy().into_owned(), id.file_name().to_string_lossy().into_owned());
            match StreamId::new(ty.clone(), name.clone()) {
                _ if id.file_type()?.is_symlink() => {} // reported as a link
                Ok(stream) if id.file_type()?.is_dir() && !layout.events_file(&stream).is_symlink() => {
                    streams.push(stream)
                }
                Ok(_) if id.file_type()?.is_dir() => {} // its log is a link: reported as a link
                _ => strays.push(format!("{ty}/{name}")),
            }
        }
    }
    streams.sort();
    Ok((streams, strays))
}

/// The check of a whole store.
struct Checked {
    /// Per stream, sorted.
    reports: Vec<StreamReport>,
    /// (position, first stream, second stream) for positions held twice.
    duplicates: Vec<(u64, String, String)>,
    /// Directories under streams/ that are not valid stream ids.
    strays: Vec<String>,
}

/// Verifies every stream with a progress bar; also finds positions held by two streams.
fn verify_all(dir: &Path, out: &Out) -> Result<Checked> {
    let layout = StoreLayout::new(dir);
    let (streams, strays) = list_streams(&layout)?;
    let bar = out.bar(streams.len() as u64, "verifying");
    let mut reports = Vec::with_capacity(streams.len());
    let mut owners: HashMap<u64, StreamId> = HashMap::new();
    let mut duplicates = Vec::new();
    for stream in streams {
        let report = verify_stream(&layout, &stream).with_context(|| format!("checking {stream}"))?;
        let bytes = std::fs::read(&report.path).unwrap_or_default();
        for record in scan_log(&bytes, ScanStart::default()).records {
            if let Some(other) = owners.insert(record.pos, stream.clone()) {
                duplicates.push((record.pos, other.to_string(), stream.to_string()));
            }
        }
        reports.push(report);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(Checked { reports, duplicates, strays })
}

fn status_json(status: &StreamStatus) -> Value {
    match status {
        StreamStatus::Clean => json!({ "status": "clean" }),
        StreamStatus::TornTail { valid_len, torn_len } => {
            json!({ "status": "torn_tail", "valid_len": valid_len, "torn_len": torn_len })
        }
        StreamStatus::Corrupt { line, offset, reason } => {
            json!({ "status": "corrupt", "line": line, "offset": offset, "reason": reason })
        }
    }
}

fn status_text(report: &StreamReport) -> String {
    let path = report.path.display();
    match &report.status {
        StreamStatus::Clean => format!("ok       {:<36} {} events, {} bytes", report.stream.to_string(), report.events, report.bytes),
        StreamStatus::TornTail { valid_len, torn_len } => format!(
            "TORN     {:<36} {path}: last {torn_len} bytes after offset {valid_len} are an incomplete line (a writing open truncates them)",
            report.stream.to_string()
        ),
        StreamStatus::Corrupt { line, offset, reason } => format!(
            "CORRUPT  {:<36} {path}:{line} (byte offset {offset}): {reason}; {} valid events before it",
            report.stream.to_string(),
            report.events
        ),
    }
}

/// `evfold verify`.
pub fn verify(dir: &Path, out: &Out) -> Result<ExitCode> {
    store::require_existing(dir)?;
    let Checked { reports, duplicates, strays } = verify_all(dir, out)?;
    let links = evfold_native::verify::find_links(&StoreLayout::new(dir)).context("looking for symbolic links")?;
    let damaged = reports.iter().filter(|r| r.status != StreamStatus::Clean).count();
    let clean = damaged == 0 && duplicates.is_empty() && strays.is_empty() && links.is_empty();
    let events: u64 = reports.iter().map(|r| r.events).sum();
    out.emit(
        || {
            let mut text = String::new();
            for report in &reports {
                text.push_str(&status_text(report));
                text.push('\n');
            }
            for (pos, a, b) in &duplicates {
                text.push_str(&format!("DUPLICATE position {pos} in {a} and {b}\n"));
            }
            for stray in &strays {
                text.push_str(&format!("STRAY    {stray}: not a valid stream directory\n"));
            }
            for link in &links {
                text.push_str(&format!(
                    "LINK     {}: a symbolic link; the store never follows links (remove it, or move its target into the store)\n",
                    link.display()
                ));
            }
            let verdict = if clean { "clean" } else { "DAMAGED (see `evfold repair`)" };
            text.push_str(&format!("{} stream(s), {events} event(s), {damaged} damaged: {verdict}", reports.len()));
            text
        },
        || {
            let streams: Vec<Value> = reports
                .iter()
                .map(|r| {
                    let mut v = json!({ "stream": r.stream.to_string(), "path": r.path, "events": r.events, "bytes": r.bytes });
                    if let (Value::Object(m), Value::Object(s)) = (&mut v, status_json(&r.status)) {
                        m.extend(s);
                    }
                    v
                })
                .collect();
            json!({ "clean": clean, "events": events, "streams": streams, "duplicate_positions": duplicates, "strays": strays, "links": links })
        },
    );
    Ok(ExitCode::from(if clean { exit::OK } else { exit::CORRUPT }))
}

/// `evfold repair TYPE ID` or `evfold repair --all`.
pub fn repair(dir: &Path, args: RepairArgs, out: &Out) -> Result<ExitCode> {
    store::require_existing(dir)?;
    let targets = match (&args.aggregate_type, &args.id) {
        (Some(t), Some(id)) => vec![StreamId::new(t.clone(), id.clone()).context("invalid stream id")?],
        _ => verify_all(dir, out)?
            .reports
            .into_iter()
            .filter(|r| r.status != StreamStatus::Clean)
            .map(|r| r.stream)
            .collect(),
    };
    let mut results = Vec::new();
    let options = RepairOptions { keep_valid: args.keep_valid };
    for stream in &targets {
        let report = repair_stream_with(dir, stream, options).with_context(|| format!("repairing {stream}"))?;
        if !out.json {
            match &report.backup {
                Some(backup) => println!(
                    "repaired {stream}: kept {} events, cut {} bytes at offset {}, re-appended {}, dropped {} line(s), backup {}",
                    report.kept_events,
                    report.cut_bytes,
                    report.cut_at,
                    report.reappended,
                    report.dropped_lines,
                    backup.display()
                ),
                None => println!("{stream}: clean, nothing to cut ({} events)", report.kept_events),
            }
            if !report.rebuild_projections.is_empty() {
                println!(
                    "  projections that will rebuild at their next open: {}",
                    report.rebuild_projections.join(", ")
                );
            }
            if !report.rewound_process_managers.is_empty() {
                let names = report.rewound_process_managers.join(", ");
                println!("  process managers rewound to the repaired stream (state kept): {names}");
            }
            if let Some(snapshot) = &report.stale_snapshot {
                println!("  snapshot past the cut moved aside: {}", snapshot.display());
            }
        }
        results.push(json!({
            "stream": stream.to_string(), "kept_events": report.kept_events, "cut_at": report.cut_at,
            "cut_bytes": report.cut_bytes, "backup": report.backup, "reappended": report.reappended,
            "dropped_lines": report.dropped_lines, "settled_through": report.settled_through,
            "rebuild_projections": report.rebuild_projections,
            "rewound_process_managers": report.rewound_process_managers, "stale_snapshot": report.stale_snapshot,
        }));
    }
    if out.json {
        println!("{}", json!({ "repaired": results }));
    } else if targets.is_empty() {
        println!("nothing to repair");
    }
    if args.all {
        // Missing positions no writer settled (a writer died mid-append) stop nobody now.
        let through = settle_positions(dir).context("settling positions")?;
        if !out.json {
            println!("positions settled through {through}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
