-- evstore migration 0005: the same rules for what a stream or event may
-- hold, checked at a lower cost per append.
--
-- 0001 wrote the rules as CHECK constraints of the streams and events
-- tables. PostgreSQL rebuilds every CHECK constraint of a table from its
-- stored text, and plans it, once per statement that writes the table,
-- and checks every one of them on every row an UPDATE writes: moving a
-- stream's version re-checked the stream id's pattern each time. For a
-- single-event append that was about a fifth of the server's CPU time.
-- Here the rules become domains, the column types: the server keeps a
-- domain's checks ready between statements, and checks a column only
-- where a statement writes it (a stream's id when the stream is
-- created, a version whenever it is written). What may be stored is
-- exactly what 0001 allowed, whoever writes it, however (INSERT, UPDATE,
-- COPY): a value that breaks a rule fails with SQLSTATE 23514
-- (check_violation), as before, and changes nothing.
--
--   valid_stream_id   streams.stream_id  1 to 255 bytes, no control
--                                        characters
--   valid_version     streams.version,   0 or more
--                     events.version
--   valid_event_type  events.type        1 to 255 bytes
--   valid_metadata    events.metadata    NULL or a JSON object
--
-- The columns keep their storage and their indexes; nothing is rewritten
-- or read (see below), so the migration takes a moment, whatever the
-- store's size. Clients see the columns' types as before: the server
-- describes a domain's column by its base type (text, bigint, jsonb).
--
-- Apply as the owner of the schema (the role that applied 0001), after
-- 0004, in one transaction:
--   psql -v ON_ERROR_STOP=1 [-v schema=NAME] -f sql/0005_domain_checks.sql
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
		RAISE EXCEPTION 'evstore migration 0005 needs 0001 to 0004 first: schema "%" holds no evstore tables',
			name
			USING ERRCODE = 'EVS01';
	END IF;
	SELECT max(version) INTO have FROM schema_version;
	IF have >= 5 THEN
		RAISE EXCEPTION 'evstore migration 0005 is already applied to schema "%"',
			name
			USING ERRCODE = 'EVS02',
			HINT = 'nothing was changed; see "SELECT * FROM schema_version"';
	END IF;
	IF have IS DISTINCT FROM 4 THEN
		RAISE EXCEPTION 'evstore migration 0005 needs 0004 first: schema "%" is at version %',
			name, coalesce(have, 0)
			USING ERRCODE = 'EVS01';
	END IF;
	IF (SELECT relowner FROM pg_class WHERE oid = 'events'::regclass)
	   IS DISTINCT FROM (SELECT oid FROM pg_roles WHERE rolname = current_user) THEN
		RAISE EXCEPTION 'evstore migration 0005 must be applied by the owner of schema "%"''s tables (role %), not by %',
			name,
			(SELECT pg_get_userbyid(relowner) FROM pg_class
			  WHERE oid = 'events'::regclass),
			current_user
			USING ERRCODE = 'EVS03',
			HINT = 'nothing was changed; connect as that role';
	END IF;
END
$$;

-- lock_streams_and_events(mode): takes both tables, streams first,
-- without ever waiting for one while holding the other for long, for the
-- migrations that must lock both (this one, and later ones). A running
-- append holds a weak lock on one table while it waits for the other (an
-- exact append takes streams, then events; one at any version reads
-- events first), and a migration that held one and waited for the other
-- could meet it in a deadlock, which the server ends by failing one of the
-- two. So each try waits at most 200 ms (below the server's
-- deadlock_timeout, 1 s by default), lets go of both, and tries again:
-- appends wait briefly and go on; none fails. Owner only.
CREATE FUNCTION lock_streams_and_events(p_mode text) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
	tries integer := 0;
	was text := current_setting('lock_timeout');
BEGIN
	IF p_mode NOT IN ('SHARE ROW EXCLUSIVE', 'ACCESS EXCLUSIVE') THEN
		RAISE EXCEPTION 'lock_streams_and_events: no mode %', p_mode
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM set_config('lock_timeout', '200ms', true);
	LOOP
		BEGIN
			EXECUTE format('LOCK TABLE streams, events IN %s MODE',
			               p_mode);
			EXIT;
		EXCEPTION WHEN lock_not_available THEN
			tries := tries + 1;
			IF tries >= 300 THEN
				RAISE EXCEPTION 'could not lock the streams and events tables in 300 tries: something holds them'
					USING ERRCODE = 'lock_not_available',
					HINT = 'nothing was changed; see pg_locks, and try again';
			END IF;
			PERFORM pg_sleep(0.02 * random());
		END;
	END LOOP;
	PERFORM set_config('lock_timeout', was, true);
END
$fn$;
-- Only the owner: revoke what default privileges may have given others.
DO $$
DECLARE
	r record;
BEGIN
	REVOKE ALL ON FUNCTION lock_streams_and_events(text) FROM PUBLIC;
	FOR r IN SELECT DISTINCT a.grantee FROM pg_proc p,
	         aclexplode(p.proacl) AS a
	         WHERE p.oid = 'lock_streams_and_events(text)'::regprocedure
	           AND a.grantee <> p.proowner AND a.grantee <> 0 LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION lock_streams_and_events(text) FROM %I',
		               pg_get_userbyid(r.grantee));
	END LOOP;
	PERFORM lock_streams_and_events('ACCESS EXCLUSIVE');
END
$$;

-- The domains start without their rules, so that changing the columns'
-- types rewrites nothing (a domain over the same base type, with no rule
-- to check, is the same bytes, and the indexes are kept). The rules come
-- after, NOT VALID: every stored row already meets them, because the
-- CHECK constraints dropped here held the same rules until now, and
-- nothing else writes in between (ALTER TABLE holds both tables until
-- COMMIT). So the migration reads no rows and is quick whatever the
-- store's size; new values are checked from here on. On a store that
-- holds no events the rules are validated at once (there is nothing to
-- read); on one that does, a DBA who wants the catalog to say so may run,
-- at any time (appends wait while it reads every row, reads go on):
--   ALTER DOMAIN valid_stream_id VALIDATE CONSTRAINT valid_stream_id_check;
--   ALTER DOMAIN valid_version VALIDATE CONSTRAINT valid_version_check;
--   ALTER DOMAIN valid_event_type VALIDATE CONSTRAINT valid_event_type_check;
--   ALTER DOMAIN valid_metadata VALIDATE CONSTRAINT valid_metadata_check;
CREATE DOMAIN valid_stream_id AS text COLLATE "C";
CREATE DOMAIN valid_version AS bigint;
CREATE DOMAIN valid_event_type AS text;
CREATE DOMAIN valid_metadata AS jsonb;

ALTER TABLE streams
	DROP CONSTRAINT streams_stream_id_check,
	DROP CONSTRAINT streams_version_check,
	ALTER COLUMN stream_id TYPE valid_stream_id COLLATE "C",
	ALTER COLUMN version TYPE valid_version;
ALTER TABLE events
	DROP CONSTRAINT events_version_check,
	DROP CONSTRAINT events_type_check,
	DROP CONSTRAINT events_metadata_check,
	ALTER COLUMN version TYPE valid_version,
	ALTER COLUMN type TYPE valid_event_type,
	ALTER COLUMN metadata TYPE valid_metadata;

ALTER DOMAIN valid_stream_id ADD CONSTRAINT valid_stream_id_check
	CHECK (octet_length(VALUE) BETWEEN 1 AND 255
	       AND VALUE !~ '[\u0001-\u001f\u007f-\u009f]') NOT VALID;
ALTER DOMAIN valid_version ADD CONSTRAINT valid_version_check
	CHECK (VALUE >= 0) NOT VALID;
ALTER DOMAIN valid_event_type ADD CONSTRAINT valid_event_type_check
	CHECK (octet_length(VALUE) BETWEEN 1 AND 255) NOT VALID;
ALTER DOMAIN valid_metadata ADD CONSTRAINT valid_metadata_check
	CHECK (VALUE IS NULL OR jsonb_typeof(VALUE) = 'object') NOT VALID;

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM streams) AND NOT EXISTS (SELECT 1 FROM events) THEN
		ALTER DOMAIN valid_stream_id VALIDATE CONSTRAINT valid_stream_id_check;
		ALTER DOMAIN valid_version VALIDATE CONSTRAINT valid_version_check;
		ALTER DOMAIN valid_event_type VALIDATE CONSTRAINT valid_event_type_check;
		ALTER DOMAIN valid_metadata VALIDATE CONSTRAINT valid_metadata_check;
	END IF;
END
$$;

COMMENT ON DOMAIN valid_stream_id IS
	'a stream id: 1 to 255 bytes, no control characters';
COMMENT ON DOMAIN valid_version IS 'a stream version: 0 or more';
COMMENT ON DOMAIN valid_event_type IS 'an event type: 1 to 255 bytes';
COMMENT ON DOMAIN valid_metadata IS 'event metadata: NULL or a JSON object';

INSERT INTO schema_version (version, name) VALUES (5, '0005_domain_checks');

COMMIT;
