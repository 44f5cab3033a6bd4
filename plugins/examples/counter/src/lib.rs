//! The `counter` plugin: `evfold_core::examples::Counter`, unchanged, as a WASM plugin.
evfold_plugin_sdk::export_aggregate!(evfold_core::examples::Counter);
