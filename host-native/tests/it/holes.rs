//! Holes in the store-wide order (issue 12.8) and repair's effect on readers (12.9): a hole
//! left by repair or by a quarantined torn tail never stops a read-only reader silently; an
//! unsettled one is a typed error; repair invalidates checkpoints past its cut and can keep the
//! valid lines after a bad one.

use std::path::{Path, PathBuf};

use crate::common::ctx;
use evfold_core::examples::{Balances, BankAccount, BankCommand};
use evfold_core::StreamId;
use evfold_native::{repair_stream, verify_store, AggregateStore};

fn log(dir: &Path, id: &str) -> PathBuf {
    dir.join("streams/bank-account").join(id).join("events.jsonl")
}

/// acc-1 and acc-2 opened, then `n` deposits of 1 on each, interleaved (so acc-1's positions
/// are followed by acc-2's); the projection checkpoint is written at close.
async fn interleaved(dir: &Path, n: usize) {
    let store = AggregateStore::builder(dir).aggregate::<BankAccount>().projection::<Balances>().open().await.unwrap();
    let a = store.get::<BankAccount>("acc-1").await.unwrap();
    let b = store.get::<BankAccount>("acc-2").await.unwrap();
    a.execute(BankCommand::Open { owner: "a".into() }, ctx()).await.unwrap();
    b.execute(BankCommand::Open { owner: "b".into() }, ctx()).await.unwrap();
    for _ in 0..n {
        a.execute(BankCommand::Deposit { amount: 1 }, ctx()).await.unwrap();
        b.execute(BankCommand::Deposit { amount: 1 }, ctx()).await.unwrap();
    }
    let _: Balances = store.projection().await.unwrap();
    store.close().await;
}

/// Flips one byte inside line `line` (1-based) of a log: a CRC mismatch there.
fn corrupt_line(path: &Path, line: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let start: usize = bytes.split(|b| *b == b'\n').take(line - 1).map(|l| l.len() + 1).sum();
    let at = start + bytes[start..].windows(8).position(|w| w == b"\"amount\"").unwrap() + 9;
    bytes[at] = if bytes[at] == b'1' { b'7' } else { b'1' };
    std::fs::write(path, bytes).unwrap();
}

async fn read_only(dir: &Path) -> AggregateStore {
    AggregateStore::builder(dir).aggregate::<BankAccount>().read_only().open().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_reads_go_past_the_holes_repair_leaves() {
    let dir = tempfile::tempdir().unwrap();
    interleaved(dir.path(), 5).await;
    corrupt_line(&log(dir.path(), "acc-1"), 3);
    repair_stream(dir.path(), &StreamId::new("bank-account", "acc-1").unwrap()).unwrap();
    let verified = verify_store(dir.path()).unwrap();
    assert!(verified.is_clean());

    let store = read_only(dir.path()).await;
    let all = store.read_all(1).await.unwrap();
    assert_eq!(all.len() as u64, verified.events(), "every event verify counts is read, past the hole");
    let mut paged = Vec::new();
    let mut from = 1;
    loop {
        let page = store.read_all_page(from, 3).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.record.pos + 1;
        paged.extend(page);
    }
    assert_eq!(paged.len(), all.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_reads_go_past_a_quarantined_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    interleaved(dir.path(), 3).await;
    // acc-1's last line is torn (its pos is below acc-2's last), as a crash mid-write leaves it.
    let path = log(dir.path(), "acc-1");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    // A writer opens (quarantining the tail) and appends once.
    let store = AggregateStore::builder(dir.path()).aggregate::<BankAccount>().open().await.unwrap();
    let b = store.get::<BankAccount>("acc-2").await.unwrap();
    b.execute(BankCommand::Deposit { amount: 1 }, ctx()).await.unwrap();
    store.close().await;

    let verified = verify_store(dir.path()).unwrap();
    let store = read_only(dir.path()).await;
    assert_eq!(store.read_all(1).await.unwrap().len() as u64, verified.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsettled_hole_is_a_typed_error_not_a_silent_stop() {
    let dir = tempfile::tempdir().unwrap();
    interleaved(dir.path(), 3).await;
    // A writer died after acc-2's append landed and before acc-1's did: no writer has opened
    // since, so nothing says the missing position is final.
    let path = log(dir.path(), "acc-1");
    let bytes = std::fs::read(&path).unwrap();
    let last = bytes[..bytes.len() - 1].iter().rposition(|b| *b == b'\n').unwrap() + 1;
    std::fs::write(&path, &bytes[..last]).unwrap();
    let store = read_only(dir.path()).await;
    let error = store.read_all(1).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("missing"), "{text}");
    // Once a writer has opened and built its index, the hole is settled and recorded.
    let writer = AggregateStore::builder(dir.path()).aggregate::<BankAccount>().open().await.unwrap();
    assert!(writer.durable_position() > 0);
    writer.close().await;
    let store = read_only(dir.path()).await;
    assert_eq!(store.read_all(1).await.unwrap().len() as u64, verify_store(dir.path()).unwrap().events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_process_scans_the_store_once() {
    let dir = tempfile::tempdir().unwrap();
    interleaved(dir.path(), 20).await;
    let store = read_only(dir.path()).await;
    let mut from = 1;
    let mut pages = 0;
    loop {
        let page = store.read_all_page(from, 5).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.record.pos + 1;
        pages += 1;
    }
    assert!(pages >= 8);
    let _ = store.read_all(1).await.unwrap();
    // index_scans: see the hook added with the fix
    assert_eq!(store.index_scans(), 1, "one full scan per process, then tails");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_invalidates_a_projection_checkpoint_past_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    interleaved(dir.path(), 5).await; // acc-1: Open + 5 deposits (balance 5)
    corrupt_line(&log(dir.path(), "acc-1"), 3); // cut keeps Open + 1 deposit
    repair_stream(dir.path(), &StreamId::new("bank-account", "acc-1").unwrap()).unwrap();
    let store =
        AggregateStore::builder(dir.path()).aggregate::<BankAccount>().projection::<Balances>().open().await.unwrap();
    let a = store.get::<BankAccount>("acc-1").await.unwrap();
    a.execute(BankCommand::Deposit { amount: 1000 }, ctx()).await.unwrap();
    let balances: Balances = store.projection().await.unwrap();
    assert_eq!(balances.total, 1 + 1000 + 5, "the fold of what the logs hold now");
    let max_before: u64 = 12; // 2 opens + 10 deposits
    let last = store.read_all(1).await.unwrap().last().unwrap().record.pos;
    assert!(last > max_before, "positions cut by repair are never handed out again (got {last})");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_read_only_does_not_rescan_what_it_passed() {
    let dir = tempfile::tempdir().unwrap();
    interleaved(dir.path(), 20).await;
    let store = read_only(dir.path()).await;
    let first = store.read_all_page(1, 10).await.unwrap();
    // Damage a line the reader has already passed: a process that rescanned the store on every
    // page would now refuse the whole store; one that tails from known lengths reads on.
    corrupt_line(&log(dir.path(), "acc-1"), 2);
    let mut from = first.last().unwrap().record.pos + 1;
    let mut total = first.len();
    loop {
        let page = store.read_all_page(from, 10).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.record.pos + 1;
        total += page.len();
    }
    assert_eq!(total, 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_can_keep_the_valid_events_after_one_bad_line() {
    use evfold_native::{repair_stream_with, RepairOptions};
    let dir = tempfile::tempdir().unwrap();
    interleaved(dir.path(), 10).await; // acc-1: Open + 10 deposits
    let path = log(dir.path(), "acc-1");
    let before: Vec<String> = std::fs::read_to_string(&path).unwrap().lines().map(str::to_owned).collect();
    corrupt_line(&path, 2); // the first deposit
    let stream = StreamId::new("bank-account", "acc-1").unwrap();
    let report = repair_stream_with(dir.path(), &stream, RepairOptions { keep_valid: true }).unwrap();
    assert_eq!((report.kept_events, report.reappended, report.dropped_lines), (1, 9, 1));
    assert_eq!(report.rebuild_projections, vec!["balances".to_owned()]);
    let backup = std::fs::read_to_string(report.backup.unwrap()).unwrap();
    assert_eq!(backup.lines().count(), 10, "everything cut is in the backup");
    assert!(verify_store(dir.path()).unwrap().is_clean());

    let store =
        AggregateStore::builder(dir.path()).aggregate::<BankAccount>().projection::<Balances>().open().await.unwrap();
    let records = store.read_events("bank-account", "acc-1").await.unwrap();
    assert_eq!(records.len(), 10);
    let original_ids: Vec<String> =
        before[2..].iter().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string()).collect();
    let kept_ids: Vec<String> = records[1..].iter().map(|r| serde_json::to_value(&r.id).unwrap().to_string()).collect();
    assert_eq!(kept_ids, original_ids, "re-appended with their ids");
    let a = store.get::<BankAccount>("acc-1").await.unwrap();
    assert_eq!(a.state().await.unwrap().balance, 9);
    a.execute(BankCommand::Deposit { amount: 1000 }, ctx()).await.unwrap();
    let balances: Balances = store.projection().await.unwrap();
    assert_eq!(balances.total, 9 + 1000 + 10);
    store.close().await;
    let store = read_only(dir.path()).await;
    assert_eq!(store.read_all(1).await.unwrap().len() as u64, verify_store(dir.path()).unwrap().events());
}
