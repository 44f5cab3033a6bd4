//! Where everything lives on disk: the store directory layout of the JSONL driver, and the
//! listing of the streams in it (links skipped, see [`crate::contained`]).

use std::path::{Path, PathBuf};

use evfold_core::StreamId;

use crate::contained::{self, Kind};
use crate::error::StoreError;

/// File name of a stream's log.
pub const EVENTS_FILE: &str = "events.jsonl";
/// File name of a stream's snapshot.
pub const SNAPSHOT_FILE: &str = "snapshot.json";
/// File name of a reader's checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";
/// File name of a process manager's dead letters.
pub const DEAD_LETTERS_FILE: &str = "dead_letters.jsonl";

/// The paths of one store (the root is resolved once, here: it may itself be a symbolic link,
/// the user's choice; nothing under it is ever followed):
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
    /// The layout of the store rooted at `root`, made absolute with every link in it resolved
    /// (those of its longest existing prefix, when it does not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StoreLayout { root: resolve(root.into()) }
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

/// `root` absolute, its longest existing prefix canonicalized (links resolved), the rest kept.
fn resolve(root: PathBuf) -> PathBuf {
    let absolute = std::path::absolute(&root).unwrap_or(root);
    let mut missing = Vec::new();
    let mut existing = absolute.as_path();
    loop {
        if let Ok(resolved) = existing.canonicalize() {
            return missing.iter().rev().fold(resolved, |path, name| path.join(name));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                existing = parent;
            }
            _ => return absolute,
        }
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

/// Every stream on disk (real directories holding a regular `events.jsonl`), sorted by type
/// then id. Directories whose names are not valid stream ids, and symbolic links (reported by
/// `verify`; every call naming such a stream is refused with [`StoreError::Link`]), are
/// skipped with a warning. `streams/` itself being a link is an error.
pub fn list_streams(layout: &StoreLayout, type_filter: Option<&str>) -> Result<Vec<StreamId>, StoreError> {
    let mut out = Vec::new();
    let Some(streams) = open_optional_dir(&layout.streams_dir())? else { return Ok(out) };
    let types = match type_filter {
        Some(t) => vec![t.to_owned()],
        None => sorted_dir_names(&streams)?,
    };
    for aggregate_type in types {
        let type_dir = match streams.child(aggregate_type.as_ref()) {
            Ok(dir) => dir,
            Err(e) if is_not_found(&e) => continue,
            Err(StoreError::Link { path }) => {
                tracing::warn!(path = %path.display(), "skipping a symbolic link in streams/");
                continue;
            }
            Err(e) => return Err(e),
        };
        for id in sorted_dir_names(&type_dir)? {
            match StreamId::new(aggregate_type.as_str(), id.as_str()) {
                Ok(stream) => match type_dir.child(id.as_ref()).and_then(|d| d.kind(EVENTS_FILE.as_ref())) {
                    Ok(Some(Kind::File)) => out.push(stream),
                    Ok(Some(Kind::Link)) | Err(StoreError::Link { .. }) => {
                        tracing::warn!(%stream, "skipping a stream whose log is a symbolic link")
                    }
                    Ok(_) => {}
                    Err(e) => return Err(e),
                },
                Err(reason) => {
                    tracing::warn!(%aggregate_type, %id, %reason, "skipping a directory that is not a stream")
                }
            }
        }
    }
    Ok(out)
}

/// Refuses a stream whose directory, log or snapshot is a symbolic link (before an actor or a
/// read touches it): a typed [`StoreError::Link`] naming the link.
pub fn check_contained(layout: &StoreLayout, stream: &StreamId) -> Result<(), StoreError> {
    let dir = match contained::open_dir(&layout.stream_dir(stream)) {
        Ok(dir) => dir,
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in [EVENTS_FILE, SNAPSHOT_FILE] {
        if dir.kind(name.as_ref())? == Some(Kind::Link) {
            return Err(StoreError::Link { path: dir.path().join(name) });
        }
    }
    Ok(())
}

/// Every symbolic link under the store root (nothing is followed), sorted: what `verify`
/// reports. The root itself may be a link (the user's choice) and is not reported.
pub fn find_links(layout: &StoreLayout) -> Result<Vec<PathBuf>, StoreError> {
    let mut links = Vec::new();
    let Some(root) = open_optional_dir(layout.root())? else { return Ok(links) };
    let mut pending = vec![root];
    while let Some(dir) = pending.pop() {
        for (name, kind) in dir.entries()? {
            match kind {
                Kind::Link => links.push(dir.path().join(&name)),
                Kind::Dir => pending.push(dir.child(&name)?),
                Kind::File | Kind::Other => {}
            }
        }
    }
    links.sort();
    Ok(links)
}

fn is_not_found(error: &StoreError) -> bool {
    matches!(error, StoreError::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound)
}

fn open_optional_dir(dir: &Path) -> Result<Option<contained::DirHandle>, StoreError> {
    match contained::open_dir(dir) {
        Ok(dir) => Ok(Some(dir)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The names of the real subdirectories of `dir`, sorted (links are skipped with a warning).
fn sorted_dir_names(dir: &contained::DirHandle) -> Result<Vec<String>, StoreError> {
    let mut names = Vec::new();
    for (name, kind) in dir.entries()? {
        match (kind, name.to_str()) {
            (Kind::Dir, Some(name)) => names.push(name.to_owned()),
            (Kind::Link, _) => {
                tracing::warn!(path = %dir.path().join(&name).display(), "skipping a symbolic link (see `evfold verify`)")
            }
            _ => {}
        }
    }
    names.sort();
    Ok(names)
}
