#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the Debian binary package from the work tree in a temporary copy
# (dpkg-buildpackage writes next to the source directory and into debian/)
# and leaves tlsgate_*.deb, .changes and .buildinfo in OUTDIR.
#   packaging/build-deb.sh [OUTDIR]        default: build-packages/deb
# Extra dpkg-buildpackage options can be given in DPKG_BUILDPACKAGE_OPTS,
# e.g. DEB_BUILD_OPTIONS=nocheck DPKG_BUILDPACKAGE_OPTS=-Pnocheck.
# Needs dpkg-dev, debhelper and the Build-Depends of debian/control
# (dpkg-checkbuilddeps names any that are missing); not fakeroot
# (Rules-Requires-Root: no).
set -eu
top=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
out=${1:-$top/build-packages/deb}
for tool in dpkg-buildpackage dh; do
        command -v "$tool" >/dev/null || {
                echo "build-deb: $tool not found: install dpkg-dev and debhelper (sudo apt-get build-dep ./ installs them with the rest of debian/control's Build-Depends, or run scripts/deps.sh)" >&2
                exit 1
        }
done
version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)

work=$(mktemp -d "${TMPDIR:-/tmp}/tlsgate-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/tlsgate-$version
"$top/packaging/stage-source.sh" "$src"

# shellcheck disable=SC2086
(cd "$src" && dpkg-buildpackage -us -uc -b ${DPKG_BUILDPACKAGE_OPTS:-})

mkdir -p "$out"
rm -f "$out"/tlsgate*_"$version"_*
cp "$work"/*.deb "$work"/*.changes "$work"/*.buildinfo "$out"/
ls -1 "$out"/*"$version"*
