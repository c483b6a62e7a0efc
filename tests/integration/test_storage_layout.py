"""certmagic-compatible storage (docs/HACKING.md, "certmagic's storage
layout"; src/storage.h): exact paths, modes, PEM types and JSON, reading what
certmagic (Ghostunnel, Caddy) wrote, corrupt files, and certmagic's lock
files.

Layout under $XDG_DATA_HOME/certmagic for --auto-acme-ca=https://127.0.0.1:$WFE/dir:
  certificates/127.0.0.1-$WFE-dir/test.example/test.example.{crt,key,json}
  acme/127.0.0.1-$WFE-dir/users/admin@test.example/admin.{json,key}
  locks/issue_cert_test.example.lock (only while ordering)
"""
import datetime
import json
import os
import shutil
import threading
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import tg_daemon
from tg_pebble import (BACKOFF_SCALE_ENV, DOMAIN, EMAIL, AcmeClient, account_files, cert_files,
                       client_ctx, echo, go_json_indent, issue_with_python, log_lines_with,
                       pem_block_types, pem_certs, ready_after, stored_leaf, wait_log_with,
                       write_certmagic_storage)
from tg_pebble import acme_factory, pebble, pebble_factory  # noqa: F401,F811 (fixtures)

CACHED_READY_MAX = 1.5 * tg_daemon.slow_factor()  # (3x under valgrind)
# Go struct field order of what certmagic marshals (CertificateResource, acme.Certificate,
# acme.Account): keys must appear in this order, each at most once.
CERT_KEYS = ["sans", "issuer_data"]
ISSUER_DATA_KEYS = ["url", "ca", "account", "renewal_info"]
ACCOUNT_KEYS = ["status", "contact", "termsOfServiceAgreed", "externalAccountBinding", "orders",
                "onlyReturnExisting", "location"]

UMASK_000 = ["/bin/sh", "-c", 'umask 000 && exec "$@"', "sh"]


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _check_go_json(path, order, required):
    raw = _read(path).decode("utf-8")
    obj = json.loads(raw)
    assert raw.rstrip("\n") == go_json_indent(obj), \
        "%s is not laid out as Go's json.MarshalIndent(v, \"\", \"\\t\"):\n%s" % (path, raw)
    keys = list(obj)
    assert all(k in order for k in keys), "%s: unexpected keys %r" % (path, keys)
    assert keys == sorted(keys, key=order.index), "%s: keys out of Go's order: %r" % (path, keys)
    for k in required:
        assert k in obj, "%s lacks %r: %r" % (path, k, obj)
    return obj


def _load_ec_key(path):
    data = _read(path)
    assert pem_block_types(data) == ["EC PRIVATE KEY"], \
        "%s: PEM blocks %r, certmagic writes one EC PRIVATE KEY" % (path, pem_block_types(data))
    key = serialization.load_pem_private_key(data, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1", key
    return key


def _pub(key):
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def test_storage_layout(pebble, acme_factory, backend, pki):
    # A umask of 000 proves the modes are set explicitly, not inherited.
    gate = acme_factory.start(pebble, backend, timeout=15, prefix=UMASK_000)
    e = echo(gate.addr, client_ctx(pebble, pki.client))
    assert e.ok, e
    assert gate.stop() == 0, gate.log()

    root = os.path.join(gate.xdg, "certmagic")
    ik = "127.0.0.1-%d-dir" % pebble.wfe_port
    expected = {
        "certificates/%s/test.example/test.example.crt" % ik,
        "certificates/%s/test.example/test.example.key" % ik,
        "certificates/%s/test.example/test.example.json" % ik,
        "acme/%s/users/admin@test.example/admin.json" % ik,
        "acme/%s/users/admin@test.example/admin.key" % ik,
    }
    files, dirs = set(), ["."]
    for d, subdirs, names in os.walk(root):
        for n in subdirs:
            dirs.append(os.path.relpath(os.path.join(d, n), root))
        for n in names:
            files.add(os.path.relpath(os.path.join(d, n), root))
    assert files == expected, "stored files differ (temporary or lock files left over?)\n" \
        "extra: %r\nmissing: %r" % (sorted(files - expected), sorted(expected - files))
    for d in dirs:
        mode = os.stat(os.path.join(root, d)).st_mode & 0o7777
        assert mode == 0o700, "directory %s has mode %o, not 700" % (d, mode)
    for f in files:
        mode = os.stat(os.path.join(root, f)).st_mode & 0o7777
        assert mode == 0o600, "file %s has mode %o, not 600" % (f, mode)

    cf, af = cert_files(gate.xdg, pebble), account_files(gate.xdg, pebble)
    # .crt: the PEM chain, leaf first, up to (excluding) Pebble's root.
    crt = _read(cf["crt"])
    assert set(pem_block_types(crt)) == {"CERTIFICATE"}, pem_block_types(crt)
    chain = pem_certs(crt)
    assert len(chain) >= 2, "the stored chain lacks the intermediate"
    leaf = chain[0]
    assert leaf.serial_number == e.serial, "the stored leaf is not the served one"
    assert chain[1].subject == pebble.intermediate_cert().subject == leaf.issuer
    # .key: P-256 in an "EC PRIVATE KEY" block, matching the leaf.
    cert_key = _load_ec_key(cf["key"])
    assert _pub(cert_key) == leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo), \
        "the stored key does not match the stored certificate"
    # Account files.
    acct = _check_go_json(af["json"], ACCOUNT_KEYS,
                          ["status", "contact", "termsOfServiceAgreed", "location"])
    assert acct["status"] == "valid", acct
    assert acct["contact"] == ["mailto:" + EMAIL], acct
    assert acct["termsOfServiceAgreed"] is True, acct
    assert acct["location"].startswith("https://127.0.0.1:%d/" % pebble.wfe_port), acct
    account_key = _load_ec_key(af["key"])
    assert _pub(account_key) != _pub(cert_key), "the account key is the certificate key"
    assert AcmeClient(pebble, account_key).lookup() == acct["location"], \
        "the stored account key is not the key of the stored account"
    # .json: {"sans": [...], "issuer_data": {"url", "ca", "account"}}.
    meta = _check_go_json(cf["json"], CERT_KEYS, CERT_KEYS)
    assert meta["sans"] == [DOMAIN], meta
    idata = meta["issuer_data"]
    assert list(idata) == sorted(idata, key=ISSUER_DATA_KEYS.index) and \
        all(k in idata for k in ("url", "ca", "account")), idata
    assert set(idata) <= set(ISSUER_DATA_KEYS), idata
    assert idata["ca"] == pebble.directory_url, idata
    assert idata["account"] == acct["location"], idata
    assert idata["url"].startswith("https://127.0.0.1:%d/" % pebble.wfe_port), idata
    assert format(leaf.serial_number, "x") in idata["url"].lower(), \
        "issuer_data.url is not this certificate's URL: %r" % idata


def test_reads_storage_written_by_certmagic(pebble, acme_factory, backend, pki, tmp_path):
    """An account and a certificate laid down as certmagic writes them (by a
    separate ACME client) are used as they are: the certificate is served at
    once, and the next order uses the stored account."""
    work = str(tmp_path / "pyacme")
    os.makedirs(work)
    client, key, chain, url = issue_with_python(pebble, work)
    write_certmagic_storage(acme_factory.xdg, pebble, client, key, chain, url)
    theirs = pem_certs(chain)[0]
    af = account_files(acme_factory.xdg, pebble)
    acct_before = {k: _read(p) for k, p in af.items()}

    gate = acme_factory.start(pebble, backend, timeout=10)
    took = ready_after(gate)
    assert took < CACHED_READY_MAX, "READY=1 after %.2fs with a stored certificate" % took
    e = echo(gate.addr, client_ctx(pebble, pki.client))
    assert e.ok, e
    assert e.serial == theirs.serial_number, "the certificate certmagic stored is not served"
    assert not log_lines_with(gate, "obtained"), gate.log()
    assert gate.stop() == 0, gate.log()

    cf = cert_files(acme_factory.xdg, pebble)
    os.unlink(cf["crt"])
    os.unlink(cf["key"])
    gate2 = acme_factory.start(pebble, backend, timeout=15)
    wait_log_with(gate2, "obtained", DOMAIN)
    e2 = echo(gate2.addr, client_ctx(pebble, pki.client))
    assert e2.ok and e2.serial != theirs.serial_number, e2
    meta = json.loads(_read(cf["json"]))
    assert meta["issuer_data"]["account"] == client.kid, \
        "the new certificate was not ordered with the stored account: %r" % meta
    assert {k: _read(p) for k, p in af.items()} == acct_before, "the stored account was rewritten"


def test_corrupt_certificate_is_reissued(pebble, acme_factory, backend, pki):
    gate = acme_factory.start(pebble, backend, timeout=15)
    first = echo(gate.addr, client_ctx(pebble, pki.client))
    assert first.ok, first
    assert gate.stop() == 0, gate.log()
    cf = cert_files(gate.xdg, pebble)
    crt = _read(cf["crt"])
    with open(cf["crt"], "wb") as f:
        f.write(crt[:len(crt) // 2])  # a torn chain

    gate2 = acme_factory.start(pebble, backend, timeout=15)
    assert log_lines_with(gate2, cf["crt"]), \
        "no message naming the unusable file %s:\n%s" % (cf["crt"], gate2.log())
    e = echo(gate2.addr, client_ctx(pebble, pki.client))
    assert e.ok and e.serial != first.serial, e
    assert stored_leaf(gate2.xdg, pebble).serial_number == e.serial


def test_foreign_certificate_is_reissued(pebble, acme_factory, backend, pki):
    """A certificate and key copied into the name's directory from elsewhere
    (valid, matching each other, but for another name) are not served."""
    gate = acme_factory.start(pebble, backend, timeout=15)
    first = echo(gate.addr, client_ctx(pebble, pki.client))
    assert first.ok, first
    assert gate.stop() == 0, gate.log()
    cf = cert_files(gate.xdg, pebble)
    shutil.copyfile(pki.server.cert_path, cf["crt"])   # CN=localhost, not DOMAIN
    shutil.copyfile(pki.server.key_path, cf["key"])

    gate2 = acme_factory.start(pebble, backend, timeout=15)
    assert log_lines_with(gate2, cf["crt"], "not for " + DOMAIN), \
        "no message naming the foreign certificate %s:\n%s" % (cf["crt"], gate2.log())
    e = echo(gate2.addr, client_ctx(pebble, pki.client))
    assert e.ok and e.serial not in (first.serial, pki.server.cert.serial_number), e
    assert stored_leaf(gate2.xdg, pebble).serial_number == e.serial


def test_keys_readable_by_others_are_restricted(pebble, acme_factory, backend, pki):
    """Key files that others may read (copied in with a wide umask, say) are
    restricted to 0600 when read, with a warning naming them; they are still
    used."""
    gate = acme_factory.start(pebble, backend, timeout=15)
    first = echo(gate.addr, client_ctx(pebble, pki.client))
    assert first.ok, first
    assert gate.stop() == 0, gate.log()
    cf, af = cert_files(gate.xdg, pebble), account_files(gate.xdg, pebble)

    os.chmod(cf["key"], 0o644)
    gate2 = acme_factory.start(pebble, backend, timeout=15)
    assert log_lines_with(gate2, cf["key"], "readable by others", "0644"), gate2.log()
    assert os.stat(cf["key"]).st_mode & 0o7777 == 0o600
    e = echo(gate2.addr, client_ctx(pebble, pki.client))
    assert e.ok and e.serial == first.serial, "the stored certificate was not served: %r" % e
    assert gate2.stop() == 0, gate2.log()

    # The account key is read when ordering: make it order.
    os.unlink(cf["crt"])
    os.unlink(cf["key"])
    os.chmod(af["key"], 0o640)
    gate3 = acme_factory.start(pebble, backend, timeout=15)
    wait_log_with(gate3, "obtained", DOMAIN)
    assert log_lines_with(gate3, af["key"], "readable by others", "0640"), gate3.log()
    assert os.stat(af["key"]).st_mode & 0o7777 == 0o600


def test_unusable_account_key_is_not_replaced(pebble, acme_factory, backend, pki):
    gate = acme_factory.start(pebble, backend, timeout=15)
    assert echo(gate.addr, client_ctx(pebble, pki.client)).ok
    assert gate.stop() == 0, gate.log()
    cf, af = cert_files(gate.xdg, pebble), account_files(gate.xdg, pebble)
    os.unlink(cf["crt"])
    os.unlink(cf["key"])
    with open(af["key"], "wb") as f:
        f.write(b"-----BEGIN EC PRIVATE KEY-----\nnot base64 at all\n"
                b"-----END EC PRIVATE KEY-----\n")
    before = {k: _read(p) for k, p in af.items()}

    gate2 = acme_factory.start(pebble, backend, wait_ready=False,
                               env={BACKOFF_SCALE_ENV: "0.01"}, expect_exit=1)
    assert tg_daemon.wait_until(lambda: log_lines_with(gate2, af["key"]), 5), \
        "no message naming the unusable account key %s:\n%s" % (af["key"], gate2.log())
    gate2.wait(3)
    assert gate2.notify.find("READY", "1") is None, "READY=1 without a usable account"
    assert not log_lines_with(gate2, "obtained"), gate2.log()
    assert {k: _read(p) for k, p in af.items()} == before, \
        "the account files were replaced although the account JSON names the unusable key"
    assert not os.path.exists(cf["crt"])


def _go_time(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def test_waits_for_certmagic_lock(pebble, acme_factory, backend, pki):
    """Another process (certmagic) holds issue_cert_test.example and keeps its
    lock fresh: tlsgate must not order until the lock is released."""
    lock = os.path.join(acme_factory.xdg, "certmagic", "locks", "issue_cert_%s.lock" % DOMAIN)
    os.makedirs(os.path.dirname(lock), mode=0o700)
    created = datetime.datetime.now(datetime.timezone.utc)
    stop = threading.Event()

    def refresh():  # certmagic refreshes every 5 s, we every 0.5 s
        while not stop.is_set():
            now = datetime.datetime.now(datetime.timezone.utc)
            tmp = lock + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"created": _go_time(created), "updated": _go_time(now)}, f)
            os.replace(tmp, lock)
            stop.wait(0.5)
    with open(lock, "w") as f:
        json.dump({"created": _go_time(created), "updated": _go_time(created)}, f)
    th = threading.Thread(target=refresh, daemon=True)
    th.start()
    try:
        gate = acme_factory.start(pebble, backend, wait_ready=False)
        time.sleep(3.0)
        assert gate.running(), gate.log()
        assert gate.notify.find("READY", "1") is None, \
            "a certificate was obtained while another process held the lock:\n" + gate.log()
        assert not log_lines_with(gate, "challenge probe"), \
            "tlsgate ordered while another process held the lock:\n" + gate.log()
    finally:
        stop.set()
        th.join(2)
    os.unlink(lock)
    gate.wait_ready(timeout=10)  # certmagic waiters poll every second
    assert echo(gate.addr, client_ctx(pebble, pki.client)).ok
    assert not os.path.exists(lock), "tlsgate left its lock file behind"
