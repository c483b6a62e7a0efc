"""Running tlsgate under test: sd_notify receiver, process runner, free ports."""
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def tlsgate_binary():
    return os.environ.get("TLSGATE_BIN") or os.path.normpath(
        os.path.join(HERE, "..", "..", "build", "tlsgate"))


def preload_env(name):
    """Environment that puts tests/tools/NAME.so (built next to the tlsgate
    under test) in front of it with LD_PRELOAD; fails the test when the shim
    is not built."""
    so = os.path.join(os.path.dirname(os.path.abspath(tlsgate_binary())),
                      "tests", "tools", name + ".so")
    if not os.path.exists(so):
        pytest.fail("%s is missing: it is built with the tests (ninja -C build)" % so,
                    pytrace=False)
    asan = os.environ.get("ASAN_OPTIONS", "")
    return {"LD_PRELOAD": so,
            # ASan wants to come first; a shim that only forwards calls may not.
            "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}


def short_tmpdir(prefix="tg-"):
    """A short directory for AF_UNIX paths (sun_path is limited to 108 bytes)."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


# --------------------------------------------------------------------------
# Ports
_used_ports = set()


def _port_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    hi = max(2048, low - 1)
    lo = max(1025, hi - 12000)
    # Under pytest-xdist (-n N) each worker draws from its own slice, so two
    # workers never pick the same port between the check and the bind.
    try:
        n = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        i = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])
    except ValueError:
        n, i = 1, 0
    if n > 1 and 0 <= i < n:
        width = (hi - lo + 1) // n
        lo, hi = lo + i * width, lo + (i + 1) * width - 1
    return lo, hi


def port_is_free(port):
    """True if nobody has the TCP port bound on 127.0.0.1 or ::1."""
    for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port():
    """A free port below the ephemeral range (an outgoing connection can't steal it)."""
    lo, hi = _port_range()
    for _ in range(200):
        p = random.randint(lo, hi)
        if p in _used_ports:
            continue
        if port_is_free(p):
            _used_ports.add(p)
            return p
    raise RuntimeError("no free port found in %d..%d" % (lo, hi))


def wait_until(pred, timeout, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------
# sd_notify
# Ghostunnel's variables stand in for --keystore, --cert, ... (src/config-argv.c):
# a developer's shell must not leak them into the daemons the tests start.
GHOSTUNNEL_ENV = ("KEYSTORE_PATH", "KEYSTORE_PASS", "CERT_PATH", "KEY_PATH", "CACERT_PATH",
                  "PKCS11_MODULE", "PKCS11_TOKEN_LABEL", "PKCS11_PIN")


class NotifyReceiver:
    """AF_UNIX datagram socket collecting sd_notify messages in a thread.

    messages: list of (monotonic time, sender pid or None, {key: value})."""

    def __init__(self):
        self.dir = short_tmpdir("tg-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []
        self.cond = threading.Condition()
        self._stop = False
        self._t = threading.Thread(target=self._loop, daemon=True, name="notify")
        self._t.start()

    def _loop(self):
        while not self._stop:
            try:
                data, anc, _fl, _ad = self.sock.recvmsg(4096, socket.CMSG_SPACE(12) +
                                                        socket.CMSG_SPACE(4 * 16))
            except socket.timeout:
                continue
            except OSError:
                return
            pid = None
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", cdata[:12])[0]
                elif level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    n = len(cdata) // 4
                    for fd in struct.unpack("%di" % n, cdata[:4 * n]):
                        os.close(fd)  # we do not keep passed fds (barrier / fdstore)
            fields = {}
            for line in data.decode("utf-8", "replace").split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    fields[k] = v
            with self.cond:
                self.messages.append((time.monotonic(), pid, fields))
                self.cond.notify_all()

    def find(self, key, value=None, start=0):
        with self.cond:
            for i, m in enumerate(self.messages[start:], start):
                if key in m[2] and (value is None or m[2][key] == value):
                    return i, m
        return None

    def wait_for(self, key, value=None, timeout=5.0, start=0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, m in enumerate(self.messages[start:], start):
                    if key in m[2] and (value is None or m[2][key] == value):
                        return i, m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.1))

    def close(self):
        self._stop = True
        self._t.join(2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# TLSGATE_VALGRIND=1: every tlsgate the fixtures start runs under valgrind's
# memcheck (scripts/test.sh runs the whole suite so). Its report goes to
# a file next to the daemon's log; cleanup() turns an error or a definite or
# indirect leak into a test failure.
VALGRIND_SUPP = os.path.normpath(os.path.join(HERE, "..", "valgrind.supp"))


def under_valgrind():
    return os.environ.get("TLSGATE_VALGRIND") == "1"


def slow_factor():
    """How many times longer than usual the daemon may take to get something
    done: 1 normally, 3 under valgrind (TLSGATE_SLOW_FACTOR overrides). Tests
    multiply what they wait for and their upper bounds (and daemon timeouts
    that must not expire while valgrind is slow) by it; lower bounds, which a
    daemon-side timer decides, stay as they are."""
    v = os.environ.get("TLSGATE_SLOW_FACTOR")
    if v:
        return float(v)
    return 3.0 if under_valgrind() else 1.0


# valgrind keeps the top of the descriptor table for itself: the program
# under it sees a soft RLIMIT_NOFILE this much lower (a prlimit must add it).
VALGRIND_RESERVED_FDS = 12


def reserved_fds():
    return VALGRIND_RESERVED_FDS if under_valgrind() else 0


def valgrind_argv(log_path):
    return ["valgrind", "--tool=memcheck", "--quiet", "--leak-check=full",
            "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
            "--error-exitcode=99", "--num-callers=20", "--suppressions=" + VALGRIND_SUPP,
            "--log-file=" + log_path]


def _wrap(argv, log_path):
    """Puts valgrind right before the tlsgate binary (after prlimit,
    systemd-socket-activate, ... which exec it)."""
    for i, a in enumerate(argv):
        if os.path.basename(a) == "tlsgate":
            return argv[:i] + valgrind_argv(log_path) + argv[i:]
    return argv


# Sanitizer reports on the daemon's stderr (ASan, LeakSanitizer, UBSan).
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

# The sanitizers exit with 1 after a report by default, which is also
# tlsgate's exit status for a forced shutdown: the daemons the fixtures
# start get an exit status of their own for it (a plain build ignores it).
SANITIZER_EXIT = 97
VALGRIND_EXIT = 99


def describe_exit(rc):
    """An exit status in words: 'exit 1', 'killed by SIGSEGV', ..."""
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return "killed by %s" % signal.Signals(-rc).name
        except ValueError:
            return "killed by signal %d" % -rc
    if rc == SANITIZER_EXIT:
        return "exit %d (a sanitizer's report)" % rc
    if rc == VALGRIND_EXIT and under_valgrind():
        return "exit %d (valgrind's report)" % rc
    return "exit %d" % rc


def _with_exitcode(options):
    if "exitcode=" in options:
        return options
    return (options + ":" if options else "") + "exitcode=%d" % SANITIZER_EXIT


class StartupError(AssertionError):
    pass


class Tlsgate:
    """One tlsgate process (or a wrapper that execs it, e.g. systemd-socket-activate).

    argv: full argument vector. The process gets NOTIFY_SOCKET (our receiver)
    unless notify=False; stderr (and stdout) go to a log file.

    expect_exit: the exit status the test expects (0: a shutdown in which
    every connection finished; 1 for a forced one, 2 for bad settings,
    -signal.SIGKILL for a process the test kills) or a tuple of them.
    exit_problem() (which the fixtures' teardown turns into a test
    failure) reports any other status, and a process that did not end
    within its bound after SIGTERM and had to be SIGKILLed."""

    def __init__(self, argv, logdir, env=None, notify=True, name="tlsgate", expect_exit=0):
        self.argv = list(argv)
        self.name = name
        self.notify = NotifyReceiver() if notify else None
        self.log_path = os.path.join(logdir, "%s-%d.log" % (name, time.monotonic_ns()))
        self.env = dict(os.environ)
        for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
                  "LISTEN_FDNAMES", "JOURNAL_STREAM") + GHOSTUNNEL_ENV:
            self.env.pop(k, None)
        if self.notify:
            self.env["NOTIFY_SOCKET"] = self.notify.path
        if env:
            self.env.update(env)
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            self.env[k] = _with_exitcode(self.env.get(k, ""))
        self.expect_exit = expect_exit
        self.stopping = None  # the SIGTERM or SIGINT a test sent (send_signal)
        self.proc = None
        self.killed = None
        self.start_time = None
        self.valgrind_log = None
        if under_valgrind():
            self.valgrind_log = self.log_path[:-len(".log")] + ".valgrind"
            self.argv = _wrap(self.argv, self.valgrind_log)

    @property
    def pid(self):
        return self.proc.pid

    def start(self, wait_ready=True, timeout=10.0):
        self._logf = open(self.log_path, "wb")
        self.start_time = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=self.env, close_fds=True)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=10.0):
        assert self.notify, "wait_ready needs the notify socket"
        timeout *= slow_factor()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.notify.wait_for("READY", "1", timeout=0.05):
                return
            if self.proc.poll() is not None:
                raise StartupError("%s exited with %s before READY=1; log:\n%s"
                                   % (self.name, self.proc.returncode, self.log()))
        raise StartupError("%s sent no READY=1 within %.0fs (messages %r); log:\n%s"
                           % (self.name, timeout, self.notify.messages, self.log()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_lines(self):
        return self.log().splitlines()

    def find_log(self, *needles, regex=None):
        """Lines containing every needle (and matching regex if given)."""
        out = []
        for line in self.log_lines():
            if all(n in line for n in needles) and (regex is None or re.search(regex, line)):
                out.append(line)
        return out

    def wait_log(self, *needles, regex=None, timeout=5.0):
        """Waits for a line with all needles; returns it or raises AssertionError."""
        timeout *= slow_factor()
        deadline = time.monotonic() + timeout
        while True:
            found = self.find_log(*needles, regex=regex)
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                raise AssertionError("no log line containing %r (regex %r) within %.1fs; log:\n%s"
                                     % (needles, regex, timeout, self.log()))
            time.sleep(0.02)

    def send_signal(self, sig):
        if self.running():
            os.kill(self.proc.pid, sig)
            if sig in (signal.SIGTERM, signal.SIGINT):
                self.stopping = sig

    def wait(self, timeout):
        """Returns the exit code, or None if still running after timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=10.0, expect=None):
        """Signals our own child by pid, SIGKILL after timeout (times
        slow_factor()). Returns the exit code. expect: sets expect_exit
        (e.g. stop(expect=1) for a forced shutdown)."""
        if expect is not None:
            self.expect_exit = expect
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            # A second SIGTERM would force the shutdown the test started:
            # wait for the one it asked for.
            if self.stopping is None or sig != signal.SIGTERM:
                try:
                    os.kill(self.proc.pid, sig)
                except ProcessLookupError:
                    pass
            else:
                sig = self.stopping
            timeout *= slow_factor()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = "did not exit within %.0fs of %s and was SIGKILLed" % (
                    timeout, signal.Signals(sig).name)
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def log_tail(self, lines=40):
        return "\n".join(self.log_lines()[-lines:])

    def exit_problem(self):
        """How this process ended, if not as the test expected (see
        expect_exit), with the tail of its log; None if it did."""
        if self.proc is None or self.proc.returncode is None:
            return None
        rc = self.proc.returncode
        if self.killed:
            what = self.killed
        else:
            expected = (self.expect_exit if isinstance(self.expect_exit, (tuple, list, set))
                        else (self.expect_exit,))
            if rc in expected:
                return None
            what = "ended: %s, where the test expects %s" % (
                describe_exit(rc), " or ".join(describe_exit(e) for e in expected))
        return "%s (pid %d, %s) %s; the last lines of its log (%s):\n%s" % (
            self.name, self.proc.pid, " ".join(self.argv), what, self.log_path, self.log_tail())

    def memory_errors(self):
        """valgrind's or a sanitizer's report on this process, or None."""
        if self.valgrind_log and os.path.exists(self.valgrind_log):
            with open(self.valgrind_log, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            # With --quiet only errors and definite/indirect leaks are
            # written, each with a stack; exit code 99 is valgrind's own.
            if "at 0x" in text or (self.proc is not None and self.proc.returncode == 99):
                return "valgrind (%s):\n%s" % (self.valgrind_log, text)
        log = self.log()
        if any(m in log for m in SANITIZER_MARKS):
            return "sanitizer report in %s:\n%s" % (self.log_path, log)
        return None

    def cleanup(self):
        rc = self.stop()
        try:
            self._logf.close()
        except Exception:
            pass
        if self.notify:
            self.notify.close()
        return rc


def run_once(argv, timeout=10.0, env=None):
    """Runs a short-lived command (e.g. a bad command line); returns (rc, stdout, stderr).

    Under TLSGATE_VALGRIND=1 tlsgate (argv[0]; not behind setpriv or the
    like, whose other user could not write the report) runs under memcheck
    too, and its report raises AssertionError; so does a sanitizer's report
    on its stderr (which also makes it exit SANITIZER_EXIT)."""
    env = dict(env or {})
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        env[k] = _with_exitcode(env.get(k, os.environ.get(k, "")))
    vg_log = None
    if under_valgrind() and os.path.basename(argv[0]) == "tlsgate":
        fd, vg_log = tempfile.mkstemp(prefix="tg-run-once-", suffix=".valgrind")
        os.close(fd)
        argv = _wrap(list(argv), vg_log)
        timeout *= slow_factor()
    try:
        rc, out, err = _run_once(argv, timeout, env)
        if any(m in err for m in SANITIZER_MARKS):
            raise AssertionError("sanitizer report from %s (%s):\n%s"
                                 % (" ".join(argv), describe_exit(rc), err))
        if vg_log:
            with open(vg_log, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            if "at 0x" in text or rc == 99:
                raise AssertionError("valgrind on %s (exit %s):\n%s\nstderr:\n%s"
                                     % (" ".join(argv), rc, text, err))
        return rc, out, err
    finally:
        if vg_log:
            os.unlink(vg_log)


def _run_once(argv, timeout, env):
    e = dict(os.environ)
    for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
              "LISTEN_FDNAMES", "JOURNAL_STREAM") + GHOSTUNNEL_ENV:
        e.pop(k, None)
    if env:
        e.update(env)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=e)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=5)
        return None, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
