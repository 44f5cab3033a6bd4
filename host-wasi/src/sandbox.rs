//! Per-instance sandbox state (the wasmtime `Store` data): memory cap via `ResourceLimiter`, the
//! guest log capture with its cap, and the mapping of wasmtime errors to typed `PluginError`s.

use std::sync::Arc;

use wasmtime::{ResourceLimiter, Store, Trap};

use crate::bindings::aggregate::evfold::plugin::host::{Host, Level};
use crate::error::{Call, PluginError};
use crate::limits::Limits;

/// Prefix of the log line the SDK's panic hook writes just before a panic traps.
const PANIC_PREFIX: &str = "panicked";
/// Longest panic message kept for the error.
const PANIC_MESSAGE_CAP: usize = 4096;
/// Most table elements an instance may grow to.
const TABLE_ELEMENTS_CAP: usize = 100_000;

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

/// Store data of one plugin instance.
pub(crate) struct Sandbox {
    plugin: Arc<str>,
    memory_limit: usize,
    log_limit: usize,
    log_used: usize,
    log_dropped: usize,
    last_panic: Option<String>,
}

impl Sandbox {
    /// Fresh sandbox state for `plugin` under `limits`.
    pub(crate) fn new(plugin: Arc<str>, limits: &Limits) -> Self {
        Sandbox {
            plugin,
            memory_limit: limits.memory_bytes,
            log_limit: limits.log_bytes,
            log_used: 0,
            log_dropped: 0,
            last_panic: None,
        }
    }

    /// Resets the per-call counters.
    fn begin_call(&mut self) {
        self.log_used = 0;
        self.log_dropped = 0;
        self.last_panic = None;
    }

    /// Reports log lines dropped by the cap during the call that just ended.
    fn end_call(&mut self, call: &Call) {
        if self.log_dropped > 0 {
            tracing::warn!(plugin = %self.plugin, %call, dropped_bytes = self.log_dropped,
                "plugin log output over the per-call cap was dropped");
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

/// The `types` interface has no functions; wasmtime still wants it implemented.
impl crate::bindings::aggregate::evfold::plugin::types::Host for Sandbox {}

impl Host for Sandbox {
    fn log(&mut self, level: Level, message: String) {
        if matches!(level, Level::Error) && message.starts_with(PANIC_PREFIX) {
            self.last_panic = Some(truncate(&message, PANIC_MESSAGE_CAP).to_owned());
        }
        if self.log_used + message.len() > self.log_limit {
            self.log_dropped += message.len();
            return;
        }
        self.log_used += message.len();
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "evfold_plugin", plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "evfold_plugin", plugin, "{message}"),
            Level::Info => tracing::info!(target: "evfold_plugin", plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "evfold_plugin", plugin, "{message}"),
            Level::Error => tracing::error!(target: "evfold_plugin", plugin, "{message}"),
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A new store for one instance: limiter installed, fuel enabled.
pub(crate) fn new_store(engine: &wasmtime::Engine, plugin: Arc<str>, limits: &Limits) -> Store<Sandbox> {
    let mut store = Store::new(engine, Sandbox::new(plugin, limits));
    store.limiter(|sandbox| sandbox as &mut dyn ResourceLimiter);
    store
}

/// Runs one guest call under a fresh fuel budget and maps any failure to a typed error.
pub(crate) fn run<R>(
    store: &mut Store<Sandbox>,
    limits: &Limits,
    call: &Call,
    f: impl FnOnce(&mut Store<Sandbox>) -> wasmtime::Result<R>,
) -> Result<R, PluginError> {
    store.data_mut().begin_call();
    if let Err(error) = store.set_fuel(limits.fuel) {
        return Err(PluginError::Engine(format!("fuel is not enabled: {error}")));
    }
    let result = f(store);
    store.data_mut().end_call(call);
    result.map_err(|error| classify(&error, store.data(), limits, call))
}

/// Maps a wasmtime error from a guest call to the `PluginError` it stands for.
pub(crate) fn classify(error: &wasmtime::Error, sandbox: &Sandbox, limits: &Limits, call: &Call) -> PluginError {
    let (plugin, call) = (sandbox.plugin.to_string(), call.clone());
    if let Some(cap) = error.downcast_ref::<MemoryCapExceeded>() {
        return PluginError::MemoryLimit { plugin, call, limit: cap.limit, requested: cap.requested };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => PluginError::OutOfFuel { plugin, call, fuel: limits.fuel },
        Some(Trap::StackOverflow) => PluginError::StackOverflow { plugin, call, limit: limits.stack_bytes },
        Some(Trap::CannotEnterComponent) => PluginError::Discarded { plugin, call },
        Some(trap) => PluginError::Trap { plugin, call, trap: trap.to_string(), panic: sandbox.last_panic.clone() },
        None => PluginError::Trap { plugin, call, trap: format!("{error:#}"), panic: sandbox.last_panic.clone() },
    }
}
