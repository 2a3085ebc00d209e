#!/bin/sh
# scripts/extern-names.sh HEADER...: print, sorted, the name of every
# function declared EVS_EXTERN(type) name(...) in the given headers. The
# name may be on the line after EVS_EXTERN(...). Preprocessor lines and
# comments are ignored.
set -eu
[ $# -gt 0 ] || { echo "usage: $0 HEADER..." >&2; exit 2; }
sed -e '/^[[:space:]]*#/d' "$@" | tr '\n\t' '  ' |
	sed -E 's:/\*([^*]|\*+[^*/])*\*+/: :g' |
	grep -oE 'EVS_EXTERN\([^)]*\)[^(;{}]*\(' |
	sed -E 's/[[:space:]]*\($//; s/.*[^A-Za-z0-9_]//' |
	LC_ALL=C sort -u
