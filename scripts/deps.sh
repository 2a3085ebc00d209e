#!/bin/sh
# scripts/deps.sh: make sure the packages evstore needs are installed.
#
#   scripts/deps.sh [GROUP...]    GROUP: build, test or all (the default)
#
#   build  compiler, make, pkg-config, json-c and libpq headers
#   test   build, plus Check, valgrind, g++ (C++ header test) and the
#          PostgreSQL 15 server binaries (integration tests)
#
# On Debian (dpkg present) missing packages are installed when run as root
# (apt-get update once, then apt-get install); otherwise the exact
# apt-get install line is printed and the script fails. Elsewhere it asks
# pkg-config and $PATH, and names what is missing. Silent when nothing is.
#
# Environment:
#   EVS_SKIP_DEPS=1     do nothing (you manage the packages yourself)
#   EVS_DEPS_EXTRA      more Debian packages to require (space-separated)
#   EVS_DEPS_DRY_RUN=1  print the apt-get commands instead of running them
#   EVS_TEST_PG_DSN     set: a server is given, local PostgreSQL not needed
#                       (non-Debian check only; Debian installs it anyway)
set -eu

[ "${EVS_SKIP_DEPS:-0}" = 1 ] && exit 0

want_build=0
want_test=0
[ $# -eq 0 ] && set -- all
for group in "$@"; do
	case $group in
	build) want_build=1 ;;
	test | all) want_build=1 want_test=1 ;;
	*)
		echo "deps.sh: unknown group '$group' (build, test, all)" >&2
		exit 2
		;;
	esac
done

say() { echo "deps.sh: $*" >&2; }

if command -v dpkg-query >/dev/null 2>&1; then
	installed() {
		[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = \
			"install ok installed" ]
	}

	pkgs=""
	if [ $want_build = 1 ]; then
		# build-essential, or the three parts of it we use.
		if ! installed build-essential &&
			! { installed gcc && installed make && installed libc6-dev; }; then
			pkgs="$pkgs build-essential"
		fi
		pkgs="$pkgs pkg-config libjson-c-dev libpq-dev"
	fi
	if [ $want_test = 1 ]; then
		# check pulls in libsubunit-dev; postgresql brings the version-15
		# server binaries in /usr/lib/postgresql/15/bin.
		# time: GNU time, which the CLI tests use to read a peak RSS.
		pkgs="$pkgs check valgrind g++ postgresql time"
	fi
	pkgs="$pkgs ${EVS_DEPS_EXTRA:-}"

	missing=""
	for p in $pkgs; do
		installed "$p" || missing="$missing $p"
	done
	[ -z "$missing" ] && exit 0

	cmd="apt-get install -y --no-install-recommends$missing"
	if [ "$(id -u)" != 0 ]; then
		say "missing Debian packages:$missing"
		say "install them as root (for example with sudo), then retry:"
		echo "  $cmd" >&2
		exit 1
	fi
	say "installing:$missing"
	if [ "${EVS_DEPS_DRY_RUN:-0}" = 1 ]; then
		echo "apt-get update"
		echo "DEBIAN_FRONTEND=noninteractive $cmd"
		exit 0
	fi
	apt-get update
	# shellcheck disable=SC2086 # $missing is a word list on purpose
	DEBIAN_FRONTEND=noninteractive apt-get install -y \
		--no-install-recommends $missing
	exit 0
fi

# Not Debian: ask pkg-config and $PATH, install nothing.
missing=""
need_cmd() {
	command -v "$1" >/dev/null 2>&1 || missing="$missing $1"
}
need_pc() {
	pkg-config --exists "$1" 2>/dev/null || missing="$missing $1.pc"
}
if [ $want_build = 1 ]; then
	need_cmd cc
	need_cmd make
	need_cmd pkg-config
	need_pc json-c
	need_pc libpq
fi
if [ $want_test = 1 ]; then
	need_pc check
	need_cmd valgrind
	need_cmd c++
	if [ -z "${EVS_TEST_PG_DSN:-}" ]; then
		bindir=$(pg_config --bindir 2>/dev/null || true)
		if [ ! -x "$bindir/initdb" ] && ! command -v initdb >/dev/null 2>&1
		then
			missing="$missing initdb(PostgreSQL-server)"
		fi
	fi
fi
for p in ${EVS_DEPS_EXTRA:-}; do
	need_cmd "$p"
done
[ -z "$missing" ] && exit 0
say "no dpkg here, so nothing is installed automatically; missing:"
say " $missing"
say "install them with your package manager (pkg-config must find the .pc"
say "files: set PKG_CONFIG_PATH if needed), or set EVS_SKIP_DEPS=1."
exit 1
