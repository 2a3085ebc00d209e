-- evstore migration 0001: the schema, its version table, the streams and
-- events tables, and the append function.
--
-- Apply as the (non-superuser) owner of the database, in one transaction:
--   psql -v ON_ERROR_STOP=1 [-v schema=NAME] -f sql/0001_create_schema.sql
-- The schema defaults to "evstore". `evstore migrate` applies the same file.
-- Applying it a second time is refused with a message; nothing changes.

\if :{?schema}
\else
\set schema evstore
\endif
\set ON_ERROR_STOP on

BEGIN;

CREATE SCHEMA IF NOT EXISTS :"schema";
SET LOCAL search_path TO :"schema", pg_catalog;

DO $$
BEGIN
	IF to_regclass('schema_version') IS NOT NULL THEN
		RAISE EXCEPTION 'evstore migration 0001 is already applied to schema "%"',
			current_schema()
			USING ERRCODE = 'EVS02',
			HINT = 'nothing was changed; see "SELECT * FROM schema_version"';
	END IF;
END
$$;

-- One row per applied migration. The library refuses to open a schema
-- whose highest version is not the one it was built for.
CREATE TABLE schema_version (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
);

-- One row per stream: its current version, and the row lock that
-- serialises appends to it.
CREATE TABLE streams (
	stream_id  text COLLATE "C" PRIMARY KEY
		CONSTRAINT streams_stream_id_check
		CHECK (octet_length(stream_id) BETWEEN 1 AND 255
		       AND stream_id !~ '[\u0001-\u001f\u007f-\u009f]'),
	version    bigint NOT NULL CHECK (version >= 0),
	created_at timestamptz NOT NULL DEFAULT now()
);

-- The events. Every key starts with stream_id, so the table can be
-- distributed by stream. transaction_id lets an "all events" reader stop
-- below the oldest running transaction and never skip a late commit.
CREATE TABLE events (
	stream_id       text COLLATE "C" NOT NULL,
	version         bigint NOT NULL CHECK (version >= 0),
	global_position bigint GENERATED ALWAYS AS IDENTITY,
	transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
	event_id        uuid NOT NULL,
	type            text NOT NULL
		CHECK (octet_length(type) BETWEEN 1 AND 255),
	data            jsonb NOT NULL,
	metadata        jsonb
		CHECK (metadata IS NULL OR jsonb_typeof(metadata) = 'object'),
	recorded_at     timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT events_pkey PRIMARY KEY (stream_id, version),
	CONSTRAINT events_event_id_key UNIQUE (stream_id, event_id)
);

CREATE INDEX events_transaction_position
	ON events (transaction_id, global_position);

-- append_events: how events get in (the library sends the same
-- compare-and-set UPDATE and INSERT as one statement instead, for an exact
-- version, when the role holds README's optional grants). One call is one
-- round trip and one transaction:
--   * an exact expected version (-1 for a new stream) moves the stream row
--     with a compare-and-set UPDATE (or INSERT ... ON CONFLICT DO NOTHING
--     for -1), which takes the row lock: a concurrent writer waits, then
--     sees the new version and matches nothing;
--   * -2 (any version) and -3 (stream exists) skip the comparison;
--   * on a mismatch, a fresh statement reads the true version (under READ
--     COMMITTED it sees what the winner committed) and the batch is
--     checked for an idempotent replay of events already stored;
--   * the events go in with one INSERT ... SELECT FROM unnest(...).
-- Returns status 0 (appended), 1 (replay: already stored, nothing done) or
-- 2 (conflict: nothing done), and the version of the batch's last event,
-- or the stream's true version (-1 when it has none) on a conflict.
-- A reused event id fails on events_event_id_key (SQLSTATE 23505).
CREATE FUNCTION append_events(
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
		UPDATE streams s SET version = s.version + n
		 WHERE s.stream_id = p_stream_id AND s.version = p_expected
		RETURNING s.version INTO v_new;
	ELSIF p_expected = -1 THEN
		INSERT INTO streams AS s (stream_id, version)
		VALUES (p_stream_id, n - 1)
		ON CONFLICT (stream_id) DO NOTHING
		RETURNING s.version INTO v_new;
	ELSE
		-- Any version, or the stream must exist: first, is this batch
		-- already stored, anywhere in the stream?
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
		UPDATE streams s SET version = s.version + n
		 WHERE s.stream_id = p_stream_id
		RETURNING s.version INTO v_new;
		IF v_new IS NULL AND p_expected = -3 THEN
			status := 2;
			version := -1;
			RETURN;
		END IF;
		IF v_new IS NULL THEN
			INSERT INTO streams AS s (stream_id, version)
			VALUES (p_stream_id, n - 1)
			ON CONFLICT (stream_id) DO UPDATE
			   SET version = s.version + n
			RETURNING s.version INTO v_new;
		END IF;
	END IF;

	IF v_new IS NULL THEN
		-- A mismatch. This statement takes a fresh snapshot: it sees
		-- the version the winner committed, not the caller's.
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
		RETURN;
	END IF;

	INSERT INTO events (stream_id, version, event_id, type, data, metadata)
	SELECT p_stream_id, v_new - n + b.o, b.id, b.t, b.d, b.m
	  FROM unnest(p_event_ids, p_types, p_data, p_metadata)
	       WITH ORDINALITY AS b(id, t, d, m, o);
	status := 0;
	version := v_new;
END
$fn$;

-- Callers get EXECUTE through an explicit grant only (see README).
REVOKE ALL ON FUNCTION append_events(text, bigint, uuid[], text[], jsonb[],
	jsonb[]) FROM PUBLIC;

INSERT INTO schema_version (version, name) VALUES (1, '0001_create_schema');

COMMIT;
