# shellcheck shell=bash
# The workloads of scripts/bench.sh. For each NAME in read write small ls find du rsync, and
# ls-f (--scale only; functions spell it ls_f):
#   raw_NAME       the raw S3 baseline (examples/raw_s3.rs), if the workload has one
#   wl_NAME TOOL   the same job through a mount of TOOL (bucketfs, s3fs, rclone)
# Each records its result(s) with `record`; a failure is recorded, never fatal.
# Key layout under the run prefix $PFX:
#   fixtures/big.bin, fixtures/list/*, fixtures/tree/dNNN/*   read-only inputs (raw put)
#   raw/...   TOOL/...                                        what each tool writes
#   TOOL-none/..., TOOL-issue14/...    with --faults: what each tool writes in each pass
#   scale-N/list/*, scale-N/tree/dNNN/*  with --scale: the inputs of size N
# FIX is the prefix of the inputs under way: $PFX/fixtures, or $PFX/scale-N.

# out_pfx TOOL: the key prefix TOOL writes under (one per fault pass with --faults).
out_pfx() { echo "$PFX/$1${FAULTS_TAG:+-$FAULTS_TAG}"; }

# status_of RC: sets STATUS (ok or failed) and NOTE (the reason of a failure).
status_of() {
    NOTE=
    case $1 in
    0) STATUS=ok ;;
    124 | 137) STATUS=failed NOTE=timeout ;;
    *) STATUS=failed NOTE="exit $1" ;;
    esac
}

# raw_timed WORKLOAD OUTFILE RAW-ARGS...: runs the raw tool, records its own seconds.
raw_timed() {
    local workload=$1 out=$2 rc secs bytes
    shift 2
    timeout -k 10 "$T_BIG" "$RAW" "$@" >"$out" 2>>"$STEP_LOG"
    rc=$?
    secs=$(grep -o '"seconds":[0-9.]*' "$out" | cut -d: -f2)
    bytes=$(grep -o '"bytes":[0-9]*' "$out" | cut -d: -f2)
    status_of $rc
    record "$workload" raw "$STATUS" "${secs:-0}" "${bytes:-0}" "${NOTE:+note=$NOTE}" "${EXTRA[@]}"
    EXTRA=()
}

mount_or_fail() { # mount_or_fail TOOL PREFIX LABEL WORKLOAD...
    local tool=$1 prefix=$2 label=$3 w
    shift 3
    mount_tool "$tool" "$prefix" "$label" && return 0
    for w in "$@"; do
        record "$w" "$tool" failed 0 0 note="mount failed"
    done
    return 1
}

# --- setup of the read-only inputs ---------------------------------------------------------

setup_fixtures() {
    if want read; then
        log "fixture: $BIG_MIB MiB object"
        guard "$T_BIG" "$RAW" put "$FIX/big.bin" --size "$BIG" \
            --parallel "$PAR" --part-size "$PART" || log "fixture big.bin FAILED"
    fi
    if want ls || want ls-f; then
        log "fixture: $LIST_N objects in one directory"
        guard "$T_META" "$RAW" put-many "$FIX/list" --count "$LIST_N" --size "$LIST_BYTES" \
            --parallel "$FIX_PAR" || log "fixture list FAILED"
    fi
    if want find || want du; then
        log "fixture: $TREE_N objects in $TREE_D directories"
        guard "$T_META" "$RAW" put-many "$FIX/tree" --count "$TREE_N" --size "$TREE_BYTES" \
            --parallel "$FIX_PAR" --dirs "$TREE_D" || log "fixture tree FAILED"
    fi
}

# --- sequential read, cold then warm -------------------------------------------------------

raw_read() {
    local cache
    cache=$(drop_caches)
    EXTRA=(cache_drop="$cache")
    raw_timed read-cold "$RUN/raw.json" get "$FIX/big.bin" --parallel "$READ_PAR" --part-size "$PART"
    raw_timed read-warm "$RUN/raw.json" get "$FIX/big.bin" --parallel "$READ_PAR" --part-size "$PART"
}

# read_once WORKLOAD TOOL [KEY=VALUE...]: dd of the whole file, checked against its size.
read_once() {
    local workload=$1 tool=$2 t0 t1 rc bytes
    shift 2
    t0=$(now)
    timeout -k 10 "$T_BIG" dd if="$MNT/big.bin" of=/dev/null bs=1M 2>"$RUN/dd.err"
    rc=$?
    t1=$(now)
    cat "$RUN/dd.err" >>"$STEP_LOG"
    bytes=$(grep -o '^[0-9]* bytes' "$RUN/dd.err" | cut -d' ' -f1)
    status_of $rc
    if [[ $STATUS == ok && "${bytes:-0}" != "$BIG" ]]; then
        STATUS=wrong NOTE="read ${bytes:-0} of $BIG bytes"
    fi
    record "$workload" "$tool" "$STATUS" "$(elapsed "$t0" "$t1")" "${bytes:-0}" "${NOTE:+note=$NOTE}" "$@"
}

wl_read() {
    local tool=$1 cache
    mount_or_fail "$tool" "$FIX" read read-cold read-warm || return
    cache=$(drop_caches)
    read_once read-cold "$tool" cache_drop="$cache"
    read_once read-warm "$tool"
    unmount_tool
}

# --- sequential write, until the object is in the bucket ------------------------------------

raw_write() {
    sync # as before every tool's write: no earlier writeback in the measurement
    raw_timed write "$RUN/raw.json" put "$PFX/raw/write.bin" --size "$BIG" --parallel "$PAR" --part-size "$PART"
}

wl_write() {
    local tool=$1 src="$DATA/write-$tool.bin" t0 t1 t_dd rc
    # New random bytes for every tool: Garage deduplicates identical blocks. Then a sync, so
    # that neither the writeback of the source file nor that of the previous tool's upload
    # (the server's data files) is part of this tool's time.
    head -c "$BIG" /dev/urandom >"$src"
    sync
    if mount_or_fail "$tool" "$(out_pfx "$tool")" write write; then
        t0=$(now)
        timeout -k 10 "$T_BIG" dd if="$src" of="$MNT/write.bin" bs=1M 2>>"$STEP_LOG"
        rc=$?
        t_dd=$(now)
        if ((rc == 0)); then
            guard "$T_BIG" "$RAW" wait-size "$(out_pfx "$tool")/write.bin" --size "$BIG" --timeout "$T_BIG"
            rc=$?
        fi
        t1=$(now)
        status_of $rc
        record write "$tool" "$STATUS" "$(elapsed "$t0" "$t1")" "$BIG" "${NOTE:+note=$NOTE}" \
            dd_seconds="$(elapsed "$t0" "$t_dd")"
        unmount_tool
    fi
    rm -f "$src"
}

# --- many small files, until all are in the bucket ------------------------------------------

raw_small() {
    EXTRA=(note="sequential PUTs")
    raw_timed small "$RUN/raw.json" put-many "$PFX/raw/small" --count "$SMALL_N" --size 4096 --parallel 1
}

wl_small() {
    local tool=$1 src="$DATA/small-$tool" t0 t1 t_cp rc
    "$PY" "$BENCH_DIR/mktree.py" small "$src" --files "$SMALL_N" --size 4096 >/dev/null
    if mount_or_fail "$tool" "$(out_pfx "$tool")" small small; then
        t0=$(now)
        guard "$T_META" cp -r "$src" "$MNT/small"
        rc=$?
        t_cp=$(now)
        if ((rc == 0)); then
            guard "$T_META" "$RAW" wait-count "$(out_pfx "$tool")/small/" --count "$SMALL_N" --timeout "$T_META"
            rc=$?
        fi
        t1=$(now)
        status_of $rc
        record small "$tool" "$STATUS" "$(elapsed "$t0" "$t1")" $((SMALL_N * 4096)) \
            "${NOTE:+note=$NOTE}" cp_seconds="$(elapsed "$t0" "$t_cp")"
        unmount_tool
    fi
    rm -rf "$src"
}

# --- metadata: ls -l, find, du on fresh mounts ----------------------------------------------

raw_ls() {
    # A listing has no user metadata: `ls -l` needs a HEAD per entry for stored modes and
    # mtimes, so the floor is LIST + those HEADs (64 in flight, as bucketfs does).
    raw_timed ls "$RUN/raw.json" list "$FIX/list/" --heads 64
}

# listing RUNS TOOL EXPECTED CMD...: a fresh mount of the inputs and cold caches, then CMD
# once per workload in RUNS (space-separated: one run after the other on that mount), each
# timed and recorded, its stdout lines ("." and ".." not counted) checked against EXPECTED
# (empty: not checked). With --scale, the daemon's RSS right after the mount (step idle),
# after each run (step = the run's workload), and SETTLE_S seconds after the last (step
# settled: what the daemon keeps once it has given back what it freed).
listing() {
    local runs=$1 tool=$2 expected=$3 workload cache t0 t1 rc lines
    shift 3
    # shellcheck disable=SC2086 # RUNS is a word list
    mount_or_fail "$tool" "$FIX" "${runs%% *}" $runs || return
    scale_rss idle
    cache=$(drop_caches)
    for workload in $runs; do
        t0=$(now)
        timeout -k 10 "$T_META" "$@" >"$RUN/listing.out" 2>>"$STEP_LOG"
        rc=$?
        t1=$(now)
        lines=$(grep -cvxF -e . -e .. "$RUN/listing.out")
        status_of $rc
        if [[ $STATUS == ok && -n "$expected" && "$lines" != "$expected" ]]; then
            STATUS=wrong NOTE="saw $lines lines, expected $expected"
        fi
        record "$workload" "$tool" "$STATUS" "$(elapsed "$t0" "$t1")" 0 "${NOTE:+note=$NOTE}" \
            lines="$lines" "${cache:+cache_drop=$cache}" first_line="$(head -n 1 "$RUN/listing.out" | cut -c 1-200)"
        scale_rss "$workload"
        cache= # only the first run is cold
    done
    if [[ -n "${SCALE_N:-}" ]]; then
        sleep "$SETTLE_S"
        scale_rss settled
    fi
    unmount_tool
}

# --scale: seconds between a mount's last run and its settled RSS sample (bucketfs gives
# freed memory back once a second).
SETTLE_S=3

wl_ls() { # `ls -l` prints a "total" line first; with --scale, again at once on the same mount
    local runs=ls
    [[ -z "${SCALE_N:-}" ]] || runs="ls ls-again"
    listing "$runs" "$1" $((LIST_N + 1)) ls -l "$RUN/mnt/$1/list"
}

# ls-f (--scale): names only, the listing's pages and nothing else.
raw_ls_f() { raw_timed ls-f "$RUN/raw.json" list "$FIX/list/"; }
wl_ls_f() { listing ls-f "$1" "$LIST_N" ls -f "$RUN/mnt/$1/list"; }

# `list` has no delimiter: one flat listing of every key below the tree, what a walk needs.
raw_find() { raw_timed find "$RUN/raw.json" list "$FIX/tree/"; }
raw_du() { raw_timed du "$RUN/raw.json" list "$FIX/tree/"; }

wl_find() { # every file, every directory, and the top
    listing find "$1" $((TREE_N + TREE_D + 1)) find "$RUN/mnt/$1/tree"
}

wl_du() {
    listing du "$1" 1 du -s "$RUN/mnt/$1/tree"
}

# --- rsync -a of a tree with modes, mtimes and symlinks, three runs -------------------------

# rsync_once WORKLOAD TOOL SRC: one `rsync -a --stats` into the mount; sets RSYNC_T0 and
# SYMLINK_ERRORS (symlinks rsync could not create).
rsync_once() {
    local workload=$1 tool=$2 src=$3 t1 rc xfer errors
    RSYNC_T0=$(now)
    timeout -k 10 "$T_META" rsync -a --stats "$src/" "$MNT/rsync/" >"$RUN/rsync.out" 2>"$RUN/rsync.err"
    rc=$?
    t1=$(now)
    cat "$RUN/rsync.out" "$RUN/rsync.err" >>"$STEP_LOG"
    xfer=$(grep 'Number of regular files transferred' "$RUN/rsync.out" | grep -o '[0-9,]*$' | tr -d ,)
    errors=$(grep -c '^rsync: ' "$RUN/rsync.err")
    SYMLINK_ERRORS=$(grep -c '^rsync: .*symlink ".*" -> ".*" failed' "$RUN/rsync.err")
    # 23/24: some files or attributes were not transferred (symlinks today): counted, not fatal
    [[ $rc == 23 || $rc == 24 ]] && rc=0
    status_of $rc
    record "$workload" "$tool" "$STATUS" "$(elapsed "$RSYNC_T0" "$t1")" 0 "${NOTE:+note=$NOTE}" \
        transferred="${xfer:-0}" errors="$errors" symlink_errors="$SYMLINK_ERRORS" \
        first_error="$(grep -m1 '^rsync: ' "$RUN/rsync.err")"
}

wl_rsync() {
    local tool=$1 src="$DATA/rsync-$tool" rc t1 links objects
    links=$("$PY" "$BENCH_DIR/mktree.py" rsync "$src" --files "$RSYNC_N" --dirs "$RSYNC_D" |
        grep -o '"symlinks": [0-9]*' | grep -o '[0-9]*$')
    if mount_or_fail "$tool" "$(out_pfx "$tool")" rsync-1 rsync-1 rsync-1-bucket rsync-2; then
        rsync_once rsync-1 "$tool" "$src"
        # In the bucket: every file, and every symlink the tool could create (one object each).
        objects=$((RSYNC_N + ${links:-0} - SYMLINK_ERRORS))
        guard "$T_META" "$RAW" wait-count "$(out_pfx "$tool")/rsync/" --count "$objects" --timeout "$T_META"
        rc=$?
        t1=$(now)
        status_of $rc
        record rsync-1-bucket "$tool" "$STATUS" "$(elapsed "$RSYNC_T0" "$t1")" 0 \
            "${NOTE:+note=$NOTE}" objects="$objects"
        rsync_once rsync-2 "$tool" "$src"
        unmount_tool
    fi
    if mount_or_fail "$tool" "$(out_pfx "$tool")" rsync-3 rsync-3; then
        rsync_once rsync-3 "$tool" "$src"
        unmount_tool
    fi
    rm -rf "$src"
}
