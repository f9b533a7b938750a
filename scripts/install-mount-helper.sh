#!/usr/bin/env bash
# Install bucketfs as the mount(8) helper, so that `mount -t bucketfs` and /etc/fstab lines of
# type `bucketfs` or `fuse.bucketfs` work: symlinks mount.bucketfs and mount.fuse.bucketfs, in
# the directory mount(8) looks in (/sbin), to the bucketfs binary. Idempotent: a link that
# already points at BINARY is left alone, one that points elsewhere is replaced; a file that
# is not a symlink is never overwritten.
#
#   scripts/install-mount-helper.sh [BINARY]     default: the `bucketfs` on PATH, else this
#                                                checkout's target/debug/bucketfs
#   scripts/install-mount-helper.sh --remove     remove the links (only if they are links)
#
# Needs root (writes /sbin). On merged-/usr systems /sbin is /usr/sbin.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "install-mount-helper: $*" >&2; }

dir=/sbin
names=(mount.bucketfs mount.fuse.bucketfs)

if [[ "${1:-}" == "--remove" ]]; then
    for n in "${names[@]}"; do
        if [[ -L "$dir/$n" ]]; then
            rm -f "$dir/$n"
            log "removed $dir/$n"
        fi
    done
    exit 0
fi

bin="${1:-$(command -v bucketfs || echo "$PWD/target/debug/bucketfs")}"
bin="$(realpath "$bin")"
if [[ ! -x "$bin" ]]; then
    log "error: $bin is not an executable bucketfs binary: build it (cargo build) or pass its path"
    exit 1
fi

for n in "${names[@]}"; do
    link="$dir/$n"
    if [[ -e "$link" && ! -L "$link" ]]; then
        log "error: $link exists and is not a symlink: remove it first"
        exit 1
    fi
    if [[ "$(readlink "$link" 2>/dev/null)" == "$bin" ]]; then
        log "$link -> $bin (already)"
        continue
    fi
    ln -sfn "$bin" "$link"
    log "$link -> $bin"
done
