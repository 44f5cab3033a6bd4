//! `PluginEngine`: one wasmtime engine with the sandbox configuration, two linkers (the
//! `evfold:plugin/host` import only; the same plus WASI 0.2 for components that import WASI), the
//! epoch ticker of the optional wall-clock backstop, and the compiled-plugin cache. Loading a
//! plugin reads the file, compiles it (once), checks its ABI version and imports, and reads its
//! metadata.

use std::path::Path;
use std::sync::Arc;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::aggregate::{LoadedAggregate, PluginAggregateFactory};
use crate::bindings::{aggregate as agg_bindings, v0_2};
use crate::cache::{sha256_hex, ArtifactCache};
use crate::error::{Call, PluginError};
use crate::limits::{Allocation, EngineOptions, Limits};
use crate::projection::{LoadedProjection, PluginProjection};
use crate::sandbox::{self, Sandbox, Ticker};
use crate::versions::{self, AggregatePre, ProjectionPre};
use crate::wasi::is_linked_wasi;

/// WIT package (ABI) version this host implements; plugins must export a semver-compatible one.
pub const ABI_VERSION: &str = "0.3.0";
/// Prefix of every export or import name of the ABI.
const ABI_PREFIX: &str = "evfold:plugin/";

/// What kind of plugin a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// Exports `evfold:plugin/aggregate`.
    Aggregate,
    /// Exports `evfold:plugin/projection`.
    Projection,
}

impl PluginKind {
    fn as_str(self) -> &'static str {
        match self {
            PluginKind::Aggregate => "aggregate",
            PluginKind::Projection => "projection",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a plugin file says about itself (its metadata, read in the sandbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Aggregate or projection.
    pub kind: PluginKind,
    /// Plugin (crate) name.
    pub name: String,
    /// Plugin (crate) version.
    pub plugin_version: String,
    /// SDK version that built it (`none` for hand-written plugins).
    pub sdk_version: String,
    /// The ABI version it exports (e.g. `0.3.0`).
    pub abi_version: String,
    /// SHA-256 of the file, hex: record it next to the data the plugin produced.
    pub sha256: String,
    /// Stream type name (aggregates).
    pub aggregate_type: Option<String>,
    /// Projection name (projections).
    pub projection_name: Option<String>,
    /// Event types `decide` may produce (aggregates).
    pub event_types: Vec<String>,
    /// Command types `decide` accepts (aggregates).
    pub command_types: Vec<String>,
}

/// Shared engine state.
pub(crate) struct EngineInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<Sandbox>,
    /// `linker` plus WASI 0.2 (sync): used only for components that import WASI.
    wasi_linker: Linker<Sandbox>,
    pub(crate) limits: Limits,
    cache: ArtifactCache,
    /// Advances the epoch while the engine lives (only with a wall-clock limit).
    _ticker: Option<Ticker>,
}

/// Loads and runs sandboxed plugins. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<EngineInner>,
}

/// A compiled, ABI-checked component and its identity.
struct Checked {
    plugin: Arc<str>,
    sha256: String,
    abi_version: String,
    component: Component,
}

impl PluginEngine {
    /// An engine with these limits, no disk cache, on-demand allocation.
    pub fn new(limits: Limits) -> Result<Self, PluginError> {
        Self::with_options(EngineOptions { limits, ..EngineOptions::default() })
    }

    /// An engine built from full options.
    pub fn with_options(options: EngineOptions) -> Result<Self, PluginError> {
        let engine_error = |e: wasmtime::Error| PluginError::Engine(format!("{e:#}"));
        let engine = Engine::new(&wasmtime_config(&options)).map_err(engine_error)?;
        let mut linker = Linker::new(&engine);
        agg_bindings::AggregatePlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |sandbox| sandbox)
            .map_err(engine_error)?;
        // The host import of the previous ABI too: 0.2.0 plugins still load (`crate::versions`).
        v0_2::aggregate::AggregatePlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |sandbox| sandbox)
            .map_err(engine_error)?;
        let mut wasi_linker = linker.clone();
        wasmtime_wasi::p2::add_to_linker_sync(&mut wasi_linker).map_err(engine_error)?;
        let cache = ArtifactCache::new(&engine, options.cache_dir.clone())?;
        let ticker = match options.limits.wall_clock_limit {
            Some(limit) => Some(Ticker::start(&engine, crate::limits::epoch_tick(limit))?),
            None => None,
        };
        let inner = EngineInner { engine, linker, wasi_linker, limits: options.limits, cache, _ticker: ticker };
        Ok(PluginEngine { inner: Arc::new(inner) })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Loads an aggregate plugin: the factory makes one sandboxed instance per stream.
    pub fn load_aggregate(&self, path: impl AsRef<Path>) -> Result<PluginAggregateFactory, PluginError> {
        let checked = self.check(path.as_ref(), PluginKind::Aggregate)?;
        let pre = self.instantiate_pre(&checked)?;
        let pre = AggregatePre::new(&checked.abi_version, pre).map_err(|e| abi_error(&checked, &e))?;
        let loaded =
            LoadedAggregate::load(self.inner.clone(), checked.plugin, checked.sha256, checked.abi_version, pre)?;
        Ok(PluginAggregateFactory::new(Arc::new(loaded)))
    }

    /// Loads a projection plugin (one instance, holding the read model).
    pub fn load_projection(&self, path: impl AsRef<Path>) -> Result<PluginProjection, PluginError> {
        let checked = self.check(path.as_ref(), PluginKind::Projection)?;
        let pre = self.instantiate_pre(&checked)?;
        let pre = ProjectionPre::new(&checked.abi_version, pre).map_err(|e| abi_error(&checked, &e))?;
        let loaded =
            LoadedProjection::load(self.inner.clone(), checked.plugin, checked.sha256, checked.abi_version, pre)?;
        PluginProjection::new(Arc::new(loaded))
    }

    /// Reads a plugin's metadata (either kind). Compiles it if this engine has not yet.
    pub fn info(&self, path: impl AsRef<Path>) -> Result<PluginInfo, PluginError> {
        let path = path.as_ref();
        match self.load_aggregate(path) {
            Ok(factory) => Ok(factory.info().clone()),
            Err(PluginError::WrongKind { .. }) => Ok(self.load_projection(path)?.info().clone()),
            Err(other) => Err(other),
        }
    }

    /// Reads, compiles (cached) and checks a plugin file against the expected kind.
    fn check(&self, path: &Path, expected: PluginKind) -> Result<Checked, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read { path: path.to_owned(), source })?;
        let plugin: Arc<str> = path.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default().into();
        let sha256 = sha256_hex(&bytes);
        if bytes.starts_with(CORE_MODULE_PREAMBLE) {
            return Err(PluginError::Invalid {
                plugin: plugin.to_string(),
                call: Call::Load,
                message: NOT_A_COMPONENT.into(),
            });
        }
        let component = self.inner.cache.component(&self.inner.engine, &sha256, &bytes).map_err(|e| {
            PluginError::Invalid { plugin: plugin.to_string(), call: Call::Load, message: format!("{e:#}") }
        })?;
        let abi_version = self.check_abi(&plugin, &component, expected)?;
        Ok(Checked { plugin, sha256, abi_version, component })
    }

    /// Checks exports (kind + ABI version) and imports (only the evfold host interface).
    fn check_abi(&self, plugin: &str, component: &Component, expected: PluginKind) -> Result<String, PluginError> {
        let engine = &self.inner.engine;
        let ty = component.component_type();
        let exports: Vec<String> =
            ty.exports(engine).map(|(name, _)| name.to_owned()).filter(|n| n.starts_with(ABI_PREFIX)).collect();
        let kind_of = |name: &str| {
            let interface = name.strip_prefix(ABI_PREFIX)?.split('@').next()?;
            match interface {
                "aggregate" => Some(PluginKind::Aggregate),
                "projection" => Some(PluginKind::Projection),
                _ => None,
            }
        };
        let supported = versions::supported(ABI_PREFIX, expected.as_str());
        let mismatch = || PluginError::AbiMismatch {
            plugin: plugin.to_owned(),
            found: exports.clone(),
            supported: supported.clone(),
        };
        let (name, kind) = exports.iter().find_map(|n| kind_of(n).map(|k| (n, k))).ok_or_else(mismatch)?;
        let version = name.split_once('@').map(|(_, v)| v.to_owned()).unwrap_or_default();
        if !versions::is_supported(&version) {
            return Err(mismatch());
        }
        if kind != expected {
            let plugin = plugin.to_owned();
            return Err(PluginError::WrongKind { plugin, expected: expected.as_str(), found: kind.as_str() });
        }
        for (import, _) in ty.imports(engine) {
            let evfold = import.strip_prefix(ABI_PREFIX).and_then(|rest| rest.split_once('@')).is_some_and(
                |(interface, version)| matches!(interface, "host" | "types") && versions::is_supported(version),
            );
            if !evfold && !is_linked_wasi(import) {
                return Err(PluginError::ForbiddenImport { plugin: plugin.to_owned(), import: import.to_owned() });
            }
        }
        Ok(version)
    }

    /// Links the component against the host: `evfold:plugin/host`, plus WASI only when the
    /// component imports WASI (a WASI-free component never sees the WASI linker).
    fn instantiate_pre(&self, checked: &Checked) -> Result<wasmtime::component::InstancePre<Sandbox>, PluginError> {
        let engine = &self.inner.engine;
        let imports_wasi = checked.component.component_type().imports(engine).any(|(name, _)| is_linked_wasi(name));
        let linker = if imports_wasi { &self.inner.wasi_linker } else { &self.inner.linker };
        linker.instantiate_pre(&checked.component).map_err(|e| PluginError::Invalid {
            plugin: checked.plugin.to_string(),
            call: Call::Load,
            message: format!("{e:#}"),
        })
    }
}

/// The first 8 bytes of a core wasm module (magic, version 1); a component has layer 1 instead.
const CORE_MODULE_PREAMBLE: &[u8] = b"\0asm\x01\0\0\0";

/// What to run when given a core module: wasmtime's own message (`attempted to parse a wasm
/// module with a component parser`) names no tool.
const NOT_A_COMPONENT: &str = "this is a core WebAssembly module, not a component: build the plugin crate with \
     `evfold plugin build CRATE_DIR` (builds for wasm32-unknown-unknown and componentizes), or componentize this \
     module with `evfold plugin componentize FILE.wasm`";

/// A `*Pre::new` failure: the component lacks an export of the expected shape.
fn abi_error(checked: &Checked, error: &wasmtime::Error) -> PluginError {
    PluginError::AbiMismatch {
        plugin: checked.plugin.to_string(),
        found: vec![format!("{} ({error:#})", checked.abi_version)],
        supported: versions::supported(ABI_PREFIX, "*"),
    }
}

/// The deterministic sandbox configuration.
fn wasmtime_config(options: &EngineOptions) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .concurrency_support(false)
        .consume_fuel(true)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .wasm_threads(false)
        .shared_memory(false)
        .max_wasm_stack(options.limits.stack_bytes)
        .epoch_interruption(options.limits.wall_clock_limit.is_some())
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(sandbox::BACKTRACE_FRAMES));
    if let Allocation::Pooling { max_instances } = options.allocation {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances.saturating_mul(4))
            .total_memories(max_instances)
            .total_tables(max_instances.saturating_mul(4))
            .total_stacks(max_instances)
            .max_memories_per_component(1)
            .max_core_instances_per_component(8)
            .max_tables_per_component(8)
            .max_memory_size(options.limits.memory_bytes);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Runs `metadata` in a throwaway instance (used at load).
pub(crate) fn throwaway_store(inner: &EngineInner, plugin: &Arc<str>) -> wasmtime::Store<Sandbox> {
    sandbox::new_store(&inner.engine, plugin.clone(), &inner.limits)
}

/// Reads a plugin's metadata with a default engine (compiles the plugin; prefer
/// [`PluginEngine::info`] when you have an engine).
pub fn plugin_info(path: impl AsRef<Path>) -> Result<PluginInfo, PluginError> {
    PluginEngine::new(Limits::default())?.info(path)
}
