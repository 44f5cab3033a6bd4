//! The durable "settled through" mark (`settled.json` in the store root): every position at or
//! below it is final, either in a log or a hole that nothing will ever fill. It is how a
//! read-only process (which cannot see a writer's allocations) tells a permanent hole from an
//! append still in flight, and it keeps positions from being handed out twice after `repair`.
//!
//! Written only by a process holding the store lock: a writer when its first full scan finds
//! holes (everything it found is final: no other writer is alive), a writer whose failed append
//! left holes (once its own watermark passes them), and `repair` (the highest position any log
//! or checkpoint ever held, cut lines included). The mark only rises. Temp file + fsync + rename
//! + directory fsync, so a reader sees the old mark or the new one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::fsio;

/// The file's name in the store root.
pub const SETTLED_FILE: &str = "settled.json";

#[derive(Serialize, Deserialize)]
struct Mark {
    settled_through: u64,
}

/// The mark's path for a store root.
pub fn path(root: &Path) -> PathBuf {
    root.join(SETTLED_FILE)
}

/// The mark (0 when the file does not exist: nothing was ever settled explicitly).
pub fn read(path: &Path) -> Result<u64, StoreError> {
    let Some(bytes) = fsio::read_optional(path)? else { return Ok(0) };
    let mark: Mark = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::Decode { path: path.to_owned(), reason: e.to_string() })?;
    Ok(mark.settled_through)
}

/// Raises the mark to `through` (no-op if it is already there or higher). Caller holds the lock.
pub fn raise(path: &Path, through: u64) -> Result<u64, StoreError> {
    let current = read(path).unwrap_or(0);
    if through <= current {
        return Ok(current);
    }
    let bytes = serde_json::to_vec(&Mark { settled_through: through }).expect("a mark serializes");
    fsio::atomic_write(path, &bytes)?;
    tracing::info!(path = %path.display(), through, "positions settled");
    Ok(through)
}
