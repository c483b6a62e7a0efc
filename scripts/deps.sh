#!/bin/sh
# Installs what building and testing tlsgate, and building its Debian package
# (dpkg-dev, debhelper), needs on Debian 12, if missing.
# Idempotent and quiet when everything is already there.
set -eu

PACKAGES="gcc libc6-dev meson ninja-build pkg-config
libgnutls28-dev libsystemd-dev libcurl4-gnutls-dev libjson-c-dev
gnutls-bin openssl systemd pebble python3 python3-pytest python3-pytest-xdist python3-pytest-timeout
python3-cryptography
libasan8 libubsan1 clang libclang-rt-14-dev valgrind gettext groff-base man-db softhsm2
systemd-container debootstrap debian-archive-keyring
haproxy nginx libnginx-mod-stream hitch stunnel4 golang-go
dpkg-dev debhelper"

missing=""
for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "Installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
