#!/usr/bin/env python3
"""Turns the measurements of one scripts/bench.sh run into the table (stdout), a JSON file,
a grouped bar chart (PNG, needs matplotlib; skipped with a warning without it) and a
markdown copy of the table.

  report.py --results RUN.jsonl --meta META.json --json OUT.json --png OUT.png --md OUT.md

RUN.jsonl holds one object per measurement, written by bench.sh:
  {"workload": "read-cold", "tool": "bucketfs", "status": "ok"|"failed"|"wrong",
   "seconds": 1.2, "bytes": 1073741824, ...extra fields (entries, transferred, errors, ...)}
  {"workload": "rss", "tool": "s3fs", "mount": "read", "kib": 12345, "status": "ok"}
With --faults (META has "faults") every record also has "faults": "none" | "issue14" (the
pass), and each pass adds the fault proxy's counters:
  {"workload": "proxy", "group": "read", "tool": "bucketfs", "faults": "issue14",
   "stats": {"requests": 1234, "faults": 230, "error_500": 50, ...}}
and the table shows, per tool, the time without and with faults, the slowdown and the
requests the proxy saw.
With --scale (META has "scale": true) every record has "n" (the size of its series), the
timed workloads are ls-f, ls, ls-again, find and du, and the RSS records say when they
were taken ("step": idle, a workload, or unmount) and carry VmRSS ("rss_kib") beside VmHWM
("kib"). The table shows, per size, each tool's times with tool / raw, the RSS after each
step and its growth per entry; with several sizes a second table sets each tool's growth
side by side.
"""
import argparse
import json
import sys

TOOLS = ["raw", "bucketfs", "s3fs", "rclone"]
PEERS = ["raw", "s3fs", "rclone"]
MIB = 1024 * 1024


def size_text(n):
    if n >= 1024 * MIB and n % (1024 * MIB) == 0:
        return f"{n // (1024 * MIB)} GiB"
    return f"{n / MIB:g} MiB"


def rows(sizes):
    """(workload key, label, kind) in table order."""
    big = size_text(sizes["big_bytes"])
    n_small, n_list = sizes["small_files"], sizes["list_entries"]
    n_tree, n_dirs = sizes["tree_files"], sizes["tree_dirs"]
    n_rsync = sizes["rsync_files"]
    return [
        ("read-cold", f"seq read {big}, cold (fresh mount)", "bytes"),
        ("read-warm", f"re-read {big}, warm (same mount)", "bytes"),
        ("write", f"seq write {big}, until in bucket", "bytes"),
        ("small", f"create {n_small:,} x 4 KiB, until in bucket", "time"),
        ("ls", f"ls -l of {n_list:,} entries, cold", "entries"),
        ("find", f"find of {n_tree:,} files in {n_dirs} dirs, cold", "entries"),
        ("du", f"du -s of {n_tree:,} files, cold", "time"),
        ("rsync-1", f"rsync -a {n_rsync:,} files, run 1 (fresh)", "rsync"),
        ("rsync-1-bucket", "rsync run 1, until in bucket", "time"),
        ("rsync-2", "rsync run 2 (same mount)", "rsync"),
        ("rsync-3", "rsync run 3 (fresh mount)", "rsync"),
        ("rss", "peak RSS of the daemon", "rss"),
    ]


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def index(results):
    """{(workload, tool): result}; RSS rows become one 'rss' entry per tool (the peak)."""
    out = {}
    for r in results:
        if r["workload"] == "rss":
            key = ("rss", r["tool"])
            prev = out.get(key)
            if prev is None or r.get("kib", 0) > prev.get("kib", 0):
                out[key] = dict(r, mounts=(prev or {}).get("mounts", 0) + 1)
            else:
                prev["mounts"] = prev.get("mounts", 1) + 1
        else:
            out[(r["workload"], r["tool"])] = r
    return out


def value(r, kind):
    """The number a ratio and the chart use: seconds, or MiB for RSS; None if unusable."""
    if r is None or r.get("status") == "failed":
        return None
    if kind == "rss":
        return r.get("kib", 0) / 1024
    return r.get("seconds")


def cell(r, kind):
    if r is None:
        return "-"
    if r.get("status") == "failed":
        return "FAILED" + (f" ({r['note']})" if r.get("note") else "")
    if kind == "rss":
        return f"{r['kib'] / 1024:.1f} MiB ({r['mount']})"
    s = r["seconds"]
    text = f"{s:.3f} s" if s < 1 else f"{s:.2f} s" if s < 100 else f"{s:.0f} s"
    if kind == "bytes" and r.get("bytes") and s > 0:
        text += f" ({r['bytes'] / MIB / s:.0f} MiB/s)"
    if kind == "rsync" and "transferred" in r:
        text += f", {r['transferred']} xfer"
        if r.get("errors"):
            text += f", {r['errors']} err"
    if r.get("status") == "wrong":
        text += f" [WRONG: {r.get('note', '')}]"
    return text


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return "-"
    return f"{a / b:.2f}x"


COLD_NOTE = ("Cold runs: fresh mount and `sync; echo 3 > /proc/sys/vm/drop_caches` "
             "(client and server caches) before each.")
DROP_FAILED = "Dropping the page cache FAILED for some cold runs: their numbers may be warm."


def caches_dropped(results):
    return not {r.get("cache_drop") for r in results if r.get("cache_drop")} - {"ok"}


def failed_note(meta, results, name):
    """The note listing failed or wrong measurements (name(r) says which), if any."""
    failed = [name(r) + (f": {r['note']}" if r.get("note") else "")
              for r in results if r.get("status") in ("failed", "wrong")]
    if not failed:
        return []
    return ["Failed or wrong: " + "; ".join(failed) + " (logs: " + meta["logs"] + ")."]


# --- --faults: each tool without and with faults ---------------------------------------------

FAULT_MIX = "issue14"
GROUP = {"read-cold": "read", "read-warm": "read", "rsync-1": "rsync",
         "rsync-1-bucket": "rsync", "rsync-2": "rsync", "rsync-3": "rsync"}


def index_faults(results):
    """{(workload, tool, mix): result}; RSS: the peak per (tool, mix); proxy counters under
    ("proxy:" + group, tool, mix)."""
    out = {}
    for r in results:
        mix = r.get("faults")
        if r["workload"] == "rss":
            key = ("rss", r["tool"], mix)
            prev = out.get(key)
            if prev is None or r.get("kib", 0) > prev.get("kib", 0):
                out[key] = r
        elif r["workload"] == "proxy":
            out[("proxy:" + r["group"], r["tool"], mix)] = r
        else:
            out[(r["workload"], r["tool"], mix)] = r
    return out


def requests_cell(idx, key, tool):
    """'free / faulty (n faults)' requests of the workload's passes."""
    def stats(mix):
        return (idx.get(("proxy:" + GROUP.get(key, key), tool, mix)) or {}).get("stats") or {}
    free, faulty = stats("none"), stats(FAULT_MIX)
    if not free and not faulty:
        return "-"
    n = lambda s, k: f"{s[k]:,}" if k in s else "?"
    return f"{n(free, 'requests')} / {n(faulty, 'requests')} ({n(faulty, 'faults')} faults)"


def fault_cell(r, kind):
    """As cell(), and a failure says after how long (a hang cut by a time limit, or an
    error the tool gave up on)."""
    if r is not None and r.get("status") == "failed" and r.get("seconds"):
        return f"FAILED after {r['seconds']:.2f} s" + (f" ({r['note']})" if r.get("note") else "")
    return cell(r, kind)


def build_faults_table(meta, results):
    idx = index_faults(results)
    tools = [t for t in TOOLS if any(k[1] == t for k in idx)]
    header = ["workload"]
    for t in tools:
        header += [t, f"{t} faults", f"{t} slowdown", f"{t} requests"]
    table, groups_shown = [], set()
    for key, label, kind in rows(meta["sizes"]):
        if not any((key, t, m) in idx for t in tools for m in ("none", FAULT_MIX)):
            continue
        cells = [label]
        group = GROUP.get(key, key)
        for t in tools:
            free, faulty = idx.get((key, t, "none")), idx.get((key, t, FAULT_MIX))
            cells += [fault_cell(free, kind), fault_cell(faulty, kind),
                      ratio(value(faulty, kind), value(free, kind))]
            requests = "-" if kind == "rss" else requests_cell(idx, key, t)
            cells.append("(above)" if requests != "-" and (group, t) in groups_shown
                         else requests)
        for t in tools:
            groups_shown.add((group, t))
        table.append({"key": key, "label": label, "kind": kind, "cells": cells})
    return header, table, idx, tools


def faults_notes(meta, results):
    f = meta["faults"]
    out = [
        "Each workload ran twice per tool, one pass after the other, each through a fresh "
        "examples/fault_proxy.rs: without faults, then with the mix of issue 14 (4 % each of "
        "500 InternalError, 503 SlowDown, reset before the answer and reset in the middle of "
        f"the body; 3 % of answers held back 2-5 s), seed {f['seed']} (the n-th request of a "
        "pass meets the same decision in every run).",
        "slowdown = seconds with faults / seconds without. requests = what the proxy saw "
        "without / with faults, and how many of the latter got a fault; one count per "
        "workload (read: cold and warm; rsync: runs 1-3), every mount and unmount included. "
        "Fixtures and the waits until data is in the bucket go to the server directly.",
    ]
    if not caches_dropped(results):
        out.append(DROP_FAILED)
    out.extend(meta.get("notes", []))
    return out + failed_note(meta, results, lambda r: f"{r['tool']} {r['workload']} ({r.get('faults')})")


def faults_chart(meta, table, idx, tools, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib is not available: no chart", file=sys.stderr)
        return False
    colors = {"raw": "#888888", "bucketfs": "#1f77b4", "s3fs": "#ff7f0e", "rclone": "#2ca02c"}
    timed = [r for r in table if r["kind"] != "rss"]
    fig, ax = plt.subplots(figsize=(15, 6))
    bars = [(t, m) for t in tools for m in ("none", FAULT_MIX)]
    width = 0.8 / max(len(bars), 1)
    for i, (tool, mix) in enumerate(bars):
        xs, ys = [], []
        for j, r in enumerate(timed):
            v = value(idx.get((r["key"], tool, mix)), r["kind"])
            if v is not None and v > 0:
                xs.append(j + (i - (len(bars) - 1) / 2) * width)
                ys.append(v)
        ax.bar(xs, ys, width, color=colors[tool], alpha=0.45 if mix == "none" else 1.0,
               hatch=None if mix == "none" else "//",
               label=f"{tool}, {'no faults' if mix == 'none' else 'faults'}")
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log scale, lower is better)")
    ax.set_xticks(range(len(timed)))
    ax.set_xticklabels([r["label"] for r in timed], rotation=35, ha="right", fontsize=8)
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    mode = "quick" if meta["quick"] else "full"
    fig.suptitle(f"without and with faults (issue 14 mix, seed {meta['faults']['seed']}) — "
                 f"{meta['server']}, {meta['nproc']} cores, {mode} run, {meta['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


# --- --scale: listings, walks and daemon memory per size -------------------------------------

# (workload, label, the raw workload it is compared with)
SCALE_STEPS = [
    ("ls-f", "ls -f, names only (raw: LIST)", "ls-f"),
    ("ls", "ls -l, cold (raw: LIST + a HEAD per key)", "ls"),
    ("ls-again", "ls -l again at once, same mount (raw: LIST)", "ls-f"),
    ("find", "find of the tree, cold (raw: LIST, no delimiter)", "find"),
    ("du", "du -s of the tree, cold (raw: LIST, no delimiter)", "du"),
]
STEP_NAMES = {"ls-f": "ls -f", "ls": "ls -l", "ls-again": "ls -l again", "find": "find",
              "du": "du -s"}
KIB = 1024


def index_scale(results):
    """{(workload, tool, n): result} of the timed steps; RSS samples as
    ("rss", tool, n, mount, step) -> record."""
    out = {}
    for r in results:
        if r["workload"] == "rss":
            out[("rss", r["tool"], r.get("n"), r["mount"], r.get("step"))] = r
        else:
            out[(r["workload"], r["tool"], r.get("n"))] = r
    return out


def mib(kib):
    return f"{kib / KIB:.1f} MiB"


def idle_kib(idx, tool, n, mount):
    r = idx.get(("rss", tool, n, mount, "idle"))
    return r and r.get("rss_kib")


def rss_after(idx, tool, n, step):
    """(VmRSS after STEP, growth over its mount's idle or None) in KiB; None if not sampled.
    ls-again runs on the mount of ls."""
    mount = "ls" if step == "ls-again" else step
    r = idx.get(("rss", tool, n, mount, step))
    if r is None or "rss_kib" not in r:
        return None
    idle = idle_kib(idx, tool, n, mount)
    return r["rss_kib"], None if idle is None else r["rss_kib"] - idle


def rss_settled(idx, tool, n, mount):
    """(VmRSS a few seconds after the last run on MOUNT, growth over its idle) in KiB, or
    None."""
    r = idx.get(("rss", tool, n, mount, "settled"))
    if r is None or "rss_kib" not in r:
        return None
    idle = idle_kib(idx, tool, n, mount)
    return r["rss_kib"], None if idle is None else r["rss_kib"] - idle


def ls_growth(idx, tool, n):
    """KiB the daemon grew by the cold ls -l of n entries (after - idle), or None."""
    after = rss_after(idx, tool, n, "ls")
    return after and after[1]


def rss_cell(after):
    if after is None:
        return "-"
    rss, growth = after
    return mib(rss) + ("" if growth is None else f" (+{growth / KIB:.1f})")


def build_scale_table(meta, results):
    idx = index_scale(results)
    tools = [t for t in TOOLS if any(k[1] == t for k in idx)]
    peers = [t for t in tools if t != "raw"]
    header = ["step"] + tools + [f"{t}/raw" for t in peers]
    table = []
    for n in meta["sizes"]["entries"]:
        steps = [s for s in SCALE_STEPS if any((s[0], t, n) in idx for t in tools)]
        if not steps:
            continue
        table.append({"section": True, "cells": [
            f"{n:,} entries: a directory of {n:,}, a tree of {n:,} in {n // 100:,} dirs"]
            + [""] * (len(header) - 1)})
        for key, label, raw_key in steps:
            raw = idx.get((raw_key, "raw", n))
            cells = [cell(raw if t == "raw" else idx.get((key, t, n)), "time") for t in tools]
            ratios = [ratio(value(idx.get((key, t, n)), "time"), value(raw, "time")) for t in peers]
            table.append({"key": key, "n": n, "cells": [label] + cells + ratios})
        idle = [idle_kib(idx, t, n, "ls") for t in tools]
        peaks = [[r["kib"] for k, r in idx.items() if k[0] == "rss" and k[1:3] == (t, n)]
                 for t in tools]
        growth = [ls_growth(idx, t, n) for t in tools]
        rss_rows = [("idle", "RSS idle, right after the mount of ls -l",
                     ["-" if k is None else mib(k) for k in idle])]
        rss_rows += [(k, f"RSS after {STEP_NAMES[k]} (+ over idle)",
                      [rss_cell(rss_after(idx, t, n, k)) for t in tools]) for k, _, _ in steps]
        settle = meta["sizes"].get("settle_s")
        rss_rows += [(f"settled-{k}",
                      f"RSS {settle} s after {STEP_NAMES[last]}, settled (+ over idle)",
                      [rss_cell(rss_settled(idx, t, n, k)) for t in tools])
                     for k, last in (("ls", "ls-again"), ("find", "find"))
                     if settle is not None and any((k, t, n) in idx for t in tools)]
        rss_rows += [("peak", "peak RSS (VmHWM), largest of its mounts",
                      [mib(max(p)) if p else "-" for p in peaks]),
                     ("per-entry", "RSS growth per entry, (after ls -l - idle) / N",
                      ["-" if g is None else f"{g * KIB / n:,.0f} B" for g in growth])]
        for key, label, cells in rss_rows:
            if any(c != "-" for c in cells):
                table.append({"key": "rss-" + key, "n": n,
                              "cells": [label] + cells + ["-"] * len(peers)})
    return header, table, idx, tools


def scale_growth_table(meta, idx, tools):
    """With several sizes: each tool's RSS growth by ls -l at every size, and per entry
    added from one size to the next. None with a single size."""
    sizes = meta["sizes"]["entries"]
    if len(sizes) < 2:
        return None
    pairs = list(zip(sizes, sizes[1:]))
    header = ["tool"] + [f"ls -l of {n:,}: RSS - idle" for n in sizes]
    header += [f"{a:,} -> {b:,}: per added entry" for a, b in pairs]
    table = []
    for t in tools:
        if t == "raw":
            continue
        growth = {n: ls_growth(idx, t, n) for n in sizes}
        cells = [t]
        for n, g in growth.items():
            cells.append("-" if g is None else f"{g / KIB:.1f} MiB ({g * KIB / n:,.0f} B/entry)")
        for a, b in pairs:
            ga, gb = growth[a], growth[b]
            cells.append("-" if ga is None or gb is None else f"{(gb - ga) * KIB / (b - a):,.0f} B")
        table.append({"cells": cells})
    return header, table


def scale_notes(meta, results):
    out = [
        "Ratios are tool / raw, of seconds: 1.00x takes as long as the S3 requests the step "
        "needs, made directly. `ls -l again` runs at once after the cold `ls -l` on the same "
        "mount and is set against the raw LIST, what listing the directory anew costs at "
        "least (the stats of its entries through FUSE come on top).",
        "RSS is the daemon's VmRSS (found by PID): idle right after a mount, then right after "
        "each step, and settled: a few seconds after a mount's last step (what the daemon "
        "keeps once it has given back what it freed); (+x) is the growth over the idle of "
        "that step's own mount (ls -l again: the mount of ls -l). Growth per entry = (RSS "
        "right after ls -l - idle) / N. Every sample, VmHWM included, is in the JSON.",
    ]
    out.append(COLD_NOTE if caches_dropped(results) else DROP_FAILED)
    out.extend(meta.get("notes", []))
    return out + failed_note(meta, results, lambda r: f"{r['tool']} {r['workload']} (n={r.get('n')})")


def build_table(meta, results):
    idx = index(results)
    header = ["workload"] + TOOLS + [f"bucketfs/{p}" for p in PEERS]
    table = []
    for key, label, kind in rows(meta["sizes"]):
        if not any((key, t) in idx for t in TOOLS):
            continue
        cells = [cell(idx.get((key, t)), kind) for t in TOOLS]
        mine = value(idx.get((key, "bucketfs")), kind)
        ratios = [ratio(mine, value(idx.get((key, p)), kind)) for p in PEERS]
        table.append({"key": key, "label": label, "kind": kind, "cells": [label] + cells + ratios})
    return header, table, idx


def text_table(header, table):
    lines = [header] + [r["cells"] for r in table]
    widths = [max(len(l[i]) for l in lines) for i in range(len(header))]
    fmt = lambda l: "  ".join(c.ljust(w) for c, w in zip(l, widths)).rstrip()
    out = [fmt(header), fmt(["-" * w for w in widths])]
    out += [fmt(r["cells"]) for r in table]
    return "\n".join(out)


def md_table(header, table):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in table:
        cells = [c.replace("|", "\\|") for c in r["cells"]]
        if r.get("section"):
            cells[0] = f"**{cells[0]}**"
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


RATIO_NOTE = (
    "Ratios are bucketfs / other, of seconds (or MiB for RSS): below 1.00x bucketfs is faster "
    "(or smaller), above 1.00x it is slower (or bigger). RSS: the largest VmHWM over the "
    "tool's mounts (which one in brackets); every mount is in the JSON."
)


def notes(meta, results):
    out = [RATIO_NOTE, COLD_NOTE if caches_dropped(results) else DROP_FAILED]
    out.extend(meta.get("notes", []))
    errs = [f"{r['tool']} {r['errors']} ({r['symlink_errors']} symlinks; first: "
            f"{r.get('first_error', '').rsplit(' failed: ', 1)[-1]})"
            for r in results if r["workload"] == "rsync-1" and r.get("errors")]
    if errs:
        out.append("rsync errors (err) per run: " + ", ".join(errs) + ".")
    return out + failed_note(meta, results, lambda r: f"{r['tool']} {r['workload']}")


def markdown(meta, tables, note_lines):
    s = meta["sizes"]
    faults = ", without and with faults" if meta.get("faults") else ""
    if meta.get("scale"):
        run = "scale run, " + ", ".join(f"{n:,}" for n in s["entries"]) + " entries"
        raw = (f"LIST pages of 1,000, {s['heads_parallel']} HEADs in flight; inputs of "
               f"{s['object_bytes']}-byte objects, {s['files_per_dir']} files per tree directory")
        data = f"Data: `{meta['json']}`."
    else:
        run = ("quick" if meta["quick"] else "full") + " run"
        raw = (f"part size {size_text(s['part_size'])}, "
               f"{s.get('read_parallel', s['parallel'])} GETs / {s['parallel']} uploads in flight")
        data = f"Data: `{meta['json']}`, chart: `{meta['png']}`."
    return "\n".join([
        f"# bucketfs benchmark ({run}{faults})",
        "",
        f"- date: {meta['date']}",
        f"- machine: {meta['nproc']} cores, {meta['mem_gib']} GiB memory, {meta['kernel']}",
        f"- server: {meta['server']} on 127.0.0.1 (single node, TCP_NODELAY shim)"
        + (f", {meta['network']}" if meta.get("network") else ""),
        f"- bucketfs: {meta['bucketfs_version']}; s3fs {meta['s3fs_version']}; "
        f"rclone {meta['rclone_version']}",
        f"- raw: examples/raw_s3.rs (rust-s3), {raw}",
        f"- total runtime: {meta.get('runtime_s', 0):.0f} s",
        "",
        *[md_table(h, t) + "\n" for h, t in tables],
        *[f"- {n}" for n in note_lines],
        "",
        data,
        "",
    ])


def chart(meta, table, idx, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib is not available: no chart", file=sys.stderr)
        return False
    colors = {"raw": "#888888", "bucketfs": "#1f77b4", "s3fs": "#ff7f0e", "rclone": "#2ca02c"}
    timed = [r for r in table if r["kind"] != "rss"]
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(15, 6), gridspec_kw={"width_ratios": [5, 1]})
    width = 0.8 / len(TOOLS)
    for i, tool in enumerate(TOOLS):
        xs, ys = [], []
        for j, r in enumerate(timed):
            v = value(idx.get((r["key"], tool)), r["kind"])
            if v is not None and v > 0:
                xs.append(j + (i - 1.5) * width)
                ys.append(v)
        ax.bar(xs, ys, width, label=tool, color=colors[tool])
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log scale, lower is better)")
    ax.set_xticks(range(len(timed)))
    ax.set_xticklabels([r["label"] for r in timed], rotation=35, ha="right", fontsize=8)
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    tools = [t for t in TOOLS if ("rss", t) in idx]
    ax2.bar(tools, [idx[("rss", t)]["kib"] / 1024 for t in tools],
            color=[colors[t] for t in tools])
    ax2.set_ylabel("peak RSS, MiB (lower is better)")
    ax2.tick_params(axis="x", rotation=35)
    mode = "quick" if meta["quick"] else "full"
    fig.suptitle(f"bucketfs vs raw S3, s3fs, rclone mount — {meta['server']}, "
                 f"{meta['nproc']} cores, {mode} run, {meta['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main():
    p = argparse.ArgumentParser()
    for name in ("results", "meta", "json", "png", "md"):
        p.add_argument("--" + name, required=True)
    a = p.parse_args()
    results = load(a.results)
    with open(a.meta) as f:
        meta = json.load(f)
    meta.update(json=a.json, png=a.png)
    growth = None
    if meta.get("scale"):
        header, table, idx, tools = build_scale_table(meta, results)
        growth = scale_growth_table(meta, idx, tools)
        note_lines = scale_notes(meta, results)
    elif meta.get("faults"):
        header, table, idx, tools = build_faults_table(meta, results)
        note_lines = faults_notes(meta, results)
    else:
        header, table, idx = build_table(meta, results)
        note_lines = notes(meta, results)
    tables = [(header, table)] + ([growth] if growth else [])
    for h, t in tables:
        print(text_table(h, t))
        print()
    for n in note_lines:
        print("* " + n)
    out = {"meta": meta, "results": results,
           "table": {"header": header, "rows": [r["cells"] for r in table]}}
    if growth:
        out["growth_table"] = {"header": growth[0], "rows": [r["cells"] for r in growth[1]]}
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)
    with open(a.md, "w") as f:
        f.write(markdown(meta, tables, note_lines))
    # --scale: no chart, the tables are the result.
    if meta.get("faults"):
        faults_chart(meta, table, idx, tools, a.png)
    elif not meta.get("scale"):
        chart(meta, table, idx, a.png)


if __name__ == "__main__":
    main()
