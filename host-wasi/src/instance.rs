//! One sandboxed component instance of either plugin kind (its own `Store` plus the generated
//! bindings), and the one place a guest call runs: through `sandbox::run` (fresh per-call
//! limits, typed errors), discarding the instance after a trap until it is rebuilt.

use std::sync::Arc;

use wasmtime::Store;

use crate::engine::EngineInner;
use crate::error::{Call, PluginError};
use crate::sandbox::{self, Sandbox};

/// Builds fresh bindings in a store (a pre-linked component's `instantiate`).
pub(crate) type Instantiate<'a, B> = &'a dyn Fn(&mut Store<Sandbox>) -> wasmtime::Result<B>;

/// A live instance, or none after a trap.
pub(crate) struct Instance<B> {
    engine: Arc<EngineInner>,
    plugin: Arc<str>,
    live: Option<(Store<Sandbox>, B)>,
}

impl<B> Instance<B> {
    /// A fresh instance in a new store.
    pub(crate) fn start(
        engine: Arc<EngineInner>,
        plugin: Arc<str>,
        instantiate: Instantiate<'_, B>,
    ) -> Result<Self, PluginError> {
        let mut instance = Instance { engine, plugin, live: None };
        instance.rebuild(instantiate)?;
        Ok(instance)
    }

    /// The plugin's name.
    pub(crate) fn plugin(&self) -> String {
        self.plugin.to_string()
    }

    /// Whether the instance was discarded after a trap.
    pub(crate) fn is_discarded(&self) -> bool {
        self.live.is_none()
    }

    /// Replaces the instance (if any) with a fresh one in a new store.
    pub(crate) fn rebuild(&mut self, instantiate: Instantiate<'_, B>) -> Result<(), PluginError> {
        self.live = None;
        let mut store = sandbox::new_store(&self.engine.engine, self.plugin.clone(), &self.engine.limits);
        let bindings = sandbox::run(&mut store, &self.engine.limits, &Call::Instantiate, |store| instantiate(store))?;
        self.live = Some((store, bindings));
        Ok(())
    }

    /// Runs one guest call; a trap discards the instance.
    pub(crate) fn invoke<R>(
        &mut self,
        call: &Call,
        f: impl FnOnce(&B, &mut Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let Some((store, bindings)) = self.live.as_mut() else {
            return Err(PluginError::Discarded { plugin: self.plugin(), call: call.clone() });
        };
        let result = sandbox::run(store, &self.engine.limits, call, |store| f(bindings, store));
        if result.as_ref().is_err_and(PluginError::kills_instance) {
            tracing::warn!(plugin = %self.plugin, %call, "plugin instance discarded after a trap");
            self.live = None;
        }
        result
    }

    /// Back to the initial state: the guest's own `reset` when the instance is healthy, else
    /// (discarded, or `reset` itself failed) a fresh instance.
    pub(crate) fn reset(
        &mut self,
        guest_reset: impl FnOnce(&B, &mut Store<Sandbox>) -> wasmtime::Result<()>,
        instantiate: Instantiate<'_, B>,
    ) -> Result<(), PluginError> {
        if !self.is_discarded() && self.invoke(&Call::Reset, guest_reset).is_ok() {
            return Ok(());
        }
        self.rebuild(instantiate)
    }
}
