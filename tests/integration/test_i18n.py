"""Translations: what a person reads on the terminal speaks German, the log stays English.

The binary finds its message catalogs in the LOCALEDIR it was built with, so
this test builds tlsgate from this source tree with a temporary prefix and
installs the binary and the translations there (meson install --tags
runtime,i18n), then runs the installed binary.

glibc ignores LANGUAGE while the locale is "C" or "POSIX", so the runs set
LC_ALL to a real locale: C.UTF-8, which glibc 2.35 and later has built in (no
locale-gen needed), or another UTF-8 locale that `locale -a` lists.
"""
import json
import os
import shutil
import signal
import subprocess

import pytest

import tg_daemon

SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def _utf8_locale():
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    names = out.split()
    canon = {n.lower().replace("-", ""): n for n in names}
    for want in ("c.utf8", "de_de.utf8", "en_us.utf8"):
        if want in canon:
            return canon[want]
    for n in names:
        if n.lower().replace("-", "").endswith(".utf8") and not n.lower().startswith("posix"):
            return n
    return None


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(path of the installed binary, prefix) from a build of this tree."""
    meson = shutil.which("meson")
    if not meson:
        pytest.fail("meson not found", pytrace=False)
    top = tmp_path_factory.mktemp("i18n")
    build, prefix = str(top / "build"), str(top / "prefix")

    def run(*argv):
        p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, "%s failed:\n%s\n%s" % (" ".join(argv), p.stdout, p.stderr)

    run(meson, "setup", build, SRC, "-Dprefix=" + prefix)
    run("ninja", "-C", build, "tlsgate", "tlsgate-gmo")
    run(meson, "install", "-C", build, "--no-rebuild", "--tags", "runtime,i18n")
    binary = os.path.join(prefix, "bin", "tlsgate")
    assert os.access(binary, os.X_OK), "meson install did not install %s" % binary
    return binary, prefix


@pytest.fixture(scope="module")
def german():
    loc = _utf8_locale()
    if not loc:
        pytest.skip("no UTF-8 locale found by `locale -a` (glibc < 2.35 without C.UTF-8; "
                    "install the locales package and generate one)")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LC_", "LANG")) and k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}
    env.update(LC_ALL=loc, LANGUAGE="de")
    return env


def _run(binary, args, env):
    return subprocess.run([binary] + args, capture_output=True, text=True, env=env, timeout=30)


def test_catalog_installed(installed):
    _, prefix = installed
    mo = os.path.join(prefix, "share", "locale", "de", "LC_MESSAGES", "tlsgate.mo")
    assert os.path.isfile(mo)


def test_usage_in_german(installed, german):
    p = _run(installed[0], ["--help"], german)
    assert p.returncode == 0
    assert p.stdout.startswith("Aufruf: tlsgate")
    assert "Befehle:" in p.stdout


def test_server_help_in_german(installed, german):
    p = _run(installed[0], ["server", "--help"], german)
    assert p.returncode == 0
    # The heading, a flag's help from the option table (N_() strings passed
    # through _() when printed) and the default's label.
    assert "Optionen:" in p.stdout
    assert "Jeden Client mit gültigem Zertifikat zulassen." in p.stdout
    assert "(Vorgabe: 10s)" in p.stdout
    # Flag names and metavariables are syntax and stay as they are.
    assert "  --allow-all\n" in p.stdout
    assert "  --connect-timeout=DURATION\n" in p.stdout


def test_english_without_language(installed, german):
    env = dict(german)
    del env["LANGUAGE"]
    p = _run(installed[0], ["server", "--help"], env)
    assert "Allow every client with a valid certificate." in p.stdout
    p = _run(installed[0], ["server", "--listen=127.0.0.1:1"], env)
    assert p.stderr == "tlsgate: --target is required\n"


def test_validation_errors_in_german(installed, german):
    p = _run(installed[0], ["server", "--listen=127.0.0.1:1"], german)
    assert p.returncode == 2
    assert p.stderr == "tlsgate: --target ist erforderlich\n"

    p = _run(installed[0], ["server", "--listen=127.0.0.1:x", "--target=127.0.0.1:2"], german)
    assert p.returncode == 2
    assert p.stderr == ("tlsgate: --listen: ungültige Adresse »127.0.0.1:x«: "
                        "Port muss eine Zahl zwischen 0 und 65535 sein\n")

    p = _run(installed[0], ["server", "--listen=127.0.0.1:1", "--target=127.0.0.1:2",
                            "--cert=/x.crt", "--key=/x.key", "--allow-all",
                            "--auto-acme-cert=example.org"], german)
    assert p.returncode == 2
    assert "schließen einander aus" in p.stderr

    p = _run(installed[0], ["frobnicate"], german)
    assert p.returncode == 2
    assert "unbekannter Befehl" in p.stderr


def test_config_file_error_in_german(installed, german, tmp_path):
    conf = tmp_path / "web.conf"
    conf.write_text("target = 127.0.0.1:2\nconnect-timeout = 10 s\n")
    p = _run(installed[0], ["server", "--config=%s" % conf, "--listen=127.0.0.1:1"], german)
    assert p.returncode == 2
    assert p.stderr.startswith("tlsgate: %s:2: connect-timeout: ungültige Dauer »10 s«" % conf)


def test_listener_error_in_german(installed, german, pki):
    # Gets past validation and credentials, then fails to find the socket
    # systemd should have passed: a start-up error from the listener.
    env = dict(german)
    for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        env.pop(k, None)
    p = _run(installed[0], ["server", "--listen=systemd:https", "--target=127.0.0.1:2",
                            "--cert=" + pki.server.cert_path, "--key=" + pki.server.key_path,
                            "--cacert=" + pki.ca.cert_path, "--allow-all"], env)
    assert p.returncode == 1
    assert "--listen systemd:https: systemd hat keine Sockets übergeben" in p.stderr


def test_log_stays_english(installed, german, pki, tmp_path):
    port = tg_daemon.free_port()
    log = tmp_path / "stderr"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [installed[0], "server", "--listen=127.0.0.1:%d" % port, "--target=127.0.0.1:2",
             "--cert=" + pki.server.cert_path, "--key=" + pki.server.key_path,
             "--cacert=" + pki.ca.cert_path, "--allow-all"],
            stdout=subprocess.DEVNULL, stderr=err, env=german)
    try:
        assert tg_daemon.wait_until(lambda: "listening on" in log.read_text(), 10), \
            log.read_text()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        text = log.read_text()
        assert rc == 0, "%s after SIGTERM:\n%s" % (tg_daemon.describe_exit(rc), text)
        assert "listening on 127.0.0.1:%d, forwarding to 127.0.0.1:2" % port in text
        assert "exiting" in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_journal_stays_english_even_quoting_errors(installed, german, pki, tmp_path):
    """Under systemd the start-up error goes to the journal, in English,
    although the same error on a terminal is German (test above)."""
    out = str(tmp_path / "journal.jsonl")
    capture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tg_journal_capture.py")
    env = dict(german)
    for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        env.pop(k, None)
    p = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "/usr/bin/python3", capture, out, "--",
         installed[0], "server", "--listen=systemd:https", "--target=127.0.0.1:2",
         "--cert=" + pki.server.cert_path, "--key=" + pki.server.key_path,
         "--cacert=" + pki.ca.cert_path, "--allow-all"],
        capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 1, p.stderr
    with open(out) as f:
        messages = [json.loads(line).get("MESSAGE", "") for line in f if line.strip()]
    assert any("--listen systemd:https: no sockets were passed by systemd" in m
               for m in messages), messages
    assert not any("Sockets" in m for m in messages), messages


def test_check_in_german(installed, german, pki, tmp_path):
    """--check on a terminal speaks the user's language: the verdict, and
    the advice for a file the service may not read."""
    args = ["server", "--listen=127.0.0.1:%d" % tg_daemon.free_port(), "--target=127.0.0.1:2",
            "--cert=" + pki.server.cert_path, "--key=" + pki.server.key_path,
            "--cacert=" + pki.ca.cert_path, "--allow-all", "--check"]
    p = _run(installed[0], args, german)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Kommandozeile: Konfiguration in Ordnung: würde das Zertifikat "
                               "CN=localhost"), p.stdout
    p = _run(installed[0], [a if not a.startswith("--key=") else "--key=web.key" for a in args],
             german)
    assert p.returncode == 2
    assert "--key web.key: kann nicht gelesen werden: " in p.stderr, p.stderr
    assert "ein Name ohne Verzeichnis wird in $CREDENTIALS_DIRECTORY gesucht" in p.stderr, \
        p.stderr
