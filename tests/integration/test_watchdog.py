"""The systemd watchdog covers every serving thread, not only the main loop:
a thread whose loop is stuck stops WATCHDOG=1, so systemd restarts the
service (WatchdogSec=, Restart=). tests/tools/hangaccept.so makes any
thread but the main one hang forever in accept()."""
import os
import signal
import time

import tg_daemon
from tg_checks import assert_allowed


def _watchdogs(proxy, since=0.0):
    return [m for m in list(proxy.notify.messages)
            if m[2].get("WATCHDOG") == "1" and m[0] > since]


def _shim_env(watchdog_s, log):
    env = tg_daemon.preload_env("hangaccept")
    env["WATCHDOG_USEC"] = str(int(watchdog_s * 1e6))
    env["HANGACCEPT_LOG"] = log
    return env


def test_stuck_thread_stops_the_watchdog(start_proxy, backend, ctx_for, pki, tmp_path):
    wd = 1.0 * tg_daemon.slow_factor()          # WATCHDOG_USEC, seconds
    hung = str(tmp_path / "hangaccept.log")
    proxy = start_proxy(backend, env=_shim_env(wd, hung), extra=["--threads", "2"])
    try:
        # Healthy: WATCHDOG=1 about every wd/2.
        assert tg_daemon.wait_until(lambda: len(_watchdogs(proxy)) >= 2, 4 * wd), \
            proxy.notify.messages
        # A connection wakes both threads' accept sources; when thread 1 gets
        # to accept() it hangs there (the shim) and the main thread serves
        # the client. When the main thread is quicker, thread 1 finds nothing
        # to accept and does not call it: connect again, a bounded number of
        # times, until the shim reports the hang.
        for _ in range(50):
            assert_allowed(proxy, backend, ctx_for(pki.client))
            if tg_daemon.wait_until(lambda: os.path.exists(hung), 0.2):
                break
        assert os.path.exists(hung), "thread 1 never called accept() in 50 connections"
        line = proxy.wait_log("serving thread 1 has not run its event loop", timeout=4 * wd)
        assert "WATCHDOG=1 withheld" in line, line
        noticed = time.monotonic()
        # From then on no WATCHDOG=1: systemd would restart the service
        # once WATCHDOG_USEC has passed since the last one.
        time.sleep(2 * wd)
        late = _watchdogs(proxy, since=noticed + 0.2 * wd)
        assert late == [], "WATCHDOG=1 sent while a thread is stuck: %r" % late
        # The main loop itself is fine and still serves.
        assert_allowed(proxy, backend, ctx_for(pki.client))
        assert len(proxy.find_log("has not run its event loop")) == 1, proxy.log()
    finally:
        # A drained shutdown would wait for the stuck thread forever.
        proxy.stop(sig=signal.SIGKILL, expect=-signal.SIGKILL)
