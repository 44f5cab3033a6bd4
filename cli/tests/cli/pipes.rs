//! Issue 17 item 4: a closed stdout ends a command quietly with exit 0, never a panic (101) or
//! an error (1). The read end is closed before the command writes anything, so the first write
//! meets a closed pipe every time.

use std::process::{Command, Stdio};

use super::{bank_store, plugins};

fn with_stdout_closed(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("evfold"))
        .current_dir(cwd)
        .env_remove("EVFOLD_STORE")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn demo_into_a_closed_pipe_exits_0_without_a_panic() {
    let cwd = tempfile::tempdir().unwrap();
    let dir = plugins();
    let out = with_stdout_closed(&["demo", "--plugin-dir", dir.to_str().unwrap()], cwd.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn events_into_a_closed_pipe_exits_0_quietly() {
    let store = bank_store();
    let cwd = tempfile::tempdir().unwrap();
    let out = with_stdout_closed(&["--store", store.path().to_str().unwrap(), "events"], cwd.path());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "nothing on stderr");
}
