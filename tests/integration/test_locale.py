"""What programs read stays in one notation under any locale: a tlsgate run
with LANG and LC_ALL set to German (decimal comma), as systemd hands a
service the system's locale.conf, still writes '.' in the Prometheus text
(le="0.001"), in the metrics JSON on the status port and in the one it
POSTs, and in the Graphite lines, and reads a fractional duration.

The German locale must be generated (scripts/deps.sh does it with
localedef). Not compiled into a private LOCPATH: with LOCPATH set, glibc's
newlocale(), which p11-kit calls while GnuTLS loads, leaks its copy of the
path, and valgrind and LeakSanitizer would report that as tlsgate's.
"""
import json
import math
import os
import re
import subprocess
import time

import pytest

import tg_daemon
from tg_clients import client_context, try_echo
from tg_http import http
from test_metrics_push import GraphiteReceiver, PostReceiver
from test_status import start_status

GERMAN = "de_DE.UTF-8"

# Prometheus' text format: a sample is NAME[{LABELS}] VALUE; a value (and an
# le bound) is a Go float: digits with an optional '.' fraction and exponent,
# or NaN/+Inf/-Inf. Never a comma.
PROM_FLOAT = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf)"
PROM_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{le="(%s)"\})? (%s)$'
                         % (PROM_FLOAT, PROM_FLOAT))
PROM_COMMENT = re.compile(r"^# (?:HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* "
                          r"(?:counter|gauge|histogram))$")
# Graphite plaintext: NAME VALUE TIMESTAMP, the value an integer or %.2f.
GRAPHITE_LINE = re.compile(r"^([A-Za-z_:][\w:.-]*) (-?\d+(?:\.\d\d)?) (\d+)$")


def slow(seconds):
    return seconds * tg_daemon.slow_factor()


def _decimal_point(env):
    """The decimal point the C library uses under env, or None."""
    e = dict(os.environ)
    e.update(env)
    try:
        p = subprocess.run(["locale", "decimal_point"], env=e, capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0 or "Cannot set" in p.stderr or "cannot" in p.stderr.lower():
        return None
    return p.stdout.strip()


@pytest.fixture(scope="module")
def german_env():
    """Environment variables under which the C library speaks German."""
    env = {"LANG": GERMAN, "LC_ALL": GERMAN}
    if _decimal_point(env) != ",":
        pytest.skip("the de_DE.UTF-8 locale is not generated (scripts/deps.sh generates it)")
    return env


def connect(t, pki):
    o = try_echo(t.addr, client_context(pki.ca.cert_path, pki.client))
    assert o.echoed, o


def check_prometheus(text):
    """Every line is a HELP, a TYPE or a sample in the text format; each
    histogram's le bounds read as floats, rise, and end with +Inf. Returns
    the number of finite le bounds seen."""
    assert text.endswith("\n")
    bounds = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert PROM_COMMENT.match(line), "not a HELP or TYPE line: %r" % line
            continue
        m = PROM_SAMPLE.match(line)
        assert m, "not a Prometheus sample line: %r" % line
        name, le, value = m.groups()
        float(value)
        if le is not None:
            assert name.endswith("_bucket"), line
            bounds.setdefault(name, []).append(float(le))
    assert bounds, "no histogram in:\n%s" % text
    finite = 0
    for name, les in bounds.items():
        assert les[-1] == math.inf, (name, les)
        assert les == sorted(les) and len(set(les)) == len(les), (name, les)
        assert any(0 < b < 1 for b in les), (name, les)  # bounds with a fraction
        finite += len(les) - 1
    return finite


def check_metrics_json(body):
    """Strict JSON (no NaN, no comma decimals): a list of metrics whose values
    are numbers. Returns {metric: value}."""
    def no_constants(c):
        raise AssertionError("non-JSON constant %r" % c)
    items = json.loads(body, parse_constant=no_constants)
    assert isinstance(items, list) and items
    out = {}
    for i in items:
        assert isinstance(i["value"], (int, float)) and not isinstance(i["value"], bool), i
        out[i["metric"]] = i["value"]
    return out


def fractional(values):
    return [k for k, v in values.items() if isinstance(v, float) and v != int(v)]


def test_prometheus_in_c_notation(start_proxy, backend, pki, german_env):
    t = start_status(start_proxy, backend, env=german_env)
    connect(t, pki)
    for path in ("/_metrics?format=prometheus", "/_metrics/prometheus"):
        r = http(t.status_addr, path)
        assert r.status == 200, r
        assert check_prometheus(r.body.decode()) >= 2


def test_json_in_c_notation(start_proxy, backend, pki, german_env):
    t = start_status(start_proxy, backend, env=german_env)
    connect(t, pki)
    # The JSON: a timer's mean is a float that has a fraction as soon as the
    # sum of its observations does not divide by their count. A few more
    # connections (at most 8) make one appear; every answer must parse.
    seen = []
    for _ in range(8):
        r = http(t.status_addr, "/_metrics?format=json")
        assert r.status == 200, r
        values = check_metrics_json(r.body)
        assert values["ghostunnel.accept.total"] >= 1
        seen = fractional(values)
        if seen:
            break
        connect(t, pki)
    assert seen, "no metric with a fraction after 8 connections: the test proves nothing"


def test_pushed_json_and_graphite_in_c_notation(start_proxy, backend, pki, german_env):
    post = PostReceiver().start()
    graphite = GraphiteReceiver().start()
    try:
        spec = "127.0.0.1:%d" % graphite.port
        t = start_status(start_proxy, backend, env=german_env,
                         extra=["--metrics-url", post.url("/ingest"), "--metrics-graphite", spec,
                                "--metrics-interval", "0.3s"])
        for _ in range(3):
            connect(t, pki)
        # Graphite: count_ps is written with two decimals even when it is 0.
        deadline = time.monotonic() + slow(10)
        while time.monotonic() < deadline and graphite.count() < 2:
            time.sleep(0.05)
        with graphite.lock:
            batches = list(graphite.batches)
        assert batches, "no Graphite batch within %.0fs" % slow(10)
        decimals = 0
        for _when, _lines, text in batches:
            for line in text.splitlines():
                m = GRAPHITE_LINE.match(line)
                assert m, "not a Graphite plaintext line: %r" % line
                decimals += "." in m.group(2)
        assert decimals > 0
        # The POSTed JSON is the status port's: strict JSON, numbers only.
        deadline = time.monotonic() + slow(10)
        while time.monotonic() < deadline and post.count() < 1:
            time.sleep(0.05)
        with post.lock:
            posts = list(post.posts)
        assert posts, "no POST within %.0fs" % slow(10)
        for p in posts:
            values = check_metrics_json(p["body"])
            assert "ghostunnel.accept.total" in values
    finally:
        post.stop()
        graphite.stop()


def test_fractional_durations_under_german_locale(tlsgate_bin, pki, german_env):
    """A fractional duration is read under the German locale ("2.5s", never
    "2,5s": the notation is Go's, as in Ghostunnel), and --check accepts it.
    (src/duration.c reads digits itself; this guards against a parser that
    would follow the locale.)"""
    rc, out, err = tg_daemon.run_once(
        [tlsgate_bin, "server", "--check", "--listen", "127.0.0.1:%d" % tg_daemon.free_port(),
         "--target", "127.0.0.1:9", "--cacert", pki.ca.cert_path,
         "--cert", pki.server.cert_path, "--key", pki.server.key_path, "--allow-all",
         "--connect-timeout", "2.5s", "--close-timeout", "0.25s"], env=german_env)
    assert rc == 0, (rc, out, err)
