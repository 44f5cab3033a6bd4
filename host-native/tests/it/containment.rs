//! The store never reads or writes outside its root: a symbolic link planted anywhere under it
//! (a log, a stream directory, a type directory, a snapshot, `streams/`, `LOCK`, a reader's
//! directory or checkpoint) is refused with `StoreError::Link` naming it, nothing outside changes,
//! and `verify_store` reports it. Also: ids reserved on Windows are refused.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::common::{ctx, PosOrder};
use evfold_core::examples::{Counter, CounterCommand};
use evfold_core::{CommandContext, ExpectedVersion, Payload};
use evfold_native::{verify_store, AggregateStore, ExecuteError, StoreError};

async fn open(dir: &Path) -> Result<AggregateStore, StoreError> {
    AggregateStore::builder(dir).aggregate::<Counter>().projection::<PosOrder>().snapshot_every(Some(1)).open().await
}

/// A store with `counter/x` (2 events, snapshotted) and `counter/y` (1 event).
async fn seeded() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await.unwrap();
    for id in ["x", "x", "y"] {
        store.get::<Counter>(id).await.unwrap().execute(CounterCommand::Increment, ctx()).await.unwrap();
    }
    assert_eq!(store.projection::<PosOrder>().await.unwrap().count, 3);
    store.close().await;
    dir
}

/// Every file under `dir` with its bytes (to prove nothing outside changed).
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn is_link_error(error: &StoreError, link: &Path) -> bool {
    matches!(error, StoreError::Link { path } if path == link)
}

fn increment() -> Payload {
    Payload::new("Increment", serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_is_a_symlink_is_never_followed() {
    let dir = seeded().await;
    let outside = tempfile::tempdir().unwrap();
    let log = dir.path().join("streams/counter/x/events.jsonl");
    let moved = outside.path().join("events.jsonl");
    std::fs::rename(&log, &moved).unwrap();
    symlink(&moved, &log).unwrap();
    let before = contents(outside.path());

    let store = open(dir.path()).await.unwrap();
    let listed: Vec<String> = store.list_streams(None).await.unwrap().iter().map(|s| s.to_string()).collect();
    assert_eq!(listed, ["counter/y"], "a linked log is not listed");
    let read = store.read_events("counter", "x").await.unwrap_err();
    assert!(is_link_error(&read, &log), "read_events: {read}");
    let state = store.state_json("counter", "x").await.unwrap_err();
    assert!(is_link_error(&state, &log), "state: {state}");
    let exec = store.execute_json("counter", "x", increment(), CommandContext::default(), ExpectedVersion::Any).await;
    assert!(matches!(&exec, Err(ExecuteError::Store(e)) if is_link_error(e, &log)), "execute: {exec:?}");
    assert!(store.get::<Counter>("x").await.is_err());
    store.get::<Counter>("y").await.unwrap().execute(CounterCommand::Increment, ctx()).await.unwrap();
    assert!(store.read_events("counter", "x").await.unwrap_err().to_string().contains("symbolic link"));
    store.close().await;
    assert_eq!(contents(outside.path()), before, "nothing outside the root changed");

    let report = verify_store(dir.path()).unwrap();
    assert_eq!(report.links, [log]);
    assert!(!report.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_directory_that_is_a_symlink_is_never_followed() {
    let dir = seeded().await;
    let outside = tempfile::tempdir().unwrap();
    // A decoy with a snapshot whose state is not the fold of an empty log.
    std::fs::copy(dir.path().join("streams/counter/x/snapshot.json"), outside.path().join("snapshot.json")).unwrap();
    let decoy = dir.path().join("streams/counter/decoy");
    symlink(outside.path(), &decoy).unwrap();
    let before = contents(outside.path());

    let store = open(dir.path()).await.unwrap();
    let state = store.state_json("counter", "decoy").await.unwrap_err();
    assert!(is_link_error(&state, &decoy), "state: {state}");
    let exec =
        store.execute_json("counter", "decoy", increment(), CommandContext::default(), ExpectedVersion::Any).await;
    assert!(matches!(&exec, Err(ExecuteError::Store(e)) if is_link_error(e, &decoy)), "execute: {exec:?}");
    let read = store.read_events("counter", "decoy").await.unwrap_err();
    assert!(is_link_error(&read, &decoy), "read_events: {read}");
    assert_eq!(store.list_streams(None).await.unwrap().len(), 2);
    store.close().await;
    assert_eq!(contents(outside.path()), before, "no events.jsonl was created outside");
    assert!(!outside.path().join("events.jsonl").exists());

    let report = verify_store(dir.path()).unwrap();
    assert_eq!(report.links, [decoy]);
}

/// Every placement of a link the store could meet, each in a fresh copy of a seeded store; the
/// store is opened, used (commands on the linked and on a healthy stream, a projection query),
/// closed; nothing outside may change, each refusal names the link, verify reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_in_every_place_are_refused_and_reported() {
    // (path of the link relative to the root, whether the target is a directory)
    let placements: &[(&str, bool)] = &[
        ("streams", true),
        ("streams/counter", true),
        ("streams/counter/x", true),
        ("streams/counter/z", true),
        ("streams/counter/x/events.jsonl", false),
        ("streams/counter/x/snapshot.json", false),
        ("streams/counter/z/events.jsonl", false),
        ("streams/counter/z/snapshot.json", false),
        ("LOCK", false),
        ("projections", true),
        ("projections/pos-order", true),
        ("projections/pos-order/checkpoint.json", false),
    ];
    for (place, is_dir) in placements {
        let dir = seeded().await;
        let outside = tempfile::tempdir().unwrap();
        let link = dir.path().join(place);
        let target = outside.path().join("target");
        if link.exists() {
            std::fs::rename(&link, &target).unwrap();
        } else if *is_dir {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::write(&target, b"{}").unwrap();
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        symlink(&target, &link).unwrap();
        let before = contents(outside.path());
        match open(dir.path()).await {
            Err(e) => {
                assert!(matches!(&e, StoreError::Link { path } if path == &link), "{place}: open: {e}");
            }
            Ok(store) => {
                for id in ["x", "z", "y"] {
                    let result = store
                        .execute_json("counter", id, increment(), CommandContext::default(), ExpectedVersion::Any)
                        .await;
                    match result {
                        Ok(_) => {}
                        Err(ExecuteError::Store(StoreError::Link { path })) => {
                            assert_eq!(path, link, "{place}: {id}");
                        }
                        Err(other) => assert!(other.to_string().contains("symbolic link"), "{place}: {id}: {other}"),
                    }
                }
                let _ = store.projection::<PosOrder>().await;
                store.close().await;
            }
        }
        assert_eq!(contents(outside.path()), before, "{place}: something outside the root changed");
        let report = verify_store(dir.path()).unwrap();
        assert_eq!(report.links, std::slice::from_ref(&link), "{place}: verify reports it");
        assert!(!report.is_clean());
    }
}

#[tokio::test]
async fn windows_device_names_are_refused_as_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await.unwrap();
    for id in ["CON", "NUL", "COM1", "LPT1", "PRN", "aux.txt", "con.", "Nul.tar.gz", "lpt9"] {
        let refused = store.get::<Counter>(id).await.unwrap_err();
        assert!(matches!(&refused, StoreError::InvalidStreamId { .. }), "{id}: {refused}");
        assert!(refused.to_string().contains("reserved on Windows"), "{id}: {refused}");
    }
    store.get::<Counter>("console").await.unwrap().execute(CounterCommand::Increment, ctx()).await.unwrap();
    store.close().await;
    let created: Vec<String> = std::fs::read_dir(dir.path().join("streams/counter"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(created, ["console"], "nothing was created for a refused id");
}
