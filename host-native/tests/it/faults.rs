//! Storage failures on the real error path (the fault hook makes the next write or fdatasync
//! return EIO): the caller gets "outcome unknown", never a false success; the stream is dropped
//! and re-read from disk (after a failed fdatasync, cut back to its last durable length first);
//! readers never stall on the positions of the failed batch.

use std::sync::Arc;

use crate::common::{ctx, PosOrder};
use evfold_core::examples::{Counter, CounterCommand};
use evfold_native::{AggregateStore, ExecuteError, Faults};

async fn open_with_faults(dir: &std::path::Path, faults: &Arc<Faults>) -> AggregateStore {
    AggregateStore::builder(dir)
        .aggregate::<Counter>()
        .projection::<PosOrder>()
        .faults(faults.clone())
        .open()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_failure_reports_unknown_outcome_then_the_stream_is_reread() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let store = open_with_faults(dir.path(), &faults).await;
    let counter = store.get::<Counter>("f").await.unwrap();
    counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    faults.fail_syncs(1);
    let failed = counter.execute(CounterCommand::Increment, ctx()).await;
    assert!(matches!(&failed, Err(ExecuteError::Storage(e)) if e.message.contains("fdatasync")), "{failed:?}");
    let next = counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    // The failed batch's line reached the page cache, maybe not the disk: it was cut back off
    // before the fresh actor re-read the log, so its position is a hole and it is never read.
    assert_eq!((next.version, next.positions.as_slice()), (2, &[3][..]));
    let log = store.read_events("counter", "f").await.unwrap();
    assert_eq!(counter.state().await.unwrap().value, log.len() as u64, "state == fold(log)");
    let seen = store.projection::<PosOrder>().await.unwrap();
    assert_eq!((seen.count, seen.breaks), (2, 1), "the hole is stepped over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_failure_leaves_a_hole_readers_step_over() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let store = open_with_faults(dir.path(), &faults).await;
    let counter = store.get::<Counter>("w").await.unwrap();
    counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    faults.fail_writes(1);
    assert!(matches!(counter.execute(CounterCommand::Increment, ctx()).await, Err(ExecuteError::Storage(_))));
    let next = counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    assert_eq!((next.version, next.positions.as_slice()), (2, &[3][..]), "pos 2 was never written");
    let positions: Vec<u64> = store.read_all(1).await.unwrap().iter().map(|e| e.record.pos).collect();
    assert_eq!(positions, [1, 3]);
    let seen = store.projection::<PosOrder>().await.unwrap();
    assert_eq!((seen.count, seen.last_pos, seen.breaks), (2, 3, 1), "the hole is stepped over, not waited on");
    drop(counter);
    store.close().await;
    let store = open_with_faults(dir.path(), &faults).await;
    let next = store.get::<Counter>("w").await.unwrap().execute(CounterCommand::Increment, ctx()).await.unwrap();
    assert_eq!(next.positions, [4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_false_success_when_a_group_commit_fails() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let store = open_with_faults(dir.path(), &faults).await;
    let counter = store.get::<Counter>("g").await.unwrap();
    counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    faults.fail_syncs(1);
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let counter = counter.clone();
            tokio::spawn(async move { counter.execute(CounterCommand::Increment, ctx()).await })
        })
        .collect();
    let mut acked = Vec::new();
    let (mut unknown, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(committed) => acked.push(committed.version),
            Err(ExecuteError::Storage(_)) => unknown += 1,
            // Queued behind the failed batch: refused before being decided, never written.
            Err(ExecuteError::Unavailable(_)) => refused += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(unknown >= 1, "the failed fsync surfaced");
    let log = store.read_events("counter", "g").await.unwrap();
    let written = log.len() - 1;
    assert!(acked.len() <= written && written <= acked.len() + unknown, "{acked:?} {unknown} {refused} {written}");
    for version in &acked {
        assert!(log.iter().any(|r| r.seq == *version), "acked version {version} is in the log");
    }
    assert_eq!(counter.state().await.unwrap().value, log.len() as u64);
    let seen = store.projection::<PosOrder>().await.unwrap();
    // The failed batch's positions are cut back and become one hole: at most one break.
    assert_eq!(seen.count, log.len() as u64);
    assert!(seen.breaks <= 1, "{} breaks", seen.breaks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_log_fails_commands_with_the_path_and_os_error() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let store = open_with_faults(dir.path(), &faults).await;
    let counter = store.get::<Counter>("d").await.unwrap();
    counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    drop(counter);
    store.close().await;
    let log = dir.path().join("streams/counter/d/events.jsonl");
    let saved = std::fs::read(&log).unwrap();
    std::fs::remove_file(&log).unwrap();
    std::fs::create_dir(&log).unwrap();
    let store = open_with_faults(dir.path(), &faults).await;
    let counter = store.get::<Counter>("d").await.unwrap();
    let error = counter.execute(CounterCommand::Increment, ctx()).await.unwrap_err().to_string();
    assert!(error.contains(&log.display().to_string()), "{error}");
    std::fs::remove_dir(&log).unwrap();
    std::fs::write(&log, saved).unwrap();
    assert_eq!(counter.execute(CounterCommand::Increment, ctx()).await.unwrap().version, 2, "recovers once restored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_that_cannot_read_reports_the_failure_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    // The reader reads only when asked, so it has not opened the log before it is swapped (a
    // reader keeps the logs it opened, and like the actor's, its fd would follow the inode).
    let store = AggregateStore::builder(dir.path())
        .aggregate::<Counter>()
        .projection::<PosOrder>()
        .reader_wake_delay(std::time::Duration::from_secs(3600))
        .open()
        .await
        .unwrap();
    assert_eq!(store.projection::<PosOrder>().await.unwrap().count, 0);
    let counter = store.get::<Counter>("p").await.unwrap();
    counter.execute(CounterCommand::Increment, ctx()).await.unwrap();
    let log = dir.path().join("streams/counter/p/events.jsonl");
    let aside = log.with_extension("aside");
    std::fs::rename(&log, &aside).unwrap();
    std::fs::create_dir(&log).unwrap();
    counter.execute(CounterCommand::Increment, ctx()).await.unwrap(); // the actor's fd follows the inode
    let failing =
        tokio::time::timeout(std::time::Duration::from_secs(10), store.projection::<PosOrder>()).await.unwrap();
    assert!(matches!(&failing, Err(evfold_native::StoreError::ReaderFailed { .. })), "{failing:?}");
    std::fs::remove_dir(&log).unwrap();
    std::fs::rename(&aside, &log).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match store.projection::<PosOrder>().await {
            Ok(seen) => {
                assert_eq!((seen.count, seen.breaks), (2, 0));
                break;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("projection did not recover: {e}"),
        }
    }
}
