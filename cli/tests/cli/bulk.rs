//! Issue 17 item 3: commands from a file or stdin, `exec --batch`, `export`/`import`, `--wait`
//! for the lock, and the compiled-plugin cache; each run from a fresh temp cwd.

use std::process::Stdio;

use super::{evfold, json_of, plugins};

fn fresh() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn exec_reads_a_command_bigger_than_argv_allows_from_a_file_and_one_from_stdin() {
    let cwd = fresh();
    let store = cwd.path().join("store");
    let owner = "x".repeat(200 * 1024); // over the ~128 KiB one argument may hold
    std::fs::write(cwd.path().join("open.json"), format!(r#"{{"type":"Open","data":{{"owner":"{owner}"}}}}"#)).unwrap();
    evfold(&store).current_dir(cwd.path()).args(["exec", "bank-account", "a", "@open.json"]).assert().success();
    evfold(&store)
        .current_dir(cwd.path())
        .args(["exec", "bank-account", "a", "-"])
        .write_stdin(r#"{"type":"Deposit","data":{"amount":7}}"#)
        .assert()
        .success();
    let out = evfold(&store).current_dir(cwd.path()).args(["--json", "state", "bank-account", "a"]).output().unwrap();
    let state = json_of(&out.stdout);
    assert_eq!((state["version"].as_u64(), state["state"]["balance"].as_u64()), (Some(2), Some(7)));
    assert_eq!(state["state"]["owner"].as_str().map(str::len), Some(owner.len()));
}

#[test]
fn exec_batch_reports_every_line_continues_after_a_rejection_and_exits_1() {
    let cwd = fresh();
    let store = cwd.path().join("store");
    let lines = [
        r#"{"type":"bank-account","id":"a","command":{"type":"Open","data":{"owner":"A"}}}"#,
        r#"{"type":"bank-account","id":"a","command":{"type":"Withdraw","data":{"amount":5}}}"#,
        r#"{"type":"counter","id":"c","command":{"type":"Increment"}}"#,
        "",
        r#"{"type":"bank-account","id":"a","command":{"type":"Deposit","data":{"amount":9}},"expected_version":1}"#,
    ];
    std::fs::write(cwd.path().join("cmds.jsonl"), lines.join("\n")).unwrap();
    let out =
        evfold(&store).current_dir(cwd.path()).args(["--json", "exec", "--batch", "cmds.jsonl"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let reports: Vec<_> = String::from_utf8(out.stdout).unwrap().lines().map(|l| json_of(l.as_bytes())).collect();
    let summary: Vec<_> = reports.iter().map(|r| (r["line"].as_u64().unwrap(), r["accepted"] == true)).collect();
    assert_eq!(summary, [(1, true), (2, false), (3, true), (5, true)]);
    let out = evfold(&store).args(["--json", "state", "bank-account", "a"]).output().unwrap();
    assert_eq!(json_of(&out.stdout)["state"]["balance"], 9);

    // A malformed line fails the whole batch before anything is written.
    std::fs::write(cwd.path().join("bad.jsonl"), format!("{}\nnot json\n", lines[2])).unwrap();
    evfold(&store)
        .current_dir(cwd.path())
        .args(["exec", "--batch", "bad.jsonl"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("line 2"));
    let out = evfold(&store).args(["--json", "state", "counter", "c"]).output().unwrap();
    assert_eq!(json_of(&out.stdout)["version"], 1);
}

#[test]
fn export_then_import_keeps_ids_and_a_second_import_skips_every_event() {
    let cwd = fresh();
    let (source, target) = (cwd.path().join("source"), cwd.path().join("target"));
    for command in [r#"{"type":"Open","data":{"owner":"A"}}"#, r#"{"type":"Deposit","data":{"amount":3}}"#] {
        evfold(&source).args(["exec", "bank-account", "a"]).arg(command).assert().success();
    }
    evfold(&source).args(["exec", "counter", "c", r#"{"type":"Increment"}"#]).assert().success();
    let exported = evfold(&source).current_dir(cwd.path()).arg("export").output().unwrap();
    assert!(exported.status.success());
    std::fs::write(cwd.path().join("all.jsonl"), &exported.stdout).unwrap();

    let out = evfold(&target).current_dir(cwd.path()).args(["--json", "import", "all.jsonl"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_of(&out.stdout), serde_json::json!({ "imported": 3, "duplicates": 0 }));
    let again = evfold(&target).current_dir(cwd.path()).args(["--json", "import", "all.jsonl"]).output().unwrap();
    assert_eq!(json_of(&again.stdout), serde_json::json!({ "imported": 0, "duplicates": 3 }));

    let ids = |store: &std::path::Path| -> Vec<String> {
        let out = evfold(store).arg("events").output().unwrap();
        let mut ids: Vec<String> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| json_of(l.as_bytes())["id"].to_string()).collect();
        ids.sort(); // positions across streams are the target's own
        ids
    };
    assert_eq!(ids(&source), ids(&target));
    let out = evfold(&target).args(["--json", "state", "bank-account", "a"]).output().unwrap();
    assert_eq!(json_of(&out.stdout)["state"]["balance"], 3);
}

#[test]
fn an_import_line_without_an_id_is_refused_not_deduped_as_empty() {
    let cwd = fresh();
    let target = cwd.path().join("target");
    let line = |seq: u64| {
        format!(r#"{{"stream":"counter/c","seq":{seq},"pos":{seq},"type":"Incremented","ts":1,"meta":{{}}}}"#)
    };
    std::fs::write(cwd.path().join("no-ids.jsonl"), format!("{}\n{}\n", line(1), line(2))).unwrap();
    let out = evfold(&target).current_dir(cwd.path()).args(["import", "no-ids.jsonl"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 1") && stderr.contains("no \"id\""), "{stderr}");
}

#[test]
fn forty_parallel_execs_with_wait_all_succeed() {
    let cwd = fresh();
    let store = cwd.path().join("store");
    let children: Vec<_> = (0..40)
        .map(|i| {
            let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("evfold"));
            cmd.current_dir(cwd.path())
                .env_remove("EVFOLD_STORE")
                .arg("--store")
                .arg(&store)
                .args(["--wait=120", "exec", "counter", &format!("c{}", i % 8), r#"{"type":"Increment"}"#])
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let codes: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let failed: Vec<_> =
        codes.iter().filter(|o| !o.status.success()).map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).collect();
    assert!(failed.is_empty(), "{} of 40 failed: {:?}", failed.len(), failed.first());
    let out = evfold(&store).args(["--json", "stats"]).output().unwrap();
    assert_eq!(json_of(&out.stdout)["events"], 40);
}

#[test]
fn plugin_commands_use_a_compile_cache_by_default() {
    let cwd = fresh();
    let store = cwd.path().join("store");
    let cache = cwd.path().join("xdg");
    let plugin = plugins().join("counter.wasm");
    evfold(&store)
        .current_dir(cwd.path())
        .env("XDG_CACHE_HOME", &cache)
        .args(["exec", "counter", "c", r#"{"type":"Increment"}"#, "--plugin"])
        .arg(&plugin)
        .assert()
        .success();
    let cached: Vec<_> = std::fs::read_dir(cache.join("evfold/plugins"))
        .map(|d| d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "cwasm")).collect())
        .unwrap_or_default();
    assert_eq!(cached.len(), 1, "one compiled plugin in $XDG_CACHE_HOME/evfold/plugins");
}
