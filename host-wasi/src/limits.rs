//! Sandbox limits (per call), WASI grants and engine options, with safe defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::wasi::Grants;

/// Per-call limits of the sandbox. Every limit is checked on every call; exceeding one is a typed
/// [`crate::PluginError`], never a host crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per call (deterministic CPU limit: the same call runs out at the same instruction on
    /// every machine). One `decide` of the bank example costs ~20,000 units; folds get a fresh
    /// budget per chunk of [`Limits::fold_chunk`] events.
    pub fuel: u64,
    /// Linear-memory cap per instance, in bytes.
    pub memory_bytes: usize,
    /// Cap on the bytes one `decide` may return (type names + JSON data of all events).
    pub output_bytes: usize,
    /// Cap on one snapshot or query result (state or read model as JSON text).
    pub snapshot_bytes: usize,
    /// Deepest JSON nesting accepted from a plugin (serde_json stops at 128 regardless).
    pub json_depth: usize,
    /// WebAssembly stack cap, in bytes (an engine-wide setting: it applies to every plugin of
    /// one [`crate::PluginEngine`]).
    pub stack_bytes: usize,
    /// Bytes of guest log lines forwarded to `tracing` per call; the rest is dropped (counted).
    pub log_bytes: usize,
    /// Events per `fold`/`apply` call: longer batches are split, each chunk with fresh fuel.
    pub fold_chunk: usize,
    /// Wall-clock backstop per call (`None`, the default: off). When set, the engine enables
    /// wasmtime's epoch interruption and runs one ticker thread, and a call running longer traps
    /// with [`crate::PluginError::WallClockTimeout`] (within about `limit + 2 × limit/10`). Off by
    /// default because the epoch checks cost ≈ +11–14 % on JSON-heavy calls (measured, see
    /// docs/plugins.md), and because it is not deterministic: fuel stays the CPU limit whose
    /// outcome is the same on every machine; this one only guards against a stuck host (a slow
    /// import, a fuel budget set too high).
    pub wall_clock_limit: Option<Duration>,
    /// WASI capabilities granted to plugins that import WASI (built for `wasm32-wasip2`).
    /// Engine-wide. Default: none (fixed clocks, fixed-seed random, empty environment).
    pub grants: Grants,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 50_000_000,
            memory_bytes: 64 << 20,
            output_bytes: 1 << 20,
            snapshot_bytes: 16 << 20,
            json_depth: 64,
            stack_bytes: 512 << 10,
            log_bytes: 64 << 10,
            fold_chunk: 256,
            wall_clock_limit: None,
            grants: Grants::default(),
        }
    }
}

/// How the engine allocates instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allocation {
    /// Map memory per instance on demand (default; no upper bound on live instances).
    #[default]
    OnDemand,
    /// Pre-reserve slots for at most this many live instances (faster instantiation on some
    /// machines; instantiation fails beyond the count).
    Pooling {
        /// Maximum number of live plugin instances.
        max_instances: u32,
    },
}

/// Everything a [`crate::PluginEngine`] is built from.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Sandbox limits.
    pub limits: Limits,
    /// Directory for compiled plugins (`<sha256 of the .wasm>-<engine hash>.cwasm`), so a
    /// plugin is compiled once per engine configuration, not once per process. `None`: compile
    /// on every load (still once per engine: loaded plugins are kept in memory). The directory
    /// must be writable only by the host's user: a compiled artifact is trusted native code.
    pub cache_dir: Option<PathBuf>,
    /// Instance allocation strategy.
    pub allocation: Allocation,
}

/// Shortest and longest epoch tick of the wall-clock backstop.
const TICK_BOUNDS: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(100));

/// The epoch tick for a wall-clock limit: a tenth of it, within 1–100 ms.
pub(crate) fn epoch_tick(limit: Duration) -> Duration {
    (limit / 10).clamp(TICK_BOUNDS.0, TICK_BOUNDS.1)
}

/// Epoch ticks until a call's deadline: never before `limit`, at most two ticks after it.
pub(crate) fn epoch_deadline_ticks(limit: Duration) -> u64 {
    let tick = epoch_tick(limit).as_nanos();
    u64::try_from(limit.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX).saturating_add(1)
}
