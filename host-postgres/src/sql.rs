//! Fulfils the core's `Io` requests with SQL: one function per request kind, results as core data.
//!
//! Nothing here decides anything: a failure becomes an `IoError` whose kind tells the machine what
//! happened (`Conflict` for a lost append race, `Storage` when the outcome is unknown).

use std::str::FromStr;

use deadpool_postgres::{Object, Pool};
use evfold_core::{
    Checkpoint, DeadLetter, EventId, EventRecord, Io, IoError, IoErrorKind, IoResult, Metadata, NewEvent, Position,
    Snapshot, StoredEvent, StreamId, Timestamp,
};
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

/// SQLSTATE raised by `evfold.append` on a version mismatch (DETAIL holds the actual version).
pub const WRONG_VERSION: &str = "EV001";

/// Columns every event read selects, in this order (see [`record_from_row`]).
const EVENT_COLUMNS: &str = "seq, global_seq, event_id, event_type, data, ts_ms, metadata, schema_version";

/// The two pools a store uses: writes (and checkpoints) on the primary, `ReadAll` on `read`
/// (a replica, or the primary again).
#[derive(Clone)]
pub struct Backend {
    /// Primary.
    pub write: Pool,
    /// Where readers fetch the store-wide order.
    pub read: Pool,
}

/// Why an append did not happen, before it is turned into core or public errors.
#[derive(Debug)]
pub enum AppendError {
    /// The stream is at `actual`.
    Conflict { actual: u64 },
    /// An event id is already stored.
    Duplicate(String),
    /// Anything else: the outcome may be unknown.
    Other(String),
}

impl Backend {
    /// Fulfils one storage request (everything but `Dispatch`, which the store routes itself).
    pub async fn fulfil(&self, request: Io) -> IoResult {
        let result = match request {
            Io::ReadSnapshot { stream } => self.read_snapshot(&stream).await.map(IoResult::Snapshot),
            Io::ReadStream { stream, after_seq } => self.read_stream(&stream, after_seq).await.map(IoResult::Stream),
            Io::Append { stream, expected_seq, events } => {
                return match self.append(&stream, Some(expected_seq), &events).await {
                    Ok(records) => IoResult::Appended(records),
                    Err(AppendError::Conflict { actual }) => {
                        IoResult::Failed(IoError::new(IoErrorKind::Conflict { actual_seq: actual }, "version moved"))
                    }
                    Err(AppendError::Duplicate(m)) => IoResult::Failed(IoError::new(IoErrorKind::Storage, m)),
                    Err(AppendError::Other(m)) => IoResult::Failed(IoError::new(IoErrorKind::Storage, m)),
                };
            }
            // A committed PostgreSQL transaction is already durable (synchronous_commit).
            Io::Sync { .. } => Ok(IoResult::Done),
            Io::WriteSnapshot { stream, snapshot } => {
                self.write_snapshot(&stream, &snapshot).await.map(|()| IoResult::Done)
            }
            Io::ReadCheckpoint { reader } => self.read_checkpoint(&reader).await.map(IoResult::Checkpoint),
            Io::ReadAll { after, max_events } => {
                self.read_all(&after, max_events).await.map(|(events, next)| IoResult::Batch { events, next })
            }
            Io::WriteCheckpoint { reader, checkpoint } => {
                self.write_checkpoint(&reader, &checkpoint).await.map(|()| IoResult::Done)
            }
            Io::WriteDeadLetter { reader, letter } => {
                self.write_dead_letter(&reader, &letter).await.map(|()| IoResult::Done)
            }
            Io::Dispatch { .. } => Err(IoError::new(IoErrorKind::Unavailable, "dispatch is routed by the store")),
        };
        result.unwrap_or_else(IoResult::Failed)
    }

    /// Appends `events` atomically if the stream is at `expected` (`None` = any version).
    pub async fn append(
        &self,
        stream: &StreamId,
        expected: Option<u64>,
        events: &[NewEvent],
    ) -> Result<Vec<EventRecord>, AppendError> {
        let client = self.write.get().await.map_err(|e| AppendError::Other(format!("pool: {e}")))?;
        let ids: Vec<&str> = events.iter().map(|e| e.id.0.as_str()).collect();
        let types: Vec<&str> = events.iter().map(|e| e.payload.type_name.as_str()).collect();
        let data: Vec<&Value> = events.iter().map(|e| &e.payload.data).collect();
        let meta: Vec<Value> = events.iter().map(|e| serde_json::to_value(&e.meta).unwrap_or(Value::Null)).collect();
        let ts: Vec<i64> = events.iter().map(|e| to_i64(e.ts.0)).collect();
        let versions: Vec<i32> = events.iter().map(|e| i32::try_from(e.version).unwrap_or(i32::MAX)).collect();
        let expected = expected.map(to_i64);
        let name = stream.to_string();
        let statement = client
            .prepare_cached(
                "SELECT out_seq, out_global_seq FROM evfold.append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .await
            .map_err(|e| AppendError::Other(describe(&e)))?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
            &name,
            &stream.aggregate_type(),
            &stream.instance_id(),
            &expected,
            &ids,
            &types,
            &data,
            &meta,
            &ts,
            &versions,
        ];
        let rows = client.query(&statement, &params).await.map_err(classify_append_error)?;
        let mut placed: Vec<(u64, u64)> = rows.iter().map(|r| (to_u64(r.get(0)), to_u64(r.get(1)))).collect();
        placed.sort_unstable();
        Ok(events
            .iter()
            .cloned()
            .zip(placed)
            .map(|(event, (seq, pos))| EventRecord::from_new(event, seq, pos))
            .collect())
    }

    /// Every event of `stream` with `seq > after_seq`, in order.
    pub async fn read_stream(&self, stream: &StreamId, after_seq: u64) -> Result<Vec<EventRecord>, IoError> {
        let client = get(&self.write).await?;
        let sql = format!("SELECT {EVENT_COLUMNS} FROM evfold.events WHERE stream = $1 AND seq > $2 ORDER BY seq");
        let statement = client.prepare_cached(&sql).await.map_err(storage)?;
        let rows = client.query(&statement, &[&stream.to_string(), &to_i64(after_seq)]).await.map_err(storage)?;
        rows.iter().map(record_from_row).collect()
    }

    /// Whether an event with this id is stored.
    pub async fn event_exists(&self, id: &EventId) -> Result<bool, IoError> {
        let client = get(&self.write).await?;
        let statement =
            client.prepare_cached("SELECT 1 FROM evfold.events WHERE event_id = $1").await.map_err(storage)?;
        Ok(client.query_opt(&statement, &[&id.0]).await.map_err(storage)?.is_some())
    }

    /// The stream's version (0 = no events).
    pub async fn stream_version(&self, stream: &StreamId) -> Result<u64, IoError> {
        let client = get(&self.write).await?;
        let statement =
            client.prepare_cached("SELECT version FROM evfold.streams WHERE stream = $1").await.map_err(storage)?;
        let row = client.query_opt(&statement, &[&stream.to_string()]).await.map_err(storage)?;
        Ok(row.map_or(0, |r| to_u64(r.get(0))))
    }

    /// Up to `max_events` events after `after`, in `(tx_id, global_seq)` order, never past the
    /// oldest transaction still running: a late commit can delay a reader but never be skipped.
    pub async fn read_all(&self, after: &Position, max_events: usize) -> Result<(Vec<StoredEvent>, Position), IoError> {
        let (tx, seq) = decode_position(after)?;
        let client = get(&self.read).await?;
        let sql = format!(
            // `e.tx_id`, qualified: a bare `tx_id` in ORDER BY would name the *output* column
            // `tx_id::text` and sort the xids as text ("1001" < "726").
            "SELECT {EVENT_COLUMNS}, stream, e.tx_id::text AS tx_text FROM evfold.events e
             WHERE (e.tx_id, e.global_seq) > ($1::text::xid8, $2)
               AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY e.tx_id, e.global_seq LIMIT $3"
        );
        let statement = client.prepare_cached(&sql).await.map_err(storage)?;
        let limit = i64::try_from(max_events.max(1)).unwrap_or(i64::MAX);
        let rows = client.query(&statement, &[&tx.to_string(), &to_i64(seq), &limit]).await.map_err(storage)?;
        let mut events = Vec::with_capacity(rows.len());
        let mut next = after.clone();
        for row in &rows {
            let record = record_from_row(row)?;
            let stream = parse_stream(row.get(8))?;
            let tx: &str = row.get(9);
            let tx = u64::from_str(tx).map_err(|e| corrupt(format!("tx_id {tx}: {e}")))?;
            next = encode_position(tx, record.pos);
            events.push(StoredEvent { stream, record });
        }
        Ok((events, next))
    }

    async fn read_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, IoError> {
        let client = get(&self.write).await?;
        let statement = client
            .prepare_cached("SELECT seq, state, writer FROM evfold.snapshots WHERE stream = $1")
            .await
            .map_err(storage)?;
        let row = client.query_opt(&statement, &[&stream.to_string()]).await.map_err(storage)?;
        Ok(row.map(|r| Snapshot { seq: to_u64(r.get(0)), state: r.get(1), version: r.get(2) }))
    }

    async fn write_snapshot(&self, stream: &StreamId, snapshot: &Snapshot) -> Result<(), IoError> {
        let client = get(&self.write).await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO evfold.snapshots (stream, seq, state, writer) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, state = excluded.state,
                   writer = excluded.writer, updated_at = now()
                 WHERE evfold.snapshots.seq < excluded.seq
                    OR evfold.snapshots.writer IS DISTINCT FROM excluded.writer",
            )
            .await
            .map_err(storage)?;
        client
            .execute(&statement, &[&stream.to_string(), &to_i64(snapshot.seq), &snapshot.state, &snapshot.version])
            .await
            .map_err(storage)?;
        Ok(())
    }

    /// A reader's checkpoint, if it saved one.
    pub async fn read_checkpoint(&self, reader: &str) -> Result<Option<Checkpoint>, IoError> {
        let client = get(&self.write).await?;
        let statement = client
            .prepare_cached("SELECT position, cursors, state, writer FROM evfold.checkpoints WHERE reader = $1")
            .await
            .map_err(storage)?;
        let Some(row) = client.query_opt(&statement, &[&reader]).await.map_err(storage)? else { return Ok(None) };
        let cursors = serde_json::from_value(row.get(1)).map_err(|e| corrupt(format!("checkpoint {reader}: {e}")))?;
        Ok(Some(Checkpoint { position: Position(row.get(0)), cursors, state: row.get(2), version: row.get(3) }))
    }

    async fn write_checkpoint(&self, reader: &str, checkpoint: &Checkpoint) -> Result<(), IoError> {
        let client = get(&self.write).await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO evfold.checkpoints (reader, position, cursors, state, writer) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (reader) DO UPDATE SET position = excluded.position, cursors = excluded.cursors,
                   state = excluded.state, writer = excluded.writer, updated_at = now()",
            )
            .await
            .map_err(storage)?;
        let cursors = serde_json::to_value(&checkpoint.cursors).map_err(|e| corrupt(e.to_string()))?;
        client
            .execute(&statement, &[&reader, &checkpoint.position.0, &cursors, &checkpoint.state, &checkpoint.version])
            .await
            .map_err(storage)?;
        Ok(())
    }

    async fn write_dead_letter(&self, reader: &str, letter: &DeadLetter) -> Result<(), IoError> {
        let client = get(&self.write).await?;
        let letter = serde_json::to_value(letter).map_err(|e| corrupt(e.to_string()))?;
        let statement = client
            .prepare_cached("INSERT INTO evfold.dead_letters (reader, letter) VALUES ($1, $2)")
            .await
            .map_err(storage)?;
        client.execute(&statement, &[&reader, &letter]).await.map_err(storage)?;
        Ok(())
    }

    /// A process manager's dead letters, oldest first.
    pub async fn dead_letters(&self, reader: &str) -> Result<Vec<DeadLetter>, IoError> {
        let client = get(&self.write).await?;
        let rows = client
            .query("SELECT letter FROM evfold.dead_letters WHERE reader = $1 ORDER BY id", &[&reader])
            .await
            .map_err(storage)?;
        rows.iter().map(|r| serde_json::from_value(r.get(0)).map_err(|e| corrupt(e.to_string()))).collect()
    }

    /// Streams (optionally of one aggregate type) with their versions, ordered by name.
    pub async fn list_streams(&self, aggregate_type: Option<&str>) -> Result<Vec<(StreamId, u64)>, IoError> {
        let client = get(&self.write).await?;
        let rows = client
            .query(
                "SELECT stream, version FROM evfold.streams
                 WHERE $1::text IS NULL OR aggregate_type = $1 ORDER BY stream",
                &[&aggregate_type],
            )
            .await
            .map_err(storage)?;
        rows.iter().map(|r| Ok((parse_stream(r.get(0))?, to_u64(r.get(1))))).collect()
    }
}

/// The position token: `[tx_id, global_seq]` of the last event read; `null` = the start.
pub fn encode_position(tx: u64, global_seq: u64) -> Position {
    Position(Value::from(vec![tx, global_seq]))
}

/// Reverses [`encode_position`]; the start is `(0, 0)`.
pub fn decode_position(position: &Position) -> Result<(u64, u64), IoError> {
    if position.is_start() {
        return Ok((0, 0));
    }
    let bad = || corrupt(format!("position {} is not a PostgreSQL [tx_id, global_seq] token", position.0));
    let pair = position.0.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
    Ok((pair[0].as_u64().ok_or_else(bad)?, pair[1].as_u64().ok_or_else(bad)?))
}

fn record_from_row(row: &Row) -> Result<EventRecord, IoError> {
    let meta: Value = row.get(6);
    let meta: Metadata = serde_json::from_value(meta).map_err(|e| corrupt(format!("metadata: {e}")))?;
    Ok(EventRecord {
        seq: to_u64(row.get(0)),
        pos: to_u64(row.get(1)),
        id: EventId(row.get(2)),
        event_type: row.get(3),
        version: u32::try_from(row.get::<_, i32>(7)).unwrap_or(1),
        data: row.get(4),
        ts: Timestamp(to_u64(row.get(5))),
        meta,
    })
}

/// Parses a stored `type/id` stream name.
pub fn parse_stream(name: &str) -> Result<StreamId, IoError> {
    let (kind, id) = name.split_once('/').ok_or_else(|| corrupt(format!("stream name {name:?} has no '/'")))?;
    StreamId::new(kind, id).map_err(|e| corrupt(format!("stream name {name:?}: {e}")))
}

fn classify_append_error(error: tokio_postgres::Error) -> AppendError {
    let Some(db) = error.as_db_error() else { return AppendError::Other(describe(&error)) };
    if db.code().code() == WRONG_VERSION {
        let actual = db.detail().and_then(|d| d.parse().ok()).unwrap_or(0);
        return AppendError::Conflict { actual };
    }
    if *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some("events_event_id_key") {
        return AppendError::Duplicate(db.detail().unwrap_or(db.message()).to_owned());
    }
    AppendError::Other(describe(&error))
}

async fn get(pool: &Pool) -> Result<Object, IoError> {
    pool.get().await.map_err(|e| IoError::new(IoErrorKind::Storage, format!("no database connection: {e}")))
}

fn storage(error: tokio_postgres::Error) -> IoError {
    IoError::new(IoErrorKind::Storage, describe(&error))
}

/// The server's message and SQLSTATE when there is one (`Display` says only "db error").
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

fn corrupt(message: String) -> IoError {
    IoError::new(IoErrorKind::Corrupt, message)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
