"""Assertions shared by the tests."""
import time

from cryptography import x509

from tg_clients import tls_connect, try_echo


def peer_str(local):
    host, port = local[0], local[1]
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def assert_allowed(proxy, backend, ctx, **kw):
    """The client is let through: echo round trip, the backend saw one more
    connection, and "opening pipe" was logged with the client's address."""
    before = backend.accepted
    o = try_echo(proxy.addr, ctx, **kw)
    assert o.handshake_ok and o.error is None and o.data == o.payload, \
        "client should have been let through: %r" % (o,)
    assert backend.wait_accepted(before + 1, 2.0), "backend never saw the connection"
    if isinstance(o.local, tuple):
        proxy.wait_log("opening pipe", peer_str(o.local), timeout=3)
    return o


def assert_refused(proxy, backend, ctx, phrases=("denied", "error on TLS handshake"), **kw):
    """The client gets no data back, a refusal naming the client's address is
    logged (any of phrases), and the backend never saw a connection."""
    before = backend.accepted
    o = try_echo(proxy.addr, ctx, **kw)
    assert o.data == b"" and o.error is not None, "client should have been refused: %r" % (o,)
    if isinstance(o.local, tuple) and phrases:
        deadline = time.monotonic() + 3
        found = []
        while time.monotonic() < deadline and not found:
            found = [l for l in proxy.log_lines()
                     if peer_str(o.local) in l and any(p in l for p in phrases)]
            time.sleep(0.02)
        assert found, ("no log line with %s and any of %r; log:\n%s"
                       % (peer_str(o.local), phrases, proxy.log()))
    time.sleep(0.2)
    assert backend.accepted == before, "backend saw a connection from a refused client"
    return o


def served_serial(proxy, ctx):
    """The serial of the certificate a new handshake gets."""
    s = tls_connect(proxy.addr, ctx)
    try:
        return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number
    finally:
        s.close()
