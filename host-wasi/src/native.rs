//! Registration of plugins by file path on the native store's builder: the extension trait
//! [`PluginRegistration`] for `evfold_native::AggregateStoreBuilder`. (The native store does not
//! depend on wasmtime; this crate depends on it.)

use std::path::Path;
use std::sync::Arc;

use evfold_native::AggregateStoreBuilder;

use crate::engine::PluginEngine;
use crate::error::PluginError;

/// Adds `aggregate_plugin` / `projection_plugin` to the native store's builder.
///
/// ```no_run
/// use evfold_native::AggregateStore;
/// use evfold_wasi::{Limits, PluginEngine, PluginRegistration};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = PluginEngine::new(Limits::default())?;
/// let store = AggregateStore::builder("./data")
///     .aggregate_plugin(&engine, "target/plugins/bank-account.wasm")?
///     .projection_plugin(&engine, "target/plugins/balances.wasm")?
///     .open()
///     .await?;
/// # Ok(()) }
/// ```
pub trait PluginRegistration: Sized {
    /// Loads an aggregate plugin (compile or cache hit, ABI check, metadata) and registers it
    /// under the aggregate type it declares, like a native aggregate.
    fn aggregate_plugin(self, engine: &PluginEngine, path: impl AsRef<Path>) -> Result<Self, PluginError>;

    /// Loads a projection plugin and registers it under the name it declares.
    fn projection_plugin(self, engine: &PluginEngine, path: impl AsRef<Path>) -> Result<Self, PluginError>;
}

impl PluginRegistration for AggregateStoreBuilder {
    fn aggregate_plugin(self, engine: &PluginEngine, path: impl AsRef<Path>) -> Result<Self, PluginError> {
        Ok(self.aggregate_factory(Arc::new(engine.load_aggregate(path)?)))
    }

    fn projection_plugin(self, engine: &PluginEngine, path: impl AsRef<Path>) -> Result<Self, PluginError> {
        Ok(self.projection_dyn(Box::new(engine.load_projection(path)?)))
    }
}
