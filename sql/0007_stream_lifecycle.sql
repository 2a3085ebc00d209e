-- evstore migration 0007: stream lifecycle and snapshots. A stream can
-- be deleted (soft: its history stays, and undelete brings it back; hard:
-- its events are removed), and every such change is an event too; an
-- aggregate's state can be kept as a snapshot, so that loading it reads
-- only the events after that.
--
--   * streams gains deleted_at and hard_deleted. A deleted stream takes
--     no appends (status 4, "deleted", on every append path; a replay of
--     events it already holds is still a replay) and the library refuses
--     to read it (EVS_EDELETED).
--   * delete_stream() and undelete_stream(): the lifecycle functions.
--     Each takes an expected version (-2: any), as an append does, locks
--     the stream's row, logs itself in lifecycle_log (who, when, what,
--     which version: sql/0006), and appends a marker event, in the same
--     transaction:
--       - to the stream itself: "$deleted" (data {"hard": ...}) or
--         "$undeleted" (data {}), at the stream's next version, so the
--         stream's readers and category feeds see it;
--       - to the system stream "$lifecycle": "$deleted" or "$undeleted",
--         data {"hard", "reuse", "stream", "version"}, so a reader of all
--         events sees every change, also one that leaves nothing in the
--         stream (a hard delete that lets the id start again).
--     A hard delete removes the stream's events (and keeps the stream
--     refused, with its "$deleted" marker as its only event), or, with
--     p_reuse, removes the stream row and marker too, so that the id
--     starts again at version 0.
--   * truncation and retention: streams gains truncate_before, max_count
--     and max_age; truncate_stream() and set_retention() set them (at an
--     expected version, logged, with a "$truncated" or "$retention" event
--     in "$lifecycle"), refused unless a snapshot covers the cut (or
--     forced); stream reads start at the retained suffix at once
--     (stream_start()), and scavenge() removes the released events in
--     small transactions later.
--   * snapshots: one row per stream, kind (the aggregate type's name) and
--     format (its snapshot format's version), the newest only: written
--     by store_snapshot(), which never puts an older snapshot over a
--     newer one nor one of a version the stream does not have. A hard
--     delete removes the stream's snapshots.
--   * Stream ids and event types starting with "$" belong to evstore:
--     a new stream or an event with one is refused (SQLSTATE 23514)
--     unless the transaction logged a lifecycle change (the functions
--     below, and import_events()/import_many(), which log a restore of
--     system events). Streams made before this migration keep their ids.
--
-- Only the owner executes the lifecycle functions; a DBA grants EXECUTE
-- on them to a role that may delete streams (README, "Deleting streams"),
-- and on store_snapshot() to applications that keep snapshots.
-- Roles holding README's optional one-statement grants are given SELECT
-- on the new column, which that statement now reads.
--
-- Apply as the owner of the schema (the role that applied 0001), after
-- 0006, in one transaction:
--   psql -v ON_ERROR_STOP=1 [-v schema=NAME] -f sql/0007_stream_lifecycle.sql
-- `evstore migrate` applies the same file. Applying it a second time, or
-- out of order, is refused with a message; nothing changes. Quick: it
-- reads no events (appends wait for it briefly).

\if :{?schema}
\else
\set schema evstore
\endif
\set ON_ERROR_STOP on

BEGIN;

SET LOCAL search_path TO :"schema", pg_catalog;
SET LOCAL evstore.migrating_schema TO :'schema';

DO $$
DECLARE
	have integer;
	name text := current_setting('evstore.migrating_schema');
BEGIN
	IF to_regclass('schema_version') IS NULL THEN
		RAISE EXCEPTION 'evstore migration 0007 needs 0001 to 0006 first: schema "%" holds no evstore tables',
			name
			USING ERRCODE = 'EVS01';
	END IF;
	SELECT max(version) INTO have FROM schema_version;
	IF have >= 7 THEN
		RAISE EXCEPTION 'evstore migration 0007 is already applied to schema "%"',
			name
			USING ERRCODE = 'EVS02',
			HINT = 'nothing was changed; see "SELECT * FROM schema_version"';
	END IF;
	IF have IS DISTINCT FROM 6 THEN
		RAISE EXCEPTION 'evstore migration 0007 needs 0006 first: schema "%" is at version %',
			name, coalesce(have, 0)
			USING ERRCODE = 'EVS01';
	END IF;
	IF (SELECT relowner FROM pg_class WHERE oid = 'events'::regclass)
	   IS DISTINCT FROM (SELECT oid FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'evstore migration 0007 must be applied by the owner of schema "%"''s tables (role %), not by %',
			name,
			(SELECT pg_get_userbyid(relowner) FROM pg_class
			  WHERE oid = 'events'::regclass),
			current_user
			USING ERRCODE = 'EVS03',
			HINT = 'nothing was changed; connect as that role';
	END IF;
	IF EXISTS (SELECT 1 FROM streams WHERE stream_id = '$lifecycle') THEN
		RAISE EXCEPTION 'evstore migration 0007 needs the stream id "$lifecycle" for itself, and schema "%" has a stream of that name',
			name
			USING ERRCODE = 'EVS01',
			HINT = 'nothing was changed; export that stream, and delete it by hand (see README, "Stored events never change")';
	END IF;
END
$$;

-- Both tables first, without risking a deadlock with running appends
-- (see sql/0005).
DO $$ BEGIN PERFORM lock_streams_and_events('ACCESS EXCLUSIVE'); END $$;

ALTER TABLE streams
	ADD COLUMN deleted_at timestamptz,
	ADD COLUMN hard_deleted boolean NOT NULL DEFAULT false,
	ADD COLUMN truncate_before bigint NOT NULL DEFAULT 0,
	ADD COLUMN max_count bigint,
	ADD COLUMN max_age interval;
COMMENT ON COLUMN streams.truncate_before IS
	'reads start at this version or later (truncate_stream()); scavenge() removes the events below';
COMMENT ON COLUMN streams.max_count IS
	'reads return at most the last this many events (set_retention(); NULL: no limit)';
COMMENT ON COLUMN streams.max_age IS
	'reads start at the first event recorded this recently (set_retention(); NULL: no limit)';
-- The streams scavenge() looks at: those with a setting (few, and no
-- append changes these columns).
CREATE INDEX streams_retained ON streams (stream_id)
	WHERE truncate_before > 0 OR max_count IS NOT NULL
	      OR max_age IS NOT NULL;
COMMENT ON COLUMN streams.deleted_at IS
	'when the stream was deleted (NULL: it is not): it takes no appends, and the library refuses to read it';
COMMENT ON COLUMN streams.hard_deleted IS
	'deleted with its events: it cannot be undeleted';

-- The one-statement append (README's optional grants) now also reads
-- deleted_at: give it to every role that may use that statement.
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT DISTINCT a.grantee
	           FROM pg_attribute c, aclexplode(c.attacl) AS a
	          WHERE c.attrelid = 'streams'::regclass
	            AND c.attname = 'version'
	            AND a.privilege_type = 'UPDATE' AND a.grantee <> 0 LOOP
		EXECUTE format('GRANT SELECT (deleted_at) ON streams TO %I',
		               pg_get_userbyid(r.grantee));
	END LOOP;
END
$$;

-- The newest snapshot of each stream, kind and format. Derived data: a
-- snapshot may be replaced by a newer one (store_snapshot()), or removed
-- with its stream's events.
CREATE TABLE snapshots (
	stream_id text COLLATE "C" NOT NULL,
	kind      text NOT NULL CHECK (octet_length(kind) <= 255),
	format    integer NOT NULL CHECK (format >= 1),
	version   bigint NOT NULL CHECK (version >= 0),
	data      jsonb NOT NULL,
	taken_at  timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT snapshots_pkey PRIMARY KEY (stream_id, kind, format)
);
REVOKE ALL ON snapshots FROM PUBLIC;
COMMENT ON TABLE snapshots IS
	'the newest snapshot of each stream, kind (aggregate type) and format: the state after its events up to version';

-- "$" names are evstore's. Checked only where a value is written (a new
-- stream's id, an event's type), and "$" is all a valid name is checked
-- for: the log is looked at only for a "$" name.
ALTER DOMAIN valid_stream_id ADD CONSTRAINT valid_stream_id_reserved
	CHECK (left(VALUE, 1) <> '$' OR history_change_logged()) NOT VALID;
ALTER DOMAIN valid_event_type ADD CONSTRAINT valid_event_type_reserved
	CHECK (left(VALUE, 1) <> '$' OR history_change_logged()) NOT VALID;

-- What a single append that matched nothing is (sql/0002): a replay
-- (status 1), the stream deleted (status 4, its version), or a conflict
-- (status 2). A replay of events stored before the deletion is still a
-- replay: the original call succeeded.
CREATE OR REPLACE FUNCTION append_mismatch(
	p_stream_id text,
	p_expected  bigint,
	p_event_ids uuid[],
	OUT status  integer,
	OUT version bigint)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
	n     integer := cardinality(p_event_ids);
	v_at  bigint;
	v_del boolean;
BEGIN
	SELECT s.version, s.deleted_at IS NOT NULL INTO v_at, v_del
	  FROM streams s WHERE s.stream_id = p_stream_id;
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
	status := CASE WHEN v_del THEN 4 ELSE 2 END;
	version := v_at;
END
$fn$;

-- append_events, as in 0002, refusing deleted streams (status 4).
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
		   AND s.deleted_at IS NULL
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
		 WHERE s.stream_id = p_stream_id AND s.deleted_at IS NULL
		RETURNING s.version, s.last_key INTO v_new, v_key;
		IF v_new IS NULL AND p_expected = -2 THEN
			INSERT INTO streams AS s (stream_id, version, last_key)
			VALUES (p_stream_id, n - 1, pg_current_xact_id())
			ON CONFLICT (stream_id) DO UPDATE
			   SET version = s.version + n,
			       last_key = greatest(pg_current_xact_id(), s.last_key)
			 WHERE s.deleted_at IS NULL
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

-- Logs, once per transaction, that a restore writes system ("$") names:
-- the import functions are the owner's, and a restore of an export that
-- holds lifecycle events must be able to write them back.
CREATE FUNCTION log_system_import(p_stream_ids text[], p_types text[])
RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
	IF NOT history_change_logged() AND (
	   EXISTS (SELECT 1 FROM unnest(p_stream_ids) AS u(s)
	            WHERE left(u.s, 1) = '$')
	   OR EXISTS (SELECT 1 FROM unnest(p_types) AS u(t)
	               WHERE left(u.t, 1) = '$')) THEN
		INSERT INTO lifecycle_log (operation, detail)
		VALUES ('import', '{"why": "a restore writes system events"}');
	END IF;
END
$fn$;

-- import_events, as in 0002, refusing deleted streams (status 4) and
-- logging a restore of "$" names.
CREATE OR REPLACE FUNCTION import_events(
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
	PERFORM log_system_import(ARRAY[p_stream_id], p_types);

	IF p_expected >= 0 THEN
		UPDATE streams s SET version = s.version + n,
		       last_key = greatest(pg_current_xact_id(), s.last_key)
		 WHERE s.stream_id = p_stream_id AND s.version = p_expected
		   AND s.deleted_at IS NULL
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

-- append_many_core, as in 0004, with a status for deleted streams:
--   4 deleted           the stream is deleted; version: its version
-- (a replay of events it holds is still status 1).
CREATE OR REPLACE FUNCTION append_many_core(
	p_stream_ids  text[],
	p_expected    bigint[],
	p_counts      integer[],
	p_event_ids   uuid[],
	p_types       text[],
	p_data        jsonb[],
	p_metadata    jsonb[],
	p_recorded_at timestamptz[],
	p_atomic      boolean,
	p_lock_wait_ms integer)
RETURNS TABLE (item integer, status integer, version bigint, event_id uuid)
LANGUAGE plpgsql
SET search_path FROM CURRENT
-- Every table access here is by key. The plans are made once per session
-- (generic), possibly while the tables are empty; without this a plan
-- made then (a scan of all events per call) stays while they grow.
SET enable_seqscan TO off
AS $fn$
DECLARE
	m        integer := cardinality(p_stream_ids);
	n_all    integer := cardinality(p_event_ids);
	starts   integer[];
	st       integer[];
	ver      bigint[];
	dup      uuid[];
	keys     xid8[];
	order_   integer[];
	created  text[] := '{}';
	sum_c    bigint;
	min_c    integer;
	min_e    bigint;
	n_distinct bigint;
	n_null   bigint;
	i        integer;
	pos      integer;
	lo       integer := 1;
	s        text;
	prev_s   text;
	e        bigint;
	n        integer;
	ids      uuid[];
	tcur     bigint;   -- the stream's version in the table (-1: none)
	pend     uuid[];   -- ids the call's earlier items add after tcur
	skey     xid8;
	key_     xid8;
	from_v   bigint;
	v_at     bigint;
	found_n  integer;
	dup_id   uuid;
	ok       boolean;
	failed   boolean := false;
	tries    integer;
	is_new   boolean;
	sdel     boolean;  -- the stream is deleted (sql/0007)
BEGIN
	-- The arguments' shape, in one statement: sums, minimums and NULLs.
	SELECT sum(u.c), min(u.c), min(u.e), count(DISTINCT u.sid),
	       count(*) FILTER (WHERE u.sid IS NULL OR u.e IS NULL)
	  INTO sum_c, min_c, min_e, n_distinct, n_null
	  FROM unnest(p_stream_ids, p_expected, p_counts) AS u(sid, e, c);
	IF m IS NULL OR m = 0 OR cardinality(p_expected) IS DISTINCT FROM m
	   OR cardinality(p_counts) IS DISTINCT FROM m
	   OR n_all IS NULL OR cardinality(p_types) <> n_all
	   OR cardinality(p_data) <> n_all OR cardinality(p_metadata) <> n_all
	   OR (p_recorded_at IS NOT NULL AND cardinality(p_recorded_at) <> n_all)
	   OR sum_c IS DISTINCT FROM n_all OR min_c < 1 OR n_null > 0
	   OR array_position(p_counts, NULL) IS NOT NULL
	   OR array_position(p_event_ids, NULL) IS NOT NULL
	   OR min_e < -3 THEN
		RAISE EXCEPTION 'append_many needs 1 or more items, each with a stream id, an expected version (-3 or more) and 1 or more events, and as many event ids, types, data and metadata as the items'' counts add up to'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_recorded_at IS NOT NULL
	   AND (array_position(p_recorded_at, NULL) IS NOT NULL OR min_e < -1) THEN
		RAISE EXCEPTION 'import_many needs an exact expected version (-1 or more) and a recorded time for every event'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF p_lock_wait_ms > 0 THEN
		PERFORM set_config('lock_timeout', p_lock_wait_ms || 'ms', true);
	END IF;

	starts := array_fill(0, ARRAY[m]);
	st := array_fill(NULL::integer, ARRAY[m]);
	ver := array_fill(NULL::bigint, ARRAY[m]);
	dup := array_fill(NULL::uuid, ARRAY[m]);
	keys := array_fill(NULL::xid8, ARRAY[m]);
	FOR j IN 1 .. m LOOP
		starts[j] := lo;
		lo := lo + p_counts[j];
	END LOOP;
	-- The common case in four statements, whatever the number of items:
	-- every item at an exact version of a stream that has events, each
	-- stream once. Lock every row in byte order, matching only at the
	-- expected versions; no id stored already; then write. Anything else
	-- (a mismatch, a sentinel, a new stream, a stream twice, an id
	-- already there) goes through the item-by-item path below, which
	-- finds these rows locked already.
	--
	-- Every row is locked only when every stream exists (checked first,
	-- without locks; a stream row is never deleted once committed):
	-- holding some rows while the path below creates a missing one
	-- earlier in the order could wait in a cycle with another call.
	IF min_e >= 0 AND n_distinct = m
	   AND (SELECT count(*) FROM streams x
	         WHERE x.stream_id = ANY (p_stream_ids)) = m THEN
		-- Lock every row in byte order; count those at their item's
		-- expected version (after a wait, the committed version).
		SELECT count(*) INTO found_n
		  FROM (SELECT x.stream_id, x.version, x.deleted_at FROM streams x
		         WHERE x.stream_id = ANY (p_stream_ids)
		         ORDER BY x.stream_id FOR UPDATE) AS l
		  JOIN unnest(p_stream_ids, p_expected) AS u(sid, e)
		    ON l.stream_id = u.sid AND l.version = u.e
		   AND l.deleted_at IS NULL;
		-- No id of the call stored already: each event's stream (an
		-- array), joined with the ids on the events' unique key, one
		-- index probe per event.
		IF found_n = m AND NOT EXISTS (
			WITH s AS (
				SELECT array_agg(u.sid ORDER BY u.o, g.k) AS a
				  FROM unnest(p_stream_ids, p_counts)
				       WITH ORDINALITY AS u(sid, c, o),
				       generate_series(1, u.c) AS g(k))
			SELECT 1 FROM s, unnest(s.a, p_event_ids) AS u(sid, id)
			  JOIN events x ON x.stream_id = u.sid
			   AND x.event_id = u.id) THEN
			WITH up AS (
				UPDATE streams x SET version = u.e + u.c,
				       last_key = greatest(pg_current_xact_id(),
				                           x.last_key)
				  FROM unnest(p_stream_ids, p_expected, p_counts)
				       AS u(sid, e, c)
				 WHERE x.stream_id = ANY (p_stream_ids)
				   AND x.stream_id = u.sid
				RETURNING x.stream_id, x.last_key)
			INSERT INTO events (stream_id, version, event_id, type,
			                    data, metadata, transaction_id,
			                    recorded_at)
			SELECT u.sid, u.e + g.k, ev.id, ev.t, ev.d, ev.m,
			       up.last_key, coalesce(ev.r, now())
			  FROM unnest(p_stream_ids, p_expected, p_counts, starts)
			       WITH ORDINALITY AS u(sid, e, c, st, o)
			  JOIN up ON up.stream_id = u.sid
			 CROSS JOIN LATERAL generate_series(1, u.c) AS g(k)
			  JOIN unnest(p_event_ids, p_types, p_data, p_metadata,
			              p_recorded_at)
			       WITH ORDINALITY AS ev(id, t, d, m, r, pos)
			    ON ev.pos = u.st + g.k - 1
			 ORDER BY u.o, g.k;
			RETURN QUERY
			SELECT u.o::integer, 0, u.e + u.c, NULL::uuid
			  FROM unnest(p_expected, p_counts) WITH ORDINALITY
			       AS u(e, c, o)
			 ORDER BY u.o;
			RETURN;
		END IF;
	END IF;

	SELECT array_agg(o::integer ORDER BY sid COLLATE "C", o) INTO order_
	  FROM unnest(p_stream_ids) WITH ORDINALITY AS t(sid, o);

	-- Phase 1: lock (or create) each stream's row, in byte order, and
	-- check its items in their order.
	FOREACH i IN ARRAY order_ LOOP
		s := p_stream_ids[i];
		e := p_expected[i];
		n := p_counts[i];
		ids := p_event_ids[starts[i] : starts[i] + n - 1];
		IF s IS DISTINCT FROM prev_s THEN
			prev_s := s;
			pend := '{}';
			tries := 0;
			is_new := false;
			LOOP
				tries := tries + 1;
				SELECT x.version, x.last_key, x.deleted_at IS NOT NULL
				  INTO tcur, skey, sdel
				  FROM streams x WHERE x.stream_id = s FOR UPDATE;
				EXIT WHEN FOUND;
				tcur := -1;
				skey := '0';
				sdel := false;
				INSERT INTO streams AS x (stream_id, version, last_key)
				VALUES (s, 0, '0')
				ON CONFLICT (stream_id) DO NOTHING;
				IF FOUND THEN
					is_new := true;
					created := created || s;
					EXIT;
				END IF;
				-- Created by another session meanwhile: lock that.
				IF tries > 10 THEN
					RAISE EXCEPTION 'stream "%" keeps appearing and vanishing', s
						USING ERRCODE = 'lock_not_available';
				END IF;
			END LOOP;
			key_ := greatest(pg_current_xact_id(), skey);
		END IF;
		keys[i] := key_;

		-- The version the call sees: the table's and its earlier items'.
		-- from_v: where a replay of this item would start, if any.
		from_v := NULL;
		IF e >= -1 AND e <> tcur + cardinality(pend) THEN
			IF e + n <= tcur + cardinality(pend) THEN
				from_v := e + 1;
			ELSE
				st[i] := CASE WHEN sdel THEN 4 ELSE 2 END;
				ver[i] := tcur + cardinality(pend);
				failed := true;
				CONTINUE;
			END IF;
		ELSIF e = -3 AND tcur + cardinality(pend) = -1 THEN
			st[i] := 2;
			ver[i] := -1;
			failed := true;
			CONTINUE;
		ELSIF e < -1 THEN
			-- Any version or existing stream: a replay starts wherever
			-- the item's first id is.
			v_at := NULL;
			pos := array_position(pend, ids[1]);
			IF pos IS NOT NULL THEN
				v_at := tcur + pos;
			ELSIF NOT is_new THEN
				SELECT x.version INTO v_at FROM events x
				 WHERE x.stream_id = s AND x.event_id = ids[1];
			END IF;
			IF v_at IS NOT NULL AND v_at + n - 1 <= tcur + cardinality(pend) THEN
				from_v := v_at;
			END IF;
		END IF;

		IF from_v IS NOT NULL THEN
			-- Is every id of the item stored at from_v, from_v + 1, ...?
			ok := true;
			FOR j IN 1 .. n LOOP
				IF from_v + j - 1 > tcur
				   AND pend[from_v + j - 1 - tcur] IS DISTINCT FROM ids[j] THEN
					ok := false;
					EXIT;
				END IF;
			END LOOP;
			IF ok AND from_v <= tcur AND NOT is_new THEN
				SELECT count(*) INTO found_n
				  FROM unnest(ids) WITH ORDINALITY AS b(id, o)
				  JOIN events x ON x.stream_id = s
				   AND x.version = from_v + b.o - 1 AND x.event_id = b.id
				 WHERE from_v + b.o - 1 <= tcur;
				ok := found_n = least(from_v + n - 1, tcur) - from_v + 1;
			END IF;
			IF ok THEN
				st[i] := 1;
				ver[i] := from_v + n - 1;
				CONTINUE;
			END IF;
			IF e >= -1 THEN
				st[i] := CASE WHEN sdel THEN 4 ELSE 2 END;
				ver[i] := tcur + cardinality(pend);
				failed := true;
				CONTINUE;
			END IF;
		END IF;

		-- An id stored anywhere else in the stream is a duplicate.
		dup_id := NULL;
		IF ids && pend THEN
			SELECT b.id, tcur + array_position(pend, b.id) INTO dup_id, v_at
			  FROM unnest(ids) AS b(id)
			 WHERE b.id = ANY (pend) LIMIT 1;
		ELSIF tcur >= 0 AND NOT is_new THEN
			SELECT x.event_id, x.version INTO dup_id, v_at FROM events x
			 WHERE x.stream_id = s AND x.event_id = ANY (ids)
			 ORDER BY x.version LIMIT 1;
		END IF;
		IF dup_id IS NOT NULL AND NOT sdel THEN
			st[i] := 3;
			ver[i] := v_at;
			dup[i] := dup_id;
			failed := true;
			CONTINUE;
		END IF;
		-- A deleted stream takes nothing but a replay of what it holds.
		IF sdel THEN
			st[i] := 4;
			ver[i] := tcur;
			failed := true;
			CONTINUE;
		END IF;

		st[i] := 0;
		pend := pend || ids;
		ver[i] := tcur + cardinality(pend);
	END LOOP;

	IF p_atomic AND failed THEN
		IF cardinality(created) > 0 THEN
			DELETE FROM streams x WHERE x.stream_id = ANY (created);
		END IF;
		RETURN QUERY
		SELECT j, CASE WHEN st[j] = 0 THEN 9 ELSE st[j] END,
		       CASE WHEN st[j] = 0 THEN NULL ELSE ver[j] END, dup[j]
		  FROM generate_subscripts(p_stream_ids, 1) AS j ORDER BY j;
		RETURN;
	END IF;

	-- Phase 2. The events' fields come from unnest() joined on their
	-- place, not from subscripts: an array of variable-length values
	-- (text, jsonb) is walked from its start for every subscript, so
	-- p_data[i] for each of n events would cost n^2/2 steps.
	UPDATE streams x SET version = u.v, last_key = u.k
	  FROM (SELECT t.sid, max(t.v) AS v, max(t.k) AS k
	          FROM unnest(p_stream_ids, st, ver, keys) AS t(sid, s2, v, k)
	         WHERE t.s2 = 0 GROUP BY t.sid) AS u
	 WHERE x.stream_id = ANY (p_stream_ids) AND x.stream_id = u.sid;
	IF cardinality(created) > 0 THEN
		-- Rows made in phase 1 for streams that got no events.
		DELETE FROM streams x
		 WHERE x.stream_id = ANY (created) AND NOT EXISTS (
			SELECT 1 FROM unnest(p_stream_ids, st) AS t(sid, s2)
			 WHERE t.sid = x.stream_id AND t.s2 = 0);
	END IF;
	INSERT INTO events (stream_id, version, event_id, type, data, metadata,
	                    transaction_id, recorded_at)
	SELECT it.sid, it.v - it.c + g.k, ev.id, ev.t, ev.d, ev.m, it.k,
	       coalesce(ev.r, now())
	  FROM unnest(p_stream_ids, p_counts, starts, st, ver, keys)
	       WITH ORDINALITY AS it(sid, c, s0, s2, v, k, j)
	 CROSS JOIN LATERAL generate_series(1, it.c) AS g(k)
	  JOIN unnest(p_event_ids, p_types, p_data, p_metadata, p_recorded_at)
	       WITH ORDINALITY AS ev(id, t, d, m, r, pos)
	    ON ev.pos = it.s0 + g.k - 1
	 WHERE it.s2 = 0
	 ORDER BY it.j, g.k;
	RETURN QUERY
	SELECT j, st[j], ver[j], dup[j]
	  FROM generate_subscripts(p_stream_ids, 1) AS j ORDER BY j;
END
$fn$;

-- import_many, as in 0004, logging a restore of "$" names.
CREATE OR REPLACE FUNCTION import_many(
	p_stream_ids  text[],
	p_expected    bigint[],
	p_counts      integer[],
	p_event_ids   uuid[],
	p_types       text[],
	p_data        jsonb[],
	p_metadata    jsonb[],
	p_recorded_at timestamptz[],
	p_atomic      boolean DEFAULT false)
RETURNS TABLE (item integer, status integer, version bigint, event_id uuid)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
BEGIN
	PERFORM log_system_import(p_stream_ids, p_types);
	RETURN QUERY SELECT * FROM append_many_core(p_stream_ids, p_expected,
		p_counts, p_event_ids, p_types, p_data, p_metadata,
		coalesce(p_recorded_at, '{}'), p_atomic, 0);
END
$fn$;

-- Appends one event of evstore's own (a "$" type) to a stream, under its
-- row lock (made when the stream has none), with the order key every
-- append path uses (sql/0002). The caller has logged the change. Returns
-- the event's version.
CREATE FUNCTION append_system_event(p_stream_id text, p_type text,
                                    p_data jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
	v_new bigint;
	v_key xid8;
BEGIN
	INSERT INTO streams AS s (stream_id, version, last_key)
	VALUES (p_stream_id, 0, pg_current_xact_id())
	ON CONFLICT (stream_id) DO UPDATE
	   SET version = s.version + 1,
	       last_key = greatest(pg_current_xact_id(), s.last_key)
	RETURNING s.version, s.last_key INTO v_new, v_key;
	INSERT INTO events (stream_id, version, event_id, type, data,
	                    transaction_id)
	VALUES (p_stream_id, v_new, gen_random_uuid(), p_type, p_data, v_key);
	RETURN v_new;
END
$fn$;

-- delete_stream: deletes a stream at an expected version (-2: any; -3:
-- the same). Status, and version:
--   0 deleted      the "$deleted" marker's version (-1 with p_reuse)
--   2 conflict     the stream's version (-1: it has none)
--   4 deleted already (a soft delete of a deleted stream, or any delete
--                  of a hard-deleted one): its version
--   5 no such stream (any version): -1
-- Soft (p_hard false): the events stay; the stream takes no appends and
-- reads as deleted until undelete_stream(). Hard: the events are
-- removed in this transaction (a soft-deleted stream may be hard-deleted
-- later); with p_reuse the stream's row and marker go too and the id
-- may start again at version 0. Subscriptions whose checkpoint names a
-- removed event keep their position, without the event's id.
CREATE FUNCTION delete_stream(
	p_stream_id text,
	p_expected  bigint,
	p_hard      boolean DEFAULT false,
	p_reuse     boolean DEFAULT false,
	OUT status  integer,
	OUT version bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
	v_cur  bigint;
	v_del  timestamptz;
	v_hard boolean;
	v_new  bigint;
	n_gone bigint := 0;
	v_log  bigint;
BEGIN
	IF p_stream_id IS NULL OR p_expected IS NULL OR p_expected = -1
	   OR p_expected < -3 OR p_hard IS NULL OR p_reuse IS NULL
	   OR (p_reuse AND NOT p_hard) THEN
		RAISE EXCEPTION 'delete_stream needs a stream id, an expected version (0 or more, or -2 for any), and p_reuse only with p_hard'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT s.version, s.deleted_at, s.hard_deleted
	  INTO v_cur, v_del, v_hard
	  FROM streams s WHERE s.stream_id = p_stream_id FOR UPDATE;
	IF NOT FOUND THEN
		status := CASE WHEN p_expected >= 0 THEN 2 ELSE 5 END;
		version := -1;
		RETURN;
	END IF;
	IF v_hard OR (v_del IS NOT NULL AND NOT p_hard) THEN
		status := 4;
		version := v_cur;
		RETURN;
	END IF;
	IF p_expected >= 0 AND p_expected <> v_cur THEN
		status := 2;
		version := v_cur;
		RETURN;
	END IF;

	INSERT INTO lifecycle_log (operation, stream_id, expected_version,
	                           detail)
	VALUES (CASE WHEN p_hard THEN 'hard-delete' ELSE 'delete' END,
	        p_stream_id, p_expected,
	        jsonb_build_object('version', v_cur, 'hard', p_hard,
	                           'reuse', p_reuse))
	RETURNING id INTO v_log;
	IF p_hard THEN
		DELETE FROM snapshots sn WHERE sn.stream_id = p_stream_id;
		WITH gone AS (
			DELETE FROM events e WHERE e.stream_id = p_stream_id
			RETURNING e.transaction_id, e.global_position, e.event_id),
		fix AS (
			UPDATE subscriptions u SET last_event_id = NULL
			  FROM gone g
			 WHERE u.commit_xid = g.transaction_id
			   AND u.position = g.global_position
			   AND u.last_event_id = g.event_id)
		SELECT count(*) INTO n_gone FROM gone;
	END IF;
	IF p_reuse THEN
		DELETE FROM streams s WHERE s.stream_id = p_stream_id;
		v_new := -1;
	ELSE
		v_new := append_system_event(p_stream_id, '$deleted',
			jsonb_build_object('hard', p_hard));
		UPDATE streams s SET deleted_at = now(), hard_deleted = p_hard
		 WHERE s.stream_id = p_stream_id;
	END IF;
	UPDATE lifecycle_log l
	   SET detail = l.detail || jsonb_build_object('marker', v_new,
	                                               'events_removed', n_gone)
	 WHERE l.id = v_log;
	PERFORM append_system_event('$lifecycle', '$deleted',
		jsonb_build_object('stream', p_stream_id, 'version', v_new,
		                   'hard', p_hard, 'reuse', p_reuse));
	status := 0;
	version := v_new;
END
$fn$;

-- store_snapshot: keeps an aggregate's state after version p_version of
-- its stream, for loads to start from. Returns
--   0 stored
--   1 not stored: a snapshot of this kind and format at this version or
--     a later one is there already (an older one never replaces it)
--   2 not stored: the stream has no such version
--   3 not stored: the stream is deleted
-- It waits for a running append or deletion of the stream (a share lock
-- on the stream's row), so that a hard delete cannot miss it.
CREATE FUNCTION store_snapshot(
	p_stream_id text,
	p_kind      text,
	p_format    integer,
	p_version   bigint,
	p_data      jsonb)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
	v_cur bigint;
	v_del timestamptz;
BEGIN
	IF p_stream_id IS NULL OR p_kind IS NULL OR p_format IS NULL
	   OR p_format < 1 OR p_version IS NULL OR p_version < 0
	   OR p_data IS NULL THEN
		RAISE EXCEPTION 'store_snapshot needs a stream id, a kind, a format (1 or more), a version (0 or more) and the data'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT s.version, s.deleted_at INTO v_cur, v_del
	  FROM streams s WHERE s.stream_id = p_stream_id FOR SHARE;
	IF v_del IS NOT NULL THEN
		RETURN 3;
	END IF;
	IF NOT FOUND OR p_version > v_cur THEN
		RETURN 2;
	END IF;
	INSERT INTO snapshots AS sn (stream_id, kind, format, version, data)
	VALUES (p_stream_id, p_kind, p_format, p_version, p_data)
	ON CONFLICT (stream_id, kind, format) DO UPDATE
	   SET version = excluded.version, data = excluded.data,
	       taken_at = now()
	 WHERE sn.version < excluded.version;
	RETURN CASE WHEN FOUND THEN 0 ELSE 1 END;
END
$fn$;

-- stream_start_of: the first version a stream's reads return, for a
-- stream at p_version with these settings: at or after p_truncate_before;
-- no more than the last p_max_count versions; and from the first version
-- (at or after those) recorded no longer than p_max_age ago, so that
-- reads always give a contiguous suffix (recorded times are transaction
-- start times, not in version order across transactions). NULL settings
-- do not limit. Scavenge removes the events below it.
CREATE FUNCTION stream_start_of(
	p_stream_id       text,
	p_version         bigint,
	p_truncate_before bigint,
	p_max_count       bigint,
	p_max_age         interval)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $fn$
	SELECT greatest(p_truncate_before, p_version + 1 - p_max_count,
	       CASE WHEN p_max_age IS NOT NULL THEN (
		SELECT coalesce(min(e.version), p_version + 1) FROM events e
		 WHERE e.stream_id = p_stream_id
		   AND e.version >= greatest(p_truncate_before,
		                             p_version + 1 - p_max_count)
		   AND e.recorded_at >= now() - p_max_age) END)
$fn$;

-- The same for a stored stream (NULL: no such stream). The library's
-- reads call it only for a stream that has a setting.
CREATE FUNCTION stream_start(p_stream_id text) RETURNS bigint
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $fn$
	SELECT stream_start_of(s.stream_id, s.version, s.truncate_before,
	                       s.max_count, s.max_age)
	  FROM streams s WHERE s.stream_id = p_stream_id
$fn$;

-- Whether a snapshot (any kind or format) of the stream holds its state
-- at or after version p_cut - 1, which a stream that starts at p_cut
-- needs to rebuild an aggregate.
CREATE FUNCTION snapshot_covers(p_stream_id text, p_cut bigint)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $fn$
	SELECT p_cut <= 0 OR EXISTS (
		SELECT 1 FROM snapshots sn
		 WHERE sn.stream_id = p_stream_id AND sn.version >= p_cut - 1)
$fn$;

-- truncate_stream: reads of the stream start at version p_before from
-- now on; scavenge() removes the events below it later. At an expected
-- version (-2: any). Status, and version:
--   0 done (or it was truncated there already)  the stream's version
--   2 conflict                                  the stream's version
--   4 deleted                                   the stream's version
--   5 no such stream (any version)              -1
--   6 p_before is past the stream's end (version + 1), or below where
--     it is truncated already (truncation only moves forward): that
--   7 no snapshot at or after the new start - 1, when the truncation
--     cuts more than the stream is cut already (unless p_force): the
--     stream's version
CREATE FUNCTION truncate_stream(
	p_stream_id text,
	p_expected  bigint,
	p_before    bigint,
	p_force     boolean DEFAULT false,
	OUT status  integer,
	OUT version bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
	s     streams%ROWTYPE;
	v_cut bigint;
BEGIN
	IF p_stream_id IS NULL OR p_expected IS NULL OR p_expected = -1
	   OR p_expected < -3 OR p_before IS NULL OR p_before < 0
	   OR p_force IS NULL THEN
		RAISE EXCEPTION 'truncate_stream needs a stream id, an expected version (0 or more, or -2 for any) and a version (0 or more)'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT * INTO s FROM streams x WHERE x.stream_id = p_stream_id
	   FOR UPDATE;
	IF NOT FOUND THEN
		status := CASE WHEN p_expected >= 0 THEN 2 ELSE 5 END;
		version := -1;
		RETURN;
	END IF;
	version := s.version;
	IF s.deleted_at IS NOT NULL THEN
		status := 4;
		RETURN;
	END IF;
	IF p_expected >= 0 AND p_expected <> s.version THEN
		status := 2;
		RETURN;
	END IF;
	IF p_before > s.version + 1 OR p_before < s.truncate_before THEN
		status := 6;
		version := CASE WHEN p_before > s.version + 1 THEN s.version + 1
		                ELSE s.truncate_before END;
		RETURN;
	END IF;
	IF p_before = s.truncate_before THEN
		status := 0;
		RETURN;
	END IF;
	-- A snapshot must cover the cut when it cuts more than the stream
	-- is cut already.
	v_cut := stream_start_of(p_stream_id, s.version, p_before, s.max_count,
	                         s.max_age);
	IF NOT p_force AND v_cut > stream_start(p_stream_id)
	   AND NOT snapshot_covers(p_stream_id, v_cut) THEN
		status := 7;
		RETURN;
	END IF;
	INSERT INTO lifecycle_log (operation, stream_id, expected_version,
	                           detail)
	VALUES ('truncate', p_stream_id, p_expected,
	        jsonb_build_object('before', p_before, 'was', s.truncate_before,
	                           'version', s.version, 'forced', p_force));
	UPDATE streams x SET truncate_before = p_before
	 WHERE x.stream_id = p_stream_id;
	PERFORM append_system_event('$lifecycle', '$truncated',
		jsonb_build_object('stream', p_stream_id, 'before', p_before,
		                   'version', s.version));
	status := 0;
END
$fn$;

-- set_retention: keeps only the last p_max_count events of the stream
-- and those recorded in the last p_max_age (NULL or 0: no limit; both
-- NULL: keep everything again, from where it is truncated). Reads follow
-- at once; scavenge() removes the rest later. Status and version as
-- truncate_stream() (6 for a negative count or age; 7 when the cut the
-- new settings make has no snapshot at or after it, unless p_force).
CREATE FUNCTION set_retention(
	p_stream_id text,
	p_expected  bigint,
	p_max_count bigint,
	p_max_age   interval,
	p_force     boolean DEFAULT false,
	OUT status  integer,
	OUT version bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
	s     streams%ROWTYPE;
	count_ bigint := nullif(p_max_count, 0);
	age_  interval := nullif(p_max_age, '0'::interval);
	v_cut bigint;
BEGIN
	IF p_stream_id IS NULL OR p_expected IS NULL OR p_expected = -1
	   OR p_expected < -3 OR p_force IS NULL THEN
		RAISE EXCEPTION 'set_retention needs a stream id and an expected version (0 or more, or -2 for any)'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT * INTO s FROM streams x WHERE x.stream_id = p_stream_id
	   FOR UPDATE;
	IF NOT FOUND THEN
		status := CASE WHEN p_expected >= 0 THEN 2 ELSE 5 END;
		version := -1;
		RETURN;
	END IF;
	version := s.version;
	IF s.deleted_at IS NOT NULL THEN
		status := 4;
		RETURN;
	END IF;
	IF p_expected >= 0 AND p_expected <> s.version THEN
		status := 2;
		RETURN;
	END IF;
	IF count_ < 0 OR age_ < '0'::interval THEN
		status := 6;
		RETURN;
	END IF;
	v_cut := stream_start_of(p_stream_id, s.version, s.truncate_before,
	                         count_, age_);
	IF NOT p_force AND v_cut > stream_start(p_stream_id)
	   AND NOT snapshot_covers(p_stream_id, v_cut) THEN
		status := 7;
		RETURN;
	END IF;
	INSERT INTO lifecycle_log (operation, stream_id, expected_version,
	                           detail)
	VALUES ('retention', p_stream_id, p_expected,
	        jsonb_build_object('max_count', count_, 'max_age_s',
	                           extract(epoch FROM age_)::bigint,
	                           'was_max_count', s.max_count,
	                           'was_max_age_s',
	                           extract(epoch FROM s.max_age)::bigint,
	                           'start', v_cut, 'forced', p_force));
	UPDATE streams x SET max_count = count_, max_age = age_
	 WHERE x.stream_id = p_stream_id;
	PERFORM append_system_event('$lifecycle', '$retention',
		jsonb_build_object('stream', p_stream_id, 'max_count', count_,
		                   'max_age_s', extract(epoch FROM age_)::bigint,
		                   'version', s.version));
	status := 0;
END
$fn$;

-- scavenge: removes up to p_max_events events that truncation or
-- retention released (below a stream's start), in this one transaction,
-- oldest first within each stream, streams in id order. Returns how many
-- it removed (0: nothing is left to remove). It locks no stream row:
-- appends go on meanwhile. Subscriptions whose checkpoint names a removed
-- event keep their position, without the event's id. Call it in a loop
-- (`evstore scavenge` does) or from cron; small steps keep each
-- transaction's WAL, locks and hold on the feed's fence short.
CREATE FUNCTION scavenge(p_max_events integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
	r       record;
	left_   bigint := p_max_events;
	total   bigint := 0;
	n       bigint;
	v_start bigint;
	v_min   bigint;
	v_log   bigint;
BEGIN
	IF p_max_events IS NULL OR p_max_events < 1 THEN
		RAISE EXCEPTION 'scavenge needs a number of events, 1 or more'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR r IN SELECT s.stream_id FROM streams s
	          WHERE (s.truncate_before > 0 OR s.max_count IS NOT NULL
	                 OR s.max_age IS NOT NULL)
	            AND s.deleted_at IS NULL
	          ORDER BY s.stream_id LOOP
		v_start := stream_start(r.stream_id);
		SELECT min(e.version) INTO v_min FROM events e
		 WHERE e.stream_id = r.stream_id;
		CONTINUE WHEN v_min IS NULL OR v_min >= v_start;
		IF v_log IS NULL THEN
			INSERT INTO lifecycle_log (operation, detail)
			VALUES ('scavenge',
			        jsonb_build_object('max_events', p_max_events))
			RETURNING id INTO v_log;
		END IF;
		WITH gone AS (
			DELETE FROM events e
			 WHERE e.stream_id = r.stream_id
			   AND e.version < least(v_start, v_min + left_)
			RETURNING e.transaction_id, e.global_position, e.event_id),
		fix AS (
			UPDATE subscriptions u SET last_event_id = NULL
			  FROM gone g
			 WHERE u.commit_xid = g.transaction_id
			   AND u.position = g.global_position
			   AND u.last_event_id = g.event_id)
		SELECT count(*) INTO n FROM gone;
		total := total + n;
		left_ := left_ - n;
		EXIT WHEN left_ <= 0;
	END LOOP;
	IF v_log IS NOT NULL THEN
		UPDATE lifecycle_log l
		   SET detail = l.detail || jsonb_build_object('events_removed',
		                                               total)
		 WHERE l.id = v_log;
	END IF;
	RETURN total;
END
$fn$;

-- undelete_stream: brings a soft-deleted stream back at an expected
-- version (its "$deleted" marker's; -2: any), with an "$undeleted"
-- marker after it. Status, and version:
--   0 undeleted    the "$undeleted" marker's version
--   2 conflict     the stream's version (-1: it has none)
--   3 not deleted  the stream's version
--   4 hard-deleted: it cannot come back; its version
--   5 no such stream (any version): -1
CREATE FUNCTION undelete_stream(
	p_stream_id text,
	p_expected  bigint,
	OUT status  integer,
	OUT version bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
	v_cur  bigint;
	v_del  timestamptz;
	v_hard boolean;
	v_new  bigint;
BEGIN
	IF p_stream_id IS NULL OR p_expected IS NULL OR p_expected = -1
	   OR p_expected < -3 THEN
		RAISE EXCEPTION 'undelete_stream needs a stream id and an expected version (0 or more, or -2 for any)'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT s.version, s.deleted_at, s.hard_deleted
	  INTO v_cur, v_del, v_hard
	  FROM streams s WHERE s.stream_id = p_stream_id FOR UPDATE;
	IF NOT FOUND THEN
		status := CASE WHEN p_expected >= 0 THEN 2 ELSE 5 END;
		version := -1;
		RETURN;
	END IF;
	IF v_hard THEN
		status := 4;
		version := v_cur;
		RETURN;
	END IF;
	IF p_expected >= 0 AND p_expected <> v_cur THEN
		status := 2;
		version := v_cur;
		RETURN;
	END IF;
	IF v_del IS NULL THEN
		status := 3;
		version := v_cur;
		RETURN;
	END IF;

	INSERT INTO lifecycle_log (operation, stream_id, expected_version,
	                           detail)
	VALUES ('undelete', p_stream_id, p_expected,
	        jsonb_build_object('version', v_cur));
	v_new := append_system_event(p_stream_id, '$undeleted', '{}');
	UPDATE streams s SET deleted_at = NULL WHERE s.stream_id = p_stream_id;
	PERFORM append_system_event('$lifecycle', '$undeleted',
		jsonb_build_object('stream', p_stream_id, 'version', v_new,
		                   'hard', false, 'reuse', false));
	status := 0;
	version := v_new;
END
$fn$;

-- Only the owner executes these (and a role the DBA grants the two
-- lifecycle functions or store_snapshot() to, on purpose): revoke what
-- default privileges may have given anyone else.
DO $$
DECLARE
	f regprocedure;
	r record;
BEGIN
	FOREACH f IN ARRAY ARRAY[
		'log_system_import(text[], text[])'::regprocedure,
		'append_system_event(text, text, jsonb)'::regprocedure,
		'delete_stream(text, bigint, boolean, boolean)'::regprocedure,
		'undelete_stream(text, bigint)'::regprocedure,
		'store_snapshot(text, text, integer, bigint, jsonb)'::regprocedure,
		'truncate_stream(text, bigint, bigint, boolean)'::regprocedure,
		'set_retention(text, bigint, bigint, interval, boolean)'::regprocedure,
		'scavenge(integer)'::regprocedure,
		'snapshot_covers(text, bigint)'::regprocedure]
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
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

INSERT INTO schema_version (version, name) VALUES (7, '0007_stream_lifecycle');

COMMIT;
