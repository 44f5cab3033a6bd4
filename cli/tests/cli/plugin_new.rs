//! A third party's first plugin, end to end from a temp dir outside the repository:
//! `plugin new` → the crate's native test → `plugin build` (wasm32 + componentize in-process,
//! SHA-256 printed) → `exec --plugin` in a store there; and a raw module's error says what to run.
//!
//! The wasm build shares `target/wasm` with the example plugins (the same locked versions, seeded
//! by `plugin new` from plugins/examples/Cargo.lock), so only the new crate itself compiles.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use assert_cmd::Command;
use predicates::prelude::*;

use super::json_of;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `evfold` run in `cwd`, with nothing of the caller's evfold environment.
fn evfold_in(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("evfold").expect("the evfold binary is built");
    cmd.current_dir(cwd).env_remove("EVFOLD_STORE").env_remove("EVFOLD_PLUGIN_DIR").env_remove("EVFOLD_SOURCE_DIR");
    cmd
}

#[test]
fn a_new_plugin_is_tested_built_and_run_from_outside_the_repository() {
    let root = repo_root();
    let work = tempfile::tempdir().unwrap();
    let work = work.path().canonicalize().unwrap();
    assert!(!work.starts_with(&root), "{} must be outside the repository", work.display());
    let wasm_target = std::env::var_os("EVFOLD_WASM_TARGET_DIR").map(PathBuf::from).unwrap_or(root.join("target/wasm"));

    // 1. The template: its own workspace, path dependencies on this checkout, the tested lock file.
    evfold_in(&work)
        .args(["plugin", "new", "tally"])
        .assert()
        .success()
        .stdout(predicate::str::contains("evfold plugin build"));
    let crate_dir = work.join("tally");
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("[workspace]") && manifest.contains("crate-type = [\"cdylib\", \"rlib\"]"), "{manifest}");
    assert!(manifest.contains(&root.join("plugins/sdk").display().to_string()), "{manifest}");
    assert!(std::fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap().contains("export_aggregate!(Tally)"));
    evfold_in(&work).args(["plugin", "new", "tally"]).assert().code(1).stderr(predicate::str::contains("not empty"));

    // 2. Its native test passes (own target dir: the outer cargo holds the lock of target/).
    let native = StdCommand::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
        .args(["test", "-q", "--target-dir"])
        .arg(&wasm_target)
        .current_dir(&crate_dir)
        .status()
        .unwrap();
    assert!(native.success(), "the template's native test failed");

    // 3. Build: a component, its SHA-256 and metadata printed.
    let built = evfold_in(&crate_dir)
        .args(["plugin", "build", "--target-dir"])
        .arg(&wasm_target)
        .env("EVFOLD_WASM_CARGO", root.join("scripts/wasm-cargo"))
        .assert()
        .success();
    let text = String::from_utf8_lossy(&built.get_output().stdout).into_owned();
    let component = wasm_target.join("evfold-plugins/tally.wasm");
    assert!(text.contains(&format!("built {}", component.display())), "{text}");
    assert!(text.contains("aggregate type: tally") && text.contains("commands:       Add, Reset"), "{text}");
    let info = json_of(&evfold_in(&work).args(["--json", "plugin", "info"]).arg(&component).output().unwrap().stdout);
    let sha256 = info["sha256"].as_str().unwrap();
    assert!(sha256.len() == 64 && text.contains(&format!("sha256:         {sha256}")), "{text}");

    // 4. Run it in a store of the third party's own, by relative paths from its directory.
    std::fs::copy(&component, work.join("tally.wasm")).unwrap();
    let exec = |command: &str| {
        evfold_in(&work).args(["--store", "./store", "exec", "tally", "t1", command, "--plugin", "tally.wasm"]).assert()
    };
    exec(r#"{"type":"Add","data":{"amount":600}}"#).success();
    exec(r#"{"type":"Add","data":{"amount":400}}"#).success();
    let refused = exec(r#"{"type":"Add","data":{"amount":1}}"#).code(1);
    let output = refused.get_output();
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(said.contains("would exceed the limit of 1000"), "{said}");
    let state = evfold_in(&work)
        .args(["--json", "--store", "./store", "state", "tally", "t1", "--plugin", "tally.wasm"])
        .output()
        .unwrap();
    assert_eq!(json_of(&state.stdout)["state"]["total"], 1000);

    // 5. The raw module (before componentizing) is refused with the command to run.
    let module = wasm_target.join("wasm32-unknown-unknown/release/tally.wasm");
    evfold_in(&work)
        .args(["plugin", "info"])
        .arg(&module)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("not a component").and(predicate::str::contains("evfold plugin build")));
    evfold_in(&work)
        .args(["plugin", "componentize"])
        .arg(&module)
        .arg("-o")
        .arg(work.join("again.wasm"))
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("sha256:         {sha256}")));
}
