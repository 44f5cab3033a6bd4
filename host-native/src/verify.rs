//! Offline integrity tools the CLI calls: `verify_store` (CRC + structure check of every
//! stream, per-stream report, no lock needed) and `repair_stream` (explicit truncation at the
//! first bad line, backing up what it cuts; takes the store lock).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use evfold_core::{scan_log, LogEnd, ScanStart, StreamId};

use crate::error::StoreError;
use crate::fsio;
use crate::layout::{self, StoreLayout};
pub use crate::repair::RepairOptions;

pub use crate::layout::find_links;

/// How one stream's log ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStatus {
    /// Every line is valid.
    Clean,
    /// The last line is incomplete: a writer died mid-append (a writing open repairs this).
    TornTail {
        /// Bytes that are valid.
        valid_len: u64,
        /// Bytes after them.
        torn_len: u64,
    },
    /// A complete line is invalid: opening refuses this stream; `repair_stream` cuts here.
    Corrupt {
        /// 1-based line number.
        line: u64,
        /// Byte offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// The check of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReport {
    /// The stream.
    pub stream: StreamId,
    /// Its log.
    pub path: PathBuf,
    /// Valid events.
    pub events: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// `pos` of the last valid event.
    pub last_pos: Option<u64>,
    /// How it ends.
    pub status: StreamStatus,
}

/// The check of a whole store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Per stream, sorted.
    pub streams: Vec<StreamReport>,
    /// Positions held by two streams (should never happen).
    pub duplicate_positions: Vec<(u64, StreamId, StreamId)>,
    /// Symbolic links under the root, sorted. The store never follows one: a stream whose
    /// directory or log is a link is not in `streams` and every call on it is refused.
    pub links: Vec<PathBuf>,
}

impl VerifyReport {
    /// Whether every stream is clean, positions are unique and there is no link.
    pub fn is_clean(&self) -> bool {
        self.duplicate_positions.is_empty()
            && self.links.is_empty()
            && self.streams.iter().all(|s| s.status == StreamStatus::Clean)
    }

    /// Total valid events.
    pub fn events(&self) -> u64 {
        self.streams.iter().map(|s| s.events).sum()
    }
}

/// Checks every stream of the store at `dir` without taking its lock and without changing a
/// byte (a torn tail that a concurrent writer is producing may show up as `TornTail`).
pub fn verify_store(dir: impl AsRef<Path>) -> Result<VerifyReport, StoreError> {
    let layout = StoreLayout::new(dir.as_ref());
    if !layout.root().is_dir() {
        return Err(StoreError::io(layout.root(), std::io::ErrorKind::NotFound.into()));
    }
    let mut report = VerifyReport { links: layout::find_links(&layout)?, ..VerifyReport::default() };
    let mut seen: HashMap<u64, StreamId> = HashMap::new();
    let streams = match layout::list_streams(&layout, None) {
        // `streams/` itself is a link: reported, and no stream is read through it.
        Err(StoreError::Link { path }) if report.links.contains(&path) => Vec::new(),
        other => other?,
    };
    for stream in streams {
        let stream_report = verify_stream(&layout, &stream)?;
        let bytes = fsio::read_optional(&stream_report.path)?.unwrap_or_default();
        let scan = scan_log(&bytes, ScanStart::default());
        for record in &scan.records {
            if let Some(other) = seen.insert(record.pos, stream.clone()) {
                report.duplicate_positions.push((record.pos, other, stream.clone()));
            }
        }
        report.streams.push(stream_report);
    }
    Ok(report)
}

/// Checks one stream (a stream whose log is a symbolic link is refused: [`StoreError::Link`]).
pub fn verify_stream(layout: &StoreLayout, stream: &StreamId) -> Result<StreamReport, StoreError> {
    let path = layout.events_file(stream);
    let bytes = fsio::read_optional(&path)?.unwrap_or_default();
    let scan = scan_log(&bytes, ScanStart::default());
    let status = match scan.end {
        LogEnd::Clean => StreamStatus::Clean,
        LogEnd::Torn { valid_len, torn_len } => StreamStatus::TornTail { valid_len, torn_len },
        // Recoverable: the next writer open (or `repair`) writes the newline back.
        LogEnd::MissingNewline { line_end } => StreamStatus::TornTail { valid_len: line_end, torn_len: 0 },
        LogEnd::Corrupt { line, offset, error } => StreamStatus::Corrupt { line, offset, reason: error.to_string() },
    };
    Ok(StreamReport {
        stream: stream.clone(),
        path,
        events: scan.records.len() as u64,
        bytes: bytes.len() as u64,
        last_pos: scan.records.last().map(|r| r.pos),
        status,
    })
}

/// What `repair_stream` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// The stream.
    pub stream: StreamId,
    /// Events kept in place (before the first bad line).
    pub kept_events: u64,
    /// Offset the log was cut at.
    pub cut_at: u64,
    /// Bytes removed.
    pub cut_bytes: u64,
    /// Where the removed bytes were saved (`None` if nothing was cut).
    pub backup: Option<PathBuf>,
    /// Valid events from after the bad line appended again (`keep_valid`), ids kept.
    pub reappended: u64,
    /// Cut lines not put back (bad ones; with `keep_valid` off, every cut line).
    pub dropped_lines: u64,
    /// The store's settled mark after the repair: no position at or below it is missing
    /// for good reason or ever handed out again.
    pub settled_through: u64,
    /// Projections whose checkpoint had folded a cut event: moved aside, they rebuild.
    pub rebuild_projections: Vec<String>,
    /// Process managers whose cursor on this stream was rewound (their state is kept).
    pub rewound_process_managers: Vec<String>,
    /// The stream's snapshot, moved aside because it included cut events.
    pub stale_snapshot: Option<PathBuf>,
}

/// Truncates one stream's log at its first bad line, saving the cut bytes next to it as
/// `events.jsonl.repair-<offset>`. Takes the store lock: refuses while a writer has the store
/// open. Events after the bad line are cut too (they stay in the backup): this is the explicit
/// choice `verify` reports and opening never makes on its own. See [`repair_stream_with`].
pub fn repair_stream(dir: impl AsRef<Path>, stream: &StreamId) -> Result<RepairReport, StoreError> {
    repair_stream_with(dir, stream, RepairOptions::default())
}

/// [`repair_stream`] with options: `keep_valid` re-appends the valid events found after the
/// bad line (same ids). Either way the positions the cut leaves missing are settled
/// (`settled.json`), projection checkpoints past the cut are moved aside (they rebuild),
/// process-manager cursors on the stream are rewound, and a snapshot past the cut is moved aside.
pub fn repair_stream_with(
    dir: impl AsRef<Path>,
    stream: &StreamId,
    options: RepairOptions,
) -> Result<RepairReport, StoreError> {
    let layout = StoreLayout::new(dir.as_ref());
    let _lock = crate::repair::lock(&layout)?;
    crate::repair::repair_locked(&layout, stream, options)
}
