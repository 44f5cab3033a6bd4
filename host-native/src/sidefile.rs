//! Append-only JSONL side files (a process manager's `dead_letters.jsonl`): the event logs'
//! torn-tail rules without the CRC. Each append is one line, fsynced before it counts.
//!
//! - The bytes after the last newline are a torn write: cut away (quarantined next to the file
//!   as `<file>.torn-<offset>`) before the next append, so a new line is never glued to a
//!   fragment, and ignored by readers. If they are one complete JSON value, only the newline
//!   is missing: it is written back instead, and the line kept.
//! - A complete line holding NUL bytes that are holes (see `evfold_core::scan_log`, rule 4)
//!   is a torn write when nothing but holes and newlines follows it; it is cut the same way.
//! - Any other complete line that does not decode is corruption: every read of the file is
//!   refused with [`StoreError::Corrupt`] (path, line, offset); nothing is skipped. A new line
//!   is still appended after it (so no later letter is lost while the file waits for repair).

use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::fsio;
use crate::log::TornTail;

/// How a side file ends, from its bytes.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Every byte belongs to a complete line.
    Clean,
    /// A complete last value lacks its newline, which belongs at this offset.
    MissingNewline(u64),
    /// The bytes from this offset on are a torn write.
    Torn(u64),
}

/// The complete lines of a side file (as byte ranges) and how it ends, or where it is corrupt.
fn scan<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<(Vec<T>, End), StoreError> {
    let mut values = Vec::new();
    let mut at = 0usize;
    let mut line = 1u64;
    let corrupt = |line: u64, offset: usize, reason: String| StoreError::Corrupt {
        path: path.to_owned(),
        line,
        offset: offset as u64,
        reason,
    };
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
            let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
            let Some(Ok(value)) = stream.next() else { return Ok((values, End::Torn(at as u64))) };
            let end = at + stream.byte_offset();
            let after = &bytes[end..];
            // A complete value: only its newline may be missing (or lie in a hole to the end).
            if !(after.is_empty()
                || after[0] == 0 && evfold_core::nul_runs_are_holes(after, end as u64, bytes.len() as u64))
            {
                return Err(corrupt(line, at, format!("byte {:#04x} where the line's newline belongs", after[0])));
            }
            values.push(value);
            return Ok((values, End::MissingNewline(end as u64)));
        };
        let text = &rest[..nl];
        if text.contains(&0) {
            // Torn only if this is the last line with content and its NULs are holes.
            let last = rest[nl..].iter().all(|b| *b == 0 || *b == b'\n');
            if last && evfold_core::nul_runs_are_holes(rest, at as u64, bytes.len() as u64) {
                return Ok((values, End::Torn(at as u64)));
            }
            return Err(corrupt(line, at, "NUL bytes in a complete line".into()));
        }
        let value = serde_json::from_slice(text).map_err(|e| corrupt(line, at, e.to_string()))?;
        values.push(value);
        at += nl + 1;
        line += 1;
    }
    Ok((values, End::Clean))
}

/// Every value of a side file (none if it does not exist). With [`TornTail::Quarantine`] (the
/// file's only writer) a torn tail is cut away and a missing newline restored, durably.
pub(crate) fn read_values<T: DeserializeOwned>(path: &Path, torn: TornTail) -> Result<Vec<T>, StoreError> {
    let Some(bytes) = fsio::read_optional(path)? else { return Ok(Vec::new()) };
    let (values, end) = scan(path, &bytes)?;
    if torn == TornTail::Quarantine {
        match end {
            End::Clean => {}
            End::MissingNewline(at) => {
                if (at as usize) < bytes.len() {
                    fsio::backup_cut(path, "torn", at, &bytes[at as usize..])?;
                    fsio::truncate_durable(path, at)?;
                }
                let file = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| StoreError::io(path, e))?;
                file.write_all_at(b"\n", at).map_err(|e| StoreError::io(path, e))?;
                file.sync_data().map_err(|e| StoreError::io(path, e))?;
                tracing::warn!(path = %path.display(), at, "side file: missing newline restored");
            }
            End::Torn(at) => {
                let backup = fsio::backup_cut(path, "torn", at, &bytes[at as usize..])?;
                fsio::truncate_durable(path, at)?;
                tracing::warn!(path = %path.display(), at, backup = %backup.display(), "side file: torn tail quarantined");
            }
        }
    }
    Ok(values)
}

/// Appends one line (ending in a newline) durably, after making sure the file ends cleanly:
/// a torn tail is cut away first, a corrupt file refused. `T` is the type of its lines.
pub(crate) fn append_line<T: DeserializeOwned>(path: &Path, line: &[u8]) -> Result<(), StoreError> {
    debug_assert_eq!(line.last(), Some(&b'\n'));
    if !ends_cleanly(path)? {
        read_values::<T>(path, TornTail::Quarantine)?;
    }
    fsio::append_line_durable(path, line)
}

/// Cheap check before an append: the file is missing or empty, or ends in a newline with no NUL
/// in its last 64 KiB (the common case; anything else gets the full scan).
fn ends_cleanly(path: &Path) -> Result<bool, StoreError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    if len == 0 {
        return Ok(true);
    }
    let from = len.saturating_sub(64 * 1024);
    let mut tail = vec![0u8; (len - from) as usize];
    file.read_exact_at(&mut tail, from).map_err(|e| StoreError::io(path, e))?;
    Ok(tail.last() == Some(&b'\n') && !tail.contains(&0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead_letters.jsonl");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn a_torn_last_line_is_cut_before_the_next_append() {
        let (_dir, path) = write(b"{\"a\":1}\n{\"a\":");
        append_line::<serde_json::Value>(&path, b"{\"a\":2}\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\":1}\n{\"a\":2}\n");
        assert!(path.with_file_name("dead_letters.jsonl.torn-8").exists(), "the fragment is kept aside");
    }

    #[test]
    fn a_complete_value_missing_its_newline_is_kept() {
        let (_dir, path) = write(b"{\"a\":1}\n{\"a\":2}");
        append_line::<serde_json::Value>(&path, b"{\"a\":3}\n").unwrap();
        let values: Vec<serde_json::Value> = read_values(&path, TornTail::Ignore).unwrap();
        assert_eq!(values.len(), 3);
    }

    #[test]
    fn a_corrupt_complete_line_is_refused_not_dropped() {
        let (_dir, path) = write(b"{\"a\":1}\n{\"a\":#}\n{\"a\":3}\n");
        let err = read_values::<serde_json::Value>(&path, TornTail::Quarantine).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { line: 2, offset: 8, .. }), "{err}");
        // A later letter is still kept (appended after the damage), and reads stay refused.
        append_line::<serde_json::Value>(&path, b"{\"a\":4}\n").unwrap();
        assert!(read_values::<serde_json::Value>(&path, TornTail::Ignore).is_err());
        // Nor is a bit flip of the last line's newline a torn tail.
        let (_dir, path) = write(b"{\"a\":1}\n{\"a\":2}\x0b");
        let err = read_values::<serde_json::Value>(&path, TornTail::Quarantine).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { line: 2, offset: 8, .. }), "{err}");
    }
}
