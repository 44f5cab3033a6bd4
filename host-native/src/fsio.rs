//! Durable file primitives, all through [`crate::contained`] (no symbolic link is ever
//! followed): durable directory creation, files whose directory entry is durable before they are
//! used, atomic replace (temp + fsync + rename + dir fsync), and quarantining torn bytes before a
//! truncation.
//!
//! Directory durability is tracked per process: a directory (or file) is known durable only
//! after this process fsynced its parent having seen it exist. Whoever finds it not known durable
//! fsyncs the parent itself, whether it created the entry or another thread (or a process that
//! died before its fsync) did, so no acknowledgement depends on another thread's pending fsync.
//! Opening a store for writing forgets what was known under its root.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};

use rustix::fs::OFlags;

use crate::config::Faults;
use crate::contained::{self, DirHandle};
use crate::error::StoreError;

/// Roots of the stores open for writing in this process, with their fault hooks.
static STORES: RwLock<Vec<(PathBuf, Weak<Faults>)>> = RwLock::new(Vec::new());
/// Paths whose directory entry this process made (or saw made) durable.
static DURABLE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn is_durable(path: &Path) -> bool {
    DURABLE.lock().expect("durable lock").as_ref().is_some_and(|set| set.contains(path))
}

fn set_durable(path: &Path, durable: bool) {
    let mut set = DURABLE.lock().expect("durable lock");
    let set = set.get_or_insert_with(HashSet::new);
    if durable {
        set.insert(path.to_owned());
    } else {
        set.remove(path);
    }
}

pub(crate) fn is_not_found(error: &StoreError) -> bool {
    matches!(error, StoreError::Io { error: source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// Creates the store root (and missing ancestors), makes its entry durable, registers the
/// store's fault hook, and forgets what this process knew to be durable under it (another
/// process may have changed it since). Called by every writing open.
pub(crate) fn open_root(root: &Path, faults: &Arc<Faults>) -> Result<(), StoreError> {
    {
        let mut stores = STORES.write().expect("stores lock");
        stores.retain(|(r, f)| r != root && f.strong_count() > 0);
        stores.push((root.to_owned(), Arc::downgrade(faults)));
    }
    if let Some(set) = DURABLE.lock().expect("durable lock").as_mut() {
        set.retain(|p| !p.starts_with(root));
    }
    let (parent, name) = contained::split(root)?;
    let parent_dir = ensure_dir(parent)?;
    let created = parent_dir.mkdir(name)?;
    parent_dir.child(name)?;
    match sync_handle(&parent_dir) {
        Ok(()) => {}
        // The user's own directory holds the root: without the right to open it there is
        // nothing this process can make durable, and the root was not created now.
        Err(StoreError::Io { error: source, .. })
            if !created && source.kind() == std::io::ErrorKind::PermissionDenied => {}
        Err(e) => return Err(e),
    }
    set_durable(root, true);
    Ok(())
}

/// The fault hook of the store `path` belongs to, and whether `path` is strictly inside it.
fn store_of(path: &Path) -> Option<(Option<Arc<Faults>>, bool)> {
    let stores = STORES.read().expect("stores lock");
    stores.iter().rev().find(|(root, _)| path.starts_with(root)).map(|(root, f)| (f.upgrade(), path != root))
}

fn sync_handle(dir: &DirHandle) -> Result<(), StoreError> {
    let faults = store_of(dir.path()).and_then(|(faults, _)| faults);
    if let Some(faults) = &faults {
        faults.before_dir_sync().map_err(|e| StoreError::io(dir.path(), e))?;
    }
    dir.sync()?;
    if let Some(faults) = &faults {
        faults.after_dir_sync(dir.path());
    }
    Ok(())
}

/// Opens directory `dir`, creating it and any missing parents (an empty parent is the current
/// directory); returns once every directory of the store on the way is durably linked in its
/// parent (see the module doc).
fn ensure_dir(dir: &Path) -> Result<DirHandle, StoreError> {
    if is_durable(dir) {
        match contained::open_dir(dir) {
            Ok(handle) => return Ok(handle),
            Err(e) if is_not_found(&e) => set_durable(dir, false),
            Err(e) => return Err(e),
        }
    }
    let Some(name) = dir.file_name() else { return contained::open_dir(dir) };
    let parent = ensure_dir(dir.parent().unwrap_or(Path::new("")))?;
    let created = parent.mkdir(name)?;
    let handle = parent.child(name)?;
    let inside_store = store_of(dir).is_some_and(|(_, inside)| inside);
    if created || inside_store {
        sync_handle(&parent)?;
        set_durable(dir, true);
    }
    Ok(handle)
}

/// Makes the entry of `path` (a file in `dir`) durable unless this process already did.
fn ensure_entry(dir: &DirHandle, path: &Path, created: bool) -> Result<(), StoreError> {
    if created || !is_durable(path) {
        set_durable(path, false);
        sync_handle(dir)?;
        set_durable(path, true);
    }
    Ok(())
}

/// Opens `path` for appending, creating it (and its directories) if missing; returns once its
/// directory entry is durable.
pub fn open_append(path: &Path) -> Result<File, StoreError> {
    let (dir, name) = contained::split(path)?;
    let dir = ensure_dir(dir)?;
    let (file, created) = match dir.open(name, OFlags::WRONLY | OFlags::APPEND) {
        Ok(file) => (file, false),
        Err(e) if is_not_found(&e) => match dir.open(name, OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE) {
            Ok(file) => (file, true),
            Err(e) => return Err(e),
        },
        Err(e) => return Err(e),
    };
    ensure_entry(&dir, path, created)?;
    Ok(file)
}

/// Opens `path` for reading (never through a link).
pub fn open_read(path: &Path) -> Result<File, StoreError> {
    contained::open_file(path, OFlags::RDONLY)
}

/// Opens (creating) the store's lock file for writing, never through a link.
pub fn open_lock(path: &Path) -> Result<File, StoreError> {
    contained::open_file(path, OFlags::WRONLY | OFlags::CREATE)
}

/// Replaces `path` with `bytes` atomically and durably: temp file, fsync, rename, dir fsync.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let (dir, name) = contained::split(path)?;
    let dir = ensure_dir(dir)?;
    let tmp = temp_name(name);
    let mut file = dir.open(&tmp, OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC)?;
    let tmp_path = dir.path().join(&tmp);
    file.write_all(bytes).map_err(|e| StoreError::io(&tmp_path, e))?;
    file.sync_all().map_err(|e| StoreError::io(&tmp_path, e))?;
    drop(file);
    dir.rename(&tmp, name)?;
    sync_handle(&dir)?;
    set_durable(path, true);
    Ok(())
}

fn temp_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(".tmp");
    tmp
}

/// Replaces `path` with `bytes` atomically but without forcing them to disk (temp file +
/// rename): readers see the old or the new content, never a mix; after a crash the file may
/// hold the old content, or (on file systems that reorder the rename before the data) be
/// unreadable. For caches whose loss only costs recomputation (projection checkpoints).
pub fn atomic_replace(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let (dir, name) = contained::split(path)?;
    let dir = ensure_dir(dir)?;
    let tmp = temp_name(name);
    let mut file = dir.open(&tmp, OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC)?;
    file.write_all(bytes).map_err(|e| StoreError::io(dir.path().join(&tmp), e))?;
    drop(file);
    dir.rename(&tmp, name)
}

/// Appends one line to a JSONL side file (dead letters) and fsyncs it.
pub fn append_line_durable(path: &Path, line: &[u8]) -> Result<(), StoreError> {
    let mut file = open_append(path)?;
    file.write_all(line).map_err(|e| StoreError::io(path, e))?;
    file.sync_data().map_err(|e| StoreError::io(path, e))
}

/// Reads a whole file, `None` if it (or its directory) does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let mut file = match open_read(path) {
        Ok(file) => file,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| StoreError::io(path, e))?;
    Ok(Some(bytes))
}

/// Copies `bytes` (cut from `log` at `offset`) into a new file next to it, durably, and
/// returns its path. The name says where the bytes came from: `<log>.<tag>-<offset>[-n]`.
pub fn backup_cut(log: &Path, tag: &str, offset: u64, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    let (dir, name) = contained::split(log)?;
    let dir = contained::open_dir(dir)?;
    let name = name.to_string_lossy();
    let mut n = 0;
    let (mut file, path) = loop {
        let suffix = if n == 0 { String::new() } else { format!("-{n}") };
        let candidate = format!("{name}.{tag}-{offset}{suffix}");
        match dir.open(candidate.as_ref(), OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL) {
            Ok(file) => break (file, dir.path().join(candidate)),
            Err(StoreError::Io { error: source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(e),
        }
    };
    file.write_all(bytes).map_err(|e| StoreError::io(&path, e))?;
    file.sync_all().map_err(|e| StoreError::io(&path, e))?;
    sync_handle(&dir)?;
    Ok(path)
}

/// Truncates `log` to `len` and fsyncs it.
pub fn truncate_durable(log: &Path, len: u64) -> Result<(), StoreError> {
    let file = contained::open_file(log, OFlags::WRONLY)?;
    file.set_len(len).map_err(|e| StoreError::io(log, e))?;
    file.sync_all().map_err(|e| StoreError::io(log, e))
}
