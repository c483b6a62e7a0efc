"""A CA that fails (issue 7): errors, garbage, huge, cut, reset and slow
answers at several steps of the ACME flow.

FaultCA is a fault injector, not a CA: an HTTPS reverse proxy on loopback in
front of a real Pebble that answers the first matching requests with a fault
and passes everything else through (Host preserved, so Pebble builds every
URL, and checks every JWS "url", with the injector's address). For each
fault tlsgate must log a message naming the problem, not crash (the suite
also runs under ASan), retry on its backoff schedule, and obtain the
certificate once the CA behaves again.
"""
import http.client
import http.server
import json
import socket
import ssl
import struct
import threading
import time

import pytest

import tg_daemon
from tg_pebble import BACKOFF_SCALE_ENV, DOMAIN, client_ctx, echo, log_lines_with
from tg_pebble import acme_factory, pebble, pebble_factory  # noqa: F401,F811 (fixtures)

SCALE = 0.05            # waits between attempts 0.25, 0.5 s
# TLSGATE_TEST_ACME_TIMEOUT: each answer of the CA (longer under valgrind,
# where a request's own TLS handshake takes a good part of 3 s)
TIMEOUT_S = 3.0 * tg_daemon.slow_factor()
FAULTS = 2              # the first attempts that meet a fault; the third succeeds
ACME_JSON_MAX = 256 * 1024


class FaultCA:
    def __init__(self, pebble, rules):
        """rules: [(method, path prefix, fault, count)], first match wins."""
        self.pebble = pebble
        self.rules = [list(r) for r in rules]
        self.requests = []      # (monotonic time, method, path, fault or None)
        self.lock = threading.Lock()
        self.port = tg_daemon.free_port()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pebble.https.cert_path, pebble.https.key_path)
        self.upstream_ctx = ssl.create_default_context(cafile=pebble.https_ca_path)
        ca = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _any(self):
                ca.handle(self)
            do_GET = do_HEAD = do_POST = _any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       name="fault-ca")
        self.thread.start()

    @property
    def url(self):
        return "https://127.0.0.1:%d/dir" % self.port

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def faulted(self):
        with self.lock:
            return [r for r in self.requests if r[3]]

    # -- one request ----------------------------------------------------------
    def handle(self, h):
        n = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(n) if n else None
        fault = None
        with self.lock:
            for r in self.rules:
                if r[3] > 0 and h.command == r[0] and h.path.startswith(r[1]):
                    r[3] -= 1
                    fault = r[2]
                    break
            self.requests.append((time.monotonic(), h.command, h.path, fault))
        if fault:
            getattr(self, "fault_" + fault.replace("-", "_"))(h)
        else:
            self.proxy(h, body)

    def proxy(self, h, body):
        c = http.client.HTTPSConnection("127.0.0.1", self.pebble.wfe_port,
                                        context=self.upstream_ctx, timeout=30)
        try:
            headers = {k: v for k, v in h.headers.items()
                       if k.lower() not in ("connection", "content-length", "accept-encoding")}
            c.request(h.command, h.path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            h.send_response(r.status)
            for k, v in r.getheaders():
                if k.lower() not in ("connection", "content-length", "transfer-encoding",
                                     "date", "server"):
                    h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.send_header("Connection", "close")
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(data)
        finally:
            c.close()

    def _reply(self, h, status, ctype, data):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Connection", "close")
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    # -- the faults -----------------------------------------------------------
    def fault_500_problem(self, h):
        self._reply(h, 500, "application/problem+json", json.dumps({
            "type": "urn:ietf:params:acme:error:serverInternal",
            "detail": "injected failure: the database is on fire", "status": 500}).encode())

    def fault_503_html(self, h):
        self._reply(h, 503, "text/html", b"<html><body>Service Unavailable</body></html>")

    def fault_invalid_json(self, h):
        self._reply(h, 200, "application/json", b'{"newNonce": "https://127.0.0.1/n", ')

    def fault_wrong_shape(self, h):
        self._reply(h, 201 if h.command == "POST" else 200, "application/json",
                    json.dumps({"newNonce": 42, "newAccount": ["x"], "newOrder": None,
                                "status": ["valid"], "authorizations": "none",
                                "finalize": 7}).encode())

    def fault_garbage_pem(self, h):
        self._reply(h, 200, "application/pem-certificate-chain",
                    b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
                    b"-----END CERTIFICATE-----\n")

    def fault_huge(self, h):
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Connection", "close")  # no length: the size shows only while reading
        h.end_headers()
        chunk = b"[" * 1024 + b" " * (64 * 1024 - 1024)
        try:
            for _ in range(64):  # 4 MiB, 16 times the limit
                h.wfile.write(chunk)
        except OSError:
            pass  # tlsgate hung up once it had enough: that is the point

    def fault_truncated(self, h):
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", "4000")
        h.end_headers()
        h.wfile.write(b'{"newNonce": "https://127.0.0.1')
        h.wfile.flush()
        h.close_connection = True
        try:
            h.connection.unwrap()  # a clean TLS close: only the HTTP body is cut
        except (OSError, ValueError):
            pass

    def fault_reset(self, h):
        sock = h.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.close_connection = True
        sock.close()  # RST, mid-request

    def fault_slow(self, h):
        time.sleep(TIMEOUT_S * 2)  # tlsgate gave up long ago
        h.close_connection = True

    def fault_not_http(self, h):
        h.wfile.write(b"\x00\x01\x02 this is not HTTP at all \xff\xfe\r\n\r\n")
        h.close_connection = True


@pytest.fixture
def fault_ca():
    made = []

    def make(pebble, rules):
        ca = FaultCA(pebble, rules)
        made.append(ca)
        return ca
    yield make
    for ca in made:
        ca.close()


# (id, method, path prefix, fault, words every failure message must contain)
CASES = [
    ("dir-500-problem", "GET", "/dir", "500-problem",
     ["GET https://127.0.0.1:{port}/dir: injected failure: the database is on fire",
      "serverInternal"]),
    ("dir-503-html", "GET", "/dir", "503-html", ["HTTP 503", "/dir"]),
    ("dir-invalid-json", "GET", "/dir", "invalid-json", ["Invalid JSON", "/dir"]),
    ("dir-wrong-shape", "GET", "/dir", "wrong-shape", ["lacks newNonce", "/dir"]),
    ("dir-huge", "GET", "/dir", "huge", ["size limit", "/dir"]),
    ("dir-truncated", "GET", "/dir", "truncated", ["/dir", "bytes remaining"]),
    ("dir-reset", "GET", "/dir", "reset", ["/dir"]),
    ("dir-slow", "GET", "/dir", "slow", ["/dir", "timed out"]),
    ("dir-not-http", "GET", "/dir", "not-http", ["/dir"]),
    ("nonce-500", "HEAD", "/nonce-plz", "500-problem", ["HTTP 500 from HEAD", "/nonce-plz"]),
    ("account-500-problem", "POST", "/sign-me-up", "500-problem",
     ["POST https://127.0.0.1:{port}/sign-me-up: injected failure", "serverInternal"]),
    ("account-invalid-json", "POST", "/sign-me-up", "invalid-json",
     ["Invalid JSON", "/sign-me-up"]),
    ("order-wrong-shape", "POST", "/order-plz", "wrong-shape",
     ["newOrder https://127.0.0.1:{port}/order-plz gave no Location"]),
    ("finalize-reset", "POST", "/finalize-order/", "reset", ["/finalize-order/"]),
    ("certificate-garbage", "POST", "/certZ/", "garbage-pem",
     ["Unreadable certificate chain", "/certZ/"]),
    ("certificate-huge", "POST", "/certZ/", "huge", ["size limit", "/certZ/"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_ca_fault(pebble, fault_ca, acme_factory, backend, pki, case):
    _id, method, path, fault, words = case
    ca = fault_ca(pebble, [(method, path, fault, FAULTS)])
    gate = acme_factory.start(pebble, backend, ca_url=ca.url, timeout=30 + FAULTS * TIMEOUT_S,
                              env={BACKOFF_SCALE_ENV: str(SCALE),
                                   "TLSGATE_TEST_ACME_TIMEOUT": str(TIMEOUT_S)})
    # It recovered: the certificate from the third attempt is served.
    assert echo(gate.addr, client_ctx(pebble, pki.client)).ok, gate.log()
    assert log_lines_with(gate, "obtained", DOMAIN), gate.log()

    faulted = ca.faulted()
    assert len(faulted) == FAULTS, "the faults were not all met: %r" % ca.requests
    failures = log_lines_with(gate, "could not obtain a certificate for " + DOMAIN)
    assert len(failures) == FAULTS, "expected one message per failed attempt:\n" + gate.log()
    words = [w.format(port=ca.port) for w in words]
    for line in failures:
        missing = [w for w in words if w.lower() not in line.lower()]
        assert not missing, "the message does not name the problem (%r missing): %r" % (
            missing, line)
        assert "retrying in" in line, line
    # Backoff: each attempt starts no earlier than its scheduled wait after
    # the previous one failed (0.25 s, then 0.5 s).
    starts = [r[0] for r in ca.requests if r[1] == "GET" and r[2] == "/dir"]
    assert len(starts) == FAULTS + 1, "attempts (directory fetches): %r" % ca.requests
    waits = [5 * SCALE * 2 ** i for i in range(FAULTS)]
    for i, (a, b) in enumerate(zip(faulted, starts[1:])):
        assert b - a[0] >= waits[i] * 0.9, "attempt %d came %.3f s after the fault, before " \
            "its %.2f s wait: %r" % (i + 2, b - a[0], waits[i], ca.requests)
    assert gate.running(), gate.log()
    assert gate.stop() == 0, gate.log()
