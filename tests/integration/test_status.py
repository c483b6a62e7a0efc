"""The status port (issue 5): --status, --target-status, --metrics-prefix,
--enable-shutdown.

  /_status     Ghostunnel's JSON over HTTPS (server certificate, no client
               certificate), http://, unix: and systemd:; 503 when the backend
               check fails or tlsgate is not serving
  /_metrics    Ghostunnel's JSON list and Prometheus text, counters that move
               as clients connect
  /_shutdown   POST with --enable-shutdown: a graceful exit 0
"""
import datetime
import http.server as http_server
import os
import re
import signal
import socket
import ssl
import threading
import time

import pytest

import tg_daemon
from tg_http import http
from tg_clients import client_context, recv_exact, tcp_connect, tls_connect, try_echo
from tg_pebble import DOMAIN, client_ctx, echo
from tg_pebble import acme_factory, pebble, pebble_factory  # noqa: F401,F811 (fixtures)

# Ghostunnel 1.11.1's status handler, in its order ("backend_error" follows
# "backend_status" while the backend is down), and nothing else.
GHOSTUNNEL_FIELDS = ["ok", "status", "listen_address", "forward_address", "backend_ok",
                     "backend_status", "time", "last_reload", "hostname", "message",
                     "revision", "compiler"]
COUNTERS = ["conn.open", "accept.total", "accept.success", "accept.error", "accept.timeout",
            "accept.denied", "dial.error", "conn.timeout", "verify.cached"]
TIMER_SUFFIXES = ["count", "min", "max", "mean", "50-percentile", "75-percentile",
                  "95-percentile", "99-percentile"]
PROM_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{le="([^"]+)"\})? (\S+)$')


def status_ctx(pki):
    """Trusts the test CA, checks the name, presents no client certificate."""
    return client_context(pki.ca.cert_path, None)


def start_status(start_proxy, target, status="http", extra=(), sockdir=None, **kw):
    """Starts tlsgate with a status port: "https" (HOST:PORT), "http"
    (http://HOST:PORT) or "unix" (unix:PATH in sockdir). Sets .status_addr."""
    if status == "unix":
        path = os.path.join(sockdir, "status.sock")
        spec, addr = "unix:" + path, path
    else:
        port = tg_daemon.free_port()
        spec = ("http://127.0.0.1:%d" if status == "http" else "127.0.0.1:%d") % port
        addr = ("127.0.0.1", port)
    t = start_proxy(target, extra=["--status", spec] + list(extra), **kw)
    t.status_addr, t.status_spec = addr, spec
    return t


def metrics_json(addr, path="/_metrics", ctx=None):
    r = http(addr, path, ctx=ctx)
    assert r.status == 200, r
    assert r.headers["content-type"] == "application/json", r.headers
    items = r.json()
    assert isinstance(items, list) and items
    return {i["metric"]: i["value"] for i in items}, items


def metrics_prom(addr, path="/_metrics/prometheus", ctx=None):
    """Parses the text format strictly: HELP and TYPE before each family's
    samples, sample lines well formed. Returns ({name or name{le}: value}, types)."""
    r = http(addr, path, ctx=ctx)
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    text = r.body.decode()
    assert text.endswith("\n")
    values, types, helps = {}, {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split(" ")[2])
            continue
        if line.startswith("# TYPE "):
            _h, _t, name, typ = line.split(" ")
            assert name in helps, "TYPE before HELP for %s" % name
            types[name] = typ
            continue
        m = PROM_SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, _, le, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if types.get(
            re.sub(r"_(bucket|sum|count)$", "", name)) == "histogram" else name
        assert family in types, "sample %s without TYPE" % name
        values[name + ('{le="%s"}' % le if le else "")] = float(value)
    return values, types


def wait_metric(addr, name, expected, timeout=5.0):
    got = tg_daemon.wait_until(lambda: metrics_json(addr)[0].get(name) == expected, timeout)
    assert got, "%s is %r, expected %r" % (name, metrics_json(addr)[0].get(name), expected)


def rfc3339(s):
    return datetime.datetime.strptime(s.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z"
                                      if "." in s else "%Y-%m-%dT%H:%M:%S%z")


def version_of(binary):
    import subprocess
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


# ---------------------------------------------------------------------------
# /_status
def test_status_https_every_field(start_proxy, backend, pki, tlsgate_bin):
    t = start_status(start_proxy, backend, "https")
    before = time.time()
    ctx = status_ctx(pki)
    r = http(t.status_addr, ctx=ctx)
    assert r.status == 200, r
    assert r.headers["content-type"] == "application/json"
    assert r.headers["connection"] == "close"
    assert int(r.headers["content-length"]) == len(r.body)
    st = r.json()
    assert list(st) == GHOSTUNNEL_FIELDS, list(st)
    assert st["ok"] is True and st["status"] == "ok"
    assert st["listen_address"] == t.listen
    assert st["forward_address"] == backend.target
    assert st["backend_ok"] is True and st["backend_status"] == "ok"
    assert "backend_error" not in st  # omitted when ok, as in Ghostunnel
    assert abs(rfc3339(st["time"]).timestamp() - before) < 5
    assert st["last_reload"] == "0001-01-01T00:00:00Z"  # Go's zero time.Time
    assert st["hostname"] == socket.gethostname()
    assert st["message"] == "listening"
    assert st["revision"] == version_of(tlsgate_bin)
    assert st["compiler"] and isinstance(st["compiler"], str)

    # What Ghostunnel lacks, on a path of its own: the served certificate,
    # ACME (none here).
    r = http(t.status_addr, path="/_status/tlsgate", ctx=ctx)
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    x = r.json()
    cert = x["certificate"]
    assert sorted(cert["names"]) == sorted(["localhost", "127.0.0.1", "::1"]), cert
    assert cert["serial"] == "%x" % pki.server.cert.serial_number or \
        int(cert["serial"], 16) == pki.server.cert.serial_number
    na = pki.server.cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    assert rfc3339(cert["not_after"]) == na
    assert abs(cert["expires_in_seconds"] - (na.timestamp() - time.time())) < 10
    assert "CN=localhost" in cert["subject"]
    assert x["acme"] is None
    assert x["connections"] == 0

    # The status port serves the proxy's certificate and asks for none.
    raw = tcp_connect(t.status_addr)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    try:
        leaf = s.getpeercert(binary_form=True)
        from cryptography import x509
        assert x509.load_der_x509_certificate(leaf).serial_number == \
            pki.server.cert.serial_number
    finally:
        s.close()
    # HEAD: the same headers, no body.
    h = http(t.status_addr, method="HEAD", ctx=ctx)
    assert h.status == 200 and h.body == b"" and int(h.headers["content-length"]) > 0


def test_status_plain_http_and_head(start_proxy, backend):
    t = start_status(start_proxy, backend, "http")
    r = http(t.status_addr)
    assert r.status == 200, r
    assert r.json()["ok"] is True
    # A TLS client gets no TLS here.
    with pytest.raises((ssl.SSLError, OSError)):
        http(t.status_addr, ctx=ssl._create_unverified_context())
    h = http(t.status_addr, method="HEAD")
    assert h.status == 200 and h.body == b""


def test_status_unix(start_proxy, backend, sockdir):
    t = start_status(start_proxy, backend, "unix", sockdir=sockdir)
    st = http(t.status_addr).json()
    assert st["ok"] is True and st["backend_ok"] is True
    assert st["listen_address"] == t.listen
    assert t.stop() == 0
    assert not os.path.exists(t.status_addr), "the status socket file was left behind"


def test_status_systemd_socket(proxy_factory, backend, pki):
    """Both sockets from systemd: --listen systemd:https --status systemd:status."""
    https, status = tg_daemon.free_port(), tg_daemon.free_port()
    prefix = ["systemd-socket-activate", "-l", "127.0.0.1:%d" % https, "-l",
              "127.0.0.1:%d" % status, "--fdname=https:status", "-E", "NOTIFY_SOCKET"]
    t = proxy_factory.start(backend, listen="systemd:https", prefix=prefix, wait_ready=False,
                            extra=["--status", "systemd:status"])
    t.wait_log("Listening on", timeout=5)
    # The first connection execs tlsgate, which then serves it.
    r = http(("127.0.0.1", status), timeout=10)
    assert r.status == 200, r
    assert r.json()["listen_address"] == "systemd:https"
    o = try_echo(("127.0.0.1", https), client_context(pki.ca.cert_path, pki.client))
    assert o.echoed, o


def test_backend_error_is_english_whatever_the_locale(start_proxy):
    """backend_error is data for checks and dashboards: the system's error
    in English and lower case, as Go spells it, even when tlsgate runs in
    another language (LANGUAGE=de with a C.UTF-8 locale: glibc's German)."""
    dead = tg_daemon.free_port()
    t = start_status(start_proxy, "127.0.0.1:%d" % dead,
                     env={"LANGUAGE": "de", "LC_ALL": "C.UTF-8"})
    r = http(t.status_addr)
    assert r.status == 503, r
    assert r.json()["backend_error"] == "connect to 127.0.0.1:%d: connection refused" % dead, \
        r.json()


def test_backend_down_503_and_dial_error(start_proxy, pki):
    dead = tg_daemon.free_port()
    t = start_status(start_proxy, "127.0.0.1:%d" % dead, "https")
    r = http(t.status_addr, ctx=status_ctx(pki))
    assert r.status == 503, r
    st = r.json()
    assert st["ok"] is False and st["status"] == "critical"
    assert st["backend_ok"] is False and st["backend_status"] == "critical"
    assert "refused" in st["backend_error"].lower(), st["backend_error"]
    assert str(dead) in st["backend_error"]
    assert st["message"] == "listening"
    # A client that passes the handshake meets the dead target: a dial error.
    o = try_echo(t.addr, client_context(pki.ca.cert_path, pki.client))
    assert not o.echoed
    got = tg_daemon.wait_until(
        lambda: metrics_json(t.status_addr, ctx=status_ctx(pki))[0]["ghostunnel.dial.error"] == 1,
        5)
    assert got, metrics_json(t.status_addr, ctx=status_ctx(pki))[0]


def test_backend_goes_down_and_up(start_proxy, make_backend):
    b = make_backend("echo")
    port = b.port
    t = start_status(start_proxy, b)
    assert http(t.status_addr).status == 200
    b.stop()
    r = http(t.status_addr)
    assert r.status == 503 and r.json()["backend_ok"] is False, r
    make_backend("echo", port=port)
    assert http(t.status_addr).status == 200


class _HealthHandler(http_server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = {"/ok": 200, "/nocontent": 204, "/fail": 500, "/redirect": 302}.get(self.path, 404)
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def health_server():
    srv = http_server.ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield "http://127.0.0.1:%d" % srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("path,code", [("/ok", 200), ("/nocontent", 200), ("/fail", 503),
                                       ("/redirect", 503), ("/missing", 503)])
def test_target_status_url(start_proxy, backend, health_server, path, code):
    t = start_status(start_proxy, backend, extra=["--target-status", health_server + path])
    r = http(t.status_addr)
    assert r.status == code, r
    st = r.json()
    assert st["backend_ok"] is (code == 200)
    if code != 200:
        assert st["backend_status"] == "critical"
        assert health_server + path in st["backend_error"], st["backend_error"]
        assert re.search(r"status (500|302|404)", st["backend_error"]), st["backend_error"]


@pytest.mark.parametrize("case", ["status", "refused"])
def test_target_status_password_stays_private(start_proxy, backend, health_server, case):
    """A user and password in --target-status: /_status, which anyone who
    reaches the status port may read, and the log name the URL without the
    password, as Go's HTTP client writes it in Ghostunnel's backend_error."""
    if case == "status":
        url = health_server.replace("http://", "http://health:s3cret@") + "/fail"
    else:
        url = "http://health:s3cret@127.0.0.1:%d/ok" % tg_daemon.free_port()
    t = start_status(start_proxy, backend, extra=["--target-status", url],
                     env={"TLSGATE_LOG_LEVEL": "debug"})
    r = http(t.status_addr)
    assert r.status == 503, r
    error = r.json()["backend_error"]
    assert "s3cret" not in error, error
    assert url.replace(":s3cret@", "@") in error, error
    assert tg_daemon.wait_until(lambda: t.find_log("backend check failed"), 5), t.log()
    assert "s3cret" not in t.log(), t.log()


def test_target_status_hanging_is_bounded(start_proxy, backend):
    """A health URL that accepts and never answers: 503 after --connect-timeout,
    and other requests (metrics, the proxy) are served meanwhile."""
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)
    url = "http://127.0.0.1:%d/health" % hang.getsockname()[1]
    try:
        t = start_status(start_proxy, backend, extra=["--target-status", url,
                                                      "--connect-timeout", "1s"])
        results = []
        th = threading.Thread(target=lambda: results.append((http(t.status_addr), time.monotonic())))
        t0 = time.monotonic()
        th.start()
        time.sleep(0.2)
        assert metrics_json(t.status_addr)[0]["ghostunnel.accept.total"] == 0
        assert time.monotonic() - t0 < 0.9, "metrics waited for the backend check"
        th.join(5)
        r, done = results[0]
        assert r.status == 503, r
        assert "timed out" in r.json()["backend_error"], r.json()
        assert 0.8 < done - t0 < 3, "answered after %.2fs" % (done - t0)
    finally:
        hang.close()


def test_status_concurrent_requests_share_one_check(start_proxy, backend):
    t = start_status(start_proxy, backend)
    out = []
    ths = [threading.Thread(target=lambda: out.append(http(t.status_addr).status))
           for _ in range(20)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(10)
    assert out == [200] * 20, out


def test_status_draining(start_proxy, backend, pki):
    """After SIGTERM the status port keeps answering, 503 "stopping" (as
    Ghostunnel's status handler says once it stops), until exit."""
    t = start_status(start_proxy, backend, extra=["--shutdown-timeout", "10s"])
    s = tls_connect(t.addr, client_context(pki.ca.cert_path, pki.client))
    s.sendall(b"x")
    assert recv_exact(s, 1) == b"x"
    t.send_signal(signal.SIGTERM)
    t.notify.wait_for("STOPPING", "1", timeout=5)
    r = http(t.status_addr)
    assert r.status == 503, r
    assert r.json()["message"] == "stopping" and r.json()["ok"] is False
    assert http(t.status_addr, path="/_status/tlsgate").json()["connections"] == 1
    s.close()
    assert t.wait(5) == 0


# ---------------------------------------------------------------------------
# /_metrics
def test_metrics_move_with_clients(start_proxy, backend, pki):
    t = start_status(start_proxy, backend, access=("--allow-cn", "client"))
    m, items = metrics_json(t.status_addr)
    for name in COUNTERS:
        assert m["ghostunnel." + name] == 0, (name, m)
    host = socket.gethostname()
    for i in items:
        assert sorted(i) == ["hostname", "metric", "timestamp", "value"], i
        assert i["hostname"] == host
        assert isinstance(i["timestamp"], int) and abs(i["timestamp"] - time.time()) < 5
    for timer in ("conn.handshake", "conn.lifetime"):
        for suffix in TIMER_SUFFIXES:
            assert "ghostunnel.%s.%s" % (timer, suffix) in m, (timer, suffix)
    assert m["ghostunnel.cert.expiry-seconds"] > 86400

    allowed = try_echo(t.addr, client_context(pki.ca.cert_path, pki.client))
    assert allowed.echoed, allowed
    denied = try_echo(t.addr, client_context(pki.ca.cert_path, pki.client_ou))
    assert not denied.echoed, denied
    nocert = try_echo(t.addr, client_context(pki.ca.cert_path, None))
    assert not nocert.echoed, nocert
    wait_metric(t.status_addr, "ghostunnel.accept.total", 3)
    wait_metric(t.status_addr, "ghostunnel.conn.open", 0)

    m, _ = metrics_json(t.status_addr)
    assert m["ghostunnel.accept.success"] == 1, m
    assert m["ghostunnel.accept.error"] == 2, m        # denied + no certificate
    assert m["ghostunnel.verify.cached"] == 0, m       # three different clients
    assert m["ghostunnel.accept.denied"] == 1, m
    assert m["ghostunnel.accept.timeout"] == 0, m
    assert m["ghostunnel.dial.error"] == 0, m
    assert m["ghostunnel.conn.handshake.count"] == 2, m  # completed: allowed and denied
    assert m["ghostunnel.conn.lifetime.count"] == 3, m
    assert 0 < m["ghostunnel.conn.handshake.min"] <= m["ghostunnel.conn.handshake.max"] < 10 * 10**9
    assert m["ghostunnel.conn.handshake.min"] <= m["ghostunnel.conn.handshake.mean"] <= \
        m["ghostunnel.conn.handshake.max"]

    # The same numbers in Prometheus' format, under both paths.
    for path in ("/_metrics/prometheus", "/_metrics?format=prometheus"):
        p, types = metrics_prom(t.status_addr, path)
        assert p["ghostunnel_accept_total"] == 3 and types["ghostunnel_accept_total"] == "counter"
        assert p["ghostunnel_accept_success"] == 1
        assert p["ghostunnel_accept_error"] == 2
        assert p["ghostunnel_accept_denied"] == 1
        assert p["ghostunnel_conn_open"] == 0 and types["ghostunnel_conn_open"] == "gauge"
        assert types["ghostunnel_conn_handshake_seconds"] == "histogram"
        assert p["ghostunnel_conn_handshake_seconds_count"] == 2
        assert p['ghostunnel_conn_handshake_seconds_bucket{le="+Inf"}'] == 2
        assert p["ghostunnel_conn_lifetime_seconds_count"] == 3
        assert 0 < p["ghostunnel_conn_handshake_seconds_sum"] < 20
        assert p["ghostunnel_cert_expiry_seconds"] > 86400
        assert "ghostunnel_acme_renewals" not in p
    # And the JSON under its other names.
    for path in ("/_metrics/json", "/_metrics?format=json"):
        assert metrics_json(t.status_addr, path)[0]["ghostunnel.accept.total"] == 3


def test_verified_chains_are_cached_per_generation(start_proxy, backend, pki):
    """A client chain is verified and judged once per CA bundle and rules: the
    next connection with the same chain gets the same answer from the cache
    (allowed or denied), and a reload starts over."""
    t = start_status(start_proxy, backend, access=("--allow-cn", "client"))
    allowed = client_context(pki.ca.cert_path, pki.client)
    denied = client_context(pki.ca.cert_path, pki.client_ou)

    def connect(ctx, n_conns, cached, echoed):
        o = try_echo(t.addr, ctx)
        assert o.echoed == echoed, o
        wait_metric(t.status_addr, "ghostunnel.accept.total", n_conns)
        wait_metric(t.status_addr, "ghostunnel.conn.open", 0)
        m, _ = metrics_json(t.status_addr)
        assert m["ghostunnel.verify.cached"] == cached, (n_conns, m)

    connect(allowed, 1, 0, True)
    connect(allowed, 2, 1, True)
    connect(denied, 3, 1, False)
    connect(denied, 4, 2, False)      # a cached denial is still a denial
    assert len(t.find_log("access denied")) == 2, t.log()

    t.send_signal(signal.SIGHUP)
    t.wait_log("reloaded certificate")
    connect(allowed, 5, 2, True)      # a new generation verifies again
    connect(allowed, 6, 3, True)


def test_metrics_open_gauge_and_conn_timeout(start_proxy, backend, pki):
    t = start_status(start_proxy, backend, "https", extra=["--max-conn-lifetime", "1500ms"])
    ctx = status_ctx(pki)
    held = []
    for _ in range(2):
        s = tls_connect(t.addr, client_context(pki.ca.cert_path, pki.client))
        s.sendall(b"x")
        assert recv_exact(s, 1) == b"x"
        held.append(s)
    m, _ = metrics_json(t.status_addr, ctx=ctx)
    assert m["ghostunnel.conn.open"] == 2, m
    p, _ = metrics_prom(t.status_addr, ctx=ctx)
    assert p["ghostunnel_conn_open"] == 2
    assert http(t.status_addr, path="/_status/tlsgate", ctx=ctx).json()["connections"] == 2
    held.pop().close()
    assert tg_daemon.wait_until(
        lambda: metrics_json(t.status_addr, ctx=ctx)[0]["ghostunnel.conn.open"] == 1, 5)
    # --max-conn-lifetime ends the other one: a connection timeout.
    assert tg_daemon.wait_until(
        lambda: metrics_json(t.status_addr, ctx=ctx)[0]["ghostunnel.conn.open"] == 0, 5)
    m, _ = metrics_json(t.status_addr, ctx=ctx)
    assert m["ghostunnel.conn.timeout"] == 1, m
    assert m["ghostunnel.accept.success"] == 2 and m["ghostunnel.conn.lifetime.count"] == 2
    held[0].close()


def test_metrics_prefix(start_proxy, backend, pki):
    t = start_status(start_proxy, backend, extra=["--metrics-prefix", "gate.x-1"])
    assert try_echo(t.addr, client_context(pki.ca.cert_path, pki.client)).echoed
    wait_metric(t.status_addr, "gate.x-1.accept.total", 1)
    m, _ = metrics_json(t.status_addr)
    assert all(k.startswith("gate.x-1.") for k in m), list(m)
    p, types = metrics_prom(t.status_addr)
    assert p["gate_x_1_accept_total"] == 1
    assert all(k.startswith("gate_x_1_") for k in p), list(p)


# ---------------------------------------------------------------------------
# /_shutdown, errors, limits
def test_shutdown_endpoint(start_proxy, backend, pki):
    t = start_status(start_proxy, backend, "https", extra=["--enable-shutdown"])
    ctx = status_ctx(pki)
    r = http(t.status_addr, "/_shutdown", ctx=ctx)
    assert r.status == 405 and r.headers["allow"] == "POST", r
    r = http(t.status_addr, "/_shutdown", method="PUT", ctx=ctx)
    assert r.status == 405, r
    assert t.running()
    r = http(t.status_addr, "/_shutdown", method="POST", body=b"please", ctx=ctx)
    assert r.status == 200, r
    assert t.wait(5) == 0, "POST /_shutdown should end the process with 0:\n" + t.log()
    assert t.notify.wait_for("STOPPING", "1", timeout=2), t.notify.messages
    t.wait_log("shutdown requested by POST /_shutdown")


def test_shutdown_needs_the_flag(start_proxy, backend):
    t = start_status(start_proxy, backend)
    r = http(t.status_addr, "/_shutdown", method="POST")
    assert r.status == 404, r
    assert t.running()


def test_http_errors(start_proxy, backend):
    t = start_status(start_proxy, backend)
    a = t.status_addr
    assert http(a, "/nope").status == 404
    assert http(a, "/_status/x").status == 404
    assert http(a, "/").status == 404
    r = http(a, "/_status", method="POST", body=b"x")
    assert r.status == 405 and r.headers["allow"] == "GET, HEAD", r
    assert http(a, "/_metrics", method="DELETE").status == 405
    assert http(a, raw=b"GARBAGE\r\n\r\n").status == 400
    assert http(a, raw=b"GET /_status HTTP/2.0\r\n\r\n").status == 400
    assert http(a, raw=b"GET _status HTTP/1.1\r\n\r\n").status == 400
    assert http(a, raw=b"G\x00T /_status HTTP/1.1\r\n\r\n").status == 400
    big = b"GET /_status HTTP/1.1\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n"
    assert http(a, raw=big).status == 431
    # HTTP/1.0, bare LF line ends, absolute-form, a query string.
    assert http(a, raw=b"GET /_status HTTP/1.0\n\n").status == 200
    assert http(a, raw=b"GET http://status/_status HTTP/1.1\r\n\r\n").status == 200
    assert http(a, "/_status?verbose=1").status == 200
    assert t.running()


def test_slowloris_is_cut_without_blocking(start_proxy, backend, pki):
    """--connect-timeout bounds the handshake and the request on the status
    port; slow clients block neither other status requests nor the proxy."""
    t = start_status(start_proxy, backend, "https", extra=["--connect-timeout", "1s"])
    ctx = status_ctx(pki)
    silent = tcp_connect(t.status_addr)                   # never sends a ClientHello
    partial = ctx.wrap_socket(tcp_connect(t.status_addr), server_hostname="localhost")
    partial.sendall(b"GET /_sta")                         # never finishes the request
    trickle = tcp_connect(t.addr)                         # the proxy: never handshakes
    t0 = time.monotonic()
    for _ in range(3):
        q0 = time.monotonic()
        assert http(t.status_addr, ctx=ctx).status == 200
        assert time.monotonic() - q0 < 0.5
    assert try_echo(t.addr, client_context(pki.ca.cert_path, pki.client)).echoed
    for s in (silent, partial):
        s.settimeout(5)
        try:
            assert s.recv(100) == b""
        except (ConnectionResetError, ssl.SSLError):
            pass
        took = time.monotonic() - t0
        assert 0.7 < took < 3.5, "cut after %.2fs" % took
        s.close()
    # The proxy's own handshake timeout counts as one.
    trickle.settimeout(5)
    assert trickle.recv(100) == b""
    trickle.close()
    m, _ = metrics_json(t.status_addr, ctx=ctx)
    assert m["ghostunnel.accept.timeout"] == 1 and m["ghostunnel.accept.error"] == 1, m
    assert t.running()


@pytest.mark.parametrize("args,needle", [
    (["--target-status", "http://localhost:1/"], "--target-status requires --status"),
    (["--enable-shutdown"], "--enable-shutdown requires --status"),
    (["--status", "http://127.0.0.1:9", "--target-status", "ftp://x/"], "not an http(s) URL"),
    (["--metrics-prefix", "9lives"], "--metrics-prefix"),
    (["--status", "nonsense"], "--status"),
])
def test_flag_errors(tlsgate_bin, pki, backend, args, needle):
    import subprocess
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % tg_daemon.free_port(),
            "--target", backend.target, "--cert", pki.server.cert_path, "--key",
            pki.server.key_path, "--allow-all"] + args
    p = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                       env=dict(os.environ, LANG="C", LC_ALL="C"))
    assert p.returncode == 2, p
    assert needle in p.stderr, p.stderr


def test_status_port_in_use(start_proxy, backend):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        with pytest.raises(tg_daemon.StartupError) as e:
            start_proxy(backend, extra=["--status", "http://127.0.0.1:%d" % busy.getsockname()[1]],
                        expect_exit=1)
        assert "--status 127.0.0.1:%d" % busy.getsockname()[1] in str(e.value)
    finally:
        busy.close()


# ---------------------------------------------------------------------------
# ACME: the renewer's state on /_status and its counters on /_metrics
def test_status_with_acme(pebble, acme_factory, backend, pki):
    port = tg_daemon.free_port()
    gate = acme_factory.start(pebble, backend, timeout=15,
                              extra=["--status", "http://127.0.0.1:%d" % port])
    addr = ("127.0.0.1", port)
    st = http(addr).json()
    assert st["ok"] is True, st
    x = http(addr, path="/_status/tlsgate").json()
    acme = x["acme"]
    assert acme["name"] == DOMAIN and acme["state"] == "valid", acme
    assert acme["certificates_obtained"] == 1 and acme["renewal_failures"] == 0, acme
    assert acme["last_renewal_error"] is None
    assert x["certificate"]["names"] == [DOMAIN]
    p, types = metrics_prom(addr)
    assert p["ghostunnel_acme_renewals"] == 1 and types["ghostunnel_acme_renewals"] == "counter"
    assert p["ghostunnel_acme_renewal_failures"] == 0
    assert p["ghostunnel_cert_expiry_seconds"] > 3600
    assert echo(gate.addr, client_ctx(pebble, pki.client)).ok


def test_status_while_obtaining(acme_factory, backend):
    """The CA is down: not ready, 503 "initializing", the renewer's error."""
    dead = tg_daemon.free_port()
    port = tg_daemon.free_port()
    gate = acme_factory.start(None, backend, ca_url="https://127.0.0.1:%d/dir" % dead,
                              wait_ready=False, extra=["--status", "http://127.0.0.1:%d" % port])
    addr = ("127.0.0.1", port)

    def failed_once():
        try:
            x = http(addr, path="/_status/tlsgate").json()
        except OSError:
            return None
        return x if x["acme"]["renewal_failures"] >= 1 else None
    st = tg_daemon.wait_until(failed_once, 5)
    assert st, "no failed attempt reported:\n" + gate.log()
    r = http(addr)
    assert r.status == 503
    st = r.json()
    assert st["ok"] is False and st["message"] == "initializing", st
    x = http(addr, path="/_status/tlsgate").json()
    assert x["certificate"] is None
    acme = x["acme"]
    assert acme["state"] in ("retrying", "obtaining"), acme
    assert acme["certificates_obtained"] == 0
    assert str(dead) in acme["last_renewal_error"] or "refused" in acme["last_renewal_error"].lower()
    p, _ = metrics_prom(addr)
    assert p["ghostunnel_acme_renewal_failures"] >= 1
    assert "ghostunnel_cert_expiry_seconds" not in p
