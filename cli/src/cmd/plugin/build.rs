//! `plugin build [DIR]`: `cargo build --release --target wasm32-unknown-unknown` of a plugin
//! crate, then the componentizer in-process (no separate tool to install), then the same check
//! the host does at load: prints where the component is, its SHA-256 and what `plugin info` shows.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use evfold_componentize::WasmKind;
use serde_json::Value;

use super::{info_json, info_text, read_info};
use crate::output::Out;

/// The target plugins are built for: no WASI, nothing but the evfold ABI.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// `evfold plugin build DIR [--out FILE] [--target-dir DIR]`.
pub fn run(dir: &Path, out_file: Option<PathBuf>, target_dir: Option<PathBuf>, out: &Out) -> Result<ExitCode> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!("no Cargo.toml in {}: create a plugin crate with `evfold plugin new NAME`", dir.display());
    }
    let cargo = wasm_cargo();
    if cargo.is_none() {
        ensure_target(dir)?;
    }
    let modules = cargo_build(cargo, &manifest, target_dir.as_deref())?;
    if modules.is_empty() {
        bail!(
            "cargo built no wasm library in {}: a plugin crate needs `[lib] crate-type = [\"cdylib\"]`",
            dir.display()
        );
    }
    if out_file.is_some() && modules.len() > 1 {
        bail!("{} wasm libraries were built; --out needs exactly one (build one crate at a time)", modules.len());
    }
    let mut built = Vec::new();
    for module in modules {
        let file = match &out_file {
            Some(file) => file.clone(),
            None => default_output(&module)?,
        };
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let bytes = std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
        if evfold_componentize::wasm_kind(&bytes) == WasmKind::Component {
            evfold_componentize::write_atomically(&file, &bytes)
                .with_context(|| format!("writing {}", file.display()))?;
        } else {
            let component = evfold_componentize::componentize(&bytes)
                .with_context(|| format!("componentizing {}", module.display()))?;
            evfold_componentize::write_atomically(&file, &component)
                .with_context(|| format!("writing {}", file.display()))?;
        }
        let info = read_info(&file)?;
        built.push((file, info));
    }
    out.emit(
        || {
            let text: Vec<String> =
                built.iter().map(|(file, info)| format!("built {}", info_text(file, info))).collect();
            text.join("\n")
        },
        || {
            let infos: Vec<Value> = built.iter().map(|(file, info)| info_json(file, info)).collect();
            if infos.len() == 1 {
                infos[0].clone()
            } else {
                Value::Array(infos)
            }
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// A cargo wrapper that installs the wasm toolchain itself (`EVFOLD_WASM_CARGO`, e.g. the
/// project's `scripts/wasm-cargo`), if one is set.
fn wasm_cargo() -> Option<PathBuf> {
    std::env::var_os("EVFOLD_WASM_CARGO").filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Adds the wasm target with rustup when it is missing (rustup resolves the toolchain of `dir`).
/// Without rustup, cargo's own error names the missing target.
fn ensure_target(dir: &Path) -> Result<()> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).current_dir(dir).output();
    let Ok(installed) = installed else { return Ok(()) };
    if String::from_utf8_lossy(&installed.stdout).lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    eprintln!("evfold: rustup target add {WASM_TARGET}");
    let status = Command::new("rustup").args(["target", "add", WASM_TARGET]).current_dir(dir).status()?;
    if !status.success() {
        bail!("`rustup target add {WASM_TARGET}` failed; install the target, then run `evfold plugin build` again");
    }
    Ok(())
}

/// Runs the build; returns the wasm files of the cdylib targets it produced.
fn cargo_build(wrapper: Option<PathBuf>, manifest: &Path, target_dir: Option<&Path>) -> Result<Vec<PathBuf>> {
    let program = wrapper.clone().or_else(|| std::env::var_os("CARGO").map(PathBuf::from)).unwrap_or("cargo".into());
    let mut cargo = Command::new(&program);
    cargo
        .args(["build", "--release", "--target", WASM_TARGET, "--message-format=json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(manifest)
        .stdout(Stdio::piped());
    if let Some(dir) = target_dir {
        cargo.arg("--target-dir").arg(dir);
    }
    eprintln!(
        "evfold: {} build --release --target {WASM_TARGET} --manifest-path {}",
        program.display(),
        manifest.display()
    );
    let mut child = cargo.spawn().with_context(|| format!("running {}", program.display()))?;
    let mut modules = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let message: Value = match serde_json::from_str(&line?) {
            Ok(message) => message,
            Err(_) => continue,
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = message["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        let files = message["filenames"].as_array().into_iter().flatten().filter_map(Value::as_str);
        modules.extend(files.filter(|f| is_cdylib && f.ends_with(".wasm")).map(PathBuf::from));
    }
    let status = child.wait()?;
    if !status.success() {
        let hint = if wrapper.is_none() {
            format!(" (is the {WASM_TARGET} target installed? `rustup target add {WASM_TARGET}`)")
        } else {
            String::new()
        };
        bail!("cargo build for {WASM_TARGET} failed ({status}){hint}");
    }
    Ok(modules)
}

/// `TARGET_DIR/evfold-plugins/NAME.wasm` for a module at `TARGET_DIR/<triple>/release/NAME.wasm`
/// (NAME with `-` for `_`, as the package is usually named).
fn default_output(module: &Path) -> Result<PathBuf> {
    let target_dir = module.ancestors().nth(3).context("module path outside a cargo target dir")?;
    let stem = module.file_stem().context("module without a file name")?.to_string_lossy().replace('_', "-");
    Ok(target_dir.join("evfold-plugins").join(format!("{stem}.wasm")))
}
