//! Hostile input through the public API of the native store: oversized events and commands,
//! deeply nested JSON, non-UTF-8 bytes in a log, a log replaced by a directory, a read-only
//! store directory (read-only bind mount: we run as root, so chmod would not stop us) and a full
//! disk (a 1 MiB tmpfs). Each must give a clear typed error, lose nothing acknowledged, and leave
//! the store usable once the cause is removed.

use std::path::{Path, PathBuf};
use std::process::Command;

use evfold_core::examples::{BankAccount, BankCommand};
use evfold_core::{Aggregate, CommandContext, Payload};
use evfold_native::{repair_stream, verify_store, AggregateStore, ExecuteError, StoreError, StreamStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// An aggregate that stores any JSON document: the way to get hostile data into an event.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Doc {
    docs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum DocCommand {
    Put { value: Value },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum DocEvent {
    Stored { value: Value },
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Aggregate for Doc {
    const AGGREGATE_TYPE: &'static str = "doc";
    type Command = DocCommand;
    type Event = DocEvent;
    type Error = Never;

    fn handle(&self, command: DocCommand) -> Result<Vec<DocEvent>, Never> {
        let DocCommand::Put { value } = command;
        Ok(vec![DocEvent::Stored { value }])
    }

    fn apply(mut self, _: &DocEvent) -> Self {
        self.docs += 1;
        self
    }
}

fn ctx() -> CommandContext {
    CommandContext::default().with_actor("hostile")
}

async fn open(dir: &Path) -> AggregateStore {
    AggregateStore::builder(dir).aggregate::<BankAccount>().aggregate::<Doc>().open().await.expect("store opens")
}

/// Opens `a-0` and deposits `n` times 10: `n + 1` acknowledged events.
async fn seed_account(store: &AggregateStore, n: u64) {
    let account = store.get::<BankAccount>("a-0").await.unwrap();
    account.execute(BankCommand::Open { owner: "ada".into() }, ctx()).await.unwrap();
    for _ in 0..n {
        account.execute(BankCommand::Deposit { amount: 10 }, ctx()).await.unwrap();
    }
}

async fn balance(store: &AggregateStore) -> u64 {
    store.get::<BankAccount>("a-0").await.unwrap().state().await.unwrap().balance
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| Value::Array(vec![inner]))
}

fn events_file(dir: &Path, aggregate_type: &str, id: &str) -> PathBuf {
    evfold_native::StoreLayout::new(dir).events_file(&evfold_core::StreamId::new(aggregate_type, id).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_event_is_refused_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    seed_account(&store, 2).await;
    let account = store.get::<BankAccount>("a-1").await.unwrap();
    let huge = "x".repeat(2 << 20);
    // The command is as large as its event: it is the command limit that refuses it first.
    let refused = account.execute(BankCommand::Open { owner: huge.clone() }, ctx()).await;
    assert!(
        matches!(&refused, Err(ExecuteError::CommandTooLarge { command_type, bytes, limit })
            if command_type == "Open" && *bytes > *limit),
        "{refused:?}"
    );
    drop(account);
    store.close().await;
    // With room for large commands, the event limit is what refuses it.
    let store = AggregateStore::builder(dir.path())
        .aggregate::<BankAccount>()
        .aggregate::<Doc>()
        .max_command_bytes(4 << 20)
        .open()
        .await
        .expect("store opens");
    let account = store.get::<BankAccount>("a-1").await.unwrap();
    let refused = account.execute(BankCommand::Open { owner: huge }, ctx()).await;
    assert!(
        matches!(&refused, Err(ExecuteError::EventTooLarge { event_type, bytes, limit })
            if event_type == "Opened" && *bytes > *limit),
        "{refused:?}"
    );
    assert_eq!(store.read_events("bank-account", "a-1").await.unwrap().len(), 0, "nothing written");
    account.execute(BankCommand::Open { owner: "bob".into() }, ctx()).await.expect("usable after");
    store.close().await;
    let store = open(dir.path()).await;
    assert_eq!(balance(&store).await, 20);
    assert_eq!(store.read_all(1).await.unwrap().len(), 4);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_size_limit_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        AggregateStore::builder(dir.path()).aggregate::<BankAccount>().max_event_bytes(1024).open().await.unwrap();
    let account = store.get::<BankAccount>("a-0").await.unwrap();
    let refused = account.execute(BankCommand::Open { owner: "o".repeat(2000) }, ctx()).await;
    assert!(matches!(&refused, Err(ExecuteError::EventTooLarge { limit: 1024, .. })), "{refused:?}");
    account.execute(BankCommand::Open { owner: "o".repeat(1000) }, ctx()).await.expect("under the limit");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_command_is_refused_and_a_padded_one_under_the_limit_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    seed_account(&store, 0).await;
    // 8 MiB of unknown fields in a JSON command: over the 1 MiB command limit, refused before
    // decoding, nothing written.
    let command = Payload::new("Deposit", json!({ "amount": 5, "padding": "p".repeat(8 << 20) }));
    let refused = store.execute_json("bank-account", "a-0", command, ctx(), evfold_core::ExpectedVersion::Any).await;
    assert!(matches!(&refused, Err(ExecuteError::CommandTooLarge { limit, .. }) if *limit == 1 << 20), "{refused:?}");
    // 512 KiB of unknown fields is under it: decoding drops them, the event stays small.
    let command = Payload::new("Deposit", json!({ "amount": 5, "padding": "p".repeat(512 << 10) }));
    let committed = store
        .execute_json("bank-account", "a-0", command, ctx(), evfold_core::ExpectedVersion::Any)
        .await
        .expect("a valid command with extra fields");
    assert_eq!(committed.version, 2);
    let size = std::fs::metadata(events_file(dir.path(), "bank-account", "a-0")).unwrap().len();
    assert!(size < 4096, "the log holds only the small event ({size} bytes)");
    // A command that does not decode at all is a typed fault, not a panic.
    let bad = Payload::new("Deposit", json!({ "amount": "lots" }));
    let refused = store.execute_json("bank-account", "a-0", bad, ctx(), evfold_core::ExpectedVersion::Any).await;
    assert!(matches!(refused, Err(ExecuteError::Fault(_))), "{refused:?}");
    assert_eq!(balance(&store).await, 5);
    store.close().await;
}

/// serde_json reads at most 128 levels; an event nested deeper than the core's limit must not be
/// acknowledged and then be unreadable (that turned one command into a store that would not open).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_event_or_metadata_is_refused_before_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    seed_account(&store, 1).await;
    let doc = store.get::<Doc>("d-0").await.unwrap();
    let limit = evfold_core::codec::MAX_JSON_DEPTH;
    // `Stored { value }` adds one level: data of exactly the limit is fine.
    doc.execute(DocCommand::Put { value: nested(limit - 1) }, ctx()).await.expect("the limit itself is fine");
    for depth in [limit + 1, 1000] {
        let refused = doc.execute(DocCommand::Put { value: nested(depth) }, ctx()).await;
        assert!(matches!(&refused, Err(ExecuteError::Fault(f)) if f.to_string().contains("nests")), "{refused:?}");
        let deep_meta = ctx().with_extra("trace", nested(depth));
        let refused = doc.execute(DocCommand::Put { value: json!(1) }, deep_meta).await;
        assert!(matches!(&refused, Err(ExecuteError::Fault(_))), "metadata {depth}: {refused:?}");
    }
    store.close().await;
    let store = open(dir.path()).await;
    assert_eq!(store.read_events("doc", "d-0").await.expect("every acknowledged event reads back").len(), 1);
    assert_eq!(balance(&store).await, 10);
    doc_usable(&store).await;
    store.close().await;
}

async fn doc_usable(store: &AggregateStore) {
    let doc = store.get::<Doc>("d-0").await.unwrap();
    doc.execute(DocCommand::Put { value: json!({"ok": true}) }, ctx()).await.expect("usable after refusals");
}

/// Appends `line` (raw bytes, a valid CRC suffix computed over them when `with_crc`) to a log.
fn append_raw(path: &Path, body: &[u8], with_crc: bool, newline: bool) {
    use std::io::Write;
    let mut line = body.to_vec();
    if with_crc {
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(body);
        line.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}").as_bytes());
    }
    if newline {
        line.push(b'\n');
    }
    std::fs::OpenOptions::new().append(true).open(path).unwrap().write_all(&line).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_lines_in_a_log_are_refused_with_file_line_and_offset() {
    let hostile: [(&str, Vec<u8>, bool); 3] = [
        ("non-UTF-8 bytes", b"{\"seq\":4,\"pos\":4,\"id\":\"\xff\xfe\xc0\",\"type\":\"Deposited\"".to_vec(), false),
        (
            "non-UTF-8 bytes with a valid CRC",
            b"{\"seq\":4,\"pos\":4,\"id\":\"\xff\xfe\xc0\",\"ts\":0,\"type\":\"X\"".to_vec(),
            true,
        ),
        ("JSON nested 100000 deep with a valid CRC", deep_line(100_000), true),
    ];
    for (what, body, with_crc) in hostile {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        seed_account(&store, 2).await;
        store.close().await;
        let log = events_file(dir.path(), "bank-account", "a-0");
        let clean_len = std::fs::metadata(&log).unwrap().len();
        append_raw(&log, &body, with_crc, true);
        let error = corrupt_error(dir.path()).await;
        let acked_still_readable = verify_store(dir.path()).unwrap().events();
        match error {
            StoreError::Corrupt { path, line, offset, reason } => {
                println!("{what}: refused: {} line {line} offset {offset}: {reason}", path.display());
                assert_eq!((path, line, offset), (log.clone(), 4, clean_len), "{what}");
            }
            e => panic!("{what}: wrong error {e}"),
        }
        assert_eq!(acked_still_readable, 3, "{what}: the acknowledged events are intact");
        let stream = evfold_core::StreamId::new("bank-account", "a-0").unwrap();
        repair_stream(dir.path(), &stream).expect("explicit repair");
        let store = open(dir.path()).await;
        assert_eq!(balance(&store).await, 20, "{what}");
        store
            .get::<BankAccount>("a-0")
            .await
            .unwrap()
            .execute(BankCommand::Deposit { amount: 1 }, ctx())
            .await
            .unwrap();
        store.close().await;
        assert!(verify_store(dir.path()).unwrap().is_clean(), "{what}");
    }
}

/// The error a corrupt a-0 log gives: at open (full scan), or, if open only checks CRCs and
/// headers, when the stream is read (fail closed either way; never skipped).
async fn corrupt_error(dir: &Path) -> StoreError {
    let store = match AggregateStore::builder(dir).aggregate::<BankAccount>().open().await {
        Err(e) => return e,
        Ok(store) => store,
    };
    let read = store.read_events("bank-account", "a-0").await;
    let state = store.get::<BankAccount>("a-0").await.unwrap().state().await;
    store.close().await;
    assert!(state.is_err(), "the aggregate must not load past a corrupt line: {state:?}");
    read.expect_err("a corrupt line is never skipped")
}

fn deep_line(depth: usize) -> Vec<u8> {
    let mut body = b"{\"seq\":4,\"pos\":4,\"id\":\"x\",\"type\":\"Deposited\",\"ts\":0,\"data\":".to_vec();
    body.extend(std::iter::repeat_n(b'[', depth));
    body.extend(std::iter::repeat_n(b']', depth));
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_torn_tail_is_quarantined_and_nothing_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    seed_account(&store, 2).await;
    store.close().await;
    let log = events_file(dir.path(), "bank-account", "a-0");
    append_raw(&log, b"{\"seq\":4,\"pos\":4,\"id\":\"\xff\xfe", false, false);
    let statuses: Vec<StreamStatus> = verify_store(dir.path()).unwrap().streams.into_iter().map(|s| s.status).collect();
    assert!(matches!(statuses[..], [StreamStatus::TornTail { .. }]), "{statuses:?}");
    let store = open(dir.path()).await;
    assert_eq!(balance(&store).await, 20);
    store.close().await;
    assert!(verify_store(dir.path()).unwrap().is_clean());
    let backups = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().contains("torn")));
    assert_eq!(backups.count(), 1, "the torn bytes were kept aside");
}

/// Replaces a-0's log by a directory; returns (log path, the error the store gave), then puts the
/// log back and checks the store is whole again.
async fn log_replaced_by_a_directory() -> (PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    seed_account(&store, 2).await;
    store.close().await;
    let log = events_file(dir.path(), "bank-account", "a-0");
    let aside = log.with_extension("aside");
    std::fs::rename(&log, &aside).unwrap();
    std::fs::create_dir(&log).unwrap();
    let error = match AggregateStore::builder(dir.path()).aggregate::<BankAccount>().open().await {
        Err(e) => e.to_string(),
        Ok(store) => {
            let account = store.get::<BankAccount>("a-0").await.unwrap();
            let e =
                account.execute(BankCommand::Deposit { amount: 1 }, ctx()).await.expect_err("a directory is no log");
            assert!(
                matches!(e, ExecuteError::Unavailable(_) | ExecuteError::Storage(_) | ExecuteError::Store(_)),
                "{e:?}"
            );
            store.close().await;
            e.to_string()
        }
    };
    println!("log replaced by a directory: {error}");
    std::fs::remove_dir(&log).unwrap();
    std::fs::rename(&aside, &log).unwrap();
    let store = open(dir.path()).await;
    assert_eq!(balance(&store).await, 20, "nothing acknowledged was lost");
    store.close().await;
    (log, error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_replaced_by_a_directory_is_a_typed_error_naming_the_file_and_recovers() {
    let (log, error) = log_replaced_by_a_directory().await;
    assert!(error.contains(&log.display().to_string()), "the error names the path: {error}");
    assert!(error.contains("Is a directory"), "the error gives the cause: {error}");
}

/// A mount made for one test, unmounted (lazily) when dropped, even on panic.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Runs `mount` with `args`; `None` (and a SKIP line) where mounting is not permitted.
fn mount(args: &[&str], target: &Path) -> Option<Mount> {
    let ok = Command::new("mount").args(args).arg(target).status().is_ok_and(|s| s.success());
    if !ok {
        println!("SKIP: `mount {}` is not permitted here", args.join(" "));
    }
    ok.then(|| Mount(target.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_store_directory_refuses_writes_and_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (data, view) = (dir.path().join("data"), dir.path().join("view"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&view).unwrap();
    let store = open(&data).await;
    seed_account(&store, 2).await;
    store.close().await;
    let Some(bind) = mount(&["--bind", data.to_str().unwrap()], &view) else { return };
    // Remounting changes the bind mount's flags; `bind` alone unmounts it afterwards.
    let remounted = mount(&["-o", "remount,ro,bind"], &view).map(std::mem::forget);
    if remounted.is_none() {
        return;
    }
    let refused = AggregateStore::builder(&view).aggregate::<BankAccount>().open().await;
    match &refused {
        Err(e @ StoreError::Io { error: source, .. }) => {
            println!("read-only directory: {e}");
            assert_eq!(source.raw_os_error(), Some(30), "EROFS: {e}");
        }
        Err(e) => panic!("wrong error for a read-only store: {e}"),
        Ok(_) => panic!("a read-only directory was opened for writing"),
    }
    let reader = AggregateStore::builder(&view).aggregate::<BankAccount>().read_only().open().await.unwrap();
    assert_eq!(reader.read_events("bank-account", "a-0").await.unwrap().len(), 3);
    reader.close().await;
    drop(bind);
    let store = open(&data).await;
    store.get::<BankAccount>("a-0").await.unwrap().execute(BankCommand::Deposit { amount: 5 }, ctx()).await.unwrap();
    assert_eq!(balance(&store).await, 25);
    store.close().await;
}

/// Fills the tmpfs with a file until `write` fails.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 4096];
    let mut written = 0;
    while file.write_all(&block).is_ok() {
        written += block.len() as u64;
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_the_command_typed_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_tmpfs) = mount(&["-t", "tmpfs", "-o", "size=1m", "tmpfs"], dir.path()) else { return };
    let store_dir = dir.path().join("store");
    let store = open(&store_dir).await;
    seed_account(&store, 3).await;
    let filler = dir.path().join("filler");
    let filled = fill(&filler);
    let doc = store.get::<Doc>("d-0").await.unwrap();
    let mut failure = None;
    for i in 0..64 {
        match doc.execute(DocCommand::Put { value: json!("y".repeat(16 * 1024 + i)) }, ctx()).await {
            Ok(_) => continue,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("a full disk fails a command");
    println!("full disk (filler {filled} bytes): {failure}");
    assert!(
        matches!(&failure, ExecuteError::Storage(_) | ExecuteError::Unavailable(_)),
        "a storage error, outcome unknown: {failure:?}"
    );
    assert_eq!(balance(&store).await, 30, "acknowledged events are still there");
    std::fs::remove_file(&filler).unwrap();
    let account = store.get::<BankAccount>("a-0").await.unwrap();
    account.execute(BankCommand::Deposit { amount: 1 }, ctx()).await.expect("usable once space returns");
    doc.execute(DocCommand::Put { value: json!("after") }, ctx()).await.expect("the failed stream recovers");
    store.close().await;
    let store = open(&store_dir).await;
    assert_eq!(balance(&store).await, 31);
    store.close().await;
    assert!(verify_store(&store_dir).unwrap().is_clean());
}
