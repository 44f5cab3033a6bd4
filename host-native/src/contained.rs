//! File access that never follows a symbolic link: every path is opened by walking its
//! components one directory handle at a time (`openat` with `O_NOFOLLOW`), so a link planted
//! anywhere (a log, a snapshot, a stream directory, `streams/` itself) is refused with
//! [`StoreError::Link`] naming it, and a directory swapped for a link between two calls cannot
//! redirect a call (each step is relative to the handle the previous step opened, with no
//! path re-resolved). Store roots are resolved once when the layout is made (see
//! `StoreLayout::new`), so links the user chose above the root are not on the paths walked.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;

use crate::error::StoreError;

/// Flags of the intermediate steps of a walk: a handle that only names a directory.
#[cfg(any(target_os = "linux", target_os = "android"))]
const STEP: OFlags = OFlags::PATH;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const STEP: OFlags = OFlags::RDONLY;

/// An open directory handle and its path (for messages).
pub(crate) struct DirHandle {
    fd: OwnedFd,
    path: PathBuf,
}

/// What an entry of a directory is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link.
    Link,
    /// Anything else (fifo, socket, device).
    Other,
}

impl Kind {
    fn of(file_type: FileType) -> Kind {
        match file_type {
            FileType::Directory => Kind::Dir,
            FileType::RegularFile => Kind::File,
            FileType::Symlink => Kind::Link,
            _ => Kind::Other,
        }
    }
}

/// Opens directory `dir` without following a link at any step below `/` (or below the current
/// directory, for a relative path; an empty path is the current directory).
pub(crate) fn open_dir(dir: &Path) -> Result<DirHandle, StoreError> {
    let absolute = dir.has_root();
    let start = if absolute { "/" } else { "." };
    let fd = rustix::fs::openat(CWD, start, STEP | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| StoreError::io(start, e.into()))?;
    let mut handle = DirHandle { fd, path: PathBuf::from(if absolute { "/" } else { "" }) };
    for component in dir.components() {
        match component {
            Component::Normal(name) => handle = handle.child(name)?,
            Component::ParentDir => handle = handle.child(OsStr::new(".."))?,
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(handle)
}

/// Splits a file path into its directory (empty for a bare name) and its name.
pub(crate) fn split(path: &Path) -> Result<(&Path, &OsStr), StoreError> {
    let name = path.file_name().ok_or_else(|| StoreError::io(path, std::io::ErrorKind::InvalidInput.into()))?;
    Ok((path.parent().unwrap_or(Path::new("")), name))
}

/// Opens the file at `path` with `flags` (plus `O_NOFOLLOW`, `O_CLOEXEC`), never following a
/// link in its directories or at the file itself.
pub(crate) fn open_file(path: &Path, flags: OFlags) -> Result<File, StoreError> {
    let (dir, name) = split(path)?;
    open_dir(dir)?.open(name, flags)
}

impl DirHandle {
    /// The directory's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The subdirectory `name` (refused if it is a link).
    pub(crate) fn child(&self, name: &OsStr) -> Result<DirHandle, StoreError> {
        let path = self.path.join(name);
        let flags = STEP | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => Ok(DirHandle { fd, path }),
            Err(e) => Err(self.refusal(name, e)),
        }
    }

    /// Opens the file `name` in this directory (refused if it is a link).
    pub(crate) fn open(&self, name: &OsStr, flags: OFlags) -> Result<File, StoreError> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::openat(&self.fd, name, flags, Mode::from_bits_truncate(0o666))
            .map(File::from)
            .map_err(|e| self.refusal(name, e))
    }

    /// Creates the subdirectory `name`; `false` if something by that name already exists.
    pub(crate) fn mkdir(&self, name: &OsStr) -> Result<bool, StoreError> {
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_bits_truncate(0o777)) {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(StoreError::io(self.path.join(name), e.into())),
        }
    }

    /// Renames `from` to `to`, both in this directory (a link at `to` is replaced, not followed).
    pub(crate) fn rename(&self, from: &OsStr, to: &OsStr) -> Result<(), StoreError> {
        rustix::fs::renameat(&self.fd, from, &self.fd, to).map_err(|e| StoreError::io(self.path.join(to), e.into()))
    }

    /// What `name` is, without following it; `None` if it does not exist.
    pub(crate) fn kind(&self, name: &OsStr) -> Result<Option<Kind>, StoreError> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Kind::of(FileType::from_raw_mode(stat.st_mode)))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(StoreError::io(self.path.join(name), e.into())),
        }
    }

    /// A readable handle of this directory itself (`fsync`, listing).
    fn readable(&self) -> Result<OwnedFd, StoreError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        rustix::fs::openat(&self.fd, ".", flags, Mode::empty()).map_err(|e| StoreError::io(&self.path, e.into()))
    }

    /// fsyncs the directory, making the entries created or renamed in it durable.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        let fd = self.readable()?;
        rustix::fs::fsync(&fd).map_err(|e| StoreError::io(&self.path, e.into()))
    }

    /// The entries of this directory (without `.` and `..`) and what each is, unfollowed.
    pub(crate) fn entries(&self) -> Result<Vec<(std::ffi::OsString, Kind)>, StoreError> {
        use std::os::unix::ffi::OsStrExt;
        let fd = self.readable()?;
        let dir = rustix::fs::Dir::read_from(&fd).map_err(|e| StoreError::io(&self.path, e.into()))?;
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| StoreError::io(&self.path, e.into()))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => self.kind(name)?.unwrap_or(Kind::Other),
                other => Kind::of(other),
            };
            out.push((name.to_owned(), kind));
        }
        Ok(out)
    }

    /// The error for a failed open of `name`: [`StoreError::Link`] if it is a link.
    fn refusal(&self, name: &OsStr, error: Errno) -> StoreError {
        let path = self.path.join(name);
        if matches!(error, Errno::LOOP | Errno::NOTDIR | Errno::MLINK)
            && matches!(self.kind(name), Ok(Some(Kind::Link)))
        {
            return StoreError::Link { path };
        }
        StoreError::io(path, error.into())
    }
}
