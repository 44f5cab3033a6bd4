//! What eventfold-es users relied on, each test named after the eventfold-es behaviour it
//! restores: context metadata and source device, events without an id, `ensure_stream`,
//! `is_alive`, process-manager state, on-demand process managers, io::Error conversions, and
//! domain errors that display as themselves.

use std::time::Duration;

use crate::common::{self, ctx, open_account};
use evfold_core::examples::{BankAccount, BankCommand, BankError, Transfers};
use evfold_core::{CommandContext, EventRecord};
use evfold_native::{verify_store, AggregateStore, ExecuteError, StoreError};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventfold_es_context_metadata_and_source_device_reach_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path()).await;
    let context = CommandContext::default()
        .with_actor("ada")
        .with_source_device("phone-7")
        .with_metadata(json!({"tenant": "t1", "trace": {"span": 3}}));
    let account = store.get::<BankAccount>("a").await.unwrap();
    account.execute(BankCommand::Open { owner: "ada".into() }, context).await.unwrap();
    // A real eventfold-es CommandContext, serialized by the peer crate: nothing is dropped.
    let peer = eventfold_es::CommandContext::default()
        .with_actor("bob")
        .with_correlation_id("c-1")
        .with_metadata(json!({"tenant": "t2"}))
        .with_source_device("d-2");
    let from_peer: CommandContext = serde_json::from_value(serde_json::to_value(&peer).unwrap()).unwrap();
    account.execute(BankCommand::Deposit { amount: 5 }, from_peer).await.unwrap();
    store.close().await;

    let store = common::open(dir.path()).await;
    let events = store.read_events("bank-account", "a").await.unwrap();
    assert_eq!(events[0].meta.source_device.as_deref(), Some("phone-7"));
    assert_eq!(events[0].meta.extra["tenant"], json!("t1"));
    assert_eq!(events[0].meta.extra["trace"], json!({"span": 3}));
    assert_eq!(events[1].meta.actor.as_deref(), Some("bob"));
    assert_eq!(events[1].meta.correlation_id.as_deref(), Some("c-1"));
    assert_eq!(events[1].meta.source_device.as_deref(), Some("d-2"));
    assert_eq!(events[1].meta.extra["tenant"], json!("t2"));
    // A non-object metadata value is kept whole, not dropped.
    let scalar = CommandContext::default().with_metadata(json!("note"));
    assert_eq!(scalar.extra["metadata"], json!("note"));
}

/// A log line as another tool writes it: a record without its `id`, with a valid CRC.
fn line_without_id(record: &EventRecord) -> Vec<u8> {
    let mut value = serde_json::to_value(record).unwrap();
    value.as_object_mut().unwrap().remove("id");
    let mut body = serde_json::to_vec(&value).unwrap();
    body.pop();
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&body);
    body.extend_from_slice(format!(",\"crc\":\"{crc:08x}\"}}\n").as_bytes());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventfold_es_event_without_id_is_read_and_the_store_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path()).await;
    open_account(&store, "a", 10).await;
    let mut third = store.read_events("bank-account", "a").await.unwrap()[1].clone();
    store.close().await;
    // The id-less event is the log's last line: opening reads exactly that line.
    third.seq = 3;
    third.pos = 3;
    let log = dir.path().join("streams/bank-account/a/events.jsonl");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend(line_without_id(&third));
    std::fs::write(&log, bytes).unwrap();

    let store = common::open(dir.path()).await;
    let events = store.read_events("bank-account", "a").await.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].id, evfold_core::EventId::for_position(3));
    let account = store.get::<BankAccount>("a").await.unwrap();
    assert_eq!(account.state().await.unwrap().balance, 20, "the id-less deposit folds");
    account.execute(BankCommand::Deposit { amount: 1 }, ctx()).await.unwrap();
    store.close().await;
    let report = verify_store(dir.path()).unwrap();
    assert!(report.is_clean(), "{report:?}");
    let store = common::open(dir.path()).await;
    let again = store.read_events("bank-account", "a").await.unwrap();
    assert_eq!(again[2].id, events[2].id, "the derived id is the same on every read");
    assert_eq!(again.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventfold_es_ensure_stream_lists_a_stream_before_its_first_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path()).await;
    assert!(!store.stream_exists("bank-account", "new").await.unwrap());
    store.ensure_stream("bank-account", "new").await.unwrap();
    store.ensure_stream("bank-account", "new").await.unwrap();
    assert!(store.stream_exists("bank-account", "new").await.unwrap());
    assert_eq!(store.list::<BankAccount>().await.unwrap(), ["new"]);
    assert!(store.read_events("bank-account", "new").await.unwrap().is_empty());
    assert!(matches!(store.ensure_stream("bank-account", "../x").await, Err(StoreError::InvalidStreamId { .. })));
    store.close().await;
    assert!(verify_store(dir.path()).unwrap().is_clean());
    let store = common::open(dir.path()).await;
    assert_eq!(store.list::<BankAccount>().await.unwrap(), ["new"]);
    open_account(&store, "new", 3).await;
    assert_eq!(store.read_events("bank-account", "new").await.unwrap()[0].seq, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventfold_es_is_alive_until_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::builder(dir.path()).idle_timeout(Duration::from_millis(50)).open().await.unwrap();
    let account = store.get::<BankAccount>("a").await.unwrap();
    assert!(account.is_alive());
    account.execute(BankCommand::Open { owner: "a".into() }, ctx()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.live_instances(), 0, "the actor retired");
    assert!(account.is_alive(), "a handle outlives its idle actor");
    account.execute(BankCommand::Deposit { amount: 1 }, ctx()).await.unwrap();
    store.close().await;
    assert!(!account.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventfold_es_process_manager_state_can_be_queried() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path()).await;
    open_account(&store, "a", 10).await;
    open_account(&store, "b", 0).await;
    let a = store.get::<BankAccount>("a").await.unwrap();
    a.execute(BankCommand::TransferOut { to: "b".into(), amount: 4 }, ctx()).await.unwrap();
    assert_eq!(store.process_manager::<Transfers>().await.unwrap().dispatched, 1);
    assert_eq!(store.process_manager_json("transfers").await.unwrap(), json!({"dispatched": 1}));
    assert!(matches!(store.process_manager_json("balances").await, Err(StoreError::UnknownProcessManager(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventfold_es_process_managers_run_only_on_run_process_managers() {
    let dir = tempfile::tempdir().unwrap();
    let open = || common::builder(dir.path()).process_managers_on_demand().open();
    let store = open().await.unwrap();
    open_account(&store, "a", 10).await;
    open_account(&store, "b", 0).await;
    let a = store.get::<BankAccount>("a").await.unwrap();
    a.execute(BankCommand::TransferOut { to: "b".into(), amount: 4 }, ctx()).await.unwrap();
    let b = store.get::<BankAccount>("b").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.state().await.unwrap().balance, 0, "nothing dispatched before it is asked");
    let report = store.run_process_managers().await.unwrap();
    assert_eq!(report.dispatched, 1);
    assert_eq!(b.state().await.unwrap().balance, 4);

    // A transfer left undispatched at close is not dispatched by the next open either.
    a.execute(BankCommand::TransferOut { to: "b".into(), amount: 1 }, ctx()).await.unwrap();
    store.close().await;
    let store = open().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = store.get::<BankAccount>("b").await.unwrap();
    assert_eq!(b.state().await.unwrap().balance, 4);
    assert_eq!(store.run_process_managers().await.unwrap().dispatched, 1);
    assert_eq!(b.state().await.unwrap().balance, 5);
}

/// eventfold-es returned `std::io::Result` from every call; code written that way keeps its `?`.
async fn eventfold_es_style(store: &AggregateStore) -> std::io::Result<u64> {
    let account = store.get::<BankAccount>("bad/../id").await?;
    Ok(account.state().await?.balance)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventfold_es_io_results_convert_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path()).await;
    let error = eventfold_es_style(&store).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("invalid stream id"), "{error}");
    let unknown: std::io::Error = StoreError::UnknownProjection("p".into()).into();
    assert_eq!(unknown.kind(), std::io::ErrorKind::NotFound);

    fn read_config() -> Result<Vec<u8>, StoreError> {
        Ok(std::fs::read("/nonexistent/evfold-config")?)
    }
    let error = read_config().unwrap_err();
    assert!(matches!(&error, StoreError::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound));
    assert!(error.to_string().starts_with("io error: "), "no empty path in the message: {error}");
    let execute: ExecuteError<BankError> = std::io::Error::other("disk gone").into();
    assert!(matches!(execute, ExecuteError::Store(StoreError::Io { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventfold_es_domain_errors_display_as_their_own_text() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path()).await;
    open_account(&store, "a", 10).await;
    let a = store.get::<BankAccount>("a").await.unwrap();
    let error = a.execute(BankCommand::Withdraw { amount: 50 }, ctx()).await.unwrap_err();
    let domain = BankError::InsufficientFunds { balance: 10, requested: 50 };
    assert!(matches!(&error, ExecuteError::Domain(e) if *e == domain));
    assert_eq!(error.to_string(), domain.to_string());
    let command = evfold_core::Payload::new("Withdraw", json!({"amount": 50}));
    let json = store.execute_json("bank-account", "a", command, ctx(), evfold_core::ExpectedVersion::Any).await;
    assert_eq!(json.unwrap_err().to_string(), domain.to_string());
}
