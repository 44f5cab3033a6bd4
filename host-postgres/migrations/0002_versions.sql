-- evfold-postgres migration 2: schema evolution. Each event keeps the schema version of its type
-- it was written at (1 for every event written before); snapshots and checkpoints keep the
-- version of the code that wrote them (NULL reads as "1"), so a mismatch refolds instead of
-- trusting an old state. append() takes the versions as a tenth array.
ALTER TABLE evfold.events ADD COLUMN schema_version int NOT NULL DEFAULT 1;
ALTER TABLE evfold.snapshots ADD COLUMN writer text;
ALTER TABLE evfold.checkpoints ADD COLUMN writer text;

DROP FUNCTION evfold.append(text, text, text, bigint, text[], text[], jsonb[], jsonb[], bigint[]);

-- As in migration 1 (the lock comment there holds), with p_versions.
CREATE FUNCTION evfold.append(p_stream text, p_aggregate_type text, p_instance_id text,
    p_expected bigint, p_ids text[], p_types text[], p_data jsonb[], p_meta jsonb[], p_ts bigint[],
    p_versions int[])
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
  INSERT INTO events (stream, seq, event_id, event_type, data, metadata, ts_ms, schema_version)
  SELECT p_stream, v_cur + t.ord, t.id, t.ty, t.da, COALESCE(t.me, '{}'), t.ts, COALESCE(t.ve, 1)
  FROM unnest(p_ids, p_types, p_data, p_meta, p_ts, p_versions) WITH ORDINALITY AS t(id, ty, da, me, ts, ve, ord)
  ORDER BY t.ord
  RETURNING seq, global_seq;
END $$;
