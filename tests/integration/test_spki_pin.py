"""--allow-spki-pin: out-of-band pinning of the client's public key, with
Ghostunnel's semantics. The pin alone authenticates: the client must present
a certificate, whose leaf key must have one of the pins, but the chain is not
verified against --cacert and neither its dates nor its key usage count. A
mismatch fails the handshake with a bad_certificate alert (as Go's
VerifyPeerCertificate error does). The pins exclude the other access rules,
are checked at start, and are reloaded from the --config file."""
import base64
import datetime
import hashlib
import os
import signal
import ssl
import time
import types

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import tg_daemon
from conftest import listen_to_addr
from tg_checks import assert_allowed, assert_refused
from tg_clients import CliClient, MemTLS, tcp_connect

MISMATCH = "unauthorized: pin verification failed"
DIGESTS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


# --------------------------------------------------------------------------
# keys and certificates that --cacert (the session PKI's CA) knows nothing of
def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)


def _name(cn, o="tlsgate spki-pin tests"):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _new_key(kind):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _sign(builder, key):
    return builder.sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey)
                        else hashes.SHA256())


def _write(directory, name, certs, key):
    cert_path = os.path.join(directory, name + ".crt")
    key_path = os.path.join(directory, name + ".key")
    with open(cert_path, "wb") as f:
        for c in certs:
            f.write(c.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return types.SimpleNamespace(name=name, cert=certs[0], key=key, cert_path=cert_path,
                                 key_path=key_path)


class UntrustedCA:
    """A CA with a name of its own; --cacert never holds it."""

    def __init__(self, directory, name, cn, parent=None):
        self.directory = directory
        self.key = _new_key("ec")
        now = _now()
        b = (x509.CertificateBuilder()
             .subject_name(_name(cn))
             .issuer_name(parent.cert.subject if parent else _name(cn))
             .public_key(self.key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
        self.cert = _sign(b, parent.key if parent else self.key)
        self.parent = parent

    def issue(self, name, cn, kind="ec", key=None, days=(-1, 10), ekus=("client",),
              self_signed=False):
        key = key or _new_key(kind)
        now = _now()
        b = (x509.CertificateBuilder()
             .subject_name(_name(cn))
             .issuer_name(_name(cn) if self_signed else self.cert.subject)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now + datetime.timedelta(days=days[0]))
             .not_valid_after(now + datetime.timedelta(days=days[1]))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        if ekus:
            oids = {"client": ExtendedKeyUsageOID.CLIENT_AUTH,
                    "server": ExtendedKeyUsageOID.SERVER_AUTH}
            b = b.add_extension(x509.ExtendedKeyUsage([oids[e] for e in ekus]), critical=False)
        cert = _sign(b, key if self_signed else self.key)
        chain = [] if self_signed or not self.parent else [self.cert]
        return _write(self.directory, name, [cert] + chain, key)


def spki_der(key):
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def pin(key, algo="sha256"):
    """RFC 7469's pin of key, as Ghostunnel writes it: ALGO:BASE64."""
    if hasattr(key, "key"):
        key = key.key
    digest = DIGESTS[algo.lower()](spki_der(key)).digest()
    return "%s:%s" % (algo, base64.b64encode(digest).decode())


def pin_args(*pins):
    out = []
    for p in pins:
        out += ["--allow-spki-pin", p]
    return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("spki-pin"))
    ca = UntrustedCA(d, "untrusted-ca", "tlsgate spki-pin test CA")
    inter = UntrustedCA(d, "untrusted-int", "tlsgate spki-pin intermediate", parent=ca)
    k = types.SimpleNamespace(ca=ca, inter=inter)
    k.good = ca.issue("good", "pinned-client")
    # The same subject and issuer, another key.
    k.twin = ca.issue("twin", "pinned-client")
    k.self_signed = ca.issue("self-signed", "self-signed-client", self_signed=True)
    k.expired = ca.issue("expired", "expired-client", days=(-3, -1))
    k.future = ca.issue("future", "future-client", days=(1, 3))
    k.server_only = ca.issue("server-only", "server-only-client", ekus=("server",))
    k.rsa = ca.issue("rsa", "rsa-client", kind="rsa")
    k.ed25519 = ca.issue("ed25519", "ed25519-client", kind="ed25519")
    # Leaf first, then the intermediate, as a client sends them.
    k.chained = inter.issue("chained", "chained-client")
    return k


# --------------------------------------------------------------------------
def _alert(o):
    return str(o.error).lower() if isinstance(o.error, ssl.SSLError) else ""


def assert_pin_refused(proxy, backend, ctx):
    """Refused in the handshake with bad_certificate, logged as Ghostunnel
    logs it; the backend never sees it."""
    o = assert_refused(proxy, backend, ctx, phrases=(MISMATCH,))
    assert "alert bad certificate" in _alert(o), "expected bad_certificate, got %r" % (o,)
    proxy.wait_log("error on TLS handshake from", MISMATCH)
    return o


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_pinned_key_needs_no_trusted_chain(start_proxy, backend, ctx_for, pki, keys, version):
    """A client whose CA tlsgate does not trust gets in by its key; a client
    whose CA it does trust but whose key is not pinned does not."""
    proxy = start_proxy(backend, access=pin_args(pin(keys.good)))
    assert_allowed(proxy, backend, ctx_for(keys.good, version=version))
    # The CN is the client's, for the log and the PROXY header, as with the other rules.
    proxy.wait_log("opening pipe", "[CN=pinned-client]")
    assert_pin_refused(proxy, backend, ctx_for(pki.client, version=version))
    # A certificate is still required.
    o = assert_refused(proxy, backend, ctx_for(None, version=version))
    want = "alert certificate required" if version == "1.3" else "alert bad certificate"
    assert want in _alert(o), o
    assert_allowed(proxy, backend, ctx_for(keys.good, version=version))


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_chain_dates_and_key_usage_are_not_checked(start_proxy, backend, ctx_for, keys, version):
    """Ghostunnel asks Go for any client certificate (RequireAnyClientCert) and
    checks only the pin: self-signed, expired, not yet valid, without the
    clientAuth usage, any key type. Several pins of several algorithms: any
    one that matches lets its client in."""
    who = ["self_signed", "expired", "future", "server_only", "rsa", "ed25519", "good"]
    algos = ["sha256", "sha384", "sha512", "SHA256", "sha256", "sha512", "sha384"]
    proxy = start_proxy(backend, access=pin_args(*[pin(getattr(keys, w), a)
                                                   for w, a in zip(who, algos)]))
    for w in who:
        assert_allowed(proxy, backend, ctx_for(getattr(keys, w), version=version))
    assert_pin_refused(proxy, backend, ctx_for(keys.twin, version=version))


@pytest.mark.parametrize("algo", ["sha256", "sha384", "sha512", "SHA512"])
def test_each_digest_algorithm(start_proxy, backend, ctx_for, keys, algo):
    proxy = start_proxy(backend, access=pin_args(pin(keys.good, algo)))
    assert_allowed(proxy, backend, ctx_for(keys.good))
    assert_pin_refused(proxy, backend, ctx_for(keys.twin))


def _flip_last_byte(p):
    algo, b64 = p.split(":", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 0x01
    return "%s:%s" % (algo, base64.b64encode(bytes(raw)).decode())


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_near_misses_are_refused(start_proxy, backend, ctx_for, keys, version):
    """Only the leaf's own key counts, and all of its digest: not the same
    subject with another key, not the key of the CA that issued it, not the
    key of an intermediate the client sends along, not a digest one bit off."""
    proxy = start_proxy(backend, access=pin_args(
        _flip_last_byte(pin(keys.good)), pin(keys.ca.key), pin(keys.inter.key),
        pin(keys.self_signed)))
    assert_pin_refused(proxy, backend, ctx_for(keys.good, version=version))   # one bit off
    assert_pin_refused(proxy, backend, ctx_for(keys.twin, version=version))   # same subject
    assert_pin_refused(proxy, backend, ctx_for(keys.chained, version=version))  # issuer pinned
    # The pins are in force: the one that is right lets its client in.
    assert_allowed(proxy, backend, ctx_for(keys.self_signed, version=version))


def test_leaf_of_an_untrusted_chain(start_proxy, backend, ctx_for, keys):
    """A client sending leaf and intermediate of a CA nobody trusts: the leaf's
    pin is all it takes."""
    proxy = start_proxy(backend, access=pin_args(pin(keys.chained)))
    assert_allowed(proxy, backend, ctx_for(keys.chained))
    proxy.wait_log("opening pipe", "[CN=chained-client]")


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_certificate_request_names_no_ca(start_proxy, backend, pki, keys, version):
    """With pins the CA bundle authenticates nobody, so its names are not sent
    in the CertificateRequest (as Ghostunnel leaves ClientCAs empty), where a
    strict client would take them as a reason to withhold a pinned
    certificate. With the other rules they are sent."""
    def request_names(proxy, client):
        argv = ["openssl", "s_client", "-connect", "%s:%d" % proxy.addr, "-servername",
                "localhost", "-CAfile", pki.ca.cert_path, "-cert", client.cert_path,
                "-key", client.key_path, "-tls" + version.replace(".", "_"), "-nocommands"]
        c = CliClient(argv)
        try:
            c.wait_output(b"---\nSSL handshake has read", 10 * tg_daemon.slow_factor())
        finally:
            c.kill()
        out, _ = c.text()
        return out

    out = request_names(start_proxy(backend, access=pin_args(pin(keys.good))), keys.good)
    assert "No client certificate CA names sent" in out, out
    out = request_names(start_proxy(backend, access=["--allow-cn", "client"]), pki.client)
    assert "Acceptable client certificate CA names" in out and "tlsgate test root CA" in out, out


def test_resumed_session_is_checked_again(start_proxy, backend, ctx_for, keys):
    """A resumed session skips the Certificate message; its key is checked
    against the pins all the same (here: allowed, and resumed)."""
    proxy = start_proxy(backend, access=pin_args(pin(keys.good)))
    ctx = ctx_for(keys.good)
    o1 = assert_allowed(proxy, backend, ctx)
    o2 = assert_allowed(proxy, backend, ctx, session=o1.session)
    assert o2.session_reused, "the pinned client's session was not resumed"


# --------------------------------------------------------------------------
# refused at start
GOOD_PIN = "sha256:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk="
START_CASES = [
    ("with-allow-cn", ["--allow-cn", "client"],
     "--allow-spki-pin is mutually exclusive with other access control flags"),
    ("with-allow-ou", ["--allow-ou", "ops"], "--allow-spki-pin is mutually exclusive"),
    ("with-allow-dns", ["--allow-dns", "client.example"], "--allow-spki-pin is mutually exclusive"),
    ("with-allow-ip", ["--allow-ip", "10.1.2.3"], "--allow-spki-pin is mutually exclusive"),
    ("with-allow-uri", ["--allow-uri", "spiffe://x/**"], "--allow-spki-pin is mutually exclusive"),
    ("with-allow-all", ["--allow-all"],
     "--allow-all is mutually exclusive with other access control flags"),
    ("with-disable-authentication", ["--disable-authentication"],
     "--disable-authentication is mutually exclusive with other access control flags"),
    ("unknown-algorithm", ["--allow-spki-pin", "md5:HwFIfuF2TJtXpmf3rp/88g=="],
     '--allow-spki-pin: "md5:HwFIfuF2TJtXpmf3rp/88g==": unknown digest algorithm "md5"'),
    ("not-base64", ["--allow-spki-pin", "sha256:HwFIfuF2TJtXpmf3rp_88sHu82JkfsX66C4Igw6Z9Wk="],
     '--allow-spki-pin: "sha256:HwFIfuF2TJtXpmf3rp_88sHu82JkfsX66C4Igw6Z9Wk=": the digest is '
     'not base64'),
    # GnuTLS's decoder stops at a '-' (a PEM footer's): what follows the
    # pin must not be dropped unseen, nor a pin cut short.
    ("trailing-dash", ["--allow-spki-pin", GOOD_PIN + "-x"],
     '--allow-spki-pin: "%s-x": the digest is not base64' % GOOD_PIN),
    ("dash-inside", ["--allow-spki-pin", "sha256:HwFIfuF2TJtX-pmf3rp/88sHu82JkfsX66C4Igw6Z9Wk="],
     "the digest is not base64"),
    ("wrong-length", ["--allow-spki-pin", "sha512:HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk="],
     "a sha512 digest has 64 bytes, not 32"),
    ("no-algorithm", ["--allow-spki-pin", "HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk="],
     '--allow-spki-pin: "HwFIfuF2TJtXpmf3rp/88sHu82JkfsX66C4Igw6Z9Wk=" is not ALGO:BASE64'),
    ("empty", ["--allow-spki-pin="], "--allow-spki-pin: value must not be empty"),
]


@pytest.mark.parametrize("case", START_CASES, ids=[c[0] for c in START_CASES])
def test_refused_at_start(tlsgate_bin, pki, backend, case):
    _id, extra, message = case
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % tg_daemon.free_port(),
            "--target", backend.target, "--cacert", pki.ca.cert_path,
            "--cert", pki.server.cert_path, "--key", pki.server.key_path,
            "--allow-spki-pin", GOOD_PIN] + extra
    rc, out, err = tg_daemon.run_once(argv)
    assert rc == 2, "exit %s, stderr %r" % (rc, err)
    assert message in err, err
    assert len([l for l in err.splitlines() if l.strip()]) == 1, err


# --------------------------------------------------------------------------
# reload from the --config file
def _write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _conf(pki, listen, backend, access):
    return ("listen = %s\ntarget = %s\ncacert = %s\ncert = %s\nkey = %s\n%s"
            % (listen, backend.target, pki.ca.cert_path, pki.server.cert_path,
               pki.server.key_path, access))


def _reload(proxy, phrase):
    before = len(proxy.find_log(phrase))
    proxy.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5 * tg_daemon.slow_factor()
    while time.monotonic() < deadline:
        lines = proxy.find_log(phrase)
        if len(lines) > before:
            return lines[-1]
        time.sleep(0.02)
    raise AssertionError("no new %r line after SIGHUP; log:\n%s" % (phrase, proxy.log()))


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_pins_reload_from_the_config_file(proxy_factory, backend, ctx_for, pki, keys, tmp_path,
                                          version):
    listen = "127.0.0.1:%d" % tg_daemon.free_port()
    conf = str(tmp_path / "pins.conf")
    _write_atomic(conf, _conf(pki, listen, backend,
                              "allow-spki-pin = %s\nallow-spki-pin = %s\n"
                              % (pin(keys.good), pin(keys.rsa, "sha384"))))
    proxy = tg_daemon.Tlsgate([proxy_factory.binary, "server", "--config", conf],
                              proxy_factory.logdir)
    proxy.listen, proxy.addr = listen, listen_to_addr(listen)
    proxy_factory.started.append(proxy)
    proxy.start()

    good, twin = ctx_for(keys.good, version=version), ctx_for(keys.twin, version=version)
    session = assert_allowed(proxy, backend, good).session
    assert_allowed(proxy, backend, ctx_for(keys.rsa, version=version))
    assert_pin_refused(proxy, backend, twin)

    # A connection opened before the reload keeps working after it.
    raw = tcp_connect(proxy.addr)
    held = MemTLS(raw, good)
    try:
        held.handshake()
        assert held.pump(b"before\n", 7, timeout=5) == b"before\n"

        _write_atomic(conf, _conf(pki, listen, backend, "allow-spki-pin = %s\n" % pin(keys.twin)))
        line = _reload(proxy, "reloaded certificate")
        assert "changed settings: allow-spki-pin" in line, line

        assert_allowed(proxy, backend, twin)
        assert_pin_refused(proxy, backend, good)
        # Resuming a session from before does not keep the old pins.
        assert_refused(proxy, backend, good, session=session, phrases=(MISMATCH,))
        assert held.pump(b"after\n", 6, timeout=5) == b"after\n"
    finally:
        held.close()

    # A broken pin changes nothing, and the message names it.
    _write_atomic(conf, _conf(pki, listen, backend, "allow-spki-pin = sha1:AAAA\n"))
    line = _reload(proxy, "reload failed")
    assert conf in line and '--allow-spki-pin: "sha1:AAAA": unknown digest algorithm' in line, line
    assert_allowed(proxy, backend, twin)

    # From pins to the other rules: the chain counts again, the pins no longer.
    _write_atomic(conf, _conf(pki, listen, backend, "allow-cn = client\n"))
    line = _reload(proxy, "reloaded certificate")
    assert "changed settings: allow-cn, allow-spki-pin" in line, line
    assert_allowed(proxy, backend, ctx_for(pki.client, version=version))
    o = assert_refused(proxy, backend, twin)
    assert "alert unknown ca" in _alert(o), o
    # And back: a client the CA vouches for is judged by its key again, not
    # by what the previous generation's verification cache remembers.
    _write_atomic(conf, _conf(pki, listen, backend, "allow-spki-pin = %s\n" % pin(keys.good)))
    _reload(proxy, "reloaded certificate")
    assert_pin_refused(proxy, backend, ctx_for(pki.client, version=version))
    assert_allowed(proxy, backend, good)
