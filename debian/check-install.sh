#!/bin/sh
# SPDX-License-Identifier: MIT
# Checks that "meson install" put into the package everything the source
# tree provides, so a file that drops out of the install (a unit, a man page,
# a translation, the journal catalog) fails the build instead of quietly
# missing from the package. Run from the top of the source tree:
#   sh debian/check-install.sh DESTDIR UNITDIR
set -eu
dest=$1
unitdir=$2
missing=0

need() {
        if [ -e "$dest/$1" ]; then
                echo "check-install: ok       /$1"
        else
                echo "check-install: MISSING  /$1" >&2
                missing=$((missing + 1))
        fi
}

need usr/bin/tlsgate
need usr/share/man/man8/tlsgate.8

# man/NAME.SECTION or man/NAME.SECTION.in -> manSECTION/NAME.SECTION
for f in man/*.[1-8] man/*.[1-8].in; do
        [ -e "$f" ] || continue
        page=$(basename "$f" .in)
        [ "$page" = tlsgate.8 ] && continue
        need "usr/share/man/man${page##*.}/$page"
done

# units/*.{service,socket}[.in] -> UNITDIR
for f in units/*.service units/*.socket units/*.service.in units/*.socket.in; do
        [ -e "$f" ] || continue
        need "${unitdir#/}/$(basename "$f" .in)"
done

# po/LINGUAS -> one message catalog per language
if [ -f po/LINGUAS ]; then
        # shellcheck disable=SC2013 # LINGUAS: languages separated by blanks
        for lang in $(sed 's/#.*//' po/LINGUAS); do
                need "usr/share/locale/$lang/LC_MESSAGES/tlsgate.mo"
        done
fi

# catalog/*.catalog[.in] -> systemd's journal catalog directory
for f in catalog/*.catalog catalog/*.catalog.in; do
        [ -e "$f" ] || continue
        need "usr/lib/systemd/catalog/$(basename "$f" .in)"
done

if [ "$missing" -gt 0 ]; then
        echo "check-install: $missing file(s) not installed by meson" >&2
        exit 1
fi
