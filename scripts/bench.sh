#!/usr/bin/env bash
# Benchmark of bucketfs against the raw S3 API and two peers (s3fs and rclone mount), all on
# the local Garage server (scripts/s3-server.sh), in one run. By hand only, never in CI.
#
#   scripts/bench.sh [--quick | --scale N[,N...]] [--remote | --faults] [--only WORKLOAD,...]
#                    [--tools TOOL,...] [--no-build] [--keep]
#
#   --quick     sizes divided (128 MiB instead of 1 GiB, 1,000 entries instead of 10,000,
#               200 files instead of 2,000, 100 small files instead of 1,000): a few minutes
#   --only      workloads among: read write small ls find du rsync (default: all; with
#               --scale among ls-f ls find du)
#   --tools     among: raw bucketfs s3fs rclone (default: all)
#   --no-build  use the release binaries already built
#   --keep      leave the run's objects in the bucket (default: deleted at the end)
#   --remote    every tool reaches the server through examples/latency_proxy.rs, which delays
#               answers by BENCH_REMOTE_DELAY_MS (30) and caps each connection at
#               BENCH_REMOTE_MIBPS (60) MiB/s: a server in another data centre; every
#               workload (the walks find and du too) and --scale's steps go through it.
#               The proxy listens on port BENCH_REMOTE_PORT (3911)
#   --faults    (not with --remote) each workload runs twice per tool, one after the other:
#               through examples/fault_proxy.rs without faults, then with the mix of issue
#               14 (4 % each of 500, 503 SlowDown, reset before the answer, reset mid-body;
#               3 % stalls of 2-5 s), seeded with BENCH_FAULT_SEED (14), a fresh proxy per
#               pass on port BENCH_FAULT_PORT (3912). The table shows each tool's time
#               without and with faults, the slowdown (with / without) and the requests the
#               proxy saw in each pass. Default workloads: read write ls find du rsync;
#               ls lists 2,000 entries (--quick: the quick sizes). See scripts/bench/faults.sh
#   --scale     (not with --quick or --faults) how listings, walks and daemon memory grow
#               with the bucket (issue 19): one series per size N (at least 100; several
#               in one run: --scale 10000,100000), each on inputs the raw tool makes for it
#               (16-byte objects, 128 PUTs in flight): a directory of N objects and a tree
#               of N objects in N/100 directories. Each step on a fresh mount, cold:
#                 ls-f  `ls -f` of the directory (names only)    raw: LIST, every page
#                 ls    `ls -l` of it, then at once again on the same mount (ls-again)
#                                           raw: LIST + a HEAD per key, 64 in flight; the
#                                           repeat is set against the LIST (listing anew)
#                 find  `find` of the tree                       raw: one LIST without a
#                 du    `du -s` of the tree                      delimiter of the tree
#               --only picks among ls-f ls find du. The daemon's RSS (VmRSS, by its PID)
#               is sampled right after each mount (idle) and after each step. The table
#               shows per size each tool's times and tool / raw, the RSS after each step
#               (+ growth over its mount's idle) and the growth per entry, (RSS after
#               ls -l - idle) / N; with several sizes a second table sets each tool's
#               growth side by side, and per entry added from one size to the next. A
#               step's time limit: 120 s + 50 ms per entry. No chart
#
# Workloads (raw = examples/raw_s3.rs, rust-s3 with bucketfs's default part size and
# concurrency: the floor the server allows):
#   read    sequential read of 1 GiB, cold (fresh mount, page cache dropped), then warm
#           (same mount again)                               raw: parallel ranged GETs
#   write   sequential write of 1 GiB from a local file, until the object is in the bucket
#                                                            raw: multipart PUT
#   small   1,000 files of 4 KiB (cp -r), until all are in the bucket
#                                                            raw: 1,000 sequential PUTs
#   ls      cold `ls -l` of a directory of 10,000 entries    raw: LIST + HEAD of each key
#   find    cold `find` of 2,000 files in 40 directories     raw: LIST
#   du      cold `du -s` of the same tree                    raw: LIST
#   rsync   `rsync -a --stats` of 2,000 small files in 40 directories (varied modes and
#           sub-second mtimes, 10 relative, absolute and dangling symlinks) into the mount:
#           run 1 on a fresh mount (and until in the bucket: every file and every symlink
#           the tool could create), run 2 on the same mount, run 3 on a fresh mount; files
#           transferred and errors (e.g. symlinks not supported) are counted
#   rss     peak RSS (VmHWM) of each daemon, sampled before each unmount; the table shows
#           the largest
# Writes are timed until the data is in the bucket (HEAD / LIST polling by the raw tool)
# because rclone (--vfs-cache-mode writes) returns before uploading.
#
# Every step has a time limit and a hung peer is force-unmounted; a failed measurement is
# recorded as failed and the run goes on. Each tool writes under its own key prefix; the
# read-only inputs (fixtures) are created once per run with the raw tool, with random data
# (Garage compresses and deduplicates).
#
# Output: the table on stdout, results/bench-<timestamp>.json, results/bench-<timestamp>.png
# (grouped bar chart), results/latest.md (markdown table with date, machine and server), logs
# in results/bench-<timestamp>.logs/. One-time setup, idempotent: apt packages s3fs rclone
# rsync fuse3 python3-venv (if missing), a Python venv with matplotlib in ~/.cache/bucketfs-bench/venv,
# the local S3 server (started if not running; left running), the release build.
#
# Diagnostics: BENCH_METRICS_ADDR=127.0.0.1:PORT makes each bucketfs mount serve its metrics
# there (--metrics-addr); they are saved beside the mount's log (.metrics) before unmount.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="$REPO/scripts/bench"
export PATH="$HOME/.cargo/bin:$PATH"
# shellcheck source=scripts/bench/lib.sh
. "$BENCH_DIR/lib.sh"
# shellcheck source=scripts/bench/workloads.sh
. "$BENCH_DIR/workloads.sh"
# shellcheck source=scripts/bench/faults.sh
. "$BENCH_DIR/faults.sh"

ALL_WORKLOADS=(read write small ls find du rsync)
SCALE_WORKLOADS=(ls-f ls find du)
ALL_TOOLS=(raw bucketfs s3fs rclone)
# Raw tool parameters: bucketfs's defaults. Writes: 8 MiB parts, 4 uploads in flight.
# Reads: 8 MiB GETs, 8 in flight (the 64 MiB read-ahead window).
PART=$((8 << 20))
PAR=4
READ_PAR=8

usage() {
    # The header up to the workloads, however many options it lists.
    sed -n '2,/^# Workloads/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 2
}

parse_args() {
    QUICK=0 BUILD=1 KEEP=0 REMOTE=0 FAULTS=0 SCALE=0 SCALES=()
    local only=0 known n
    WORKLOADS=("${ALL_WORKLOADS[@]}") TOOLS=("${ALL_TOOLS[@]}")
    while (($#)); do
        case $1 in
        --quick) QUICK=1 ;;
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        --remote) REMOTE=1 ;;
        --faults) FAULTS=1 ;;
        --scale) IFS=, read -ra SCALES <<<"${2:?--scale needs a size or a list}" && SCALE=1 && shift ;;
        --only) IFS=, read -ra WORKLOADS <<<"${2:?--only needs a list}" && only=1 && shift ;;
        --tools) IFS=, read -ra TOOLS <<<"${2:?--tools needs a list}" && shift ;;
        -h | --help) usage ;;
        *) echo "bench: unknown argument $1" >&2 && usage ;;
        esac
        shift
    done
    if ((REMOTE && FAULTS)); then
        echo "bench: --remote and --faults do not go together" >&2 && usage
    fi
    if ((SCALE && (FAULTS || QUICK))); then
        echo "bench: --scale goes with neither --faults nor --quick" >&2 && usage
    fi
    # cleanup's time limit to delete the run's keys: 300 s, + 4 ms per object --scale makes.
    DELETE_LIMIT=300
    for n in "${SCALES[@]}"; do
        if ! [[ "$n" =~ ^[0-9]+$ ]] || ((n < 100)); then
            echo "bench: --scale $n: a size is a number >= 100" >&2 && usage
        fi
        DELETE_LIMIT=$((DELETE_LIMIT + 2 * n / 250))
    done
    # The workloads of issue 14 (small files can still be asked for with --only).
    ((FAULTS == 0 || only)) || WORKLOADS=(read write ls find du rsync)
    known=("${ALL_WORKLOADS[@]}")
    ((SCALE == 0)) || known=("${SCALE_WORKLOADS[@]}")
    ((SCALE == 0 || only)) || WORKLOADS=("${known[@]}")
    local w
    for w in "${WORKLOADS[@]}"; do
        [[ " ${known[*]} " == *" $w "* ]] || { echo "bench: unknown workload $w" >&2 && usage; }
    done
    for w in "${TOOLS[@]}"; do
        [[ " ${ALL_TOOLS[*]} " == *" $w "* ]] || { echo "bench: unknown tool $w" >&2 && usage; }
    done
}

run_mode() {
    if ((SCALE)); then
        echo "scale: ${SCALES[*]} entries"
    elif ((QUICK)); then
        echo quick
    else
        echo full
    fi
}

want() { [[ " ${WORKLOADS[*]} " == *" $1 "* ]]; }
want_tool() { [[ " ${TOOLS[*]} " == *" $1 "* ]]; }

set_sizes() {
    if ((QUICK)); then
        BIG_MIB=128 SMALL_N=100 LIST_N=1000 TREE_N=200 RSYNC_N=200
    else
        BIG_MIB=1024 SMALL_N=1000 LIST_N=10000 TREE_N=2000 RSYNC_N=2000
    fi
    # --faults: `ls -l` of 2,000 entries (issue 14), as many as the tree has.
    ((FAULTS == 0 || QUICK)) || LIST_N=2000
    BIG=$((BIG_MIB << 20)) TREE_D=40 RSYNC_D=40 LIST_BYTES=100 TREE_BYTES=1024 FIX_PAR=32
    # --scale: the series of SCALE_N entries (tiny objects, many PUTs in flight to make them).
    if [[ -n "${SCALE_N:-}" ]]; then
        LIST_N=$SCALE_N TREE_N=$SCALE_N TREE_D=$((SCALE_N / 100)) LIST_BYTES=16 TREE_BYTES=16 FIX_PAR=128
    fi
    # Time limits: 1 s per MiB (+60) for the large file, generous ones for metadata (with
    # --scale also for the raw tool, which runs under T_BIG).
    T_BIG=$((60 + BIG_MIB)) T_META=$((120 + LIST_N / 20))
    [[ -z "${SCALE_N:-}" ]] || T_BIG=$T_META
}

# --- setup ---------------------------------------------------------------------------------

install_packages() {
    local missing=() c
    for c in s3fs rclone rsync; do
        command -v "$c" >/dev/null || missing+=("$c")
    done
    command -v fusermount3 >/dev/null || missing+=(fuse3)
    python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# PY: a Python with matplotlib if one could be set up (else plain python3: no chart).
setup_venv() {
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/bucketfs-bench/venv"
    PY=python3
    if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
        log "setting up $venv (matplotlib)"
        python3 -m venv "$venv" >&2 && "$venv/bin/pip" install -q matplotlib >&2 ||
            { log "warning: no matplotlib venv; the chart is skipped" && return 0; }
    fi
    PY="$venv/bin/python"
}

start_server() {
    local envf
    envf="$("$REPO/scripts/s3-server.sh" start)" || return 1
    # shellcheck disable=SC1090
    . "$envf"
    S3_STATE_DIR="${BUCKETFS_S3_DIR:-/tmp/bucketfs-s3}"
}

build() {
    BFS="$REPO/target/release/bucketfs" RAW="$REPO/target/release/examples/raw_s3"
    FPROXY="$REPO/target/release/examples/fault_proxy"
    if ((BUILD)); then
        log "building (release)"
        (cd "$REPO" && cargo build --release --quiet --bin bucketfs --example raw_s3 --example latency_proxy \
            --example fault_proxy) ||
            { log "the build failed (--no-build reuses the last release binaries)" && return 1; }
    fi
    [[ -x "$BFS" && -x "$RAW" ]] || { log "missing $BFS or $RAW (build without --no-build)" && return 1; }
    ((FAULTS == 0)) || [[ -x "$FPROXY" ]] || { log "missing $FPROXY (build without --no-build)" && return 1; }
}

# With --remote: starts the latency proxy and points every tool at it (AWS_ENDPOINT_URL).
start_proxy() {
    ((REMOTE)) || return 0
    local proxy="$REPO/target/release/examples/latency_proxy" port=${BENCH_REMOTE_PORT:-3911} i
    [[ -x "$proxy" ]] || { log "missing $proxy (build without --no-build)" && return 1; }
    REMOTE_NOTE="behind a proxy adding ${BENCH_REMOTE_DELAY_MS:-30} ms, ${BENCH_REMOTE_MIBPS:-60} MiB/s per connection"
    "$proxy" "127.0.0.1:$port" "${AWS_ENDPOINT_URL#http://}" --delay-ms "${BENCH_REMOTE_DELAY_MS:-30}" \
        --mib-per-s "${BENCH_REMOTE_MIBPS:-60}" >&2 &
    PROXY_PID=$!
    for i in $(seq 50); do
        (: </dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.1
    done
    kill -0 "$PROXY_PID" 2>/dev/null || { log "the latency proxy did not start (port $port taken?)" && return 1; }
    export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
    log "tools go through the latency proxy: $REMOTE_NOTE"
}

server_version() {
    local pid exe
    pid=$(cat "$S3_STATE_DIR/garage.pid" 2>/dev/null)
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null)
    [[ -n "$exe" ]] || return 1
    echo "Garage $("$exe" --version 2>/dev/null | grep -o '[0-9]\+\.[0-9]\+\.[0-9]\+' | head -n 1)"
}

write_meta() {
    local runtime=$1 mem_kib sizes raw_note
    mem_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
    sizes="{\"big_bytes\": $BIG, \"small_files\": $SMALL_N, \"list_entries\": $LIST_N,
           \"tree_files\": $TREE_N, \"tree_dirs\": $TREE_D, \"rsync_files\": $RSYNC_N,
           \"rsync_dirs\": $RSYNC_D, \"part_size\": $PART, \"parallel\": $PAR, \"read_parallel\": $READ_PAR}"
    raw_note="raw rows: read = parallel ranged GETs ($READ_PAR in flight), write = multipart PUT ($PAR in flight), both $((PART >> 20)) MiB parts, small = sequential PUTs (one at a time, as cp creates them), ls = LIST + a HEAD per key (64 in flight: the user metadata ls -l shows), find/du = LIST of the keys"
    if ((SCALE)); then
        sizes="{\"entries\": [$(IFS=, && echo "${SCALES[*]}")], \"object_bytes\": $LIST_BYTES, \"files_per_dir\": 100,
           \"fixture_parallel\": $FIX_PAR, \"heads_parallel\": 64, \"settle_s\": $SETTLE_S}"
        raw_note="raw rows: ls -f = LIST of the directory, every page of 1,000; ls -l = the same LIST + a HEAD per key (64 in flight: the user metadata ls -l shows); find/du = one LIST without a delimiter of the whole tree"
    fi
    cat >"$LOGS/meta.json" <<EOF
{"timestamp": "$TS", "date": "$(date -u '+%Y-%m-%d %H:%M UTC')", "quick": $([[ $QUICK == 1 ]] && echo true || echo false),
 "scale": $([[ $SCALE == 1 ]] && echo true || echo false),
 "nproc": $(nproc), "mem_gib": $(awk -v k="$mem_kib" 'BEGIN { printf "%.1f", k / 1048576 }'),
 "kernel": "Linux $(uname -r)", "server": "$(server_version || echo Garage)", "network": "${REMOTE_NOTE:-}",
 "faults": $( ((FAULTS)) && echo "{\"seed\": $FAULT_SEED, \"mixes\": [\"none\", \"issue14\"], \"proxy\": \"examples/fault_proxy.rs\"}" || echo null),
 "bucketfs_version": "$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)",
 "s3fs_version": "$(s3fs --version 2>/dev/null | head -n 1 | grep -o 'V[0-9.]*')",
 "rclone_version": "$(rclone version 2>/dev/null | head -n 1 | awk '{ print $2 }')",
 "sizes": $sizes,
 "logs": "results/bench-$TS.logs", "runtime_s": $runtime,
 "notes": ["$raw_note; times are the raw tool's own (no process start).", "s3fs: -o use_path_request_style,endpoint=$AWS_REGION,sigv4 (defaults otherwise: 10 MiB parts, 5 in flight). rclone: --vfs-cache-mode writes, provider Other, defaults otherwise (5 MiB parts, 4 in flight, 5 s write-back). bucketfs: defaults."]}
EOF
}

report() {
    "$PY" "$BENCH_DIR/report.py" --results "$RESULTS" --meta "$LOGS/meta.json" \
        --json "results/bench-$TS.json" --png "results/bench-$TS.png" --md results/latest.md
}

# --- run -----------------------------------------------------------------------------------

cleanup() {
    if [[ -n "${MNT:-}" ]]; then
        log "interrupted: forcing $MNT_TOOL off $MNT"
        force_unmount
    fi
    stop_fault_proxy
    [[ -z "${SERVER_ENDPOINT:-}" ]] || export AWS_ENDPOINT_URL=$SERVER_ENDPOINT
    if ((KEEP == 0)) && [[ -n "${RAW:-}" && -n "${PFX:-}" ]]; then
        timeout "$DELETE_LIMIT" "$RAW" delete-prefix "$PFX/" >/dev/null 2>&1 || log "could not delete $PFX/"
    fi
    [[ -n "${RUN:-}" ]] && rm -rf "$RUN"
    [[ -n "${PROXY_PID:-}" ]] && kill "$PROXY_PID" 2>/dev/null
}

run_all() {
    local w tool
    for w in "${WORKLOADS[@]}"; do
        log "== $w"
        if want_tool raw && declare -F "raw_${w//-/_}" >/dev/null; then
            "raw_${w//-/_}"
        fi
        for tool in bucketfs s3fs rclone; do
            want_tool "$tool" && "wl_${w//-/_}" "$tool"
        done
    done
}

# --scale: a series per size, each on inputs of its own.
run_scale() {
    local n
    for n in "${SCALES[@]}"; do
        SCALE_N=$n FIX="$PFX/scale-$n"
        set_sizes
        log "=== series of $n entries"
        setup_fixtures
        run_all
    done
    SCALE_N=
}

main() {
    parse_args "$@"
    set_sizes
    local start
    start=$(date +%s)
    cd "$REPO" || exit 1
    install_packages || { log "apt-get install failed" && exit 1; }
    setup_venv
    start_server || { log "the S3 server did not start" && exit 1; }
    build || exit 1
    start_proxy || exit 1

    TS=$(date +%Y%m%d-%H%M%S)
    PFX="bench-$TS" FIX="$PFX/fixtures" RUN="/tmp/bucketfs-bench-$TS" LOGS="$REPO/results/bench-$TS.logs"
    DATA="$RUN/data" RESULTS="$LOGS/results.jsonl" STEP_LOG="$LOGS/steps.log" EXTRA=()
    mkdir -p "$LOGS" "$DATA" "$RUN/mnt" "$RUN/cache"
    : >"$RESULTS"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    (umask 077 && echo "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" >"$RUN/s3fs.passwd")

    log "run $TS ($(run_mode)): prefix $PFX/, logs $LOGS"
    if ((SCALE)); then
        run_scale
    elif ((FAULTS)); then
        setup_fixtures
        run_all_faults
    else
        setup_fixtures
        run_all
    fi
    write_meta $(($(date +%s) - start))
    report
    log "total runtime $(($(date +%s) - start)) s"
}

main "$@"
