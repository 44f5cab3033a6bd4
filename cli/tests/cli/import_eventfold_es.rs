//! `evfold import eventfold-es DIR --into STORE`, run as a new user would: the real binary, a
//! fresh current directory, relative paths, a source store written by the peer crate itself.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::json_of;

/// The peer's bank account, with the type name and event shapes of evfold's native example.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PeerAccount {
    balance: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum PeerEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrew { amount: u64 },
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl eventfold_es::Aggregate for PeerAccount {
    const AGGREGATE_TYPE: &'static str = "bank-account";
    type Command = PeerEvent;
    type DomainEvent = PeerEvent;
    type Error = Never;

    fn handle(&self, command: PeerEvent) -> Result<Vec<PeerEvent>, Never> {
        Ok(vec![command])
    }

    fn apply(mut self, event: &PeerEvent) -> Self {
        match event {
            PeerEvent::Opened { .. } => {}
            PeerEvent::Deposited { amount } => self.balance += amount,
            PeerEvent::Withdrew { amount } => self.balance -= amount,
        }
        self
    }
}

/// Writes `dir` through the peer crate: acc-1 (opened, 100 in, 30 out), acc-2 (opened, 5 in).
fn write_peer(dir: &Path) -> Vec<eventfold::Event> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let peer = eventfold_es::AggregateStore::open(dir).await.unwrap();
        let ctx = eventfold_es::CommandContext::default().with_actor("teller").with_correlation_id("c-1");
        let commands = [
            ("acc-1", PeerEvent::Opened { owner: "Ada".into() }),
            ("acc-1", PeerEvent::Deposited { amount: 100 }),
            ("acc-1", PeerEvent::Withdrew { amount: 30 }),
            ("acc-2", PeerEvent::Opened { owner: "Bob".into() }),
            ("acc-2", PeerEvent::Deposited { amount: 5 }),
        ];
        for (id, command) in commands {
            peer.get::<PeerAccount>(id).await.unwrap().execute(command, ctx.clone()).await.unwrap();
        }
        let mut events = peer.read_events("bank-account", "acc-1").await.unwrap();
        events.extend(peer.read_events("bank-account", "acc-2").await.unwrap());
        events
    })
}

/// `evfold` run in `cwd` with no store option or variable of the test's environment.
fn evfold_in(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("evfold").expect("the evfold binary is built");
    cmd.current_dir(cwd).env_remove("EVFOLD_STORE").env_remove("EVFOLD_PLUGIN_DIR");
    cmd
}

#[test]
fn import_eventfold_es_keeps_events_and_states_from_relative_paths() {
    let cwd = tempfile::tempdir().unwrap();
    let peer_events = write_peer(&cwd.path().join("old-store"));
    evfold_in(cwd.path())
        .args(["import", "eventfold-es", "old-store", "--into", "new-store"])
        .assert()
        .success()
        .stdout(predicate::str::contains("imported 5 event(s) of 2 stream(s)").and(predicate::str::contains("clean")));

    let out = evfold_in(cwd.path()).args(["--store", "new-store", "events"]).output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| json_of(l.as_bytes())).collect();
    assert_eq!(lines.len(), 5);
    let mut imported: Vec<&Value> = lines.iter().collect();
    imported.sort_by_key(|l| (l["stream"].as_str().unwrap().to_owned(), l["seq"].as_u64()));
    for (line, peer) in imported.iter().zip(&peer_events) {
        assert_eq!(line["id"].as_str(), peer.id.as_deref());
        assert_eq!(line["type"].as_str(), Some(peer.event_type.as_str()));
        assert_eq!(line["ts"].as_u64(), Some(peer.ts * 1000));
        assert_eq!(line["meta"]["actor"], "teller");
        assert_eq!(line["meta"]["correlation_id"], "c-1");
    }
    evfold_in(cwd.path())
        .args(["--store", "new-store", "state", "bank-account", "acc-1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"balance\": 70"));

    // Running it again resumes: everything is already there, nothing is written twice.
    let out = evfold_in(cwd.path())
        .args(["--json", "import", "eventfold-es", "old-store", "--into", "new-store"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first = String::from_utf8(out.stdout).unwrap();
    let report = json_of(first.lines().next().unwrap().as_bytes());
    assert_eq!((report["imported"].clone(), report["skipped"].clone()), (json!(0), json!(5)));
}

#[test]
fn import_eventfold_es_limit_resume_refusal_and_append() {
    let cwd = tempfile::tempdir().unwrap();
    write_peer(&cwd.path().join("old"));
    let import = |extra: &[&str]| {
        let mut cmd = evfold_in(cwd.path());
        cmd.args(["import", "eventfold-es", "old", "--into", "target"]).args(extra);
        cmd.assert()
    };
    import(&["--limit", "2"]).success().stdout(predicate::str::contains("imported 2 event(s)"));
    import(&[])
        .success()
        .stdout(predicate::str::contains("imported 3 event(s)").and(predicate::str::contains("2 already")));

    evfold_in(cwd.path())
        .args(["--store", "other", "exec", "bank-account", "native", r#"{"type":"Open","data":{"owner":"N"}}"#])
        .assert()
        .success();
    let into_other = |extra: &[&str]| {
        let mut cmd = evfold_in(cwd.path());
        cmd.args(["-s", "other", "import", "eventfold-es", "old"]).args(extra);
        cmd.assert()
    };
    into_other(&[]).code(1).stderr(predicate::str::contains("--append"));
    into_other(&["--append"]).success().stdout(predicate::str::contains("imported 5 event(s)"));

    std::fs::write(cwd.path().join("old/streams/bank-account/acc-2/app.jsonl"), "{\"type\":\n").unwrap();
    let mut cmd = evfold_in(cwd.path());
    cmd.args(["import", "eventfold-es", "old", "--into", "fresh"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("acc-2/app.jsonl at line 1"));
}
