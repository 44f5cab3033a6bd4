//! Schema evolution on PostgreSQL: version-1 history read by version 2 through upcasters gives a
//! fresh version-2 history's state and read model; versions are stored per event (migration 2);
//! a version-1 snapshot is refolded, not restored; the projection's old checkpoint is dropped.

use evfold_core::examples::evolution::{v1, v2};
use evfold_core::AggregateConfig;
use evfold_postgres::testing::TempCluster;
use evfold_postgres::PgStore;
use serde_json::json;

use super::{block_on, ctx, raw_client};

fn snapshots_every_two() -> AggregateConfig {
    AggregateConfig { snapshot_every: Some(2), ..AggregateConfig::default() }
}

async fn v2_store(db: &str) -> PgStore {
    PgStore::builder(db)
        .aggregate::<v2::Account>()
        .projection::<v2::Totals>()
        .aggregate_config(snapshots_every_two())
        .connect()
        .await
        .unwrap()
}

/// Version 1 writes, version 2 (upcasters, STATE_VERSION 2, Totals VERSION 2) reads.
pub fn schema_evolution_upcasts_history_and_refolds_stale_state(cluster: &mut TempCluster, db: &str) {
    let fresh_db = cluster.create_database("evolution_fresh").unwrap();
    block_on(async {
        let old = PgStore::builder(db)
            .aggregate::<v1::Account>()
            .projection::<v1::Totals>()
            .aggregate_config(snapshots_every_two())
            .connect()
            .await
            .unwrap();
        old.execute::<v1::Account>("ann", v1::Command::Fund { owner: "Ann".into(), amount: 5 }, ctx()).await.unwrap();
        old.execute::<v1::Account>("ann", v1::Command::Deposit { amount: 3 }, ctx()).await.unwrap();
        old.execute::<v1::Account>("ann", v1::Command::Withdraw { amount: 2 }, ctx()).await.unwrap();
        old.execute::<v1::Account>("bob", v1::Command::Fund { owner: "Bob".into(), amount: 7 }, ctx()).await.unwrap();
        old.catch_up().await.unwrap();
        assert_eq!(old.projection::<v1::Totals>().await.unwrap(), v1::Totals { euros: 13, events: 4 });
        drop(old);

        // A lie in version 1's snapshot: restoring it would show.
        let raw = raw_client(db).await;
        let planted = json!({ "owner": "Mallory", "cents": 999_999 });
        let n = raw.execute("UPDATE evfold.snapshots SET state = $1 WHERE stream = 'account/ann'", &[&planted]).await;
        assert_eq!(n.unwrap(), 1);

        let fresh = v2_store(&fresh_db).await;
        for (id, owner, cents) in [("ann", "Ann", &[500u64, 300][..]), ("bob", "Bob", &[700][..])] {
            fresh.execute::<v2::Account>(id, v2::Command::Open { owner: owner.into() }, ctx()).await.unwrap();
            for c in cents {
                fresh.execute::<v2::Account>(id, v2::Command::Deposit { cents: *c }, ctx()).await.unwrap();
            }
        }
        fresh.execute::<v2::Account>("ann", v2::Command::Withdraw { cents: 200 }, ctx()).await.unwrap();
        fresh.catch_up().await.unwrap();

        let upgraded = v2_store(db).await;
        for id in ["ann", "bob"] {
            let upcast = upgraded.state::<v2::Account>(id).await.unwrap();
            assert_eq!(upcast, fresh.state::<v2::Account>(id).await.unwrap(), "{id}");
        }
        assert_eq!(upgraded.state::<v2::Account>("ann").await.unwrap().cents, 600, "the planted snapshot was not used");
        upgraded.catch_up().await.unwrap();
        assert_eq!(upgraded.projection::<v2::Totals>().await.unwrap(), fresh.projection::<v2::Totals>().await.unwrap());

        upgraded.execute::<v2::Account>("ann", v2::Command::Deposit { cents: 1 }, ctx()).await.unwrap();
        let rows = raw
            .query(
                "SELECT event_type, schema_version FROM evfold.events WHERE stream = 'account/ann' ORDER BY seq",
                &[],
            )
            .await
            .unwrap();
        let stored: Vec<(String, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let want = [("Funded", 1), ("Deposited", 1), ("Withdrew", 1), ("Deposited", 2)];
        assert_eq!(stored, want.map(|(t, v)| (t.to_owned(), v)), "the log is never rewritten");
        let writer: Option<String> = raw
            .query_one("SELECT writer FROM evfold.snapshots WHERE stream = 'account/ann'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(writer.as_deref(), Some("2;Deposited=2,Funded=2,Withdrew=2"));
    });
}
