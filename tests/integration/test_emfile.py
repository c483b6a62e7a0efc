"""EMFILE on accept: logged, accepting pauses and resumes; no spinning, no exit."""
import os
import socket

import tg_daemon
from tg_checks import assert_allowed
from tg_clients import tcp_connect


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_emfile_pauses_and_resumes(start_proxy, backend, ctx_for, pki):
    # A small descriptor table: a dozen idle TCP connections fill it (plus
    # the descriptors valgrind keeps for itself when the daemon runs under it).
    nofile = 24 + tg_daemon.reserved_fds()
    proxy = start_proxy(backend, access=["--allow-cn", "client"],
                        prefix=["prlimit", "--nofile=%d:%d" % (nofile, nofile), "--"],
                        extra=["--connect-timeout", "30s"])
    idle = []
    try:
        for _ in range(40):
            idle.append(tcp_connect(proxy.addr))
        line = proxy.wait_log("cannot accept connections", timeout=5)
        assert "pausing" in line

        # While the table is full the loop must not spin on the readable
        # listening socket: well under a second of CPU in a second.
        before = cpu_seconds(proxy.pid)
        tg_daemon.wait_until(lambda: False, 1.0)
        assert cpu_seconds(proxy.pid) - before < 0.5, "tlsgate spins while out of descriptors"
        assert proxy.running()
        # Several pauses (250 ms) went by: one warning per episode, not per
        # retry. An episode can end early, when a descriptor comes back (an
        # accepted connection that failed at once), with "accepting
        # connections again"; the next one starts with a warning of its own.
        lines = proxy.log_lines()
        warnings = sum("cannot accept connections" in l for l in lines)
        resumes = sum("accepting connections again" in l for l in lines)
        assert resumes <= warnings <= resumes + 1, proxy.log()
    finally:
        for s in idle:
            s.close()

    # Descriptors come back once the idle clients are gone; the proxy serves again.
    ok = tg_daemon.wait_until(lambda: _echo_ok(proxy, backend, ctx_for(pki.client)), 10, 0.2)
    assert ok, "proxy did not serve again after EMFILE; log:\n" + proxy.log()
    assert proxy.running()
    assert proxy.find_log("accepting connections again")


def _echo_ok(proxy, backend, ctx):
    try:
        assert_allowed(proxy, backend, ctx)
        return True
    except (AssertionError, OSError, socket.error):
        return False
