"""Timeouts, graceful and forced shutdown, target outages."""
import hashlib
import os
import signal
import socket
import time


import tg_daemon
from tg_backends import GREETING
from tg_checks import assert_allowed
from tg_clients import MemTLS, tcp_connect, try_echo


def _wait_tcp_close(sock, timeout):
    """Reads and discards until the peer closes; returns seconds waited or None."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < timeout:
        try:
            d = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
        if not d:
            return time.monotonic() - t0
    return None


def test_silent_client_cut_at_connect_timeout(start_proxy, backend):
    proxy = start_proxy(backend, extra=["--connect-timeout", "1s"])
    s = tcp_connect(proxy.addr)
    try:
        waited = _wait_tcp_close(s, 6)
    finally:
        s.close()
    assert waited is not None, "silent client not cut within 6s"
    assert 0.85 <= waited <= 3.0, "cut after %.2fs, expected about 1s" % waited
    assert backend.accepted == 0


def test_connect_timeout_default_is_not_1s(start_proxy, backend):
    """Control for the test above: with the default (10s) nothing happens at 1s."""
    proxy = start_proxy(backend)
    s = tcp_connect(proxy.addr)
    try:
        assert _wait_tcp_close(s, 2.0) is None
    finally:
        s.close()


def test_connect_timeout_500ms_go_syntax(start_proxy, backend):
    proxy = start_proxy(backend, extra=["--connect-timeout", "500ms"])
    s = tcp_connect(proxy.addr)
    try:
        waited = _wait_tcp_close(s, 5)
    finally:
        s.close()
    assert waited is not None and 0.4 <= waited <= 2.5, waited


def test_close_timeout_after_one_direction_ends(start_proxy, make_backend, ctx_for, pki):
    """Backend closes its side; the client keeps its side open and silent:
    the proxy closes everything about --close-timeout later."""
    b = make_backend("greet")
    proxy = start_proxy(b, extra=["--close-timeout", "1s"])
    c = MemTLS.connect(proxy.addr, ctx_for(pki.client))
    try:
        c.handshake()
        assert c.recv_until_eof(timeout=5) == GREETING
        t_eof = time.monotonic()
        assert b.wait_accepted(1)
        rec = b.records[0]
        assert rec.eof.wait(6), "proxy never closed the backend side after --close-timeout"
        waited = rec.eof_time - t_eof
        assert 0.7 <= waited <= 3.5, "closed %.2fs after the backend's EOF, expected ~1s" % waited
        left = _wait_tcp_close(c.sock, 3)
        assert left is not None, "client connection still open"
    finally:
        c.close()


def test_max_conn_lifetime(start_proxy, backend, ctx_for, pki):
    proxy = start_proxy(backend, extra=["--max-conn-lifetime", "1s"])
    c = MemTLS.connect(proxy.addr, ctx_for(pki.client))
    t0 = time.monotonic()
    ended = None
    try:
        c.handshake()
        for i in range(100):  # busy connection, ~0.1s per round
            try:
                c.send(b"tick %d\n" % i)
                d = c.recv(100, timeout=2)
            except (OSError, EOFError):  # SSLError and TimeoutError are OSErrors
                d = b""
            if d == b"":
                ended = time.monotonic() - t0
                break
            time.sleep(0.1)
    finally:
        c.close()
    assert ended is not None, "connection outlived --max-conn-lifetime 1s by far"
    assert 0.8 <= ended <= 3.5, "ended after %.2fs" % ended


# ---------------------------------------------------------------------------
def test_sigterm_drains_inflight_transfer(start_proxy, backend, ctx_for, pki):
    proxy = start_proxy(backend)
    ctx = ctx_for(pki.client)
    data = os.urandom(1 << 20)
    first = 256 * 1024
    c = MemTLS.connect(proxy.addr, ctx)
    try:
        c.handshake()
        got = c.pump(data[:first], first, timeout=10)
        n_msgs = len(proxy.notify.messages)
        proxy.send_signal(signal.SIGTERM)
        assert proxy.notify.wait_for("STOPPING", "1", timeout=5, start=n_msgs), \
            "no STOPPING=1 after SIGTERM"
        # no new connections once stopping
        o = try_echo(proxy.addr, ctx, timeout=1.5)
        assert o.data == b"", "a new connection was served while draining: %r" % (o,)
        time.sleep(0.3)
        assert proxy.running(), "exited with a transfer in flight"
        got += c.pump(data[first:], len(data) - first, timeout=20)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        c.send_close_notify()
        assert c.recv_until_eof(timeout=5) == b""
    finally:
        c.close()
    t0 = time.monotonic()
    rc = proxy.wait(10)
    assert rc == 0, "exit code after a drained shutdown: %s" % rc
    assert time.monotonic() - t0 < 3, "exit took long after the last connection closed"
    assert backend.accepted == 1


def test_sigterm_idle_exits_quickly(start_proxy, backend, ctx_for, pki):
    proxy = start_proxy(backend)
    assert_allowed(proxy, backend, ctx_for(pki.client))
    t0 = time.monotonic()
    proxy.send_signal(signal.SIGTERM)
    assert proxy.wait(5) == 0
    assert time.monotonic() - t0 < 2
    assert tg_daemon.port_is_free(proxy.addr[1])


def test_forced_shutdown_after_shutdown_timeout(start_proxy, backend, ctx_for, pki):
    proxy = start_proxy(backend, extra=["--shutdown-timeout", "1s"], expect_exit=1)
    c = MemTLS.connect(proxy.addr, ctx_for(pki.client))
    try:
        c.handshake()
        c.send(b"hold\n")
        assert c.recv(100) == b"hold\n"
        t0 = time.monotonic()
        proxy.send_signal(signal.SIGTERM)
        rc = proxy.wait(8)
        took = time.monotonic() - t0
        assert rc is not None, "not exited 8s after SIGTERM with --shutdown-timeout 1s"
        assert rc != 0, "a forced shutdown must exit non-zero"
        assert 0.8 <= took <= 4, "exited %.2fs after SIGTERM, expected ~1s" % took
        assert _wait_tcp_close(c.sock, 2) is not None
    finally:
        c.close()


# ---------------------------------------------------------------------------
def test_target_down_then_up(start_proxy, make_backend, ctx_for, pki):
    port = tg_daemon.free_port()
    proxy = start_proxy("127.0.0.1:%d" % port)
    ctx = ctx_for(pki.client)
    for i in range(2):
        o = try_echo(proxy.addr, ctx)
        assert o.data == b"" and o.error is not None, o
        assert tg_daemon.wait_until(lambda: len(proxy.find_log("error on dial")) > i, 3), \
            "no 'error on dial' logged; log:\n" + proxy.log()
    assert proxy.running()
    b = make_backend("echo", port=port)
    assert_allowed(proxy, b, ctx)
    assert_allowed(proxy, b, ctx)


def test_connect_timeout_covers_dial(start_proxy, ctx_for, pki):
    """A target whose accept queue is full never answers the SYN: the dial is
    part of --connect-timeout, so the client is closed about 1s after connecting."""
    hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)  # one queued connection fills it; later SYNs are dropped
    filler = socket.create_connection(hole.getsockname(), timeout=2)
    try:
        proxy = start_proxy("127.0.0.1:%d" % hole.getsockname()[1],
                            extra=["--connect-timeout", "1s"])
        t0 = time.monotonic()
        c = MemTLS.connect(proxy.addr, ctx_for(pki.client))
        try:
            c.handshake()
            c.send(b"anyone there?\n")
            try:
                d = c.recv(100, timeout=6)
            except (OSError, EOFError) as e:  # TLS alert, truncation or reset
                d = b""
                if isinstance(e, TimeoutError):
                    raise AssertionError("client not closed 6s after connecting")
            took = time.monotonic() - t0
        finally:
            c.close()
        assert d == b""
        assert 0.8 <= took <= 3.0, "closed %.2fs after connecting, expected ~1s" % took
        assert tg_daemon.wait_until(lambda: proxy.find_log("error on dial"), 2), proxy.log()
    finally:
        filler.close()
        hole.close()
