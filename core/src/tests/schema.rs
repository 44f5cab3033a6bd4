//! Schema evolution on the in-memory driver: version-1 history read by version-2 code through
//! upcasters gives the state and read model of a fresh version-2 history; stale snapshots and
//! checkpoints are not trusted; the unknown-event policy both ways; the serde probe that names
//! an event enum's variants.

use serde::Deserialize;
use serde_json::json;

use crate::aggregate_machine::AggregateConfig;
use crate::examples::evolution::{v1, v2, ACCOUNT};
use crate::io::Snapshot;
use crate::memory::MemoryStore;
use crate::reader::ReaderConfig;
use crate::schema::{EventSchema, UnknownEvents};
use crate::types::{CommandContext, Payload, StreamId};
use crate::{Aggregate, CommandError, DynAggregate, PayloadError};

fn ctx() -> CommandContext {
    CommandContext::default()
}

/// Snapshots every 2 events, so version 1 leaves snapshots behind.
fn store() -> MemoryStore {
    let config = AggregateConfig { snapshot_every: Some(2), ..AggregateConfig::default() };
    let mut store = MemoryStore::with_config(config, ReaderConfig::default());
    store.record_trace();
    store
}

fn v1_history(store: &mut MemoryStore) {
    store.register::<v1::Account>();
    store.add_projection::<v1::Totals>();
    let run = |store: &mut MemoryStore, id: &str, command: v1::Command| {
        store.execute::<v1::Account>(id, command, ctx()).unwrap();
    };
    run(store, "ann", v1::Command::Fund { owner: "Ann".into(), amount: 5 });
    run(store, "ann", v1::Command::Deposit { amount: 3 });
    run(store, "ann", v1::Command::Withdraw { amount: 2 });
    run(store, "bob", v1::Command::Fund { owner: "Bob".into(), amount: 7 });
}

/// The same business, written by version 2 from the start.
fn v2_history(store: &mut MemoryStore) {
    store.register::<v2::Account>();
    store.add_projection::<v2::Totals>();
    let run = |store: &mut MemoryStore, id: &str, command: v2::Command| {
        store.execute::<v2::Account>(id, command, ctx()).unwrap();
    };
    run(store, "ann", v2::Command::Open { owner: "Ann".into() });
    run(store, "ann", v2::Command::Deposit { cents: 500 });
    run(store, "ann", v2::Command::Deposit { cents: 300 });
    run(store, "ann", v2::Command::Withdraw { cents: 200 });
    run(store, "bob", v2::Command::Open { owner: "Bob".into() });
    run(store, "bob", v2::Command::Deposit { cents: 700 });
}

fn deploy_v2(store: &mut MemoryStore) {
    store.register::<v2::Account>();
    store.add_projection::<v2::Totals>();
}

#[test]
fn version_one_history_reads_as_a_fresh_version_two_history() {
    let mut old = store();
    v1_history(&mut old);
    assert_eq!(old.projection::<v1::Totals>().unwrap(), v1::Totals { euros: 13, events: 4 });
    deploy_v2(&mut old);

    let mut fresh = store();
    v2_history(&mut fresh);
    for id in ["ann", "bob"] {
        assert_eq!(old.state::<v2::Account>(id).unwrap(), fresh.state::<v2::Account>(id).unwrap(), "{id}");
    }
    assert_eq!(old.state::<v2::Account>("ann").unwrap(), v2::Account { owner: Some("Ann".into()), cents: 600 });
    // The projection's checkpoint was version 1's: dropped, rebuilt through the upcasters.
    assert_eq!(old.projection::<v2::Totals>().unwrap(), fresh.projection::<v2::Totals>().unwrap());
    let trace = old.take_trace();
    assert!(trace.contains("CheckpointStale"), "{trace}");

    // Version 2 goes on writing, at its versions; the log itself was never rewritten.
    old.execute::<v2::Account>("ann", v2::Command::Deposit { cents: 1 }, ctx()).unwrap();
    let ann = StreamId::new(ACCOUNT, "ann").unwrap();
    let versions: Vec<(String, u32)> =
        old.read_stream(&ann).iter().map(|r| (r.event_type.clone(), r.version)).collect();
    assert_eq!(
        versions,
        [("Funded", 1), ("Deposited", 1), ("Withdrew", 1), ("Deposited", 2)].map(|(t, v)| (t.to_owned(), v))
    );
    assert_eq!(old.state::<v2::Account>("ann").unwrap().cents, 601);
}

#[test]
fn a_snapshot_of_the_old_state_version_is_refolded_not_restored() {
    let mut store = store();
    v1_history(&mut store);
    let ann = StreamId::new(ACCOUNT, "ann").unwrap();
    // Version 1 snapshotted at seq 2. Make that snapshot a lie: restoring it would show it.
    let planted = Snapshot { seq: 2, state: json!({ "owner": "Mallory", "cents": 999_999 }), version: None };
    store.plant_snapshot(&ann, planted);
    deploy_v2(&mut store);
    store.take_trace();
    assert_eq!(store.state::<v2::Account>("ann").unwrap(), v2::Account { owner: Some("Ann".into()), cents: 600 });
    let trace = store.take_trace();
    assert!(trace.contains(r#"SnapshotStale { stream: StreamId { aggregate_type: "account", instance_id: "ann" }, written_by: "1", reading_with: "2;Deposited=2,Funded=2,Withdrew=2" }"#), "{trace}");

    // The same planted snapshot, recorded as version 2's, *is* restored: the check is the version.
    let planted = Snapshot {
        seq: 3,
        state: json!({ "owner": "Mallory", "cents": 999_999 }),
        version: Some(v2_snapshot_version()),
    };
    store.plant_snapshot(&ann, planted);
    deploy_v2(&mut store);
    assert_eq!(store.state::<v2::Account>("ann").unwrap().cents, 999_999);
}

fn v2_snapshot_version() -> String {
    crate::TypedAggregate::<v2::Account>::default().snapshot_version()
}

/// Version 2 with a policy: an event type it does not know (written by a newer version 3).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Forgiving(v2::Account);

impl Aggregate for Forgiving {
    const AGGREGATE_TYPE: &'static str = ACCOUNT;
    const STATE_VERSION: u32 = 2;
    type Command = v2::Command;
    type Event = v2::Event;
    type Error = crate::examples::evolution::Refused;

    fn handle(&self, command: v2::Command) -> Result<Vec<v2::Event>, Self::Error> {
        self.0.handle(command)
    }
    fn apply(self, event: &v2::Event) -> Self {
        Forgiving(self.0.apply(event))
    }
    fn schema() -> EventSchema {
        v2::schema().unknown_events(UnknownEvents::Skip)
    }
}

/// Writes what a version 3 would: a `Frozen` event, and `Deposited` at version 3.
fn newer_history(store: &mut MemoryStore) {
    store.register::<v2::Account>();
    store.execute::<v2::Account>("ann", v2::Command::Open { owner: "Ann".into() }, ctx()).unwrap();
    store.execute::<v2::Account>("ann", v2::Command::Deposit { cents: 40 }, ctx()).unwrap();
    let ann = StreamId::new(ACCOUNT, "ann").unwrap();
    store.plant_event(&ann, Payload::new("Frozen", json!({ "reason": "audit" })), 1);
    store.plant_event(&ann, Payload::new("Deposited", json!({ "cents": 5, "currency": "EUR" })), 3);
    store.plant_event(&ann, Payload::new("Deposited", json!({ "cents": 2 })), 2);
}

#[test]
fn unknown_events_fail_the_stream_by_default() {
    let mut store = store();
    newer_history(&mut store);
    store.register::<v2::Account>(); // reload from the log
    let error = store.state::<v2::Account>("ann").unwrap_err();
    let CommandError::Unavailable(reason) = &error else { panic!("{error:?}") };
    assert!(reason.contains("Deposited v3 cannot be read by this code (its current version is 2)"), "{reason}");
}

#[test]
fn unknown_events_are_skipped_and_counted_under_the_skip_policy() {
    let mut store = store();
    newer_history(&mut store);
    store.register::<Forgiving>();
    store.take_trace();
    assert_eq!(store.state::<Forgiving>("ann").unwrap().0.cents, 42);
    let trace = store.take_trace();
    assert!(trace.contains("EventsSkipped { what: \"account/ann\", count: 2"), "{trace}");
}

#[test]
fn a_bad_old_event_is_a_fault_even_under_the_skip_policy() {
    let mut store = store();
    store.register::<v1::Account>();
    store.execute::<v1::Account>("ann", v1::Command::Fund { owner: "Ann".into(), amount: 1 }, ctx()).unwrap();
    let ann = StreamId::new(ACCOUNT, "ann").unwrap();
    store.plant_event(&ann, Payload::new("Deposited", json!({ "amount": "lots" })), 1);
    store.register::<Forgiving>();
    let error = store.state::<Forgiving>("ann").unwrap_err();
    assert!(error.to_string().contains("upcasting Deposited v1: no amount"), "{error}");
}

#[test]
fn upcasters_chain_split_and_rename_and_refuse_what_they_cannot_read() {
    let schema = v2::schema()
        .upcast("Deposited", 2, |data| Ok(vec![Payload::new("Deposited", json!({ "cents": data["cents"], "v": 3 }))]));
    assert_eq!(schema.current_version("Deposited"), 3);
    assert_eq!(schema.current_version("Opened"), 1);
    assert_eq!(schema.fingerprint(), "Deposited=3,Funded=2,Withdrew=2");
    // v1 Funded -> Opened + Deposited(today's v3 shape, as the upcaster wrote it).
    let read = schema.read("Funded", 1, json!({ "owner": "Ann", "amount": 2 })).unwrap();
    assert_eq!(
        read,
        vec![Payload::new("Opened", json!({"owner": "Ann"})), Payload::new("Deposited", json!({"cents": 200}))]
    );
    // v1 Deposited goes through v2 on to v3.
    let read = schema.read("Deposited", 1, json!({ "amount": 2 })).unwrap();
    assert_eq!(read, vec![Payload::new("Deposited", json!({"cents": 200, "v": 3}))]);
    // A version newer than the code, and an old one without an upcaster.
    let newer = schema.read("Deposited", 4, json!({})).unwrap_err();
    assert!(matches!(newer, PayloadError::UnknownVersion { version: 4, current: 3, .. }), "{newer:?}");
    assert!(newer.is_unknown_event());
    let gap = EventSchema::new().version("Opened", 3).read("Opened", 1, json!({})).unwrap_err();
    assert!(matches!(gap, PayloadError::UnknownVersion { version: 1, current: 3, .. }), "{gap:?}");
    assert!(!gap.is_unknown_event(), "a missing upcaster is a bug, never skipped");
}

#[test]
fn the_variant_probe_names_every_serde_enum_shape() {
    use crate::shape::variant_names;
    #[derive(Deserialize)]
    #[serde(tag = "type", content = "data")]
    #[allow(dead_code)]
    enum Adjacent {
        One(u8),
        #[serde(rename = "zwei")]
        Two,
    }
    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum External {
        One(u8),
        Two { x: u8 },
    }
    #[derive(Deserialize)]
    #[serde(tag = "type")]
    #[allow(dead_code)]
    enum Internal {
        One { x: u8 },
        Two,
    }
    #[derive(Deserialize)]
    #[serde(tag = "type", content = "data")]
    #[allow(dead_code)]
    enum Open {
        One,
        #[serde(other)]
        Other,
    }
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Plain {
        x: u8,
    }
    assert_eq!(variant_names::<Adjacent>(), Some(&["One", "zwei"][..]));
    assert_eq!(variant_names::<External>(), Some(&["One", "Two"][..]));
    assert_eq!(variant_names::<Internal>(), Some(&["One", "Two"][..]));
    assert_eq!(variant_names::<Open>(), None, "serde(other) takes every name");
    assert_eq!(variant_names::<Plain>(), None);
    assert_eq!(variant_names::<String>(), None);
}
