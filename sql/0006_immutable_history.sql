-- evstore migration 0006: stored history does not change, even by the
-- schema owner's hand, except as a logged lifecycle change.
--
-- The application role holds no UPDATE, DELETE or TRUNCATE on any table
-- (README, "Least privilege"): privileges are what keep history safe
-- from applications. This migration adds a seat belt for everyone else,
-- the owner and superusers included, against a mistyped statement:
--
--   * UPDATE, DELETE and TRUNCATE of events, and TRUNCATE of streams,
--     are refused (SQLSTATE EVS04);
--   * a stream's version never goes down (an UPDATE that lowers it is
--     refused, EVS04): the version is where the next append goes, and a
--     lowered one would make the stream's next events collide with
--     stored ones.
--
-- unless the same transaction has first written a row to lifecycle_log:
-- who (the session's login role), when, what and why. The lifecycle
-- functions (deleting or truncating a stream; later migrations) write
-- that row themselves; a DBA repairing a store by hand writes it too, and
-- it stays as the audit of the repair:
--
--   BEGIN;
--   INSERT INTO evstore.lifecycle_log (operation, stream_id, detail)
--   VALUES ('repair', 'order-17', '{"why": "ticket 4711"}');
--   DELETE FROM evstore.events WHERE ...;
--   COMMIT;
--
-- Only the owner may write lifecycle_log (applications may read it, with
-- SELECT on the schema's tables). The guard is not security: the owner
-- can also drop or disable the triggers, and a superuser's
-- session_replication_role = replica skips them. Appends never fire the
-- statement triggers; the version rule is a row trigger whose condition
-- is checked, without calling anything, on each stream row an append
-- moves: about 3% of the server's time for a single-event append (the
-- server rebuilds the condition for every statement).
--
-- Apply as the owner of the schema (the role that applied 0001), after
-- 0005, in one transaction:
--   psql -v ON_ERROR_STOP=1 [-v schema=NAME] -f sql/0006_immutable_history.sql
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
		RAISE EXCEPTION 'evstore migration 0006 needs 0001 to 0005 first: schema "%" holds no evstore tables',
			name
			USING ERRCODE = 'EVS01';
	END IF;
	SELECT max(version) INTO have FROM schema_version;
	IF have >= 6 THEN
		RAISE EXCEPTION 'evstore migration 0006 is already applied to schema "%"',
			name
			USING ERRCODE = 'EVS02',
			HINT = 'nothing was changed; see "SELECT * FROM schema_version"';
	END IF;
	IF have IS DISTINCT FROM 5 THEN
		RAISE EXCEPTION 'evstore migration 0006 needs 0005 first: schema "%" is at version %',
			name, coalesce(have, 0)
			USING ERRCODE = 'EVS01';
	END IF;
	IF (SELECT relowner FROM pg_class WHERE oid = 'events'::regclass)
	   IS DISTINCT FROM (SELECT oid FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'evstore migration 0006 must be applied by the owner of schema "%"''s tables (role %), not by %',
			name,
			(SELECT pg_get_userbyid(relowner) FROM pg_class
			  WHERE oid = 'events'::regclass),
			current_user
			USING ERRCODE = 'EVS03',
			HINT = 'nothing was changed; connect as that role';
	END IF;
END
$$;

-- Both tables first, without risking a deadlock with running appends
-- (see sql/0005).
DO $$ BEGIN PERFORM lock_streams_and_events('SHARE ROW EXCLUSIVE'); END $$;

-- One row per lifecycle change or hand repair. transaction_id: the
-- writing transaction (what the guard looks for); by_role: the login
-- role (session_user), also inside a SECURITY DEFINER function.
CREATE TABLE lifecycle_log (
	id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	transaction_id   xid8 NOT NULL DEFAULT pg_current_xact_id(),
	at               timestamptz NOT NULL DEFAULT now(),
	by_role          text NOT NULL DEFAULT session_user,
	operation        text NOT NULL
		CHECK (octet_length(operation) BETWEEN 1 AND 64),
	stream_id        text COLLATE "C",
	expected_version bigint,
	detail           jsonb
);
CREATE INDEX lifecycle_log_transaction ON lifecycle_log (transaction_id);
REVOKE ALL ON lifecycle_log FROM PUBLIC;

-- Whether this transaction logged a lifecycle change (no xid yet: no).
-- As the owner, so that it answers whoever's statement fired the guard
-- (the caller needs no SELECT on lifecycle_log); it tells nothing but
-- that, about the caller's own transaction.
CREATE FUNCTION history_change_logged() RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
	SELECT EXISTS (SELECT 1 FROM lifecycle_log l
	                WHERE l.transaction_id = pg_current_xact_id_if_assigned())
$fn$;

-- The guard: a trigger function for statements (UPDATE, DELETE,
-- TRUNCATE) and for stream rows whose version went down. Its own
-- search_path: a trigger runs with the caller's.
CREATE FUNCTION history_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
	IF history_change_logged() THEN
		RETURN NULL;
	END IF;
	IF TG_LEVEL = 'ROW' THEN
		RAISE EXCEPTION 'stream "%" would go back from version % to %: a stream''s version never goes down',
			OLD.stream_id, OLD.version, NEW.version
			USING ERRCODE = 'EVS04',
			HINT = 'a lifecycle change (or a hand repair) first logs itself in lifecycle_log, in the same transaction';
	END IF;
	RAISE EXCEPTION '% of %.% refused: stored events never change',
		TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
		USING ERRCODE = 'EVS04',
		HINT = 'a lifecycle change (or a hand repair) first logs itself in lifecycle_log, in the same transaction';
END
$fn$;

REVOKE ALL ON FUNCTION history_guard() FROM PUBLIC;

CREATE TRIGGER events_never_change
	BEFORE UPDATE OR DELETE ON events
	FOR EACH STATEMENT EXECUTE FUNCTION history_guard();
CREATE TRIGGER events_never_truncated
	BEFORE TRUNCATE ON events
	FOR EACH STATEMENT EXECUTE FUNCTION history_guard();
CREATE TRIGGER streams_never_truncated
	BEFORE TRUNCATE ON streams
	FOR EACH STATEMENT EXECUTE FUNCTION history_guard();
CREATE TRIGGER streams_version_never_goes_down
	AFTER UPDATE OF version ON streams
	FOR EACH ROW WHEN (NEW.version < OLD.version)
	EXECUTE FUNCTION history_guard();

INSERT INTO schema_version (version, name) VALUES (6, '0006_immutable_history');

COMMIT;
