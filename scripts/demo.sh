#!/bin/sh
# The loopback demo: installs what is missing, builds tlsgate into build/,
# makes a throw-away PKI, starts an echo backend and tlsgate in front of it,
# and shows that a client with the right certificate gets through while a
# client without one (or with the wrong name) does not. Everything it starts
# is stopped again by PID; every wait is bounded. Exit status 0 when all
# checks passed, 1 otherwise.
#
# Until ACME lands (issue 3) the server certificate comes from a local CA
# made with openssl below; the demo will then switch to Pebble, a local ACME
# CA, and let tlsgate obtain its certificate itself.
set -eu
cd "$(dirname "$0")/.."

PYTHON=/usr/bin/python3
WAIT_SECONDS=10         # for each process to come up or go away
CLIENT_TIMEOUT=10       # for each client run

say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }

# --- dependencies and build ------------------------------------------------

step "installing build dependencies (if missing)"
scripts/deps.sh

step "building tlsgate into build/"
if [ ! -f build/build.ninja ]; then
        # Same options as scripts/test.sh, so that both can share build/.
        meson setup build -Dwerror=true >/dev/null
fi
ninja -C build >/dev/null
BIN=$PWD/build/tlsgate
"$BIN" --version

# --- clean-up --------------------------------------------------------------

DIR=$(mktemp -d /tmp/tlsgate-demo.XXXXXX)
TLSGATE_PID=""
BACKEND_PID=""

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
        rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- a demo PKI: ECDSA P-256 CA, server and client certificates -------------

step "making a demo PKI in $DIR"
cat >"$DIR/ext.cnf" <<'EOF'
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
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

issue() { # name, subject, extension section
        new_key "$DIR/$1.key"
        openssl req -new -key "$DIR/$1.key" -subj "$2" -out "$DIR/$1.csr"
        openssl x509 -req -in "$DIR/$1.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
                -set_serial "0x$(openssl rand -hex 8)" -days 1 \
                -extfile "$DIR/ext.cnf" -extensions "$3" -out "$DIR/$1.crt" 2>/dev/null
}

new_key "$DIR/ca.key"
openssl req -new -key "$DIR/ca.key" -subj "/CN=tlsgate demo CA" -out "$DIR/ca.csr"
openssl x509 -req -in "$DIR/ca.csr" -signkey "$DIR/ca.key" -days 2 \
        -extfile "$DIR/ext.cnf" -extensions ca -out "$DIR/ca.crt" 2>/dev/null
issue server "/CN=localhost" server
issue client "/CN=demo-client" client
issue intruder "/CN=intruder" client
say "CA:       $(openssl x509 -in "$DIR/ca.crt" -noout -subject)"
say "server:   $(openssl x509 -in "$DIR/server.crt" -noout -subject), DNS:localhost, IP:127.0.0.1"
say "clients:  CN=demo-client (allowed), CN=intruder (same CA, not allowed)"

# --- ports -----------------------------------------------------------------

# Free ports below the ephemeral range, where an outgoing connection cannot
# take them between our check and the bind.
free_port() { # ports to avoid...
        "$PYTHON" - "$@" <<'EOF'
import random, socket, sys
avoid = {int(a) for a in sys.argv[1:]}
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
hi = max(2048, low - 1)
lo = max(1025, hi - 12000)
for _ in range(500):
    port = random.randint(lo, hi)
    if port in avoid:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    sys.exit(0)
sys.exit("no free port found")
EOF
}
BACKEND_PORT=$(free_port)
LISTEN_PORT=$(free_port "$BACKEND_PORT")

count_lines() { # file, fixed string
        grep -cF "$2" "$1" 2>/dev/null || true
}

# Waits until file has more than `seen` lines containing the string.
wait_for_line() { # file, fixed string, pid that must stay alive, [seen]
        i=0
        while [ "$i" -lt $((WAIT_SECONDS * 10)) ]; do
                [ "$(count_lines "$1" "$2")" -gt "${4:-0}" ] && return 0
                kill -0 "$3" 2>/dev/null || return 1
                sleep 0.1
                i=$((i + 1))
        done
        return 1
}

# --- the backend: answers one line with "echo: <line>", then closes ----------

step "starting an echo backend on 127.0.0.1:$BACKEND_PORT"
"$PYTHON" -c '
import socketserver, sys
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"echo: " + self.rfile.readline())
socketserver.ThreadingTCPServer.allow_reuse_address = True
with socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), Echo) as srv:
    print("backend ready", flush=True)
    srv.serve_forever()
' "$BACKEND_PORT" >"$DIR/backend.log" 2>&1 &
BACKEND_PID=$!
if ! wait_for_line "$DIR/backend.log" "backend ready" "$BACKEND_PID"; then
        say "FAIL: the backend did not start:"
        cat "$DIR/backend.log"
        exit 1
fi

# --- tlsgate -----------------------------------------------------------------

step "starting tlsgate on 127.0.0.1:$LISTEN_PORT"
set -- server \
        --listen "127.0.0.1:$LISTEN_PORT" --target "127.0.0.1:$BACKEND_PORT" \
        --cert "$DIR/server.crt" --key "$DIR/server.key" \
        --cacert "$DIR/ca.crt" --allow-cn demo-client
say "tlsgate $*"
"$BIN" "$@" 2>"$DIR/tlsgate.log" &
TLSGATE_PID=$!
if ! wait_for_line "$DIR/tlsgate.log" "listening on" "$TLSGATE_PID"; then
        say "FAIL: tlsgate did not start listening within ${WAIT_SECONDS}s:"
        cat "$DIR/tlsgate.log"
        exit 1
fi

# --- the checks ----------------------------------------------------------------

FAILED=0

client() { # output file, line to send, extra s_client arguments...
        out=$1 line=$2
        shift 2
        printf '%s\n' "$line" |
                timeout "$CLIENT_TIMEOUT" openssl s_client -quiet \
                        -connect "127.0.0.1:$LISTEN_PORT" -servername localhost \
                        -CAfile "$DIR/ca.crt" -verify_return_error "$@" \
                        >"$out" 2>"$out.err" || true
}

step "client with the certificate CN=demo-client"
client "$DIR/good.out" "hello from demo-client" -cert "$DIR/client.crt" -key "$DIR/client.key"
if grep -qxF "echo: hello from demo-client" "$DIR/good.out"; then
        say "got back: $(cat "$DIR/good.out")"
        say "OK: mTLS client got through"
else
        say "FAIL: mTLS client did not get its line back; it saw:"
        cat "$DIR/good.out" "$DIR/good.out.err"
        FAILED=1
fi

step "client without a certificate"
seen=$(count_lines "$DIR/tlsgate.log" "error on TLS handshake")
client "$DIR/nocert.out" "hello without a certificate"
if grep -qF "echo:" "$DIR/nocert.out"; then
        say "FAIL: a client without a certificate reached the backend:"
        cat "$DIR/nocert.out"
        FAILED=1
elif wait_for_line "$DIR/tlsgate.log" "error on TLS handshake" "$TLSGATE_PID" "$seen"; then
        say "tlsgate: $(grep -F "error on TLS handshake" "$DIR/tlsgate.log" | tail -n 1)"
        say "OK: client without a certificate was refused"
else
        say "FAIL: no echo came back, but tlsgate did not log the refusal"
        FAILED=1
fi

step "client with a certificate from the same CA, but CN=intruder"
seen=$(count_lines "$DIR/tlsgate.log" "access denied")
client "$DIR/intruder.out" "hello from intruder" -cert "$DIR/intruder.crt" -key "$DIR/intruder.key"
if grep -qF "echo:" "$DIR/intruder.out"; then
        say "FAIL: CN=intruder reached the backend:"
        cat "$DIR/intruder.out"
        FAILED=1
elif wait_for_line "$DIR/tlsgate.log" "access denied" "$TLSGATE_PID" "$seen"; then
        say "tlsgate: $(grep -F "access denied" "$DIR/tlsgate.log" | tail -n 1)"
        say "OK: client with the wrong name was denied"
else
        say "FAIL: no echo came back, but tlsgate did not log the denial"
        FAILED=1
fi

# --- graceful stop and the log -------------------------------------------------

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

if [ "$FAILED" -ne 0 ]; then
        printf '\nThe demo FAILED (see above).\n'
        exit 1
fi
printf '\nAll checks passed.\n'
