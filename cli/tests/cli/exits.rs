//! Issue 17 item 5: one exit-code table honoured by every command (corruption is 3 from `exec`
//! and `projection show` too, a version conflict is 6), messages without Rust internals or
//! repeated causes, the right flag in hints, `projection show` read-only, JSON errors on stderr.

use predicates::prelude::*;

use super::{bank_store, evfold, exec, json_of, plugins};

/// Damages alice's second line (of three), so the log is corrupt in the middle.
fn corrupt_alice(dir: &std::path::Path) {
    let log = dir.join("streams/bank-account/alice/events.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("\"amount\":100", "\"amount\":900", 1)).unwrap();
}

#[test]
fn corruption_exits_3_from_exec_and_projection_show_with_what_to_run() {
    let dir = bank_store();
    corrupt_alice(dir.path());
    exec(dir.path(), "alice", r#"{"type":"Deposit","data":{"amount":1}}"#)
        .code(3)
        .stderr(predicate::str::contains("evfold repair bank-account alice"));
    // A corrupt stream is unavailable alone: another stream still takes commands.
    exec(dir.path(), "bob", r#"{"type":"Deposit","data":{"amount":1}}"#).success();
    evfold(dir.path()).args(["projection", "show", "balances"]).assert().code(3);
}

#[test]
fn a_version_conflict_exits_6_and_names_the_stream_without_rust_debug() {
    let dir = bank_store();
    evfold(dir.path())
        .args(["exec", "bank-account", "alice", r#"{"type":"Deposit","data":{"amount":1}}"#, "--expected-version", "1"])
        .assert()
        .code(6)
        .stderr(
            predicate::str::contains("bank-account/alice is at version 3").and(predicate::str::contains("Exact").not()),
        );
}

#[test]
fn replay_hints_at_baseline_and_io_causes_are_not_repeated() {
    let dir = bank_store();
    evfold(dir.path())
        .args(["replay", "--candidate"])
        .arg(plugins().join("hostile.wasm"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--baseline").and(predicate::str::contains("--plugin").not()));
    let out = evfold(dir.path())
        .args(["exec", "counter", "c", r#"{"type":"Increment"}"#, "--plugin", "/nonexistent.wasm"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
}

#[test]
fn projection_show_is_read_only_it_writes_no_checkpoint() {
    let dir = bank_store();
    let out = evfold(dir.path()).args(["--json", "projection", "show", "balances"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_of(&out.stdout)["state"]["total"], 70);
    assert!(!dir.path().join("projections/balances").exists(), "show wrote a checkpoint");
    // From a checkpoint written by rebuild, show folds only what came after it.
    evfold(dir.path()).args(["projection", "rebuild", "balances"]).assert().success();
    exec(dir.path(), "bob", r#"{"type":"Deposit","data":{"amount":5}}"#).success();
    let checkpoint = dir.path().join("projections/balances/checkpoint.json");
    let before = std::fs::read(&checkpoint).unwrap();
    let out = evfold(dir.path()).args(["--json", "projection", "show", "balances"]).output().unwrap();
    assert_eq!(json_of(&out.stdout)["state"]["total"], 75);
    assert_eq!(std::fs::read(&checkpoint).unwrap(), before, "show rewrote the checkpoint");
}

#[test]
fn json_errors_go_to_stderr_not_into_the_output_stream() {
    let dir = bank_store();
    let out = evfold(dir.path()).args(["--json", "exec", "bank-account", "a", "not json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(json_of(&out.stderr)["exit_code"], 1);
}
