"""`tlsgate reload`, what the units' ExecReload= runs: it asks the running
tlsgate to reload over the control socket in $RUNTIME_DIRECTORY and exits
with the outcome, so that `systemctl reload` fails when tlsgate keeps its
settings."""
import os
import shutil
import socket
import stat

import pytest

import tg_daemon
from conftest import listen_to_addr
from tg_checks import assert_allowed, served_serial

C_LOCALE = {"LC_ALL": "C.UTF-8"}


@pytest.fixture
def runtime_dir(short_dir):
    return short_dir


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def start(proxy_factory, backend, pki, tmp_path, env):
    """tlsgate with cert and key at copies the test may replace (lines 4, 5)."""
    cert, key = str(tmp_path / "web.crt"), str(tmp_path / "web.key")
    shutil.copyfile(pki.server.cert_path, cert)
    shutil.copyfile(pki.server.key_path, key)
    listen = "127.0.0.1:%d" % tg_daemon.free_port()
    conf = write(tmp_path / "web.conf",
                 "# web\nlisten = %s\ntarget = %s\ncert = %s\nkey = %s\ncacert = %s\n"
                 "allow-cn = client\n" % (listen, backend.target, cert, key, pki.ca.cert_path))
    t = tg_daemon.Tlsgate([proxy_factory.binary, "server", "--config", conf],
                          proxy_factory.logdir, env=dict(C_LOCALE, **env))
    t.listen, t.addr = listen, listen_to_addr(listen)
    proxy_factory.started.append(t)
    t.start()
    return t, conf, cert, key


def reload(binary, env, *args):
    return tg_daemon.run_once([binary, "reload"] + list(args), env=dict(C_LOCALE, **env),
                              timeout=30)


def test_reload_reports_the_outcome(proxy_factory, backend, ctx_for, pki, tmp_path, runtime_dir):
    env = {"RUNTIME_DIRECTORY": runtime_dir}
    t, conf, cert, key = start(proxy_factory, backend, pki, tmp_path, env)
    sock = os.path.join(runtime_dir, "control")
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)

    # A new certificate for the same key: applied, exit 0.
    new = pki.ca.issue("control-new", cn="localhost", dns=["localhost"], ips=["127.0.0.1"],
                       server=True)
    shutil.copyfile(new.cert_path, cert)
    shutil.copyfile(new.key_path, key)
    rc, out, err = reload(proxy_factory.binary, env)
    assert rc == 0 and out == "" and err == "", (rc, out, err)
    assert served_serial(t, ctx_for(pki.client)) == new.cert.serial_number
    assert len(t.find_log("reloaded certificate")) == 1

    # A key that does not match: exit 2 with tlsgate's reason; it keeps serving.
    shutil.copyfile(pki.client.key_path, key)
    rc, out, err = reload(proxy_factory.binary, env)
    assert rc == 2, (rc, err)
    assert err.strip() == ("tlsgate: reload failed, tlsgate keeps its current settings: "
                           "%s:4: cert %s: the private key in %s does not match the certificate"
                           % (conf, cert, key)), err
    assert served_serial(t, ctx_for(pki.client)) == new.cert.serial_number
    assert_allowed(t, backend, ctx_for(pki.client))

    # Fixed again; several directories in $RUNTIME_DIRECTORY: the first one.
    shutil.copyfile(new.key_path, key)
    rc, out, err = reload(proxy_factory.binary,
                          {"RUNTIME_DIRECTORY": runtime_dir + ":/nonexistent"})
    assert rc == 0, err

    t.stop()
    assert not os.path.exists(sock), "the control socket outlived tlsgate"


def test_a_silent_client_does_not_block_reloads(proxy_factory, backend, pki, tmp_path,
                                                runtime_dir):
    """A client that connects and says nothing is dropped after a while;
    meanwhile other requests are answered."""
    env = {"RUNTIME_DIRECTORY": runtime_dir}
    t, _, _, _ = start(proxy_factory, backend, pki, tmp_path, env)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        silent.connect(os.path.join(runtime_dir, "control"))
        rc, _, err = reload(proxy_factory.binary, env)
        assert rc == 0, err
        silent.settimeout(10 * tg_daemon.slow_factor())
        assert silent.recv(100) == b"", "the silent client was answered"
    finally:
        silent.close()
    assert t.running()


def test_only_its_own_user_or_root(proxy_factory, backend, pki, tmp_path, runtime_dir):
    """The socket is 0600 in tlsgate's directory; should another user get
    at it anyway, tlsgate refuses (SO_PEERCRED) and says so."""
    env = {"RUNTIME_DIRECTORY": runtime_dir}
    t, _, _, _ = start(proxy_factory, backend, pki, tmp_path, env)
    os.chmod(runtime_dir, 0o755)
    os.chmod(os.path.join(runtime_dir, "control"), 0o666)
    binary = os.path.join(runtime_dir, "tlsgate-client")
    shutil.copy2(proxy_factory.binary, binary)
    os.chmod(binary, 0o755)
    rc, out, err = tg_daemon.run_once(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env",
         "LC_ALL=C.UTF-8", "RUNTIME_DIRECTORY=" + runtime_dir, binary, "reload"])
    if "tlsgate" not in err and rc not in (0, 2):
        pytest.skip("nobody cannot run %s: %s" % (binary, err))
    assert rc == 2 and "reload failed, tlsgate keeps its current settings: not allowed" in err, \
        (rc, err)
    t.wait_log("control socket: refused a request from a process of another user")
    assert not t.find_log("reloaded certificate")


def test_sighup_when_there_is_no_control_socket(proxy_factory, backend, pki, tmp_path,
                                                 runtime_dir):
    """A tlsgate without the control socket (one started by an older
    version, before an upgrade): with --pid, SIGHUP, and a warning."""
    t, _, _, _ = start(proxy_factory, backend, pki, tmp_path, {})
    rc, _, err = reload(proxy_factory.binary, {"RUNTIME_DIRECTORY": runtime_dir}, "--pid",
                        str(t.pid))
    assert rc == 0 and "no control socket in %s" % runtime_dir in err and \
        "sent SIGHUP to process %d" % t.pid in err, (rc, err)
    t.wait_log("reloaded certificate", timeout=5 * tg_daemon.slow_factor())

    # Without --pid there is nobody to ask: exit 1.
    rc, _, err = reload(proxy_factory.binary, {"RUNTIME_DIRECTORY": runtime_dir})
    assert rc == 1 and "reload: no answer from tlsgate through %s/control" % runtime_dir in err, \
        (rc, err)


@pytest.mark.parametrize("args,env,message", [
    ([], {}, "reload: $RUNTIME_DIRECTORY is not set"),
    (["--pid", "12x"], {"RUNTIME_DIRECTORY": "/run"}, 'reload: --pid: not a process ID: "12x"'),
    (["--now"], {"RUNTIME_DIRECTORY": "/run"}, 'reload: unknown argument "--now"'),
])
def test_bad_usage(tlsgate_bin, args, env, message):
    e = {"RUNTIME_DIRECTORY": ""}
    e.update(env)
    rc, _, err = reload(tlsgate_bin, e, *args)
    assert rc == 2 and message in err, (rc, err)
