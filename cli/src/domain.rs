//! The code behind aggregate types and projections: the native examples from
//! `evfold_core::examples`, or WASM plugin files loaded through `evfold-wasi`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use evfold_core::examples::{Balances, BankAccount, Counter};
use evfold_core::{AggregateFactory, DynProjection, TypedAggregateFactory, TypedProjection};
use evfold_wasi::{Limits, PluginEngine};

/// Native example aggregate types.
pub const NATIVE_AGGREGATES: [&str; 2] = ["bank-account", "counter"];
/// Native example projections.
pub const NATIVE_PROJECTIONS: [&str; 1] = ["balances"];

/// The native example factory for `aggregate_type`, if there is one.
pub fn native_aggregate(aggregate_type: &str) -> Option<Arc<dyn AggregateFactory>> {
    match aggregate_type {
        "bank-account" => Some(Arc::new(TypedAggregateFactory::<BankAccount>::default())),
        "counter" => Some(Arc::new(TypedAggregateFactory::<Counter>::default())),
        _ => None,
    }
}

/// The native example projection called `name`, if there is one.
pub fn native_projection(name: &str) -> Option<Box<dyn DynProjection>> {
    match name {
        "balances" => Some(Box::new(TypedProjection::<Balances>::default())),
        _ => None,
    }
}

fn engine() -> Result<PluginEngine> {
    PluginEngine::new(Limits::default()).context("starting the plugin engine")
}

/// Loads an aggregate plugin.
pub fn plugin_aggregate(path: &Path) -> Result<Arc<dyn AggregateFactory>> {
    let factory = engine()?.load_aggregate(path).with_context(|| format!("bad plugin {}", path.display()))?;
    Ok(Arc::new(factory))
}

/// Loads a projection plugin.
pub fn plugin_projection(path: &Path) -> Result<Box<dyn DynProjection>> {
    let projection = engine()?.load_projection(path).with_context(|| format!("bad plugin {}", path.display()))?;
    Ok(Box::new(projection))
}

/// The factory for `aggregate_type`: the plugin if given (its type must match), else the native
/// example of that name.
pub fn aggregate(aggregate_type: &str, plugin: Option<&Path>) -> Result<Arc<dyn AggregateFactory>> {
    if let Some(path) = plugin {
        let factory = plugin_aggregate(path)?;
        if factory.aggregate_type() != aggregate_type {
            bail!(
                "plugin {} implements aggregate type {:?}, not {aggregate_type:?}",
                path.display(),
                factory.aggregate_type()
            );
        }
        return Ok(factory);
    }
    native_aggregate(aggregate_type).with_context(|| {
        format!(
            "no code for aggregate type {aggregate_type:?}: pass --plugin FILE.wasm (native examples: {})",
            NATIVE_AGGREGATES.join(", ")
        )
    })
}

/// The projection: the plugin if given (its name must match `name` when both are given), else the
/// native example called `name`.
pub fn projection(name: Option<&str>, plugin: Option<&Path>) -> Result<Box<dyn DynProjection>> {
    if let Some(path) = plugin {
        let projection = plugin_projection(path)?;
        if let Some(name) = name.filter(|n| *n != projection.name()) {
            bail!("plugin {} is projection {:?}, not {name:?}", path.display(), projection.name());
        }
        return Ok(projection);
    }
    let name = name.context("give a projection name or --plugin FILE.wasm")?;
    native_projection(name).with_context(|| {
        format!(
            "no code for projection {name:?}: pass --plugin FILE.wasm (native examples: {})",
            NATIVE_PROJECTIONS.join(", ")
        )
    })
}
