//! Store configuration: durability mode, idle timeout, snapshot policy, injectable clock and
//! event-id entropy, reader tuning, and test-only fault injection.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use evfold_core::{IdSeed, ReaderConfig, Timestamp};

/// When an `execute` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After `fdatasync` of the stream's log succeeded (the default).
    #[default]
    Sync,
    /// After the write reached the OS: a machine crash may lose acknowledged commands. Opt-in.
    Buffered,
}

/// The store's time source (milliseconds since the Unix epoch).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;
/// The store's event-id entropy: one seed per command.
pub type IdSeedSource = Arc<dyn Fn() -> IdSeed + Send + Sync>;

/// The system clock in milliseconds.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        Timestamp(ms)
    })
}

/// UUIDv7-like seeds: 48 bits of milliseconds, version 7, 62+ random bits (from std's
/// randomly keyed hasher), the low 12 bits zero so a command's events (`seed + i`) stay distinct.
pub fn random_id_seeds() -> IdSeedSource {
    use std::hash::{BuildHasher, Hasher};
    let keys = std::collections::hash_map::RandomState::new();
    let counter = Arc::new(AtomicU64::new(0));
    Arc::new(move || {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let random = |salt: u64| {
            let mut h = keys.build_hasher();
            h.write_u64(n);
            h.write_u64(salt);
            h.finish()
        };
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let high = ((ms & 0xffff_ffff_ffff) << 16) | 0x7000 | (random(1) & 0x0fff);
        let low = (0b10 << 62) | (random(2) & 0x3fff_ffff_ffff_f000);
        IdSeed((u128::from(high) << 64) | u128::from(low))
    })
}

/// Deterministic seeds for tests: `start`, `start + 2^16`, ... (byte-identical logs).
pub fn counting_id_seeds(start: u128) -> IdSeedSource {
    let counter = Arc::new(AtomicU64::new(0));
    Arc::new(move || IdSeed(start + (u128::from(counter.fetch_add(1, Ordering::Relaxed)) << 16)))
}

/// A clock the test sets by hand: every reading returns the value last set (deterministic
/// logs, whatever the number of readings).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        ManualClock(Arc::new(AtomicU64::new(start_ms)))
    }
    /// Sets the time.
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    /// Moves the time forward.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    /// The [`Clock`] to give the builder.
    pub fn clock(&self) -> Clock {
        let now = self.0.clone();
        Arc::new(move || Timestamp(now.load(Ordering::SeqCst)))
    }
}

/// Everything tunable about an open store.
#[derive(Clone)]
pub struct StoreConfig {
    /// When `execute` returns.
    pub durability: Durability,
    /// Evict an aggregate actor after this long without work; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// Snapshot every N events; `None` = never.
    pub snapshot_every: Option<u64>,
    /// Time source.
    pub clock: Clock,
    /// Event-id entropy.
    pub id_seeds: IdSeedSource,
    /// Projection / process-manager tuning. By default projection checkpoints are coalesced
    /// ([`coalesced_reader_config`]); process managers always checkpoint after every batch
    /// ([`ReaderConfig::every_batch`]) of at most 512 events, whatever this says.
    pub reader: ReaderConfig,
    /// Most events one group commit appends.
    pub max_batch_events: usize,
    /// Largest serialized event `data`, in bytes (default 1 MiB).
    pub max_event_bytes: usize,
    /// Largest serialized command `data`, in bytes (default 1 MiB).
    pub max_command_bytes: usize,
    /// How long a reader waits after a commit wakes it before catching up, so one catch-up
    /// (and one checkpoint write) covers many commits. State queries never wait for it.
    pub reader_wake_delay: Duration,
    /// Process managers dispatch only when asked ([`crate::AggregateStore::run_process_managers`],
    /// or a state query), as eventfold-es did; by default they follow every commit.
    pub process_managers_on_demand: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            durability: Durability::Sync,
            idle_timeout: Some(Duration::from_secs(300)),
            snapshot_every: Some(1000),
            clock: system_clock(),
            id_seeds: random_id_seeds(),
            reader: coalesced_reader_config(),
            max_batch_events: 1024,
            max_event_bytes: 1 << 20,
            max_command_bytes: 1 << 20,
            reader_wake_delay: Duration::from_millis(10),
            process_managers_on_demand: false,
        }
    }
}

/// The native store's default reader tuning: batches of 4,096 events (a batch reads each
/// stream it touches once), and a projection saves its checkpoint after 100,000
/// unsaved events or 10 s since its last save (checked per batch), and otherwise once caught up
/// and quiet for 1 s, and when the store closes. Between saves the folded state answers queries;
/// a crash only means folding again from the last saved checkpoint.
pub fn coalesced_reader_config() -> ReaderConfig {
    ReaderConfig {
        batch_size: 4096,
        checkpoint_every_events: 100_000,
        checkpoint_every_ms: Some(10_000),
        checkpoint_quiet_ms: Some(1_000),
        ..ReaderConfig::default()
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("durability", &self.durability)
            .field("idle_timeout", &self.idle_timeout)
            .field("snapshot_every", &self.snapshot_every)
            .field("reader", &self.reader)
            .field("max_batch_events", &self.max_batch_events)
            .field("max_event_bytes", &self.max_event_bytes)
            .field("max_command_bytes", &self.max_command_bytes)
            .field("reader_wake_delay", &self.reader_wake_delay)
            .field("process_managers_on_demand", &self.process_managers_on_demand)
            .finish_non_exhaustive()
    }
}

/// Test hook: make the next N log writes or fsyncs fail with EIO (the real error path runs);
/// fail or delay the store's directory fsyncs, and count them per directory.
#[derive(Debug, Default)]
pub struct Faults {
    writes: AtomicU32,
    syncs: AtomicU32,
    dir_syncs: AtomicU32,
    slow_dir_syncs: AtomicU32,
    dir_sync_delay_ms: AtomicU64,
    dir_syncs_done: std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, u32>>,
}

impl Faults {
    /// Fails the next `n` log writes.
    pub fn fail_writes(&self, n: u32) {
        self.writes.store(n, Ordering::SeqCst);
    }
    /// Fails the next `n` log fsyncs.
    pub fn fail_syncs(&self, n: u32) {
        self.syncs.store(n, Ordering::SeqCst);
    }
    /// Fails the next `n` fsyncs of directories in the store (the root's included).
    pub fn fail_dir_syncs(&self, n: u32) {
        self.dir_syncs.store(n, Ordering::SeqCst);
    }
    /// Delays each of the next `n` directory fsyncs of the store by `delay` before it runs.
    pub fn delay_dir_syncs(&self, n: u32, delay: Duration) {
        self.dir_sync_delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
        self.slow_dir_syncs.store(n, Ordering::SeqCst);
    }
    /// How many fsyncs of directory `dir` have completed.
    pub fn dir_syncs_done(&self, dir: &std::path::Path) -> u32 {
        self.dir_syncs_done.lock().expect("faults lock").get(dir).copied().unwrap_or(0)
    }
    pub(crate) fn before_dir_sync(&self) -> std::io::Result<()> {
        if take_one(&self.slow_dir_syncs, "").is_err() {
            std::thread::sleep(Duration::from_millis(self.dir_sync_delay_ms.load(Ordering::SeqCst)));
        }
        take_one(&self.dir_syncs, "injected directory fsync failure")
    }
    pub(crate) fn after_dir_sync(&self, dir: &std::path::Path) {
        *self.dir_syncs_done.lock().expect("faults lock").entry(dir.to_owned()).or_default() += 1;
    }
    pub(crate) fn check_write(&self) -> std::io::Result<()> {
        take_one(&self.writes, "injected write failure")
    }
    pub(crate) fn check_sync(&self) -> std::io::Result<()> {
        take_one(&self.syncs, "injected fdatasync failure")
    }
}

fn take_one(counter: &AtomicU32, what: &str) -> std::io::Result<()> {
    let taken = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if taken {
        Err(std::io::Error::other(what.to_owned()))
    } else {
        Ok(())
    }
}

/// Counters of an open store (cumulative since open).
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) appends: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) events: AtomicU64,
}

/// Write counters of an open store, from [`crate::AggregateStore::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Log writes (one per group commit or inject).
    pub appends: u64,
    /// Log fdatasyncs.
    pub syncs: u64,
    /// Events appended.
    pub events: u64,
}

impl Stats {
    pub(crate) fn snapshot(&self) -> StoreStats {
        StoreStats {
            appends: self.appends.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
        }
    }
}
