//! The `inventory` plugin: `evfold_core::examples::Inventory`, unchanged, as a WASM plugin. Its
//! rules read the decide context (this SKU only, stamp the actor and `now`) and its typed errors
//! cross to the host as data: the conformance tests compare it with the native build.
evfold_plugin_sdk::export_aggregate!(evfold_core::examples::Inventory);
