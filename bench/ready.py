#!/usr/bin/python3
"""ready.py - time from exec to READY=1 for a command that speaks sd_notify.

    ready.py [--runs N] [--cpu N] [--timeout S] [--check CMD] -- COMMAND...

Starts COMMAND N times, one after another, with NOTIFY_SOCKET pointing at a
datagram socket of its own, and measures from just before the fork to the
arrival of READY=1. After READY=1 it sends SIGTERM and waits for the exit
(SIGKILL after 5 s). With --check, CMD (a shell command) runs once, after the
first READY=1 and before the stop; its stdout is passed through and a failure
fails the run. --cpu pins this process, and so the command, to one CPU.

Prints "RESULT mode=ready runs=N median_ms=... min_ms=... max_ms=..." and
exits non-zero if any start did not reach READY=1 within --timeout seconds.
"""
import argparse
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def wait_ready(sock, proc, deadline):
    """Seconds-monotonic time READY=1 arrived, or None (exit or timeout)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            return None
        r, _, _ = select.select([sock], [], [], min(left, 0.1))
        if not r:
            continue
        data = sock.recv(65536)
        t = time.monotonic()
        if b"READY=1" in data.split(b"\n"):
            return t


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--cpu", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--check", default=None)
    ap.add_argument("--log", default=os.devnull)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd or not 1 <= a.runs <= 1000:
        ap.error("a COMMAND after -- and --runs between 1 and 1000 are required")
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})

    tmp = tempfile.mkdtemp(prefix="tlsgate-ready-")
    path = os.path.join(tmp, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.bind(path)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    times, failures = [], 0
    try:
        with open(a.log, "ab") as log:
            for i in range(a.runs):
                t0 = time.monotonic()
                proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=log)
                t1 = wait_ready(sock, proc, t0 + a.timeout)
                if t1 is None:
                    failures += 1
                    print("ready.py: start %d: no READY=1 within %.1f s (exit status %r)"
                          % (i + 1, a.timeout, proc.poll()), file=sys.stderr)
                else:
                    times.append((t1 - t0) * 1000)
                    if i == 0 and a.check:
                        c = subprocess.run(a.check, shell=True, timeout=60)
                        if c.returncode != 0:
                            print("ready.py: the check failed: %s" % a.check, file=sys.stderr)
                            failures += 1
                stop(proc)
                # drain notifications sent while stopping (STOPPING=1)
                while select.select([sock], [], [], 0)[0]:
                    sock.recv(65536)
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(tmp)
    if times:
        print("RESULT mode=ready runs=%d ok=%d median_ms=%.1f min_ms=%.1f max_ms=%.1f"
              % (a.runs, len(times), statistics.median(times), min(times), max(times)))
    return 1 if failures or not times else 0


if __name__ == "__main__":
    sys.exit(main())
