#!/bin/sh
# SPDX-License-Identifier: MIT
# Static checks of tlsgate's systemd units, without a running systemd:
#   - `systemd-analyze verify` prints nothing on every unit (templates are
#     checked as instance "web");
#   - `systemd-analyze security --offline=yes` rates every service at an
#     exposure of at most $MAX_EXPOSURE (default 1.1, what README.md promises).
#
# usage: check-units.sh [TLSGATE_BINARY [UNIT_FILE...]]
#   Without unit files it checks units/ of the source tree (services
#   generated from their .in files); without a binary, build/tlsgate.
#   verify insists that Exec*= lines name an existing executable, so the
#   tlsgate binary of every Exec*= line is replaced by TLSGATE_BINARY in a
#   scratch copy. The man pages named in Documentation= are looked up in the
#   source tree's man/ (when `man` is installed; otherwise --man=no).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
MAX_EXPOSURE=${MAX_EXPOSURE:-1.1}

bin=${1:-$top/build/tlsgate}
[ $# -gt 0 ] && shift
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
[ -x "$bin" ] || { echo "check-units: $bin is not an executable (build first)" >&2; exit 2; }
if ! command -v systemd-analyze >/dev/null; then
        echo "check-units: systemd-analyze not found" >&2
        exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ $# -eq 0 ]; then
        set -- "$top"/units/*.socket "$top"/units/*.service.in
fi
for f in "$@"; do
        name=$(basename "$f" .in)
        # ExecXxx=[prefix chars]/any/dir/tlsgate ARGS -> ExecXxx=...$bin ARGS
        sed -e "s|^\(Exec[A-Za-z]*=[-@:+!]*\)[^ ]*/tlsgate |\1$bin |" \
            -e "s|^\(Exec[A-Za-z]*=[-@:+!]*\)[^ ]*/tlsgate\$|\1$bin|" \
            -e "s|@bindir@/tlsgate|$bin|g" "$f" >"$tmp/$name"
done

# Documentation=man:PAGE(N) must name pages of man/: a scratch MANPATH.
man_check=--man=no
if command -v man >/dev/null; then
        for page in "$top"/man/*.[1-9]; do
                [ -f "$page" ] || continue
                mkdir -p "$tmp/man/man${page##*.}"
                cp "$page" "$tmp/man/man${page##*.}/"
        done
        if [ -d "$tmp/man" ]; then
                man_check=--man=yes
                MANPATH=$tmp/man
                export MANPATH
        fi
fi

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
instance() { # tlsgate@.service -> tlsgate@web.service
        case $1 in *@.*) echo "${1%@.*}@web.${1##*@.}" ;; *) echo "$1" ;; esac
}

cd "$tmp"
for u in *.socket *.service; do
        [ -f "$u" ] || continue
        inst=$(instance "$u")
        if out=$(SYSTEMD_LOG_COLOR=0 systemd-analyze verify $man_check "./$inst" 2>&1) &&
                [ -z "$out" ]; then
                echo "PASS: systemd-analyze verify $man_check $inst: no output"
        else
                fail "systemd-analyze verify $inst:"
                printf '%s\n' "$out" | sed 's/^/    /'
        fi
done
for u in *.service; do
        [ -f "$u" ] || continue
        inst=$(instance "$u")
        out=$(SYSTEMD_COLORS=0 systemd-analyze security --offline=yes --no-pager "./$inst" 2>&1) ||
                true
        level=$(printf '%s\n' "$out" |
                sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
        if [ -z "$level" ]; then
                fail "systemd-analyze security $inst gave no exposure level:"
                printf '%s\n' "$out" | sed 's/^/    /'
        elif awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l <= m) }'; then
                echo "PASS: systemd-analyze security --offline=yes $inst:" \
                        "exposure $level <= $MAX_EXPOSURE"
        else
                fail "systemd-analyze security --offline=yes $inst: exposure $level > $MAX_EXPOSURE"
                printf '%s\n' "$out" | grep '✗' | sed 's/^/    /'
        fi
done
[ $fails -eq 0 ] || { echo "check-units: $fails failure(s)"; exit 1; }
