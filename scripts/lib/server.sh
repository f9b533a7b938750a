# Shared by scripts/s3-server.sh and scripts/moto-server.sh: the life of one local test server
# process, found by its pid file and stopped by PID only (never by name).
#
# The caller sets NAME (for messages), STATE_DIR, PIDFILE, PORTFILE, ENVFILE, LOG, PORT, CMDLINE_MATCH (a
# fixed string its command line contains) and defines do_start, then calls server_main "$@".

log() { echo "$NAME-server: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# TCP port on 127.0.0.1 accepts connections?
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# PID from the pid file if that process is alive and is the server of this state dir.
running_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CMDLINE_MATCH" || return 1
    echo "$pid"
}

# Running and the port (the one it was started with) answers.
is_up() {
    running_pid >/dev/null || return 1
    local port
    port="$(cat "$PORTFILE" 2>/dev/null)" || return 1
    port_open "$port"
}

# True when the server of this state dir already runs and answers; otherwise clears what a
# stale or half-dead one left behind, ready for a fresh start.
already_running() {
    if is_up; then
        log "already running (pid $(running_pid))"
        return 0
    fi
    if running_pid >/dev/null; then
        do_stop
    fi
    rm -f "$PIDFILE" "$ENVFILE" "$PORTFILE"
    return 1
}

# Waits up to 30 s for the server started as `pid` to answer on $PORT; on failure shows the
# end of its log and stops it.
wait_until_up() {
    local pid=$1 i
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$NAME exited during startup; last lines of $LOG:"
            tail -n 30 "$LOG" >&2 || true
            rm -f "$PIDFILE" "$PORTFILE"
            exit 1
        fi
        port_open "$PORT" && return 0
        sleep 0.1
    done
    log "$NAME did not answer on 127.0.0.1:$PORT within 30 s; last lines of $LOG:"
    tail -n 30 "$LOG" >&2 || true
    do_stop
    exit 1
}

do_stop() {
    local pid
    if pid="$(running_pid)"; then
        log "stopping $NAME (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        local i
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$NAME (pid $pid) did not exit after 10 s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
        fi
    else
        log "not running"
    fi
    rm -f "$PIDFILE" "$ENVFILE" "$PORTFILE"
}

do_status() {
    local pid
    if pid="$(running_pid)"; then
        local port
        port="$(cat "$PORTFILE" 2>/dev/null || echo '?')"
        if port_open "$port"; then
            echo "running (pid $pid, http://127.0.0.1:$port, env $ENVFILE)"
            return 0
        fi
        echo "not running (pid $pid alive but port $port does not answer)"
        return 1
    fi
    echo "not running"
    return 1
}

server_main() {
    case "${1:-}" in
    start | stop)
        mkdir -p "$STATE_DIR"
        # Serialize start/stop on the same state dir.
        exec 9>"$STATE_DIR/lock"
        flock 9
        "do_$1"
        ;;
    env)
        if is_up && [[ -f "$ENVFILE" ]]; then
            echo "$ENVFILE"
        else
            log "not running"
            exit 1
        fi
        ;;
    status) do_status ;;
    *)
        echo "usage: $0 start|stop|env|status" >&2
        exit 2
        ;;
    esac
}
