"""PROXY protocol v2 (--proxy-protocol, --proxy-protocol-mode=conn|tls|tls-full).

The backend here parses the header itself (pure Python, written from
HAProxy's proxy-protocol.txt section 2.2, not from tlsgate's code), records
it, and echoes what follows. For every mode and listener family (TCP4,
TCP6, unix) it checks the addresses against the client's and the
listener's, the TLVs each mode must (and must not) carry, the DER
certificate against the client's, and that the application bytes follow
intact."""
import os
import re
import socket
import struct
import threading

import pytest
from cryptography.hazmat.primitives import serialization

import tg_daemon
from tg_clients import try_echo

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
FAM_UNSPEC, FAM_TCP4, FAM_TCP6, FAM_UNIX = 0x00, 0x11, 0x21, 0x31
TYPE_ALPN, TYPE_AUTHORITY, TYPE_SSL = 0x01, 0x02, 0x20
SUB_VERSION, SUB_CN, SUB_CIPHER, SUB_CLIENT_CERT = 0x21, 0x22, 0x23, 0x28
CLIENT_SSL, CLIENT_CERT_CONN, CLIENT_CERT_SESS = 0x01, 0x02, 0x04


class Incomplete(Exception):
    pass


def parse_tlvs(data):
    out, i = [], 0
    while i < len(data):
        if len(data) - i < 3:
            raise ValueError("truncated TLV header at %d" % i)
        t, n = data[i], struct.unpack("!H", data[i + 1:i + 3])[0]
        if i + 3 + n > len(data):
            raise ValueError("TLV 0x%02x runs past the end" % t)
        out.append((t, data[i + 3:i + 3 + n]))
        i += 3 + n
    return out


def parse_header(buf):
    """Returns (header dict, its length); raises Incomplete or ValueError."""
    if buf[:len(SIGNATURE)] != SIGNATURE[:len(buf)]:
        raise ValueError("no v2 signature: %r" % buf[:16])
    if len(buf) < 16:
        raise Incomplete()
    ver_cmd, fam = buf[12], buf[13]
    length = struct.unpack("!H", buf[14:16])[0]
    if len(buf) < 16 + length:
        raise Incomplete()
    payload = buf[16:16 + length]
    h = {"ver_cmd": ver_cmd, "family": fam, "length": length}
    if fam == FAM_TCP4:
        alen = 12
        h["src"] = (socket.inet_ntop(socket.AF_INET, payload[0:4]),
                    struct.unpack("!H", payload[8:10])[0])
        h["dst"] = (socket.inet_ntop(socket.AF_INET, payload[4:8]),
                    struct.unpack("!H", payload[10:12])[0])
    elif fam == FAM_TCP6:
        alen = 36
        h["src"] = (socket.inet_ntop(socket.AF_INET6, payload[0:16]),
                    struct.unpack("!H", payload[32:34])[0])
        h["dst"] = (socket.inet_ntop(socket.AF_INET6, payload[16:32]),
                    struct.unpack("!H", payload[34:36])[0])
    elif fam == FAM_UNIX:
        alen = 216
        h["src"], h["dst"] = payload[0:108], payload[108:216]
    elif fam == FAM_UNSPEC:
        alen = 0
    else:
        raise ValueError("family 0x%02x" % fam)
    if length < alen:
        raise ValueError("address block short: %d < %d" % (length, alen))
    h["tlvs"] = parse_tlvs(payload[alen:])
    for t, v in h["tlvs"]:
        if t == TYPE_SSL:
            if len(v) < 5:
                raise ValueError("SSL TLV shorter than 5 bytes")
            h["ssl_client"] = v[0]
            h["ssl_verify"] = struct.unpack("!I", v[1:5])[0]
            h["ssl_subs"] = parse_tlvs(v[5:])
    return h, 16 + length


class Record:
    def __init__(self):
        self.header = None          # parsed header, or None when none was expected
        self.received = bytearray()  # application bytes after the header
        self.error = None
        self.done = threading.Event()


class PP2Backend:
    """Reads a PROXY v2 header first (expect_header=True), then echoes the
    rest. Without expect_header it echoes from the first byte, recording it."""

    def __init__(self, host="127.0.0.1", unix_path=None, expect_header=True):
        self.expect_header = expect_header
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.target = "unix:" + unix_path
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind((host, 0))
            self.target = "%s:%d" % (host, self.sock.getsockname()[1])
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.records = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    @property
    def accepted(self):
        with self.lock:
            return len(self.records)

    def wait_accepted(self, n, timeout=5.0):
        return tg_daemon.wait_until(lambda: self.accepted >= n, timeout)

    def stop(self):
        self._stop.set()
        self._acceptor.join(5)
        self.sock.close()
        for t in self._threads:
            t.join(2)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            rec = Record()
            with self.lock:
                self.records.append(rec)
            t = threading.Thread(target=self._serve, args=(c, rec), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, c, rec):
        c.settimeout(10)
        buf = b""
        try:
            if self.expect_header:
                while True:
                    try:
                        rec.header, n = parse_header(buf)
                        break
                    except Incomplete:
                        d = c.recv(65536)
                        if not d:
                            raise EOFError("EOF inside the header after %d bytes" % len(buf))
                        buf += d
                buf = buf[n:]
            while True:
                if buf:
                    rec.received += buf
                    c.sendall(buf)
                buf = c.recv(65536)
                if not buf:
                    break
        except Exception as e:  # for the test to see
            rec.error = e
        finally:
            c.close()
            rec.done.set()


@pytest.fixture
def pp2_backend():
    made = []

    def make(**kw):
        b = PP2Backend(**kw)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


def _listen(family, sockdir):
    if family == "tcp4":
        return "127.0.0.1:%d" % tg_daemon.free_port()
    if family == "tcp6":
        return "[::1]:%d" % tg_daemon.free_port()
    return "unix:" + os.path.join(sockdir, "listen.sock")


def _der(issued):
    return issued.cert.public_bytes(serialization.Encoding.DER)


def _one(proxy, backend, ctx, payload=None, **kw):
    """One echo through tlsgate; returns (client outcome, backend record)."""
    before = backend.accepted
    o = try_echo(proxy.addr, ctx, payload=payload, **kw)
    assert o.handshake_ok and o.error is None and o.data == o.payload, o
    assert backend.wait_accepted(before + 1, 3)
    rec = backend.records[before]
    assert rec.done.wait(5), "backend connection did not end"
    assert rec.error is None, rec.error
    assert bytes(rec.received) == o.payload, "application bytes changed on the way"
    return o, rec


def _iana(openssl_name):
    """The IANA name of the suite Python's ssl (OpenSSL) negotiated: what Go's
    tls.CipherSuiteName gives, and what the cipher sub-TLV must carry."""
    if openssl_name.startswith("TLS_"):
        return openssl_name  # TLS 1.3: the same in both
    m = re.match(r"^ECDHE-(RSA|ECDSA)-(AES128|AES256|CHACHA20)-(GCM-SHA256|GCM-SHA384|POLY1305)$",
                 openssl_name)
    assert m, openssl_name
    kx, enc, tail = m.groups()
    if enc == "CHACHA20":
        return "TLS_ECDHE_%s_WITH_CHACHA20_POLY1305_SHA256" % kx
    return "TLS_ECDHE_%s_WITH_AES_%s_GCM_%s" % (kx, enc[3:], tail.split("-")[1])


def _check_addresses(h, family, o, proxy):
    assert h["ver_cmd"] == 0x21, "version 2, command PROXY"
    if family == "tcp4":
        assert h["family"] == FAM_TCP4
        assert h["src"] == (o.local[0], o.local[1])
        assert h["dst"] == proxy.addr
    elif family == "tcp6":
        assert h["family"] == FAM_TCP6
        assert h["src"] == (o.local[0], o.local[1])
        assert h["dst"] == proxy.addr
    else:
        assert h["family"] == FAM_UNIX
        assert h["src"] == b"\x00" * 108, "an unnamed client socket has no path"
        path = proxy.addr.encode()
        assert h["dst"] == path + b"\x00" * (108 - len(path))


FAMILIES = ["tcp4", "tcp6", "unix"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["conn", "tls", "tls-full"])
def test_header_per_mode_and_family(start_proxy, pp2_backend, ctx_for, pki, sockdir, family,
                                    mode):
    b = pp2_backend()
    proxy = start_proxy(b, listen=_listen(family, sockdir),
                        extra=["--proxy-protocol-mode=" + mode])
    payload = b"application bytes \x00\r\n\r\n\x00\r\nQUIT\n after the header " * 50
    o, rec = _one(proxy, b, ctx_for(pki.client), payload=payload)
    h = rec.header
    _check_addresses(h, family, o, proxy)

    types = [t for t, _ in h["tlvs"]]
    if mode == "conn":
        assert types == [], "conn mode sends addresses only"
        assert h["length"] == {"tcp4": 12, "tcp6": 36, "unix": 216}[family]
        return
    # tls and tls-full: SNI as authority, the SSL TLV; no ALPN, since tlsgate
    # negotiates none with normal clients.
    assert types == [TYPE_AUTHORITY, TYPE_SSL], types
    assert dict(h["tlvs"])[TYPE_AUTHORITY] == b"localhost"
    assert h["ssl_verify"] == 0
    subs = dict(h["ssl_subs"])
    assert subs[SUB_VERSION] == b"TLS 1.3"
    assert subs[SUB_CIPHER] == _iana(o.cipher).encode(), (subs[SUB_CIPHER], o.cipher)
    if mode == "tls":
        # Nothing about the client certificate, not even its flags (as
        # Ghostunnel): the client presented one, but only tls-full says so.
        assert h["ssl_client"] == CLIENT_SSL
        assert [t for t, _ in h["ssl_subs"]] == [SUB_VERSION, SUB_CIPHER]
    else:
        assert h["ssl_client"] == CLIENT_SSL | CLIENT_CERT_CONN | CLIENT_CERT_SESS
        assert [t for t, _ in h["ssl_subs"]] == [SUB_VERSION, SUB_CIPHER, SUB_CN,
                                                 SUB_CLIENT_CERT]
        assert subs[SUB_CN] == b"client"
        assert subs[SUB_CLIENT_CERT] == _der(pki.client)


def test_proxy_protocol_flag_is_conn(start_proxy, pp2_backend, ctx_for, pki):
    b = pp2_backend()
    proxy = start_proxy(b, extra=["--proxy-protocol"])
    o, rec = _one(proxy, b, ctx_for(pki.client))
    _check_addresses(rec.header, "tcp4", o, proxy)
    assert rec.header["tlvs"] == []


def test_no_header_without_the_flags(start_proxy, pp2_backend, ctx_for, pki):
    b = pp2_backend(expect_header=False)
    proxy = start_proxy(b)
    payload = b"first bytes straight from the client"
    _one(proxy, b, ctx_for(pki.client), payload=payload)
    assert bytes(b.records[0].received).startswith(payload)


def test_flags_are_exclusive(tlsgate_bin, pki):
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:2",
            "--cert", pki.server.cert_path, "--key", pki.server.key_path, "--allow-all",
            "--proxy-protocol", "--proxy-protocol-mode=tls"]
    rc, _, err = tg_daemon.run_once(argv)
    assert rc == 2 and "--proxy-protocol and --proxy-protocol-mode are mutually exclusive" in err
    rc, _, err = tg_daemon.run_once(argv[:-2] + ["--proxy-protocol-mode=full"])
    assert rc == 2 and "must be conn, tls or tls-full, not \"full\"" in err


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_version_and_no_sni(start_proxy, pp2_backend, ctx_for, pki, version):
    """The version sub-TLV follows what was negotiated; a client that sends no
    SNI (it connects to an IP address) gets no authority TLV."""
    b = pp2_backend()
    proxy = start_proxy(b, extra=["--proxy-protocol-mode=tls"])
    ctx = ctx_for(pki.client, version=version)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    o, rec = _one(proxy, b, ctx)
    assert dict(rec.header["ssl_subs"])[SUB_VERSION] == ("TLS " + version).encode()
    assert dict(rec.header["ssl_subs"])[SUB_CIPHER] == _iana(o.cipher).encode()
    assert dict(rec.header["tlvs"])[TYPE_AUTHORITY] == b"localhost"
    assert TYPE_ALPN not in dict(rec.header["tlvs"]), "tlsgate negotiates no ALPN"

    _, rec = _one(proxy, b, ctx, server_hostname="127.0.0.1")
    assert [t for t, _ in rec.header["tlvs"]] == [TYPE_SSL]


def test_tls_full_without_client_certificates(start_proxy, pp2_backend, ctx_for, pki):
    """--disable-authentication: SSL flag alone, no CN, no certificate."""
    b = pp2_backend()
    proxy = start_proxy(b, access=["--disable-authentication"],
                        extra=["--proxy-protocol-mode=tls-full"])
    _, rec = _one(proxy, b, ctx_for(None))
    assert rec.header["ssl_client"] == CLIENT_SSL
    assert [t for t, _ in rec.header["ssl_subs"]] == [SUB_VERSION, SUB_CIPHER]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_tls_full_on_resumed_session(start_proxy, pp2_backend, ctx_for, pki, version):
    """A resumed session carries the certificate the client showed first."""
    b = pp2_backend()
    proxy = start_proxy(b, extra=["--proxy-protocol-mode=tls-full"])
    ctx = ctx_for(pki.client_ou, version=version)
    o1, _ = _one(proxy, b, ctx)
    o2, rec = _one(proxy, b, ctx, session=o1.session)
    assert o2.session_reused, "the session did not resume"
    subs = dict(rec.header["ssl_subs"])
    assert subs[SUB_CN] == b"ou-client"
    assert subs[SUB_CLIENT_CERT] == _der(pki.client_ou)
    assert rec.header["ssl_client"] == CLIENT_SSL | CLIENT_CERT_CONN | CLIENT_CERT_SESS


def _big_client(pki, name, n_names):
    # Long DNS names inflate the certificate: about 60 bytes per name.
    names = ["n%05d.%s.example" % (i, "x" * 40) for i in range(n_names)]
    return pki.ca.issue(name, cn=name, dns=names)


def test_header_larger_than_pipe_buffer(start_proxy, pp2_backend, ctx_for, pki):
    """A 20+ KiB certificate makes a header larger than the 16 KiB pipe
    buffer: it still arrives whole, then the application bytes."""
    big = _big_client(pki, "big-client", 400)
    der = _der(big)
    assert 16384 < len(der) < 60000, len(der)
    b = pp2_backend()
    proxy = start_proxy(b, extra=["--proxy-protocol-mode=tls-full"])
    payload = os.urandom(50000)
    _, rec = _one(proxy, b, ctx_for(big), payload=payload, timeout=10)
    assert dict(rec.header["ssl_subs"])[SUB_CLIENT_CERT] == der


def test_certificate_too_large_is_refused_not_truncated(start_proxy, pp2_backend, ctx_for, pki):
    """Above 64 KiB the header cannot carry the certificate: the connection
    is closed before anything reaches the backend, and the reason logged."""
    huge = _big_client(pki, "huge-client", 1200)
    assert len(_der(huge)) > 65535
    b = pp2_backend()
    proxy = start_proxy(b, extra=["--proxy-protocol-mode=tls-full"])
    o = try_echo(proxy.addr, ctx_for(huge), timeout=10)
    assert o.data == b"" and o.error is not None, o
    assert b.wait_accepted(1, 3)
    rec = b.records[0]
    assert rec.done.wait(5)
    assert isinstance(rec.error, EOFError) and "after 0 bytes" in str(rec.error), rec.error
    proxy.wait_log("cannot send the PROXY protocol header", "more than 64 KiB")
    # (Such a client is of little use anyway: GnuTLS cannot fit its
    # certificate into a TLS 1.3 session ticket either, and refuses the TLS
    # 1.2 handshake. Only the header's refusal is checked here.)



@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_authority_with_underscore(start_proxy, pp2_backend, ctx_for, pki, version):
    """A server name with '_' (a container's host name) is served and passed
    on as sent in the authority TLV (src/sni.c; GnuTLS alone refuses it)."""
    b = pp2_backend()
    proxy = start_proxy(b, extra=["--proxy-protocol-mode=tls"])
    ctx = ctx_for(pki.client, version=version)
    ctx.check_hostname = False  # the test server certificate names localhost only
    for name in ("new_server", "my_api", "a_b.example"):
        _, rec = _one(proxy, b, ctx, server_hostname=name)
        assert dict(rec.header["tlvs"])[TYPE_AUTHORITY] == name.encode()
