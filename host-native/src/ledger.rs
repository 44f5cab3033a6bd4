//! The store-wide order: one `pos` counter owned by the writing process, the rebuildable index
//! `pos -> (stream, byte offset)`, the set of known event ids (dedup for `inject_event`), and the
//! contiguous durable watermark that readers never pass (the gap problem: a reader must not see
//! `pos` N+1 before N is durable or known never to exist).
//!
//! A writer's ledger is built lazily: opening a store does not scan the logs. The first thing
//! that needs the store-wide order (an append, a dispatch dedup check, a reader, `read_all`)
//! scans every log once, under the ledger lock, so no position is handed out before the scan.
//! The per-stream lengths and versions (`log`/`set_log`) do not need the scan.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};

use evfold_core::{encode_line_into, EventId, EventRecord, NewEvent, StreamId};

use crate::error::StoreError;

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
}

/// Everything a full scan of the logs found: every event, and each log's length and version.
pub struct Scan {
    /// One entry per valid line.
    pub found: Vec<Found>,
    /// (stream, length, version) per log.
    pub logs: Vec<(StreamId, u64, u64)>,
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
    contiguous_only: bool,
    watchers: Mutex<Vec<Weak<dyn Wake>>>,
}

/// One event found while scanning the logs: its position, stream, offset and id.
pub type Found = (u64, Arc<StreamId>, u64, EventId);

impl State {
    fn from_found(mut found: Vec<Found>, contiguous_only: bool) -> Result<State, DuplicatePos> {
        found.sort_by_key(|f| f.0);
        let max = found.last().map_or(0, |f| f.0);
        let mut index: Vec<Option<Entry>> = vec![None; max as usize];
        let mut ids = HashSet::with_capacity(found.len());
        for (pos, stream, offset, id) in found {
            let slot = &mut index[pos as usize - 1];
            if let Some(other) = slot {
                return Err(DuplicatePos { pos, streams: (other.stream.to_string(), stream.to_string()) });
            }
            *slot = Some(Entry { stream, offset });
            ids.insert(id_key(&id));
        }
        let watermark = if contiguous_only { index.iter().take_while(|e| e.is_some()).count() as u64 } else { max };
        Ok(State { next_pos: max + 1, index, open: BTreeMap::new(), watermark, ids })
    }
}

impl Ledger {
    /// Rebuilds the ledger from the events found in every log. With `contiguous_only`
    /// (read-only inspection of a store another process writes), the watermark stops at the
    /// first missing position; otherwise missing positions are holes that will never be filled
    /// (the writer that held them died before they were durable).
    pub fn rebuild(
        found: Vec<Found>,
        logs: Vec<(StreamId, u64, u64)>,
        contiguous_only: bool,
    ) -> Result<Ledger, DuplicatePos> {
        let state = State::from_found(found, contiguous_only)?;
        let logs = logs.into_iter().map(|(stream, len, version)| (stream, (len, version))).collect();
        Ok(Ledger {
            state: Mutex::new(Some(state)),
            logs: Mutex::new(logs),
            scanner: None,
            contiguous_only,
            watchers: Mutex::new(Vec::new()),
        })
    }

    /// A ledger that scans the logs (with `scanner`) the first time the store-wide order is
    /// needed. `logs` are lengths and versions already known (the open-time tail checks).
    pub fn lazy(scanner: Scanner, logs: Vec<(StreamId, u64, u64)>) -> Ledger {
        let logs = logs.into_iter().map(|(stream, len, version)| (stream, (len, version))).collect();
        Ledger {
            state: Mutex::new(None),
            logs: Mutex::new(logs),
            scanner: Some(scanner),
            contiguous_only: false,
            watchers: Mutex::new(Vec::new()),
        }
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
            let state = State::from_found(scan.found, self.contiguous_only).map_err(|dup| StoreError::Corrupt {
                path: "streams".into(),
                line: 0,
                offset: 0,
                reason: format!("pos {} appears in both {} and {}", dup.pos, dup.streams.0, dup.streams.1),
            })?;
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
        self.with_built(|state| {
            for pos in range.first..=range.last {
                if !present(pos) {
                    state.index[pos as usize - 1] = None;
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
        });
        if moved {
            self.wake_all();
        }
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
