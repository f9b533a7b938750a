# shellcheck shell=bash
# scripts/bench.sh --faults: each selected workload runs twice for each tool, one after the
# other: through examples/fault_proxy.rs with no faults, then through it with the issue-14
# mix (4 % each of 500, 503 SlowDown, reset before the answer, reset mid-body; 3 % stalls
# of 2-5 s). Every pass starts a fresh proxy seeded with BENCH_FAULT_SEED (14), so the n-th
# request of a pass meets the same decision in every run; its counters (stats file) give
# the requests the tool made, recorded as {"workload": "proxy", "group": W, "tool": T,
# "faults": MIX, "stats": {...}}. The mounts (and the raw tool's measured commands) reach
# the server through the proxy; fixtures and the raw tool's waits ("until in the bucket")
# go to the server directly. Sourced by bench.sh (needs lib.sh and workloads.sh).

FAULT_PORT=${BENCH_FAULT_PORT:-3912}
FAULT_SEED=${BENCH_FAULT_SEED:-14}
FAULT_MIXES=(none issue14)

port_open() { (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

# start_fault_proxy MIX LABEL: a fresh proxy on FAULT_PORT in front of SERVER_ENDPOINT; sets
# FAULT_PID, FAULT_STATS (its stats file) and FAULT_ENDPOINT.
start_fault_proxy() {
    local mix=$1 label=$2 i
    FAULT_STATS="$LOGS/faults-$label.json" FAULT_ENDPOINT="http://127.0.0.1:$FAULT_PORT"
    rm -f "$FAULT_STATS"
    if port_open "$FAULT_PORT"; then
        log "port $FAULT_PORT is taken (set BENCH_FAULT_PORT)"
        return 1
    fi
    "$FPROXY" "127.0.0.1:$FAULT_PORT" "$SERVER_ENDPOINT" --seed "$FAULT_SEED" --mix "$mix" \
        --stats-file "$FAULT_STATS" 2>"$LOGS/faults-$label.log" &
    FAULT_PID=$!
    for i in $(seq 50); do
        port_open "$FAULT_PORT" && break
        sleep 0.1
    done
    if ! kill -0 "$FAULT_PID" 2>/dev/null || ! port_open "$FAULT_PORT"; then
        log "the fault proxy did not start; see $LOGS/faults-$label.log"
        stop_fault_proxy
        return 1
    fi
}

# stop_fault_proxy: SIGTERM (the proxy writes its final counters), SIGKILL after 10 s.
stop_fault_proxy() {
    [[ -n "${FAULT_PID:-}" ]] || return 0
    kill -TERM "$FAULT_PID" 2>/dev/null
    wait_gone "$FAULT_PID" 10 || kill -KILL "$FAULT_PID" 2>/dev/null
    wait "$FAULT_PID" 2>/dev/null
    FAULT_PID=
}

# group_keys W: the result rows workload W records.
group_keys() {
    case $1 in
    read) echo read-cold read-warm ;;
    rsync) echo rsync-1 rsync-1-bucket rsync-2 rsync-3 ;;
    *) echo "$1" ;;
    esac
}

# record_proxy W TOOL MIX: the proxy's final counters for this pass.
record_proxy() {
    local stats requests faults
    stats=$(tr -d '\n' <"$FAULT_STATS" 2>/dev/null)
    [[ "$stats" == "{"*"}" ]] || stats="{}"
    echo "{\"workload\":\"proxy\",\"group\":\"$1\",\"tool\":\"$2\",\"faults\":\"$3\",\"status\":\"ok\",\"stats\":$stats}" \
        >>"$RESULTS"
    requests=$(grep -o '"requests":[0-9]*' <<<"$stats" | cut -d: -f2)
    faults=$(grep -o '"faults":[0-9]*' <<<"$stats" | cut -d: -f2)
    log "  $2 $1 [faults: $3]: the proxy saw ${requests:-?} requests, ${faults:-?} with a fault"
}

# fault_pass W TOOL MIX: workload W of TOOL once, through a fresh proxy with MIX.
fault_pass() {
    local w=$1 tool=$2 mix=$3 k
    FAULTS_TAG=$mix
    if ! start_fault_proxy "$mix" "$w-$tool-$mix"; then
        for k in $(group_keys "$w"); do
            record "$k" "$tool" failed 0 0 note="fault proxy did not start"
        done
        FAULTS_TAG=
        return
    fi
    if [[ $tool == raw ]]; then
        export AWS_ENDPOINT_URL=$FAULT_ENDPOINT
        "raw_$w"
        export AWS_ENDPOINT_URL=$SERVER_ENDPOINT
    else
        TOOL_ENDPOINT=$FAULT_ENDPOINT
        "wl_$w" "$tool"
        TOOL_ENDPOINT=
    fi
    stop_fault_proxy
    record_proxy "$w" "$tool" "$mix"
    FAULTS_TAG=
}

run_all_faults() {
    local w tool mix
    SERVER_ENDPOINT=$AWS_ENDPOINT_URL
    log "fault passes: proxy on port $FAULT_PORT, seed $FAULT_SEED, mixes ${FAULT_MIXES[*]}"
    for w in "${WORKLOADS[@]}"; do
        log "== $w"
        for tool in raw bucketfs s3fs rclone; do
            want_tool "$tool" || continue
            [[ $tool != raw ]] || declare -F "raw_$w" >/dev/null || continue
            for mix in "${FAULT_MIXES[@]}"; do
                fault_pass "$w" "$tool" "$mix"
            done
        done
    done
}
