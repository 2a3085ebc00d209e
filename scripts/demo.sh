#!/bin/sh
# scripts/demo.sh: what `make demo` runs.
#
#   scripts/demo.sh [BUILD]      BUILD: the build directory (default build)
#
# 1. Makes sure the Debian packages are there (installs them when root,
#    else prints the apt-get line and stops): the build tools, and the
#    PostgreSQL server unless EVS_PG_DSN names a server to use.
# 2. Builds the evstore tool, examples/bank_account and
#    examples/projection.
# 3. Starts a throwaway PostgreSQL (scripts/with-pg.sh) unless EVS_PG_DSN
#    is set, runs `evstore migrate`, the example, `evstore read` on the
#    example's account, and examples/projection (a read model kept by a
#    transactional subscription, catching up, then following live
#    deposits); the throwaway server is then stopped and removed. EVS_PG_SCHEMA picks the schema (default evstore).
#
# Environment: EVS_PG_DSN, EVS_PG_SCHEMA, MAKE (default make), and those
# of scripts/deps.sh and scripts/with-pg.sh.
set -eu

say() { printf 'demo: %s\n' "$*"; }

# Runs a command and shows its output indented; keeps its exit status.
indented() {
	out=$(mktemp "${TMPDIR:-/tmp}/evstore-demo.XXXXXX")
	status=0
	"$@" >"$out" 2>&1 || status=$?
	sed 's/^./  &/' "$out"
	rm -f "$out"
	return "$status"
}

if [ "${1:-}" = --inside ]; then
	# Step 3, with a server: EVS_PG_DSN, or the one with-pg.sh made.
	build=$2
	: "${EVS_PG_DSN:=${EVS_TEST_PG_DSN:-}}"
	export EVS_PG_DSN
	evstore=$build/tools/evstore
	# A new account each run: the example may meet a server used before.
	account="account-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"

	say "creating the evstore tables: evstore migrate"
	indented "$evstore" migrate
	echo
	say "running examples/bank_account"
	echo
	indented "$build/examples/bank_account" --account "$account"
	echo
	say "the account's stream: evstore read $account --format table"
	echo
	indented "$evstore" read "$account" --format table
	echo
	say "running examples/projection: a read model kept by a subscription"
	echo
	indented "$build/examples/projection" --deposits 10
	echo
	exit 0
fi

build=${1:-build}
make=${MAKE:-make}

if [ -z "${EVS_PG_DSN:-}" ] && [ -z "${EVS_TEST_PG_DSN:-}" ]; then
	EVS_DEPS_EXTRA="${EVS_DEPS_EXTRA:-} postgresql"
	export EVS_DEPS_EXTRA
fi
sh scripts/deps.sh build

say "building the library, the evstore tool and the example"
$make -s --no-print-directory "$build/tools/evstore" \
	"$build/examples/bank_account" "$build/examples/projection"

if [ -n "${EVS_PG_DSN:-}" ]; then
	say "using the PostgreSQL server at EVS_PG_DSN"
	sh "$0" --inside "$build"
else
	say "starting a throwaway PostgreSQL server (stopped at the end)"
	sh scripts/with-pg.sh sh "$0" --inside "$build"
	say "the throwaway server is stopped and removed"
fi
say "done"
