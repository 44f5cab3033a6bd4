//! `repair_stream`'s work, under the store lock: cut one log at its first bad line (backing up
//! every byte cut), optionally re-append the valid events after it (same ids, new `seq` and
//! `pos`), settle every position the cut left missing (`settled.json`, so no reader stops at
//! them and no writer hands them out again), and bring readers in line with the shorter log:
//! a projection checkpoint that folded a cut event is moved aside (the projection rebuilds from
//! the logs at its next open), a process-manager checkpoint keeps its state (its commands were
//! dispatched) with the stream's cursor rewound to what the log holds now, and a snapshot past
//! the cut is moved aside.

use std::path::{Path, PathBuf};

use evfold_core::{
    decode_line, encode_line_into, line_continues, scan_log, Checkpoint, EventRecord, LogEnd, ScanStart, StreamId,
};

use crate::error::StoreError;
use crate::fsio;
use crate::layout::{self, StoreLayout, CHECKPOINT_FILE};
use crate::settled;
use crate::verify::RepairReport;

/// Choices of [`crate::repair_stream_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairOptions {
    /// Re-append the valid events found after the first bad line (ids, types, data, timestamps
    /// and metadata kept; new `seq` and `pos`). Off: they are cut with the bad line (and stay in
    /// the backup).
    pub keep_valid: bool,
}

/// Takes the store lock (refused while a writer has the store open).
pub(crate) fn lock(layout: &StoreLayout) -> Result<std::fs::File, StoreError> {
    let lock_path = layout.lock_file();
    let lock = fsio::open_lock(&lock_path)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::LockHeld { path: lock_path }),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io(&lock_path, e)),
    }
}

/// Under the store lock, marks every position up to the highest one any log or checkpoint
/// holds as settled (a missing one can no longer be in flight: no writer is alive). What a
/// writer's first scan does, for a store no writer will open soon. Returns the mark.
pub fn settle_positions(dir: impl AsRef<Path>) -> Result<u64, StoreError> {
    let layout = StoreLayout::new(dir.as_ref());
    let _lock = lock(&layout)?;
    let mark_path = settled::path(layout.root());
    settled::raise(&mark_path, highest_position(&layout)?)
}

/// See the module doc. The caller holds the store lock.
pub(crate) fn repair_locked(
    layout: &StoreLayout,
    stream: &StreamId,
    options: RepairOptions,
) -> Result<RepairReport, StoreError> {
    let path = layout.events_file(stream);
    let bytes =
        fsio::read_optional(&path)?.ok_or_else(|| StoreError::io(&path, std::io::ErrorKind::NotFound.into()))?;
    let scan = scan_log(&bytes, ScanStart::default());
    let kept_events = scan.records.len() as u64;
    let mut report = RepairReport {
        stream: stream.clone(),
        kept_events,
        cut_at: scan.valid_len,
        cut_bytes: 0,
        backup: None,
        reappended: 0,
        dropped_lines: 0,
        settled_through: 0,
        rebuild_projections: Vec::new(),
        rewound_process_managers: Vec::new(),
        stale_snapshot: None,
    };
    if let LogEnd::MissingNewline { line_end } = scan.end {
        // A complete, CRC-valid last line missing only its newline: restore it, cut nothing.
        crate::log::restore_newline(&path, &bytes, line_end)?;
        return Ok(report);
    }
    let cut = &bytes[scan.valid_len as usize..];
    let (valid_after, dropped, cut_positions) = salvage(cut);
    if !cut.is_empty() {
        let backup = fsio::backup_cut(&path, "repair", scan.valid_len, cut)?;
        fsio::truncate_durable(&path, scan.valid_len)?;
        tracing::warn!(stream = %stream, cut_at = scan.valid_len, cut_bytes = cut.len(), backup = %backup.display(), "stream repaired");
        report.cut_bytes = cut.len() as u64;
        report.backup = Some(backup);
    }
    // Every position any log or checkpoint ever held is final from now on.
    let mark_path = settled::path(layout.root());
    let mut through = settled::read(&mark_path).unwrap_or(0).max(highest_position(layout)?);
    through = through.max(cut_positions);
    through = settled::raise(&mark_path, through)?;
    let keep: Vec<EventRecord> = if options.keep_valid { valid_after } else { Vec::new() };
    report.dropped_lines = if options.keep_valid { dropped } else { cut_lines(cut) };
    if !keep.is_empty() {
        through = reappend(&path, kept_events, through, &keep)?;
        through = settled::raise(&mark_path, through)?;
        report.reappended = keep.len() as u64;
    }
    report.settled_through = through;
    if !cut.is_empty() {
        let kept_seqs: Vec<u64> = keep.iter().map(|r| r.seq).collect();
        fix_readers(layout, stream, kept_events, &kept_seqs, &mut report)?;
        report.stale_snapshot = stale_snapshot(layout, stream, kept_events)?;
    }
    Ok(report)
}

/// Lines of `cut` (complete or not).
fn cut_lines(cut: &[u8]) -> u64 {
    cut.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64
}

/// The valid events among the cut lines (an append left incomplete at the end is not one),
/// how many lines are dropped, and the highest `pos` any cut line names (read leniently from
/// bad lines too, so it is never handed out again).
fn salvage(cut: &[u8]) -> (Vec<EventRecord>, u64, u64) {
    let mut valid: Vec<(EventRecord, bool)> = Vec::new();
    let (mut dropped, mut highest) = (0u64, 0u64);
    let mut rest = cut;
    while !rest.is_empty() {
        let (line, complete) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], true),
            None => (rest, false),
        };
        rest = if complete { &rest[line.len() + 1..] } else { &[] };
        highest = highest.max(lenient_pos(line));
        match decode_line(line) {
            Ok(record) if complete => valid.push((record, line_continues(line))),
            _ => dropped += 1,
        }
    }
    // An append whose last line says "more" never completed (never acknowledged).
    while valid.last().is_some_and(|(_, more)| *more) {
        valid.pop();
        dropped += 1;
    }
    (valid.into_iter().map(|(r, _)| r).collect(), dropped, highest)
}

/// The number after `"pos":` in a line, however damaged the rest is (0 if none).
fn lenient_pos(line: &[u8]) -> u64 {
    let key = b"\"pos\":";
    let Some(at) = line.windows(key.len()).position(|w| w == key) else { return 0 };
    let digits = line[at + key.len()..].iter().take_while(|b| b.is_ascii_digit());
    digits.fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0')))
}

/// The highest `pos` in any log's valid lines and in any reader checkpoint.
fn highest_position(layout: &StoreLayout) -> Result<u64, StoreError> {
    let mut highest = 0;
    for stream in layout::list_streams(layout, None)? {
        let bytes = fsio::read_optional(&layout.events_file(&stream))?.unwrap_or_default();
        let scan = scan_log(&bytes, ScanStart::default());
        highest = scan.records.iter().map(|r| r.pos).fold(highest, u64::max);
    }
    for (_, _, checkpoint) in checkpoints(layout)? {
        highest = highest.max(checkpoint.position.0.as_u64().unwrap_or(0));
    }
    Ok(highest)
}

/// Appends `records` as events `kept + 1 ..` at positions after `through`, fsynced; returns the
/// last position used.
fn reappend(path: &Path, kept: u64, through: u64, records: &[EventRecord]) -> Result<u64, StoreError> {
    use std::io::Write;
    let mut bytes = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let moved = EventRecord { seq: kept + 1 + i as u64, pos: through + 1 + i as u64, ..record.clone() };
        encode_line_into(&mut bytes, &moved, false);
    }
    let mut file = fsio::open_append(path)?;
    file.write_all(&bytes).map_err(|e| StoreError::io(path, e))?;
    file.sync_data().map_err(|e| StoreError::io(path, e))?;
    Ok(through + records.len() as u64)
}

/// (kind, name, checkpoint) of every reader with a readable checkpoint.
fn checkpoints(layout: &StoreLayout) -> Result<Vec<(&'static str, String, Checkpoint)>, StoreError> {
    let mut out = Vec::new();
    for (kind, dir) in [("projections", "projections"), ("process_managers", "process_managers")] {
        let Ok(entries) = std::fs::read_dir(layout.root().join(dir)) else { continue };
        let mut names: Vec<String> = entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
        names.sort();
        for name in names {
            let path = layout.root().join(dir).join(&name).join(CHECKPOINT_FILE);
            let Some(bytes) = fsio::read_optional(&path)? else { continue };
            if let Ok(checkpoint) = serde_json::from_slice::<Checkpoint>(&bytes) {
                out.push((kind, name, checkpoint));
            }
        }
    }
    Ok(out)
}

/// Projections that folded a cut event lose their checkpoint (moved aside: they rebuild);
/// process managers keep theirs with the stream's cursor rewound to the events it still
/// saw (`kept` plus the re-appended ones whose original `seq` it had passed).
fn fix_readers(
    layout: &StoreLayout,
    stream: &StreamId,
    kept: u64,
    reappended_seqs: &[u64],
    report: &mut RepairReport,
) -> Result<(), StoreError> {
    let key = stream.to_string();
    for (kind, name, mut checkpoint) in checkpoints(layout)? {
        let Some(cursor) = checkpoint.cursors.get(&key).copied() else { continue };
        if cursor <= kept {
            continue;
        }
        let path = layout.root().join(kind).join(&name).join(CHECKPOINT_FILE);
        if kind == "projections" {
            move_aside(&path)?;
            report.rebuild_projections.push(name);
        } else {
            let rewound = kept + reappended_seqs.iter().filter(|seq| **seq <= cursor).count() as u64;
            checkpoint.cursors.insert(key.clone(), rewound);
            fsio::atomic_write(&path, &serde_json::to_vec(&checkpoint).expect("a checkpoint serializes"))?;
            report.rewound_process_managers.push(name);
        }
    }
    Ok(())
}

/// Moves a stream's snapshot aside when it includes cut events; returns where it went.
fn stale_snapshot(layout: &StoreLayout, stream: &StreamId, kept: u64) -> Result<Option<PathBuf>, StoreError> {
    let path = layout.snapshot_file(stream);
    let Some(bytes) = fsio::read_optional(&path)? else { return Ok(None) };
    let seq = serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|v| v.get("seq")?.as_u64());
    if seq.is_some_and(|seq| seq <= kept) {
        return Ok(None);
    }
    move_aside(&path).map(Some)
}

/// Copies a file to `<file>.repair-0[-n]` durably, then removes it (and fsyncs its directory).
fn move_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let bytes = fsio::read_optional(path)?.unwrap_or_default();
    let backup = fsio::backup_cut(path, "repair", 0, &bytes)?;
    std::fs::remove_file(path).map_err(|e| StoreError::io(path, e))?;
    crate::contained::open_dir(path.parent().expect("in a directory"))?.sync()?;
    Ok(backup)
}
