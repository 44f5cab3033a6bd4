//! Replaying a real store's history (JSONL files written by the native host) through a new
//! aggregate version: what `evfold replay`-style tooling does before a deploy.

use evfold_core::examples::{BankAccount, BankCommand};
use evfold_core::replay::{compare_events, DivergenceKind, DivergenceReport};
use evfold_core::{to_payload, Aggregate, CommandContext, ExpectedVersion, TypedAggregateFactory};
use evfold_native::AggregateStore;

use super::v2::BankAccountV2;

async fn execute(store: &AggregateStore, id: &str, command: BankCommand) {
    let payload = to_payload(&command).expect("tagged");
    let context = CommandContext::default().with_actor("test");
    let result = store.execute_json(BankAccount::AGGREGATE_TYPE, id, payload, context, ExpectedVersion::Any).await;
    result.unwrap_or_else(|e| panic!("{id}: {command:?}: {e}"));
}

#[tokio::test]
async fn a_native_store_replays_through_a_new_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = AggregateStore::builder(dir.path()).aggregate::<BankAccount>().open().await.expect("opens");
    execute(&store, "acc-1", BankCommand::Open { owner: "ada".into() }).await;
    execute(&store, "acc-1", BankCommand::Deposit { amount: 30 }).await;
    execute(&store, "acc-2", BankCommand::Open { owner: "bob".into() }).await;
    drop(store);

    // Reopen read-only, as a replay tool would, and compare every stream.
    let store = AggregateStore::builder(dir.path()).read_only().open().await.expect("reopens");
    let baseline = TypedAggregateFactory::<BankAccount>::default();
    let candidate = TypedAggregateFactory::<BankAccountV2>::default();
    let mut same = DivergenceReport::default();
    let mut changed = DivergenceReport::default();
    for stream in store.list_streams(Some(BankAccount::AGGREGATE_TYPE)).await.expect("lists") {
        let records = store.read_events(stream.aggregate_type(), stream.instance_id()).await.expect("reads");
        same.merge(compare_events(&stream, &records, &baseline, &baseline).expect("replays"));
        changed.merge(compare_events(&stream, &records, &baseline, &candidate).expect("replays"));
    }
    assert!(same.is_clean() && same.streams == 2 && same.events == 3, "{same}");
    // v2 does not count opening as a movement: both streams part at their first event.
    let parted: Vec<(String, Option<u64>)> = changed
        .divergences
        .iter()
        .filter(|d| matches!(d.kind, DivergenceKind::StateDiffers { .. }))
        .map(|d| (d.stream.instance_id().to_owned(), d.version))
        .collect();
    assert_eq!(parted, vec![("acc-1".to_owned(), Some(1)), ("acc-2".to_owned(), Some(1))], "{changed}");
}
