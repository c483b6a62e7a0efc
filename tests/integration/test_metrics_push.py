"""Metrics as Ghostunnel names them (issue 12): the default prefix
"ghostunnel", so that dashboards built on Ghostunnel's names keep working.
"""
import tg_daemon
from tg_clients import client_context, try_echo
from test_status import COUNTERS, metrics_json, metrics_prom, start_status


def slow(seconds):
    return seconds * tg_daemon.slow_factor()


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
