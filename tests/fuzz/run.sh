#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets with clang in build-fuzz (-Dfuzzing=true) and
# runs each for a fixed budget over a copy of its seed corpus: the meson
# test suite 'fuzz'. Fails on any crash, leak, UBSan report or slow input.
#
#   tests/fuzz/run.sh                       every target, 20 s each
#   TLSGATE_FUZZ_SECONDS=600 tests/fuzz/run.sh fuzz-acme   one target, longer
#
# Extra arguments go to meson test (test names, --num-processes ...). With
# the default budget the suite takes about 2 x 20 s per CPU plus the build.
set -eu
cd "$(dirname "$0")/../.."

if [ ! -f build-fuzz/build.ninja ]; then
        CC=clang meson setup build-fuzz -Dfuzzing=true -Dwerror=true >/dev/null
fi
meson compile -C build-fuzz fuzz-alpn-gate fuzz-acme fuzz-storage fuzz-config \
        fuzz-proxy-protocol fuzz-sni fuzz-http-request >/dev/null
meson test -C build-fuzz --no-rebuild --suite fuzz --print-errorlogs "$@"
