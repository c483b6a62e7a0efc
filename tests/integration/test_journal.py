"""Structured journal entries when stderr is connected to the journal."""
import json
import os
import sys

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
    assert denied["MESSAGE_ID"] == "0d3b1ac2a4bf4f7e9a1c7f52b6e0c901"
    assert denied["PRIORITY"] == "4"

    # Nothing of this went to stderr: it is the journal's stream now.
    with open(out + ".stderr", "rb") as f:
        assert b"opening pipe" not in f.read()
