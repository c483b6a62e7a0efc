#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs debian/tlsgate.postrm purge against a scratch root (DPKG_ROOT) that
# looks like a machine where the administrator enabled instances of the
# templated units and tlsgate obtained certificates, and checks that purge
# removes the links that would dangle and the dynamic user's state, keeps
# what the administrator wrote, and says both.
#
# usage: check-postrm.sh [SOURCE_TREE]
set -eu

top=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
postrm=$top/debian/tlsgate.postrm
[ -f "$top/debian/control" ] || { echo "check-postrm: no debian/ in $top"; exit 77; }
[ -f "$postrm" ] || { echo "check-postrm: $postrm is missing" >&2; exit 1; }

root=$(mktemp -d "${TMPDIR:-/tmp}/tlsgate-postrm.XXXXXX")
trap 'rm -rf "$root"' EXIT
failures=0
fail() { echo "check-postrm: FAIL: $*" >&2; failures=$((failures + 1)); }

S=$root/etc/systemd/system
mkdir -p "$S/sockets.target.wants" "$S/multi-user.target.wants" "$S/tlsgate@web.service.d" \
        "$root/etc/tlsgate/private" "$root/var/lib/private/tlsgate/web/certmagic" \
        "$root/var/lib/tlsgate"
ln -s /lib/systemd/system/tlsgate@.socket "$S/sockets.target.wants/tlsgate@web.socket"
ln -s /lib/systemd/system/tlsgate@.socket "$S/sockets.target.wants/tlsgate@api.socket"
ln -s /lib/systemd/system/tlsgate.socket "$S/sockets.target.wants/tlsgate.socket"
ln -s /lib/systemd/system/ssh.service "$S/multi-user.target.wants/ssh.service"
ln -s /lib/systemd/system/tlsgate-other.socket "$S/sockets.target.wants/tlsgate-other.socket"
echo "[Service]" >"$S/tlsgate@web.service.d/override.conf"
echo "target = 127.0.0.1:8080" >"$root/etc/tlsgate/web.conf"
echo "key" >"$root/etc/tlsgate/private/web.key"
echo "account key" >"$root/var/lib/private/tlsgate/web/certmagic/acme.key"
ln -s ../private/tlsgate/web "$root/var/lib/tlsgate/web"

# Not purge: nothing is touched.
DPKG_ROOT=$root sh "$postrm" remove >"$root.out" 2>&1 || fail "postrm remove failed: $(cat "$root.out")"
[ -L "$S/sockets.target.wants/tlsgate@web.socket" ] || fail "remove disabled tlsgate@web.socket"
[ -e "$root/var/lib/private/tlsgate/web/certmagic/acme.key" ] || fail "remove deleted the state"

if ! DPKG_ROOT=$root sh "$postrm" purge >"$root.out" 2>&1; then
        fail "postrm purge failed: $(cat "$root.out")"
fi
out=$(cat "$root.out")
rm -f "$root.out"

for l in sockets.target.wants/tlsgate@web.socket sockets.target.wants/tlsgate@api.socket \
         sockets.target.wants/tlsgate.socket; do
        { [ -L "$S/$l" ] || [ -e "$S/$l" ]; } && fail "purge left $l"
        case $out in *"${l#*/}"*) ;; *) fail "purge did not say it disabled ${l#*/}: $out" ;; esac
done
[ -L "$S/multi-user.target.wants/ssh.service" ] || fail "purge removed another package's link"
[ -L "$S/sockets.target.wants/tlsgate-other.socket" ] || fail "purge removed tlsgate-other.socket"
for d in var/lib/private/tlsgate var/lib/tlsgate; do
        [ -e "$root/$d" ] && fail "purge left /$d"
done
[ -d "$root/var/lib/private" ] || fail "purge removed /var/lib/private itself"
for f in etc/tlsgate/web.conf etc/tlsgate/private/web.key etc/systemd/system/tlsgate@web.service.d/override.conf; do
        [ -e "$root/$f" ] || fail "purge removed /$f, which the administrator wrote"
done
for f in /etc/tlsgate/web.conf /etc/tlsgate/private /etc/systemd/system/tlsgate@web.service.d; do
        case $out in *"$f"*) ;; *) fail "purge did not say it kept $f: $out" ;; esac
done
case $out in *"$root"*) fail "purge named paths with DPKG_ROOT in them: $out" ;; esac

echo "$out"
[ $failures -eq 0 ] || exit 1
echo "check-postrm: ok"
