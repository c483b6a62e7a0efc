"""Authentication and authorization: each --allow-* rule, unverified clients."""
import ssl

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

import tg_daemon
from tg_checks import assert_allowed, assert_refused
from tg_clients import try_echo

# name of a PKI attribute -> client certificate
ALL_GOOD = ["client", "client_ou", "client_dns", "client_ip", "client_uri", "client_via_int"]


def _check_matrix(proxy, backend, ctx_for, pki, allowed, phrases=("denied",)):
    for name in ALL_GOOD:
        ctx = ctx_for(getattr(pki, name))
        if name in allowed:
            assert_allowed(proxy, backend, ctx)
        else:
            o = assert_refused(proxy, backend, ctx, phrases=phrases)
            # verified but not allowed: told so with an access_denied alert
            assert isinstance(o.error, ssl.SSLError) and \
                "alert access denied" in str(o.error).lower(), o.error


@pytest.mark.parametrize("access,allowed", [
    (["--allow-cn", "client"], {"client"}),
    (["--allow-cn", "dns-client"], {"client_dns"}),
    (["--allow-ou", "ops"], {"client_ou"}),
    (["--allow-dns", "client.example"], {"client_dns"}),
    (["--allow-ip", "10.1.2.3"], {"client_ip"}),
    (["--allow-ip", "10.1.2.4"], set()),
    (["--allow-uri", "spiffe://example/ns/prod/svc"], {"client_uri"}),
    # only the verified leaf counts, never an intermediate (CN=client, OU=ops)
    (["--allow-cn", "leaf-via-int"], {"client_via_int"}),
    # any one matching rule allows
    (["--allow-cn", "nobody", "--allow-ou", "ops", "--allow-dns", "client.example"],
     {"client_ou", "client_dns"}),
    (["--allow-cn", "client", "--allow-cn", "ip-client", "--allow-uri", "spiffe://example/**"],
     {"client", "client_ip", "client_uri"}),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_allow_rules(start_proxy, backend, ctx_for, pki, access, allowed):
    proxy = start_proxy(backend, access=access)
    _check_matrix(proxy, backend, ctx_for, pki, allowed)


@pytest.mark.parametrize("pattern,ok", [
    ("spiffe://example/ns/prod/svc", True),
    ("spiffe://example/ns/*/svc", True),
    ("spiffe://example/*/*/svc", True),
    ("spiffe://example/ns/prod/*", True),
    ("spiffe://example/**", True),
    ("spiffe://example/ns/**", True),
    ("spiffe://example/ns/prod/svc/**", True),
    ("spiffe://example/ns/*", False),       # * is exactly one segment
    ("spiffe://example/*/svc", False),
    ("spiffe://example/ns/dev/*", False),
    ("spiffe://example/ns/prod", False),
    ("spiffe://example/ns/prod/svc/extra", False),
    ("spiffe://other/**", False),
    ("spiffe://example/ns/pro*/svc", False),  # no partial-segment globbing
])
def test_allow_uri_wildcards(start_proxy, backend, ctx_for, pki, pattern, ok):
    proxy = start_proxy(backend, access=["--allow-uri", pattern])
    ctx = ctx_for(pki.client_uri)
    if ok:
        assert_allowed(proxy, backend, ctx)
    else:
        assert_refused(proxy, backend, ctx, phrases=("denied",))


def test_allow_all(start_proxy, backend, ctx_for, pki):
    proxy = start_proxy(backend, access=["--allow-all"])
    for name in ALL_GOOD:
        assert_allowed(proxy, backend, ctx_for(getattr(pki, name)))
    # --allow-all still requires a verified certificate
    assert_refused(proxy, backend, ctx_for(None))
    assert_refused(proxy, backend, ctx_for(pki.client_other_ca))
    assert_refused(proxy, backend, ctx_for(pki.client_expired))


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_disable_authentication(start_proxy, backend, ctx_for, pki, version):
    proxy = start_proxy(backend, access=["--disable-authentication"])
    o = assert_allowed(proxy, backend, ctx_for(None, version=version))
    assert o.version == "TLSv" + version


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("who", [None, "client_other_ca", "client_expired", "client_future"])
def test_unverified_client_refused(start_proxy, backend, ctx_for, pki, version, who):
    """No certificate / another CA (same CN) / expired / not yet valid: refused
    on both TLS versions (with 1.3 the client's handshake 'succeeds' and the
    refusal comes on the first read), and the backend never sees it."""
    proxy = start_proxy(backend, access=["--allow-cn", "client", "--allow-ou", "ops",
                                         "--allow-dns", "client.example"])
    cert = getattr(pki, who) if who else None
    o = assert_refused(proxy, backend, ctx_for(cert, version=version))
    if version == "1.2":
        assert not o.handshake_ok, "TLS 1.2 handshake should fail: %r" % (o,)
    # The client is told why with the alert Go (Ghostunnel) sends, not left
    # with a bare TCP close ("EOF occurred in violation of protocol").
    alert = {None: "alert certificate required" if version == "1.3" else "alert bad certificate",
             "client_other_ca": "alert unknown ca",
             "client_expired": "alert certificate expired",
             "client_future": "alert certificate expired"}[who]
    assert isinstance(o.error, ssl.SSLError) and alert in str(o.error).lower(), \
        "expected the %r alert, got %r" % (alert, o.error)
    # The journal says why: no certificate (in the same documented words on
    # TLS 1.2 and 1.3), or GnuTLS's words for the verification status.
    if who is None:
        line = proxy.wait_log("error on TLS handshake")
        assert line.endswith(": client did not present a certificate"), line
        assert "Certificate is required" not in proxy.log()
    else:
        proxy.wait_log("error on TLS handshake", "client certificate rejected",
                       {"client_other_ca": "issuer is unknown",
                        "client_expired": "expired certificate",
                        "client_future": "not yet valid"}[who])
    # and a good client still gets through afterwards
    assert_allowed(proxy, backend, ctx_for(pki.client, version=version))


# ---------------------------------------------------------------------------
# Near misses: each rule allows exactly its value, compared as Ghostunnel
# compares it (Go's ==, net.IP.Equal, its URI wildcards), never a name that
# extends or shortens the allowed one, differs in case or a trailing dot, or
# hides a NUL. Each certificate is real, issued by the test CA, and presented
# by a real TLS client.
def _cns(*values):
    """A subject with these CNs, in this order in the encoding."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, v) for v in values])


WEB = "spiffe://example.org/web"
NEAR_MISSES = [
    (["--allow-cn", "frontend"],
     [dict(cn="frontend"), dict(subject=_cns("evil", "frontend"))],
     [dict(cn="frontend2"), dict(cn="frontend.evil"), dict(cn="xfrontend"), dict(cn="fronten"),
      dict(cn="Frontend"), dict(cn="FRONTEND"), dict(cn="frontend."), dict(cn="frontend "),
      dict(cn="frontend\x00evil"), dict(cn="frontend\x00"), dict(ou="frontend"),
      dict(cn="backend", dns=["frontend"]),
      # Go's CommonName is the last CN of the subject: "evil" here
      dict(subject=_cns("frontend", "evil"))]),
    (["--allow-ou", "ops"],
     [dict(cn="x", ou="ops"), dict(cn="x", ou=["eng", "ops"])],
     [dict(cn="x", ou="ops2"), dict(cn="x", ou="devops"), dict(cn="x", ou="op"),
      dict(cn="x", ou="Ops"), dict(cn="x", ou="ops."), dict(cn="x", ou="ops,eng"),
      dict(cn="ops")]),
    (["--allow-dns", "client.example"],
     [dict(cn="x", dns=["client.example"])],
     [dict(cn="x", dns=[d]) for d in
      ("client.example.", "Client.example", "CLIENT.EXAMPLE", "client.example.evil",
       "client.example2", "evil.client.example", "xclient.example", "client.exampl",
       "lient.example", "*.example", "client.example\x00.evil")]
     + [dict(cn="client.example"), dict(cn="x", uris=["client.example"])]),
    (["--allow-ip", "10.1.2.3"],
     # the same address for Go's net.IP.Equal, which Ghostunnel compares with
     [dict(cn="x", ips=["10.1.2.3"]), dict(cn="x", ips=["::ffff:10.1.2.3"])],
     [dict(cn="x", ips=[i]) for i in
      ("10.1.2.30", "10.1.2.33", "110.1.2.3", "10.1.2.4", "::10.1.2.3", "64:ff9b::a01:203",
       "::ffff:10.1.2.4", "::ffff:0:a01:203")]
     + [dict(cn="10.1.2.3"), dict(cn="x", dns=["10.1.2.3"])]),
    (["--allow-ip", "2001:db8::1"],
     [dict(cn="x", ips=["2001:db8::1"])],
     [dict(cn="x", ips=[i]) for i in ("2001:db8::10", "2001:db8::1:0", "2001:db8::100",
                                      "2001:db9::1", "::1")]),
    (["--allow-uri", WEB],
     [dict(cn="x", uris=[WEB]), dict(cn="x", uris=[WEB + "/"])],
     [dict(cn="x", uris=[u]) for u in
      (WEB + "2", WEB[:-1], WEB + "/x", WEB + "/../x", WEB + "/..", WEB + "//",
       "spiffe://example.org//web", "spiffe://example.org/Web", "spiffe://Example.org/web",
       # Go would lower-case the scheme; a SPIFFE ID has it in lower case
       "SPIFFE://example.org/web", "http://example.org/web", "spiffe://example.org.evil/web",
       "spiffe://user@example.org/web", "spiffe://example.org:443/web", WEB + "?x", WEB + "#x",
       "spiffe://example.org/%77eb", WEB + "\x00/x")]
     + [dict(cn=WEB), dict(cn="x", dns=["example.org"])]),
    (["--allow-uri", WEB + "/*"],
     [dict(cn="x", uris=[WEB + "/x"])],
     [dict(cn="x", uris=[u]) for u in
      (WEB, WEB + "/", WEB + "/x/y", WEB + "2/x", WEB + "x", "spiffe://example.org/we/x")]),
    (["--allow-uri", WEB + "/**"],
     # a URI is a name, not a path to resolve: "web/../x" is under web/, as
     # in Ghostunnel
     [dict(cn="x", uris=[u]) for u in (WEB, WEB + "/x/y", WEB + "/../x")],
     [dict(cn="x", uris=[u]) for u in
      (WEB + "2", WEB + "x/y", WEB[:-1], "spiffe://example.org", "spiffe://example.org.evil/web/x",
       "spiffe://Example.org/web/x")]),
]


@pytest.fixture(scope="module")
def near_miss_certs(pki):
    """{(rule index, "ok"/"no", i): Issued} for every certificate above."""
    out = {}
    for r, (_access, ok, no) in enumerate(NEAR_MISSES):
        for kind, specs in (("ok", ok), ("no", no)):
            for i, spec in enumerate(specs):
                out[(r, kind, i)] = pki.ca.issue("near-%d-%s-%d" % (r, kind, i), **spec)
    return out


def _describe(spec):
    return ", ".join("%s=%r" % (k, v if k != "subject" else v.rfc4514_string())
                     for k, v in spec.items())


@pytest.mark.parametrize("r", range(len(NEAR_MISSES)),
                         ids=[" ".join(n[0]) for n in NEAR_MISSES])
def test_near_misses_refused(start_proxy, backend, ctx_for, pki, near_miss_certs, r):
    access, ok, no = NEAR_MISSES[r]
    proxy = start_proxy(backend, access=access)
    for i, spec in enumerate(ok):
        o = try_echo(proxy.addr, ctx_for(near_miss_certs[(r, "ok", i)]))
        assert o.echoed, "%s should let %s in: %r" % (" ".join(access), _describe(spec), o)
    for i, spec in enumerate(no):
        cert = near_miss_certs[(r, "no", i)]
        before = backend.accepted
        o = try_echo(proxy.addr, ctx_for(cert))
        assert not o.echoed and o.data == b"", \
            "%s let %s in: %r" % (" ".join(access), _describe(spec), o)
        assert backend.accepted == before, "the backend saw %s" % _describe(spec)
    # Every refusal was logged: denied, or (a NUL in a name) not parsed.
    def refusals():
        return len(proxy.find_log("denied")) + len(proxy.find_log("cannot parse the client"))
    assert tg_daemon.wait_until(lambda: refusals() >= len(no), 3 * tg_daemon.slow_factor()), \
        proxy.log()
