"""The ALPN gate (issue 3), over TLS 1.2 and 1.3, against one tlsgate that has
obtained its certificate from Pebble.

- A ClientHello whose ALPN list is exactly ["acme-tls/1"] gets the relaxed
  handshake (no client certificate requested, acme-tls/1 negotiated, no
  session ticket, no session cache entry), and the connection is then closed
  without application data and without dialing the target, logged as a
  completed challenge probe.
- Any other hello (acme-tls/1 beside h2, twice, in upper case, none at all)
  is a normal client: it needs a valid, authorized certificate, and it never
  negotiates acme-tls/1.
"""
import time

import pytest

import tg_daemon
from tg_clients import CliClient
from tg_pebble import (ACME_TLS_1, running_acme_gate, DOMAIN, client_ctx, dns_sans, echo,
                       log_lines_with, probe, probe_ctx, tcp_peer_str)

VERSIONS = ["1.2", "1.3"]
GNUTLS_PRIO = {"1.2": "NORMAL:-VERS-ALL:+VERS-TLS1.2", "1.3": "NORMAL:-VERS-ALL:+VERS-TLS1.3"}


@pytest.fixture(scope="module")
def gate_env(tlsgate_bin, pki, tmp_path_factory, request):
    """One Pebble, one echo backend and one tlsgate (certificate obtained) for
    the module. Tests compare the backend's connection count before and after."""
    with running_acme_gate(tlsgate_bin, pki, tmp_path_factory.mktemp("gate"), request,
                           "gate module") as env:
        yield env


@pytest.fixture
def g(gate_env):
    """Per test: the module's environment with the backend count at test start."""
    gate_env.backend.wait_idle(2)
    gate_env.base = gate_env.backend.accepted
    return gate_env


def _target_untouched(g, why):
    time.sleep(0.3)
    assert g.backend.accepted == g.base, "the target was dialed: %s" % why


def _probe_logged(g, p):
    peer = tcp_peer_str(p.local)
    found = tg_daemon.wait_until(
        lambda: [l for l in log_lines_with(g.gate, "challenge probe") if peer in l], 3)
    assert found, "no completed challenge probe logged for %s:\n%s" % (peer, g.gate.log())


def _assert_relaxed_probe(g, p, version):
    assert p.handshake_ok, "the exact [acme-tls/1] hello was refused: %r" % (p,)
    assert p.alpn == ACME_TLS_1, "acme-tls/1 not negotiated: %r" % (p,)
    assert p.version == "TLSv" + version, p
    # No challenge is pending: the served certificate (or a challenge
    # certificate) for the SNI, either way exactly one DNS SAN, the name.
    assert p.leaf is not None and dns_sans(p.leaf) == [DOMAIN], dns_sans(p.leaf)
    assert p.data == b"", "application data on a probe: %r" % (p.data,)
    assert p.closed, "the probe connection was not closed by tlsgate: %r" % (p,)
    assert p.elapsed_close < 2.0, "closed only after %.1fs" % p.elapsed_close


# ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_exact_acme_tls_1_is_a_relaxed_probe(g, version):
    p = probe(g.gate.addr, probe_ctx([ACME_TLS_1], version))
    _assert_relaxed_probe(g, p, version)
    _probe_logged(g, p)
    _target_untouched(g, "a probe reached the target")


@pytest.mark.parametrize("version", VERSIONS)
def test_probe_sending_data_never_reaches_target(g, version):
    p = probe(g.gate.addr, probe_ctx([ACME_TLS_1], version),
              send=b"GET / HTTP/1.1\r\nHost: test.example\r\n\r\n")
    assert p.handshake_ok and p.alpn == ACME_TLS_1, p
    assert p.data == b"" and p.closed, p
    for r in g.backend.records:
        assert b"GET / HTTP/1.1" not in r.received
    _target_untouched(g, "a probe that sent data reached the target")


@pytest.mark.parametrize("version", VERSIONS)
def test_exact_acme_tls_1_with_client_cert_is_still_a_probe(g, pki, version):
    """The relaxed class is decided by the ALPN list alone: a client that has a
    valid certificate but offers only acme-tls/1 is a probe, not a client."""
    p = probe(g.gate.addr, probe_ctx([ACME_TLS_1], version, cert=pki.client))
    _assert_relaxed_probe(g, p, version)
    _target_untouched(g, "an acme-tls/1-only hello was forwarded")


REFUSED_LISTS = [
    ("acme-and-h2", [ACME_TLS_1, "h2"]),
    ("h2-and-acme", ["h2", ACME_TLS_1]),
    ("acme-twice", [ACME_TLS_1, ACME_TLS_1]),
    ("upper-case", ["ACME-TLS/1"]),
    ("acme-prefix", ["acme-tls/10"]),
    ("h2", ["h2"]),
    ("no-alpn", None),
]


@pytest.mark.parametrize("case", REFUSED_LISTS, ids=[c[0] for c in REFUSED_LISTS])
@pytest.mark.parametrize("version", VERSIONS)
def test_other_hellos_need_a_certificate(g, version, case):
    _id, alpn = case
    e = echo(g.gate.addr, client_ctx(g.pebble, None, version=version, alpn=alpn))
    assert not e.ok and e.data == b"", "a client without a certificate got through: %r" % (e,)
    assert e.alpn != ACME_TLS_1, "a normal hello negotiated acme-tls/1: %r" % (e,)
    if version == "1.2":
        assert not e.handshake_ok, "TLS 1.2 handshake completed without a client cert: %r" % e
    if e.local:
        peer = tcp_peer_str(e.local)
        time.sleep(0.2)
        assert not [l for l in log_lines_with(g.gate, "challenge probe") if peer in l], \
            "a normal hello was treated as a challenge probe"
    _target_untouched(g, "a client without a certificate reached the target")


@pytest.mark.parametrize("case", REFUSED_LISTS, ids=[c[0] for c in REFUSED_LISTS])
@pytest.mark.parametrize("version", VERSIONS)
def test_other_hellos_with_certificate_get_through(g, pki, version, case):
    """Control for the refusals above: the same hellos with a valid client
    certificate are served, and never with acme-tls/1."""
    _id, alpn = case
    e = echo(g.gate.addr, client_ctx(g.pebble, pki.client, version=version, alpn=alpn))
    assert e.ok, "an allowed client was refused: %r" % (e,)
    assert e.alpn != ACME_TLS_1, "a normal client negotiated acme-tls/1: %r" % (e,)
    assert e.version == "TLSv" + version
    assert g.backend.wait_accepted(g.base + 1, 2)
    time.sleep(0.2)
    assert g.backend.accepted == g.base + 1


# ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_probe_gets_no_ticket_and_cannot_be_resumed(g, pki, version):
    # Control: a normal client gets a resumable session here.
    ctl = probe_ctx(None, version, cert=pki.client)
    c1 = echo(g.gate.addr, ctl)
    assert c1.ok, c1
    c2 = echo(g.gate.addr, ctl, session=c1.session)
    assert c2.ok and c2.session_reused, \
        "control: a normal client's session is not resumed, so the check below proves nothing"
    base = g.base + 2
    assert g.backend.wait_accepted(base, 2)

    ctx = probe_ctx([ACME_TLS_1], version)
    p = probe(g.gate.addr, ctx)  # reads until closed: a TLS 1.3 ticket would have arrived
    assert p.handshake_ok and p.alpn == ACME_TLS_1, p
    assert not p.has_ticket, "a challenge probe was given a session ticket"
    # A client without a certificate offers the probe's session (ticket or
    # TLS 1.2 session id) with ALPN h2: no resumption, no way through.
    ctx.set_alpn_protocols(["h2"])
    e = echo(g.gate.addr, ctx, session=p.session)
    assert not e.session_reused, "the probe's session was resumed by a client without a certificate"
    assert not e.ok and e.data == b"", "resumed into the target without a certificate: %r" % e
    # The same without any ALPN.
    ctx2 = probe_ctx(None, version)
    p2 = probe(g.gate.addr, probe_ctx([ACME_TLS_1], version))
    assert not p2.has_ticket
    e2 = echo(g.gate.addr, ctx2)
    assert not e2.ok and e2.data == b""
    time.sleep(0.3)
    assert g.backend.accepted == base, "a probe's session reached the target"


@pytest.mark.parametrize("version", VERSIONS)
def test_acme_hello_with_a_clients_session_gets_full_handshake(g, pki, version):
    """An acme-tls/1-only hello that carries a real client's session is not
    resumed (resumption would skip the probe handling) and is still a probe."""
    ctx = probe_ctx(None, version, cert=pki.client)
    c1 = echo(g.gate.addr, ctx)
    assert c1.ok and c1.session is not None, c1
    ctx.set_alpn_protocols([ACME_TLS_1])
    p = probe(g.gate.addr, ctx, session=c1.session)
    assert p.handshake_ok and p.alpn == ACME_TLS_1, p
    assert not p.session_reused, "an acme-tls/1 hello resumed a client's session"
    assert p.data == b"" and p.closed, p
    time.sleep(0.3)
    assert g.backend.accepted == g.base + 1, "the acme-tls/1 hello reached the target"


# ---------------------------------------------------------------------------
# GnuTLS's client lays out its ClientHello differently from OpenSSL's.
def _gnutls_cli(g, version, alpns, cert=None, expect_echo=False):
    """Runs gnutls-cli, sends b"hello\\n" once the handshake completed, and
    returns (stdout, stderr): stdout holds the handshake report, then whatever
    the server sent back."""
    argv = ["gnutls-cli", "--insecure", "--sni-hostname=" + DOMAIN, "--priority",
            GNUTLS_PRIO[version], "-p", str(g.gate.addr[1])]
    argv += ["--alpn=" + a for a in alpns]
    if cert is not None:
        argv += ["--x509certfile", cert.cert_path, "--x509keyfile", cert.key_path]
    argv.append("127.0.0.1")
    c = CliClient(argv)
    try:
        c.wait_output(b"Handshake was completed", timeout=5)
        if c.proc.poll() is None:
            try:
                c.write(b"hello\n")
            except BrokenPipeError:
                pass
            c.wait_output(b"\nhello", timeout=3 if expect_echo else 1)
        c.close_stdin()
        c.wait(5)
    finally:
        c.kill()
    return c.text()


def _after_handshake(out):
    return out.split("Handshake was completed", 1)[1] if "Handshake was completed" in out else ""


@pytest.mark.parametrize("version", VERSIONS)
def test_gnutls_cli_probe(g, version):
    out, err = _gnutls_cli(g, version, [ACME_TLS_1])
    assert "Handshake was completed" in out, out + err
    assert "Application protocol: " + ACME_TLS_1 in out, out + err
    assert "hello" not in _after_handshake(out), "data echoed on a probe:\n" + out
    _target_untouched(g, "gnutls-cli's probe reached the target")


@pytest.mark.parametrize("version", VERSIONS)
def test_gnutls_cli_acme_and_h2_without_cert_refused(g, version):
    out, err = _gnutls_cli(g, version, [ACME_TLS_1, "h2"])
    assert "Application protocol: " + ACME_TLS_1 not in out, out
    assert "hello" not in _after_handshake(out), \
        "data went through without a client certificate:\n" + out
    _target_untouched(g, "gnutls-cli without a certificate reached the target")


@pytest.mark.parametrize("version", VERSIONS)
def test_gnutls_cli_acme_and_h2_with_cert_allowed(g, pki, version):
    out, err = _gnutls_cli(g, version, [ACME_TLS_1, "h2"], cert=pki.client, expect_echo=True)
    assert "Handshake was completed" in out, out + err
    assert "Application protocol: " + ACME_TLS_1 not in out, out
    assert "hello" in _after_handshake(out), "no echo:\n" + out + err
    assert g.backend.wait_accepted(g.base + 1, 2)
