//! WASM host: sandboxed wasmtime plugins.
