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

# Two pytest-xdist workers, as under valgrind below: the tests spend much
# of their time waiting on timers (6.5 -> 3.5 min on 2 cores).
echo "== integration tests (ASan+UBSan build)"
TLSGATE_BIN="$PWD/build-asan/tlsgate" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
        -n 2 tests/integration

echo "== packages: Debian (lintian) and RPM (rpmlint), each running the unit tests at build time"
packaging/check-packages.sh

# The .deb built and checked just above is what the nspawn test installs,
# the way README.md's "Install and run under systemd" says: apt-get install
# (maintainer scripts, conffile, catalog trigger), example.conf copied and
# edited, the commands README.md shows, apt-get purge.
version=$(dpkg-parsechangelog -l debian/changelog -S Version)
deb=build-packages/deb/tlsgate_${version#*:}_$(dpkg --print-architecture).deb
if [ ! -f "$deb" ]; then
        echo "test.sh: packaging/check-packages.sh left no $deb" >&2
        exit 1
fi
echo "== real systemd: the .deb installed, socket activation, reload, drain, journal, ACME, purge under nspawn"
if [ "$(id -u)" -eq 0 ]; then
        /usr/bin/python3 tests/systemd/nspawn-e2e.py --deb "$deb"
else
        sudo /usr/bin/python3 tests/systemd/nspawn-e2e.py --deb "$deb"
fi

# The whole integration suite ran against the ASan+UBSan build above (the
# same code); the plain build runs what ASan cannot host (test_secrets.py
# and test_pkcs11.py's PIN test: their free() shim and ASan's allocator
# exclude each other, and valgrind's free() bypasses the shim) and, below,
# the whole suite again under valgrind.
echo "== integration tests that need the plain build"
TLSGATE_BIN="$PWD/build/tlsgate" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
        tests/integration/test_secrets.py \
        tests/integration/test_pkcs11.py::test_pin_is_wiped_before_it_is_freed

# valgrind is ~20-50x slower: the unit tests, and the whole integration suite
# with every tlsgate the fixtures start under memcheck (TLSGATE_VALGRIND=1,
# tests/integration/tg_daemon.py; same options there). Tests multiply their
# waits, upper bounds and daemon timeouts by tg_daemon.slow_factor() (3 under
# valgrind), never their lower bounds. One test skips: 10,000 idle mTLS
# connections (~8 min of handshakes under memcheck; it ran under ASan above).
# Two pytest-xdist workers (ports come from per-worker ranges): the tests
# spend much of their time waiting on timers, ~12 min on 2 cores. Any
# memcheck error or definite/indirect leak fails (exit 99, or the report the
# fixtures find next to the daemon's log).
echo "== valgrind memcheck: unit tests and the whole integration suite (plain build)"
vg="valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --num-callers=20 --suppressions=$PWD/tests/valgrind.supp"
meson test -C build --suite unit --print-errorlogs --timeout-multiplier 10 --wrapper "$vg"
TLSGATE_VALGRIND=1 TLSGATE_BIN="$PWD/build/tlsgate" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
        -n 2 tests/integration

echo "== benchmark, small setting: it runs, tlsgate's row is complete, every peer enforces mTLS (speed is not asserted)"
bench/run.sh --quick
