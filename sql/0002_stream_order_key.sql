-- evstore migration 0002: a per-stream order key for the all-events feed,
-- and an import path that keeps each event's recorded time.
--
-- Apply as the owner of the schema, after 0001, in one transaction:
--   psql -v ON_ERROR_STOP=1 [-v schema=NAME] -f sql/0002_stream_order_key.sql
-- `evstore migrate` applies the same file. Applying it a second time, or
-- before 0001, is refused with a message; nothing changes.
--
-- Why: an all-events reader orders events by (transaction_id,
-- global_position) and stops below the oldest running transaction. With
-- transaction_id = the writer's own transaction id, a writer that took its
-- id before it locked the stream (a batch, or a caller's own transaction)
-- could sort after a younger writer's later versions of the same stream.
-- From now on every path that moves a stream sets, under the stream's row
-- lock, key = greatest(its own transaction id, the stream's last key), and
-- stores that key in events.transaction_id: never below the writer's own id
-- (the reader's fence stays exact) and never going down within a stream
-- (a stream's events stay in version order in the feed).
--
-- Cost of applying it: streams gets a column (no table rewrite), then every
-- stream row is updated once from one pass over events; appends and
-- version reads wait for it (the ALTER TABLE locks streams until COMMIT).
-- Existing events are not changed: the feed keeps their order. Apply it as
-- the role that applied 0001 (it refuses otherwise).

\if :{?schema}
\else
\set schema evstore
\endif
\set ON_ERROR_STOP on

BEGIN;

SET LOCAL search_path TO :"schema", pg_catalog;
-- The name, for the messages below (current_schema() is not it when the
-- schema does not exist).
SET LOCAL evstore.migrating_schema TO :'schema';

DO $$
DECLARE
	have integer;
	name text := current_setting('evstore.migrating_schema');
BEGIN
	IF to_regclass('schema_version') IS NULL THEN
		RAISE EXCEPTION 'evstore migration 0002 needs 0001 first: schema "%" holds no evstore tables',
			name
			USING ERRCODE = 'EVS01',
			HINT = 'apply sql/0001_create_schema.sql first';
	END IF;
	SELECT max(version) INTO have FROM schema_version;
	IF have >= 2 THEN
		RAISE EXCEPTION 'evstore migration 0002 is already applied to schema "%"',
			name
			USING ERRCODE = 'EVS02',
			HINT = 'nothing was changed; see "SELECT * FROM schema_version"';
	END IF;
	IF have IS DISTINCT FROM 1 THEN
		RAISE EXCEPTION 'evstore migration 0002 needs 0001 first: schema "%" is at version %',
			name, coalesce(have, 0)
			USING ERRCODE = 'EVS01';
	END IF;
	-- The functions below run as their owner (SECURITY DEFINER) and call
	-- each other: they must all have 0001's owner, so this file runs as
	-- that role, as 0001 did.
	IF (SELECT proowner FROM pg_proc
	     WHERE oid = 'append_events(text, bigint, uuid[], text[], jsonb[], jsonb[])'::regprocedure)
	   IS DISTINCT FROM (SELECT oid FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'evstore migration 0002 must be applied by the owner of schema "%"''s objects (role %), not by %',
			name,
			(SELECT pg_get_userbyid(proowner) FROM pg_proc
			  WHERE oid = 'append_events(text, bigint, uuid[], text[], jsonb[], jsonb[])'::regprocedure),
			current_user
			USING ERRCODE = 'EVS03',
			HINT = 'nothing was changed; connect as that role (psql -U, or evstore migrate --dsn "user=...")';
	END IF;
END
$$;

-- The key of the stream's last event. Only the append functions (and,
-- for roles with README's optional grants, the library's one-statement
-- append) write it, always under the stream's row lock.
ALTER TABLE streams ADD COLUMN last_key xid8 NOT NULL DEFAULT '0';

UPDATE streams s SET last_key = m.k
  FROM (SELECT stream_id, max(transaction_id) AS k FROM events
         GROUP BY stream_id) AS m
 WHERE m.stream_id = s.stream_id;

COMMENT ON COLUMN streams.last_key IS
	'order key of the stream''s last event: events.transaction_id of new events is greatest(writer''s transaction id, last_key)';
COMMENT ON COLUMN events.transaction_id IS
	'order key: at or above the writing transaction''s id, never below an earlier event of the same stream; the all-events feed reads (transaction_id, global_position) below pg_snapshot_xmin(pg_current_snapshot())';

-- What a batch that matched nothing is: an idempotent replay of events
-- already stored right after p_expected (status 1, version of its last
-- event), or a conflict (status 2, the stream's true version; -1 when it
-- has none). A fresh statement, so under READ COMMITTED it sees what the
-- writer we waited for committed. Shared by append_events and
-- import_events; callers hold EXECUTE through them only.
CREATE FUNCTION append_mismatch(
	p_stream_id text,
	p_expected  bigint,
	p_event_ids uuid[],
	OUT status  integer,
	OUT version bigint)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
	n    integer := cardinality(p_event_ids);
	v_at bigint;
BEGIN
	SELECT s.version INTO v_at FROM streams s
	 WHERE s.stream_id = p_stream_id;
	v_at := coalesce(v_at, -1);
	IF p_expected + n <= v_at AND NOT EXISTS (
		SELECT 1 FROM unnest(p_event_ids) WITH ORDINALITY AS b(id, o)
		 WHERE NOT EXISTS (
			SELECT 1 FROM events e
			 WHERE e.stream_id = p_stream_id
			   AND e.version = p_expected + b.o
			   AND e.event_id = b.id)) THEN
		status := 1;
		version := p_expected + n;
		RETURN;
	END IF;
	status := 2;
	version := v_at;
END
$fn$;

REVOKE ALL ON FUNCTION append_mismatch(text, bigint, uuid[]) FROM PUBLIC;

-- append_events, as in 0001 (same arguments, results and grants), with
-- the order key: every statement that moves the stream row also sets
-- last_key and returns it, and the events are stored with it.
CREATE OR REPLACE FUNCTION append_events(
	p_stream_id text,
	p_expected  bigint,
	p_event_ids uuid[],
	p_types     text[],
	p_data      jsonb[],
	p_metadata  jsonb[],
	OUT status  integer,
	OUT version bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
	n       integer := cardinality(p_event_ids);
	v_new   bigint;
	v_at    bigint;
	v_key   xid8;
BEGIN
	IF n IS NULL OR n = 0 OR cardinality(p_types) <> n
	   OR cardinality(p_data) <> n OR cardinality(p_metadata) <> n THEN
		RAISE EXCEPTION 'append_events needs 1 or more events, with as many types, data and metadata'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_expected < -3 THEN
		RAISE EXCEPTION 'expected version % is not valid', p_expected
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	IF p_expected >= 0 THEN
		UPDATE streams s SET version = s.version + n,
		       last_key = greatest(pg_current_xact_id(), s.last_key)
		 WHERE s.stream_id = p_stream_id AND s.version = p_expected
		RETURNING s.version, s.last_key INTO v_new, v_key;
	ELSIF p_expected = -1 THEN
		INSERT INTO streams AS s (stream_id, version, last_key)
		VALUES (p_stream_id, n - 1, pg_current_xact_id())
		ON CONFLICT (stream_id) DO NOTHING
		RETURNING s.version, s.last_key INTO v_new, v_key;
	ELSE
		-- Any version, or the stream must exist: first, is this batch
		-- already stored, anywhere in the stream? (A retry that raced
		-- its original past this check fails on events_event_id_key;
		-- the library then asks again, and lands here.)
		SELECT e.version INTO v_at FROM events e
		 WHERE e.stream_id = p_stream_id AND e.event_id = p_event_ids[1];
		IF FOUND AND NOT EXISTS (
			SELECT 1 FROM unnest(p_event_ids) WITH ORDINALITY AS b(id, o)
			 WHERE NOT EXISTS (
				SELECT 1 FROM events e
				 WHERE e.stream_id = p_stream_id
				   AND e.version = v_at + b.o - 1
				   AND e.event_id = b.id)) THEN
			status := 1;
			version := v_at + n - 1;
			RETURN;
		END IF;
		UPDATE streams s SET version = s.version + n,
		       last_key = greatest(pg_current_xact_id(), s.last_key)
		 WHERE s.stream_id = p_stream_id
		RETURNING s.version, s.last_key INTO v_new, v_key;
		IF v_new IS NULL AND p_expected = -3 THEN
			status := 2;
			version := -1;
			RETURN;
		END IF;
		IF v_new IS NULL THEN
			INSERT INTO streams AS s (stream_id, version, last_key)
			VALUES (p_stream_id, n - 1, pg_current_xact_id())
			ON CONFLICT (stream_id) DO UPDATE
			   SET version = s.version + n,
			       last_key = greatest(pg_current_xact_id(), s.last_key)
			RETURNING s.version, s.last_key INTO v_new, v_key;
		END IF;
	END IF;

	IF v_new IS NULL THEN
		SELECT m.status, m.version INTO status, version
		  FROM append_mismatch(p_stream_id, p_expected, p_event_ids) AS m;
		RETURN;
	END IF;

	INSERT INTO events (stream_id, version, event_id, type, data, metadata,
	                    transaction_id)
	SELECT p_stream_id, v_new - n + b.o, b.id, b.t, b.d, b.m, v_key
	  FROM unnest(p_event_ids, p_types, p_data, p_metadata)
	       WITH ORDINALITY AS b(id, t, d, m, o);
	status := 0;
	version := v_new;
END
$fn$;

-- import_events: a restore. Like append_events at an exact expected
-- version (-1 for a new stream; a replay of events already stored is
-- status 1, as there), but each event keeps the recorded time it is given
-- (p_recorded_at, as many as events) instead of the server's clock.
-- Applications cannot back-date events: EXECUTE is for the schema's owner
-- and whoever the DBA grants it to (README, "Restoring an export").
CREATE FUNCTION import_events(
	p_stream_id   text,
	p_expected    bigint,
	p_event_ids   uuid[],
	p_types       text[],
	p_data        jsonb[],
	p_metadata    jsonb[],
	p_recorded_at timestamptz[],
	OUT status    integer,
	OUT version   bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
	n       integer := cardinality(p_event_ids);
	v_new   bigint;
	v_key   xid8;
BEGIN
	IF n IS NULL OR n = 0 OR cardinality(p_types) <> n
	   OR cardinality(p_data) <> n OR cardinality(p_metadata) <> n
	   OR cardinality(p_recorded_at) <> n THEN
		RAISE EXCEPTION 'import_events needs 1 or more events, with as many types, data, metadata and recorded times'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_expected < -1 OR array_position(p_recorded_at, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'import_events needs an exact expected version (-1 or more) and a recorded time for every event'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	IF p_expected >= 0 THEN
		UPDATE streams s SET version = s.version + n,
		       last_key = greatest(pg_current_xact_id(), s.last_key)
		 WHERE s.stream_id = p_stream_id AND s.version = p_expected
		RETURNING s.version, s.last_key INTO v_new, v_key;
	ELSE
		INSERT INTO streams AS s (stream_id, version, last_key)
		VALUES (p_stream_id, n - 1, pg_current_xact_id())
		ON CONFLICT (stream_id) DO NOTHING
		RETURNING s.version, s.last_key INTO v_new, v_key;
	END IF;

	IF v_new IS NULL THEN
		SELECT m.status, m.version INTO status, version
		  FROM append_mismatch(p_stream_id, p_expected, p_event_ids) AS m;
		RETURN;
	END IF;

	INSERT INTO events (stream_id, version, event_id, type, data, metadata,
	                    transaction_id, recorded_at)
	SELECT p_stream_id, v_new - n + b.o, b.id, b.t, b.d, b.m, v_key, b.r
	  FROM unnest(p_event_ids, p_types, p_data, p_metadata, p_recorded_at)
	       WITH ORDINALITY AS b(id, t, d, m, r, o);
	status := 0;
	version := v_new;
END
$fn$;

REVOKE ALL ON FUNCTION import_events(text, bigint, uuid[], text[], jsonb[],
	jsonb[], timestamptz[]) FROM PUBLIC;

-- Only the owner executes these two: revoke what default privileges
-- (ALTER DEFAULT PRIVILEGES ... GRANT EXECUTE ON FUNCTIONS) may have given
-- anyone else when they were created. A DBA grants import_events to a
-- restoring role afterwards, on purpose.
DO $$
DECLARE
	f regprocedure;
	r record;
BEGIN
	FOREACH f IN ARRAY ARRAY[
		'append_mismatch(text, bigint, uuid[])'::regprocedure,
		'import_events(text, bigint, uuid[], text[], jsonb[], jsonb[], timestamptz[])'::regprocedure]
	LOOP
		FOR r IN SELECT DISTINCT a.grantee FROM pg_proc p,
		         aclexplode(p.proacl) AS a
		         WHERE p.oid = f AND a.grantee <> p.proowner
		           AND a.grantee <> 0 LOOP
			EXECUTE format('REVOKE ALL ON FUNCTION %s FROM %I', f,
			               pg_get_userbyid(r.grantee));
		END LOOP;
	END LOOP;
END
$$;

INSERT INTO schema_version (version, name) VALUES (2, '0002_stream_order_key');

COMMIT;
