//! A hostile user plants symbolic links inside a store (to a victim directory standing for
//! `/etc`, or dangling, so following them would create files) and names streams with device
//! names reserved on Windows. The store must never read or write outside its root: every call
//! gives a typed error naming the link (or works without touching it), nothing outside changes,
//! `verify_store` reports every link; every reserved name is refused on every call, nothing created.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use evfold_core::examples::{Balances, BankAccount, BankCommand, Transfers};
use evfold_core::{CommandContext, ExpectedVersion, Payload};
use evfold_native::{verify_store, AggregateStore, ExecuteError, StoreError};
use serde_json::json;

fn ctx() -> CommandContext {
    CommandContext::default().with_actor("hostile")
}

async fn open(dir: &Path) -> Result<AggregateStore, StoreError> {
    AggregateStore::builder(dir)
        .aggregate::<BankAccount>()
        .projection::<Balances>()
        .process_manager::<Transfers>()
        .snapshot_every(Some(2))
        .open()
        .await
}

/// a-0 (opened, 100 in, 30 sent to a-1: snapshotted), a-1 (opened, got 30); projection and
/// process-manager checkpoints written; one dead letter (a transfer to a never-opened account).
async fn seeded() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await.unwrap();
    let a0 = store.get::<BankAccount>("a-0").await.unwrap();
    let a1 = store.get::<BankAccount>("a-1").await.unwrap();
    a0.execute(BankCommand::Open { owner: "ada".into() }, ctx()).await.unwrap();
    a1.execute(BankCommand::Open { owner: "bob".into() }, ctx()).await.unwrap();
    a0.execute(BankCommand::Deposit { amount: 100 }, ctx()).await.unwrap();
    a0.execute(BankCommand::TransferOut { to: "a-1".into(), amount: 30 }, ctx()).await.unwrap();
    a0.execute(BankCommand::TransferOut { to: "nobody".into(), amount: 5 }, ctx()).await.unwrap();
    store.run_process_managers().await.unwrap();
    store.projection::<Balances>().await.unwrap();
    drop((a0, a1));
    store.close().await;
    dir
}

/// Every file and directory under `dir`, with the bytes of each file.
fn tree(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.push((path.clone(), None));
                pending.push(path);
            } else {
                out.push((path.clone(), Some(std::fs::read(&path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

/// Where a link goes: an existing directory or file of the victim, or nowhere (dangling).
#[derive(Debug, Clone, Copy)]
enum Target {
    /// What was at the place, moved into the victim directory.
    Moved,
    /// The victim directory itself (`/etc`).
    VictimDir,
    /// A path in the victim directory that does not exist.
    Dangling,
}

const PLACES: &[&str] = &[
    "streams",
    "streams/bank-account",
    "streams/bank-account/a-0",
    "streams/bank-account/a-9",
    "streams/bank-account/a-0/events.jsonl",
    "streams/bank-account/a-0/snapshot.json",
    "streams/bank-account/a-9/events.jsonl",
    "streams/bank-account/a-9/snapshot.json",
    "LOCK",
    "projections",
    "projections/balances",
    "projections/balances/checkpoint.json",
    "process_managers",
    "process_managers/transfers",
    "process_managers/transfers/checkpoint.json",
    "process_managers/transfers/dead_letters.jsonl",
];

/// Runs every public call a user makes; returns how many calls were refused with a link error.
async fn use_store(dir: &Path, link: &Path, place: &str) -> (usize, usize) {
    let (mut calls, mut refused) = (1, 0);
    let mut check = |result: Result<(), String>, what: &str| {
        calls += 1;
        // A call may also fail for what the link hides (a reader whose checkpoint is past the
        // events still visible says so); a link refusal must name the link.
        if let Err(message) = result {
            if message.contains("symbolic link") {
                assert!(
                    message.contains(&link.display().to_string()),
                    "{place}: {what}: names another path: {message}"
                );
                refused += 1;
            }
        }
    };
    let store = match open(dir).await {
        Ok(store) => store,
        Err(e) => {
            assert!(matches!(&e, StoreError::Link { path } if path == link), "{place}: open: {e}");
            return (1, 1);
        }
    };
    let deposit = || Payload::new("Deposit", json!({"amount": 1}));
    for id in ["a-0", "a-9"] {
        let exec = store.execute_json("bank-account", id, deposit(), ctx(), ExpectedVersion::Any).await;
        let exec = match exec {
            Ok(_) | Err(ExecuteError::Rejected(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        check(exec, "execute");
        check(store.state_json("bank-account", id).await.map(drop).map_err(|e| e.to_string()), "state");
        check(store.read_events("bank-account", id).await.map(drop).map_err(|e| e.to_string()), "read_events");
    }
    let open_new = Payload::new("Open", json!({"owner": "eve"}));
    let exec = store.execute_json("bank-account", "a-1", open_new, ctx(), ExpectedVersion::Any).await;
    let exec = match exec {
        Ok(_) | Err(ExecuteError::Rejected(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    };
    check(exec, "a-1");
    check(store.list_streams(None).await.map(drop).map_err(|e| e.to_string()), "list_streams");
    check(store.read_all(1).await.map(drop).map_err(|e| e.to_string()), "read_all");
    check(store.projection::<Balances>().await.map(drop).map_err(|e| e.to_string()), "projection");
    check(store.run_process_managers().await.map(drop).map_err(|e| e.to_string()), "run_process_managers");
    check(store.dead_letters("transfers").await.map(drop).map_err(|e| e.to_string()), "dead_letters");
    store.close().await;
    (calls, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_links_never_lead_outside_the_store() {
    let (mut tried, mut calls, mut refusals) = (0, 0, 0);
    for place in PLACES {
        for target_kind in [Target::Moved, Target::VictimDir, Target::Dangling] {
            let dir = seeded().await;
            let victim = tempfile::tempdir().unwrap();
            std::fs::write(victim.path().join("passwd"), b"root:x:0:0\n").unwrap();
            let link = dir.path().join(place);
            let target = match target_kind {
                Target::Moved if link.exists() => {
                    let moved = victim.path().join("moved");
                    std::fs::rename(&link, &moved).unwrap();
                    moved
                }
                Target::Moved => continue, // nothing there to move
                Target::VictimDir => victim.path().to_owned(),
                Target::Dangling => victim.path().join("created-by-the-store"),
            };
            if link.exists() {
                if link.is_dir() {
                    std::fs::remove_dir_all(&link).unwrap();
                } else {
                    std::fs::remove_file(&link).unwrap();
                }
            }
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            symlink(&target, &link).unwrap();
            let before = tree(victim.path());
            let (n, refused) = use_store(dir.path(), &link, place).await;
            assert_eq!(tree(victim.path()), before, "{place} -> {target_kind:?}: the victim changed");
            let report = verify_store(dir.path()).unwrap();
            assert_eq!(
                report.links,
                std::slice::from_ref(&link),
                "{place} -> {target_kind:?}: verify reports the link"
            );
            assert!(!report.is_clean());
            tried += 1;
            calls += n;
            refusals += refused;
        }
    }
    println!("{tried} link placements, {calls} calls, {refusals} refused with the link named, victim unchanged");
    assert_eq!(tried, PLACES.len() * 3 - 3, "a-9, its log and its snapshot do not exist: nothing to move");
}

/// Device names Windows reserves, in every case form, with extensions and trailing dots.
fn reserved_names() -> Vec<String> {
    let mut stems: Vec<String> = ["CON", "PRN", "AUX", "NUL"].iter().map(|s| s.to_string()).collect();
    for prefix in ["COM", "LPT"] {
        stems.extend((0..=9).map(|n| format!("{prefix}{n}")));
    }
    let mut names = Vec::new();
    for stem in stems {
        let lower = stem.to_lowercase();
        let mixed: String =
            stem.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c } else { c.to_ascii_lowercase() }).collect();
        for form in [stem.clone(), lower.clone(), mixed] {
            for suffix in ["", ".", "..", ".txt", ".tar.gz"] {
                names.push(format!("{form}{suffix}"));
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_device_names_are_refused_on_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await.unwrap();
    let names = reserved_names();
    let mut refusals = 0;
    let reserved = |e: &StoreError| matches!(e, StoreError::InvalidStreamId { reason, .. } if reason.to_string().contains("reserved on Windows"));
    for name in &names {
        let open = || Payload::new("Open", json!({"owner": "x"}));
        let calls: Vec<Result<(), StoreError>> = vec![
            store.get::<BankAccount>(name).await.map(drop),
            match store.execute_json("bank-account", name, open(), ctx(), ExpectedVersion::Any).await {
                Err(ExecuteError::Store(e)) => Err(e),
                other => panic!("{name}: execute as id: {other:?}"),
            },
            match store.execute_json(name, "x", open(), ctx(), ExpectedVersion::Any).await {
                Err(ExecuteError::Store(e)) => Err(e),
                other => panic!("{name}: execute as type: {other:?}"),
            },
            store.state_json("bank-account", name).await.map(drop),
            store.read_events("bank-account", name).await.map(drop),
            store.stream_version("bank-account", name).await.map(drop),
        ];
        for (i, call) in calls.into_iter().enumerate() {
            let e = call.expect_err(name);
            assert!(reserved(&e), "{name}: call {i}: {e}");
            refusals += 1;
        }
    }
    store.close().await;
    assert!(!dir.path().join("streams").exists(), "nothing was created");
    println!("{} reserved names, {refusals} calls refused", names.len());
    assert_eq!(names.len(), 24 * 3 * 5);
}
