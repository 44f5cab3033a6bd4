//! Issue 17 item 6: process managers run from the CLI. A `TransferOut` done with `exec` on the
//! demo's store is delivered before `exec` exits; `pm show` prints backlog and dead letters.

use super::{evfold, json_of};

#[test]
fn a_transfer_done_with_exec_is_delivered() {
    let cwd = tempfile::tempdir().unwrap();
    let store = cwd.path().join("demo");
    evfold(&store).current_dir(cwd.path()).args(["demo", "--native"]).assert().success();
    let balance = |who: &str| {
        let out = evfold(&store).args(["--json", "state", "bank-account", who]).output().unwrap();
        json_of(&out.stdout)["state"]["balance"].as_u64().unwrap()
    };
    let bob = balance("bob");
    evfold(&store)
        .current_dir(cwd.path())
        .args(["exec", "bank-account", "alice", r#"{"type":"TransferOut","data":{"to":"bob","amount":100}}"#])
        .assert()
        .success();
    assert_eq!(balance("bob"), bob + 100, "the deposit to bob was dispatched");
    let out = evfold(&store).args(["--json", "pm", "show"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let managers = json_of(&out.stdout);
    assert_eq!(managers[0]["name"], "transfers");
    // At most the deposit it dispatched itself may lie after its last saved checkpoint.
    assert!(managers[0]["pending_events"].as_u64().is_some_and(|n| n <= 1), "{managers}");
    assert_eq!(managers[0]["dead_letters"], serde_json::json!([]));
}

#[test]
fn a_transfer_on_a_new_store_is_delivered_and_pm_run_reports() {
    let cwd = tempfile::tempdir().unwrap();
    let store = cwd.path().join("s");
    for (id, command) in [
        ("a", r#"{"type":"Open","data":{"owner":"A"}}"#),
        ("a", r#"{"type":"Deposit","data":{"amount":50}}"#),
        ("b", r#"{"type":"Open","data":{"owner":"B"}}"#),
        ("a", r#"{"type":"TransferOut","data":{"to":"b","amount":20}}"#),
    ] {
        evfold(&store).current_dir(cwd.path()).args(["exec", "bank-account", id, command]).assert().success();
    }
    let out = evfold(&store).args(["--json", "state", "bank-account", "b"]).output().unwrap();
    assert_eq!(json_of(&out.stdout)["state"]["balance"], 20);
    let out = evfold(&store).args(["--json", "pm", "run"]).output().unwrap();
    assert_eq!(json_of(&out.stdout)[0]["dispatched"], 0, "nothing left to dispatch");
}
