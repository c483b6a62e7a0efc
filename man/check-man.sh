#!/bin/sh
# SPDX-License-Identifier: MIT
# Fails when groff warns about a page (groff -man -ww -z must print nothing)
# or when man(1), where installed, complains while rendering it.
# Usage: check-man.sh GROFF PAGE...
set -eu

groff=$1; shift
status=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

for page in "$@"; do
        if ! "$groff" -man -ww -z "$page" >"$out" 2>&1 || [ -s "$out" ]; then
                echo "groff -man -ww -z $page:" >&2
                cat "$out" >&2
                status=1
        fi
        if command -v man >/dev/null 2>&1; then
                if ! LC_ALL=C.UTF-8 MANWIDTH=80 MAN_KEEP_FORMATTING=0 \
                        man --warnings -l "$page" 2>"$out" >/dev/null || [ -s "$out" ]; then
                        echo "man --warnings -l $page:" >&2
                        cat "$out" >&2
                        status=1
                fi
        fi
done
exit $status
