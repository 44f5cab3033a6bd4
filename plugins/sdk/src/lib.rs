//! Guest SDK for evfold WASM plugins.
