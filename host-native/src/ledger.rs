//! The store-wide order: one `pos` counter owned by the writing process, the rebuildable index
//! `pos -> (stream, byte offset)`, the set of known event ids (dedup for `inject_event`), and the
//! contiguous durable watermark that readers never pass (the gap problem: a reader must not see
//! `pos` N+1 before N is durable or known never to exist).

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};

use evfold_core::{encode_record, EventId, EventRecord, NewEvent, StreamId};

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
    /// Length and version of every log as this process last saw or wrote it.
    logs: std::collections::HashMap<StreamId, (u64, u64)>,
}

/// See the module doc. Shared by every actor and reader of one store.
pub struct Ledger {
    state: Mutex<State>,
    watchers: Mutex<Vec<Weak<dyn Wake>>>,
}

/// One event found while scanning the logs: its position, stream, offset and id.
pub type Found = (u64, Arc<StreamId>, u64, EventId);

impl Ledger {
    /// Rebuilds the ledger from the events found in every log. With `contiguous_only`
    /// (read-only inspection of a store another process writes), the watermark stops at the
    /// first missing position; otherwise missing positions are holes that will never be filled
    /// (the writer that held them died before they were durable).
    pub fn rebuild(
        mut found: Vec<Found>,
        logs: Vec<(StreamId, u64, u64)>,
        contiguous_only: bool,
    ) -> Result<Ledger, DuplicatePos> {
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
        let logs = logs.into_iter().map(|(stream, len, version)| (stream, (len, version))).collect();
        let state = State { next_pos: max + 1, index, open: BTreeMap::new(), watermark, ids, logs };
        Ok(Ledger { state: Mutex::new(state), watchers: Mutex::new(Vec::new()) })
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
    ) -> Result<Allocated, DuplicateId> {
        let mut state = self.state.lock().expect("ledger lock");
        if dedup {
            let mut batch = HashSet::new();
            if let Some(e) = events.iter().find(|e| state.ids.contains(&id_key(&e.id)) || !batch.insert(id_key(&e.id)))
            {
                return Err(DuplicateId(e.id.clone()));
            }
        }
        let first = state.next_pos;
        let mut bytes = Vec::new();
        let mut records = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            let record = EventRecord::from_new(event, next_seq + i as u64, first + i as u64);
            state.ids.insert(id_key(&record.id));
            let offset = base_offset + bytes.len() as u64;
            state.index.push(Some(Entry { stream: stream.clone(), offset }));
            bytes.extend_from_slice(&encode_record(&record));
            records.push(record);
        }
        let last = first + records.len() as u64 - 1;
        state.next_pos = last + 1;
        let log = (base_offset + bytes.len() as u64, next_seq - 1 + records.len() as u64);
        state.logs.insert((**stream).clone(), log);
        state.open.insert(first, (last, false));
        Ok(Allocated { records, bytes, range: PosRange { first, last } })
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
        let moved = {
            let mut state = self.state.lock().expect("ledger lock");
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
            state.watermark != before
        };
        if moved {
            self.wake_all();
        }
    }

    /// Forgets the id of a position that became a hole (so a later inject is not refused).
    pub fn forget_ids(&self, ids: &[EventId]) {
        let mut state = self.state.lock().expect("ledger lock");
        for id in ids {
            state.ids.remove(&id_key(id));
        }
    }

    /// Records a log's length and version as just read from disk.
    pub fn set_log(&self, stream: &StreamId, len: u64, version: u64) {
        self.state.lock().expect("ledger lock").logs.insert(stream.clone(), (len, version));
    }

    /// A log's length and version as this process last saw or wrote it.
    pub fn log(&self, stream: &StreamId) -> Option<(u64, u64)> {
        self.state.lock().expect("ledger lock").logs.get(stream).copied()
    }

    /// Every position at or below it is settled.
    pub fn watermark(&self) -> u64 {
        self.state.lock().expect("ledger lock").watermark
    }

    /// Whether an event with this id is stored (or being stored).
    pub fn contains_id(&self, id: &EventId) -> bool {
        self.state.lock().expect("ledger lock").ids.contains(&id_key(id))
    }

    /// Up to `max` settled events after `after`, and the position scanned up to (holes
    /// included, so a reader moves past them).
    pub fn slice(&self, after: u64, max: usize) -> (Vec<(u64, Entry)>, u64) {
        let state = self.state.lock().expect("ledger lock");
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
