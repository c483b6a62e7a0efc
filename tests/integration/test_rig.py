"""The test rig itself: a tlsgate that crashes, ends otherwise than its test
expects or hangs at shutdown fails the test. Each case drives the real
binary through the fixtures' own code (conftest.ProxyFactory,
tg_daemon.Tlsgate)."""
import os
import signal
import socket

import pytest

import tg_daemon
from conftest import ProxyFactory
from tg_clients import client_context


def teardown_failure(factory):
    """What factory.cleanup() fails the test with, or None."""
    try:
        factory.cleanup()
    except pytest.fail.Exception as e:
        return str(e)
    return None


@pytest.fixture
def factory(tlsgate_bin, pki, tmp_path, request):
    """A ProxyFactory of the test's own, whose teardown the test calls and
    examines; the finalizer only makes sure nothing is left running."""
    f = ProxyFactory(tlsgate_bin, pki, str(tmp_path), request)
    yield f
    for t in f.started:
        t.stop(sig=signal.SIGKILL)
        t.cleanup()


def test_drained_shutdown_passes(factory, backend):
    t = factory.start(backend)
    assert teardown_failure(factory) is None
    assert t.proc.returncode == 0


def test_crash_fails_the_test(factory, backend):
    """A daemon that dies of a signal fails its test in teardown, with its
    exit and the tail of its log. SIGABRT (what abort() and a failed
    assertion end with) stands in for a crash: ASan leaves it alone, and
    valgrind delivers it, where a SIGSEGV sent with kill() may never arrive."""
    t = factory.start(backend, prefix=["prlimit", "--core=0", "--"])  # no core file
    os.kill(t.pid, signal.SIGABRT)
    assert t.wait(10 * tg_daemon.slow_factor()) == -signal.SIGABRT
    msg = teardown_failure(factory)
    assert msg is not None, "a tlsgate killed by SIGABRT passed teardown"
    assert "ended: killed by SIGABRT, where the test expects exit 0" in msg, msg
    assert "listening on %s" % t.listen in msg, "no log tail in: " + msg


def test_forced_shutdown_fails_unless_expected(factory, backend, pki):
    """A connection left open makes the teardown's SIGTERM end in a forced
    shutdown (exit 1): a failure where the test expects a drained one, and
    none where it says so."""
    held = []
    try:
        for expect in (0, 1):
            t = factory.start(backend, extra=["--shutdown-timeout", "1s"], expect_exit=expect)
            s = client_context(pki.ca.cert_path, pki.client).wrap_socket(
                socket.create_connection(t.addr, timeout=10),
                server_hostname="localhost")
            s.sendall(b"x")
            assert s.recv(1) == b"x"
            held.append(s)
        first, second = factory.started
        msg = teardown_failure(factory)
        assert first.proc.returncode == 1 and second.proc.returncode == 1
        assert msg is not None, "a forced shutdown passed where exit 0 was expected"
        assert "ended: exit 1, where the test expects exit 0" in msg, msg
        assert "pid %d," % first.pid in msg and "pid %d," % second.pid not in msg, msg
        assert "--shutdown-timeout reached" in msg, "no log tail in: " + msg
    finally:
        for s in held:
            s.close()


def test_hang_at_shutdown_fails_the_test(factory, backend):
    """A daemon that does not exit after SIGTERM (SIGSTOPped here) is
    SIGKILLed, and that fails its test."""
    t = factory.start(backend)
    os.kill(t.pid, signal.SIGSTOP)
    t.stop(timeout=1)
    assert t.proc.returncode == -signal.SIGKILL
    msg = teardown_failure(factory)
    assert msg is not None, "a tlsgate that had to be SIGKILLed passed teardown"
    assert "did not exit within" in msg and "of SIGTERM and was SIGKILLed" in msg, msg
    assert "listening on %s" % t.listen in msg, "no log tail in: " + msg


def test_killed_on_purpose_passes(factory, backend):
    t = factory.start(backend)
    t.stop(sig=signal.SIGKILL, expect=-signal.SIGKILL)
    assert teardown_failure(factory) is None

