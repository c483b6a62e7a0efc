"""Ghostunnel's smaller flags and behaviours: the flags tlsgate refuses with a
reason, --auto-acme-renew-check-interval, --quiet=all and the PROXY protocol
header of --proxy-protocol-mode=tls."""
import os
import re
import signal
import time

import pytest

import tg_daemon
from tg_http import http
from tg_clients import client_context, tcp_connect, try_echo
from tg_pebble import DOMAIN, client_ctx, echo
from tg_pebble import acme_factory, pebble, pebble_factory  # noqa: F401,F811 (fixtures)

C_LOCALE = {"LANG": "C", "LC_ALL": "C", "LANGUAGE": ""}

# Each Ghostunnel flag tlsgate cannot have, with a word of the advice its
# message must give (what to use instead).
REFUSED = [
    ("enable-pprof", [], "perf"),
    ("allow-policy", ["bundle.tar.gz"], "--allow-cn"),
    ("allow-query", ["data.policy.allow"], "--allow-cn"),
    ("use-workload-api", [], "spiffe-helper"),
    ("use-workload-api-addr", ["unix:/run/spire/agent.sock"], "spiffe-helper"),
    ("use-workload-api-timeout", ["10m"], "spiffe-helper"),
    ("keychain-identity", ["server"], "--pkcs11-module"),
    ("keychain-issuer", ["CA"], "--pkcs11-module"),
    ("keychain-require-token", [], "--pkcs11-module"),
    ("allow-unsafe-cipher-suites", [], "--cipher-suites"),
    ("use-landlock", [], "systemd"),
    ("disable-landlock", [], "systemd"),
    ("syslog", [], "ForwardToSyslog="),
    ("skip-resolve", [], "After=network-online.target"),
    ("auto-acme-alt-tls-alpn-port", ["8443"], "--listen"),
    ("help-custom-man", [], "man tlsgate"),
]


def _good_args(pki):
    return ["--listen", "127.0.0.1:%d" % tg_daemon.free_port(), "--target", "127.0.0.1:9",
            "--cacert", pki.ca.cert_path, "--cert", pki.server.cert_path,
            "--key", pki.server.key_path, "--allow-all"]


@pytest.mark.parametrize("flag,value,advice", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_flag_on_command_line(tlsgate_bin, pki, flag, value, advice):
    """Exit status 2 with one line that names the flag, says it is not
    supported, why, and what to use instead: not "unknown flag"."""
    argv = [tlsgate_bin, "server"] + _good_args(pki) + ["--" + flag] + value
    rc, _out, err = tg_daemon.run_once(argv, env=C_LOCALE)
    assert rc == 2, "exit %s for --%s: %r" % (rc, flag, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("tlsgate: --%s: not supported: " % flag), err
    assert "unknown" not in err, err
    assert advice in err, "no advice %r in %r" % (advice, err)


@pytest.mark.parametrize("flag", ["enable-pprof", "use-workload-api", "keychain-identity"])
def test_refused_flag_in_config_file(tlsgate_bin, pki, tmp_path, flag):
    conf = tmp_path / "tlsgate.conf"
    conf.write_text("allow-all\n%s = x\n" % flag)
    argv = [tlsgate_bin, "server", "--config", str(conf)] + _good_args(pki)[:-1]
    rc, _out, err = tg_daemon.run_once(argv, env=C_LOCALE)
    assert rc == 2, err
    assert "%s:2: %s: not supported: " % (conf, flag) in err, err


def test_unknown_flag_is_still_unknown(tlsgate_bin, pki):
    rc, _out, err = tg_daemon.run_once([tlsgate_bin, "server"] + _good_args(pki)
                                       + ["--enable-pprofx"], env=C_LOCALE)
    assert rc == 2 and "unknown flag --enable-pprofx" in err, err


# ---------------------------------------------------------------------------
# --auto-acme-renew-check-interval

BAD_INTERVALS = [("0", "must not be zero"), ("500ms", "out of range"),
                 ("25h", "out of range"), ("often", "invalid duration"),
                 ("-1s", "must not be negative")]


@pytest.mark.parametrize("value,why", BAD_INTERVALS, ids=[b[0] for b in BAD_INTERVALS])
def test_renew_check_interval_bad_values(tlsgate_bin, pki, tmp_path, value, why):
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % tg_daemon.free_port(),
            "--target", "127.0.0.1:9", "--cacert", pki.ca.cert_path,
            "--auto-acme-cert", DOMAIN, "--auto-acme-email", "admin@example.org",
            "--auto-acme-agree-to-tos", "--auto-acme-ca", "https://127.0.0.1:1/dir",
            "--allow-all", "--auto-acme-renew-check-interval=" + value]
    rc, _out, err = tg_daemon.run_once(argv, env=dict(C_LOCALE, XDG_DATA_HOME=str(tmp_path)))
    assert rc == 2, err
    assert "--auto-acme-renew-check-interval" in err and why in err, err


CHECK_LINE = re.compile(r"certificate for %s: renewal due in \d+ s \(checked again in (\d+) s\)"
                        % re.escape(DOMAIN))


def _check_lines(gate):
    return [m for m in (CHECK_LINE.search(line) for line in gate.log_lines()) if m]


@pytest.mark.slow
def test_renew_check_interval_sets_the_check_period(pebble, acme_factory, backend, pki):
    """With a certificate years from renewal, the renewer checks it every
    --auto-acme-renew-check-interval (1 s here), not every 10 minutes."""
    gate = acme_factory.start(pebble, backend, timeout=15,
                              extra=["--auto-acme-renew-check-interval", "1s"],
                              env={"TLSGATE_LOG_LEVEL": "debug"})
    assert echo(gate.addr, client_ctx(pebble, pki.client)).ok
    first = len(_check_lines(gate))
    assert first >= 1, gate.log()
    window = 3.5 * tg_daemon.slow_factor()
    time.sleep(window)
    lines = _check_lines(gate)
    assert all(m.group(1) == "1" for m in lines), [m.group(0) for m in lines]
    checks = len(lines) - first
    # One check a second: about window of them (a slow host may lose one).
    assert 2 <= checks <= window + 2, "%d checks in %.1fs:\n%s" % (checks, window, gate.log())


@pytest.mark.slow
def test_renew_check_interval_default_is_ten_minutes(pebble, acme_factory, backend, pki):
    gate = acme_factory.start(pebble, backend, timeout=15, env={"TLSGATE_LOG_LEVEL": "debug"})
    tg_daemon.wait_until(lambda: _check_lines(gate), 5 * tg_daemon.slow_factor())
    lines = _check_lines(gate)
    assert lines and all(m.group(1) == "600" for m in lines), gate.log()


# ---------------------------------------------------------------------------
# --quiet=all

def _exercise(proxy, ctx_for, pki):
    """Start-up is behind us; an allowed and a refused client, a reload, a
    drain: each of these logs a line unless everything is silenced."""
    o = try_echo(proxy.addr, ctx_for(pki.client))
    assert o.echoed, o
    assert not try_echo(proxy.addr, ctx_for(None)).echoed
    n = len(proxy.notify.messages)
    proxy.send_signal(signal.SIGHUP)
    i = proxy.notify.wait_for("RELOADING", "1", timeout=5 * tg_daemon.slow_factor(), start=n)
    assert i, proxy.notify.messages[n:]
    assert proxy.notify.wait_for("READY", "1", timeout=5 * tg_daemon.slow_factor(),
                                 start=i[0] + 1)
    assert proxy.stop(timeout=10 * tg_daemon.slow_factor()) == 0


def test_quiet_all_logs_nothing_at_all(start_proxy, backend, ctx_for, pki):
    """Ghostunnel's --quiet=all discards every log message: no start-up,
    reload or shutdown line either, not only the per-connection ones."""
    proxy = start_proxy(backend, extra=["--quiet=all"])
    _exercise(proxy, ctx_for, pki)
    assert proxy.log() == "", "logged with --quiet=all:\n" + proxy.log()


def test_the_other_quiet_values_keep_the_daemon_lines(start_proxy, backend, ctx_for, pki):
    """The three others together silence connections only (the control for
    the test above: the same run logs start-up, reload and shutdown)."""
    proxy = start_proxy(backend, extra=["--quiet=conns", "--quiet=conn-errs",
                                        "--quiet=handshake-errs"])
    _exercise(proxy, ctx_for, pki)
    log = proxy.log()
    assert proxy.find_log("listening"), log
    assert proxy.find_log("reload"), log
    assert not proxy.find_log("opening pipe") and not proxy.find_log("error on TLS handshake"), log


def test_quiet_all_still_prints_the_error_it_exits_with(tlsgate_bin, pki, tmp_path):
    """As Ghostunnel prints the error run() returns: a start that fails says
    why once, on stderr (and exits 2 for a file that is not there, where
    Ghostunnel exits 1: see EXIT STATUS in tlsgate(8))."""
    missing = str(tmp_path / "missing.pem")
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % tg_daemon.free_port(),
            "--target", "127.0.0.1:9", "--cacert", pki.ca.cert_path, "--cert", missing,
            "--key", pki.server.key_path, "--allow-all", "--quiet=all"]
    rc, out, err = tg_daemon.run_once(argv, env=C_LOCALE)
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and missing in lines[0], err
    assert out == "", out


@pytest.mark.parametrize("quiet", [[], ["--quiet=all"]], ids=["logged", "quiet-all"])
def test_acme_give_up_prints_the_error_it_exits_with(tlsgate_bin, pki, tmp_path, quiet):
    """A first ACME certificate that cannot be obtained ends the start (exit
    1 after the last attempt); like any failed start, it says why on stderr,
    once, with --quiet=all too (Ghostunnel prints the error run() returns)."""
    argv = [tlsgate_bin, "server", "--listen", "127.0.0.1:%d" % tg_daemon.free_port(),
            "--target", "127.0.0.1:9", "--cacert", pki.ca.cert_path,
            "--auto-acme-cert", DOMAIN, "--auto-acme-email", "admin@example.org",
            "--auto-acme-agree-to-tos",
            "--auto-acme-ca", "https://127.0.0.1:%d/dir" % tg_daemon.free_port(),
            "--allow-all"] + quiet
    env = dict(C_LOCALE, XDG_DATA_HOME=str(tmp_path), TLSGATE_TEST_BACKOFF_SCALE="0.01")
    rc, out, err = tg_daemon.run_once(argv, timeout=30, env=env)
    assert rc == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    final = [line for line in lines
             if "could not obtain a certificate for %s" % DOMAIN in line and "retrying" not in line]
    assert len(final) == 1 and "error: " in final[0], err
    if quiet:
        assert lines == final, err
    assert out == "", out


# ---------------------------------------------------------------------------
# Errors in the log lines spelled as Go spells them: lower case, English.

def test_dial_error_spelled_as_go(start_proxy, ctx_for, pki):
    port = tg_daemon.free_port()   # nothing listens there
    proxy = start_proxy("127.0.0.1:%d" % port)
    o = try_echo(proxy.addr, ctx_for(pki.client))
    assert not o.echoed
    line = proxy.wait_log("error on dial to 127.0.0.1:%d" % port)
    assert line.endswith(": connect: connection refused"), line


def test_accept_error_spelled_as_go(start_proxy, backend):
    """EMFILE while accepting: "accept4: too many open files", as Go's
    accept error ends, not the C library's capitalised text."""
    nofile = 24 + tg_daemon.reserved_fds()
    proxy = start_proxy(backend, prefix=["prlimit", "--nofile=%d:%d" % (nofile, nofile), "--"],
                        extra=["--connect-timeout", "30s"], env=C_LOCALE)
    idle = []
    try:
        for _ in range(40):
            idle.append(tcp_connect(proxy.addr))
        line = proxy.wait_log("cannot accept connections", timeout=5)
    finally:
        for s in idle:
            s.close()
    assert "cannot accept connections: accept4: too many open files; pausing for 250 ms" \
        in line, line


# ---------------------------------------------------------------------------
# Address forms Ghostunnel accepts.

def test_status_https_scheme(start_proxy, backend, pki):
    """--status https://HOST:PORT (Ghostunnel's [http(s)://]HOST:PORT) is
    the HTTPS status port, as HOST:PORT alone."""
    port = tg_daemon.free_port()
    start_proxy(backend, extra=["--status", "https://127.0.0.1:%d" % port])
    r = http(("127.0.0.1", port), ctx=client_context(pki.ca.cert_path, None),
             timeout=5 * tg_daemon.slow_factor())
    assert r.status == 200, r
    assert r.json()["ok"] is True


@pytest.mark.parametrize("flag,value,why", [
    ("--status", "https://unix:/tmp/x.sock", "https:// needs HOST:PORT"),
    ("--listen", "launchd:https", "launchd is macOS's socket activation; use systemd:NAME"),
    ("--status", "launchd:status", "launchd is macOS's socket activation; use systemd:NAME"),
])
def test_address_forms_refused_with_reason(tlsgate_bin, pki, flag, value, why):
    args = _good_args(pki)
    if flag == "--listen":
        args[1] = value
    else:
        args += [flag, value]
    rc, _out, err = tg_daemon.run_once([tlsgate_bin, "server"] + args, env=C_LOCALE)
    assert rc == 2, err
    assert err.startswith("tlsgate: %s: \"%s\": " % (flag, value)) and why in err, err


# ---------------------------------------------------------------------------
# /_status: Ghostunnel's fields with Go's JSON types.

def _status(port):
    r = http(("127.0.0.1", port), timeout=5 * tg_daemon.slow_factor())
    return r.status, r.json()


GO_TYPES = {"ok": bool, "status": str, "listen_address": str, "forward_address": str,
            "backend_ok": bool, "backend_status": str, "backend_error": str, "time": str,
            "last_reload": str, "hostname": str, "message": str, "revision": str,
            "compiler": str}


def test_status_last_reload_and_stopping(start_proxy, backend):
    """No field is ever null (Go's time.Time is not): last_reload is Go's
    zero time until the first reload, then the time of it; after SIGTERM
    the message is "stopping", with 503."""
    port = tg_daemon.free_port()
    proxy = start_proxy(backend, extra=["--status", "http://127.0.0.1:%d" % port,
                                        "--shutdown-timeout", "10s"])
    code, st = _status(port)
    assert code == 200 and st["last_reload"] == "0001-01-01T00:00:00Z", st
    for k, v in st.items():
        assert isinstance(v, GO_TYPES[k]), (k, v)

    n = len(proxy.notify.messages)
    proxy.send_signal(signal.SIGHUP)
    i = proxy.notify.wait_for("RELOADING", "1", timeout=5 * tg_daemon.slow_factor(), start=n)
    assert i and proxy.notify.wait_for("READY", "1", timeout=5 * tg_daemon.slow_factor(),
                                       start=i[0] + 1)
    code, st = _status(port)
    assert code == 200 and isinstance(st["last_reload"], str), st
    assert not st["last_reload"].startswith("0001-"), st
    keys = list(st)
    assert keys.index("last_reload") == keys.index("time") + 1, keys
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$",
                    st["last_reload"]), st["last_reload"]

    # A client keeps the drain going while we look: once tlsgate has taken
    # it from the accept queue (a queued one is not open yet at SIGTERM).
    c = tcp_connect(proxy.addr)
    try:
        assert tg_daemon.wait_until(
            lambda: http(("127.0.0.1", port), path="/_status/tlsgate").json()["connections"] >= 1,
            5 * tg_daemon.slow_factor())
        proxy.send_signal(signal.SIGTERM)
        assert proxy.notify.wait_for("STOPPING", "1", timeout=5 * tg_daemon.slow_factor())
        code, st = _status(port)
        assert code == 503 and st["message"] == "stopping" and st["ok"] is False, st
    finally:
        c.close()


# ---------------------------------------------------------------------------
# Every Ghostunnel 1.11.1 server flag is accounted for, in the binary and in
# the three documents a switching user reads.

SUPPORTED = """listen target target-status unsafe-target proxy-protocol proxy-protocol-mode
allow-all allow-cn allow-ou allow-dns allow-ip allow-uri allow-dns-san allow-ip-san allow-uri-san
allow-spki-pin disable-authentication auto-acme-cert auto-acme-email auto-acme-agree-to-tos
auto-acme-ca auto-acme-testca auto-acme-renew-check-interval keystore cert key cacert storepass
pkcs11-module pkcs11-token-label pkcs11-pin cipher-suites max-tls-version timed-reload
shutdown-timeout connect-timeout close-timeout max-conn-lifetime max-concurrent-conns
metrics-graphite metrics-url metrics-interval metrics-prefix status enable-shutdown
quiet""".split()
# Ghostunnel's hidden aliases of --allow-dns/-ip/-uri: accepted, not in --help.
HIDDEN_ALIASES = {"allow-dns-san", "allow-ip-san", "allow-uri-san"}
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read(*path):
    with open(os.path.join(TOP, *path), encoding="utf-8") as f:
        return f.read()


def _man_section(text, title):
    """The text of one .SH section of a man page."""
    m = re.search(r"^\.SH %s\n(.*?)(?=^\.SH )" % re.escape(title), text, re.S | re.M)
    assert m, "no section %s" % title
    return m.group(1)


def test_every_ghostunnel_flag_accounted_for(tlsgate_bin):
    """Each supported flag is in --help, in README's compatibility table, in
    tlsgate(8)'s GHOSTUNNEL COMPATIBILITY and tlsgate.conf(5)'s list; each
    refused one in the three documents too (the tests above refuse them)."""
    refused = [r[0] for r in REFUSED]
    assert not set(refused) & set(SUPPORTED)
    rc, out, _err = tg_daemon.run_once([tlsgate_bin, "server", "--help"], env=C_LOCALE)
    assert rc == 0
    readme = _read("README.md")
    table = readme[readme.index("| Ghostunnel flag | in tlsgate |"):]
    table = table[:table.index("\n\n")]
    man8 = _man_section(_read("man", "tlsgate.8"), "GHOSTUNNEL COMPATIBILITY")
    conf5 = _man_section(_read("man", "tlsgate.conf.5"), "GHOSTUNNEL'S FLAGS")
    conf_supported, conf_refused = conf5.split("is refused in the file", 1)
    missing = []
    for flag in SUPPORTED + refused:
        esc = flag.replace("-", "\\-")
        if "`--%s`" % flag not in table:
            missing.append("README table: --" + flag)
        if not re.search(r"\\-\\-%s\b(?!\\-)" % re.escape(esc), man8):
            missing.append("tlsgate(8): --" + flag)
        where = conf_supported if flag in SUPPORTED else conf_refused
        if not re.search(r"^\.BR? %s\b(?!\\-)" % re.escape(esc), where, re.M):
            missing.append("tlsgate.conf(5): " + flag)
        if flag in SUPPORTED and flag not in HIDDEN_ALIASES and not re.search(r"^  --%s\b(?!-)" % re.escape(flag), out, re.M):
            missing.append("--help: --" + flag)
    assert not missing, "not accounted for: " + ", ".join(missing)
