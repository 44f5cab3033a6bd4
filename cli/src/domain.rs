//! The code behind aggregate types, projections and process managers: the native examples from
//! `evfold_core::examples`, or WASM plugin files loaded through `evfold-wasi`, compiled once and
//! cached on disk (`--plugin-cache`, default `$XDG_CACHE_HOME/evfold/plugins`, else
//! `~/.cache/evfold/plugins`), so `--plugin` commands after the first skip the compile.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context, Result};
use evfold_core::examples::{Balances, BankAccount, Counter};
use evfold_core::{AggregateFactory, DynProcessManager, DynProjection, TypedAggregateFactory, TypedProjection};
use evfold_wasi::{EngineOptions, Limits, PluginEngine};

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

/// Native example process managers.
pub const NATIVE_MANAGERS: [&str; 1] = ["transfers"];

/// The native example process manager called `name`, if there is one.
pub fn native_manager(name: &str) -> Option<Box<dyn DynProcessManager>> {
    match name {
        "transfers" => Some(Box::new(evfold_core::TypedProcessManager::<evfold_core::examples::Transfers>::default())),
        _ => None,
    }
}

/// The compiled-plugin cache directory (`None`: compile on every run).
static CACHE: OnceLock<Option<PathBuf>> = OnceLock::new();
/// One engine per process: plugins loaded twice (a retried open) are compiled once.
static ENGINE: OnceLock<PluginEngine> = OnceLock::new();

/// Records `--plugin-cache DIR` / `--no-plugin-cache` for this process.
pub fn set_cache(dir: Option<PathBuf>, disabled: bool) {
    let dir = if disabled { None } else { dir.or_else(default_cache_dir) };
    let _ = CACHE.set(dir);
}

/// `$XDG_CACHE_HOME/evfold/plugins`, else `$HOME/.cache/evfold/plugins`.
fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = non_empty("XDG_CACHE_HOME").or_else(|| non_empty("HOME").map(|home| home.join(".cache")))?;
    Some(base.join("evfold").join("plugins"))
}

fn engine() -> Result<&'static PluginEngine> {
    if let Some(engine) = ENGINE.get() {
        return Ok(engine);
    }
    let cache_dir = CACHE.get().cloned().flatten();
    let cache_dir = cache_dir.filter(|dir| match std::fs::create_dir_all(dir) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "no plugin cache: plugins are compiled on every run");
            false
        }
    });
    let options = EngineOptions { limits: Limits::default(), cache_dir, ..EngineOptions::default() };
    let engine = PluginEngine::with_options(options).context("starting the plugin engine")?;
    Ok(ENGINE.get_or_init(|| engine))
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
/// example of that name. `flag` is the option that names a plugin, for the hint.
pub fn aggregate(aggregate_type: &str, plugin: Option<&Path>, flag: &str) -> Result<Arc<dyn AggregateFactory>> {
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
            "no code for aggregate type {aggregate_type:?}: pass {flag} FILE.wasm (native examples: {})",
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
