#!/bin/sh
# Builds tlsgate twice (plain with -Werror, and with ASan+UBSan): C unit tests
# on both (and under valgrind), the whole integration suite (real binary,
# real TLS clients, pytest) on the ASan+UBSan build, the rest as noted below.
set -eu
cd "$(dirname "$0")/.."

scripts/deps.sh

build() { # dir, extra meson args...
        dir=$1; shift
        if [ ! -f "$dir/build.ninja" ]; then
                meson setup "$dir" -Dwerror=true "$@" >/dev/null
        fi
        ninja -C "$dir" >/dev/null
}

build build
build build-asan -Db_sanitize=address,undefined -Db_lundef=false

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0

echo "== unit tests and checks of units, man pages, translations, catalog (plain build)"
meson test -C build --print-errorlogs
echo "== unit tests (ASan+UBSan build)"
meson test -C build-asan --print-errorlogs --suite unit

echo "== fuzzers (libFuzzer + ASan/UBSan, a fixed budget each)"
tests/fuzz/run.sh

echo "== integration tests (ASan+UBSan build)"
TLSGATE_BIN="$PWD/build-asan/tlsgate" /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration
echo "== real systemd: socket activation, reload, drain, journal, ACME under nspawn"
if [ "$(id -u)" -eq 0 ]; then
        /usr/bin/python3 tests/systemd/nspawn-e2e.py
else
        sudo /usr/bin/python3 tests/systemd/nspawn-e2e.py
fi

# The whole integration suite ran against the ASan+UBSan build above (the
# same code); the plain build runs what ASan cannot host (test_secrets.py:
# its free() shim and ASan's allocator exclude each other) and, below, the
# valgrind subset. Running the whole suite a second time took 6.5 minutes
# of a CI budget that must stay well under 30.
echo "== integration tests that need the plain build"
TLSGATE_BIN="$PWD/build/tlsgate" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
        tests/integration/test_secrets.py

# valgrind is ~20-50x slower: the unit tests, and the integration subset that
# covers the data path, handshakes and authorization, reload, ACME issuance and
# renewal against Pebble, timeouts and shutdown, connection faults (~6 min).
# Left out: tests asserting sub-second timings valgrind cannot meet. Any
# memcheck error or definite/indirect leak fails (exit 99, or the report the
# fixtures find next to the daemon's log).
echo "== valgrind memcheck: unit tests and an integration subset (plain build)"
vg="valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --num-callers=40 --suppressions=$PWD/tests/valgrind.supp"
meson test -C build --suite unit --print-errorlogs --timeout-multiplier 10 --wrapper "$vg"
TLSGATE_VALGRIND=1 TLSGATE_BIN="$PWD/build/tlsgate" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
        tests/integration/test_data.py tests/integration/test_authz.py \
        tests/integration/test_reload.py tests/integration/test_lifecycle.py \
        tests/integration/test_acme.py tests/integration/test_faults_conn.py \
        -k "not 200_concurrent and not sigterm_drains_inflight and not first_issuance and \
not backoff_schedule and not ca_down and not ten_thousand and not slow_loris"

echo "== packages: Debian (lintian) and RPM (rpmlint), each running the unit tests at build time"
packaging/check-packages.sh

echo "== benchmark, small setting: it runs, tlsgate's row is complete, every peer enforces mTLS (speed is not asserted)"
bench/run.sh --quick
