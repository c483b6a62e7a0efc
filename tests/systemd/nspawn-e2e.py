#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""tlsgate under a real systemd: boot Debian 12 with systemd as PID 1 in
systemd-nspawn, install tlsgate's Debian package there the way README.md
says, and drive it with systemctl, journalctl and real TLS clients.

usage: tests/systemd/nspawn-e2e.py [--deb PATH | --meson-install [--builddir DIR]]
                                  [--keep] [--name NAME]

Run as root on a Debian 12 host with systemd-container, debootstrap and
util-linux (nsenter); python3-cryptography for the test PKI; without --deb,
dpkg-dev, debhelper and tlsgate's build dependencies (meson/ninja and those
alone with --meson-install). The host's PID 1 need not be systemd.

What happens:
  1. build:   the Debian package: --deb PATH, or built here with
              packaging/build-deb.sh (nocheck) into a directory of this run;
              with --meson-install instead: meson setup --prefix=/usr
              BUILDDIR (default build-nspawn/), ninja, `meson install
              --destdir` into the container's root before it boots;
  2. rootfs:  debootstrap --variant=minbase of bookworm with systemd, dbus,
              pebble, socat and tlsgate's runtime libraries (taken from the
              built binary), from the mirror in /etc/apt/sources.list*, cached
              in $TLSGATE_NSPAWN_CACHE (/var/cache/tlsgate-nspawn) with a stamp
              of suite, mirror and package list; rebuilt when the stamp differs;
  3. boot:    an overlayfs over the cached rootfs (a copy if overlayfs is not
              available or TLSGATE_NSPAWN_COPY=1); `systemd-nspawn -b
              --private-network`: PID 1 is systemd, the network is the
              container's own loopback only; clients run in this process,
              their sockets made in the container's network namespace;
  4. the newcomer's path of README.md ("Install and run under systemd"),
     in the booted container: the .deb's Depends checked against the
     rootfs, `apt-get install ./tlsgate_*.deb` (its maintainer scripts run
     for real: nothing enabled or started, example.conf a conffile, the
     units where the package puts them, the journal catalog compiled);
     /etc/tlsgate/example.conf copied to web.conf and static.conf and
     edited by uncommenting the example's own lines; the key of "static"
     a credential through the LoadCredential= line README.md shows;
  5. checks, all on the container's loopback:
              instance "web" on :443 gets its certificate over ACME from a
              Pebble in the container (TLS-ALPN-01 answered on the socket
              systemd holds) on first activation; instance "static" on :8443
              (port from a drop-in) serves a static key handed over with
              LoadCredential= and forwards to a UNIX socket; instance
              "fresh" on :9443, an unedited copy of the shipped example.conf,
              refuses to start until systemd gives up on its socket, which
              reset-failed brings back; then the commands README.md shows
              after enabling (taken from README.md itself: systemctl status,
              journalctl -x, the TLSGATE_CLIENT_CN= and 'tlsgate@*'
              MESSAGE_ID= filters, try-reload-or-restart) with their output
              checked, and `apt-get purge tlsgate` with both instances
              running: stopped, links and /var/lib/private/tlsgate gone,
              the administrator's files kept and named;
  6. the container is always powered off (then killed by PID), the overlay
     unmounted, the run directory and cgroups removed.

Every check prints PASS or FAIL; the exit status is 0 only if all passed.
The journal and console of the container are kept in
/var/tmp/tlsgate-nspawn-artifacts/NAME/ for a failed run (--keep: always).
"""
import argparse
import ctypes
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import tg_pki  # noqa: E402  (python3-cryptography)
from cryptography import x509  # noqa: E402

SUITE = "bookworm"
CACHE = os.environ.get("TLSGATE_NSPAWN_CACHE", "/var/cache/tlsgate-nspawn")
# Beyond systemd itself: dbus for systemctl/systemd-analyze over the bus,
# pebble for ACME, socat for the backends; procps/iproute2/openssl to debug.
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "pebble", "socat", "procps", "iproute2",
                 "openssl"]

PEBBLE_DIR_PORT, PEBBLE_MGMT_PORT, DNS_PORT, CTS_PORT = 14000, 15000, 8053, 8055
BACKEND_PORT = 8080
WEB_PORT, STATIC_PORT, FRESH_PORT, ROOTKEY_PORT = 443, 8443, 9443, 7443
WEB_NAME, STATIC_NAME = "web.test", "static.test"
# The CA is reached by a name from /etc/hosts, so that name resolution runs
# inside the sandbox (RestrictAddressFamilies= without AF_NETLINK).
ACME_HOST = "acme.test"
# Where the .deb is put in the container for apt-get install ./NAME.
DEB_DIR = "/var/tmp/tlsgate-e2e"
ISSUER_KEY = "%s-%d-dir" % (ACME_HOST, PEBBLE_DIR_PORT)
STATE_CERT = "/var/lib/tlsgate/web/certmagic/certificates/%s/%s/%s.crt" % (
    ISSUER_KEY, WEB_NAME, WEB_NAME)
MSGID_OBTAINED = "b76424d408c04280a384db015bbecc68"
MSGID_DENIED = "9bc8d128d3474aee8c4e7a926e5e72cc"

T0 = time.monotonic()
FAILS = []


def log(msg):
    print("[nspawn-e2e %7.2fs] %s" % (time.monotonic() - T0, msg), flush=True)


def ok(msg):
    log("PASS: " + msg)


def fail(msg, detail=None):
    log("FAIL: " + msg)
    if detail:
        for line in str(detail).rstrip().splitlines()[-40:]:
            print("      " + line, flush=True)
    FAILS.append(msg)


def check(cond, msg, detail=None):
    if cond:
        ok(msg)
    else:
        fail(msg, detail)
    return bool(cond)


class Abort(Exception):
    """A step failed that later checks depend on."""


def run(argv, timeout=60, check=True, **kw):
    if "input" not in kw:
        kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    p = subprocess.run(argv, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise Abort("%s: exit status %d\n%s%s" % (" ".join(argv), p.returncode,
                                                   p.stdout or "", p.stderr or ""))
    return p


# ---------------------------------------------------------------------------
# Host side: mirror, build, rootfs

def debian_mirror():
    if os.environ.get("MIRROR"):
        return os.environ["MIRROR"]
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            for stanza in f.read().split("\n\n"):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                if SUITE in fields.get("Suites", "").split() and "deb" in fields.get("Types", ""):
                    return fields["URIs"].split()[0]
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        try:
            with open(path) as f:
                for line in f:
                    m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
                    if m and m.group(2) == SUITE:
                        return m.group(1)
        except OSError:
            pass
    return "http://deb.debian.org/debian"


def build(builddir):
    os.makedirs(builddir, exist_ok=True)
    with open(os.path.join(builddir, ".nspawn-e2e.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent runs share the build directory
        if not os.path.exists(os.path.join(builddir, "build.ninja")):
            run(["meson", "setup", builddir, TOP, "--prefix=/usr", "--buildtype=debugoptimized"],
                timeout=300)
        else:
            with open(os.path.join(builddir, "meson-info", "intro-buildoptions.json")) as f:
                prefix = [o["value"] for o in json.load(f) if o["name"] == "prefix"]
            if prefix != ["/usr"]:
                run(["meson", "configure", builddir, "--prefix=/usr"], timeout=60)
        run(["ninja", "-C", builddir], timeout=900)
    binary = os.path.join(builddir, "tlsgate")
    if not os.access(binary, os.X_OK):
        raise Abort("no %s after the build" % binary)
    return binary


def runtime_packages(binary):
    """Debian packages holding the shared libraries the binary loads."""
    libs = re.findall(r"=>\s*(/\S+)", run(["ldd", binary]).stdout)
    # Debian 12 is /usr-merged, but dpkg may know a library by its /lib path.
    paths = {}
    for lib in libs:
        real = os.path.realpath(lib)
        for cand in {lib, real, real.replace("/usr/lib/", "/lib/", 1)}:
            paths[cand] = lib
    out = run(["dpkg", "-S"] + sorted(paths), check=False).stdout
    pkgs, found = set(), set()
    for line in out.splitlines():
        owners, _, path = line.partition(": ")
        if path in paths and not owners.startswith("diversion "):
            pkgs.update(o.split(":")[0].strip() for o in owners.split(","))
            found.add(paths[path])
    missing = sorted(set(libs) - found)
    if missing:
        raise Abort("no Debian package holds %s (needed by %s)" % (", ".join(missing), binary))
    return sorted(pkgs)


def ensure_rootfs(packages, mirror):
    """The cached rootfs; built (a few minutes) when missing or its stamp differs."""
    rootfs = os.path.join(CACHE, "rootfs-" + SUITE)
    stamp_path = os.path.join(rootfs, ".tlsgate-nspawn-stamp")
    stamp = "%s %s %s\n" % (SUITE, mirror, ",".join(packages))
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent runs share the cache
        try:
            with open(stamp_path) as f:
                if f.read() == stamp:
                    return rootfs, False
        except OSError:
            pass
        tmp = rootfs + ".new"
        shutil.rmtree(tmp, ignore_errors=True)
        log("debootstrap %s from %s (minbase + %d packages) -> %s"
            % (SUITE, mirror, len(packages), rootfs))
        logf = os.path.join(CACHE, "debootstrap.log")
        with open(logf, "w") as f:
            p = subprocess.run(["debootstrap", "--variant=minbase",
                                "--include=" + ",".join(packages), SUITE, tmp, mirror],
                               stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                               timeout=1800)
        if p.returncode != 0:
            with open(logf) as f:
                tail = f.read()[-3000:]
            shutil.rmtree(tmp, ignore_errors=True)
            raise Abort("debootstrap failed (log %s):\n%s" % (logf, tail))
        for deb in glob.glob(os.path.join(tmp, "var/cache/apt/archives/*.deb")):
            os.unlink(deb)
        # An empty machine-id: each boot gets a fresh transient one.
        with open(os.path.join(tmp, "etc/machine-id"), "w"):
            pass
        with open(os.path.join(tmp, ".tlsgate-nspawn-stamp"), "w") as f:
            f.write(stamp)
        old = rootfs + ".old"
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(rootfs):
            os.rename(rootfs, old)
        os.rename(tmp, rootfs)
        shutil.rmtree(old, ignore_errors=True)
        return rootfs, True


# ---------------------------------------------------------------------------
# README.md's "Install and run under systemd": the path the test walks

def readme_section():
    with open(os.path.join(TOP, "README.md")) as f:
        text = f.read()
    m = re.search(r"^## Install and run under systemd\n(.*?)^## ", text, re.M | re.S)
    if not m:
        raise Abort("README.md has no section \"Install and run under systemd\"")
    return m.group(1)


def readme_commands():
    """The commands of the section's second shell block (the ones shown for
    after enabling), without their comments and sudo."""
    blocks = re.findall(r"^```sh\n(.*?)^```", readme_section(), re.M | re.S)
    if len(blocks) < 2:
        raise Abort("README.md: fewer than two ```sh blocks in \"Install and run under systemd\"")
    cmds = []
    for line in blocks[1].splitlines():
        line = re.sub(r"\s{2,}#.*$", "", line).strip()
        if line:
            cmds.append(re.sub(r"^sudo\s+", "", line))
    return cmds


def readme_credential(instance):
    """(drop-in text, key line) for a key handed over as a credential, made
    from what README.md shows for the instance "web"."""
    sec = readme_section()
    m = re.search(r"add `\[Service\]` and\s+`(LoadCredential=web\.key:[^`]+)`", sec)
    k = re.search(r"write `(key = web\.key)` in `web\.conf`", sec)
    if not m or not k:
        raise Abort("README.md: no LoadCredential=web.key:... drop-in or `key = web.key` line")
    dropin = "[Service]\n%s\n" % m.group(1)
    return (dropin.replace("web.key", instance + ".key"),
            k.group(1).replace("web.key", instance + ".key"))


def readme_credential_dropin(instance):
    return readme_credential(instance)[0]


def uncomment(text, settings, where):
    """What a newcomer does to example.conf: for each (name, value) the
    example's own commented line "#name = ..." becomes "name = value".
    A setting the example has no such line for fails (a finding about the
    example, not about the test)."""
    lines = text.split("\n")
    for name, value in settings:
        hits = [i for i, line in enumerate(lines) if re.match(r"#%s = " % re.escape(name), line)]
        if len(hits) != 1:
            raise Abort("%s: example.conf has %d lines \"#%s = ...\" to uncomment, not one"
                        % (where, len(hits), name))
        lines[hits[0]] = "%s = %s" % (name, value)
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# The Debian package

def find_deb(directory):
    """tlsgate_VERSION_ARCH.deb in directory (not the -dbgsym one)."""
    version = run(["dpkg-parsechangelog", "-l", os.path.join(TOP, "debian", "changelog"),
                   "-S", "Version"]).stdout.strip()
    version = version.split(":", 1)[-1]  # file names carry no epoch
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    deb = os.path.join(directory, "tlsgate_%s_%s.deb" % (version, arch))
    if not os.path.isfile(deb):
        raise Abort("no %s (found: %s)" % (deb, ", ".join(
            sorted(os.listdir(directory))) if os.path.isdir(directory) else "no such directory"))
    return deb


def build_deb(outdir):
    env = dict(os.environ, DEB_BUILD_OPTIONS="nocheck", DPKG_BUILDPACKAGE_OPTS="-Pnocheck")
    run([os.path.join(TOP, "packaging", "build-deb.sh"), outdir], timeout=1800, env=env)
    return find_deb(outdir)


def deb_binary(deb, directory):
    """The tlsgate binary inside the .deb (for the runtime libraries)."""
    run(["dpkg-deb", "-x", deb, directory])
    binary = os.path.join(directory, "usr", "bin", "tlsgate")
    if not os.access(binary, os.X_OK):
        raise Abort("%s holds no usr/bin/tlsgate" % deb)
    return binary


def unmet_depends(ct, deb):
    """The clauses of the .deb's Depends: that the container's installed
    packages do not satisfy, each with what is installed instead."""
    depends = run(["dpkg-deb", "-f", deb, "Depends"]).stdout.strip()
    if not depends:
        raise Abort("%s has no Depends: field" % deb)
    unmet = []
    for clause in depends.split(","):
        seen = []
        for alt in clause.split("|"):
            m = re.match(r"\s*([a-z0-9][a-z0-9+.-]*)(?::\S+)?\s*(?:\(\s*([<>=]+)\s*([^)\s]+)\s*\))?"
                         r"\s*$", alt)
            if not m:
                raise Abort("%s: cannot parse Depends: %r" % (deb, alt))
            name, op, want = m.groups()
            p = ct.exec(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${Version}", name],
                        check=False)
            status, _, have = p.stdout.partition("|")
            if p.returncode != 0 or not status.startswith("ii"):
                seen.append("%s not installed" % name)
                continue
            if op and run(["dpkg", "--compare-versions", have, op, want],
                          check=False).returncode != 0:
                seen.append("%s %s installed" % (name, have))
                continue
            break
        else:
            unmet.append("%s (%s)" % (clause.strip(), "; ".join(seen)))
    return unmet


def tlsgate_units(ct):
    """{unit: (ActiveState, file state)} of every tlsgate unit systemd has
    loaded or has a file for (an unloaded unit is inactive)."""
    out = ct.exec(["systemctl", "list-units", "--all", "--plain", "--no-legend",
                   "tlsgate*"], check=False).stdout
    active = {f[0]: f[2] for f in (line.split() for line in out.splitlines()) if len(f) > 2}
    out = ct.exec(["systemctl", "list-unit-files", "--plain", "--no-legend", "tlsgate*"],
                  check=False).stdout
    files = {f[0]: f[1] for f in (line.split() for line in out.splitlines()) if len(f) > 1}
    return {u: (active.get(u, "inactive"), files.get(u, "-"))
            for u in sorted(set(active) | set(files))}


def install_checks(ct, deb):
    """apt-get install ./tlsgate_*.deb as README.md says, inside the booted
    container, and what the maintainer scripts must (not) have done."""
    name = os.path.basename(deb)
    unmet = unmet_depends(ct, deb)
    if not check(not unmet, "the container's packages satisfy Depends: of %s" % name,
                 "unmet: " + "\n".join(unmet)):
        raise Abort("the rootfs lacks what %s depends on (add it to BASE_PACKAGES): %s"
                    % (name, "; ".join(unmet)))
    p = ct.exec(["sh", "-c", "cd %s && DEBIAN_FRONTEND=noninteractive apt-get install -y "
                 "./%s" % (DEB_DIR, name)], timeout=300, check=False)
    status = ct.exec(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Version}", "tlsgate"],
                     check=False).stdout.strip()
    if not check(p.returncode == 0 and status.startswith("ii"),
                 "apt-get install ./%s in the container (offline): exit %d, dpkg status %r"
                 % (name, p.returncode, status), p.stdout + p.stderr):
        raise Abort("the package did not install")

    units = tlsgate_units(ct)
    wrong = {u: st for u, st in units.items()
             if st[0] != "inactive" or st[1] not in ("disabled", "indirect", "static")}
    links = ct.exec(["find", "/etc/systemd/system", "-type", "l", "-name", "tlsgate*"],
                    check=False).stdout.split()
    check(units and not wrong and not links,
          "installing enables and starts nothing: %s" % ", ".join(
              "%s %s/%s" % (u, a, e) for u, (a, e) in units.items()),
          "active or enabled: %s; links: %s" % (wrong, links))

    conffiles = ct.exec(["dpkg-query", "-W", "-f", "${Conffiles}", "tlsgate"]).stdout
    md5 = dict(line.split()[:2] for line in conffiles.splitlines() if len(line.split()) >= 2)
    have = ct.exec(["md5sum", "/etc/tlsgate/example.conf"], check=False).stdout.split()
    check(md5.get("/etc/tlsgate/example.conf") and have
          and have[0] == md5["/etc/tlsgate/example.conf"],
          "/etc/tlsgate/example.conf installed as a conffile, unchanged", conffiles)

    listed = ct.exec(["dpkg", "-L", "tlsgate"]).stdout.split()
    shipped = {os.path.basename(f): f for f in listed if "/systemd/system/" in f}
    want = ("tlsgate.socket", "tlsgate.service", "tlsgate@.socket", "tlsgate@.service")
    fragments = {u: ct.prop(u.replace("@", "@web"), "FragmentPath") for u in want}
    real = {u: ct.exec(["realpath", "-e", f], check=False).stdout.strip()
            for u, f in fragments.items()}
    check(all(u in shipped for u in want)
          and all(real[u] and real[u] == ct.exec(["realpath", "-e", shipped[u]],
                                                 check=False).stdout.strip() for u in want),
          "the units are where the package puts them and systemd loads them from there: %s"
          % ", ".join(sorted(shipped.values())), "dpkg -L: %s\nFragmentPath: %s"
          % (shipped, fragments))

    catalog = ct.exec(["journalctl", "--list-catalog"], check=False).stdout
    check(MSGID_DENIED in catalog and MSGID_OBTAINED in catalog,
          "the package's journal catalog is compiled (journalctl --list-catalog lists %s)"
          % MSGID_DENIED)


def newcomer_configs(ct):
    """/etc/tlsgate/example.conf copied and edited as README.md says: the
    example's own lines uncommented and changed, nothing written anew."""
    key_line = readme_credential("static")[1]
    key_name, _, key_value = key_line.partition(" = ")
    configs = {
        # shutdown-timeout bounds the drain check should tlsgate fail to
        # exit on its own.
        "web": [("target", "127.0.0.1:%d" % BACKEND_PORT),
                ("auto-acme-cert", WEB_NAME),
                ("auto-acme-email", "admin@" + WEB_NAME),
                ("auto-acme-agree-to-tos", "true"),
                ("auto-acme-testca", "https://%s:%d/dir" % (ACME_HOST, PEBBLE_DIR_PORT)),
                ("cacert", "/etc/tlsgate/clients-ca.pem"),
                ("allow-cn", "frontend"),
                ("shutdown-timeout", "30s")],
        "static": [("target", "unix:/run/e2e-echo/echo.sock"),
                   ("cert", "/etc/tlsgate/static.crt"),
                   (key_name, key_value),
                   ("cacert", "/etc/tlsgate/clients-ca.pem"),
                   ("allow-cn", "frontend"),
                   ("shutdown-timeout", "30s")],
        "fresh": [],
    }
    for instance, settings in configs.items():
        path = "/etc/tlsgate/%s.conf" % instance
        ct.exec(["cp", "/etc/tlsgate/example.conf", path])
        if settings:
            text = ct.exec(["cat", path]).stdout
            ct.exec(["sh", "-c", "cat > " + path], input=uncomment(text, settings, path))
    ok("cp /etc/tlsgate/example.conf to web.conf, static.conf (edited: only the example's "
       "lines uncommented) and fresh.conf (unedited)")


# ---------------------------------------------------------------------------
# Files put into the container before it boots

def write(root, path, text, mode=0o644):
    full = root + path
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w" if isinstance(text, str) else "wb") as f:
        f.write(text)
    os.chmod(full, mode)


def copy(root, src, path, mode=0o644):
    with open(src, "rb") as f:
        write(root, path, f.read(), mode)


def prepare_root(root, name, pki):
    write(root, "/etc/hostname", name + "\n")
    write(root, "/etc/hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
          "127.0.0.1 %s\n" % ACME_HOST)
    E = "/etc/tlsgate-e2e"

    # Pebble with mock DNS, both in the container; Pebble's tlsPort is the
    # port of tlsgate@web.socket.
    copy(root, pki["pebble_ca"], E + "/pebble-https-ca.pem")
    copy(root, pki["pebble_cert"], E + "/pebble-https.crt")
    copy(root, pki["pebble_key"], E + "/pebble-https.key", 0o600)
    write(root, E + "/pebble.json", json.dumps({"pebble": {
        "listenAddress": "127.0.0.1:%d" % PEBBLE_DIR_PORT,
        "managementListenAddress": "127.0.0.1:%d" % PEBBLE_MGMT_PORT,
        "certificate": E + "/pebble-https.crt",
        "privateKey": E + "/pebble-https.key",
        "httpPort": 5002,
        "tlsPort": WEB_PORT,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }}, indent=2) + "\n")
    S = "/etc/systemd/system"
    write(root, S + "/e2e-challtestsrv.service", """[Unit]
Description=e2e: mock DNS for Pebble (every name is 127.0.0.1)
[Service]
ExecStart=/usr/bin/pebble-challtestsrv -dns01 127.0.0.1:%d -management 127.0.0.1:%d \\
    -http01 "" -https01 "" -tlsalpn01 "" -defaultIPv4 127.0.0.1 -defaultIPv6 ""
""" % (DNS_PORT, CTS_PORT))
    write(root, S + "/e2e-pebble.service", """[Unit]
Description=e2e: Pebble ACME test CA
Requires=e2e-challtestsrv.service
After=e2e-challtestsrv.service
[Service]
Environment=PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0
ExecStart=/usr/bin/pebble -config %s/pebble.json -dnsserver 127.0.0.1:%d
""" % (E, DNS_PORT))
    # Echo backends: TCP for "web", a UNIX socket for "static".
    write(root, S + "/e2e-echo-tcp.service", """[Unit]
Description=e2e: TCP echo backend
[Service]
ExecStart=/usr/bin/socat TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr EXEC:/bin/cat
""" % BACKEND_PORT)
    write(root, S + "/e2e-echo-unix.service", """[Unit]
Description=e2e: UNIX socket echo backend
[Service]
RuntimeDirectory=e2e-echo
RuntimeDirectoryMode=0755
ExecStart=/usr/bin/socat UNIX-LISTEN:/run/e2e-echo/echo.sock,fork,mode=0666 EXEC:/bin/cat
""")

    # tlsgate@web: ACME from the Pebble above; the client CA is public.
    # The instances' settings are made after the package is installed, from
    # its example.conf (newcomer_configs()).
    copy(root, pki["client_ca"], "/etc/tlsgate/clients-ca.pem")
    # Pebble's HTTPS is trusted through SSL_CERT_FILE, set in a drop-in.
    write(root, S + "/tlsgate@web.service.d/e2e.conf", """[Service]
Environment=SSL_CERT_FILE=%s/pebble-https-ca.pem
""" % E)

    # tlsgate@static: a second instance side by side, on :8443 from a
    # drop-in, key as a credential (root-only file the dynamic user cannot
    # read directly), target a UNIX socket. The credential's drop-in is what
    # `systemctl edit` would write with the lines README.md shows.
    copy(root, pki["static_cert"], "/etc/tlsgate/static.crt")
    copy(root, pki["static_key"], "/etc/tlsgate/private/static.key", 0o600)
    os.chmod(root + "/etc/tlsgate/private", 0o700)
    write(root, S + "/tlsgate@static.socket.d/port.conf", """[Socket]
ListenStream=
ListenStream=%d
""" % STATIC_PORT)
    write(root, S + "/tlsgate@static.service.d/override.conf",
          readme_credential_dropin("static"))

    # tlsgate@fresh: an unedited copy of the shipped example (made in
    # newcomer_configs()), on its own port.
    write(root, S + "/tlsgate@fresh.socket.d/port.conf", """[Socket]
ListenStream=
ListenStream=%d
""" % FRESH_PORT)


def make_pki(directory):
    os.makedirs(directory, exist_ok=True)
    clients = tg_pki.CA(directory, "clients-ca", "e2e client CA")
    frontend = clients.issue("frontend", cn="frontend")
    intruder = clients.issue("intruder", cn="intruder")
    servers = tg_pki.CA(directory, "servers-ca", "e2e server CA")
    static = servers.issue("static", cn=STATIC_NAME, dns=[STATIC_NAME], server=True,
                           client=False)
    rotated = servers.issue("static-rotated", cn=STATIC_NAME, dns=[STATIC_NAME], server=True,
                            client=False)
    https = tg_pki.CA(directory, "pebble-https-ca", "e2e pebble https CA")
    pebble = https.issue("pebble-https", cn=ACME_HOST, dns=[ACME_HOST, "localhost"],
                         ips=["127.0.0.1", "::1"], server=True, client=False)
    return {
        "client_ca": clients.cert_path,
        "frontend": (frontend.cert_path, frontend.key_path),
        "intruder": (intruder.cert_path, intruder.key_path),
        "servers_ca": servers.cert_path,
        "static_cert": static.cert_path, "static_key": static.key_path,
        "rotated_cert": rotated.cert_path, "rotated_key": rotated.key_path,
        "pebble_ca": https.cert_path,
        "pebble_cert": pebble.cert_path, "pebble_key": pebble.key_path,
    }


# ---------------------------------------------------------------------------
# The container

class Container:
    def __init__(self, name, rootfs, artifacts, keep):
        self.name, self.rootfs, self.artifacts, self.keep = name, rootfs, artifacts, keep
        self.run_dir = "/var/tmp/tlsgate-nspawn-run-" + name
        self.root = os.path.join(self.run_dir, "root")
        self.overlay = False
        self.proc = None
        self.leader = None
        self.netns_fd = None
        self.cgroup = "tlsgate-nspawn-" + name
        self.host_systemd = os.path.isdir("/run/systemd/system")

    # -- root ----------------------------------------------------------------
    def make_root(self):
        shutil.rmtree(self.run_dir, ignore_errors=True)
        for d in ("upper", "work", "root"):
            os.makedirs(os.path.join(self.run_dir, d))
        if os.environ.get("TLSGATE_NSPAWN_COPY") == "1":
            why = "TLSGATE_NSPAWN_COPY=1"
        else:
            p = run(["mount", "-t", "overlay", "overlay", "-o",
                     "lowerdir=%s,upperdir=%s/upper,workdir=%s/work"
                     % (self.rootfs, self.run_dir, self.run_dir), self.root], check=False)
            if p.returncode == 0:
                self.overlay = True
                return "overlayfs over the cached rootfs"
            why = "no overlayfs: " + p.stderr.strip()
        run(["cp", "-a", "--reflink=auto", self.rootfs + "/.", self.root], timeout=600)
        return "copy of the cached rootfs (%s)" % why

    # -- boot ----------------------------------------------------------------
    def boot(self, timeout=60):
        args = ["systemd-nspawn", "-D", self.root, "-M", self.name, "--private-network",
                "--console=read-only", "-b"]
        cgroup_dirs = []
        if not self.host_systemd:
            # No systemd (machined, D-Bus) on the host: nspawn gets its own
            # cgroup, made here, and does not register.
            args[1:1] = ["--register=no", "--keep-unit"]
            for h in ("systemd", "unified"):
                if os.path.isdir("/sys/fs/cgroup/" + h):
                    d = "/sys/fs/cgroup/%s/%s" % (h, self.cgroup)
                    os.makedirs(d, exist_ok=True)
                    cgroup_dirs.append(d)
            if not cgroup_dirs and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                d = "/sys/fs/cgroup/" + self.cgroup
                os.makedirs(d, exist_ok=True)
                cgroup_dirs.append(d)
        self.cgroup_dirs = cgroup_dirs

        def preexec():
            for d in cgroup_dirs:
                with open(d + "/cgroup.procs", "w") as f:
                    f.write(str(os.getpid()))
            os.setsid()

        os.makedirs(self.artifacts, exist_ok=True)
        self.console = open(os.path.join(self.artifacts, "console.log"), "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.console,
                                     stderr=subprocess.STDOUT, preexec_fn=preexec)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Abort("systemd-nspawn exited with %s:\n%s"
                            % (self.proc.returncode, self.console_text()))
            leader = self._find_leader()
            if leader and os.path.exists("/proc/%d/root/run/systemd/private" % leader):
                self.leader = leader
                break
            time.sleep(0.05)
        else:
            raise Abort("no systemd in the container after %ds:\n%s"
                        % (timeout, self.console_text()))
        self.netns_fd = os.open("/proc/%d/ns/net" % self.leader, os.O_RDONLY)
        left = max(5, deadline - time.monotonic())
        p = self.exec(["systemctl", "is-system-running", "--wait"], timeout=left, check=False)
        return p.stdout.strip()

    def _find_leader(self):
        try:
            kids = open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)).read()
        except OSError:
            return None
        for pid in kids.split():
            try:
                if open("/proc/%s/comm" % pid).read().strip() == "systemd":
                    return int(pid)
            except OSError:
                pass
        return None

    def console_text(self):
        try:
            with open(os.path.join(self.artifacts, "console.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    # -- inside --------------------------------------------------------------
    def exec(self, argv, timeout=30, check=True, input=None):
        """Runs argv in all the container's namespaces, with a clean environment."""
        cmd = ["nsenter", "-t", str(self.leader), "-a", "--", "env", "-i",
               "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "TERM=dumb", "LANG=C.UTF-8", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=",
               "SYSTEMD_LOG_COLOR=0"] + argv
        kw = {"input": input} if input is not None else {}
        return run(cmd, timeout=timeout, check=check, **kw)

    def prop(self, unit, name):
        return self.exec(["systemctl", "show", "-P", name, unit]).stdout.strip()

    def wait_prop(self, unit, name, wanted, timeout, give_up=()):
        """Polls until unit's property is one of wanted; returns the last value."""
        wanted = (wanted,) if isinstance(wanted, str) else tuple(wanted)
        deadline = time.monotonic() + timeout
        while True:
            v = self.prop(unit, name)
            if v in wanted or v in give_up or time.monotonic() > deadline:
                return v
            time.sleep(0.1)

    # -- sockets in the container's network namespace -------------------------
    _libc = ctypes.CDLL(None, use_errno=True)
    _ns_lock = threading.Lock()

    def socket(self, family=socket.AF_INET):
        """A socket created in the container's network namespace (only that
        matters for where it connects); the calling thread switches in and
        back for the socket() call only."""
        CLONE_NEWNET = 0x40000000
        with self._ns_lock:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                if self._libc.setns(self.netns_fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns into the container")
                try:
                    s = socket.socket(family, socket.SOCK_STREAM)
                finally:
                    if self._libc.setns(own, CLONE_NEWNET) != 0:
                        os._exit(99)  # never continue in the wrong namespace
            finally:
                os.close(own)
        return s

    # -- teardown ------------------------------------------------------------
    def save_journal(self):
        if not self.leader or not self.proc or self.proc.poll() is not None:
            return
        try:
            p = self.exec(["journalctl", "--no-pager", "-b", "-o", "short-precise"],
                          timeout=30, check=False)
            with open(os.path.join(self.artifacts, "journal.txt"), "w") as f:
                f.write(p.stdout)
        except Exception as e:  # noqa: BLE001 - best effort
            log("could not save the journal: %s" % e)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            if self.leader:
                try:
                    self.exec(["systemctl", "poweroff", "--no-block"], timeout=10, check=False)
                except Exception:  # noqa: BLE001
                    pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                log("container did not power off in 20s: SIGTERM to nspawn %d" % self.proc.pid)
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    log("SIGKILL to nspawn %d and its container" % self.proc.pid)
                    self.proc.kill()
                    if self.leader:
                        try:
                            os.kill(self.leader, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    self.proc.wait(10)
        if self.netns_fd is not None:
            os.close(self.netns_fd)
            self.netns_fd = None
        for d in getattr(self, "cgroup_dirs", []):
            # Leftover processes would keep the cgroup; there must be none.
            for sub, dirs, _ in sorted(os.walk(d), key=lambda t: -len(t[0])):
                try:
                    with open(os.path.join(sub, "cgroup.procs")) as f:
                        pids = f.read().split()
                    for pid in pids:
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    if pids:
                        time.sleep(0.2)
                    os.rmdir(sub)
                except OSError:
                    pass
        shutil.rmtree("/run/systemd/nspawn/propagate/" + self.name, ignore_errors=True)
        if self.overlay:
            if run(["umount", self.root], check=False).returncode != 0:
                run(["umount", "-l", self.root], check=False)
        if not self.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# TLS clients (from this process, in the container's network namespace)

class Client:
    def __init__(self, ct, port, sni, cafile, cert=None, timeout=10):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile)
        if cert:
            ctx.load_cert_chain(*cert)
        raw = ct.socket()
        raw.settimeout(timeout)
        try:
            raw.connect(("127.0.0.1", port))
            self.s = ctx.wrap_socket(raw, server_hostname=sni)
        except BaseException:
            raw.close()
            raise

    def echo(self, data):
        self.s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = self.s.recv(min(65536, len(data) - len(got)))
            if not chunk:
                raise ConnectionError("closed after %d of %d echoed bytes" % (len(got), len(data)))
            got += chunk
        if got != data:
            raise ConnectionError("echo differs")
        return True

    def peer_cert(self):
        return x509.load_der_x509_certificate(self.s.getpeercert(binary_form=True))

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def activate(ct, sock, port):
    """A connection to sock's port that starts its service (the caller
    closes it); a refusal is only logged: the socket may have given up."""
    s = ct.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
    except OSError as e:
        log("      connecting to %s: %s" % (sock, e))
    return s


def echo_once(ct, port, sni, cafile, cert, data, timeout=10):
    """One connection that echoes data: True, or the error it met."""
    try:
        c = Client(ct, port, sni, cafile, cert, timeout=timeout)
        try:
            return c.echo(data)
        finally:
            c.close()
    except (OSError, ssl.SSLError) as e:
        return e


def https_get(ct, port, path, cafile, timeout=5):
    ctx = ssl.create_default_context(cafile=cafile)
    raw = ct.socket()
    raw.settimeout(timeout)
    try:
        raw.connect(("127.0.0.1", port))
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(("GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" % path).encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    finally:
        raw.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0]:
        raise OSError("GET %s: %r" % (path, head[:100]))
    return body


def wait_tcp(ct, port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = ct.socket()
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
            return True
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    return False


def journal(ct, *args):
    p = ct.exec(["journalctl", "--no-pager", "-o", "json"] + list(args), check=False)
    out = []
    for line in p.stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def status_uid(ct, pid):
    return proc_status(ct, pid).get("Uid", "?").split()[0]


def proc_status(ct, pid):
    p = ct.exec(["cat", "/proc/%s/status" % pid], check=False)
    return dict(re.findall(r"^(\w+):\s*(.*)$", p.stdout, re.M))


# ---------------------------------------------------------------------------
# The checks

def messages_since(ct, unit, cursor_time):
    """MESSAGE of unit's journal entries since a `date +%s.%N` of the container."""
    return [e.get("MESSAGE", "") for e in journal(ct, "-u", unit, "--since", "@" + cursor_time)
            if isinstance(e.get("MESSAGE", ""), str)]


def container_time(ct):
    return ct.exec(["date", "+%s.%N"]).stdout.strip()


def broken_reload_checks(ct, svc, conf, port, sni, cafile, client_cert):
    """systemctl reload with settings that cannot be served fails (the
    units' ExecReload= runs `tlsgate reload`, which waits for the running
    tlsgate's answer) and says why in the journal; tlsgate keeps serving
    what it had. Fixed, the file reloads."""
    pid = ct.prop(svc, "MainPID")
    with open(ct.root + conf) as f:
        good = f.read()
    with open(ct.root + conf, "a") as f:
        f.write("allow-cn frontend-typo\n")
    line = good.count("\n") + 1
    since = container_time(ct)
    p = ct.exec(["systemctl", "reload", svc], check=False)
    needle = '%s:%d: allow-cn: missing "=" between name and value' % (conf, line)
    daemon = [e.get("MESSAGE", "") for e in journal(ct, "-u", svc, "_PID=" + pid,
                                                      "--since", "@" + since)]
    control = [m for m in messages_since(ct, svc, since) if m not in daemon]
    check(p.returncode != 0 and any(needle in str(m) and "reload failed" in str(m)
                                     for m in daemon)
          and any(needle in m for m in control),
          "systemctl reload %s with a typo in %s: exit %d; tlsgate (pid %s) and `tlsgate "
          "reload` both say \"%s\"" % (svc, conf, p.returncode, pid, needle),
          p.stderr + "\n".join(str(m) for m in (daemon + control)[-10:]))
    check(ct.prop(svc, "MainPID") == pid and ct.prop(svc, "ActiveState") == "active",
          "tlsgate (pid %s) still runs, its settings kept" % pid)
    still = echo_once(ct, port, sni, cafile, client_cert, b"after a failed reload\n")
    check(still is True, "a new connection after the failed reload works (%s)" % still)
    with open(ct.root + conf, "w") as f:
        f.write(good)
    since = container_time(ct)
    p = ct.exec(["systemctl", "reload", svc], check=False)
    daemon = [e.get("MESSAGE", "") for e in journal(ct, "-u", svc, "_PID=" + pid,
                                                      "--since", "@" + since)]
    check(p.returncode == 0 and any(str(m).startswith("reloaded certificate") for m in daemon)
          and ct.prop(svc, "MainPID") == pid,
          "fixed, systemctl reload %s succeeds and tlsgate logs \"reloaded certificate\"" % svc,
          p.stderr + "\n".join(str(m) for m in daemon[-10:]))


def rotation_checks(ct, pki, svc, conf, frontend):
    """The documented rotation of a LoadCredential= key: a reload fails and
    says a restart is needed, the old pair keeps serving; the restart keeps
    the socket, drains a live connection, and the connection made meanwhile
    is served by the new process with the new certificate."""
    cafile = pki["servers_ca"]
    with open(pki["static_cert"], "rb") as f:
        old_cert = x509.load_pem_x509_certificate(f.read())
    with open(pki["rotated_cert"], "rb") as f:
        new_cert = x509.load_pem_x509_certificate(f.read())
    pid = ct.prop(svc, "MainPID")
    # Unchanged files: the reload works with the credential (systemd 252
    # shows credentials to the main process only, not to ExecReload=).
    p = ct.exec(["systemctl", "reload", svc], check=False)
    check(p.returncode == 0 and ct.prop(svc, "MainPID") == pid,
          "systemctl reload %s with its LoadCredential= key: exit 0" % svc, p.stderr)
    copy(ct.root, pki["rotated_cert"], "/etc/tlsgate/static.crt")
    copy(ct.root, pki["rotated_key"], "/etc/tlsgate/private/static.key", 0o600)
    since = container_time(ct)
    p = ct.exec(["systemctl", "reload", svc], check=False)
    msgs = messages_since(ct, svc, since)
    needle = "the credential static.key is systemd's copy from when the service started"
    check(p.returncode != 0 and any(needle in m and conf in m for m in msgs),
          "rotated key and certificate, systemctl reload %s fails: \"%s\"" % (svc, needle),
          p.stderr + "\n".join(msgs[-10:]))
    c = Client(ct, STATIC_PORT, STATIC_NAME, cafile, frontend)
    check(c.peer_cert() == old_cert and ct.prop(svc, "MainPID") == pid,
          "the old certificate is still served by the same process")
    c.close()

    live = Client(ct, STATIC_PORT, STATIC_NAME, cafile, frontend, timeout=40)
    live.echo(b"open before the restart\n")
    ct.exec(["systemctl", "restart", "--no-block", svc])
    state = ct.wait_prop(svc, "ActiveState", "deactivating", 10, give_up=("inactive", "failed"))
    waiting = {}

    def connect_meanwhile():
        try:
            w = Client(ct, STATIC_PORT, STATIC_NAME, cafile, frontend, timeout=40)
            waiting["cert"] = w.peer_cert()
            waiting["echo"] = w.echo(b"connected during the drain\n")
            w.close()
        except (OSError, ssl.SSLError) as e:
            waiting["echo"] = e

    t = threading.Thread(target=connect_meanwhile)
    t.start()
    time.sleep(1.0)  # the connection waits in the socket's queue meanwhile
    try:
        drained = live.echo(os.urandom(256 * 1024))
    except (OSError, ssl.SSLError) as e:
        drained = e
    check(state == "deactivating" and drained is True and "echo" not in waiting,
          "systemctl restart %s: the old process drains (%s); a live connection still echoes "
          "(%s) while a new one waits" % (svc, state, drained))
    live.close()
    t.join(45)
    pid2 = ct.prop(svc, "MainPID")
    check(waiting.get("echo") is True and waiting.get("cert") == new_cert
          and pid2 not in ("0", pid) and ct.prop(svc.replace(".service", ".socket"),
                                                 "ActiveState") == "active",
          "the connection made during the drain was served by the new process (pid %s) with "
          "the rotated certificate (%s)" % (pid2, waiting.get("echo")))


def root_only_key_checks(ct):
    """A root-only key named directly (no LoadCredential=): exit status 2,
    no restart by Restart=, the journal names the config line and the
    LoadCredential= line to add."""
    svc, sock = "tlsgate@rootkey.service", "tlsgate@rootkey.socket"
    conf = "/etc/tlsgate/rootkey.conf"
    write(ct.root, conf, "target = unix:/run/e2e-echo/echo.sock\n"
          "cert = /etc/tlsgate/static.crt\n"
          "key = /etc/tlsgate/private/static.key\n"
          "cacert = /etc/tlsgate/clients-ca.pem\n"
          "allow-cn = frontend\n")
    write(ct.root, "/etc/systemd/system/%s.d/port.conf" % sock,
          "[Socket]\nListenStream=\nListenStream=%d\n" % ROOTKEY_PORT)
    ct.exec(["systemctl", "daemon-reload"])
    ct.exec(["systemctl", "start", sock])
    s = activate(ct, sock, ROOTKEY_PORT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and ct.prop(svc, "ExecMainStatus") != "2":
        time.sleep(0.2)
    s.close()
    msgs = [e.get("MESSAGE", "") for e in journal(ct, "-u", svc)]
    needle = ("%s:3: key /etc/tlsgate/private/static.key: cannot read: Permission denied" % conf)
    hint = "LoadCredential=static.key:/etc/tlsgate/private/static.key"
    check(ct.prop(svc, "ExecMainStatus") == "2" and ct.prop(svc, "NRestarts") == "0"
          and any(needle in m and hint in m and 'write "key = static.key"' in m for m in msgs
                  if isinstance(m, str)),
          "%s with a root-only key: exit status 2, not restarted (NRestarts=%s), journal: "
          "\"%s; ... %s ...\"" % (svc, ct.prop(svc, "NRestarts"), needle, hint),
          "\n".join(str(m) for m in msgs[-10:]))
    ct.exec(["systemctl", "stop", sock, svc], check=False)
    ct.exec(["systemctl", "reset-failed", sock, svc], check=False)


def checks(ct, pki, tmp):
    web_svc, web_sock = "tlsgate@web.service", "tlsgate@web.socket"
    st_svc, st_sock = "tlsgate@static.service", "tlsgate@static.socket"
    frontend, intruder = pki["frontend"], pki["intruder"]

    # -- static checks of the installed units, with systemd running ----------
    units = [web_sock, web_svc, st_sock, st_svc]
    p = ct.exec(["systemd-analyze", "verify", "--man=no"] + units, check=False)
    out = (p.stdout + p.stderr).strip()
    check(p.returncode == 0 and not out,
          "systemd-analyze verify (installed units, instances web and static): no output", out)
    for svc in (web_svc, "tlsgate.service"):
        p = ct.exec(["systemd-analyze", "security", "--no-pager", svc], check=False)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout)
        check(m and float(m.group(1)) <= 1.1,  # README.md promises 1.1
              "systemd-analyze security %s: exposure %s <= 1.1"
              % (svc, m.group(1) if m else "?"), p.stdout[-2000:] + p.stderr)

    # -- helpers: Pebble, mock DNS, echo backends -----------------------------
    ct.exec(["systemctl", "start", "e2e-pebble.service", "e2e-echo-tcp.service",
             "e2e-echo-unix.service"])
    ports = (CTS_PORT, DNS_PORT, PEBBLE_DIR_PORT, PEBBLE_MGMT_PORT, BACKEND_PORT)
    if not all(wait_tcp(ct, port, 20) for port in ports):
        raise Abort("Pebble or the echo backend did not come up:\n" + ct.exec(
            ["systemctl", "status", "--no-pager", "e2e-pebble", "e2e-challtestsrv",
             "e2e-echo-tcp"], check=False).stdout)
    pebble_root = os.path.join(tmp, "pebble-root.pem")
    deadline = time.monotonic() + 10
    while True:
        try:
            root_pem = https_get(ct, PEBBLE_MGMT_PORT, "/roots/0", pki["pebble_ca"])
            break
        except (OSError, ssl.SSLError) as e:
            if time.monotonic() > deadline:
                raise Abort("cannot fetch Pebble's root: %s" % e)
            time.sleep(0.1)
    with open(pebble_root, "wb") as f:
        f.write(root_pem)
    ok("Pebble (tlsPort %d) and echo backends running in the container" % WEB_PORT)

    # -- enable --now the socket; the service waits for a connection ----------
    t = time.monotonic()
    ct.exec(["systemctl", "enable", "--now", web_sock])
    check(ct.wait_prop(web_sock, "ActiveState", "active", 5) == "active",
          "systemctl enable --now %s: listening on %s" % (web_sock, ct.prop(web_sock, "Listen")))
    check(ct.prop(web_svc, "ActiveState") == "inactive"
          and ct.prop(web_svc, "MainPID") == "0",
          "%s inactive before the first connection" % web_svc)
    check(ct.prop(web_sock, "FileDescriptorName") == "https"
          and ct.prop(web_svc, "Type") == "notify",
          "FileDescriptorName=https, Type=notify")
    check(ct.exec(["test", "-e", STATE_CERT], check=False).returncode != 0,
          "no certificate in the StateDirectory yet")

    # -- first connection: activation, ACME on the socket, READY --------------
    t = time.monotonic()
    first_err, client, attempts = None, None, 0
    states = set()
    deadline = t + 90
    while time.monotonic() < deadline:
        attempts += 1
        try:
            client = Client(ct, WEB_PORT, WEB_NAME, pebble_root, frontend)
            client.echo(b"hello through tlsgate\n")
            break
        except (OSError, ssl.SSLError) as e:
            if client:
                client.close()
            client = None
            first_err = first_err or e
            states.add(ct.prop(web_svc, "ActiveState"))
            time.sleep(0.3)
    took = time.monotonic() - t
    if not check(client is not None,
                 "first connection activated %s; ACME (TLS-ALPN-01 via Pebble) issued %s; "
                 "mTLS client echoed through in %.1fs (%d attempts, states seen while "
                 "obtaining: %s; first refusal: %s)"
                 % (web_svc, WEB_NAME, took, attempts, ",".join(sorted(states)) or "-",
                    first_err),
                 ct.exec(["journalctl", "--no-pager", "-u", web_svc, "-u", "e2e-pebble"],
                         check=False).stdout):
        raise Abort("tlsgate@web never served a client")
    served = client.peer_cert()
    sans = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    check(sans.get_values_for_type(x509.DNSName) == [WEB_NAME],
          "served certificate is Pebble's for %s (issuer %s)"
          % (WEB_NAME, served.issuer.rfc4514_string()))
    check(ct.wait_prop(web_svc, "ActiveState", "active", 10) == "active",
          "%s active (SubState=%s, StatusText=%r)"
          % (web_svc, ct.prop(web_svc, "SubState"), ct.prop(web_svc, "StatusText")))
    client.close()

    pid = ct.prop(web_svc, "MainPID")
    stored = ct.exec(["cat", STATE_CERT], check=False).stdout
    check(stored.startswith("-----BEGIN CERTIFICATE-----") and
          x509.load_pem_x509_certificate(stored.encode()) == served,
          "certificate stored in the StateDirectory: %s" % STATE_CERT)
    p = ct.exec(["stat", "-L", "-c", "%u %a %n", STATE_CERT, "/var/lib/tlsgate/web"],
                check=False)
    modes = [line.split(" ", 2) for line in p.stdout.splitlines()]
    link = ct.exec(["readlink", "/var/lib/tlsgate/web"], check=False).stdout.strip()
    check(p.returncode == 0 and len(modes) == 2 and modes[0][0] == modes[1][0] == status_uid(
        ct, pid) and modes[0][1] == "600" and modes[1][1] == "700"
          and link.endswith("private/tlsgate/web"),
          "StateDirectory /var/lib/tlsgate/web -> %s (DynamicUser), owned by the service's "
          "user, directory 0700, certificate file 0600" % link, p.stdout + p.stderr)
    status = proc_status(ct, pid)
    check(status.get("NoNewPrivs") == "1" and status.get("Seccomp") == "2"
          and int(status.get("CapBnd", "1"), 16) == 0 and int(status.get("CapEff", "1"), 16) == 0
          and status.get("Uid", "0").split()[0] != "0",
          "sandbox in effect: uid %s, no capabilities, NoNewPrivs, seccomp filter"
          % status.get("Uid", "?").split()[0], json.dumps(status))
    check(ct.prop(web_svc, "WatchdogUSec") == "30s", "WatchdogSec=30s on the service")

    # -- denied clients -------------------------------------------------------
    for who, cert in (("a client without a certificate", None),
                      ("a client named intruder", intruder)):
        try:
            c = Client(ct, WEB_PORT, WEB_NAME, pebble_root, cert)
            try:
                c.echo(b"let me in\n")
                got_in = True
            except (OSError, ssl.SSLError):
                got_in = False
            c.close()
        except (OSError, ssl.SSLError):
            got_in = False
        check(not got_in, "%s is refused" % who)

    # -- reload keeps the main PID and live connections ------------------------
    live = Client(ct, WEB_PORT, WEB_NAME, pebble_root, frontend)
    live.echo(b"before reload\n")
    t = time.monotonic()
    p = ct.exec(["systemctl", "reload", web_svc], check=False)
    state = ct.wait_prop(web_svc, "ActiveState", "active", 10)
    took = time.monotonic() - t
    try:
        live_ok = live.echo(b"after reload, same connection\n")
    except (OSError, ssl.SSLError) as e:
        live_ok = e
    check(p.returncode == 0 and state == "active" and ct.prop(web_svc, "MainPID") == pid,
          "systemctl reload %s: active again in %.2fs, MainPID %s unchanged"
          % (web_svc, took, pid), p.stderr)
    check(live_ok is True, "a connection opened before the reload still works (%s)" % live_ok)
    new_ok = echo_once(ct, WEB_PORT, WEB_NAME, pebble_root, frontend, b"new after reload\n")
    check(new_ok is True, "a new connection after the reload works (%s)" % new_ok)
    live.close()
    broken_reload_checks(ct, web_svc, "/etc/tlsgate/web.conf", WEB_PORT, WEB_NAME, pebble_root,
                         frontend)

    # -- stop drains an in-flight transfer ------------------------------------
    inflight = Client(ct, WEB_PORT, WEB_NAME, pebble_root, frontend, timeout=40)
    part1 = os.urandom(64 * 1024)
    inflight.echo(part1)
    t = time.monotonic()
    ct.exec(["systemctl", "stop", "--no-block", web_svc])
    state = ct.wait_prop(web_svc, "ActiveState", "deactivating", 10,
                         give_up=("inactive", "failed"))
    check(state == "deactivating",
          "systemctl stop: %s deactivating (draining) while a transfer is open" % web_svc)
    time.sleep(1.0)  # the transfer carries on during the drain
    state = ct.prop(web_svc, "ActiveState")
    check(state == "deactivating", "still draining 1s later (%s, StatusText=%r)"
          % (state, ct.prop(web_svc, "StatusText")))
    part2 = os.urandom(1024 * 1024)
    try:
        drained = inflight.echo(part2)
    except (OSError, ssl.SSLError) as e:
        drained = e
    check(drained is True,
          "the in-flight transfer completed during the drain (64 KiB + 1 MiB echoed)"
          " (%s)" % drained)
    inflight.close()
    state = ct.wait_prop(web_svc, "ActiveState", ("inactive", "failed"), 45)
    took = time.monotonic() - t
    result = ct.prop(web_svc, "Result")
    check(state == "inactive" and result == "success"
          and ct.prop(web_svc, "ExecMainStatus") == "0",
          "stop finished after the client closed: %.1fs, ActiveState=%s Result=%s "
          "ExecMainStatus=%s" % (took, state, result, ct.prop(web_svc, "ExecMainStatus")))
    msgs = [e.get("MESSAGE", "") for e in journal(ct, "-u", web_svc, "_PID=" + pid)]
    check(any("drained" in m for m in msgs), "journal: tlsgate reported the drain",
          "\n".join(msgs[-10:]))

    # -- the socket stays and re-activates the service -------------------------
    check(ct.prop(web_sock, "ActiveState") == "active"
          and ct.prop(web_sock, "SubState") == "listening",
          "%s still listening after the service stopped" % web_sock)
    t = time.monotonic()
    try:
        c = Client(ct, WEB_PORT, WEB_NAME, pebble_root, frontend, timeout=30)
        again = c.echo(b"hello again\n")
        again_cert = c.peer_cert()
        c.close()
    except (OSError, ssl.SSLError) as e:
        again, again_cert = e, None
    pid2 = ct.prop(web_svc, "MainPID")
    check(again is True and ct.prop(web_svc, "ActiveState") == "active" and pid2 not in ("0", pid),
          "next connection re-activated %s (new MainPID %s) and got through in %.2fs (%s)"
          % (web_svc, pid2, time.monotonic() - t, again))
    check(again_cert == served,
          "re-activated service serves the stored certificate (no new ACME order)")
    msgs = [e.get("MESSAGE", "") for e in journal(ct, "-u", web_svc, "_PID=" + pid2)]
    check(any(m.startswith("serving stored certificate for " + WEB_NAME) for m in msgs),
          "journal: 'serving stored certificate for %s' after re-activation" % WEB_NAME,
          "\n".join(msgs[-10:]))

    # -- journal fields ------------------------------------------------------
    entries = journal(ct, "-u", web_svc)

    def has(field, value=None):
        return any(field in e and (value is None or e[field] == value) for e in entries)

    for field, value in (("TLSGATE_PEER", None), ("TLSGATE_CONN_ID", None),
                         ("TLSGATE_CLIENT_CN", "frontend"), ("TLSGATE_SNI", WEB_NAME),
                         ("TLSGATE_CERT_NAME", WEB_NAME), ("MESSAGE_ID", MSGID_OBTAINED),
                         ("MESSAGE_ID", MSGID_DENIED)):
        check(has(field, value), "journalctl -u tlsgate@web -o json: %s%s" % (
            field, "=" + value if value else " present"))
    denied = journal(ct, "-u", web_svc, "TLSGATE_CLIENT_CN=intruder")
    check(denied and all(e.get("TLSGATE_CLIENT_CN") == "intruder" for e in denied)
          and any(e.get("MESSAGE_ID") == MSGID_DENIED for e in denied),
          "journalctl -u tlsgate@web TLSGATE_CLIENT_CN=intruder: %d entries, the denial "
          "among them" % len(denied))
    peers = sorted({e["TLSGATE_PEER"] for e in entries if e.get("TLSGATE_PEER")})
    log("      %d client addresses in TLSGATE_PEER, e.g. %s" % (len(peers), peers[:2]))

    # -- a second instance side by side: drop-in port, credential, UNIX target --
    ct.exec(["systemctl", "enable", "--now", st_sock])
    listen = ct.prop(st_sock, "Listen")
    check(ct.prop(st_sock, "ActiveState") == "active" and str(STATIC_PORT) in listen
          and ":%d " % WEB_PORT not in listen + " ",
          "%s listening on %s (ListenStream= reset by a drop-in)" % (st_sock, listen))
    st_ok = echo_once(ct, STATIC_PORT, STATIC_NAME, pki["servers_ca"], frontend,
                      b"static instance, unix target\n", timeout=30)
    check(st_ok is True and ct.prop(st_svc, "ActiveState") == "active",
          "%s: LoadCredential= key (root-only file) via $CREDENTIALS_DIRECTORY, mTLS to a "
          "UNIX-socket target (%s)" % (st_svc, st_ok),
          ct.exec(["journalctl", "--no-pager", "-u", st_svc], check=False).stdout)
    check(ct.prop(web_sock, "ActiveState") == "active"
          and ct.prop(web_svc, "ActiveState") == "active",
          "tlsgate@web and tlsgate@static run side by side")

    rotation_checks(ct, pki, st_svc, "/etc/tlsgate/static.conf", frontend)
    root_only_key_checks(ct)

    # A changed socket needs the socket restarted, which stops the running
    # service too (as README.md and tlsgate(8) say): a new main process.
    pid = ct.prop(st_svc, "MainPID")
    ct.exec(["systemctl", "restart", st_sock], timeout=60)
    after = (ct.prop(st_svc, "ActiveState"), ct.prop(st_svc, "MainPID"))
    check(pid not in ("", "0") and after[1] != pid and ct.prop(st_sock, "ActiveState") == "active",
          "systemctl restart %s: the service (pid %s) went down with it: now %s, pid %s"
          % (st_sock, pid, after[0], after[1]))

    # -- an unedited copy of example.conf does nothing -------------------------
    # One connection to its socket: every start fails at once with exit
    # status 2 (not restarted), the pending connection triggers the next,
    # and after five systemd gives up on the socket; reset-failed recovers.
    fr_svc, fr_sock = "tlsgate@fresh.service", "tlsgate@fresh.socket"
    ct.exec(["systemctl", "enable", "--now", fr_sock])
    check(ct.prop(fr_sock, "ActiveState") == "active", "%s listening" % fr_sock)
    s = activate(ct, fr_sock, FRESH_PORT)
    deadline = time.monotonic() + 30
    while (time.monotonic() < deadline
           and ct.prop(fr_sock, "Result") != "service-start-limit-hit"):
        time.sleep(0.2)
    s.close()
    sock_state = (ct.prop(fr_sock, "ActiveState"), ct.prop(fr_sock, "Result"))
    check(sock_state == ("failed", "service-start-limit-hit"),
          "%s after failed starts: %s (what the docs tell to reset-failed)"
          % (fr_sock, "/".join(sock_state)))
    msgs = [e.get("MESSAGE", "") for e in journal(ct, "-u", fr_svc)]
    msgs = [m for m in msgs if isinstance(m, str)]
    needle = "/etc/tlsgate/fresh.conf: --target is required"
    check(any(needle in m for m in msgs) and ct.prop(fr_svc, "ExecMainStatus") == "2",
          "%s from an unedited example.conf: exit status 2, journal says \"%s\""
          % (fr_svc, needle), "\n".join(msgs[-10:]))
    check(not any("acme" in m.lower() for m in msgs),
          "%s: no ACME activity from an unedited example.conf" % fr_svc, "\n".join(msgs[-10:]))
    ct.exec(["systemctl", "reset-failed", fr_sock, fr_svc])
    ct.exec(["systemctl", "start", fr_sock])
    check(ct.prop(fr_sock, "ActiveState") == "active",
          "%s listening again after systemctl reset-failed" % fr_sock)
    # Reload before the first connection: what the docs say to use instead.
    p = ct.exec(["systemctl", "reload", fr_svc], check=False)
    check(p.returncode != 0 and "not active, cannot reload" in p.stderr,
          "systemctl reload %s before any connection fails: %s" % (fr_svc, p.stderr.strip()))
    p = ct.exec(["systemctl", "try-reload-or-restart", fr_svc], check=False)
    check(p.returncode == 0 and ct.prop(fr_svc, "ActiveState") == "inactive",
          "systemctl try-reload-or-restart %s: exit %d, leaves it inactive"
          % (fr_svc, p.returncode), p.stderr)
    ct.exec(["systemctl", "disable", "--now", fr_sock], check=False)
    ct.exec(["systemctl", "reset-failed", fr_sock, fr_svc], check=False)

    # -- everything stops cleanly ---------------------------------------------
    ct.exec(["systemctl", "stop", web_svc, st_svc, web_sock, st_sock], timeout=60, check=False)
    results = {u: ct.prop(u, "Result") for u in (web_svc, st_svc)}
    check(all(r == "success" for r in results.values()), "final stop: %s" % results)
    failed = ct.exec(["systemctl", "--failed", "--plain", "--no-legend"], check=False).stdout
    check(not failed.strip(), "no failed units in the container", failed)


# ---------------------------------------------------------------------------
# After checks(): what README.md shows after enabling, then purge

def newcomer_commands_checks(ct, pki, tmp):
    """Runs the commands README.md shows after `systemctl enable --now`,
    exactly as written there (without sudo), and checks their output for
    what README.md promises."""
    web_svc, web_sock = "tlsgate@web.service", "tlsgate@web.socket"
    st_svc, st_sock = "tlsgate@static.service", "tlsgate@static.socket"
    pebble_root = os.path.join(tmp, "pebble-root.pem")
    # Both sockets listening (they are enabled), a client of each instance
    # through, and an intruder denied by each.
    ct.exec(["systemctl", "start", web_sock, st_sock], timeout=60)
    for port, sni, ca in ((WEB_PORT, WEB_NAME, pebble_root),
                          (STATIC_PORT, STATIC_NAME, pki["servers_ca"])):
        try:
            c = Client(ct, port, sni, ca, pki["frontend"], timeout=30)
            c.echo(b"a newcomer's client\n")
            c.close()
        except (OSError, ssl.SSLError) as e:
            raise Abort("a client to :%d after the checks: %s" % (port, e))
        try:
            c = Client(ct, port, sni, ca, pki["intruder"])
            c.echo(b"denied\n")
            c.close()
            fail("intruder got through to :%d" % port)
        except (OSError, ssl.SSLError):
            pass
    pid = ct.prop(web_svc, "MainPID")

    cmds = readme_commands()
    log("      README.md's commands: %s" % " | ".join(cmds))
    want = {"status": None, "-x": None, "CN": None, "all": None, "reload": None}
    for cmd in cmds:
        if cmd.startswith("systemctl status "):
            want["status"] = cmd
        elif cmd.startswith("journalctl ") and " -x" in cmd:
            want["-x"] = cmd
        elif cmd.startswith("journalctl ") and "TLSGATE_CLIENT_CN=" in cmd:
            want["CN"] = cmd
        elif cmd.startswith("journalctl ") and "MESSAGE_ID=" in cmd:
            want["all"] = cmd
        elif cmd.startswith("systemctl try-reload-or-restart "):
            want["reload"] = cmd
    check(all(want.values()), "README.md shows status, journalctl -x, the CLIENT_CN and "
          "MESSAGE_ID filters and try-reload-or-restart", "\n".join(cmds))

    def sh(cmd):
        return ct.exec(["sh", "-c", cmd], check=False)

    def entry_lines(out):
        return [line for line in out.splitlines() if line.strip() and not line.startswith("--")]

    if want["status"]:
        p = sh(want["status"])
        unitfile = ct.prop(web_svc, "FragmentPath")
        check(p.returncode == 0 and re.search(r"^\s*Active: active \(running\)", p.stdout, re.M)
              and "Loaded: loaded (%s; " % unitfile in p.stdout
              and "Main PID: %s (tlsgate)" % pid in p.stdout,
              "`%s`: exit 0, loaded from %s, active (running), Main PID %s"
              % (want["status"], unitfile, pid), p.stdout + p.stderr)
    if want["-x"]:
        p = sh(want["-x"])
        check(p.returncode == 0
              and "Subject: Client denied: no access rule matches its certificate" in p.stdout
              and 'The certificate\'s common name is "intruder"' in p.stdout,
              "`%s`: the catalog's explanation of the denial, with the client's name filled in"
              % want["-x"], p.stdout[-3000:] + p.stderr)
    if want["CN"]:
        p = sh(want["CN"])
        cn = re.search(r"TLSGATE_CLIENT_CN=(\S+)", want["CN"]).group(1)
        unit = re.search(r"-u\s+(\S+)", want["CN"]).group(1)
        entries = journal(ct, "-u", unit, "TLSGATE_CLIENT_CN=" + cn)
        others = [e for e in journal(ct, "-u", unit)
                  if e.get("TLSGATE_CLIENT_CN") not in (None, cn)]
        lines = entry_lines(p.stdout)
        check(p.returncode == 0 and entries and others and len(lines) == len(entries)
              and all(e.get("TLSGATE_CLIENT_CN") == cn for e in entries),
              "`%s`: %d entries, all of the client %s (and none of the %d entries of other "
              "clients)" % (want["CN"], len(lines), cn, len(others)), p.stdout[-3000:] + p.stderr)
    if want["all"]:
        p = sh(want["all"])
        js = sh(want["all"] + " -o json")
        units = set()
        for line in js.stdout.splitlines():
            try:
                units.add(json.loads(line).get("_SYSTEMD_UNIT"))
            except ValueError:
                pass
        lines = entry_lines(p.stdout)
        check(p.returncode == 0 and lines and units == {web_svc, st_svc}
              and len(lines) == len(js.stdout.splitlines()),
              "`%s`: %d entries, of both instances (%s)"
              % (want["all"], len(lines), ", ".join(sorted(u or "?" for u in units))),
              p.stdout[-3000:] + p.stderr)
    p = sh("journalctl -u tlsgate")
    check(p.returncode == 0 and not entry_lines(p.stdout),
          "`journalctl -u tlsgate` shows only the plain tlsgate.service: no entries here",
          p.stdout[-2000:])
    if want["reload"]:
        p = sh(want["reload"])
        state = ct.wait_prop(web_svc, "ActiveState", "active", 10)
        check(p.returncode == 0 and state == "active" and ct.prop(web_svc, "MainPID") == pid,
              "`%s` on the running service: exit 0, reloaded in place (MainPID %s)"
              % (want["reload"], pid), p.stderr)
        again = echo_once(ct, WEB_PORT, WEB_NAME, pebble_root, pki["frontend"],
                          b"after try-reload-or-restart\n")
        check(again is True, "a client gets through after it (%s)" % again)


def purge_checks(ct):
    """apt-get purge tlsgate with both instances running, as README.md and
    debian/README.Debian describe it."""
    units = ("tlsgate@web.socket", "tlsgate@static.socket", "tlsgate@web.service",
             "tlsgate@static.service")
    running = [u for u in units if ct.prop(u, "ActiveState") == "active"]
    links = sorted(ct.exec(["find", "/etc/systemd/system", "-type", "l", "-name", "tlsgate@*"],
                           check=False).stdout.split())
    web_conf = ct.exec(["cat", "/etc/tlsgate/web.conf"]).stdout
    state_before = ct.exec(["test", "-d", "/var/lib/private/tlsgate/web"],
                           check=False).returncode == 0
    if not check(running and state_before
                 and "/etc/systemd/system/sockets.target.wants/tlsgate@web.socket" in links,
                 "before purge: running %s; links %s; /var/lib/private/tlsgate/web present"
                 % (", ".join(running), ", ".join(os.path.basename(x) for x in links))):
        return
    p = ct.exec(["sh", "-c", "DEBIAN_FRONTEND=noninteractive apt-get purge -y tlsgate"],
                timeout=180, check=False)
    out = p.stdout + p.stderr
    status = ct.exec(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", "tlsgate"],
                     check=False).stdout.strip()
    check(p.returncode == 0 and not status.startswith("i"),
          "apt-get purge -y tlsgate: exit %d, dpkg status %r" % (p.returncode, status), out)
    m = re.search(r"^tlsgate: disabled (.*)$", out, re.M)
    disabled = set(m.group(1).split()) if m else set()
    check({os.path.basename(x) for x in links} <= disabled,
          "purge printed \"tlsgate: disabled %s\"" % (m.group(1) if m else "?"), out)
    m = re.search(r"^tlsgate: kept what the administrator wrote: (.*)$", out, re.M)
    kept = set(m.group(1).split()) if m else set()
    check("/etc/tlsgate/web.conf" in kept and "/etc/tlsgate/static.conf" in kept
          and "/etc/tlsgate/example.conf" not in kept,
          "purge named what it kept: %s" % (m.group(1) if m else "nothing"), out)
    left = ct.exec(["find", "/etc/systemd/system", "-type", "l", "-name", "tlsgate*"],
                   check=False).stdout.split()
    check(not left, "no tlsgate links left under /etc/systemd/system", "\n".join(left))
    gone = ct.exec(["sh", "-c", "test ! -e /var/lib/private/tlsgate && test ! -e /var/lib/tlsgate"],
                   check=False).returncode == 0
    check(gone, "/var/lib/private/tlsgate (ACME accounts, certificates, keys) deleted")
    now = ct.exec(["cat", "/etc/tlsgate/web.conf"], check=False).stdout
    example = ct.exec(["test", "-e", "/etc/tlsgate/example.conf"], check=False).returncode
    check(now == web_conf and example != 0,
          "/etc/tlsgate/web.conf (the administrator's) kept unchanged; the conffile "
          "example.conf purged")
    active = {u: ct.prop(u, "ActiveState") for u in units}
    procs = ct.exec(["pgrep", "-x", "tlsgate"], check=False).stdout.split()
    check(all(a == "inactive" for a in active.values()) and not procs,
          "the running instances were stopped by the removal: %s; tlsgate processes: %s"
          % (active, procs or "none"))


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--deb", metavar="PATH",
                    help="the tlsgate .deb to install (default: build one with "
                    "packaging/build-deb.sh, without its tests)")
    ap.add_argument("--meson-install", action="store_true",
                    help="install with `meson install --destdir` from --builddir instead of "
                    "a .deb (no package checks, no purge)")
    ap.add_argument("--builddir", default=os.path.join(TOP, "build-nspawn"),
                    help="meson build directory for --meson-install (configured with "
                    "--prefix=/usr)")
    ap.add_argument("--name", default="tlsgate-e2e-%d" % os.getpid(),
                    help="container name (unique per host)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the run directory and artifacts")
    args = ap.parse_args()
    args.builddir = os.path.abspath(args.builddir)
    if args.deb and args.meson_install:
        ap.error("--deb and --meson-install exclude each other")
    if args.deb:
        args.deb = os.path.abspath(args.deb)
        if not os.path.isfile(args.deb):
            ap.error("--deb %s: no such file" % args.deb)

    if os.geteuid() != 0:
        print("nspawn-e2e: must run as root", file=sys.stderr)
        return 2
    missing = [t for t, pkg in (("systemd-nspawn", "systemd-container"),
                                ("debootstrap", "debootstrap"), ("nsenter", "util-linux"),
                                ("meson" if args.meson_install else "dpkg-deb",
                                 "meson" if args.meson_install else "dpkg"))
               if not shutil.which(t)]
    if missing:
        print("nspawn-e2e: missing on the host: %s" % " ".join(missing), file=sys.stderr)
        return 2

    artifacts = "/var/tmp/tlsgate-nspawn-artifacts/" + args.name
    tmp = os.path.join("/var/tmp", "tlsgate-nspawn-tmp-" + args.name)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    ct = None

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        t = time.monotonic()
        deb = None
        if args.meson_install:
            binary = build(args.builddir)
            ok("built %s in %.1fs" % (binary, time.monotonic() - t))
        else:
            deb = args.deb
            if not deb:
                deb = build_deb(os.path.join(tmp, "deb"))
                ok("built %s with packaging/build-deb.sh (nocheck) in %.1fs"
                   % (deb, time.monotonic() - t))
            binary = deb_binary(deb, os.path.join(tmp, "deb-contents"))

        t = time.monotonic()
        mirror = debian_mirror()
        packages = sorted(set(BASE_PACKAGES) | set(runtime_packages(binary)))
        rootfs, fresh = ensure_rootfs(packages, mirror)
        ok("rootfs %s %s in %.1fs" % (rootfs, "debootstrapped" if fresh else "cached",
                                       time.monotonic() - t))

        ct = Container(args.name, rootfs, artifacts, args.keep)
        t = time.monotonic()
        how = ct.make_root()
        if deb:
            copy(ct.root, deb, DEB_DIR + "/" + os.path.basename(deb))
            how += "; %s in %s" % (os.path.basename(deb), DEB_DIR)
        else:
            with open(os.path.join(args.builddir, ".nspawn-e2e.lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                run(["meson", "install", "-C", args.builddir, "--no-rebuild", "--quiet",
                     "--destdir", ct.root], timeout=120)
            how += "; meson install --destdir"
        pki = make_pki(os.path.join(tmp, "pki"))
        prepare_root(ct.root, args.name, pki)
        ok("container root: %s; drop-ins, PKI (%.1fs)" % (how, time.monotonic() - t))

        t = time.monotonic()
        state = ct.boot()
        check(state == "running", "booted %s with systemd as PID 1 (leader pid %d): "
              "is-system-running=%s in %.1fs" % (args.name, ct.leader, state,
                                                 time.monotonic() - t),
              ct.exec(["systemctl", "--failed", "--no-pager"], check=False).stdout)
        if deb:
            install_checks(ct, deb)
        else:
            # What the package's trigger does; README.md's "Building" says so.
            ct.exec(["journalctl", "--update-catalog"])
        newcomer_configs(ct)
        checks(ct, pki, tmp)
        newcomer_commands_checks(ct, pki, tmp)
        if deb:
            purge_checks(ct)
    except Abort as e:
        fail("aborted: %s" % str(e).split("\n")[0], "\n".join(str(e).split("\n")[1:]))
    except KeyboardInterrupt:
        fail("interrupted")
    except subprocess.TimeoutExpired as e:
        fail("timed out after %ss: %s" % (e.timeout, " ".join(e.cmd) if isinstance(e.cmd, list)
                                           else e.cmd))
    finally:
        if ct:
            if FAILS or args.keep:
                ct.save_journal()
            ct.stop()
            if FAILS or args.keep:
                log("artifacts (console, journal) in %s" % artifacts)
            else:
                shutil.rmtree(artifacts, ignore_errors=True)
                try:
                    os.rmdir(os.path.dirname(artifacts))
                except OSError:
                    pass
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if FAILS:
        log("%d check(s) FAILED: %s" % (len(FAILS), "; ".join(FAILS)))
        return 1
    log("all checks passed in %.1fs" % (time.monotonic() - T0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
