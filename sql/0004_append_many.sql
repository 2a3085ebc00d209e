-- evstore migration 0004: appends to several streams in one call.
-- append_many() (for applications) and import_many() (restores, owner
-- only, as import_events) take a list of appends, each with its own
-- stream, expected version and events, and run them in one transaction:
-- the library's evs_store_append_many() and `evstore import`. (Group
-- commit does not use them: it pipelines the single-append statements.)
--
-- Apply as the owner of the schema (the role that applied 0001), after
-- 0003, in one transaction:
--   psql -v ON_ERROR_STOP=1 [-v schema=NAME] -f sql/0004_append_many.sql
-- `evstore migrate` applies the same file. Applying it a second time, or
-- out of order, is refused with a message; nothing changes.

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
		RAISE EXCEPTION 'evstore migration 0004 needs 0001 to 0003 first: schema "%" holds no evstore tables',
			name
			USING ERRCODE = 'EVS01';
	END IF;
	SELECT max(version) INTO have FROM schema_version;
	IF have >= 4 THEN
		RAISE EXCEPTION 'evstore migration 0004 is already applied to schema "%"',
			name
			USING ERRCODE = 'EVS02',
			HINT = 'nothing was changed; see "SELECT * FROM schema_version"';
	END IF;
	IF have IS DISTINCT FROM 3 THEN
		RAISE EXCEPTION 'evstore migration 0004 needs 0003 first: schema "%" is at version %',
			name, coalesce(have, 0)
			USING ERRCODE = 'EVS01';
	END IF;
	IF (SELECT proowner FROM pg_proc
	     WHERE oid = 'append_events(text, bigint, uuid[], text[], jsonb[], jsonb[])'::regprocedure)
	   IS DISTINCT FROM (SELECT oid FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'evstore migration 0004 must be applied by the owner of schema "%"''s objects (role %), not by %',
			name,
			(SELECT pg_get_userbyid(proowner) FROM pg_proc
			  WHERE oid = 'append_events(text, bigint, uuid[], text[], jsonb[], jsonb[])'::regprocedure),
			current_user
			USING ERRCODE = 'EVS03',
			HINT = 'nothing was changed; connect as that role';
	END IF;
END
$$;

-- append_many_core: the work of append_many() and import_many(); only the
-- owner executes it (they are SECURITY DEFINER and call it).
--
-- Item i is stream p_stream_ids[i] at expected version p_expected[i]
-- (-1 new stream, -2 any version, -3 the stream must exist) with the next
-- p_counts[i] events of the four (five) event arrays. The items take
-- effect in their order, as if appended one after the other: an item sees
-- the earlier items of the call on its stream, and an event id of one of
-- them counts as stored.
--
-- One row per item: (item, status, version, event_id), status
--   0 appended          version: the item's last event
--   1 replay            every event already stored there, nothing done;
--                       version: where the item's last event is
--   2 conflict          version: the stream's version as the item found
--                       it (-1: no events)
--   3 duplicate id      an event id already stored in the stream, at any
--                       other place: event_id and its version
--   9 not stored        p_atomic, and another item failed
-- With p_atomic, nothing is written unless every item is 0 or 1.
--
-- Nothing here raises for any of these outcomes, so the call needs no
-- subtransaction (one per item would slow every session's snapshots past
-- 64 of them).
--
-- Phase 1 locks each stream's row once, in stream_id byte order (every
-- writer that locks several rows does so in this order: two calls never
-- wait on each other in a cycle), and checks every item under that lock:
-- a concurrent writer of the stream waits, and every check after the lock
-- sees what the one before it committed. A missing stream's row is
-- inserted there (version 0, a placeholder), which serialises concurrent
-- creators the same way, and deleted again when no item stored events in
-- it. Phase 2 writes: one UPDATE of the stream rows, one INSERT of the
-- events in item and event order (so positions follow versions), each
-- stream's events with its order key greatest(this transaction's id, the
-- stream's last key), as every append path stores it (sql/0002).
--
-- p_lock_wait_ms > 0 bounds each wait for a stream's row (lock_timeout,
-- for this transaction), so that a stream held by another session delays
-- the others of a call no longer than that (the library passes 0: a
-- call waits as a single append would).
CREATE FUNCTION append_many_core(
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
		  FROM (SELECT x.stream_id, x.version FROM streams x
		         WHERE x.stream_id = ANY (p_stream_ids)
		         ORDER BY x.stream_id FOR UPDATE) AS l
		  JOIN unnest(p_stream_ids, p_expected) AS u(sid, e)
		    ON l.stream_id = u.sid AND l.version = u.e;
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
				SELECT x.version, x.last_key INTO tcur, skey
				  FROM streams x WHERE x.stream_id = s FOR UPDATE;
				EXIT WHEN FOUND;
				tcur := -1;
				skey := '0';
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
				st[i] := 2;
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
				st[i] := 2;
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
		IF dup_id IS NOT NULL THEN
			st[i] := 3;
			ver[i] := v_at;
			dup[i] := dup_id;
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

-- append_many: what applications call (README, "Least privilege": EXECUTE
-- on it is all they need beyond 0001's grants). PL/pgSQL, not SQL, for
-- its cached plan.
CREATE FUNCTION append_many(
	p_stream_ids  text[],
	p_expected    bigint[],
	p_counts      integer[],
	p_event_ids   uuid[],
	p_types       text[],
	p_data        jsonb[],
	p_metadata    jsonb[],
	p_atomic      boolean DEFAULT false,
	p_lock_wait_ms integer DEFAULT 0)
RETURNS TABLE (item integer, status integer, version bigint, event_id uuid)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
BEGIN
	RETURN QUERY SELECT * FROM append_many_core(p_stream_ids, p_expected,
		p_counts, p_event_ids, p_types, p_data, p_metadata, NULL,
		p_atomic, p_lock_wait_ms);
END
$fn$;

-- import_many: a restore of several streams at once. Like append_many at
-- exact expected versions, but every event keeps the recorded time it is
-- given. Owner only, as import_events (README, "Restoring an export").
CREATE FUNCTION import_many(
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
	RETURN QUERY SELECT * FROM append_many_core(p_stream_ids, p_expected,
		p_counts, p_event_ids, p_types, p_data, p_metadata,
		coalesce(p_recorded_at, '{}'), p_atomic, 0);
END
$fn$;

REVOKE ALL ON FUNCTION append_many_core(text[], bigint[], integer[], uuid[],
	text[], jsonb[], jsonb[], timestamptz[], boolean, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION append_many(text[], bigint[], integer[], uuid[],
	text[], jsonb[], jsonb[], boolean, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION import_many(text[], bigint[], integer[], uuid[],
	text[], jsonb[], jsonb[], timestamptz[], boolean) FROM PUBLIC;

-- Only the owner executes the core and import_many: revoke what default
-- privileges may have given anyone else when they were created. A DBA
-- grants append_many to applications, and import_many to a restoring
-- role, afterwards, on purpose.
DO $$
DECLARE
	f regprocedure;
	r record;
BEGIN
	FOREACH f IN ARRAY ARRAY[
		'append_many_core(text[], bigint[], integer[], uuid[], text[], jsonb[], jsonb[], timestamptz[], boolean, integer)'::regprocedure,
		'import_many(text[], bigint[], integer[], uuid[], text[], jsonb[], jsonb[], timestamptz[], boolean)'::regprocedure]
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

INSERT INTO schema_version (version, name) VALUES (4, '0004_append_many');

COMMIT;
