#!/bin/sh
# The loopback demo of tlsgate's main job: a local ACME CA (Pebble), tlsgate
# obtaining its own certificate over TLS-ALPN-01 on the very socket it serves
# clients on, an mTLS client getting through to an echo backend, and clients
# without the right certificate refused.
#
# It installs what is missing (scripts/deps.sh), builds tlsgate into build/,
# makes throw-away keys with openssl, starts pebble-challtestsrv (mock DNS:
# every name is 127.0.0.1), pebble, an echo backend and tlsgate, runs the
# checks, prints the certificate storage and tlsgate's log, and stops
# everything it started by PID. Every wait is bounded. Nothing leaves
# 127.0.0.1. Exit status 0 when all checks passed, 1 otherwise.
set -eu
cd "$(dirname "$0")/.."
# Everything here talks to 127.0.0.1: never through a proxy.
export no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost

PYTHON=/usr/bin/python3
DOMAIN=demo.example
EMAIL=admin@demo.example
WAIT_SECONDS=15         # for each helper process to come up or go away
CERT_SECONDS=60         # for tlsgate's first certificate (one attempt takes < 1 s)
CLIENT_TIMEOUT=10       # for each client run

say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
T0=$(now)

# --- dependencies and build ------------------------------------------------

step "installing dependencies (if missing): build tools, libraries, pebble, openssl"
scripts/deps.sh

step "building tlsgate into build/"
if [ ! -f build/build.ninja ]; then
        # Same options as scripts/test.sh, so that both can share build/.
        meson setup build -Dwerror=true >/dev/null
fi
if ! out=$(ninja -C build 2>&1); then
        printf '%s\n' "$out"
        exit 1
fi
BIN=$PWD/build/tlsgate
"$BIN" --version

# --- clean-up --------------------------------------------------------------

DIR=$(mktemp -d /tmp/tlsgate-demo.XXXXXX)
TLSGATE_PID=""
BACKEND_PID=""
NOTIFY_PID=""
PEBBLE_PID=""
CTS_PID=""

stop_pid() { # pid: SIGTERM, wait up to WAIT_SECONDS, then SIGKILL
        [ -n "$1" ] || return 0
        kill -TERM "$1" 2>/dev/null || return 0
        i=0
        while kill -0 "$1" 2>/dev/null && [ "$i" -lt $((WAIT_SECONDS * 10)) ]; do
                sleep 0.1
                i=$((i + 1))
        done
        kill -KILL "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
}

cleanup() {
        stop_pid "$TLSGATE_PID"
        stop_pid "$BACKEND_PID"
        stop_pid "$NOTIFY_PID"
        stop_pid "$PEBBLE_PID"
        stop_pid "$CTS_PID"
        rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail_start() { # what, log file
        say "FAIL: $1; its log:"
        cat "$2" 2>/dev/null || true
        exit 1
}

# --- ports -----------------------------------------------------------------

# Distinct free ports (TCP and UDP) below the ephemeral range, where an
# outgoing connection cannot take them between our check and the bind.
free_ports() { # count
        "$PYTHON" - "$1" <<'EOF'
import random, socket, sys
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
hi = max(2048, low - 1)
lo = max(1025, hi - 12000)
want, found = int(sys.argv[1]), []
for _ in range(2000):
    if len(found) == want:
        break
    port = random.randint(lo, hi)
    if port in found:
        continue
    ok = True
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        found.append(port)
if len(found) != want:
    sys.exit("no free ports found")
print(" ".join(map(str, found)))
EOF
}
# shellcheck disable=SC2046 # seven numbers, split on purpose
set -- $(free_ports 7)
DNS_PORT=$1 CTS_PORT=$2 WFE_PORT=$3 MGMT_PORT=$4 HTTP01_PORT=$5 TLS_PORT=$6 BACKEND_PORT=$7
DIRECTORY=https://127.0.0.1:$WFE_PORT/dir

count_lines() { # file, fixed string
        grep -cF "$2" "$1" 2>/dev/null || true
}

# Waits until file has more than `seen` lines containing the string.
wait_for_line() { # file, fixed string, pid that must stay alive, seconds, [seen]
        i=0
        while [ "$i" -lt $(($4 * 10)) ]; do
                [ "$(count_lines "$1" "$2")" -gt "${5:-0}" ] && return 0
                kill -0 "$3" 2>/dev/null || return 1
                sleep 0.1
                i=$((i + 1))
        done
        return 1
}

wait_tcp() { # port, pid that must stay alive
        i=0
        while [ "$i" -lt $((WAIT_SECONDS * 10)) ]; do
                kill -0 "$2" 2>/dev/null || return 1
                "$PYTHON" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' \
                        "$1" 2>/dev/null && return 0
                sleep 0.1
                i=$((i + 1))
        done
        return 1
}

# GET over HTTPS, trusting only Pebble's HTTPS CA; retries for up to seconds.
https_get() { # url, output file, seconds
        "$PYTHON" - "$1" "$2" "$3" "$DIR/https-ca.crt" <<'EOF'
import ssl, sys, time, urllib.request
url, out, seconds, ca = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
deadline, last = time.monotonic() + seconds, None
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
            open(out, "wb").write(r.read())
        sys.exit(0)
    except OSError as e:
        last = e
        time.sleep(0.1)
sys.exit("GET %s: %s" % (url, last))
EOF
}

# --- keys and certificates made with openssl --------------------------------

step "making keys and certificates in $DIR"
cat >"$DIR/ext.cnf" <<'EOF'
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[https]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
authorityKeyIdentifier = keyid

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF

new_key() { # path
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

new_ca() { # name, subject
        new_key "$DIR/$1.key"
        openssl req -new -key "$DIR/$1.key" -subj "$2" -out "$DIR/$1.csr"
        openssl x509 -req -in "$DIR/$1.csr" -signkey "$DIR/$1.key" -days 2 \
                -extfile "$DIR/ext.cnf" -extensions ca -out "$DIR/$1.crt" 2>/dev/null
}

issue() { # name, subject, CA name, extension section
        new_key "$DIR/$1.key"
        openssl req -new -key "$DIR/$1.key" -subj "$2" -out "$DIR/$1.csr"
        openssl x509 -req -in "$DIR/$1.csr" -CA "$DIR/$3.crt" -CAkey "$DIR/$3.key" \
                -set_serial "0x$(openssl rand -hex 8)" -days 1 \
                -extfile "$DIR/ext.cnf" -extensions "$4" -out "$DIR/$1.crt" 2>/dev/null
}

# Pebble's own HTTPS (directory, management): its own little CA, trusted by
# tlsgate's ACME client through SSL_CERT_FILE.
new_ca https-ca "/CN=demo Pebble HTTPS CA"
issue https "/CN=localhost" https-ca https
# The clients' CA (--cacert) and two clients from it.
new_ca client-ca "/CN=demo client CA"
issue client "/CN=demo-client" client-ca client
issue intruder "/CN=intruder" client-ca client
say "Pebble HTTPS: CN=localhost, DNS:localhost, IP:127.0.0.1, from CN=demo Pebble HTTPS CA"
say "clients:      CN=demo-client (allowed), CN=intruder (same CA, not allowed), from CN=demo client CA"

# --- Pebble: mock DNS and the ACME CA --------------------------------------

step "starting pebble-challtestsrv (mock DNS on 127.0.0.1:$DNS_PORT: every name is 127.0.0.1)"
# No HTTP-01/HTTPS-01/TLS-ALPN-01 responders of its own: tlsgate answers.
# An empty IPv6 default: the validator asks AAAA first and dials only the
# first address.
pebble-challtestsrv -dns01 "127.0.0.1:$DNS_PORT" -http01 "" -https01 "" -tlsalpn01 "" \
        -management "127.0.0.1:$CTS_PORT" -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
        >"$DIR/challtestsrv.log" 2>&1 &
CTS_PID=$!
if ! wait_tcp "$CTS_PORT" "$CTS_PID" || ! wait_tcp "$DNS_PORT" "$CTS_PID"; then
        fail_start "pebble-challtestsrv did not start within ${WAIT_SECONDS}s" "$DIR/challtestsrv.log"
fi

step "starting pebble (ACME directory $DIRECTORY, validator dials 127.0.0.1:$TLS_PORT)"
cat >"$DIR/pebble.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$WFE_PORT",
    "managementListenAddress": "127.0.0.1:$MGMT_PORT",
    "certificate": "$DIR/https.crt",
    "privateKey": "$DIR/https.key",
    "httpPort": $HTTP01_PORT,
    "tlsPort": $TLS_PORT,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
EOF
PEBBLE_VA_NOSLEEP=1 pebble -config "$DIR/pebble.json" -dnsserver "127.0.0.1:$DNS_PORT" \
        >"$DIR/pebble.log" 2>&1 &
PEBBLE_PID=$!
if ! https_get "$DIRECTORY" "$DIR/directory.json" "$WAIT_SECONDS" ||
   ! grep -qF newOrder "$DIR/directory.json"; then
        fail_start "pebble's directory did not answer within ${WAIT_SECONDS}s" "$DIR/pebble.log"
fi
# Pebble makes a new root at every start; clients verify against it.
https_get "https://127.0.0.1:$MGMT_PORT/roots/0" "$DIR/pebble-root.pem" "$WAIT_SECONDS" ||
        fail_start "cannot fetch Pebble's root" "$DIR/pebble.log"
say "Pebble's root: $(openssl x509 -in "$DIR/pebble-root.pem" -noout -subject)"

# --- the backend: answers one line with "echo: <line>", then closes ----------

step "starting an echo backend on 127.0.0.1:$BACKEND_PORT"
"$PYTHON" -c '
import socketserver, sys
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        print("connection", flush=True)
        self.wfile.write(b"echo: " + self.rfile.readline())
socketserver.ThreadingTCPServer.allow_reuse_address = True
with socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), Echo) as srv:
    print("backend ready", flush=True)
    srv.serve_forever()
' "$BACKEND_PORT" >"$DIR/backend.log" 2>&1 &
BACKEND_PID=$!
wait_for_line "$DIR/backend.log" "backend ready" "$BACKEND_PID" "$WAIT_SECONDS" ||
        fail_start "the backend did not start" "$DIR/backend.log"

# --- an sd_notify receiver, standing in for systemd ---------------------------

"$PYTHON" -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("notify ready", flush=True)
while True:
    for line in s.recv(65536).decode("utf-8", "replace").splitlines():
        print(line, flush=True)
' "$DIR/notify.sock" >"$DIR/notify.log" 2>&1 &
NOTIFY_PID=$!
wait_for_line "$DIR/notify.log" "notify ready" "$NOTIFY_PID" "$WAIT_SECONDS" ||
        fail_start "the sd_notify receiver did not start" "$DIR/notify.log"

# --- tlsgate -----------------------------------------------------------------

XDG=$DIR/xdg
step "starting tlsgate on 127.0.0.1:$TLS_PORT, without a certificate"
set -- server \
        --listen "127.0.0.1:$TLS_PORT" --target "127.0.0.1:$BACKEND_PORT" \
        --auto-acme-cert="$DOMAIN" --auto-acme-email="$EMAIL" --auto-acme-agree-to-tos \
        --auto-acme-ca="$DIRECTORY" \
        --cacert "$DIR/client-ca.crt" --allow-cn demo-client
say "SSL_CERT_FILE=$DIR/https-ca.crt XDG_DATA_HOME=$XDG \\"
say "  tlsgate $*"
START=$(now)
SSL_CERT_FILE=$DIR/https-ca.crt XDG_DATA_HOME=$XDG NOTIFY_SOCKET=$DIR/notify.sock \
        "$BIN" "$@" 2>"$DIR/tlsgate.log" &
TLSGATE_PID=$!

step "waiting up to ${CERT_SECONDS}s for the certificate (READY=1)"
if ! wait_for_line "$DIR/notify.log" "READY=1" "$TLSGATE_PID" "$CERT_SECONDS"; then
        say "FAIL: tlsgate did not become ready within ${CERT_SECONDS}s"
        say "--- tlsgate"; cat "$DIR/tlsgate.log"
        say "--- pebble"; cat "$DIR/pebble.log"
        exit 1
fi
say "READY=1 $(since "$START") s after start; tlsgate said:"
grep -F -e "certificate for $DOMAIN" -e "challenge probe" "$DIR/tlsgate.log" | sed 's/^/  /'
say "sd_notify messages so far:"
grep -v "notify ready" "$DIR/notify.log" | sed 's/^/  /'

# --- the checks ----------------------------------------------------------------

FAILED=0

client() { # output file, line to send, extra s_client arguments...
        out=$1 line=$2
        shift 2
        printf '%s\n' "$line" |
                timeout "$CLIENT_TIMEOUT" openssl s_client -quiet \
                        -connect "127.0.0.1:$TLS_PORT" -servername "$DOMAIN" \
                        -CAfile "$DIR/pebble-root.pem" -verify_hostname "$DOMAIN" \
                        -verify_return_error "$@" >"$out" 2>"$out.err" || true
}

step "(a) the served chain verifies against Pebble's root, for $DOMAIN"
timeout "$CLIENT_TIMEOUT" openssl s_client -connect "127.0.0.1:$TLS_PORT" \
        -servername "$DOMAIN" -CAfile "$DIR/pebble-root.pem" -verify_hostname "$DOMAIN" \
        -cert "$DIR/client.crt" -key "$DIR/client.key" -showcerts \
        </dev/null >"$DIR/chain.out" 2>&1 || true
grep -E '^ *[0-9]+ s:|^ +i:' "$DIR/chain.out" | sed 's/^/  /' || true
if grep -qF "Verify return code: 0 (ok)" "$DIR/chain.out"; then
        say "  $(grep -F "Verify return code" "$DIR/chain.out" | head -n 1 | sed 's/^ *//')"
        say "OK: the certificate tlsgate obtained verifies, with the host name checked"
else
        say "FAIL: the served chain did not verify; openssl said:"
        cat "$DIR/chain.out"
        FAILED=1
fi

step "(b) mTLS client with the certificate CN=demo-client"
client "$DIR/good.out" "hello from demo-client" -cert "$DIR/client.crt" -key "$DIR/client.key"
if grep -qxF "echo: hello from demo-client" "$DIR/good.out"; then
        say "got back: $(cat "$DIR/good.out")"
        say "OK: mTLS client got through"
else
        say "FAIL: mTLS client did not get its line back; it saw:"
        cat "$DIR/good.out" "$DIR/good.out.err"
        FAILED=1
fi

step "(c) client without a certificate"
seen=$(count_lines "$DIR/tlsgate.log" "error on TLS handshake")
client "$DIR/nocert.out" "hello without a certificate"
if grep -qF "echo:" "$DIR/nocert.out"; then
        say "FAIL: a client without a certificate reached the backend:"
        cat "$DIR/nocert.out"
        FAILED=1
elif wait_for_line "$DIR/tlsgate.log" "error on TLS handshake" "$TLSGATE_PID" "$WAIT_SECONDS" "$seen"; then
        say "tlsgate: $(grep -F "error on TLS handshake" "$DIR/tlsgate.log" | tail -n 1)"
        say "the client was told: $(grep -o 'alert [a-z ]*' "$DIR/nocert.out.err" | head -n 1 || true)"
        say "OK: client without a certificate was refused"
else
        say "FAIL: no echo came back, but tlsgate did not log the refusal"
        FAILED=1
fi

step "(d) client with a certificate from the same CA, but CN=intruder"
seen=$(count_lines "$DIR/tlsgate.log" "access denied")
client "$DIR/intruder.out" "hello from intruder" -cert "$DIR/intruder.crt" -key "$DIR/intruder.key"
if grep -qF "echo:" "$DIR/intruder.out"; then
        say "FAIL: CN=intruder reached the backend:"
        cat "$DIR/intruder.out"
        FAILED=1
elif wait_for_line "$DIR/tlsgate.log" "access denied" "$TLSGATE_PID" "$WAIT_SECONDS" "$seen"; then
        say "tlsgate: $(grep -F "access denied" "$DIR/tlsgate.log" | tail -n 1)"
        say "the client was told: $(grep -o 'alert [a-z ]*' "$DIR/intruder.out.err" | head -n 1 || true)"
        say "OK: client with the wrong name was denied"
else
        say "FAIL: no echo came back, but tlsgate did not log the denial"
        FAILED=1
fi

step "the backend saw only the allowed clients, none of Pebble's probes"
# (a) and (b) got through; the probes, (c) and (d) must never reach it.
n=$(count_lines "$DIR/backend.log" "connection")
if [ "$n" -eq 2 ]; then
        say "OK: the backend saw $n connections: (a) and (b)"
else
        say "FAIL: the backend saw $n connections, expected 2"
        FAILED=1
fi

# --- storage, graceful stop and the log ------------------------------------------

step "certificate storage (certmagic's layout) under XDG_DATA_HOME=$XDG"
(cd "$XDG" && find . -mindepth 1 -printf '%M %6s  %P\n' | sort -k3) || FAILED=1
STORED=$XDG/certmagic/certificates/127.0.0.1-$WFE_PORT-dir/$DOMAIN
say "$DOMAIN.json:"
sed 's/^/  /' "$STORED/$DOMAIN.json" 2>/dev/null || true
echo
for f in "$STORED/$DOMAIN.crt" "$STORED/$DOMAIN.key" "$STORED/$DOMAIN.json" \
         "$XDG/certmagic/acme/127.0.0.1-$WFE_PORT-dir/users/$EMAIL/admin.json" \
         "$XDG/certmagic/acme/127.0.0.1-$WFE_PORT-dir/users/$EMAIL/admin.key"; do
        if [ ! -f "$f" ]; then
                say "FAIL: $f is missing"
                FAILED=1
        fi
done

step "stopping tlsgate with SIGTERM"
kill -TERM "$TLSGATE_PID"
i=0
while kill -0 "$TLSGATE_PID" 2>/dev/null && [ "$i" -lt $((WAIT_SECONDS * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
done
if kill -0 "$TLSGATE_PID" 2>/dev/null; then
        say "FAIL: tlsgate did not exit within ${WAIT_SECONDS}s of SIGTERM"
        FAILED=1
else
        status=0
        wait "$TLSGATE_PID" || status=$?
        TLSGATE_PID=""
        say "tlsgate exited with status $status"
        [ "$status" -eq 0 ] || FAILED=1
fi

step "tlsgate's log"
cat "$DIR/tlsgate.log"
if [ "$(count_lines "$DIR/tlsgate.log" "challenge probe")" -eq 0 ]; then
        say "FAIL: no challenge probe was logged"
        FAILED=1
fi
if [ "$(count_lines "$DIR/tlsgate.log" "certificate for $DOMAIN obtained")" -eq 0 ]; then
        say "FAIL: tlsgate did not log \"certificate for $DOMAIN obtained\""
        FAILED=1
fi

if [ "$FAILED" -ne 0 ]; then
        printf '\nThe demo FAILED (see above), after %s s.\n' "$(since "$T0")"
        exit 1
fi
printf '\nAll checks passed in %s s.\n' "$(since "$T0")"
