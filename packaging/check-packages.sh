#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the Debian package and the RPM from the work tree, with the test
# suite (meson test) at build time, and checks them:
#   - lintian on the binary .changes and on the source package: no error and
#     no warning (info and pedantic tags are shown, not fatal);
#   - rpmlint with packaging/rpm/rpmlint.toml on the RPM and the spec: no
#     error and no warning;
#   - both packages hold the binary, the four units, both man pages, the
#     German translation and the journal catalog, and the .deb enables and
#     starts nothing on installation;
#   - meson.build, debian/changelog and the spec agree on the version.
# Exits non-zero when any of that fails. Packages land in build-packages/.
#
#   packaging/check-packages.sh [--no-tests]
#
# Installs what it needs on Debian 12 when missing (as root or with sudo):
# dpkg-dev, debhelper, lintian, rpm, rpmlint, file, elfutils and the
# Build-Depends of debian/control.
set -eu
cd "$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)"

tests=yes
[ "${1:-}" = --no-tests ] && tests=no

out=$PWD/build-packages
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }
step() { echo; echo "== $* ($(date +%T))"; }

# ---- what is needed ----------------------------------------------------------
profile=""
[ $tests = no ] && profile="-Pnocheck"
unmet_build_deps() { # names only, without versions or :any
        command -v dpkg-checkbuilddeps >/dev/null || return 0
        # shellcheck disable=SC2086
        dpkg-checkbuilddeps $profile debian/control 2>&1 |
                sed -n 's/.*Unmet build dependencies: //p' | sed 's/([^)]*)//g; s/:any//g'
}
install_missing() {
        [ -n "$(echo "$*" | tr -d ' ')" ] || return 0
        echo "Installing: $*" >&2
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq
        # shellcheck disable=SC2048,SC2086 # a list of package names
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $* >/dev/null
}
missing=""
for p in dpkg-dev debhelper lintian rpm rpmlint file elfutils; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
install_missing "$missing"
install_missing "$(unmet_build_deps)"

# ---- versions ------------------------------------------------------------------
step "versions"
v_meson=$(sed -n "s/^[[:space:]]*version[[:space:]]*:[[:space:]]*'\([^']*\)'.*/\1/p" meson.build | head -n1)
v_deb=$(dpkg-parsechangelog -S Version)
v_rpm=$(sed -n 's/^Version:[[:space:]]*//p' packaging/rpm/tlsgate.spec)
if [ "$v_meson" = "$v_deb" ] && [ "$v_meson" = "$v_rpm" ]; then
        pass "meson.build, debian/changelog and tlsgate.spec say $v_meson"
else
        fail "versions differ: meson.build $v_meson, debian/changelog $v_deb, tlsgate.spec $v_rpm"
fi

# What both packages must hold (the units' directory and man page suffix
# differ; see below).
expect_common="usr/bin/tlsgate
usr/share/locale/de/LC_MESSAGES/tlsgate.mo
usr/lib/systemd/catalog/tlsgate.catalog"
units="tlsgate.socket tlsgate.service tlsgate@.socket tlsgate@.service"
mans="man5/tlsgate.conf.5 man8/tlsgate.8"

# expect LISTING UNITDIR: every expected path is in LISTING (one per line)
expect() {
        listing=$1 unitdir=$2
        for f in $expect_common; do
                grep -qx "/$f" "$listing" || fail "$3 lacks /$f"
        done
        for u in $units; do
                grep -qx "$unitdir/$u" "$listing" || fail "$3 lacks $unitdir/$u"
        done
        for m in $mans; do
                grep -qx "/usr/share/man/$m.gz" "$listing" || fail "$3 lacks /usr/share/man/$m.gz"
        done
}

# ---- Debian ----------------------------------------------------------------------
step "Debian package (dpkg-buildpackage -b, tests: $tests)"
start=$(date +%s)
rm -rf "$out/deb"
mkdir -p "$out/deb"
if DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-} $([ $tests = no ] && echo nocheck)" \
        DPKG_BUILDPACKAGE_OPTS="$profile" packaging/build-deb.sh "$out/deb" >"$out/deb/build.log" 2>&1; then
        pass "built in $(( $(date +%s) - start ))s (log: $out/deb/build.log)"
        deb=$(ls "$out"/deb/tlsgate_*.deb)
        changes=$(ls "$out"/deb/tlsgate_*.changes)

        grep -E '^ *[0-9]+/[0-9]+ |^(Ok|Fail|Skipped|Timeout):' "$out/deb/build.log" | sed 's/^/   /' || :

        dpkg-deb --fsys-tarfile "$deb" | tar -t | sed 's|^\./|/|; s|/$||' >"$out/deb/contents"
        # systemd.pc decides: /lib/systemd/system on Debian 12, /usr/lib later.
        unitdir=$(pkg-config --variable=systemdsystemunitdir systemd)
        expect "$out/deb/contents" "$unitdir" "the .deb"
        pass "the .deb holds $(wc -l <"$out/deb/contents") paths (list: $out/deb/contents)"

        ctl=$(mktemp -d)
        dpkg-deb -e "$deb" "$ctl"
        if grep -q 'was-enabled defaults to true\|deb-systemd-invoke start' "$ctl/postinst" 2>/dev/null; then
                fail "the .deb's postinst enables or starts units"
        else
                pass "postinst enables and starts no unit"
        fi
        rm -rf "$ctl"

        step "lintian (binary)"
        if lintian --fail-on error,warning -I --pedantic "$changes"; then
                pass "lintian: no error, no warning on $(basename "$changes")"
        else
                fail "lintian on $(basename "$changes")"
        fi

        step "lintian (source)"
        src=$(mktemp -d)
        packaging/stage-source.sh "$src/tlsgate-$v_deb"
        if (cd "$src" && dpkg-source -b "tlsgate-$v_deb" >/dev/null) &&
                lintian --fail-on error,warning -I --pedantic "$src/tlsgate_$v_deb.dsc"; then
                pass "lintian: no error, no warning on tlsgate_$v_deb.dsc"
        else
                fail "lintian on the source package"
        fi
        rm -rf "$src"
else
        fail "Debian package build; the end of its log:"
        tail -n 60 "$out/deb/build.log" >&2
fi

# ---- RPM ---------------------------------------------------------------------------
step "RPM (rpmbuild -bb, tests: $tests)"
start=$(date +%s)
set --
[ $tests = no ] && set -- --without check
rm -rf "$out/rpm"
mkdir -p "$out/rpm"
if packaging/build-rpm.sh "$out/rpm" "$@" >"$out/rpm/build.log" 2>&1; then
        pass "built in $(( $(date +%s) - start ))s (log: $out/rpm/build.log)"
        # (tlsgate-debuginfo-* and tlsgate-debugsource-* do not match)
        for rpmfile in "$out"/rpm/tlsgate-"$v_rpm"-*.rpm; do :; done

        grep -E '^ *[0-9]+/[0-9]+ |^(Ok|Fail|Skipped|Timeout):' "$out/rpm/build.log" | sed 's/^/   /' || :

        rpm -qlp "$rpmfile" >"$out/rpm/contents"
        expect "$out/rpm/contents" /usr/lib/systemd/system "the RPM"
        pass "the RPM holds $(wc -l <"$out/rpm/contents") paths (list: $out/rpm/contents)"

        step "rpmlint"
        # The -debuginfo and -debugsource packages are left out: their tags
        # (no documentation, no binary, relative build-id links) are what
        # debug packages are.
        if lint=$(rpmlint -c packaging/rpm/rpmlint.toml "$rpmfile" packaging/rpm/tlsgate.spec 2>&1); then
                rc=0
        else
                rc=$?
        fi
        printf '%s\n' "$lint"
        if [ $rc -eq 0 ] && printf '%s\n' "$lint" | grep -q ' 0 errors, 0 warnings'; then
                pass "rpmlint: no error, no warning"
        else
                fail "rpmlint (exit status $rc)"
        fi
else
        fail "RPM build; the end of its log:"
        tail -n 60 "$out/rpm/build.log" >&2
fi

echo
if [ $failures -gt 0 ]; then
        echo "check-packages: $failures failure(s)" >&2
        exit 1
fi
echo "check-packages: all good"
