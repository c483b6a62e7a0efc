#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the RPM from the work tree: makes tlsgate-VERSION.tar.gz from a copy
# of the tree (see stage-source.sh), runs rpmbuild -bb with
# packaging/rpm/tlsgate.spec in a temporary _topdir and leaves the binary
# RPMs in OUTDIR.
#   packaging/build-rpm.sh [OUTDIR [RPMBUILD OPTIONS...]]
#                              default OUTDIR: build-packages/rpm
# e.g. packaging/build-rpm.sh "" --without check
#
# On an rpm-based host BuildRequires are checked as usual. On Debian
# (apt-get install rpm file elfutils) rpmbuild cannot see dpkg's packages, so
# --nodeps is passed and the build needs the Debian equivalents installed:
# the Build-Depends of debian/control, and "file", which rpm's strip step
# uses to find binaries, and elfutils, whose eu-strip makes the debuginfo.
set -eu
top=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
spec=$top/packaging/rpm/tlsgate.spec
out=${1:-$top/build-packages/rpm}
[ $# -gt 0 ] && shift

name=tlsgate
version=$(sed -n 's/^Version:[[:space:]]*//p' "$spec")

work=$(mktemp -d "${TMPDIR:-/tmp}/tlsgate-rpm.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/SOURCES" "$work/stage"
"$top/packaging/stage-source.sh" "$work/stage/$name-$version"
tar -C "$work/stage" --owner=0 --group=0 --numeric-owner --sort=name \
        -czf "$work/SOURCES/$name-$version.tar.gz" "$name-$version"

if rpm -q rpm >/dev/null 2>&1; then
        rpmbuild -bb --define "_topdir $work" "$@" "$spec"
else
        # Debian's rpm: BuildRequires cannot be checked against dpkg's
        # database (--nodeps); rpm/debian-host.macros stands in for Fedora's
        # redhat-rpm-config, and dpkg-buildflags for its hardened flags.
        eval "$(DEB_BUILD_MAINT_OPTIONS="hardening=+all reproducible=-all" dpkg-buildflags --export=sh)"
        rpmbuild -bb --nodeps --load "$top/packaging/rpm/debian-host.macros" \
                --define "_topdir $work" "$@" "$spec"
fi

mkdir -p "$out"
rm -f "$out/$name"-*.rpm
find "$work/RPMS" -name '*.rpm' -exec cp {} "$out/" \;
ls -1 "$out"/*.rpm
