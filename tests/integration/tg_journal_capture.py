#!/usr/bin/python3
"""Runs a program with a journal to talk to, without journald.

Usage (as root):
  unshare -m --propagation private /usr/bin/python3 tg_journal_capture.py OUT.jsonl -- PROG ARGS...

In the private mount namespace a tmpfs covers /run/systemd and a datagram
socket is bound at /run/systemd/journal/socket; PROG's stderr goes to a file
whose dev:ino is exported as JOURNAL_STREAM, exactly as systemd does for a
service with StandardError=journal, so PROG takes its native-journal path.
Every record received is appended to OUT.jsonl as one JSON object; a field
that occurs more than once keeps its last value and is listed in
_DUPLICATE_FIELDS.
SIGTERM/SIGINT are forwarded to PROG; the exit status is PROG's.
"""
import array
import json
import os
import signal
import socket
import struct
import subprocess
import sys


def parse(buf):
    rec, i = {}, 0
    while i < len(buf):
        nl = buf.find(b"\n", i)
        if nl < 0:
            break
        line = buf[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            k, v = k.decode(), v.decode("utf-8", "replace")
            i = nl + 1
        else:  # KEY\n<le64 size><data>\n
            size = struct.unpack("<Q", buf[nl + 1:nl + 9])[0]
            k, v = line.decode(), buf[nl + 9:nl + 9 + size].decode("utf-8", "replace")
            i = nl + 9 + size + 1
        if k in rec:  # journald keeps both: say so, the dict cannot
            rec.setdefault("_DUPLICATE_FIELDS", []).append(k)
        rec[k] = v
    return rec


def main():
    out_path = sys.argv[1]
    assert sys.argv[2] == "--"
    argv = sys.argv[3:]
    os.makedirs("/run/systemd", exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run/systemd"], check=True)
    os.makedirs("/run/systemd/journal")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("/run/systemd/journal/socket")
    s.settimeout(0.1)

    stderr_path = out_path + ".stderr"
    err = open(stderr_path, "wb")
    st = os.fstat(err.fileno())
    env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
    p = subprocess.Popen(argv, stderr=err, env=env)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda n, _f: p.send_signal(n))

    with open(out_path, "a") as out:
        while True:
            try:
                data, anc, _f, _a = s.recvmsg(1 << 20, socket.CMSG_SPACE(4 * 4))
            except socket.timeout:
                if p.poll() is not None:
                    break
                continue
            except InterruptedError:
                continue
            for lvl, typ, c in anc:  # large records arrive as a memfd
                if lvl == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    for fd in array.array("i", c[: len(c) - len(c) % 4]):
                        data = os.pread(fd, 1 << 24, 0)
                        os.close(fd)
            out.write(json.dumps(parse(data)) + "\n")
            out.flush()
    sys.exit(p.returncode)


main()
