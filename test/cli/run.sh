#!/bin/sh
# test/cli/run.sh: the evstore tool, every subcommand, against the server
# that EVS_TEST_PG_DSN names (scripts/with-pg.sh provides one).
#
#   test/cli/run.sh EVSTORE
#
# Each check prints "ok   - ..." or "FAIL - ..." (with what it saw), and
# the last line is "N passed, N failed". Every schema this run makes is
# named evs_cli_<pid>_<time>_..., and all are dropped at the end.
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

S=${tag}_main
echo "# evstore tool tests on schema prefix $tag"

# ---- version, help, usage ---------------------------------------------

run "$evstore" --version
check "--version prints the version" \
	eval 'rc_is 0 && out_has "^evstore [0-9][0-9.]* (schema version [0-9]*)$"'
run "$evstore" --help
check "--help lists the commands" \
	eval 'rc_is 0 && out_has migrate && out_has import && out_has "Exit codes"'
for cmd in migrate status append read export import; do
	run "$evstore" $cmd --help
	check "$cmd --help prints its usage and exits 0" \
		eval 'rc_is 0 && out_has "^usage: evstore $cmd" && err_empty'
done
run "$evstore" help read
check "help read is read --help" eval 'rc_is 0 && out_has "^usage: evstore read"'

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
			printf "{\"stream_id\":\"gen-%d\",\"version\":%d,\"event_id\":\"00000000-0000-7000-8000-%06d%06d\",\"type\":\"Tick\",\"data\":{\"s\": %d, \"v\": %d},\"metadata\":%s}\n", s, v, s, v, s, v, (v % 2 ? "{\"m\": true}" : "null")
}' >"$tmp/gen.ndjson"
run "$evstore" import "$tmp/gen.ndjson"
check "import of a generated file (3 streams x 2500)" \
	eval 'rc_is 0 && out_has "imported 7500 events in 3 streams"'

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
	eval 'rc_is 0 && out_has "imported 7507 events in 6 streams" && err_empty'
"$evstore" export --schema "$T" >"$tmp/copy.ndjson" 2>/dev/null
strip_assigned "$tmp/source.ndjson" | sort >"$tmp/a"
strip_assigned "$tmp/copy.ndjson" | sort >"$tmp/b"
check "export -> import -> export: identical streams (ids, versions, data)" \
	cmp -s "$tmp/a" "$tmp/b"
for s in acct-1 'acct-2 "quoted" \ and ünïcode' gen-1; do
	"$evstore" export "$s" 2>/dev/null | strip_assigned /dev/stdin >"$tmp/a"
	"$evstore" export "$s" --schema "$T" 2>/dev/null |
		strip_assigned /dev/stdin >"$tmp/b"
	check "stream \"$s\" is identical after the round trip" \
		eval '[ -s "$tmp/a" ] && cmp -s "$tmp/a" "$tmp/b"'
done
check "big integers and escapes survive the round trip" \
	grep -q '"n": 123456789012345678901234567890' "$tmp/copy.ndjson"

run_in "$tmp/source.ndjson" "$evstore" import - --schema "$T"
"$evstore" export --schema "$T" >"$tmp/copy2.ndjson" 2>/dev/null
check "importing the same file again (from stdin) changes nothing" \
	eval 'rc_is 0 && cmp -s "$tmp/copy.ndjson" "$tmp/copy2.ndjson"'

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

# Bad input: one line naming the line, exit 1.
E=${tag}_errors
"$evstore" migrate --schema "$E" >/dev/null 2>&1
export EVS_PG_SCHEMA=$E
good='{"stream_id":"e-1","version":0,"event_id":"00000000-0000-7000-8000-000000000001","type":"T","data":{}}'
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
	'{"stream_id":"e-1","version":1,"event_id":"00000000-0000-7000-8000-000000000002","type":"T","data":{},"metadata":[1]}' \
	'metadata must be a JSON object'
import_error "data with a lone surrogate" \
	'{"stream_id":"e-1","version":1,"event_id":"00000000-0000-7000-8000-000000000002","type":"T","data":"\ud800"}' \
	'not valid JSON: unpaired surrogate'

run "$evstore" read e-1 --format ndjson
check "import stores the lines before a bad line" \
	eval 'rc_is 0 && [ "$(wc -l <"$tmp/out")" -eq 1 ]'

# A stream that holds other events at those versions: a conflict.
printf '%s\n' '{"stream_id":"e-1","version":0,"event_id":"00000000-0000-7000-8000-0000000000ff","type":"T","data":{}}' \
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
	run vg "$evstore" migrate --schema "${tag}_vg2"
	check "valgrind: migrate is clean" eval 'rc_is 0 && err_empty'
	run vg "$evstore" status --schema "${tag}_vg2"
	check "valgrind: status is clean" eval 'rc_is 0 && err_empty'
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
