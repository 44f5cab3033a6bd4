//! # evfold-wasi: sandboxed WASM plugins for evfold
//!
//! Runs aggregates and projections written against the typed `evfold_core` traits and built as
//! WebAssembly components (`plugins/sdk`, WIT package `evfold:plugin@0.3.0`; plugins built
//! against 0.2.0 still load, without the decide context) inside wasmtime,
//! behind the core's object-safe traits: a plugin aggregate is an
//! [`evfold_core::AggregateFactory`], a plugin projection an [`evfold_core::DynProjection`], so
//! every store runs them exactly like native ones.
//!
//! ```no_run
//! use evfold_wasi::{Limits, PluginEngine};
//! let engine = PluginEngine::new(Limits::default())?;
//! let bank = engine.load_aggregate("target/plugins/bank-account.wasm")?;      // AggregateFactory
//! let balances = engine.load_projection("target/plugins/balances.wasm")?;     // DynProjection
//! let mut store = evfold_core::memory::MemoryStore::new();
//! store.register_factory(Box::new(bank));
//! store.add_dyn_projection(Box::new(balances));
//! # Ok::<(), evfold_wasi::PluginError>(())
//! ```
//!
//! ## Sandbox
//! - Per call: fuel (deterministic CPU limit), linear-memory cap (a `ResourceLimiter`), caps on
//!   output and snapshot size, JSON nesting depth; an engine-wide stack cap ([`Limits`]).
//! - Capabilities: none by default. A plugin built for `wasm32-unknown-unknown` imports only
//!   `evfold:plugin/host` (a capped log). One built for `wasm32-wasip2` may also import WASI 0.2
//!   (cli, io, clocks, random, filesystem, sockets): it gets a deny-by-default, deterministic
//!   `WasiCtx` (fixed clocks, fixed-seed random, no env, files or network) whose clocks, random
//!   and env the host may grant ([`Grants`]); its stdout/stderr go to `tracing` under the same
//!   per-call cap as the log. Any other import is refused at load.
//! - Wall-clock backstop (opt-in, [`Limits::wall_clock_limit`]): epoch interruption, a typed
//!   [`PluginError::WallClockTimeout`] (an infrastructure error, not deterministic).
//! - Determinism: NaN canonicalization, deterministic relaxed SIMD, no threads or shared memory,
//!   no component-model concurrency.
//! - Failures are typed ([`PluginError`]) and name the plugin and the call. A trapped instance is
//!   discarded; `reset()` builds a fresh one (the core then reloads its state from storage).
//!   Other instances, of the same plugin or not, are separate stores and never affected.
//!
//! ## Speed
//! Compiled once per (plugin content, engine config), optionally cached on disk
//! ([`EngineOptions::cache_dir`]); instances come from a pre-linked `InstancePre`; folds cross in
//! batches (one JSONL string per batch). `benches/plugin.rs` measures against native code.
//!
//! The binary `evfold-wasi-run` runs `wasm32-wasip1` test binaries (see its docs).

mod aggregate;
mod bindings;
mod cache;
mod engine;
mod error;
mod instance;
mod json;
mod limits;
mod native;
mod projection;
mod sandbox;
mod versions;
mod wasi;

pub use aggregate::{PluginAggregate, PluginAggregateFactory};
pub use engine::{plugin_info, PluginEngine, PluginInfo, PluginKind, ABI_VERSION};
pub use error::{plugin_error, Call, PluginError};
pub use limits::{Allocation, EngineOptions, Limits};
pub use native::PluginRegistration;
pub use projection::PluginProjection;
pub use sandbox::SHADOW_RECURSION_FRAMES;
pub use wasi::Grants;
