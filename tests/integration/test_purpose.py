"""A client certificate must be fit for TLS client authentication (as in Go)."""
import datetime

from tg_checks import assert_allowed, assert_refused


def test_server_only_certificate_refused(start_proxy, backend, ctx_for, pki):
    # Same CA, CN=client, but its extended key usage says serverAuth only.
    server_only = pki.ca.issue("client-server-eku", cn="client", server=True, client=False)
    proxy = start_proxy(backend, access=["--allow-cn", "client"])
    assert_refused(proxy, backend, ctx_for(server_only, version="1.2"),
                   phrases=("error on TLS handshake",))
    assert_refused(proxy, backend, ctx_for(server_only), phrases=("error on TLS handshake",))
    # The same identity with clientAuth is let through.
    assert_allowed(proxy, backend, ctx_for(pki.client))
