//! A simulated disk in the style of SQLite's crash VFS: appended bytes stay *pending* until a
//! sync; a crash keeps a random prefix of the pending bytes (vanish, tear, or survive whole); a
//! failed sync does the same at once; atomic replacements survive a crash only if committed.
//! Linux's failed fdatasync ("fsyncgate", [`SimDisk::fail_sync_cached`]) is modelled too: the
//! bytes stay readable from the page cache but are never written, even by a later sync, unless
//! the file is cut back below them.

use std::collections::BTreeMap;

use super::prng::SimRng;

/// An append-only file (an event log, a dead-letter log).
#[derive(Debug, Clone, Default)]
pub struct LogFile {
    /// Bytes a sync made durable.
    pub durable: Vec<u8>,
    /// Bytes appended since the last sync: readable, but a crash may drop or tear them.
    pub pending: Vec<u8>,
    /// Set by a failed fdatasync whose pages stay cached: a crash cuts the file to this length,
    /// whatever was synced since; cleared by a truncation to at most this length.
    pub lost_from: Option<usize>,
}

impl LogFile {
    /// What a reader of the file sees now.
    pub fn contents(&self) -> Vec<u8> {
        let mut bytes = self.durable.clone();
        bytes.extend_from_slice(&self.pending);
        bytes
    }
}

/// A file replaced atomically (temp file + fsync + rename): old or new, never torn.
#[derive(Debug, Clone, Default)]
pub struct AtomicFile {
    /// Content that survives a crash.
    pub durable: Option<Vec<u8>>,
    /// Content written and renamed but whose directory entry is not yet synced.
    pub pending: Option<Vec<u8>>,
}

impl AtomicFile {
    /// What a reader sees now.
    pub fn contents(&self) -> Option<&[u8]> {
        self.pending.as_deref().or(self.durable.as_deref())
    }
}

/// The whole disk: log files and atomic files by path.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    /// Append-only files.
    pub logs: BTreeMap<String, LogFile>,
    /// Atomically replaced files.
    pub files: BTreeMap<String, AtomicFile>,
}

/// How much of the pending bytes survive a crash or a failed sync.
fn surviving_prefix(len: usize, rng: &mut SimRng) -> usize {
    match rng.below(4) {
        0 => 0,
        1 => len,
        _ => rng.below(len as u64 + 1) as usize,
    }
}

/// A torn write with a hole (ext4 after a power cut: a later block reached the disk, an earlier
/// one did not): zeroes `[from, to)` of what survived of the bytes appended at `start`, where
/// `from` is `start` or a block boundary and `to` a block boundary or the end of the file.
fn zero_hole(bytes: &mut [u8], start: usize, rng: &mut SimRng) {
    const BLOCK: usize = evfold_core::HOLE_ALIGN as usize;
    let end = bytes.len();
    let mut starts = vec![start];
    starts.extend((start.next_multiple_of(BLOCK)..end).step_by(BLOCK).filter(|o| *o > start));
    let from = starts[rng.below(starts.len() as u64) as usize];
    let to = (from + 1).next_multiple_of(BLOCK) + BLOCK * rng.below(3) as usize;
    bytes[from..to.min(end)].fill(0);
}

impl SimDisk {
    /// Appends bytes (pending until synced).
    pub fn append(&mut self, path: &str, bytes: &[u8]) {
        self.logs.entry(path.to_owned()).or_default().pending.extend_from_slice(bytes);
    }

    /// fdatasync succeeded: everything appended is durable.
    pub fn sync(&mut self, path: &str) {
        let file = self.logs.entry(path.to_owned()).or_default();
        let pending = std::mem::take(&mut file.pending);
        file.durable.extend_from_slice(&pending);
    }

    /// fdatasync failed: the pending bytes may or may not have reached the disk, possibly torn;
    /// whatever did not is gone (Linux drops the dirty pages: "fsyncgate").
    pub fn fail_sync(&mut self, path: &str, rng: &mut SimRng) {
        let file = self.logs.entry(path.to_owned()).or_default();
        let pending = std::mem::take(&mut file.pending);
        let keep = surviving_prefix(pending.len(), rng);
        file.durable.extend_from_slice(&pending[..keep]);
    }

    /// fdatasync failed the way Linux fails it: the dirty pages are marked clean, so every
    /// pending byte stays readable, yet none reaches the disk, not even through a later sync
    /// (a crash cuts the file back to its length before the failure).
    pub fn fail_sync_cached(&mut self, path: &str) {
        let file = self.logs.entry(path.to_owned()).or_default();
        file.lost_from.get_or_insert(file.durable.len());
    }

    /// Cuts a log to `len` bytes (recovery truncating a torn tail, or the cut back after a
    /// failed sync).
    pub fn truncate(&mut self, path: &str, len: usize) {
        let file = self.logs.entry(path.to_owned()).or_default();
        if file.lost_from.is_some_and(|from| len <= from) {
            file.lost_from = None;
        }
        let mut bytes = file.contents();
        bytes.truncate(len);
        let durable_len = file.durable.len().min(len);
        file.pending = bytes.split_off(durable_len);
        file.durable = bytes;
    }

    /// Writes the new content of an atomic file (visible at once, durable after `commit`).
    pub fn write_atomic(&mut self, path: &str, bytes: Vec<u8>) {
        self.files.entry(path.to_owned()).or_default().pending = Some(bytes);
    }

    /// The directory fsync after the rename: the new content is durable.
    pub fn commit_atomic(&mut self, path: &str) {
        let file = self.files.entry(path.to_owned()).or_default();
        if let Some(bytes) = file.pending.take() {
            file.durable = Some(bytes);
        }
    }

    /// A failed atomic write: the file is old or new, at random.
    pub fn fail_atomic(&mut self, path: &str, rng: &mut SimRng) {
        if rng.below(2) == 0 {
            self.commit_atomic(path);
        } else if let Some(file) = self.files.get_mut(path) {
            file.pending = None;
        }
    }

    /// Power loss: every pending byte is resolved (kept, dropped or torn), every pending atomic
    /// replacement kept or dropped. Iteration is in path order, so the outcome is a function of
    /// the RNG alone.
    pub fn crash(&mut self, rng: &mut SimRng) {
        for file in self.logs.values_mut() {
            if let Some(from) = file.lost_from.take() {
                file.durable.truncate(from);
                file.pending.clear();
            }
            let pending = std::mem::take(&mut file.pending);
            let start = file.durable.len();
            let keep = surviving_prefix(pending.len(), rng);
            file.durable.extend_from_slice(&pending[..keep]);
            if keep + 2 <= pending.len() && keep > 0 && rng.below(2) == 0 {
                zero_hole(&mut file.durable, start, rng);
            }
        }
        for file in self.files.values_mut() {
            if let Some(bytes) = file.pending.take() {
                if rng.below(2) == 0 {
                    file.durable = Some(bytes);
                }
            }
        }
    }
}

#[test]
fn crash_keeps_only_a_prefix_of_pending_bytes() {
    let mut kept = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let mut disk = SimDisk::default();
        disk.append("log", b"aaaa");
        disk.sync("log");
        disk.append("log", b"bbbb");
        disk.crash(&mut SimRng::new(seed));
        let file = &disk.logs["log"];
        assert!(file.pending.is_empty());
        // A prefix, possibly with a zero-filled hole in the torn part (see `zero_hole`).
        let unholed: Vec<u8> =
            file.durable.iter().zip(b"aaaabbbb").map(|(d, o)| if *d == 0 { *o } else { *d }).collect();
        assert!(file.durable.starts_with(b"aaaa") && b"aaaabbbb".starts_with(&unholed[..]));
        kept.insert(file.durable.len());
    }
    assert_eq!(kept.len(), 5, "vanish, tear at every offset, survive: {kept:?}");
}

#[test]
fn a_cached_failed_sync_stays_readable_but_never_reaches_the_disk() {
    let mut disk = SimDisk::default();
    disk.append("log", b"aaaa");
    disk.sync("log");
    disk.append("log", b"bbbb");
    disk.fail_sync_cached("log");
    assert_eq!(disk.logs["log"].contents(), b"aaaabbbb", "readable from the page cache");
    disk.append("log", b"cccc");
    disk.sync("log");
    disk.crash(&mut SimRng::new(1));
    assert_eq!(disk.logs["log"].durable, b"aaaa", "a later sync does not save it");

    disk.append("log", b"bbbb");
    disk.fail_sync_cached("log");
    disk.truncate("log", 4);
    disk.append("log", b"dddd");
    disk.sync("log");
    disk.crash(&mut SimRng::new(1));
    assert_eq!(disk.logs["log"].durable, b"aaaadddd", "cut back, the file is sound again");
}

#[test]
fn a_crash_can_leave_a_zero_hole_in_the_torn_append() {
    let mut holes = 0;
    for seed in 0..400 {
        let mut disk = SimDisk::default();
        disk.append("log", b"aaaa");
        disk.sync("log");
        disk.append("log", &[b'b'; 3000]);
        disk.crash(&mut SimRng::new(seed));
        let file = &disk.logs["log"];
        assert!(file.durable.starts_with(b"aaaa"), "durable bytes are never zeroed");
        if let Some(first) = file.durable.iter().position(|b| *b == 0) {
            holes += 1;
            let last = file.durable.iter().rposition(|b| *b == 0).unwrap() + 1;
            assert!(first == 4 || first % 512 == 0, "a hole starts on a block or at the old end: {first}");
            assert!(last % 512 == 0 || last == file.durable.len(), "and ends on one or at the end: {last}");
        }
    }
    assert!(holes > 20, "{holes} crashes left a hole");
}
