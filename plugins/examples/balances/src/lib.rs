//! The `balances` projection plugin: `evfold_core::examples::Balances`, unchanged, as a WASM plugin.
evfold_plugin_sdk::export_projection!(evfold_core::examples::Balances);
