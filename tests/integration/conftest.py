"""Fixtures for the tlsgate integration tests.

Run with Debian's interpreter:  /usr/bin/python3 -m pytest -q tests/integration
The binary comes from $TLSGATE_BIN, else ../../build/tlsgate from here.
"""
import os
import shutil
import socket
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tg_backends  # noqa: E402
import tg_daemon  # noqa: E402
import tg_pki  # noqa: E402
from tg_clients import client_context  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(node):
    return any(getattr(node, "rep_" + w, None) is not None and getattr(node, "rep_" + w).failed
               for w in ("setup", "call"))


@pytest.fixture(scope="session")
def tlsgate_bin(tmp_path_factory):
    """A private copy of the binary, so a rebuild during the run cannot pull it
    away from under the tests (the linker replaces build/tlsgate)."""
    path = tg_daemon.tlsgate_binary()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("tlsgate binary not found at %s (build it or set TLSGATE_BIN)" % path,
                    pytrace=False)
    copy = os.path.join(str(tmp_path_factory.mktemp("bin")), "tlsgate")
    shutil.copy2(path, copy)
    return copy


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return tg_pki.PKI(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def sockdir():
    d = tg_daemon.short_tmpdir("tg-sock-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_backend():
    made = []

    def make(mode="echo", **kw):
        b = tg_backends.Backend(mode, **kw)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


@pytest.fixture
def backend(make_backend):
    """A TCP echo backend on 127.0.0.1 recording each connection."""
    return make_backend("echo")


@pytest.fixture
def ctx_for(pki):
    """ctx_for(cert_or_None, **kw) -> ssl.SSLContext trusting the test CA."""
    def make(cert=None, **kw):
        return client_context(pki.ca.cert_path, cert, **kw)
    return make


def listen_to_addr(listen):
    if listen.startswith("unix:"):
        return listen[len("unix:"):]
    host, _, port = listen.rpartition(":")
    return (host.strip("[]"), int(port))


class ProxyFactory:
    def __init__(self, binary, pki, logdir, request):
        self.binary, self.pki, self.logdir, self.request = binary, pki, logdir, request
        self.started = []

    def cert_args(self):
        return ["--cacert", self.pki.ca.cert_path, "--cert", self.pki.server.cert_path,
                "--key", self.pki.server.key_path]

    def argv(self, target, access=("--allow-all",), listen=None, creds=None, extra=()):
        if listen is None:
            listen = "127.0.0.1:%d" % tg_daemon.free_port()
        creds = self.cert_args() if creds is None else list(creds)
        argv = [self.binary, "server", "--listen", listen, "--target", target]
        return listen, argv + creds + list(access) + list(extra)

    def start(self, target, access=("--allow-all",), listen=None, creds=None, extra=(), env=None,
              wait_ready=True, prefix=(), addr=None, timeout=10.0, expect_exit=0):
        """Starts tlsgate; returns the Tlsgate with .addr (client address) and .listen.
        expect_exit: how the test expects it to end (Tlsgate.expect_exit)."""
        if hasattr(target, "target"):
            target = target.target
        listen, argv = self.argv(target, access, listen, creds, extra)
        t = tg_daemon.Tlsgate(list(prefix) + argv, self.logdir, env=env, expect_exit=expect_exit)
        t.listen = listen
        t.addr = addr if addr is not None else (
            listen_to_addr(listen) if not listen.startswith("systemd:") else None)
        self.started.append(t)
        t.start(wait_ready=wait_ready, timeout=timeout)
        return t

    def cleanup(self):
        failed = _failed(self.request.node)
        reports = []
        for t in self.started:
            rc = t.cleanup()
            if failed:
                sys.stderr.write("\n===== %s pid %s argv %s\n===== %s%s\n%s\n"
                                 % (t.name, t.proc.pid if t.proc else None, " ".join(t.argv),
                                    tg_daemon.describe_exit(rc),
                                    " (SIGKILLed: %s)" % t.killed if t.killed else "", t.log()))
            # A daemon that had to be SIGKILLed after SIGTERM, or that ended
            # otherwise than the test expects (a crash, a forced shutdown
            # where a drained one was due), fails the test in teardown.
            problem = t.exit_problem()
            if problem:
                reports.append(problem)
            report = t.memory_errors()
            if report:
                reports.append(report)
        # So do memory errors and leaks (valgrind, ASan/UBSan).
        if reports:
            pytest.fail("\n\n".join(reports), pytrace=False)


@pytest.fixture
def proxy_factory(tlsgate_bin, pki, tmp_path, request):
    f = ProxyFactory(tlsgate_bin, pki, str(tmp_path), request)
    yield f
    f.cleanup()


@pytest.fixture
def start_proxy(proxy_factory):
    return proxy_factory.start


@pytest.fixture
def held_port():
    """A port held with a listening socket, without SO_REUSEPORT: a tlsgate
    that bound it before rejecting its settings (or under --check) would fail
    with EADDRINUSE instead."""
    port = tg_daemon.free_port()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", port))
    s.listen(8)
    yield port
    s.close()


@pytest.fixture
def short_dir():
    """A directory of its own with a short path (for UNIX sockets), mode 0700."""
    d = tg_daemon.short_tmpdir("tg-dir-")
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)
