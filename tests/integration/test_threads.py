"""--threads: several serving threads, each with its own event loop on the one
listening socket, sharing the credential, the ACME challenges and the
connection count.

Real daemon, real clients. Which thread accepts a connection is the
kernel's choice; the tests that need several threads to have served hold
connections open and read /_status's per-thread counts, trying a bounded
number of connections until more than one thread has taken some (a tlsgate
whose extra threads never accept fails them)."""
import http.client
import json
import os
import signal
import threading
import time

import pytest

import tg_daemon
from tg_clients import MemTLS, recv_exact, tcp_connect, tls_connect, try_echo
from tg_pebble import DOMAIN, client_ctx, dns_sans, echo, log_lines_with, stored_leaf
from tg_pebble import acme_factory, pebble, pebble_factory  # noqa: F401,F811 (fixtures)
from test_reload import file_creds, files, new_server_cert, install, reload_and_wait  # noqa: F401
from test_reload import logged_serial, serial_of_der

THREADS = 4
# Connections held open while looking for a second serving thread.
HOLD_MAX = 96


def tasks(pid):
    return sorted(os.listdir("/proc/%d/task" % pid), key=int)


def task_names(pid):
    names = []
    for tid in tasks(pid):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            names.append(f.read().strip())
    return names


def start_threads(start_proxy, backend, n=THREADS, extra=(), **kw):
    port = tg_daemon.free_port()
    t = start_proxy(backend, extra=["--threads", str(n), "--status", "http://127.0.0.1:%d" % port]
                    + list(extra), **kw)
    t.status_addr = ("127.0.0.1", port)
    return t


def status(proxy):
    c = http.client.HTTPConnection(*proxy.status_addr, timeout=5)
    try:
        c.request("GET", "/_status/tlsgate")
        r = c.getresponse()
        return json.loads(r.read())
    finally:
        c.close()


def metrics(proxy):
    c = http.client.HTTPConnection(*proxy.status_addr, timeout=5)
    try:
        c.request("GET", "/_metrics/json")
        r = c.getresponse()
        return {i["metric"]: i["value"] for i in json.loads(r.read())}
    finally:
        c.close()


def open_echoed(proxy, ctx, tag, session=None):
    """An mTLS connection that has been through to the target and back."""
    s = tls_connect(proxy.addr, ctx, session=session)
    line = b"%s\n" % tag
    s.sendall(line)
    assert recv_exact(s, len(line)) == line
    return s


def busy_threads(st):
    return [i for i, t in enumerate(st["threads"]) if t["connections"] > 0]


def hold_on_several_threads(proxy, ctx, held, at_least=8, session=None):
    """Opens echoed connections (kept in held) until at least two threads
    hold some and at least at_least are open; bounded by HOLD_MAX."""
    while len(held) < HOLD_MAX:
        for _ in range(8):
            held.append(open_echoed(proxy, ctx, b"hold %d" % len(held), session))
        st = status(proxy)
        if len(held) >= at_least and len(busy_threads(st)) >= 2:
            return st
    raise AssertionError("%d connections open, all on one thread: %r"
                         % (len(held), status(proxy)["threads"]))


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# the thread count
def test_thread_count_is_visible(start_proxy, backend, ctx_for, pki):
    proxy = start_threads(start_proxy, backend)
    assert len(tasks(proxy.pid)) == THREADS, task_names(proxy.pid)
    assert sorted(task_names(proxy.pid))[1:] == ["tlsgate/%d" % i for i in range(1, THREADS)]
    assert len(status(proxy)["threads"]) == THREADS
    assert try_echo(proxy.addr, ctx_for(pki.client)).echoed


def test_one_thread_is_one_thread(start_proxy, backend, ctx_for, pki):
    proxy = start_threads(start_proxy, backend, n=1)
    held = []
    try:
        for i in range(8):
            held.append(open_echoed(proxy, ctx_for(pki.client), b"one %d" % i))
        assert len(tasks(proxy.pid)) == 1, task_names(proxy.pid)
        st = status(proxy)
        assert st["threads"] == [{"accepted": 8, "connections": 8}], st
    finally:
        close_all(held)


def test_auto_follows_the_affinity_mask(proxy_factory, backend, ctx_for, pki):
    """The default is one thread per CPU the process may run on: taskset
    (or systemd's CPUAffinity=) to one CPU gives one thread."""
    cpu = sorted(os.sched_getaffinity(0))[0]
    one = proxy_factory.start(backend, prefix=["taskset", "-c", str(cpu)])
    assert len(tasks(one.pid)) == 1, task_names(one.pid)
    assert try_echo(one.addr, ctx_for(pki.client)).echoed

    every = proxy_factory.start(backend)
    assert len(tasks(every.pid)) == min(len(os.sched_getaffinity(0)), 64), task_names(every.pid)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "65", "", "4x", "auto1"])
def test_bad_thread_counts_are_refused(tlsgate_bin, backend, pki, value):
    rc, _out, err = tg_daemon.run_once(
        [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % tg_daemon.free_port(),
         "--target", backend.target, "--cert", pki.server.cert_path, "--key", pki.server.key_path,
         "--cacert", pki.ca.cert_path, "--allow-all", "--threads=" + value])
    assert rc == 2, (rc, err)
    assert "--threads" in err and ('"%s"' % value) in err and "1 to 64" in err, err


def test_bad_thread_count_in_config_file(tlsgate_bin, backend, pki, tmp_path):
    conf = tmp_path / "tlsgate.conf"
    conf.write_text("listen = 127.0.0.1:%d\ntarget = %s\ncert = %s\nkey = %s\ncacert = %s\n"
                    "allow-all = true\nthreads = 0\n"
                    % (tg_daemon.free_port(), backend.target, pki.server.cert_path,
                       pki.server.key_path, pki.ca.cert_path))
    rc, _out, err = tg_daemon.run_once([tlsgate_bin, "server", "--config", str(conf)])
    assert rc == 2, (rc, err)
    assert "%s:7" % conf in err and "threads" in err and '"0"' in err, err


# ---------------------------------------------------------------------------
# serving
def test_many_concurrent_mtls_clients(start_proxy, backend, ctx_for, pki):
    proxy = start_threads(start_proxy, backend)
    ctx = ctx_for(pki.client)
    n = 64
    barrier = threading.Barrier(n, timeout=20)
    results = [None] * n

    def client(i):
        try:
            barrier.wait()
            payload = os.urandom(4096) + b"%d" % i
            results[i] = try_echo(proxy.addr, ctx, payload, timeout=20)
        except Exception as e:  # reported below
            results[i] = e

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    bad = [r for r in results if not getattr(r, "echoed", False)]
    assert not bad, "%d of %d clients failed, e.g. %r" % (len(bad), n, bad[:3])
    assert backend.accepted == n

    # Counted across threads: /_status, /_metrics and the per-thread counts agree.
    assert tg_daemon.wait_until(lambda: status(proxy)["connections"] == 0, 5), status(proxy)
    st = status(proxy)
    assert sum(t["accepted"] for t in st["threads"]) == n, st
    m = metrics(proxy)
    assert m["ghostunnel.accept.total"] == n and m["ghostunnel.accept.success"] == n, m
    assert m["ghostunnel.conn.lifetime.count"] == n and m["ghostunnel.conn.handshake.count"] == n, m


def test_extra_threads_accept(start_proxy, backend, ctx_for, pki):
    """Held connections end up on more than one thread, and the totals are
    the sum of the threads'."""
    proxy = start_threads(start_proxy, backend)
    ctx = ctx_for(pki.client)
    held = []
    try:
        st = hold_on_several_threads(proxy, ctx, held)
        assert st["connections"] == len(held), st
        assert sum(t["connections"] for t in st["threads"]) == len(held), st
        assert metrics(proxy)["ghostunnel.conn.open"] == len(held)
        # Every held connection still works, whichever thread has it.
        for i, s in enumerate(held):
            s.sendall(b"again %d\n" % i)
            assert recv_exact(s, len(b"again %d\n" % i)) == b"again %d\n" % i
    finally:
        close_all(held)
    assert tg_daemon.wait_until(lambda: status(proxy)["connections"] == 0, 5), status(proxy)


def test_max_concurrent_conns_counts_all_threads(start_proxy, backend, ctx_for, pki):
    proxy = start_threads(start_proxy, backend, extra=["--max-concurrent-conns", "3"])
    ctx = ctx_for(pki.client)
    conns = []
    try:
        for i in range(3):
            conns.append(open_echoed(proxy, ctx, b"slot %d" % i))
        extra = [MemTLS.connect(proxy.addr, ctx) for _ in range(3)]
        conns += extra
        # Not one of the threads takes a fourth while three are open.
        for c in extra:
            with pytest.raises(TimeoutError):
                c.handshake(timeout=0.5)
        # (/_status connects to the target to check it: count with /_metrics.)
        assert backend.accepted == 3
        assert metrics(proxy)["ghostunnel.accept.total"] == 3
        assert status(proxy)["connections"] == 3
        conns[0].close()
        served = 0
        for c in extra:
            try:
                c.handshake(timeout=3)
                c.send(b"late\n")
                assert c.recv(100) == b"late\n"
                served += 1
                break
            except TimeoutError:
                continue
        assert served == 1
        assert metrics(proxy)["ghostunnel.accept.total"] == 4
        assert metrics(proxy)["ghostunnel.accept.success"] == 4
        assert status(proxy)["connections"] == 3
    finally:
        close_all(conns)


# ---------------------------------------------------------------------------
# reload and shutdown
def test_reload_under_threads(start_proxy, backend, ctx_for, pki, files):  # noqa: F811
    proxy = start_threads(start_proxy, backend, creds=file_creds(files))
    ctx = ctx_for(pki.client)
    old = pki.server.cert.serial_number
    held = []
    try:
        hold_on_several_threads(proxy, ctx, held)
        for s in held:
            assert serial_of_der(s.getpeercert(binary_form=True)) == old

        new = new_server_cert(pki, "server-threads")
        install(new.cert_path, files.cert)
        install(new.key_path, files.key)
        line = reload_and_wait(proxy)
        assert logged_serial(line) == new.cert.serial_number, line

        # New handshakes get the new certificate on every thread: hold new
        # ones until at least two threads have taken some since the reload.
        before = [t["accepted"] for t in status(proxy)["threads"]]
        fresh = []
        try:
            while len(fresh) < HOLD_MAX:
                s = open_echoed(proxy, ctx, b"fresh %d" % len(fresh))
                fresh.append(s)
                assert serial_of_der(s.getpeercert(binary_form=True)) == new.cert.serial_number
                after = [t["accepted"] for t in status(proxy)["threads"]]
                if sum(1 for a, b in zip(after, before) if a > b) >= 2:
                    break
            else:
                raise AssertionError("new handshakes all on one thread: %r" % after)
        finally:
            close_all(fresh)

        # The connections from before the reload were untouched, on every thread.
        for i, s in enumerate(held):
            s.sendall(b"still %d\n" % i)
            assert recv_exact(s, len(b"still %d\n" % i)) == b"still %d\n" % i
            assert serial_of_der(s.getpeercert(binary_form=True)) == old
    finally:
        close_all(held)


def test_sigterm_drains_every_thread(start_proxy, backend, ctx_for, pki):
    proxy = start_threads(start_proxy, backend)
    ctx = ctx_for(pki.client)
    held = []
    try:
        hold_on_several_threads(proxy, ctx, held)
        n_msgs = len(proxy.notify.messages)
        proxy.send_signal(signal.SIGTERM)
        assert proxy.notify.wait_for("STOPPING", "1", timeout=5, start=n_msgs)
        # STATUS= counts the connections of every thread.
        draining = proxy.notify.wait_for("STATUS", timeout=5, start=n_msgs)
        assert draining and draining[1][2]["STATUS"].startswith("Draining ") and \
            (", %d connections;" % len(held)) in draining[1][2]["STATUS"], draining
        proxy.wait_log("received Terminated, stopped accepting; waiting up to 5m0s for %d "
                       "connections" % len(held), timeout=5)
        # No thread accepts any more: every copy of the socket is closed.
        assert tg_daemon.wait_until(lambda: refused(proxy.addr), 5), \
            "some thread still holds the listening socket"
        # Every held connection still works; the process waits for the last.
        last = held.pop()
        for i, s in enumerate(held):
            s.sendall(b"draining %d\n" % i)
            assert recv_exact(s, len(b"draining %d\n" % i)) == b"draining %d\n" % i
            s.close()
        assert tg_daemon.wait_until(lambda: status_or_none(proxy) == 1, 5), status_or_none(proxy)
        assert proxy.running(), "exited with a connection open"
        last.sendall(b"last\n")
        assert recv_exact(last, 5) == b"last\n"
        last.close()
    finally:
        close_all(held)
    assert proxy.wait(10) == 0
    assert proxy.find_log("all connections drained, exiting")


def refused(addr):
    try:
        tcp_connect(addr, timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


def status_or_none(proxy):
    try:
        return status(proxy)["connections"]
    except (OSError, ValueError, KeyError):
        return None


def test_forced_shutdown_closes_every_thread(start_proxy, backend, ctx_for, pki):
    proxy = start_threads(start_proxy, backend, extra=["--shutdown-timeout", "1s"], expect_exit=1)
    ctx = ctx_for(pki.client)
    held = []
    try:
        hold_on_several_threads(proxy, ctx, held)
        proxy.send_signal(signal.SIGTERM)
        rc = proxy.wait(8)
        assert rc == 1, "a forced shutdown exits 1, not %r" % rc
        assert proxy.find_log("--shutdown-timeout reached with %d connections" % len(held))
        for s in held:
            s.settimeout(2)
            try:
                assert s.recv(100) == b""
            except OSError:
                pass  # reset or close_notify handling: closed either way
    finally:
        close_all(held)


def test_second_signal_forces_every_thread(start_proxy, backend, ctx_for, pki):
    proxy = start_threads(start_proxy, backend, expect_exit=1)
    ctx = ctx_for(pki.client)
    held = []
    try:
        hold_on_several_threads(proxy, ctx, held)
        proxy.send_signal(signal.SIGTERM)
        proxy.wait_log("stopped accepting", timeout=5)
        proxy.send_signal(signal.SIGINT)
        assert proxy.wait(8) == 1
        assert proxy.find_log("received Interrupt again, closing %d connections now" % len(held))
    finally:
        close_all(held)


# ---------------------------------------------------------------------------
# ACME
def test_acme_with_threads(pebble, acme_factory, backend, pki):  # noqa: F811
    """Issuance happens once, on the main thread; the CA's probes are
    answered whichever thread accepts them."""
    gate = acme_factory.start(pebble, backend, timeout=15, extra=["--threads", str(THREADS)])
    assert len([n for n in task_names(gate.pid) if n.startswith("tlsgate/")]) == THREADS - 1
    e = echo(gate.addr, client_ctx(pebble, pki.client))
    assert e.ok, e
    assert dns_sans(e.leaf) == [DOMAIN]
    assert e.serial == stored_leaf(gate.xdg, pebble).serial_number
    assert len(gate.find_log("obtained")) == 1, gate.log()
    assert log_lines_with(gate, "challenge probe"), gate.log()
    # Every thread serves the certificate.
    held = []
    try:
        ctx = client_ctx(pebble, pki.client)
        for i in range(16):
            s = tls_connect(gate.addr, ctx, server_hostname=DOMAIN)
            assert serial_of_der(s.getpeercert(binary_form=True)) == e.serial
            held.append(s)
    finally:
        close_all(held)


def test_socket_activated_restart_serves_the_first_client(pebble, acme_factory, backend,  # noqa: F811
                                                          pki):
    """With a stored certificate, the connection that socket-activates
    tlsgate is served: no thread accepts before the certificate is loaded."""
    gate = acme_factory.start(pebble, backend, timeout=15, extra=["--threads", str(THREADS)])
    first = echo(gate.addr, client_ctx(pebble, pki.client))
    assert first.ok, first
    assert gate.stop() == 0, gate.log()

    port = pebble.tls_port
    prefix = ["systemd-socket-activate", "-l", "127.0.0.1:%d" % port, "--fdname=https"]
    for var in ("NOTIFY_SOCKET", "XDG_DATA_HOME", "HOME", "SSL_CERT_FILE"):
        prefix += ["-E", var]
    gate2 = acme_factory.start(pebble, backend, listen="systemd:https", prefix=prefix,
                               wait_ready=False, extra=["--threads", str(THREADS)])
    gate2.wait_log("Listening on", timeout=5)
    again = echo(("127.0.0.1", port), client_ctx(pebble, pki.client), timeout=10)
    assert again.ok, "the activating client was refused: %r\n%s" % (again, gate2.log())
    assert again.serial == first.serial
    assert not gate2.find_log("no certificate yet"), gate2.log()


def test_threads_need_a_restart(proxy_factory, backend, pki, tmp_path):
    """--threads is not reloadable: a reload names it and keeps the count."""
    conf = tmp_path / "tlsgate.conf"
    conf.write_text("threads = 2\n")
    proxy = proxy_factory.start(backend, extra=["--config", str(conf)])
    assert len(tasks(proxy.pid)) == 2
    conf.write_text("threads = 3\n")
    reload_and_wait(proxy, phrase="restart to apply")
    assert proxy.find_log("threads changed in")
    assert len(tasks(proxy.pid)) == 2


def test_shared_ticket_key(start_proxy, backend, ctx_for, pki):
    """One ticket key for all threads: a session resumes whichever thread
    accepts the second connection."""
    proxy = start_threads(start_proxy, backend)
    ctx = ctx_for(pki.client)
    first = try_echo(proxy.addr, ctx)
    assert first.echoed and first.session is not None
    held = []
    try:
        hold_on_several_threads(proxy, ctx, held, session=first.session)
        assert all(s.session_reused for s in held), [s.session_reused for s in held]
    finally:
        close_all(held)

