"""TLS parameters: versions, cipher suites, keystores."""
import os
import ssl
import warnings

import pytest

import tg_daemon
from tg_checks import assert_allowed, assert_refused
from tg_clients import try_echo


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_versions(start_proxy, backend, ctx_for, pki, version):
    proxy = start_proxy(backend, access=["--allow-cn", "client"])
    o = assert_allowed(proxy, backend, ctx_for(pki.client, version=version))
    assert o.version == "TLSv" + version


def test_default_negotiates_tls13(start_proxy, backend, ctx_for, pki):
    proxy = start_proxy(backend)
    o = assert_allowed(proxy, backend, ctx_for(pki.client))
    assert o.version == "TLSv1.3"


def test_tls10_11_refused(start_proxy, backend, ctx_for, pki):
    """The minimum is always TLS 1.2 (the client really sends a TLS 1.1 hello:
    OpenSSL 3 still can, at security level 0)."""
    proxy = start_proxy(backend, extra=["--max-tls-version", "TLS1.3"])
    ctx = ctx_for(pki.client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    o = assert_refused(proxy, backend, ctx, phrases=("error on TLS handshake",))
    assert not o.handshake_ok, o
    assert "NO_PROTOCOLS_AVAILABLE" not in str(o.error), "client-side failure: %r" % (o,)


def test_max_tls_version_12(start_proxy, backend, ctx_for, pki):
    proxy = start_proxy(backend, extra=["--max-tls-version", "TLS1.2"])
    o = assert_allowed(proxy, backend, ctx_for(pki.client))
    assert o.version == "TLSv1.2"
    o = try_echo(proxy.addr, ctx_for(pki.client, version="1.3"))
    assert not o.handshake_ok and o.data == b"", "TLS 1.3-only client must fail: %r" % (o,)
    assert backend.accepted == 1


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_cipher_suites_chacha(start_proxy, backend, ctx_for, pki, version):
    proxy = start_proxy(backend, extra=["--cipher-suites", "CHACHA"])
    o = assert_allowed(proxy, backend, ctx_for(pki.client, version=version))
    assert "CHACHA20" in o.cipher, o.cipher


def test_cipher_suites_chacha_refuses_aes_only_client(start_proxy, backend, ctx_for, pki):
    proxy = start_proxy(backend, extra=["--cipher-suites", "CHACHA"])
    ctx = ctx_for(pki.client, version="1.2", ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    o = try_echo(proxy.addr, ctx)
    assert not o.handshake_ok, o
    assert backend.accepted == 0


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_cipher_suites_aes(start_proxy, backend, ctx_for, pki, version):
    proxy = start_proxy(backend, extra=["--cipher-suites", "AES"])
    ctx = ctx_for(pki.client, version=version)
    if version == "1.2":  # prefer ChaCha on the client side: the server must still pick AES
        ctx.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256")
    o = assert_allowed(proxy, backend, ctx)
    assert "AES" in o.cipher and "CHACHA" not in o.cipher, o.cipher


def test_cipher_suites_default_prefers_aes(start_proxy, backend, ctx_for, pki):
    proxy = start_proxy(backend)
    o = assert_allowed(proxy, backend, ctx_for(pki.client, version="1.2"))
    assert "AES" in o.cipher and "GCM" in o.cipher, o.cipher


# ---------------------------------------------------------------------------
def _keystore_creds(pki, kind):
    if kind == "pem":
        return ["--keystore", pki.keystore_pem]
    if kind == "p12-empty-no-storepass":
        return ["--keystore", pki.keystore_p12_empty]
    if kind == "p12-empty-storepass":
        return ["--keystore", pki.keystore_p12_empty, "--storepass", ""]
    if kind == "p12-password":
        return ["--keystore", pki.keystore_p12_pass, "--storepass", pki.P12_PASSWORD]
    if kind == "p12-unencrypted":
        return ["--keystore", pki.keystore_p12_noenc]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["pem", "p12-empty-no-storepass", "p12-empty-storepass",
                                  "p12-password", "p12-unencrypted"])
def test_keystore(start_proxy, backend, ctx_for, pki, kind):
    creds = ["--cacert", pki.ca.cert_path] + _keystore_creds(pki, kind)
    proxy = start_proxy(backend, creds=creds)
    o = assert_allowed(proxy, backend, ctx_for(pki.client))
    assert o.handshake_ok  # the client verified the server chain from the keystore


@pytest.mark.parametrize("storepass", [None, "wrong"])
def test_keystore_wrong_storepass(tlsgate_bin, pki, storepass):
    port = tg_daemon.free_port()
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % port, "--target",
            "127.0.0.1:1", "--cacert", pki.ca.cert_path, "--keystore", pki.keystore_p12_pass,
            "--allow-all"]
    if storepass is not None:
        argv += ["--storepass", storepass]
    rc, out, err = tg_daemon.run_once(argv)
    assert rc not in (0, None), (rc, err)
    low = err.lower()
    assert "password" in low or "storepass" in low, \
        "start-up error should say the keystore password is wrong: %r" % err
    assert os.path.basename(pki.keystore_p12_pass) in err or "keystore" in low, err
    assert tg_daemon.port_is_free(port)

