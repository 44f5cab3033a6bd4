//! End-to-end tests of the `evfold` binary on real stores in temp dirs: every command, exit
//! codes, a corrupted log, a store locked by another process, a missing store, bad plugins.
//!
//! New tests go in a sibling module file (`mod name;` below the helpers): one binary, one link step.

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn evfold(store: &Path) -> Command {
    let mut cmd = Command::cargo_bin("evfold").expect("the evfold binary is built");
    cmd.arg("--store")
        .arg(store)
        .env_remove("EVFOLD_STORE")
        .env_remove("EVFOLD_PLUGIN_DIR")
        .env_remove("EVFOLD_PLUGIN_CACHE");
    cmd
}

/// The example plugins, built by cargo (`evfold-plugin-artifacts`), or `EVFOLD_PLUGIN_DIR` when set.
fn plugins() -> PathBuf {
    evfold_plugin_artifacts::plugin_dir()
}

mod plugin_new;

fn exec(store: &Path, id: &str, command: &str) -> assert_cmd::assert::Assert {
    evfold(store).args(["exec", "bank-account", id, command]).assert()
}

/// A store with alice (opened, 100 in, 30 out) and bob (opened).
fn bank_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    exec(dir.path(), "alice", r#"{"type":"Open","data":{"owner":"Alice"}}"#).success();
    exec(dir.path(), "alice", r#"{"type":"Deposit","data":{"amount":100}}"#).success();
    exec(dir.path(), "alice", r#"{"type":"Withdraw","data":{"amount":30}}"#).success();
    exec(dir.path(), "bob", r#"{"type":"Open","data":{"owner":"Bob"}}"#).success();
    dir
}

fn json_of(output: &[u8]) -> Value {
    serde_json::from_slice(output).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(output)))
}

mod first_run;
mod holes;

#[test]
fn exec_then_state_streams_and_events() {
    let dir = bank_store();
    evfold(dir.path())
        .args(["state", "bank-account", "alice"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"balance\": 70"));
    let out = evfold(dir.path()).args(["--json", "state", "bank-account", "alice"]).output().unwrap();
    let state = json_of(&out.stdout);
    assert_eq!((state["version"].as_u64(), state["state"]["balance"].as_u64()), (Some(3), Some(70)));

    let out = evfold(dir.path()).args(["--json", "streams"]).output().unwrap();
    assert_eq!(
        json_of(&out.stdout),
        serde_json::json!([{"stream":"bank-account/alice","version":3},{"stream":"bank-account/bob","version":1}])
    );

    let out = evfold(dir.path()).args(["events"]).output().unwrap();
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| json_of(l.as_bytes())).collect();
    let positions: Vec<u64> = lines.iter().map(|l| l["pos"].as_u64().unwrap()).collect();
    assert_eq!(positions, [1, 2, 3, 4], "store-wide order");
    assert_eq!(lines[3]["stream"], "bank-account/bob");

    evfold(dir.path()).args(["events", "bank-account", "alice", "--pretty", "--from", "1"]).assert().success().stdout(
        predicate::str::contains("Deposited")
            .and(predicate::str::contains("Withdrew"))
            .and(predicate::str::contains("Opened").not()),
    );
}

#[test]
fn a_rejected_command_exits_1_and_writes_nothing() {
    let dir = bank_store();
    exec(dir.path(), "alice", r#"{"type":"Withdraw","data":{"amount":500}}"#)
        .code(1)
        .stdout(predicate::str::contains("insufficient funds"));
    let out = evfold(dir.path())
        .args(["--json", "exec", "bank-account", "alice", r#"{"type":"Open","data":{"owner":"x"}}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_of(&out.stdout)["accepted"], false);
    evfold(dir.path())
        .args(["--json", "state", "bank-account", "alice"])
        .assert()
        .stdout(predicate::str::contains("\"version\":3"));
    evfold(dir.path())
        .args(["exec", "bank-account", "alice", "--expected-version", "2", r#"{"type":"Deposit","data":{"amount":1}}"#])
        .assert()
        .code(6)
        .stderr(predicate::str::contains("is at version 3"));
}

#[test]
fn usage_errors_exit_2_and_bad_json_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    evfold(dir.path()).args(["exec", "bank-account"]).assert().code(2);
    evfold(dir.path()).args(["no-such-command"]).assert().code(2);
    exec(dir.path(), "a", "not json").code(1).stderr(predicate::str::contains("not JSON"));
    exec(dir.path(), "../escape", r#"{"type":"Open","data":{"owner":"x"}}"#)
        .code(1)
        .stderr(predicate::str::contains("invalid stream id"));
    evfold(dir.path())
        .args(["exec", "no-such-type", "a", r#"{"type":"X"}"#])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--plugin"));
}

#[test]
fn a_missing_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    for args in [
        &["state", "bank-account", "a"][..],
        &["events"],
        &["streams"],
        &["verify"],
        &["projection", "show", "balances"],
    ] {
        evfold(&missing).args(args).assert().code(1).stderr(predicate::str::contains("no store at"));
    }
    assert!(!missing.exists(), "read commands must not create a store");
}

#[test]
fn verify_finds_corruption_names_file_and_line_and_repair_cuts_it_with_a_backup() {
    let dir = bank_store();
    evfold(dir.path()).arg("verify").assert().success().stdout(predicate::str::contains("clean"));
    let log = dir.path().join("streams/bank-account/alice/events.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let damaged = text.replacen("\"amount\":100", "\"amount\":900", 1); // CRC no longer matches line 2
    assert_ne!(text, damaged);
    std::fs::write(&log, damaged).unwrap();

    evfold(dir.path())
        .arg("verify")
        .assert()
        .code(3)
        .stdout(predicate::str::contains("CORRUPT").and(predicate::str::contains(format!("{}:2", log.display()))));
    let out = evfold(dir.path()).args(["--json", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let report = json_of(&out.stdout);
    assert_eq!(report["clean"], false);
    assert_eq!(report["streams"][0]["line"], 2);
    evfold(dir.path())
        .args(["state", "bank-account", "alice"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("corrupt"));

    evfold(dir.path())
        .args(["repair", "bank-account", "alice"])
        .assert()
        .success()
        .stdout(predicate::str::contains("backup"));
    let backups: Vec<_> = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("repair"))
        .collect();
    assert_eq!(backups.len(), 1, "one backup of the cut bytes");
    assert!(std::fs::read_to_string(backups[0].path()).unwrap().contains("\"amount\":900"));
    evfold(dir.path()).arg("verify").assert().success();
    evfold(dir.path())
        .args(["--json", "state", "bank-account", "alice"])
        .assert()
        .stdout(predicate::str::contains("\"version\":1"));
}

#[test]
fn a_store_locked_by_another_process_exits_4_but_reads_still_work() {
    let dir = bank_store();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let holder = runtime.block_on(evfold_native::AggregateStore::open(dir.path())).unwrap();
    exec(dir.path(), "alice", r#"{"type":"Deposit","data":{"amount":1}}"#)
        .code(4)
        .stderr(predicate::str::contains("locked"));
    evfold(dir.path()).args(["projection", "rebuild", "balances"]).assert().code(4);
    evfold(dir.path())
        .args(["state", "bank-account", "alice"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"balance\": 70"));
    evfold(dir.path())
        .args(["projection", "show", "balances"])
        .assert()
        .success()
        .stdout(predicate::str::contains("read-only").and(predicate::str::contains("\"total\": 70")));
    runtime.block_on(holder.close());
    exec(dir.path(), "alice", r#"{"type":"Deposit","data":{"amount":1}}"#).success();
}

#[test]
fn projection_show_and_rebuild() {
    let dir = bank_store();
    let out = evfold(dir.path()).args(["--json", "projection", "show", "balances"]).output().unwrap();
    assert!(out.status.success());
    let shown = json_of(&out.stdout);
    assert_eq!(shown["state"]["total"], 70);
    assert_eq!(shown["state"]["accounts"]["alice"], 70);
    let out = evfold(dir.path()).args(["--json", "projection", "rebuild", "balances"]).output().unwrap();
    assert_eq!(json_of(&out.stdout)["state"], shown["state"]);
    evfold(dir.path())
        .args(["projection", "show", "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no code for projection"));
}

#[test]
fn events_follow_prints_new_events_as_they_land() {
    let dir = bank_store();
    let bin = assert_cmd::cargo::cargo_bin("evfold");
    let mut follow = StdCommand::new(bin)
        .arg("--store")
        .arg(dir.path())
        .args(["events", "--follow", "--limit", "5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    exec(dir.path(), "bob", r#"{"type":"Deposit","data":{"amount":5}}"#).success();
    let deadline = Instant::now() + Duration::from_secs(20);
    while follow.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "follow did not see the new event");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = follow.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 5);
    assert!(text.lines().last().unwrap().contains("\"pos\":5"), "{text}");
}

#[test]
fn plugins_run_like_native_code() {
    let plugins = plugins();
    let bank = plugins.join("bank-account.wasm");
    evfold(Path::new("."))
        .args(["plugin", "info"])
        .arg(&bank)
        .assert()
        .success()
        .stdout(predicate::str::contains("bank-account"));
    let out =
        evfold(Path::new(".")).args(["--json", "plugin", "info"]).arg(plugins.join("balances.wasm")).output().unwrap();
    assert_eq!(json_of(&out.stdout)["projection_name"], "balances");

    let dir = tempfile::tempdir().unwrap();
    let with_plugin = |command: &str| {
        evfold(dir.path()).args(["exec", "bank-account", "p1", command, "--plugin"]).arg(&bank).assert()
    };
    with_plugin(r#"{"type":"Open","data":{"owner":"P"}}"#).success();
    with_plugin(r#"{"type":"Deposit","data":{"amount":42}}"#).success();
    with_plugin(r#"{"type":"Withdraw","data":{"amount":43}}"#).code(1).stdout(predicate::str::contains("rejected"));
    evfold(dir.path())
        .args(["state", "bank-account", "p1", "--plugin"])
        .arg(&bank)
        .assert()
        .success()
        .stdout(predicate::str::contains("42"));
    evfold(dir.path())
        .args(["projection", "show", "--plugin"])
        .arg(plugins.join("balances.wasm"))
        .assert()
        .success()
        .stdout(predicate::str::contains("\"total\": 42"));
    evfold(dir.path())
        .args(["exec", "counter", "c", r#"{"type":"Increment"}"#, "--plugin"])
        .arg(&bank)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("implements aggregate type"));

    evfold(dir.path())
        .args(["replay", "--candidate"])
        .arg(&bank)
        .assert()
        .success()
        .stdout(predicate::str::contains("0 divergence"));
}

#[test]
fn bad_plugin_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"this is not webassembly").unwrap();
    evfold(dir.path())
        .args(["plugin", "info"])
        .arg(&garbage)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("bad plugin"));
    exec(dir.path(), "x", r#"{"type":"Open","data":{"owner":"x"}}"#).success();
    evfold(dir.path())
        .args(["exec", "bank-account", "x", r#"{"type":"Deposit","data":{"amount":1}}"#, "--plugin"])
        .arg(&garbage)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("bad plugin"));
    evfold(dir.path()).args(["plugin", "info"]).arg(dir.path().join("missing.wasm")).assert().code(1);
    let wrong_abi = plugins().join("wrong-abi.wasm");
    evfold(dir.path())
        .args(["state", "bank-account", "x", "--plugin"])
        .arg(&wrong_abi)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("bad plugin"));
}

#[test]
fn demo_runs_the_bank_scenario_with_plugins_and_natively() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("demo");
    let out = evfold(&store).args(["--json", "demo", "--plugin-dir"]).arg(plugins()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let demo = json_of(&out.stdout);
    assert!(demo["code"].as_str().unwrap().contains("WASM"));
    let rejected = demo["steps"].as_array().unwrap().iter().filter(|s| s["accepted"] == false).count();
    assert_eq!(rejected, 4);
    assert_eq!(demo["dispatched"], 1);
    assert_eq!(demo["projection"]["total"], 9_500);
    assert_eq!(demo["projection"]["accounts"]["bob"], 4_000);

    evfold(&store).args(["demo", "--native"]).assert().success().stdout(
        predicate::str::contains("REJECTED")
            .and(predicate::str::contains("native examples"))
            .and(predicate::str::contains("\"total\": 9500")),
    );
    evfold(&store).arg("verify").assert().success();

    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("precious.txt"), "keep me").unwrap();
    evfold(&foreign).arg("demo").assert().code(1).stderr(predicate::str::contains("not created by `evfold demo`"));
    assert!(foreign.join("precious.txt").exists());
}

#[test]
fn replay_reports_where_a_new_version_diverges_with_exit_code_5() {
    let dir = bank_store(); // alice withdrew once: the fee-charging version folds another balance
    let fees = plugins().join("bank-account-fees.wasm");
    evfold(dir.path())
        .args(["replay", "--candidate"])
        .arg(&fees)
        .assert()
        .code(5)
        .stdout(predicate::str::contains("alice"))
        .stdout(predicate::str::contains("1 divergence"));
    let out = evfold(dir.path()).args(["--json", "replay", "--candidate"]).arg(&fees).output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    let report = json_of(&out.stdout);
    assert_eq!(report["clean"], false);
    evfold(dir.path())
        .args(["replay", "--id", "bob", "--candidate"])
        .arg(&fees)
        .assert()
        .success()
        .stdout(predicate::str::contains("0 divergence"));
}

mod bulk;
mod exits;
mod extras;
mod import_eventfold_es;
mod pipes;
mod pms;
mod readme;
