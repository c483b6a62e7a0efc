"""Data path: bulk integrity, half-close both ways, concurrency, connection limit."""
import hashlib
import os
import threading
import time

import pytest

import tg_daemon
from tg_backends import GREETING
from tg_clients import MemTLS, recv_exact, tls_connect


def _sha(b):
    return hashlib.sha256(b).hexdigest()


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_one_mib_each_way(start_proxy, backend, ctx_for, pki, version):
    proxy = start_proxy(backend)
    data = os.urandom(1 << 20)
    c = MemTLS.connect(proxy.addr, ctx_for(pki.client, version=version))
    try:
        c.handshake()
        got = c.pump(data, len(data), timeout=30)
        assert len(got) == len(data) and _sha(got) == _sha(data)
        c.send_close_notify()
        assert c.recv_until_eof() == b""
    finally:
        c.close()
    proxy.wait_log("closed pipe", timeout=5)


def test_one_mib_upload_checksum_at_backend(start_proxy, make_backend, ctx_for, pki):
    """Client -> backend 1 MiB, the backend computes the checksum after EOF."""
    b = make_backend("halfclose")
    proxy = start_proxy(b)
    data = os.urandom(1 << 20)
    c = MemTLS.connect(proxy.addr, ctx_for(pki.client))
    try:
        c.handshake()
        c.send(data, timeout=20)
        c.send_close_notify()
        reply = c.recv_until_eof(timeout=10)
    finally:
        c.close()
    assert reply == b"got %d %s\n" % (len(data), _sha(data).encode())


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_half_close_backend_first(start_proxy, make_backend, ctx_for, pki, version):
    """The backend shuts down its write side: the client gets the data and a
    clean TLS EOF (close_notify, not a truncation) and can still send."""
    b = make_backend("greet")
    proxy = start_proxy(b)
    c = MemTLS.connect(proxy.addr, ctx_for(pki.client, version=version))
    try:
        c.handshake()
        got = c.recv_until_eof(timeout=5)  # raises SSLEOFError on a TCP EOF without close_notify
        assert got == GREETING
        assert b.wait_accepted(1)
        rec = b.records[0]
        payload = b"still talking after EOF\n" * 2000
        c.send(payload)
        deadline = time.monotonic() + 5
        while len(rec.received) < len(payload) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert bytes(rec.received) == payload, "backend got %d of %d bytes after its EOF" % (
            len(rec.received), len(payload))
        assert not rec.eof.is_set(), "backend saw EOF before the client closed"
        c.send_close_notify()
        assert rec.eof.wait(5), "client's close_notify never became an EOF at the backend"
    finally:
        c.close()


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_half_close_client_first(start_proxy, make_backend, ctx_for, pki, version):
    """The client sends close_notify (keeping TCP open): the backend sees EOF
    and can still reply; the reply reaches the client, then a clean EOF."""
    b = make_backend("halfclose")
    proxy = start_proxy(b)
    payload = os.urandom(300000)
    c = MemTLS.connect(proxy.addr, ctx_for(pki.client, version=version))
    try:
        c.handshake()
        c.send(payload)
        c.send_close_notify()
        reply = c.recv_until_eof(timeout=5)
    finally:
        c.close()
    assert reply == b"got %d %s\n" % (len(payload), _sha(payload).encode())


def test_200_concurrent_connections(start_proxy, backend, ctx_for, pki):
    n = 200
    # Under valgrind the 200 handshakes, done one after the other, take
    # longer than the default --connect-timeout (10s) the last one waits.
    proxy = start_proxy(backend, extra=["--connect-timeout",
                                        "%ds" % (10 * tg_daemon.slow_factor())])
    ctx = ctx_for(pki.client)
    barrier = threading.Barrier(n)
    results = [None] * n

    def worker(i):
        s = None
        try:
            s = tls_connect(proxy.addr, ctx, timeout=30)
            msg = b"conn %03d " % i + os.urandom(64).hex().encode() + b"\n"
            s.sendall(msg)
            ok1 = recv_exact(s, len(msg), 30) == msg
            barrier.wait(60)  # every connection is open at the same time here
            s.sendall(msg[::-1])
            ok2 = recv_exact(s, len(msg), 30) == msg[::-1]
            results[i] = ok1 and ok2
        except Exception as e:  # reported below
            results[i] = e
            barrier.abort()
        finally:
            if s:
                s.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    bad = [(i, r) for i, r in enumerate(results) if r is not True]
    # the first real failure aborts the barrier for everyone else: show it first
    bad.sort(key=lambda x: isinstance(x[1], threading.BrokenBarrierError))
    assert not bad, "%d of %d connections failed, e.g. %r" % (len(bad), n, bad[:5])
    assert backend.accepted == n
    assert backend.peak == n


def test_max_concurrent_conns(start_proxy, backend, ctx_for, pki):
    """Beyond the limit the listener stops accepting: the extra connection's
    handshake does not complete; it is served once a slot frees (not dropped)."""
    proxy = start_proxy(backend, extra=["--max-concurrent-conns", "2"])
    ctx = ctx_for(pki.client)
    conns = []
    try:
        for i in range(2):
            s = tls_connect(proxy.addr, ctx)
            s.sendall(b"hello %d\n" % i)
            assert recv_exact(s, 8) == b"hello %d\n" % i
            conns.append(s)
        third = MemTLS.connect(proxy.addr, ctx)  # completes in the kernel backlog
        conns.append(third)
        with pytest.raises(TimeoutError):
            third.handshake(timeout=1.5)
        assert backend.accepted == 2
        conns[0].close()
        t0 = time.monotonic()
        third.handshake(timeout=5)
        third.send(b"third\n")
        assert third.recv(100) == b"third\n"
        assert time.monotonic() - t0 < 3
        assert backend.accepted == 3
        # still at the limit (conns 2 and 3 open): a fourth waits again
        fourth = MemTLS.connect(proxy.addr, ctx)
        conns.append(fourth)
        with pytest.raises(TimeoutError):
            fourth.handshake(timeout=1.0)
        third.send_close_notify()
        fourth.handshake(timeout=5)
        fourth.send(b"fourth\n")
        assert fourth.recv(100) == b"fourth\n"
        assert backend.accepted == 4
    finally:
        for c in conns:
            c.close()


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_records_ahead_of_a_corrupt_one_reach_the_target(start_proxy, make_backend, ctx_for,
                                                         pki, version):
    """Several records and a corrupt one arrive in one segment. tlsgate
    decrypts what is there before it writes to the target (several records
    in one write); the intact records must all reach the target before the
    bad one ends the connection, as they did when it wrote one at a time."""
    b = make_backend("hold")
    proxy = start_proxy(b)
    chunks = [os.urandom(1000) for _ in range(3)]
    c = MemTLS.connect(proxy.addr, ctx_for(pki.client, version=version))
    try:
        c.handshake()
        for chunk in chunks:
            c.obj.write(chunk)
        c._collect()
        good = bytes(c.pending)
        c.pending.clear()
        c.obj.write(b"x" * 1000)
        c._collect()
        bad = bytearray(c.pending)      # exactly one record
        c.pending.clear()
        bad[-1] ^= 0x01                 # its authentication tag no longer matches
        c.sock.sendall(good + bytes(bad))
        assert b.wait_accepted(1, timeout=5)
        rec = b.records[0]
        assert rec.eof.wait(15), \
            "the target's connection was not ended after the corrupt record"
        assert bytes(rec.received) == b"".join(chunks), \
            "target got %d of %d bytes" % (len(rec.received), 3 * 1000)
        proxy.wait_log("error reading from client")
    finally:
        c.close()
