"""TLS clients for the tests: Python ssl (socket and memory-BIO) and CLI tools."""
import os
import select
import socket
import ssl
import subprocess
import threading
import time

TLS = {
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def client_context(ca_path, cert=None, version=None, min_version=None, max_version=None,
                   ciphers=None):
    """cert: an Issued (cert_path/key_path) or None. version: "1.2"/"1.3" pins both ends."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca_path)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert is not None:
        ctx.load_cert_chain(cert.cert_path, cert.key_path)
    if version:
        ctx.minimum_version = ctx.maximum_version = TLS[version]
    if min_version:
        ctx.minimum_version = TLS[min_version]
    if max_version:
        ctx.maximum_version = TLS[max_version]
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def tcp_connect(addr, timeout=5.0):
    """addr: (host, port) or a unix socket path."""
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr)
        return s
    fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(addr)
    return s


def tls_connect(addr, ctx, timeout=5.0, session=None, server_hostname="localhost"):
    raw = tcp_connect(addr, timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_hostname, session=session,
                               suppress_ragged_eofs=False)
    except BaseException:
        raw.close()
        raise


def recv_exact(s, n, timeout=5.0):
    s.settimeout(timeout)
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            break
        buf += d
    return bytes(buf)


def recv_until_eof(s, timeout=5.0, limit=1 << 22):
    s.settimeout(timeout)
    buf = bytearray()
    while len(buf) < limit:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    return bytes(buf)


class Outcome:
    """What a client saw: handshake result, echoed data, error, negotiated params."""

    def __init__(self):
        self.local = None
        self.handshake_ok = False
        self.data = b""
        self.error = None
        self.version = None
        self.cipher = None
        self.session = None
        self.session_reused = None
        self.leaf_der = None
        self.alpn = None

    @property
    def echoed(self):
        return self.handshake_ok and self.error is None and self.data == self.payload

    def __repr__(self):
        return ("<Outcome local=%s handshake_ok=%s data=%r error=%r version=%s cipher=%s reused=%s>"
                % (self.local, self.handshake_ok, self.data[:60], self.error, self.version,
                   self.cipher, self.session_reused))


def try_echo(addr, ctx, payload=None, timeout=5.0, session=None, server_hostname="localhost",
             outcome=None):
    """Connects, handshakes, sends payload, reads len(payload) bytes back.

    Never raises for TLS/socket errors: the Outcome (or the given outcome
    object, e.g. a subclass) records them."""
    o = outcome if outcome is not None else Outcome()
    o.payload = payload or (b"ping-%d\n" % time.monotonic_ns())
    try:
        raw = tcp_connect(addr, timeout)
    except OSError as e:
        o.error = e
        return o
    o.local = raw.getsockname()
    s = None
    try:
        s = ctx.wrap_socket(raw, server_hostname=server_hostname, session=session,
                            suppress_ragged_eofs=False)
        o.handshake_ok = True
        o.version = s.version()
        o.cipher = s.cipher()[0]
        o.session_reused = s.session_reused
        o.leaf_der = s.getpeercert(binary_form=True)
        o.alpn = s.selected_alpn_protocol()
        s.sendall(o.payload)
        o.data = recv_exact(s, len(o.payload), timeout)
        if o.data != o.payload and o.error is None:
            o.error = EOFError("short read: %d of %d bytes" % (len(o.data), len(o.payload)))
        o.session = s.session
    except (ssl.SSLError, OSError, ValueError) as e:
        o.error = e
    finally:
        try:
            (s or raw).close()
        except OSError:
            pass
    return o


# --------------------------------------------------------------------------
class MemTLS:
    """A TLS client over ssl.SSLObject + MemoryBIO on a non-blocking socket.

    Unlike SSLSocket this can send close_notify and keep reading (half-close),
    run a handshake with a timeout and resume it later, and pump data both
    ways at once without threads."""

    def __init__(self, sock, ctx, server_hostname="localhost", session=None):
        self.sock = sock
        self.sock.setblocking(False)
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=False,
                                server_hostname=server_hostname, session=session)
        self.pending = bytearray()
        self.tcp_eof = False

    @classmethod
    def connect(cls, addr, ctx, timeout=5.0, **kw):
        s = tcp_connect(addr, timeout)
        return cls(s, ctx, **kw)

    # -- plumbing --
    def _collect(self):
        d = self.out.read()
        if d:
            self.pending += d

    def _flush(self, deadline):
        self._collect()
        while self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("send timed out")
            _r, w, _x = select.select([], [self.sock], [], left)
            if w:
                n = self.sock.send(self.pending)
                del self.pending[:n]

    def _fill(self, deadline):
        """Waits for socket data and feeds it to the incoming BIO."""
        if self.tcp_eof:
            raise EOFError("TCP EOF already seen")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("receive timed out")
        r, _w, _x = select.select([self.sock], [], [], left)
        if not r:
            raise TimeoutError("receive timed out")
        self._recv_into_bio(65536)

    def _recv_into_bio(self, size):
        """Feeds what the socket has (at most size bytes) to the incoming
        BIO; a TCP EOF (or reset) becomes the BIO's EOF."""
        try:
            d = self.sock.recv(size)
        except ConnectionResetError:
            d = b""
        if d:
            self.inc.write(d)
        else:
            self.tcp_eof = True
            self.inc.write_eof()

    # -- API --
    def handshake(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                self._flush(deadline)
                return
            except ssl.SSLWantReadError:
                self._flush(deadline)
                self._fill(deadline)

    def send(self, data, timeout=5.0):
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            n = self.obj.write(view[:16384])
            view = view[n:]
            self._flush(deadline)

    def recv(self, n=65536, timeout=5.0):
        """Returns data, or b"" after the peer's close_notify. A TCP EOF without
        close_notify raises ssl.SSLEOFError (truncation)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                d = self.obj.read(n)
                self._flush(deadline)
                return d
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLWantReadError:
                self._flush(deadline)
                self._fill(deadline)

    def recv_until_eof(self, timeout=5.0, limit=1 << 24):
        deadline = time.monotonic() + timeout
        buf = bytearray()
        while len(buf) < limit:
            d = self.recv(65536, max(0.0, deadline - time.monotonic()))
            if not d:
                return bytes(buf)
            buf += d
        return bytes(buf)

    def send_close_notify(self, timeout=5.0):
        """Sends close_notify and keeps the TCP connection and the read side open."""
        deadline = time.monotonic() + timeout
        try:
            self.obj.unwrap()  # first SSL_shutdown(): queues close_notify, then wants to read
        except ssl.SSLWantReadError:
            pass
        self._flush(deadline)

    def _step(self, deadline, view, got):
        """One round of moving data both ways: encrypts more of `view` while
        the socket's send queue is short, waits (0.5 s at most) for the
        socket, sends what is queued, and decrypts what came into `got`.
        Returns (the rest of view, True if the peer's close_notify was read).
        A TCP EOF without close_notify raises ssl.SSLEOFError."""
        clean = False
        while view and len(self.pending) < 262144:
            n = self.obj.write(view[:16384])
            view = view[n:]
            self._collect()
        want_w = [self.sock] if self.pending else []
        r, w, _x = select.select([self.sock] if not self.tcp_eof else [], want_w, [],
                                 min(0.5, max(0.0, deadline - time.monotonic())))
        if w:
            try:
                n = self.sock.send(self.pending)
                del self.pending[:n]
            except BlockingIOError:
                pass
        if r:
            self._recv_into_bio(262144)
            while True:
                try:
                    chunk = self.obj.read(262144)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    clean = True
                    break
                if not chunk:
                    clean = True
                    break
                got += chunk
            self._collect()
        return view, clean

    def pump(self, data, expect, timeout=20.0):
        """Sends data while receiving; returns once `expect` bytes arrived (or EOF)."""
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        got = bytearray()
        eof = False
        while (view or self.pending) or (len(got) < expect and not eof):
            if time.monotonic() >= deadline:
                raise TimeoutError("pump: sent %d/%d, received %d/%d"
                                   % (len(data) - len(view), len(data), len(got), expect))
            view, clean = self._step(deadline, view, got)
            eof = eof or clean
            if self.tcp_eof and not eof and len(got) < expect:
                raise ssl.SSLEOFError("TCP EOF without close_notify after %d bytes" % len(got))
        return bytes(got)

    def exchange(self, data, end, timeout=60.0, limit=1 << 28):
        """Sends all of `data` while receiving, then ends its sending side the
        way `end` says: "close_notify" (a TLS close_notify, then a TCP FIN),
        "fin" (a TCP FIN alone: the TLS stream is truncated on purpose), or
        "none" (nothing). Keeps receiving until the peer's close_notify or a
        TCP EOF; returns (received bytes, True if the end was a close_notify).
        """
        assert end in ("close_notify", "fin", "none"), end
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        got = bytearray()
        ended = end == "none" and not view
        clean = False
        while True:
            if time.monotonic() >= deadline:
                raise TimeoutError("exchange: sent %d/%d, received %d"
                                   % (len(data) - len(view), len(data), len(got)))
            if not view and not self.pending and not ended:
                if end == "close_notify":
                    try:
                        self.obj.unwrap()
                    except ssl.SSLWantReadError:
                        pass
                    self._flush(deadline)
                if end != "none":
                    self.sock.shutdown(socket.SHUT_WR)
                ended = True
            if self.tcp_eof:
                return bytes(got), clean
            try:
                view, c = self._step(deadline, view, got)
            except ssl.SSLEOFError:
                return bytes(got), clean
            clean = clean or c
            if len(got) > limit:
                raise AssertionError("exchange: more than %d bytes received" % limit)
            if clean and ended and not view and not self.pending:
                return bytes(got), True

    def version(self):
        return self.obj.version()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
class CliClient:
    """A command-line TLS client (gnutls-cli, openssl s_client) with piped stdio."""

    def __init__(self, argv, env=None):
        self.argv = argv
        e = dict(os.environ)
        if env:
            e.update(env)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=e)
        self.out = bytearray()
        self.err = bytearray()
        self.lock = threading.Lock()
        self._to = threading.Thread(target=self._reader, args=(self.proc.stdout, self.out),
                                    daemon=True)
        self._te = threading.Thread(target=self._reader, args=(self.proc.stderr, self.err),
                                    daemon=True)
        self._to.start()
        self._te.start()

    def _reader(self, f, buf):
        while True:
            d = os.read(f.fileno(), 65536)
            if not d:
                return
            with self.lock:
                buf += d

    def write(self, data):
        """Returns False if the client already exited (e.g. a refused handshake)."""
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
            return True
        except BrokenPipeError:
            return False

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    def wait_output(self, needle, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if needle in self.out:
                    return True
            if self.proc.poll() is not None:
                time.sleep(0.1)  # let the readers drain
                with self.lock:
                    return needle in self.out
            time.sleep(0.02)
        return False

    def wait(self, timeout=10.0):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        self._to.join(2)
        self._te.join(2)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        return self.wait(5)

    def text(self):
        with self.lock:
            return (self.out.decode("utf-8", "replace"), self.err.decode("utf-8", "replace"))
