//! Torn versus corrupt on real files (issue #12, items 4, 5, 6, 10, 12): a flipped final
//! newline is refused, a missing one restored; a corrupt stream is unavailable alone with one
//! typed error on every call; a torn append with zero-filled holes is torn; a torn dead letter
//! is cut before the next one is appended.

use std::path::{Path, PathBuf};

use crate::common::{self, ctx};
use evfold_core::examples::{BankAccount, BankCommand, Counter, CounterCommand};
use evfold_core::{decode_line, encode_append, ExpectedVersion, Payload};
use evfold_native::{AggregateStore, ExecuteError, StoreError};

async fn write_counters(dir: &Path, names: &[&str], n: usize) {
    let store = AggregateStore::builder(dir).aggregate::<Counter>().open().await.unwrap();
    for name in names {
        let counter = store.get::<Counter>(name).await.unwrap();
        for _ in 0..n {
            counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
        }
    }
    store.close().await;
}

fn log_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("streams/counter/{id}/events.jsonl"))
}

fn quarantined(dir: &Path, id: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(log_path(dir, id).parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".torn-"))
        .collect();
    names.sort();
    names
}

fn clear_quarantine(dir: &Path, id: &str) {
    for name in quarantined(dir, id) {
        std::fs::remove_file(log_path(dir, id).with_file_name(name)).unwrap();
    }
    let _ = std::fs::remove_file(log_path(dir, id).with_file_name("snapshot.json"));
}

/// Every call on the stream returns `StoreError::Corrupt` for `line` at `offset`, typed (through
/// `ExecuteError::Store` for execute), twice in a row; returns the message.
async fn assert_corrupt_everywhere(store: &AggregateStore, id: &str, line: u64, offset: u64) -> String {
    let path = log_path(store.layout().root(), id);
    let same = |e: &StoreError| matches!(e, StoreError::Corrupt { path: p, line: l, offset: o, .. } if *p == path && *l == line && *o == offset);
    let counter = store.get::<Counter>(id).await.unwrap();
    let mut message = String::new();
    for round in 0..2 {
        let e = counter.execute(CounterCommand::Increment, ctx()).await.unwrap_err();
        assert!(matches!(&e, ExecuteError::Store(s) if same(s)), "round {round}, execute: {e:?}");
        let payload = Payload::new("Increment", serde_json::Value::Null);
        let e = store.execute_json("counter", id, payload, ctx(), ExpectedVersion::Any).await.unwrap_err();
        assert!(matches!(&e, ExecuteError::Store(s) if same(s)), "round {round}, execute_json: {e:?}");
        let e = counter.state().await.unwrap_err();
        assert!(same(&e), "round {round}, state: {e:?}");
        let e = store.state_json("counter", id).await.unwrap_err();
        assert!(same(&e), "round {round}, state_json: {e:?}");
        let e = store.read_events("counter", id).await.unwrap_err();
        assert!(same(&e), "round {round}, read_events: {e:?}");
        message = e.to_string();
    }
    assert!(message.contains(&format!("evfold repair counter {id}")), "says what to run: {message}");
    assert!(message.contains("evfold verify"), "{message}");
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bit_flip_of_the_final_newline_is_refused_never_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    write_counters(dir.path(), &["c"], 3).await;
    let path = log_path(dir.path(), "c");
    let full = std::fs::read(&path).unwrap();
    let last_start = full[..full.len() - 1].iter().rposition(|b| *b == b'\n').unwrap() as u64 + 1;
    for bit in 0..8 {
        clear_quarantine(dir.path(), "c");
        let mut bytes = full.clone();
        *bytes.last_mut().unwrap() ^= 1 << bit;
        std::fs::write(&path, &bytes).unwrap();
        let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
        assert_corrupt_everywhere(&store, "c", 3, last_start).await;
        store.close().await;
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "bit {bit}: the acknowledged line stays in the log");
        assert!(quarantined(dir.path(), "c").is_empty(), "bit {bit}: nothing quarantined");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_final_newline_is_restored_durably() {
    let dir = tempfile::tempdir().unwrap();
    write_counters(dir.path(), &["c"], 3).await;
    let path = log_path(dir.path(), "c");
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 1]).unwrap();
    let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), full, "newline written back at open");
    let counter = store.get::<Counter>("c").await.unwrap();
    assert_eq!(counter.state_with_version().await.unwrap().0, 3, "the event is kept");
    assert_eq!(counter.execute(CounterCommand::Increment, ctx()).await.unwrap().version, 4);
    store.close().await;
    assert!(quarantined(dir.path(), "c").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_stream_is_unavailable_alone_with_one_typed_error() {
    for (what, line) in [("last line", 3u64), ("middle line", 2)] {
        let dir = tempfile::tempdir().unwrap();
        write_counters(dir.path(), &["bad", "good"], 3).await;
        let path = log_path(dir.path(), "bad");
        let mut bytes = std::fs::read(&path).unwrap();
        let starts: Vec<usize> = std::iter::once(0)
            .chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1))
            .collect();
        let offset = starts[line as usize - 1];
        bytes[offset + 10] ^= 0x04; // a flipped bit inside the line: CRC mismatch
        std::fs::write(&path, &bytes).unwrap();

        let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await.unwrap();
        assert_corrupt_everywhere(&store, "bad", line, offset as u64).await;
        let good = store.get::<Counter>("good").await.unwrap();
        assert_eq!(good.execute(CounterCommand::Increment, ctx()).await.unwrap().version, 4, "{what}");
        assert_eq!(good.state().await.unwrap(), Counter { value: 4 }, "{what}");
        assert_eq!(store.read_events("counter", "good").await.unwrap().len(), 4, "{what}");
        // Store-wide reads stop with the typed error at the damaged stream; never skip it.
        let all = store.read_all(0).await;
        assert!(
            matches!(all, Err(StoreError::Corrupt { ref path, .. }) if path.ends_with("bad/events.jsonl")),
            "{what}: {all:?}"
        );
        store.close().await;
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{what}: nothing was cut");
        assert_eq!(std::fs::read(log_path(dir.path(), "good")).unwrap().iter().filter(|b| **b == b'\n').count(), 4);

        let read_only = AggregateStore::builder(dir.path()).aggregate::<Counter>().read_only().open().await.unwrap();
        let e = read_only.state_json("counter", "bad").await.unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { line: l, .. } if l == line), "{what}, read-only state: {e:?}");
        assert_eq!(read_only.state_json("counter", "good").await.unwrap().0, 4, "{what}");
        read_only.close().await;
    }
}

/// A log of two durable counter events, then an unacknowledged append of four long lines.
fn holed_shape(durable: &[u8]) -> (Vec<u8>, usize) {
    let first = &durable[..durable.iter().position(|b| *b == b'\n').unwrap()];
    let template = decode_line(first).unwrap();
    let records: Vec<_> = (3..=6)
        .map(|seq| evfold_core::EventRecord {
            seq,
            pos: seq + 10,
            data: serde_json::json!({"pad": "x".repeat(350 + 41 * seq as usize)}),
            ..template.clone()
        })
        .collect();
    let append = encode_append(&records);
    let mut full = durable.to_vec();
    full.extend_from_slice(&append);
    (full, durable.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_append_with_a_zero_hole_is_torn_at_every_aligned_offset() {
    let dir = tempfile::tempdir().unwrap();
    write_counters(dir.path(), &["c"], 2).await;
    let path = log_path(dir.path(), "c");
    let durable = std::fs::read(&path).unwrap();
    let (full, durable_len) = holed_shape(&durable);
    let end = full.len();
    let final_start = full[..end - 1].iter().rposition(|b| *b == b'\n').unwrap() + 1;
    let mut starts = vec![durable_len];
    starts.extend((512..end).step_by(512).filter(|o| *o > durable_len && *o < final_start));
    let mut tried = 0;
    for &hole_from in &starts {
        let ends = (hole_from + 1..=end).filter(|o| o % 512 == 0 || *o == end);
        for hole_to in ends.filter(|t| *t < end - 1) {
            for cut in [hole_to, (hole_to + 300).min(end - 2)].into_iter().filter(|c| *c >= hole_to) {
                clear_quarantine(dir.path(), "c");
                let mut bytes = full[..cut].to_vec();
                bytes[hole_from..hole_to].fill(0);
                std::fs::write(&path, &bytes).unwrap();
                let what = format!("hole {hole_from}..{hole_to}, file ends at {cut}");
                let store = AggregateStore::builder(dir.path()).aggregate::<Counter>().open().await;
                let store = store.unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
                let counter = store.get::<Counter>("c").await.unwrap();
                let state = counter.state_with_version().await;
                assert_eq!(state.map(|s| s.0).map_err(|e| e.to_string()), Ok(2), "{what}");
                assert_eq!(std::fs::read(&path).unwrap(), durable, "{what}: cut back to the acknowledged events");
                let quarantine = path.with_file_name(format!("events.jsonl.torn-{durable_len}"));
                assert_eq!(std::fs::read(&quarantine).unwrap(), &bytes[durable_len..], "{what}: torn bytes kept");
                store.close().await;
                tried += 1;
            }
        }
    }
    std::fs::write(&path, &durable).unwrap();
    eprintln!("zero holes on real files: {tried} shapes, all torn");
    assert!(tried >= 12, "{tried}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_dead_letter_is_cut_before_the_next_one_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path()).await;
    let a = store.get::<BankAccount>("a").await.unwrap();
    a.execute(BankCommand::Open { owner: "ada".into() }, ctx()).await.unwrap();
    a.execute(BankCommand::Deposit { amount: 100 }, ctx()).await.unwrap();
    a.execute(BankCommand::TransferOut { to: "ghost1".into(), amount: 5 }, ctx()).await.unwrap();
    assert_eq!(store.run_process_managers().await.unwrap().dead_lettered, 1);
    drop(a);
    store.close().await;
    // The second write to the file was torn by a crash: half a line, no newline.
    let path = dir.path().join("process_managers/transfers/dead_letters.jsonl");
    let first = std::fs::read(&path).unwrap();
    let mut torn = first.clone();
    torn.extend_from_slice(&first[..first.len() / 2]);
    std::fs::write(&path, &torn).unwrap();

    let store = common::open(dir.path()).await;
    assert_eq!(store.dead_letters("transfers").await.unwrap().len(), 1, "a reader ignores the torn tail");
    let a = store.get::<BankAccount>("a").await.unwrap();
    a.execute(BankCommand::TransferOut { to: "ghost2".into(), amount: 7 }, ctx()).await.unwrap();
    assert_eq!(store.run_process_managers().await.unwrap().dead_lettered, 1);
    let letters = store.dead_letters("transfers").await.unwrap();
    let targets: Vec<&str> = letters.iter().map(|l| l.command.target.instance_id()).collect();
    assert_eq!(targets, ["ghost1", "ghost2"]);
    let fragment = path.with_file_name(format!("dead_letters.jsonl.torn-{}", first.len()));
    assert_eq!(std::fs::read(&fragment).unwrap(), &first[..first.len() / 2], "the fragment is kept aside");
    let report = store.redeliver_dead_letters("transfers").await.unwrap();
    assert_eq!((report.delivered, report.remaining), (0, 2));
    drop(a);
    store.close().await;

    // A corrupt complete line is refused with the typed error, not skipped.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5] = b'#';
    std::fs::write(&path, &bytes).unwrap();
    let store = common::open(dir.path()).await;
    let e = store.dead_letters("transfers").await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { line: 1, offset: 0, .. }), "{e:?}");
    let e = store.redeliver_dead_letters("transfers").await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt { line: 1, offset: 0, .. }), "{e:?}");
    store.close().await;
}
