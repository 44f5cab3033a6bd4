//! The crate-owned schema: embedded, numbered SQL migrations applied on connect, once, under a lock.

use tokio_postgres::Client;

use crate::error::StoreError;

/// One embedded migration.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Append new ones; never edit an applied one.
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "0001_init.sql", sql: include_str!("../migrations/0001_init.sql") },
    Migration { version: 2, name: "0002_versions.sql", sql: include_str!("../migrations/0002_versions.sql") },
];

/// Advisory lock key serialising concurrent `connect`s that migrate the same database.
const MIGRATION_LOCK: i64 = 0x6576_666f_6c64; // "evfold"

/// The newest schema version this build knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Applies every missing migration in one transaction. Safe to run from many processes at once.
pub async fn migrate(client: &mut Client) -> Result<i32, StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS evfold;
         CREATE TABLE IF NOT EXISTS evfold.schema_migrations (
           version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let row = tx.query_one("SELECT coalesce(max(version), 0) FROM evfold.schema_migrations", &[]).await?;
    let applied: i32 = row.get(0);
    if applied > latest_version() {
        return Err(StoreError::SchemaTooNew { found: applied, known: latest_version() });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > applied) {
        tracing::info!(version = m.version, name = m.name, "applying migration");
        tx.batch_execute(m.sql).await.map_err(|source| StoreError::Migration {
            version: m.version,
            name: m.name,
            source,
        })?;
        tx.execute("INSERT INTO evfold.schema_migrations (version, name) VALUES ($1, $2)", &[&m.version, &m.name])
            .await?;
    }
    tx.commit().await?;
    Ok(latest_version())
}
