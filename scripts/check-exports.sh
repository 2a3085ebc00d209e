#!/bin/sh
# scripts/check-exports.sh LIB.so LIB.a SONAME HEADER...: fail unless the
# shared library
#   - has SONAME as its SONAME;
#   - exports only evs_ names (never an evs__ internal helper), every one
#     of them declared EVS_EXTERN in a public header, and every such
#     declaration defined and exported;
#   - never calls exit(), abort() or assert() (a library returns errors);
# and unless every global the static library defines starts with evs_ (it
# cannot hide its internal helpers, so they must not clash with yours).
# Run by `make check-exports`.
set -eu
[ $# -ge 4 ] || {
	echo "usage: $0 LIB.so LIB.a SONAME HEADER..." >&2
	exit 2
}
so=$1 ar=$2 soname=$3
shift 3
here=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
words() { tr "\n" " " <"$tmp/x"; }
bad() {
	echo "check-exports: $*" >&2
	fail=1
}

got=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p')
[ "$got" = "$soname" ] || bad "SONAME is '$got', not '$soname'"

# Defined dynamic symbols, without @@VERSION; type A is the version node.
nm -D --defined-only --format=posix "$so" |
	awk '$2 != "A" { sub(/@.*/, "", $1); print $1 }' |
	LC_ALL=C sort -u >"$tmp/exported"
sh "$here/extern-names.sh" "$@" >"$tmp/declared"

grep -v '^evs_' "$tmp/exported" >"$tmp/x" &&
	bad "exported without the evs_ prefix:" "$(words)"
grep '^evs__' "$tmp/exported" >"$tmp/x" &&
	bad "internal evs__ helpers exported:" "$(words)"
LC_ALL=C comm -23 "$tmp/declared" "$tmp/exported" >"$tmp/x"
[ -s "$tmp/x" ] &&
	bad "declared EVS_EXTERN but not exported:" "$(words)"
LC_ALL=C comm -13 "$tmp/declared" "$tmp/exported" | grep '^evs_[^_]' \
	>"$tmp/x" && bad "exported but in no public header:" "$(words)"

# A library must not end the process: no exit family, no abort, no assert().
nm -D --undefined-only --format=posix "$so" |
	awk '{ sub(/@.*/, "", $1); print $1 }' |
	grep -E '^(exit|_exit|_Exit|quick_exit|abort|__assert_fail|err|errx|verr|verrx)$' \
	>"$tmp/x" && bad "calls what ends the process:" "$(words)"

nm -g --defined-only --format=posix "$ar" |
	awk 'NF >= 3 && $1 !~ /[\]:]$/ { print $1 }' | grep -v '^evs_' \
	>"$tmp/x" && bad "$(basename "$ar") defines globals without evs_:" \
	"$(words)"

if [ $fail = 0 ]; then
	echo "check-exports: $(wc -l <"$tmp/exported") evs_ symbols, all declared;" \
		"SONAME $soname; no exit/abort; the .a defines only evs_ globals"
fi
exit $fail
