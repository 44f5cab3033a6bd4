//! Plugin aggregates: `PluginAggregateFactory` (an `evfold_core::AggregateFactory`) makes one
//! sandboxed component instance per stream, `PluginAggregate` (an `evfold_core::DynAggregate`).
//! After a trap the instance is discarded; the machine's `reset()` builds a fresh one and then
//! reloads the state from durable storage.

use std::collections::BTreeSet;
use std::sync::Arc;

use evfold_core::{AggregateFactory, DecideContext, Decision, DynAggregate, Fault, Payload, Rejection};
use serde_json::Value;
use wasmtime::Store;

use crate::bindings::aggregate::exports::evfold::plugin::aggregate as wit;
use crate::engine::{throwaway_store, EngineInner, PluginInfo, PluginKind};
use crate::error::{Call, PluginError};
use crate::instance::Instance;
use crate::json::{parse_checked, parse_payload_lines, payload_lines, write_tagged};
use crate::sandbox::{self, Sandbox};
use crate::versions::{AggregateBindings, AggregatePre};

/// A loaded aggregate plugin, shared by its factory and every instance.
pub(crate) struct LoadedAggregate {
    engine: Arc<EngineInner>,
    plugin: Arc<str>,
    pre: AggregatePre,
    info: PluginInfo,
    declared: BTreeSet<String>,
}

impl LoadedAggregate {
    /// Reads the metadata in a throwaway instance and keeps the pre-linked component.
    pub(crate) fn load(
        engine: Arc<EngineInner>,
        file_plugin: Arc<str>,
        sha256: String,
        abi_version: String,
        pre: AggregatePre,
    ) -> Result<Self, PluginError> {
        let mut store = throwaway_store(&engine, &file_plugin);
        let meta = sandbox::run(&mut store, &engine.limits, &Call::Metadata, |store| {
            let plugin = pre.instantiate(&mut *store)?;
            plugin.metadata(&mut *store)
        })?;
        let info = PluginInfo {
            kind: PluginKind::Aggregate,
            name: meta.name,
            plugin_version: meta.plugin_version,
            sdk_version: meta.sdk_version,
            abi_version,
            sha256,
            aggregate_type: Some(meta.aggregate_type),
            projection_name: None,
            event_types: meta.event_types,
            command_types: meta.command_types,
        };
        let declared = info.event_types.iter().cloned().collect();
        Ok(LoadedAggregate { plugin: info.name.as_str().into(), engine, pre, info, declared })
    }

    fn plugin(&self) -> String {
        self.plugin.to_string()
    }

    /// Instantiates the pre-linked component in `store`.
    fn instantiate(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<AggregateBindings> {
        self.pre.instantiate(store)
    }

    /// A fresh instance in the initial state.
    fn start(&self) -> Result<Instance<AggregateBindings>, PluginError> {
        Instance::start(self.engine.clone(), self.plugin.clone(), &|store| self.instantiate(store))
    }

    /// Checks the events `decide` returned (tagged JSONL): size cap, JSON depth, syntax and shape,
    /// declared types.
    fn accept(&self, call: &Call, jsonl: &str) -> Result<Vec<Payload>, PluginError> {
        let limits = &self.engine.limits;
        if jsonl.len() > limits.output_bytes {
            let (plugin, call) = (self.plugin(), call.clone());
            return Err(PluginError::OutputTooLarge { plugin, call, size: jsonl.len(), limit: limits.output_bytes });
        }
        let events = parse_payload_lines(jsonl, limits.json_depth).map_err(|problem| PluginError::BadOutput {
            plugin: self.plugin(),
            call: call.clone(),
            reason: format!("events: {problem}"),
        })?;
        if let Some(event) = events.iter().find(|event| !self.declared.contains(&event.type_name)) {
            return Err(PluginError::UndeclaredEventType {
                plugin: self.plugin(),
                call: call.clone(),
                event_type: event.type_name.clone(),
                declared: self.info.event_types.clone(),
            });
        }
        Ok(events)
    }

    /// Parses a snapshot the guest returned, within the snapshot cap.
    fn accept_snapshot(&self, call: &Call, text: &str) -> Result<Value, PluginError> {
        let limits = &self.engine.limits;
        if text.len() > limits.snapshot_bytes {
            let (plugin, call) = (self.plugin(), call.clone());
            return Err(PluginError::OutputTooLarge { plugin, call, size: text.len(), limit: limits.snapshot_bytes });
        }
        parse_checked(text, limits.json_depth).map_err(|problem| PluginError::BadOutput {
            plugin: self.plugin(),
            call: call.clone(),
            reason: format!("snapshot: {problem}"),
        })
    }

    /// Parses the error data of a rejection (JSON text), within the output cap and depth limit.
    fn accept_error_data(&self, call: &Call, text: &str) -> Result<Value, PluginError> {
        let limits = &self.engine.limits;
        if text.len() > limits.output_bytes {
            let (plugin, call) = (self.plugin(), call.clone());
            return Err(PluginError::OutputTooLarge { plugin, call, size: text.len(), limit: limits.output_bytes });
        }
        parse_checked(text, limits.json_depth).map_err(|problem| PluginError::BadOutput {
            plugin: self.plugin(),
            call: call.clone(),
            reason: format!("rejection error data: {problem}"),
        })
    }

    fn guest_error(&self, call: Call, message: String) -> PluginError {
        PluginError::Guest { plugin: self.plugin(), call, message }
    }
}

/// Makes sandboxed instances of one aggregate plugin. Cheap to clone.
#[derive(Clone)]
pub struct PluginAggregateFactory {
    loaded: Arc<LoadedAggregate>,
}

impl PluginAggregateFactory {
    pub(crate) fn new(loaded: Arc<LoadedAggregate>) -> Self {
        PluginAggregateFactory { loaded }
    }

    /// The plugin's metadata.
    pub fn info(&self) -> &PluginInfo {
        &self.loaded.info
    }

    /// A new instance, typed (the trait method returns it boxed).
    pub fn instance(&self) -> Result<PluginAggregate, PluginError> {
        Ok(PluginAggregate {
            instance: self.loaded.start()?,
            loaded: self.loaded.clone(),
            scratch: Vec::new(),
            context_scratch: Vec::new(),
        })
    }
}

impl AggregateFactory for PluginAggregateFactory {
    fn aggregate_type(&self) -> &str {
        self.loaded.info.aggregate_type.as_deref().unwrap_or_default()
    }

    fn instantiate(&self) -> Result<Box<dyn DynAggregate>, Fault> {
        Ok(Box::new(self.instance().map_err(Fault::new)?))
    }
}

/// One aggregate instance running in its own sandbox (store + component instance).
pub struct PluginAggregate {
    loaded: Arc<LoadedAggregate>,
    instance: Instance<AggregateBindings>,
    /// Reused buffer for the JSON text sent to the guest.
    scratch: Vec<u8>,
    /// Reused buffer for the decide context sent with a command.
    context_scratch: Vec<u8>,
}

impl PluginAggregate {
    /// The plugin's metadata.
    pub fn info(&self) -> &PluginInfo {
        &self.loaded.info
    }

    /// Whether the instance was discarded after a trap (until `reset()`).
    pub fn is_discarded(&self) -> bool {
        self.instance.is_discarded()
    }

    /// Decides a command in `context`: typed error version of [`DynAggregate::decide`]. The
    /// context crosses as JSON (`DecideContext`'s serde form), the rejection's error data back.
    pub fn try_decide(&mut self, command: &Payload, context: &DecideContext) -> Result<Decision, PluginError> {
        let call = Call::Decide(command.type_name.clone());
        self.scratch.clear();
        write_tagged(&mut self.scratch, command);
        let command = std::str::from_utf8(&self.scratch).expect("serde_json writes UTF-8");
        self.context_scratch.clear();
        serde_json::to_writer(&mut self.context_scratch, context).expect("a decide context serializes");
        let context = std::str::from_utf8(&self.context_scratch).expect("serde_json writes UTF-8");
        let outcome = self.instance.invoke(&call, |b, store| b.decide(store, command, context));
        match outcome? {
            Err(message) => Err(self.loaded.guest_error(call, message)),
            Ok(wit::Decision::Rejected(wit::Rejection { message, error })) => {
                let data = error.map(|text| self.loaded.accept_error_data(&call, &text)).transpose()?;
                Ok(Err(Rejection::message(message).with_data(data)))
            }
            Ok(wit::Decision::Accepted(events)) => Ok(Ok(self.loaded.accept(&call, &events)?)),
        }
    }

    /// Folds events (in chunks of `Limits::fold_chunk`, each one JSONL string with fresh fuel).
    pub fn try_apply(&mut self, events: &[Payload]) -> Result<(), PluginError> {
        for chunk in events.chunks(self.loaded.engine.limits.fold_chunk.max(1)) {
            let batch = payload_lines(&mut self.scratch, chunk);
            let outcome = self.instance.invoke(&Call::Fold, |b, store| b.fold(store, batch))?;
            outcome.map_err(|message| self.loaded.guest_error(Call::Fold, message))?;
        }
        Ok(())
    }

    /// The state as JSON.
    pub fn try_snapshot(&mut self) -> Result<Value, PluginError> {
        let outcome = self.instance.invoke(&Call::Snapshot, |b, store| b.snapshot(store))?;
        let text = outcome.map_err(|message| self.loaded.guest_error(Call::Snapshot, message))?;
        self.loaded.accept_snapshot(&Call::Snapshot, &text)
    }

    /// Replaces the state with a snapshot.
    pub fn try_restore(&mut self, snapshot: &Value) -> Result<(), PluginError> {
        let text = snapshot.to_string();
        let outcome = self.instance.invoke(&Call::Restore, |b, store| b.restore(store, &text))?;
        outcome.map_err(|message| self.loaded.guest_error(Call::Restore, message))
    }

    /// Back to the initial state: the guest's `reset`, or a fresh instance after a trap.
    pub fn try_reset(&mut self) -> Result<(), PluginError> {
        let loaded = &self.loaded;
        self.instance.reset(|b, store| b.reset(store), &|store| loaded.instantiate(store))
    }
}

impl DynAggregate for PluginAggregate {
    fn aggregate_type(&self) -> &str {
        self.loaded.info.aggregate_type.as_deref().unwrap_or_default()
    }

    fn decide(&mut self, command: &Payload, context: &DecideContext) -> Result<Decision, Fault> {
        self.try_decide(command, context).map_err(Fault::new)
    }

    fn apply(&mut self, events: &[Payload]) -> Result<(), Fault> {
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
