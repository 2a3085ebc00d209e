#!/bin/sh
# test/install/run.sh: build and run test/install/consumer.c against a
# staged install (`make install DESTDIR=STAGE`), using only what
# `pkg-config --cflags --libs evstore` prints. Run by `make check-install`.
#
#   test/install/run.sh STAGE PKGCONFIGDIR LIBDIR SONAME OUTDIR
#
# CC, CFLAGS, LDFLAGS and PKG_CONFIG are taken from the environment.
set -eu

if [ $# -ne 5 ]; then
	echo "usage: $0 STAGE PKGCONFIGDIR LIBDIR SONAME OUTDIR" >&2
	exit 2
fi
stage=$1 pcdir=$2 libdir=$3 soname=$4 out=$5
here=$(dirname "$0")
: "${CC:=cc}" "${PKG_CONFIG:=pkg-config}"

die() {
	echo "check-install: $*" >&2
	exit 1
}

# Find evstore.pc in the stage only, and map its /usr/local/... paths into
# the stage. json-c and libpq still come from the system's pkg-config path.
PKG_CONFIG_PATH=$stage$pcdir
PKG_CONFIG_SYSROOT_DIR=$stage
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR

"$PKG_CONFIG" --print-errors --exists evstore ||
	die "pkg-config cannot use $stage$pcdir/evstore.pc"
cflags=$("$PKG_CONFIG" --cflags evstore)
libs=$("$PKG_CONFIG" --libs evstore)
echo "check-install: pkg-config --cflags --libs evstore: $cflags $libs"
case " $libs " in
*" -L$stage$libdir "*) ;;
*) die "--libs does not point into the stage ($stage$libdir)" ;;
esac

mkdir -p "$out"
# shellcheck disable=SC2086 # flag lists split on purpose
"$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror ${CFLAGS:-} $cflags \
	-o "$out/consumer" "$here/consumer.c" ${LDFLAGS:-} $libs

# The consumer must want the SONAME, and find it in the stage.
readelf -d "$out/consumer" | grep -q "NEEDED.*\[$soname\]" ||
	die "consumer does not depend on $soname"
LD_LIBRARY_PATH=$stage$libdir ldd "$out/consumer" |
	grep -q "$soname => $stage$libdir/$soname" ||
	die "consumer does not load $stage$libdir/$soname"
LD_LIBRARY_PATH=$stage$libdir "$out/consumer" ||
	die "consumer failed (exit $?)"
