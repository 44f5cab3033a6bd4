//! The first command a new user runs, with the store given as a relative path (the default
//! `evfold-data`, `--store newstore`, `EVFOLD_STORE=envstore`, `--store new/sub`): the store is
//! created in the current directory and the command succeeds.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

const OPEN: &str = r#"{"type":"Open","data":{"owner":"a"}}"#;

/// `evfold` run in `cwd` with no store option or variable of the test's environment.
fn evfold_in(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("evfold").expect("the evfold binary is built");
    cmd.current_dir(cwd).env_remove("EVFOLD_STORE").env_remove("EVFOLD_PLUGIN_DIR");
    cmd
}

/// Runs the first `exec` as `configure` sets it up, then checks the store is where it should be
/// and a second command reads it back.
fn first_exec_creates(store: &str, configure: impl Fn(&mut Command)) {
    let cwd = tempfile::tempdir().unwrap();
    let mut first = evfold_in(cwd.path());
    configure(&mut first);
    first.args(["exec", "bank-account", "a", OPEN]).assert().success();
    let log = cwd.path().join(store).join("streams/bank-account/a/events.jsonl");
    assert!(log.is_file(), "{store}: no log at {}", log.display());
    let mut state = evfold_in(cwd.path());
    configure(&mut state);
    state.args(["state", "bank-account", "a"]).assert().success().stdout(predicate::str::contains("\"owner\": \"a\""));
}

#[test]
fn the_default_store_is_created_in_the_current_directory() {
    first_exec_creates("evfold-data", |_| {});
}

#[test]
fn a_relative_store_option_is_created_in_the_current_directory() {
    first_exec_creates("newstore", |cmd| {
        cmd.args(["--store", "newstore"]);
    });
}

#[test]
fn a_relative_store_variable_is_created_in_the_current_directory() {
    first_exec_creates("envstore", |cmd| {
        cmd.env("EVFOLD_STORE", "envstore");
    });
}

#[test]
fn a_nested_relative_store_is_created_with_its_parent() {
    first_exec_creates("new/sub", |cmd| {
        cmd.args(["--store", "new/sub"]);
    });
}

#[test]
fn an_io_error_names_the_path_and_says_the_cause_once() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("blocker"), b"a file, not a directory").unwrap();
    let out =
        evfold_in(cwd.path()).args(["--store", "blocker/store", "exec", "bank-account", "a", OPEN]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("blocker"), "names the path: {stderr}");
    assert_eq!(stderr.matches("Not a directory").count(), 1, "the cause once: {stderr}");
    assert!(!stderr.contains("io error on :"), "{stderr}");
}
