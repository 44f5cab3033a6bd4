//! Where everything lives on disk: the store directory layout of the JSONL driver.

use std::path::{Path, PathBuf};

use evfold_core::StreamId;

use crate::error::StoreError;

/// File name of a stream's log.
pub const EVENTS_FILE: &str = "events.jsonl";
/// File name of a stream's snapshot.
pub const SNAPSHOT_FILE: &str = "snapshot.json";
/// File name of a reader's checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// File name of a process manager's dead letters.
pub const DEAD_LETTERS_FILE: &str = "dead_letters.jsonl";

/// The paths of one store:
/// ```text
/// <root>/LOCK
/// <root>/streams/<type>/<id>/events.jsonl
/// <root>/streams/<type>/<id>/snapshot.json
/// <root>/projections/<name>/checkpoint.json
/// <root>/process_managers/<name>/{checkpoint.json,dead_letters.jsonl}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLayout {
    root: PathBuf,
}

impl StoreLayout {
    /// The layout of the store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StoreLayout { root: root.into() }
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The lock file.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("LOCK")
    }

    /// The directory holding every stream.
    pub fn streams_dir(&self) -> PathBuf {
        self.root.join("streams")
    }

    /// The directory of one aggregate type.
    pub fn type_dir(&self, aggregate_type: &str) -> PathBuf {
        self.streams_dir().join(aggregate_type)
    }

    /// The directory of one stream.
    pub fn stream_dir(&self, stream: &StreamId) -> PathBuf {
        self.type_dir(stream.aggregate_type()).join(stream.instance_id())
    }

    /// A stream's log.
    pub fn events_file(&self, stream: &StreamId) -> PathBuf {
        self.stream_dir(stream).join(EVENTS_FILE)
    }

    /// A stream's snapshot.
    pub fn snapshot_file(&self, stream: &StreamId) -> PathBuf {
        self.stream_dir(stream).join(SNAPSHOT_FILE)
    }

    /// The directory of one projection.
    pub fn projection_dir(&self, name: &str) -> PathBuf {
        self.root.join("projections").join(name)
    }

    /// The directory of one process manager.
    pub fn process_manager_dir(&self, name: &str) -> PathBuf {
        self.root.join("process_managers").join(name)
    }

    /// A process manager's dead-letter log.
    pub fn dead_letters_file(&self, name: &str) -> PathBuf {
        self.process_manager_dir(name).join(DEAD_LETTERS_FILE)
    }
}

/// Validates a stream id before any path is built from it.
pub fn stream_id(aggregate_type: &str, instance_id: &str) -> Result<StreamId, StoreError> {
    StreamId::new(aggregate_type, instance_id).map_err(|reason| StoreError::InvalidStreamId {
        aggregate_type: aggregate_type.to_owned(),
        instance_id: instance_id.to_owned(),
        reason,
    })
}

/// Every stream on disk (directories holding an `events.jsonl`), sorted by type then id.
/// Directories whose names are not valid stream ids are skipped with a warning.
pub fn list_streams(layout: &StoreLayout, type_filter: Option<&str>) -> Result<Vec<StreamId>, StoreError> {
    let mut out = Vec::new();
    let types = match type_filter {
        Some(t) => vec![t.to_owned()],
        None => sorted_dir_names(&layout.streams_dir())?,
    };
    for aggregate_type in types {
        for id in sorted_dir_names(&layout.type_dir(&aggregate_type))? {
            match StreamId::new(aggregate_type.as_str(), id.as_str()) {
                Ok(stream) if layout.events_file(&stream).is_file() => out.push(stream),
                Ok(_) => {}
                Err(reason) => {
                    tracing::warn!(%aggregate_type, %id, %reason, "skipping a directory that is not a stream")
                }
            }
        }
    }
    Ok(out)
}

fn sorted_dir_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        if entry.file_type().map_err(|e| StoreError::io(entry.path(), e))?.is_dir() {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}
