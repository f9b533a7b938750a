#!/usr/bin/env bash
# The test command: sets everything up on a fresh Debian machine and runs every test.
#
#   scripts/test.sh            install packages, build/start the S3 server (Garage), check
#                              formatting and lints, run unit and integration tests
#
# Integration tests mount bucketfs for real (/dev/fuse) against the local S3 server. The
# server is left running if it was running before, else stopped at the end (by PID).
# Heavy suites (benchmarks) are not run here: see scripts/bench.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

log() { echo "test: $*" >&2; }

scripts/install-deps.sh

was_running=0
scripts/s3-server.sh status >/dev/null 2>&1 && was_running=1
env_file="$(scripts/s3-server.sh start)"
if [[ $was_running == 0 ]]; then
    trap 'scripts/s3-server.sh stop || true' EXIT
fi
export BUCKETFS_TEST_ENV="$env_file"
# moto records SSE, ACLs and storage classes, which Garage ignores.
moto_was_running=0
scripts/moto-server.sh status >/dev/null 2>&1 && moto_was_running=1
BUCKETFS_TEST_MOTO_ENV="$(scripts/moto-server.sh start)"
export BUCKETFS_TEST_MOTO_ENV
if [[ $moto_was_running == 0 ]]; then
    trap 'scripts/moto-server.sh stop || true; [[ $was_running == 1 ]] || scripts/s3-server.sh stop || true' EXIT
fi

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
log "cargo test"
out="$(mktemp)"
status=0
cargo test --no-fail-fast -- --test-threads 4 2>&1 | tee "$out" || status=$?
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$out"
rm -f "$out"
exit "$status"
