#!/bin/bash
# bench/run.sh - tlsgate side by side with the TLS terminators Debian ships, in one run.
#
#   bench/run.sh [--quick] [--all-cores] [--peers LIST] [--out DIR]
#
# Builds tlsgate in release mode (build-bench/), makes a throw-away PKI, starts the echo
# backend, then for each peer in turn: starts it pinned to one CPU with the same
# certificates and settings (TLS 1.3, client certificate required and verified against the
# same CA, plain TCP to the same backend), checks that mTLS is enforced, measures memory per
# idle connection, unloaded latency, handshake rate and CPU, bulk CPU per GB, stops it. For
# tlsgate also the time from exec to READY=1 with a cached ACME certificate. Prints one
# table and the targets of issue 6; raw results go to bench/out/<time>/.
# docs/PERFORMANCE.md explains every number.
#
# Flags:
#   --quick        small setting for CI: ~1 s per measurement, 200 idle connections
#   --all-cores    also measure handshakes/s with every peer unpinned and 2 workers/threads
#   --peers LIST   comma-separated subset of: tlsgate,gotls,haproxy,nginx,hitch,stunnel,ghostunnel
#   --out DIR      where the raw results go (default bench/out/<date-time>)
# Knobs (environment; defaults, --quick's in brackets):
#   HS_SECS=5 [1] HS_WORKERS=16 C1_SECS=2 [1] BULK_SECS=5 [1] BULK_CONNS=4 WARMUP=1 [0.3]
#   IDLE_COUNTS=1000,5000 [200] IDLE_SETTLE=2 [1] READY_RUNS=20 [5] ALL_CORES_THREADS=2
#   PORT_BASE=19700 (uses PORT_BASE .. PORT_BASE+99)  PROXY_CPU=1 GEN_CPU=0
#   BUILD_DIR=build-bench  TLSGATE=path (default BUILD_DIR/tlsgate)  GHOSTUNNEL=path
# Exit status: non-zero if the build or a step fails, if tlsgate's row lacks a number, or if
# a peer that ran does not enforce mTLS. Speed is never asserted.
set -u
BENCH=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$BENCH")
PY=/usr/bin/python3

QUICK=0 ALL_CORES=0 PEERS_ARG= OUT= ARGS="$*"
while [ $# -gt 0 ]; do
        case $1 in
        --quick) QUICK=1 ;;
        --all-cores) ALL_CORES=1 ;;
        --peers) PEERS_ARG=${2:?--peers needs a list}; shift ;;
        --peers=*) PEERS_ARG=${1#*=} ;;
        --out) OUT=${2:?--out needs a directory}; shift ;;
        --out=*) OUT=${1#*=} ;;
        -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
        esac
        shift
done

if [ $QUICK = 1 ]; then
        d_hs=1 d_c1=1 d_bulk=1 d_warm=0.3 d_idle=200 d_settle=1 d_ready=5
else
        d_hs=5 d_c1=2 d_bulk=5 d_warm=1 d_idle=1000,5000 d_settle=2 d_ready=20
fi
HS_SECS=${HS_SECS:-$d_hs} C1_SECS=${C1_SECS:-$d_c1} BULK_SECS=${BULK_SECS:-$d_bulk}
WARMUP=${WARMUP:-$d_warm} IDLE_COUNTS=${IDLE_COUNTS:-$d_idle}
IDLE_SETTLE=${IDLE_SETTLE:-$d_settle} READY_RUNS=${READY_RUNS:-$d_ready}
HS_WORKERS=${HS_WORKERS:-16} BULK_CONNS=${BULK_CONNS:-4} ALL_CORES_THREADS=${ALL_CORES_THREADS:-2}
PORT_BASE=${PORT_BASE:-19700} PROXY_CPU=${PROXY_CPU:-1} GEN_CPU=${GEN_CPU:-0}
BUILD_DIR=${BUILD_DIR:-$TOP/build-bench}
GHOSTUNNEL=${GHOSTUNNEL:-$(command -v ghostunnel 2>/dev/null || true)}
ALL_PEERS="tlsgate gotls haproxy nginx hitch stunnel ghostunnel"
PEERS=${PEERS_ARG:-${PEERS:-$ALL_PEERS}}
PEERS=${PEERS//,/ }

for p in $PEERS; do
        case " $ALL_PEERS " in *" $p "*) ;; *) echo "run.sh: unknown peer '$p' (known: $ALL_PEERS)" >&2; exit 2 ;; esac
done
if [ "$(nproc)" -lt 2 ]; then
        echo "run.sh: only one CPU: peer and load generator share it" >&2
        PROXY_CPU=0 GEN_CPU=0
fi
BACKEND_PORT=$PORT_BASE

T0=$(date +%s)
log() { echo "[$(( $(date +%s) - T0 ))s] $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

# ---------------------------------------------------------------- build
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
        log "setting up a release build in $BUILD_DIR"
        meson setup "$BUILD_DIR" "$TOP" --buildtype=release -Db_ndebug=true >/dev/null ||
                fail "meson setup $BUILD_DIR"
fi
# With TLSGATE=path given, only the load generator and the backend are built.
BUILD_LOG=$(mktemp "${TMPDIR:-/tmp}/tlsgate-bench-build.XXXXXX")
ninja -C "$BUILD_DIR" ${TLSGATE:+bench/loadgen bench/backend} >"$BUILD_LOG" 2>&1 ||
        { tail -30 "$BUILD_LOG" >&2; rm -f "$BUILD_LOG"; fail "ninja -C $BUILD_DIR"; }
rm -f "$BUILD_LOG"
TLSGATE=${TLSGATE:-$BUILD_DIR/tlsgate}
# gotls, the stand-in for Ghostunnel (bench/gotls/main.go): Debian's golang-go, offline.
GOTLS=$BUILD_DIR/bench/gotls-proxy GOTLS_WHY=
case " $PEERS " in
*" gotls "*)
        if ! command -v go >/dev/null; then
                GOTLS_WHY="no go compiler (Debian package golang-go)"
        elif ! (cd "$BENCH/gotls" && GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local \
                GOCACHE="$BUILD_DIR/bench/gocache" GOPATH="$BUILD_DIR/bench/gopath" \
                go build -o "$GOTLS" .) >"$BUILD_DIR/bench/gotls.log" 2>&1; then
                GOTLS_WHY="go build failed (see $BUILD_DIR/bench/gotls.log)"
        fi ;;
esac
LOADGEN=$BUILD_DIR/bench/loadgen
BACKEND=$BUILD_DIR/bench/backend
[ -x "$TLSGATE" ] && [ -x "$LOADGEN" ] && [ -x "$BACKEND" ] || fail "no $TLSGATE, $LOADGEN or $BACKEND"

RUN=${OUT:-$BENCH/out/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RUN" || fail "cannot create $RUN"
RUN=$(cd "$RUN" && pwd)
RES=$RUN/results.txt
: >"$RES"

# ---------------------------------------------------------------- PKI
# P-256 CA; server cert for localhost/127.0.0.1 (and bench.example, the ACME name); client
# CN=client; a rogue client CN=client from another CA. server.pem = cert + key.
PKI=$RUN/pki
mkpki() {
        mkdir -p "$PKI" && cd "$PKI" || return 1
        local ext
        ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
        ca() { # name subject
                ec "$1.key" && openssl req -x509 -new -key "$1.key" -sha256 -days 30 -subj "/CN=$2" \
                        -addext basicConstraints=critical,CA:TRUE \
                        -addext keyUsage=critical,keyCertSign,cRLSign -out "$1.crt"
        }
        leaf() { # name ca subject extensions
                ec "$1.key" && openssl req -new -key "$1.key" -subj "/CN=$3" -out "$1.csr" &&
                        printf '%s\n' "$4" >"$1.ext" &&
                        openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial \
                                -days 30 -sha256 -extfile "$1.ext" -out "$1.crt" &&
                        cat "$1.crt" "$1.key" >"$1.pem" && rm -f "$1.csr" "$1.ext"
        }
        ext='basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature'
        ca ca bench-ca && ca rogue-ca rogue-ca &&
                leaf server ca localhost "$ext
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:bench.example" &&
                leaf client ca client "$ext
extendedKeyUsage=clientAuth" &&
                leaf rogue rogue-ca client "$ext
extendedKeyUsage=clientAuth" &&
                openssl verify -CAfile ca.crt server.crt client.crt && cd "$TOP"
}
mkpki >"$RUN/pki.log" 2>&1 || { cat "$RUN/pki.log" >&2; fail "making the PKI"; }
CA=$PKI/ca.crt SRV_CRT=$PKI/server.crt SRV_KEY=$PKI/server.key SRV_PEM=$PKI/server.pem
TLS_ARGS=(-c "$PKI/client.crt" -k "$PKI/client.key")

# ---------------------------------------------------------------- processes we started
STARTED=()
LGPID=
descendants() {
        local c
        for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done
}
stop_pid() { # stops one process we started, then whatever of its descendants is left
        local pid=$1 kids k i keep=()
        for k in "${STARTED[@]}"; do [ "$k" = "$pid" ] || keep+=("$k"); done
        STARTED=("${keep[@]}")
        kids=$(descendants "$pid")
        kill -TERM "$pid" 2>/dev/null
        for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        for k in $pid $kids; do kill -0 "$k" 2>/dev/null && kill -KILL "$k" 2>/dev/null; done
        wait "$pid" 2>/dev/null
        return 0
}
cleanup() {
        local p
        [ -n "$LGPID" ] && kill -TERM "$LGPID" 2>/dev/null
        for p in "${STARTED[@]}"; do stop_pid "$p"; done
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q LISTEN; }
wait_listen() {
        local i
        for i in $(seq 100); do listening "$1" && return 0; sleep 0.1; done
        return 1
}

# lg TAG CPU MODE ARGS...: one load generator run; its RESULT lines go to results.txt as
# "<peer> RESULT mode=TAG ...". In the background so that a signal stops us at once.
lg() {
        local tag=$1 cpu=$2 mode=$3 pin=()
        shift 3
        [ "$cpu" = any ] || pin=(taskset -c "$cpu")
        timeout -k 5 1200 "${pin[@]}" "$LOADGEN" "$mode" "$@" >"$DIR/lg.out" 2>>"$DIR/loadgen.err" &
        LGPID=$!
        wait "$LGPID"
        local rc=$?
        LGPID=
        sed "s/^RESULT mode=$mode /$NAME RESULT mode=$tag /" "$DIR/lg.out" | grep " RESULT " >>"$RES"
        return $rc
}

# ---------------------------------------------------------------- peers
# peer_NAME: sets CMD (run in the foreground via exec, must not daemonize) and DESC, from
# $PORT $BACKEND_PORT $DIR $CA $SRV_CRT $SRV_KEY $SRV_PEM and $THREADS (1, or
# ALL_CORES_THREADS for --all-cores); returns 1 when the peer is not available.
peer_tlsgate() {
        local threads=
        # --threads defaults to the CPUs tlsgate may run on: say it explicitly
        if "$TLSGATE" server --help 2>&1 | grep -q -- '--threads'; then
                threads="--threads=$THREADS"
        elif [ "$THREADS" -gt 1 ]; then
                SKIP_WHY="this tlsgate has no --threads flag"
                return 1
        fi
        DESC="$($TLSGATE --version 2>/dev/null | head -1), ${threads:-1 thread}, --allow-cn client, --quiet=all"
        CMD="$TLSGATE server --listen=127.0.0.1:$PORT --target=127.0.0.1:$BACKEND_PORT \
--cert=$SRV_CRT --key=$SRV_KEY --cacert=$CA --allow-cn=client --quiet=all $threads"
}
peer_haproxy() {
        command -v haproxy >/dev/null || return 1
        DESC="haproxy $(haproxy -v | awk 'NR==1{print $3}') mode tcp, ssl verify required, TLSv1.3, nbthread $THREADS, no logs"
        cat >"$DIR/haproxy.cfg" <<EOF
global
  nbthread $THREADS
  maxconn 9000
defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s
frontend fe
  bind 127.0.0.1:$PORT ssl crt $SRV_PEM ca-file $CA verify required ssl-min-ver TLSv1.3
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND_PORT
EOF
        CMD="haproxy -db -f $DIR/haproxy.cfg"
}
peer_nginx() {
        local mod=/usr/lib/nginx/modules/ngx_stream_module.so
        command -v nginx >/dev/null && [ -f $mod ] || return 1
        DESC="nginx $(nginx -v 2>&1 | sed 's|.*/||') stream, ssl_verify_client on, TLSv1.3, $THREADS worker(s) + master"
        cat >"$DIR/nginx.conf" <<EOF
load_module $mod;
daemon off;
master_process on;
worker_processes $THREADS;
worker_rlimit_nofile 40000;
pid $DIR/nginx.pid;
error_log $DIR/error.log error;
events { worker_connections 20000; }
stream {
  server {
    listen 127.0.0.1:$PORT ssl;
    ssl_certificate $SRV_CRT;
    ssl_certificate_key $SRV_KEY;
    ssl_client_certificate $CA;
    ssl_verify_client on;
    ssl_protocols TLSv1.3;
    proxy_pass 127.0.0.1:$BACKEND_PORT;
    proxy_connect_timeout 5s;
  }
}
EOF
        CMD="nginx -e $DIR/error.log -p $DIR -c $DIR/nginx.conf"
}
peer_hitch() {
        command -v hitch >/dev/null || return 1
        DESC="hitch $(hitch --version 2>&1 | awk '{print $2; exit}') client-verify=required, TLSv1.3, workers=$THREADS + master"
        cat >"$DIR/hitch.conf" <<EOF
frontend = "[127.0.0.1]:$PORT"
backend = "[127.0.0.1]:$BACKEND_PORT"
pem-file = "$SRV_PEM"
workers = $THREADS
daemon = off
tls-protos = TLSv1.3
client-verify = required
client-verify-ca = "$CA"
backlog = 4096
quiet = on
syslog = off
log-level = 0
ocsp-dir = "$DIR"
EOF
        # hitch refuses to run as root
        [ "$(id -u)" = 0 ] && echo 'user = "_hitch"' >>"$DIR/hitch.conf"
        CMD="hitch --config=$DIR/hitch.conf"
}
peer_stunnel() {
        command -v stunnel4 >/dev/null || return 1
        DESC="stunnel $(stunnel4 -version 2>&1 | awk '/^stunnel/{print $2; exit}') thread per connection, verifyChain+requireCert, TLSv1.3"
        cat >"$DIR/stunnel.conf" <<EOF
foreground = yes
pid =
syslog = no
debug = 3
output = $DIR/stunnel.log
[bench]
accept = 127.0.0.1:$PORT
connect = 127.0.0.1:$BACKEND_PORT
cert = $SRV_CRT
key = $SRV_KEY
CAfile = $CA
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.3
sslVersionMax = TLSv1.3
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
EOF
        CMD="stunnel4 $DIR/stunnel.conf"
}
peer_gotls() {
        [ -z "$GOTLS_WHY" ] && [ -x "$GOTLS" ] || { SKIP_WHY=${GOTLS_WHY:-not built}; return 1; }
        DESC="$(go version | awk '{print $3}') crypto/tls + io.Copy (bench/gotls: Ghostunnel's TLS stack, a stand-in), GOMAXPROCS=$THREADS"
        CMD="env GOMAXPROCS=$THREADS $GOTLS -listen=127.0.0.1:$PORT -target=127.0.0.1:$BACKEND_PORT \
-cert=$SRV_CRT -key=$SRV_KEY -cacert=$CA -allow-cn=client"
}
peer_ghostunnel() {
        [ -n "$GHOSTUNNEL" ] && [ -x "$GHOSTUNNEL" ] || { SKIP_WHY="no ghostunnel binary (set GHOSTUNNEL=path)"; return 1; }
        DESC="ghostunnel $("$GHOSTUNNEL" --version 2>&1 | awk '{print $2; exit}') GOMAXPROCS=$THREADS, --allow-cn client, --quiet=all"
        CMD="env GOMAXPROCS=$THREADS $GHOSTUNNEL server --listen=127.0.0.1:$PORT --target=127.0.0.1:$BACKEND_PORT \
--cert=$SRV_CRT --key=$SRV_KEY --cacert=$CA --allow-cn=client --quiet=all"
}

# start_peer NAME PORT CPU|any: sets PID, or returns 1 with the reason in results.txt
start_peer() {
        local pin=()
        NAME=$1 PORT=$2 DIR=$RUN/$3 SKIP_WHY="not installed"
        [ "$4" = any ] || pin=(taskset -c "$4")
        mkdir -p "$DIR"
        if ! "peer_$NAME"; then
                log "$NAME: skipped ($SKIP_WHY)"
                echo "$NAME SKIP $3 $SKIP_WHY" >>"$RES"
                return 1
        fi
        if listening "$PORT"; then
                log "$NAME: port $PORT is in use, skipped"
                echo "$NAME SKIP $3 port $PORT in use" >>"$RES"
                return 1
        fi
        echo "$CMD" >"$DIR/cmd"
        echo "$NAME DESC $3 $DESC" >>"$RES"
        log "$NAME: $DESC"
        "${pin[@]}" bash -c "exec $CMD" >"$DIR/output.log" 2>&1 &
        PID=$!
        STARTED+=("$PID")
        if ! wait_listen "$PORT"; then
                log "$NAME: did not listen on $PORT; its output: $DIR/output.log"
                echo "$NAME SKIP $3 did not start" >>"$RES"
                stop_pid "$PID"
                return 1
        fi
        sleep 0.3
}

check_peer() {
        lg check "$GEN_CPU" check -p "$PORT" "${TLS_ARGS[@]}" -C "$CA" -N localhost \
                -R "$PKI/rogue.crt" -Q "$PKI/rogue.key"
        log "$NAME: $(grep "^$NAME RESULT mode=check" "$RES" | tail -1 | cut -d' ' -f4-)"
        grep -q "^$NAME RESULT mode=check ok=1 " "$RES"
}

# ---------------------------------------------------------------- start
ulimit -n "$(ulimit -Hn)" 2>/dev/null
{
        echo "# $(date -Is) $(uname -n) cpus=$(nproc) $(uname -sr) $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
        echo "# peer on CPU $PROXY_CPU, load generator + backend on CPU $GEN_CPU; hs ${HS_SECS}s x$HS_WORKERS workers, c1 ${C1_SECS}s, bulk ${BULK_SECS}s x$BULK_CONNS, warm-up ${WARMUP}s, idle $IDLE_COUNTS (settle ${IDLE_SETTLE}s), ready x$READY_RUNS"
        echo "# command: bench/run.sh${ARGS:+ $ARGS}"
        echo "# loadavg at start: $(cat /proc/loadavg)"
} >"$RUN/header.txt"
log "writing to $RUN; loadavg $(cut -d" " -f1-3 /proc/loadavg)"

for p in $(seq "$PORT_BASE" $((PORT_BASE + 99))); do
        listening "$p" && log "note: port $p is in use by something else"
done
listening "$BACKEND_PORT" && fail "the backend port $BACKEND_PORT is in use"
taskset -c "$GEN_CPU" "$BACKEND" -p "$BACKEND_PORT" -t 3600 2>"$RUN/backend.log" &
BACKEND_PID=$!
STARTED+=("$BACKEND_PID")
wait_listen "$BACKEND_PORT" || fail "the echo backend did not start (see $RUN/backend.log)"

STATUS=0
idx=0
THREADS=1
for NAME in $PEERS; do
        idx=$((idx + 1))
        start_peer "$NAME" $((PORT_BASE + idx)) "$NAME" "$PROXY_CPU" || continue
        if check_peer; then
                lg idle "$GEN_CPU" idle -p "$PORT" "${TLS_ARGS[@]}" -m "$IDLE_COUNTS" -w 8 -z "$IDLE_SETTLE" -P "$PID" ||
                        log "$NAME: idle: not all connections opened"
                # closing thousands of connections can keep a peer busy: wait for it, and say so
                lg quiet "$GEN_CPU" quiet -p "$PORT" -P "$PID" -d 30 || log "$NAME: still busy 30 s after the idle test"
                q=$(sed -n 's/.*mode=quiet secs=\([0-9.]*\).*/\1/p' "$DIR/lg.out")
                awk -v q="${q:-0}" 'BEGIN { exit !(q > 1) }' && log "$NAME: busy for ${q}s after the idle connections were closed"
                lg c1 "$GEN_CPU" hs -p "$PORT" "${TLS_ARGS[@]}" -w 1 -d "$C1_SECS" -u "$WARMUP" -P "$PID" ||
                        log "$NAME: c1 failed"
                lg hs "$GEN_CPU" hs -p "$PORT" "${TLS_ARGS[@]}" -w "$HS_WORKERS" -d "$HS_SECS" -u "$WARMUP" -P "$PID" ||
                        log "$NAME: hs failed"
                lg bulk "$GEN_CPU" bulk -p "$PORT" "${TLS_ARGS[@]}" -K "$BULK_CONNS" -d "$BULK_SECS" -u "$WARMUP" -P "$PID" ||
                        log "$NAME: bulk failed"
        else
                log "$NAME: no echo through it with the client certificate; not measured"
        fi
        kill -0 "$PID" 2>/dev/null || { log "$NAME: died during the run (see $DIR/output.log)"; STATUS=1; }
        echo "$NAME LOADAVG $(cat /proc/loadavg)" >>"$RES"
        stop_pid "$PID"
        for f in "$DIR"/*.log; do # a chatty peer must not fill the disk
                [ -f "$f" ] && [ "$(stat -c %s "$f")" -gt 10485760 ] && truncate -s 1M "$f"
        done
done

# ---------------------------------------------------------------- tlsgate: exec -> READY=1
# A certificate in certmagic's storage for the ACME directory https://127.0.0.1:1/dir
# (nothing listens there: were tlsgate to contact the CA, it would fail, not wait):
#   $XDG_DATA_HOME/certmagic/certificates/127.0.0.1-1-dir/bench.example/bench.example.{crt,key,json}
ready_run() {
        local xdg=$RUN/ready/xdg name=bench.example
        local d=$xdg/certmagic/certificates/127.0.0.1-1-dir/$name
        NAME=tlsgate DIR=$RUN/ready PORT=$((PORT_BASE + 90))
        mkdir -p "$d" && chmod -R 700 "$xdg" || return 1
        cat "$PKI/server.crt" >"$d/$name.crt"
        openssl ec -in "$PKI/server.key" -out "$d/$name.key" 2>/dev/null || return 1 # "EC PRIVATE KEY", as certmagic
        printf '{\n\t"sans": [\n\t\t"%s"\n\t],\n\t"issuer_data": {\n\t\t"url": "https://127.0.0.1:1/cert/1",\n\t\t"ca": "https://127.0.0.1:1/dir",\n\t\t"account": "https://127.0.0.1:1/acct/1"\n\t}\n}\n' \
                "$name" >"$d/$name.json"
        chmod 600 "$d"/*
        echo "tlsgate DESC ready tlsgate --auto-acme-cert $name, certificate in storage, CA unreachable" >>"$RES"
        if listening "$PORT"; then echo "tlsgate SKIP ready port $PORT in use" >>"$RES"; return 1; fi
        log "tlsgate: exec -> READY=1 with a cached ACME certificate, $READY_RUNS starts"
        XDG_DATA_HOME=$xdg HOME=$RUN/ready timeout -k 5 600 $PY "$BENCH/ready.py" --runs "$READY_RUNS" \
                --cpu "$PROXY_CPU" --log "$DIR/output.log" \
                --check "'$LOADGEN' check -p $PORT -N $name -C '$CA' ${TLS_ARGS[*]} -R '$PKI/rogue.crt' -Q '$PKI/rogue.key' | sed 's/mode=check/mode=ready-check/'" \
                -- "$TLSGATE" server --listen="127.0.0.1:$PORT" --target="127.0.0.1:$BACKEND_PORT" \
                --cacert="$CA" --allow-cn=client --quiet=all --auto-acme-cert="$name" \
                --auto-acme-email=bench@bench.example --auto-acme-agree-to-tos \
                --auto-acme-ca=https://127.0.0.1:1/dir >"$DIR/ready.out" 2>>"$DIR/ready.err" &
        LGPID=$!
        wait "$LGPID"
        local rc=$?
        LGPID=
        sed 's/^RESULT /tlsgate RESULT /' "$DIR/ready.out" | grep " RESULT " >>"$RES"
        return $rc
}
case " $PEERS " in
*" tlsgate "*)
        ready_run || { log "tlsgate: READY=1 timing failed (see $RUN/ready/)"; STATUS=1; } ;;
esac

# ---------------------------------------------------------------- all cores
if [ $ALL_CORES = 1 ]; then
        THREADS=$ALL_CORES_THREADS
        idx=20
        for NAME in $PEERS; do
                idx=$((idx + 1))
                start_peer "$NAME" $((PORT_BASE + idx)) "$NAME-all" any || continue
                if check_peer; then
                        lg hs-all any hs -p "$PORT" "${TLS_ARGS[@]}" -w "$HS_WORKERS" -d "$HS_SECS" \
                                -u "$WARMUP" -P "$PID" || log "$NAME: hs (all cores) failed"
                fi
                stop_pid "$PID"
        done
fi
stop_pid "$BACKEND_PID"

# ---------------------------------------------------------------- report
$PY "$BENCH/report.py" "$RES" --header "$RUN/header.txt" --hs-workers "$HS_WORKERS" \
        --peers "$PEERS" | tee "$RUN/table.txt"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] || STATUS=1
log "raw results in $RUN (results.txt, table.txt, one directory per peer); $(( $(date +%s) - T0 ))s"
exit $STATUS
