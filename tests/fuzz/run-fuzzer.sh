#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs one libFuzzer target for a fixed time over a copy of its seed corpus
# (the tree is never written) and fails on any crash, leak, sanitizer report
# or slow input. Crashing inputs of the last run are kept in ARTIFACT_DIR
# and printed in base64 so a CI log is enough to reproduce them:
#   base64 -d > crash && build-fuzz/tests/fuzz/fuzz-NAME crash
#
# usage: run-fuzzer.sh FUZZER CORPUS_DIR DICT ARTIFACT_DIR
# $TLSGATE_FUZZ_SECONDS: the budget (default 20).
set -eu

fuzzer=$1 corpus=$2 dict=$3 artifacts=$4
seconds=${TLSGATE_FUZZ_SECONDS:-20}

work=$(mktemp -d "${TMPDIR:-/tmp}/tlsgate-fuzz.XXXXXX")
# The targets' scratch files: on tmpfs if there is one, gone even after a crash.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
        scratch=$(mktemp -d /dev/shm/tlsgate-fuzz.XXXXXX)
else
        scratch=$(mktemp -d "$work/scratch.XXXXXX")
fi
export TLSGATE_FUZZ_SCRATCH="$scratch"
trap 'rm -rf "$work" "$scratch"' EXIT INT TERM
rm -rf "$artifacts"
mkdir -p "$work/corpus" "$artifacts"
cp "$corpus"/* "$work/corpus/"

export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1"

rc=0
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -dict="$dict" -artifact_prefix="$artifacts/" \
        "$work/corpus" || rc=$?

if [ "$rc" -ne 0 ]; then
        for f in "$artifacts"/*; do
                [ -f "$f" ] || continue
                echo "== $f (base64):"
                base64 "$f"
        done
        echo "$(basename "$fuzzer"): FAILED (exit $rc)" >&2
        exit 1
fi
echo "$(basename "$fuzzer"): ran clean for ${seconds}s, corpus $(ls "$work/corpus" | wc -l) inputs"
