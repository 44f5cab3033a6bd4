//! The evfold componentizer as a library: wraps a core module built for wasm32-unknown-unknown
//! (with the `component-type` custom section wit-bindgen emits) into a WebAssembly component, and
//! refuses the result if it imports anything but the evfold plugin ABI (no WASI, no other host
//! function): a plugin may only ever see `evfold:plugin/*`.
//!
//! Used in-process by `evfold plugin build`, by the plugin test artifacts
//! (`evfold-plugin-artifacts`) and by the `evfold-componentize IN.wasm OUT.wasm` tool.

use std::path::Path;

use wit_component::{ComponentEncoder, DecodedWasm};

/// The only import namespace a plugin may use.
pub const ALLOWED_IMPORT_PREFIX: &str = "evfold:plugin/";

/// Why a module could not be turned into a plugin component.
#[derive(Debug, thiserror::Error)]
pub enum ComponentizeError {
    /// Reading the module or writing the component failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The input is not a core wasm module (already a component, or not wasm at all).
    #[error("not a core WebAssembly module ({0})")]
    NotAModule(&'static str),
    /// wit-component refused the module (no `component-type` section, invalid module, ...).
    #[error("encoding the component failed: {0}")]
    Encode(String),
    /// The component imports something outside the evfold plugin ABI.
    #[error(
        "imports {0:?}; a plugin may only import {ALLOWED_IMPORT_PREFIX}* (build for wasm32-unknown-unknown, not WASI)"
    )]
    ForbiddenImports(Vec<String>),
    /// The component exports no evfold plugin interface (no aggregate, no projection): the
    /// module was not built with the evfold plugin SDK.
    #[error("exports no {ALLOWED_IMPORT_PREFIX}* interface; build the plugin with the evfold plugin SDK (evfold plugin new)")]
    NotAPlugin,
}

/// What a `.wasm` file holds, read from its 8-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module (what rustc emits for wasm32-unknown-unknown): needs componentizing.
    Module,
    /// A component (what the host loads).
    Component,
    /// Not WebAssembly, or a version this tool does not know.
    Other,
}

/// Classifies `bytes` by the wasm preamble: magic, then version 1 (module) or the component
/// layer (`0x0d 0x00 0x01 0x00`).
pub fn wasm_kind(bytes: &[u8]) -> WasmKind {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => WasmKind::Module,
        Some([0, b'a', b's', b'm', 0x0d, 0, 0x01, 0]) => WasmKind::Component,
        _ => WasmKind::Other,
    }
}

/// Encodes `module` as a plugin component and checks its imports.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, ComponentizeError> {
    match wasm_kind(module) {
        WasmKind::Module => {}
        WasmKind::Component => return Err(ComponentizeError::NotAModule("it is already a component")),
        WasmKind::Other => return Err(ComponentizeError::NotAModule("no wasm module header")),
    }
    let mut encoder = ComponentEncoder::default();
    encoder.validate(true).module(module).map_err(|e| ComponentizeError::Encode(format!("{e:#}")))?;
    let component = encoder.encode().map_err(|e| ComponentizeError::Encode(format!("{e:#}")))?;
    check_imports(&component)?;
    Ok(component)
}

/// Reads `input`, componentizes it and writes `output` (temp file + rename: never half-written).
pub fn componentize_file(input: &Path, output: &Path) -> Result<Vec<u8>, ComponentizeError> {
    let io = |path: &Path, source| ComponentizeError::Io { path: path.display().to_string(), source };
    let module = std::fs::read(input).map_err(|e| io(input, e))?;
    let component = componentize(&module)?;
    write_atomically(output, &component).map_err(|e| io(output, e))?;
    Ok(component)
}

/// Writes `bytes` to a temp file unique to this process next to `path`, then renames it over
/// `path`: concurrent writers of the same content never expose a half-written file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".tmp-{}", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path)
}

/// Fails unless every import of the component's world is in the evfold plugin ABI and it
/// exports at least one of the ABI's interfaces.
fn check_imports(component: &[u8]) -> Result<(), ComponentizeError> {
    let decoded = wit_component::decode(component).map_err(|e| ComponentizeError::Encode(format!("decode: {e:#}")))?;
    let DecodedWasm::Component(resolve, world) = decoded else {
        return Err(ComponentizeError::Encode("the encoder did not produce a component".into()));
    };
    let foreign: Vec<String> = resolve.worlds[world]
        .imports
        .keys()
        .map(|key| resolve.name_world_key(key))
        .filter(|name| !name.starts_with(ALLOWED_IMPORT_PREFIX))
        .collect();
    if !foreign.is_empty() {
        return Err(ComponentizeError::ForbiddenImports(foreign));
    }
    let exports = resolve.worlds[world].exports.keys();
    if !exports.map(|key| resolve.name_world_key(key)).any(|name| name.starts_with(ALLOWED_IMPORT_PREFIX)) {
        return Err(ComponentizeError::NotAPlugin);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_modules_from_components() {
        assert_eq!(wasm_kind(b"\0asm\x01\0\0\0rest"), WasmKind::Module);
        assert_eq!(wasm_kind(b"\0asm\x0d\0\x01\0rest"), WasmKind::Component);
        assert_eq!(wasm_kind(b"\x7fELF\x02\x01\x01\0"), WasmKind::Other);
        assert_eq!(wasm_kind(b"\0asm"), WasmKind::Other);
    }

    #[test]
    fn a_component_or_garbage_is_refused_before_encoding() {
        assert!(matches!(componentize(b"\0asm\x0d\0\x01\0"), Err(ComponentizeError::NotAModule(_))));
        assert!(matches!(componentize(b"hello"), Err(ComponentizeError::NotAModule(_))));
    }

    #[test]
    fn a_module_without_the_plugin_world_is_refused() {
        // The smallest valid module: header only. It has no component-type section, so it
        // encodes to a component that exports nothing.
        let error = componentize(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(matches!(error, ComponentizeError::NotAPlugin | ComponentizeError::Encode(_)), "{error}");
    }
}
