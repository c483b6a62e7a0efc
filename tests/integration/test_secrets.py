"""Secrets in memory and in logs (issue 7).

tlsgate runs under tests/tools/freecheck.so (LD_PRELOAD), which inspects
every heap block when it is freed (or moved by realloc) and records those
still holding private key PEM text ("PRIVATE KEY-----") or this test's
keystore password: a path of ours that let go of key material without
wiping it. Each run loads the keys, serves a handshake, reloads (SIGHUP
reads them again) and stops; the record must stay empty, and the log (at
debug level) must contain neither key material nor the password.

GnuTLS's own frees are out of scope (it frees a normalized copy of a
PKCS#12 password unwiped): blocks freed from inside libgnutls are logged
as "ignored" by the shim and shown, not counted. The shim needs the plain
build; under ASan (whose allocator must come first) the runs are skipped
with that reason.
"""
import os
import signal
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

import tg_daemon
from tg_clients import client_context, try_echo
from tg_pebble import client_ctx, echo, log_lines_with
from tg_pebble import acme_factory, pebble, pebble_factory  # noqa: F401,F811 (fixtures)

# Distinctive, so that a hit cannot be a coincidence.
STOREPASS = "Qx7-storepass-4be1d9c2"
PEM_MARK = "PRIVATE KEY"


def is_asan(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30).stdout
    return "libasan" in out


@pytest.fixture
def freecheck(tlsgate_bin, tmp_path):
    """env for a tlsgate run under the shim, and check(gate) for afterwards."""
    env = tg_daemon.preload_env("freecheck")
    if is_asan(tlsgate_bin):
        pytest.skip("freecheck.so wraps free(), which ASan's allocator must own; "
                    "this test runs against the plain build")
    log = str(tmp_path / "freecheck.log")
    env.update({"FREECHECK_LOG": log, "FREECHECK_SECRET": STOREPASS,
                "FREECHECK_IGNORE_CALLER": "libgnutls", "TLSGATE_LOG_LEVEL": "debug"})
    if tg_daemon.under_valgrind():
        # memcheck's own free() takes the calls before the shim's: the shim
        # sees no block at all (checked: none of the frees it logs without
        # valgrind). Under valgrind these runs check the secret paths for
        # memory errors and leaks, and the logs; the freed-memory check runs
        # on the plain build without valgrind (scripts/test.sh).
        env = {"TLSGATE_LOG_LEVEL": "debug"}

    def check(*gates):
        try:
            with open(log) as f:
                record = f.read()
        except FileNotFoundError:
            if "LD_PRELOAD" in env:
                raise AssertionError("freecheck.so wrote no log (%s): was it loaded?" % log)
            record = ""
        hits = [l for l in record.splitlines() if l.startswith("freecheck:")]
        assert not hits, "key material or the password freed without wiping:\n" + record
        for g in gates:
            text = g.log()
            assert PEM_MARK not in text, "the log shows key material:\n" + text
            assert STOREPASS not in text, "the log shows the keystore password:\n" + text
        return record
    env["_check"] = check
    return env


def _run_static(proxy_factory, backend, pki, freecheck, creds):
    check = freecheck.pop("_check")
    gate = proxy_factory.start(backend, creds=creds, env=freecheck)
    ctx = client_context(pki.ca.cert_path, pki.client)
    assert try_echo(gate.addr, ctx).echoed, gate.log()
    gate.send_signal(signal.SIGHUP)  # reads every key file again
    gate.wait_log("reloaded", timeout=10)
    assert try_echo(gate.addr, ctx).echoed, gate.log()
    assert gate.stop() == 0, gate.log()
    check(gate)


def test_cert_and_key_files(proxy_factory, backend, pki, freecheck):
    _run_static(proxy_factory, backend, pki, freecheck,
                ["--cacert", pki.ca.cert_path, "--cert", pki.server.cert_path,
                 "--key", pki.server.key_path])


def _p12(tmp_path, pki):
    path = str(tmp_path / "server.p12")
    with open(path, "wb") as f:
        f.write(pkcs12.serialize_key_and_certificates(
            b"server", pki.server.key, pki.server.cert, [pki.ca.cert],
            serialization.BestAvailableEncryption(STOREPASS.encode())))
    return path


def test_pkcs12_keystore_with_storepass(proxy_factory, backend, pki, freecheck, tmp_path):
    _run_static(proxy_factory, backend, pki, freecheck,
                ["--cacert", pki.ca.cert_path, "--keystore", _p12(tmp_path, pki),
                 "--storepass", STOREPASS])


def test_pkcs12_keystore_with_storepass_file(proxy_factory, backend, pki, freecheck, tmp_path):
    pw = str(tmp_path / "storepass")
    with open(pw, "w") as f:
        f.write(STOREPASS + "\n")
    os.chmod(pw, 0o600)
    _run_static(proxy_factory, backend, pki, freecheck,
                ["--cacert", pki.ca.cert_path, "--keystore", _p12(tmp_path, pki),
                 "--storepass-file", pw])


def test_storepass_in_config_file(proxy_factory, backend, pki, freecheck, tmp_path):
    conf = str(tmp_path / "tlsgate.conf")
    with open(conf, "w") as f:
        f.write("keystore = %s\nstorepass = %s\n" % (_p12(tmp_path, pki), STOREPASS))
    os.chmod(conf, 0o600)
    _run_static(proxy_factory, backend, pki, freecheck,
                ["--cacert", pki.ca.cert_path, "--config", conf])


def test_storepass_in_config_file_replaced(proxy_factory, backend, pki, freecheck, tmp_path):
    # The file's copy is replaced by the command line's, and must be wiped
    # when it is let go of, not only the copy in use at the end.
    conf = str(tmp_path / "tlsgate.conf")
    with open(conf, "w") as f:
        f.write("keystore = %s\nstorepass = %s\n" % (_p12(tmp_path, pki), STOREPASS))
    os.chmod(conf, 0o600)
    _run_static(proxy_factory, backend, pki, freecheck,
                ["--cacert", pki.ca.cert_path, "--config", conf, "--storepass", STOREPASS])


def test_encrypted_pem_keystore(proxy_factory, backend, pki, freecheck, tmp_path):
    path = str(tmp_path / "keystore.pem")
    with open(path, "wb") as f:
        f.write(pki.server.cert.public_bytes(serialization.Encoding.PEM))
        f.write(pki.ca.cert.public_bytes(serialization.Encoding.PEM))
        f.write(pki.server.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(STOREPASS.encode())))
    _run_static(proxy_factory, backend, pki, freecheck,
                ["--cacert", pki.ca.cert_path, "--keystore", path, "--storepass", STOREPASS])


def test_acme_keys(pebble, acme_factory, backend, pki, freecheck):
    """Account and certificate keys generated, exported to PEM and stored;
    then, on a second start, read back from storage."""
    check = freecheck.pop("_check")
    gate = acme_factory.start(pebble, backend, env=freecheck, timeout=20)
    assert log_lines_with(gate, "obtained"), gate.log()
    assert echo(gate.addr, client_ctx(pebble, pki.client)).ok
    assert gate.stop() == 0, gate.log()
    check(gate)
    gate2 = acme_factory.start(pebble, backend, env=freecheck, timeout=20)
    assert log_lines_with(gate2, "serving stored certificate"), gate2.log()
    assert echo(gate2.addr, client_ctx(pebble, pki.client)).ok
    assert gate2.stop() == 0, gate2.log()
    check(gate, gate2)
