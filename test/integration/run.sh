#!/bin/sh
# test/integration/run.sh: the integration tests, on the server that
# EVS_TEST_PG_DSN names (scripts/with-pg.sh provides one).
#
#   test/integration/run.sh RUNNER
#
# Makes three roles for this run: an owner, who applies sql/*.sql with
# psql as a DBA would (not a superuser); an application role with only the
# required privileges; and one that also holds the optional grants for
# one-statement appends. Runs every suite as the owner (the postgres suite
# uses the third role too), then the contract suite again as the
# application role. Drops the schema and the roles at the end, whatever
# happened.
set -eu

runner=${1:?usage: run.sh RUNNER}
: "${EVS_TEST_PG_DSN:?EVS_TEST_PG_DSN must name the test server}"
admin_dsn=$EVS_TEST_PG_DSN
tag="$$_$(date +%s)"
schema="evs_test_$tag"
owner="evs_test_owner_$tag"
app="evs_test_app_$tag"
fast="evs_test_fast_$tag"
password="evs-$tag"

case $admin_dsn in
*://*)
	echo "run.sh: EVS_TEST_PG_DSN must be a keyword=value conninfo" \
		"string (host=... port=... user=...), not a URI" >&2
	exit 2
	;;
esac

psql_as() {
	dsn=$1
	shift
	psql "$dsn" -X -q -v ON_ERROR_STOP=1 "$@"
}
# Later keywords win in a conninfo string.
owner_dsn="$admin_dsn user=$owner password=$password"
app_dsn="$admin_dsn user=$app password=$password"
fast_dsn="$admin_dsn user=$fast password=$password"

cleanup() {
	status=$?
	trap - EXIT INT TERM HUP
	# Without ON_ERROR_STOP: a role that was never made must not keep
	# the others from being dropped.
	psql "$admin_dsn" -X -q >/dev/null 2>&1 <<SQL || true
DROP SCHEMA IF EXISTS "$schema" CASCADE;
DROP OWNED BY "$app";
DROP ROLE IF EXISTS "$app";
DROP OWNED BY "$fast";
DROP ROLE IF EXISTS "$fast";
DROP OWNED BY "$owner";
DROP ROLE IF EXISTS "$owner";
SQL
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

psql_as "$admin_dsn" <<SQL
CREATE ROLE "$owner" LOGIN PASSWORD '$password';
CREATE ROLE "$app" LOGIN PASSWORD '$password';
CREATE ROLE "$fast" LOGIN PASSWORD '$password';
DO \$\$ BEGIN
	EXECUTE format('GRANT CREATE, CONNECT ON DATABASE %I TO %I',
	               current_database(), '$owner');
	EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I',
	               current_database(), '$app');
	EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I',
	               current_database(), '$fast');
END \$\$;
SQL

# As a DBA would: every migration, in order, with plain psql.
for f in sql/[0-9][0-9][0-9][0-9]_*.sql; do
	psql_as "$owner_dsn" -v schema="$schema" -f "$f"
done
# Applying one again is refused, and changes nothing.
if psql_as "$owner_dsn" -v schema="$schema" \
	-f sql/0001_create_schema.sql >/dev/null 2>&1; then
	echo "run.sh: applying 0001 twice was not refused" >&2
	exit 1
fi

# The application roles' privileges, exactly as README documents them:
# the required ones for both, the optional ones for the third role.
for role in "$app" "$fast"; do
	psql_as "$owner_dsn" <<SQL
GRANT USAGE ON SCHEMA "$schema" TO "$role";
GRANT SELECT ON ALL TABLES IN SCHEMA "$schema" TO "$role";
GRANT EXECUTE ON FUNCTION "$schema".append_events(text, bigint, uuid[],
	text[], jsonb[], jsonb[]) TO "$role";
SQL
done
psql_as "$owner_dsn" <<SQL
GRANT UPDATE (version, last_key) ON "$schema".streams TO "$fast";
GRANT INSERT (stream_id, version, event_id, type, data, metadata)
	ON "$schema".events TO "$fast";
SQL

export EVS_TEST_PG_SCHEMA="$schema"
export EVS_TEST_PG_FAST_DSN="$fast_dsn" EVS_TEST_PG_FAST_ROLE="$fast"
echo "== integration: every suite, as the schema owner"
EVS_TEST_PG_DSN=$owner_dsn "$runner"
echo "== integration: the contract suite, as an application role that may"
echo "   only read the tables and execute append_events"
EVS_TEST_PG_DSN=$app_dsn CK_RUN_SUITE=contract "$runner"
# denied DSN STATEMENT: the role behind DSN is refused STATEMENT for want
# of a privilege, SQLSTATE 42501 (any other failure, or success, fails the
# run). The statements match no rows: a wrongly granted one changes nothing.
denied() {
	if out=$(psql_as "$1" -v VERBOSITY=verbose -c "$2" 2>&1); then
		echo "run.sh: a role that should not could run: $2" >&2
		exit 1
	fi
	case $out in
	*" 42501: "*) ;; # insufficient_privilege (any language)
	*)
		echo "run.sh: expected SQLSTATE 42501 for: $2; got: $out" >&2
		exit 1
		;;
	esac
}
t="\"$schema\""
new_event="'x', 0, gen_random_uuid(), 't', '{}'::jsonb"
# The application role cannot change history, nor write at all.
for stmt in "DELETE FROM $t.events WHERE false" \
	"UPDATE $t.events SET type = 'x' WHERE false" \
	"INSERT INTO $t.streams SELECT 'x', 0 WHERE false" \
	"UPDATE $t.streams SET version = 0 WHERE false" \
	"INSERT INTO $t.events (stream_id, version, event_id, type, data)
	 SELECT $new_event WHERE false"; do
	denied "$app_dsn" "$stmt"
done
echo "== integration: the application role cannot insert, update or delete rows"
# With the optional grants, it still cannot change or remove a stored event,
# make or rename a stream, or write the columns the server fills in.
for stmt in "DELETE FROM $t.events WHERE false" \
	"UPDATE $t.events SET type = 'x' WHERE false" \
	"TRUNCATE $t.events" \
	"DELETE FROM $t.streams WHERE false" \
	"INSERT INTO $t.streams SELECT 'x', 0 WHERE false" \
	"UPDATE $t.streams SET stream_id = 'x' WHERE false" \
	"INSERT INTO $t.events (stream_id, version, event_id, type, data,
	 recorded_at) SELECT $new_event, now() WHERE false" \
	"INSERT INTO $t.events (stream_id, version, event_id, type, data,
	 transaction_id) SELECT $new_event, '1'::xid8 WHERE false" \
	"INSERT INTO $t.events (stream_id, version, event_id, type, data,
	 global_position) OVERRIDING SYSTEM VALUE SELECT $new_event, 1
	 WHERE false"; do
	denied "$fast_dsn" "$stmt"
done
# ... while what the optional grants allow is allowed.
psql_as "$fast_dsn" -c "UPDATE $t.streams SET version = version WHERE false" \
	-c "INSERT INTO $t.events (stream_id, version, event_id, type, data,
	    metadata) SELECT $new_event, NULL WHERE false" >/dev/null
echo "== integration: with the optional grants it cannot change, delete or"
echo "   back-date events, nor make or rename streams"
