#!/bin/sh
# SPDX-License-Identifier: MIT
# Checks that the translations keep up with the sources:
#  1. every src/*.c that marks strings with _() or N_() is listed in POTFILES;
#  2. each po/LANG.po named in LINGUAS translates every message the sources
#     mark today (none missing, none fuzzy or empty), with matching formats.
# Usage: check-po.sh SOURCE_ROOT [XGETTEXT_ARGS...]
set -eu

root=$1; shift
po="$root/po"
status=0

for f in "$root"/src/*.c; do
        rel=${f#"$root"/}
        if grep -q -E '(^|[^A-Za-z0-9_])N?_\("' "$f" && ! grep -qx "$rel" "$po/POTFILES"; then
                echo "$rel marks strings for translation but is not listed in po/POTFILES" >&2
                status=1
        fi
done
while read -r rel; do
        [ -f "$root/$rel" ] || { echo "po/POTFILES lists $rel, which does not exist" >&2; status=1; }
done < "$po/POTFILES"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
xgettext --package-name=tlsgate -D "$root" -f "$po/POTFILES" -k_ -o "$tmp/tlsgate.pot" "$@"

for lang in $(sed 's/#.*//' "$po/LINGUAS"); do
        # msgcmp counts untranslated and fuzzy entries of LANG.po as missing.
        if ! msgcmp "$po/$lang.po" "$tmp/tlsgate.pot"; then
                echo "po/$lang.po does not translate every message; run ninja tlsgate-update-po and translate" >&2
                status=1
        fi
        if ! msgfmt --check --statistics -o /dev/null "$po/$lang.po"; then
                status=1
        fi
done
exit $status
