"""Reload: SIGHUP/SIGUSR1 and --timed-reload.

Connections opened before a reload finish intact while new ones see the new
certificate; a broken certificate, key or CA bundle keeps the old one serving
and the log says why; CA bundle rotation; RELOADING=1 + MONOTONIC_USEC then
READY=1; --timed-reload picks up changes without a signal and stays quiet
when nothing changed; the --config file's access rules apply on reload while
settings that need a restart are reported and kept."""
import hashlib
import os
import re
import shutil
import signal
import threading
import time

import pytest
from cryptography import x509

import tg_daemon
from conftest import listen_to_addr
from tg_checks import assert_allowed, assert_refused, served_serial
from tg_clients import MemTLS, tcp_connect, tls_connect, try_echo

CHUNK = 64 * 1024


# --------------------------------------------------------------------------
# helpers
def install(src, dst):
    """Replaces dst with a copy of src atomically (a reader sees old or new)."""
    tmp = str(dst) + ".tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, str(dst))


def write_atomic(dst, data):
    tmp = str(dst) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, str(dst))


def keystore_bytes(issued):
    """Combined PEM: chain (leaf first) and key, as --keystore takes it."""
    with open(issued.cert_path, "rb") as f:
        chain = f.read()
    with open(issued.key_path, "rb") as f:
        key = f.read()
    return chain + key


def new_server_cert(pki, name):
    return pki.ca.issue(name, cn="localhost", dns=["localhost"], ips=["127.0.0.1", "::1"],
                        server=True, client=False)


def serial_of_der(der):
    return x509.load_der_x509_certificate(der).serial_number


def wait_serial(proxy, ctx, serial, timeout):
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = served_serial(proxy, ctx)
        if seen == serial:
            return seen
        time.sleep(0.1)
    return seen


def logged_serial(line):
    """The serial of "reloaded certificate (..., serial HEX)" as a number."""
    m = re.search(r"serial ([0-9a-f]+)\)", line)
    assert m, line
    return int(m.group(1), 16)


def count_log(proxy, *needles):
    return len(proxy.find_log(*needles))


def fresh_listen():
    return "127.0.0.1:%d" % tg_daemon.free_port()


def start_plain(proxy_factory, args, listen, env=None):
    """`tlsgate server ARGS` exactly (no flags added); waits for READY=1."""
    t = tg_daemon.Tlsgate([proxy_factory.binary, "server"] + list(args), proxy_factory.logdir,
                          env=env)
    t.listen, t.addr = listen, listen_to_addr(listen)
    proxy_factory.started.append(t)
    t.start()
    return t


def reload_and_wait(proxy, phrase="reloaded certificate", sig=signal.SIGHUP, timeout=5.0):
    """Sends sig and waits for one more log line with phrase; returns it."""
    before = count_log(proxy, phrase)
    proxy.send_signal(sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = proxy.find_log(phrase)
        if len(lines) > before:
            return lines[-1]
        time.sleep(0.02)
    raise AssertionError("no new %r line within %.1fs after %s; log:\n%s"
                         % (phrase, timeout, sig.name, proxy.log()))


@pytest.fixture
def files(pki, tmp_path):
    """Private copies of the server certificate, key and CA bundle that a test
    may replace."""
    d = tmp_path / "files"
    d.mkdir()
    f = type("Files", (), {})()
    f.cert, f.key, f.ca = str(d / "server.crt"), str(d / "server.key"), str(d / "ca.pem")
    f.keystore = str(d / "keystore.pem")
    shutil.copyfile(pki.server.cert_path, f.cert)
    shutil.copyfile(pki.server.key_path, f.key)
    shutil.copyfile(pki.ca.cert_path, f.ca)
    write_atomic(f.keystore, keystore_bytes(pki.server))
    return f


def file_creds(files):
    return ["--cert", files.cert, "--key", files.key, "--cacert", files.ca]


# --------------------------------------------------------------------------
# under load
def _stream(conn, started, reloaded, result):
    """Echo 64 KiB chunks until the reload happened and four more chunks went
    through; at least 1 MiB in all, at most 4 MiB."""
    sent = bytearray()
    got = bytearray()
    after = 0
    try:
        for i in range(64):
            data = os.urandom(CHUNK)
            sent += data
            got += conn.pump(data, len(data), timeout=20)
            if i == 1:
                started.set()
            if reloaded.is_set():
                after += 1
            if after >= 4 and len(sent) >= (1 << 20):
                break
        conn.send_close_notify()
        tail = conn.recv_until_eof(timeout=10)
        result.update(sent=len(sent), intact=(hashlib.sha256(bytes(got)).digest()
                                              == hashlib.sha256(bytes(sent)).digest()),
                      after=after, tail=tail)
    except Exception as e:  # reported by the test
        result["error"] = repr(e)


def test_reload_under_load(start_proxy, backend, ctx_for, pki, files):
    proxy = start_proxy(backend, creds=file_creds(files))
    ctx = ctx_for(pki.client)
    old_serial = pki.server.cert.serial_number
    assert served_serial(proxy, ctx) == old_serial

    conns, ports, threads, results, started = [], [], [], [], []
    reloaded = threading.Event()
    try:
        for _ in range(6):
            c = MemTLS.connect(proxy.addr, ctx)
            c.handshake()
            assert serial_of_der(c.obj.getpeercert(binary_form=True)) == old_serial
            conns.append(c)
            ports.append(c.sock.getsockname()[1])
        for c in conns:
            ev, res = threading.Event(), {}
            t = threading.Thread(target=_stream, args=(c, ev, reloaded, res), daemon=True)
            started.append(ev)
            results.append(res)
            threads.append(t)
            t.start()
        for ev in started:
            assert ev.wait(20), "a stream did not get going"

        # New certificate and key while all six are mid-transfer.
        new = new_server_cert(pki, "server-reload-load")
        install(new.cert_path, files.cert)
        install(new.key_path, files.key)
        line = reload_and_wait(proxy)
        reloaded.set()
        assert logged_serial(line) == new.cert.serial_number, line

        # New handshakes get the new certificate at once, during the streams.
        assert served_serial(proxy, ctx) == new.cert.serial_number
        assert_allowed(proxy, backend, ctx)

        for t in threads:
            t.join(60)
            assert not t.is_alive(), "a stream hung"
    finally:
        reloaded.set()
        for c in conns:
            c.close()

    for res in results:
        assert "error" not in res, res
        assert res["intact"] and res["sent"] >= (1 << 20) and res["after"] >= 4, res
        assert res["tail"] == b"", res
    # Each pre-reload connection closed normally with everything through
    # (the last close may still be on its way into the log).
    def big_closes():
        closed = [l for l in proxy.log_lines() if "closed pipe" in l]
        return closed, [l for l in closed
                        if any(("%d bytes from client" % r["sent"]) in l for r in results)]
    tg_daemon.wait_until(lambda: len(big_closes()[1]) >= 6, 10 * tg_daemon.slow_factor())
    closed, big = big_closes()
    assert len(big) == 6, "\n".join(closed)
    for port in ports:
        errors = [l for l in proxy.find_log("127.0.0.1:%d" % port) if "error" in l]
        assert not errors, errors


# --------------------------------------------------------------------------
# broken material keeps the old one
@pytest.mark.parametrize("breakage", ["garbage-cert", "key-mismatch", "missing-key", "empty-cert"])
def test_broken_certificate_keeps_the_old_one(start_proxy, backend, ctx_for, pki, files, breakage):
    proxy = start_proxy(backend, creds=file_creds(files))
    ctx = ctx_for(pki.client)
    old_serial = pki.server.cert.serial_number

    if breakage == "garbage-cert":
        write_atomic(files.cert, b"this is not a certificate\n")
        reason, path = "no certificate found", files.cert
    elif breakage == "key-mismatch":
        install(pki.client.key_path, files.key)
        reason = "the private key in %s does not match the certificate" % files.key
        path = files.cert
    elif breakage == "missing-key":
        os.unlink(files.key)
        reason, path = "cannot read", files.key
    else:
        write_atomic(files.cert, b"")
        reason, path = "no certificate found", files.cert

    n = len(proxy.notify.messages)
    line = reload_and_wait(proxy, "reload failed")
    assert path in line and reason in line, line
    assert "keeping the current certificate" in line, line
    assert not proxy.find_log("reloaded certificate")
    # Still announced as done: RELOADING=1, then READY=1.
    i = proxy.notify.wait_for("RELOADING", "1", timeout=3, start=n)
    assert i, proxy.notify.messages[n:]
    assert proxy.notify.wait_for("READY", "1", timeout=3, start=i[0] + 1)

    assert proxy.running()
    assert served_serial(proxy, ctx) == old_serial
    assert_allowed(proxy, backend, ctx)

    # Fixed files load on the next reload.
    new = new_server_cert(pki, "server-reload-fixed-%s" % breakage)
    install(new.cert_path, files.cert)
    install(new.key_path, files.key)
    reload_and_wait(proxy)
    assert served_serial(proxy, ctx) == new.cert.serial_number


@pytest.mark.parametrize("breakage", ["garbage", "empty", "missing"])
def test_broken_ca_bundle_keeps_the_old_one(start_proxy, backend, ctx_for, pki, files, breakage):
    proxy = start_proxy(backend, creds=file_creds(files))
    if breakage == "garbage":
        write_atomic(files.ca, b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                               b"-----END CERTIFICATE-----\n")
    elif breakage == "empty":
        write_atomic(files.ca, b"")
    else:
        os.unlink(files.ca)
    line = reload_and_wait(proxy, "reload failed")
    assert "--cacert %s" % files.ca in line, line
    # The old trust list still decides.
    assert_allowed(proxy, backend, ctx_for(pki.client))
    assert_refused(proxy, backend, ctx_for(pki.client_other_ca))
    assert served_serial(proxy, ctx_for(pki.client)) == pki.server.cert.serial_number


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_ca_bundle_rotation(start_proxy, backend, ctx_for, pki, files, version):
    proxy = start_proxy(backend, creds=file_creds(files))
    ctx = ctx_for(pki.client, version=version)
    o1 = assert_allowed(proxy, backend, ctx)
    o2 = assert_allowed(proxy, backend, ctx, session=o1.session)
    assert o2.session_reused, "control: the session does resume before the rotation"
    assert_refused(proxy, backend, ctx_for(pki.client_other_ca, version=version))

    install(pki.other_ca.cert_path, files.ca)
    reload_and_wait(proxy, sig=signal.SIGUSR1)
    assert_allowed(proxy, backend, ctx_for(pki.client_other_ca, version=version))
    assert_refused(proxy, backend, ctx)
    # A session from before the rotation is verified against the new CA
    # bundle too: resuming does not get around it.
    assert_refused(proxy, backend, ctx, session=o2.session or o1.session)


# --------------------------------------------------------------------------
# sd_notify
def test_reload_notifies_reloading_then_ready(start_proxy, backend, ctx_for, pki, files):
    proxy = start_proxy(backend, creds=file_creds(files))
    n = len(proxy.notify.messages)
    before = time.monotonic_ns() // 1000
    line = reload_and_wait(proxy)
    after = time.monotonic_ns() // 1000
    assert "nothing changed" in line, line

    found = proxy.notify.wait_for("RELOADING", "1", timeout=3, start=n)
    assert found, proxy.notify.messages[n:]
    i, (_t, _pid, fields) = found
    # MONOTONIC_USEC is CLOCK_MONOTONIC at the start of the reload.
    assert "MONOTONIC_USEC" in fields, fields
    assert before <= int(fields["MONOTONIC_USEC"]) <= after, (before, fields, after)
    ready = proxy.notify.wait_for("READY", "1", timeout=3, start=i + 1)
    assert ready, proxy.notify.messages[n:]
    assert proxy.notify.wait_for("STATUS", timeout=3, start=ready[0])
    assert_allowed(proxy, backend, ctx_for(pki.client))


# --------------------------------------------------------------------------
# --timed-reload
def test_timed_reload_picks_up_a_new_certificate(start_proxy, backend, ctx_for, pki, files):
    proxy = start_proxy(backend, creds=["--keystore", files.keystore, "--cacert", files.ca],
                        extra=["--timed-reload", "1s"],
                        env={"TLSGATE_LOG_LEVEL": "debug"})
    ctx = ctx_for(pki.client)
    n = len(proxy.notify.messages)

    # Ticks with nothing changed: quiet (debug only), no notifications.
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and count_log(proxy, "timed reload: nothing changed") < 2:
        time.sleep(0.1)
    assert count_log(proxy, "timed reload: nothing changed") >= 2, proxy.log()
    assert not proxy.find_log("reloaded certificate")
    assert not proxy.notify.find("RELOADING", start=n)

    new = new_server_cert(pki, "server-timed")
    write_atomic(files.keystore, keystore_bytes(new))
    assert wait_serial(proxy, ctx, new.cert.serial_number, 5) == new.cert.serial_number
    line = proxy.wait_log("timed reload: reloaded certificate", timeout=3)
    assert logged_serial(line) == new.cert.serial_number, line
    found = proxy.notify.wait_for("RELOADING", "1", timeout=3, start=n)
    assert found and "MONOTONIC_USEC" in found[1][2]
    assert proxy.notify.wait_for("READY", "1", timeout=3, start=found[0] + 1)

    # And quiet again afterwards: one reload for one change.
    quiet_from = count_log(proxy, "timed reload: nothing changed")
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and \
            count_log(proxy, "timed reload: nothing changed") < quiet_from + 2:
        time.sleep(0.1)
    assert count_log(proxy, "reloaded certificate") == 1, proxy.log()
    assert_allowed(proxy, backend, ctx)


def test_timed_reload_logs_a_failure_once(start_proxy, backend, ctx_for, pki, files):
    proxy = start_proxy(backend, creds=["--keystore", files.keystore, "--cacert", files.ca],
                        extra=["--timed-reload", "300ms"])
    ctx = ctx_for(pki.client)
    write_atomic(files.keystore, b"garbage\n")
    proxy.wait_log("reload failed", files.keystore, timeout=5)
    time.sleep(1.5)  # about five more ticks
    assert count_log(proxy, "reload failed") == 1, proxy.log()
    assert served_serial(proxy, ctx) == pki.server.cert.serial_number
    assert_allowed(proxy, backend, ctx)

    # Back to the same bytes: nothing to swap, but the recovery is logged.
    write_atomic(files.keystore, keystore_bytes(pki.server))
    proxy.wait_log("the files load again", timeout=5)
    assert not proxy.find_log("reloaded certificate")

    # A different failure is news again.
    write_atomic(files.keystore, keystore_bytes(pki.server).split(b"-----BEGIN PRIVATE KEY")[0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and count_log(proxy, "reload failed") < 2:
        time.sleep(0.05)
    assert count_log(proxy, "reload failed") == 2, proxy.log()
    assert "no private key found" in proxy.find_log("reload failed")[-1]


def test_timed_reload_flag_syntax(tlsgate_bin, backend, pki):
    rc, _out, err = tg_daemon.run_once(
        [tlsgate_bin, "server", "--listen", fresh_listen(), "--target", backend.target,
         "--cert", pki.server.cert_path, "--key", pki.server.key_path, "--allow-all",
         "--timed-reload", "often"])
    assert rc == 2 and "--timed-reload" in err and "often" in err, err


# --------------------------------------------------------------------------
# the --config file
def conf_text(files, listen, target, access):
    return ("listen = %s\ntarget = %s\ncert = %s\nkey = %s\ncacert = %s\n%s"
            % (listen, target, files.cert, files.key, files.ca, access))


def test_config_file_access_rules_apply_on_reload(proxy_factory, backend, ctx_for, pki, files,
                                                  tmp_path):
    listen = fresh_listen()
    conf = str(tmp_path / "web.conf")
    write_atomic(conf, conf_text(files, listen, backend.target, "allow-cn = client\n").encode())
    proxy = start_plain(proxy_factory, ["--config", conf], listen)
    ctx = ctx_for(pki.client)
    session = assert_allowed(proxy, backend, ctx).session
    assert_refused(proxy, backend, ctx_for(pki.client_ou))

    # Unchanged file: nothing to report, in particular no restart warnings.
    line = reload_and_wait(proxy)
    assert "nothing changed" in line, line
    assert not proxy.find_log("restart to apply"), proxy.log()

    write_atomic(conf, conf_text(files, listen, backend.target, "allow-ou = ops\n").encode())
    line = reload_and_wait(proxy)
    assert "changed settings: allow-cn, allow-ou" in line, line
    assert_allowed(proxy, backend, ctx_for(pki.client_ou))
    assert_refused(proxy, backend, ctx)
    # Resuming a session from before does not keep the old rules.
    assert_refused(proxy, backend, ctx, session=session)

    # A broken file keeps everything, and says where.
    write_atomic(conf, conf_text(files, listen, backend.target, "allow-ou = ops\nallow-xyz = 1\n")
                 .encode())
    line = reload_and_wait(proxy, "reload failed")
    assert "%s:7" % conf in line and "allow-xyz" in line, line
    assert_allowed(proxy, backend, ctx_for(pki.client_ou))

    # So does a file that no longer validates (no access rule at all).
    write_atomic(conf, conf_text(files, listen, backend.target, "").encode())
    line = reload_and_wait(proxy, "reload failed")
    assert conf in line and "at least one of --allow-all" in line, line
    assert_allowed(proxy, backend, ctx_for(pki.client_ou))
    assert_refused(proxy, backend, ctx_for(pki.client))


def test_config_file_restart_only_setting_is_kept(proxy_factory, make_backend, ctx_for, pki,
                                                  files, tmp_path):
    old, new = make_backend("echo"), make_backend("echo")
    listen = fresh_listen()
    conf = str(tmp_path / "web.conf")
    write_atomic(conf, conf_text(files, listen, old.target, "allow-all\n").encode())
    proxy = start_plain(proxy_factory, ["--config", conf], listen)
    assert_allowed(proxy, old, ctx_for(pki.client))

    write_atomic(conf, conf_text(files, listen, new.target,
                                 "allow-all\nconnect-timeout = 3s\n").encode())
    reload_and_wait(proxy)
    proxy.wait_log("target changed in %s; restart to apply" % conf, timeout=3)
    proxy.wait_log("connect-timeout changed in %s; restart to apply" % conf, timeout=3)
    assert_allowed(proxy, old, ctx_for(pki.client))
    assert new.accepted == 0

    # A signal reload says it again (the timer would not).
    before = count_log(proxy, "restart to apply")
    reload_and_wait(proxy)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and count_log(proxy, "restart to apply") < before + 2:
        time.sleep(0.02)
    assert count_log(proxy, "restart to apply") == before + 2, proxy.log()


def test_timed_reload_reads_the_config_file(proxy_factory, make_backend, ctx_for, pki, files,
                                            tmp_path):
    """The timer re-reads the file too: new rules apply, a restart-only change
    is reported once and not on every tick."""
    old, new = make_backend("echo"), make_backend("echo")
    listen = fresh_listen()
    conf = str(tmp_path / "web.conf")
    write_atomic(conf, conf_text(files, listen, old.target,
                                 "allow-cn = client\ntimed-reload = 300ms\n").encode())
    proxy = start_plain(proxy_factory, ["--config", conf], listen)
    assert_refused(proxy, old, ctx_for(pki.client_ou))

    write_atomic(conf, conf_text(files, listen, new.target,
                                 "allow-ou = ops\ntimed-reload = 300ms\n").encode())
    line = proxy.wait_log("timed reload: reloaded certificate", timeout=5)
    assert "changed settings: allow-cn, allow-ou" in line, line
    proxy.wait_log("target changed in %s; restart to apply" % conf, timeout=3)
    time.sleep(1.5)  # about five more ticks
    assert count_log(proxy, "restart to apply") == 1, proxy.log()
    assert count_log(proxy, "reloaded certificate") == 1, proxy.log()
    assert_allowed(proxy, old, ctx_for(pki.client_ou))
    assert new.accepted == 0


def test_connection_keeps_the_rules_it_was_accepted_with(proxy_factory, backend, ctx_for, pki,
                                                         files, tmp_path):
    """A handshake that finishes after a reload is authorized by the rules
    (and CA bundle) of the credential it started with, never by a mix."""
    listen = fresh_listen()
    conf = str(tmp_path / "web.conf")
    write_atomic(conf, conf_text(files, listen, backend.target, "allow-cn = client\n").encode())
    proxy = start_plain(proxy_factory, ["--config", conf], listen,
                        env={"TLSGATE_LOG_LEVEL": "debug"})

    raw = tcp_connect(proxy.addr)
    local = raw.getsockname()
    proxy.wait_log("accepted from 127.0.0.1:%d" % local[1], timeout=3)
    write_atomic(conf, conf_text(files, listen, backend.target, "allow-cn = ou-client\n").encode())
    reload_and_wait(proxy)

    c = MemTLS(raw, ctx_for(pki.client))
    try:
        c.handshake()
        payload = b"accepted before the reload\n"
        assert c.pump(payload, len(payload), timeout=5) == payload
    finally:
        c.close()
    # New connections get the new rules.
    assert_refused(proxy, backend, ctx_for(pki.client))
    assert_allowed(proxy, backend, ctx_for(pki.client_ou))


def test_config_from_a_pipe(proxy_factory, backend, ctx_for, pki, files, tmp_path):
    """A --config that was a pipe cannot be read again (and opening a FIFO
    without a writer would block): a reload re-reads the files only."""
    listen = fresh_listen()
    fifo = str(tmp_path / "web.fifo")
    os.mkfifo(fifo)
    text = conf_text(files, listen, backend.target, "allow-all\n").encode()

    def feed():
        with open(fifo, "wb") as f:  # blocks until tlsgate opens it
            f.write(text)
    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    proxy = start_plain(proxy_factory, ["--config", fifo], listen)
    writer.join(5)

    new = new_server_cert(pki, "server-reload-fifo")
    install(new.cert_path, files.cert)
    install(new.key_path, files.key)
    line = reload_and_wait(proxy)  # would hang (no writer) if it opened the FIFO
    assert logged_serial(line) == new.cert.serial_number, line
    assert served_serial(proxy, ctx_for(pki.client)) == new.cert.serial_number


def test_storepass_file_is_read_again(proxy_factory, backend, ctx_for, pki, tmp_path):
    """--storepass-file is read on every reload, like the keystore."""
    d = tmp_path / "p12"
    d.mkdir()
    ks, pw = str(d / "web.p12"), str(d / "web.pass")
    shutil.copyfile(pki.keystore_p12_pass, ks)
    write_atomic(pw, (pki.P12_PASSWORD + "\n").encode())
    listen = fresh_listen()
    proxy = start_plain(proxy_factory, ["--listen", listen, "--target", backend.target,
                                        "--keystore", ks, "--storepass-file", pw,
                                        "--cacert", pki.ca.cert_path, "--allow-all"], listen)
    write_atomic(pw, b"wrong\n")
    line = reload_and_wait(proxy, "reload failed")
    assert "wrong --storepass" in line and pki.P12_PASSWORD not in proxy.log(), line
    write_atomic(pw, (pki.P12_PASSWORD + "\n").encode())
    reload_and_wait(proxy)
    assert_allowed(proxy, backend, ctx_for(pki.client))
