//! Crash recovery on real files: torn tails at every byte offset, NUL tails, corrupt lines
//! refused with file/line/offset, explicit verify and repair, read-only inspection.

use std::path::Path;

use crate::common::ctx;
use evfold_core::examples::{Counter, CounterCommand};
use evfold_core::StreamId;
use evfold_native::{repair_stream, verify_store, AggregateStore, StoreError, StreamStatus};

async fn write_counter(dir: &Path, n: usize) {
    let store = AggregateStore::builder(dir).aggregate::<Counter>().open().await.unwrap();
    let counter = store.get::<Counter>("c").await.unwrap();
    for _ in 0..n {
        counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    }
    store.close().await;
}

fn log_path(dir: &Path) -> std::path::PathBuf {
    dir.join("streams/counter/c/events.jsonl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_at_every_offset_is_quarantined_and_truncated() {
    let dir = tempfile::tempdir().unwrap();
    write_counter(dir.path(), 3).await;
    let full = std::fs::read(log_path(dir.path())).unwrap();
    let last_start = full[..full.len() - 1].iter().rposition(|b| *b == b'\n').unwrap() + 1;
    // Every cut but the one that leaves only the newline missing (kept: see damage.rs).
    for cut in last_start + 1..full.len() - 1 {
        let path = log_path(dir.path());
        std::fs::write(&path, &full[..cut]).unwrap();
        for entry in std::fs::read_dir(path.parent().unwrap()).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().contains(".torn-") || entry.file_name() == "snapshot.json" {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), &full[..last_start], "cut at {cut}: truncated to the valid prefix");
        let quarantine = path.with_file_name(format!("events.jsonl.torn-{last_start}"));
        assert_eq!(std::fs::read(&quarantine).unwrap(), &full[last_start..cut], "cut at {cut}: torn bytes kept");
        let counter = store.get::<Counter>("c").await.unwrap();
        assert_eq!(counter.state_with_version().await.unwrap().0, 2, "cut at {cut}");
        let committed = counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
        assert_eq!((committed.version, committed.positions.as_slice()), (3, &[3][..]), "cut at {cut}");
        store.close().await;
        std::fs::write(&path, &full[..last_start]).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_filled_tail_is_torn_not_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    write_counter(dir.path(), 2).await;
    let path = log_path(dir.path());
    let good = std::fs::read(&path).unwrap();
    let mut bytes = good.clone();
    bytes.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&path, &bytes).unwrap();
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), good);
    assert_eq!(store.get::<Counter>("c").await.unwrap().state().await.unwrap().value, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_middle_line_is_refused_with_file_line_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    write_counter(dir.path(), 3).await;
    let path = log_path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let second = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    let target = second + bytes[second..].windows(11).position(|w| w == b"Incremented").unwrap();
    bytes[target] = b'X';
    std::fs::write(&path, &bytes).unwrap();

    // Open checks only each log's last line; a corrupt earlier line is refused when it is read:
    // by the stream's first load, and by the store-wide index scan (first append or reader).
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
    let counter = store.get::<Counter>("c").await.unwrap();
    let error = counter.state().await.unwrap_err().to_string();
    assert!(error.contains("line 2") && error.contains("CRC"), "{error}");
    let error = store.read_all(1).await.unwrap_err();
    match &error {
        // Store-wide reads stop at the damaged line (its offset; the index knows no line number).
        StoreError::Corrupt { path: p, offset, reason, .. } => {
            assert_eq!((p, *offset), (&path, second as u64));
            assert!(reason.contains("CRC"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(counter.execute(CounterCommand::Increment, ctx()).await.is_err(), "no append past a corrupt store");
    store.close().await;
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was changed");

    let report = verify_store(dir.path()).unwrap();
    assert!(!report.is_clean());
    assert!(matches!(report.streams[0].status, StreamStatus::Corrupt { line: 2, .. }));

    let stream = StreamId::new("counter", "c").unwrap();
    let repaired = repair_stream(dir.path(), &stream).unwrap();
    assert_eq!((repaired.kept_events, repaired.cut_at), (1, second as u64));
    assert_eq!(std::fs::read(repaired.backup.unwrap()).unwrap(), &bytes[second..]);
    assert!(verify_store(dir.path()).unwrap().is_clean());
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
    assert_eq!(store.get::<Counter>("c").await.unwrap().state().await.unwrap().value, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_last_line_with_bad_crc_is_corrupt_not_torn() {
    let dir = tempfile::tempdir().unwrap();
    write_counter(dir.path(), 2).await;
    let path = log_path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 4] = if bytes[n - 4] == b'0' { b'1' } else { b'0' };
    std::fs::write(&path, &bytes).unwrap();
    // The store opens (only this stream is unavailable) and refuses the stream, typed.
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
    let error = store.get::<Counter>("c").await.unwrap().state().await.unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { line: 2, .. }), "{error:?}");
    store.close().await;
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_open_ignores_a_torn_tail_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_counter(dir.path(), 2).await;
    let path = log_path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"seq\":3,\"pos\":3,\"id\":");
    std::fs::write(&path, &bytes).unwrap();
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().read_only().open().await.unwrap();
    assert_eq!(store.read_events("counter", "c").await.unwrap().len(), 2);
    assert_eq!(store.read_all(1).await.unwrap().len(), 2);
    assert_eq!(store.state_json("counter", "c").await.unwrap().0, 2);
    assert!(matches!(store.get::<Counter>("c").await, Err(StoreError::ReadOnly)));
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "read-only never repairs");
    let report = verify_store(dir.path()).unwrap();
    assert!(matches!(report.streams[0].status, StreamStatus::TornTail { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_aggregate_cannot_decode_is_an_error_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write_counter(dir.path(), 1).await;
    let path = log_path(dir.path());
    let record = evfold_core::EventRecord {
        version: 1,
        seq: 2,
        pos: 2,
        id: evfold_core::EventId("odd".into()),
        event_type: "Exploded".into(),
        data: serde_json::json!({"x": 1}),
        ts: evfold_core::Timestamp(1),
        meta: Default::default(),
    };
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut file, &evfold_core::encode_record(&record)).unwrap();
    drop(file);
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
    let counter = store.get::<Counter>("c").await.unwrap();
    let state = counter.state().await;
    assert!(state.is_err(), "schema drift must not be skipped silently: {state:?}");
    let refused = counter.execute(CounterCommand::Increment, ctx()).await;
    assert!(refused.is_err());
    assert_eq!(store.read_events("counter", "c").await.unwrap().len(), 2, "nothing written or dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_survive_restart_reads_and_snapshots() {
    use evfold_core::examples::{BankAccount, BankCommand};
    let dir = tempfile::tempdir().unwrap();
    let owner = "o".repeat(50_000);
    let store =
        AggregateStore::builder(dir.path()).aggregate::<BankAccount>().snapshot_every(Some(1)).open().await.unwrap();
    let account = store.get::<BankAccount>("big").await.unwrap();
    account.execute(BankCommand::Open { owner: owner.clone() }, ctx()).await.unwrap();
    account.execute(BankCommand::Deposit { amount: 1 }, ctx()).await.unwrap();
    assert_eq!(store.read_all(1).await.unwrap()[0].record.data["owner"].as_str().unwrap().len(), 50_000);
    drop(account);
    store.close().await;
    let store = AggregateStore::builder(dir.path()).aggregate::<BankAccount>().open().await.unwrap();
    let state = store.get::<BankAccount>("big").await.unwrap().state().await.unwrap();
    assert_eq!((state.owner.unwrap().len(), state.balance), (50_000, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_inside_a_multi_event_append_keeps_none_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
    let counter = store.get::<Counter>("c").await.unwrap();
    // Concurrent callers: group commit writes several commands' events as one append.
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let counter = counter.clone();
            tokio::spawn(async move { counter.execute(CounterCommand::Increment, ctx()).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    drop(counter);
    store.close().await;

    let path = log_path(dir.path());
    let full = std::fs::read(&path).unwrap();
    let line_ends: Vec<usize> = full.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
    let starts: Vec<usize> = std::iter::once(0).chain(line_ends.iter().copied()).collect();
    let continues = |i: usize| evfold_core::line_continues(&full[starts[i]..line_ends[i] - 1]);
    let first_marked = (0..line_ends.len()).find(|&i| continues(i)).expect("group commit wrote a multi-event append");
    // A power cut that kept the append's first line whole but lost the rest of it.
    std::fs::write(&path, &full[..line_ends[first_marked]]).unwrap();

    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
    assert_eq!(store.read_events("counter", "c").await.unwrap().len(), first_marked, "no part of the append");
    let counter = store.get::<Counter>("c").await.unwrap();
    assert_eq!(counter.state().await.unwrap().value, first_marked as u64);
    assert_eq!(std::fs::read(&path).unwrap(), full[..starts[first_marked]], "cut back to the append's start");
    let quarantined = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".torn-"))
        .count();
    assert_eq!(quarantined, 1, "the dropped lines are kept aside, not destroyed");
    counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    assert_eq!(counter.state().await.unwrap().value, first_marked as u64 + 1);
}
