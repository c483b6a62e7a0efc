"""--config FILE: every setting from a file, command-line flags overriding it,
errors naming file and line, and systemd credentials ($CREDENTIALS_DIRECTORY)."""
import os
import shutil
import signal
import socket

import pytest

import tg_daemon
from conftest import listen_to_addr
from tg_checks import assert_allowed, assert_refused


def write_conf(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def base_conf(pki, backend, listen, access="allow-cn = client\n"):
    return ("# tlsgate in front of the test backend\n"
            "listen = %s\n"
            "target = %s\n"
            "\n"
            "cacert = %s\n"
            "cert = %s\n"
            "key = %s\n"
            "%s"
            % (listen, backend.target, pki.ca.cert_path, pki.server.cert_path,
               pki.server.key_path, access))


def start(proxy_factory, args, listen, env=None):
    """Starts `tlsgate server ARGS` (no flags added) and waits for READY=1."""
    t = tg_daemon.Tlsgate([proxy_factory.binary, "server"] + list(args), proxy_factory.logdir,
                          env=env)
    t.listen, t.addr = listen, listen_to_addr(listen)
    proxy_factory.started.append(t)
    t.start()
    return t


def fresh_listen():
    return "127.0.0.1:%d" % tg_daemon.free_port()


def refused_to_connect(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(addr)
    except ConnectionRefusedError:
        return True
    finally:
        s.close()
    return False


def test_everything_from_the_file(proxy_factory, backend, ctx_for, pki, tmp_path):
    listen = fresh_listen()
    # CRLF line endings, a bare boolean, no newline at the end.
    conf = write_conf(tmp_path / "web.conf",
                      base_conf(pki, backend, listen).replace("\n", "\r\n")
                      + "   # a bare boolean\r\n"
                      + "unsafe-target\r\n"
                      + "connect-timeout = 5s\r\n"
                      + "quiet = conn-errs")
    proxy = start(proxy_factory, ["--config", conf], listen)
    assert_allowed(proxy, backend, ctx_for(pki.client))
    assert_refused(proxy, backend, ctx_for(pki.client_ou))  # CN=ou-client is not allowed


def test_command_line_overrides_the_file(proxy_factory, backend, ctx_for, pki, tmp_path):
    file_listen, listen = fresh_listen(), fresh_listen()
    conf = write_conf(tmp_path / "web.conf", base_conf(pki, backend, file_listen))
    # --allow-cn on the command line replaces the file's list; --listen wins.
    proxy = start(proxy_factory, ["--config=" + conf, "--allow-cn", "ou-client",
                                  "--listen", listen], listen)
    assert_allowed(proxy, backend, ctx_for(pki.client_ou))
    assert_refused(proxy, backend, ctx_for(pki.client))
    assert refused_to_connect(listen_to_addr(file_listen)), "the file's --listen was used too"


def test_file_list_kept_when_command_line_has_none(proxy_factory, backend, ctx_for, pki,
                                                   tmp_path):
    listen = fresh_listen()
    conf = write_conf(tmp_path / "web.conf",
                      base_conf(pki, backend, listen,
                                access="allow-cn = client\nallow-cn = ou-client\n"))
    proxy = start(proxy_factory, ["--shutdown-timeout=1s", "--config", conf], listen)
    assert_allowed(proxy, backend, ctx_for(pki.client))
    assert_allowed(proxy, backend, ctx_for(pki.client_ou))
    assert_refused(proxy, backend, ctx_for(pki.client_dns))


# (id, lines after the base settings, expected message after "PATH:"); the
# base settings take 7 lines (see base_conf), so the first added line is 8.
BAD = [
    ("unknown", "allow-cn = client\nlistne = 127.0.0.1:1\n", '9: unknown setting "listne"'),
    ("empty-list-value", "allow-cn =\n", "8: allow-cn: value must not be empty"),
    ("missing-equals", "allow-cn client\n", '8: allow-cn: missing "=" between name and value'),
    ("missing-value", "allow-all\nmax-tls-version\n", "9: max-tls-version: missing value"),
    ("twice", "allow-all\ncacert = /etc/ssl/ca.pem\n", "9: cacert: given more than once"),
    ("bad-duration", "allow-all\n# x\nclose-timeout = 10\n",
     '10: close-timeout: invalid duration "10"'),
    ("bad-bool", "allow-all = yes\n", '8: allow-all: must be true or false, not "yes"'),
    ("config-in-file", "allow-all\nconfig = /etc/tlsgate/other.conf\n",
     "9: config: only valid on the command line"),
    ("dashes", "--allow-all\n", '8: unknown setting "--allow-all" (write names without'),
    ("too-long", "allow-all\nallow-cn = " + "x" * 5000 + "\n",
     "9: line too long (more than 4096 bytes)"),
]


def run_bad(tlsgate_bin, argv, env=None):
    notify = tg_daemon.NotifyReceiver()
    try:
        e = {"NOTIFY_SOCKET": notify.path}
        e.update(env or {})
        rc, out, err = tg_daemon.run_once(argv, env=e)
        ready = notify.find("READY", "1")
    finally:
        notify.close()
    assert not ready, "READY=1 sent for a bad configuration"
    return rc, err


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_file(tlsgate_bin, pki, backend, held_port, tmp_path, case):
    _id, extra, message = case
    conf = write_conf(tmp_path / "web.conf",
                      base_conf(pki, backend, "127.0.0.1:%d" % held_port, access="") + extra)
    rc, err = run_bad(tlsgate_bin, [tlsgate_bin, "server", "--config", conf])
    assert rc == 2, err
    assert err.startswith("tlsgate: %s:%s" % (conf, message)), err
    assert len(err.strip().splitlines()) == 1, err
    assert "in use" not in err.lower(), "bound the port before reading the whole file: " + err


def test_bad_files_outside(tlsgate_bin, tmp_path):
    missing = str(tmp_path / "missing.conf")
    rc, err = run_bad(tlsgate_bin, [tlsgate_bin, "server", "--config", missing])
    assert rc == 2
    assert err.strip() == "tlsgate: cannot read %s: No such file or directory" % missing
    rc, err = run_bad(tlsgate_bin, [tlsgate_bin, "server", "--config", str(tmp_path)])
    assert rc == 2
    assert err.strip() == "tlsgate: cannot read %s: Is a directory" % tmp_path
    conf = write_conf(tmp_path / "a.conf", "allow-all\n")
    rc, err = run_bad(tlsgate_bin, [tlsgate_bin, "server", "--config", conf, "--config", conf])
    assert rc == 2 and "--config: given more than once" in err, err
    # --help wins over a broken file
    rc, out, err = tg_daemon.run_once([tlsgate_bin, "server", "--config", missing, "--help"])
    assert rc == 0 and "--config=FILE" in out and "CREDENTIALS_DIRECTORY" in out, err


def test_merged_settings_are_validated(tlsgate_bin, pki, backend, held_port, tmp_path):
    """Each half is fine; together they break Ghostunnel's rules."""
    conf = write_conf(tmp_path / "web.conf",
                      base_conf(pki, backend, "127.0.0.1:%d" % held_port, access="allow-all\n"))
    rc, err = run_bad(tlsgate_bin, [tlsgate_bin, "server", "--config", conf, "--allow-cn=x"])
    assert rc == 2
    assert "--allow-all is mutually exclusive" in err, err


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root to run tlsgate as another user")
def test_unreadable_file(tlsgate_bin, tmp_path):
    d = tg_daemon.short_tmpdir("tg-conf-")
    try:
        os.chmod(d, 0o755)
        conf = write_conf(os.path.join(d, "web.conf"), "allow-all\n")
        os.chmod(conf, 0o600)
        rc, out, err = tg_daemon.run_once(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
             tlsgate_bin, "server", "--config", conf])
        if "tlsgate" not in err and rc != 2:
            pytest.skip("nobody cannot run %s: %s" % (tlsgate_bin, err))
        assert rc == 2
        assert err.strip() == "tlsgate: cannot read %s: Permission denied" % conf
    finally:
        shutil.rmtree(d, ignore_errors=True)


def make_credentials(pki, directory):
    """What LoadCredential= would leave in $CREDENTIALS_DIRECTORY: read-only
    copies named by the unit, not by the source files."""
    os.makedirs(directory, exist_ok=True)
    for name, src in (("tls.crt", pki.server.cert_path), ("tls.key", pki.server.key_path),
                      ("client-ca.pem", pki.ca.cert_path), ("web.p12", pki.keystore_p12_pass)):
        shutil.copyfile(src, os.path.join(directory, name))
    with open(os.path.join(directory, "web.pass"), "w") as f:
        f.write(pki.P12_PASSWORD + "\n")
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name), 0o400)
    return str(directory)


def test_credentials_by_name(proxy_factory, backend, ctx_for, pki, tmp_path):
    creds = make_credentials(pki, tmp_path / "credentials")
    listen = fresh_listen()
    conf = write_conf(tmp_path / "web.conf",
                      "listen = %s\ntarget = %s\ncert = tls.crt\nkey = tls.key\n"
                      "cacert = client-ca.pem\nallow-cn = client\n" % (listen, backend.target))
    proxy = start(proxy_factory, ["--config", conf], listen,
                  env={"CREDENTIALS_DIRECTORY": creds})
    assert_allowed(proxy, backend, ctx_for(pki.client))
    assert_refused(proxy, backend, ctx_for(pki.client_ou))

    # SIGHUP re-reads the same credential files and keeps serving.
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_log("reloaded certificate", timeout=5)
    assert_allowed(proxy, backend, ctx_for(pki.client))


def test_keystore_password_from_credential(proxy_factory, backend, ctx_for, pki, tmp_path):
    creds = make_credentials(pki, tmp_path / "credentials")
    listen = fresh_listen()
    proxy = start(proxy_factory, ["--listen", listen, "--target", backend.target,
                                  "--keystore", "web.p12", "--storepass-file", "web.pass",
                                  "--cacert", "client-ca.pem", "--allow-all"], listen,
                  env={"CREDENTIALS_DIRECTORY": creds})
    assert_allowed(proxy, backend, ctx_for(pki.client))
    proxy.send_signal(signal.SIGHUP)
    proxy.wait_log("reloaded certificate", timeout=5)
    assert_allowed(proxy, backend, ctx_for(pki.client))
    assert pki.P12_PASSWORD not in proxy.log()


def test_missing_credential(tlsgate_bin, pki, backend, held_port, tmp_path):
    """A name that is not in $CREDENTIALS_DIRECTORY is a relative path, and
    the error says which file was tried."""
    creds = make_credentials(pki, tmp_path / "credentials")
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % held_port, "--target",
            backend.target, "--cert", "tls.crt", "--key", "nope.key", "--allow-all"]
    rc, err = run_bad(tlsgate_bin, argv, env={"CREDENTIALS_DIRECTORY": creds})
    assert rc == 2, err
    assert "--key nope.key: cannot read: No such file or directory; nor is it a credential " \
        "in %s" % creds in err, err
    assert "in use" not in err.lower(), err


def test_wrong_storepass_file(tlsgate_bin, pki, backend, held_port, tmp_path):
    creds = make_credentials(pki, tmp_path / "credentials")
    bad = os.path.join(creds, "two-lines")
    with open(bad, "w") as f:
        f.write("first-secret\nsecond\n")
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % held_port, "--target",
            backend.target, "--keystore", "web.p12", "--storepass-file", "two-lines",
            "--allow-all"]
    rc, err = run_bad(tlsgate_bin, argv, env={"CREDENTIALS_DIRECTORY": creds})
    assert rc == 2, err
    assert "--storepass-file %s: must hold the password on one line" % bad in err, err
    assert "first-secret" not in err


def test_ghostunnel_environment_variables(proxy_factory, backend, ctx_for, pki):
    """Ghostunnel's KEYSTORE_PATH, KEYSTORE_PASS, CERT_PATH, KEY_PATH and
    CACERT_PATH stand in for their flags; a flag on the command line wins."""
    pem = {"CERT_PATH": pki.server.cert_path, "KEY_PATH": pki.server.key_path,
           "CACERT_PATH": pki.ca.cert_path}
    proxy = proxy_factory.start(backend, creds=[], access=["--allow-cn", "client"], env=pem)
    assert_allowed(proxy, backend, ctx_for(pki.client))
    # CACERT_PATH is the trust anchor: another CA's client is refused.
    assert_refused(proxy, backend, ctx_for(pki.client_other_ca))

    p12 = {"KEYSTORE_PATH": pki.keystore_p12_pass, "KEYSTORE_PASS": pki.P12_PASSWORD,
           "CACERT_PATH": pki.ca.cert_path}
    proxy = proxy_factory.start(backend, creds=[], access=["--allow-cn", "client"], env=p12)
    assert_allowed(proxy, backend, ctx_for(pki.client))
    assert pki.P12_PASSWORD not in proxy.log()

    # The flags win over a variable that names nothing usable.
    proxy = proxy_factory.start(backend, access=["--allow-cn", "client"],
                                env={"CERT_PATH": "/nonexistent/cert.pem",
                                     "KEY_PATH": "/nonexistent/key.pem"})
    assert_allowed(proxy, backend, ctx_for(pki.client))


def test_ghostunnel_environment_variable_errors(tlsgate_bin, pki, backend, held_port):
    """A variable's value gets the flag's checks and messages."""
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % held_port, "--target",
            backend.target, "--cacert", pki.ca.cert_path, "--allow-all"]
    rc, err = run_bad(tlsgate_bin, argv, env={"CERT_PATH": "/nonexistent/cert.pem",
                                              "KEY_PATH": pki.server.key_path})
    assert rc == 2, err
    assert "/nonexistent/cert.pem" in err, err
    rc, err = run_bad(tlsgate_bin, argv + ["--cert", pki.server.cert_path],
                      env={"KEY_PATH": pki.server.key_path,
                           "KEYSTORE_PATH": pki.keystore_p12_pass})
    assert rc == 2, err
    assert "--keystore" in err and "--cert" in err, err


UNITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "units")


def unit_argv(tlsgate_bin, conf):
    """tlsgate@.service's ExecStart= for an instance whose settings are CONF."""
    with open(os.path.join(UNITS, "tlsgate@.service.in")) as f:
        execs = [line.split("=", 1)[1].split() for line in f
                 if line.startswith("ExecStart=")]
    assert len(execs) == 1, execs
    argv = execs[0]
    assert argv[0] == "@bindir@/tlsgate", argv
    assert "--config=/etc/tlsgate/%i.conf" in argv, argv
    return [tlsgate_bin] + ["--config=" + conf if a == "--config=/etc/tlsgate/%i.conf" else a
                            for a in argv[1:]]


def run_example(tlsgate_bin, conf):
    """Runs CONF as tlsgate@web.service would, with every proxy variable
    libcurl honours pointing at a listener here: any attempt at an ACME CA
    (or anything else over HTTP) would knock on it."""
    trap = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    trap.bind(("127.0.0.1", 0))
    trap.listen(8)
    trap.setblocking(False)
    proxy = "http://127.0.0.1:%d" % trap.getsockname()[1]
    env = {k: proxy for k in ("http_proxy", "https_proxy", "HTTPS_PROXY", "ALL_PROXY",
                              "all_proxy")}
    env["no_proxy"] = env["NO_PROXY"] = ""
    try:
        rc, err = run_bad(tlsgate_bin, unit_argv(tlsgate_bin, conf), env=env)
        try:
            trap.accept()[0].close()
            contacted = True
        except BlockingIOError:
            contacted = False
    finally:
        trap.close()
    assert not contacted, "an unedited example went out over HTTP: " + err
    return rc, err


def test_shipped_example_does_nothing_until_edited(tlsgate_bin, tmp_path):
    """An instance enabled from an unedited copy of /etc/tlsgate/example.conf
    refuses to start, names the file and the setting to fill in, and agrees
    to no CA's terms of service: that stays the operator's act."""
    with open(os.path.join(UNITS, "example.conf")) as f:
        example = f.read()
    active = [line for line in example.splitlines()
              if line.strip() and not line.lstrip().startswith("#")]
    assert active == [], "settings active in the shipped example: %r" % active

    conf = write_conf(tmp_path / "web.conf", example)
    rc, err = run_example(tlsgate_bin, conf)
    assert rc == 2, err
    assert err == "tlsgate: %s: --target is required\n" % conf, err

    # Filled in step by step, each message names the next thing to edit.
    def uncomment(text, *names):
        for n in names:
            assert ("\n#%s = " % n) in text, n
            text = text.replace("\n#%s = " % n, "\n%s = " % n, 1)
        return text

    edited = uncomment(example, "target")
    conf = write_conf(tmp_path / "web.conf", edited)
    rc, err = run_example(tlsgate_bin, conf)
    assert rc == 2, err
    assert err == ("tlsgate: %s: at least one of --keystore, --cert/--key or --auto-acme-cert "
                   "is required\n" % conf), err

    # Switching ACME on does not agree to the CA's terms by itself.
    edited = uncomment(edited, "auto-acme-cert", "auto-acme-email")
    conf = write_conf(tmp_path / "web.conf", edited)
    rc, err = run_example(tlsgate_bin, conf)
    assert rc == 2, err
    assert err.startswith("tlsgate: %s: --auto-acme-cert requires --auto-acme-agree-to-tos"
                          % conf), err
