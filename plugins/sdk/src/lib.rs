//! # evfold-plugin-sdk: write an evfold aggregate or projection once, run it as a WASM plugin
//!
//! Implement the very same typed traits as native code ([`evfold_core::Aggregate`],
//! [`evfold_core::Projection`]) and export the type with one macro line in a `cdylib` crate:
//!
//! ```ignore
//! evfold_plugin_sdk::export_aggregate!(evfold_core::examples::BankAccount);
//! ```
//! ```ignore
//! evfold_plugin_sdk::export_projection!(evfold_core::examples::Balances);
//! ```
//! Build for `wasm32-unknown-unknown` and componentize (the project's
//! `scripts/build-plugins.sh` does both); the host (`evfold-wasi`) loads the `.wasm`. The SDK
//! implements the WIT package `evfold:plugin@0.3.0` (`plugins/wit/evfold-plugin.wit`): all ABI code
//! is generated here, nothing of it shows in plugin code.
//!
//! Rules for plugin code (see `docs/plugins.md`): commands and events are adjacently tagged serde
//! enums (`#[serde(tag = "type", content = "data")]`, as the core requires anyway); no clock,
//! randomness, threads or files (the target has none: such std calls panic, and a panic traps the
//! instance); [`log`] is the only way out. A panic's message reaches the host's log and error.

// The ABI glue that wit-bindgen generates (export trampolines, canonical-ABI lifting and
// lowering) is `unsafe` by nature; it is confined to the `bindings` module.
extern crate self as evfold_plugin_sdk;

mod aggregate;
mod host;
mod probe;
mod projection;

pub use aggregate::{AggregateExport, AggregatePlugin};
pub use host::{install_panic_hook, log, LogLevel, PANIC_PREFIX};
pub use probe::variant_names;
pub use projection::{ProjectionExport, ProjectionPlugin};

/// Version of this SDK, reported by every plugin's metadata.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Version of the WIT package (`evfold:plugin@...`) this SDK implements.
pub const ABI_VERSION: &str = "0.3.0";

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Generated bindings for the two worlds of `evfold:plugin@0.3.0`. Not for plugin code.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    /// The `aggregate-plugin` world.
    pub mod aggregate {
        wit_bindgen::generate!({
            path: "../wit",
            world: "evfold:plugin/aggregate-plugin@0.3.0",
            pub_export_macro: true,
            export_macro_name: "__export_aggregate_world",
            runtime_path: "::evfold_plugin_sdk::__wit_bindgen::rt",
        });
    }
    /// The `projection-plugin` world.
    pub mod projection {
        wit_bindgen::generate!({
            path: "../wit",
            world: "evfold:plugin/projection-plugin@0.3.0",
            pub_export_macro: true,
            export_macro_name: "__export_projection_world",
            runtime_path: "::evfold_plugin_sdk::__wit_bindgen::rt",
            with: {
                "evfold:plugin/host@0.3.0": crate::bindings::aggregate::evfold::plugin::host,
            },
        });
    }
}

/// Exports a typed [`evfold_core::Aggregate`] as this crate's plugin. Use once, in a `cdylib`.
///
/// ```ignore
/// evfold_plugin_sdk::export_aggregate!(evfold_core::examples::BankAccount);
/// ```
/// The plugin's name and version are the crate's (`CARGO_PKG_NAME`, `CARGO_PKG_VERSION`).
#[macro_export]
macro_rules! export_aggregate {
    ($aggregate:ty) => {
        const _: () = {
            struct __EvfoldPlugin;
            impl $crate::AggregatePlugin for __EvfoldPlugin {
                type Aggregate = $aggregate;
                const NAME: &'static str = env!("CARGO_PKG_NAME");
                const VERSION: &'static str = env!("CARGO_PKG_VERSION");
            }
            type __EvfoldExport = $crate::AggregateExport<__EvfoldPlugin>;
            $crate::bindings::aggregate::__export_aggregate_world!(
                __EvfoldExport with_types_in $crate::bindings::aggregate
            );
        };
    };
}

/// Exports a typed [`evfold_core::Projection`] as this crate's plugin. Use once, in a `cdylib`.
///
/// ```ignore
/// evfold_plugin_sdk::export_projection!(evfold_core::examples::Balances);
/// ```
#[macro_export]
macro_rules! export_projection {
    ($projection:ty) => {
        const _: () = {
            struct __EvfoldPlugin;
            impl $crate::ProjectionPlugin for __EvfoldPlugin {
                type Projection = $projection;
                const NAME: &'static str = env!("CARGO_PKG_NAME");
                const VERSION: &'static str = env!("CARGO_PKG_VERSION");
            }
            type __EvfoldExport = $crate::ProjectionExport<__EvfoldPlugin>;
            $crate::bindings::projection::__export_projection_world!(
                __EvfoldExport with_types_in $crate::bindings::projection
            );
        };
    };
}
