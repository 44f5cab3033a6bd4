//! Holes and repair through the binary (issues 12.8, 12.9, 17.2): after `repair`, `events`
//! prints every event `verify` counts, a follower in another process sees a writer's new
//! events past the hole promptly, and `repair` names the projections that will rebuild (which
//! then show the new deposits).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{evfold, exec, json_of};

fn counter(store: &Path, id: &str) {
    evfold(store).args(["exec", "counter", id, r#"{"type":"Increment"}"#]).assert().success();
}

/// counter a and b incremented three times each, interleaved; a's 2nd line corrupted; repaired.
fn repaired_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        counter(dir.path(), "a");
        counter(dir.path(), "b");
    }
    let path = dir.path().join("streams/counter/a/events.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[1] = lines[1].replacen("\"seq\":2", "\"seq\":2 ", 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    evfold(dir.path()).args(["repair", "--all"]).assert().success();
    dir
}

fn verified_events(store: &Path) -> u64 {
    let out = evfold(store).args(["--json", "verify"]).output().unwrap();
    json_of(&out.stdout)["events"].as_u64().unwrap()
}

#[test]
fn events_after_repair_prints_every_event_verify_counts() {
    let dir = repaired_store();
    counter(dir.path(), "b");
    let out = evfold(dir.path()).args(["events"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap().lines().count() as u64;
    assert_eq!(printed, verified_events(dir.path()));
}

#[test]
fn a_follower_sees_a_writer_processes_event_past_the_hole() {
    let dir = repaired_store();
    let mut follower = StdCommand::new(assert_cmd::cargo::cargo_bin("evfold"))
        .arg("--store")
        .arg(dir.path())
        .args(["events", "--follow"])
        .env_remove("EVFOLD_STORE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(3)) {
        seen.push(line);
    }
    assert_eq!(seen.len() as u64, verified_events(dir.path()), "the past, past the hole");
    // A writer in another process appends: the follower prints it (generous timeout).
    evfold(dir.path()).args(["exec", "counter", "c", r#"{"type":"Increment"}"#]).assert().success();
    let line = rx.recv_timeout(Duration::from_secs(20));
    let _ = follower.kill();
    let _ = follower.wait();
    let line = line.expect("the follower printed the new event");
    assert_eq!(json_of(line.as_bytes())["stream"], "counter/c");
}

#[test]
fn repair_names_the_projections_that_rebuild_and_they_see_new_events() {
    let dir = tempfile::tempdir().unwrap();
    exec(dir.path(), "acc-1", r#"{"type":"Open","data":{"owner":"a"}}"#).success();
    for _ in 0..5 {
        exec(dir.path(), "acc-1", r#"{"type":"Deposit","data":{"amount":10}}"#).success();
    }
    // A writing open saves the projection's checkpoint (`projection show` is read-only).
    evfold(dir.path()).args(["projection", "rebuild", "balances"]).assert().success();
    let path = dir.path().join("streams/bank-account/acc-1/events.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen("\"amount\":10", "\"amount\":70", 2).replacen("\"amount\":70", "\"amount\":10", 1),
    )
    .unwrap();
    let out = evfold(dir.path()).args(["repair", "bank-account", "acc-1"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("projections that will rebuild at their next open: balances"), "{text}");
    exec(dir.path(), "acc-1", r#"{"type":"Deposit","data":{"amount":1000}}"#).success();
    let out = evfold(dir.path()).args(["--json", "projection", "show", "balances"]).output().unwrap();
    assert_eq!(json_of(&out.stdout)["state"]["total"], 1010, "the fold of the repaired log plus the deposit");
}
