"""Pebble (the ACME test CA) on loopback, and the helpers the ACME tests share.

Pieces (docs/HACKING.md, "Facts tlsgate relies on": the validator, Pebble,
certmagic's storage):
  pebble-challtestsrv  mock DNS only: every A query answers 127.0.0.1, AAAA
                       queries answer nothing (the validator asks AAAA first
                       and dials only the first address).
  pebble               ACME server (WFE) and management interface, both HTTPS
                       with a throwaway CA made here; its validator resolves
                       names through the mock DNS and dials 127.0.0.1:tlsPort
                       with SNI = the name and ALPN ["acme-tls/1"], 3 at once.

So tlsgate must listen on 127.0.0.1:<tls_port>: a Pebble picks that port first
and the tests hand it to tlsgate's --listen.

Pebble keeps all state in memory: a restarted Pebble has a new root and forgets
every account. Fetch the root (root_path) before stopping it.

Fixtures (import them into a test module to use them):
  pebble_factory(**Pebble kwargs) -> started Pebble, stopped at teardown
  pebble                          -> pebble_factory() with the defaults
  acme_factory                    -> AcmeFactory: starts tlsgate with the
                                     --auto-acme-* command line against a Pebble
"""
import base64
import contextlib
import datetime
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

import tg_backends
import tg_daemon
from tg_clients import MemTLS, Outcome, try_echo

DOMAIN = "test.example"
EMAIL = "admin@test.example"
ACME_TLS_1 = "acme-tls/1"
ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")

# The lead's knob to make the startup backoff (5, 10, 20, 40 s) fast in CI.
BACKOFF_SCALE_ENV = "TLSGATE_TEST_BACKOFF_SCALE"

PEBBLE_BIN = os.environ.get("PEBBLE_BIN", "pebble")
CHALLTESTSRV_BIN = os.environ.get("PEBBLE_CHALLTESTSRV_BIN", "pebble-challtestsrv")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)


def pem_certs(data):
    """All certificates in a PEM bundle (bytes or str), in order."""
    if isinstance(data, bytes):
        data = data.decode("ascii")
    end = "-----END CERTIFICATE-----"
    out = []
    for part in data.split(end)[:-1]:
        start = part.find("-----BEGIN CERTIFICATE-----")
        assert start >= 0, "PEM block without BEGIN CERTIFICATE"
        out.append(x509.load_pem_x509_certificate((part[start:] + end + "\n").encode()))
    return out  # (cryptography 38 has no load_pem_x509_certificates)


def pem_block_types(data):
    """The BEGIN labels of a PEM file, in order ("CERTIFICATE", "EC PRIVATE KEY"...)."""
    if isinstance(data, bytes):
        data = data.decode("ascii", "replace")
    return [line[len("-----BEGIN "):-len("-----")] for line in data.splitlines()
            if line.startswith("-----BEGIN ") and line.endswith("-----")]


# ---------------------------------------------------------------------------
# Pebble's own HTTPS identity: a throwaway CA and a localhost certificate.
class HttpsCA:
    def __init__(self, directory):
        os.makedirs(directory, exist_ok=True)
        now = _now()
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                "tlsgate tests pebble https CA")])
        ca = (x509.CertificateBuilder()
              .subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(days=1))
              .not_valid_after(now + datetime.timedelta(days=30))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                           key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, key_cert_sign=True, crl_sign=True,
                                           encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
                .issuer_name(ca_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_key.public_key()), critical=False)
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        self.ca_path = os.path.join(directory, "https-ca.pem")
        self.cert_path = os.path.join(directory, "https-cert.pem")
        self.key_path = os.path.join(directory, "https-key.pem")
        with open(self.ca_path, "wb") as f:
            f.write(ca.public_bytes(serialization.Encoding.PEM))
        with open(self.cert_path, "wb") as f:
            f.write(leaf.public_bytes(serialization.Encoding.PEM))
        with open(self.key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        os.chmod(self.key_path, 0o600)


# ---------------------------------------------------------------------------
class _Proc:
    """One child process of ours, logging to a file; stopped by its own pid."""

    def __init__(self, name, argv, env, log_path):
        self.name, self.argv, self.log_path = name, argv, log_path
        self._logf = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=env, close_fds=True)

    def running(self):
        return self.proc.poll() is None

    def stop(self, timeout=5.0):
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        try:
            self._logf.close()
        except OSError:
            pass
        return self.proc.returncode

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


def _wait_tcp(port, proc, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.running():
            raise RuntimeError("%s exited with %s; log:\n%s"
                               % (what, proc.proc.returncode, proc.log()))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("%s not listening on 127.0.0.1:%d after %.0fs; log:\n%s"
                       % (what, port, timeout, proc.log()))


class Pebble:
    """pebble + pebble-challtestsrv on loopback.

    tls_port:      the port the validator dials (tlsgate's --listen port);
                   chosen here unless given.
    validity:      certificateValidityPeriod in seconds (None: Pebble's 5 years).
    nonce_reject:  PEBBLE_WFE_NONCEREJECT (percent of good nonces rejected).
    authz_reuse:   PEBBLE_AUTHZREUSE; 0 so that every order needs a challenge.
    ocsp_url:      ocspResponderURL: the OCSP URL in the certificates' AIA (Pebble
                   runs no responder; test_ocsp.py brings one).
    """

    def __init__(self, workdir, tls_port=None, validity=None, nonce_reject=0, authz_reuse=0,
                 env=None, ocsp_url=None):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.https = HttpsCA(os.path.join(workdir, "https"))
        self.dns_port = tg_daemon.free_port()
        self.cts_port = tg_daemon.free_port()
        self.wfe_port = tg_daemon.free_port()
        self.mgmt_port = tg_daemon.free_port()
        self.http_port = tg_daemon.free_port()  # HTTP-01: nobody listens, nobody asks
        self.tls_port = tls_port or tg_daemon.free_port()
        self.validity = validity
        self.nonce_reject = nonce_reject
        self.authz_reuse = authz_reuse
        self.extra_env = dict(env or {})
        self.config_path = os.path.join(workdir, "pebble-config.json")
        cfg = {
            "listenAddress": "127.0.0.1:%d" % self.wfe_port,
            "managementListenAddress": "127.0.0.1:%d" % self.mgmt_port,
            "certificate": self.https.cert_path,
            "privateKey": self.https.key_path,
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": ocsp_url or "",
            "externalAccountBindingRequired": False,
        }
        if validity is not None:
            cfg["certificateValidityPeriod"] = int(validity)
        with open(self.config_path, "w") as f:
            json.dump({"pebble": cfg}, f, indent=2)
        self.pebble = None
        self.challtestsrv = None
        self.root_path = os.path.join(workdir, "pebble-root.pem")
        self.intermediate_path = os.path.join(workdir, "pebble-intermediate.pem")
        self._https_ctx = ssl.create_default_context(cafile=self.https.ca_path)

    # -- addresses -----------------------------------------------------------
    @property
    def directory_url(self):
        return "https://127.0.0.1:%d/dir" % self.wfe_port

    @property
    def issuer_key(self):
        """certmagic's issuer key for this directory URL (src/storage.h)."""
        return "127.0.0.1-%d-dir" % self.wfe_port

    @property
    def https_ca_path(self):
        """The CA of Pebble's own HTTPS: give it to tlsgate as SSL_CERT_FILE."""
        return self.https.ca_path

    def mgmt_url(self, path):
        return "https://127.0.0.1:%d%s" % (self.mgmt_port, path)

    # -- life cycle ----------------------------------------------------------
    def _env(self):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("PEBBLE_"):
                del env[k]
        env.update({
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": str(self.nonce_reject),
            "PEBBLE_AUTHZREUSE": str(self.authz_reuse),
        })
        env.update(self.extra_env)
        return env

    def start(self, timeout=15.0):
        if self.challtestsrv is None or not self.challtestsrv.running():
            self.challtestsrv = _Proc(
                "pebble-challtestsrv",
                [CHALLTESTSRV_BIN, "-dns01", "127.0.0.1:%d" % self.dns_port, "-http01", "",
                 "-https01", "", "-tlsalpn01", "", "-management", "127.0.0.1:%d" % self.cts_port,
                 "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
                self._env(), os.path.join(self.dir, "challtestsrv.log"))
            _wait_tcp(self.cts_port, self.challtestsrv, timeout, "pebble-challtestsrv")
            _wait_tcp(self.dns_port, self.challtestsrv, timeout, "pebble-challtestsrv DNS")
        self.start_pebble(timeout)
        return self

    def start_pebble(self, timeout=15.0):
        """(Re)starts pebble alone. A restarted Pebble has a new root and no accounts."""
        assert self.pebble is None or not self.pebble.running()
        self.pebble = _Proc("pebble", [PEBBLE_BIN, "-config", self.config_path,
                                       "-dnsserver", "127.0.0.1:%d" % self.dns_port],
                            self._env(), os.path.join(self.dir, "pebble.log"))
        deadline = time.monotonic() + timeout
        last = None
        # Pebble opens the ACME and the management listeners one after the
        # other: wait for the directory and for the root it serves.
        while time.monotonic() < deadline:
            if not self.pebble.running():
                raise RuntimeError("pebble exited with %s; log:\n%s"
                                   % (self.pebble.proc.returncode, self.pebble.log()))
            try:
                d = self.get_json(self.directory_url, timeout=1.0)
                if "newOrder" in d:
                    root, intermediate = self.root_pem(), self.intermediate_pem()
                    break
            except (OSError, ValueError, urllib.error.URLError) as e:
                last = e
            time.sleep(0.05)
        else:
            raise RuntimeError("pebble directory %s not ready after %.0fs (%r); log:\n%s"
                               % (self.directory_url, timeout, last, self.pebble.log()))
        with open(self.root_path, "wb") as f:
            f.write(root)
        with open(self.intermediate_path, "wb") as f:
            f.write(intermediate)
        return self

    def stop_pebble(self):
        if self.pebble:
            self.pebble.stop()

    def stop(self):
        for p in (self.pebble, self.challtestsrv):
            if p:
                p.stop()

    def logs(self):
        return "\n".join("===== %s\n%s" % (p.name, p.log())
                         for p in (self.challtestsrv, self.pebble) if p)

    # -- HTTPS ---------------------------------------------------------------
    def get(self, url, timeout=5.0):
        with urllib.request.urlopen(url, context=self._https_ctx, timeout=timeout) as r:
            return r.read()

    def get_json(self, url, timeout=5.0):
        return json.loads(self.get(url, timeout))

    def root_pem(self):
        """Pebble's issuing root (changes with every pebble start)."""
        return self.get(self.mgmt_url("/roots/0"))

    def intermediate_pem(self):
        return self.get(self.mgmt_url("/intermediates/0"))

    def intermediate_key_pem(self):
        """The issuing intermediate's private key (Pebble hands it out for tests)."""
        return self.get(self.mgmt_url("/intermediate-keys/0"))

    def root_cert(self):
        """The root fetched when pebble last started (also after it stopped)."""
        with open(self.root_path, "rb") as f:
            return pem_certs(f.read())[0]

    def intermediate_cert(self):
        with open(self.intermediate_path, "rb") as f:
            return pem_certs(f.read())[0]


# ---------------------------------------------------------------------------
# Clients of tlsgate in ACME mode.
def client_ctx(pebble, cert=None, version=None, alpn=None):
    """Trusts Pebble's issuing root, checks the host name; cert: an Issued or None."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pebble.root_path)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert is not None:
        ctx.load_cert_chain(cert.cert_path, cert.key_path)
    if version:
        ctx.minimum_version = ctx.maximum_version = {"1.2": ssl.TLSVersion.TLSv1_2,
                                                     "1.3": ssl.TLSVersion.TLSv1_3}[version]
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def probe_ctx(alpn, version=None, cert=None):
    """Like the validator: no verification, the given ALPN list, optionally a client cert."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version:
        ctx.minimum_version = ctx.maximum_version = {"1.2": ssl.TLSVersion.TLSv1_2,
                                                     "1.3": ssl.TLSVersion.TLSv1_3}[version]
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    if cert is not None:
        ctx.load_cert_chain(cert.cert_path, cert.key_path)
    return ctx


class Echo(Outcome):
    """try_echo()'s Outcome with the served leaf parsed, as the ACME tests read it."""

    @property
    def ok(self):
        return self.echoed

    @property
    def leaf(self):
        return x509.load_der_x509_certificate(self.leaf_der) if self.leaf_der else None

    @property
    def serial(self):
        leaf = self.leaf
        return leaf.serial_number if leaf is not None else None

    def __repr__(self):
        return ("<Echo local=%s handshake_ok=%s serial=%s alpn=%s version=%s data=%r error=%r>"
                % (self.local, self.handshake_ok, self.serial, self.alpn, self.version,
                   self.data[:40], self.error))


def echo(addr, ctx, sni=DOMAIN, payload=None, timeout=5.0, session=None):
    """Handshake with SNI, record the served leaf, send payload, read it back.
    Never raises for TLS/socket errors."""
    return try_echo(addr, ctx, payload, timeout, session, server_hostname=sni, outcome=Echo())


class Probe:
    """What an acme-tls/1 style client saw."""

    def __init__(self):
        self.local = None
        self.handshake_ok = False
        self.handshake_error = None
        self.alpn = None
        self.version = None
        self.leaf = None
        self.data = b""
        self.closed = None      # "close_notify", "tcp_eof", "alert:<...>" or None (still open)
        self.read_error = None
        self.session = None
        self.session_reused = None
        self.elapsed_close = None

    @property
    def has_ticket(self):
        return bool(self.session is not None and self.session.has_ticket)

    def __repr__(self):
        return ("<Probe local=%s handshake_ok=%s (%r) alpn=%s version=%s data=%r closed=%s "
                "read_error=%r reused=%s ticket=%s>"
                % (self.local, self.handshake_ok, self.handshake_error, self.alpn, self.version,
                   self.data[:40], self.closed, self.read_error, self.session_reused,
                   self.has_ticket))


def probe(addr, ctx, sni=DOMAIN, send=None, session=None, read_timeout=3.0):
    """Handshake, optionally send bytes, then read until the server closes (or
    read_timeout passes). Records the negotiated ALPN, the served leaf, the
    session (read after the read attempt, when TLS 1.3 tickets have arrived)."""
    p = Probe()
    try:
        c = MemTLS.connect(addr, ctx, server_hostname=sni, session=session)
    except OSError as e:
        p.handshake_error = e
        return p
    p.local = c.sock.getsockname()
    try:
        try:
            c.handshake(timeout=5.0)
        except (ssl.SSLError, OSError, EOFError, TimeoutError) as e:
            p.handshake_error = e
            return p
        p.handshake_ok = True
        p.alpn = c.obj.selected_alpn_protocol()
        p.version = c.obj.version()
        p.session_reused = c.obj.session_reused
        der = c.obj.getpeercert(binary_form=True)
        p.leaf = x509.load_der_x509_certificate(der) if der else None
        t0 = time.monotonic()
        try:
            if send:
                c.send(send)
            buf = bytearray()
            while True:
                d = c.recv(65536, timeout=max(0.0, t0 + read_timeout - time.monotonic()))
                if not d:
                    p.closed = "close_notify"
                    break
                buf += d
            p.data = bytes(buf)
        except ssl.SSLEOFError as e:
            p.closed, p.read_error = "tcp_eof", e
        except ssl.SSLError as e:
            p.closed, p.read_error = "alert:%s" % (getattr(e, "reason", None) or e), e
        except (EOFError, ConnectionError, BrokenPipeError) as e:
            p.closed, p.read_error = "tcp_eof", e
        except TimeoutError as e:
            p.read_error = e  # still open
        if p.closed:
            p.elapsed_close = time.monotonic() - t0
        try:
            p.session = c.obj.session
        except (ssl.SSLError, ValueError):
            p.session = None
    finally:
        c.close()
    return p


def tcp_peer_str(local):
    return ("[%s]:%d" if ":" in local[0] else "%s:%d") % (local[0], local[1])


def log_lines_with(gate, *words):
    """tlsgate log lines containing every word, case-insensitively (the exact
    phrases are the lead's to choose: match loosely)."""
    words = [w.lower() for w in words]
    return [l for l in gate.log_lines() if all(w in l.lower() for w in words)]


def wait_log_with(gate, *words, timeout=5.0):
    timeout *= tg_daemon.slow_factor()
    found = tg_daemon.wait_until(lambda: log_lines_with(gate, *words), timeout)
    assert found, "no log line with all of %r within %.1fs; log:\n%s" % (words, timeout, gate.log())
    return found


def ready_after(gate):
    """Seconds from process start to READY=1 (None if none was sent)."""
    m = gate.notify.find("READY", "1")
    return None if m is None else m[1][0] - gate.start_time


def status_values(gate):
    with gate.notify.cond:
        return [m[2]["STATUS"] for m in gate.notify.messages if "STATUS" in m[2]]


def dns_sans(cert):
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return ext.value.get_values_for_type(x509.DNSName)


# ---------------------------------------------------------------------------
# certmagic storage (docs/HACKING.md, "certmagic's storage layout"), spelled out
# for the paths the tests use.
def cert_files(xdg, pebble, domain=DOMAIN):
    d = os.path.join(xdg, "certmagic", "certificates", pebble.issuer_key, domain)
    return {ext: os.path.join(d, "%s.%s" % (domain, ext)) for ext in ("crt", "key", "json")}


def account_files(xdg, pebble, email=EMAIL):
    d = os.path.join(xdg, "certmagic", "acme", pebble.issuer_key, "users", email)
    local = email.split("@", 1)[0]
    return {ext: os.path.join(d, "%s.%s" % (local, ext)) for ext in ("json", "key")}


def stored_leaf(xdg, pebble, domain=DOMAIN):
    with open(cert_files(xdg, pebble, domain)["crt"], "rb") as f:
        return pem_certs(f.read())[0]


def go_json_indent(obj):
    """json.MarshalIndent(v, "", "\\t") as Go writes it (no trailing newline)."""
    return json.dumps(obj, indent="\t", separators=(",", ": "), ensure_ascii=False)


# ---------------------------------------------------------------------------
# tlsgate with --auto-acme-*
def acme_creds(ca_url, client_ca, domain=DOMAIN, email=EMAIL, tos=True, testca=None):
    creds = ["--cacert", client_ca, "--auto-acme-cert=" + domain]
    if email is not None:
        creds.append("--auto-acme-email=" + email)
    if tos:
        creds.append("--auto-acme-agree-to-tos")
    if ca_url is not None:
        creds.append("--auto-acme-ca=" + ca_url)
    if testca is not None:
        creds.append("--auto-acme-testca=" + testca)
    return creds


class AcmeFactory:
    """Starts tlsgate in ACME mode through the suite's ProxyFactory (so its log
    is printed when a test fails). One XDG_DATA_HOME per test unless given."""

    def __init__(self, proxy_factory, pki, tmp_path):
        self.pf, self.pki = proxy_factory, pki
        self.xdg = str(tmp_path / "xdg")
        os.makedirs(self.xdg, exist_ok=True)

    def start(self, pebble, backend, ca_url=None, testca=None, xdg=None, listen=None,
              access=("--allow-cn", "client"), env=None, wait_ready=True, timeout=10.0,
              extra=(), domain=DOMAIN, email=EMAIL, prefix=(), expect_exit=0):
        xdg = xdg or self.xdg
        if ca_url is None and testca is None:
            ca_url = pebble.directory_url
        # Without a Pebble (a CA that is down or a decoy) any CA file will do.
        e = {"SSL_CERT_FILE": pebble.https_ca_path if pebble else self.pki.ca.cert_path,
             "XDG_DATA_HOME": xdg, "HOME": xdg}
        e.update(env or {})
        port = pebble.tls_port if pebble else tg_daemon.free_port()
        t = self.pf.start(backend, access=list(access),
                          listen=listen or "127.0.0.1:%d" % port,
                          creds=acme_creds(ca_url, self.pki.ca.cert_path, domain=domain,
                                           email=email, testca=testca),
                          extra=extra, env=e, wait_ready=wait_ready, timeout=timeout,
                          prefix=prefix, expect_exit=expect_exit)
        t.xdg, t.pebble, t.backend = xdg, pebble, backend
        return t


def _failed(request):
    node = request.node
    return any(getattr(node, "rep_" + w, None) is not None and getattr(node, "rep_" + w).failed
               for w in ("setup", "call"))


@pytest.fixture
def pebble_factory(tmp_path, request):
    made = []

    def make(**kw):
        for b in (PEBBLE_BIN, CHALLTESTSRV_BIN):
            if not shutil.which(b):
                pytest.fail("%s not found: install Debian's pebble package" % b, pytrace=False)
        p = Pebble(str(tmp_path / ("pebble%d" % len(made))), **kw)
        made.append(p)
        p.start()
        return p
    yield make
    failed = _failed(request)
    for p in made:
        p.stop()
        if failed:
            sys.stderr.write("\n" + p.logs() + "\n")


@pytest.fixture
def pebble(pebble_factory):
    return pebble_factory()


@pytest.fixture
def acme_factory(proxy_factory, pki, tmp_path):
    return AcmeFactory(proxy_factory, pki, tmp_path)


# ---------------------------------------------------------------------------
class ConnCounter:
    """A TCP listener on 127.0.0.1:port that records when each connection
    arrived and closes it at once (or holds it when hold=True). Stands in for a
    CA that must not be contacted, or one that fails every attempt."""

    def __init__(self, port, hold=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.hold = hold
        self.times = []
        self.held = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True, name="conn-counter")
        self._t.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.times.append(time.monotonic())
            if self.hold:
                self.held.append(c)
            else:
                c.close()

    @property
    def count(self):
        return len(self.times)

    def close(self):
        self._stop.set()
        self._t.join(2)
        self.sock.close()
        for c in self.held:
            c.close()


# ---------------------------------------------------------------------------
# A minimal ACME client (RFC 8555, ES256) used to prepare "foreign" storage the
# way certmagic would, and to check the fixture without tlsgate (run this file).
def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class AcmeClient:
    """key: an EC P-256 private key (cryptography), e.g. one tlsgate stored."""

    def __init__(self, pebble, key=None):
        self.pebble = pebble
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        self.dir = pebble.get_json(pebble.directory_url)
        self.kid = None
        self.nonce = None
        self.bad_nonces = 0
        self.account = None
        self._ctx = ssl.create_default_context(cafile=pebble.https_ca_path)

    def jwk(self):
        n = self.key.public_key().public_numbers()
        return {"crv": "P-256", "kty": "EC", "x": b64u(n.x.to_bytes(32, "big")),
                "y": b64u(n.y.to_bytes(32, "big"))}

    def thumbprint(self):
        j = json.dumps(self.jwk(), sort_keys=True, separators=(",", ":")).encode()
        return b64u(hashlib.sha256(j).digest())

    def _new_nonce(self):
        req = urllib.request.Request(self.dir["newNonce"], method="HEAD")
        with urllib.request.urlopen(req, context=self._ctx, timeout=5) as r:
            return r.headers["Replay-Nonce"]

    def post(self, url, payload, use_jwk=False):
        """payload None = POST-as-GET. Returns (status, headers, body bytes)."""
        for _ in range(20):
            nonce = self.nonce or self._new_nonce()
            self.nonce = None
            prot = {"alg": "ES256", "nonce": nonce, "url": url}
            if use_jwk or self.kid is None:
                prot["jwk"] = self.jwk()
            else:
                prot["kid"] = self.kid
            p64 = b64u(json.dumps(prot).encode())
            pl64 = "" if payload is None else b64u(json.dumps(payload).encode())
            der = self.key.sign(("%s.%s" % (p64, pl64)).encode(), ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            body = json.dumps({"protected": p64, "payload": pl64,
                               "signature": b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))})
            req = urllib.request.Request(url, data=body.encode(), method="POST",
                                         headers={"Content-Type": "application/jose+json"})
            try:
                with urllib.request.urlopen(req, context=self._ctx, timeout=10) as resp:
                    self.nonce = resp.headers.get("Replay-Nonce")
                    return resp.status, resp.headers, resp.read()
            except urllib.error.HTTPError as e:
                self.nonce = e.headers.get("Replay-Nonce")
                data = e.read()
                if b"badNonce" in data:
                    self.bad_nonces += 1
                    continue
                raise RuntimeError("ACME %s: HTTP %d %s" % (url, e.code, data.decode()))
        raise RuntimeError("too many badNonce")

    def register(self, email=EMAIL):
        _st, hdr, body = self.post(self.dir["newAccount"],
                                   {"termsOfServiceAgreed": True, "contact": ["mailto:" + email]},
                                   use_jwk=True)
        self.kid = hdr["Location"]
        self.account = json.loads(body)
        self.account["location"] = self.kid
        return self.account

    def lookup(self):
        """newAccount with onlyReturnExisting: the account URL this key belongs to
        (raises if the CA knows no account for the key)."""
        _st, hdr, _body = self.post(self.dir["newAccount"], {"onlyReturnExisting": True},
                                    use_jwk=True)
        return hdr["Location"]

    def _poll(self, url, until, timeout=15.0):
        deadline = time.monotonic() + timeout
        while True:
            _st, _h, body = self.post(url, None)
            obj = json.loads(body)
            if obj.get("status") in until:
                return obj
            if obj.get("status") == "invalid" or time.monotonic() > deadline:
                raise RuntimeError("ACME object %s: %s" % (url, json.dumps(obj)))
            time.sleep(0.05)

    def issue(self, domain, answer):
        """Orders a certificate for domain. answer(domain, key_authorization) must
        make the tls-alpn-01 challenge answerable and return a callable that
        stops answering. Returns (key, chain PEM bytes, certificate URL)."""
        _st, hdr, body = self.post(self.dir["newOrder"],
                                   {"identifiers": [{"type": "dns", "value": domain}]})
        order_url, order = hdr["Location"], json.loads(body)
        for az_url in order["authorizations"]:
            _st, _h, body = self.post(az_url, None)
            az = json.loads(body)
            if az["status"] == "valid":
                continue
            ch = next(c for c in az["challenges"] if c["type"] == "tls-alpn-01")
            stop = answer(domain, ch["token"] + "." + self.thumbprint())
            try:
                self.post(ch["url"], {})
                self._poll(az_url, ("valid",))
            finally:
                stop()
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
               .sign(key, hashes.SHA256()))
        self.post(order["finalize"],
                  {"csr": b64u(csr.public_bytes(serialization.Encoding.DER))})
        order = self._poll(order_url, ("valid",))
        _st, _h, chain = self.post(order["certificate"], None)
        return key, chain, order["certificate"]


def challenge_cert(domain, key_authorization):
    """A TLS-ALPN-01 challenge certificate (RFC 8737): one DNS SAN, critical acmeIdentifier."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode()).digest()
    now = _now()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme challenge")])
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, b"\x04\x20" + digest),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


class AlpnResponder:
    """A TLS-ALPN-01 responder on 127.0.0.1:port (Python ssl), for preparing
    storage without tlsgate. Counts handshakes that negotiated acme-tls/1."""

    def __init__(self, port, domain, key_authorization, workdir):
        cert, key = challenge_cert(domain, key_authorization)
        cp, kp = os.path.join(workdir, "chal.crt"), os.path.join(workdir, "chal.key")
        with open(cp, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(kp, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cp, kp)
        self.ctx.set_alpn_protocols([ACME_TLS_1])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.validated = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True, name="alpn-responder")
        self._t.start()

    def _one(self, c):
        try:
            c.settimeout(5)
            s = self.ctx.wrap_socket(c, server_side=True)
            if s.selected_alpn_protocol() == ACME_TLS_1:
                self.validated += 1
            s.close()
        except (ssl.SSLError, OSError):
            c.close()

    def _loop(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def close(self):
        self._stop.set()
        self._t.join(2)
        self.sock.close()


def issue_with_python(pebble, workdir, domain=DOMAIN, email=EMAIL):
    """Registers an account and obtains a certificate with the Python client,
    answering on pebble.tls_port. Returns (AcmeClient, cert key, chain PEM, cert URL)."""
    client = AcmeClient(pebble)
    client.register(email)
    responders = []

    def answer(d, ka):
        r = AlpnResponder(pebble.tls_port, d, ka, workdir)
        responders.append(r)
        return r.close
    key, chain, url = client.issue(domain, answer)
    assert responders and responders[0].validated >= 1, "the validator never connected"
    return client, key, chain, url


def write_certmagic_storage(xdg, pebble, client, key, chain, cert_url, domain=DOMAIN,
                            email=EMAIL):
    """Writes an account and a certificate as certmagic (Ghostunnel, Caddy) does."""
    def put(path, data, mode=0o600):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
    ec_pem = serialization.PrivateFormat.TraditionalOpenSSL  # "EC PRIVATE KEY"
    cf, af = cert_files(xdg, pebble, domain), account_files(xdg, pebble, email)
    put(cf["crt"], chain)
    put(cf["key"], key.private_bytes(serialization.Encoding.PEM, ec_pem,
                                     serialization.NoEncryption()))
    put(cf["json"], go_json_indent({"sans": [domain], "issuer_data": {
        "url": cert_url, "ca": pebble.directory_url, "account": client.kid}}).encode())
    acct = {"status": client.account.get("status", "valid"),
            "contact": client.account.get("contact", ["mailto:" + email]),
            "termsOfServiceAgreed": True}
    if client.account.get("orders"):
        acct["orders"] = client.account["orders"]
    acct["location"] = client.kid
    put(af["json"], go_json_indent(acct).encode())
    put(af["key"], client.key.private_bytes(serialization.Encoding.PEM, ec_pem,
                                            serialization.NoEncryption()))
    for root, dirs, _files in os.walk(os.path.join(xdg, "certmagic")):
        os.chmod(root, 0o700)
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o700)


# ---------------------------------------------------------------------------
def _selftest():
    """python3 tg_pebble.py: start Pebble, fetch the directory and the roots,
    issue one certificate with the Python client and verify it, stop."""
    import tempfile
    import shutil
    d = tempfile.mkdtemp(prefix="tg-pebble-selftest-")
    p = Pebble(d, validity=30)
    try:
        t0 = time.monotonic()
        p.start()
        print("pebble ready in %.2fs: %s" % (time.monotonic() - t0, p.directory_url))
        print("directory:", sorted(p.get_json(p.directory_url)))
        root = pem_certs(p.root_pem())[0]
        inter = pem_certs(p.intermediate_pem())[0]
        print("root:", root.subject.rfc4514_string(),
              "intermediate:", inter.subject.rfc4514_string())
        t0 = time.monotonic()
        client, key, chain, url = issue_with_python(p, d)
        certs = pem_certs(chain)
        leaf = certs[0]
        print("issued in %.2fs: serial %x, %s .. %s (%ds), chain of %d"
              % (time.monotonic() - t0, leaf.serial_number, leaf.not_valid_before,
                 leaf.not_valid_after,
                 (leaf.not_valid_after - leaf.not_valid_before).total_seconds(),
                 len(certs)))
        print("account:", json.dumps(client.account))
        assert certs[1].subject == inter.subject
        # Serve it and verify with the hostname check, as the tests' clients do.
        cp, kp = os.path.join(d, "leaf.crt"), os.path.join(d, "leaf.key")
        with open(cp, "wb") as f:
            f.write(chain)
        with open(kp, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(cp, kp)
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)

        def serve():
            c, _ = ls.accept()
            try:
                sctx.wrap_socket(c, server_side=True).close()
            except (ssl.SSLError, OSError):
                c.close()
        th = threading.Thread(target=serve, daemon=True)
        th.start()
        s = client_ctx(p).wrap_socket(socket.create_connection(ls.getsockname()),
                                      server_hostname=DOMAIN)
        print("verified against /roots/0 with SNI %s: %s" % (DOMAIN, s.version()))
        s.close()
        th.join(2)
        ls.close()
    finally:
        p.stop()
        print("stopped: pebble rc %s, challtestsrv rc %s"
              % (p.pebble.proc.returncode if p.pebble else None,
                 p.challtestsrv.proc.returncode if p.challtestsrv else None))
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    _selftest()


class GateEnv:
    """What running_acme_gate() yields: pebble, backend, gate (a Tlsgate with .addr)."""


@contextlib.contextmanager
def running_acme_gate(tlsgate_bin, pki, workdir, request, label):
    """One Pebble, one echo backend (recording data) and one tlsgate that has
    obtained its certificate, shared by a test module; logs are printed when
    a test of the module failed."""
    failed_before = request.session.testsfailed
    env = GateEnv()
    env.dir = str(workdir)
    env.pebble = Pebble(os.path.join(env.dir, "pebble"))
    env.backend = None
    env.gate = None
    try:
        for b in (PEBBLE_BIN, CHALLTESTSRV_BIN):
            if not shutil.which(b):
                pytest.fail("%s not found: install Debian's pebble package" % b, pytrace=False)
        env.pebble.start()
        env.backend = tg_backends.Backend("echo", record_data=True)
        xdg = os.path.join(env.dir, "xdg")
        os.makedirs(xdg)
        argv = ([tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % env.pebble.tls_port,
                 "--target", env.backend.target]
                + acme_creds(env.pebble.directory_url, pki.ca.cert_path)
                + ["--allow-cn", "client"])
        env.gate = tg_daemon.Tlsgate(argv, env.dir, env={
            "SSL_CERT_FILE": env.pebble.https_ca_path, "XDG_DATA_HOME": xdg, "HOME": xdg})
        env.gate.addr = ("127.0.0.1", env.pebble.tls_port)
        env.gate.start(timeout=15)
        yield env
    finally:
        failed = request.session.testsfailed > failed_before
        problem = None
        if env.gate:
            rc = env.gate.cleanup()
            if failed:
                sys.stderr.write("\n===== tlsgate (%s) %s\n%s\n"
                                 % (label, tg_daemon.describe_exit(rc), env.gate.log()))
            problem = env.gate.exit_problem() or env.gate.memory_errors()
        if env.backend:
            env.backend.stop()
        if failed:
            sys.stderr.write("\n" + env.pebble.logs() + "\n")
        env.pebble.stop()
        # A crash, a hang at shutdown or a memory error of the shared gate
        # fails the module's last test in teardown.
        if problem:
            pytest.fail(problem, pytrace=False)
