"""Attack tests for the ALPN gate and mTLS (issue 7), over TLS 1.2 and 1.3,
against one tlsgate that obtained its certificate from Pebble.

The rules (README "The ALPN gate"; docs/HACKING.md, "GnuTLS handshake hooks
and the ALPN gate"): a ClientHello with exactly one well-formed ALPN
extension holding exactly ["acme-tls/1"] is a validation probe (challenge or
served certificate, no client certificate requested, acme-tls/1 negotiated,
no ticket, closed after the handshake, the target never dialed); a malformed
ALPN extension or two of them fail the handshake; everything else is a
normal client and needs a valid, authorized certificate, and never
negotiates acme-tls/1.

test_gate.py covers the same rules with real clients (Python ssl,
gnutls-cli). Here the hellos are mostly built by hand (tg_rawtls.py) so
that the server's decision can be read off the wire before any handshake
completes: TLS 1.2's first flight is plaintext, and for TLS 1.3 we derive
the handshake keys and read EncryptedExtensions (ALPN) and CertificateRequest.
A hello that is refused must see an alert or a close and never a
ServerHello. Every test checks how many connections the target saw, and
that tlsgate is still running afterwards.
"""
import datetime
import os
import socket
import time

import pytest

import tg_daemon
import tg_rawtls as raw
from tg_clients import CliClient
from tg_pebble import (ACME_TLS_1, running_acme_gate, DOMAIN, client_ctx, dns_sans, echo,
                       probe, probe_ctx, tcp_peer_str)
from tg_pebble import acme_factory  # noqa: F401,F811 (a fixture)

VERSIONS = ["1.2", "1.3"]
RAW_TIMEOUT = 3.0  # every refusal is expected at once; this only bounds a hang


@pytest.fixture(scope="module")
def atk_env(tlsgate_bin, pki, tmp_path_factory, request):
    """One Pebble, one echo backend and one tlsgate (certificate obtained)
    for the module, as in test_gate.py."""
    with running_acme_gate(tlsgate_bin, pki, tmp_path_factory.mktemp("attacks"), request,
                           "attacks module") as env:
        # The served leaf, as a normal client sees it: what a probe without a
        # pending challenge must get, and nothing else.
        f, _local = raw.exchange(env.gate.addr, raw.ClientHello("1.2"), timeout=RAW_TIMEOUT)
        assert f.certificates, "no certificate in the control flight: %r" % f
        env.served_leaf = f.certificates[0]
        yield env


@pytest.fixture
def g(atk_env):
    """Per test: the backend count at the start; afterwards tlsgate must still run."""
    atk_env.backend.wait_idle(2)
    atk_env.base = atk_env.backend.accepted
    # Lines logged before this test are not about its clients, even when
    # the kernel hands a client an ephemeral port an earlier peer had (the
    # CA's validation probes at the start, say).
    atk_env.log_mark = len(atk_env.gate.log_lines())
    yield atk_env
    assert atk_env.gate.running(), "tlsgate died during the test:\n" + atk_env.gate.log()


# ---------------------------------------------------------------------------
def _target_count(g, expected, why, settle=0.15):
    """The target saw exactly `expected` new connections."""
    if expected:
        g.backend.wait_accepted(g.base + expected, 3)
    time.sleep(settle)
    assert g.backend.accepted == g.base + expected, \
        "%s: the target saw %d connections, expected %d" % (
            why, g.backend.accepted - g.base, expected)


def _log_for(g, local, *words, timeout=3.0):
    """tlsgate's log lines about the client at `local` containing every word."""
    peer = tcp_peer_str(local)

    def lines():
        return [l for l in g.gate.log_lines()[g.log_mark:]
                if peer in l and all(w in l for w in words)]
    found = tg_daemon.wait_until(lines, timeout)
    return found or []


def _assert_logged(g, local, *words):
    lines = _log_for(g, local, *words)
    assert lines, "no log line for %s with %r:\n%s" % (tcp_peer_str(local), words, g.gate.log())
    return lines


def _assert_no_probe_log(g, local):
    time.sleep(0.1)
    assert not _log_for(g, local, "challenge probe", timeout=0), \
        "treated as a challenge probe:\n" + g.gate.log()


def _connects(addr):
    try:
        socket.create_connection(addr, timeout=1).close()
        return True
    except OSError:
        return False


def _assert_refused(f, what):
    """No ServerHello at all; an alert or a close, in time."""
    assert not f.timed_out, "%s: no answer within %.0fs (hangs until --connect-timeout): %r" % (
        what, RAW_TIMEOUT, f)
    assert f.server_hello is None, "%s: the server answered with a ServerHello: %r" % (what, f)
    assert f.refused, "%s: neither alert nor close: %r" % (what, f)


def _assert_probe_flight(f, version, what):
    """The probe's treatment: acme-tls/1, no CertificateRequest, no ticket."""
    sh = f.server_hello
    assert sh is not None and not sh.is_hrr, "%s: no ServerHello: %r" % (what, f)
    assert sh.version == (0x0304 if version == "1.3" else 0x0303), f
    if version == "1.3":
        assert f.decrypted and f.has(raw.HS_FINISHED), "%s: flight not read: %r" % (what, f)
    else:
        assert f.has(raw.HS_SERVER_HELLO_DONE), "%s: flight not read: %r" % (what, f)
        assert raw.EXT_SESSION_TICKET not in sh.extensions, \
            "%s: the server promised a TLS 1.2 session ticket to a probe" % what
    assert f.alpn == ACME_TLS_1, "%s: ALPN %r, expected acme-tls/1" % (what, f.alpn)
    assert not f.cert_request, "%s: a probe was asked for a client certificate" % what
    assert f.certificates, "%s: no certificate" % what


def _assert_normal_flight(f, version, what):
    """A normal client's treatment: CertificateRequest, no ALPN at all."""
    sh = f.server_hello
    assert sh is not None and not sh.is_hrr, "%s: no ServerHello: %r" % (what, f)
    if version == "1.3":
        assert f.decrypted and f.has(raw.HS_FINISHED), "%s: flight not read: %r" % (what, f)
    else:
        assert f.has(raw.HS_SERVER_HELLO_DONE), "%s: flight not read: %r" % (what, f)
    assert f.cert_request, "%s: no client certificate requested (a probe's treatment)" % what
    assert f.alpn is None, "%s: a normal client negotiated ALPN %r" % (what, f.alpn)


# ---------------------------------------------------------------------------
# Well-formed ALPN lists: the class is decided by the exact list.
BIG_LIST = [ACME_TLS_1] + ["proto-%03d-" % i + "x" * 240 for i in range(239)]  # ~60 KB
assert 59000 < len(raw.alpn_body(BIG_LIST)) < 65536
MANY_PROBES = [ACME_TLS_1] * 200

ALPN_CLASSES = [
    ("exact", [ACME_TLS_1], "probe"),
    ("acme-h2", [ACME_TLS_1, "h2"], "normal"),
    ("h2-acme", ["h2", ACME_TLS_1], "normal"),
    ("acme-twice", [ACME_TLS_1, ACME_TLS_1], "normal"),
    ("upper-case", ["ACME-TLS/1"], "normal"),
    ("mixed-case", ["Acme-Tls/1"], "normal"),
    ("trailing-nul", [b"acme-tls/1\0"], "normal"),
    ("prefix", ["acme-tls/"], "normal"),
    ("longer", ["acme-tls/10"], "normal"),
    ("h2", ["h2"], "normal"),
    ("no-alpn", None, "normal"),
    ("200-names-60KB", BIG_LIST, "normal"),
    ("acme-200-times", MANY_PROBES, "normal"),
]


@pytest.mark.parametrize("case", ALPN_CLASSES, ids=[c[0] for c in ALPN_CLASSES])
@pytest.mark.parametrize("version", VERSIONS)
def test_alpn_list_decides_the_class(g, version, case):
    name, alpn, cls = case
    f, local = raw.exchange(g.gate.addr, raw.ClientHello(version, alpn=alpn), timeout=RAW_TIMEOUT)
    if cls == "probe":
        _assert_probe_flight(f, version, name)
    else:
        _assert_normal_flight(f, version, name)
    _target_count(g, 0, name)


def test_sslv2_format_hello_is_a_normal_client(g):
    """An SSLv2-compatible ClientHello has no extensions: a normal client
    (GnuTLS still accepts the format for TLS 1.2)."""
    ciphers = b"".join(b"\0" + raw.u16(c) for c in raw.TLS12_SUITES)
    body = (raw.u8(1) + raw.u16(0x0303) + raw.u16(len(ciphers)) + raw.u16(0) + raw.u16(16)
            + ciphers + os.urandom(16))
    with raw.RawTLS(g.gate.addr, timeout=RAW_TIMEOUT) as t:
        t.send(raw.u16(0x8000 | len(body)) + body)
        types = t.read_plain_handshake(timeout=RAW_TIMEOUT)
    # Either refused outright, or a full handshake that asks for a certificate.
    if raw.HS_SERVER_HELLO in types:
        assert raw.HS_CERTIFICATE_REQUEST in types, \
            "an SSLv2-format hello was served without a certificate request: %r" % types
    _target_count(g, 0, "SSLv2-format hello")


@pytest.mark.parametrize("version", VERSIONS)
def test_oversized_list_real_client(g, pki, version):
    """The same 60 KB list from OpenSSL: refused without a certificate,
    allowed with one, never with acme-tls/1."""
    e = echo(g.gate.addr, client_ctx(g.pebble, None, version=version, alpn=BIG_LIST))
    assert not e.ok and e.data == b"", "no certificate, yet through: %r" % e
    assert e.alpn != ACME_TLS_1, e
    _assert_no_probe_log(g, e.local)
    _target_count(g, 0, "60 KB ALPN list without a certificate")
    e = echo(g.gate.addr, client_ctx(g.pebble, pki.client, version=version, alpn=BIG_LIST))
    assert e.ok, "an allowed client with a 60 KB ALPN list was refused: %r" % e
    assert e.alpn is None, "ALPN %r negotiated by a normal client" % e.alpn
    _target_count(g, 1, "60 KB ALPN list with a certificate")


@pytest.mark.parametrize("version", VERSIONS)
def test_normal_client_cannot_negotiate_acme_tls_1(g, pki, version):
    """[h2, acme-tls/1] with a valid certificate: through, with no ALPN at all."""
    for alpn in (["h2", ACME_TLS_1], [ACME_TLS_1, ACME_TLS_1]):
        e = echo(g.gate.addr, client_ctx(g.pebble, pki.client, version=version, alpn=alpn))
        assert e.ok, "an allowed client was refused: %r" % e
        assert e.alpn is None, "a normal client negotiated %r" % e.alpn
        _assert_no_probe_log(g, e.local)
    _target_count(g, 2, "allowed clients offering acme-tls/1")


FRAGMENTED = [
    ("exact", dict(alpn=[ACME_TLS_1]), "probe"),
    ("acme-h2", dict(alpn=[ACME_TLS_1, "h2"]), "normal"),
    ("two-ext", dict(alpn=[ACME_TLS_1], extra=[(raw.EXT_ALPN, raw.alpn_body(["h2"]))]),
     "refused"),
]


@pytest.mark.parametrize("case", FRAGMENTED, ids=[c[0] for c in FRAGMENTED])
@pytest.mark.parametrize("version", VERSIONS)
def test_fragmented_hello_is_judged_whole(g, version, case):
    """The ClientHello split into records of 1 and 7 bytes: the gate sees the
    reassembled message, so the class is the same as in one record."""
    name, kw, cls = case
    for frag in (1, 7):
        what = "%s in %d-byte records" % (name, frag)
        f, local = raw.exchange(g.gate.addr, raw.ClientHello(version, **kw), timeout=RAW_TIMEOUT,
                                max_fragment=frag)
        if cls == "probe":
            _assert_probe_flight(f, version, what)
        elif cls == "normal":
            _assert_normal_flight(f, version, what)
        else:
            _assert_refused(f, what)
            _assert_logged(g, local, "malformed")
    _target_count(g, 0, "fragmented hellos")


# ---------------------------------------------------------------------------
# Malformed ALPN: refused before any ServerHello, never treated as a probe.
P = ACME_TLS_1.encode()
MALFORMED = [
    ("two-ext-acme-acme", dict(alpn=[ACME_TLS_1],
                               extra=[(raw.EXT_ALPN, raw.alpn_body([ACME_TLS_1]))]), "malformed"),
    ("two-ext-acme-h2", dict(alpn=[ACME_TLS_1],
                             extra=[(raw.EXT_ALPN, raw.alpn_body(["h2"]))]), "malformed"),
    ("two-ext-h2-acme", dict(alpn=["h2"],
                             extra=[(raw.EXT_ALPN, raw.alpn_body([ACME_TLS_1]))]), "malformed"),
    ("empty-name", dict(alpn_raw=raw.alpn_body([""])), "malformed"),
    ("acme-then-empty", dict(alpn_raw=raw.alpn_body([ACME_TLS_1, ""])), "malformed"),
    ("empty-then-acme", dict(alpn_raw=raw.alpn_body(["", ACME_TLS_1])), "malformed"),
    ("empty-list", dict(alpn_raw=raw.vec16(b"")), "malformed"),
    ("no-list-length", dict(alpn_raw=b""), "malformed"),
    ("one-byte-body", dict(alpn_raw=b"\0"), "malformed"),
    ("list-length-too-long", dict(alpn_raw=raw.u16(12) + raw.vec8(P)), "malformed"),
    ("list-length-too-short", dict(alpn_raw=raw.u16(10) + raw.vec8(P)), "malformed"),
    ("name-length-overruns", dict(alpn_raw=raw.u16(11) + raw.u8(11) + P), "malformed"),
    ("name-length-short", dict(alpn_raw=raw.u16(11) + raw.u8(9) + P), "malformed"),
    ("bytes-after-list", dict(alpn_raw=raw.u16(11) + raw.vec8(P) + b"\x02h2"), "malformed"),
    # The extension's own length runs past the extension block: the whole
    # hello is unparsable.
    ("ext-length-lies", dict(extra=[raw.u16(raw.EXT_ALPN) + raw.u16(200)
                                    + raw.alpn_body([ACME_TLS_1])]), "malformed"),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
@pytest.mark.parametrize("version", VERSIONS)
def test_malformed_alpn_is_refused(g, version, case):
    name, kw, word = case
    f, local = raw.exchange(g.gate.addr, raw.ClientHello(version, **kw), timeout=RAW_TIMEOUT)
    _assert_refused(f, name)
    _assert_logged(g, local, "error on TLS handshake", word)
    _assert_no_probe_log(g, local)
    _target_count(g, 0, name)


@pytest.mark.parametrize("version", VERSIONS)
def test_extension_block_length_lies(g, version):
    ch = raw.ClientHello(version, alpn=[ACME_TLS_1])
    block = b"".join(e if isinstance(e, bytes) else raw.ext(*e) for e in ch.exts)
    for name, eb in (("longer", raw.u16(len(block) + 40) + block),
                     ("shorter", raw.u16(len(block) - 5) + block)):
        ch.ext_block = eb
        f, local = raw.exchange(g.gate.addr, ch, timeout=RAW_TIMEOUT)
        _assert_refused(f, "extension block length " + name)
        _assert_no_probe_log(g, local)
    _target_count(g, 0, "extension block with a lying length")


# ---------------------------------------------------------------------------
# SNI on a probe. No challenge is pending in this module: a probe is served
# the regular certificate whatever its SNI (conn.c on_post_client_hello).
SNI_CASES = [
    ("missing", None),
    ("unknown", "unknown.example"),
    ("upper-case", DOMAIN.upper()),
    ("overlong-300", "a" * 300),  # longer than a DNS name: the gate ignores it
    ("ip-literal", "127.0.0.1"),
    ("underscore", "my_api.example"),  # accepted since issue 12 (src/sni.c)
]


@pytest.mark.parametrize("case", SNI_CASES, ids=[c[0] for c in SNI_CASES])
@pytest.mark.parametrize("version", VERSIONS)
def test_probe_sni_gets_served_certificate(g, version, case):
    name, sni = case
    f, local = raw.exchange(g.gate.addr, raw.ClientHello(version, alpn=[ACME_TLS_1], sni=sni),
                            timeout=RAW_TIMEOUT)
    _assert_probe_flight(f, version, "SNI " + name)
    assert f.certificates[0] == g.served_leaf, \
        "SNI %s: a probe got another certificate than the served one" % name
    _target_count(g, 0, "probe with SNI " + name)


@pytest.mark.parametrize("version", VERSIONS)
def test_probe_with_bad_sni_is_refused(g, version):
    """A NUL inside the host name, or two SNI extensions: GnuTLS refuses both."""
    for name, kw in (("nul", dict(sni=DOMAIN + "\0evil.example")),
                     ("two-sni", dict(extra=[(raw.EXT_SERVER_NAME,
                                              raw.sni_body("other.example"))]))):
        f, local = raw.exchange(g.gate.addr, raw.ClientHello(version, alpn=[ACME_TLS_1], **kw),
                                timeout=RAW_TIMEOUT)
        _assert_refused(f, "SNI " + name)
        _assert_no_probe_log(g, local)
    _target_count(g, 0, "probes with a bad SNI")


@pytest.mark.parametrize("version", VERSIONS)
def test_probe_without_sni_real_client(g, version):
    """OpenSSL without SNI: a completed probe, closed, the served certificate."""
    p = probe(g.gate.addr, probe_ctx([ACME_TLS_1], version), sni=None)
    assert p.handshake_ok and p.alpn == ACME_TLS_1, p
    assert p.data == b"" and p.closed, p
    assert p.leaf is not None and dns_sans(p.leaf) == [DOMAIN]
    assert not p.has_ticket
    _assert_logged(g, p.local, "challenge probe", "completed")
    _target_count(g, 0, "probe without SNI")


@pytest.mark.parametrize("version", VERSIONS)
def test_probe_refused_before_first_certificate(acme_factory, make_backend, pki, version):
    """Before the first certificate (CA unreachable) a probe for a name with no
    pending challenge has nothing to be served: refused, like a normal client."""
    backend = make_backend("echo")
    dead = tg_daemon.free_port()
    gate = acme_factory.start(None, backend, ca_url="https://127.0.0.1:%d/dir" % dead,
                              wait_ready=False)
    assert tg_daemon.wait_until(lambda: _connects(gate.addr), 5), \
        "tlsgate never listened:\n" + gate.log()
    cases = [("sni", DOMAIN), ("no-sni", None), ("unknown-sni", "unknown.example")]
    for name, sni in cases:
        f, local = raw.exchange(gate.addr, raw.ClientHello(version, alpn=[ACME_TLS_1], sni=sni),
                                timeout=RAW_TIMEOUT)
        _assert_refused(f, "probe before the first certificate, " + name)
        peer = tcp_peer_str(local)
        assert tg_daemon.wait_until(lambda: [l for l in gate.log_lines()
                                             if peer in l and "no pending challenge" in l], 3), \
            "no refusal logged for %s:\n%s" % (peer, gate.log())
        # One line with the real reason, not a second one blaming the client.
        lines = [l for l in gate.log_lines() if peer in l]
        assert len(lines) == 1, "expected one refusal line for %s: %r" % (peer, lines)
    p = probe(gate.addr, probe_ctx([ACME_TLS_1], version))
    assert not p.handshake_ok, "a real probe completed without any certificate: %r" % p
    e = echo(gate.addr, probe_ctx(None, version, cert=pki.client))
    assert not e.ok and e.data == b"", e
    assert gate.running(), gate.log()
    time.sleep(0.2)
    assert backend.accepted == 0, "the target was dialed before the first certificate"


# ---------------------------------------------------------------------------
# HelloRetryRequest (TLS 1.3): an empty key_share list makes the server ask
# for another share; the second hello must keep the first one's class.
HRR_CASES = [
    # name, first ALPN, second ALPN ("same": unchanged), expected
    ("probe-probe", [ACME_TLS_1], "same", "probe"),
    ("h2-h2", ["h2"], "same", "normal"),
    ("none-none", None, "same", "normal"),
    ("probe-h2", [ACME_TLS_1], ["h2"], "changed"),
    ("probe-none", [ACME_TLS_1], None, "changed"),
    ("probe-acme-twice", [ACME_TLS_1], [ACME_TLS_1, ACME_TLS_1], "changed"),
    ("probe-acme-h2", [ACME_TLS_1], [ACME_TLS_1, "h2"], "changed"),
    ("h2-probe", ["h2"], [ACME_TLS_1], "changed"),
    ("none-probe", None, [ACME_TLS_1], "changed"),
    ("acme-h2-probe", [ACME_TLS_1, "h2"], [ACME_TLS_1], "changed"),
    ("probe-malformed", [ACME_TLS_1], raw.alpn_body([""]), "malformed"),
    ("probe-two-ext", [ACME_TLS_1], "two", "malformed"),
]


@pytest.mark.parametrize("case", HRR_CASES, ids=[c[0] for c in HRR_CASES])
def test_hello_retry_request_cannot_change_class(g, case):
    name, first, second, expect = case
    ch = raw.ClientHello("1.3", alpn=first, groups=["x25519", "secp256r1"], key_shares=[])
    with raw.RawTLS(g.gate.addr, timeout=RAW_TIMEOUT) as t:
        f1 = t.hello(ch, timeout=RAW_TIMEOUT)
        assert f1.hrr, "precondition: no HelloRetryRequest for an empty key_share: %r" % f1
        if isinstance(second, bytes):
            ch2 = ch.retry(f1, alpn_raw=second)
        elif second == "two":
            ch2 = ch.retry(f1)
            ch2.exts.append((raw.EXT_ALPN, raw.alpn_body([ACME_TLS_1])))
        else:
            ch2 = ch.retry(f1, alpn=second)
        f2 = t.hello(ch2, timeout=RAW_TIMEOUT)
        local = t.local
    if expect == "probe":
        _assert_probe_flight(f2, "1.3", name)
    elif expect == "normal":
        _assert_normal_flight(f2, "1.3", name)
        _assert_no_probe_log(g, local)
    else:
        _assert_refused(f2, name)
        _assert_logged(g, local, "error on TLS handshake",
                       "changed" if expect == "changed" else "malformed")
        _assert_no_probe_log(g, local)
    _target_count(g, 0, name)


# ---------------------------------------------------------------------------
# Tickets and session ids.
@pytest.mark.parametrize("version", VERSIONS)
def test_probe_asking_for_a_ticket_gets_none(g, version):
    """A probe that asks for a ticket (TLS 1.2 session_ticket extension) is
    not promised one, a normal hello is (control). TLS 1.3: no
    NewSessionTicket reaches a real probe, which reads until the close."""
    if version == "1.2":
        f, _ = raw.exchange(g.gate.addr, raw.ClientHello("1.2", alpn=["h2"], ticket=b""),
                            timeout=RAW_TIMEOUT)
        assert raw.EXT_SESSION_TICKET in f.server_hello.extensions, \
            "control: no ticket promised to a normal client, the check below proves nothing"
        f, _ = raw.exchange(g.gate.addr, raw.ClientHello("1.2", alpn=[ACME_TLS_1], ticket=b""),
                            timeout=RAW_TIMEOUT)
        _assert_probe_flight(f, "1.2", "probe asking for a ticket")
    p = probe(g.gate.addr, probe_ctx([ACME_TLS_1], version))
    assert p.handshake_ok and p.closed, p
    assert not p.has_ticket, "a probe was given a session ticket"
    _target_count(g, 0, "probes asking for tickets")


def test_tls12_probe_session_id_replay(g):
    """The session id a TLS 1.2 probe was given resumes nothing: offered again
    (without a ticket) by a probe, an h2 client or a client without ALPN, each
    gets a full handshake, and the non-probes a certificate request."""
    p = probe(g.gate.addr, probe_ctx([ACME_TLS_1], "1.2"))
    assert p.handshake_ok and p.alpn == ACME_TLS_1 and p.session is not None, p
    sid = p.session.id
    assert sid, "the probe got no session id; nothing to replay"
    for alpn, cls in (([ACME_TLS_1], "probe"), (["h2"], "normal"), (None, "normal")):
        f, local = raw.exchange(g.gate.addr,
                                raw.ClientHello("1.2", alpn=alpn, session_id=sid, ticket=None),
                                timeout=RAW_TIMEOUT)
        what = "probe session id offered with ALPN %r" % (alpn,)
        assert f.server_hello is not None, "%s: %r" % (what, f)
        assert f.server_hello.session_id != sid, "%s: resumed" % what
        assert f.has(raw.HS_CERTIFICATE), "%s: no full handshake" % what
        (_assert_probe_flight if cls == "probe" else _assert_normal_flight)(f, "1.2", what)
    _target_count(g, 0, "replayed probe session ids")


def test_tls12_client_session_id_is_not_a_credential(g, pki):
    """There is no TLS 1.2 session cache: an authorized client's session id,
    offered without its ticket by a client without a certificate, gets a full
    handshake with a certificate request."""
    e = echo(g.gate.addr, client_ctx(g.pebble, pki.client, version="1.2"))
    assert e.ok and e.session is not None and e.session.id, e
    sid = e.session.id
    f, local = raw.exchange(g.gate.addr, raw.ClientHello("1.2", session_id=sid, ticket=None),
                            timeout=RAW_TIMEOUT)
    assert f.server_hello is not None and f.server_hello.session_id != sid, \
        "an authorized client's session id resumed a session without its ticket: %r" % f
    _assert_normal_flight(f, "1.2", "a client's session id without its ticket")
    _target_count(g, 1, "the authorized client only")


def _s_client(g, version, extra, send=b"", wait_for=b"", timeout=5.0):
    """openssl s_client to tlsgate; sends `send` once the handshake is reported
    and waits for `wait_for` in the output. Returns (stdout, stderr, rc)."""
    argv = ["openssl", "s_client", "-tls" + version.replace(".", "_"),
            "-connect", "%s:%d" % g.gate.addr, "-servername", DOMAIN] + list(extra)
    c = CliClient(argv)
    try:
        c.wait_output(b"Verify return code", timeout=timeout)
        time.sleep(0.3)  # a TLS 1.3 ticket arrives just after the handshake
        if send and c.proc.poll() is None:
            c.write(send)
        if wait_for:
            c.wait_output(wait_for, timeout=timeout)
        c.close_stdin()
        rc = c.wait(timeout)
    finally:
        c.kill()
    out, err = c.text()
    return out, err, rc


@pytest.mark.parametrize("version", VERSIONS)
def test_resumption_without_certificate(g, pki, tmp_path, version):
    """A session from an authorized client carries its identity: resumed by
    openssl with no certificate configured it is let through (re-verified:
    GnuTLS does not verify a resumed session again). A probe's session is
    not: in TLS 1.3 a probe gets nothing to store, in TLS 1.2 its session
    does not resume and the client without a certificate is refused."""
    sess = str(tmp_path / "client.sess")
    out, err, _ = _s_client(g, version, ["-cert", pki.client.cert_path, "-key",
                                         pki.client.key_path, "-sess_out", sess],
                            send=b"tok-first\n", wait_for=b"tok-first")
    assert "tok-first" in out, "control: the authorized client got no echo:\n" + out + err
    assert os.path.exists(sess), "control: no session stored"
    out, err, _ = _s_client(g, version, ["-sess_in", sess], send=b"tok-again\n",
                            wait_for=b"tok-again")
    assert "Reused, TLSv" + version in out, "the client's session did not resume:\n" + out + err
    assert "tok-again" in out, "the resumed session was not let through:\n" + out + err
    _target_count(g, 2, "the authorized client and its resumption")
    g.base = g.backend.accepted

    psess = str(tmp_path / "probe.sess")
    out, err, _ = _s_client(g, version, ["-alpn", ACME_TLS_1, "-sess_out", psess])
    assert "ALPN protocol: " + ACME_TLS_1 in out, out + err
    if version == "1.3":
        assert not os.path.exists(psess), "a TLS 1.3 probe got a session ticket"
    else:
        assert os.path.exists(psess), out + err
        out, err, _ = _s_client(g, version, ["-sess_in", psess], send=b"tok-sneak\n",
                                wait_for=b"tok-sneak", timeout=3)
        assert "Reused" not in out, "a probe's session was resumed:\n" + out
        assert "tok-sneak" not in out, "a probe's session got through:\n" + out
    _target_count(g, 0, "a probe's session")


@pytest.mark.parametrize("version", VERSIONS)
def test_denied_clients_ticket_is_denied_again(g, pki, version):
    """A client whose valid certificate no rule allows is denied after the
    handshake, by which time GnuTLS has already given it a session ticket
    (TLS 1.2 and 1.3). Resuming with that ticket is re-authorized and denied
    again: the ticket is no credential of its own."""
    ctx = probe_ctx(None, version, cert=pki.client_dns)  # CN=dns-client, not allowed
    p = probe(g.gate.addr, ctx)
    assert p.handshake_ok and p.data == b"" and p.closed, p
    _assert_logged(g, p.local, "access denied")
    if p.has_ticket:  # GnuTLS 3.7.9 sends it; withholding it would be fine too
        e = echo(g.gate.addr, ctx, session=p.session)
        assert not e.ok and e.data == b"", "a denied client's ticket got through: %r" % e
        _assert_logged(g, e.local, "access denied")
    _target_count(g, 0, "a denied client and its ticket")


@pytest.mark.slow
def test_resumed_session_of_expired_certificate_refused(g, pki):
    """A ticket from a client whose certificate has expired since is refused
    on resumption (re-verified), over TLS 1.2 and 1.3; while the certificate
    was valid the same ticket resumed (control)."""
    lifetime = 4
    sessions = {}
    certs = {}
    for v in VERSIONS:
        certs[v] = pki.issue_short_lived("attack-short-%s" % v, lifetime)
    for v in VERSIONS:
        ctx = client_ctx(g.pebble, certs[v], version=v)
        e1 = echo(g.gate.addr, ctx)
        assert e1.ok and e1.session is not None, e1
        e2 = echo(g.gate.addr, ctx, session=e1.session)
        assert e2.ok and e2.session_reused, "control: no resumption over TLS %s: %r" % (v, e2)
        sessions[v] = (ctx, e2.session or e1.session)
    _target_count(g, 4, "valid short-lived clients", settle=0)
    g.base = g.backend.accepted
    not_after = max(c.cert.not_valid_after for c in certs.values())  # naive UTC
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    wait = (not_after - now).total_seconds() + 1.5
    assert 0 < wait < lifetime + 3, "took too long to get here: %.1fs left" % wait
    time.sleep(wait)
    for v in VERSIONS:
        ctx, sess = sessions[v]
        e = echo(g.gate.addr, ctx, session=sess)
        assert not e.ok and e.data == b"", \
            "TLS %s: a ticket of an expired certificate got through: %r" % (v, e)
        # Resumed and then closed after re-verification, or (if not resumed)
        # the expired certificate refused in the full handshake: either way
        # the log names the expiry.
        _assert_logged(g, e.local, "expired")
    _target_count(g, 0, "resumed sessions of expired certificates")


# ---------------------------------------------------------------------------
# Renegotiation (TLS 1.2): the connection is closed, never re-authenticated.
def test_tls12_renegotiation_openssl(g, pki):
    argv = ["openssl", "s_client", "-tls1_2", "-connect", "%s:%d" % g.gate.addr,
            "-servername", DOMAIN, "-cert", pki.client.cert_path, "-key", pki.client.key_path]
    c = CliClient(argv)
    try:
        assert c.wait_output(b"Verify return code", 5), c.text()
        c.write(b"before\n")
        assert c.wait_output(b"\nbefore\n", 5), "control: no echo before renegotiating: %r" % (
            c.text(),)
        c.write(b"R\n")
        time.sleep(0.5)
        c.write(b"after\n")  # s_client may be gone already: tlsgate closed
        exited = tg_daemon.wait_until(lambda: c.proc.poll() is not None, 5)
    finally:
        c.kill()
    out, err = c.text()
    assert "RENEGOTIATING" in err, "s_client did not renegotiate:\n" + out + err
    assert exited, "the connection stayed open after a renegotiation attempt:\n" + out + err
    assert "\nafter\n" not in out, "data went through after a renegotiation attempt:\n" + out
    lines = [l for l in g.gate.log_lines() if "renegotiation" in l]
    assert lines, "no renegotiation refusal logged:\n" + g.gate.log()
    _target_count(g, 1, "the client before renegotiating")
    rec = g.backend.records[-1]
    assert rec.eof.wait(3), "the target connection was not closed after renegotiation"
    assert bytes(rec.received) == b"before\n", rec.received


def test_tls12_renegotiation_gnutls_cli(g, pki):
    argv = ["gnutls-cli", "--insecure", "--rehandshake", "--sni-hostname=" + DOMAIN,
            "--priority", "NORMAL:-VERS-ALL:+VERS-TLS1.2", "--x509certfile",
            pki.client.cert_path, "--x509keyfile", pki.client.key_path,
            "-p", str(g.gate.addr[1]), "127.0.0.1"]
    c = CliClient(argv)
    try:
        c.wait_output(b"Handshake was completed", 5)
        c.wait(5)
    finally:
        c.kill()
    out, err = c.text()
    assert "ReHandshake has failed" in out + err, \
        "gnutls-cli's renegotiation was not refused:\n" + out + err
    peer_lines = [l for l in g.gate.log_lines() if "attempted renegotiation" in l]
    assert len(peer_lines) >= 1, g.gate.log()
    _target_count(g, 1, "the client before renegotiating")
    assert g.backend.records[-1].eof.wait(3), "the target connection stayed open"


# ---------------------------------------------------------------------------
# Probes that send data.
@pytest.mark.parametrize("version", VERSIONS)
def test_probe_data_never_reaches_target(g, version):
    """64 KB right after the handshake: nothing comes back, the connection is
    closed, no byte reaches the target (it is never dialed)."""
    blob = b"GET /secret HTTP/1.1\r\n" + b"x" * 65536
    p = probe(g.gate.addr, probe_ctx([ACME_TLS_1], version), send=blob)
    assert p.handshake_ok and p.alpn == ACME_TLS_1, p
    assert p.data == b"" and p.closed, p
    _assert_logged(g, p.local, "challenge probe", "completed")
    _target_count(g, 0, "a probe sending data")
    for r in g.backend.records:
        assert b"/secret" not in r.received


@pytest.mark.parametrize("version", VERSIONS)
def test_probe_data_openssl(g, version):
    out, err, _ = _s_client(g, version, ["-alpn", ACME_TLS_1, "-ign_eof"],
                            send=b"hello probe\n" * 100, wait_for=b"closed", timeout=3)
    assert "ALPN protocol: " + ACME_TLS_1 in out, out + err
    assert "hello probe" not in out.split("Verify return code", 1)[-1], out
    _target_count(g, 0, "openssl probe sending data")
