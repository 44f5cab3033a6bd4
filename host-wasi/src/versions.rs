//! The plugin ABI versions this host speaks: the current `evfold:plugin@0.3.x` and the previous
//! `0.2.0`, behind one interface per plugin kind, so the rest of the host is version-blind.
//!
//! A 0.2.0 aggregate has no decide context (its `decide` takes the command only: such a plugin
//! cannot read the context, which it never could) and rejects with a message only (the typed
//! handle gives `ExecuteError::Rejected`, as it always did); everything else is the same call
//! with other generated types. A 0.2.0 projection differs in nothing but the package version.

use wasmtime::component::InstancePre;
use wasmtime::Store;

use crate::bindings::aggregate::exports::evfold::plugin::aggregate::{AggregateInfo, Decision, Rejection};
use crate::bindings::aggregate::{AggregatePlugin, AggregatePluginPre};
use crate::bindings::projection::exports::evfold::plugin::projection::ProjectionInfo;
use crate::bindings::projection::{ProjectionPlugin, ProjectionPluginPre};
use crate::bindings::v0_2;
use crate::sandbox::Sandbox;

/// Export-name versions of the current ABI (`0.3.x`: patch versions only add).
pub(crate) const CURRENT_VERSION_PREFIX: &str = "0.3.";
/// Export-name versions of the previous ABI, still loaded.
pub(crate) const PREVIOUS_VERSION_PREFIX: &str = "0.2.";

/// Whether an export or import version is one this host speaks.
pub(crate) fn is_supported(version: &str) -> bool {
    version.starts_with(CURRENT_VERSION_PREFIX) || version.starts_with(PREVIOUS_VERSION_PREFIX)
}

/// What a host accepts, for error messages (`evfold:plugin/aggregate@0.3.x or @0.2.x`).
pub(crate) fn supported(prefix: &str, interface: &str) -> String {
    format!("{prefix}{interface}@{CURRENT_VERSION_PREFIX}x or @{PREVIOUS_VERSION_PREFIX}x")
}

/// Result of a guest call: a trap (outer) or the guest's own error string (inner).
type GuestResult<T> = wasmtime::Result<Result<T, String>>;

/// A pre-linked aggregate component of either version.
pub(crate) enum AggregatePre {
    Current(AggregatePluginPre<Sandbox>),
    V0_2(v0_2::aggregate::AggregatePluginPre<Sandbox>),
}

impl AggregatePre {
    /// Checks the component's exports against the bindings of `abi_version`.
    pub(crate) fn new(abi_version: &str, pre: InstancePre<Sandbox>) -> wasmtime::Result<Self> {
        Ok(if abi_version.starts_with(PREVIOUS_VERSION_PREFIX) {
            AggregatePre::V0_2(v0_2::aggregate::AggregatePluginPre::new(pre)?)
        } else {
            AggregatePre::Current(AggregatePluginPre::new(pre)?)
        })
    }

    /// A fresh instance in `store`.
    pub(crate) fn instantiate(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<AggregateBindings> {
        Ok(match self {
            AggregatePre::Current(pre) => AggregateBindings::Current(pre.instantiate(store)?),
            AggregatePre::V0_2(pre) => AggregateBindings::V0_2(pre.instantiate(store)?),
        })
    }
}

/// An instantiated aggregate component of either version.
pub(crate) enum AggregateBindings {
    Current(AggregatePlugin),
    V0_2(v0_2::aggregate::AggregatePlugin),
}

impl AggregateBindings {
    pub(crate) fn metadata(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<AggregateInfo> {
        match self {
            AggregateBindings::Current(b) => b.evfold_plugin_aggregate().call_metadata(store),
            AggregateBindings::V0_2(b) => {
                let info = b.evfold_plugin_aggregate().call_metadata(store)?;
                Ok(AggregateInfo {
                    name: info.name,
                    plugin_version: info.plugin_version,
                    sdk_version: info.sdk_version,
                    aggregate_type: info.aggregate_type,
                    event_types: info.event_types,
                    command_types: info.command_types,
                })
            }
        }
    }

    /// `decide`; a 0.2.0 plugin gets the command only and rejects without error data.
    pub(crate) fn decide(&self, store: &mut Store<Sandbox>, command: &str, context: &str) -> GuestResult<Decision> {
        match self {
            AggregateBindings::Current(b) => b.evfold_plugin_aggregate().call_decide(store, command, context),
            AggregateBindings::V0_2(b) => {
                use v0_2::aggregate::exports::evfold::plugin::aggregate::Decision as Old;
                Ok(b.evfold_plugin_aggregate().call_decide(store, command)?.map(|decision| match decision {
                    Old::Accepted(events) => Decision::Accepted(events),
                    Old::Rejected(message) => Decision::Rejected(Rejection { message, error: None }),
                }))
            }
        }
    }

    pub(crate) fn fold(&self, store: &mut Store<Sandbox>, events: &str) -> GuestResult<()> {
        match self {
            AggregateBindings::Current(b) => b.evfold_plugin_aggregate().call_fold(store, events),
            AggregateBindings::V0_2(b) => b.evfold_plugin_aggregate().call_fold(store, events),
        }
    }

    pub(crate) fn snapshot(&self, store: &mut Store<Sandbox>) -> GuestResult<String> {
        match self {
            AggregateBindings::Current(b) => b.evfold_plugin_aggregate().call_snapshot(store),
            AggregateBindings::V0_2(b) => b.evfold_plugin_aggregate().call_snapshot(store),
        }
    }

    pub(crate) fn restore(&self, store: &mut Store<Sandbox>, state: &str) -> GuestResult<()> {
        match self {
            AggregateBindings::Current(b) => b.evfold_plugin_aggregate().call_restore(store, state),
            AggregateBindings::V0_2(b) => b.evfold_plugin_aggregate().call_restore(store, state),
        }
    }

    pub(crate) fn reset(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<()> {
        match self {
            AggregateBindings::Current(b) => b.evfold_plugin_aggregate().call_reset(store),
            AggregateBindings::V0_2(b) => b.evfold_plugin_aggregate().call_reset(store),
        }
    }
}

/// A pre-linked projection component of either version.
pub(crate) enum ProjectionPre {
    Current(ProjectionPluginPre<Sandbox>),
    V0_2(v0_2::projection::ProjectionPluginPre<Sandbox>),
}

impl ProjectionPre {
    /// Checks the component's exports against the bindings of `abi_version`.
    pub(crate) fn new(abi_version: &str, pre: InstancePre<Sandbox>) -> wasmtime::Result<Self> {
        Ok(if abi_version.starts_with(PREVIOUS_VERSION_PREFIX) {
            ProjectionPre::V0_2(v0_2::projection::ProjectionPluginPre::new(pre)?)
        } else {
            ProjectionPre::Current(ProjectionPluginPre::new(pre)?)
        })
    }

    /// A fresh instance in `store`.
    pub(crate) fn instantiate(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<ProjectionBindings> {
        Ok(match self {
            ProjectionPre::Current(pre) => ProjectionBindings::Current(pre.instantiate(store)?),
            ProjectionPre::V0_2(pre) => ProjectionBindings::V0_2(pre.instantiate(store)?),
        })
    }
}

/// An instantiated projection component of either version.
pub(crate) enum ProjectionBindings {
    Current(ProjectionPlugin),
    V0_2(v0_2::projection::ProjectionPlugin),
}

impl ProjectionBindings {
    pub(crate) fn metadata(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<ProjectionInfo> {
        match self {
            ProjectionBindings::Current(b) => b.evfold_plugin_projection().call_metadata(store),
            ProjectionBindings::V0_2(b) => {
                let info = b.evfold_plugin_projection().call_metadata(store)?;
                Ok(ProjectionInfo {
                    name: info.name,
                    plugin_version: info.plugin_version,
                    sdk_version: info.sdk_version,
                    projection_name: info.projection_name,
                })
            }
        }
    }

    pub(crate) fn apply(&self, store: &mut Store<Sandbox>, events: &str) -> GuestResult<()> {
        match self {
            ProjectionBindings::Current(b) => b.evfold_plugin_projection().call_apply(store, events),
            ProjectionBindings::V0_2(b) => b.evfold_plugin_projection().call_apply(store, events),
        }
    }

    pub(crate) fn snapshot(&self, store: &mut Store<Sandbox>) -> GuestResult<String> {
        match self {
            ProjectionBindings::Current(b) => b.evfold_plugin_projection().call_snapshot(store),
            ProjectionBindings::V0_2(b) => b.evfold_plugin_projection().call_snapshot(store),
        }
    }

    pub(crate) fn restore(&self, store: &mut Store<Sandbox>, state: &str) -> GuestResult<()> {
        match self {
            ProjectionBindings::Current(b) => b.evfold_plugin_projection().call_restore(store, state),
            ProjectionBindings::V0_2(b) => b.evfold_plugin_projection().call_restore(store, state),
        }
    }

    pub(crate) fn reset(&self, store: &mut Store<Sandbox>) -> wasmtime::Result<()> {
        match self {
            ProjectionBindings::Current(b) => b.evfold_plugin_projection().call_reset(store),
            ProjectionBindings::V0_2(b) => b.evfold_plugin_projection().call_reset(store),
        }
    }

    pub(crate) fn query(&self, store: &mut Store<Sandbox>, request: &str) -> GuestResult<String> {
        match self {
            ProjectionBindings::Current(b) => b.evfold_plugin_projection().call_query(store, request),
            ProjectionBindings::V0_2(b) => b.evfold_plugin_projection().call_query(store, request),
        }
    }
}
