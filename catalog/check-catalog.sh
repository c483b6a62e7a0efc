#!/bin/sh
# SPDX-License-Identifier: MIT
# Validates tlsgate.catalog with systemd's own parser: compiles it into a
# catalog database under a scratch root (journalctl --update-catalog --root)
# and lists it back. Fails on any parser complaint, on a MESSAGE_ID of
# src/log.h without an entry, on an entry whose ID log.h does not define, on
# an entry missing Subject/Defined-By/Documentation, and on a @FIELD@ that
# tlsgate never logs.
# Usage: check-catalog.sh JOURNALCTL CATALOG LOG_H
set -eu

journalctl=$1 catalog=$2 log_h=$3
known_fields="TLSGATE_PEER TLSGATE_CONN_ID TLSGATE_CLIENT_CN TLSGATE_SNI TLSGATE_CERT_NAME"
status=0

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/lib/systemd/catalog"
cp "$catalog" "$root/usr/lib/systemd/catalog/"

if ! "$journalctl" --update-catalog --root="$root" >"$root/log" 2>&1 || [ -s "$root/log" ]; then
        echo "journalctl --update-catalog rejected $catalog:" >&2
        cat "$root/log" >&2
        exit 1
fi
"$journalctl" --root="$root" --list-catalog >"$root/list" 2>"$root/log" || { cat "$root/log" >&2; exit 1; }

ids=$(sed -n 's/^#define MESSAGE_ID_[A-Z_]* "\([0-9a-f]\{32\}\)".*/\1/p' "$log_h")
[ -n "$ids" ] || { echo "no MESSAGE_IDs found in $log_h" >&2; exit 1; }
for id in $ids; do
        if ! grep -q "^$id tlsgate: ." "$root/list"; then
                echo "MESSAGE_ID $id (src/log.h) has no catalog entry with a Subject" >&2
                status=1
        fi
done
for id in $(sed -n 's/^-- \([0-9a-f]\{32\}\)$/\1/p' "$catalog"); do
        echo "$ids" | grep -qx "$id" || { echo "catalog entry $id is not a MESSAGE_ID of src/log.h" >&2; status=1; }
done

# Each entry's header: the lines between "-- ID" and the first empty line.
awk '
/^-- [0-9a-f]+$/ { if (id != "") check(); id = $2; inhdr = 1; s = d = doc = 0; next }
inhdr && /^$/    { inhdr = 0; next }
inhdr && /^Subject: ./       { s = 1 }
inhdr && /^Defined-By: ./    { d = 1 }
inhdr && /^Documentation: ./ { doc = 1 }
function check() {
        if (!s || !d || !doc) { print "catalog entry " id " lacks Subject:, Defined-By: or Documentation:" > "/dev/stderr"; bad = 1 }
}
END { if (id != "") check(); exit bad }
' "$catalog" || status=1

for f in $(grep -v '^#' "$catalog" | grep -o '@[A-Za-z0-9_]*@' | tr -d @ | sort -u); do
        case " $known_fields " in
        *" $f "*) ;;
        *) echo "catalog uses @$f@, a field tlsgate does not log" >&2; status=1 ;;
        esac
done
exit $status
