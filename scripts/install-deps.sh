#!/usr/bin/env bash
# Install the system packages bucketfs's tests need on Debian 12 (idempotent, non-interactive).
#
#   fuse3      fusermount3 and /etc/fuse.conf for mounting
#   rsync      used by tests
#   git        tests/write_back_races.rs runs a git history on a mount
#   curl       health checks / signed requests in scripts/s3-server.sh
#   gcc, libc6-dev   build the TCP_NODELAY shim (scripts/nodelay.c)
#   make, pkg-config build of the Garage S3 server (`cargo install garage`, done by
#                    scripts/s3-server.sh start when it is missing)
#   util-linux (flock, setsid, runuser), coreutils (od): essential, always present on Debian
#   passwd (useradd): essential; creates the unprivileged user `bucketfs-test` that
#                    tests/permissions.rs acts as on a mount shared with --allow-other
#
# Benchmark peers (s3fs, rclone) are installed by the benchmark script, not here.
# Also checks that /dev/fuse exists.
set -euo pipefail

PACKAGES=(fuse3 rsync git curl gcc libc6-dev make pkg-config)

log() { echo "install-deps: $*" >&2; }

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done

if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    SUDO=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || { log "error: not root and no sudo; install ${missing[*]} yourself"; exit 1; }
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q >&2
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
else
    log "all packages present: ${PACKAGES[*]}"
fi

# An unprivileged user for the permission tests (no home, no login).
if ! id bucketfs-test >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]]; then
        useradd --system --no-create-home --shell /usr/sbin/nologin bucketfs-test
        log "created user bucketfs-test"
    elif command -v sudo >/dev/null; then
        sudo useradd --system --no-create-home --shell /usr/sbin/nologin bucketfs-test
        log "created user bucketfs-test"
    else
        log "warning: cannot create user bucketfs-test (not root); tests/permissions.rs will fail"
    fi
fi

if [[ ! -c /dev/fuse ]]; then
    # The module may just not be loaded yet (ignored inside containers without modprobe).
    modprobe fuse 2>/dev/null || true
fi
if [[ ! -c /dev/fuse ]]; then
    log "error: /dev/fuse does not exist (or is not a character device)."
    log "       FUSE needs the kernel module (modprobe fuse) and, in a container,"
    log "       --device /dev/fuse (plus CAP_SYS_ADMIN to mount)."
    exit 1
fi
log "ok (/dev/fuse present)"
