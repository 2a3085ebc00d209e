#!/bin/sh
# scripts/with-pg.sh: run a command against a PostgreSQL server made for it.
#
#   scripts/with-pg.sh COMMAND [ARG...]
#
# With EVS_TEST_PG_DSN set, that server is used as it is. Otherwise a
# throwaway cluster is made from the local PostgreSQL binaries (as the
# "postgres" user when run as root) in a temporary directory, listening
# only on a Unix socket there; it is stopped and removed when the command
# ends, fails or is interrupted. With neither, it fails and says how to get
# a server.
#
# The command runs with EVS_TEST_PG_DSN set (a libpq conninfo string),
# EVS_TEST_PG_RESTART set to a script that restarts the throwaway server
# (not set for a given server), and PG_BIN naming the server binaries.
#
# Environment:
#   EVS_TEST_PG_DSN   use this server instead of a throwaway one
#   PG_BIN            PostgreSQL binaries (default: pg_config --bindir, else
#                     the newest /usr/lib/postgresql/*/bin)
#   EVS_PG_SETTINGS   extra "-c name=value" options for the throwaway server
set -eu

if [ $# -eq 0 ]; then
	echo "usage: $0 COMMAND [ARG...]" >&2
	exit 2
fi

find_bin() {
	if [ -n "${PG_BIN:-}" ]; then
		echo "$PG_BIN"
		return
	fi
	# shellcheck disable=SC2012 # version-numbered directories only
	for dir in "$(pg_config --bindir 2>/dev/null || true)" \
		$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
		if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
			echo "$dir"
			return
		fi
	done
}

PG_BIN=$(find_bin)
export PG_BIN

if [ -n "${EVS_TEST_PG_DSN:-}" ]; then
	echo "with-pg: using the server at EVS_TEST_PG_DSN" >&2
	exec "$@"
fi

if [ -z "$PG_BIN" ]; then
	cat >&2 <<'MSG'
with-pg: no PostgreSQL server to test against. Either
  - install the server binaries (Debian: apt-get install postgresql), or
  - start one with `docker compose up -d` and set
    EVS_TEST_PG_DSN='host=127.0.0.1 port=55432 user=evstore password=evstore dbname=evstore'
MSG
	exit 1
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/evstore-pg.XXXXXX")
chmod 755 "$dir"
as_pg=""
if [ "$(id -u)" = 0 ]; then
	if ! id postgres >/dev/null 2>&1; then
		echo "with-pg: running as root, but there is no 'postgres' user" \
			"to run the server as (PostgreSQL refuses root)" >&2
		rmdir "$dir"
		exit 1
	fi
	chown postgres "$dir"
	as_pg="runuser -u postgres --"
fi

pgctl() {
	$as_pg "$PG_BIN/pg_ctl" -D "$dir/data" "$@"
}

# shellcheck disable=SC2317 # called by the trap
cleanup() {
	status=$?
	trap - EXIT INT TERM HUP
	if [ -f "$dir/data/postmaster.pid" ]; then
		pgctl stop -m immediate -w >/dev/null 2>&1 || true
	fi
	rm -rf "$dir"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

$as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
	--locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 || {
	cat "$dir/initdb.log" >&2
	exit 1
}

# Every local connection is trusted, except for members of the group role
# evs_password_login (which test/integration/run.sh creates): they must
# give their password, so that the tests can see a wrong one refused.
$as_pg sh -c "cat >'$dir/data/pg_hba.conf'" <<'HBA'
local all +evs_password_login scram-sha-256
local all all trust
HBA

# Durable defaults (fsync, synchronous_commit) as a real server has them.
opts="-c listen_addresses='' -c unix_socket_directories='$dir' -c port=5433"
opts="$opts -c max_connections=100 -c shared_buffers=128MB"
opts="$opts -c log_min_messages=warning"
# Statement counts, for the tests that prove a call is one statement.
if [ -f "$PG_BIN/../lib/pg_stat_statements.so" ]; then
	opts="$opts -c shared_preload_libraries=pg_stat_statements"
fi
opts="$opts ${EVS_PG_SETTINGS:-}"
if ! pgctl start -w -t 60 -l "$dir/server.log" -o "$opts" >/dev/null; then
	echo "with-pg: the throwaway server did not start:" >&2
	cat "$dir/server.log" >&2
	exit 1
fi

EVS_TEST_PG_DSN="host=$dir port=5433 user=postgres dbname=postgres"
EVS_TEST_PG_RESTART="$dir/restart.sh"
cat >"$EVS_TEST_PG_RESTART" <<RESTART
#!/bin/sh
exec $as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -w -t 60 -l "$dir/server.log" -o "$opts" restart >/dev/null
RESTART
chmod 755 "$EVS_TEST_PG_RESTART"
export EVS_TEST_PG_DSN EVS_TEST_PG_RESTART
echo "with-pg: throwaway PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') in $dir" >&2

# The command runs in a process group of its own, so that an interrupt
# reaches all of it through us (a test runner may catch SIGINT and carry
# on), and the server is removed only once nothing uses it. Not exec: the
# trap must run when the command ends.
# shellcheck disable=SC2317 # called by the traps
stop_command() {
	kill -TERM "-$child" 2>/dev/null || true
	i=0
	while kill -0 "$child" 2>/dev/null && [ "$i" -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL "-$child" 2>/dev/null || true
	exit "$1"
}
set +e
setsid "$@" <&0 &
child=$!
trap 'stop_command 130' INT
trap 'stop_command 143' TERM
trap 'stop_command 129' HUP
trap 'stop_command 141' PIPE
wait "$child"
exit $?
