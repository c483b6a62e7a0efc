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
dpkg-dev debhelper locales"

missing=""
for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# tests/integration/test_locale.py runs tlsgate under a German locale
# (decimal comma), compiled from the locales package's sources.
german_locale() {
        locale -a 2>/dev/null | grep -qix 'de_DE\.utf-\?8' && return 0
        echo "Generating the de_DE.UTF-8 locale" >&2
        if [ "$(id -u)" -eq 0 ]; then
                localedef -i de_DE -f UTF-8 de_DE.UTF-8
        else
                sudo localedef -i de_DE -f UTF-8 de_DE.UTF-8
        fi
}

[ -z "$missing" ] && { german_locale; exit 0; }

echo "Installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
german_locale
