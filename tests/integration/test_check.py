"""Settings that cannot be served: `tlsgate server --check`, the exit status
a failed start gives them (2, which the units' RestartPreventExitStatus= does
not restart), messages naming the --config file and line a setting came
from, and what to do about a file the service's user may not read."""
import os
import shutil
import signal

import pytest

import tg_daemon
from conftest import listen_to_addr
from tg_checks import assert_allowed, served_serial

C_LOCALE = {"LC_ALL": "C.UTF-8"}


@pytest.fixture
def shared_dir(short_dir):
    """A directory other users can enter (pytest's tmp_path is root's only)."""
    os.chmod(short_dir, 0o755)
    return short_dir


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return str(path)


def conf_text(pki, target, listen, key=None, cert=None, cacert=None):
    """cert is on line 4, key on line 5, cacert on line 6."""
    return ("# web\n"
            "listen = %s\n"
            "target = %s\n"
            "cert = %s\n"
            "key = %s\n"
            "cacert = %s\n"
            "allow-cn = client\n"
            % (listen, target, cert or pki.server.cert_path, key or pki.server.key_path,
               cacert or pki.ca.cert_path))


def run(argv, env=None, notify=True):
    """Runs tlsgate to its exit; (rc, stdout, stderr). Fails if READY=1 came."""
    receiver = tg_daemon.NotifyReceiver() if notify else None
    try:
        e = dict(C_LOCALE)
        if receiver:
            e["NOTIFY_SOCKET"] = receiver.path
        e.update(env or {})
        rc, out, err = tg_daemon.run_once(argv, env=e)
        ready = receiver.find("READY", "1") if receiver else None
    finally:
        if receiver:
            receiver.close()
    assert not ready, "READY=1 sent: %s" % err
    return rc, out, err


def test_check_loads_everything_and_opens_nothing(tlsgate_bin, pki, backend, held_port,
                                                  tmp_path):
    """--check on good settings: exit 0 and a line saying what would be
    served, while the --listen port is held by somebody else (a real start
    would fail with EADDRINUSE)."""
    conf = write(tmp_path / "web.conf", conf_text(pki, backend.target,
                                                   "127.0.0.1:%d" % held_port))
    rc, out, err = run([tlsgate_bin, "server", "--config", conf, "--check"])
    assert rc == 0, err
    assert out.startswith("%s: configuration OK: would serve the certificate CN=localhost"
                          % conf), out
    assert "forward to %s" % backend.target in out and pki.ca.cert_path in out, out
    assert err == "", err
    # The same settings really cannot start here: the check did not bind.
    rc, _, err = run([tlsgate_bin, "server", "--config", conf])
    assert rc == 1 and "in use" in err, (rc, err)


def test_check_after_flags_and_the_environment(tlsgate_bin, pki, backend, held_port):
    """--check sees what a start would: Ghostunnel's CERT_PATH/KEY_PATH and
    command-line flags over the file, and ACME settings (no request made)."""
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % held_port, "--target",
            backend.target, "--cacert", pki.ca.cert_path, "--allow-all", "--check"]
    rc, out, err = run(argv, env={"CERT_PATH": pki.server.cert_path,
                                  "KEY_PATH": pki.server.key_path})
    assert rc == 0 and out.startswith("command line: configuration OK"), (rc, out, err)
    rc, out, err = run(argv + ["--auto-acme-cert", "app.example.org", "--auto-acme-email",
                               "a@example.org", "--auto-acme-agree-to-tos",
                               "--auto-acme-ca", "https://127.0.0.1:9/dir"],
                       env={"XDG_DATA_HOME": "/nonexistent-tlsgate-check"})
    assert rc == 0, err
    assert "a certificate for app.example.org from the ACME CA https://127.0.0.1:9/dir" in out


# (id, settings to change, the message after "CONF:")
BROKEN = [
    ("key-mismatch", {"key": "client"}, "4: cert {cert}: the private key in {key} does not match "
     "the certificate"),
    ("cert-mismatch", {"cert": "client"}, "4: cert {cert}: the private key in {key} does not "
     "match the certificate"),
    ("missing-cacert", {"cacert": "/nonexistent/clients-ca.pem"},
     "6: cacert /nonexistent/clients-ca.pem: cannot read: No such file or directory"),
    ("cert-is-a-directory", {"cert": "/etc"}, "4: cert /etc: cannot read: Is a directory"),
    ("key-not-pem", {"key": "garbage"}, "5: key {key}: no private key found"),
]


def broken_conf(pki, tmp_path, target, listen, change):
    paths = {"cert": pki.server.cert_path, "key": pki.server.key_path}
    for setting, what in change.items():
        if what == "client":
            paths[setting] = pki.client.cert_path if setting == "cert" else pki.client.key_path
        elif what == "garbage":
            paths[setting] = write(tmp_path / "garbage.key",
                                   "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n"
                                   "-----END PRIVATE KEY-----\n")
        else:
            paths[setting] = what
    return write(tmp_path / "web.conf", conf_text(pki, target, listen, **paths)), paths


@pytest.mark.parametrize("case", BROKEN, ids=[c[0] for c in BROKEN])
@pytest.mark.parametrize("mode", ["check", "start"])
def test_broken_files_exit_2_naming_file_and_line(tlsgate_bin, pki, backend, held_port, tmp_path,
                                                  case, mode):
    """A file that does not load stops --check and a start alike: exit 2
    (the units do not restart it), one line naming the --config file and the
    line the setting is on, no READY=1."""
    _id, change, expected = case
    conf, paths = broken_conf(pki, tmp_path, backend.target, "127.0.0.1:%d" % held_port, change)
    argv = [tlsgate_bin, "server", "--config", conf] + (["--check"] if mode == "check" else [])
    rc, out, err = run(argv)
    assert rc == 2, (rc, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0] == "tlsgate: %s:%s" % (conf, expected.format(**paths)), err
    assert out == "", out


def test_flag_errors_name_the_flag(tlsgate_bin, pki, backend, held_port):
    """The same failure with the setting on the command line names the flag."""
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % held_port, "--target",
            backend.target, "--cert", pki.server.cert_path, "--key", pki.client.key_path,
            "--cacert", pki.ca.cert_path, "--allow-all"]
    rc, _, err = run(argv)
    assert rc == 2 and err.strip() == "tlsgate: --cert %s: the private key in %s does not match " \
        "the certificate" % (pki.server.cert_path, pki.client.key_path), err


def copy_for_nobody(tlsgate_bin, pki, d):
    """The binary and the public files where user nobody can read them."""
    binary = os.path.join(d, "tlsgate")
    shutil.copy2(tlsgate_bin, binary)
    os.chmod(binary, 0o755)
    files = {}
    for name, src in (("web.crt", pki.server.cert_path), ("clients-ca.pem", pki.ca.cert_path)):
        files[name] = os.path.join(d, name)
        shutil.copyfile(src, files[name])
        os.chmod(files[name], 0o644)
    private = os.path.join(d, "private")
    os.mkdir(private, 0o700)
    files["web.key"] = os.path.join(private, "web.key")
    shutil.copyfile(pki.server.key_path, files["web.key"])
    os.chmod(files["web.key"], 0o600)  # as openssl writes it: root only
    return binary, files


@pytest.mark.parametrize("mode", ["check", "start"])
def test_root_only_key_says_how_to_hand_it_over(tlsgate_bin, pki, backend, held_port,
                                                shared_dir, mode):
    """What the shipped units' dynamic user meets with a key only root may
    read: exit 2 (no restart loop), the file and line, and the
    LoadCredential= line and setting that hand it over."""
    binary, files = copy_for_nobody(tlsgate_bin, pki, shared_dir)
    conf = write(os.path.join(shared_dir, "web.conf"),
                 conf_text(pki, backend.target, "127.0.0.1:%d" % held_port, key=files["web.key"],
                           cert=files["web.crt"], cacert=files["clients-ca.pem"]))
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", binary,
            "server", "--config", conf] + (["--check"] if mode == "check" else [])
    rc, out, err = run(argv, notify=False)
    if "tlsgate" not in err and rc not in (0, 2):
        pytest.skip("nobody cannot run %s: %s" % (binary, err))
    uid = int(tg_daemon.run_once(["id", "-u", "nobody"])[1])
    assert rc == 2, (rc, err)
    assert err.strip() == (
        'tlsgate: %s:5: key %s: cannot read: Permission denied; tlsgate runs as uid %d, which '
        'may not read it: hand a file only root may read over as a systemd credential, '
        'LoadCredential=web.key:%s in the service (systemctl edit), and write "key = web.key" '
        '(see CREDENTIALS in tlsgate.conf(5))' % (conf, files["web.key"], uid, files["web.key"])
    ), err

    # Done as the message says, the same user gets through.
    creds = os.path.join(shared_dir, "credentials")
    os.mkdir(creds, 0o755)
    shutil.copyfile(files["web.key"], os.path.join(creds, "web.key"))
    os.chown(os.path.join(creds, "web.key"), uid, -1)
    os.chmod(os.path.join(creds, "web.key"), 0o400)
    with open(conf) as f:
        text = f.read().replace("key = %s" % files["web.key"], "key = web.key")
    write(conf, text)
    rc, out, err = run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        "env", "CREDENTIALS_DIRECTORY=" + creds, binary, "server", "--config",
                        conf, "--check"], notify=False)
    assert rc == 0 and "configuration OK" in out, (rc, out, err)


def test_bare_names_outside_the_service(tlsgate_bin, pki, backend, held_port, tmp_path):
    """A credential name checked by hand, without $CREDENTIALS_DIRECTORY,
    or missing from it: said so, with what to do."""
    conf = write(tmp_path / "web.conf",
                 conf_text(pki, backend.target, "127.0.0.1:%d" % held_port, key="web.key"))
    rc, _, err = run([tlsgate_bin, "server", "--config", conf, "--check"])
    assert rc == 2 and "%s:5: key web.key: cannot read: No such file or directory; a name " \
        "without a directory is looked up in $CREDENTIALS_DIRECTORY, which is not set here" \
        % conf in err, err
    # The command line overrides the file: the check by hand works with the path.
    rc, out, err = run([tlsgate_bin, "server", "--config", conf, "--key", pki.server.key_path,
                        "--check"])
    assert rc == 0, err

    creds = tmp_path / "credentials"
    creds.mkdir()
    rc, _, err = run([tlsgate_bin, "server", "--config", conf, "--check"],
                     env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert rc == 2 and "nor is it a credential in %s: is LoadCredential=web.key:PATH missing " \
        "from the service?" % creds in err, err


def test_home_hidden_by_the_sandbox(tlsgate_bin, pki, backend, held_port, tmp_path):
    """Under systemd ($INVOCATION_ID) a file below /root or /home is hidden by
    the units' ProtectHome=yes: the message says so."""
    missing = "/root/tlsgate-check-%d/web.key" % os.getpid()
    conf = write(tmp_path / "web.conf",
                 conf_text(pki, backend.target, "127.0.0.1:%d" % held_port, key=missing))
    rc, _, err = run([tlsgate_bin, "server", "--config", conf],
                     env={"INVOCATION_ID": "0123456789abcdef0123456789abcdef"})
    assert rc == 2 and "ProtectHome=yes" in err and "LoadCredential=web.key:%s" % missing \
        in err, err
    rc, _, err = run([tlsgate_bin, "server", "--config", conf])
    assert rc == 2 and "ProtectHome" not in err, err


def make_credentials(directory, cert_path, key_path):
    os.makedirs(directory, exist_ok=True)
    for name, src in (("web.crt", cert_path), ("web.key", key_path)):
        shutil.copyfile(src, os.path.join(directory, name))
        os.chmod(os.path.join(directory, name), 0o400)
    return str(directory)


def test_stale_credential_on_reload(proxy_factory, backend, ctx_for, pki, tmp_path):
    """A key handed over with LoadCredential= is systemd's copy from the
    start: a reload (and --check in the service's context) with a
    certificate for a new key fails, keeps serving the old certificate and says that a
    restart hands over the new key; the restart (a new process with a new
    copy) serves the new one."""
    old_creds = make_credentials(tmp_path / "creds-1", pki.server.cert_path, pki.server.key_path)
    cert = tmp_path / "web.crt"
    shutil.copyfile(pki.server.cert_path, cert)
    listen = "127.0.0.1:%d" % tg_daemon.free_port()
    conf = write(tmp_path / "web.conf", conf_text(pki, backend.target, listen, cert=str(cert),
                                                  key="web.key"))
    env = {"CREDENTIALS_DIRECTORY": old_creds}
    t = tg_daemon.Tlsgate([proxy_factory.binary, "server", "--config", conf],
                          proxy_factory.logdir, env=env)
    t.listen, t.addr = listen, listen_to_addr(listen)
    proxy_factory.started.append(t)
    t.start()
    assert_allowed(t, backend, ctx_for(pki.client))

    # The rotation: a new key and certificate; the credential is still the old key.
    new = pki.ca.issue("rotated", cn="localhost", dns=["localhost"], ips=["127.0.0.1"],
                       server=True)
    shutil.copyfile(new.cert_path, cert)
    rc, _, err = run([proxy_factory.binary, "server", "--config", conf, "--check"], env=env)
    note = ("; the credential web.key is systemd's copy from when the service started "
            "(LoadCredential=), which a reload does not renew: restart the service "
            "(systemctl restart) to hand over a new file")
    mismatch = "%s:4: cert %s: the private key in %s does not match the certificate%s" % (
        conf, cert, os.path.join(old_creds, "web.key"), note)
    assert rc == 2 and err.strip() == "tlsgate: " + mismatch, err

    old_serial = served_serial(t, ctx_for(pki.client))
    t.send_signal(signal.SIGHUP)
    line = t.wait_log("reload failed", timeout=5 * tg_daemon.slow_factor())
    assert served_serial(t, ctx_for(pki.client)) == old_serial != new.cert.serial_number
    assert mismatch in line, line
    assert_allowed(t, backend, ctx_for(pki.client))
    assert t.running()
    t.stop()

    # The restart: systemd copies the credential anew.
    new_creds = make_credentials(tmp_path / "creds-2", new.cert_path, new.key_path)
    t2 = tg_daemon.Tlsgate([proxy_factory.binary, "server", "--config", conf],
                           proxy_factory.logdir, env={"CREDENTIALS_DIRECTORY": new_creds})
    t2.listen, t2.addr = listen, listen_to_addr(listen)
    proxy_factory.started.append(t2)
    t2.start()
    assert_allowed(t2, backend, ctx_for(pki.client))
    assert served_serial(t2, ctx_for(pki.client)) == new.cert.serial_number


def test_reload_errors_name_file_and_line(proxy_factory, backend, ctx_for, pki, tmp_path):
    """SIGHUP with a key that is gone: the reload fails, naming the file and
    line, and the old certificate stays."""
    key = tmp_path / "web.key"
    shutil.copyfile(pki.server.key_path, key)
    listen = "127.0.0.1:%d" % tg_daemon.free_port()
    conf = write(tmp_path / "web.conf", conf_text(pki, backend.target, listen, key=str(key)))
    t = tg_daemon.Tlsgate([proxy_factory.binary, "server", "--config", conf],
                          proxy_factory.logdir, env=C_LOCALE)
    t.listen, t.addr = listen, listen_to_addr(listen)
    proxy_factory.started.append(t)
    t.start()
    os.unlink(key)
    t.send_signal(signal.SIGHUP)
    line = t.wait_log("reload failed", timeout=5 * tg_daemon.slow_factor())
    assert "%s:5: key %s: cannot read: No such file or directory" % (conf, key) in line, line
    assert_allowed(t, backend, ctx_for(pki.client))
