"""Log lines on stderr (no journal here): phrases, timestamps, --quiet."""
import re

import pytest

import tg_daemon
from tg_checks import assert_allowed, assert_refused, peer_str
from tg_clients import try_echo

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")


def test_log_phrases_and_timestamps(start_proxy, backend, ctx_for, pki):
    proxy = start_proxy(backend, access=["--allow-cn", "client"])
    assert_allowed(proxy, backend, ctx_for(pki.client))
    line = proxy.wait_log("closed pipe", timeout=5)
    assert TIMESTAMP.search(line), "log lines need a timestamp: %r" % line
    d = assert_refused(proxy, backend, ctx_for(pki.client_ou), phrases=("denied",))
    assert TIMESTAMP.search(proxy.wait_log("denied", peer_str(d.local)))
    h = assert_refused(proxy, backend, ctx_for(pki.client_other_ca, version="1.2"),
                       phrases=("error on TLS handshake",))
    assert TIMESTAMP.search(proxy.wait_log("error on TLS handshake", peer_str(h.local)))


def _scenario(start_proxy, make_backend, ctx_for, pki, quiet):
    backend = make_backend("echo")
    extra = []
    for q in quiet:
        extra += ["--quiet", q]
    proxy = start_proxy(backend, access=["--allow-cn", "client"], extra=extra)
    ok = try_echo(proxy.addr, ctx_for(pki.client))
    assert ok.data == ok.payload, ok
    den = try_echo(proxy.addr, ctx_for(pki.client_ou))
    hs = try_echo(proxy.addr, ctx_for(pki.client_other_ca, version="1.2"))
    assert den.data == b"" and hs.data == b""
    dead = tg_daemon.free_port()
    proxy2 = start_proxy("127.0.0.1:%d" % dead, extra=extra)
    dial = try_echo(proxy2.addr, ctx_for(pki.client))
    assert dial.data == b""
    # give the logs a moment, then stop (so "closed pipe" etc. are all written)
    tg_daemon.wait_until(lambda: False, 0.5)
    proxy.stop()
    proxy2.stop()
    log = proxy.log() + proxy2.log()
    return {
        "conns": ("opening pipe" in log) or ("closed pipe" in log),
        "handshake-errs": ("error on TLS handshake" in log) or ("denied" in log),
        "conn-errs": "error on dial" in log,
    }, log


@pytest.mark.parametrize("quiet", [[], ["conns"], ["handshake-errs"], ["conn-errs"], ["all"],
                                   ["conns", "conn-errs"]], ids=lambda q: ",".join(q) or "none")
def test_quiet(start_proxy, make_backend, ctx_for, pki, quiet):
    seen, log = _scenario(start_proxy, make_backend, ctx_for, pki, quiet)
    for kind, present in seen.items():
        silenced = "all" in quiet or kind in quiet
        assert present != silenced, "%s lines %s with --quiet %s; log:\n%s" % (
            kind, "present" if present else "missing", quiet, log)


def test_ipv4_client_on_dual_stack_listener_logged_as_ipv4(start_proxy, backend, ctx_for, pki):
    """":PORT" listens dual-stack; an IPv4 client is logged as a.b.c.d:port,
    not as ::ffff:a.b.c.d, so filters on TLSGATE_PEER find it."""
    port = tg_daemon.free_port()
    proxy = start_proxy(backend, listen=":%d" % port, addr=("127.0.0.1", port))
    o = assert_allowed(proxy, backend, ctx_for(pki.client))
    line = proxy.wait_log("opening pipe", "127.0.0.1:%d" % o.local[1])
    assert "::ffff:" not in line, line
