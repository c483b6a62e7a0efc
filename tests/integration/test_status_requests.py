"""How the status port reads requests (src/http-request.c, issue 14): what
it refuses, with which status and reason, what it serves that it used to
miss, and that the answer does not depend on how the bytes arrive.

The parser's every rule has a unit test (tests/unit/test-http-request.c)
and a fuzzer (tests/fuzz/fuzz-http-request.c); these drive the real
binary over plain HTTP and HTTPS.
"""
import socket
import time

import pytest

import tg_daemon
from tg_clients import client_context, tcp_connect
from tg_http import Resp, http, read_to_eof


def start_status(start_proxy, target, https=False, extra=()):
    port = tg_daemon.free_port()
    spec = ("127.0.0.1:%d" if https else "http://127.0.0.1:%d") % port
    t = start_proxy(target, extra=["--status", spec] + list(extra))
    t.status_addr = ("127.0.0.1", port)
    return t


# The request, the status, a part of the body (the parser's reason).
REFUSED = [
    (b"GET /_status HTTP/1.1\rX\n\n", 400, "CR not followed by LF"),
    (b"GET /_status HTTP/1.1\r\nHost: x\rY\r\n\r\n", 400, "CR not followed by LF"),
    (b"GET /_status\x1b[2J HTTP/1.1\r\n\r\n", 400, "control character in the request target"),
    (b"GET /_status HTTP/1.1\r\nHost status\r\n\r\n", 400, "header line without a colon"),
    (b"GET /_status HTTP/1.1\r\nHost : status\r\n\r\n", 400, "not a token"),
    (b"GET /_status HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400, "folded"),
    (b"GET /_status HTTP/1.1\r\nA: b\x01\r\n\r\n", 400, "control character in a header field value"),
    (b"POST /_status HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400, "invalid Content-Length"),
    (b"POST /_status HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400,
     "conflicting Content-Length"),
    (b"POST /_status HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     "both Transfer-Encoding and Content-Length"),
    (b"POST /_status HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
     "transfer coding other than chunked"),
    (b"POST /_status HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
     501, "more than one transfer coding"),
]


@pytest.mark.parametrize("raw,status,reason", REFUSED,
                         ids=["bare-cr-line", "bare-cr-header", "control-in-target", "no-colon",
                              "space-before-colon", "folded", "control-in-value", "bad-length",
                              "conflicting-lengths", "te-and-length", "te-gzip", "te-twice"])
def test_refused_with_status_and_reason(start_proxy, backend, raw, status, reason):
    t = start_status(start_proxy, backend)
    r = http(t.status_addr, raw=raw)
    assert r.status == status, r
    assert r.reason == {400: "Bad Request", 501: "Not Implemented"}[status], r
    assert reason in r.body.decode(), r
    assert r.headers["connection"] == "close"
    # Served as ever afterwards.
    assert http(t.status_addr).status == 200
    assert t.running()


def test_bad_request_line_answered_at_once(start_proxy, backend, pki):
    """A request line that cannot be served is answered when it ends: the
    client does not have to finish the head (and wait for --connect-timeout
    if it never does)."""
    slow = tg_daemon.slow_factor()
    for https in (False, True):
        t = start_status(start_proxy, backend, https=https,
                         extra=["--connect-timeout", "%ds" % (30 * slow)])
        ctx = client_context(pki.ca.cert_path, None) if https else None
        t0 = time.monotonic()
        r = http(t.status_addr, raw=b"GARBAGE\r\nHost: still typing", ctx=ctx, timeout=10 * slow)
        assert r.status == 400 and "request line without a target" in r.body.decode(), r
        assert time.monotonic() - t0 < 5 * slow
        assert t.running()


def test_mixed_line_ends_end_the_head(start_proxy, backend):
    """LF then CRLF is an empty line too (RFC 9112 section 2.2 allows a
    bare LF as a line end)."""
    t = start_status(start_proxy, backend, extra=["--connect-timeout", "%ds" % (30 * tg_daemon.slow_factor())])
    r = http(t.status_addr, raw=b"GET /_status HTTP/1.1\nHost: x\n\r\n", timeout=10 * tg_daemon.slow_factor())
    assert r.status == 200, r
    assert r.json()["ok"] is True


def test_body_is_not_read_as_the_head(start_proxy, backend):
    """Bytes after the empty line are a body, whatever they hold."""
    t = start_status(start_proxy, backend)
    r = http(t.status_addr, raw=b"POST /_status HTTP/1.1\r\nContent-Length: 3\r\n\r\n\x00\x01\r")
    assert r.status == 405 and r.headers["allow"] == "GET, HEAD", r
    r = http(t.status_addr, raw=b"GET /_status HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"3\r\n\x00\x00\x00\r\n0\r\n\r\n")
    assert r.status == 200, r


def test_byte_by_byte_and_all_at_once_agree(start_proxy, backend):
    """The same requests one byte per segment and in one piece: the same
    answers (the parser is asked again only when a line ends)."""
    t = start_status(start_proxy, backend)
    requests = [
        b"GET /_metrics?format=prometheus HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
        b"HEAD /_status HTTP/1.0\n\n",
        b"GET /_status HTTP/1.1\r\nA: b\r\n c\r\n\r\n",
        b"POST /_status HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    ]
    for raw in requests:
        whole = http(t.status_addr, raw=raw)
        s = tcp_connect(t.status_addr, 5 * tg_daemon.slow_factor())
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(len(raw)):
                s.sendall(raw[i:i + 1])
                time.sleep(0.002)
            data = read_to_eof(s, rounds=1000)
        finally:
            s.close()
        split = Resp(data)
        assert split.status == whole.status, (raw, split, whole)
        assert split.headers["content-type"] == whole.headers["content-type"], (raw, split)
        if whole.status != 200:
            assert split.body == whole.body, (raw, split, whole)
    assert t.running()


def test_head_limit_is_8_kib(start_proxy, backend):
    """A head of exactly 8192 bytes is served; one byte more is 431."""
    t = start_status(start_proxy, backend)
    head = b"GET /_status HTTP/1.1\r\nX-Pad: "
    head += b"a" * (8192 - len(head) - 4) + b"\r\n\r\n"
    assert len(head) == 8192
    r = http(t.status_addr, raw=head)
    assert r.status == 200, r
    r = http(t.status_addr, raw=head[:-4] + b"a\r\n\r\n")
    assert r.status == 431 and r.reason == "Request Header Fields Too Large", r
    assert t.running()
