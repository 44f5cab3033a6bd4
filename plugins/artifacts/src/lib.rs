//! # evfold-plugin-artifacts: the example and test plugins, built by cargo
//!
//! The build script compiles every crate of `plugins/examples/` for wasm32 (release, through
//! `scripts/wasm-cargo`, in `target/wasm`); [`plugin_dir`] componentizes the modules into
//! `target/plugins` on first use (a few milliseconds each, only when a module is newer than its
//! component) and returns that directory. Tests depend on this crate, so plain `cargo test`
//! builds what they load: no script has to run first.
//!
//! ```ignore
//! let bank = engine.load_aggregate(evfold_plugin_artifacts::plugin("bank-account"))?;
//! ```

mod plugins;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use plugins::{WasmTarget, PLUGINS};

/// Cargo target dir of the wasm build (set by the build script).
const WASM_DIR: &str = env!("EVFOLD_ARTIFACTS_WASM_DIR");
/// Workspace root.
const ROOT: &str = env!("EVFOLD_ARTIFACTS_ROOT");
/// Why the plugins were not built (empty when they were).
const UNAVAILABLE: &str = env!("EVFOLD_ARTIFACTS_UNAVAILABLE");

/// The built core module (or, for WASI plugins, rustc's component) of plugin `name`.
pub fn module(name: &str) -> PathBuf {
    let target = PLUGINS
        .iter()
        .find(|(plugin, _)| *plugin == name)
        .map(|(_, target)| *target)
        .unwrap_or_else(|| panic!("no example plugin named {name:?}"));
    Path::new(WASM_DIR).join(target.triple()).join("release").join(format!("{}.wasm", name.replace('-', "_")))
}

/// The default output directory: `target/plugins` of the workspace.
pub fn default_dir() -> PathBuf {
    Path::new(ROOT).join("target/plugins")
}

/// Writes a component for every plugin into `out_dir` unless it is already newer than its
/// module; returns the paths written (the others were up to date).
pub fn install(out_dir: &Path) -> Result<Vec<PathBuf>, String> {
    if !UNAVAILABLE.is_empty() {
        return Err(format!("the example plugins were not built: {UNAVAILABLE}"));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| format!("creating {}: {e}", out_dir.display()))?;
    let mut written = Vec::new();
    for (name, target) in PLUGINS {
        let (module, component) = (module(name), out_dir.join(format!("{name}.wasm")));
        if is_newer(&component, &module) {
            continue;
        }
        match target {
            WasmTarget::Unknown => {
                evfold_componentize::componentize_file(&module, &component).map_err(|e| format!("{name}: {e}"))?;
            }
            WasmTarget::Wasip2 => {
                let bytes = std::fs::read(&module).map_err(|e| format!("{}: {e}", module.display()))?;
                evfold_componentize::write_atomically(&component, &bytes)
                    .map_err(|e| format!("{}: {e}", component.display()))?;
            }
        }
        written.push(component);
    }
    Ok(written)
}

/// The directory holding every example plugin as a component. `EVFOLD_PLUGIN_DIR`, when set,
/// names a directory of prebuilt plugins and is returned as is; otherwise the components are
/// brought up to date in [`default_dir`] (once per process). Panics, naming the cause, when
/// the plugins could not be built.
pub fn plugin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EVFOLD_PLUGIN_DIR") {
        return PathBuf::from(dir);
    }
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let installed = INSTALLED.get_or_init(|| {
        let dir = default_dir();
        install(&dir).map(|_| dir)
    });
    match installed {
        Ok(dir) => dir.clone(),
        Err(reason) => panic!("{reason}"),
    }
}

/// Path of the component of example plugin `name` (see [`plugin_dir`]).
pub fn plugin(name: &str) -> PathBuf {
    let path = plugin_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing (EVFOLD_PLUGIN_DIR={:?})",
        path.display(),
        std::env::var_os("EVFOLD_PLUGIN_DIR")
    );
    path
}

/// `a` exists and was modified no earlier than `b`.
fn is_newer(a: &Path, b: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(a), modified(b)), (Some(a), Some(b)) if a >= b)
}
