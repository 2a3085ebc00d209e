-- evstore migration 0003: subscriptions. Indexes for the filtered feeds
-- (one category, one event type), and one row per subscription (and group
-- member) holding its checkpoint and its lease.
--
-- Apply as the owner of the schema (the role that applied 0001), after
-- 0002, in one transaction:
--   psql -v ON_ERROR_STOP=1 [-v schema=NAME] -f sql/0003_subscriptions.sql
-- `evstore migrate` applies the same file. Applying it a second time, or
-- out of order, is refused with a message; nothing changes.
--
-- The two indexes are built inside this transaction, which blocks appends
-- while they build. On a large store, build them first without blocking,
-- outside a transaction, with the same definitions (this file then finds
-- them and goes on):
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS events_category_position ON
--     evstore.events ((split_part(stream_id, '-', 1)), transaction_id,
--     global_position);
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS events_type_position ON
--     evstore.events (type, transaction_id, global_position);

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
		RAISE EXCEPTION 'evstore migration 0003 needs 0001 and 0002 first: schema "%" holds no evstore tables',
			name
			USING ERRCODE = 'EVS01';
	END IF;
	SELECT max(version) INTO have FROM schema_version;
	IF have >= 3 THEN
		RAISE EXCEPTION 'evstore migration 0003 is already applied to schema "%"',
			name
			USING ERRCODE = 'EVS02',
			HINT = 'nothing was changed; see "SELECT * FROM schema_version"';
	END IF;
	IF have IS DISTINCT FROM 2 THEN
		RAISE EXCEPTION 'evstore migration 0003 needs 0002 first: schema "%" is at version %',
			name, coalesce(have, 0)
			USING ERRCODE = 'EVS01';
	END IF;
	IF (SELECT proowner FROM pg_proc
	     WHERE oid = 'append_events(text, bigint, uuid[], text[], jsonb[], jsonb[])'::regprocedure)
	   IS DISTINCT FROM (SELECT oid FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'evstore migration 0003 must be applied by the owner of schema "%"''s objects (role %), not by %',
			name,
			(SELECT pg_get_userbyid(proowner) FROM pg_proc
			  WHERE oid = 'append_events(text, bigint, uuid[], text[], jsonb[], jsonb[])'::regprocedure),
			current_user
			USING ERRCODE = 'EVS03',
			HINT = 'nothing was changed; connect as that role';
	END IF;
END
$$;

-- The filtered feeds. Each index leads with the filter, then the feed's
-- order, and the library's queries ORDER BY the same three expressions:
-- even a generic plan walks the index and stops at its LIMIT.
CREATE INDEX IF NOT EXISTS events_category_position
	ON events ((split_part(stream_id, '-', 1)), transaction_id,
	           global_position);
CREATE INDEX IF NOT EXISTS events_type_position
	ON events (type, transaction_id, global_position);

-- One row per subscription name and group member. The checkpoint is the
-- position of the last event handled (order key, global position) and
-- that event's id (NULL for a starting point that names no event); NULL
-- commit_xid: none stored yet. The lease: who holds the name, until when,
-- and an epoch that grows with every take-over, so that a paused old
-- owner can never store a checkpoint over its successor's.
CREATE TABLE subscriptions (
	name          text COLLATE "C" NOT NULL
		CHECK (octet_length(name) BETWEEN 1 AND 255),
	member        integer NOT NULL CHECK (member >= 0),
	group_size    integer NOT NULL CHECK (group_size >= 1),
	filter        jsonb NOT NULL,
	commit_xid    xid8,
	position      bigint,
	last_event_id uuid,
	owner         text,
	lease_until   timestamptz,
	lease_epoch   bigint NOT NULL DEFAULT 0,
	created_at    timestamptz NOT NULL DEFAULT now(),
	updated_at    timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (name, member),
	CHECK (member < group_size)
);

-- Claims (or renews) the lease of (name, member) for owner. status:
--   0  claimed; lease_epoch is the fencing token to store with, and the
--      checkpoint is returned (commit_xid NULL: none yet)
--   1  another live owner holds it; lease_left_ms says for how long
--   2  the name exists (for any member) with another filter or group
--      size
--   3  the stored checkpoint names an event this database does not have,
--      or an order key it has not reached: the database was rewound
-- A row lock and the server's clock: no session state, so it works
-- through a transaction-mode pooler.
CREATE FUNCTION subscription_claim(
	p_name       text,
	p_member     integer,
	p_group_size integer,
	p_filter     jsonb,
	p_owner      text,
	p_lease_ms   integer,
	OUT status        integer,
	OUT lease_epoch   bigint,
	OUT commit_xid    xid8,
	OUT "position"    bigint,
	OUT last_event_id uuid,
	OUT lease_left_ms bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
	s subscriptions;
BEGIN
	-- Every member of a name reads the same filter in the same group:
	-- claims of one name take turns (for this transaction only).
	PERFORM pg_advisory_xact_lock(hashtextextended(p_name, 0));
	IF EXISTS (SELECT 1 FROM subscriptions o
	            WHERE o.name = p_name
	              AND (o.group_size <> p_group_size
	                   OR o.filter <> p_filter)) THEN
		status := 2;
		RETURN;
	END IF;
	-- A row locked by its owner's open handler transaction (storing
	-- its checkpoint, about to commit; or stalled: the library bounds
	-- that transaction's idle time by the lease) is busy: do not wait.
	SELECT * INTO s FROM subscriptions
	 WHERE subscriptions.name = p_name AND subscriptions.member = p_member
	   FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		IF EXISTS (SELECT 1 FROM subscriptions o
		            WHERE o.name = p_name AND o.member = p_member) THEN
			status := 1;
			lease_left_ms := 100;
			RETURN;
		END IF;
		INSERT INTO subscriptions (name, member, group_size, filter)
		VALUES (p_name, p_member, p_group_size, p_filter);
		SELECT * INTO s FROM subscriptions
		 WHERE subscriptions.name = p_name
		   AND subscriptions.member = p_member
		   FOR UPDATE;
	END IF;
	IF s.group_size <> p_group_size OR s.filter <> p_filter THEN
		status := 2;
		RETURN;
	END IF;
	IF s.owner IS NOT NULL AND s.owner <> p_owner
	   AND s.lease_until > clock_timestamp() THEN
		status := 1;
		lease_left_ms := ceil(extract(epoch FROM s.lease_until
		                              - clock_timestamp()) * 1000);
		RETURN;
	END IF;
	IF s.commit_xid IS NOT NULL
	   AND (s.commit_xid >= pg_snapshot_xmax(pg_current_snapshot())
	        OR (s.last_event_id IS NOT NULL AND NOT EXISTS (
	            SELECT 1 FROM events e
	             WHERE e.transaction_id = s.commit_xid
	               AND e.global_position = s.position
	               AND e.event_id = s.last_event_id))) THEN
		status := 3;
		RETURN;
	END IF;
	UPDATE subscriptions AS u
	   SET owner = p_owner,
	       lease_until = clock_timestamp()
	                     + make_interval(secs => p_lease_ms / 1000.0),
	       lease_epoch = u.lease_epoch
	                     + CASE WHEN u.owner IS DISTINCT FROM p_owner
	                            THEN 1 ELSE 0 END
	 WHERE u.name = p_name AND u.member = p_member
	RETURNING u.lease_epoch, u.commit_xid, u.position, u.last_event_id
	     INTO lease_epoch, commit_xid, "position", last_event_id;
	status := 0;
END
$fn$;

-- Stores a checkpoint, fenced: only with the current epoch, and never
-- backwards. Inside the handler's transaction, for exactly-once effects.
-- False: the lease was lost (roll the transaction back).
CREATE FUNCTION subscription_store(
	p_name      text,
	p_member    integer,
	p_epoch     bigint,
	p_commit    xid8,
	p_position  bigint,
	p_event_id  uuid)
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
	UPDATE subscriptions s
	   SET commit_xid = p_commit, position = p_position,
	       last_event_id = p_event_id, updated_at = clock_timestamp()
	 WHERE s.name = p_name AND s.member = p_member
	   AND s.lease_epoch = p_epoch
	   AND (s.commit_xid IS NULL
	        OR (s.commit_xid, s.position) <= (p_commit, p_position))
	RETURNING true
$fn$;

-- Gives the lease up (the owner is closing): a successor starts at once.
CREATE FUNCTION subscription_release(
	p_name   text,
	p_member integer,
	p_epoch  bigint)
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
	UPDATE subscriptions s SET owner = NULL, lease_until = NULL
	 WHERE s.name = p_name AND s.member = p_member
	   AND s.lease_epoch = p_epoch
	RETURNING true
$fn$;

-- Applications get EXECUTE on these three (README, "Least privilege").
REVOKE ALL ON FUNCTION subscription_claim(text, integer, integer, jsonb,
	text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION subscription_store(text, integer, bigint, xid8,
	bigint, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION subscription_release(text, integer, bigint)
	FROM PUBLIC;

INSERT INTO schema_version (version, name) VALUES (3, '0003_subscriptions');

COMMIT;
