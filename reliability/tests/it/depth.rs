//! Deeply nested JSON through every public input of the native store, at 1,000 / 10,000 /
//! 100,000 / 1,000,000 levels: typed commands executed inside `tokio::spawn`, events that domain
//! code nests, JSON commands, metadata, injected events (JSON and typed), and a log line, a
//! snapshot, a projection checkpoint and a dead-letter file written deep on disk.
//!
//! A stack overflow aborts the whole process, so every case runs in a CHILD process (this test
//! binary re-executed with `EVFOLD_DEPTH_CASE` naming the case): the parent asserts the child
//! exited normally and printed the typed refusal, and reports a signal with the child's stderr.

use std::path::Path;
use std::process::Command;

use evfold_core::{CommandContext, EventId, Metadata, NewEvent, Payload, Projection, StoredEvent, StreamId, Timestamp};
use evfold_native::{AggregateStore, ExecuteError, StoreError, StoreLayout, StreamStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const CASE: &str = "EVFOLD_DEPTH_CASE";
const DEPTH: &str = "EVFOLD_DEPTH_LEVELS";
const DIR: &str = "EVFOLD_DEPTH_DIR";
const DEPTHS: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];

/// Stores any JSON document; `Nest` makes domain code build a deep event from a small command.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Doc {
    docs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum DocCommand {
    Put { value: Value },
    Nest { depth: usize },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum DocEvent {
    Stored { value: Value },
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl evfold_core::Aggregate for Doc {
    const AGGREGATE_TYPE: &'static str = "doc";
    type Command = DocCommand;
    type Event = DocEvent;
    type Error = Never;

    fn handle(&self, command: DocCommand) -> Result<Vec<DocEvent>, Never> {
        match command {
            DocCommand::Put { value } => Ok(vec![DocEvent::Stored { value }]),
            DocCommand::Nest { depth } => Ok(vec![DocEvent::Stored { value: nested(depth) }]),
        }
    }

    fn apply(mut self, _: &DocEvent) -> Self {
        self.docs += 1;
        self
    }
}

/// Counts events; its checkpoint is what the checkpoint case damages.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DocCount {
    count: u64,
}

impl Projection for DocCount {
    const NAME: &'static str = "doc-count";
    fn apply(&mut self, _: &StoredEvent) {
        self.count += 1;
    }
}

/// `[[[...1...]]]`, `depth` arrays deep, built without recursion.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| Value::Array(vec![inner]))
}

/// `{"value": inner}`, by moving `inner` in (`json!` would serialize and copy it, recursively).
fn value_of(inner: Value) -> Value {
    Value::Object(serde_json::Map::from_iter([("value".to_owned(), inner)]))
}

/// The same as JSON text.
fn nested_text(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// The caller still owns a deep value after a call that borrowed it: dropping it here would
/// recurse as deep as it nests (that is the caller's stack, not the store's), so leak it.
fn leak<T>(value: T) {
    std::mem::forget(value);
}

fn ctx() -> CommandContext {
    CommandContext::default().with_actor("depth")
}

async fn open(dir: &Path) -> AggregateStore {
    AggregateStore::builder(dir).aggregate::<Doc>().projection::<DocCount>().open().await.expect("store opens")
}

fn stream() -> StreamId {
    StreamId::new("doc", "d").unwrap()
}

fn new_event(data: Value, meta: Metadata) -> NewEvent {
    NewEvent {
        version: 1,
        id: EventId("00000000-0000-0000-0000-0000000000aa".into()),
        payload: Payload::new("Stored", data),
        ts: Timestamp(1),
        meta,
    }
}

/// What a refusal looks like in the child's report: the variant, then the message.
fn refusal(kind: &str, error: &dyn std::fmt::Display) -> String {
    format!("{kind}: {error}")
}

fn execute_refusal<E: std::error::Error + 'static>(result: Result<evfold_core::Committed, ExecuteError<E>>) -> String {
    match result {
        Ok(committed) => panic!("a deep input was accepted: {committed:?}"),
        Err(ExecuteError::Fault(fault)) if evfold_core::is_too_deep(&fault) => refusal("Fault(TooDeep)", &fault),
        Err(other) => panic!("not the typed depth refusal: {other:?}"),
    }
}

fn store_refusal<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Ok(value) => panic!("a deep input was accepted: {value:?}"),
        Err(StoreError::Fault(fault)) if evfold_core::is_too_deep(&fault) => refusal("Fault(TooDeep)", &fault),
        Err(other) => panic!("not the typed depth refusal: {other:?}"),
    }
}

/// After a refusal the stream must hold what it held before and take a normal command.
async fn still_usable(store: &AggregateStore, events_before: usize) -> String {
    let events = store.read_events("doc", "d").await.expect("the stream reads").len();
    assert_eq!(events, events_before, "nothing was written");
    let doc = store.get::<Doc>("d").await.unwrap();
    doc.execute(DocCommand::Put { value: json!({"ok": true}) }, ctx()).await.expect("usable after the refusal");
    format!("usable, {} events", events + 1)
}

/// Runs in the child: performs `case` at `depth` levels and prints `DEPTH:OK:<what happened>`.
async fn run_case(case: &str, depth: usize, dir: &Path) -> String {
    if case == "log_line" {
        return deep_log_line(dir).await;
    }
    let store = open(dir).await;
    let outcome = match case {
        "typed_execute_in_tokio_spawn" => {
            let doc = store.get::<Doc>("d").await.unwrap();
            let value = nested(depth);
            let task = tokio::spawn(async move { doc.execute(DocCommand::Put { value }, ctx()).await });
            execute_refusal(task.await.expect("the tokio task survives"))
        }
        "typed_event_nested_by_domain_code" => {
            let doc = store.get::<Doc>("d").await.unwrap();
            let task = tokio::spawn(async move { doc.execute(DocCommand::Nest { depth }, ctx()).await });
            execute_refusal(task.await.expect("the tokio task survives"))
        }
        "execute_json" => {
            let command = Payload::new("Put", value_of(nested(depth)));
            execute_refusal(store.execute_json("doc", "d", command, ctx(), evfold_core::ExpectedVersion::Any).await)
        }
        "metadata_typed" => {
            let doc = store.get::<Doc>("d").await.unwrap();
            let context = ctx().with_extra("trace", nested(depth));
            let task = tokio::spawn(async move { doc.execute(DocCommand::Put { value: json!(1) }, context).await });
            execute_refusal(task.await.expect("the tokio task survives"))
        }
        "metadata_json" => {
            let command = Payload::new("Put", json!({ "value": 1 }));
            let context = ctx().with_extra("trace", nested(depth));
            execute_refusal(store.execute_json("doc", "d", command, context, evfold_core::ExpectedVersion::Any).await)
        }
        "inject_json" => {
            let event = new_event(value_of(nested(depth)), Metadata::default());
            store_refusal(store.inject_event("doc", "d", event).await)
        }
        "inject_metadata" => {
            let event = new_event(json!({ "value": 1 }), Metadata::default().with_extra("trace", nested(depth)));
            store_refusal(store.inject_event("doc", "d", event).await)
        }
        "inject_typed" => {
            let event = DocEvent::Stored { value: nested(depth) };
            let id = EventId("00000000-0000-0000-0000-0000000000ab".into());
            let result = store.inject::<Doc>("d", id, &event, Timestamp(1), Metadata::default()).await;
            leak(event);
            store_refusal(result)
        }
        "snapshot" => {
            // An unreadable snapshot is a cache miss: the state is folded from the log.
            let state = store.get::<Doc>("d").await.unwrap().state().await.expect("the state folds from the log");
            assert_eq!(state.docs, 1);
            format!("snapshot refused, folded from the log: {} docs", state.docs)
        }
        "checkpoint" => {
            // An unreadable checkpoint means folding again from the start.
            let folded: DocCount = store.projection().await.expect("the projection folds again");
            assert_eq!(folded.count, 1);
            format!("checkpoint refused, folded again: {} events", folded.count)
        }
        // A dead-letter line that does not decode is corruption of that side file, named by
        // path, line and offset (host-native's sidefile rules), never skipped.
        "dead_letters" => match store.dead_letters("pm").await {
            Err(error @ StoreError::Corrupt { line: 1, .. }) => refusal("Corrupt", &error),
            other => panic!("not a typed corruption error: {other:?}"),
        },
        other => panic!("unknown case {other}"),
    };
    let before = if matches!(case, "snapshot" | "checkpoint") { 1 } else { 0 };
    let usable = still_usable(&store, before).await;
    store.close().await;
    format!("{outcome} | {usable}")
}

/// The log's last line is CRC-valid and nested deep: corruption, refused with the file, line
/// and offset (by the open, or by the first read of the stream); verify says the same.
async fn deep_log_line(dir: &Path) -> String {
    let report = evfold_native::verify_store(dir).expect("verify runs");
    let status = &report.streams.iter().find(|s| s.stream == stream()).expect("the stream").status;
    assert!(matches!(status, StreamStatus::Corrupt { line: 2, .. }), "verify: {status:?}");
    let opened = AggregateStore::builder(dir).aggregate::<Doc>().open().await;
    let read = match opened {
        Ok(store) => store.read_events("doc", "d").await.map(|_| ()),
        Err(error) => Err(error),
    };
    match read {
        Err(error @ StoreError::Corrupt { line: 2, .. }) => refusal("Corrupt", &error),
        other => panic!("not a typed corruption error: {other:?}"),
    }
}

/// The child's entry point; without the variable (a normal test run) there is nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_case_child() {
    let Ok(case) = std::env::var(CASE) else { return };
    let depth: usize = std::env::var(DEPTH).unwrap().parse().unwrap();
    let dir = std::env::var(DIR).unwrap();
    let outcome = run_case(&case, depth, Path::new(&dir)).await;
    println!("DEPTH:OK:{outcome}");
}

/// Runs `case` at `depth` in a child process over the store at `dir` and returns what it
/// printed; panics (with the signal and the child's stderr) if it did not exit normally.
fn in_child(case: &str, depth: usize, dir: &Path) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "depth::depth_case_child", "--nocapture", "--test-threads=1"])
        .env(CASE, case)
        .env(DEPTH, depth.to_string())
        .env(DIR, dir)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    let report = stdout.lines().find_map(|l| l.find("DEPTH:OK:").map(|at| l[at + 9..].to_owned()));
    match (output.status.success(), report) {
        (true, Some(report)) => report,
        _ => panic!("{case} at {depth} levels: the child did not survive ({}):\n{tail}", output.status),
    }
}

/// Every depth, each in a fresh store prepared by `prepare` (run in this process, shallow).
fn each_depth(case: &str, prepare: impl Fn(&Path, usize), expect: &[&str]) {
    for depth in DEPTHS {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path(), depth);
        let report = in_child(case, depth, dir.path());
        println!("{case} at {depth} levels: {report}");
        for needle in expect {
            assert!(report.contains(needle), "{case} at {depth} levels: {report:?} lacks {needle:?}");
        }
    }
}

fn nothing(_: &Path, _: usize) {}

const TOO_DEEP: &[&str] = &["Fault(TooDeep)", "nests deeper than 100 levels", "usable"];

#[test]
fn typed_execute_in_tokio_spawn() {
    each_depth("typed_execute_in_tokio_spawn", nothing, TOO_DEEP);
}

#[test]
fn typed_event_nested_by_domain_code() {
    each_depth("typed_event_nested_by_domain_code", nothing, TOO_DEEP);
}

#[test]
fn execute_json() {
    each_depth("execute_json", nothing, TOO_DEEP);
}

#[test]
fn metadata_typed() {
    each_depth("metadata_typed", nothing, TOO_DEEP);
}

#[test]
fn metadata_json() {
    each_depth("metadata_json", nothing, TOO_DEEP);
}

#[test]
fn inject_json() {
    each_depth("inject_json", nothing, TOO_DEEP);
}

#[test]
fn inject_metadata() {
    each_depth("inject_metadata", nothing, TOO_DEEP);
}

#[test]
fn inject_typed() {
    each_depth("inject_typed", nothing, TOO_DEEP);
}

/// One shallow event (and, at close, a snapshot-free log and a projection checkpoint).
fn one_event(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let store = open(dir).await;
        let doc = store.get::<Doc>("d").await.unwrap();
        doc.execute(DocCommand::Put { value: json!(1) }, ctx()).await.unwrap();
        let _: DocCount = store.projection().await.unwrap();
        store.close().await;
    });
}

#[test]
fn log_line_written_deep_on_disk() {
    let prepare = |dir: &Path, depth: usize| {
        one_event(dir);
        let mut body = b"{\"seq\":2,\"pos\":2,\"id\":\"x\",\"type\":\"Stored\",\"data\":{\"value\":".to_vec();
        body.extend_from_slice(nested_text(depth).as_bytes());
        body.extend_from_slice(b"},\"ts\":0");
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&body);
        body.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}\n").as_bytes());
        let log = StoreLayout::new(dir).events_file(&stream());
        use std::io::Write;
        std::fs::OpenOptions::new().append(true).open(log).unwrap().write_all(&body).unwrap();
    };
    each_depth("log_line", prepare, &["Corrupt", "line 2"]);
}

#[test]
fn snapshot_written_deep_on_disk() {
    let prepare = |dir: &Path, depth: usize| {
        one_event(dir);
        let text = format!("{{\"seq\":1,\"state\":{{\"docs\":{}}}}}", nested_text(depth));
        std::fs::write(StoreLayout::new(dir).snapshot_file(&stream()), text).unwrap();
    };
    each_depth("snapshot", prepare, &["folded from the log: 1 docs", "usable"]);
}

#[test]
fn checkpoint_written_deep_on_disk() {
    let prepare = |dir: &Path, depth: usize| {
        one_event(dir);
        let path = StoreLayout::new(dir).projection_dir(DocCount::NAME).join("checkpoint.json");
        assert!(path.is_file(), "the projection saved a checkpoint at close");
        let text = format!("{{\"position\":1,\"cursors\":{{}},\"state\":{{\"count\":{}}}}}", nested_text(depth));
        std::fs::write(path, text).unwrap();
    };
    each_depth("checkpoint", prepare, &["folded again: 1 events", "usable"]);
}

#[test]
fn dead_letters_written_deep_on_disk() {
    let prepare = |dir: &Path, depth: usize| {
        let path = StoreLayout::new(dir).dead_letters_file("pm");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // The deep data comes first, so the decoder meets it before any missing field.
        let letter = format!("{{\"command\":{{\"command\":{{\"type\":\"Put\",\"data\":{}}}}}}}\n", nested_text(depth));
        std::fs::write(path, letter).unwrap();
    };
    each_depth("dead_letters", prepare, &["Corrupt", "recursion limit exceeded", "usable"]);
}
