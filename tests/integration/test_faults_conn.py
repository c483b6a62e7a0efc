"""Connection-level faults (issue 7): the target resetting and hanging,
10,000 idle mTLS connections, slow-loris ClientHellos and silent clients,
a flood of handshakes while the certificate is reloaded.

Covered elsewhere, not repeated here: a target refusing connections
(test_lifecycle.test_target_down_then_up), a target that never accepts
(full accept queue: test_lifecycle.test_connect_timeout_covers_dial), a
target that reads nothing with a client pushing data (backpressure:
test_backpressure), EMFILE (test_emfile).

Every loop is bounded in count and time; the timings asserted are generous
bounds around the configured timeouts, never speed."""
import http.client
import json
import os
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import tg_daemon
from test_backpressure import _send_until_stalled
from test_reload import file_creds, files, install, new_server_cert, reload_and_wait  # noqa: F401
from test_reload import serial_of_der
from tg_checks import assert_allowed, peer_str
from tg_clients import MemTLS, client_context, recv_exact, tcp_connect, tls_connect, try_echo
from tg_rawtls import ClientHello


# ---------------------------------------------------------------------------
# helpers
def start_with_metrics(start_proxy, target, extra=(), **kw):
    port = tg_daemon.free_port()
    p = start_proxy(target, extra=["--status", "http://127.0.0.1:%d" % port] + list(extra), **kw)
    p.status_addr = ("127.0.0.1", port)
    return p


def metrics(proxy, timeout=10):
    """/_metrics/json as {name: value} (it does not dial the target, unlike /_status)."""
    c = http.client.HTTPConnection(*proxy.status_addr, timeout=timeout)
    try:
        c.request("GET", "/_metrics/json")
        return {i["metric"]: i["value"] for i in json.loads(c.getresponse().read())}
    finally:
        c.close()


def open_conns(proxy):
    return metrics(proxy)["ghostunnel.conn.open"]


def wait_open(proxy, n, timeout):
    return tg_daemon.wait_until(lambda: open_conns(proxy) == n, timeout, 0.1)


def ended(sock, timeout):
    """Waits until the peer closes or resets; returns seconds waited or None."""
    t0 = time.monotonic()
    sock.setblocking(False)
    while time.monotonic() - t0 < timeout:
        r, _w, _x = select.select([sock], [], [], 0.1)
        if not r:
            continue
        try:
            if not sock.recv(65536):
                return time.monotonic() - t0
        except BlockingIOError:
            continue
        except OSError:  # reset
            return time.monotonic() - t0
    return None


def mem_ended(c, timeout):
    """The same for a MemTLS connection: the TLS stream ends (close, reset,
    truncation or alert) within timeout; returns seconds or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            d = c.recv(65536, timeout=min(0.5, timeout))
        except TimeoutError:
            continue
        except (OSError, EOFError):
            return time.monotonic() - t0
        if d == b"":
            return time.monotonic() - t0
    return None


class ResettingTarget:
    """Echoes; a connection that receives b"RST" is closed with SO_LINGER 0
    (the kernel sends a TCP reset). Records how many connections it took."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.target = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.accepted = 0
        self.resets = 0
        self._stop = threading.Event()
        self._threads = []
        self._t = threading.Thread(target=self._accept, daemon=True)
        self._t.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, c):
        c.settimeout(30)
        try:
            while not self._stop.is_set():
                d = c.recv(65536)
                if not d:
                    break
                if b"RST" in d:
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.resets += 1
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self._stop.set()
        self._t.join(5)
        self.sock.close()
        for t in self._threads:
            t.join(5)


@pytest.fixture
def resetting_target():
    t = ResettingTarget()
    yield t
    t.stop()


@pytest.fixture
def hanging_target():
    """A listening socket nobody accepts from: the kernel completes the TCP
    handshake (the dial succeeds) and queues what arrives, but nothing is
    ever read or answered."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield type("Hanging", (), {"target": "127.0.0.1:%d" % s.getsockname()[1]})()
    s.close()


# ---------------------------------------------------------------------------
# the target resets
def test_target_reset_mid_stream(start_proxy, resetting_target, ctx_for, pki):
    """The target resets connections in the middle of a stream: each such
    client's connection ends promptly with a log line, the connection is
    freed (the open count returns to what it was), and a client that was
    open the whole time and new clients are unaffected."""
    proxy = start_with_metrics(start_proxy, resetting_target)
    ctx = ctx_for(pki.client)
    bystander = tls_connect(proxy.addr, ctx)
    try:
        bystander.sendall(b"before\n")
        assert recv_exact(bystander, 7) == b"before\n"
        assert wait_open(proxy, 1, 5)
        for i in range(5):
            c = MemTLS.connect(proxy.addr, ctx)
            try:
                c.handshake()
                assert c.pump(b"x" * 70000, 70000, timeout=10) == b"x" * 70000
                port = c.sock.getsockname()[1]
                c.send(b"RST\n")
                took = mem_ended(c, 5)
                assert took is not None, "client still open 5s after the target reset"
            finally:
                c.close()
            proxy.wait_log("127.0.0.1:%d" % port, "target", regex="reset by peer", timeout=3)
            assert proxy.running()
            # the bystander still echoes, in the middle of the resets
            bystander.sendall(b"still %d\n" % i)
            assert recv_exact(bystander, 8) == b"still %d\n" % i
        assert resetting_target.resets == 5
        assert wait_open(proxy, 1, 5), "reset connections not freed: %d open" % open_conns(proxy)
        o = try_echo(proxy.addr, ctx)
        assert o.error is None and o.data == o.payload, o
    finally:
        bystander.close()
    assert wait_open(proxy, 0, 5)
    assert proxy.running()


# ---------------------------------------------------------------------------
# the target hangs
def test_hanging_target_closed_at_close_timeout(start_proxy, hanging_target, ctx_for, pki):
    """The target takes the connection but never reads nor answers. The
    client sends a request and closes its side: that direction is done, so
    --close-timeout (1s) later the proxy closes both ends."""
    proxy = start_with_metrics(start_proxy, hanging_target, extra=["--close-timeout", "1s"])
    c = MemTLS.connect(proxy.addr, ctx_for(pki.client))
    try:
        c.handshake()
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        port = c.sock.getsockname()[1]
        c.send_close_notify()
        took = mem_ended(c, 8)
    finally:
        c.close()
    assert took is not None, "client still open 8s after its close_notify (--close-timeout 1s)"
    assert 0.7 <= took <= 4.0, "closed %.2fs after the client's close_notify, expected ~1s" % took
    line = proxy.wait_log("closed pipe", "127.0.0.1:%d" % port, timeout=3)
    assert "18 bytes from client, 0 bytes to client" in line, line
    assert wait_open(proxy, 0, 3)
    assert proxy.running()


def test_hanging_target_stalled_upload_is_bounded(start_proxy, hanging_target, ctx_for, pki):
    """An upload to a target that never reads stalls (the proxy stops reading
    the client instead of buffering), never completes a close, and ends at
    --max-conn-lifetime; other clients of the same proxy meanwhile get to the
    (hanging) target and are cut the same way, and nothing stays open."""
    proxy = start_with_metrics(start_proxy, hanging_target,
                               extra=["--max-conn-lifetime", "4s", "--close-timeout", "1s"])
    offer = 64 << 20
    c = MemTLS.connect(proxy.addr, ctx_for(pki.client))
    try:
        c.handshake()
        t0 = time.monotonic()
        taken = _send_until_stalled(c, os.urandom(1 << 20) * 64, stall=1.0, limit=20)
        assert taken < offer, "the proxy took all %d bytes for a target that reads none" % offer
        # a second client meanwhile: handshake and dial still work
        o = tls_connect(proxy.addr, ctx_for(pki.client))
        o.close()
        left = 4.0 - (time.monotonic() - t0)
        took = mem_ended(c, max(left, 0) + 4)
    finally:
        c.close()
    assert took is not None, "stalled connection outlived --max-conn-lifetime 4s by far"
    assert proxy.wait_log("--max-conn-lifetime reached", timeout=3)
    assert wait_open(proxy, 0, 6), "%d connections still open" % open_conns(proxy)
    assert proxy.running()


# ---------------------------------------------------------------------------
# 10,000 idle connections
IDLE_WANTED = 10000
# tlsgate holds a client and a target descriptor per connection, plus ~50 of
# its own; without CAP_SYS_RESOURCE the hard RLIMIT_NOFILE caps it (a common
# container default is 20000: 9,900 connections then, and the test says so).
NOFILE_HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
if NOFILE_HARD == resource.RLIM_INFINITY:
    NOFILE_HARD = 1 << 20
IDLE_N = min(IDLE_WANTED, (NOFILE_HARD - 200) // 2 // 100 * 100)
NOFILE = min(NOFILE_HARD, 2 * IDLE_N + 2048)


def _bench_tool(name):
    """bench/NAME from the build tlsgate came from, else from build/."""
    here = os.path.dirname(os.path.abspath(tg_daemon.tlsgate_binary()))
    for d in (here, os.path.join(tg_daemon.HERE, "..", "..", "build")):
        p = os.path.normpath(os.path.join(d, "bench", name))
        if os.access(p, os.X_OK):
            return p
    pytest.fail("bench/%s is not built (ninja -C build)" % name, pytrace=False)


def _raise_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def is_asan(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30).stdout
    return "libasan" in out


@pytest.mark.slow
@pytest.mark.timeout(600)  # its own bounds add up to ~270 s: they speak first
def test_ten_thousand_idle_connections(proxy_factory, pki, tmp_path):
    """10,000 mTLS connections, each through to the target and back once, held
    open: /_metrics counts 10,000 open, a new client is still served, memory
    stays sane; then they all go at once (the holder exits) and the count
    returns to 0 with the proxy healthy.

    The memory bound is a sanity bound, not a benchmark: bench/run.sh measures
    ~13 KiB per idle connection (docs/PERFORMANCE.md), ~130 MiB for 10,000;
    400 MiB is three times that, and catches a per-connection buffer that is
    not given back (a 16 KiB pipe buffer each way would be 320 MiB more).
    ASan's shadow memory, redzones and 256 MiB free quarantine get 1.5 GiB."""
    if tg_daemon.under_valgrind():
        # Measured: a full mTLS handshake costs ~50 ms under memcheck, which
        # runs the daemon's threads one at a time: 10,000 take ~8 minutes.
        pytest.skip("10,000 handshakes take ~8 min under valgrind; the same paths (many "
                    "concurrent mTLS connections, all closing at once) run under memcheck in "
                    "test_data.py::test_200_concurrent_connections and the handshake floods "
                    "below, and this test under ASan+UBSan+LSan in CI")
    if IDLE_N < 5000:
        pytest.skip("the hard RLIMIT_NOFILE (%d) allows only %d connections" % (NOFILE_HARD,
                                                                               IDLE_N))
    if IDLE_N < IDLE_WANTED:
        print("hard RLIMIT_NOFILE %d: holding %d connections, not %d"
              % (NOFILE_HARD, IDLE_N, IDLE_WANTED))
    loadgen, backend_bin = _bench_tool("loadgen"), _bench_tool("backend")
    bport = tg_daemon.free_port()
    backend = subprocess.Popen([backend_bin, "-a", "127.0.0.1", "-p", str(bport), "-t", "300"],
                               preexec_fn=_raise_nofile, stdout=subprocess.DEVNULL)
    gen = None
    try:
        assert tg_daemon.wait_until(lambda: not tg_daemon.port_is_free(bport), 5)
        sport = tg_daemon.free_port()
        proxy = proxy_factory.start(
            "127.0.0.1:%d" % bport, access=["--allow-cn", "client"],
            prefix=["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE), "--"],
            extra=["--status", "http://127.0.0.1:%d" % sport, "--threads", "auto"])
        proxy.status_addr = ("127.0.0.1", sport)
        ctx_cert = pki.client
        gen = subprocess.Popen([loadgen, "idle", "-p", str(proxy.addr[1]), "-c", ctx_cert.cert_path,
                                "-k", ctx_cert.key_path, "-C", pki.ca.cert_path,
                                "-m", str(IDLE_N), "-z", "60", "-w", "32"],
                               preexec_fn=_raise_nofile, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
        t0 = time.monotonic()
        ok = tg_daemon.wait_until(lambda: open_conns(proxy) >= IDLE_N or gen.poll() is not None,
                                  150, 0.5)
        opened = time.monotonic() - t0
        assert ok and gen.poll() is None, "loadgen ended early (%s): %s" % (
            gen.poll(), gen.stdout.read().decode() if gen.poll() is not None else "")
        assert open_conns(proxy) == IDLE_N, "open: %d" % open_conns(proxy)

        # still serving: an mTLS echo within a generous bound
        ctx = client_context(pki.ca.cert_path, pki.client)
        t1 = time.monotonic()
        o = try_echo(proxy.addr, ctx, timeout=10)
        assert o.error is None and o.data == o.payload, o
        echo_s = time.monotonic() - t1
        assert echo_s < 5, "a new client took %.1fs with 10,000 idle connections" % echo_s
        rss = vm_rss_kib(proxy.pid)
        bound = (1536 if is_asan(proxy_factory.binary) else 400) * 1024
        print("%d idle: opened in %.1fs, echo %.3fs, VmRSS %d MiB"
              % (IDLE_N, opened, echo_s, rss // 1024))
        assert rss < bound, "VmRSS %d MiB with 10,000 idle connections (bound %d MiB)" % (
            rss // 1024, bound // 1024)

        # the holder goes: 10,000 connections close at once
        gen.send_signal(signal.SIGKILL)
        gen.wait(10)
        assert wait_open(proxy, 0, 60), "%d still open 60s after the clients went" % (
            open_conns(proxy))
        assert proxy.running()
        o = try_echo(proxy.addr, ctx, timeout=10)
        assert o.error is None and o.data == o.payload, o
        assert wait_open(proxy, 0, 5)
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
            gen.wait(10)
        backend.terminate()
        backend.wait(10)


# ---------------------------------------------------------------------------
# slow-loris and silent clients
LORIS = 50
SILENT = 10


def test_slow_loris_and_silent_clients(start_proxy, backend, ctx_for, pki):
    """50 clients trickle a ClientHello one byte a second and 10 complete TCP
    and send nothing. With --connect-timeout 2s each is cut about 2 s after it
    connected with a log line naming it, none reaches the target, and normal
    clients are served meanwhile."""
    proxy = start_with_metrics(start_proxy, backend, extra=["--connect-timeout", "2s"])
    hello = ClientHello("1.3", sni="localhost").encode()
    assert len(hello) > 10
    socks = []
    try:
        for i in range(LORIS + SILENT):
            s = tcp_connect(proxy.addr)
            s.setblocking(False)
            socks.append((s, time.monotonic(), s.getsockname()))
        cut = {}
        served = []
        sent = 0
        deadline = time.monotonic() + 9
        while len(cut) < len(socks) and time.monotonic() < deadline:
            # one byte to every slow-loris still open
            for i, (s, _t, _l) in enumerate(socks[:LORIS]):
                if i not in cut and sent < len(hello):
                    try:
                        s.send(hello[sent:sent + 1])
                    except OSError:
                        pass
            sent += 1
            # a normal client meanwhile
            t = time.monotonic()
            o = try_echo(proxy.addr, ctx_for(pki.client), timeout=5)
            served.append((o, time.monotonic() - t))
            # collect the cut ones until the next byte is due
            tick = time.monotonic() + 1.0
            while time.monotonic() < tick:
                open_ = [s for i, (s, _t, _l) in enumerate(socks) if i not in cut]
                r, _w, _x = select.select(open_, [], [], max(0, tick - time.monotonic()))
                for i, (s, t0, _l) in enumerate(socks):
                    if i in cut or s not in r:
                        continue
                    try:
                        d = s.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        d = b""
                    if not d:
                        cut[i] = time.monotonic() - t0
    finally:
        for s, _t, _l in socks:
            s.close()
    assert len(cut) == len(socks), "%d of %d slow clients not cut within 9s" % (
        len(socks) - len(cut), len(socks))
    for i, took in cut.items():
        assert 1.5 <= took <= 5.0, "client %d cut after %.2fs (--connect-timeout 2s)" % (i, took)
    assert sent < len(hello), "the whole hello went out: the trickle test tested nothing"
    for o, took in served:
        assert o.error is None and o.data == o.payload, o
        assert took < 3.0, "a normal client took %.1fs next to the slow ones" % took
    assert backend.wait_accepted(len(served), 3)
    time.sleep(0.2)
    assert backend.accepted == len(served), "a slow client reached the target"
    for s, _t, local in socks:
        assert proxy.find_log(peer_str(local), "timed out after --connect-timeout"), \
            "no timeout line for %s; log:\n%s" % (peer_str(local), proxy.log())
    assert wait_open(proxy, 0, 3)


# ---------------------------------------------------------------------------
# a flood of handshakes while reloading
FLOOD_THREADS = 12
RELOADS = 4


def _flood(addr, ctx, stop, out, max_rounds=2000):
    """Full handshakes in a loop (no resumption); records each served serial
    and each failure."""
    for i in range(max_rounds):
        if stop.is_set():
            return
        o = try_echo(addr, ctx, timeout=10)
        if o.error is not None or o.data != o.payload:
            out["failures"].append(repr(o))
        else:
            out["serials"].add(serial_of_der(o.leaf_der))
            out["n"] += 1


@pytest.mark.parametrize("threads", [None, 4], ids=["one-thread", "threads-4"])
def test_handshake_flood_during_reload(start_proxy, backend, ctx_for, pki, files, threads):
    extra = ["--threads", str(threads)] if threads else []
    proxy = start_with_metrics(start_proxy, backend, creds=file_creds(files), extra=extra)
    ctx = ctx_for(pki.client)
    certs = [pki.server] + [new_server_cert(pki, "server-flood-%d" % i) for i in range(RELOADS)]
    serials = {c.cert.serial_number for c in certs}

    held = []
    for i in range(4):
        s = tls_connect(proxy.addr, ctx)
        s.sendall(b"held %d\n" % i)
        assert recv_exact(s, 7) == b"held %d\n" % i
        held.append(s)
    stop = threading.Event()
    outs = [{"failures": [], "serials": set(), "n": 0} for _ in range(FLOOD_THREADS)]
    ts = [threading.Thread(target=_flood, args=(proxy.addr, ctx, stop, o), daemon=True)
          for o in outs]
    try:
        for t in ts:
            t.start()
        assert tg_daemon.wait_until(lambda: sum(o["n"] for o in outs) >= 20, 10)
        for i, new in enumerate(certs[1:]):
            install(new.cert_path, files.cert)
            install(new.key_path, files.key)
            n0 = sum(o["n"] for o in outs)
            reload_and_wait(proxy)
            # handshakes went on across the reload
            assert tg_daemon.wait_until(lambda: sum(o["n"] for o in outs) >= n0 + 30, 20)
            for j, s in enumerate(held):
                s.sendall(b"r%d h%d\n" % (i, j))
                assert recv_exact(s, 6) == b"r%d h%d\n" % (i, j)
    finally:
        stop.set()
        for t in ts:
            t.join(30)
        for s in held:
            s.close()
    assert not any(t.is_alive() for t in ts), "a flood thread hung"
    failures = [f for o in outs for f in o["failures"]]
    total = sum(o["n"] for o in outs)
    assert not failures, "%d of %d handshakes failed, e.g. %s" % (
        len(failures), total + len(failures), failures[:3])
    seen = set().union(*(o["serials"] for o in outs))
    print("%d handshakes across %d reloads" % (total, RELOADS))
    assert seen <= serials, "a certificate that was never installed was served"
    assert certs[-1].cert.serial_number in seen
    assert proxy.running()
    assert wait_open(proxy, 0, 5)
    assert_allowed(proxy, backend, ctx)


def test_unix_target_with_full_accept_queue(start_proxy, ctx_for, pki, tmp_path):
    """A unix-socket target whose accept queue is full answers connect() with
    EAGAIN and leaves nothing pending. tlsgate connects again until
    --connect-timeout: the client is served once the target accepts, not
    piped into a socket that never connected."""
    path = str(tmp_path / "target.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(0)
    fillers = []
    for _ in range(16):  # bounded: listen(0) holds one or two
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
        except BlockingIOError:
            s.close()
            break
        fillers.append(s)
    else:
        pytest.fail("the accept queue never filled")
    proxy = start_proxy("unix:" + path,
                        extra=["--connect-timeout", "%ds" % (10 * tg_daemon.slow_factor())])
    served = threading.Event()

    def serve_later():
        time.sleep(1.0)  # the client's dial meets a full queue meanwhile
        srv.settimeout(10 * tg_daemon.slow_factor())
        for _ in range(len(fillers) + 1):
            conn, _ = srv.accept()
            conn.settimeout(10 * tg_daemon.slow_factor())
            try:
                data = conn.recv(100)
            except socket.timeout:
                data = b""
            if data:
                conn.sendall(data)
                served.set()
            conn.close()

    t = threading.Thread(target=serve_later, daemon=True)
    s = tls_connect(proxy.addr, ctx_for(pki.client), timeout=15 * tg_daemon.slow_factor())
    try:
        t.start()
        for f in fillers:   # the fillers send nothing: the target moves on
            f.shutdown(socket.SHUT_WR)
        s.sendall(b"ping\n")
        assert recv_exact(s, 5, 15 * tg_daemon.slow_factor()) == b"ping\n", proxy.log()
    finally:
        s.close()
        for f in fillers:
            f.close()
        t.join(20)
        srv.close()
    assert served.is_set()
    assert "error on dial" not in proxy.log()
