"""Interoperability with real command-line clients: gnutls-cli and openssl s_client."""
import os
import time

import pytest

from tg_clients import CliClient


def gnutls_cli(proxy, pki, cert=None, version=None, extra=()):
    argv = ["gnutls-cli", "--x509cafile", pki.ca.cert_path, "--verify-hostname", "localhost",
            "-p", str(proxy.addr[1])]
    if cert is not None:
        argv += ["--x509certfile", cert.cert_path, "--x509keyfile", cert.key_path]
    if version:
        argv += ["--priority", "NORMAL:-VERS-ALL:+VERS-TLS%s" % version]
    return argv + list(extra) + [proxy.addr[0]]


def s_client(proxy, pki, cert=None, version=None, extra=()):
    if isinstance(proxy.addr, str):
        target = ["-unix", proxy.addr]
    else:
        target = ["-connect", "%s:%d" % proxy.addr]
    argv = ["openssl", "s_client"] + target + [
        "-servername", "localhost", "-verify_hostname", "localhost", "-CAfile", pki.ca.cert_path,
        "-verify_return_error", "-nocommands"]
    if cert is not None:
        argv += ["-cert", cert.cert_path, "-key", cert.key_path]
    if version:
        argv += ["-tls" + version.replace(".", "_")]
    return argv + list(extra)


def _echo_through(argv, msg, timeout=10):
    c = CliClient(argv)
    try:
        c.write(msg)
        echoed = c.wait_output(msg, timeout)
        c.close_stdin()
        rc = c.wait(timeout)
    finally:
        c.kill()
    out, err = c.text()
    return echoed, rc, out, err


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_gnutls_cli_echo(start_proxy, backend, pki, version):
    proxy = start_proxy(backend, access=["--allow-cn", "client"])
    msg = b"hello from gnutls-cli %d\n" % time.monotonic_ns()
    echoed, rc, out, err = _echo_through(gnutls_cli(proxy, pki, pki.client, version), msg)
    assert echoed, "no echo via gnutls-cli; rc=%s\nstdout:\n%s\nstderr:\n%s" % (rc, out, err)
    assert "(TLS%s)" % version in out + err or "TLS%s" % version in out + err, out + err
    assert backend.accepted == 1


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_gnutls_cli_without_certificate_refused(start_proxy, backend, pki, version):
    proxy = start_proxy(backend, access=["--allow-all"])
    msg = b"should not arrive\n"
    echoed, rc, out, err = _echo_through(gnutls_cli(proxy, pki, None, version), msg, timeout=5)
    assert not echoed
    time.sleep(0.2)
    assert backend.accepted == 0
    assert proxy.find_log("error on TLS handshake") or proxy.find_log("denied"), proxy.log()


def test_gnutls_cli_resume(start_proxy, backend, pki):
    """gnutls-cli --resume: a GnuTLS client gets its session resumed."""
    proxy = start_proxy(backend, access=["--allow-cn", "client"])
    msg = b"resumed hello\n"
    # --waitresumption: a TLS 1.3 ticket comes after the handshake; without
    # it gnutls-cli waits only ~50 ms for one (not enough under valgrind).
    echoed, rc, out, err = _echo_through(
        gnutls_cli(proxy, pki, pki.client, extra=["--resume", "--waitresumption"]), msg)
    assert echoed, out + err
    assert "This is a resumed session" in out + err, out + err


def test_gnutls_cli_half_close(start_proxy, make_backend, pki):
    """gnutls-cli turns stdin EOF into close_notify and keeps reading: the
    backend's reply after EOF must arrive."""
    b = make_backend("halfclose")
    proxy = start_proxy(b, access=["--allow-cn", "client"])
    c = CliClient(gnutls_cli(proxy, pki, pki.client))
    try:
        c.write(b"abc")
        c.close_stdin()
        got = c.wait_output(b"got 3 ", 10)
        rc = c.wait(10)
    finally:
        c.kill()
    out, err = c.text()
    assert got, "no reply after half-close; rc=%s\n%s\n%s" % (rc, out, err)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_openssl_s_client_echo(start_proxy, backend, pki, version):
    proxy = start_proxy(backend, access=["--allow-cn", "client"])
    msg = b"hello from s_client %d\n" % time.monotonic_ns()
    echoed, rc, out, err = _echo_through(s_client(proxy, pki, pki.client, version), msg)
    assert echoed, "no echo via s_client; rc=%s\nstdout:\n%s\nstderr:\n%s" % (rc, out, err)
    assert "TLSv%s" % version in out, out
    assert "Verify return code: 0 (ok)" in out, out
    assert backend.accepted == 1


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_openssl_s_client_without_certificate_refused(start_proxy, backend, pki, version):
    proxy = start_proxy(backend, access=["--allow-all"])
    msg = b"should not arrive\n"
    echoed, rc, out, err = _echo_through(s_client(proxy, pki, None, version), msg, timeout=5)
    assert not echoed
    time.sleep(0.2)
    assert backend.accepted == 0


def test_openssl_s_client_unix_listener(start_proxy, backend, pki, sockdir):
    path = os.path.join(sockdir, "l.sock")
    proxy = start_proxy(backend, listen="unix:" + path)
    msg = b"over a unix socket\n"
    echoed, rc, out, err = _echo_through(s_client(proxy, pki, pki.client), msg)
    assert echoed, out + err
    assert backend.accepted == 1


def test_openssl_s_client_session_resumption(start_proxy, backend, pki, tmp_path):
    proxy = start_proxy(backend, access=["--allow-cn", "client"])
    sess = str(tmp_path / "sess.pem")
    echoed, rc, out, err = _echo_through(
        s_client(proxy, pki, pki.client, extra=["-sess_out", sess]), b"first\n")
    assert echoed and os.path.getsize(sess) > 0, out + err
    echoed, rc, out, err = _echo_through(
        s_client(proxy, pki, pki.client, extra=["-sess_in", sess]), b"second\n")
    assert echoed, out + err
    assert "Reused, TLSv" in out, "openssl did not resume:\n" + out
