//! Issue 17 item 7: `stats`, `completions`, `-v` (plugin log lines visible) / `-q`, and examples
//! in `--help`.

use predicates::prelude::*;

use super::{bank_store, evfold, json_of, plugins};

#[test]
fn stats_counts_events_streams_bytes_per_type_and_positions() {
    let dir = bank_store();
    evfold(dir.path()).args(["exec", "counter", "c", r#"{"type":"Increment"}"#]).assert().success();
    let out = evfold(dir.path()).args(["--json", "stats"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = json_of(&out.stdout);
    assert_eq!((stats["streams"].as_u64(), stats["events"].as_u64()), (Some(3), Some(5)));
    assert_eq!((stats["first_pos"].as_u64(), stats["last_pos"].as_u64()), (Some(1), Some(5)));
    assert_eq!(stats["types"]["bank-account"]["events"], 4);
    assert_eq!(stats["types"]["bank-account"]["event_types"]["Opened"], 2);
    assert_eq!(stats["types"]["counter"]["streams"], 1);
    let bytes = std::fs::metadata(dir.path().join("streams/counter/c/events.jsonl")).unwrap().len();
    assert_eq!(stats["types"]["counter"]["bytes"], bytes);
}

#[test]
fn completions_are_printed_for_bash() {
    let cwd = tempfile::tempdir().unwrap();
    evfold(cwd.path())
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("_evfold()").and(predicate::str::contains("import")));
}

#[test]
fn verbose_shows_plugin_log_output_and_quiet_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = plugins().join("hostile.wasm");
    let run = |flag: &str| {
        let out = evfold(dir.path())
            .env_remove("RUST_LOG")
            .args([flag, "exec", "hostile", "h", r#"{"type":"Chatty"}"#, "--plugin"])
            .arg(&hostile)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run("-vv").contains("evfold_plugin"), "plugin log lines on stderr with -vv");
    assert!(!run("-q").contains("evfold_plugin"));
}

#[test]
fn help_has_examples_and_the_exit_code_table() {
    let cwd = tempfile::tempdir().unwrap();
    evfold(cwd.path()).arg("--help").assert().success().stdout(
        predicate::str::contains("Examples:")
            .and(predicate::str::contains("6 expected-version conflict"))
            .and(predicate::str::contains("exec --batch commands.jsonl")),
    );
    evfold(cwd.path()).args(["exec", "--help"]).assert().success().stdout(predicate::str::contains("Native commands"));
}
