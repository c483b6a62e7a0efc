"""Backpressure: a slow sink holds back a fast source through the proxy, whose
pipe buffers are lent only while bytes are in flight (src/bufpool.c); no byte
is lost, duplicated or reordered when buffers come and go, and a stalled
connection does not hold up the others."""
import hashlib
import os
import select
import socket
import threading
import time

from tg_clients import MemTLS, try_echo

OFFER = 96 << 20        # far more than the kernel buffers on the way can hold
CHUNK = 16384


class SlowSink:
    """A backend whose first connection is read only after go() (then to EOF,
    answering b"got <n> <sha256>\\n"); later connections are echoed."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small receive window (inherited by the accepted sockets): the
        # proxy's writes to the held connection block soon.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(30)
        self.target = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self._go = threading.Event()
        self.accepted = threading.Event()
        self.done = threading.Event()
        self.error = None
        threading.Thread(target=self._run, daemon=True).start()

    def go(self):
        self._go.set()

    def _run(self):
        try:
            c, _ = self.sock.accept()
        except Exception as e:
            self.error = e
            self.done.set()
            return
        self.accepted.set()
        threading.Thread(target=self._echo_others, daemon=True).start()
        try:
            c.settimeout(60)
            self._go.wait(60)
            h, n = hashlib.sha256(), 0
            while True:
                d = c.recv(1 << 20)
                if not d:
                    break
                n += len(d)
                h.update(d)
            c.sendall(b"got %d %s\n" % (n, h.hexdigest().encode()))
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            c.close()
            self.done.set()

    def _echo_others(self):
        for _ in range(4):
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                c.settimeout(10)
                try:
                    while True:
                        d = c.recv(65536)
                        if not d:
                            break
                        c.sendall(d)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def _send_until_stalled(c, data, stall=1.0, limit=60.0):
    """Feeds data to the TLS connection until no byte leaves the socket for
    `stall` seconds, or all is out; returns how much of data was taken."""
    view = memoryview(data)
    taken = 0
    last = start = time.monotonic()
    while taken < len(data) or c.pending:
        assert time.monotonic() - start < limit, "sending took over %ds" % limit
        while taken < len(data) and len(c.pending) < 262144:
            taken += c.obj.write(view[taken:taken + CHUNK])
            c._collect()
        _r, w, _x = select.select([], [c.sock], [], 0.1)
        if w:
            try:
                n = c.sock.send(c.pending)
            except BlockingIOError:
                n = 0
            if n:
                del c.pending[:n]
                last = time.monotonic()
        if time.monotonic() - last >= stall:
            break
    return taken


def test_slow_backend_holds_back_the_client(start_proxy, ctx_for, pki):
    sink = SlowSink()
    proxy = start_proxy(sink)
    data = os.urandom(OFFER)
    c = MemTLS.connect(proxy.addr, ctx_for(pki.client))
    try:
        c.handshake()
        taken = _send_until_stalled(c, data)
        assert sink.accepted.wait(5)
        # The proxy stopped reading the client instead of buffering what a
        # backend that reads nothing cannot take.
        assert taken < OFFER, "a backend reading nothing took all %d bytes" % OFFER

        # The stalled pipe does not hold up the others.
        o = try_echo(proxy.addr, ctx_for(pki.client), payload=os.urandom(100000), timeout=10)
        assert o.handshake_ok and o.error is None and o.data == o.payload, o

        # The backend reads again: the rest follows, every byte in order.
        sink.go()
        c.send(memoryview(data)[taken:], timeout=120)
        c.send_close_notify()
        reply = c.recv_until_eof(timeout=60)
    finally:
        c.close()
        sink.close()
    assert sink.done.wait(30) and sink.error is None, sink.error
    assert reply == b"got %d %s\n" % (OFFER, hashlib.sha256(data).hexdigest().encode())


def test_slow_client_reader_both_ways(start_proxy, backend, ctx_for, pki):
    """Echo with a client that stops reading: the backend's replies back up
    to the backend, which stops reading, which stops the proxy reading the
    client. Then the client reads everything back, byte for byte."""
    proxy = start_proxy(backend)
    data = os.urandom(OFFER)
    c = MemTLS.connect(proxy.addr, ctx_for(pki.client))
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    try:
        c.handshake()
        taken = _send_until_stalled(c, data)
        assert taken < OFFER, "the echo path absorbed all %d bytes with nobody reading" % OFFER
        got = c.pump(memoryview(data)[taken:], OFFER, timeout=120)
        c.send_close_notify()
        assert c.recv_until_eof(timeout=10) == b""
    finally:
        c.close()
    assert len(got) == OFFER and hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
