"""The journal message catalog, as `journalctl -x` shows it.

A real systemd-journald runs in a private mount namespace (tmpfs over
/run/systemd, /run/log, /var/log and /var/lib/systemd, so nothing of the
machine's journal is touched), with a catalog database compiled from
catalog/tlsgate.catalog by journalctl itself. Entries with tlsgate's
MESSAGE_IDs and fields are sent to it, and `journalctl -x` must explain each
one, with the entry's fields filled in.
"""
import os
import re
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
JOURNALD = "/usr/lib/systemd/systemd-journald"

SCRIPT = r"""
set -eu
db=$1 out=$2 entries=$3
mount -t tmpfs tmpfs /run/systemd 2>/dev/null || { mkdir -p /run/systemd; mount -t tmpfs tmpfs /run/systemd; }
mkdir -p /run/log && mount -t tmpfs tmpfs /run/log
mount -t tmpfs tmpfs /var/log
mkdir -p /var/lib/systemd && mount -t tmpfs tmpfs /var/lib/systemd
mkdir -p /var/lib/systemd/catalog /run/systemd/journal
cp "$db" /var/lib/systemd/catalog/database
%(journald)s 2>/run/log/journald.err &
jpid=$!
trap 'kill $jpid 2>/dev/null || true' EXIT
i=0
while [ ! -S /run/systemd/journal/socket ]; do
        i=$((i + 1)); [ $i -lt 200 ] || { cat /run/log/journald.err >&2; exit 1; }
        sleep 0.05
done
/usr/bin/python3 - "$entries" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for e in open(sys.argv[1], "rb").read().split(b"\n\n"):
    if e.strip():
        s.sendto(e.strip(b"\n") + b"\n", "/run/systemd/journal/socket")
PY
n=$(grep -c '^MESSAGE_ID=' "$entries")
i=0
while :; do
        journalctl -D /run/log/journal -x --no-pager -o short SYSLOG_IDENTIFIER=tlsgate-catalog-test >"$out" 2>&1 || true
        [ "$(grep -c 'Defined-By: tlsgate' "$out")" -ge "$n" ] && break
        i=$((i + 1)); [ $i -lt 100 ] || break
        sleep 0.05
done
"""

# One entry per MESSAGE_ID of src/log.h, with the fields tlsgate logs with it.
ENTRIES = {
    "9bc8d128d3474aee8c4e7a926e5e72cc": dict(
        MESSAGE="access denied for 192.0.2.7:40000 (CN=mallory): no --allow rule matches the "
                "client certificate",
        TLSGATE_PEER="192.0.2.7:40000", TLSGATE_CONN_ID="3", TLSGATE_CLIENT_CN="mallory"),
    "9517482f399f4b1588401f4676cf5bac": dict(
        MESSAGE="error on TLS handshake from 192.0.2.8:40001: client did not present a "
                "certificate",
        TLSGATE_PEER="192.0.2.8:40001", TLSGATE_CONN_ID="4"),
    "28edbb68c9594770a4e82c0778107bc4": dict(
        MESSAGE="error on dial to 127.0.0.1:8080 for 192.0.2.9:40002: connect: connection refused",
        TLSGATE_PEER="192.0.2.9:40002", TLSGATE_CONN_ID="5", TLSGATE_CLIENT_CN="frontend"),
    "b76424d408c04280a384db015bbecc68": dict(
        MESSAGE="certificate for www.example.org obtained, expires 2027-02-26 12:00:00 UTC",
        TLSGATE_CERT_NAME="www.example.org"),
    "2141c7f97cb842abac5f9ca4b048f0e7": dict(
        MESSAGE="certificate for www.example.org renewed, expires 2027-02-26 12:00:00 UTC",
        TLSGATE_CERT_NAME="www.example.org"),
    "e8659712de774077818f5fb39b2c3709": dict(
        MESSAGE="could not renew the certificate for www.example.org: connection refused; "
                "retrying in 60.0 s, still serving the current one",
        TLSGATE_CERT_NAME="www.example.org"),
    "3c126ce1d1224a78a1ca804cbdcbd85e": dict(
        MESSAGE="certificate for www.example.org (serial 03a1f2) is REVOKED according to its "
                "OCSP responder http://r3.o.lencr.org (since 2027-01-02 03:04:05 UTC, "
                "keyCompromise): obtaining a new certificate with a new key",
        TLSGATE_CERT_NAME="www.example.org"),
    "019f02c829b04d3f93b70417ed251f4a": dict(
        MESSAGE="reload failed, keeping the current certificate, CA bundle and access rules: "
                "--cert /etc/tlsgate/web.crt: no certificate found"),
}


def _message_ids():
    with open(os.path.join(SRC, "src", "log.h")) as f:
        return set(re.findall(r'^#define MESSAGE_ID_\w+ "([0-9a-f]{32})"', f.read(), re.M))


def test_every_message_id_has_a_sample():
    assert set(ENTRIES) == _message_ids()


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    """journalctl -x output for ENTRIES, or a skip when no journald can run."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a private mount namespace")
    for tool in ("unshare", "journalctl"):
        if not shutil.which(tool):
            pytest.skip("%s not installed" % tool)
    if not os.access(JOURNALD, os.X_OK):
        pytest.skip("%s not installed" % JOURNALD)

    tmp = tmp_path_factory.mktemp("catalog")
    root = tmp / "root"
    (root / "usr/lib/systemd/catalog").mkdir(parents=True)
    shutil.copy(os.path.join(SRC, "catalog", "tlsgate.catalog"),
                root / "usr/lib/systemd/catalog")
    p = subprocess.run(["journalctl", "--update-catalog", "--root=%s" % root],
                       capture_output=True, text=True)
    assert p.returncode == 0 and not p.stderr, p.stderr

    entries = tmp / "entries"
    with open(entries, "w") as f:
        for mid, fields in ENTRIES.items():
            f.write("MESSAGE_ID=%s\nPRIORITY=4\nSYSLOG_IDENTIFIER=tlsgate-catalog-test\n" % mid)
            for k, v in fields.items():
                f.write("%s=%s\n" % (k, v))
            f.write("\n")
    out = tmp / "out"
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        SCRIPT % {"journald": JOURNALD}, "sh",
                        str(root / "var/lib/systemd/catalog/database"), str(out), str(entries)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return out.read_text()


def _explanation(text, message):
    """The catalog lines journalctl -x printed under the entry with this MESSAGE."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.endswith(message):
            block = []
            for follow in lines[i + 1:]:
                if not follow.startswith("\u2591\u2591"):  # journalctl's catalog prefix
                    break
                block.append(follow[2:].strip())
            return "\n".join(block)
    raise AssertionError("entry %r not shown by journalctl:\n%s" % (message, text))


def test_each_entry_explained(explained):
    for mid, fields in ENTRIES.items():
        ex = _explanation(explained, fields["MESSAGE"])
        assert "Defined-By: tlsgate" in ex, ex
        assert "Documentation: man:tlsgate(8)" in ex, ex
        assert re.search(r"^Subject: \S", ex, re.M), ex
        # Every field placeholder was filled from the entry.
        assert "@" not in re.sub(r"\S+@\S+\.\w+", "", ex), ex
        for k in ("TLSGATE_PEER", "TLSGATE_CERT_NAME"):
            if k in fields:
                assert fields[k] in ex, (k, ex)


def test_substitutions(explained):
    denied = _explanation(explained, ENTRIES["9bc8d128d3474aee8c4e7a926e5e72cc"]["MESSAGE"])
    assert "The client at 192.0.2.7:40000 completed the TLS handshake" in denied
    assert 'common name is "mallory"' in denied
    renewed = _explanation(explained, ENTRIES["2141c7f97cb842abac5f9ca4b048f0e7"]["MESSAGE"])
    assert "Subject: Certificate for www.example.org renewed" in renewed
