//! The simulated storage host: fulfils the machines' storage `Io` against a [`SimDisk`] the way
//! the native JSONL host does (one log per stream, CRC lines via `encode_line_into`, torn tails
//! truncated on recovery), with a store-wide `pos` counter and a durable watermark: `ReadAll`
//! never returns `pos N+1` while `pos N` may still become durable.

use std::collections::{BTreeMap, BTreeSet};

use evfold_core::{
    encode_line_into, scan_log, Checkpoint, DeadLetter, EventId, EventRecord, IoError, IoErrorKind, IoResult, LogEnd,
    NewEvent, Position, ScanStart, Snapshot, StoredEvent, StreamId,
};
use serde_json::Value;

use super::disk::SimDisk;
use super::prng::SimRng;

/// A deliberately injected bug, to prove the simulator catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// The host answers `Sync` with `Done` without syncing: acknowledges before durability.
    AckBeforeSync,
    /// `ReadAll` serves appended-but-unsynced events (ignores the durable watermark).
    ReadUnsynced,
    /// The aggregate machines run buffered (`sync_each_batch: false`): reply after the append.
    BufferedAggregates,
    /// A failed fsync is reported as success (the classic "fsyncgate" mistake).
    SwallowFsyncError,
    /// `ReadAll` answers `next` = the watermark even when `max_events` cut the batch short.
    NextPastBatch,
    /// Appends are written without the `more` marker: a crash can keep part of an append.
    SplitAppends,
    /// After a failed fdatasync (Linux: the bytes stay cached, never written) the log is not cut
    /// back: readers act on events a crash then removes.
    ExposeFailedSync,
}

impl Bug {
    /// Parses the `SIM_BUG` spelling.
    pub fn parse(text: &str) -> Option<Bug> {
        match text {
            "ack-before-sync" => Some(Bug::AckBeforeSync),
            "read-unsynced" => Some(Bug::ReadUnsynced),
            "buffered-aggregates" => Some(Bug::BufferedAggregates),
            "swallow-fsync-error" => Some(Bug::SwallowFsyncError),
            "next-past-batch" => Some(Bug::NextPastBatch),
            "split-appends" => Some(Bug::SplitAppends),
            "expose-failed-sync" => Some(Bug::ExposeFailedSync),
            _ => None,
        }
    }

    /// The `SIM_BUG` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeSync => "ack-before-sync",
            Bug::ReadUnsynced => "read-unsynced",
            Bug::BufferedAggregates => "buffered-aggregates",
            Bug::SwallowFsyncError => "swallow-fsync-error",
            Bug::NextPastBatch => "next-past-batch",
            Bug::SplitAppends => "split-appends",
            Bug::ExposeFailedSync => "expose-failed-sync",
        }
    }
}

/// What must happen when a write's completion is delivered (the fsync of a two-step write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// The directory fsync after an atomic rename.
    Atomic(String),
    /// The fdatasync of an appended log line (dead letters).
    Log(String),
}

/// What the host knows of one stream's log.
#[derive(Debug, Clone, Default)]
struct StreamIndex {
    /// Complete, valid records readable now, in `seq` order.
    records: Vec<EventRecord>,
    /// How many of them are durable.
    durable: usize,
    /// Whether the readable bytes end in a torn line (must be recovered before appending).
    torn: bool,
}

/// The simulated store: disk, per-stream index, position counter, durable watermark.
pub struct SimStore {
    /// The disk.
    pub disk: SimDisk,
    streams: BTreeMap<StreamId, StreamIndex>,
    next_pos: u64,
    /// Positions assigned whose event is neither durable nor lost yet.
    pending_pos: BTreeMap<u64, StreamId>,
    /// Durable events by position.
    durable: BTreeMap<u64, StoredEvent>,
    /// The injected bug, if any.
    pub bug: Option<Bug>,
    /// Torn tails recovery truncated so far.
    pub torn_tails: u64,
    /// The event ids of every append ever written (whole or not): each must survive all or none.
    pub appends: Vec<Vec<EventId>>,
}

/// Path of a stream's event log.
pub fn log_path(stream: &StreamId) -> String {
    format!("streams/{}/{}/events.jsonl", stream.aggregate_type(), stream.instance_id())
}

fn snapshot_path(stream: &StreamId) -> String {
    format!("streams/{}/{}/snapshot.json", stream.aggregate_type(), stream.instance_id())
}

/// Path of a reader's checkpoint.
pub fn checkpoint_path(reader: &str) -> String {
    format!("readers/{reader}/checkpoint.json")
}

/// Path of a process manager's dead-letter log.
pub fn dead_letter_path(reader: &str) -> String {
    format!("readers/{reader}/dead_letters.jsonl")
}

fn storage_error(what: &str) -> IoResult {
    IoResult::Failed(IoError::new(IoErrorKind::Storage, format!("injected {what} failure")))
}

fn position(pos: u64) -> Position {
    if pos == 0 {
        Position::start()
    } else {
        Position(Value::from(pos))
    }
}

impl SimStore {
    /// An empty store.
    pub fn new(bug: Option<Bug>) -> Self {
        SimStore {
            disk: SimDisk::default(),
            streams: BTreeMap::new(),
            next_pos: 1,
            pending_pos: BTreeMap::new(),
            durable: BTreeMap::new(),
            bug,
            torn_tails: 0,
            appends: Vec::new(),
        }
    }

    /// Every position up to this one is durable or lost for good.
    pub fn watermark(&self) -> u64 {
        self.pending_pos.keys().next().map_or(self.next_pos - 1, |p| p - 1)
    }

    /// The highest position assigned so far.
    pub fn assigned(&self) -> u64 {
        self.next_pos - 1
    }

    /// Durable events by position.
    pub fn durable_events(&self) -> &BTreeMap<u64, StoredEvent> {
        &self.durable
    }

    /// Streams that have (or had) a log.
    pub fn streams(&self) -> impl Iterator<Item = &StreamId> {
        self.streams.keys()
    }

    /// `ReadSnapshot`.
    pub fn read_snapshot(&self, stream: &StreamId) -> IoResult {
        let file = self.disk.files.get(&snapshot_path(stream)).and_then(|f| f.contents());
        IoResult::Snapshot(file.map(|bytes| serde_json::from_slice(bytes).expect("snapshots are written as JSON")))
    }

    /// `ReadStream`: recovers the log first (truncate a torn tail, sync what is readable), so a
    /// loading machine never builds on bytes a crash could still take away.
    pub fn read_stream(&mut self, stream: &StreamId, after_seq: u64) -> IoResult {
        if let Err(e) = self.recover(stream) {
            return IoResult::Failed(e);
        }
        let index = self.streams.entry(stream.clone()).or_default();
        IoResult::Stream(index.records.iter().filter(|r| r.seq > after_seq).cloned().collect())
    }

    fn recover(&mut self, stream: &StreamId) -> Result<(), IoError> {
        let path = log_path(stream);
        let bytes = self.disk.logs.get(&path).map(|f| f.contents()).unwrap_or_default();
        let scan = scan_log(&bytes, ScanStart::default());
        match scan.end {
            LogEnd::Clean => {}
            LogEnd::Torn { valid_len, .. } => {
                self.torn_tails += 1;
                self.disk.truncate(&path, valid_len as usize);
            }
            LogEnd::MissingNewline { line_end } => {
                self.torn_tails += 1;
                self.disk.truncate(&path, line_end as usize);
                self.disk.append(&path, b"\n");
            }
            LogEnd::Corrupt { line, offset, error } => {
                return Err(IoError::new(IoErrorKind::Corrupt, format!("{path}:{line} at byte {offset}: {error}")))
            }
        }
        self.disk.sync(&path);
        self.rescan(stream);
        Ok(())
    }

    /// `Append`: checks the expected version, assigns `seq` and `pos`, writes CRC lines. A
    /// failed append leaves a random prefix of its bytes (a torn write).
    pub fn append(
        &mut self,
        stream: &StreamId,
        expected_seq: u64,
        events: Vec<NewEvent>,
        fail: bool,
        rng: &mut SimRng,
    ) -> IoResult {
        let index = self.streams.entry(stream.clone()).or_default();
        assert!(!index.torn, "host bug: append to {stream} over a torn tail");
        let actual_seq = index.records.len() as u64;
        if actual_seq != expected_seq {
            return IoResult::Failed(IoError::new(IoErrorKind::Conflict { actual_seq }, "version moved"));
        }
        let mut bytes = Vec::new();
        let mut records = Vec::with_capacity(events.len());
        let count = events.len();
        for (i, event) in events.into_iter().enumerate() {
            let record = EventRecord::from_new(event, expected_seq + 1 + i as u64, self.next_pos);
            self.pending_pos.insert(self.next_pos, stream.clone());
            self.next_pos += 1;
            let continues = i + 1 < count && self.bug != Some(Bug::SplitAppends);
            encode_line_into(&mut bytes, &record, continues);
            records.push(record);
        }
        self.appends.push(records.iter().map(|r| r.id.clone()).collect());
        let path = log_path(stream);
        if fail {
            let keep = rng.below(bytes.len() as u64 + 1) as usize;
            self.disk.append(&path, &bytes[..keep]);
            self.rescan(stream);
            return storage_error("append");
        }
        self.disk.append(&path, &bytes);
        let index = self.streams.get_mut(stream).expect("inserted above");
        index.records.extend(records.iter().cloned());
        IoResult::Appended(records)
    }

    /// An event appended and synced by another writer (to provoke `Conflict`s).
    pub fn foreign_append(&mut self, stream: &StreamId, event: NewEvent, rng: &mut SimRng) {
        let expected = self.streams.get(stream).map_or(0, |i| i.records.len() as u64);
        if self.streams.get(stream).is_some_and(|i| i.torn) {
            return;
        }
        if let IoResult::Appended(_) = self.append(stream, expected, vec![event], false, rng) {
            self.sync_ok(stream);
        }
    }

    /// `Sync`. A failed sync keeps a random prefix of the pending bytes (and drops the rest).
    pub fn sync(&mut self, stream: &StreamId, fail: bool, rng: &mut SimRng) -> IoResult {
        if self.bug == Some(Bug::AckBeforeSync) {
            return IoResult::Done;
        }
        if fail {
            let path = log_path(stream);
            if rng.below(2) == 0 {
                self.disk.fail_sync(&path, rng);
            } else {
                // Linux: the pages stay cached but never reach the disk. The store cuts the log
                // back to its last durable length before anything reads it.
                self.disk.fail_sync_cached(&path);
                if self.bug != Some(Bug::ExposeFailedSync) {
                    let durable_len = self.disk.logs.get(&path).map_or(0, |f| f.durable.len());
                    self.disk.truncate(&path, durable_len);
                }
            }
            self.rescan(stream);
            if self.bug == Some(Bug::SwallowFsyncError) {
                return IoResult::Done;
            }
            return storage_error("fsync");
        }
        self.sync_ok(stream);
        IoResult::Done
    }

    fn sync_ok(&mut self, stream: &StreamId) {
        self.disk.sync(&log_path(stream));
        let index = self.streams.entry(stream.clone()).or_default();
        index.durable = index.records.len();
        let fresh: Vec<EventRecord> =
            index.records.iter().filter(|r| self.pending_pos.contains_key(&r.pos)).cloned().collect();
        for record in fresh {
            self.make_durable(stream, record);
        }
    }

    fn make_durable(&mut self, stream: &StreamId, record: EventRecord) {
        self.pending_pos.remove(&record.pos);
        self.durable.insert(record.pos, StoredEvent { stream: stream.clone(), record });
    }

    /// Re-reads a log's real bytes after bytes were dropped or torn: what is readable, what is
    /// durable, and which assigned positions are now lost for good.
    fn rescan(&mut self, stream: &StreamId) {
        let file = self.disk.logs.get(&log_path(stream)).cloned().unwrap_or_default();
        let readable = scan_log(&file.contents(), ScanStart::default());
        let durable = scan_log(&file.durable, ScanStart::default());
        let torn = matches!(readable.end, LogEnd::Torn { .. });
        let index = StreamIndex { records: readable.records, durable: durable.records.len(), torn };
        for record in index.records[..index.durable].iter().cloned() {
            if self.pending_pos.contains_key(&record.pos) {
                self.make_durable(stream, record);
            }
        }
        let present: BTreeSet<u64> = index.records.iter().map(|r| r.pos).collect();
        self.pending_pos.retain(|pos, s| s != stream || present.contains(pos));
        self.streams.insert(stream.clone(), index);
    }

    /// `WriteSnapshot` (durable once the completion's [`Commit`] runs).
    pub fn write_snapshot(&mut self, stream: &StreamId, snapshot: &Snapshot) -> Commit {
        let path = snapshot_path(stream);
        self.disk.write_atomic(&path, serde_json::to_vec(snapshot).expect("snapshots serialize"));
        Commit::Atomic(path)
    }

    /// `ReadCheckpoint`.
    pub fn read_checkpoint(&self, reader: &str) -> IoResult {
        IoResult::Checkpoint(self.checkpoint(reader, false))
    }

    /// A reader's checkpoint: as readable now, or as it would survive a crash (`durable_only`).
    pub fn checkpoint(&self, reader: &str, durable_only: bool) -> Option<Checkpoint> {
        let file = self.disk.files.get(&checkpoint_path(reader))?;
        let bytes = if durable_only { file.durable.as_deref() } else { file.contents() }?;
        Some(serde_json::from_slice(bytes).expect("checkpoints are written as JSON"))
    }

    /// `WriteCheckpoint` (durable once the completion's [`Commit`] runs).
    pub fn write_checkpoint(&mut self, reader: &str, checkpoint: &Checkpoint) -> Commit {
        let path = checkpoint_path(reader);
        self.disk.write_atomic(&path, serde_json::to_vec(checkpoint).expect("checkpoints serialize"));
        Commit::Atomic(path)
    }

    /// `WriteDeadLetter` (durable once the completion's [`Commit`] runs).
    pub fn write_dead_letter(&mut self, reader: &str, letter: &DeadLetter) -> Commit {
        let path = dead_letter_path(reader);
        let mut line = serde_json::to_vec(letter).expect("dead letters serialize");
        line.push(b'\n');
        self.disk.append(&path, &line);
        Commit::Log(path)
    }

    /// Durable dead letters of a reader (complete lines only).
    pub fn dead_letters(&self, reader: &str) -> Vec<DeadLetter> {
        let Some(file) = self.disk.logs.get(&dead_letter_path(reader)) else { return vec![] };
        file.durable
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect()
    }

    /// Runs a completion's commit (the second half of a two-step write).
    pub fn commit(&mut self, commit: &Commit) {
        match commit {
            Commit::Atomic(path) => self.disk.commit_atomic(path),
            Commit::Log(path) => self.disk.sync(path),
        }
    }

    /// A failed two-step write: old or new content at random, never torn.
    pub fn fail_commit(&mut self, commit: &Commit, rng: &mut SimRng) {
        match commit {
            Commit::Atomic(path) => self.disk.fail_atomic(path, rng),
            Commit::Log(path) => {
                if rng.below(2) == 0 {
                    self.disk.sync(path);
                } else if let Some(file) = self.disk.logs.get_mut(path) {
                    file.pending.clear();
                }
            }
        }
    }

    /// `ReadAll`: durable events after `after`, up to the watermark, in `pos` order.
    pub fn read_all(&self, after: &Position, max_events: usize) -> IoResult {
        let after = after.0.as_u64().unwrap_or(0);
        let events: Vec<StoredEvent> = if self.bug == Some(Bug::ReadUnsynced) {
            let mut all: Vec<StoredEvent> = self
                .streams
                .iter()
                .flat_map(|(s, i)| i.records.iter().map(|r| StoredEvent { stream: s.clone(), record: r.clone() }))
                .filter(|e| e.record.pos > after)
                .collect();
            all.sort_by_key(|e| e.record.pos);
            all.truncate(max_events);
            all
        } else {
            let watermark = self.watermark();
            if watermark <= after {
                Vec::new()
            } else {
                self.durable.range(after + 1..=watermark).map(|(_, e)| e.clone()).take(max_events).collect()
            }
        };
        let mut next = events.last().map_or(after, |e| e.record.pos);
        if self.bug == Some(Bug::NextPastBatch) {
            next = next.max(self.watermark());
        }
        IoResult::Batch { events, next: position(next) }
    }

    /// Power loss: the disk resolves every pending byte; the host's memory is gone.
    pub fn crash(&mut self, rng: &mut SimRng) {
        self.disk.crash(rng);
    }

    /// Start-up after a crash: recover every log (truncate torn tails), rebuild the index and
    /// the position counter from what survived. Fails on a corrupt log.
    pub fn restart(&mut self) -> Result<(), String> {
        self.pending_pos.clear();
        self.durable.clear();
        let streams: Vec<StreamId> = self.streams.keys().cloned().collect();
        for stream in &streams {
            self.recover(stream).map_err(|e| format!("restart: {e}"))?;
        }
        for stream in &streams {
            let records = self.streams[stream].records.clone();
            for record in records {
                self.make_durable(stream, record);
            }
        }
        self.next_pos = self.durable.keys().next_back().map_or(1, |p| p + 1);
        self.recover_dead_letters();
        Ok(())
    }

    /// A dead-letter log's torn last line is cut off, or the next letter would be glued to it.
    fn recover_dead_letters(&mut self) {
        let paths: Vec<String> = self.disk.logs.keys().filter(|p| p.starts_with("readers/")).cloned().collect();
        for path in paths {
            let bytes = self.disk.logs[&path].contents();
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if keep < bytes.len() {
                self.disk.truncate(&path, keep);
            }
        }
    }

    /// A stream's records as a reader of the file sees them now (durable or not).
    pub fn readable(&self, stream: &StreamId) -> &[EventRecord] {
        self.streams.get(stream).map(|i| &i.records[..]).unwrap_or(&[])
    }

    /// Every stream's durable records (after `restart`, everything readable is durable).
    pub fn log(&self, stream: &StreamId) -> &[EventRecord] {
        self.streams.get(stream).map(|i| &i.records[..i.durable]).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use evfold_core::{EventId, Payload, Timestamp};

    use super::*;

    fn event(n: u64) -> NewEvent {
        let payload = Payload::new("Incremented", Value::Null);
        NewEvent { version: 1, id: EventId(format!("e{n}")), payload, ts: Timestamp(n), meta: Default::default() }
    }

    fn positions(result: IoResult) -> Vec<u64> {
        let IoResult::Batch { events, .. } = result else { panic!("not a batch: {result:?}") };
        events.iter().map(|e| e.record.pos).collect()
    }

    #[test]
    fn read_all_never_passes_a_position_that_may_still_become_durable() {
        let (mut store, mut rng) = (SimStore::new(None), SimRng::new(0));
        let (a, b) = (StreamId::new("counter", "a").unwrap(), StreamId::new("counter", "b").unwrap());
        assert!(matches!(store.append(&a, 0, vec![event(1)], false, &mut rng), IoResult::Appended(_)));
        assert!(matches!(store.append(&b, 0, vec![event(2)], false, &mut rng), IoResult::Appended(_)));
        assert_eq!(store.sync(&b, false, &mut rng), IoResult::Done);
        assert_eq!(positions(store.read_all(&Position::start(), 10)), Vec::<u64>::new(), "pos 1 is pending");
        assert_eq!(store.sync(&a, false, &mut rng), IoResult::Done);
        assert_eq!(positions(store.read_all(&Position::start(), 10)), vec![1, 2]);
        assert_eq!(positions(store.read_all(&Position(Value::from(1)), 10)), vec![2]);
    }

    #[test]
    fn a_torn_tail_is_truncated_and_its_position_reused() {
        let a = StreamId::new("counter", "a").unwrap();
        let torn = (0..100)
            .find_map(|seed| {
                let (mut store, mut rng) = (SimStore::new(None), SimRng::new(seed));
                store.append(&a, 0, vec![event(1)], false, &mut rng);
                store.sync(&a, false, &mut rng);
                store.append(&a, 1, vec![event(2)], false, &mut rng);
                store.crash(&mut rng);
                store.restart().unwrap();
                (store.torn_tails == 1).then_some(store)
            })
            .expect("some seed tears the second line");
        let mut store = torn;
        assert_eq!(store.log(&a).len(), 1, "only the synced event survives");
        let IoResult::Appended(records) = store.append(&a, 1, vec![event(3)], false, &mut SimRng::new(0)) else {
            panic!("append after recovery")
        };
        assert_eq!((records[0].seq, records[0].pos), (2, 2), "the lost position is assigned again");
    }
}
