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
	psql_as "$admin_dsn" >/dev/null 2>&1 <<SQL || true
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
GRANT UPDATE (version) ON "$schema".streams TO "$fast";
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
# The application role cannot change history.
if psql_as "$app_dsn" -c "DELETE FROM \"$schema\".events" >/dev/null 2>&1 ||
	psql_as "$app_dsn" -c "UPDATE \"$schema\".events SET type = 'x'" \
		>/dev/null 2>&1 ||
	psql_as "$app_dsn" -c "INSERT INTO \"$schema\".streams VALUES ('x', 0)" \
		>/dev/null 2>&1; then
	echo "run.sh: the application role could change stored events" >&2
	exit 1
fi
echo "== integration: the application role cannot insert, update or delete rows"
# With the optional grants, it still cannot change or remove a stored event,
# make a stream, or write the columns the server fills in.
for stmt in "DELETE FROM \"$schema\".events" \
	"UPDATE \"$schema\".events SET type = 'x'" \
	"DELETE FROM \"$schema\".streams" \
	"INSERT INTO \"$schema\".streams VALUES ('x', 0)" \
	"UPDATE \"$schema\".streams SET stream_id = 'x'" \
	"INSERT INTO \"$schema\".events (stream_id, version, event_id, type, data, recorded_at) VALUES ('x', 0, gen_random_uuid(), 't', '{}', now())"; do
	if psql_as "$fast_dsn" -c "$stmt" >/dev/null 2>&1; then
		echo "run.sh: with the optional grants, the application role" \
			"could run: $stmt" >&2
		exit 1
	fi
done
echo "== integration: with the optional grants it cannot change, delete or"
echo "   back-date events, nor make or rename streams"
