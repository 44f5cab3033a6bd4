//! Per-instance sandbox state (the wasmtime `Store` data): memory cap via `ResourceLimiter`, the
//! guest output capture with its per-call cap, the lazily built WASI context (only components
//! that import WASI ever build one), the per-call fuel and epoch deadline, and the mapping of
//! wasmtime errors to typed `PluginError`s.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::aggregate::evfold::plugin::host::{Host, Level};
use crate::error::{Call, PluginError};
use crate::limits::Limits;
use crate::wasi::{self, Grants, LogLevel, Output};

/// Most table elements an instance may grow to.
const TABLE_ELEMENTS_CAP: usize = 100_000;
/// Nested calls of one recursion cycle under which an out-of-bounds access counts as a
/// shadow-stack overflow (see [`PluginError::ShadowStackOverflow`]).
pub const SHADOW_RECURSION_FRAMES: usize = 48;
/// Longest recursion cycle (distinct functions) recognised.
const RECURSION_CYCLE_FUNCTIONS: usize = 3;
/// Wasm frames a trap's backtrace keeps (wasmtime's default is 20: too few to see recursion).
pub(crate) const BACKTRACE_FRAMES: usize = 128;

/// The typed error the memory limiter raises inside wasmtime (downcast back in [`classify`]).
#[derive(Debug, thiserror::Error)]
#[error("memory cap of {limit} bytes exceeded: asked for {requested}")]
struct MemoryCapExceeded {
    limit: usize,
    requested: usize,
}

/// A table grew beyond [`TABLE_ELEMENTS_CAP`].
#[derive(Debug, thiserror::Error)]
#[error("table cap of {limit} elements exceeded: asked for {requested}")]
struct TableCapExceeded {
    limit: usize,
    requested: usize,
}

/// The WASI state of an instance whose component imports WASI.
struct WasiState {
    ctx: WasiCtx,
    table: ResourceTable,
}

/// Store data of one plugin instance.
pub(crate) struct Sandbox {
    plugin: Arc<str>,
    memory_limit: usize,
    output: Output,
    grants: Grants,
    wasi: Option<Box<WasiState>>,
}

impl Sandbox {
    /// Fresh sandbox state for `plugin` under `limits`.
    pub(crate) fn new(plugin: Arc<str>, limits: &Limits) -> Self {
        Sandbox {
            output: Output::new(plugin.clone(), limits.log_bytes),
            plugin,
            memory_limit: limits.memory_bytes,
            grants: limits.grants.clone(),
            wasi: None,
        }
    }
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            return Err(wasmtime::Error::new(MemoryCapExceeded { limit: self.memory_limit, requested: desired }));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > TABLE_ELEMENTS_CAP {
            return Err(wasmtime::Error::new(TableCapExceeded { limit: TABLE_ELEMENTS_CAP, requested: desired }));
        }
        Ok(true)
    }
}

/// Only components that import WASI reach this (through the engine's WASI linker); the context
/// is built on the first WASI call, so instances of WASI-free plugins never pay for one.
impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (grants, output) = (&self.grants, &self.output);
        let state = self.wasi.get_or_insert_with(|| {
            Box::new(WasiState { ctx: wasi::wasi_ctx(grants, output), table: ResourceTable::new() })
        });
        WasiCtxView { ctx: &mut state.ctx, table: &mut state.table }
    }
}

/// The `types` interface has no functions; wasmtime still wants it implemented.
impl crate::bindings::aggregate::evfold::plugin::types::Host for Sandbox {}

impl Host for Sandbox {
    fn log(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        self.output.log(level, &message);
    }
}

/// The previous ABI's (0.2.0) `types` and `host` imports: the same log.
impl crate::bindings::v0_2::aggregate::evfold::plugin::types::Host for Sandbox {}

impl crate::bindings::v0_2::aggregate::evfold::plugin::host::Host for Sandbox {
    fn log(&mut self, level: crate::bindings::v0_2::aggregate::evfold::plugin::host::Level, message: String) {
        use crate::bindings::v0_2::aggregate::evfold::plugin::host::Level as Old;
        let level = match level {
            Old::Trace => Level::Trace,
            Old::Debug => Level::Debug,
            Old::Info => Level::Info,
            Old::Warn => Level::Warn,
            Old::Error => Level::Error,
        };
        Host::log(self, level, message);
    }
}

/// A new store for one instance: limiter installed (fuel and the epoch deadline are set per call).
pub(crate) fn new_store(engine: &wasmtime::Engine, plugin: Arc<str>, limits: &Limits) -> Store<Sandbox> {
    let mut store = Store::new(engine, Sandbox::new(plugin, limits));
    store.limiter(|sandbox| sandbox as &mut dyn ResourceLimiter);
    store
}

/// Runs one guest call under a fresh fuel budget (and wall-clock deadline, when configured) and
/// maps any failure to a typed error.
pub(crate) fn run<R>(
    store: &mut Store<Sandbox>,
    limits: &Limits,
    call: &Call,
    f: impl FnOnce(&mut Store<Sandbox>) -> wasmtime::Result<R>,
) -> Result<R, PluginError> {
    store.data().output.begin_call();
    if let Err(error) = store.set_fuel(limits.fuel) {
        return Err(PluginError::Engine(format!("fuel is not enabled: {error}")));
    }
    if let Some(limit) = limits.wall_clock_limit {
        store.set_epoch_deadline(crate::limits::epoch_deadline_ticks(limit));
    }
    let result = f(store);
    store.data().output.end_call(call);
    result.map_err(|error| classify(&error, store.data(), limits, call))
}

/// Maps a wasmtime error from a guest call to the `PluginError` it stands for.
pub(crate) fn classify(error: &wasmtime::Error, sandbox: &Sandbox, limits: &Limits, call: &Call) -> PluginError {
    let (plugin, call) = (sandbox.plugin.to_string(), call.clone());
    if let Some(cap) = error.downcast_ref::<MemoryCapExceeded>() {
        return PluginError::MemoryLimit { plugin, call, limit: cap.limit, requested: cap.requested };
    }
    let panic = sandbox.output.last_panic();
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => PluginError::OutOfFuel { plugin, call, fuel: limits.fuel },
        Some(Trap::StackOverflow) => PluginError::StackOverflow { plugin, call, limit: limits.stack_bytes },
        Some(Trap::Interrupt) => {
            PluginError::WallClockTimeout { plugin, call, limit: limits.wall_clock_limit.unwrap_or_default() }
        }
        Some(Trap::CannotEnterComponent) => PluginError::Discarded { plugin, call },
        Some(Trap::MemoryOutOfBounds) if recursion_depth(error) >= SHADOW_RECURSION_FRAMES => {
            PluginError::ShadowStackOverflow { plugin, call, frames: recursion_depth(error) }
        }
        Some(trap) => PluginError::Trap { plugin, call, trap: trap.to_string(), panic },
        None => PluginError::Trap { plugin, call, trap: format!("{error:#}"), panic },
    }
}

/// How many innermost frames of the trap's backtrace belong to one recursion cycle (at most
/// [`RECURSION_CYCLE_FUNCTIONS`] distinct functions); 0 without a backtrace.
fn recursion_depth(error: &wasmtime::Error) -> usize {
    let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() else { return 0 };
    let mut cycle: Vec<u32> = Vec::with_capacity(RECURSION_CYCLE_FUNCTIONS);
    for (depth, frame) in backtrace.frames().iter().enumerate() {
        let function = frame.func_index();
        if !cycle.contains(&function) {
            if cycle.len() == RECURSION_CYCLE_FUNCTIONS {
                return depth;
            }
            cycle.push(function);
        }
    }
    backtrace.frames().len()
}

/// The epoch ticker of an engine with a wall-clock limit: one thread that advances the engine's
/// epoch every tick. Dropping it (with the engine's last owner) stops and joins the thread.
pub(crate) struct Ticker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Starts ticking `engine` every `tick`.
    pub(crate) fn start(engine: &wasmtime::Engine, tick: std::time::Duration) -> Result<Self, PluginError> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        // A weak handle: the thread must not keep the engine alive.
        let engine = engine.weak();
        let thread = std::thread::Builder::new()
            .name("evfold-epoch".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the epoch ticker thread: {e}")))?;
        Ok(Ticker { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
