"""OCSP stapling (issue 5): the served certificate's OCSP response, fetched
from the responder named in its AIA, verified and stapled.

Responders on loopback:
  openssl ocsp   the issue's responder: good staple, responder down, revoked
                 (index.txt marked R, responder restarted), a reload with a
                 new certificate. It signs with a delegated responder
                 certificate (OCSPSigning) and sets nextUpdate in whole
                 minutes or days (-nmin/-ndays), and OpenSSL 3.0 binds it to
                 all interfaces (-port takes no address).
  PyResponder    python3-cryptography's OCSP builder in a small HTTP server,
                 for what openssl ocsp cannot do quickly: responses valid for
                 seconds (the refresh after the midpoint of thisUpdate..
                 nextUpdate, a staple dropped at nextUpdate while the responder
                 is down and back once it returns), and answers signed with
                 Pebble's intermediate key for the ACME path (Pebble puts our
                 URL in the AIA with ocspResponderURL but runs no responder).

Clients: `openssl s_client -status` shows the staple (Python's ssl cannot).
Log phrases are matched loosely.
"""
import datetime
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

import tg_daemon
import tg_pki
from tg_pebble import DOMAIN, BACKOFF_SCALE_ENV, client_ctx, echo, stored_leaf
from tg_pebble import acme_factory, pebble_factory  # noqa: F401,F811 (fixtures)
from tg_clients import client_context, try_echo

HERE = os.path.dirname(os.path.abspath(__file__))
OCSP_REVOKED_ID = "3c126ce1d1224a78a1ca804cbdcbd85e"  # src/log.h MESSAGE_ID_OCSP_REVOKED
FAST = {BACKOFF_SCALE_ENV: "0.01"}  # OCSP retries 0.3 s .. 6 s instead of 30 s .. 10 min


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)


# ---------------------------------------------------------------------------
# PKI: a CA of its own for the served certificate, with a delegated responder.
class OcspPKI:
    def __init__(self, directory):
        self.dir = directory
        self.ca = tg_pki.CA(directory, "ocsp-ca", "tlsgate OCSP test CA")
        self.responder = self._issue("responder", "tlsgate OCSP responder",
                                     eku=[ExtendedKeyUsageOID.OCSP_SIGNING], chain=False)

    def _issue(self, name, cn, eku, ocsp_url=None, chain=True, dns=()):
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(self.ca.cert.subject)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=10))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 self.ca.key.public_key()), critical=False))
        if dns:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(d) for d in dns]), critical=False)
        if ocsp_url:
            b = b.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url))]),
                critical=False)
        cert = b.sign(self.ca.key, hashes.SHA256())
        cert_path = os.path.join(self.dir, name + ".crt")
        key_path = os.path.join(self.dir, name + ".key")
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
            if chain:
                f.write(self.ca.cert.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        return tg_pki.Issued(name, cert, key, [self.ca.cert] if chain else [], cert_path,
                             key_path)

    def server(self, name, ocsp_url=None, chain=True):
        """A server certificate for localhost; AIA OCSP URL when given."""
        return self._issue(name, "localhost", [ExtendedKeyUsageOID.SERVER_AUTH],
                           ocsp_url=ocsp_url, chain=chain, dns=["localhost"])


@pytest.fixture(scope="module")
def opki(tmp_path_factory):
    return OcspPKI(str(tmp_path_factory.mktemp("ocsp-pki")))


def ocsp_url(port):
    return "http://127.0.0.1:%d/" % port


# ---------------------------------------------------------------------------
class OpensslResponder:
    """`openssl ocsp -index index.txt -port PORT -rsigner ... -CA ...` as the
    issue asks; restart() after changing the index (it reads it once)."""

    def __init__(self, workdir, port, opki, ndays=1):
        self.dir, self.port, self.opki, self.ndays = workdir, port, opki, ndays
        self.index = os.path.join(workdir, "index.txt")
        self.log_path = os.path.join(workdir, "openssl-ocsp.log")
        self.proc = None
        self.entries = {}

    def set(self, issued, status):
        """status: "V" (valid) or "R" (revoked)."""
        self.entries[issued.cert.serial_number] = (issued, status)
        lines = []
        for serial, (iss, st) in self.entries.items():
            hexs = "%X" % serial
            hexs = "0" * (len(hexs) % 2) + hexs  # as BN_bn2hex() spells it
            expiry = iss.cert.not_valid_after.strftime("%y%m%d%H%M%SZ")
            revoked = ((_now() - datetime.timedelta(minutes=5)).strftime("%y%m%d%H%M%SZ")
                       + ",keyCompromise") if st == "R" else ""
            lines.append("\t".join([st, expiry, revoked, hexs, "unknown",
                                    "/CN=" + iss.cert.subject.get_attributes_for_oid(
                                        NameOID.COMMON_NAME)[0].value]))
        with open(self.index, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(self.index + ".attr", "w") as f:
            f.write("unique_subject = no\n")

    def start(self):
        self._logf = open(self.log_path, "ab")
        offset = self._logf.tell()
        self.proc = subprocess.Popen(
            ["openssl", "ocsp", "-index", self.index, "-port", str(self.port),
             "-rsigner", self.opki.responder.cert_path, "-rkey", self.opki.responder.key_path,
             "-CA", self.opki.ca.cert_path, "-ndays", str(self.ndays), "-ignore_err"],
            stdin=subprocess.DEVNULL, stdout=self._logf, stderr=subprocess.STDOUT)
        # Not by connecting: openssl ocsp serves one connection at a time and
        # hangs on one that closes without a request.
        ready = tg_daemon.wait_until(
            lambda: self.proc.poll() is not None
            or "waiting for OCSP client connections" in self.log()[offset:], 10)
        if not ready or self.proc.poll() is not None:
            raise RuntimeError("openssl ocsp did not start:\n" + self.log())
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc is not None:
            self._logf.close()
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class PyResponder:
    """An OCSP responder with exact, short validity, on 127.0.0.1:port.

    Answers for any serial under `issuer` (the CertID is built from a stand-in
    certificate with the requested serial: cryptography 38 has no builder
    call that takes a CertID). status(serial) -> "good" | "revoked"."""

    def __init__(self, port, issuer, signer, signer_key, validity, certs=(), status=None):
        self.port, self.issuer, self.signer, self.signer_key = port, issuer, signer, signer_key
        self.validity, self.certs = validity, list(certs)
        self.status = status or (lambda serial: "good")
        self.requests = []  # (monotonic, serial, status sent)
        self.server = None
        self._dummy_key = ec.generate_private_key(ec.SECP256R1())

    def _answer(self, body):
        req = ocsp.load_der_ocsp_request(body)
        serial = req.serial_number
        st = self.status(serial)
        now = _now()
        stand_in = (x509.CertificateBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
                    .issuer_name(self.issuer.subject)
                    .public_key(self._dummy_key.public_key())
                    .serial_number(serial)
                    .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                    .sign(self._dummy_key, hashes.SHA256()))
        b = ocsp.OCSPResponseBuilder().add_response(
            cert=stand_in, issuer=self.issuer, algorithm=req.hash_algorithm,
            cert_status=ocsp.OCSPCertStatus.REVOKED if st == "revoked" else ocsp.OCSPCertStatus.GOOD,
            this_update=now, next_update=now + datetime.timedelta(seconds=self.validity),
            revocation_time=now - datetime.timedelta(minutes=1) if st == "revoked" else None,
            revocation_reason=x509.ReasonFlags.key_compromise if st == "revoked" else None)
        b = b.responder_id(ocsp.OCSPResponderEncoding.HASH, self.signer)
        if self.certs:
            b = b.certificates(self.certs)
        self.requests.append((time.monotonic(), serial, st))
        return b.sign(self.signer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def start(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    data = outer._answer(body)
                except Exception as e:  # a broken request: tell the test's log
                    sys.stderr.write("PyResponder: %r\n" % (e,))
                    self.send_response(400)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True, name="ocsp").start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def responders():
    made = []
    yield made
    for r in made:
        r.stop()


# ---------------------------------------------------------------------------
# Clients
class Staple:
    def __init__(self, rc, out):
        self.rc, self.out = rc, out

    @property
    def present(self):
        return "OCSP Response Status: successful" in self.out

    @property
    def none(self):
        return "no response sent" in self.out

    @property
    def cert_status(self):
        for line in self.out.splitlines():
            if "Cert Status:" in line:
                return line.split(":", 1)[1].strip()
        return None

    @property
    def serial(self):
        for line in self.out.splitlines():
            if line.strip().startswith("Serial Number:"):
                return int(line.split(":", 1)[1].strip(), 16)
        return None

    def field(self, name):
        for line in self.out.splitlines():
            if line.strip().startswith(name + ":"):
                return line.split(":", 1)[1].strip()
        return None

    def __repr__(self):
        return "<Staple rc=%s status=%s>\n%s" % (self.rc, self.cert_status, self.out)


def s_client_status(addr, ca_path, client, version=None, servername="localhost"):
    """openssl s_client -status: what the client saw of the staple."""
    argv = ["openssl", "s_client", "-connect", "%s:%d" % addr, "-servername", servername,
            "-status", "-CAfile", ca_path, "-cert", client.cert_path, "-key", client.key_path,
            "-nocommands"]
    if version:
        argv.append("-tls" + version.replace(".", "_"))
    p = subprocess.run(argv, input=b"", capture_output=True, timeout=15)
    return Staple(p.returncode, p.stdout.decode("utf-8", "replace")
                  + p.stderr.decode("utf-8", "replace"))


def wait_staple(pred, addr, ca_path, client, timeout=10.0):
    last = [None]

    def probe():
        last[0] = s_client_status(addr, ca_path, client)
        return pred(last[0])
    ok = tg_daemon.wait_until(probe, timeout, interval=0.2)
    assert ok, "staple never matched; last s_client:\n%r" % (last[0],)
    return last[0]


def start_static(start_proxy, backend, pki, server, extra=(), env=None, prefix=()):
    creds = ["--cacert", pki.ca.cert_path, "--cert", server.cert_path, "--key", server.key_path]
    e = dict(FAST)
    e.update(env or {})
    return start_proxy(backend, access=["--allow-cn", "client"], creds=creds, extra=extra,
                       env=e, prefix=prefix)


# ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_good_staple(start_proxy, backend, pki, opki, tmp_path, responders, version):
    port = tg_daemon.free_port()
    server = opki.server("good-%s" % version, ocsp_url(port))
    r = OpensslResponder(str(tmp_path), port, opki)
    r.set(server, "V")
    responders.append(r.start())

    proxy = start_static(start_proxy, backend, pki, server)
    proxy.wait_log("OCSP staple", "good")
    st = s_client_status(proxy.addr, opki.ca.cert_path, pki.client, version)
    assert st.present and st.cert_status == "good", st
    assert st.serial == server.cert.serial_number, st
    assert "Verify return code: 0 (ok)" in st.out, st
    # Clients that do not ask for a staple are served as before.
    o = try_echo(proxy.addr, client_context(opki.ca.cert_path, pki.client))
    assert o.data == o.payload, o


def test_no_responder_no_staple(start_proxy, backend, pki, opki):
    server = opki.server("no-aia")
    # The usual case (Let's Encrypt's certificates name no responder): said
    # at debug level only, not on every start and reload.
    proxy = start_static(start_proxy, backend, pki, server)
    st = s_client_status(proxy.addr, opki.ca.cert_path, pki.client)
    assert st.none and not st.present, st
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_log("reloaded certificate")
    st = s_client_status(proxy.addr, opki.ca.cert_path, pki.client)
    assert st.none and not st.present, st
    assert not proxy.find_log("OCSP responder"), proxy.log()

    debug = start_static(start_proxy, backend, pki, server, env={"TLSGATE_LOG_LEVEL": "debug"})
    debug.wait_log("names no OCSP responder")
    st = s_client_status(debug.addr, opki.ca.cert_path, pki.client)
    assert st.none and not st.present, st


def test_issuer_not_in_chain(start_proxy, backend, pki, opki):
    server = opki.server("no-chain", ocsp_url(tg_daemon.free_port()), chain=False)
    proxy = start_static(start_proxy, backend, pki, server)
    proxy.wait_log("issuer is not in the served chain")


def test_responder_down_keeps_staple(start_proxy, backend, pki, opki, tmp_path, responders):
    """Responder down: the next fetch (a reload asks again at once) fails, the
    failure is logged once, and the good staple is still served."""
    port = tg_daemon.free_port()
    server = opki.server("down", ocsp_url(port))
    r = OpensslResponder(str(tmp_path), port, opki)
    r.set(server, "V")
    responders.append(r.start())
    proxy = start_static(start_proxy, backend, pki, server)
    proxy.wait_log("OCSP staple", "good")
    first = s_client_status(proxy.addr, opki.ca.cert_path, pki.client)
    assert first.present and first.cert_status == "good", first

    r.stop()
    proxy.send_signal(signal.SIGHUP)
    line = proxy.wait_log("OCSP fetch", "failed")
    assert "keeping the current staple until" in line, line
    st = s_client_status(proxy.addr, opki.ca.cert_path, pki.client)
    assert st.present and st.cert_status == "good", st
    assert st.field("This Update") == first.field("This Update"), st

    # A second failure of the same series is not logged again at warning level.
    proxy.send_signal(signal.SIGHUP)
    assert tg_daemon.wait_until(lambda: len(proxy.find_log("reloaded")) >= 2, 5), proxy.log()
    time.sleep(1.0)
    assert len(proxy.find_log("OCSP fetch", "failed")) == 1, proxy.log()

    # Back up: the next attempt staples a fresh response.
    r.start()
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_log("the responder answers again", timeout=15)
    st = s_client_status(proxy.addr, opki.ca.cert_path, pki.client)
    assert st.present and st.cert_status == "good", st


def test_revoked_static(start_proxy, backend, pki, opki, tmp_path, responders):
    """Static certificate revoked (index.txt marked R, openssl ocsp
    restarted): a loud error with every check, the good staple is dropped,
    the certificate keeps being served."""
    port = tg_daemon.free_port()
    server = opki.server("revoked", ocsp_url(port))
    r = OpensslResponder(str(tmp_path), port, opki)
    r.set(server, "V")
    responders.append(r.start())
    proxy = start_static(start_proxy, backend, pki, server)
    proxy.wait_log("OCSP staple", "good")

    r.set(server, "R")
    r.restart()
    proxy.send_signal(signal.SIGHUP)  # asks the responder again at once
    line = proxy.wait_log("REVOKED")
    assert line.split("]", 1)[1].lstrip().startswith("error:"), line
    assert "%x" % server.cert.serial_number in line, line
    assert "keyCompromise" in line and "replace it" in line, line

    st = s_client_status(proxy.addr, opki.ca.cert_path, pki.client)
    assert st.none and not st.present, st
    o = try_echo(proxy.addr, client_context(opki.ca.cert_path, pki.client))
    assert o.data == o.payload, o

    # Every check says it again.
    proxy.send_signal(signal.SIGHUP)
    assert tg_daemon.wait_until(lambda: len(proxy.find_log("REVOKED")) >= 2, 5), proxy.log()


def test_revoked_journal_message_id(start_proxy, backend, pki, opki, tmp_path, responders):
    """The revoked message carries MESSAGE_ID_OCSP_REVOKED (journal, catalog)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for tg_journal_capture's private mount namespace")
    port = tg_daemon.free_port()
    server = opki.server("revoked-journal", ocsp_url(port))
    r = OpensslResponder(str(tmp_path), port, opki)
    r.set(server, "R")
    responders.append(r.start())
    out = str(tmp_path / "journal.jsonl")
    prefix = ["unshare", "-m", "--propagation", "private", "/usr/bin/python3",
              os.path.join(HERE, "tg_journal_capture.py"), out, "--"]
    start_static(start_proxy, backend, pki, server, prefix=prefix)

    def revoked():
        if not os.path.exists(out):
            return None
        with open(out) as f:
            for line in f:
                rec = json.loads(line)
                if rec.get("MESSAGE_ID") == OCSP_REVOKED_ID:
                    return rec
        return None
    rec = tg_daemon.wait_until(revoked, 10)
    assert rec, "no MESSAGE_ID=%s record" % OCSP_REVOKED_ID
    assert rec["PRIORITY"] == "2", rec  # LOG_CRIT: nothing can fix it but the operator
    assert rec["TLSGATE_CERT_NAME"] == "CN=localhost", rec
    assert "REVOKED" in rec["MESSAGE"], rec


def test_reload_new_certificate_restarts_cycle(start_proxy, backend, pki, opki, tmp_path,
                                               responders):
    port = tg_daemon.free_port()
    a = opki.server("reload-a", ocsp_url(port))
    b = opki.server("reload-b", ocsp_url(port))
    r = OpensslResponder(str(tmp_path), port, opki)
    r.set(a, "V")
    r.set(b, "V")
    responders.append(r.start())

    live = tmp_path / "live"
    live.mkdir()
    cert, key = str(live / "server.crt"), str(live / "server.key")
    for src, dst in ((a.cert_path, cert), (a.key_path, key)):
        with open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())
    served = tg_pki.Issued("live", a.cert, a.key, a.chain, cert, key)
    proxy = start_static(start_proxy, backend, pki, served)
    proxy.wait_log("OCSP staple", "good")
    st = s_client_status(proxy.addr, opki.ca.cert_path, pki.client)
    assert st.serial == a.cert.serial_number, st

    for src, dst in ((b.cert_path, cert), (b.key_path, key)):
        with open(src, "rb") as f, open(dst + ".tmp", "wb") as g:
            g.write(f.read())
        os.rename(dst + ".tmp", dst)
    proxy.send_signal(signal.SIGHUP)
    st = wait_staple(lambda s: s.present and s.serial == b.cert.serial_number,
                     proxy.addr, opki.ca.cert_path, pki.client)
    assert st.cert_status == "good", st


def test_refresh_after_midpoint(start_proxy, backend, pki, opki, responders):
    """Responses valid for 10 s: the staple is refreshed after the midpoint,
    before it expires, and clients get the new one."""
    port = tg_daemon.free_port()
    server = opki.server("refresh", ocsp_url(port))
    r = PyResponder(port, opki.ca.cert, opki.responder.cert, opki.responder.key, validity=10,
                    certs=[opki.responder.cert])
    responders.append(r.start())
    proxy = start_static(start_proxy, backend, pki, server)
    proxy.wait_log("OCSP staple", "good")
    first = s_client_status(proxy.addr, opki.ca.cert_path, pki.client)
    assert first.present and first.cert_status == "good", first
    t0 = r.requests[0][0]

    assert tg_daemon.wait_until(lambda: len(r.requests) >= 2, 10), proxy.log()
    took = r.requests[1][0] - t0
    assert 4.0 <= took <= 7.5, "refreshed %.1f s after the first fetch, expected ~5 s" % took
    st = wait_staple(lambda s: s.present and s.field("This Update") != first.field("This Update"),
                     proxy.addr, opki.ca.cert_path, pki.client)
    assert st.cert_status == "good", st
    assert len(proxy.find_log("OCSP staple", "good")) >= 2, proxy.log()


@pytest.mark.slow
def test_staple_dropped_at_next_update_then_back(start_proxy, backend, pki, opki, responders):
    """Responder down past nextUpdate: the staple is kept until then (the
    failure logged once), dropped at nextUpdate, and back after the responder
    returns (retries with backoff)."""
    port = tg_daemon.free_port()
    server = opki.server("expiry", ocsp_url(port))
    r = PyResponder(port, opki.ca.cert, opki.responder.cert, opki.responder.key, validity=10,
                    certs=[opki.responder.cert])
    responders.append(r.start())
    proxy = start_static(start_proxy, backend, pki, server)
    proxy.wait_log("OCSP staple", "good")
    t0 = r.requests[0][0]
    r.stop()

    proxy.wait_log("OCSP fetch", "failed", timeout=10)
    st = s_client_status(proxy.addr, opki.ca.cert_path, pki.client)
    assert st.present and st.cert_status == "good", st

    proxy.wait_log("OCSP staple", "expired", timeout=12)
    assert time.monotonic() - t0 >= 8.5, "dropped before nextUpdate"
    st = s_client_status(proxy.addr, opki.ca.cert_path, pki.client)
    assert st.none, st
    assert len(proxy.find_log("OCSP fetch", "failed")) == 1, proxy.log()

    responders.append(r.start())
    proxy.wait_log("the responder answers again", timeout=15)
    st = s_client_status(proxy.addr, opki.ca.cert_path, pki.client)
    assert st.present and st.cert_status == "good", st


# ---------------------------------------------------------------------------
def test_acme_revoked_forces_renewal(pebble_factory, acme_factory, backend, pki, responders):  # noqa: F811
    """ACME: Pebble writes our responder's URL into the AIA; the responder
    signs as Pebble's intermediate (its key from the management API) and says
    the first certificate is revoked. tlsgate logs it, orders a new
    certificate with a new key, and staples the new one's good answer."""
    port = tg_daemon.free_port()
    pebble = pebble_factory(ocsp_url=ocsp_url(port))
    inter = pebble.intermediate_cert()
    inter_key = serialization.load_pem_private_key(pebble.intermediate_key_pem(), None)
    revoked = []
    first_seen = threading.Event()

    def status(serial):
        if not revoked:
            revoked.append(serial)
            # Hold the first answer until the test has seen that certificate.
            first_seen.wait(10)
        return "revoked" if serial == revoked[0] else "good"
    r = PyResponder(port, inter, inter, inter_key, validity=3600, status=status)
    responders.append(r.start())

    gate = acme_factory.start(pebble, backend, env=FAST, timeout=15)
    first = echo(gate.addr, client_ctx(pebble, pki.client))
    first_seen.set()
    assert first.ok, first
    assert tg_daemon.wait_until(lambda: revoked, 5) and revoked[0] == first.serial, revoked

    gate.wait_log("REVOKED", "obtaining a new certificate with a new key", timeout=10)
    gate.wait_log("renewed", timeout=15)
    gate.wait_log("OCSP staple", "good", timeout=10)

    e = echo(gate.addr, client_ctx(pebble, pki.client))
    assert e.ok, e
    assert e.serial != first.serial, "still serving the revoked certificate"
    assert stored_leaf(gate.xdg, pebble).serial_number == e.serial

    def spki(cert):
        return cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    assert spki(e.leaf) != spki(first.leaf), "renewed with the revoked certificate's key"
    assert [st for (_t, s, st) in r.requests if s == e.serial] == ["good"], r.requests

    st = s_client_status(gate.addr, pebble.root_path, pki.client, servername=DOMAIN)
    assert st.present and st.cert_status == "good" and st.serial == e.serial, st
