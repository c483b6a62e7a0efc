"""Listener and target kinds: TCP v4/v6, unix sockets, systemd socket activation; sd_notify."""
import os
import signal
import stat
import time

import pytest

import tg_daemon
from tg_checks import assert_allowed
from tg_clients import try_echo


def test_ipv6_listener(start_proxy, backend, ctx_for, pki):
    port = tg_daemon.free_port()
    proxy = start_proxy(backend, listen="[::1]:%d" % port)
    o = assert_allowed(proxy, backend, ctx_for(pki.client))
    assert o.local[0] == "::1"


def test_ipv6_target(start_proxy, make_backend, ctx_for, pki):
    b6 = make_backend("echo", host="::1")
    proxy = start_proxy(b6)
    assert b6.target.startswith("[::1]:")
    assert_allowed(proxy, b6, ctx_for(pki.client))


def test_unsafe_target_allowed_with_flag(start_proxy, make_backend, ctx_for, pki):
    b = make_backend("echo", host="127.0.0.2")
    proxy = start_proxy(b, extra=["--unsafe-target"])
    assert_allowed(proxy, b, ctx_for(pki.client))


def test_localhost_target_is_safe(start_proxy, backend):
    # Only start-up matters here: localhost: needs no --unsafe-target.
    start_proxy("localhost:%d" % backend.port)


def test_unix_target(start_proxy, make_backend, ctx_for, pki, sockdir):
    b = make_backend("echo", unix_path=os.path.join(sockdir, "backend.sock"))
    proxy = start_proxy(b)
    for _ in range(3):
        assert_allowed(proxy, b, ctx_for(pki.client))


def test_unix_listener_removed_on_exit(start_proxy, backend, ctx_for, pki, sockdir):
    path = os.path.join(sockdir, "listen.sock")
    proxy = start_proxy(backend, listen="unix:" + path)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    for v in ("1.2", "1.3"):
        o = try_echo(path, ctx_for(pki.client, version=v))
        assert o.data == o.payload and o.version == "TLSv" + v, o
    assert backend.accepted == 2
    o = try_echo(path, ctx_for(None))
    assert o.data == b"" and o.error is not None, o
    time.sleep(0.2)
    assert backend.accepted == 2
    assert proxy.stop() == 0
    assert not os.path.exists(path), "unix listener socket left behind"


def test_unix_listener_and_target(start_proxy, make_backend, ctx_for, pki, sockdir):
    b = make_backend("echo", unix_path=os.path.join(sockdir, "b.sock"))
    path = os.path.join(sockdir, "l.sock")
    start_proxy(b, listen="unix:" + path)
    o = try_echo(path, ctx_for(pki.client))
    assert o.data == o.payload, o
    assert b.accepted == 1


# ---------------------------------------------------------------------------
# systemd socket activation (systemd-socket-activate execs on first connection)
def _socket_activate(proxy_factory, target, listens, fdnames, listen_spec, expect_exit=0):
    prefix = ["systemd-socket-activate"]
    for l in listens:
        prefix += ["-l", l]
    prefix += ["--fdname=" + ":".join(fdnames), "-E", "NOTIFY_SOCKET"]
    return proxy_factory.start(target, listen=listen_spec, prefix=prefix, wait_ready=False,
                               expect_exit=expect_exit)


def test_systemd_socket_activation(proxy_factory, backend, ctx_for, pki):
    port = tg_daemon.free_port()
    proxy = _socket_activate(proxy_factory, backend, ["127.0.0.1:%d" % port], ["https"],
                             "systemd:https")
    proxy.wait_log("Listening on", timeout=5)
    proxy.addr = ("127.0.0.1", port)
    # The first connection starts the daemon and must be served by it.
    o = try_echo(proxy.addr, ctx_for(pki.client), timeout=10)
    assert o.data == o.payload, o
    proxy.wait_ready(5)
    _i, (_t, pid, _f) = proxy.notify.find("READY", "1")
    assert pid == proxy.pid  # systemd-socket-activate execs in place
    assert_allowed(proxy, backend, ctx_for(pki.client))
    assert proxy.stop() == 0


def test_systemd_socket_activation_picks_fd_by_name(proxy_factory, backend, ctx_for, pki):
    other, mine = tg_daemon.free_port(), tg_daemon.free_port()
    proxy = _socket_activate(proxy_factory, backend,
                             ["127.0.0.1:%d" % other, "127.0.0.1:%d" % mine],
                             ["other", "https"], "systemd:https")
    proxy.wait_log("Listening on", timeout=5)
    proxy.addr = ("127.0.0.1", mine)
    o = try_echo(proxy.addr, ctx_for(pki.client), timeout=10)
    assert o.data == o.payload, o
    proxy.wait_ready(5)
    # The start-up line names the address of the socket it inherited: the
    # name alone says nothing about where clients reach it.
    line = proxy.wait_log("listening on systemd:https")
    assert "listening on systemd:https (127.0.0.1:%d), forwarding to" % mine in line, line
    assert_allowed(proxy, backend, ctx_for(pki.client))


@pytest.mark.parametrize("fdnames,why", [
    (["other"], "no fd named https"),
    (["https", "https"], "two fds named https"),
])
def test_systemd_socket_activation_bad_name(proxy_factory, backend, ctx_for, pki, fdnames, why):
    ports = [tg_daemon.free_port() for _ in fdnames]
    proxy = _socket_activate(proxy_factory, backend, ["127.0.0.1:%d" % p for p in ports],
                             fdnames, "systemd:https", expect_exit=1)
    proxy.wait_log("Listening on", timeout=5)
    o = try_echo(("127.0.0.1", ports[0]), ctx_for(pki.client), timeout=5)  # triggers the exec
    rc = proxy.wait(10)
    assert rc == 1, "%s: tlsgate should exit 1 (a socket it cannot use), rc=%s" % (why, rc)
    assert o.data == b"", o
    assert not proxy.notify.find("READY", "1"), "READY=1 sent although %s" % why
    err = proxy.log()
    assert "https" in err, "the error should name the fd name: %r" % err
    assert backend.accepted == 0


def test_systemd_listen_without_listen_fds(start_proxy, tlsgate_bin, pki, backend):
    argv = [tlsgate_bin, "server", "--listen", "systemd:https", "--target", backend.target,
            "--cacert", pki.ca.cert_path, "--cert", pki.server.cert_path, "--key",
            pki.server.key_path, "--allow-all"]
    rc, _out, err = tg_daemon.run_once(argv)
    assert rc not in (0, None), err
    assert "https" in err, err


# ---------------------------------------------------------------------------
# sd_notify
def _wd(msgs):
    return [m for m in msgs if m[2].get("WATCHDOG") == "1"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sd_notify_sequence(start_proxy, backend, ctx_for, pki, sig):
    # Under valgrind everything takes slow_factor() times longer: the
    # watchdog interval, the window and the bounds grow with it.
    f = tg_daemon.slow_factor()
    proxy = start_proxy(backend, env={"WATCHDOG_USEC": str(int(200000 * f))})
    n = proxy.notify
    i_ready, (_t_ready, pid, _f) = n.find("READY", "1")
    assert pid == proxy.pid
    # READY=1 means listening
    assert_allowed(proxy, backend, ctx_for(pki.client))
    # The window starts once the first client is served (at once without
    # valgrind, whose first handshake translates much of GnuTLS first).
    t0 = time.monotonic()
    assert n.wait_for("STATUS", timeout=2), "no STATUS= message: %r" % n.messages
    time.sleep(1.2 * f)
    wds = [m for m in _wd(list(n.messages)) if m[0] >= t0]
    # about every 100 ms (WATCHDOG_USEC / 2); be generous for loaded machines
    in_window = [m for m in wds if m[0] <= t0 + 1.0 * f]
    assert 4 <= len(in_window) <= 30, "WATCHDOG=1 count in %gs: %d (%r)" % (
        1.0 * f, len(in_window), wds)
    assert all(m[1] == proxy.pid for m in wds)
    gaps = [b[0] - a[0] for a, b in zip(wds, wds[1:])]
    # WATCHDOG_USEC is 200 ms; 50 ms of slack for our own receiver thread
    assert max(gaps) < 0.25 * f, "a watchdog gap of %.3fs exceeds WATCHDOG_USEC" % max(gaps)
    count = len(n.messages)
    proxy.send_signal(sig)
    stopping = n.wait_for("STOPPING", "1", timeout=5, start=count)
    assert stopping, "no STOPPING=1 after %s: %r" % (sig, n.messages)
    assert stopping[0] > i_ready
    assert proxy.wait(10) == 0
    assert proxy.stop() == 0


@pytest.mark.parametrize("whose,expect", [("own", True), ("other", False)])
def test_sd_notify_watchdog_pid(start_proxy, backend, whose, expect):
    if whose == "own":
        prefix = ["/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh"]
        env = {"WATCHDOG_USEC": "200000"}
    else:
        prefix = []
        env = {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
    proxy = start_proxy(backend, env=env, prefix=prefix)
    time.sleep(0.7)
    wds = _wd(list(proxy.notify.messages))
    if expect:
        assert len(wds) >= 3, proxy.notify.messages
        assert all(m[1] == proxy.pid for m in wds)
    else:
        assert wds == [], "WATCHDOG=1 sent although WATCHDOG_PID is another process"


def test_no_watchdog_without_watchdog_usec(start_proxy, backend):
    proxy = start_proxy(backend)
    time.sleep(0.5)
    assert _wd(list(proxy.notify.messages)) == []
