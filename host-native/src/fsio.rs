//! Durable file primitives: directory fsync, durable directory creation, atomic replace
//! (temp + fsync + rename + dir fsync), and quarantining torn bytes before a truncation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::StoreError;

/// fsyncs a directory so that entries created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let file = File::open(dir).map_err(|e| StoreError::io(dir, e))?;
    file.sync_all().map_err(|e| StoreError::io(dir, e))
}

/// Creates `dir` and any missing parents, fsyncing the parent of every directory it created.
pub fn create_dir_durable(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durable(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(StoreError::io(dir, e)),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Replaces `path` with `bytes` atomically and durably: temp file, fsync, rename, dir fsync.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().expect("store files live in a directory");
    create_dir_durable(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| StoreError::io(&tmp, e))?;
    file.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
    sync_dir(dir)
}

/// Replaces `path` with `bytes` atomically but without forcing them to disk (temp file +
/// rename): readers see the old or the new content, never a mix; after a crash the file may
/// hold the old content, or (on file systems that reorder the rename before the data) be
/// unreadable. For caches whose loss only costs recomputation (projection checkpoints).
pub fn atomic_replace(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().expect("store files live in a directory");
    create_dir_durable(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).map_err(|e| StoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))
}

/// Appends one line to a JSONL side file (dead letters) and fsyncs it.
pub fn append_line_durable(path: &Path, line: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().expect("store files live in a directory");
    create_dir_durable(dir)?;
    let existed = path.exists();
    let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| StoreError::io(path, e))?;
    file.write_all(line).map_err(|e| StoreError::io(path, e))?;
    file.sync_data().map_err(|e| StoreError::io(path, e))?;
    if !existed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a whole file, `None` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Copies `bytes` (cut from `log` at `offset`) into a new file next to it, durably, and
/// returns its path. The name says where the bytes came from: `<log>.<tag>-<offset>[-n]`.
pub fn backup_cut(log: &Path, tag: &str, offset: u64, bytes: &[u8]) -> Result<std::path::PathBuf, StoreError> {
    let dir = log.parent().expect("logs live in a directory");
    let name = log.file_name().and_then(|n| n.to_str()).unwrap_or("events.jsonl");
    let mut n = 0;
    let path = loop {
        let suffix = if n == 0 { String::new() } else { format!("-{n}") };
        let candidate = dir.join(format!("{name}.{tag}-{offset}{suffix}"));
        if !candidate.exists() {
            break candidate;
        }
        n += 1;
    };
    let mut file = File::create_new(&path).map_err(|e| StoreError::io(&path, e))?;
    file.write_all(bytes).map_err(|e| StoreError::io(&path, e))?;
    file.sync_all().map_err(|e| StoreError::io(&path, e))?;
    sync_dir(dir)?;
    Ok(path)
}

/// Truncates `log` to `len` and fsyncs it.
pub fn truncate_durable(log: &Path, len: u64) -> Result<(), StoreError> {
    let file = OpenOptions::new().write(true).open(log).map_err(|e| StoreError::io(log, e))?;
    file.set_len(len).map_err(|e| StoreError::io(log, e))?;
    file.sync_all().map_err(|e| StoreError::io(log, e))
}
