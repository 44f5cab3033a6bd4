//! Builds every plugin of `plugins/examples/` for wasm32 (release) through `scripts/wasm-cargo`,
//! the project's one wasm toolchain logic (rustup target, else the Debian fallback), before the
//! plugin tests compile: plain `cargo test` needs no script first.
//!
//! The inner cargo uses a target dir of its own (`target/wasm`, or `EVFOLD_WASM_TARGET_DIR`):
//! sharing the outer build's would deadlock on its lock. It reruns only when plugin sources
//! (the examples, the SDK, the WIT, the core) or the toolchain script change; the inner cargo then
//! rebuilds what changed. When no wasm toolchain can be installed (wasm-cargo exits 3), the
//! build goes on with a warning and the plugin tests fail, naming the reason.

#[path = "src/plugins.rs"]
#[allow(dead_code)]
mod plugins;

use std::path::{Path, PathBuf};
use std::process::Command;

use plugins::{WasmTarget, PLUGINS};

/// Exit code of scripts/wasm-cargo when no wasm toolchain is available or installable.
const NO_TOOLCHAIN: i32 = 3;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..").canonicalize().expect("the workspace root exists");
    for watched in [
        "plugins/examples",
        "plugins/sdk",
        "plugins/wit",
        "plugins/wit-0.2.0",
        "core/src",
        "core/Cargo.toml",
        "scripts/wasm-cargo",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=EVFOLD_WASM_TARGET_DIR");
    let wasm_dir =
        std::env::var_os("EVFOLD_WASM_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target/wasm"));
    println!("cargo:rustc-env=EVFOLD_ARTIFACTS_WASM_DIR={}", wasm_dir.display());
    println!("cargo:rustc-env=EVFOLD_ARTIFACTS_ROOT={}", root.display());

    for target in [WasmTarget::Unknown, WasmTarget::Wasip2] {
        let packages: Vec<&str> = PLUGINS.iter().filter(|(_, t)| *t == target).map(|(name, _)| *name).collect();
        if let Err(reason) = build(&root, &wasm_dir, target, &packages) {
            println!("cargo:warning=evfold plugin tests will fail: {reason}");
            println!("cargo:rustc-env=EVFOLD_ARTIFACTS_UNAVAILABLE={reason}");
            return;
        }
    }
    println!("cargo:rustc-env=EVFOLD_ARTIFACTS_UNAVAILABLE=");
}

/// `scripts/wasm-cargo build --release --target T -p ...` for the examples workspace. Err only
/// when no toolchain is available; any other failure (a compile error) fails the build.
fn build(root: &Path, wasm_dir: &Path, target: WasmTarget, packages: &[&str]) -> Result<(), String> {
    let mut cargo = Command::new(root.join("scripts/wasm-cargo"));
    cargo
        .args(["build", "--release", "--target", target.triple(), "--manifest-path"])
        .arg(root.join("plugins/examples/Cargo.toml"))
        .current_dir(root)
        .env("CARGO_TARGET_DIR", wasm_dir)
        // What the outer cargo set for this build script, not for a wasm build: its flags and
        // (under clippy) its rustc wrapper would change the inner build's fingerprints.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_PRIMARY_PACKAGE");
    for package in packages {
        cargo.args(["-p", package]);
    }
    let status = cargo.status().unwrap_or_else(|e| panic!("running scripts/wasm-cargo: {e}"));
    match status.code() {
        Some(0) => Ok(()),
        Some(NO_TOOLCHAIN) => {
            Err(format!("no {} toolchain could be installed (see scripts/wasm-cargo)", target.triple()))
        }
        _ => panic!("building the example plugins for {} failed ({status}); see the output above", target.triple()),
    }
}
