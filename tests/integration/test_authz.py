"""Authentication and authorization: each --allow-* rule, unverified clients."""
import ssl

import pytest

from tg_checks import assert_allowed, assert_refused

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
