//! Plugin projections: `PluginProjection` (an `evfold_core::DynProjection`) holds one sandboxed
//! component instance with the read model inside; `query` reads part of it by JSON pointer.

use std::sync::Arc;

use evfold_core::{DynProjection, Fault, StoredEvent};
use serde_json::Value;
use wasmtime::Store;

use crate::engine::{throwaway_store, EngineInner, PluginInfo, PluginKind};
use crate::error::{Call, PluginError};
use crate::instance::Instance;
use crate::json::{parse_checked, stored_lines};
use crate::sandbox::{self, Sandbox};
use crate::versions::{ProjectionBindings, ProjectionPre};

/// A loaded projection plugin.
pub(crate) struct LoadedProjection {
    engine: Arc<EngineInner>,
    plugin: Arc<str>,
    pre: ProjectionPre,
    info: PluginInfo,
}

impl LoadedProjection {
    /// Reads the metadata in a throwaway instance and keeps the pre-linked component.
    pub(crate) fn load(
        engine: Arc<EngineInner>,
        file_plugin: Arc<str>,
        sha256: String,
        abi_version: String,
        pre: ProjectionPre,
    ) -> Result<Self, PluginError> {
        let mut store = throwaway_store(&engine, &file_plugin);
        let meta = sandbox::run(&mut store, &engine.limits, &Call::Metadata, |store| {
            let plugin = pre.instantiate(&mut *store)?;
            plugin.metadata(&mut *store)
        })?;
        let info = PluginInfo {
            kind: PluginKind::Projection,
            name: meta.name,
            plugin_version: meta.plugin_version,
            sdk_version: meta.sdk_version,
            abi_version,
            sha256,
            aggregate_type: None,
            projection_name: Some(meta.projection_name),
            event_types: Vec::new(),
            command_types: Vec::new(),
        };
        Ok(LoadedProjection { plugin: info.name.as_str().into(), engine, pre, info })
    }

    fn plugin(&self) -> String {
        self.plugin.to_string()
    }

    /// Instantiates the pre-linked component in `store`.
    fn instantiate(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<ProjectionBindings> {
        self.pre.instantiate(store)
    }

    /// A fresh instance with the empty read model.
    fn start(&self) -> Result<Instance<ProjectionBindings>, PluginError> {
        Instance::start(self.engine.clone(), self.plugin.clone(), &|store| self.instantiate(store))
    }

    /// Parses JSON text the guest returned (snapshot or query), within the snapshot cap.
    fn accept_json(&self, call: &Call, text: &str) -> Result<Value, PluginError> {
        let limits = &self.engine.limits;
        if text.len() > limits.snapshot_bytes {
            let (plugin, call) = (self.plugin(), call.clone());
            return Err(PluginError::OutputTooLarge { plugin, call, size: text.len(), limit: limits.snapshot_bytes });
        }
        parse_checked(text, limits.json_depth).map_err(|problem| PluginError::BadOutput {
            plugin: self.plugin(),
            call: call.clone(),
            reason: problem.to_string(),
        })
    }
}

/// A projection running in a sandbox.
pub struct PluginProjection {
    loaded: Arc<LoadedProjection>,
    instance: Instance<ProjectionBindings>,
    /// Reused buffer for the JSONL batches sent to the guest.
    scratch: Vec<u8>,
}

impl PluginProjection {
    pub(crate) fn new(loaded: Arc<LoadedProjection>) -> Result<Self, PluginError> {
        Ok(PluginProjection { instance: loaded.start()?, loaded, scratch: Vec::new() })
    }

    /// The plugin's metadata.
    pub fn info(&self) -> &PluginInfo {
        &self.loaded.info
    }

    /// Whether the instance was discarded after a trap (until `reset()`).
    pub fn is_discarded(&self) -> bool {
        self.instance.is_discarded()
    }

    fn guest_result<R>(&self, call: Call, outcome: Result<R, String>) -> Result<R, PluginError> {
        outcome.map_err(|message| PluginError::Guest { plugin: self.loaded.plugin(), call, message })
    }

    /// Folds events in store-wide order (chunks of `Limits::fold_chunk`, each one JSONL string
    /// with fresh fuel).
    pub fn try_apply(&mut self, events: &[StoredEvent]) -> Result<(), PluginError> {
        for chunk in events.chunks(self.loaded.engine.limits.fold_chunk.max(1)) {
            let batch = stored_lines(&mut self.scratch, chunk);
            let outcome = self.instance.invoke(&Call::Apply, |b, store| b.apply(store, batch))?;
            self.guest_result(Call::Apply, outcome)?;
        }
        Ok(())
    }

    /// The read model as JSON.
    pub fn try_snapshot(&mut self) -> Result<Value, PluginError> {
        let outcome = self.instance.invoke(&Call::Snapshot, |b, store| b.snapshot(store))?;
        let text = self.guest_result(Call::Snapshot, outcome)?;
        self.loaded.accept_json(&Call::Snapshot, &text)
    }

    /// Replaces the read model.
    pub fn try_restore(&mut self, snapshot: &Value) -> Result<(), PluginError> {
        let text = snapshot.to_string();
        let outcome = self.instance.invoke(&Call::Restore, |b, store| b.restore(store, &text))?;
        self.guest_result(Call::Restore, outcome)
    }

    /// Back to the empty read model (a fresh instance after a trap).
    pub fn try_reset(&mut self) -> Result<(), PluginError> {
        let loaded = &self.loaded;
        self.instance.reset(|b, store| b.reset(store), &|store| loaded.instantiate(store))
    }

    /// Reads part of the read model: `pointer` is a JSON pointer (RFC 6901; `""` = all of it).
    /// Absent parts read as `null`.
    pub fn query(&mut self, pointer: &str) -> Result<Value, PluginError> {
        let outcome = self.instance.invoke(&Call::Query, |b, store| b.query(store, pointer))?;
        let text = self.guest_result(Call::Query, outcome)?;
        self.loaded.accept_json(&Call::Query, &text)
    }
}

impl DynProjection for PluginProjection {
    fn name(&self) -> &str {
        self.loaded.info.projection_name.as_deref().unwrap_or_default()
    }

    fn apply(&mut self, events: &[StoredEvent]) -> Result<(), Fault> {
        self.try_apply(events).map_err(Fault::new)
    }

    fn snapshot(&mut self) -> Result<Value, Fault> {
        self.try_snapshot().map_err(Fault::new)
    }

    fn restore(&mut self, snapshot: &Value) -> Result<(), Fault> {
        self.try_restore(snapshot).map_err(Fault::new)
    }

    fn reset(&mut self) -> Result<(), Fault> {
        self.try_reset().map_err(Fault::new)
    }
}
