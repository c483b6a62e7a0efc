"""A small HTTP/1.1 client for the status port that shows exactly what the
server sent (one request per connection, read to EOF)."""
import json

from tg_clients import tcp_connect


class Resp:
    def __init__(self, raw):
        self.raw = raw
        head, sep, self.body = raw.partition(b"\r\n\r\n")
        assert sep, "no end of headers in %r" % raw[:300]
        lines = head.decode("latin-1").split("\r\n")
        version, code, self.reason = (lines[0].split(" ", 2) + [""])[:3]
        assert version == "HTTP/1.1", lines[0]
        self.status = int(code)
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Resp %d %r>" % (self.status, self.raw[:400])


def read_to_eof(s, rounds=None):
    """Everything s receives until the peer closes (at most rounds reads)."""
    data = bytearray()
    n = 0
    while rounds is None or n < rounds:
        d = s.recv(65536)
        if not d:
            break
        data += d
        n += 1
    return bytes(data)


def http(addr, path="/_status", method="GET", ctx=None, body=None, raw=None, timeout=5.0):
    """One request, read to EOF (the server closes every connection)."""
    s = tcp_connect(addr, timeout)
    if ctx is not None:
        s = ctx.wrap_socket(s, server_hostname="localhost")
    try:
        if raw is None:
            raw = "%s %s HTTP/1.1\r\nHost: status\r\nUser-Agent: tlsgate-tests\r\n" % (method, path)
            if body is not None:
                raw += "Content-Length: %d\r\n" % len(body)
            raw = raw.encode() + b"\r\n" + (body or b"")
        s.sendall(raw)
        s.settimeout(timeout)
        data = read_to_eof(s)
    finally:
        s.close()
    return Resp(data)
