#!/bin/sh
# SPDX-License-Identifier: MIT
# Copies the source tree as git sees it (tracked files plus new, not ignored
# ones; deleted files left out) to DIR, without build directories or .git,
# so packages are built from what the work tree holds now and the work tree
# itself is not written to.
#   packaging/stage-source.sh DIR
# With TLSGATE_FROM_HEAD=1 the last commit is used instead (git archive).
set -eu
top=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
dir=$1
mkdir -p "$dir"
if [ "${TLSGATE_FROM_HEAD:-0}" = 1 ]; then
        git -C "$top" archive --format=tar HEAD | tar -x -C "$dir"
else
        # shellcheck disable=SC2016 # $f is for the inner sh
        git -C "$top" ls-files -z --cached --others --exclude-standard |
                (cd "$top" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done; :' sh) |
                tar -C "$top" --null -T - -cf - | tar -x -C "$dir"
fi
