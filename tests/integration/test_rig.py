"""The test rig itself: a tlsgate that crashes, ends otherwise than its test
expects or hangs at shutdown fails the test, and so does a test that hangs,
whose fixtures still stop their daemons. Each case drives the real binary
through the fixtures' own code (conftest.ProxyFactory, tg_daemon.Tlsgate)."""
import configparser
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

import tg_daemon
from conftest import ProxyFactory
from tg_clients import client_context

HERE = os.path.dirname(os.path.abspath(__file__))


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


HANGING_TEST = '''
import os
import time


def test_hangs(start_proxy, backend):
    t = start_proxy(backend)
    with open(os.environ["TG_RIG_PIDFILE"], "w") as f:
        f.write(str(t.pid))
    time.sleep(60)
'''


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_hanging_test_fails_and_its_daemon_is_stopped(tmp_path):
    """pytest.ini gives every test a time limit, with a method that lets the
    fixtures' teardown run: a test that hangs fails, and the tlsgate it
    started is stopped. The inner run shortens the limit to a few seconds."""
    ini = configparser.ConfigParser()
    ini.read(os.path.join(HERE, "pytest.ini"))
    assert ini.getfloat("pytest", "timeout", fallback=0) > 0, "pytest.ini sets no timeout"
    (tmp_path / "test_hangs.py").write_text(textwrap.dedent(HANGING_TEST))
    pidfile = tmp_path / "pid"
    env = dict(os.environ, TG_RIG_PIDFILE=str(pidfile),
               TLSGATE_BIN=tg_daemon.tlsgate_binary(),
               PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in list(env):
        if k.startswith("PYTEST_"):
            env.pop(k)  # the outer run's xdist worker settings
    limit = 5 * tg_daemon.slow_factor()
    argv = [sys.executable, "-m", "pytest", "-q", "-c", os.path.join(HERE, "pytest.ini"),
            "--rootdir", str(tmp_path), "--basetemp", str(tmp_path / "base"),
            "-p", "conftest", "-o", "timeout=%g" % limit, str(tmp_path / "test_hangs.py")]
    p = subprocess.run(argv, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                       timeout=60 * tg_daemon.slow_factor())
    pid = int(pidfile.read_text()) if pidfile.exists() else None
    try:
        assert pid is not None, "the inner test started no tlsgate:\n" + p.stdout + p.stderr
        assert not _alive(pid), "the hanging test's tlsgate (pid %d) was left running" % pid
        assert p.returncode == 1 and "Timeout >" in p.stdout and "1 failed" in p.stdout, \
            "exit %s:\n%s%s" % (p.returncode, p.stdout, p.stderr)
    finally:
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)
