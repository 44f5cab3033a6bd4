-- evfold-postgres migration 1: streams, events, snapshots, checkpoints, dead letters, append().
-- Applied once per database by PgStore::connect (inside a transaction, under an advisory lock).

CREATE SCHEMA IF NOT EXISTS evfold;

-- One row per stream: lists streams and holds the version used for expected-version checks.
CREATE TABLE evfold.streams (
  stream          text        PRIMARY KEY,          -- "<aggregate type>/<instance id>"
  aggregate_type  text        NOT NULL,
  instance_id     text        NOT NULL,
  version         bigint      NOT NULL,             -- last seq written (1-based), 0 = empty
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX streams_type_idx ON evfold.streams (aggregate_type, instance_id);

-- The log. global_seq is unique but NOT commit-ordered; the store-wide order is
-- (tx_id, global_seq), read only below pg_snapshot_xmin(pg_current_snapshot()).
CREATE TABLE evfold.events (
  global_seq      bigint      GENERATED ALWAYS AS IDENTITY,
  tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
  stream          text        NOT NULL,
  seq             bigint      NOT NULL,             -- 1-based version of the stream after this event
  event_id        text        NOT NULL,
  event_type      text        NOT NULL,
  data            jsonb       NOT NULL,
  metadata        jsonb       NOT NULL DEFAULT '{}',
  ts_ms           bigint      NOT NULL,             -- the core's Timestamp (decision time)
  recorded_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (stream, seq),                        -- second guard against a duplicate version
  CONSTRAINT events_event_id_key UNIQUE (event_id)  -- dedup of retried / relayed events
);
CREATE INDEX events_all_idx ON evfold.events (tx_id, global_seq);

CREATE TABLE evfold.snapshots (
  stream      text        PRIMARY KEY,
  seq         bigint      NOT NULL,
  state       jsonb       NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Projection / process-manager checkpoints: the core's opaque position, cursors and state.
CREATE TABLE evfold.checkpoints (
  reader      text        PRIMARY KEY,
  position    jsonb       NOT NULL,
  cursors     jsonb       NOT NULL,
  state       jsonb       NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE evfold.dead_letters (
  id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  reader      text        NOT NULL,
  letter      jsonb       NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_reader_idx ON evfold.dead_letters (reader, id);

-- append(): atomically appends N events to one stream if its version is p_expected
-- (NULL = any). Raises SQLSTATE 'EV001' with DETAIL = the actual version on a mismatch.
--
-- The per-stream advisory lock is taken BEFORE the transaction writes anything, so before it is
-- assigned a transaction id: a later appender to the same stream therefore always gets a larger
-- xid, and the (tx_id, global_seq) order keeps every stream's seq order. This only holds when
-- append() is the first write of its transaction (the driver calls it in autocommit).
CREATE FUNCTION evfold.append(p_stream text, p_aggregate_type text, p_instance_id text,
    p_expected bigint, p_ids text[], p_types text[], p_data jsonb[], p_meta jsonb[], p_ts bigint[])
RETURNS TABLE (out_seq bigint, out_global_seq bigint)
LANGUAGE plpgsql SET search_path = evfold, pg_catalog AS $$
DECLARE
  v_cur bigint;
  v_n   int := cardinality(p_ids);
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 7));
  SELECT version INTO v_cur FROM streams WHERE stream = p_stream;
  IF v_cur IS NULL THEN
    v_cur := 0;
  END IF;
  IF p_expected IS NOT NULL AND p_expected <> v_cur THEN
    RAISE EXCEPTION 'wrong expected version for %: expected %, actual %', p_stream, p_expected, v_cur
      USING ERRCODE = 'EV001', DETAIL = v_cur::text;
  END IF;
  IF v_cur = 0 THEN
    INSERT INTO streams (stream, aggregate_type, instance_id, version)
      VALUES (p_stream, p_aggregate_type, p_instance_id, v_n);
  ELSE
    UPDATE streams SET version = v_cur + v_n WHERE stream = p_stream;
  END IF;
  RETURN QUERY
  INSERT INTO events (stream, seq, event_id, event_type, data, metadata, ts_ms)
  SELECT p_stream, v_cur + t.ord, t.id, t.ty, t.da, COALESCE(t.me, '{}'), t.ts
  FROM unnest(p_ids, p_types, p_data, p_meta, p_ts) WITH ORDINALITY AS t(id, ty, da, me, ts, ord)
  ORDER BY t.ord
  RETURNING seq, global_seq;
END $$;
