#!/bin/sh
# test/cli/run.sh: the evstore tool, every subcommand, against the server
# that EVS_TEST_PG_DSN names (scripts/with-pg.sh provides one).
#
#   test/cli/run.sh EVSTORE
#
# Each check prints "ok   - ..." or "FAIL - ..." (with what it saw), and
# the last line is "N passed, N failed". Every schema this run makes is
# named evs_cli_<pid>_<time>_..., and all are dropped at the end, as is
# the one role it makes (evs_cli_<pid>_<time>_app).
set -u

evstore=${1:?usage: run.sh EVSTORE}
: "${EVS_TEST_PG_DSN:?EVS_TEST_PG_DSN must name the test server}"
case $evstore in
/*) ;;
*) evstore=$PWD/$evstore ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

EVS_PG_DSN=$EVS_TEST_PG_DSN
export EVS_PG_DSN
unset EVS_PG_SCHEMA
tag="evs_cli_$$_$(date +%s)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/evstore-cli.XXXXXX")

psql_q() {
	psql "$EVS_TEST_PG_DSN" -X -q -v ON_ERROR_STOP=1 -At "$@"
}

cleanup() {
	status=$?
	trap - EXIT INT TERM HUP
	psql_q >/dev/null 2>&1 <<SQL || true
SET client_min_messages = warning;
DO \$\$
DECLARE s text;
BEGIN
	FOR s IN SELECT nspname FROM pg_namespace
	         WHERE nspname LIKE '${tag}%' LOOP
		EXECUTE format('DROP SCHEMA %I CASCADE', s);
	END LOOP;
	IF EXISTS (SELECT FROM pg_roles WHERE rolname = '${tag}_app') THEN
		EXECUTE format('DROP OWNED BY %I', '${tag}_app');
		EXECUTE format('DROP ROLE %I', '${tag}_app');
	END IF;
END
\$\$;
SQL
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

passed=0
failed=0

ok() {
	passed=$((passed + 1))
	echo "ok   - $1"
}

not_ok() {
	failed=$((failed + 1))
	echo "FAIL - $1"
	shift
	for line in "$@"; do
		echo "       $line"
	done
}

# run CMD...: stdout in $tmp/out, stderr in $tmp/err, status in $rc.
run() {
	"$@" >"$tmp/out" 2>"$tmp/err" </dev/null
	rc=$?
}

# run_in FILE CMD...: the same, with FILE on stdin.
run_in() {
	in=$1
	shift
	"$@" >"$tmp/out" 2>"$tmp/err" <"$in"
	rc=$?
}

seen() {
	echo "exit $rc; stdout: $(head -c 300 "$tmp/out" | tr '\n' '|')"
	echo "stderr: $(head -c 400 "$tmp/err" | tr '\n' '|')"
}

# check DESC CONDITION...: CONDITION is a shell command.
check() {
	desc=$1
	shift
	if "$@"; then
		ok "$desc"
	else
		not_ok "$desc" "$(seen)"
	fi
}

rc_is() { [ "$rc" = "$1" ]; }
out_has() { grep -q -- "$1" "$tmp/out"; }
err_has() { grep -q -- "$1" "$tmp/err"; }
out_is() { [ "$(cat "$tmp/out")" = "$1" ]; }
err_is() { [ "$(cat "$tmp/err")" = "$1" ]; }
err_empty() { [ ! -s "$tmp/err" ]; }
# Exactly one line on stderr, and it starts with "evstore".
err_one_line() {
	[ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q '^evstore' "$tmp/err"
}

# Exit status and the one-line message: the usual shape of a failure.
fails_with() {
	want_rc=$1 want=$2
	rc_is "$want_rc" && err_one_line && err_has "$want"
}

# An export without the fields the store assigns.
strip_assigned() {
	sed -e 's/,"position":[0-9]*,"recorded_at":"[^"]*"}$/}/' "$1"
}

# An export without its positions: what a restore cannot keep.
strip_position() {
	sed -e 's/,"position":[0-9]*\(,"recorded_at":"[^"]*"}\)$/\1/' "$1"
}

# The recorded_at of each line of an export.
times_of() {
	sed -e 's/.*,"recorded_at":"\([^"]*\)"}$/\1/' "$1"
}

# The recorded times of a schema's events, as PostgreSQL writes them.
pg_times() {
	psql_q -c "SET TimeZone = 'UTC'" -c "SET DateStyle = 'ISO'" \
		-c "SELECT recorded_at FROM \"$1\".events ORDER BY stream_id, version"
}

S=${tag}_main
echo "# evstore tool tests on schema prefix $tag"

# ---- version, help, usage ---------------------------------------------

run "$evstore" --version
check "--version prints the version" \
	eval 'rc_is 0 && out_has "^evstore [0-9][0-9.]* (schema version [0-9]*)$"'
run "$evstore" --help
check "--help lists the commands" \
	eval 'rc_is 0 && out_has migrate && out_has import && out_has "Exit codes"'
check "--help lists tail and subscriptions, aligned" \
	eval 'out_has "^  tail           print the feed" &&
	      out_has "^  subscriptions  stored subscriptions"'
run "$evstore" tail --help
check "tail --help explains POSITION (COMMIT:GLOBAL) and --from with a checkpoint" \
	eval 'rc_is 0 && out_has "POSITION is COMMIT:GLOBAL" &&
	      out_has "applies only while NAME has no checkpoint"'
for cmd in migrate status append read tail subscriptions export import \
	delete undelete snapshots truncate retention scavenge; do
	run "$evstore" $cmd --help
	check "$cmd --help prints its usage and exits 0" \
		eval 'rc_is 0 && out_has "^usage: evstore $cmd" && err_empty'
done
run "$evstore" help read
check "help read is read --help" eval 'rc_is 0 && out_has "^usage: evstore read"'
run "$evstore" import --help
check "import --help documents --server-time" \
	eval 'rc_is 0 && out_has "^  --server-time  " && out_has "import_events"'

usage_case() {
	desc=$1
	shift
	run "$@"
	check "bad usage: $desc (exit 2, one line with a hint)" \
		eval 'fails_with 2 "--help)$"'
}
usage_case "no command" "$evstore"
usage_case "unknown command" "$evstore" frobnicate
usage_case "unknown option" "$evstore" read s --bogus
usage_case "unknown global option" "$evstore" --bogus status
usage_case "option without its value" "$evstore" read s --from
usage_case "append without TYPE" "$evstore" append s
usage_case "append with too many arguments" "$evstore" append s T '{}' x
usage_case "read without STREAM" "$evstore" read
usage_case "status with an argument" "$evstore" status extra
usage_case "migrate with an argument" "$evstore" migrate extra
usage_case "--expected not a version" "$evstore" append s T --expected soon
usage_case "--expected below -1" "$evstore" append s T --expected -2
usage_case "--id not a UUID" "$evstore" append s T --id 1234
usage_case "--from negative" "$evstore" read s --from -1
usage_case "--limit not a number" "$evstore" read s --limit many
usage_case "--format unknown" "$evstore" read s --format xml
usage_case "--jobs 0" "$evstore" import --jobs 0
usage_case "import with two files" "$evstore" import a b
usage_case "empty --schema" "$evstore" status --schema ""
usage_case "tail with an argument" "$evstore" tail acct-1
usage_case "tail --category empty" "$evstore" tail --category ""
usage_case "tail --category with a '-'" "$evstore" tail --category acct-1
usage_case "tail --type empty" "$evstore" tail --type ""
usage_case "tail --type 17 times" "$evstore" tail --type a --type b --type c \
	--type d --type e --type f --type g --type h --type i --type j --type k \
	--type l --type m --type n --type o --type p --type q
usage_case "tail --from a word" "$evstore" tail --from soon
usage_case "tail --from a number alone" "$evstore" tail --from 12
usage_case "tail --from without GLOBAL" "$evstore" tail --from 12:
usage_case "tail --from a negative position" "$evstore" tail --from 12:-1
usage_case "tail --from a signed commit" "$evstore" tail --from +12:1
usage_case "tail --from past int64" "$evstore" tail --from 1:9223372036854775808
usage_case "tail --subscription empty" "$evstore" tail --subscription ""
usage_case "tail --member without --subscription" "$evstore" tail --member 0/2
usage_case "tail --member without /K" "$evstore" tail --subscription s --member 1
usage_case "tail --member M not below K" "$evstore" tail --subscription s --member 2/2
usage_case "tail --member of a group of 0" "$evstore" tail --subscription s --member 0/0
usage_case "tail --member negative" "$evstore" tail --subscription s --member -1/2
usage_case "tail --member not numbers" "$evstore" tail --subscription s --member a/b
usage_case "tail --max 0" "$evstore" tail --max 0
usage_case "tail --max not a number" "$evstore" tail --max many
usage_case "tail --format unknown" "$evstore" tail --format xml
usage_case "tail --follow with a value" "$evstore" tail --follow=yes
usage_case "tail --subscription without its value" "$evstore" tail --subscription
usage_case "subscriptions with an argument" "$evstore" subscriptions extra
usage_case "subscriptions --format unknown" "$evstore" subscriptions --format xml
usage_case "delete without STREAM" "$evstore" delete
usage_case "delete --reuse without --hard" "$evstore" delete s --reuse
usage_case "delete --expected with --yes" "$evstore" delete s --expected 1 --yes
usage_case "delete --expected -1" "$evstore" delete s --expected -1
usage_case "undelete --hard" "$evstore" undelete s --hard
usage_case "snapshots without STREAM" "$evstore" snapshots
usage_case "truncate without --before" "$evstore" truncate s --yes
usage_case "truncate --before -1" "$evstore" truncate s --before -1 --yes
usage_case "retention --max-age in weeks" "$evstore" retention s --max-age 2w --yes
usage_case "retention --max-count -1" "$evstore" retention s --max-count -1 --yes
usage_case "scavenge --max-events 0" "$evstore" scavenge --max-events 0
usage_case "scavenge with an argument" "$evstore" scavenge s
usage_case "snapshots --format unknown" "$evstore" snapshots s --format xml

run "$evstore" append s T '{}' --bogus
check "a usage line names the option and the command's help" \
	eval 'err_is "evstore append: unknown option --bogus (see evstore append --help)"'

# ---- the schema: missing, dry run, migrate ------------------------------

run "$evstore" status --schema "$S"
check "status on a missing schema says to run evstore migrate (exit 1)" \
	eval 'fails_with 1 "run evstore migrate" && err_has "\"$S\" does not exist"'

run "$evstore" append s T '{}' --schema "$S"
check "append on a missing schema fails with the library's hint" \
	eval 'fails_with 1 "evstore migrate"'

run "$evstore" migrate --dry-run --schema "$S"
check "migrate --dry-run prints the SQL for the schema" \
	eval 'rc_is 0 && out_has "CREATE TABLE streams" &&
	      out_has "CREATE SCHEMA IF NOT EXISTS \"$S\"" &&
	      out_has "^-- evstore migrate: 0001_create_schema" &&
	      ! out_has "^\\\\"'
check "migrate --dry-run leaves no psql variables or meta-commands" \
	eval '! out_has ":\"schema\"" && ! out_has "^\\\\if"'
have=$(psql_q -c "SELECT count(*) FROM pg_namespace WHERE nspname = '$S'")
run "$evstore" status --schema "$S"
check "migrate --dry-run applied nothing" \
	eval '[ "$have" = 0 ] && rc_is 1'

# The schema version this evstore expects: its highest migration.
latest=$(ls "$root"/sql/[0-9][0-9][0-9][0-9]_*.sql | wc -l)
run "$evstore" migrate --schema "$S"
check "migrate applies every migration, in order, and says so" \
	eval 'rc_is 0 && out_has "^applied 0001_create_schema$" &&
	      [ "$(grep -c "^applied " "$tmp/out")" = "$latest" ] && err_empty'
run "$evstore" migrate --schema "$S"
check "migrate again: up to date, nothing applied" \
	eval 'rc_is 0 && out_has "up to date (version $latest)" &&
	      ! out_has applied'
run "$evstore" migrate --schema "$S" --dry-run
check "migrate --dry-run when up to date prints no SQL" \
	eval 'rc_is 0 && ! out_has CREATE && out_has "up to date"'
run "$evstore" status --schema "$S"
check "status: latest version, up to date, no streams or events" \
	eval 'rc_is 0 && out_has "version $latest (up to date)" &&
	      out_has "^pending: *none" && out_has "^streams: *0$" &&
	      out_has "^events: *0$" && out_has "^newest event: *none$"'

# Two concurrent runs on a fresh schema: both succeed, one applies.
C=${tag}_race
"$evstore" migrate --schema "$C" >"$tmp/m1" 2>"$tmp/m1.err" &
p1=$!
"$evstore" migrate --schema "$C" >"$tmp/m2" 2>"$tmp/m2.err" &
p2=$!
wait $p1
r1=$?
wait $p2
r2=$?
applied=$(cat "$tmp/m1" "$tmp/m2" | grep -c '^applied 0001')
rows=$(psql_q -c "SELECT count(*) FROM \"$C\".schema_version" 2>&1)
rc=$r1
check "two concurrent migrates both succeed and apply each migration once" \
	eval '[ "$r1" = 0 ] && [ "$r2" = 0 ] && [ "$applied" = 1 ] &&
	      [ "$rows" = "$latest" ]'

# The same files, applied by hand with psql, are what evstore expects;
# a schema at 0001 gets the rest from evstore migrate.
P=${tag}_psql
psql_q -v schema="$P" -f "$root/sql/0001_create_schema.sql" >/dev/null 2>&1
run "$evstore" migrate --schema "$P"
check "a schema made with psql -f at 0001 gets only the later migrations" \
	eval 'rc_is 0 && ! out_has "^applied 0001" &&
	      out_has "^applied 0002_stream_order_key$"'
P2=${tag}_psql2
for f in "$root"/sql/[0-9][0-9][0-9][0-9]_*.sql; do
	psql_q -v schema="$P2" -f "$f" >/dev/null 2>&1
done
run "$evstore" migrate --schema "$P2"
check "a schema made with psql -f is up to date for evstore migrate" \
	eval 'rc_is 0 && out_has "up to date (version $latest)"'

# A store that holds events when 0005 turns its CHECK constraints into
# domains: nothing is rewritten (same files for tables and indexes), the
# events read back the same, and the rules still hold for direct SQL.
U=${tag}_upgrade
for f in "$root"/sql/000[1-4]_*.sql; do
	psql_q -v schema="$U" -f "$f" >/dev/null 2>&1
done
psql_q >/dev/null <<SQL
SET search_path TO "$U";
INSERT INTO streams (stream_id, version) SELECT 'up-' || g, 2
  FROM generate_series(1, 100) g;
INSERT INTO events (stream_id, version, event_id, type, data, metadata)
SELECT 'up-' || g, v, gen_random_uuid(), 'T' || v, jsonb_build_object('v', v),
       CASE WHEN v = 1 THEN '{"m": 1}'::jsonb END
  FROM generate_series(1, 100) g, generate_series(0, 2) v;
SQL
files_of() {
	psql_q -c "SELECT string_agg(relname || '=' || relfilenode, ','
	                             ORDER BY relname) FROM pg_class
	            WHERE relnamespace = '\"$U\"'::regnamespace
	              AND relkind IN ('r', 'i')
	              AND relname ~ '^(events|streams)(_|$)'
	              AND relname <> 'streams_retained'"
}
# (streams_retained: an index 0007 adds; the files compared are the ones
# there before.)
rows_of() {
	psql_q -c "SELECT md5(string_agg(concat_ws('|', stream_id, version,
	             event_id, type, data, metadata, global_position,
	             transaction_id), ',' ORDER BY global_position))
	             FROM \"$U\".events"
}
files_before=$(files_of)
rows_before=$(rows_of)
run "$evstore" migrate --schema "$U"
files_after=$(files_of)
rows_after=$(rows_of)
check "0005 on a store with events: applied, nothing rewritten, rows the same" \
	eval 'rc_is 0 && out_has "^applied 0005_domain_checks$" &&
	      out_has "^applied 0006_immutable_history$" &&
	      [ "$files_before" = "$files_after" ] &&
	      [ "$rows_before" = "$rows_after" ] && [ -n "$rows_after" ]'
bad=0
for q in "INSERT INTO streams (stream_id, version) VALUES (E'a\\x01', 0)" \
	"UPDATE streams SET version = -1 WHERE stream_id = 'up-1'" \
	"INSERT INTO events (stream_id, version, event_id, type, data)
	 VALUES ('up-2', 3, gen_random_uuid(), '', '{}')" \
	"INSERT INTO events (stream_id, version, event_id, type, data, metadata)
	 VALUES ('up-3', 3, gen_random_uuid(), 't', '{}', '[1]')"; do
	out=$(psql_q -c "SET search_path TO \"$U\"" -c "$q" 2>&1) &&
		bad=$((bad + 1))
	case $out in *"violates check constraint"*) ;; *) bad=$((bad + 1)) ;; esac
done
rows_last=$(rows_of)
check "after 0005, direct SQL that breaks a rule is refused and changes nothing" \
	eval '[ "$bad" = 0 ] && [ "$rows_last" = "$rows_before" ]'

# A schema newer than this evstore.
N=${tag}_newer
"$evstore" migrate --schema "$N" >/dev/null 2>&1
psql_q -c "INSERT INTO \"$N\".schema_version VALUES (99, '0099_future')"
run "$evstore" migrate --schema "$N"
check "migrate refuses a newer schema" eval 'fails_with 1 "newer than"'
run "$evstore" status --schema "$N"
check "status on a newer schema reports it (exit 1)" \
	eval 'rc_is 1 && out_has "version 99" && err_has "upgrade evstore"'

# Connection errors are one line.
run "$evstore" status --dsn "host=$tmp/nowhere port=1"
check "an unreachable server is one line, exit 1" \
	eval 'fails_with 1 "could not connect"'
run "$evstore" read s --dsn "host=$tmp/nowhere port=1" --schema "$S"
check "an unreachable server (through the library) is one line, exit 1" \
	eval 'fails_with 1 "could not connect"'

# ---- append ------------------------------------------------------------

export EVS_PG_SCHEMA=$S
run "$evstore" append acct-1 Opened '{"owner": "Ada"}' --expected -1
check "append to a new stream prints version 0" eval 'rc_is 0 && out_is 0'
run "$evstore" append acct-1 Deposited '{"amount": 500}' --expected 0 \
	--metadata '{"by": "clerk-1"}'
check "append with --expected 0 and metadata prints 1" \
	eval 'rc_is 0 && out_is 1'
run "$evstore" append acct-1 Deposited '{"amount": 1}' --expected 0
check "a stale --expected is a conflict: exit 3 and the exact message" \
	eval 'rc_is 3 && out_is "" && err_is "evstore: conflict appending events for aggregate \"acct-1\": expected version 0, but current version is 1"'
run "$evstore" append acct-1 Opened '{}' --expected -1
check "--expected -1 on an existing stream is a conflict" \
	eval 'rc_is 3 && err_is "evstore: conflict appending events for aggregate \"acct-1\": expected version -1, but current version is 1"'
run "$evstore" append acct-new Deposited '{}' --expected exists
check "--expected exists on an empty stream is a conflict" \
	eval 'rc_is 3 && err_one_line && err_has "conflict appending"'
run "$evstore" append acct-1 Deposited '{"amount": 2' --expected 1
check "bad JSON data: exit 1, one line, nothing sent" \
	eval 'fails_with 1 "data is not valid JSON"'
run "$evstore" append acct-1 Deposited '{}' --metadata '[1]'
check "metadata that is not an object: exit 1, one line" \
	eval 'fails_with 1 "metadata must be a JSON object"'
run "$evstore" append acct-1 '' '{}'
check "an empty type: exit 1, one line" eval 'fails_with 1 "type"'
printf '{"amount": 300,\n "note": "from stdin"}\n' >"$tmp/data.json"
run_in "$tmp/data.json" "$evstore" append acct-1 Deposited - --expected 1
check "append reads DATA from stdin with -" eval 'rc_is 0 && out_is 2'
run "$evstore" append acct-1 Noted
check "append without DATA stores {} at any version" \
	eval 'rc_is 0 && out_is 3'
id=0191e5a0-0000-7000-8000-00000000abcd
run "$evstore" append acct-1 Withdrawn '{"amount": 100}' --expected 3 \
	--id "$id"
check "append with --id" eval 'rc_is 0 && out_is 4'
run "$evstore" append acct-1 Withdrawn '{"amount": 100}' --expected 3 \
	--id "$id"
check "the same --id after the same version again: stored once" \
	eval 'rc_is 0 && out_is 4'
run "$evstore" append acct-1 Withdrawn '{"amount": 100}' --id "$id"
check "the same --id elsewhere with any version: a replay too" \
	eval 'rc_is 0 && out_is 4'
run "$evstore" append acct-1 Other '{}' --expected 4 --id "$id"
check "the same --id as a new event: exit 1, duplicate" \
	eval 'fails_with 1 "already stored"'
"$evstore" append 'acct-2 "quoted" \ and ünïcode' Opened \
	'{"text": "line\nbreak \"q\" \\ \u00e9 \ud83d\ude00", "n": 123456789012345678901234567890, "f": 1.5e300}' \
	>/dev/null 2>&1
"$evstore" append acct-3 Opened '[null, true, false, 0, -1.25, "x"]' \
	>/dev/null 2>&1

# ---- read --------------------------------------------------------------

run "$evstore" read acct-1 --format ndjson
check "read prints one NDJSON line per event" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/out")" -eq 5 ]'
check "read NDJSON has every stored field, in order" \
	eval 'head -n 1 "$tmp/out" | grep -q "^{\"stream_id\":\"acct-1\",\"version\":0,\"event_id\":\"[0-9a-f-]\{36\}\",\"type\":\"Opened\",\"data\":{\"owner\": \"Ada\"},\"metadata\":null,\"position\":[0-9]*,\"recorded_at\":\"[0-9]\{4\}-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\.[0-9]\{6\}Z\"}$"'
check "read NDJSON keeps metadata and the chosen id" \
	eval 'sed -n 2p "$tmp/out" | grep -q "\"metadata\":{\"by\": \"clerk-1\"}" &&
	      sed -n 5p "$tmp/out" | grep -q "\"event_id\":\"$id\""'
run "$evstore" read acct-1
check "read defaults to NDJSON when stdout is not a terminal" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/out")" -eq 5 ] && out_has "^{\"stream_id\""'
run "$evstore" read acct-1 --from 1 --limit 2 --format ndjson
check "read --from 1 --limit 2 prints versions 1 and 2" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/out")" -eq 2 ] &&
	      head -n 1 "$tmp/out" | grep -q "\"version\":1," &&
	      tail -n 1 "$tmp/out" | grep -q "\"version\":2,"'
versions() { grep -o '"version":[0-9]*' "$tmp/out" | cut -d: -f2 | tr '\n' ' '; }
run "$evstore" read acct-1 --backward --format ndjson
check "read --backward prints every event, newest first" \
	eval 'rc_is 0 && [ "$(versions)" = "4 3 2 1 0 " ]'
run "$evstore" read acct-1 --backward --from 3 --limit 2 --format ndjson
check "read --backward --from 3 --limit 2 prints versions 3 and 2" \
	eval 'rc_is 0 && [ "$(versions)" = "3 2 " ]'
run "$evstore" read acct-1 --last 2 --format ndjson
check "read --last 2 prints the last two, oldest first" \
	eval 'rc_is 0 && [ "$(versions)" = "3 4 " ]'
run "$evstore" read acct-1 --last 99 --format ndjson
check "read --last more than there are prints them all" \
	eval 'rc_is 0 && [ "$(versions)" = "0 1 2 3 4 " ]'
run "$evstore" read nothing-here --last 3 --backward
check "read --last with --backward is a usage error (exit 2)" \
	eval 'fails_with 2 "--last goes with neither"'
run "$evstore" read acct-1 --last 0
check "read --last 0 is a usage error (exit 2)" \
	eval 'fails_with 2 "--last takes a count"'
# ---- delete, undelete ---------------------------------------------------

# In a schema of their own: the export and import checks below work on
# the main one's streams.
EVS_PG_SCHEMA=${tag}_life
run "$evstore" migrate
for v in 0 1 2; do
	run "$evstore" append life-1 Noted "{\"n\": $v}"
done
run "$evstore" delete life-1 --expected 1
check "delete at a stale version: the conflict, exit 3, nothing deleted" \
	eval 'fails_with 3 "expected version 1, but current version is 2" &&
	      out_is ""'
run "$evstore" delete life-1 --expected 2
check "delete --expected 2 prints the \$deleted marker's version" \
	eval 'rc_is 0 && out_is 3 && err_empty'
run "$evstore" read life-1
check "read of a deleted stream: exit 1, says deleted" \
	eval 'fails_with 1 "\"life-1\" is deleted (at version 3)"'
run "$evstore" append life-1 Noted
check "append to a deleted stream: exit 1, nothing stored" \
	eval 'fails_with 1 "is deleted" && out_is ""'
run "$evstore" delete life-1 --yes
check "delete of a deleted stream: exit 1, says so" \
	eval 'fails_with 1 "is deleted"'
run "$evstore" undelete life-1 --expected 3
check "undelete prints the \$undeleted marker's version" \
	eval 'rc_is 0 && out_is 4'
run "$evstore" read life-1 --format ndjson
check "read after undelete: the events and both markers" \
	eval 'rc_is 0 && [ "$(versions)" = "0 1 2 3 4 " ] &&
	      sed -n 4p "$tmp/out" | grep -q "\"type\":\"\\\$deleted\"" &&
	      sed -n 5p "$tmp/out" | grep -q "\"type\":\"\\\$undeleted\""'
run "$evstore" undelete life-1 --yes
check "undelete of a stream that is not deleted: exit 1" \
	eval 'fails_with 1 "is not deleted"'
run "$evstore" delete life-1 --hard
check "delete --hard from a script (no terminal): at any version" \
	eval 'rc_is 0 && out_is 5'
run "$evstore" undelete life-1 --yes
check "undelete after --hard: exit 1, cannot be undeleted" \
	eval 'fails_with 1 "cannot be undeleted"'
run psql_q -c "SELECT operation || ':' || expected_version
	FROM \"${tag}_life\".lifecycle_log WHERE stream_id = 'life-1' ORDER BY id"
check "each change is in lifecycle_log with its expected version" \
	eval 'rc_is 0 && [ "$(tr "\n" " " <"$tmp/out")" = "delete:2 undelete:3 hard-delete:-2 " ]'
run psql_q -c "SELECT count(*) FROM \"${tag}_life\".events WHERE stream_id = 'life-1'"
check "delete --hard left only the marker" eval 'out_is 1'
run "$evstore" append life-2 Noted
run "$evstore" delete life-2 --hard --reuse
check "delete --hard --reuse prints -1" eval 'rc_is 0 && out_is -1'
run "$evstore" append life-2 Noted --expected -1
check "after --reuse the id starts again at version 0" \
	eval 'rc_is 0 && out_is 0'
run "$evstore" append '$mine' Noted
check "append to a '\$' stream: refused, exit 1" \
	eval 'fails_with 1 "evstore'"'"'s own"'
if script -qec true /dev/null >/dev/null 2>&1; then
	script -qec "'$evstore' delete life-2" /dev/null >"$tmp/out" 2>&1 \
		</dev/null
	rc=$?
	: >"$tmp/err"
	check "on a terminal, delete without --expected or --yes: exit 2" \
		eval 'rc_is 2 && out_has "on a terminal, say --expected"'
	run "$evstore" read life-2 --format ndjson
	check "... and nothing was deleted" eval 'rc_is 0 && [ "$(versions)" = "0 " ]'
else
	echo "# no script(1) here: the terminal check is skipped"
fi
run "$evstore" snapshots life-2 --format ndjson
check "snapshots of a stream without any: nothing, exit 0" \
	eval 'rc_is 0 && out_is ""'
psql_q -c "SELECT \"${tag}_life\".store_snapshot('life-2', 'acct', 3, 0,
	'{\"sum\": 12}')" >/dev/null
run "$evstore" snapshots life-2 --format ndjson
check "snapshots lists kind, format, version, time and size" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/out")" -eq 1 ] &&
	      out_has "^{\"stream_id\":\"life-2\",\"kind\":\"acct\",\"format\":3,\"version\":0,\"taken_at\":\"20[0-9-]*T[0-9:.]*Z\",\"bytes\":11}$"'
run "$evstore" snapshots life-2 --format table
check "snapshots --format table: a header and a row" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/out")" -eq 2 ] &&
	      head -n 1 "$tmp/out" | grep -q "^kind  *format  *version  *taken_at  *bytes$" &&
	      tail -n 1 "$tmp/out" | grep -q "^acct  *3  *0  .*  11$"'
for v in 0 1 2 3 4 5; do
	run "$evstore" append life-3 Noted "{\"n\": $v}"
done
run "$evstore" truncate life-3 --before 3 --yes
check "truncate without a snapshot that covers the cut: exit 1" \
	eval 'fails_with 1 "no snapshot"'
psql_q -c "SELECT \"${tag}_life\".store_snapshot('life-3', 'k', 1, 2, '{}')" \
	>/dev/null
run "$evstore" truncate life-3 --before 3 --expected 4
check "truncate at a stale version: exit 3" eval 'rc_is 3'
run "$evstore" truncate life-3 --before 3 --expected 5
check "truncate --before 3: reads start there" \
	eval 'rc_is 0 && run "$evstore" read life-3 --format ndjson &&
	      [ "$(versions)" = "3 4 5 " ]'
run "$evstore" retention life-3 --max-count 2 --yes --force
check "retention --max-count 2: the last two" \
	eval 'rc_is 0 && run "$evstore" read life-3 --format ndjson &&
	      [ "$(versions)" = "4 5 " ]'
run "$evstore" scavenge --max-events 2
check "scavenge removes what was released, in steps, and says so" \
	eval 'rc_is 0 && out_is "removed 4 events"'
run psql_q -c "SELECT count(*) || ':' || min(version) FROM
	\"${tag}_life\".events WHERE stream_id = 'life-3'"
check "... leaving the retained events" eval 'out_is "2:4"'
run psql_q -c "SELECT string_agg(operation, ' ' ORDER BY id) FROM
	\"${tag}_life\".lifecycle_log WHERE operation IN ('truncate',
	'retention', 'scavenge')"
check "truncate, retention and each scavenge step are logged" \
	eval 'out_is "truncate retention scavenge scavenge"'
run "$evstore" retention life-3 --max-age 90d --yes
check "retention --max-age 90d keeps recent events (no cut: no snapshot needed)" \
	eval 'rc_is 0 && run "$evstore" read life-3 --format ndjson &&
	      [ "$(versions)" = "4 5 " ]'
EVS_PG_SCHEMA=$S

run "$evstore" read acct-1 --format table
check "read --format table: a header and one row per event" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/out")" -eq 6 ] &&
	      head -n 1 "$tmp/out" | grep -q "^version  type  *recorded_at  *data$"'
# Aligned: every row has its recorded_at where the header has it.
col=$(head -n 1 "$tmp/out" | awk '{print index($0, "recorded_at")}')
misaligned=$(tail -n +2 "$tmp/out" | awk -v c="$col" \
	'substr($0, c, 2) !~ /^[0-9][0-9]$/ || substr($0, c - 2, 2) != "  "' |
	wc -l)
check "read --format table columns are aligned" \
	eval '[ "$misaligned" -eq 0 ] && grep -q "^      4  Withdrawn" "$tmp/out"'
run "$evstore" read no-such-stream --format table
check "read of a stream with no events: just the header, exit 0" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/out")" -eq 1 ]'
run "$evstore" read no-such-stream --format ndjson
check "read of a stream with no events prints nothing (ndjson)" \
	eval 'rc_is 0 && [ ! -s "$tmp/out" ] && err_empty'

run "$evstore" status
check "status counts streams and events, and shows the newest time" \
	eval 'rc_is 0 && out_has "^streams: *3$" && out_has "^events: *7$" &&
	      out_has "^newest event: *[0-9]\{4\}-.*Z$"'

# ---- export and import -------------------------------------------------

# More events: three streams of 2,500 (past the 1,000-event batches),
# written interleaved, so that the commit order mixes streams.
: >"$tmp/gen.ndjson"
awk 'BEGIN {
	for (v = 0; v < 2500; v++)
		for (s = 1; s <= 3; s++)
			printf "{\"stream_id\":\"gen-%d\",\"version\":%d,\"event_id\":\"00000000-0000-7000-8000-%06d%06d\",\"type\":\"Tick\",\"data\":{\"s\": %d, \"v\": %d},\"metadata\":%s,\"recorded_at\":\"2021-%02d-%02dT%02d:%02d:%02d.%06dZ\"}\n", s, v, s, v, s, v, (v % 2 ? "{\"m\": true}" : "null"), 1 + v % 12, 1 + v % 28, s, v % 60, v * 7 % 60, v * 397 % 1000000
}' >"$tmp/gen.ndjson"
run "$evstore" import "$tmp/gen.ndjson"
check "import of a generated file (3 streams x 2500)" \
	eval 'rc_is 0 && out_has "^imported 7500 events in 3 streams (0 already stored, skipped)$"'
"$evstore" export gen-1 gen-2 gen-3 2>/dev/null | strip_position /dev/stdin |
	sort >"$tmp/a"
sort "$tmp/gen.ndjson" >"$tmp/b"
check "import keeps each recorded_at: the export is the file, but for position" \
	eval '[ "$(wc -l <"$tmp/a")" -eq 7500 ] && cmp -s "$tmp/a" "$tmp/b"'

run "$evstore" export
check "export writes every event" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/out")" -eq 7507 ] && err_empty'
cp "$tmp/out" "$tmp/source.ndjson"
run "$evstore" export acct-1 gen-2
check "export STREAM... writes those streams, in version order" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/out")" -eq 2505 ] &&
	      head -n 1 "$tmp/out" | grep -q "\"stream_id\":\"acct-1\",\"version\":0," &&
	      tail -n 1 "$tmp/out" | grep -q "\"stream_id\":\"gen-2\",\"version\":2499,"'
run "$evstore" export acct-1 no-such-stream
check "export of a stream with no events: exit 1, one line" \
	eval 'fails_with 1 "\"no-such-stream\" has no events"'

T=${tag}_copy
"$evstore" migrate --schema "$T" >/dev/null 2>&1
run "$evstore" import "$tmp/source.ndjson" --schema "$T"
check "import of the export into an empty schema" \
	eval 'rc_is 0 && out_is "imported 7507 events in 6 streams (0 already stored, skipped)" &&
	      err_empty'
"$evstore" export --schema "$T" >"$tmp/copy.ndjson" 2>/dev/null
strip_position "$tmp/source.ndjson" | sort >"$tmp/a"
strip_position "$tmp/copy.ndjson" | sort >"$tmp/b"
check "export -> import -> export: identical but for position (ids, versions, data, recorded_at)" \
	eval '[ "$(wc -l <"$tmp/b")" -eq 7507 ] && cmp -s "$tmp/a" "$tmp/b"'
check "the positions are new, the times are the source's" \
	eval '! cmp -s "$tmp/source.ndjson" "$tmp/copy.ndjson" &&
	      [ "$(times_of "$tmp/source.ndjson" | sort)" = "$(times_of "$tmp/copy.ndjson" | sort)" ]'
for s in acct-1 'acct-2 "quoted" \ and ünïcode' gen-1; do
	"$evstore" export "$s" 2>/dev/null | strip_position /dev/stdin >"$tmp/a"
	"$evstore" export "$s" --schema "$T" 2>/dev/null |
		strip_position /dev/stdin >"$tmp/b"
	check "stream \"$s\" is identical after the round trip (recorded_at too)" \
		eval '[ -s "$tmp/a" ] && cmp -s "$tmp/a" "$tmp/b"'
done
check "big integers and escapes survive the round trip" \
	grep -q '"n": 123456789012345678901234567890' "$tmp/copy.ndjson"
pg_times "$S" >"$tmp/a"
pg_times "$T" >"$tmp/b"
check "PostgreSQL holds the same recorded_at in the copy" \
	eval '[ "$(wc -l <"$tmp/b")" -eq 7507 ] && cmp -s "$tmp/a" "$tmp/b"'

run_in "$tmp/source.ndjson" "$evstore" import - --schema "$T"
"$evstore" export --schema "$T" >"$tmp/copy2.ndjson" 2>/dev/null
check "importing the same file again (from stdin) changes nothing" \
	eval 'rc_is 0 && cmp -s "$tmp/copy.ndjson" "$tmp/copy2.ndjson"'
check "importing the same file again says every event was skipped" \
	eval 'out_is "imported 7507 events in 6 streams (7507 already stored, skipped)" &&
	      err_empty'

# An import that stopped half way, then the whole file: resumes.
R=${tag}_resume
"$evstore" migrate --schema "$R" >/dev/null 2>&1
head -n 3000 "$tmp/source.ndjson" >"$tmp/half.ndjson"
"$evstore" import "$tmp/half.ndjson" --schema "$R" >/dev/null 2>&1
run "$evstore" import "$tmp/source.ndjson" --schema "$R" --jobs 1
"$evstore" export --schema "$R" 2>/dev/null | strip_assigned /dev/stdin |
	sort >"$tmp/b"
strip_assigned "$tmp/source.ndjson" | sort >"$tmp/a"
check "importing a longer file over a partial import completes it" \
	eval 'rc_is 0 && cmp -s "$tmp/a" "$tmp/b"'
check "... and counts the 3000 events already stored as skipped" \
	eval 'out_has "^imported 7507 events in 6 streams (3000 already stored, skipped)$"'

# The same, cut inside a stream's batch: the first append of the whole
# file overlaps what is stored, resends that part and appends the rest.
R2=${tag}_resume2
"$evstore" migrate --schema "$R2" >/dev/null 2>&1
head -n 2500 "$tmp/gen.ndjson" >"$tmp/part.ndjson"
"$evstore" import "$tmp/part.ndjson" --schema "$R2" >/dev/null 2>&1
run "$evstore" import "$tmp/gen.ndjson" --schema "$R2"
"$evstore" export gen-1 gen-2 gen-3 --schema "$R2" 2>/dev/null |
	strip_assigned /dev/stdin | sort >"$tmp/b"
"$evstore" export gen-1 gen-2 gen-3 2>/dev/null | strip_assigned /dev/stdin |
	sort >"$tmp/a"
check "importing over a partial import that ends inside a batch" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/b")" -eq 7500 ] && cmp -s "$tmp/a" "$tmp/b"'
check "... counts the resent part of each batch as skipped" \
	eval 'out_has "^imported 7500 events in 3 streams (2500 already stored, skipped)$"'
"$evstore" export gen-1 gen-2 gen-3 --schema "$R2" 2>/dev/null |
	strip_position /dev/stdin | sort >"$tmp/b"
sort "$tmp/gen.ndjson" >"$tmp/a"
check "... and keeps every recorded_at" cmp -s "$tmp/a" "$tmp/b"

# Bad input: one line naming the line, exit 1.
E=${tag}_errors
"$evstore" migrate --schema "$E" >/dev/null 2>&1
export EVS_PG_SCHEMA=$E
good='{"stream_id":"e-1","version":0,"event_id":"00000000-0000-7000-8000-000000000001","type":"T","data":{},"recorded_at":"2024-05-01T12:34:56.123456Z"}'
import_error() {
	desc=$1 line=$2 want=$3
	printf '%s\n\n%s\n' "$good" "$line" >"$tmp/bad.ndjson"
	run "$evstore" import "$tmp/bad.ndjson"
	check "import: $desc is reported as line 3 (exit 1)" \
		eval 'fails_with 1 "^evstore: line 3: $want"'
}
import_error "a line that is not JSON" 'not json' 'not valid JSON'
import_error "a truncated line" '{"stream_id":"e-1","version":1,' \
	'not valid JSON'
import_error "trailing garbage" "$good x" 'not valid JSON: text after'
import_error "a missing type" \
	'{"stream_id":"e-1","version":1,"event_id":"00000000-0000-7000-8000-000000000002","data":{}}' \
	'missing field "type"'
import_error "a missing event_id" \
	'{"stream_id":"e-1","version":1,"type":"T","data":{}}' \
	'missing field "event_id"'
import_error "a bad event_id" \
	'{"stream_id":"e-1","version":1,"event_id":"nope","type":"T","data":{}}' \
	'"event_id" is not a UUID'
import_error "a negative version" \
	'{"stream_id":"e-1","version":-1,"event_id":"00000000-0000-7000-8000-000000000002","type":"T","data":{}}' \
	'"version" must be an integer from 0'
import_error "a fractional version" \
	'{"stream_id":"e-1","version":1.5,"event_id":"00000000-0000-7000-8000-000000000002","type":"T","data":{}}' \
	'"version" must be an integer'
import_error "a stream id that is not a string" \
	'{"stream_id":7,"version":1,"event_id":"00000000-0000-7000-8000-000000000002","type":"T","data":{}}' \
	'"stream_id" must be a string'
import_error "metadata that is not an object" \
	'{"stream_id":"e-1","version":1,"event_id":"00000000-0000-7000-8000-000000000002","type":"T","data":{},"metadata":[1],"recorded_at":"2024-05-01T12:34:57Z"}' \
	'metadata must be a JSON object'
import_error "data with a lone surrogate" \
	'{"stream_id":"e-1","version":1,"event_id":"00000000-0000-7000-8000-000000000002","type":"T","data":"\ud800"}' \
	'not valid JSON: unpaired surrogate'

# recorded_at: kept by default, so required and checked.
bad_time() {
	import_error "recorded_at $1" \
		"{\"stream_id\":\"e-1\",\"version\":1,\"event_id\":\"00000000-0000-7000-8000-000000000002\",\"type\":\"T\",\"data\":{},\"recorded_at\":$2}" \
		"${3:-\"recorded_at\" is not an RFC 3339 UTC time$}"
}
import_error "a missing recorded_at" \
	'{"stream_id":"e-1","version":1,"event_id":"00000000-0000-7000-8000-000000000002","type":"T","data":{}}' \
	'missing field "recorded_at" (or use --server-time)$'
bad_time "that is not a string" '1714566896123456' \
	'"recorded_at" must be a string$'
bad_time "null" 'null' '"recorded_at" must be a string$'
bad_time "of a day that does not exist (2023-02-29)" '"2023-02-29T12:00:00Z"'
bad_time "of April 31" '"2024-04-31T12:00:00Z"'
bad_time "at 24:00" '"2024-01-01T24:00:00Z"'
bad_time "with a leap second" '"2016-12-31T23:59:60Z"'
bad_time "with another offset" '"2024-05-01T12:34:56+02:00"'
bad_time "with -00:00 (unknown offset)" '"2024-05-01T12:34:56-00:00"'
bad_time "without an offset" '"2024-05-01T12:34:56"'
bad_time "with a space for T" '"2024-05-01 12:34:56Z"'
bad_time "with a lower-case z" '"2024-05-01T12:34:56z"'
bad_time "with seven fraction digits" '"2024-05-01T12:34:56.1234567Z"'
bad_time "with a point and no digits" '"2024-05-01T12:34:56.Z"'
bad_time "with text after it" '"2024-05-01T12:34:56Z "'
bad_time "as a date only" '"2024-05-01"'
bad_time "with a signed year inside 0000-9999" '"+2024-05-01T12:34:56Z"'
bad_time "with a 5-digit year without its sign" '"10000-01-01T00:00:00Z"'
bad_time "with a zero before a 5-digit year" '"+010000-01-01T00:00:00Z"'
bad_time "with a 3-digit year" '"999-01-01T00:00:00Z"'
bad_time "before 4714-11-24 BC" '"-4713-11-23T23:59:59.999999Z"'
bad_time "after the last microsecond" '"+294247-01-10T04:00:54.775807Z"'
bad_time "far past the range" '"+999999-01-01T00:00:00Z"'

run "$evstore" read e-1 --format ndjson
check "import stores the lines before a bad line" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/out")" -eq 1 ]'

# A stream that holds other events at those versions: a conflict.
printf '%s\n' '{"stream_id":"e-1","version":0,"event_id":"00000000-0000-7000-8000-0000000000ff","type":"T","data":{},"recorded_at":"2024-05-01T12:34:56.123456Z"}' \
	>"$tmp/other.ndjson"
run "$evstore" import "$tmp/other.ndjson"
check "import over different events is a conflict (exit 3)" \
	eval 'fails_with 3 "^evstore: line 1: conflict appending events for aggregate \"e-1\": expected version -1, but current version is 0$"'
run "$evstore" import "$tmp/nowhere.ndjson"
check "import of a missing file: exit 1, one line" \
	eval 'fails_with 1 "cannot open"'
printf '' >"$tmp/empty.ndjson"
run "$evstore" import "$tmp/empty.ndjson"
check "import of an empty file does nothing" \
	eval 'rc_is 0 && out_has "imported 0 events"'

# ---- recorded times: kept, or --server-time -------------------------------

# A line without recorded_at stops the import after the lines before it;
# --server-time imports the file, the store stamping the events.
M=${tag}_times
"$evstore" migrate --schema "$M" >/dev/null 2>&1
ev_line() { # STREAM VERSION ID-SUFFIX [RECORDED_AT]
	printf '{"stream_id":"%s","version":%d,"event_id":"00000000-0000-7000-8000-%012d","type":"T","data":{"v": %d}%s}\n' \
		"$1" "$2" "$3" "$2" "${4:+,\"recorded_at\":\"$4\"}"
}
{
	ev_line m-1 0 1 2001-02-03T04:05:06.000007Z
	ev_line m-1 1 2 2001-02-03T04:05:06.5Z
	ev_line m-1 2 3
	ev_line m-1 3 4 2001-02-03T04:05:08+00:00
} >"$tmp/notime.ndjson"
run "$evstore" import "$tmp/notime.ndjson" --schema "$M"
check "import: a line without recorded_at fails and names --server-time (exit 1)" \
	eval 'fails_with 1 "^evstore: line 3: missing field \"recorded_at\" (or use --server-time)$" &&
	      out_is ""'
run "$evstore" read m-1 --schema "$M" --format ndjson
check "... after storing the lines before it, with their times" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/out")" -eq 2 ] &&
	      [ "$(times_of "$tmp/out" | tr "\n" " ")" = "2001-02-03T04:05:06.000007Z 2001-02-03T04:05:06.500000Z " ]'
run "$evstore" import "$tmp/notime.ndjson" --schema "$M" --server-time
check "import --server-time takes the same file, skipping what is stored" \
	eval 'rc_is 0 && out_is "imported 4 events in 1 streams (2 already stored, skipped)" &&
	      err_empty'
recent=$(psql_q -c "SELECT string_agg(version::text, ',' ORDER BY version)
                    FROM \"$M\".events
                    WHERE recorded_at > now() - interval '10 minutes'")
run "$evstore" read m-1 --schema "$M" --format ndjson
check "... and the server stamped the new events with the time now" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/out")" -eq 4 ] && [ "$recent" = "2,3" ] &&
	      sed -n 4p "$tmp/out" | grep -q "\"recorded_at\":\"$(date -u +%Y)-"'
run "$evstore" import "$tmp/notime.ndjson" --schema "$M" --server-time
check "import --server-time again: all 4 skipped" \
	eval 'rc_is 0 && out_is "imported 4 events in 1 streams (4 already stored, skipped)"'

# Times at the ends of the range, and the forms import accepts beside the
# canonical one: exported in that one, to the microsecond.
X=${tag}_range
"$evstore" migrate --schema "$X" >/dev/null 2>&1
ev_line t-0 0 100 1969-12-31T23:59:59.999999Z >"$tmp/minus1.ndjson"
run "$evstore" import "$tmp/minus1.ndjson" --schema "$X"
run "$evstore" status --schema "$X"
check "status shows a newest event before 1970 (not \"none\")" \
	eval 'rc_is 0 && out_has "^newest event: *1969-12-31T23:59:59.999999Z$"'
{
	ev_line t-1 0 101 0001-01-01T00:00:00.000000Z
	ev_line t-1 1 102 -4713-11-24T00:00:00.000000Z
	ev_line t-1 2 103 1969-12-31T23:59:59.999999Z
	ev_line t-1 3 104 +294247-01-10T04:00:54.775806Z
	ev_line t-1 4 105 2024-02-29T12:00:00.5Z
	ev_line t-1 5 106 0000-02-29T23:59:59Z
	ev_line t-1 6 107 -0001-12-31T00:00:00.000001+00:00
	ev_line t-1 7 108 9999-12-31T23:59:59.999999Z
	ev_line t-1 8 109 +10000-01-01T00:00:00Z
	ev_line t-1 9 110 1970-01-01T00:00:00.1Z
} >"$tmp/range.ndjson"
run "$evstore" import "$tmp/range.ndjson" --schema "$X"
check "import of times from 4714 BC to 294247 AD" \
	eval 'rc_is 0 && out_is "imported 10 events in 1 streams (0 already stored, skipped)"'
run "$evstore" export t-1 --schema "$X"
cp "$tmp/out" "$tmp/range-out.ndjson"
times_of "$tmp/out" >"$tmp/a"
printf '%s\n' 0001-01-01T00:00:00.000000Z -4713-11-24T00:00:00.000000Z \
	1969-12-31T23:59:59.999999Z +294247-01-10T04:00:54.775806Z \
	2024-02-29T12:00:00.500000Z 0000-02-29T23:59:59.000000Z \
	-0001-12-31T00:00:00.000001Z 9999-12-31T23:59:59.999999Z \
	+10000-01-01T00:00:00.000000Z 1970-01-01T00:00:00.100000Z >"$tmp/b"
check "export writes them back in canonical form (six fraction digits, signed years outside 0000-9999)" \
	eval 'rc_is 0 && cmp -s "$tmp/a" "$tmp/b"'
pg_times "$X" >"$tmp/a"
printf '%s\n' '1969-12-31 23:59:59.999999+00' '0001-01-01 00:00:00+00' \
	'4714-11-24 00:00:00+00 BC' '1969-12-31 23:59:59.999999+00' \
	'294247-01-10 04:00:54.775806+00' '2024-02-29 12:00:00.5+00' \
	'0001-02-29 23:59:59+00 BC' '0002-12-31 00:00:00.000001+00 BC' \
	'9999-12-31 23:59:59.999999+00' '10000-01-01 00:00:00+00' \
	'1970-01-01 00:00:00.1+00' >"$tmp/b"
check "PostgreSQL holds the same instants (year 0 is 1 BC, -4713 is 4714 BC)" \
	eval 'cmp -s "$tmp/a" "$tmp/b" || { diff "$tmp/a" "$tmp/b"; false; }'
run "$evstore" read t-1 --schema "$X" --format table
check "read --format table shows the long times, columns aligned" \
	eval 'rc_is 0 && out_has "  +294247-01-10T04:00:54.775806Z  {\"v\": 3}$" &&
	      [ "$(awk "{ print index(\$0, \"{\") }" "$tmp/out" | tail -n +2 | sort -u | wc -l)" -eq 1 ] &&
	      [ "$(head -n 1 "$tmp/out" | awk "{ print index(\$0, \"data\") }")" = "$(sed -n 2p "$tmp/out" | awk "{ print index(\$0, \"{\") }")" ]'
run "$evstore" status --schema "$X"
check "status shows the newest event in 294247" \
	eval 'rc_is 0 && out_has "^newest event: *+294247-01-10T04:00:54.775806Z$"'
X2=${tag}_range2
"$evstore" migrate --schema "$X2" >/dev/null 2>&1
run "$evstore" import "$tmp/range-out.ndjson" --schema "$X2"
"$evstore" export t-1 --schema "$X2" >"$tmp/range-out2.ndjson" 2>/dev/null
strip_position "$tmp/range-out.ndjson" >"$tmp/a"
strip_position "$tmp/range-out2.ndjson" >"$tmp/b"
check "the canonical forms import back to the same instants" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/b")" -eq 10 ] && cmp -s "$tmp/a" "$tmp/b"'

# ---- privileges: keeping times needs EXECUTE on import_events -----------

# A role with what README's "Least privilege" grants an application.
case $EVS_TEST_PG_DSN in
*://*) role= ;; # a URI: no "user=" to add
*) role=${tag}_app ;;
esac
if [ -n "$role" ]; then
	role_pw="pw-$tag"
	role_dsn="$EVS_TEST_PG_DSN user=$role password=$role_pw"
	A=${tag}_app
	B=${tag}_restore
	"$evstore" migrate --schema "$A" >/dev/null 2>&1
	"$evstore" migrate --schema "$B" >/dev/null 2>&1
	psql_q >/dev/null <<SQL
CREATE ROLE "$role" LOGIN PASSWORD '$role_pw';
GRANT USAGE ON SCHEMA "$A", "$B" TO "$role";
GRANT SELECT ON ALL TABLES IN SCHEMA "$A", "$B" TO "$role";
GRANT EXECUTE ON FUNCTION "$A".append_events(text, bigint, uuid[], text[], jsonb[], jsonb[]) TO "$role";
GRANT EXECUTE ON FUNCTION "$B".append_events(text, bigint, uuid[], text[], jsonb[], jsonb[]) TO "$role";
GRANT EXECUTE ON FUNCTION "$A".append_many(text[], bigint[], integer[], uuid[], text[], jsonb[], jsonb[], boolean, integer) TO "$role";
GRANT EXECUTE ON FUNCTION "$B".append_many(text[], bigint[], integer[], uuid[], text[], jsonb[], jsonb[], boolean, integer) TO "$role";
-- What a DBA grants a role that restores exports: in B only (import_events
-- without import_many: an import then sends one stream batch at a time).
GRANT EXECUTE ON FUNCTION "$B".import_events(text, bigint, uuid[], text[], jsonb[], jsonb[], timestamptz[]) TO "$role";
SQL
	head -n 50 "$tmp/source.ndjson" >"$tmp/fifty.ndjson"
	run "$evstore" import "$tmp/fifty.ndjson" --schema "$A" \
		--dsn "$role_dsn"
	stored=$(psql_q -c "SELECT count(*) FROM \"$A\".events")
	check "an application role cannot keep times: exit 1, what to do, nothing stored" \
		eval 'rc_is 1 && out_is "" && [ "$stored" = 0 ] &&
		      err_is "evstore: the role may not keep recorded times: have a DBA grant EXECUTE on functions $A.import_many(text[], bigint[], integer[], uuid[], text[], jsonb[], jsonb[], timestamptz[], boolean) and $A.import_events(text, bigint, uuid[], text[], jsonb[], jsonb[], timestamptz[]), or run with --server-time"'
	run "$evstore" import "$tmp/fifty.ndjson" --schema "$A" \
		--dsn "$role_dsn" --server-time --jobs 2
	stored=$(psql_q -c "SELECT count(*) FROM \"$A\".events
	                    WHERE recorded_at > now() - interval '10 minutes'")
	check "... with --server-time it imports, with the time now" \
		eval 'rc_is 0 && out_has "^imported 50 events in [0-9]* streams (0 already stored, skipped)$" &&
		      [ "$stored" = 50 ]'
	"$evstore" export --schema "$A" 2>/dev/null | strip_assigned /dev/stdin |
		sort >"$tmp/a"
	strip_assigned "$tmp/fifty.ndjson" | sort >"$tmp/b"
	check "... the same events, ids and versions" cmp -s "$tmp/a" "$tmp/b"
	run "$evstore" import "$tmp/fifty.ndjson" --schema "$A" \
		--dsn "$role_dsn" --server-time
	check "... and again: all 50 skipped" \
		eval 'rc_is 0 && out_has "(50 already stored, skipped)$"'
	run "$evstore" import "$tmp/fifty.ndjson" --schema "$B" \
		--dsn "$role_dsn"
	"$evstore" export --schema "$B" 2>/dev/null | strip_position /dev/stdin |
		sort >"$tmp/a"
	strip_position "$tmp/fifty.ndjson" | sort >"$tmp/b"
	check "a role granted EXECUTE on import_events keeps the times" \
		eval 'rc_is 0 && out_has "^imported 50 events" && cmp -s "$tmp/a" "$tmp/b"'
else
	ok "# skip: privileges (EVS_TEST_PG_DSN is a URI)"
fi

# ---- progress bar --------------------------------------------------------

run "$evstore" export --schema "$T"
check "export shows no progress bar when stderr is not a terminal" err_empty
if command -v script >/dev/null 2>&1; then
	# script(1) gives the command a terminal; its output goes to a file.
	script -qec "'$evstore' export --schema '$T' >'$tmp/tty-out.ndjson'" \
		"$tmp/tty.log" >/dev/null 2>&1 </dev/null
	check "export shows a progress bar (count, rate, time) on a terminal" \
		eval 'grep -q "export \[#*\] 100%  7,507/7,507 events  [0-9,]*/s  in " "$tmp/tty.log" &&
		      [ "$(wc -l <"$tmp/tty-out.ndjson")" -eq 7507 ]'
	I=${tag}_tty
	"$evstore" migrate --schema "$I" >/dev/null 2>&1
	script -qec "'$evstore' import '$tmp/source.ndjson' --schema '$I'" \
		"$tmp/tty2.log" >/dev/null 2>&1 </dev/null
	check "import shows a progress bar on a terminal" \
		eval 'grep -q "import \[#*\] 100%  7,507/7,507 events" "$tmp/tty2.log"'
else
	ok "# skip: progress bar on a terminal (no script(1))"
fi

# ---- export holds a bounded number of bytes ------------------------------

# 120 events of 1 MB: exporting them grows the tool by less than 16 MB
# over exporting a small stream (peak RSS, GNU time's %M, in kB).
psql_q >/dev/null <<SQL
INSERT INTO "$S".streams (stream_id, version) VALUES ('big-rss', 119);
INSERT INTO "$S".events (stream_id, version, event_id, type, data)
SELECT 'big-rss', g, gen_random_uuid(), 'Big',
       to_jsonb(repeat(chr(97 + g % 26), 1048576))
  FROM generate_series(0, 119) AS g;
SQL
if [ "${EVS_CLI_SANITIZED:-0}" = 1 ]; then
	echo "skip - export's peak memory: a sanitized build holds memory back"
elif [ -x /usr/bin/time ]; then
	small=$(/usr/bin/time -o "$tmp/small.rss" -f %M "$evstore" export --schema "$S" \
		acct-1 2>/dev/null >/dev/null; cat "$tmp/small.rss")
	big=$(/usr/bin/time -o "$tmp/big.rss" -f %M "$evstore" export big-rss --schema "$S" \
		2>"$tmp/big.err" >"$tmp/big.ndjson"; cat "$tmp/big.rss")
	lines=$(wc -l <"$tmp/big.ndjson")
	cat "$tmp/big.err" >&2
	rm -f "$tmp/big.ndjson"
	check "export of 120 events of 1 MB grows the tool by < 16 MB ($small -> $big kB)" \
		eval '[ "$lines" = 120 ] && [ $((big - small)) -lt 16384 ]'
else
	echo "skip - export's peak memory: /usr/bin/time (Debian: time) is missing"
fi

# ---- tail and subscriptions ----------------------------------------------

# wait_until CONDITION...: runs CONDITION (a shell command) every 0.1 s,
# for up to 20 s; false when it never held.
wait_until() {
	n=0
	until "$@"; do
		n=$((n + 1))
		[ "$n" -ge 200 ] && return 1
		sleep 0.1
	done
	return 0
}

# stop_bg PID SIGNAL: sends SIGNAL, waits up to 20 s for the process to
# end (then SIGKILLs it), and sets bg_rc to its exit status.
stop_bg() {
	kill "-$2" "$1" 2>/dev/null
	n=0
	while kill -0 "$1" 2>/dev/null && [ "$n" -lt 200 ]; do
		sleep 0.1
		n=$((n + 1))
	done
	kill -KILL "$1" 2>/dev/null
	wait "$1"
	bg_rc=$?
}

lines_in() { wc -l <"$1" | tr -d ' '; }
# has_lines FILE N: FILE holds N lines or more.
has_lines() { [ "$(lines_in "$1")" -ge "$2" ]; }

# sub_owned NAME [SCHEMA]: a live instance holds subscription NAME.
sub_owned() {
	"$evstore" subscriptions --format ndjson ${2:+--schema "$2"} 2>/dev/null |
		grep -q "^{\"name\":\"$1\",.*\"owner\":\"[^\"]"
}

# in_stream_order FILE: each stream's versions in FILE go up by one.
in_stream_order() {
	sed -e 's/^{"stream_id":"\([^"]*\)","version":\([0-9]*\),.*/\1 \2/' "$1" |
		awk '($1 in v) && $2 != v[$1] + 1 { bad = 1 } { v[$1] = $2 }
		     END { exit bad }'
}

ids_of() { sed -e 's/.*"event_id":"\([^"]*\)".*/\1/' "$1"; }

TL=${tag}_tail
"$evstore" migrate --schema "$TL" >/dev/null 2>&1
export EVS_PG_SCHEMA=$TL

run "$evstore" tail
check "tail of an empty store prints nothing (exit 0)" \
	eval 'rc_is 0 && [ ! -s "$tmp/out" ] && err_empty'
run "$evstore" tail --format table
check "tail --format table of an empty store: the header alone" \
	eval 'rc_is 0 && out_is "position  stream_id  version  type  recorded_at                  data"'

# Three categories, one commit each, interleaved; then a category of 40
# streams (by import) for the group members.
for i in 1 2 3 4; do
	"$evstore" append "acct-$i" Opened "{\"n\": $i}" >/dev/null 2>&1
	"$evstore" append "ord-$i" Placed "{\"n\": $i}" >/dev/null 2>&1
	"$evstore" append "acct-$i" Deposited '{"amount": 5}' >/dev/null 2>&1
	"$evstore" append "inv-$i" Issued '{}' --metadata '{"by": "x"}' \
		>/dev/null 2>&1
done
awk 'BEGIN {
	for (v = 0; v < 8; v++)
		for (s = 1; s <= 40; s++)
			printf "{\"stream_id\":\"grp-%d\",\"version\":%d,\"event_id\":\"00000000-0000-7000-8001-%06d%06d\",\"type\":\"G%d\",\"data\":{\"s\": %d},\"recorded_at\":\"2022-01-01T00:00:00Z\"}\n", s, v, s, v, v % 2, s
}' >"$tmp/grp.ndjson"
"$evstore" import "$tmp/grp.ndjson" --jobs 2 >/dev/null 2>&1
"$evstore" export >"$tmp/tl.ndjson" 2>/dev/null
n_tl=$(lines_in "$tmp/tl.ndjson")

run "$evstore" tail
check "tail prints every event in feed order: the lines export writes ($n_tl)" \
	eval 'rc_is 0 && err_empty && [ "$n_tl" -eq 336 ] &&
	      cmp -s "$tmp/out" "$tmp/tl.ndjson"'
cp "$tmp/out" "$tmp/tl-tail.ndjson"
TI=${tag}_tail_import
"$evstore" migrate --schema "$TI" >/dev/null 2>&1
run "$evstore" import "$tmp/tl-tail.ndjson" --schema "$TI"
"$evstore" export --schema "$TI" 2>/dev/null | strip_position /dev/stdin |
	sort >"$tmp/b"
strip_position "$tmp/tl.ndjson" | sort >"$tmp/a"
check "evstore import reads tail's output back" \
	eval 'rc_is 0 && out_has "^imported 336 events" && cmp -s "$tmp/a" "$tmp/b"'

run "$evstore" tail --format table
check "tail --format table: a header with position and stream_id, a row per event" \
	eval 'rc_is 0 && [ "$(lines_in "$tmp/out")" -eq 337 ] &&
	      head -n 1 "$tmp/out" | grep -q "^position  *stream_id  *version  type  *recorded_at  *data$" &&
	      sed -n 2p "$tmp/out" | grep -q "^[0-9][0-9]*:1  *acct-1  *0  Opened  *20[0-9-]*T[0-9:.]*Z  {\"n\": 1}$"'
misaligned=$(awk 'NR == 1 { c = index($0, "stream_id") }
	NR > 1 && (substr($0, c - 2, 2) != "  " || substr($0, c, 1) == " ")' \
	"$tmp/out" | wc -l)
check "tail --format table columns are aligned" eval '[ "$misaligned" -eq 0 ]'
pos5=$(sed -n 6p "$tmp/out" | awk '{ print $1 }')
tlpos=$(tail -n 1 "$tmp/out" | awk '{ print $1 }')
run "$evstore" tail --from "$pos5"
check "tail --from POSITION (the table's, of the 5th event) prints from the 6th" \
	eval 'rc_is 0 && tail -n +6 "$tmp/tl.ndjson" | cmp -s - "$tmp/out"'
run "$evstore" tail --from 0:0
check "tail --from 0:0 is the start" eval 'rc_is 0 && cmp -s "$tmp/out" "$tmp/tl.ndjson"'
run "$evstore" tail --from end
check "tail --from end prints nothing (exit 0)" \
	eval 'rc_is 0 && [ ! -s "$tmp/out" ] && err_empty'
run "$evstore" tail --max 7
check "tail --max 7 prints the first 7" \
	eval 'rc_is 0 && head -n 7 "$tmp/tl.ndjson" | cmp -s - "$tmp/out"'

# Filters.
run "$evstore" tail --category acct
check "tail --category acct: the acct streams' events, in feed order" \
	eval 'rc_is 0 && [ "$(lines_in "$tmp/out")" -eq 8 ] &&
	      grep "^{\"stream_id\":\"acct-" "$tmp/tl.ndjson" | cmp -s - "$tmp/out"'
run "$evstore" tail --type Opened --type Issued --type Opened
check "tail --type Opened --type Issued: those types only, in feed order" \
	eval 'rc_is 0 && [ "$(lines_in "$tmp/out")" -eq 8 ] &&
	      grep "\"type\":\"\(Opened\|Issued\)\"" "$tmp/tl.ndjson" | cmp -s - "$tmp/out"'
run "$evstore" tail --category grp --type G1 --format table
check "tail --category and --type together" \
	eval 'rc_is 0 && [ "$(lines_in "$tmp/out")" -eq 161 ] &&
	      [ "$(tail -n +2 "$tmp/out" | grep -c "  grp-[0-9]*  *[1357]  G1  ")" -eq 160 ]'
run "$evstore" tail --category nothing
check "tail of a category without events prints nothing" \
	eval 'rc_is 0 && [ ! -s "$tmp/out" ]'

# --subscription: resumes where the last run stopped.
run "$evstore" tail --subscription r1
check "tail --subscription: the first run prints the feed" \
	eval 'rc_is 0 && err_empty && cmp -s "$tmp/out" "$tmp/tl.ndjson"'
"$evstore" append acct-1 Withdrawn '{"amount": 1}' >/dev/null 2>&1
"$evstore" append ord-2 Shipped '{}' >/dev/null 2>&1
run "$evstore" subscriptions --format ndjson
check "subscriptions --format ndjson: the checkpoint (the last event, $tlpos) and a lag of 2" \
	eval 'rc_is 0 && out_has "^{\"name\":\"r1\",\"member\":0,\"group_size\":1,\"filter\":{\"types\": null, \"category\": null},\"checkpoint\":\"$tlpos\",\"lag\":2,\"owner\":null,\"lease_until\":null,\"lease_epoch\":[0-9]*,\"updated_at\":\"[0-9-]*T[0-9:.]*Z\"}$"'
run "$evstore" tail --subscription r1 --from start
check "a second run prints only the newer events (--from applies only without a checkpoint)" \
	eval 'rc_is 0 && [ "$(lines_in "$tmp/out")" -eq 2 ] &&
	      head -n 1 "$tmp/out" | grep -q "\"type\":\"Withdrawn\"" &&
	      tail -n 1 "$tmp/out" | grep -q "\"type\":\"Shipped\""'
run "$evstore" tail --subscription r1
check "a third run prints nothing" eval 'rc_is 0 && [ ! -s "$tmp/out" ]'
run "$evstore" tail --subscription r1 --category acct
check "a subscription's name with another filter: exit 1, one line" \
	eval 'fails_with 1 "subscription \"r1\" (member 0) is stored with another filter"'
"$evstore" export >"$tmp/tl.ndjson" 2>/dev/null

# --max with a subscription: the checkpoint is the Nth event, also when a
# batch (256) holds more than what is left.
run "$evstore" tail --subscription r2 --max 5 --format table
cp5=$(tail -n 1 "$tmp/out" | awk '{ print $1 }')
run "$evstore" subscriptions
check "tail --subscription --max 5: the checkpoint is the 5th event ($cp5)" \
	eval 'rc_is 0 && out_has "^r2  *0/1  *$cp5  *333  *-  *-  *{\"types\": null, \"category\": null}$"'
run "$evstore" tail --subscription r2 --max 290 --follow
cp "$tmp/out" "$tmp/r2-b"
run "$evstore" tail --subscription r2
cat "$tmp/r2-b" "$tmp/out" >"$tmp/r2-rest"
check "... then --max 290 (batches of 256, then 34) and the rest: each event once" \
	eval 'rc_is 0 && [ "$(lines_in "$tmp/r2-b")" -eq 290 ] &&
	      tail -n +6 "$tmp/tl.ndjson" | cmp -s - "$tmp/r2-rest"'

# --from end with --follow: prints an append made by another process after
# it started. Its starting point is stored as it claims the name: wait
# for that, append, and wait for the line.
"$evstore" tail --from end --follow --subscription live >"$tmp/live.out" \
	2>"$tmp/live.err" &
lpid=$!
wait_until sub_owned live
"$evstore" append live-1 Ping '{"n": 1}' >/dev/null 2>&1
wait_until has_lines "$tmp/live.out" 1
stop_bg "$lpid" TERM
"$evstore" read live-1 --format ndjson >"$tmp/live.want" 2>/dev/null
rc=$bg_rc
check "tail --from end --follow prints an append made after it started, only that" \
	eval 'cmp -s "$tmp/live.out" "$tmp/live.want" && [ -s "$tmp/live.want" ]'
check "... and SIGTERM stops it: exit 0, nothing on stderr" \
	eval 'rc_is 0 && [ ! -s "$tmp/live.err" ]'
run "$evstore" subscriptions
check "... with its checkpoint stored and the lease released" \
	eval 'rc_is 0 && out_has "^live  *0/1  *[0-9]*:[0-9]*  *0  *-  *-  "'

# A transient follower, stopped by SIGINT.
"$evstore" tail --follow --category live >"$tmp/live2.out" \
	2>"$tmp/live2.err" &
lpid=$!
wait_until has_lines "$tmp/live2.out" 1
"$evstore" append live-1 Ping '{"n": 2}' >/dev/null 2>&1
wait_until has_lines "$tmp/live2.out" 2
stop_bg "$lpid" INT
"$evstore" read live-1 --format ndjson >"$tmp/live.want" 2>/dev/null
rc=$bg_rc
check "tail --follow prints the category, then a new append; SIGINT: exit 0" \
	eval 'rc_is 0 && cmp -s "$tmp/live2.out" "$tmp/live.want" &&
	      [ "$(lines_in "$tmp/live.want")" -eq 2 ] && [ ! -s "$tmp/live2.err" ]'

# --member: two members split the grp streams, each stream to one.
run "$evstore" tail --category grp --subscription g --member 0/2
cp "$tmp/out" "$tmp/m0"
run "$evstore" tail --category grp --subscription g --member 1/2
cp "$tmp/out" "$tmp/m1"
grep '^{"stream_id":"grp-' "$tmp/tl.ndjson" | sort >"$tmp/a"
sort "$tmp/m0" "$tmp/m1" >"$tmp/b"
s0=$(sed -e 's/^{"stream_id":"\([^"]*\)".*/\1/' "$tmp/m0" | sort -u)
s1=$(sed -e 's/^{"stream_id":"\([^"]*\)".*/\1/' "$tmp/m1" | sort -u)
both=$(printf '%s\n%s\n' "$s0" "$s1" | sort | uniq -d | wc -l)
check "--member 0/2 and 1/2 split the category: nothing missing, no overlap" \
	eval 'rc_is 0 && [ -s "$tmp/m0" ] && [ -s "$tmp/m1" ] &&
	      [ "$(lines_in "$tmp/b")" -eq 320 ] && cmp -s "$tmp/a" "$tmp/b"'
check "... each stream goes to one member, whole and in order" \
	eval '[ "$both" -eq 0 ] && in_stream_order "$tmp/m0" &&
	      in_stream_order "$tmp/m1"'
run "$evstore" subscriptions
check "subscriptions lists both members with lag 0 after catching up" \
	eval 'rc_is 0 && head -n 1 "$tmp/out" | grep -q "^name  *member  *checkpoint  *lag  *owner  *lease_until  *filter$" &&
	      out_has "^g  *0/2  *[0-9]*:[0-9]*  *0  *-  *-  *{\"types\": null, \"category\": \"grp\"}$" &&
	      out_has "^g  *1/2  *[0-9]*:[0-9]*  *0  *-  *-  *{\"types\": null, \"category\": \"grp\"}$"'
"$evstore" append grp-1 G0 '{}' >/dev/null 2>&1
"$evstore" append acct-9 Opened '{}' >/dev/null 2>&1
run "$evstore" subscriptions --format ndjson
lags=$(grep '^{"name":"g"' "$tmp/out" | sed -e 's/.*"lag":\([0-9]*\).*/\1/' |
	tr '\n' ' ')
check "... and a lag of 1 for the member that gets a new grp event ($lags)" \
	eval 'rc_is 0 && { [ "$lags" = "1 0 " ] || [ "$lags" = "0 1 " ]; }'

# status: the feed's head and fence, and the session holding it.
run "$evstore" status
check "status shows the feed head and fence" \
	eval 'rc_is 0 && out_has "^feed head: *[0-9][0-9]*:[0-9][0-9]*$" &&
	      out_has "^fence: *[0-9][0-9]* (" && out_has "^fence held by: "'
psql_q -c "CREATE TABLE \"$TL\".scratch (x int)"
PGAPPNAME=${tag}_holder psql "$EVS_TEST_PG_DSN" -X -q -c BEGIN \
	-c "INSERT INTO \"$TL\".scratch VALUES (1)" -c "SELECT pg_sleep(120)" \
	>/dev/null 2>&1 &
hpid=$!
holder_pid() {
	bpid=$(psql_q -c "SELECT pid FROM pg_stat_activity
	                  WHERE application_name = '${tag}_holder'
	                    AND backend_xid IS NOT NULL")
	[ -n "$bpid" ]
}
wait_until holder_pid
"$evstore" append acct-1 Held '{}' >/dev/null 2>&1
run "$evstore" status
check "status with an open transaction: the fence is held by its pid ($bpid)" \
	eval 'rc_is 0 && [ -n "$bpid" ] &&
	      out_has "^fence: *[0-9]* (the newest events wait" &&
	      out_has "^fence held by: pid $bpid, application \"${tag}_holder\", active, database \"[^\"]*\", transaction since [0-9-]*T[0-9:.]*Z (open [0-9]*s)$"'
run "$evstore" tail --category acct --type Held
check "tail leaves out an event committed behind the fence" \
	eval 'rc_is 0 && [ ! -s "$tmp/out" ]'
psql_q -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
           WHERE application_name = '${tag}_holder'" >/dev/null 2>&1
wait "$hpid"
run "$evstore" tail --category acct --type Held
check "... and prints it once the transaction ended" \
	eval 'rc_is 0 && [ "$(lines_in "$tmp/out")" -eq 1 ]'

# SIGKILL in the middle of a big feed, and a restart. The first run
# writes to a slow reader, so that it is killed part way; the restart
# finds the dead run's lease (30 s), waits on standby, and takes over once
# it expires (hastened here with SQL).
K=${tag}_kill
"$evstore" migrate --schema "$K" >/dev/null 2>&1
awk 'BEGIN {
	for (v = 0; v < 500; v++)
		for (s = 1; s <= 10; s++)
			printf "{\"stream_id\":\"big-%d\",\"version\":%d,\"event_id\":\"00000000-0000-7000-8002-%06d%06d\",\"type\":\"Tick\",\"data\":{\"pad\": \"%s\"},\"recorded_at\":\"2023-01-01T00:00:00Z\"}\n", s, v, s, v, sprintf("%0100d", v)
}' >"$tmp/big.ndjson"
"$evstore" import "$tmp/big.ndjson" --schema "$K" >/dev/null 2>&1
"$evstore" export --schema "$K" >"$tmp/k.ndjson" 2>/dev/null
slow_copy() {
	n=0
	while IFS= read -r line; do
		printf '%s\n' "$line"
		n=$((n + 1))
		[ $((n % 100)) -ne 0 ] || sleep 0.1
	done
}
mkfifo "$tmp/k.fifo"
slow_copy <"$tmp/k.fifo" >"$tmp/k1.out" &
rpid=$!
"$evstore" tail --follow --subscription k --schema "$K" >"$tmp/k.fifo" \
	2>"$tmp/k1.err" &
kpid=$!
wait_until has_lines "$tmp/k1.out" 1000
kill -KILL "$kpid"
wait "$kpid"
wait "$rpid"
n1=$(lines_in "$tmp/k1.out")
last=$(psql_q -c "SELECT coalesce(last_event_id::text, 'none')
                  FROM \"$K\".subscriptions WHERE name = 'k'")
idx=$(grep -n "\"event_id\":\"$last\"" "$tmp/k.ndjson" | cut -d: -f1)
check "SIGKILL stopped the first run in the middle ($n1 of 5000 printed, checkpoint at $idx)" \
	eval '[ "$(lines_in "$tmp/k.ndjson")" -eq 5000 ] && [ "$n1" -lt 5000 ] &&
	      [ -n "$idx" ] && [ "$idx" -le "$n1" ] &&
	      head -n "$n1" "$tmp/k.ndjson" | cmp -s - "$tmp/k1.out"'
run "$evstore" tail --subscription k --schema "$K"
check "a run without --follow while the dead run's lease holds: exit 1, naming it" \
	eval 'fails_with 1 "^evstore: subscription \"k\" is active in another instance (\"[^\"]*\", lease until [0-9-]*T[0-9:.]*Z): use --follow to wait for its lease$" &&
	      out_is ""'
run "$evstore" subscriptions --schema "$K"
check "subscriptions shows the lease's owner and expiry" \
	eval 'rc_is 0 && out_has "^k  *0/1  *[0-9]*:[0-9]*  *[0-9][0-9]*  *[^ -][^ ]*:[0-9]*:[0-9a-f-]*  *[0-9-]*T[0-9:.]*Z  "'
"$evstore" tail --follow --subscription k --schema "$K" >"$tmp/k2.out" \
	2>"$tmp/k2.err" &
kpid=$!
wait_until grep -q "waiting for its lease" "$tmp/k2.err"
sleep 0.5
check "a restart with --follow waits on standby, printing nothing" \
	eval '[ ! -s "$tmp/k2.out" ] &&
	      [ "$(cat "$tmp/k2.err")" = "evstore: subscription \"k\" is active in another instance: waiting for its lease" ]'
psql_q -c "UPDATE \"$K\".subscriptions SET lease_until = clock_timestamp()
           WHERE name = 'k'"
want2=$((5000 - idx))
wait_until has_lines "$tmp/k2.out" "$want2"
sleep 0.3
stop_bg "$kpid" TERM
rc=$bg_rc
check "after the lease expired, it prints exactly the events after the checkpoint" \
	eval 'tail -n +"$((idx + 1))" "$tmp/k.ndjson" | cmp -s - "$tmp/k2.out"'
cat "$tmp/k1.out" "$tmp/k2.out" >"$tmp/k12.out"
check "every event printed at least once across the runs, in order per stream" \
	eval '[ "$(ids_of "$tmp/k12.out" | sort -u | wc -l)" -eq 5000 ] &&
	      in_stream_order "$tmp/k1.out" && in_stream_order "$tmp/k2.out"'
lastpos=$("$evstore" tail --schema "$K" --format table --max 5000 |
	tail -n 1 | awk '{ print $1 }')
run "$evstore" subscriptions --schema "$K" --format ndjson
check "SIGTERM: exit 0, the checkpoint is the last event ($lastpos), lag 0, lease released" \
	eval '[ "$bg_rc" = 0 ] &&
	      out_has "\"checkpoint\":\"$lastpos\",\"lag\":0,\"owner\":null,\"lease_until\":null,"'

export EVS_PG_SCHEMA=$E

# ---- valgrind ----------------------------------------------------------

if command -v valgrind >/dev/null 2>&1 && [ "${EVS_CLI_VALGRIND:-1}" = 1 ]
then
	vg() {
		valgrind -q --leak-check=full --errors-for-leak-kinds=definite \
			--error-exitcode=99 "$@"
	}
	run vg "$evstore" append vg-1 T '{"a": [1, 2]}' --metadata '{"m": 1}'
	check "valgrind: append is clean" eval 'rc_is 0 && err_empty'
	run vg "$evstore" read acct-1 --schema "$S" --format table
	check "valgrind: read --format table is clean" \
		eval 'rc_is 0 && err_empty'
	head -n 1200 "$tmp/source.ndjson" >"$tmp/small.ndjson"
	V=${tag}_vg
	"$evstore" migrate --schema "$V" >/dev/null 2>&1
	run vg "$evstore" import "$tmp/small.ndjson" --schema "$V" --jobs 2
	check "valgrind: import is clean" eval 'rc_is 0 && err_empty'
	run vg "$evstore" export --schema "$V"
	check "valgrind: export is clean" eval 'rc_is 0 && err_empty'
	run vg "$evstore" import "$tmp/bad.ndjson"
	check "valgrind: a failing import is clean" \
		eval 'rc_is 1 && err_one_line'
	run vg "$evstore" import "$tmp/range.ndjson" --schema "$V"
	check "valgrind: import of times 4714 BC to 294247 AD is clean" \
		eval 'rc_is 0 && err_empty'
	run vg "$evstore" read t-1 --schema "$V" --format table
	check "valgrind: read --format table of those times is clean" \
		eval 'rc_is 0 && err_empty'
	if [ -n "$role" ]; then
		run vg "$evstore" import "$tmp/fifty.ndjson" --schema "$A" \
			--dsn "$role_dsn" --jobs 2
		check "valgrind: an import the server refuses (42501) is clean" \
			eval 'fails_with 1 "may not keep recorded times"'
		run vg "$evstore" import "$tmp/fifty.ndjson" --schema "$A" \
			--dsn "$role_dsn" --server-time --jobs 2
		check "valgrind: import --server-time (all skipped) is clean" \
			eval 'rc_is 0 && err_empty'
	fi
	run vg "$evstore" migrate --schema "${tag}_vg2"
	check "valgrind: migrate is clean" eval 'rc_is 0 && err_empty'
	run vg "$evstore" status --schema "${tag}_vg2"
	check "valgrind: status is clean" eval 'rc_is 0 && err_empty'
	run vg "$evstore" tail --schema "$TL" --subscription vg --max 300 \
		--format table
	check "valgrind: tail --subscription --max (256, then a smaller batch) is clean" \
		eval 'rc_is 0 && err_empty && [ "$(lines_in "$tmp/out")" -eq 301 ]'
	run vg "$evstore" tail --schema "$TL" --category acct --type Opened \
		--type Deposited --follow --max 3
	check "valgrind: tail with filters, --follow --max is clean" \
		eval 'rc_is 0 && err_empty && [ "$(lines_in "$tmp/out")" -eq 3 ]'
	run vg "$evstore" subscriptions --schema "$TL"
	check "valgrind: subscriptions is clean" eval 'rc_is 0 && err_empty'
	run vg "$evstore" subscriptions --schema "$TL" --format ndjson
	check "valgrind: subscriptions --format ndjson is clean" \
		eval 'rc_is 0 && err_empty'
	run vg "$evstore" status --schema "$TL"
	check "valgrind: status with the feed's lines is clean" \
		eval 'rc_is 0 && err_empty && out_has "^fence held by: "'
	valgrind -q --leak-check=full --errors-for-leak-kinds=definite \
		--error-exitcode=99 "$evstore" tail --schema "$TL" --follow \
		--from end --subscription vgf >"$tmp/vgf.out" 2>"$tmp/vgf.err" &
	vpid=$!
	wait_until sub_owned vgf "$TL"
	stop_bg "$vpid" TERM
	rc=$bg_rc
	check "valgrind: tail --follow stopped by SIGTERM is clean" \
		eval 'rc_is 0 && [ ! -s "$tmp/vgf.err" ]'
	psql_q -c "UPDATE \"$K\".subscriptions SET owner = 'elsewhere',
	           lease_until = clock_timestamp() + interval '1 minute'
	           WHERE name = 'k'"
	run vg "$evstore" tail --schema "$K" --subscription k
	check "valgrind: tail of a subscription on standby is clean" \
		eval 'fails_with 1 "active in another instance (\"elsewhere\""'
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
