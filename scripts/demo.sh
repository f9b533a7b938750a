#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build bucketfs, start the local
# S3 server (Garage) and mount its bucket at a directory.
#
#   scripts/demo.sh [MOUNTPOINT]     default MOUNTPOINT: /tmp/bucketfs-demo
#
# Unmount with: target/debug/bucketfs unmount MOUNTPOINT
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
mnt="${1:-/tmp/bucketfs-demo}"

scripts/install-deps.sh
env_file="$(scripts/s3-server.sh start)"
# shellcheck disable=SC1090
. "$env_file"
cargo build --quiet
bin="$PWD/target/debug/bucketfs"

if grep -qs " $mnt fuse" /proc/self/mounts; then
    echo "demo: $mnt is already mounted; unmount it first: $bin unmount $mnt" >&2
    exit 1
fi
mkdir -p "$mnt"
"$bin" mount "s3://$S3_BUCKET" "$mnt"

cat <<MSG
bucketfs: s3://$S3_BUCKET (Garage at $AWS_ENDPOINT_URL) is mounted at $mnt

Try:
  echo hello > $mnt/hello.txt && cat $mnt/hello.txt
  mkdir $mnt/photos && cp -r /usr/share/doc/bash $mnt/photos/ && ls -l $mnt/photos/bash
  mv $mnt/photos $mnt/pictures && find $mnt
  dd if=/dev/urandom of=$mnt/big bs=1M count=64 && ls -l $mnt/big
  $bin check s3://$S3_BUCKET          # (after: . $env_file)
See the objects directly: curl is enough, or any S3 client with the keys in $env_file.
Unmount (waits for pending uploads):
  $bin unmount $mnt
MSG
