//! State every task of one store shares: the SQL backend, the clock, event-id entropy, counters,
//! and the wake-up fan-out to local readers and (via NOTIFY) to other processes.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use evfold_core::{IdSeed, Timestamp};
use tokio::sync::{mpsc, Notify};

use crate::reader::ReaderMsg;
use crate::sql::Backend;

/// Counters of one store instance, since it connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Successful appends (one per group commit).
    pub appends: u64,
    /// Events those appends stored.
    pub events: u64,
    /// Appends that lost the race to another writer (the core re-decided them).
    pub conflicts: u64,
}

/// Shared by the store handle, the aggregate actors and the reader tasks.
pub struct Shared {
    /// SQL fulfilment.
    pub backend: Backend,
    /// Local reader mailboxes (set once, right after the readers are spawned).
    pub readers: OnceLock<Vec<mpsc::Sender<ReaderMsg>>>,
    /// Poked after each commit; the notifier task turns pokes into one coalesced NOTIFY.
    pub notify_peers: Notify,
    appends: AtomicU64,
    events: AtomicU64,
    conflicts: AtomicU64,
    seeds: AtomicU64,
    entropy: RandomState,
}

impl Shared {
    /// Fresh shared state over `backend`.
    pub fn new(backend: Backend) -> Self {
        Shared {
            backend,
            readers: OnceLock::new(),
            notify_peers: Notify::new(),
            appends: AtomicU64::new(0),
            events: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            seeds: AtomicU64::new(0),
            entropy: RandomState::new(),
        }
    }

    /// Wall-clock milliseconds: the only clock read of the driver.
    pub fn now(&self) -> Timestamp {
        Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
    }

    /// Entropy for one command's event ids, UUIDv7-like: 48 bits of milliseconds, 64 random bits,
    /// and 16 low zero bits for the event index.
    pub fn fresh_seed(&self) -> IdSeed {
        let n = self.seeds.fetch_add(1, Ordering::Relaxed);
        let random =
            self.entropy.hash_one((n, SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())));
        let ms = u128::from(self.now().0) & ((1 << 48) - 1);
        IdSeed((ms << 80) | (u128::from(random) << 16))
    }

    /// Records a commit of `n_events` and wakes readers here and elsewhere.
    pub fn committed(&self, n_events: u64) {
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(n_events, Ordering::Relaxed);
        self.wake_readers();
        self.notify_peers.notify_one();
    }

    /// Records a lost append race.
    pub fn conflicted(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// Asks every local reader to catch up (a full mailbox already holds a wake-up).
    pub fn wake_readers(&self) {
        for reader in self.readers.get().into_iter().flatten() {
            let _ = reader.try_send(ReaderMsg::Wake);
        }
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        Stats {
            appends: self.appends.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
        }
    }
}
