//! `evfold-componentize IN.wasm OUT.wasm`: wraps a core module built for wasm32-unknown-unknown
//! (with the `component-type` custom section wit-bindgen emits) into a WebAssembly component, and
//! refuses the result if it imports anything but the evfold plugin ABI (no WASI, no other host
//! function): a plugin may only ever see `evfold:plugin/*`.

use std::path::Path;
use std::process::ExitCode;

use wit_component::{ComponentEncoder, DecodedWasm};

/// The only import namespace a plugin may use.
const ALLOWED_IMPORT_PREFIX: &str = "evfold:plugin/";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: evfold-componentize <module.wasm> <component.wasm>");
        return ExitCode::from(2);
    };
    match componentize(Path::new(input), Path::new(output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("evfold-componentize: {input}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Encodes, checks imports, writes `output` (via a temp file + rename: never half-written).
fn componentize(input: &Path, output: &Path) -> Result<(), String> {
    let module = std::fs::read(input).map_err(|e| format!("read: {e}"))?;
    let mut encoder = ComponentEncoder::default();
    encoder.validate(true).module(&module).map_err(|e| format!("{e:#}"))?;
    let component = encoder.encode().map_err(|e| format!("{e:#}"))?;
    check_imports(&component)?;
    let temp = output.with_extension("wasm.tmp");
    std::fs::write(&temp, &component).map_err(|e| format!("write {}: {e}", temp.display()))?;
    std::fs::rename(&temp, output).map_err(|e| format!("rename to {}: {e}", output.display()))
}

/// Fails unless every import of the component's world is in the evfold plugin ABI.
fn check_imports(component: &[u8]) -> Result<(), String> {
    let decoded = wit_component::decode(component).map_err(|e| format!("decode: {e:#}"))?;
    let DecodedWasm::Component(resolve, world) = decoded else {
        return Err("the encoder did not produce a component".into());
    };
    let imports: Vec<String> = resolve.worlds[world].imports.keys().map(|key| resolve.name_world_key(key)).collect();
    let foreign: Vec<&String> = imports.iter().filter(|name| !name.starts_with(ALLOWED_IMPORT_PREFIX)).collect();
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "imports {foreign:?}; a plugin may only import {ALLOWED_IMPORT_PREFIX}* (build for wasm32-unknown-unknown, not WASI)"
        ))
    }
}
