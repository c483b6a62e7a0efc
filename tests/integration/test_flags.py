"""Command-line validation: bad flags fail before any socket is opened."""
import os

import pytest

import tg_daemon

# Each case: (id, argv after "server" with placeholders, substrings of which at
# least one must appear in stderr). Placeholders: {L} listen, {T} target,
# {CA} {CERT} {KEY} server credentials, {CKEY} a client key, {NOFILE}.
CREDS = ["--cacert", "{CA}", "--cert", "{CERT}", "--key", "{KEY}"]
BASE = ["--listen", "{L}", "--target", "{T}"] + CREDS

CASES = [
    ("connect-timeout-garbage", BASE + ["--allow-all", "--connect-timeout", "abc"],
     ["--connect-timeout"]),
    ("connect-timeout-zero", BASE + ["--allow-all", "--connect-timeout", "0"],
     ["--connect-timeout"]),
    ("connect-timeout-negative", BASE + ["--allow-all", "--connect-timeout=-1s"],
     ["--connect-timeout"]),
    ("connect-timeout-missing-value", BASE + ["--allow-all", "--connect-timeout"],
     ["--connect-timeout"]),
    ("close-timeout-no-unit", BASE + ["--allow-all", "--close-timeout", "10"],
     ["--close-timeout"]),
    ("shutdown-timeout-words", BASE + ["--allow-all", "--shutdown-timeout", "5 minutes"],
     ["--shutdown-timeout"]),
    ("max-conn-lifetime-days", BASE + ["--allow-all", "--max-conn-lifetime", "1d"],
     ["--max-conn-lifetime"]),
    ("max-concurrent-conns-negative", BASE + ["--allow-all", "--max-concurrent-conns=-1"],
     ["--max-concurrent-conns"]),
    ("max-concurrent-conns-word", BASE + ["--allow-all", "--max-concurrent-conns", "many"],
     ["--max-concurrent-conns"]),
    ("max-tls-version-1.1", BASE + ["--allow-all", "--max-tls-version", "TLS1.1"],
     ["--max-tls-version"]),
    ("max-tls-version-bare", BASE + ["--allow-all", "--max-tls-version", "1.3"],
     ["--max-tls-version"]),
    ("cipher-suites-rc4", BASE + ["--allow-all", "--cipher-suites", "RC4"], ["--cipher-suites"]),
    ("cipher-suites-partly-bad", BASE + ["--allow-all", "--cipher-suites", "AES,BOGUS"],
     ["--cipher-suites"]),
    ("quiet-bogus", BASE + ["--allow-all", "--quiet", "everything"], ["--quiet"]),
    ("listen-no-port", ["--listen", "127.0.0.1", "--target", "{T}"] + CREDS + ["--allow-all"],
     ["--listen"]),
    ("listen-port-range", ["--listen", "127.0.0.1:99999", "--target", "{T}"] + CREDS
     + ["--allow-all"], ["--listen"]),
    ("listen-missing", ["--target", "{T}"] + CREDS + ["--allow-all"], ["--listen"]),
    ("target-missing", ["--listen", "{L}"] + CREDS + ["--allow-all"], ["--target"]),
    ("target-unsafe", ["--listen", "{L}", "--target", "10.0.0.1:80"] + CREDS + ["--allow-all"],
     ["--target", "--unsafe-target"]),
    ("target-unsafe-loopback-alias", ["--listen", "{L}", "--target", "127.0.0.2:80"] + CREDS
     + ["--allow-all"], ["--target", "--unsafe-target"]),
    ("target-systemd", ["--listen", "{L}", "--target", "systemd:foo"] + CREDS + ["--allow-all"],
     ["--target"]),
    ("target-no-port", ["--listen", "{L}", "--target", "127.0.0.1"] + CREDS + ["--allow-all"],
     ["--target"]),
    ("no-access-flag", BASE, ["--allow-", "--disable-authentication"]),
    ("allow-all-with-cn", BASE + ["--allow-all", "--allow-cn", "client"], ["--allow-all"]),
    ("disable-auth-with-cn", BASE + ["--disable-authentication", "--allow-cn", "client"],
     ["--disable-authentication"]),
    ("allow-all-with-disable-auth", BASE + ["--allow-all", "--disable-authentication"],
     ["--allow-all", "--disable-authentication"]),
    ("allow-ip-garbage", BASE + ["--allow-ip", "not-an-ip"], ["--allow-ip"]),
    ("allow-uri-double-star-middle", BASE + ["--allow-uri", "spiffe://example/**/svc"],
     ["--allow-uri"]),
    ("unknown-flag", BASE + ["--allow-all", "--bogus-flag"], ["--bogus-flag"]),
    ("cert-without-key", ["--listen", "{L}", "--target", "{T}", "--cacert", "{CA}", "--cert",
                          "{CERT}", "--allow-all"], ["--key"]),
    ("keystore-and-cert", BASE + ["--keystore", "{CERT}", "--allow-all"],
     ["--keystore", "--cert"]),
    ("no-credentials", ["--listen", "{L}", "--target", "{T}", "--cacert", "{CA}", "--allow-all"],
     ["--cert", "--keystore"]),
    ("cacert-missing-file", ["--listen", "{L}", "--target", "{T}", "--cacert", "{NOFILE}",
                             "--cert", "{CERT}", "--key", "{KEY}", "--allow-all"],
     ["--cacert", "{NOFILE}"]),
    ("cert-missing-file", ["--listen", "{L}", "--target", "{T}", "--cacert", "{CA}",
                           "--cert", "{NOFILE}", "--key", "{KEY}", "--allow-all"],
     ["--cert", "{NOFILE}"]),
    ("key-not-a-key", ["--listen", "{L}", "--target", "{T}", "--cacert", "{CA}",
                       "--cert", "{CERT}", "--key", "{CA}", "--allow-all"], ["--key", "{CA}"]),
    ("key-does-not-match-cert", ["--listen", "{L}", "--target", "{T}", "--cacert", "{CA}",
                                 "--cert", "{CERT}", "--key", "{CKEY}", "--allow-all"],
     ["--key", "--cert", "{CKEY}", "{CERT}"]),
]


def _fill(s, m):
    for k, v in m.items():
        s = s.replace("{%s}" % k, v)
    return s


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("listen_kind", ["tcp", "unix"])
def test_bad_command_line(tlsgate_bin, pki, held_port, sockdir, case, listen_kind):
    _id, args, needles = case
    unix_path = os.path.join(sockdir, "listen.sock")
    listen = "127.0.0.1:%d" % held_port if listen_kind == "tcp" else "unix:" + unix_path
    if listen_kind == "unix" and "{L}" not in args:
        pytest.skip("the case is about the listen address itself")
    m = {"L": listen, "T": "127.0.0.1:9", "CA": pki.ca.cert_path,
         "CERT": pki.server.cert_path, "KEY": pki.server.key_path,
         "CKEY": pki.client.key_path, "NOFILE": os.path.join(sockdir, "does-not-exist.pem")}
    argv = [tlsgate_bin, "server"] + [_fill(a, m) for a in args]
    notify = tg_daemon.NotifyReceiver()
    try:
        rc, out, err = tg_daemon.run_once(argv, env={"NOTIFY_SOCKET": notify.path})
        ready = notify.find("READY", "1")
    finally:
        notify.close()
    assert rc is not None, "still running 10s later: %r" % err
    assert rc != 0, "bad command line accepted: %s\nstderr: %s" % (argv, err)
    assert not ready, "READY=1 sent for a bad command line"
    wanted = [_fill(n, m) for n in needles]
    assert any(w in err for w in wanted), "stderr should name one of %r: %r" % (wanted, err)
    lines = [l for l in err.splitlines() if l.strip()]
    assert 1 <= len(lines) <= 2, "expected one error message, got:\n%s" % err
    low = err.lower()
    assert "in use" not in low and "eaddrinuse" not in low, \
        "tlsgate bound the listen address before rejecting the command line: %r" % err
    assert not os.path.exists(unix_path), "unix listen socket created for a bad command line"


def test_held_port_method_detects_binding(tlsgate_bin, pki, held_port):
    """Control for the test above: a good command line on the held port fails
    with an address-in-use error, so the check above can tell."""
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % held_port, "--target",
            "127.0.0.1:9", "--cacert", pki.ca.cert_path, "--cert", pki.server.cert_path,
            "--key", pki.server.key_path, "--allow-all"]
    rc, _out, err = tg_daemon.run_once(argv)
    assert rc not in (0, None), err
    assert "in use" in err.lower() or "eaddrinuse" in err.lower(), err
    assert "--listen" in err or "127.0.0.1:%d" % held_port in err, err


def test_help(tlsgate_bin):
    rc, out, err = tg_daemon.run_once([tlsgate_bin, "server", "--help"])
    assert rc == 0, err
    for flag in ("--listen", "--target", "--allow-cn", "--connect-timeout", "--quiet"):
        assert flag in out, "help text lacks %s" % flag


def test_no_verb(tlsgate_bin):
    rc, _out, err = tg_daemon.run_once([tlsgate_bin])
    assert rc not in (0, None)
    assert err.strip()
