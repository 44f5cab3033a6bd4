//! The `bank-account` plugin: `evfold_core::examples::BankAccount` (refuses overdraw), unchanged,
//! as a WASM plugin. Native and plugin runs produce byte-identical logs.
evfold_plugin_sdk::export_aggregate!(evfold_core::examples::BankAccount);
