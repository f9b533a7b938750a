#!/usr/bin/env python3
"""Local source trees for scripts/bench.sh (random content, so Garage can neither compress
nor deduplicate them; a new call gives new bytes).

  mktree.py small DIR --files N --size BYTES
      N files of BYTES random bytes in DIR (flat).
  mktree.py rsync DIR --files N --dirs D
      N files of 200 B..16 KiB in D subdirectories, with varied permission bits and
      modification times (spread over three years, with nanoseconds), plus a few
      symlinks (max(5, N // 200): relative, absolute and dangling ones) -- what
      `rsync -a` has to carry over.

DIR is emptied first. Prints one JSON line: files, symlinks, bytes.
"""
import argparse
import json
import os
import random
import shutil
import time

FILE_MODES = [0o644, 0o600, 0o640, 0o755, 0o444, 0o664]
DIR_MODES = [0o755, 0o750, 0o700]
THREE_YEARS = 3 * 365 * 86400


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def write_file(path, size):
    with open(path, "wb") as f:
        f.write(os.urandom(size))


def make_small(root, files, size):
    fresh_dir(root)
    for i in range(files):
        write_file(os.path.join(root, f"f{i:05}"), size)
    return {"files": files, "symlinks": 0, "bytes": files * size}


def make_rsync(root, files, dirs):
    fresh_dir(root)
    rng = random.Random()
    now = time.time()
    total = 0
    paths = []
    for i in range(files):
        d = os.path.join(root, f"dir{i % dirs:03}")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, f"file{i:05}.dat")
        size = rng.randint(200, 16 * 1024)
        write_file(path, size)
        os.chmod(path, rng.choice(FILE_MODES))
        mtime = now - rng.uniform(0, THREE_YEARS)
        os.utime(path, (mtime, mtime))
        total += size
        paths.append(path)
    links = max(5, files // 200)
    for j in range(links):
        target = paths[(j * (len(paths) // links) + j) % len(paths)]  # spread over dirs
        link = os.path.join(os.path.dirname(target), f"link{j:03}")
        # Mostly relative (same directory), every third absolute, every fifth dangling.
        if j % 5 == 4:
            os.symlink("no/such/file", link)
        elif j % 3 == 2:
            os.symlink("/usr/share/common-licenses/GPL-3", link)
        else:
            os.symlink(os.path.basename(target), link)
    # Directory modes and times last: creating entries changes a directory's mtime.
    for k in range(dirs):
        d = os.path.join(root, f"dir{k:03}")
        os.chmod(d, rng.choice(DIR_MODES))
        mtime = now - rng.uniform(0, THREE_YEARS)
        os.utime(d, (mtime, mtime))
    return {"files": files, "symlinks": links, "bytes": total}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["small", "rsync"])
    p.add_argument("dir")
    p.add_argument("--files", type=int, required=True)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--dirs", type=int, default=40)
    a = p.parse_args()
    if a.kind == "small":
        out = make_small(a.dir, a.files, a.size)
    else:
        out = make_rsync(a.dir, a.files, a.dirs)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
