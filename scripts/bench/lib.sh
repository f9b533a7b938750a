# shellcheck shell=bash
# Helpers of scripts/bench.sh: timing, result records, and mounting / unmounting each tool
# (bucketfs, s3fs, rclone mount) with its daemon's PID found, its peak RSS sampled, and a
# forced cleanup when a peer hangs. Sourced by bench.sh, which sets the globals used here:
# RUN (scratch dir), LOGS, RESULTS (jsonl), BFS and RAW (binaries), S3_* / AWS_* (server env).
# With --faults (scripts/bench/faults.sh) also FAULTS_TAG (the fault mix of the pass under
# way: none or issue14; empty otherwise), added to every record and log name, and
# TOOL_ENDPOINT (the fault proxy), which the mounts use instead of AWS_ENDPOINT_URL. With
# --scale also SCALE_N (the size of the series under way), added as n likewise.

log() {
    echo "bench: $*" >&2
    [[ -z "${STEP_LOG:-}" ]] || echo "== $(date +%T) $*" >>"$STEP_LOG"
}

now() { date +%s.%N; }

# tags: the JSON fields every record of this mode carries (fault pass, scale size).
tags() { echo "${FAULTS_TAG:+,\"faults\":\"$FAULTS_TAG\"}${SCALE_N:+,\"n\":$SCALE_N}"; }

# elapsed T0 T1: seconds between two `now` values, 3 decimals.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# record WORKLOAD TOOL STATUS SECONDS BYTES [KEY=VALUE...]: appends one JSON line to $RESULTS.
# Values that look like numbers are written as numbers, the rest as strings.
record() {
    local workload=$1 tool=$2 status=$3 secs=$4 bytes=$5
    shift 5
    local line kv k v
    line="{\"workload\":\"$workload\",\"tool\":\"$tool\",\"status\":\"$status\""
    line+=",\"seconds\":${secs:-0},\"bytes\":${bytes:-0}$(tags)"
    for kv in "$@"; do
        [[ -n "$kv" ]] || continue
        k=${kv%%=*} v=${kv#*=}
        if [[ "$v" =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; then
            line+=",\"$k\":$v"
        else
            v=${v//\\/\\\\} v=${v//\"/\\\"} v=${v//[[:cntrl:]]/ }
            line+=",\"$k\":\"$v\""
        fi
    done
    echo "$line}" >>"$RESULTS"
    log "  $tool $workload${FAULTS_TAG:+ [faults: $FAULTS_TAG]}${SCALE_N:+ [n=$SCALE_N]}: $status ${secs:-0} s${*:+ ($*)}"
}

# guard LIMIT CMD...: CMD under a time limit, its output appended to $STEP_LOG.
guard() {
    local limit=$1
    shift
    timeout -k 10 "$limit" "$@" >>"$STEP_LOG" 2>&1
}

# Drops the page cache (client and server: same machine). Prints ok or failed.
drop_caches() {
    if timeout 60 sync -f "$S3_STATE_DIR" 2>/dev/null &&
        (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
        echo ok
    else
        echo failed
    fi
}

# --- Mounts --------------------------------------------------------------------------------
# One mount at a time, always at $RUN/mnt/TOOL. mount_tool sets MNT, MNT_PID, MNT_TOOL,
# MNT_LABEL, MNT_CACHE; unmount_tool samples VmHWM, unmounts and records the RSS.

is_mounted() { grep -qs " $1 fuse" /proc/self/mounts; }

# wait_mounted DIR SECONDS
wait_mounted() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        is_mounted "$1" && return 0
        sleep 0.1
    done
    return 1
}

# daemon_pid NAME DIR: PID of the live process named NAME (argv[0] basename) that has DIR as
# one of its arguments. The daemons all fork away from the command that started them.
daemon_pid() {
    local name=$1 dir=$2 p args state
    for p in /proc/[0-9]*; do
        mapfile -d '' -t args <"$p/cmdline" 2>/dev/null || continue
        [[ ${#args[@]} -gt 0 && "${args[0]##*/}" == "$name" ]] || continue
        printf '%s\n' "${args[@]}" | grep -qxF -- "$dir" || continue
        state=$(awk '{ print $3 }' "$p/stat" 2>/dev/null)
        [[ -n "$state" && "$state" != Z ]] || continue
        echo "${p#/proc/}"
        return 0
    done
    return 1
}

pid_alive() { # a zombie counts as gone
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# wait_gone PID SECONDS
wait_gone() {
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        pid_alive "$1" || return 0
        sleep 0.1
    done
    return 1
}

# mount_log: the current mount's daemon log (per fault pass with --faults, per size with
# --scale).
mount_log() { echo "$LOGS/$MNT_TOOL-$MNT_LABEL${FAULTS_TAG:+-faults-$FAULTS_TAG}${SCALE_N:+-$SCALE_N}.log"; }

# daemon_cmd TOOL PREFIX: sets DAEMON_CMD to the tool's own mount command (each daemonizes
# itself and returns once mounted, or nearly).
daemon_cmd() {
    local tool=$1 prefix=$2 logf endpoint=${TOOL_ENDPOINT:-$AWS_ENDPOINT_URL}
    logf=$(mount_log)
    case $tool in
    bucketfs)
        DAEMON_CMD=("$BFS" mount "s3://$S3_BUCKET/$prefix" "$MNT" --endpoint "$endpoint"
            --cache-dir "$MNT_CACHE" --log-file "$logf"
            ${BENCH_METRICS_ADDR:+--metrics-addr "$BENCH_METRICS_ADDR"})
        ;;
    s3fs)
        DAEMON_CMD=(s3fs "$S3_BUCKET:/$prefix" "$MNT" -o "passwd_file=$RUN/s3fs.passwd"
            -o "url=$endpoint,use_path_request_style,endpoint=$AWS_REGION,sigv4"
            -o "logfile=$logf,dbglevel=warn")
        ;;
    rclone)
        # The remote comes from the environment; AWS_CA_BUNDLE breaks rclone (NOTES.md).
        DAEMON_CMD=(env -u AWS_CA_BUNDLE
            RCLONE_CONFIG_BENCHS3_TYPE=s3
            RCLONE_CONFIG_BENCHS3_PROVIDER=Other
            RCLONE_CONFIG_BENCHS3_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID"
            RCLONE_CONFIG_BENCHS3_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
            RCLONE_CONFIG_BENCHS3_ENDPOINT="$endpoint"
            RCLONE_CONFIG_BENCHS3_REGION="$AWS_REGION"
            RCLONE_CONFIG_BENCHS3_FORCE_PATH_STYLE=true
            rclone mount "benchs3:$S3_BUCKET/$prefix" "$MNT"
            --vfs-cache-mode writes --cache-dir "$MNT_CACHE" --daemon --log-file "$logf")
        ;;
    esac
}

daemon_name() {
    case $1 in
    bucketfs) basename "$BFS" ;;
    *) echo "$1" ;;
    esac
}

# mount_tool TOOL PREFIX LABEL: fresh mount of s3://BUCKET/PREFIX with an empty cache dir.
mount_tool() {
    MNT_TOOL=$1 MNT_LABEL=$3 MNT="$RUN/mnt/$1" MNT_CACHE="$RUN/cache/$1-$3" MNT_PID=
    mkdir -p "$MNT" "$MNT_CACHE"
    if is_mounted "$MNT"; then
        log "$MNT is still mounted; forcing it off"
        force_unmount
    fi
    daemon_cmd "$1" "$2"
    if ! guard 90 "${DAEMON_CMD[@]}" || ! wait_mounted "$MNT" 30; then
        log "mounting $1 ($3) failed; see $STEP_LOG and $(mount_log)"
        MNT_PID=$(daemon_pid "$(daemon_name "$1")" "$MNT") || MNT_PID=
        force_unmount
        MNT=
        return 1
    fi
    MNT_PID=$(daemon_pid "$(daemon_name "$1")" "$MNT") || MNT_PID=
    [[ -n "$MNT_PID" ]] || log "warning: cannot find the $1 daemon's PID (no RSS for $3)"
    return 0
}

# rclone returns from writes before uploading and, when unmounted, exits without uploading
# what is still pending (v1.60): wait until no file of its cache is dirty.
rclone_settle() {
    local meta="$MNT_CACHE/vfsMeta" i
    for ((i = 0; i < 9000; i++)); do
        grep -rqs '"Dirty": true' "$meta" || return 0
        sleep 0.1
    done
    return 1
}

# sample_rss [STEP]: an rss record of the daemon (by MNT_PID): kib = VmHWM (its peak so far),
# rss_kib = VmRSS (now), step = the moment (default unmount: unmount_tool's sample).
sample_rss() {
    [[ -n "$MNT_PID" ]] || return 0
    local hwm rss
    read -r hwm rss < <(awk '/^VmHWM:/ { h = $2 } /^VmRSS:/ { r = $2 } END { print h, r }' \
        "/proc/$MNT_PID/status" 2>/dev/null)
    [[ -n "$hwm" && -n "$rss" ]] || return 0
    echo "{\"workload\":\"rss\",\"tool\":\"$MNT_TOOL\",\"mount\":\"$MNT_LABEL\",\"step\":\"${1:-unmount}\",\"kib\":$hwm,\"rss_kib\":$rss,\"status\":\"ok\"$(tags)}" \
        >>"$RESULTS"
}

# scale_rss STEP: with --scale, sample_rss STEP (RSS during a mount, not only at its end).
scale_rss() { [[ -z "${SCALE_N:-}" ]] || sample_rss "$1"; }

# Abort the FUSE connection, lazy-unmount and kill our daemon (by PID): for hung peers.
force_unmount() {
    local dev
    dev=$(awk -v m="$MNT" '$5 == m { print $3 }' /proc/self/mountinfo | tail -n 1)
    if [[ -n "$dev" && -e "/sys/fs/fuse/connections/${dev#*:}/abort" ]]; then
        echo 1 >"/sys/fs/fuse/connections/${dev#*:}/abort" 2>/dev/null || true
    fi
    is_mounted "$MNT" && umount -l "$MNT" 2>/dev/null
    if [[ -n "${MNT_PID:-}" ]] && pid_alive "$MNT_PID"; then
        kill -TERM "$MNT_PID" 2>/dev/null
        wait_gone "$MNT_PID" 10 || kill -KILL "$MNT_PID" 2>/dev/null
    fi
    MNT_PID=
}

# unmount_tool: clean unmount (pending uploads finished), then RSS recorded and cache removed.
# A tool whose unmount fails or whose daemon does not exit is forced off. UNMOUNT_LIMIT
# (seconds, default 900) bounds `bucketfs unmount`, which waits for pending uploads.
unmount_tool() {
    [[ -n "${MNT:-}" ]] || return 0
    sample_rss
    local ok=0
    # Diagnostics: with BENCH_METRICS_ADDR, bucketfs's metrics (per-operation and
    # per-request latencies) are kept beside its log.
    if [[ $MNT_TOOL == bucketfs && -n "${BENCH_METRICS_ADDR:-}" ]]; then
        curl -s --max-time 5 "http://$BENCH_METRICS_ADDR/metrics" >"$(mount_log).metrics" || true
    fi
    case $MNT_TOOL in
    bucketfs) guard "${UNMOUNT_LIMIT:-900}" "$BFS" unmount "$MNT" || ok=1 ;;
    s3fs) guard 120 umount "$MNT" || ok=1 ;;
    rclone)
        rclone_settle || log "rclone still has dirty files after 900 s"
        guard 120 umount "$MNT" || ok=1
        ;;
    esac
    if ((ok == 0)) && [[ -n "$MNT_PID" ]] && ! wait_gone "$MNT_PID" 120; then
        log "$MNT_TOOL daemon $MNT_PID did not exit after unmount"
        ok=1
    fi
    if ((ok != 0)) || is_mounted "$MNT"; then
        log "clean unmount of $MNT_TOOL ($MNT_LABEL) failed; forcing"
        force_unmount
    fi
    rm -rf "$MNT_CACHE"
    MNT= MNT_PID=
    return $ok
}
