#!/usr/bin/env bash
# Local moto S3 server (moto's "server mode") for bucketfs tests that must see what Garage
# ignores: server-side encryption, ACLs, storage classes.
#
# Usage: scripts/moto-server.sh start|stop|env|status
#
#   start   Install moto in a venv if needed, start the server unless one from this state
#           dir is already running, create the bucket, and print the path of the env file on
#           stdout (all other messages go to stderr). Typical use:
#               . "$(scripts/moto-server.sh start)"
#   stop    Stop the server (by the PID in the pid file), OK if it is not running.
#   env     Print the env file path; exit 1 if the server is not running.
#   status  Print "running ..." (exit 0) or "not running" (exit 1).
#
# Environment:
#   BUCKETFS_MOTO_DIR      state dir (default /tmp/bucketfs-moto): venv/, moto.pid, moto.log,
#                          env, port
#   BUCKETFS_MOTO_PORT     port on 127.0.0.1 (default 3950)
#   BUCKETFS_MOTO_BUCKET   bucket name (default bucketfs-test)
#   BUCKETFS_MOTO_VERSION  moto version to install (default: the newest)
#
# The env file has the same format as scripts/s3-server.sh's: export lines for
# AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and S3_BUCKET.
# moto accepts any keys; fixed fake ones are used. moto keeps everything in memory: a
# fresh start is an empty bucket. It is single-threaded Python: keep test data small.
set -euo pipefail

STATE_DIR="${BUCKETFS_MOTO_DIR:-/tmp/bucketfs-moto}"
PORT="${BUCKETFS_MOTO_PORT:-3950}"
BUCKET="${BUCKETFS_MOTO_BUCKET:-bucketfs-test}"
MOTO_VERSION="${BUCKETFS_MOTO_VERSION:-}"
REGION=us-east-1
ACCESS_KEY=AKIAMOTOBUCKETFSTEST
SECRET_KEY=moto-bucketfs-fake-secret-key

VENV="$STATE_DIR/venv"
MOTO_SERVER="$VENV/bin/moto_server"
PIDFILE="$STATE_DIR/moto.pid"
LOG="$STATE_DIR/moto.log"
ENVFILE="$STATE_DIR/env"
PORTFILE="$STATE_DIR/port"

NAME=moto
CMDLINE_MATCH="$MOTO_SERVER -H 127.0.0.1"
# shellcheck source=scripts/lib/server.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/server.sh"

ensure_moto() {
    if [[ -x "$MOTO_SERVER" ]]; then
        if [[ -z "$MOTO_VERSION" ]] \
            || "$VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
            return 0
        fi
    fi
    command -v python3 >/dev/null || die "python3 is needed"
    if [[ ! -x "$VENV/bin/pip" ]]; then
        log "creating a Python venv in $VENV"
        rm -rf "$VENV"
        python3 -m venv "$VENV" >&2 || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    fi
    local spec="moto[server]"
    [[ -n "$MOTO_VERSION" ]] && spec="moto[server]==$MOTO_VERSION"
    log "installing $spec into $VENV (~30 s)..."
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$spec" >&2 \
        || die "pip install '$spec' failed"
    [[ -x "$MOTO_SERVER" ]] || die "$MOTO_SERVER missing after pip install"
}

# HTTP status of a signed request (SigV4 by curl; moto also takes unsigned ones).
s3_curl_status() { # $1 = method, $2 = path+query
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$1" \
        --aws-sigv4 "aws:amz:$REGION:s3" \
        --user "$ACCESS_KEY:$SECRET_KEY" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        "http://127.0.0.1:$PORT$2" || true
}

do_start() {
    if already_running; then
        # The bucket may have been deleted meanwhile: create it again (idempotent).
        create_bucket
        echo "$ENVFILE"
        return 0
    fi

    command -v curl >/dev/null || die "curl is needed (run scripts/install-deps.sh)"
    ensure_moto
    port_open "$PORT" && die "port 127.0.0.1:$PORT is already in use by another process (set BUCKETFS_MOTO_PORT)"

    log "starting moto on 127.0.0.1:$PORT (state in $STATE_DIR)"
    # Run from /; setsid detaches it from the caller's process group.
    (
        cd /
        exec 9>&- # do not hand the start/stop lock to the server
        exec setsid "$MOTO_SERVER" -H 127.0.0.1 -p "$PORT" </dev/null >"$LOG" 2>&1
    ) &
    local pid=$!
    echo "$pid" >"$PIDFILE"
    echo "$PORT" >"$PORTFILE"

    wait_until_up "$pid"

    create_bucket

    umask 077
    cat >"$ENVFILE.tmp" <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=$REGION
export S3_BUCKET=$BUCKET
EOF
    mv -f "$ENVFILE.tmp" "$ENVFILE"
    log "running (pid $pid), bucket $BUCKET at http://127.0.0.1:$PORT"
    echo "$ENVFILE"
}

# CreateBucket (200, or 409 when it exists), then wait until a listing works.
create_bucket() {
    local code i
    for ((i = 0; i < 100; i++)); do
        code="$(s3_curl_status PUT "/$BUCKET")"
        [[ "$code" == 200 || "$code" == 409 ]] && break
        sleep 0.1
    done
    [[ "$code" == 200 || "$code" == 409 ]] || {
        log "creating bucket $BUCKET failed (HTTP $code); last lines of $LOG:"
        tail -n 30 "$LOG" >&2 || true
        do_stop
        exit 1
    }
    for ((i = 0; i < 100; i++)); do
        code="$(s3_curl_status GET "/$BUCKET?list-type=2")"
        [[ "$code" == 200 ]] && return 0
        sleep 0.1
    done
    log "listing bucket $BUCKET failed (HTTP $code); last lines of $LOG:"
    tail -n 30 "$LOG" >&2 || true
    do_stop
    exit 1
}

server_main "$@"
