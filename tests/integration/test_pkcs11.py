"""PKCS#11 private keys (--pkcs11-module, --pkcs11-token-label, --pkcs11-pin).

Each test makes its own SoftHSM token (Debian's softhsm2: SOFTHSM2_CONF
names a throw-away token directory), imports a server key into it with
softhsm2-util and deletes the key file: the only copy of the key is then on
the token, so a handshake the client verifies was signed by the token. A
decoy key pair is imported first, so that picking the key that matches the
certificate, not the first one, is what makes it work.

Covered: handshakes (EC and RSA keys, TLS 1.2 and 1.3, --threads 2 with
concurrent clients), --keystore holding only the chain and Ghostunnel's
environment variables, each start-up error (wrong or missing PIN, unknown
label, missing or broken module, certificate of another key, conflicting
flags) with its message and without the PIN in the output, and SIGHUP
reload with a new certificate for the same key after the token's PIN was
changed: the running process re-uses its key handle and logs in no more.
Last, the PIN is wiped from every buffer tlsgate frees.
"""
import datetime
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import tg_daemon
from tg_clients import client_context, try_echo

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SOFTHSM_UTIL = shutil.which("softhsm2-util") or "/usr/bin/softhsm2-util"
LABEL = "tg token"               # a space: the label is matched, not pasted into a URL
PIN = "Pin-7c1f0e93"             # distinctive, so that a leak cannot be a coincidence
SO_PIN = "So-3a9d22b1"
LOGIN_LINE = "PKCS#11: logged in to token"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(MODULE) and os.access(SOFTHSM_UTIL, os.X_OK)),
    reason="softhsm2 is not installed (apt-get install softhsm2; scripts/deps.sh does)")


def _run(argv, env, timeout=30):
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, "%s failed (%s):\n%s%s" % (argv[0], p.returncode, p.stdout, p.stderr)
    return p.stdout


def issue_for_key(pki, key, path, cn="localhost"):
    """A server certificate from the test CA for an existing key (leaf + chain)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(pki.ca.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=10))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost")]), critical=False)
            .sign(pki.ca.key, hashes.SHA256()))
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for c in [cert] + pki.ca.chain_certs():
            f.write(c.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, path)
    return cert


class Token:
    """A SoftHSM token with a decoy key pair and the server's key pair."""

    def __init__(self, directory, pki, kind="ec"):
        self.dir = directory
        os.makedirs(os.path.join(directory, "tokens"))
        self.conf = os.path.join(directory, "softhsm2.conf")
        with open(self.conf, "w") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\n"
                    "log.level = ERROR\nslots.removable = false\n"
                    % os.path.join(directory, "tokens"))
        self.env = dict(os.environ, SOFTHSM2_CONF=self.conf)
        _run([SOFTHSM_UTIL, "--init-token", "--free", "--label", LABEL, "--pin", PIN,
              "--so-pin", SO_PIN], self.env)
        self._import(kind, "decoy", "02")
        self.key = self._import(kind, "server", "01")
        self.cert_path = os.path.join(directory, "server.crt")
        self.cert = issue_for_key(pki, self.key, self.cert_path)

    def _import(self, kind, label, key_id):
        key = (ec.generate_private_key(ec.SECP256R1()) if kind == "ec"
               else rsa.generate_private_key(public_exponent=65537, key_size=2048))
        path = os.path.join(self.dir, label + ".pk8")
        with open(path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        _run([SOFTHSM_UTIL, "--import", path, "--token", LABEL, "--label", label,
              "--id", key_id, "--pin", PIN], self.env)
        os.unlink(path)  # from here on, the token holds the only copy
        return key

    def change_pin(self, new_pin):
        """Resets the user PIN with the SO PIN, from another process."""
        _run(["p11tool", "--provider", MODULE, "--initialize-pin", "--set-so-pin", SO_PIN,
              "--set-pin", new_pin, "pkcs11:token=tg%20token"], self.env)

    def daemon_env(self, **extra):
        env = {"SOFTHSM2_CONF": self.conf}
        env.update(extra)
        return env


@pytest.fixture
def token(tmp_path, pki):
    return Token(str(tmp_path / "hsm"), pki)


def pkcs11_creds(pki, token, cert_flag="--cert", label=LABEL, pin=PIN):
    creds = ["--cacert", pki.ca.cert_path, cert_flag, token.cert_path,
             "--pkcs11-module", MODULE]
    if label is not None:
        creds += ["--pkcs11-token-label", label]
    if pin is not None:
        creds += ["--pkcs11-pin", pin]
    return creds


def assert_served_by_token(gate, pki, token, cert, version=None):
    ctx = client_context(pki.ca.cert_path, pki.client, version=version)
    o = try_echo(gate.addr, ctx)
    assert o.handshake_ok and o.error is None and o.data == o.payload, repr(o)
    served = x509.load_der_x509_certificate(o.leaf_der)
    assert served.serial_number == cert.serial_number, "not the certificate given"
    return o


def assert_no_pin(text, *pins):
    for p in (PIN,) + pins:
        assert p not in text, "the PIN shows in the output:\n" + text


# --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ec", "rsa"])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_handshake_is_signed_by_the_token_key(start_proxy, backend, pki, tmp_path, kind,
                                              version):
    token = Token(str(tmp_path / "hsm"), pki, kind)
    gate = start_proxy(backend, creds=pkcs11_creds(pki, token), env=token.daemon_env())
    o = assert_served_by_token(gate, pki, token, token.cert, version)
    assert o.version == {"1.2": "TLSv1.2", "1.3": "TLSv1.3"}[version]
    assert gate.find_log(LOGIN_LINE, '"%s"' % LABEL, MODULE)
    assert_no_pin(gate.log())


def test_only_token_needs_no_label(start_proxy, backend, pki, token):
    """Without --pkcs11-token-label the module's one initialized token is
    used (SoftHSM also lists an empty, unlabelled one)."""
    gate = start_proxy(backend, creds=pkcs11_creds(pki, token, label=None),
                       env=token.daemon_env())
    assert_served_by_token(gate, pki, token, token.cert)


def test_keystore_chain_and_environment_variables(start_proxy, backend, pki, token):
    """Ghostunnel's way: --keystore holds the chain only, PKCS11_MODULE,
    PKCS11_TOKEN_LABEL and PKCS11_PIN stand in for the flags."""
    creds = ["--cacert", pki.ca.cert_path, "--keystore", token.cert_path]
    gate = start_proxy(backend, creds=creds, env=token.daemon_env(
        PKCS11_MODULE=MODULE, PKCS11_TOKEN_LABEL=LABEL, PKCS11_PIN=PIN))
    assert_served_by_token(gate, pki, token, token.cert)
    assert_no_pin(gate.log())


def test_flag_wins_over_environment_variable(start_proxy, backend, pki, token):
    gate = start_proxy(backend, creds=pkcs11_creds(pki, token),
                       env=token.daemon_env(PKCS11_PIN="0000", PKCS11_TOKEN_LABEL="other"))
    assert_served_by_token(gate, pki, token, token.cert)


def test_threads_share_the_token_key(start_proxy, backend, pki, token):
    """--threads 2: handshakes on both threads sign with the one key handle
    (GnuTLS serializes them), all at once."""
    gate = start_proxy(backend, creds=pkcs11_creds(pki, token), env=token.daemon_env(),
                       extra=["--threads", "2"])
    ctx = client_context(pki.ca.cert_path, pki.client)
    results = []

    def client():
        for _ in range(6):
            results.append(try_echo(gate.addr, ctx, timeout=10.0 * tg_daemon.slow_factor()))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60 * tg_daemon.slow_factor())
    assert len(results) == 24
    bad = [o for o in results if not (o.handshake_ok and o.error is None)]
    assert not bad, bad[:3]
    assert len(gate.find_log(LOGIN_LINE)) == 1


# --------------------------------------------------------------------------
# Start-up errors: exit status, a message naming the problem, no PIN.
def run_gate(tlsgate_bin, creds, env):
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % tg_daemon.free_port(),
            "--target", "127.0.0.1:%d" % tg_daemon.free_port(), "--allow-all"] + creds
    return tg_daemon.run_once(argv, timeout=20, env=env)


@pytest.mark.parametrize("case", ["wrong-pin", "no-pin", "wrong-label", "no-label-two-tokens",
                                  "no-module", "not-a-module", "other-key"])
def test_start_up_errors(tlsgate_bin, pki, token, tmp_path, case):
    creds = pkcs11_creds(pki, token)
    if case == "wrong-pin":
        creds = pkcs11_creds(pki, token, pin="Wrong-pin-4411")
        expected = '--pkcs11-pin: the PKCS#11 token "%s" refused the PIN' % LABEL
    elif case == "no-pin":
        creds = pkcs11_creds(pki, token, pin=None)
        expected = 'PKCS#11 token "%s" needs a PIN to log in' % LABEL
    elif case == "wrong-label":
        creds = pkcs11_creds(pki, token, label="no such token")
        expected = ('--pkcs11-token-label no such token: no token with this label in '
                    '--pkcs11-module %s (its tokens: "%s")' % (MODULE, LABEL))
    elif case == "no-label-two-tokens":
        _run([SOFTHSM_UTIL, "--init-token", "--free", "--label", "second", "--pin", PIN,
              "--so-pin", SO_PIN], token.env)
        creds = pkcs11_creds(pki, token, label=None)
        expected = ("--pkcs11-module %s: the module has several tokens (" % MODULE)
    elif case == "no-module":
        missing = str(tmp_path / "missing.so")
        creds[creds.index(MODULE)] = missing
        expected = "--pkcs11-module %s: cannot read: No such file or directory" % missing
    elif case == "not-a-module":
        creds[creds.index(MODULE)] = pki.ca.cert_path
        expected = "--pkcs11-module %s: cannot load the PKCS#11 module" % pki.ca.cert_path
    else:
        other = pki.ca.issue("pkcs11-other", cn="localhost", dns=["localhost"], server=True)
        creds[creds.index(token.cert_path)] = other.cert_path
        expected = ('--cert %s: no private key on the PKCS#11 token "%s" matches the '
                    'certificate' % (other.cert_path, LABEL))
    rc, out, err = run_gate(tlsgate_bin, creds, token.daemon_env())
    # Exit status 2 for settings a restart would not cure; 1 for a module
    # that fails to initialize (see EXIT STATUS in tlsgate(8)).
    assert rc == (1 if case == "not-a-module" else 2), (rc, out, err)
    assert expected in err, err
    if case == "no-label-two-tokens":
        assert '"%s"' % LABEL in err and '"second"' in err and "--pkcs11-token-label" in err
    assert_no_pin(out + err, "Wrong-pin-4411")


@pytest.mark.parametrize("extra,expected", [
    (["--key", "x.key"], "--key and --pkcs11-module are mutually exclusive"),
    (["--storepass", "x"], "--storepass/--storepass-file and --pkcs11-module are mutually"),
])
def test_conflicting_flags(tlsgate_bin, pki, token, extra, expected):
    rc, out, err = run_gate(tlsgate_bin, pkcs11_creds(pki, token) + extra, token.daemon_env())
    assert rc == 2 and expected in err, (rc, err)
    assert_no_pin(out + err)


def test_pin_without_module_is_refused(tlsgate_bin, pki, token):
    creds = ["--cacert", pki.ca.cert_path, "--cert", pki.server.cert_path,
             "--key", pki.server.key_path, "--pkcs11-pin", PIN]
    rc, out, err = run_gate(tlsgate_bin, creds, token.daemon_env())
    assert rc == 2 and "--pkcs11-pin requires --pkcs11-module" in err, (rc, err)
    assert_no_pin(out + err)


# --------------------------------------------------------------------------
# Reload
def test_reload_reuses_the_key_handle(start_proxy, backend, pki, token, tlsgate_bin):
    """SIGHUP with a new certificate for the same key: served at once,
    although the token's PIN changed since the start, so a new login with
    the PIN given would fail (shown by a fresh start). A certificate for
    another key is refused and the old one stays."""
    gate = start_proxy(backend, creds=pkcs11_creds(pki, token), env=token.daemon_env())
    assert_served_by_token(gate, pki, token, token.cert)

    token.change_pin("Pin-new-6d20")
    rc, _, err = run_gate(tlsgate_bin, pkcs11_creds(pki, token), token.daemon_env())
    assert rc == 2 and "refused the PIN" in err, "the PIN did not change: %s" % err

    new = issue_for_key(pki, token.key, token.cert_path)
    assert new.serial_number != token.cert.serial_number
    gate.send_signal(signal.SIGHUP)
    gate.wait_log("reloaded certificate", timeout=5)
    assert_served_by_token(gate, pki, token, new)
    assert len(gate.find_log(LOGIN_LINE)) == 1, "logged in again:\n" + gate.log()

    # A certificate of another key: the reload fails, naming it; the old one stays.
    other = pki.ca.issue("pkcs11-reload-other", cn="localhost", dns=["localhost"], server=True)
    shutil.copyfile(other.cert_path, token.cert_path + ".tmp")
    os.replace(token.cert_path + ".tmp", token.cert_path)
    n_before = len(gate.log_lines())
    gate.send_signal(signal.SIGHUP)
    gate.wait_log("does not match the private key on the PKCS#11 token",
                  timeout=5)
    assert any("--cert %s" % token.cert_path in l for l in gate.log_lines()[n_before:])
    assert_served_by_token(gate, pki, token, new)
    time.sleep(0.1)
    assert gate.running()
    assert_no_pin(gate.log(), "Pin-new-6d20")


# --------------------------------------------------------------------------
# The PIN in memory: tests/tools/freecheck.so (see test_secrets.py) records
# every heap block freed still holding it. Out of scope, and logged as
# "ignored": p11-kit's own copy, which GnuTLS's login makes with
# p11_kit_pin_new_for_string() and p11_kit_pin_unref() frees unwiped.
# tlsgate's copies (the settings of the start and of each reload, the
# config file's text, a file's PIN that $PKCS11_PIN or --pkcs11-pin replaces)
# must all be wiped.
@pytest.mark.parametrize("override", ["file", "environment", "flag"])
def test_pin_is_wiped_before_it_is_freed(proxy_factory, backend, pki, token, tlsgate_bin,
                                         tmp_path, override):
    if "libasan" in subprocess.run(["ldd", tlsgate_bin], capture_output=True, text=True,
                                   timeout=30).stdout:
        pytest.skip("freecheck.so wraps free(), which ASan's allocator must own; "
                    "this test runs against the plain build")
    log = str(tmp_path / "freecheck.log")
    env = token.daemon_env(**tg_daemon.preload_env("freecheck"))
    env.update({"FREECHECK_LOG": log, "FREECHECK_SECRET": PIN,
                "FREECHECK_IGNORE_CALLER": "libp11-kit", "TLSGATE_LOG_LEVEL": "debug"})
    if tg_daemon.under_valgrind():
        # memcheck takes free() before the shim (see test_secrets.py): this
        # run then checks memory errors, leaks and the log only.
        env = token.daemon_env(TLSGATE_LOG_LEVEL="debug")
    conf = str(tmp_path / "tlsgate.conf")
    with open(conf, "w") as f:  # the PIN from a file the parser reads and frees
        f.write("pkcs11-pin = %s\n" % PIN)
    creds = pkcs11_creds(pki, token, pin=PIN if override == "flag" else None)
    creds += ["--config", conf]
    if override == "environment":
        env["PKCS11_PIN"] = PIN
    gate = proxy_factory.start(backend, creds=creds, env=env)
    assert_served_by_token(gate, pki, token, token.cert)
    gate.send_signal(signal.SIGHUP)  # reads the settings, and the PIN, again
    gate.wait_log("reloaded certificate", timeout=10)
    assert_served_by_token(gate, pki, token, token.cert)
    assert gate.stop() == 0, gate.log()
    assert_no_pin(gate.log())
    if "LD_PRELOAD" in env:
        with open(log) as f:
            record = f.read()
        hits = [l for l in record.splitlines() if l.startswith("freecheck:")]
        assert not hits, "the PIN was freed without wiping:\n" + record
