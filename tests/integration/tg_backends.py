"""In-process backend servers (threads) that record every connection.

Modes:
  echo      echo everything back; on EOF from the peer, close.
  halfclose read until EOF, then send b"got <n> <sha256hex>\n" and close.
  greet     send GREETING, shut down the write side at once, then read until
            EOF (recording what arrived), then close.
  hold      read and discard until EOF, then close (never sends).
  replay    read until EOF, then send back everything it read and close
            (a target that answers only once the request is complete, as
            `nc -q` does).
  source    send `payload`, shut down the write side, then read until EOF
            (recording what arrived), then close.
"""
import hashlib
import os
import socket
import threading
import time

GREETING = b"hello from backend\n"


class ConnRecord:
    def __init__(self, peer):
        self.peer = peer
        self.received = bytearray()
        self.eof = threading.Event()     # peer's EOF seen
        self.closed = threading.Event()  # backend closed the socket
        self.eof_time = None
        self.error = None


class Backend:
    def __init__(self, mode="echo", host="127.0.0.1", port=0, unix_path=None, backlog=1024,
                 record_data=False, payload=b""):
        assert mode in ("echo", "halfclose", "greet", "hold", "replay", "source"), mode
        self.mode = mode
        self.payload = payload
        self.record_data = record_data or mode in ("greet", "hold", "halfclose", "replay",
                                                   "source")
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.unix_path = unix_path
            self.target = "unix:" + unix_path
        else:
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(fam, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.unix_path = None
            self.port = self.sock.getsockname()[1]
            self.target = ("[%s]:%d" if fam == socket.AF_INET6 else "%s:%d") % (host, self.port)
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)
        self.records = []
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self._stop = threading.Event()
        self._conns = []
        self._threads = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name="backend-accept")
        self._acceptor.start()

    # -- public --------------------------------------------------------------
    @property
    def accepted(self):
        with self.lock:
            return len(self.records)

    def wait_accepted(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.accepted >= n:
                return True
            time.sleep(0.01)
        return self.accepted >= n

    def wait_idle(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.active == 0:
                    return True
            time.sleep(0.01)
        return False

    def stop(self):
        self._stop.set()
        self._acceptor.join(5)
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(2)
        if self.unix_path:
            try:
                os.unlink(self.unix_path)
            except OSError:
                pass

    # -- internals ------------------------------------------------------------
    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.01)
                continue
            rec = ConnRecord(peer)
            with self.lock:
                self.records.append(rec)
                self._conns.append(c)
                self.active += 1
                self.peak = max(self.peak, self.active)
            t = threading.Thread(target=self._serve, args=(c, rec), daemon=True,
                                 name="backend-conn")
            self._threads.append(t)
            t.start()

    def _read_until_eof(self, c, rec):
        while True:
            d = c.recv(65536)
            if not d:
                rec.eof_time = time.monotonic()
                rec.eof.set()
                return
            if self.record_data:
                rec.received += d
            if self.mode == "echo":
                c.sendall(d)

    def _serve(self, c, rec):
        c.settimeout(60)
        try:
            if self.mode in ("greet", "source"):
                c.sendall(GREETING if self.mode == "greet" else self.payload)
                c.shutdown(socket.SHUT_WR)
            self._read_until_eof(c, rec)
            if self.mode == "halfclose":
                data = bytes(rec.received)
                c.sendall(b"got %d %s\n" % (len(data), hashlib.sha256(data).hexdigest().encode()))
            elif self.mode == "replay":
                c.sendall(rec.received)
                c.shutdown(socket.SHUT_WR)
        except Exception as e:  # recorded for the test to inspect
            rec.error = e
        finally:
            try:
                c.close()
            except OSError:
                pass
            rec.closed.set()
            with self.lock:
                self.active -= 1
                try:
                    self._conns.remove(c)
                except ValueError:
                    pass
