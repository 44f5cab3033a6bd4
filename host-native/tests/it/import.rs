//! Issue 16 (first bullet): the eventfold-es importer, on real peer stores written by the peer
//! crate itself (`eventfold-es` 0.2 and `eventfold` 0.2 as dev-dependencies): every event, its
//! order, id, timestamp and metadata kept; `verify` clean; aggregate states and projection equal
//! the peer's; 100 streams x 1,000 events round trip; non-empty targets refused; resume without
//! duplicates; stable derived ids; malformed lines are typed errors with path and line.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use eventfold_es::{Aggregate as PeerAggregate, Projection as PeerProjection};
use evfold_core::examples::{Balances, BankAccount, BankCommand, Transfers};
use evfold_core::{EventId, Metadata, NewEvent, Payload, Timestamp};
use evfold_native::import::eventfold_es as importer;
use evfold_native::{verify_store, AggregateStore, StoreError};
use importer::{derived_event_id, ImportOptions, ImportProgress};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The peer's bank account: the same type name and event shapes as evfold's `BankAccount`, so
/// the imported events fold with evfold's example code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct PeerAccount {
    owner: Option<String>,
    balance: u64,
    movements: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum PeerAccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrew { amount: u64 },
}

enum PeerAccountCommand {
    Open(String),
    Deposit(u64),
    Withdraw(u64),
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct PeerRefused;

impl PeerAggregate for PeerAccount {
    const AGGREGATE_TYPE: &'static str = "bank-account";
    type Command = PeerAccountCommand;
    type DomainEvent = PeerAccountEvent;
    type Error = PeerRefused;

    fn handle(&self, command: PeerAccountCommand) -> Result<Vec<PeerAccountEvent>, PeerRefused> {
        Ok(vec![match command {
            PeerAccountCommand::Open(owner) => PeerAccountEvent::Opened { owner },
            PeerAccountCommand::Deposit(amount) => PeerAccountEvent::Deposited { amount },
            PeerAccountCommand::Withdraw(amount) if amount <= self.balance => PeerAccountEvent::Withdrew { amount },
            PeerAccountCommand::Withdraw(_) => return Err(PeerRefused),
        }])
    }

    fn apply(mut self, event: &PeerAccountEvent) -> Self {
        match event {
            PeerAccountEvent::Opened { owner } => self.owner = Some(owner.clone()),
            PeerAccountEvent::Deposited { amount } => self.balance += amount,
            PeerAccountEvent::Withdrew { amount } => self.balance -= amount,
        }
        self.movements += 1;
        self
    }
}

/// The peer's projection: evfold's `Balances` written against the peer's trait.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct PeerTotals {
    accounts: BTreeMap<String, u64>,
    total: u64,
    events: u64,
}

impl PeerProjection for PeerTotals {
    const NAME: &'static str = "totals";

    fn subscriptions(&self) -> &'static [&'static str] {
        &["bank-account"]
    }

    fn apply(&mut self, _aggregate_type: &str, stream_id: &str, event: &eventfold::Event) {
        let balance = self.accounts.entry(stream_id.to_owned()).or_default();
        let amount = event.data.get("amount").and_then(|a| a.as_u64()).unwrap_or(0);
        match event.event_type.as_str() {
            "Deposited" => {
                *balance += amount;
                self.total += amount;
            }
            "Withdrew" => {
                *balance -= amount;
                self.total -= amount;
            }
            _ => {}
        }
        self.events += 1;
    }
}

async fn open_peer(dir: &Path) -> eventfold_es::AggregateStore {
    eventfold_es::AggregateStore::builder(dir).projection::<PeerTotals>().open().await.unwrap()
}

/// A small peer store written through the peer's own API: three accounts with actors,
/// correlation ids and free-form metadata, and one event injected without an id. The peer store
/// is returned open: its actors hold their logs' flocks, so a second peer store on the same
/// directory could not write.
async fn write_small_peer(dir: &Path) -> eventfold_es::AggregateStore {
    use PeerAccountCommand::*;
    let peer = open_peer(dir).await;
    let context = |n: u32| {
        eventfold_es::CommandContext::default()
            .with_actor(format!("teller-{n}"))
            .with_correlation_id(format!("corr-{n}"))
            .with_metadata(json!({"channel": "web", "attempt": n}))
            .with_source_device("laptop-1")
    };
    for (n, id) in ["acc-2", "acc-1", "acc-3"].iter().enumerate() {
        let account = peer.get::<PeerAccount>(id).await.unwrap();
        account.execute(Open(format!("owner-{id}")), context(n as u32)).await.unwrap();
        account.execute(Deposit(100 + n as u64), context(n as u32)).await.unwrap();
        account.execute(Withdraw(30), eventfold_es::CommandContext::default()).await.unwrap();
    }
    let no_id = eventfold::Event::new("Deposited", json!({"amount": 7})).with_actor("relay");
    peer.inject_event::<PeerAccount>("acc-1", no_id, eventfold_es::InjectOptions::default()).await.unwrap();
    peer
}

/// An evfold store with the example bank account and its balances projection (no process
/// managers: the importer refuses those).
async fn open_target(dir: &Path) -> AggregateStore {
    AggregateStore::builder(dir).aggregate::<BankAccount>().projection::<Balances>().open().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_keeps_every_event_with_its_order_id_timestamp_and_metadata() {
    let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let peer = write_small_peer(source.path()).await;
    let store = open_target(target.path()).await;
    let report = importer::import(source.path(), &store, ImportOptions::default()).await.unwrap();
    assert_eq!((report.streams, report.events, report.imported, report.skipped), (3, 10, 10, 0));
    assert_eq!((report.derived_ids, report.remaining), (1, 0));

    for (aggregate_type, id) in peer.list_streams(None).await.unwrap() {
        let peer_events = peer.read_events(&aggregate_type, &id).await.unwrap();
        let records = store.read_events(&aggregate_type, &id).await.unwrap();
        assert_eq!(records.len(), peer_events.len(), "{id}");
        for (seq, (theirs, ours)) in peer_events.iter().zip(&records).enumerate() {
            let seq = seq as u64 + 1;
            assert_eq!(ours.seq, seq);
            assert_eq!((ours.event_type.as_str(), &ours.data), (theirs.event_type.as_str(), &theirs.data));
            let expected_id = theirs.id.clone().map_or_else(|| derived_event_id(&aggregate_type, &id, seq), EventId);
            assert_eq!(ours.id, expected_id);
            assert_eq!(ours.ts, Timestamp(theirs.ts * 1000));
            assert_eq!(ours.meta.actor, theirs.actor);
            let meta = theirs.meta.clone().unwrap_or(json!({}));
            assert_eq!(ours.meta.correlation_id.as_deref(), meta.get("correlation_id").and_then(|c| c.as_str()));
            for key in ["channel", "attempt", "source_device"] {
                assert_eq!(ours.meta.extra.get(key), meta.get(key), "{id} seq {seq} meta key {key}");
            }
        }
        let theirs = peer.get::<PeerAccount>(&id).await.unwrap().state().await.unwrap();
        let ours = store.get::<BankAccount>(&id).await.unwrap().state().await.unwrap();
        assert_eq!((ours.owner, ours.balance, ours.movements), (theirs.owner, theirs.balance, theirs.movements));
    }
    let theirs = peer.projection::<PeerTotals>().unwrap();
    let ours = store.projection::<Balances>().await.unwrap();
    assert_eq!((ours.accounts, ours.total, ours.events), (theirs.accounts, theirs.total, theirs.events));
    assert_eq!(theirs.events, 10, "the peer projection saw every event");

    // Store-wide order: by the peer's seconds, then stream, then log order.
    let all = store.read_all(1).await.unwrap();
    let keys: Vec<_> = all.iter().map(|e| (e.record.ts, e.stream.clone(), e.record.seq)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "import order is (ts, type, id, seq)");
    store.close().await;
    let verified = verify_store(target.path()).unwrap();
    assert!(verified.is_clean(), "{verified:?}");
    assert_eq!(verified.streams.iter().map(|s| s.events).sum::<u64>(), 10);
}

/// Writes `streams` x `per_stream` bank events in the peer's exact line format: the peer's own
/// `to_eventfold_event` and `StreamLayout::ensure_stream`, lines as `serde_json` writes them
/// (executing 100,000 commands through the peer's actors costs two fsyncs each).
fn write_big_peer(dir: &Path, streams: usize, per_stream: usize) {
    let layout = eventfold_es::StreamLayout::new(dir);
    let context = eventfold_es::CommandContext::default().with_actor("bulk").with_correlation_id("bulk-1");
    for s in 0..streams {
        let id = format!("acc-{s:03}");
        let stream_dir = layout.ensure_stream(PeerAccount::AGGREGATE_TYPE, &id).unwrap();
        let mut text = String::new();
        for n in 0..per_stream {
            let event = match n {
                0 => PeerAccountEvent::Opened { owner: id.clone() },
                n if n % 3 == 0 => PeerAccountEvent::Withdrew { amount: 1 },
                n => PeerAccountEvent::Deposited { amount: n as u64 },
            };
            let line = eventfold_es::to_eventfold_event::<PeerAccount>(&event, &context).unwrap();
            text.push_str(&serde_json::to_string(&line).unwrap());
            text.push('\n');
        }
        std::fs::write(stream_dir.join("app.jsonl"), text).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_round_trips_100_streams_of_1000_events() {
    let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_big_peer(source.path(), 100, 1000);
    let store = open_target(target.path()).await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = calls.clone();
    let progress = Box::new(move |_: &ImportProgress| {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    let started = Instant::now();
    let options = ImportOptions { progress: Some(progress), ..ImportOptions::default() };
    let report = importer::import(source.path(), &store, options).await.unwrap();
    let took = started.elapsed();
    println!(
        "import: 100 streams x 1,000 events = {} events in {:.2} s ({:.0} events/s), {} fdatasyncs",
        report.imported,
        took.as_secs_f64(),
        report.imported as f64 / took.as_secs_f64(),
        store.stats().syncs
    );
    assert_eq!((report.streams, report.imported), (100, 100_000));
    assert!(calls.load(std::sync::atomic::Ordering::Relaxed) >= 100, "progress after every run");
    assert!(store.stats().syncs < 1_000, "runs are group-committed: {} syncs", store.stats().syncs);

    let peer = open_peer(source.path()).await;
    for s in [0, 37, 99] {
        let id = format!("acc-{s:03}");
        let theirs = peer.get::<PeerAccount>(&id).await.unwrap().state().await.unwrap();
        let ours = store.get::<BankAccount>(&id).await.unwrap().state().await.unwrap();
        assert_eq!((ours.owner, ours.balance, ours.movements), (theirs.owner, theirs.balance, theirs.movements));
        let peer_ids: Vec<_> =
            peer.read_events("bank-account", &id).await.unwrap().into_iter().map(|e| e.id.unwrap()).collect();
        let our_ids: Vec<_> =
            store.read_events("bank-account", &id).await.unwrap().into_iter().map(|r| r.id.0).collect();
        assert_eq!(our_ids, peer_ids, "{id}: same ids in the same order");
    }
    let theirs = peer.projection::<PeerTotals>().unwrap();
    let ours = store.projection::<Balances>().await.unwrap();
    assert_eq!((ours.accounts, ours.total, ours.events), (theirs.accounts, theirs.total, theirs.events));
    store.close().await;
    assert!(verify_store(target.path()).unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_a_non_empty_target_unless_append() {
    let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_small_peer(source.path()).await;
    let store = open_target(target.path()).await;
    let native = store.get::<BankAccount>("native").await.unwrap();
    native.execute(BankCommand::Open { owner: "ada".into() }, Metadata::default()).await.unwrap();

    let refused = importer::import(source.path(), &store, ImportOptions::default()).await;
    assert!(matches!(refused, Err(StoreError::TargetNotEmpty { events: 1, .. })), "{refused:?}");
    assert_eq!(store.read_all(1).await.unwrap().len(), 1, "nothing was written");

    let options = ImportOptions { append: true, ..ImportOptions::default() };
    let report = importer::import(source.path(), &store, options).await.unwrap();
    assert_eq!(report.imported, 10);
    assert_eq!(store.read_all(1).await.unwrap().len(), 11);
    assert_eq!(native.state().await.unwrap().owner.as_deref(), Some("ada"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_a_target_running_process_managers() {
    let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_small_peer(source.path()).await;
    let store = AggregateStore::builder(target.path())
        .aggregate::<BankAccount>()
        .process_manager::<Transfers>()
        .open()
        .await
        .unwrap();
    let refused = importer::import(source.path(), &store, ImportOptions::default()).await;
    assert!(matches!(&refused, Err(StoreError::ImportWithProcessManagers(names)) if names == "transfers"));
    assert!(store.read_all(1).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_resumes_after_an_interrupted_run_without_duplicates() {
    let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_small_peer(source.path()).await;
    let store = open_target(target.path()).await;
    let first = ImportOptions { limit: Some(4), ..ImportOptions::default() };
    let report = importer::import(source.path(), &store, first).await.unwrap();
    assert_eq!((report.imported, report.remaining), (4, 6));
    let prefix: Vec<_> = store.read_all(1).await.unwrap().into_iter().map(|e| e.record.id).collect();
    store.close().await;

    // A new process: the target is not empty, but it holds only this source's events.
    let store = open_target(target.path()).await;
    let report = importer::import(source.path(), &store, ImportOptions::default()).await.unwrap();
    assert_eq!((report.imported, report.skipped, report.remaining), (6, 4, 0));
    let again = importer::import(source.path(), &store, ImportOptions::default()).await.unwrap();
    assert_eq!((again.imported, again.skipped), (0, 10));

    let all = store.read_all(1).await.unwrap();
    let ids: Vec<_> = all.iter().map(|e| e.record.id.clone()).collect();
    assert_eq!(ids[..4], prefix[..], "the first run's events stay first");
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (10, 10), "every event once");

    // The same order as one uninterrupted import.
    let whole = tempfile::tempdir().unwrap();
    let other = open_target(whole.path()).await;
    importer::import(source.path(), &other, ImportOptions::default()).await.unwrap();
    let whole_ids: Vec<_> = other.read_all(1).await.unwrap().into_iter().map(|e| e.record.id).collect();
    assert_eq!(ids, whole_ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_derives_the_same_id_for_a_line_without_one_every_time() {
    let source = tempfile::tempdir().unwrap();
    write_small_peer(source.path()).await;
    let mut derived = Vec::new();
    for _ in 0..2 {
        let target = tempfile::tempdir().unwrap();
        let store = open_target(target.path()).await;
        importer::import(source.path(), &store, ImportOptions::default()).await.unwrap();
        let records = store.read_events("bank-account", "acc-1").await.unwrap();
        derived.push(records.last().unwrap().id.clone());
    }
    assert_eq!(derived[0], derived[1]);
    assert_eq!(derived[0], derived_event_id("bank-account", "acc-1", 4), "the injected line is acc-1's 4th");
}

/// Appends raw lines to a peer log (what a torn or hand-edited log holds).
fn append_raw(source: &Path, id: &str, text: &str) -> std::path::PathBuf {
    use std::io::Write;
    let path = source.join("streams/bank-account").join(id).join("app.jsonl");
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(text.as_bytes()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_a_malformed_peer_line_with_its_path_and_line() {
    let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_small_peer(source.path()).await;
    let bad = append_raw(source.path(), "acc-3", "{\"type\":\"Deposited\",\"data\":{\"amount\":1}\n");
    append_raw(source.path(), "acc-3", "{\"type\":\"Deposited\",\"data\":{\"amount\":2},\"ts\":1}\n");
    let store = open_target(target.path()).await;
    let refused = importer::import(source.path(), &store, ImportOptions::default()).await;
    match refused {
        Err(StoreError::PeerLine { path, line, .. }) => assert_eq!((path, line), (bad, 4)),
        other => panic!("expected PeerLine, got {other:?}"),
    }
    assert!(store.read_all(1).await.unwrap().is_empty(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_an_event_the_code_does_not_know_with_its_line() {
    let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let peer = write_small_peer(source.path()).await;
    let unknown = eventfold::Event::new("Exploded", json!({"why": "schema drift"})).with_id("x-1");
    peer.inject_event::<PeerAccount>("acc-2", unknown, eventfold_es::InjectOptions::default()).await.unwrap();
    let store = open_target(target.path()).await;
    let refused = importer::import(source.path(), &store, ImportOptions::default()).await;
    assert!(
        matches!(&refused, Err(StoreError::PeerEventRefused { line: 4, path, .. }) if path.ends_with("acc-2/app.jsonl"))
    );
    assert!(store.read_all(1).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_an_id_used_twice_and_reports_a_torn_tail() {
    let (source, target) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_small_peer(source.path()).await;
    let torn = append_raw(source.path(), "acc-2", "{\"type\":\"Deposited\",\"da");
    let store = open_target(target.path()).await;
    let report = importer::import(source.path(), &store, ImportOptions::default()).await.unwrap();
    assert_eq!((report.imported, report.torn_tails.clone()), (10, vec![torn]));

    // The peer dedups injected ids in memory only, against injected ids only: an executed
    // event's id injected again is written twice.
    let (dup_source, fresh) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let peer = write_small_peer(dup_source.path()).await;
    let first_id = peer.read_events("bank-account", "acc-1").await.unwrap()[0].id.clone().unwrap();
    let again = eventfold::Event::new("Deposited", json!({"amount": 1})).with_id(first_id.clone());
    peer.inject_event::<PeerAccount>("acc-3", again, eventfold_es::InjectOptions::default()).await.unwrap();
    let store = open_target(fresh.path()).await;
    let refused = importer::import(dup_source.path(), &store, ImportOptions::default()).await;
    assert!(
        matches!(&refused, Err(StoreError::DuplicateEventId { id, line: 4, .. }) if *id == first_id),
        "{refused:?}"
    );
    assert!(store.read_all(1).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inject_run_for_import_appends_in_one_sync_and_skips_stored_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_target(dir.path()).await;
    let event = |n: u64| NewEvent {
        version: 1,
        id: EventId(format!("run-{n}")),
        payload: if n == 0 {
            Payload::new("Opened", json!({"owner": "ada"}))
        } else {
            Payload::new("Deposited", json!({"amount": n}))
        },
        ts: Timestamp(1_000 + n),
        meta: Metadata::default().with_actor("importer"),
    };
    let before = store.stats().syncs;
    let outcome = store.inject_run("bank-account", "a", (0..100).map(event).collect()).await.unwrap();
    assert_eq!((outcome.appended.len(), store.stats().syncs - before), (100, 1));
    let again = store.inject_run("bank-account", "a", (95..105).map(event).collect()).await.unwrap();
    assert_eq!((again.appended.len(), again.duplicates.len()), (5, 5));
    let account = store.get::<BankAccount>("a").await.unwrap().state().await.unwrap();
    assert_eq!((account.balance, account.movements), ((1..105).sum::<u64>(), 105));
    let unknown = NewEvent { payload: Payload::new("Exploded", json!(null)), ..event(200) };
    let refused = store.inject_run("bank-account", "a", vec![event(201), unknown]).await;
    assert!(matches!(refused, Err(StoreError::InvalidEvent(_))));
    assert_eq!(store.stream_version("bank-account", "a").await.unwrap(), 105, "nothing of a refused run is written");
}
