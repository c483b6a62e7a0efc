"""libcurl's global state (src/main.c, src/http.h).

curl_global_init() is not thread-safe with every libcurl build, and tlsgate
makes its HTTP clients on whichever loop needs one, when it needs one (the
OCSP stapler at its first fetch, once the serving threads run). So main()
initializes libcurl once, before any thread, and cleans up once when it
returns. tests/tools/curlinit.so records curl_global_init(),
curl_global_cleanup() and curl_multi_init() calls together with the number
of threads started by then.
"""
import os

import tg_daemon
from test_ocsp import OcspPKI, ocsp_url


def _events(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [(w, int(n)) for w, n in (line.split() for line in f if line.strip())]


def test_curl_global_init_once_before_any_thread(start_proxy, backend, pki, tmp_path):
    """A certificate naming an OCSP responder: the stapler makes its HTTP
    client on the main loop after the serving threads started. libcurl was
    initialized once, at start, before the first thread, and is cleaned up
    once, last."""
    os.makedirs(str(tmp_path / "ocsp-pki"))
    opki = OcspPKI(str(tmp_path / "ocsp-pki"))
    # Nobody answers there: the fetch fails, but only after the client is made.
    server = opki.server("curlinit", ocsp_url(tg_daemon.free_port()))
    log = str(tmp_path / "curl-events")
    env = dict(tg_daemon.preload_env("curlinit"), CURLINIT_LOG=log)
    t = start_proxy(backend, access=["--allow-cn", "client"], env=env,
                    creds=["--cacert", pki.ca.cert_path, "--cert", server.cert_path,
                           "--key", server.key_path],
                    extra=["--threads", "3"])
    assert tg_daemon.wait_until(lambda: ("multi" in [w for w, _ in _events(log)]),
                                10 * tg_daemon.slow_factor()), (_events(log), t.log())
    assert t.stop(timeout=10 * tg_daemon.slow_factor()) == 0, t.log()

    events = _events(log)
    kinds = [w for w, _ in events]
    assert kinds.count("thread") >= 2, events  # the serving threads ran
    assert kinds.index("thread") < kinds.index("multi"), events  # the client came after them
    assert [e for e in events if e[0] == "init"] == [("init", 0)], events
    assert kinds.index("init") < kinds.index("thread"), events
    assert kinds.count("cleanup") == 1 and kinds[-1] == "cleanup", events


def test_curl_global_init_once_for_a_command_without_http(tlsgate_bin, tmp_path):
    """tlsgate --version makes no HTTP client: still one init and one
    cleanup, which bracket every run of main()."""
    log = str(tmp_path / "curl-events")
    env = dict(tg_daemon.preload_env("curlinit"), CURLINIT_LOG=log)
    rc, out, err = tg_daemon.run_once([tlsgate_bin, "--version"], env=env)
    assert rc == 0, (out, err)
    assert _events(log) == [("init", 0), ("cleanup", 0)]
