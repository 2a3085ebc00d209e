#!/bin/sh
# bench/run.sh: evstore beside its floor (pgbench), on one server.
#
#   sh bench/run.sh path/to/evs-bench        (make bench runs it for you,
#                                            inside scripts/with-pg.sh)
#
# Needs EVS_TEST_PG_DSN (a superuser's key=value conninfo) and PG_BIN (the
# server binaries: psql, pgbench), as scripts/with-pg.sh exports them.
# Creates the schema $BENCH_SCHEMA (default evs_bench) from the
# sql/ migrations, drops it again at the end, and runs, each
# workload (and its floor) BENCH_RUNS times for BENCH_SECONDS each:
#
#   1 single-event appends, exact expected version, own streams, at 1, 4
#     and 16 threads, as the owner (one statement) and as the
#     least-privilege application role ${BENCH_SCHEMA}_app (append_events());
#     floors: pipelined BEGIN; CAS UPDATE; INSERT; COMMIT
#     (bench/append-cas.sql), the same on tables with primary keys only
#     (append-bare.sql) and a plain one-row INSERT (append-insert.sql)
#   2 100-event batch appends, same threads and roles; floors:
#     bench/append-batch.sql, and append-bare-batch.sql (primary keys only)
#   3 four threads on one stream through evs_repo_update()
#   4 loading a 1,000-event stream, decoded, at 1 and 4 threads; floor:
#     evstore's read statement through pgbench (bench/load.sql)
#   5 streaming a 1,000,000-event stream (events/s and peak RSS)
#   6 single appends (1 thread) with BENCH_EXISTING events in the table,
#     and on an empty table (schema ${BENCH_SCHEMA}_empty), runs alternating
#   7 catching up: reading 1,000,000 events of one category through a
#     transient subscription (pages of 1,000, events/s and peak RSS); floor:
#     the library's PG_FEED_CATEGORY statement through pgbench, a page per
#     transaction, each after the last row of the one before
#     (bench/feed.sql)
#   8 live latency, commit to handler: 4 threads append single events (one
#     every 2 ms each) while one subscription follows their category,
#     polling and with notifications, runs alternating; no floor (absolute
#     milliseconds)
#   9 single appends at 4 threads with 4 subscriptions following them
#     (polling, in the same process) and without, runs alternating; the
#     baseline is the run without
#  15 scavenging 1,000,000 released events in steps of 10,000 (events/s)
#     while 4 threads append single events, beside the same appends with
#     no scavenge (runs alternating): the baseline is the idle run
#  14 loading a 100,000-event aggregate from a snapshot 10 events back
#     (evs_store_load_snapshot(): the snapshot and 10 events, JSON parsed)
#     against loading it by full replay (the same call for a format that
#     has no snapshot: all 100,000 events); loads/s
#
# Before every run of 1-3, 8 and 9 the tables are emptied and checkpointed;
# 4-6 run on the big table, loaded once with generate_series; 7 on its own
# table of 1,000,000 events (schema ${BENCH_SCHEMA}_feed). Every run is
# checked: evs-bench reads back every stream it wrote (count, versions,
# event ids), subscriptions check that every stream's events arrive in
# order and that none is missing, and after every pgbench run SQL checks
# that each stream's versions are 0..n-1 and the row count is what pgbench
# committed (the catch-up floors check their pages in the script).
#
# Output: per-run lines, then one line per measurement (medians of the
# runs)
#   RESULT <workload> <threads> <events_per_s> <p50_ms> <p99_ms> <rss_mb>
# ("-": not measured; workload 7: latencies per page, between handler calls
# for evstore; 8: appends/s and commit-to-handler latencies, and in
# latency-*-early lines the events/s whose handler ran before their append
# returned),
#   RATIO <workload> <floor> <threads> <median> <per-round ratios>
# (evstore over its floor, round by round, then the median), a table with
# the ratios and the targets, the server's settings; after a full run (not BENCH_QUICK) the generated part
# of bench/RESULTS.md is replaced (BENCH_WRITE_RESULTS=0: don't).
#
# Environment:
#   BENCH_QUICK=1        1 run of 2 s each, 1,004,000 existing events
#   BENCH_RUNS           runs per measurement (3; quick 1); medians.
#                        Single appends at 1 thread take 2 more (not quick)
#   BENCH_SECONDS        seconds per run (5; quick 2)
#   BENCH_EXISTING       events in the table for workload 6 (5000000)
#   BENCH_THREADS        thread counts for workloads 1 and 2 ("1 4 16")
#   BENCH_CATCHUP_RUNS   rounds of workload 7 (BENCH_RUNS)
#   BENCH_SCHEMA         schema to use (evs_bench), and NAME_empty and
#                        NAME_feed; all dropped at the end
#   BENCH_WRITE_RESULTS  0: leave bench/RESULTS.md alone
#   BENCH_WORKLOADS      only these workloads, e.g. "1 2" (all); 13 loads
#                        7's table, so it runs 7 as well. bench/RESULTS.md
#                        is written only by a full run of every workload
set -eu

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
	echo "usage: $0 path/to/evs-bench (run by make bench)" >&2
	exit 2
fi
EVS_BENCH=$1
: "${EVS_TEST_PG_DSN:?run me through scripts/with-pg.sh (make bench)}"
: "${PG_BIN:?run me through scripts/with-pg.sh (make bench)}"
DSN=$EVS_TEST_PG_DSN
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
PSQL="$PG_BIN/psql"
PGBENCH="$PG_BIN/pgbench"
SCHEMA=${BENCH_SCHEMA:-evs_bench}
EMPTY_SCHEMA=${SCHEMA}_empty   # workload 6's empty table
BARE_SCHEMA=${SCHEMA}_bare     # the bare floors' tables (primary keys only)
FEED_SCHEMA=${SCHEMA}_feed     # workload 7's category
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
	RUNS=${BENCH_RUNS:-1}
	SECS=${BENCH_SECONDS:-2}
	EXISTING=${BENCH_EXISTING:-1004000}
else
	RUNS=${BENCH_RUNS:-3}
	SECS=${BENCH_SECONDS:-5}
	EXISTING=${BENCH_EXISTING:-5000000}
fi
THREADS=${BENCH_THREADS:-1 4 16}
CATCHUP_RUNS=${BENCH_CATCHUP_RUNS:-$RUNS}
RUNS1=$RUNS                   # workload 1 at 1 thread (see there)
[ "$QUICK" = 1 ] || RUNS1=$((RUNS + 2))
STREAM_EVENTS=1000000   # workload 5
LOAD_EVENTS=1000        # workload 4: events per stream
LOAD_STREAMS=4          # ... and streams (thread i reads load-(i mod 4))
NSTREAMS=8              # workloads 1, 2, 6: streams per thread
BATCH=100               # workload 2
FEED_STREAMS=1000       # workload 7: streams feed-0..feed-999,
FEED_VERSIONS=1000      # ... of 1,000 events each,
FEED_EVENTS=$((FEED_STREAMS * FEED_VERSIONS))
FEED_PAGE=1000          # ... read in pages of 1,000 (batch_max)
LAT_THREADS=4           # workload 8: appending threads,
LAT_INTERVAL_MS=2       # ... each appending every 2 ms
SUB_WRITERS=4           # workload 9: appending threads,
SUBSCRIBERS=4           # ... and subscriptions following them
if [ "$EXISTING" -lt $((STREAM_EVENTS + LOAD_STREAMS * LOAD_EVENTS)) ]; then
	echo "run.sh: BENCH_EXISTING must be at least" \
		"$((STREAM_EVENTS + LOAD_STREAMS * LOAD_EVENTS))" >&2
	exit 2
fi
export PGOPTIONS="-c search_path=$SCHEMA"

work=$(mktemp -d "${TMPDIR:-/tmp}/evs-bench.XXXXXX")
chmod 755 "$work"
# shellcheck disable=SC2317 # called by the trap
finish() {
	status=$?
	trap - EXIT INT TERM HUP
	"$PSQL" -q -X -d "$DSN" -c "DROP SCHEMA IF EXISTS \"$SCHEMA\" CASCADE" \
		-c "DROP SCHEMA IF EXISTS \"$EMPTY_SCHEMA\" CASCADE" \
		-c "DROP SCHEMA IF EXISTS \"$FEED_SCHEMA\" CASCADE" \
		-c "DROP SCHEMA IF EXISTS \"$BARE_SCHEMA\" CASCADE" \
		>/dev/null 2>&1 || true
	drop_app_role
	rm -rf "$work"
	exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

start=$(date +%s)
errors=0
say() { echo "$*" >&2; }
# Labels of workloads 6 and 7, which set them (the summary reads them).
existing_label=none
feed_label=none
# want N: workload N is to run (BENCH_WORKLOADS unset or naming it).
want() {
	case " ${BENCH_WORKLOADS:-$1} " in *" $1 "*) return 0 ;; esac
	return 1
}
elapsed() { echo "$(($(date +%s) - start)) s"; }
sql() { "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$DSN" "$@"; }
sql_value() { "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -d "$DSN" -c "$1"; }
# The application role of a run (and of an interrupted one before it).
drop_app_role() {
	"$PSQL" -q -X -d "$DSN" -c "DO \$\$ BEGIN
		IF EXISTS (SELECT FROM pg_roles WHERE rolname = '${SCHEMA}_app')
		THEN EXECUTE format('DROP OWNED BY %I', '${SCHEMA}_app');
		     EXECUTE format('DROP ROLE %I', '${SCHEMA}_app'); END IF;
		END \$\$" >/dev/null 2>&1 || true
}
failed_run() {
	say "run.sh: FAILED: $*"
	errors=$((errors + 1))
}

# ---- the payload the floors send (as evs-bench's, ~150 + ~130 bytes) ----

DATA='{"account_id":"acct-1a2b3c4d-t00-s00","amount":12345,"currency":"EUR","reference":"invoice 2024-000123","channel":"online","note":"monthly payment"}'
META='{"correlation_id":"00000000-0000-7001-8000-000000000123","causation_id":"00000000-0000-7002-9000-000000000123","user":"teller-07"}'
# A text-format array of BATCH copies, quoted as libpq clients send them.
array_of() {
	printf '%s' "$1" | awk -v n="$BATCH" '{
		gsub(/[\\"]/, "\\\\&"); e = "\"" $0 "\""; s = e
		for (i = 1; i < n; i++) s = s "," e
		printf "{%s}", s }'
}
DARR=$(array_of "$DATA")
MARR=$(array_of "$META")

# ---- bookkeeping: per-run lines, medians ------------------------------------

: >"$work/runs"
: >"$work/results"

# record LABEL THREADS EPS P50 P99 RSS: one run's numbers
record() {
	echo "$*" >>"$work/runs"
	echo "  run: $*"
}

# median LABEL THREADS: the RESULT line of that measurement's runs (each
# field's median on its own).
median() {
	awk -v l="$1" -v t="$2" '
	function med(f,    n, i, j, x, v) {
		n = 0
		for (i = 1; i <= cnt; i++) if (val[i, f] != "-") v[++n] = val[i, f] + 0
		if (n == 0) return "-"
		for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
		x = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
		return x
	}
	$1 == l && $2 == t { cnt++; for (f = 3; f <= 6; f++) val[cnt, f] = $f }
	END {
		if (cnt == 0) exit
		e = med(3); a = med(4); b = med(5); r = med(6)
		printf "RESULT %s %s %s %s %s %s\n", l, t,
			(e == "-" ? e : sprintf("%.1f", e)),
			(a == "-" ? a : sprintf("%.3f", a)),
			(b == "-" ? b : sprintf("%.3f", b)),
			(r == "-" ? r : sprintf("%.1f", r))
	}' "$work/runs" | tee -a "$work/results"
}

# ---- schema and table states -----------------------------------------------

sql -c "DROP SCHEMA IF EXISTS \"$SCHEMA\" CASCADE" \
    -c "DROP SCHEMA IF EXISTS \"$EMPTY_SCHEMA\" CASCADE" \
    -c "DROP SCHEMA IF EXISTS \"$FEED_SCHEMA\" CASCADE" >/dev/null 2>&1
# Every migration, in order, as a DBA would.
migrate() {
	for f in "$root"/sql/[0-9][0-9][0-9][0-9]_*.sql; do
		sql -v schema="$1" -f "$f" >/dev/null
	done
}
migrate "$SCHEMA"
# The least-privilege application role (README's required grants only):
# evstore appends through append_events() as this role, through its one
# statement as the owner (who holds what README's optional grants give).
APP_ROLE=${SCHEMA}_app
APP_DSN="$DSN user=$APP_ROLE"
drop_app_role
sql -c "CREATE ROLE \"$APP_ROLE\" LOGIN" \
    -c "GRANT USAGE ON SCHEMA \"$SCHEMA\" TO \"$APP_ROLE\"" \
    -c "GRANT SELECT ON ALL TABLES IN SCHEMA \"$SCHEMA\" TO \"$APP_ROLE\"" \
    -c "GRANT EXECUTE ON FUNCTION \"$SCHEMA\".append_events(text, bigint,
        uuid[], text[], jsonb[], jsonb[]) TO \"$APP_ROLE\"" \
    -c "GRANT EXECUTE ON FUNCTION \"$SCHEMA\".append_many(text[], bigint[],
        integer[], uuid[], text[], jsonb[], jsonb[], boolean, integer)
        TO \"$APP_ROLE\"" >/dev/null
# The bare floors' tables: the same columns, nothing but primary keys.
sql -c "DROP SCHEMA IF EXISTS \"$BARE_SCHEMA\" CASCADE" \
    -c "CREATE SCHEMA \"$BARE_SCHEMA\"" \
    -c "CREATE TABLE \"$BARE_SCHEMA\".streams (stream_id text COLLATE \"C\"
        PRIMARY KEY, version bigint NOT NULL)" \
    -c "CREATE TABLE \"$BARE_SCHEMA\".events (stream_id text COLLATE \"C\",
        version bigint, event_id uuid NOT NULL, type text NOT NULL,
        data jsonb NOT NULL, metadata jsonb,
        PRIMARY KEY (stream_id, version))" >/dev/null

# empty_tables [SCHEMA]: empties the events and streams of SCHEMA (the
# search_path's first one by default) in one transaction that logs it in
# its lifecycle_log first, as sql/0006 wants of anyone who removes
# events (the bare floors' tables have no log, and need none).
empty_tables() {
	# (Names of their own: sh has no local variables, and t is taken.)
	if [ -n "${1:-}" ]; then
		et_schema="'$1'" et_prefix="\"$1\"."
	else
		et_schema="current_schema()" et_prefix=""
	fi
	sql -c "DO \$\$ BEGIN
	        IF to_regclass(format('%I.lifecycle_log', $et_schema))
	           IS NOT NULL THEN
	          EXECUTE format('INSERT INTO %I.lifecycle_log (operation)
	                          VALUES (%L)', $et_schema,
	                          'bench: empty the tables');
	        END IF; END \$\$;
	        TRUNCATE ${et_prefix}events, ${et_prefix}streams
	        RESTART IDENTITY"
}

# Empty tables, and no dirty buffers left from the last run.
fresh_tables() {
	empty_tables && sql -c CHECKPOINT
}

# seed_streams CLIENTS: the floors' streams, (c + 1) * 1000 + k, at
# version 0 with one event each (evs-bench creates its own, untimed).
seed_streams() {
	sql -c "INSERT INTO streams (stream_id, version)
	        SELECT ((c + 1) * 1000 + k)::text, 0
	          FROM generate_series(0, $1 - 1) c,
	               generate_series(0, $NSTREAMS - 1) k" \
	    -c "INSERT INTO events (stream_id, version, event_id, type, data)
	        SELECT stream_id, 0, gen_random_uuid(), 'Opened', '{}'
	          FROM streams"
}

# check_tables EXPECTED_EVENTS: every stream's versions are 0..n-1, every
# stream row is at its last event, and (unless "-") the count is right.
check_tables() {
	got=$(sql_value "
	SELECT (SELECT count(*) FROM events) || ' ' ||
	       (SELECT count(*) FROM (SELECT stream_id FROM events
	          GROUP BY stream_id
	          HAVING count(*) <> max(version) + 1 OR min(version) <> 0) x)
	       || ' ' ||
	       (SELECT count(*) FROM streams s LEFT JOIN (SELECT stream_id,
	          max(version) AS hi FROM events GROUP BY stream_id) e
	          USING (stream_id) WHERE e.hi IS DISTINCT FROM s.version)")
	# shellcheck disable=SC2086 # three numbers
	set -- "$1" $got
	if [ "$3" != 0 ] || [ "$4" != 0 ] ||
		{ [ "$1" != - ] && [ "$1" != "$2" ]; }; then
		failed_run "table check: $2 events (expected $1)," \
			"$3 streams with a gap or a duplicate version," \
			"$4 stream rows not at their last event"
		return 1
	fi
}

# ---- one run of evs-bench or pgbench ---------------------------------------

EVS_SCHEMA=   # set: evs-bench runs on this schema instead

# evs LABEL THREADS ARGS...: one evs-bench run; records its RESULT lines.
evs() {
	label=$1 threads=$2
	shift 2
	if ! "$EVS_BENCH" "$@" --label "$label" --threads "$threads" \
		--schema "${EVS_SCHEMA:-$SCHEMA}" --dsn "${EVS_DSN:-$DSN}" >"$work/evs.out" 2>"$work/evs.err"; then
		cat "$work/evs.err" >&2
		failed_run "evs-bench $label at $threads threads"
		return 1
	fi
	sed 's/^/  /' "$work/evs.err"
	grep '^RESULT ' "$work/evs.out" | while read -r _ l t e a b r; do
		record "$l" "$t" "$e" "$a" "$b" "$r"
	done
}

# pgb LABEL CLIENTS EVENTS_PER_TX SEED EXPECT_CHECK SCRIPT [ARGS...]: one
# pgbench run. Latencies come from its per-transaction log, leaving out
# each client's first transaction (which prepares the statements).
# SEED: events seeded before the run, for the count check; "-" skips the
# table check (read-only scripts). PGB_TX set: that many transactions per
# client instead of BENCH_SECONDS.
PGB_TX=
pgb() {
	label=$1 clients=$2 per_tx=$3 seeded=$4 script=$5
	shift 5
	rm -f "$work"/pgblog*
	length="-T $SECS"
	[ -n "$PGB_TX" ] && length="-t $PGB_TX"
	# shellcheck disable=SC2086 # two words
	if ! "$PGBENCH" -n -M prepared -c "$clients" -j "$clients" $length \
		-l --log-prefix="$work/pgblog" -f "$here/$script" "$@" "$DSN" \
		>"$work/pgb.out" 2>&1 ||
		grep -q 'error' "$work/pgb.out"; then
		cat "$work/pgb.out" >&2
		failed_run "pgbench $label at $clients clients"
		return 1
	fi
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/pgb.out")
	done_tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' \
		"$work/pgb.out")
	awk '$2 > 1 { print $3 }' "$work"/pgblog* | sort -n >"$work/lat"
	# shellcheck disable=SC2046 # two numbers
	set -- $(awk '{ v[NR] = $1 }
	END {
		n = NR
		r = int(n * 0.5); if (r < n * 0.5) r++; if (r < 1) r = 1
		s = int(n * 0.99); if (s < n * 0.99) s++; if (s < 1) s = 1
		printf "%.3f %.3f\n", v[r] / 1000, v[s] / 1000
	}' "$work/lat")
	echo "  pgbench $script: $clients clients: $done_tx transactions," \
		"tps $tps"
	if [ "$seeded" != - ]; then
		check_tables $((seeded + done_tx * per_tx)) || return 1
	fi
	record "$label" "$clients" \
		"$(awk -v t="$tps" -v k="$per_tx" 'BEGIN { printf "%.1f", t * k }')" \
		"$1" "$2" -
}

# ---- the server -----------------------------------------------------------

SETTINGS="server_version fsync synchronous_commit full_page_writes
wal_sync_method wal_level shared_buffers max_wal_size checkpoint_timeout
work_mem max_connections autovacuum"
settings_line() {
	for s in $SETTINGS; do
		printf '%s=%s ' "$s" "$(sql_value "SHOW $s")"
	done
}
say "run.sh: runs of ${SECS} s, median of $RUNS; threads: $THREADS;" \
	"$EXISTING existing events for workload 6$([ "$QUICK" = 1 ] &&
		echo ' (BENCH_QUICK)')"
say "run.sh: server: $(settings_line)"

# ---- workloads 1 and 2: appends ---------------------------------------------

# rotate N WORD...: the words, rotated left N times. Each round of runs
# takes evstore and its floors in another order, so that neither always
# runs first after a checkpoint, or last before the next workload.
rotate() {
	n=$1
	shift
	while [ "$n" -gt 0 ]; do
		w=$1
		shift
		set -- "$@" "$w"
		n=$((n - 1))
	done
	echo "$@"
}

# step WHAT THREADS: one run of one system, on emptied tables.
step() {
	fresh_tables >/dev/null
	case $1 in
	append1-evstore | append100-evstore | append1-evstore-app | \
	append100-evstore-app)
		batch=1 dsn=$DSN
		case $1 in append100-*) batch=$BATCH ;; esac
		case $1 in *-app) dsn=$APP_DSN ;; esac
		if EVS_DSN=$dsn evs "$1" "$2" append --seconds "$SECS" \
			--batch "$batch" --streams "$NSTREAMS"; then
			check_tables - || true
		fi ;;
	append1-floor-cas)
		seed_streams "$2" >/dev/null
		pgb "$1" "$2" 1 $(($2 * NSTREAMS)) append-cas.sql \
			-D n=0 -D nstreams="$NSTREAMS" -D data="$DATA" \
			-D meta="$META" || true ;;
	append1-floor-insert)
		pgb "$1" "$2" 1 0 append-insert.sql \
			-D n=0 -D nstreams="$NSTREAMS" -D data="$DATA" \
			-D meta="$META" || true ;;
	append1-floor-bare | append100-floor-bare)
		# The same helpers, on the bare tables (search_path).
		PGOPTIONS="-c search_path=$BARE_SCHEMA"
		fresh_tables >/dev/null
		seed_streams "$2" >/dev/null
		if [ "$1" = append1-floor-bare ]; then
			pgb "$1" "$2" 1 $(($2 * NSTREAMS)) append-bare.sql \
				-D n=0 -D nstreams="$NSTREAMS" -D data="$DATA" \
				-D meta="$META" || true
		else
			pgb "$1" "$2" "$BATCH" $(($2 * NSTREAMS)) \
				append-bare-batch.sql -D n=0 \
				-D nstreams="$NSTREAMS" -D batch="$BATCH" \
				-D darr="$DARR" -D marr="$MARR" || true
		fi
		PGOPTIONS="-c search_path=$SCHEMA" ;;
	append100-floor)
		seed_streams "$2" >/dev/null
		pgb "$1" "$2" "$BATCH" $(($2 * NSTREAMS)) append-batch.sql \
			-D n=0 -D nstreams="$NSTREAMS" -D batch="$BATCH" \
			-D darr="$DARR" -D marr="$MARR" || true ;;
	esac
}

if want 1; then
say ""
say "== 1. single-event appends, exact expected version ($(elapsed))"
# At 1 thread each append waits for one commit fsync, whose speed drifts
# from run to run on a shared disk far more than evstore and its floor
# differ: two more rounds there (RUNS1).
for t in $THREADS; do
	runs=$RUNS
	[ "$t" = 1 ] && runs=$RUNS1
	for r in $(seq "$runs"); do
		say "-- $t threads, run $r"
		for what in $(rotate $(((r - 1) % 5)) append1-evstore \
			append1-floor-cas append1-floor-insert \
			append1-floor-bare append1-evstore-app); do
			step "$what" "$t"
		done
	done
	median append1-evstore "$t"
	median append1-evstore-app "$t"
	median append1-floor-cas "$t"
	median append1-floor-insert "$t"
	median append1-floor-bare "$t"
done

fi
if want 2; then
say ""
say "== 2. $BATCH-event batch appends ($(elapsed))"
for t in $THREADS; do
	for r in $(seq "$RUNS"); do
		say "-- $t threads, run $r"
		for what in $(rotate $(((r - 1) % 4)) append100-evstore \
			append100-floor append100-floor-bare \
			append100-evstore-app); do
			step "$what" "$t"
		done
	done
	median append100-evstore "$t"
	median append100-evstore-app "$t"
	median append100-floor "$t"
	median append100-floor-bare "$t"
done

fi
if want 3; then
say ""
say "== 3. four threads contending on one stream, evs_repo_update ($(elapsed))"
for r in $(seq "$RUNS"); do
	say "-- run $r"
	fresh_tables >/dev/null
	if evs contend 4 contend --seconds "$SECS"; then
		check_tables - || true
	fi
done
median contend-ok 4
median contend-conflicts 4
fi

if want 4 || want 5 || want 6; then
# ---- the big table ----------------------------------------------------------

# BENCH_EXISTING events: the 1,000,000-event stream "big-stream", the
# streams load-0..3 of 1,000 events, and the rest in streams of 100 events
# ("acct-" and an md5, so that new streams sort in among them). Loaded
# without the indexes (rebuilt after, with the schema's names), in two
# sessions, then vacuumed, analysed and checkpointed.
say ""
say "== loading $EXISTING events ($(elapsed))"
filler=$((EXISTING - STREAM_EVENTS - LOAD_STREAMS * LOAD_EVENTS))
fstreams=$((filler / 100))
frest=$((filler - fstreams * 100))
half=$((fstreams / 2))
# The events table's indexes (sql/0001 and 0003, same names), dropped
# before a bulk load and built after it: SQL for the current search_path.
DROP_INDEXES="ALTER TABLE events DROP CONSTRAINT events_pkey,
        DROP CONSTRAINT events_event_id_key;
    DROP INDEX events_transaction_position, events_category_position,
        events_type_position"
ADD_INDEXES="SET maintenance_work_mem = '512MB';
    ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (stream_id, version),
        ADD CONSTRAINT events_event_id_key UNIQUE (stream_id, event_id);
    CREATE INDEX events_transaction_position
        ON events (transaction_id, global_position);
    CREATE INDEX events_category_position
        ON events ((split_part(stream_id, '-', 1)), transaction_id, global_position);
    CREATE INDEX events_type_position ON events (type, transaction_id, global_position)"
empty_tables >/dev/null
sql -c "$DROP_INDEXES" >/dev/null
# filler FIRST LAST: streams acct-md5(i) for i in FIRST..LAST, 100 events
filler_sql() {
	echo "INSERT INTO streams (stream_id, version)
	      SELECT 'acct-' || md5(i::text), 99 FROM generate_series($1, $2) i;
	      INSERT INTO events (stream_id, version, event_id, type, data, metadata)
	      SELECT s.id, v, gen_random_uuid(), 'Deposited', '$DATA', '$META'
	        FROM (SELECT 'acct-' || md5(i::text) AS id
	                FROM generate_series($1, $2) i) s,
	             generate_series(0, 99) v;"
}
t0=$(date +%s)
{
	sql -c "INSERT INTO streams VALUES ('big-stream', $((STREAM_EVENTS - 1)))" \
	    -c "INSERT INTO events (stream_id, version, event_id, type, data, metadata)
	        SELECT 'big-stream', v, gen_random_uuid(), 'Deposited', '$DATA', '$META'
	          FROM generate_series(0, $((STREAM_EVENTS - 1))) v" \
	    -c "INSERT INTO streams
	        SELECT 'load-' || s, $((LOAD_EVENTS - 1)) FROM generate_series(0, $((LOAD_STREAMS - 1))) s" \
	    -c "INSERT INTO events (stream_id, version, event_id, type, data, metadata)
	        SELECT 'load-' || s, v, gen_random_uuid(), 'Deposited',
	               jsonb_set('$DATA', '{amount}', to_jsonb(v * 7 % 9973)),
	               jsonb_set('$META', '{causation_id}', to_jsonb(gen_random_uuid()))
	          FROM generate_series(0, $((LOAD_STREAMS - 1))) s,
	               generate_series(0, $((LOAD_EVENTS - 1))) v" >/dev/null
	if [ "$half" -ge 1 ]; then
		sql -c "$(filler_sql 1 "$half")" >/dev/null
	fi
} &
loader=$!
if [ "$fstreams" -gt "$half" ]; then
	sql -c "$(filler_sql $((half + 1)) "$fstreams")" >/dev/null
fi
if [ "$frest" -gt 0 ]; then
	sql -c "INSERT INTO streams VALUES ('acct-rest', $((frest - 1)))" \
	    -c "INSERT INTO events (stream_id, version, event_id, type, data)
	        SELECT 'acct-rest', v, gen_random_uuid(), 'Deposited', '$DATA'
	          FROM generate_series(0, $((frest - 1))) v" >/dev/null
fi
wait "$loader"
t1=$(date +%s)
sql -c "$ADD_INDEXES" >/dev/null
t2=$(date +%s)
sql -c "VACUUM (ANALYZE) events" -c "VACUUM (ANALYZE) streams" -c CHECKPOINT \
	>/dev/null
t3=$(date +%s)
check_tables "$EXISTING" || true
say "   rows $((t1 - t0)) s, indexes $((t2 - t1)) s, vacuum and checkpoint" \
	"$((t3 - t2)) s; table $(sql_value "SELECT pg_size_pretty(pg_total_relation_size('events'))")"

fi
if want 4; then
# ---- workload 4: loading a 1,000-event stream -------------------------------

say ""
say "== 4. loading a $LOAD_EVENTS-event stream, decoded ($(elapsed))"
for t in 1 4; do
	for r in $(seq "$RUNS"); do
		say "-- $t threads, run $r"
		for what in $(rotate $(((r - 1) % 2)) evstore floor); do
			if [ "$what" = evstore ]; then
				evs load1000-evstore "$t" load --seconds "$SECS" \
					--stream load --streams "$LOAD_STREAMS" \
					--events "$LOAD_EVENTS" || true
			else
				pgb load1000-floor "$t" "$LOAD_EVENTS" - load.sql \
					-D nstreams="$LOAD_STREAMS" || true
			fi
		done
	done
	median load1000-evstore "$t"
	median load1000-floor "$t"
done

fi
if want 5; then
# ---- workload 5: streaming a 1,000,000-event stream -------------------------

say ""
say "== 5. streaming a $STREAM_EVENTS-event stream ($(elapsed))"
for r in $(seq "$RUNS"); do
	say "-- run $r"
	evs stream1M-evstore 1 stream --stream big-stream \
		--events "$STREAM_EVENTS" || true
done
median stream1M-evstore 1

fi
if want 6; then
# ---- workload 6: appends on the big table -----------------------------------

# Runs alternate between the big table and an empty one (a second schema,
# emptied and checkpointed before each run), so that both see the same
# disk and the same neighbours.
existing_label=$(awk -v n="$EXISTING" 'BEGIN {
	if (n % 1000000 == 0) print n / 1000000 "M"; else print n }')
say ""
say "== 6. single appends on an empty table and with $EXISTING existing" \
	"events ($(elapsed))"
migrate "$EMPTY_SCHEMA"
for r in $(seq "$RUNS"); do
	say "-- run $r"
	for what in $(rotate $(((r - 1) % 2)) empty big); do
		if [ "$what" = empty ]; then
			empty_tables "$EMPTY_SCHEMA" >/dev/null
			sql -c CHECKPOINT >/dev/null
			EVS_SCHEMA=$EMPTY_SCHEMA
			evs append1-at0-evstore 1 append --seconds "$SECS" \
				--batch 1 --streams "$NSTREAMS" || true
			EVS_SCHEMA=
		else
			sql -c CHECKPOINT >/dev/null
			evs "append1-at$existing_label-evstore" 1 append \
				--seconds "$SECS" --batch 1 --streams "$NSTREAMS" ||
				true
		fi
	done
done
median append1-at0-evstore 1
median "append1-at$existing_label-evstore" 1
check_tables - || true

fi
if want 7 || want 13; then
# ---- workload 7: catching up through a subscription ----------------------

# A schema of its own: the streams feed-0..feed-999 of 1,000 events each,
# written as 1,000 transactions of one event per stream (so 1,000 order
# keys, the streams interleaved in the feed as live appends leave them),
# global positions 1..1,000,000 in feed order. Loaded without the
# indexes, then indexed, vacuumed, analysed and checkpointed.
say ""
say "== 7. catching up: $FEED_EVENTS events of one category through a" \
	"subscription ($(elapsed))"
migrate "$FEED_SCHEMA"
t0=$(date +%s)
sql -c "SET search_path = \"$FEED_SCHEMA\"" -c "$DROP_INDEXES" \
    -c "DO \$\$ BEGIN
          FOR r IN 0 .. $((FEED_VERSIONS - 1)) LOOP
            INSERT INTO events (stream_id, version, event_id, type, data, metadata)
            SELECT 'feed-' || s, r, gen_random_uuid(), 'Deposited', '$DATA', '$META'
              FROM generate_series(0, $((FEED_STREAMS - 1))) s ORDER BY s;
            COMMIT;
          END LOOP;
        END \$\$" \
    -c "INSERT INTO streams (stream_id, version, last_key)
        SELECT stream_id, max(version), max(transaction_id) FROM events
         GROUP BY stream_id" \
    -c "$ADD_INDEXES" -c "VACUUM (ANALYZE) events" -c "VACUUM (ANALYZE) streams" \
    -c CHECKPOINT >/dev/null
got=$(sql_value "SELECT count(*) || ' ' || count(DISTINCT stream_id) || ' ' ||
	count(DISTINCT transaction_id) || ' ' || min(global_position) || ' ' ||
	max(global_position) FROM \"$FEED_SCHEMA\".events")
if [ "$got" != "$FEED_EVENTS $FEED_STREAMS $FEED_VERSIONS 1 $FEED_EVENTS" ]; then
	failed_run "feed table: $got (events, streams, order keys, first and" \
		"last position)"
fi
say "   $(($(date +%s) - t0)) s; table $(sql_value "SELECT pg_size_pretty(pg_total_relation_size('\"$FEED_SCHEMA\".events'))")"
# The floors run evstore's SQL with evstore's plan: a generic one.
feed_floor() {
	saved=$PGOPTIONS
	PGOPTIONS="-c search_path=$FEED_SCHEMA -c plan_cache_mode=force_generic_plan"
	PGB_TX=$((FEED_EVENTS / FEED_PAGE))
	pgb "$1" 1 "$FEED_PAGE" - "$2" -D page=0 -D cat=feed \
		-D transaction_id=0 -D global_position=0 -D k=1 -D m=0 \
		-D lim="$FEED_PAGE" || true
	PGB_TX=
	PGOPTIONS=$saved
}
feed_label=$(awk -v n="$FEED_EVENTS" 'BEGIN {
	if (n % 1000000 == 0) print n / 1000000 "M"; else print n }')
for r in $(seq "$CATCHUP_RUNS"); do
	say "-- run $r"
	for what in $(rotate $(((r - 1) % 2)) evstore floor); do
		case $what in
		evstore)
			EVS_SCHEMA=$FEED_SCHEMA
			evs "catchup$feed_label-evstore" 1 subscribe --category feed \
				--events "$FEED_EVENTS" --streams "$FEED_STREAMS" \
				--batch "$FEED_PAGE" || true
			EVS_SCHEMA= ;;
		floor) feed_floor "catchup$feed_label-floor" feed.sql ;;
		esac
	done
done
median "catchup$feed_label-evstore" 1
median "catchup$feed_label-floor" 1

fi
if want 8; then
# ---- workload 8: live latency, commit to handler ------------------------

say ""
say "== 8. live latency, commit to handler: $LAT_THREADS threads appending" \
	"every $LAT_INTERVAL_MS ms each, one subscription ($(elapsed))"
for r in $(seq "$RUNS"); do
	say "-- run $r"
	for wake in $(rotate $(((r - 1) % 2)) poll notify); do
		fresh_tables >/dev/null
		if evs "latency-$wake" "$LAT_THREADS" latency --wake "$wake" \
			--seconds "$SECS" --interval-ms "$LAT_INTERVAL_MS" \
			--streams "$NSTREAMS"; then
			check_tables - || true
		fi
	done
done
for wake in poll notify; do
	median "latency-$wake" "$LAT_THREADS"
	median "latency-$wake-early" "$LAT_THREADS"
done

fi
if want 9; then
# ---- workload 9: writers with subscriptions following them ---------------

say ""
say "== 9. single appends at $SUB_WRITERS threads, with $SUBSCRIBERS" \
	"subscriptions following them and without ($(elapsed))"
for r in $(seq "$RUNS"); do
	say "-- run $r"
	for n in $(rotate $(((r - 1) % 2)) 0 "$SUBSCRIBERS"); do
		fresh_tables >/dev/null
		if evs "append1-subs$n-evstore" "$SUB_WRITERS" append \
			--seconds "$SECS" --batch 1 --streams "$NSTREAMS" \
			--subscribers "$n"; then
			check_tables - || true
		fi
	done
done
median append1-subs0-evstore "$SUB_WRITERS"
median "append1-subs$SUBSCRIBERS-evstore" "$SUB_WRITERS"

fi
if want 10; then
# ---- workloads 10 to 13: group commit, multi-stream appends, import ----------

# Group commit groups appends only when more would be out than the store's
# group_in_flight (its pool's size by default): these runs use the
# library's default pool of 4, so that 16 threads are more than it takes.
GROUP_POOL=4
say ""
say "== 10. single appends with a pool of $GROUP_POOL: group commit on, off," \
	"and the CAS floor ($(elapsed))"
for t in $THREADS; do
	for r in $(seq "$RUNS"); do
		say "-- $t threads, run $r"
		for what in $(rotate $(((r - 1) % 3)) group-on group-off \
			group-floor); do
			fresh_tables >/dev/null
			case $what in
			group-on | group-off)
				if evs "append1-$what-evstore" "$t" append \
					--seconds "$SECS" --batch 1 \
					--streams "$NSTREAMS" --pool "$GROUP_POOL" \
					--group "${what#group-}"; then
					check_tables - || true
				fi ;;
			group-floor)
				seed_streams "$t" >/dev/null
				pgb append1-group-floor-cas "$t" 1 $((t * NSTREAMS)) \
					append-cas.sql -D n=0 -D nstreams="$NSTREAMS" \
					-D data="$DATA" -D meta="$META" || true ;;
			esac
		done
	done
	median append1-group-on-evstore "$t"
	median append1-group-off-evstore "$t"
	median append1-group-floor-cas "$t"
done

fi
if want 11; then
HOT_THREADS=16
HOT_STREAMS=4
say ""
say "== 11. $HOT_THREADS threads on $HOT_STREAMS shared streams (any version)," \
	"pool of $GROUP_POOL: group commit on and off ($(elapsed))"
for r in $(seq "$RUNS"); do
	say "-- run $r"
	for g in $(rotate $(((r - 1) % 2)) on off); do
		fresh_tables >/dev/null
		if evs "hot$HOT_STREAMS-group-$g-evstore" "$HOT_THREADS" append \
			--seconds "$SECS" --shared "$HOT_STREAMS" \
			--pool "$GROUP_POOL" --group "$g"; then
			check_tables - || true
		fi
	done
done
median "hot$HOT_STREAMS-group-on-evstore" "$HOT_THREADS"
median "hot$HOT_STREAMS-group-off-evstore" "$HOT_THREADS"

fi
if want 12; then
MANY_WIDTH=10
say ""
say "== 12. one thread: atomic appends of $MANY_WIDTH streams x 1 event in one" \
	"call, and single appends ($(elapsed))"
for r in $(seq "$RUNS"); do
	say "-- run $r"
	for what in $(rotate $(((r - 1) % 2)) many single); do
		fresh_tables >/dev/null
		if [ "$what" = many ]; then
			evs "many$MANY_WIDTH-evstore" 1 append --seconds "$SECS" \
				--width "$MANY_WIDTH" --group off || true
		else
			evs "many$MANY_WIDTH-single-evstore" 1 append \
				--seconds "$SECS" --streams "$MANY_WIDTH" \
				--group off || true
		fi
		check_tables - || true
	done
done
median "many$MANY_WIDTH-evstore" 1
median "many$MANY_WIDTH-single-evstore" 1

fi
if want 13; then
# The feed schema's 1,000,000 events, exported and imported again into an
# empty schema by the evstore tool (EVSTORE_BIN, set by make bench).
if [ -n "${EVSTORE_BIN:-}" ] && [ -x "$EVSTORE_BIN" ]; then
	say ""
	say "== 13. evstore import of $FEED_EVENTS events ($(elapsed))"
	IMPORT_SCHEMA=${SCHEMA}_import
	"$EVSTORE_BIN" export --dsn "$DSN" --schema "$FEED_SCHEMA" \
		>"$work/feed.ndjson" 2>"$work/export.err" ||
		{ cat "$work/export.err" >&2; failed_run "evstore export"; }
	for r in $(seq "$RUNS"); do
		sql -c "DROP SCHEMA IF EXISTS \"$IMPORT_SCHEMA\" CASCADE" \
			>/dev/null 2>&1
		migrate "$IMPORT_SCHEMA"
		sql -c CHECKPOINT >/dev/null
		t0=$(date +%s.%N)
		if "$EVSTORE_BIN" import --dsn "$DSN" --schema "$IMPORT_SCHEMA" \
			"$work/feed.ndjson" >"$work/import.out" \
			2>"$work/import.err"; then
			t1=$(date +%s.%N)
			n=$(sql_value "SELECT count(*) FROM \"$IMPORT_SCHEMA\".events")
			say "  $(cat "$work/import.out"); $n rows"
			if [ "$n" = "$FEED_EVENTS" ]; then
				record import1M-evstore 1 "$(awk -v a="$t0" -v b="$t1" \
					-v n="$n" 'BEGIN { printf "%.1f", n / (b - a) }')" - - -
			else
				failed_run "evstore import stored $n events"
			fi
		else
			cat "$work/import.err" >&2
			failed_run "evstore import"
		fi
	done
	sql -c "DROP SCHEMA IF EXISTS \"$IMPORT_SCHEMA\" CASCADE" >/dev/null 2>&1
	median import1M-evstore 1
fi

fi
if want 14; then
# ---- workload 14: loading from a snapshot -----------------------------------

SNAP_EVENTS=100000
SNAP_BACK=10
say ""
say "== 14. loading a $SNAP_EVENTS-event aggregate: from a snapshot" \
	"$SNAP_BACK events back, and by full replay ($(elapsed))"
sql >/dev/null <<SQL
INSERT INTO streams (stream_id, version, last_key)
VALUES ('snapload', $((SNAP_EVENTS - 1)), pg_current_xact_id())
ON CONFLICT DO NOTHING;
INSERT INTO events (stream_id, version, event_id, type, data)
SELECT 'snapload', v, gen_random_uuid(), 'Deposited',
       jsonb_build_object('amount', 1, 'n', v)
  FROM generate_series(0, $((SNAP_EVENTS - 1))) AS v
 WHERE NOT EXISTS (SELECT 1 FROM events WHERE stream_id = 'snapload');
SELECT store_snapshot('snapload', 'bench', 1, $((SNAP_EVENTS - 1 - SNAP_BACK)),
       jsonb_build_object('balance', $((SNAP_EVENTS - SNAP_BACK))));
VACUUM ANALYZE events;
SQL
for r in $(seq "$RUNS"); do
	say "-- run $r"
	for what in $(rotate $(((r - 1) % 2)) snapshot replay); do
		if [ "$what" = snapshot ]; then
			evs snapload100k-evstore 1 snapload --stream snapload \
				--events "$SNAP_EVENTS" --snapshot-format 1 \
				--seconds "$SECS" || true
		else
			evs snapload100k-replay-evstore 1 snapload \
				--stream snapload --events "$SNAP_EVENTS" \
				--snapshot-format 2 --seconds "$SECS" || true
		fi
	done
done
median snapload100k-evstore 1
median snapload100k-replay-evstore 1

fi
if want 15; then
# ---- workload 15: scavenging while appending ---------------------------------

SCAV_EVENTS=1000000
SCAV_STEP=10000
SCAV_THREADS=4
[ "$QUICK" = 1 ] && SCAV_EVENTS=200000
say ""
say "== 15. scavenging $SCAV_EVENTS released events in steps of $SCAV_STEP" \
	"while $SCAV_THREADS threads append, and the appends alone ($(elapsed))"
# A stream of SCAV_EVENTS events, all released (truncated at its end).
seed_released() {
	sql >/dev/null <<SQL
INSERT INTO streams (stream_id, version, last_key)
VALUES ('scav', $((SCAV_EVENTS - 1)), pg_current_xact_id());
INSERT INTO events (stream_id, version, event_id, type, data)
SELECT 'scav', v, gen_random_uuid(), 'Deposited',
       jsonb_build_object('amount', 1, 'n', v)
  FROM generate_series(0, $((SCAV_EVENTS - 1))) AS v;
SELECT truncate_stream('scav', -2, $SCAV_EVENTS, true);
VACUUM ANALYZE events;
CHECKPOINT;
SQL
}
for r in $(seq "$RUNS"); do
	say "-- run $r"
	for what in $(rotate $(((r - 1) % 2)) busy idle); do
		fresh_tables >/dev/null
		if [ "$what" = idle ]; then
			evs append1-scav-idle-evstore "$SCAV_THREADS" append \
				--seconds "$SECS" --batch 1 --streams "$NSTREAMS" ||
				true
			continue
		fi
		seed_released
		# The scavenge starts first; the appends run inside it.
		"$EVS_BENCH" scavenge --label scavenge-evstore --threads 1 \
			--batch "$SCAV_STEP" --events "$SCAV_EVENTS" \
			--schema "$SCHEMA" --dsn "$DSN" >"$work/scav.out" \
			2>"$work/scav.err" &
		scav=$!
		sleep 0.5
		evs append1-scav-busy-evstore "$SCAV_THREADS" append \
			--seconds "$SECS" --batch 1 --streams "$NSTREAMS" || true
		if wait "$scav"; then
			sed 's/^/  /' "$work/scav.err"
			grep '^RESULT ' "$work/scav.out" |
				while read -r _ l t e a b rs; do
					record "$l" "$t" "$e" "$a" "$b" "$rs"
				done
		else
			cat "$work/scav.err" >&2
			failed_run "evs-bench scavenge"
		fi
	done
done
median scavenge-evstore 1
median append1-scav-busy-evstore "$SCAV_THREADS"
median append1-scav-idle-evstore "$SCAV_THREADS"

fi
# ---- the summary ------------------------------------------------------------

say ""
say "== done in $(elapsed)"
machine="$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo |
	sort -u | head -1)), $(awk '/^MemTotal/ { printf "%.1f GB", $2 / 1048576 }' \
	/proc/meminfo) RAM, Linux $(uname -r)"
pgversion=$(sql_value "SELECT version()")
settings=$(settings_line)

# Paired ratios: run k of evstore over run k of its floor (same round,
# minutes apart at most), then the median of those; drift in the disk's or
# the neighbours' speed cancels out better than in a ratio of medians.
# RATIO <workload> <floor> <threads> <median> <per-run ratios>, where the
# field compared is events/s, or p99 for workload 6. For workload 9 the
# "floor" is the same appends without subscriptions.
ratios() {
	awk -v atx="append1-at$existing_label-evstore" -v cu="catchup$feed_label" \
		-v subs="append1-subs$SUBSCRIBERS-evstore" -v sw="$SUB_WRITERS" '
	{ n = ++cnt[$1, $2]; eps[$1, $2, n] = $3; p99[$1, $2, n] = $5 }
	function median(v, n,    i, j, x) {
		for (i = 2; i <= n; i++) {
			x = v[i]
			for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]
			v[j + 1] = x
		}
		return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
	}
	function pair(e, f, t, field,    n, k, v, list, a, b) {
		n = cnt[e, t] < cnt[f, t] ? cnt[e, t] : cnt[f, t]
		if (n == 0) return
		list = ""
		for (k = 1; k <= n; k++) {
			a = (field == "p99") ? p99[e, t, k] : eps[e, t, k]
			b = (field == "p99") ? p99[f, t, k] : eps[f, t, k]
			v[k] = (b > 0) ? a / b : 0
			list = list (k > 1 ? "," : "") sprintf("%.2f", v[k])
		}
		printf "RATIO %s %s %s %.2f %s\n", e, f, t, median(v, n), list
	}
	END {
		for (t = 1; t <= 256; t++) {
			pair("append1-evstore", "append1-floor-cas", t, "eps")
			pair("append1-evstore", "append1-floor-insert", t, "eps")
			pair("append100-evstore", "append100-floor", t, "eps")
			pair("append1-evstore", "append1-floor-bare", t, "eps")
			pair("append100-evstore", "append100-floor-bare", t, "eps")
			pair("append1-evstore-app", "append1-floor-cas", t, "eps")
			pair("append1-evstore-app", "append1-floor-bare", t, "eps")
			pair("append100-evstore-app", "append100-floor", t, "eps")
			pair("append100-evstore-app", "append100-floor-bare", t, "eps")
			pair("load1000-evstore", "load1000-floor", t, "eps")
		}
		pair(atx, "append1-at0-evstore", 1, "p99")
		pair(cu "-evstore", cu "-floor", 1, "eps")
		pair(subs, "append1-subs0-evstore", sw, "eps")
		for (t = 1; t <= 256; t++) {
			pair("append1-group-on-evstore", "append1-group-floor-cas", t, "eps")
			pair("append1-group-off-evstore", "append1-group-floor-cas", t, "eps")
			pair("append1-group-on-evstore", "append1-group-off-evstore", t, "eps")
		}
		pair("hot4-group-on-evstore", "hot4-group-off-evstore", 16, "eps")
		pair("many10-evstore", "many10-single-evstore", 1, "eps")
		pair("snapload100k-evstore", "snapload100k-replay-evstore", 1, "eps")
		pair("append1-scav-busy-evstore", "append1-scav-idle-evstore", 4, "eps")
	}' "$work/runs"
}

# The table: evstore beside its floor, the ratio and the target (a
# minimum ratio, or "p99<=MS": a p99 latency at most MS, no floor).
table() {
	awk -v atx="append1-at$existing_label-evstore" -v xl="$existing_label" \
		-v cu="catchup$feed_label" -v ce="$FEED_EVENTS" \
		-v lt="$LAT_THREADS" -v li="$LAT_INTERVAL_MS" \
		-v subs="append1-subs$SUBSCRIBERS-evstore" -v sn="$SUBSCRIBERS" \
		-v sw="$SUB_WRITERS" '
	$1 == "RATIO" { ratio[$2, $3, $4] = $5; runs[$2, $3, $4] = $6; next }
	{ eps[$2, $3] = $4; p50[$2, $3] = $5; p99[$2, $3] = $6; rss[$2, $3] = $7 }
	function lat(k) { return (p50[k] == "" ? "-" : p50[k] " / " p99[k]) }
	function row(name, t, e, f, target,    k, g, r, goal, lim) {
		k = e SUBSEP t; g = f SUBSEP t
		if (!((k) in eps)) return
		r = "-"; ok = ""; goal = (target == "" ? "-" : ">= " target)
		if (target ~ /^p99<=/) {
			lim = substr(target, 6) + 0
			goal = "p99 <= " lim " ms " (p99[k] != "-" && p99[k] + 0 <= lim ? "met" : "MISSED")
		} else if (f != "" && ((e, f, t) in ratio)) {
			r = ratio[e, f, t]
			if (target != "") goal = goal " " ((r + 0 >= target + 0) ? "met" : "MISSED")
			r = r " (" runs[e, f, t] ")"
		}
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, t,
			sprintf("%.0f", eps[k]),
			(f == "" ? "-" : sprintf("%.0f", eps[g])), r, goal,
			lat(k), (f == "" ? "-" : lat(g)), rss[k]
	}
	END {
		print "| workload | threads | evstore events/s | floor events/s | ratio (per run) | target | evstore p50 / p99 ms | floor p50 / p99 ms | evstore peak RSS MB |"
		print "|---|---:|---:|---:|---:|---|---:|---:|---:|"
		for (i = 1; i <= 256; i++)
			row("1. single appends vs CAS floor", i "", "append1-evstore", "append1-floor-cas", "0.85")
		for (i = 1; i <= 256; i++)
			row("1. single appends vs plain INSERT", i "", "append1-evstore", "append1-floor-insert", "")
		for (i = 1; i <= 256; i++)
			row("1. single appends vs bare CAS floor (primary keys only)", i "", "append1-evstore", "append1-floor-bare", "0.85")
		for (i = 1; i <= 256; i++)
			row("1. single appends, application role, vs CAS floor", i "", "append1-evstore-app", "append1-floor-cas", "")
		for (i = 1; i <= 256; i++)
			row("1. single appends, application role, vs bare CAS floor", i "", "append1-evstore-app", "append1-floor-bare", "0.85")
		for (i = 1; i <= 256; i++)
			row("2. 100-event batches vs batch floor", i "", "append100-evstore", "append100-floor", "0.85")
		for (i = 1; i <= 256; i++)
			row("2. 100-event batches vs bare batch floor", i "", "append100-evstore", "append100-floor-bare", "0.75")
		for (i = 1; i <= 256; i++)
			row("2. 100-event batches, application role, vs batch floor", i "", "append100-evstore-app", "append100-floor", "")
		for (i = 1; i <= 256; i++)
			row("2. 100-event batches, application role, vs bare batch floor", i "", "append100-evstore-app", "append100-floor-bare", "0.75")
		row("3. contention, evs_repo_update: saved/s", "4", "contend-ok", "", "")
		row("3. contention: conflicts/s", "4", "contend-conflicts", "", "")
		for (i = 1; i <= 256; i++)
			row("4. load 1,000 events, decoded, vs SELECT", i "", "load1000-evstore", "load1000-floor", "0.6")
		row("5. stream 1,000,000 events", "1", "stream1M-evstore", "", "")
		row("6. single appends, empty table", "1", "append1-at0-evstore", "", "")
		row("6. single appends, " xl " events in the table", "1", atx, "", "")
		cn = sprintf("%d,%03d,%03d", ce / 1000000, ce / 1000 % 1000, ce % 1000)
		row("7. catch-up, " cn " events through a subscription, vs its SQL", "1", cu "-evstore", cu "-floor", "0.8")
		row("8. live latency, polling: appends/s; commit to handler (absolute, no floor)", lt, "latency-poll", "", "p99<=50")
		row("8. live latency, notifications: appends/s; commit to handler (absolute, no floor)", lt, "latency-notify", "", "p99<=50")
		row("9. single appends with " sn " subscriptions vs without", sw, subs, "append1-subs0-evstore", "0.9")
		row("10. group commit on (pool 4) vs CAS floor", "1", "append1-group-on-evstore", "append1-group-floor-cas", "0.95")
		row("10. group commit on (pool 4) vs CAS floor", "4", "append1-group-on-evstore", "append1-group-floor-cas", "1.8")
		row("10. group commit on (pool 4) vs CAS floor", "16", "append1-group-on-evstore", "append1-group-floor-cas", "3")
		for (i = 1; i <= 256; i++)
			row("10. group commit off (pool 4) vs CAS floor", i "", "append1-group-off-evstore", "append1-group-floor-cas", "")
		for (i = 1; i <= 256; i++)
			row("10. group commit on vs off (pool 4)", i "", "append1-group-on-evstore", "append1-group-off-evstore", "")
		row("11. 16 threads on 4 hot streams: group commit on vs off", "16", "hot4-group-on-evstore", "hot4-group-off-evstore", "1")
		row("12. atomic 10-stream appends vs single appends (events/s)", "1", "many10-evstore", "many10-single-evstore", "5")
		row("13. evstore import of 1,000,000 events (events/s)", "1", "import1M-evstore", "", "")
		row("14. load a 100,000-event aggregate from a snapshot 10 back vs full replay (loads/s)", "1", "snapload100k-evstore", "snapload100k-replay-evstore", "50")
		row("15. scavenge of released events, steps of 10,000 (events/s, while 4 threads append)", "1", "scavenge-evstore", "", "")
		row("15. single appends while scavenging vs without", "4", "append1-scav-busy-evstore", "append1-scav-idle-evstore", "0.8")
	}' "$work/ratios" "$work/results"
}
targets() {
	awk -v atx="append1-at$existing_label-evstore" -v xl="$existing_label" \
		-v lt="$LAT_THREADS" -v li="$LAT_INTERVAL_MS" '
	$1 == "RATIO" { ratio[$2, $3, $4] = $5; runs[$2, $3, $4] = $6; next }
	{ eps[$2, $3] = $4; p50[$2, $3] = $5; p99[$2, $3] = $6; rss[$2, $3] = $7 }
	function share(l, t) {
		if (!((l "-early", t) in eps) || eps[l, t] + 0 <= 0) return "-"
		return sprintf("%.1f%%", 100 * eps[l "-early", t] / eps[l, t])
	}
	END {
		if ((("append1-group-on-evstore") SUBSEP "16") in p99 &&
		    (("append1-group-floor-cas") SUBSEP "16") in p99)
			printf "- p99 of single appends at 16 threads, group commit on (pool 4): %s ms, the CAS floor'"'"'s %s ms (target: no worse): %s\n",
				p99["append1-group-on-evstore", "16"], p99["append1-group-floor-cas", "16"],
				(p99["append1-group-on-evstore", "16"] + 0 <= p99["append1-group-floor-cas", "16"] + 0 ? "met" : "MISSED")
		if ((("append1-scav-busy-evstore") SUBSEP "4") in p99 &&
		    (("append1-scav-idle-evstore") SUBSEP "4") in p99) {
			a = p99["append1-scav-busy-evstore", "4"]; b = p99["append1-scav-idle-evstore", "4"]
			printf "- p99 of single appends at 4 threads while scavenging: %s ms, without: %s ms (target <= 2x): %s\n",
				a, b, (a + 0 <= 2 * b ? "met" : "MISSED")
		}
		if ((("scavenge-evstore") SUBSEP "1") in eps)
			printf "- scavenge in steps of 10,000 while 4 threads append: %s events/s (target >= 50,000): %s\n",
				eps["scavenge-evstore", "1"], (eps["scavenge-evstore", "1"] + 0 >= 50000 ? "met" : "MISSED")
		if ((("import1M-evstore") SUBSEP "1") in eps)
			printf "- evstore import of 1,000,000 events: %.1f s (%s events/s)\n",
				1000000 / eps["import1M-evstore", "1"], eps["import1M-evstore", "1"]
		if ((("stream1M-evstore") SUBSEP "1") in rss) {
			r = rss["stream1M-evstore", "1"]
			printf "- streaming 1,000,000 events: peak RSS %s MB (target < 64 MB): %s\n",
				r, (r + 0 < 64 ? "met" : "MISSED")
		}
		if ((atx, "append1-at0-evstore", "1") in ratio) {
			r = ratio[atx, "append1-at0-evstore", "1"]
			printf "- p99 of single appends with %s events over the empty table'"'"'s: %.2f (per run: %s; medians %s and %s ms) (target <= 1.5): %s\n",
				xl, r, runs[atx, "append1-at0-evstore", "1"],
				p99[atx, "1"], p99["append1-at0-evstore", "1"],
				(r + 0 <= 1.5 ? "met" : "MISSED")
		}
		if ((("latency-poll") SUBSEP lt) in p99 && (("latency-notify") SUBSEP lt) in p99) {
			a = p99["latency-poll", lt]; b = p99["latency-notify", lt]
			printf "- live latency, commit to handler, %s threads appending every %s ms each (absolute, no floor): p50 / p99 polling %s / %s ms, notifications %s / %s ms (target p99 <= 50 ms): %s; handlers that ran before their append returned (counted as 0 ms): %s polling, %s notifications\n",
				lt, li, p50["latency-poll", lt], a, p50["latency-notify", lt], b,
				(a + 0 <= 50 && b + 0 <= 50 ? "met" : "MISSED"),
				share("latency-poll", lt), share("latency-notify", lt)
		}
	}' "$work/ratios" "$work/results"
}

ratios >"$work/ratios"
{
	echo "Machine: $machine"
	echo "PostgreSQL: $pgversion"
	echo "Settings: $settings"
	echo "Runs: $RUNS per measurement ($RUNS1 for single appends at 1" \
		"thread, $CATCHUP_RUNS for the catch-up), $SECS s each (medians);" \
		"$EXISTING existing events for workload 6$([ "$QUICK" = 1 ] && echo '; BENCH_QUICK')"
	echo ""
	table
	echo ""
	targets
	if [ "$errors" = 0 ]; then
		echo "- no event lost, duplicated or reordered: every run's check passed"
	else
		echo "- $errors runs FAILED (see above)"
	fi
} >"$work/summary"
echo ""
cat "$work/results"
cat "$work/ratios"
echo ""
cat "$work/summary"

if [ "$QUICK" != 1 ] && [ "${BENCH_WRITE_RESULTS:-1}" = 1 ] &&
   [ -z "${BENCH_WORKLOADS:-}" ]; then
	md="$here/RESULTS.md"
	begin='<!-- BEGIN GENERATED by bench/run.sh: do not edit by hand -->'
	end='<!-- END GENERATED -->'
	{
		echo "$begin"
		echo ""
		echo "Generated $(date -u '+%Y-%m-%d %H:%M UTC') by \`make bench\`" \
			"(git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(
				git -C "$root" diff --quiet HEAD 2>/dev/null || echo ', with local changes'))," \
			"in $(elapsed)."
		echo ""
		sed -e 's/^Machine: /- Machine: /' -e 's/^PostgreSQL: /- PostgreSQL: /' \
		    -e 's/^Settings: /- Settings: /' -e 's/^Runs: /- Runs: /' \
		    "$work/summary"
		echo ""
		echo "Machine-readable (medians; RATIO: median of the per-run ratios):"
		echo ""
		echo '```'
		cat "$work/results" "$work/ratios"
		echo '```'
		echo ""
		echo "$end"
	} >"$work/generated"
	if [ -f "$md" ] && grep -qF "$begin" "$md" && grep -qF "$end" "$md"; then
		awk -v b="$begin" -v e="$end" -v f="$work/generated" '
		$0 == b { while ((getline l < f) > 0) print l; skip = 1; next }
		$0 == e { skip = 0; next }
		!skip' "$md" >"$work/RESULTS.md"
	else
		{ echo "# evstore benchmark results"; echo ""; cat "$work/generated"; } \
			>"$work/RESULTS.md"
	fi
	cp "$work/RESULTS.md" "$md"
	say "run.sh: bench/RESULTS.md updated"
fi

if [ "$errors" != 0 ]; then
	say "run.sh: $errors runs FAILED"
	exit 1
fi
