"""Storage faults (issue 7): a full disk while a renewed certificate is
written, kill -9 at every step of a certificate write, and lock files left
behind by processes that died.

What must hold (storage.h, storage_save_cert()): the three files of a
certificate are replaced together (written into a temporary directory that
trades places with <name>/ in one rename), so at any moment <name>/ holds
the complete old set or the complete new one; a write that fails leaves no
temporary files; what a killed writer left is cleaned up later and never
stops the next start.
"""
import datetime
import errno
import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import tg_daemon
from tg_pebble import (BACKOFF_SCALE_ENV, DOMAIN, cert_files, client_ctx, echo, go_json_indent,
                       log_lines_with, pem_certs, stored_leaf, wait_log_with)
from tg_pebble import acme_factory, pebble, pebble_factory  # noqa: F401,F811 (fixtures)

STALE_S = 10  # certmagic's (and storage.h's) STORAGE_LOCK_STALE_USEC


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _set(xdg, pebble):
    return {ext: _read(p) for ext, p in cert_files(xdg, pebble).items()}


def _temps(root):
    """Every .tmp-* entry under root, relative."""
    out = []
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            if n.startswith(".tmp-"):
                out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)


def _pub(key):
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_complete_new(files, pebble):
    """files: {ext: bytes}. A complete set from Pebble: the chain parses, the
    key is the leaf's, the JSON is certmagic's for this name and CA."""
    chain = pem_certs(files["crt"])
    assert chain and DOMAIN in [n.value for n in chain[0].extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value], "stored leaf is not for %s" % DOMAIN
    key = serialization.load_pem_private_key(files["key"], None)
    assert _pub(key) == chain[0].public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo), \
        "the stored key does not belong to the stored certificate (a torn set)"
    meta = json.loads(files["json"])
    assert meta["sans"] == [DOMAIN], meta
    assert meta["issuer_data"]["ca"] == pebble.directory_url, meta
    assert format(chain[0].serial_number, "x") in meta["issuer_data"]["url"].lower(), \
        "the JSON belongs to another certificate: %r" % meta
    return chain[0]


# ---------------------------------------------------------------------------
# A full disk
@pytest.fixture
def small_tmpfs(tmp_path):
    """mount(tmpfs, size) on a new directory; unmounted at teardown (requested
    before the tlsgate fixtures, so it is torn down after tlsgate stopped)."""
    made = []

    def mount(size):
        d = str(tmp_path / ("tmpfs%d" % len(made)))
        os.makedirs(d)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size,
                            "tlsgate-test", d], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            pytest.skip("cannot mount a tmpfs to fill up (needs root or CAP_SYS_ADMIN): %s"
                        % r.stderr.strip())
        made.append(d)
        return d
    yield mount
    for d in made:
        if subprocess.run(["umount", d], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", d], capture_output=True, timeout=30)


def _fill(directory):
    """Writes a filler file until the file system is full; returns its path."""
    path = os.path.join(directory, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            for _ in range(100000):  # bounded: 6.5 GB at most, far more than any tmpfs here
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
            else:
                raise AssertionError("%s never filled up" % directory)
    finally:
        os.close(fd)
    return path


VALIDITY = 15  # seconds: renewal due when less than 5 s remain, 10 s in


def test_disk_full_during_renewal(small_tmpfs, pebble_factory, acme_factory, backend, pki):
    xdg = small_tmpfs("1m")
    pebble = pebble_factory(validity=VALIDITY)
    gate = acme_factory.start(pebble, backend, xdg=xdg, timeout=20,
                              env={BACKOFF_SCALE_ENV: "0.05"})
    first = echo(gate.addr, client_ctx(pebble, pki.client))
    assert first.ok, first
    old = _set(xdg, pebble)
    assert stored_leaf(xdg, pebble).serial_number == first.serial
    root = os.path.join(xdg, "certmagic")

    filler = _fill(xdg)
    # The renewal comes due, the order succeeds, the write fails.
    line = wait_log_with(gate, "cannot store the certificate", timeout=VALIDITY + 15)[0]
    key_path = cert_files(xdg, pebble)["key"]
    assert key_path in line and "No space left on device" in line, \
        "the error does not name the file and ENOSPC: %r" % line
    assert "serving it from memory" in line and "retrying" in line, line
    # A second failed attempt (5 s * 0.05 later): still nothing torn or left over.
    assert tg_daemon.wait_until(lambda: len(log_lines_with(gate, "cannot store the certificate"))
                                >= 2, 10), gate.log()
    assert _set(xdg, pebble) == old, "the stored certificate changed while the disk was full"
    assert _temps(root) == [], "temporary files left by the failed write: %r" % _temps(root)
    assert gate.running(), gate.log()
    during = echo(gate.addr, client_ctx(pebble, pki.client))
    assert during.ok, "not serving while the disk is full: %r" % during
    renewed = during.serial
    assert renewed != first.serial, "the renewed certificate is not served from memory"

    os.unlink(filler)
    wait_log_with(gate, "stored the certificate", DOMAIN, timeout=15)
    new = _set(xdg, pebble)
    leaf = _check_complete_new(new, pebble)
    assert leaf.serial_number == renewed, "stored another certificate than the one served"
    assert _temps(root) == [], "temporary files left over: %r" % _temps(root)
    for p in cert_files(xdg, pebble).values():
        assert os.stat(p).st_mode & 0o777 == 0o600
    assert gate.running(), gate.log()
    assert echo(gate.addr, client_ctx(pebble, pki.client)).ok
    assert gate.stop() == 0, gate.log()


# ---------------------------------------------------------------------------
# kill -9 at every step of a certificate write
def _expired_set(pebble):
    """A complete, consistent set for DOMAIN that has expired, so that
    tlsgate orders a new certificate at start and writes over it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=3))
            .not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(DOMAIN)]), critical=False)
            .sign(key, hashes.SHA256()))
    return {
        "crt": cert.public_bytes(serialization.Encoding.PEM),
        "key": key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption()),
        "json": go_json_indent({"sans": [DOMAIN], "issuer_data": {
            "url": "https://127.0.0.1/old", "ca": pebble.directory_url}}).encode(),
    }


def _put_set(xdg, pebble, files):
    for ext, p in cert_files(xdg, pebble).items():
        os.makedirs(os.path.dirname(p), mode=0o700, exist_ok=True)
        with open(p + ".put", "wb") as f:
            f.write(files[ext])
        os.chmod(p + ".put", 0o600)
        os.replace(p + ".put", p)


def _stopped(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def _shim_env(log, n):
    env = tg_daemon.preload_env("stopat")
    env.update({"STOPAT_MATCH": "/certificates/", "STOPAT_LOG": log, "STOPAT_N": str(n)})
    return env


MAX_STEPS = 60


@pytest.mark.timeout(900)  # a start per write step: 63 s alone under valgrind
def test_kill_during_certificate_write(pebble, acme_factory, backend, pki, tmp_path):
    """stopat.so numbers every file system call tlsgate makes under
    certificates/ (mkdtemp, open, write, fsync, rename, unlink...) and stops
    the process with SIGSTOP right before call N; the test then SIGKILLs it.
    A first run counts the calls; then N takes every value, so the kill lands
    at every point of the write, deterministically."""
    xdg = acme_factory.xdg
    gate = acme_factory.start(pebble, backend, timeout=20)  # account and a first set
    assert gate.stop() == 0, gate.log()
    old = _expired_set(pebble)
    lock = os.path.join(xdg, "certmagic", "locks", "issue_cert_%s.lock" % DOMAIN)
    root = os.path.join(xdg, "certmagic")

    _put_set(xdg, pebble, old)
    steps_log = str(tmp_path / "steps-count.log")
    gate = acme_factory.start(pebble, backend, timeout=20, env=_shim_env(steps_log, 0))
    assert log_lines_with(gate, "obtained"), gate.log()
    assert gate.stop() == 0, gate.log()
    steps = _read(steps_log).decode().splitlines()
    assert 5 <= len(steps) <= MAX_STEPS, "unexpected number of write steps:\n" + "\n".join(steps)
    _check_complete_new(_set(xdg, pebble), pebble)

    outcomes = []
    for n in range(1, len(steps) + 1):
        _put_set(xdg, pebble, old)
        if os.path.exists(lock):
            os.unlink(lock)  # a killed process's lock would make the next start wait 10 s
        # The kills before left temporary directories; a start removes those
        # older than STALE_S first, which adds steps before the write and
        # shifts the numbering (a start takes seconds under valgrind). That
        # clean-up has its own check after the loop.
        for p in _temps(root):
            full = os.path.join(root, p)
            if os.path.isdir(full):
                shutil.rmtree(full)
            elif os.path.exists(full):
                os.unlink(full)
        log = str(tmp_path / ("steps-%d.log" % n))
        g = acme_factory.start(pebble, backend, wait_ready=False, env=_shim_env(log, n),
                               expect_exit=-signal.SIGKILL)
        assert tg_daemon.wait_until(lambda: _stopped(g.pid) or not g.running(), 30), \
            "step %d never reached:\n%s" % (n, g.log())
        assert g.running(), "exited before step %d:\n%s" % (n, g.log())
        os.kill(g.pid, signal.SIGKILL)
        assert g.wait(10) == -signal.SIGKILL
        at = _read(log).decode().splitlines()[-1]

        d = os.path.dirname(cert_files(xdg, pebble)["crt"])
        names = sorted(n_ for n_ in os.listdir(d))
        assert names == sorted("%s.%s" % (DOMAIN, e) for e in ("crt", "json", "key")), \
            "killed at %r: %s holds %r" % (at, d, names)
        now = _set(xdg, pebble)
        if now == old:
            outcomes.append("old")
        else:
            try:
                _check_complete_new(now, pebble)
            except (AssertionError, ValueError) as e:
                raise AssertionError("killed at %r: neither the old set nor a complete new "
                                     "one: %s" % (at, e))
            outcomes.append("new")
    assert "old" in outcomes and "new" in outcomes, \
        "the kills did not straddle the switch to the new set: %r" % outcomes
    assert outcomes == sorted(outcomes, key=["old", "new"].index), \
        "the new set appeared and went again: %r" % outcomes

    # The next start after a kill: left exactly as the last kill left it (lock
    # file and temporary directory included), with an expired certificate,
    # so that it must order and write again.
    # The last step is the removal of the temporary directory, so the last
    # kill left one; it is made older than STALE_S rather than waited for.
    _put_set(xdg, pebble, old)
    left = _temps(root)
    assert left, "the last kill left no temporary directory: %r" % outcomes
    long_ago = time.time() - STALE_S - 5
    for p in left:
        os.utime(os.path.join(root, p), (long_ago, long_ago))
    g = acme_factory.start(pebble, backend, timeout=STALE_S + 20)
    assert echo(g.addr, client_ctx(pebble, pki.client)).ok
    _check_complete_new(_set(xdg, pebble), pebble)
    stale = [p for p in _temps(root) if p in left]
    assert not stale, "temporary files of killed writers were not cleaned up: %r" % stale
    assert g.stop() == 0, g.log()
    assert not os.path.exists(lock)


# ---------------------------------------------------------------------------
# Lock files of processes that died
def _go_time(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def _ago(seconds):
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)


LOCKS = {
    # certmagic's rule: "updated" older than 10 s is stale, whatever the mtime.
    "updated-30s-ago": (lambda: json.dumps({"created": _go_time(_ago(60)),
                                            "updated": _go_time(_ago(30))}), None, False),
    "created-only-1h-ago": (lambda: json.dumps({"created": _go_time(_ago(3600))}), None, False),
    # Unparsable (empty, or cut while written): the file's age decides.
    "empty-old": (lambda: "", 60, False),
    "garbage-old": (lambda: "\x00{\"created\": \"2024-", 60, False),
    "garbage-fresh": (lambda: "not json at all", 0, True),
}


@pytest.mark.parametrize("case", sorted(LOCKS))
def test_stale_lock_of_dead_process_is_taken_over(pebble, acme_factory, backend, pki, case):
    content, age, waits = LOCKS[case]
    lock = os.path.join(acme_factory.xdg, "certmagic", "locks", "issue_cert_%s.lock" % DOMAIN)
    os.makedirs(os.path.dirname(lock), mode=0o700)
    with open(lock, "w") as f:
        f.write(content())
    if age:
        t = time.time() - age
        os.utime(lock, (t, t))
    gate = acme_factory.start(pebble, backend, timeout=STALE_S + 20)
    waited = log_lines_with(gate, "another process is obtaining")
    if waits:
        assert waited, "a fresh lock file was not honoured:\n" + gate.log()
    else:
        assert not waited, "waited for a stale lock:\n" + gate.log()
    assert log_lines_with(gate, "obtained"), gate.log()
    assert echo(gate.addr, client_ctx(pebble, pki.client)).ok
    assert not os.path.exists(lock), "the lock file was left behind"
    assert gate.stop() == 0, gate.log()
