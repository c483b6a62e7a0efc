"""Resumed sessions are re-verified and re-authorized."""
import datetime
import time

import pytest

from tg_checks import assert_allowed, assert_refused


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


@pytest.mark.slow
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_resumption_after_client_cert_expired(start_proxy, backend, ctx_for, pki, version):
    lifetime = 4
    cert = pki.issue_short_lived("short-lived-%s" % version, lifetime)
    proxy = start_proxy(backend, access=["--allow-cn", "client"])
    ctx = ctx_for(cert, version=version)

    o1 = assert_allowed(proxy, backend, ctx)
    assert o1.session is not None and not o1.session_reused
    # Control: while the certificate is valid the session does resume, so the
    # refusal below is about re-verification and not about resumption being off.
    o2 = assert_allowed(proxy, backend, ctx, session=o1.session)
    assert o2.session_reused, "the server did not resume a fresh session (%s)" % version
    session = o2.session or o1.session

    wait = (cert.cert.not_valid_after - _utcnow()).total_seconds() + 1.5
    assert 0 < wait < lifetime + 2, "took too long to get here: %.1fs left" % wait
    time.sleep(wait)

    assert_refused(proxy, backend, ctx, session=session)
    # A full handshake with the same (now expired) certificate is refused as well.
    assert_refused(proxy, backend, ctx)
    # A different, valid client is unaffected.
    assert_allowed(proxy, backend, ctx_for(pki.client, version=version))

