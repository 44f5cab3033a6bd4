//! The plugins under `plugins/examples/` and the target each is built for (shared by the build
//! script and the library).

/// The wasm target a plugin is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmTarget {
    /// `wasm32-unknown-unknown`: a core module, componentized afterwards (no imports but the ABI).
    Unknown,
    /// `wasm32-wasip2`: rustc emits a component importing WASI 0.2; copied as is.
    Wasip2,
}

impl WasmTarget {
    /// The rustc target triple.
    pub const fn triple(self) -> &'static str {
        match self {
            WasmTarget::Unknown => "wasm32-unknown-unknown",
            WasmTarget::Wasip2 => "wasm32-wasip2",
        }
    }
}

/// Every plugin crate of the `plugins/examples` workspace: (package name, target).
pub const PLUGINS: &[(&str, WasmTarget)] = &[
    ("counter", WasmTarget::Unknown),
    ("inventory", WasmTarget::Unknown),
    ("legacy-counter", WasmTarget::Unknown),
    ("bank-account", WasmTarget::Unknown),
    ("bank-account-fees", WasmTarget::Unknown),
    ("balances", WasmTarget::Unknown),
    ("hostile", WasmTarget::Unknown),
    ("wrong-abi", WasmTarget::Unknown),
    ("wasi-probe", WasmTarget::Wasip2),
];
