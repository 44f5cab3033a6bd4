//! Schema evolution on real files: a store written by version 1 of an aggregate and a projection
//! (`evfold_core::examples::evolution`), reopened with version 2 and its upcasters, reads as a
//! fresh version-2 store; the log is never rewritten (old lines keep their bytes, no `"v"`); a
//! version-1 snapshot is refolded, not restored; the projection rebuilds.

use evfold_core::examples::evolution::{v1, v2};
use evfold_native::AggregateStore;
use serde_json::Value;

use crate::common::ctx;

async fn write_v1(dir: &std::path::Path) {
    let store = AggregateStore::builder(dir)
        .aggregate::<v1::Account>()
        .projection::<v1::Totals>()
        .snapshot_every(Some(2))
        .open()
        .await
        .unwrap();
    let ann = store.get::<v1::Account>("ann").await.unwrap();
    ann.execute(v1::Command::Fund { owner: "Ann".into(), amount: 5 }, ctx()).await.unwrap();
    ann.execute(v1::Command::Deposit { amount: 3 }, ctx()).await.unwrap();
    ann.execute(v1::Command::Withdraw { amount: 2 }, ctx()).await.unwrap();
    let bob = store.get::<v1::Account>("bob").await.unwrap();
    bob.execute(v1::Command::Fund { owner: "Bob".into(), amount: 7 }, ctx()).await.unwrap();
    assert_eq!(store.projection::<v1::Totals>().await.unwrap(), v1::Totals { euros: 13, events: 4 });
    store.close().await;
}

async fn open_v2(dir: &std::path::Path) -> AggregateStore {
    AggregateStore::builder(dir)
        .aggregate::<v2::Account>()
        .projection::<v2::Totals>()
        .snapshot_every(Some(2))
        .open()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_version_one_store_reopened_by_version_two_reads_as_a_fresh_version_two_store() {
    let old_dir = tempfile::tempdir().unwrap();
    write_v1(old_dir.path()).await;
    let ann_log = old_dir.path().join("streams/account/ann/events.jsonl");
    let v1_bytes = std::fs::read(&ann_log).unwrap();
    assert!(!String::from_utf8_lossy(&v1_bytes).contains("\"v\":"), "version-1 lines carry no version key");

    // Plant a lie in version 1's snapshot (seq 2): if version 2 restored it, it would show.
    let snapshot_path = old_dir.path().join("streams/account/ann/snapshot.json");
    let mut snapshot: Value = serde_json::from_slice(&std::fs::read(&snapshot_path).unwrap()).unwrap();
    assert_eq!(snapshot["seq"], 2);
    snapshot["state"] = serde_json::json!({ "owner": "Mallory", "cents": 999_999 });
    std::fs::write(&snapshot_path, serde_json::to_vec(&snapshot).unwrap()).unwrap();

    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = open_v2(fresh_dir.path()).await;
    let ann = fresh.get::<v2::Account>("ann").await.unwrap();
    ann.execute(v2::Command::Open { owner: "Ann".into() }, ctx()).await.unwrap();
    ann.execute(v2::Command::Deposit { cents: 500 }, ctx()).await.unwrap();
    ann.execute(v2::Command::Deposit { cents: 300 }, ctx()).await.unwrap();
    ann.execute(v2::Command::Withdraw { cents: 200 }, ctx()).await.unwrap();
    let bob = fresh.get::<v2::Account>("bob").await.unwrap();
    bob.execute(v2::Command::Open { owner: "Bob".into() }, ctx()).await.unwrap();
    bob.execute(v2::Command::Deposit { cents: 700 }, ctx()).await.unwrap();

    let old = open_v2(old_dir.path()).await;
    for id in ["ann", "bob"] {
        let upcast = old.get::<v2::Account>(id).await.unwrap().state().await.unwrap();
        let native = fresh.get::<v2::Account>(id).await.unwrap().state().await.unwrap();
        assert_eq!(upcast, native, "{id}");
    }
    let ann_state = old.get::<v2::Account>("ann").await.unwrap().state().await.unwrap();
    assert_eq!(ann_state, v2::Account { owner: Some("Ann".into()), cents: 600 }, "the planted snapshot was not used");
    assert_eq!(old.projection::<v2::Totals>().await.unwrap(), fresh.projection::<v2::Totals>().await.unwrap());

    // Version 2 writes on at its versions; the old lines are byte for byte what version 1 wrote.
    let ann = old.get::<v2::Account>("ann").await.unwrap();
    ann.execute(v2::Command::Deposit { cents: 1 }, ctx()).await.unwrap();
    old.close().await;
    let bytes = std::fs::read(&ann_log).unwrap();
    assert_eq!(&bytes[..v1_bytes.len()], &v1_bytes[..]);
    let last = String::from_utf8_lossy(&bytes[v1_bytes.len()..]).into_owned();
    assert!(last.contains(r#""type":"Deposited","v":2,"data":{"cents":1}"#), "{last}");
    // The snapshot it wrote at seq 4 records version 2's identity, and is trusted on reopen.
    let snapshot: Value = serde_json::from_slice(&std::fs::read(&snapshot_path).unwrap()).unwrap();
    assert_eq!(snapshot["seq"], 4);
    assert_eq!(snapshot["version"], "2;Deposited=2,Funded=2,Withdrew=2");
    let reopened = open_v2(old_dir.path()).await;
    let state = reopened.get::<v2::Account>("ann").await.unwrap().state().await.unwrap();
    assert_eq!(state.cents, 601);
    reopened.close().await;
    fresh.close().await;
}
