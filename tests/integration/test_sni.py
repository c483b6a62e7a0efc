"""Server names with an underscore (issue 12): clients that connect by a
name such as new_server or a Docker Compose service my_api send it as SNI.
GnuTLS refuses such a handshake by itself; tlsgate parses the server_name
extension (src/sni.c) and accepts them on the serving port and on the
status port, over TLS 1.2 and 1.3, resumed or not, on any thread, and logs
them in TLSGATE_SNI as sent. What stays refused or ignored (a NUL, a space,
an empty name, two host names; names over 253 bytes) is driven with raw
ClientHellos."""
import json
import os
import time

import pytest

import tg_daemon
import tg_rawtls as raw
from tg_checks import peer_str
from tg_clients import CliClient, client_context, tcp_connect, try_echo

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ["new_server", "my_api", "a_b.example"]
VERSIONS = ["1.2", "1.3"]


@pytest.fixture(scope="module")
def sni_cert(pki):
    """A server certificate naming the underscore hosts too, so that the
    clients verify the name they send, as a real one would."""
    return pki.ca.issue("server-underscore", cn="localhost", dns=["localhost"] + NAMES,
                        ips=["127.0.0.1"], server=True, client=False)


def _creds(pki, cert):
    return ["--cacert", pki.ca.cert_path, "--cert", cert.cert_path, "--key", cert.key_path]


def _ctx(pki, version=None, cert=True):
    return client_context(pki.ca.cert_path, pki.client if cert else None, version=version)


def _start(start_proxy, backend, pki, sni_cert, extra=(), prefix=()):
    return start_proxy(backend, access=["--allow-cn", "client"], creds=_creds(pki, sni_cert),
                       extra=extra, prefix=prefix)


def _echo(proxy, ctx, name, **kw):
    o = try_echo(proxy.addr, ctx, server_hostname=name, timeout=5 * tg_daemon.slow_factor(),
                 **kw)
    assert o.handshake_ok and o.error is None and o.data == o.payload, \
        "SNI %r should be served: %r" % (name, o)
    return o


# ---------------------------------------------------------------------------
# The serving port
@pytest.mark.parametrize("version", VERSIONS)
def test_python_client_names_logged_as_sent(start_proxy, backend, pki, sni_cert, tmp_path,
                                            version):
    """Python ssl with each name: served, and the journal's TLSGATE_SNI holds
    the name as sent, also without ACME (which once was the only source)."""
    out = str(tmp_path / "journal.jsonl")
    prefix = ["unshare", "-m", "--propagation", "private", "/usr/bin/python3",
              os.path.join(HERE, "tg_journal_capture.py"), out, "--"]
    proxy = _start(start_proxy, backend, pki, sni_cert, prefix=prefix)
    ctx = _ctx(pki, version)

    sent = {}
    for name in NAMES + ["localhost"]:
        o = _echo(proxy, ctx, name)
        assert o.version == "TLSv" + version
        sent[peer_str(o.local)] = name

    def records():
        if not os.path.exists(out):
            return []
        with open(out) as f:
            return [json.loads(line) for line in f if line.strip()]

    def opened():
        return {r["TLSGATE_PEER"]: r for r in records()
                if r.get("MESSAGE", "").startswith("opening pipe")}

    assert tg_daemon.wait_until(lambda: set(sent) <= set(opened()),
                                5 * tg_daemon.slow_factor()), records()
    got = opened()
    for peer, name in sent.items():
        assert got[peer].get("TLSGATE_SNI") == name, got[peer]


def _gnutls_cli(addr, pki, name, version):
    return ["gnutls-cli", "--x509cafile", pki.ca.cert_path, "--x509certfile",
            pki.client.cert_path, "--x509keyfile", pki.client.key_path,
            "--sni-hostname", name, "--verify-hostname", name,
            "--priority", "NORMAL:-VERS-ALL:+VERS-TLS%s" % version, "-p", str(addr[1]), addr[0]]


def _s_client(addr, pki, name, version, cert=True):
    argv = ["openssl", "s_client", "-connect", "%s:%d" % addr, "-servername", name,
            "-verify_hostname", name, "-CAfile", pki.ca.cert_path, "-verify_return_error",
            "-nocommands", "-tls" + version.replace(".", "_")]
    if cert:
        argv += ["-cert", pki.client.cert_path, "-key", pki.client.key_path]
    return argv


def _cli_echo(argv, msg):
    timeout = 10 * tg_daemon.slow_factor()
    c = CliClient(argv)
    try:
        c.write(msg)
        echoed = c.wait_output(msg, timeout)
        c.close_stdin()
        c.wait(timeout)
    finally:
        c.kill()
    return echoed, c.text()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("tool", ["gnutls-cli", "s_client"])
def test_cli_clients(start_proxy, backend, pki, sni_cert, tool, version):
    proxy = _start(start_proxy, backend, pki, sni_cert)
    for name in NAMES:
        argv = (_gnutls_cli if tool == "gnutls-cli" else _s_client)(proxy.addr, pki, name,
                                                                    version)
        msg = b"%s over %s %s %d\n" % (name.encode(), tool.encode(), version.encode(),
                                       time.monotonic_ns())
        echoed, (out, err) = _cli_echo(argv, msg)
        assert echoed, "%s with SNI %s: no echo\n%s\n%s\nlog:\n%s" % (tool, name, out, err,
                                                                     proxy.log())
    assert not proxy.find_log("error on TLS handshake"), proxy.log()


@pytest.mark.parametrize("version", VERSIONS)
def test_resumption_keeps_working(start_proxy, backend, pki, sni_cert, version):
    """A ticket from a session with an underscore name resumes, under that
    name and (as Go allows) under another one."""
    proxy = _start(start_proxy, backend, pki, sni_cert)
    ctx = _ctx(pki, version)
    first = _echo(proxy, ctx, "new_server")
    assert first.session is not None and not first.session_reused
    again = _echo(proxy, ctx, "new_server", session=first.session)
    assert again.session_reused, "no resumption with SNI new_server (%s)" % version
    other = _echo(proxy, ctx, "my_api", session=again.session or first.session)
    assert other.session_reused, "no resumption under another name (%s)" % version


def test_threads(start_proxy, backend, pki, sni_cert):
    """--threads 3: every serving thread sets up its sessions the same way."""
    proxy = _start(start_proxy, backend, pki, sni_cert, extra=["--threads", "3"])
    ctx = _ctx(pki)
    for i in range(24):
        _echo(proxy, ctx, NAMES[i % len(NAMES)])
    assert backend.wait_accepted(24, 5 * tg_daemon.slow_factor())


def test_fallback_when_gnutls_does_not_allow_it(start_proxy, backend, pki, sni_cert, tmp_path):
    """With a GnuTLS that refuses the takeover (tests/tools/nosniext.so):
    one warning, GnuTLS's own parser (a name with '_' refused as before),
    and the SNI of other names still read for the log."""
    out = str(tmp_path / "journal.jsonl")
    prefix = ["unshare", "-m", "--propagation", "private", "/usr/bin/python3",
              os.path.join(HERE, "tg_journal_capture.py"), out, "--"]
    proxy = start_proxy(backend, access=["--allow-cn", "client"], creds=_creds(pki, sni_cert),
                        prefix=prefix, env=tg_daemon.preload_env("nosniext"))
    ctx = _ctx(pki)
    plain = [peer_str(_echo(proxy, ctx, "localhost").local) for _ in range(2)]
    refused = try_echo(proxy.addr, ctx, server_hostname="new_server",
                       timeout=5 * tg_daemon.slow_factor())
    assert not refused.handshake_ok and "ILLEGAL_PARAMETER" in str(refused.error), refused

    def records():
        if not os.path.exists(out):
            return []
        with open(out) as f:
            return [json.loads(line) for line in f if line.strip()]

    def messages(phrase):
        return [r for r in records() if phrase in r.get("MESSAGE", "")]

    assert tg_daemon.wait_until(lambda: messages("disallowed SNI"),
                                5 * tg_daemon.slow_factor()), records()
    warnings = messages("does not let tlsgate parse the server name")
    assert len(warnings) == 1 and warnings[0]["PRIORITY"] == "4", records()
    opened = {r["TLSGATE_PEER"]: r for r in messages("opening pipe")}
    for peer in plain:
        assert opened[peer].get("TLSGATE_SNI") == "localhost", opened


# ---------------------------------------------------------------------------
# The status port (HTTPS)
def _https_status(addr, pki, name, version):
    ctx = client_context(pki.ca.cert_path, None, version=version)
    s = ctx.wrap_socket(tcp_connect(addr, 5 * tg_daemon.slow_factor()), server_hostname=name)
    try:
        s.sendall(b"GET /_status HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                  % name.encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        return s.version(), data
    finally:
        s.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_status_port_https(start_proxy, backend, pki, sni_cert, version):
    port = tg_daemon.free_port()
    _start(start_proxy, backend, pki, sni_cert,
           extra=["--status", "127.0.0.1:%d" % port])
    addr = ("127.0.0.1", port)
    for name in NAMES:
        got_version, data = _https_status(addr, pki, name, version)
        assert got_version == "TLSv" + version
        assert data.startswith(b"HTTP/1.1 200"), (name, data[:200])
        assert json.loads(data.split(b"\r\n\r\n", 1)[1])["ok"] is True

    # openssl s_client as another client, without a client certificate (the
    # status port asks for none).
    c = CliClient(_s_client(addr, pki, "my_api", version, cert=False) + ["-ign_eof"])
    try:
        c.write(b"GET /_status HTTP/1.1\r\nHost: my_api\r\nConnection: close\r\n\r\n")
        ok = c.wait_output(b"HTTP/1.1 200", 10 * tg_daemon.slow_factor())
    finally:
        c.kill()
    assert ok, c.text()


# ---------------------------------------------------------------------------
# Near misses: what stays refused, and what is ignored
def _hello(version, sni_body):
    return raw.ClientHello(version, sni=None, extra=[(raw.EXT_SERVER_NAME, sni_body)])


def _served(f):
    """The server went on with the handshake: a ServerHello and, since a
    client certificate is required, a CertificateRequest."""
    return f.server_hello is not None and not f.hrr and f.cert_request


def _name_entry(name, name_type=0):
    return raw.u8(name_type) + raw.vec16(name)


@pytest.mark.parametrize("version", VERSIONS)
def test_near_misses(start_proxy, backend, pki, sni_cert, version):
    proxy = _start(start_proxy, backend, pki, sni_cert)
    name_253 = (b"a_" + b"b" * 60 + b".") * 4 + b"c"
    assert len(name_253) == 253
    refused = [
        ("NUL", raw.sni_body(b"new_server\x00.evil"), "illegal_parameter"),
        ("space", raw.sni_body(b"new server"), "illegal_parameter"),
        ("non-ASCII", raw.sni_body("new_s\u00e9rver".encode()), "illegal_parameter"),
        ("slash", raw.sni_body(b"my_api/x"), "illegal_parameter"),
        ("NUL in an over-long name", raw.sni_body(b"a" * 300 + b"\x00"), "illegal_parameter"),
        ("empty name", raw.sni_body(b""), "decode_error"),
        ("empty list", raw.vec16(b""), "decode_error"),
        ("list length lies", raw.u16(40) + _name_entry(b"my_api"), "decode_error"),
        ("two host names", raw.vec16(_name_entry(b"my_api") + _name_entry(b"other.example")),
         "illegal_parameter"),
    ]
    for what, body, alert in refused:
        f, _ = raw.exchange(proxy.addr, _hello(version, body),
                            timeout=3 * tg_daemon.slow_factor())
        assert f.refused and f.alert_name == alert, "%s: %r" % (what, f)

    served = [
        ("underscore", raw.sni_body(b"new_server")),
        ("underscores, 253 bytes", raw.sni_body(name_253)),
        ("trailing dot, as GnuTLS takes it", raw.sni_body(b"my_api.")),
        ("other name type first", raw.vec16(_name_entry(b"x", 1) + _name_entry(b"a_b.example"))),
        # Longer than a DNS name: ignored, the handshake goes on without one.
        ("254 bytes", raw.sni_body(b"a_" * 127)),
        ("256 bytes", raw.sni_body(b"a" * 256)),
        ("300 bytes", raw.sni_body(b"a_b" * 100)),
    ]
    for what, body in served:
        f, _ = raw.exchange(proxy.addr, _hello(version, body),
                            timeout=3 * tg_daemon.slow_factor())
        assert _served(f), "%s: %r" % (what, f)
        # The server sends no server_name extension back (RFC 6066 section 3
        # allows an empty one; GnuTLS never sends it either).
        assert raw.EXT_SERVER_NAME not in f.server_hello.extensions, what
        ee = f.body(raw.HS_ENCRYPTED_EXTENSIONS)
        assert ee is None or raw.EXT_SERVER_NAME not in raw.parse_extensions(ee), what
    assert backend.accepted == 0
    assert proxy.running()


def test_hello_retry_request(start_proxy, backend, pki, sni_cert):
    """TLS 1.3 with no key share: the server asks again (HelloRetryRequest)
    and parses the name of the second ClientHello too."""
    proxy = _start(start_proxy, backend, pki, sni_cert)
    timeout = 3 * tg_daemon.slow_factor()
    for name in NAMES:
        ch = raw.ClientHello("1.3", sni=name, key_shares=[])
        with raw.RawTLS(proxy.addr, timeout=timeout) as t:
            f = t.hello(ch, timeout=timeout)
            assert f.hrr, "%s: %r" % (name, f)
            f = t.hello(ch.retry(f), timeout=timeout)
            assert _served(f), "%s after the HelloRetryRequest: %r" % (name, f)
    assert proxy.running()
