//! One stream's JSONL log on disk: load with recovery (torn tail quarantined and truncated,
//! corruption refused with file/line/offset), and random access to one record by byte offset.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use evfold_core::{decode_line, scan_log, EventRecord, LogEnd, ScanStart};

use crate::error::StoreError;
use crate::fsio;

/// What to do with a torn last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornTail {
    /// Writer mode: copy the torn bytes to `events.jsonl.torn-<offset>`, truncate, fsync.
    Quarantine,
    /// Reader mode: ignore it (another process may be writing it right now).
    Ignore,
}

/// The valid records of a log, with the byte offset of each.
#[derive(Debug, Default)]
pub struct LoadedLog {
    /// Records in order.
    pub records: Vec<EventRecord>,
    /// Byte offset of each record's line.
    pub offsets: Vec<u64>,
    /// Length of the valid prefix (the file length after recovery).
    pub len: u64,
}

/// Loads a log (`None` if the file does not exist), recovering or refusing as the design says.
pub fn load(path: &Path, torn: TornTail) -> Result<Option<LoadedLog>, StoreError> {
    let Some(bytes) = fsio::read_optional(path)? else { return Ok(None) };
    let scan = scan_log(&bytes, ScanStart::default());
    match scan.end {
        LogEnd::Clean => {}
        LogEnd::Torn { valid_len, torn_len } => {
            if torn == TornTail::Quarantine {
                let cut = &bytes[valid_len as usize..];
                let backup = fsio::backup_cut(path, "torn", valid_len, cut)?;
                fsio::truncate_durable(path, valid_len)?;
                tracing::warn!(path = %path.display(), valid_len, torn_len, backup = %backup.display(),
                    "torn tail quarantined and truncated");
            }
        }
        LogEnd::Corrupt { line, offset, error } => {
            return Err(StoreError::Corrupt { path: path.to_owned(), line, offset, reason: error.to_string() });
        }
    }
    let offsets = line_offsets(&bytes[..scan.valid_len as usize]);
    debug_assert_eq!(offsets.len(), scan.records.len());
    Ok(Some(LoadedLog { records: scan.records, offsets, len: scan.valid_len }))
}

/// Start offsets of the complete lines in `bytes`.
fn line_offsets(bytes: &[u8]) -> Vec<u64> {
    let mut offsets = Vec::new();
    let mut start = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            offsets.push(start);
            start = i as u64 + 1;
        }
    }
    offsets
}

/// Reads and verifies the record whose line starts at `offset`.
pub fn read_record_at(file: &File, path: &Path, offset: u64) -> Result<EventRecord, StoreError> {
    let mut buf = vec![0u8; 1024];
    let mut filled = 0usize;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = file.read_at(&mut buf[filled..], offset + filled as u64).map_err(|e| StoreError::io(path, e))?;
        if let Some(nl) = buf[filled..filled + n].iter().position(|b| *b == b'\n') {
            let line = &buf[..filled + nl];
            return decode_line(line).map_err(|e| StoreError::Corrupt {
                path: path.to_owned(),
                line: 0,
                offset,
                reason: e.to_string(),
            });
        }
        if n == 0 {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                line: 0,
                offset,
                reason: "indexed line has no end".into(),
            });
        }
        filled += n;
    }
}
