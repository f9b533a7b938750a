#!/usr/bin/env bash
# Local S3 server (Garage 2.5.0, single node) for bucketfs tests and benchmarks.
#
# Usage: scripts/s3-server.sh start|stop|env|status
#
#   start   Install Garage 2.5.0 if needed, start a fresh server (empty bucket) unless one
#           from this state dir is already running, and print the path of the env file on
#           stdout (all other messages go to stderr). Typical use:
#               . "$(scripts/s3-server.sh start)"
#   stop    Stop the server (by the PID in the pid file), OK if it is not running.
#   env     Print the env file path; exit 1 if the server is not running.
#   status  Print "running ..." (exit 0) or "not running" (exit 1).
#
# Environment:
#   BUCKETFS_S3_DIR      state dir (default /tmp/bucketfs-s3): garage.toml, data/, meta/,
#                        garage.pid, garage.log, env, nodelay.so
#   BUCKETFS_S3_PORT     S3 API port on 127.0.0.1 (default 3900)
#   BUCKETFS_S3_RPC_PORT Garage RPC port on 127.0.0.1 (default S3 port + 1)
#   BUCKETFS_S3_BUCKET   bucket name (default bucketfs-test)
#   BUCKETFS_S3_NODELAY  0 = run Garage without the TCP_NODELAY shim (default 1)
#
# The env file holds export lines for AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION and S3_BUCKET. Keys are random on every fresh start.
#
# TCP_NODELAY: Garage does not set it on accepted sockets, so each small response on a
# kept-alive connection waits for the client's delayed ACK (~40 ms). scripts/nodelay.c is an
# LD_PRELOAD shim that sets it after accept()/accept4(). Measured on a 2-core Debian 12
# machine: 200 sequential GETs of one 4 KiB object over ONE kept-alive curl connection
#   without the shim (BUCKETFS_S3_NODELAY=0): 8.74-8.85 s, 43.7-44.3 ms per GET (23 GET/s)
#   with the shim (default):                  0.12-0.14 s, 0.60-0.67 ms per GET (~1500-1700 GET/s)
# (curl -s --aws-sigv4 ... -w '%{num_connects} %{time_total}\n' -o /dev/null URL ... x200:
#  one connect, 200 x HTTP 200, sum of time_total; two runs each way)
#
# Note: curl's --aws-sigv4 (7.88, Debian 12) does not send x-amz-content-sha256 and Garage
# rejects such requests (400 "Missing X-Amz-Content-Sha256 field"): add
# -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" (also for PUTs with -T FILE).
set -euo pipefail

GARAGE_VERSION=2.5.0
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE_DIR="${BUCKETFS_S3_DIR:-/tmp/bucketfs-s3}"
PORT="${BUCKETFS_S3_PORT:-3900}"
RPC_PORT="${BUCKETFS_S3_RPC_PORT:-$((PORT + 1))}"
BUCKET="${BUCKETFS_S3_BUCKET:-bucketfs-test}"
NODELAY="${BUCKETFS_S3_NODELAY:-1}"
REGION=us-east-1

CONF="$STATE_DIR/garage.toml"
PIDFILE="$STATE_DIR/garage.pid"
LOG="$STATE_DIR/garage.log"
ENVFILE="$STATE_DIR/env"
PORTFILE="$STATE_DIR/port"
SHIM_SRC="$SCRIPT_DIR/nodelay.c"
SHIM="$STATE_DIR/nodelay.so"

NAME=s3
CMDLINE_MATCH="garage -c $CONF server"
# shellcheck source=scripts/lib/server.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/server.sh"

rand_hex() { # $1 = number of bytes
    od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

find_garage() {
    local g
    for g in "$(command -v garage 2>/dev/null || true)" "${HOME:-/root}/.cargo/bin/garage"; do
        [[ -n "$g" && -x "$g" ]] || continue
        if "$g" --version 2>/dev/null | grep -Eq "(^|[^0-9.])${GARAGE_VERSION//./\\.}([^0-9]|$)"; then
            echo "$g"
            return 0
        fi
    done
    return 1
}

ensure_garage() {
    local g
    if g="$(find_garage)"; then
        echo "$g"
        return 0
    fi
    local cargo
    cargo="$(command -v cargo 2>/dev/null || true)"
    [[ -n "$cargo" ]] || cargo="${HOME:-/root}/.cargo/bin/cargo"
    [[ -x "$cargo" ]] || die "garage $GARAGE_VERSION not found and cargo is not installed"
    log "installing garage $GARAGE_VERSION with cargo (takes ~10 minutes on 2 cores)..."
    CARGO_BUILD_JOBS=2 "$cargo" install "garage@$GARAGE_VERSION" --locked >&2 \
        || die "cargo install garage@$GARAGE_VERSION failed"
    g="$(find_garage)" || die "garage $GARAGE_VERSION still not found after cargo install"
    echo "$g"
}

ensure_shim() {
    [[ -f "$SHIM_SRC" ]] || die "missing $SHIM_SRC"
    if [[ ! -f "$SHIM" || "$SHIM_SRC" -nt "$SHIM" ]]; then
        command -v gcc >/dev/null || die "gcc is needed to build $SHIM (run scripts/install-deps.sh)"
        gcc -shared -fPIC -O2 -Wall -o "$SHIM.tmp" "$SHIM_SRC" -ldl >&2 || die "building $SHIM failed"
        mv -f "$SHIM.tmp" "$SHIM"
    fi
}

# HTTP status of a signed request against the running server (reads the env file).
s3_curl_status() { # $1 = path+query, rest = extra curl args
    local path="$1"; shift
    (
        # shellcheck disable=SC1090
        . "$ENVFILE"
        curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
            --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
            --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
            -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
            "$@" "$AWS_ENDPOINT_URL$path"
    ) || true
}

do_start() {
    if already_running; then
        echo "$ENVFILE"
        return 0
    fi

    command -v curl >/dev/null || die "curl is needed (run scripts/install-deps.sh)"
    local garage
    garage="$(ensure_garage)"

    port_open "$PORT" && die "port 127.0.0.1:$PORT is already in use by another process (set BUCKETFS_S3_PORT)"
    port_open "$RPC_PORT" && die "port 127.0.0.1:$RPC_PORT is already in use by another process (set BUCKETFS_S3_RPC_PORT)"

    local preload=()
    if [[ "$NODELAY" != 0 ]]; then
        ensure_shim
        preload=(env "LD_PRELOAD=$SHIM")
    fi

    # Fresh server: wipe all stored data and metadata.
    rm -rf "$STATE_DIR/data" "$STATE_DIR/meta"
    mkdir -p "$STATE_DIR/data" "$STATE_DIR/meta"

    cat >"$CONF" <<EOF
metadata_dir = "$STATE_DIR/meta"
data_dir = "$STATE_DIR/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(rand_hex 32)"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$PORT"
root_domain = ".localhost"
EOF
    chmod 600 "$CONF"

    local access_key secret_key
    access_key="GK$(rand_hex 12)"
    secret_key="$(rand_hex 32)"

    log "starting garage on 127.0.0.1:$PORT (state in $STATE_DIR, nodelay shim: $([[ $NODELAY != 0 ]] && echo on || echo off))"
    # Run from / so the server does not keep the caller's cwd busy; setsid detaches it from
    # the caller's process group (a Ctrl-C in the caller's terminal does not reach it).
    (
        cd /
        exec 9>&- # do not hand the start/stop lock to the server
        export GARAGE_DEFAULT_ACCESS_KEY="$access_key"
        export GARAGE_DEFAULT_SECRET_KEY="$secret_key"
        export GARAGE_DEFAULT_BUCKET="$BUCKET"
        export RUST_LOG="${RUST_LOG:-garage=info}"
        export NO_COLOR=1 # plain log file, no ANSI colours
        exec setsid "${preload[@]}" "$garage" -c "$CONF" server --single-node --default-bucket \
            </dev/null >"$LOG" 2>&1
    ) &
    local pid=$!
    echo "$pid" >"$PIDFILE"
    echo "$PORT" >"$PORTFILE"

    wait_until_up "$pid"

    umask 077
    cat >"$ENVFILE.tmp" <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=$access_key
export AWS_SECRET_ACCESS_KEY=$secret_key
export AWS_REGION=$REGION
export S3_BUCKET=$BUCKET
EOF
    mv -f "$ENVFILE.tmp" "$ENVFILE"

    # The key and bucket are created right after startup: wait until a listing works.
    local code=
    for ((i = 0; i < 100; i++)); do
        code="$(s3_curl_status "/$BUCKET?list-type=2")"
        [[ "$code" == 200 ]] && break
        sleep 0.1
    done
    if [[ "$code" != 200 ]]; then
        log "listing bucket $BUCKET failed (HTTP $code); last lines of $LOG:"
        tail -n 30 "$LOG" >&2 || true
        do_stop
        exit 1
    fi
    log "running (pid $pid), bucket $BUCKET at http://127.0.0.1:$PORT"
    echo "$ENVFILE"
}

server_main "$@"
