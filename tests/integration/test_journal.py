"""Structured journal entries when stderr is connected to the journal."""
import json
import os
import sys

import pytest

import tg_daemon
from tg_checks import assert_refused
from tg_clients import try_echo

HERE = os.path.dirname(os.path.abspath(__file__))


def read_records(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_journal_fields(start_proxy, backend, ctx_for, pki, tmp_path):
    out = str(tmp_path / "journal.jsonl")
    prefix = ["unshare", "-m", "--propagation", "private", "/usr/bin/python3",
              os.path.join(HERE, "tg_journal_capture.py"), out, "--"]
    proxy = start_proxy(backend, access=["--allow-cn", "client"], prefix=prefix)

    # assert_allowed() reads stderr, which is the journal's stream here.
    ok = try_echo(proxy.addr, ctx_for(pki.client))
    assert ok.data == ok.payload, ok
    client_port = str(ok.local[1])
    assert_refused(proxy, backend, ctx_for(pki.client_ou), phrases=())

    def find(pred):
        return next((r for r in read_records(out) if pred(r)), None)

    opened = tg_daemon.wait_until(
        lambda: find(lambda r: r.get("MESSAGE", "").startswith("opening pipe")), 5)
    assert opened, "no 'opening pipe' record in the journal: %r" % read_records(out)
    assert opened["TLSGATE_PEER"].endswith(":" + client_port)
    assert opened["TLSGATE_CLIENT_CN"] == "client"
    assert opened["TLSGATE_CONN_ID"].isdigit()
    assert opened["SYSLOG_IDENTIFIER"] == "tlsgate"
    assert opened["PRIORITY"] == "6"

    closed = tg_daemon.wait_until(
        lambda: find(lambda r: r.get("MESSAGE", "").startswith("closed pipe")), 5)
    assert closed and closed["TLSGATE_CONN_ID"] == opened["TLSGATE_CONN_ID"]

    denied = tg_daemon.wait_until(lambda: find(lambda r: "denied" in r.get("MESSAGE", "")), 5)
    assert denied, "no denial record: %r" % read_records(out)
    # The stable MESSAGE_ID people alert on (src/log.h MESSAGE_ID_CLIENT_DENIED).
    assert denied["MESSAGE_ID"] == "9bc8d128d3474aee8c4e7a926e5e72cc"
    assert denied["PRIORITY"] == "4"

    # Nothing of this went to stderr: it is the journal's stream now.
    with open(out + ".stderr", "rb") as f:
        assert b"opening pipe" not in f.read()


def test_journal_code_location_is_the_callers(start_proxy, backend, ctx_for, pki, tmp_path):
    """One CODE_FILE/CODE_LINE/CODE_FUNC per entry, the caller's: not a
    second set naming the logging module itself."""
    out = str(tmp_path / "journal.jsonl")
    prefix = ["unshare", "-m", "--propagation", "private", "/usr/bin/python3",
              os.path.join(HERE, "tg_journal_capture.py"), out, "--"]
    proxy = start_proxy(backend, prefix=prefix)
    ok = try_echo(proxy.addr, ctx_for(pki.client))
    assert ok.data == ok.payload, ok

    def find(prefix):
        return next((r for r in read_records(out) if r.get("MESSAGE", "").startswith(prefix)),
                    None)

    opened = tg_daemon.wait_until(lambda: find("opening pipe"), 5)
    assert opened, "no 'opening pipe' record in the journal: %r" % read_records(out)
    records = read_records(out)
    assert find("listening on"), records
    for r in records:
        assert "_DUPLICATE_FIELDS" not in r, "fields sent twice: %r" % r
        for k in ("CODE_FILE", "CODE_LINE", "CODE_FUNC"):
            assert k in r, "no %s: %r" % (k, r)
        assert os.path.basename(r["CODE_FILE"]) != "log.c", r
        assert r["CODE_LINE"].isdigit(), r
        assert r["CODE_FUNC"] != "log_fields_internal", r
    assert os.path.basename(opened["CODE_FILE"]) == "conn.c", opened
    assert os.path.basename(find("listening on")["CODE_FILE"]) == "manager.c"


@pytest.mark.parametrize("argv,message", [
    (["server", "--no-such-flag"], "unknown flag --no-such-flag"),
    (["frob"], 'unknown command "frob"'),
    # A setting missing from a --config file (an unedited example): the
    # file is named, the program still only once.
    (["server", "--config", "{conf}", "--listen", "127.0.0.1:1"],
     "{conf}: --target is required"),
])
def test_journal_usage_error_names_the_program_once(tlsgate_bin, tmp_path, argv, message):
    """journald prefixes every line with "tlsgate[PID]:" already: a bad
    command line there is an error entry of its own, not a stderr line that
    names the program a second time. On a terminal the name stays."""
    conf = str(tmp_path / "empty.conf")
    with open(conf, "w") as f:
        f.write("# nothing set\n")
    argv = [a.replace("{conf}", conf) for a in argv]
    message = message.replace("{conf}", conf)
    out = str(tmp_path / "journal.jsonl")
    rc, _out, err = tg_daemon.run_once(
        ["unshare", "-m", "--propagation", "private", "/usr/bin/python3",
         os.path.join(HERE, "tg_journal_capture.py"), out, "--", tlsgate_bin] + argv)
    assert rc == 2, (rc, err)
    records = [r for r in read_records(out) if message in r.get("MESSAGE", "")]
    assert len(records) == 1, read_records(out)
    assert records[0]["MESSAGE"].startswith(message.split()[0]), records[0]
    assert "tlsgate:" not in records[0]["MESSAGE"], records[0]
    assert records[0]["PRIORITY"] == "3", records[0]
    assert records[0]["SYSLOG_IDENTIFIER"] == "tlsgate", records[0]
    with open(out + ".stderr", "rb") as f:
        assert b"tlsgate: " not in f.read()

    rc, _out, err = tg_daemon.run_once([tlsgate_bin] + argv)
    assert rc == 2 and ("tlsgate: " + message) in err, (rc, err)
