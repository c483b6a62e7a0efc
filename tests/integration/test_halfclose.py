"""Half-close with large transfers: when one side stops sending, not a byte
of what the other side still sends may be lost.

A client that ends its sending side (a TCP FIN, with or without a TLS
close_notify before it) must still receive every byte the target sends
afterwards; the target sees the end as a write shutdown. A target that ends
first makes tlsgate send close_notify, and the client may go on sending
(TLS 1.3 allows it; tlsgate allows it on 1.2 too). 64 MiB each way, checked
byte for byte."""
import os
import time

import pytest

import tg_daemon
from tg_clients import MemTLS

SIZE = 64 << 20


def _payload():
    # Random, so that a lost, repeated or reordered piece cannot go unseen.
    return os.urandom(SIZE)


def _same(got, want):
    """An assertion message that says where two byte strings part."""
    if got == want:
        return None
    n = min(len(got), len(want))
    first = next((i for i in range(0, n, 4096) if got[i:i + 4096] != want[i:i + 4096]), n)
    return "got %d bytes of %d (%.1f MiB), first difference near offset %d" % (
        len(got), len(want), len(got) / (1 << 20), first)


def _timeout():
    return 120 * tg_daemon.slow_factor()


def _exchange(proxy, ctx, data, end):
    """Connects, sends `data`, ends the way `end` says, reads to the end."""
    c = MemTLS.connect(proxy.addr, ctx)
    try:
        c.handshake()
        return c.exchange(data, end, timeout=_timeout())
    finally:
        c.close()


def _assert_closed_pipe(proxy, up, down):
    line = proxy.wait_log("closed pipe", timeout=10)
    assert "%d bytes from client" % up in line and "%d bytes to client" % down in line, line


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("end", ["close_notify", "fin"])
def test_client_ends_while_echo_in_flight(start_proxy, make_backend, ctx_for, pki, version, end):
    """64 MiB echoed while being sent; the client then ends its side. What
    the target still had to echo (megabytes in the socket buffers) arrives
    in full, and the end of the reply is a clean close_notify."""
    b = make_backend("echo")
    proxy = start_proxy(b)
    data = _payload()
    got, clean = _exchange(proxy, ctx_for(pki.client, version=version), data, end)
    assert _same(got, data) is None, _same(got, data)
    assert clean, "the reply did not end with close_notify"
    assert "invalidated" not in proxy.log()
    _assert_closed_pipe(proxy, SIZE, SIZE)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("end", ["close_notify", "fin"])
def test_target_answers_only_after_eof(start_proxy, make_backend, ctx_for, pki, version, end):
    """A target like `nc -q`: it answers only once it has seen the end of
    the request. All 64 MiB of the answer travel after the client's end."""
    b = make_backend("replay")
    proxy = start_proxy(b)
    data = _payload()
    got, clean = _exchange(proxy, ctx_for(pki.client, version=version), data, end)
    assert b.wait_accepted(1)
    rec = b.records[0]
    assert rec.eof.is_set(), "the target never saw the client's end"
    assert rec.error is None, rec.error
    assert _same(bytes(rec.received), data) is None, "request: " + _same(bytes(rec.received), data)
    assert _same(got, data) is None, "answer: " + _same(got, data)
    assert clean, "the answer did not end with close_notify"
    _assert_closed_pipe(proxy, SIZE, SIZE)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("end", ["close_notify", "fin"])
def test_target_ends_first_client_keeps_sending(start_proxy, make_backend, ctx_for, pki,
                                                version, end):
    """The target sends 64 MiB and shuts down its write side: the client gets
    all of it and a close_notify, then sends 64 MiB of its own, all of which
    reach the target before it sees the end."""
    down = _payload()
    b = make_backend("source", payload=down)
    proxy = start_proxy(b)
    up = _payload()
    c = MemTLS.connect(proxy.addr, ctx_for(pki.client, version=version))
    try:
        c.handshake()
        got, clean = c.exchange(b"", "none", timeout=_timeout())
        assert _same(got, down) is None, "from the target: " + _same(got, down)
        assert clean, "the target's end did not reach the client as close_notify"
        c.exchange(up, end, timeout=_timeout())
        assert b.wait_accepted(1)
        rec = b.records[0]
        assert rec.eof.wait(10 * tg_daemon.slow_factor()), "the client's end never reached the target"
    finally:
        c.close()
    assert _same(bytes(rec.received), up) is None, "to the target: " + _same(bytes(rec.received), up)
    _assert_closed_pipe(proxy, SIZE, SIZE)


def test_half_closed_transfer_outlives_close_timeout(start_proxy, make_backend, ctx_for, pki):
    """--close-timeout bounds how long a half-closed connection may sit
    idle, not how long a live transfer may take: a reply that keeps flowing
    for longer than the timeout after the client's end is delivered whole."""
    import socket
    import threading

    chunk = os.urandom(64 << 10)
    steps = 12
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    seen_eof = threading.Event()

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(30)
            while conn.recv(65536):
                pass
            seen_eof.set()
            for _ in range(steps):       # 12 x 0.25 s: three times the timeout
                conn.sendall(chunk)
                time.sleep(0.25)
            conn.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    proxy = start_proxy("127.0.0.1:%d" % srv.getsockname()[1],
                        extra=["--close-timeout", "1s"])
    c = MemTLS.connect(proxy.addr, ctx_for(pki.client))
    try:
        c.handshake()
        got, clean = c.exchange(b"request\n", "fin", timeout=30)
    finally:
        c.close()
        srv.close()
    t.join(10)
    assert seen_eof.is_set()
    assert got == chunk * steps, "got %d of %d bytes" % (len(got), len(chunk) * steps)
    assert clean
