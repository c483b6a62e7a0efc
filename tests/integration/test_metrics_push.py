"""Metrics as Ghostunnel names and ships them (issue 12): the default prefix
"ghostunnel", --metrics-url (the /_metrics JSON POSTed every
--metrics-interval) and --metrics-graphite (Graphite's plaintext protocol over
TCP at the same interval), each checked against a real receiver written here:
an http.server that records the POSTs and a TCP listener that parses the
lines. Receivers that are down, come back, or hang are logged once per change
and never hold up the proxy.
"""
import base64
import http.server as http_server
import json
import re
import signal
import socket
import ssl
import threading
import time

import pytest

import tg_daemon
from tg_clients import client_context, try_echo
from test_status import COUNTERS, TIMER_SUFFIXES, metrics_json, metrics_prom, start_status

GRAPHITE_LINE = re.compile(r"^([A-Za-z_:][\w:.-]*) (-?\d+(?:\.\d\d)?) (\d+)$")
GRAPHITE_TIMER_FIELDS = ["count", "count_ps", "min", "max", "mean", "std-dev", "50-percentile",
                         "75-percentile", "95-percentile", "99-percentile", "999-percentile",
                         "one-minute", "five-minute", "fifteen-minute", "mean-rate"]


def slow(seconds):
    return seconds * tg_daemon.slow_factor()


# ---------------------------------------------------------------------------
# Receivers
class PostReceiver:
    """A real HTTP server on a loopback port recording every POST as
    (monotonic arrival time, path, headers, body); it can be stopped and
    started again on the same port. With tls (a server SSLContext): HTTPS."""

    def __init__(self, port=None, tls=None):
        self.port = port or tg_daemon.free_port()
        self.tls = tls
        self.posts = []
        self.status = 200
        self.lock = threading.Lock()
        self.srv = None
        self.thread = None

    def url(self, path="/ingest"):
        return "%s://127.0.0.1:%d%s" % ("https" if self.tls else "http", self.port, path)

    def start(self):
        rx = self

        class Handler(http_server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(min(n, 1 << 20))
                with rx.lock:
                    rx.posts.append({"time": time.monotonic(), "path": self.path,
                                     "headers": dict(self.headers), "body": body})
                self.send_response(rx.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http_server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.srv.daemon_threads = True
        if self.tls:
            self.srv.socket = self.tls.wrap_socket(self.srv.socket, server_side=True,
                                                   do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.srv.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.srv:
            self.srv.shutdown()
            self.srv.server_close()
            self.thread.join(5)
            self.srv = None

    def count(self):
        with self.lock:
            return len(self.posts)

    def wait_for(self, pred, timeout):
        """The first post (from the oldest) for which pred(post) holds."""
        def find():
            with self.lock:
                return next((p for p in self.posts if pred(p)), None)
        found = tg_daemon.wait_until(find, timeout)
        assert found, "no matching POST within %.1fs; %d received" % (timeout, self.count())
        return found

    def wait_count(self, n, timeout):
        assert tg_daemon.wait_until(lambda: self.count() >= n, timeout), \
            "%d POSTs within %.1fs, expected %d" % (self.count(), timeout, n)


class GraphiteReceiver:
    """A real TCP listener on a loopback port: each connection is read to its
    end (bounded in time and size) and kept as one batch of parsed lines."""

    def __init__(self, port=None):
        self.port = port or tg_daemon.free_port()
        self.batches = []       # (monotonic time, [(name, value, timestamp)], raw text)
        self.bad = []           # lines that are not name value timestamp
        self.lock = threading.Lock()
        self.sock = None
        self.thread = None

    def start(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        s.settimeout(0.1)
        self.sock = s
        self.thread = threading.Thread(target=self._loop, args=(s,), daemon=True)
        self.thread.start()
        return self

    def _loop(self, s):
        while self.sock is s:
            try:
                c, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            data = bytearray()
            c.settimeout(5)
            deadline = time.monotonic() + 5
            try:
                while len(data) < (1 << 20) and time.monotonic() < deadline:
                    d = c.recv(65536)
                    if not d:
                        break
                    data += d
            except OSError:
                pass
            c.close()
            text = data.decode("utf-8", "replace")
            lines = []
            bad = []
            for line in text.splitlines():
                m = GRAPHITE_LINE.match(line)
                if m:
                    lines.append((m.group(1), float(m.group(2)), int(m.group(3))))
                else:
                    bad.append(line)
            with self.lock:
                self.batches.append((time.monotonic(), lines, text))
                self.bad += bad

    def stop(self):
        assert not self.bad, "not Graphite plaintext lines: %r" % self.bad[:5]
        s, self.sock = self.sock, None
        if s:
            s.close()
            self.thread.join(5)

    def count(self):
        with self.lock:
            return len(self.batches)

    def wait_for(self, pred, timeout):
        def find():
            with self.lock:
                return next(({n: v for n, v, _ in b[1]} for b in self.batches if pred(b)), None)
        found = tg_daemon.wait_until(find, timeout)
        assert found, "no matching batch within %.1fs; %d received" % (timeout, self.count())
        return found


@pytest.fixture
def post_receiver():
    rx = PostReceiver().start()
    yield rx
    rx.stop()


@pytest.fixture
def graphite_receiver():
    rx = GraphiteReceiver().start()
    yield rx
    rx.stop()


def read_to_eof(c, timeout):
    """What the peer still sends until it closes; fails if it does not
    close within timeout."""
    c.settimeout(timeout)
    data = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = c.recv(65536)
        if not d:
            return bytes(data)
        data += d
    raise AssertionError("no EOF within %.1fs" % timeout)


def post_values(post):
    return {i["metric"]: i["value"] for i in json.loads(post["body"])}


def echo_ok(t, pki):
    o = try_echo(t.addr, client_context(pki.ca.cert_path, pki.client))
    assert o.echoed, o


# ---------------------------------------------------------------------------
# The prefix
def test_default_prefix_is_ghostunnel(start_proxy, backend, pki):
    """Dashboards keyed on Ghostunnel's names work unchanged: ghostunnel.* in
    the JSON, ghostunnel_* in Prometheus' format."""
    t = start_status(start_proxy, backend)
    echo_ok(t, pki)
    assert tg_daemon.wait_until(
        lambda: metrics_json(t.status_addr)[0].get("ghostunnel.accept.total") == 1, slow(5))
    m, _ = metrics_json(t.status_addr)
    assert all(k.startswith("ghostunnel.") for k in m), list(m)
    for name in COUNTERS:
        assert "ghostunnel." + name in m, name
    p, types = metrics_prom(t.status_addr)
    assert all(k.startswith("ghostunnel_") for k in p), list(p)
    assert p["ghostunnel_accept_total"] == 1 and types["ghostunnel_accept_total"] == "counter"
    assert types["ghostunnel_conn_handshake_seconds"] == "histogram"


def test_prefix_tlsgate_still_works(start_proxy, backend, pki):
    t = start_status(start_proxy, backend, extra=["--metrics-prefix", "tlsgate"])
    echo_ok(t, pki)
    assert tg_daemon.wait_until(
        lambda: metrics_json(t.status_addr)[0].get("tlsgate.accept.total") == 1, slow(5))
    m, _ = metrics_json(t.status_addr)
    assert all(k.startswith("tlsgate.") for k in m), list(m)
    p, _ = metrics_prom(t.status_addr)
    assert p["tlsgate_accept_total"] == 1
    assert all(k.startswith("tlsgate_") for k in p), list(p)


# ---------------------------------------------------------------------------
# --metrics-url
def test_metrics_url_posts_the_json_at_the_interval(start_proxy, backend, pki, post_receiver):
    rx = post_receiver
    url = rx.url("/ingest")
    t = start_status(start_proxy, backend, extra=["--metrics-url", url,
                                                  "--metrics-interval", "500ms"])
    t.wait_log("posting metrics to %s every 500ms" % url)
    first = rx.wait_for(lambda p: True, slow(5))
    # The first one an interval after the start, as Ghostunnel's ticker.
    assert first["time"] - t.start_time >= 0.4
    assert first["path"] == "/ingest"
    assert first["headers"]["Content-Type"] == "application/json", first["headers"]
    items = json.loads(first["body"])
    host = socket.gethostname()
    for i in items:
        assert sorted(i) == ["hostname", "metric", "timestamp", "value"], i
        assert i["hostname"] == host and i["metric"].startswith("ghostunnel."), i
        assert isinstance(i["timestamp"], int) and abs(i["timestamp"] - time.time()) < slow(5)
    values = post_values(first)
    assert values["ghostunnel.accept.total"] == 0, values
    for timer in ("conn.handshake", "conn.lifetime"):
        for suffix in TIMER_SUFFIXES:
            assert "ghostunnel.%s.%s" % (timer, suffix) in values
    # The same list as /_metrics serves.
    assert sorted(values) == sorted(metrics_json(t.status_addr)[0])

    # The values move with the traffic.
    echo_ok(t, pki)
    moved = rx.wait_for(lambda p: post_values(p)["ghostunnel.conn.lifetime.count"] == 1,
                        slow(5))
    v = post_values(moved)
    assert v["ghostunnel.accept.total"] == 1 and v["ghostunnel.accept.success"] == 1, v
    assert v["ghostunnel.conn.handshake.count"] == 1 and v["ghostunnel.conn.open"] == 0, v
    assert v["ghostunnel.conn.handshake.min"] > 0, v

    # And keep coming, one per interval.
    n = rx.count()
    rx.wait_count(n + 4, slow(6))
    with rx.lock:
        times = [p["time"] for p in rx.posts]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # A late tick is followed by an early one (a steady rhythm): bound the
    # average from below, each gap from above.
    assert (times[-1] - times[0]) / len(gaps) > 0.4, gaps
    assert all(g < slow(1.5) for g in gaps), gaps
    assert not t.find_log("failed"), t.log()


def test_metrics_url_http_error_is_a_failure(start_proxy, backend, post_receiver):
    post_receiver.status = 503
    url = post_receiver.url("/m")
    t = start_proxy(backend, extra=["--metrics-url", url, "--metrics-interval", "300ms"])
    line = t.wait_log("metrics post to %s failed" % url, timeout=5)
    assert "HTTP status 503" in line, line
    post_receiver.status = 204
    t.wait_log("metrics post to %s works again" % url, timeout=5)


def test_metrics_url_password_reaches_the_receiver_not_the_log(start_proxy, backend,
                                                               post_receiver):
    """user:password in the URL is HTTP basic authentication for the
    receiver; no log line shows the password, not even at debug level."""
    url = post_receiver.url("/m").replace("http://", "http://metrics:s3cret@")
    shown = post_receiver.url("/m").replace("http://", "http://metrics@")
    t = start_proxy(backend, extra=["--metrics-url", url, "--metrics-interval", "300ms"],
                    env={"TLSGATE_LOG_LEVEL": "debug"})
    t.wait_log("posting metrics to %s every 300ms" % shown)
    post = post_receiver.wait_for(lambda p: True, slow(5))
    assert post["headers"]["Authorization"] == \
        "Basic " + base64.b64encode(b"metrics:s3cret").decode(), post["headers"]
    post_receiver.status = 401
    t.wait_log("metrics post to %s failed: HTTP status 401" % shown, timeout=5)
    assert t.find_log("HTTP POST %s" % shown), t.log()      # the client's debug line
    assert "s3cret" not in t.log(), t.log()


def test_metrics_url_https_is_verified_against_cacert(start_proxy, backend, pki):
    """As in Ghostunnel, an https receiver is verified against --cacert (the
    system store only without it): a receiver with a certificate from that
    CA gets the posts, under another CA it is refused."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server.cert_path, pki.server.key_path)
    rx = PostReceiver(tls=ctx).start()
    try:
        url = rx.url("/secure")
        no_env = {"SSL_CERT_FILE": ""}
        t = start_proxy(backend, extra=["--metrics-url", url, "--metrics-interval", "300ms"],
                        env=no_env)
        post = rx.wait_for(lambda p: True, slow(5))
        assert post["path"] == "/secure" and "ghostunnel.accept.total" in post_values(post)
        assert not t.find_log("failed"), t.log()

        other = start_proxy(backend, extra=["--metrics-url", url, "--metrics-interval", "300ms"],
                            creds=["--cacert", pki.other_ca.cert_path, "--cert",
                                   pki.server.cert_path, "--key", pki.server.key_path],
                            env=no_env)
        line = other.wait_log("metrics post to %s failed" % url, timeout=5)
        assert "certificate" in line.lower(), line
    finally:
        rx.stop()


def wait_count_of(t, needle, n, timeout):
    assert tg_daemon.wait_until(lambda: len(t.find_log(needle)) >= n, slow(timeout)), \
        "fewer than %d lines with %r; log:\n%s" % (n, needle, t.log())


@pytest.mark.parametrize("kind", ["url", "graphite"])
def test_receiver_down_then_up_logged_once(start_proxy, backend, kind):
    """A receiver that is down: one warning, a retry at every interval (seen
    at debug level), one line when it works again; down again, one more."""
    port = tg_daemon.free_port()
    if kind == "url":
        rx = PostReceiver(port)
        flag, what = rx.url("/m"), "metrics post to %s" % rx.url("/m")
    else:
        rx = GraphiteReceiver(port)
        flag, what = "127.0.0.1:%d" % port, "metrics push to Graphite at 127.0.0.1:%d" % port
    t = start_proxy(backend, extra=["--metrics-" + kind, flag, "--metrics-interval", "300ms"],
                    env={"TLSGATE_LOG_LEVEL": "debug"})
    try:
        warned = "warning: %s failed" % what
        line = t.wait_log(warned, timeout=5)
        assert "refused" in line.lower(), line
        # More attempts, each one failing quietly.
        wait_count_of(t, "%s failed" % what, 4, 5)
        assert len(t.find_log(warned)) == 1, t.log()

        rx.start()
        t.wait_log("%s works again" % what, timeout=5)
        assert tg_daemon.wait_until(lambda: rx.count() >= 1, slow(5))
        assert len(t.find_log(warned)) == 1, t.log()
        assert len(t.find_log("%s works again" % what)) == 1

        rx.stop()
        wait_count_of(t, warned, 2, 5)
        n = len(t.find_log("%s failed" % what))
        wait_count_of(t, "%s failed" % what, n + 2, 5)
        assert len(t.find_log(warned)) == 2, t.log()
        assert len(t.find_log("%s works again" % what)) == 1
        assert t.running()
    finally:
        rx.stop()


def test_metrics_url_hanging_receiver_does_not_stall(start_proxy, backend, pki):
    """A receiver that takes the request and never answers: connections and
    the status port are served meanwhile, the post times out after the
    interval, and the next interval tries again on a new connection."""
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)
    hang.settimeout(slow(6))
    url = "http://127.0.0.1:%d/m" % hang.getsockname()[1]
    held = []
    try:
        t = start_status(start_proxy, backend, extra=["--metrics-url", url,
                                                      "--metrics-interval", "2s"])
        c, _ = hang.accept()
        held.append(c)
        t_request = time.monotonic()
        c.settimeout(slow(5))
        assert c.recv(4096).startswith(b"POST /m HTTP/1.1\r\n")
        # The post hangs for up to 2 s: the proxy answers meanwhile, each
        # time well before the post gives up.
        served = 0
        while served < 3 and time.monotonic() - t_request < 1.2:
            t0 = time.monotonic()
            echo_ok(t, pki)
            assert metrics_json(t.status_addr)[0]["ghostunnel.accept.total"] == served + 1
            assert time.monotonic() - t0 < slow(0.8)
            served += 1
        assert served >= 1 and not t.find_log("metrics post to %s failed" % url)
        line = t.wait_log("metrics post to %s failed" % url, timeout=5)
        failed = time.monotonic()
        assert "timed out" in line, line
        assert 1.5 < failed - t_request < 2 + slow(1.5)
        # tlsgate let go of that connection, and tries again on a new one.
        read_to_eof(c, slow(3))
        c2, _ = hang.accept()
        held.append(c2)
        assert t.running()
    finally:
        for c in held:
            c.close()
        hang.close()


# ---------------------------------------------------------------------------
# --metrics-graphite
def test_graphite_lines(start_proxy, backend, pki, graphite_receiver):
    rx = graphite_receiver
    spec = "127.0.0.1:%d" % rx.port
    t = start_status(start_proxy, backend, extra=["--metrics-graphite", spec,
                                                  "--metrics-interval", "500ms"])
    t.wait_log("sending metrics to Graphite at %s every 500ms" % spec)
    first = rx.wait_for(lambda b: True, slow(5))
    with rx.lock:
        when, lines, text = rx.batches[0]
    assert when - t.start_time >= 0.4
    assert text.endswith("\n")
    for name, _value, ts in lines:
        assert name.startswith("ghostunnel."), name
        assert abs(ts - time.time()) < slow(5), (name, ts)
    # go-metrics-graphite's shape for Ghostunnel's registry: counters (and
    # the conn.open counter) as .count/.count_ps, gauges as .value, timers
    # expanded.
    for name in COUNTERS:
        assert "ghostunnel.%s.count" % name in first and "ghostunnel.%s.count_ps" % name in first
    for timer in ("conn.handshake", "conn.lifetime"):
        for field in GRAPHITE_TIMER_FIELDS:
            assert "ghostunnel.%s.%s" % (timer, field) in first, (timer, field)
    assert first["ghostunnel.cert.expiry-seconds.value"] > 86400
    assert first["ghostunnel.accept.total.count"] == 0
    assert len(first) == len(lines), "a name twice in one batch"

    echo_ok(t, pki)
    moved = rx.wait_for(lambda b: {n: v for n, v, _ in b[1]}.get(
        "ghostunnel.conn.lifetime.count") == 1, slow(5))
    assert moved["ghostunnel.accept.total.count"] == 1
    assert moved["ghostunnel.accept.success.count"] == 1
    assert moved["ghostunnel.conn.handshake.count"] == 1
    assert 0 < moved["ghostunnel.conn.handshake.min"] == moved["ghostunnel.conn.handshake.max"]
    # count_ps is the count over the interval (0.5 s), as go-metrics-graphite has it.
    assert moved["ghostunnel.accept.total.count_ps"] == 2.0
    m, _ = metrics_json(t.status_addr)
    assert moved["ghostunnel.conn.handshake.min"] == m["ghostunnel.conn.handshake.min"]

    # One connection per push, each with the whole set.
    n = rx.count()
    assert tg_daemon.wait_until(lambda: rx.count() >= n + 3, slow(5))
    with rx.lock:
        assert len({len(b[1]) for b in rx.batches}) == 1
    assert not t.find_log("failed"), t.log()


def test_graphite_connect_that_hangs_times_out(start_proxy, backend, pki):
    """A Graphite server whose accept queue is full drops the SYN: the connect
    hangs. The push gives up after the interval; the proxy serves meanwhile."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    filler = socket.create_connection(full.getsockname(), timeout=5)
    spec = "127.0.0.1:%d" % full.getsockname()[1]
    try:
        t = start_proxy(backend, extra=["--metrics-graphite", spec, "--metrics-interval", "1s"])
        for _ in range(3):
            echo_ok(t, pki)
        line = t.wait_log("metrics push to Graphite at %s failed" % spec, timeout=6)
        assert "timed out after 1s" in line, line
        assert time.monotonic() - t.start_time >= 1.9
        echo_ok(t, pki)
        assert t.running()
    finally:
        filler.close()
        full.close()


def test_both_destinations_and_reload(start_proxy, backend, post_receiver, graphite_receiver):
    """Both at once, with the prefix given; a reload with the same settings
    warns about nothing, a changed destination needs a restart."""
    spec = "127.0.0.1:%d" % graphite_receiver.port
    t = start_proxy(backend, extra=["--metrics-url", post_receiver.url(),
                                    "--metrics-graphite", spec, "--metrics-interval", "300ms",
                                    "--metrics-prefix", "edge.gw"])
    post = post_receiver.wait_for(lambda p: True, slow(5))
    assert "edge.gw.accept.total" in post_values(post)
    batch = graphite_receiver.wait_for(lambda b: True, slow(5))
    assert "edge.gw.accept.total.count" in batch
    t.send_signal(signal.SIGHUP)
    t.wait_log("reloaded certificate")
    assert not t.find_log("restart to apply"), t.log()
    n = post_receiver.count()
    post_receiver.wait_count(n + 2, slow(5))


# ---------------------------------------------------------------------------
# Bad flags
@pytest.mark.parametrize("args,rc,needle", [
    (["--metrics-url", "ftp://m.example/"], 2,
     '--metrics-url: "ftp://m.example/" is not an http(s) URL'),
    (["--metrics-url", "127.0.0.1:9"], 2, '--metrics-url: "127.0.0.1:9" is not an http(s) URL'),
    # Refused for its scheme: the message names the URL, not its password.
    (["--metrics-url", "ftp://metrics:s3cret@m.example/"], 2,
     '--metrics-url: "ftp://metrics@m.example/" is not an http(s) URL'),
    (["--metrics-graphite", "unix:/tmp/graphite.sock"], 2,
     '--metrics-graphite: "unix:/tmp/graphite.sock" must be HOST:PORT'),
    (["--metrics-graphite", "localhost"], 2, '--metrics-graphite: invalid address "localhost"'),
    (["--metrics-graphite", ":2003"], 2, '--metrics-graphite: ":2003" must be HOST:PORT'),
    (["--metrics-interval", "0"], 2, "--metrics-interval: must not be zero"),
    (["--metrics-interval", "often"], 2, '--metrics-interval: invalid duration "often"'),
    # Resolved at start-up (an IPv6 zone that does not exist: no DNS query).
    (["--metrics-graphite", "[fe80::1%nosuchif0]:2003"], 1,
     "--metrics-graphite [fe80::1%nosuchif0]:2003: cannot resolve"),
])
def test_flag_errors(tlsgate_bin, pki, backend, args, rc, needle):
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % tg_daemon.free_port(),
            "--target", backend.target, "--cert", pki.server.cert_path, "--key",
            pki.server.key_path, "--allow-all"] + args
    code, _out, err = tg_daemon.run_once(argv, env={"LANG": "C", "LC_ALL": "C"})
    assert code == rc, (code, err)
    assert needle in err, err
    assert "s3cret" not in err, err
