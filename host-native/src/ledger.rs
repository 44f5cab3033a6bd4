//! The store-wide order: one `pos` counter owned by the writing process, the rebuildable index
//! `pos -> (stream, byte offset)`, the set of known event ids (dedup for `inject_event`), and the
//! contiguous durable watermark that readers never pass (the gap problem: a reader must not see
//! `pos` N+1 before N is durable or known never to exist).
//!
//! A writer's ledger is built lazily: opening a store does not scan the logs. The first thing
//! that needs the store-wide order (an append, a dispatch dedup check, a reader, `read_all`)
//! scans every log once, under the ledger lock, so no position is handed out before the scan.
//! The per-stream lengths and versions (`log`/`set_log`) do not need the scan.
//!
//! Holes. A position missing from every log is *settled* (a hole readers step over) when this
//! process knows nothing can fill it: a writer knows it for every position below the highest
//! one its scan found (it holds the lock: whoever allocated them is dead) and for its own failed
//! appends; any process knows it for positions at or below the durable mark in `settled.json`
//! (see `settled`), which writers raise when they find or make holes and `repair` raises past
//! everything it cuts. A read-only process (a writer may be live) treats every other missing
//! position as *pending*, an append allocated and not yet written: it never passes it. It tails
//! the logs from their known lengths until the line appears or the mark covers it; a one-shot
//! read that waited [`PENDING_GRACE`] fails with [`StoreError::PositionPending`] instead of
//! stopping silently, and a follower keeps waiting.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use evfold_core::{encode_line_into, EventId, EventRecord, NewEvent, StreamId};

use crate::error::StoreError;
use crate::settled;

/// How long a one-shot read-only read waits for a pending position before reporting it.
pub const PENDING_GRACE: Duration = Duration::from_secs(2);

/// Something to wake when the watermark moves (reader threads, subscriptions).
pub trait Wake: Send + Sync {
    /// Wake up and look at the ledger again.
    fn wake(&self);
}

/// Where one event lives.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its stream.
    pub stream: Arc<StreamId>,
    /// Byte offset of its line in the stream's log.
    pub offset: u64,
}

/// An inclusive range of positions handed to one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosRange {
    /// First position.
    pub first: u64,
    /// Last position.
    pub last: u64,
}

/// The result of allocating positions for one append: records, their encoded lines, the range.
#[derive(Debug)]
pub struct Allocated {
    /// The records with `seq` and `pos` assigned.
    pub records: Vec<EventRecord>,
    /// Their lines, concatenated.
    pub bytes: Vec<u8>,
    /// Positions taken.
    pub range: PosRange,
}

/// An event id that is already stored (inject dedup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateId(pub EventId);

/// A pos that appears twice while rebuilding the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicatePos {
    /// The position.
    pub pos: u64,
    /// The two streams holding it.
    pub streams: (String, String),
}

struct State {
    next_pos: u64,
    index: Vec<Option<Entry>>,
    open: BTreeMap<u64, (u64, bool)>,
    watermark: u64,
    ids: HashSet<u128>,
    /// The durable settled mark as this process last read or wrote it.
    settled: u64,
    /// Writer: the highest position that became a hole and is not yet under the mark.
    unrecorded: u64,
}

/// Everything a full scan of the logs found: every event, and each log's length and version.
pub struct Scan {
    /// One entry per valid line.
    pub found: Vec<Found>,
    /// (stream, length, version) per log.
    pub logs: Vec<(StreamId, u64, u64)>,
    /// The durable settled mark at scan time, and its file.
    pub settled: u64,
    /// Where the mark lives.
    pub settled_path: PathBuf,
}

/// Scans every log of the store (the lazy build).
pub type Scanner = Box<dyn Fn() -> Result<Scan, StoreError> + Send + Sync>;

/// See the module doc. Shared by every actor and reader of one store.
pub struct Ledger {
    /// `None` until built.
    state: Mutex<Option<State>>,
    /// Length and version of every log as this process last saw or wrote it.
    logs: Mutex<HashMap<StreamId, (u64, u64)>>,
    scanner: Option<Scanner>,
    read_only: bool,
    watchers: Mutex<Vec<Weak<dyn Wake>>>,
    /// The mark's file (known once the first scan ran).
    settled_path: OnceLock<PathBuf>,
    /// Serializes raises of the mark.
    record_lock: Mutex<()>,
    /// Full scans of the logs this ledger did (one per process: a test hook).
    scans: AtomicU64,
}

/// One event found while scanning the logs: its position, stream, offset and id.
pub type Found = (u64, Arc<StreamId>, u64, EventId);

impl State {
    /// A writer's index reaches past the settled mark (nothing at or below it is handed out
    /// again); a read-only one ends at the highest position found.
    fn from_found(mut found: Vec<Found>, read_only: bool, settled: u64) -> Result<State, DuplicatePos> {
        found.sort_by_key(|f| f.0);
        let max = found.last().map_or(0, |f| f.0);
        let size = if read_only { max } else { max.max(settled) };
        let mut index: Vec<Option<Entry>> = vec![None; size as usize];
        let mut ids = HashSet::with_capacity(found.len());
        for (pos, stream, offset, id) in found {
            let slot = &mut index[pos as usize - 1];
            if let Some(other) = slot {
                return Err(DuplicatePos { pos, streams: (other.stream.to_string(), stream.to_string()) });
            }
            *slot = Some(Entry { stream, offset });
            ids.insert(id_key(&id));
        }
        let mut state =
            State { next_pos: size + 1, index, open: BTreeMap::new(), watermark: 0, ids, settled, unrecorded: 0 };
        if read_only {
            state.advance();
        } else {
            state.watermark = size;
        }
        Ok(state)
    }

    /// Read-only: moves the watermark over every present or settled position.
    fn advance(&mut self) -> bool {
        let before = self.watermark;
        let mut w = self.watermark;
        while (w as usize) < self.index.len() && (self.index[w as usize].is_some() || w < self.settled) {
            w += 1;
        }
        self.watermark = w;
        w != before
    }

    /// Whether some position in (settled, last found] is missing.
    fn holes_above_mark(&self) -> bool {
        let from = self.settled as usize;
        from < self.index.len() && self.index[from..].iter().any(Option::is_none)
    }
}

impl Ledger {
    /// A read-only process's ledger, from one full scan: the watermark stops at the first
    /// pending position (see the module doc); [`Ledger::extend`] adds what later tails find.
    pub fn read_only(scan: Scan) -> Result<Ledger, DuplicatePos> {
        let state = State::from_found(scan.found, true, scan.settled)?;
        let logs = scan.logs.into_iter().map(|(stream, len, version)| (stream, (len, version))).collect();
        let ledger = Ledger {
            state: Mutex::new(Some(state)),
            logs: Mutex::new(logs),
            scanner: None,
            read_only: true,
            watchers: Mutex::new(Vec::new()),
            settled_path: OnceLock::new(),
            record_lock: Mutex::new(()),
            scans: AtomicU64::new(1),
        };
        let _ = ledger.settled_path.set(scan.settled_path);
        Ok(ledger)
    }

    /// A ledger that scans the logs (with `scanner`) the first time the store-wide order is
    /// needed. `logs` are lengths and versions already known (the open-time tail checks).
    pub fn lazy(scanner: Scanner, logs: Vec<(StreamId, u64, u64)>) -> Ledger {
        let logs = logs.into_iter().map(|(stream, len, version)| (stream, (len, version))).collect();
        Ledger {
            state: Mutex::new(None),
            logs: Mutex::new(logs),
            scanner: Some(scanner),
            read_only: false,
            watchers: Mutex::new(Vec::new()),
            settled_path: OnceLock::new(),
            record_lock: Mutex::new(()),
            scans: AtomicU64::new(0),
        }
    }

    /// Full scans of the logs so far (test hook: a process scans once, then tails).
    pub fn scans(&self) -> u64 {
        self.scans.load(Ordering::Relaxed)
    }

    /// Whether the store-wide order has been built (scanned) yet.
    pub fn is_built(&self) -> bool {
        self.state.lock().expect("ledger lock").is_some()
    }

    /// Runs `f` on the built state, scanning the logs first if nobody has yet (under the lock:
    /// nothing is allocated before the scan completes). A failed scan is retried next time.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, StoreError> {
        let mut guard = self.state.lock().expect("ledger lock");
        if guard.is_none() {
            let scanner = self.scanner.as_ref().expect("an unbuilt ledger has a scanner");
            let scan = scanner()?;
            self.scans.fetch_add(1, Ordering::Relaxed);
            let mut state =
                State::from_found(scan.found, self.read_only, scan.settled).map_err(|dup| StoreError::Corrupt {
                    path: "streams".into(),
                    line: 0,
                    offset: 0,
                    reason: format!("pos {} appears in both {} and {}", dup.pos, dup.streams.0, dup.streams.1),
                })?;
            // This writer holds the lock: every missing position it found is final. Record that
            // before anything is allocated, so read-only processes step over them too.
            if !self.read_only && state.holes_above_mark() {
                let through = state.index.len() as u64;
                match settled::raise(&scan.settled_path, through) {
                    Ok(mark) => state.settled = mark,
                    Err(e) => tracing::warn!(error = %e, "cannot record settled positions"),
                }
            }
            let _ = self.settled_path.set(scan.settled_path);
            let mut logs = self.logs.lock().expect("logs lock");
            for (stream, len, version) in scan.logs {
                logs.entry(stream).or_insert((len, version));
            }
            *guard = Some(state);
        }
        Ok(f(guard.as_mut().expect("built above")))
    }

    /// Runs `f` on the state if it is built (settling ranges that `allocate` handed out).
    fn with_built(&self, f: impl FnOnce(&mut State)) {
        if let Some(state) = self.state.lock().expect("ledger lock").as_mut() {
            f(state);
        }
    }

    /// Assigns positions to `events` (stream at version `next_seq - 1`, log `base_offset` bytes
    /// long), encodes their lines and indexes them. With `dedup`, refuses when an event id is
    /// already stored. The range stays invisible to readers until `publish` or `resolve`.
    pub fn allocate(
        &self,
        stream: &Arc<StreamId>,
        base_offset: u64,
        next_seq: u64,
        events: Vec<NewEvent>,
        dedup: bool,
    ) -> Result<Result<Allocated, DuplicateId>, StoreError> {
        let log = self.with(|state| allocate_in(state, stream, base_offset, next_seq, events, dedup))?;
        if let Ok(allocated) = &log {
            let len = base_offset + allocated.bytes.len() as u64;
            let version = next_seq - 1 + allocated.records.len() as u64;
            self.logs.lock().expect("logs lock").insert((**stream).clone(), (len, version));
        }
        Ok(log)
    }

    /// The range is durable (or, buffered, written): readers may see it once every earlier
    /// range is settled too.
    pub fn publish(&self, range: PosRange) {
        self.settle(range, &|_| true);
    }

    /// A write or sync of the range failed: positions for which `present` says the line is in
    /// the log stay, the others become holes forever. Either way the range settles.
    pub fn resolve(&self, range: PosRange, present: &dyn Fn(u64) -> bool) {
        self.settle(range, present);
    }

    fn settle(&self, range: PosRange, present: &dyn Fn(u64) -> bool) {
        let mut moved = false;
        let mut record = None;
        self.with_built(|state| {
            for pos in range.first..=range.last {
                if !present(pos) {
                    state.index[pos as usize - 1] = None;
                    state.unrecorded = state.unrecorded.max(pos);
                }
            }
            if let Some(slot) = state.open.get_mut(&range.first) {
                slot.1 = true;
            }
            let before = state.watermark;
            while let Some(entry) = state.open.first_entry() {
                if !entry.get().1 {
                    break;
                }
                let (_, (last, _)) = entry.remove_entry();
                state.watermark = last;
            }
            moved = state.watermark != before;
            // A hole of ours under the watermark: every position up to it is final now.
            if state.unrecorded > state.settled && state.unrecorded <= state.watermark {
                record = Some(state.watermark);
            }
        });
        if let Some(through) = record {
            self.record(through);
        }
        if moved {
            self.wake_all();
        }
    }

    /// Raises the durable mark (a writer's own holes); on failure the next settle retries.
    fn record(&self, through: u64) {
        let Some(path) = self.settled_path.get() else { return };
        let _serial = self.record_lock.lock().expect("record lock");
        match settled::raise(path, through) {
            Ok(mark) => self.with_built(|state| state.settled = state.settled.max(mark)),
            Err(e) => tracing::warn!(error = %e, "cannot record settled positions"),
        }
    }

    /// Read-only: adds what a tail of the logs found (entries, new lengths and versions, the
    /// mark as read now) and moves the watermark; wakes watchers if it moved.
    pub fn extend(&self, found: Vec<Found>, logs: Vec<(StreamId, u64, u64)>, settled: u64) -> Result<bool, StoreError> {
        let moved = self.with(|state| {
            state.settled = state.settled.max(settled);
            for (pos, stream, offset, id) in found {
                let slot = pos as usize - 1;
                if slot >= state.index.len() {
                    state.index.resize(slot + 1, None);
                }
                match &state.index[slot] {
                    Some(other) if other.stream != stream || other.offset != offset => {
                        return Err(StoreError::Corrupt {
                            path: "streams".into(),
                            line: 0,
                            offset,
                            reason: format!("pos {pos} appears in both {} and {stream}", other.stream),
                        });
                    }
                    _ => {}
                }
                state.index[slot] = Some(Entry { stream, offset });
                state.ids.insert(id_key(&id));
            }
            state.next_pos = state.index.len() as u64 + 1;
            Ok(state.advance())
        })??;
        let mut known = self.logs.lock().expect("logs lock");
        for (stream, len, version) in logs {
            known.insert(stream, (len, version));
        }
        drop(known);
        if moved {
            self.wake_all();
        }
        Ok(moved)
    }

    /// Read-only: a log became shorter than this process saw it (`repair` cut it): forgets its
    /// entries at or after `len`, so they are not read from bytes that are gone.
    pub fn forget_from(&self, stream: &StreamId, len: u64, version: u64) {
        self.with_built(|state| {
            for slot in state.index.iter_mut() {
                if slot.as_ref().is_some_and(|e| *e.stream == *stream && e.offset >= len) {
                    *slot = None;
                }
            }
        });
        self.set_log(stream, len, version);
    }

    /// Read-only: the first pending position (missing, not settled, later ones present) and
    /// the next position present after it; `None` when reads end at the last event found.
    pub fn pending(&self) -> Result<Option<(u64, u64)>, StoreError> {
        self.with(|state| {
            let w = state.watermark as usize;
            let next = state.index[w.min(state.index.len())..].iter().position(Option::is_some);
            next.map(|i| (state.watermark + 1, (w + i) as u64 + 1))
        })
    }

    /// Every known log (stream, length, version), for a tail of the logs.
    pub fn known_logs(&self) -> HashMap<StreamId, (u64, u64)> {
        self.logs.lock().expect("logs lock").clone()
    }

    /// The mark's file, once known.
    pub fn settled_path(&self) -> Option<&PathBuf> {
        self.settled_path.get()
    }

    /// Forgets the id of a position that became a hole (so a later inject is not refused).
    pub fn forget_ids(&self, ids: &[EventId]) {
        self.with_built(|state| {
            for id in ids {
                state.ids.remove(&id_key(id));
            }
        });
    }

    /// Records a log's length and version as just read from disk.
    pub fn set_log(&self, stream: &StreamId, len: u64, version: u64) {
        self.logs.lock().expect("logs lock").insert(stream.clone(), (len, version));
    }

    /// A log's length and version as this process last saw or wrote it.
    pub fn log(&self, stream: &StreamId) -> Option<(u64, u64)> {
        self.logs.lock().expect("logs lock").get(stream).copied()
    }

    /// Every position at or below it is settled (builds the ledger if needed).
    pub fn watermark(&self) -> Result<u64, StoreError> {
        self.with(|state| state.watermark)
    }

    /// Whether an event with this id is stored or being stored (builds the ledger if needed).
    pub fn contains_id(&self, id: &EventId) -> Result<bool, StoreError> {
        self.with(|state| state.ids.contains(&id_key(id)))
    }

    /// Up to `max` settled events after `after`, and the position scanned up to (holes
    /// included, so a reader moves past them).
    pub fn slice(&self, after: u64, max: usize) -> Result<(Vec<(u64, Entry)>, u64), StoreError> {
        self.with(|state| slice_of(state, after, max))
    }

    /// Registers something to wake when the watermark moves.
    pub fn watch(&self, watcher: Weak<dyn Wake>) {
        let mut watchers = self.watchers.lock().expect("watchers lock");
        watchers.retain(|w| w.strong_count() > 0);
        watchers.push(watcher);
    }

    /// Wakes every watcher (also used at shutdown).
    pub fn wake_all(&self) {
        let watchers: Vec<_> = self.watchers.lock().expect("watchers lock").iter().filter_map(Weak::upgrade).collect();
        for w in watchers {
            w.wake();
        }
    }
}

/// 128-bit key of an event id (two SipHash passes with distinct prefixes; fixed keys, so stable).
fn id_key(id: &EventId) -> u128 {
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        id.0.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// [`Ledger::allocate`] on the built state.
fn allocate_in(
    state: &mut State,
    stream: &Arc<StreamId>,
    base_offset: u64,
    next_seq: u64,
    events: Vec<NewEvent>,
    dedup: bool,
) -> Result<Allocated, DuplicateId> {
    if dedup {
        let mut batch = HashSet::new();
        if let Some(e) = events.iter().find(|e| state.ids.contains(&id_key(&e.id)) || !batch.insert(id_key(&e.id))) {
            return Err(DuplicateId(e.id.clone()));
        }
    }
    let first = state.next_pos;
    let mut bytes = Vec::new();
    let mut records = Vec::with_capacity(events.len());
    let count = events.len();
    for (i, event) in events.into_iter().enumerate() {
        let record = EventRecord::from_new(event, next_seq + i as u64, first + i as u64);
        state.ids.insert(id_key(&record.id));
        let offset = base_offset + bytes.len() as u64;
        state.index.push(Some(Entry { stream: stream.clone(), offset }));
        // All lines but the last say "more": recovery keeps or drops the append as a whole.
        encode_line_into(&mut bytes, &record, i + 1 < count);
        records.push(record);
    }
    let last = first + records.len() as u64 - 1;
    state.next_pos = last + 1;
    state.open.insert(first, (last, false));
    Ok(Allocated { records, bytes, range: PosRange { first, last } })
}

/// [`Ledger::slice`] on the built state.
fn slice_of(state: &State, after: u64, max: usize) -> (Vec<(u64, Entry)>, u64) {
    let mut out = Vec::new();
    let mut scanned = after;
    for pos in after + 1..=state.watermark {
        if out.len() >= max {
            break;
        }
        if let Some(entry) = &state.index[pos as usize - 1] {
            out.push((pos, entry.clone()));
        }
        scanned = pos;
    }
    (out, scanned)
}
