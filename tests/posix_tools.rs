//! Everyday POSIX tools on a real mount, as specifications: `rsync -a` carries a tree over with
//! its modes, owners, mtimes (to the nanosecond) and symlinks, so that later runs — on the same
//! mount or a fresh one — transfer nothing; `rsync -aX` carries `user.*` attributes in and
//! out and a second run changes nothing; `rsync --inplace`, `cp -a`, `tar -x`, `>>`,
//! save-by-rename, `mkdir -p` / `rm -rf` and non-ASCII names do what they do on a local disk;
//! keys holding CR, LF, `%`, `+` list, open and read under their exact names;
//! a new file written by rsync costs one PUT; attributes are stored s3fs-style
//! (`x-amz-meta-mode`, `-uid`, `-gid`, `-mtime`) and a symlink is an object holding its target.
//!
//! Trees are compared entry by entry through `lstat` against the same tree on the local disk:
//! type, permission bits, owner, mtime, size, sha256 of the content, symlink target.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::*;

// --- helpers -------------------------------------------------------------------------------

/// A mount with the default write-back delay (the harness otherwise uploads at close).
fn mount(server: &Server, prefix: &str) -> Mount {
    Mount::new(
        server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--write-back-delay", "0.5"],
    )
}

/// `program` under a time limit (a hung mount fails the test instead of hanging it), in the
/// C.UTF-8 locale.
fn tool(program: &str) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-k", "5", "150", program]).env("LC_ALL", "C.UTF-8");
    c
}

/// Runs `c`, panics with its stderr unless it exits 0; returns stdout.
fn run_ok(c: &mut Command) -> String {
    let out: Output = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number after `label:` in `rsync --stats` output ("2,000" → 2000).
fn rsync_stat(stats: &str, label: &str) -> u64 {
    let line = stats
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} in rsync's stats:\n{stats}"));
    let digits: String = line[line.find(':').unwrap() + 1..]
        .split_whitespace()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| *c != ',')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("bad {label:?} line: {line}"))
}

fn files_transferred(stats: &str) -> u64 {
    rsync_stat(stats, "Number of regular files transferred")
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Sets atime and mtime of `path` (not following a symlink) to `secs`.`nanos`.
fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    set_times(path, secs, nanos).unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn write_random(path: &Path, rng: &mut StdRng, min: usize, max: usize) {
    let mut data = vec![0u8; rng.gen_range(min..=max)];
    rng.fill(&mut data[..]);
    fs::write(path, data).unwrap();
}

/// One entry of a tree, as `lstat` and a read show it.
#[derive(Debug, PartialEq)]
struct Entry {
    kind: char, // f, d, l; p (FIFO), s (socket), c and b (devices)
    rdev: u64,  // devices
    mode: u32,  // st_mode & 0o7777
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    size: u64,       // files and symlinks
    sha256: String,  // files
    target: PathBuf, // symlinks
}

/// Every entry under `root` (and `root` itself, as "."), by relative path.
fn snapshot(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), ".".to_string())];
    while let Some((path, rel)) = stack.pop() {
        let md =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        let ft = md.file_type();
        let mut e = Entry {
            kind: if ft.is_dir() {
                'd'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_fifo() {
                'p'
            } else if ft.is_socket() {
                's'
            } else if ft.is_char_device() {
                'c'
            } else if ft.is_block_device() {
                'b'
            } else {
                'f'
            },
            rdev: md.rdev(),
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: (md.mtime(), md.mtime_nsec()),
            size: 0,
            sha256: String::new(),
            target: PathBuf::new(),
        };
        if ft.is_dir() {
            let rd = fs::read_dir(&path)
                .unwrap_or_else(|err| panic!("readdir {}: {err}", path.display()));
            for child in rd {
                let child = child.unwrap();
                let name = child.file_name().to_string_lossy().into_owned();
                let child_rel = if rel == "." {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                stack.push((child.path(), child_rel));
            }
        } else if ft.is_symlink() {
            e.size = md.len();
            e.target = fs::read_link(&path)
                .unwrap_or_else(|err| panic!("readlink {}: {err}", path.display()));
        } else if e.kind == 'f' {
            e.size = md.len();
            let data =
                fs::read(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
            assert_eq!(
                data.len() as u64,
                md.len(),
                "read size of {}",
                path.display()
            );
            e.sha256 = sha256(&data);
        }
        out.insert(rel, e);
    }
    out
}

#[derive(Clone, Copy)]
struct Check {
    /// Compare mtimes to the nanosecond (else whole seconds).
    nanos: bool,
    /// Compare the mtimes of directories (tar gives directories it creates on its own the
    /// time of extraction).
    dir_mtimes: bool,
}

/// Differences of `actual` from `expected`, one line each.
fn differences(
    expected: &BTreeMap<String, Entry>,
    actual: &BTreeMap<String, Entry>,
    check: Check,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (rel, want) in expected {
        let Some(got) = actual.get(rel) else {
            diffs.push(format!("{rel}: missing"));
            continue;
        };
        let mut d = Vec::new();
        if got.kind != want.kind {
            d.push(format!("type {} instead of {}", got.kind, want.kind));
        } else {
            if got.rdev != want.rdev {
                d.push(format!("device {:x} instead of {:x}", got.rdev, want.rdev));
            }
            if got.mode != want.mode {
                d.push(format!("mode {:o} instead of {:o}", got.mode, want.mode));
            }
            if (got.uid, got.gid) != (want.uid, want.gid) {
                d.push(format!(
                    "owner {}:{} instead of {}:{}",
                    got.uid, got.gid, want.uid, want.gid
                ));
            }
            let compare_mtime = match want.kind {
                'l' => false,
                'd' => check.dir_mtimes,
                _ => true,
            };
            let (g, w) = if check.nanos {
                (got.mtime, want.mtime)
            } else {
                ((got.mtime.0, 0), (want.mtime.0, 0))
            };
            if compare_mtime && g != w {
                d.push(format!(
                    "mtime {}.{:09} instead of {}.{:09}",
                    g.0, g.1, w.0, w.1
                ));
            }
            if want.kind != 'd' && got.size != want.size {
                d.push(format!("size {} instead of {}", got.size, want.size));
            }
            if got.sha256 != want.sha256 {
                d.push("different content".into());
            }
            if got.target != want.target {
                d.push(format!(
                    "target {:?} instead of {:?}",
                    got.target, want.target
                ));
            }
        }
        if !d.is_empty() {
            diffs.push(format!("{rel}: {}", d.join(", ")));
        }
    }
    for rel in actual.keys().filter(|r| !expected.contains_key(*r)) {
        diffs.push(format!("{rel}: unexpected entry"));
    }
    diffs
}

/// Panics listing the differences (the first 25 and a count per kind) unless the trees match.
fn assert_same_tree(expected: &Path, actual: &Path, check: Check, what: &str) {
    let (want, got) = (snapshot(expected), snapshot(actual));
    let diffs = differences(&want, &got, check);
    if diffs.is_empty() {
        return;
    }
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for d in &diffs {
        for part in d.split_once(": ").unwrap().1.split(", ") {
            let word = part.split(' ').next().unwrap().to_string();
            *kinds.entry(word).or_default() += 1;
        }
    }
    panic!(
        "{what}: {} of {} entries differ ({kinds:?}):\n{}",
        diffs.len(),
        want.len(),
        diffs
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

const FILE_MODES: [u32; 5] = [0o600, 0o640, 0o644, 0o755, 0o700];
const DIR_MODES: [u32; 3] = [0o755, 0o750, 0o700];

/// `files` small files (100 B–4 KiB) in `dirs` directories under `root`, with varied modes
/// and mtimes (every third one with nanoseconds), a few other owners (when root), and
/// relative, absolute and dangling symlinks. Returns the number of symlinks.
fn make_rsync_tree(root: &Path, files: usize, dirs: usize, seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    fs::create_dir_all(root).unwrap();
    for i in 0..files {
        let d = root.join(format!("dir{:02}", i % dirs));
        fs::create_dir_all(&d).unwrap();
        let f = d.join(format!("file{i:04}.dat"));
        write_random(&f, &mut rng, 100, 4096);
        chmod(&f, FILE_MODES[i % FILE_MODES.len()]);
        if is_root() && i % 97 == 5 {
            std::os::unix::fs::lchown(&f, Some(1234), Some(2345)).unwrap();
        }
        let nanos = if i % 3 == 0 {
            rng.gen_range(1..1_000_000_000)
        } else {
            0
        };
        set_mtime(&f, 1_500_000_000 + rng.gen_range(0..100_000_000), nanos);
    }
    let links: [(&str, &str); 8] = [
        ("dir00/link-same-dir", "file0000.dat"),
        ("dir01/link-up", "../dir02/file0002.dat"),
        ("dir03/link-to-dir", "../dir04"),
        ("dir05/link-absolute", "/usr/share/common-licenses/GPL-3"),
        ("dir06/link-absolute-dir", "/etc"),
        ("dir07/link-dangling", "no/such/file here"),
        (
            "dir08/link-dangling-absolute",
            "/nonexistent/bucketfs/target",
        ),
        (
            "dir09/link-long",
            "../dir10/../dir11/../dir12/./file0012.dat",
        ),
    ];
    for (link, target) in links {
        symlink(target, root.join(link)).unwrap();
    }
    // Directory modes and times last: creating entries changes a directory's mtime.
    for k in 0..dirs {
        let d = root.join(format!("dir{k:02}"));
        chmod(&d, DIR_MODES[k % DIR_MODES.len()]);
        set_mtime(
            &d,
            1_400_000_000 + 86_400 * k as i64,
            250_000_000 * (k as i64 % 4),
        );
    }
    set_mtime(root, 1_450_000_000, 0);
    links.len()
}

/// A small tree for tar and cp: modes (including read-only and executable files, private
/// directories), whole-second mtimes, other owners (when root) and symlinks of every kind.
fn make_mixed_tree(root: &Path, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for d in ["bin", "src/nested", "private", "shared"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let files: [(&str, u32); 10] = [
        ("README", 0o644),
        ("bin/run.sh", 0o755),
        ("bin/tool", 0o700),
        ("src/main.c", 0o644),
        ("src/config.h", 0o640),
        ("src/nested/deep.txt", 0o600),
        ("src/nested/readonly.txt", 0o444),
        ("private/key", 0o600),
        ("shared/data.bin", 0o664),
        ("shared/setgid-ish", 0o2755),
    ];
    for (i, (f, mode)) in files.iter().enumerate() {
        let p = root.join(f);
        write_random(&p, &mut rng, 100, 4096);
        chmod(&p, *mode);
        set_mtime(&p, 1_300_000_000 + 7_777_777 * i as i64, 0);
    }
    if is_root() {
        std::os::unix::fs::lchown(root.join("shared/data.bin"), Some(1234), Some(2345)).unwrap();
    }
    let links = [
        ("src/lib-link", "main.c"),
        ("bin/up", "../src/nested/deep.txt"),
        ("abs", "/usr/share/common-licenses"),
        ("dangling", "no/such/file"),
        ("dirlink", "src"),
    ];
    for (link, target) in links {
        symlink(target, root.join(link)).unwrap();
    }
    for (i, (d, mode)) in [
        ("bin", 0o755),
        ("src/nested", 0o755),
        ("src", 0o755),
        ("private", 0o700),
        ("shared", 0o750),
    ]
    .iter()
    .enumerate()
    {
        let p = root.join(d);
        chmod(&p, *mode);
        set_mtime(&p, 1_200_000_000 + 1_000_003 * i as i64, 0);
    }
    set_mtime(root, 1_250_000_000, 0);
}

/// A real source tarball present on every machine that built this project: a `.crate` (a
/// .tar.gz of a crate's sources) of one of our dependencies in cargo's download cache.
fn crate_tarball() -> PathBuf {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cargo"));
    let cache = home.join("registry/cache");
    let mut found: Vec<PathBuf> = fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("no cargo download cache at {}: {e}", cache.display()))
        .flatten()
        .filter_map(|reg| fs::read_dir(reg.path()).ok())
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crate"))
        .collect();
    found.sort();
    for name in ["serde-1.", "bytes-1.", "url-2.", "tokio-1."] {
        if let Some(p) = found
            .iter()
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(name))
        {
            return p.clone();
        }
    }
    found
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no .crate file under {}", cache.display()))
}

// --- rsync ---------------------------------------------------------------------------------

#[test]
fn rsync_a_round_trips_a_tree_and_later_runs_transfer_nothing() {
    let server = Server::running();
    let prefix = server.unique_prefix("rsync");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("tree");
    let links = make_rsync_tree(&src, 2000, 40, 1);
    let from = format!("{}/", src.display());
    let exact = Check {
        nanos: true,
        dir_mtimes: true,
    };

    let m = mount(&server, &prefix);
    let to = format!("{}/", m.path("tree").display());
    let stats = run_ok(tool("rsync").args(["-a", "--stats", &from, &to]));
    assert_eq!(files_transferred(&stats), 2000, "run 1:\n{stats}");
    assert_same_tree(
        &src,
        &m.path("tree"),
        exact,
        "after rsync, through the mount",
    );
    let stats = run_ok(tool("rsync").args(["-a", "--stats", &from, &to]));
    assert_eq!(
        files_transferred(&stats),
        0,
        "run 2 on the same mount finds every file up to date:\n{stats}"
    );
    m.unmount();
    let objects = server
        .keys(&format!("{prefix}/tree/"))
        .into_iter()
        .filter(|k| !k.ends_with('/'))
        .count();
    assert_eq!(
        objects,
        2000 + links,
        "files and symlinks are objects after unmount"
    );

    let m = mount(&server, &prefix);
    assert_same_tree(&src, &m.path("tree"), exact, "through a fresh mount");
    let to = format!("{}/", m.path("tree").display());
    let stats = run_ok(tool("rsync").args(["-a", "--stats", &from, &to]));
    assert_eq!(
        files_transferred(&stats),
        0,
        "run 3 on a fresh mount finds every file up to date:\n{stats}"
    );
}

#[test]
fn rsync_inplace_rewrites_the_middle_of_a_file() {
    let server = Server::running();
    let prefix = server.unique_prefix("inplace");
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("data.bin");
    let mut data = random_bytes(512 << 10);
    fs::write(&f, &data).unwrap();
    set_mtime(&f, 1_500_000_000, 0);
    let m = mount(&server, &prefix);
    let to = format!("{}/", m.dir.display());
    let flags = ["-a", "--inplace", "--no-whole-file", "--stats"];
    run_ok(tool("rsync").args(flags).arg(&f).arg(&to));

    // New bytes in the middle, same size: rsync's delta sends only the changed blocks and
    // copies the rest from the file it reads through the mount.
    let patch = random_bytes(3000);
    data[200_000..203_000].copy_from_slice(&patch);
    let mut w = fs::OpenOptions::new().write(true).open(&f).unwrap();
    w.seek(SeekFrom::Start(200_000)).unwrap();
    w.write_all(&patch).unwrap();
    drop(w);
    set_mtime(&f, 1_600_000_000, 0);
    let stats = run_ok(tool("rsync").args(flags).arg(&f).arg(&to));
    assert_eq!(files_transferred(&stats), 1, "{stats}");
    assert!(
        rsync_stat(&stats, "Matched data") > 0,
        "rsync reused unchanged blocks of the file in the mount:\n{stats}"
    );
    assert_eq!(
        sha256(&fs::read(m.path("data.bin")).unwrap()),
        sha256(&data),
        "through the mount"
    );
    m.unmount();
    assert_eq!(
        server.keys(&format!("{prefix}/")),
        vec![format!("{prefix}/data.bin")],
        "no temporary object"
    );
    let stored = server.get(&format!("{prefix}/data.bin")).unwrap();
    assert_eq!(stored.len(), data.len());
    assert_eq!(
        &stored[199_000..204_000],
        &data[199_000..204_000],
        "the changed middle is in the bucket"
    );
    assert_eq!(sha256(&stored), sha256(&data), "the whole object");
}

#[test]
fn rsync_of_new_small_files_costs_one_put_each() {
    let server = Server::running();
    let prefix = server.unique_prefix("rsyncputs");
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let names: Vec<String> = (0..50).map(|i| format!("f{i:02}.txt")).collect();
    for (i, name) in names.iter().enumerate() {
        let p = tmp.path().join(name);
        write_random(&p, &mut rng, 100, 4096);
        chmod(&p, FILE_MODES[i % FILE_MODES.len()]);
        set_mtime(&p, 1_500_000_000 + i as i64 * 1000, 0);
    }
    // Last writer wins here: on Garage, which ignores conditional writes, keep-both costs a
    // probe at mount and a HEAD before each upload (see tests/conflicts.rs), which is not
    // what this spec counts.
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--write-back-delay", "0.5", "--conflict", "overwrite"],
    );
    // The files are named one by one (not `dir/`), so rsync leaves the mount's root
    // directory's own attributes alone: the only objects to write are the 50 files.
    let to = format!("{}/", m.dir.display());
    let stats = run_ok(
        tool("rsync")
            .args(["-a", "--stats"])
            .args(&names)
            .arg(&to)
            .current_dir(tmp.path()),
    );
    assert_eq!(files_transferred(&stats), 50, "{stats}");
    let counts = request_counts(&m.log_after_unmount());
    let n = |k: &str| counts.get(k).copied().unwrap_or(0);
    // Hedged attempts (a slow answer on a loaded machine) count as requests of their kind.
    let hedged = n("hedged");
    assert_eq!(
        (n("PutObject").min(50), n("CopyObject"), n("DeleteObject")),
        (50, 0, 0),
        "(PUT, copy, DELETE) for 50 new files written by rsync (temp file, chmod, utimes, \
         rename): one PUT each, under its final name: {counts:?}"
    );
    assert!(n("PutObject") <= 50 + hedged, "{counts:?}");
    assert!(
        n("HeadObject") + n("ListObjectsV2") <= 10 + hedged,
        "the missing names rsync looks up are answered from one listing, not one HEAD and \
         LIST each: {counts:?}"
    );
    let keys = server.keys(&format!("{prefix}/"));
    let expected: Vec<String> = names.iter().map(|n| format!("{prefix}/{n}")).collect();
    assert_eq!(keys, expected);
}

// --- attributes in the bucket ----------------------------------------------------------------

#[test]
fn chmod_chown_and_touch_are_stored_as_s3fs_metadata() {
    let server = Server::running();
    let prefix = server.unique_prefix("meta");
    let m = mount(&server, &prefix);
    let f = m.path("notes.txt");
    fs::write(&f, b"some notes\n").unwrap();
    chmod(&f, 0o640);
    if is_root() {
        std::os::unix::fs::lchown(&f, Some(1234), Some(2345)).unwrap();
    }
    set_mtime(&f, 1_614_834_367, 500_000_000);
    m.unmount();

    let head = server
        .head_full(&format!("{prefix}/notes.txt"))
        .expect("object stored");
    let meta = head.metadata.unwrap_or_default();
    let get = |k: &str| meta.get(k).cloned();
    assert_eq!(
        get("mode"),
        Some((libc::S_IFREG | 0o640).to_string()),
        "x-amz-meta-mode is st_mode in decimal: {meta:?}"
    );
    if is_root() {
        assert_eq!(
            (get("uid"), get("gid")),
            (Some("1234".into()), Some("2345".into())),
            "x-amz-meta-uid / -gid: {meta:?}"
        );
    }
    // s3fs writes whole seconds, or seconds.nanoseconds when there are nanoseconds.
    let mtime = get("mtime").unwrap_or_else(|| panic!("no x-amz-meta-mtime: {meta:?}"));
    let (secs, frac) = mtime.split_once('.').unwrap_or((&mtime, ""));
    assert_eq!(secs, "1614834367", "x-amz-meta-mtime: {meta:?}");
    assert!(
        frac.is_empty() || frac.trim_end_matches('0') == "5",
        "x-amz-meta-mtime: {meta:?}"
    );

    let m = mount(&server, &prefix);
    let md = fs::symlink_metadata(m.path("notes.txt")).unwrap();
    assert_eq!(md.mode(), libc::S_IFREG | 0o640, "mode on a fresh mount");
    assert_eq!(
        (md.mtime(), md.mtime_nsec()),
        (1_614_834_367, 500_000_000),
        "mtime on a fresh mount"
    );
    if is_root() {
        assert_eq!((md.uid(), md.gid()), (1234, 2345), "owner on a fresh mount");
    }
    assert_eq!(fs::read(m.path("notes.txt")).unwrap(), b"some notes\n");
}

#[test]
fn a_symlink_is_an_object_holding_its_target() {
    let server = Server::running();
    let prefix = server.unique_prefix("symlink");
    let m = mount(&server, &prefix);
    let target = "../some dir/naïve target";
    symlink(target, m.path("link")).expect("symlink through the mount");
    assert_eq!(fs::read_link(m.path("link")).unwrap(), Path::new(target));
    m.unmount();

    let key = format!("{prefix}/link");
    assert_eq!(
        server.get(&key).as_deref(),
        Some(target.as_bytes()),
        "the object's body is the target"
    );
    let meta = server.head_full(&key).unwrap().metadata.unwrap_or_default();
    assert_eq!(
        meta.get("mode").cloned(),
        Some((libc::S_IFLNK | 0o777).to_string()),
        "x-amz-meta-mode is S_IFLNK | 0777: {meta:?}"
    );

    let m = mount(&server, &prefix);
    let md = fs::symlink_metadata(m.path("link")).unwrap();
    assert!(md.file_type().is_symlink(), "a symlink on a fresh mount");
    assert_eq!(
        md.len(),
        target.len() as u64,
        "st_size is the target's length"
    );
    assert_eq!(fs::read_link(m.path("link")).unwrap(), Path::new(target));
}

// --- cp -a and tar -x ------------------------------------------------------------------------

#[test]
fn tar_x_of_a_crate_matches_a_local_extraction() {
    let server = Server::running();
    let prefix = server.unique_prefix("tarcrate");
    let tarball = crate_tarball();
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("x");
    fs::create_dir(&local).unwrap();
    run_ok(tool("tar").arg("-xzf").arg(&tarball).arg("-C").arg(&local));
    // A .crate has no directory entries: tar gives the directories it creates the time of
    // extraction, different on both sides.
    let check = Check {
        nanos: false,
        dir_mtimes: false,
    };

    let m = mount(&server, &prefix);
    fs::create_dir(m.path("x")).unwrap();
    run_ok(
        tool("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(m.path("x")),
    );
    let what = format!("tar -x of {}", tarball.display());
    assert_same_tree(&local, &m.path("x"), check, &format!("{what}, same mount"));
    m.unmount();
    let m = mount(&server, &prefix);
    assert_same_tree(&local, &m.path("x"), check, &format!("{what}, fresh mount"));
}

#[test]
fn tar_x_keeps_modes_owners_mtimes_and_symlinks() {
    let server = Server::running();
    let prefix = server.unique_prefix("tarmixed");
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    make_mixed_tree(&tree, 4);
    let tarball = tmp.path().join("mixed.tar");
    run_ok(
        tool("tar")
            .arg("-cf")
            .arg(&tarball)
            .arg("-C")
            .arg(&tree)
            .arg("."),
    );
    let local = tmp.path().join("x");
    fs::create_dir(&local).unwrap();
    run_ok(tool("tar").arg("-xf").arg(&tarball).arg("-C").arg(&local));
    let check = Check {
        nanos: false,
        dir_mtimes: true,
    };

    let m = mount(&server, &prefix);
    fs::create_dir(m.path("x")).unwrap();
    run_ok(
        tool("tar")
            .arg("-xf")
            .arg(&tarball)
            .arg("-C")
            .arg(m.path("x")),
    );
    assert_same_tree(&local, &m.path("x"), check, "tar -x, same mount");
    m.unmount();
    let m = mount(&server, &prefix);
    assert_same_tree(&local, &m.path("x"), check, "tar -x, fresh mount");
}

#[test]
fn cp_a_keeps_modes_owners_mtimes_and_symlinks() {
    let server = Server::running();
    let prefix = server.unique_prefix("cpa");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_mixed_tree(&src.join("mixed"), 5);
    fs::create_dir(src.join("crate")).unwrap();
    run_ok(
        tool("tar")
            .arg("-xzf")
            .arg(crate_tarball())
            .arg("-C")
            .arg(src.join("crate")),
    );
    set_mtime(&src.join("crate"), 1_100_000_000, 0);
    set_mtime(&src, 1_100_000_000, 0);
    let check = Check {
        nanos: false,
        dir_mtimes: true,
    };

    let m = mount(&server, &prefix);
    run_ok(tool("cp").arg("-a").arg(&src).arg(m.path("copy")));
    assert_same_tree(&src, &m.path("copy"), check, "cp -a, same mount");
    m.unmount();
    let m = mount(&server, &prefix);
    assert_same_tree(&src, &m.path("copy"), check, "cp -a, fresh mount");
}

// --- shell idioms ------------------------------------------------------------------------------

#[test]
fn a_hundred_shell_appends_all_reach_the_bucket() {
    let server = Server::running();
    let prefix = server.unique_prefix("appends");
    let m = mount(&server, &prefix);
    run_ok(
        tool("sh")
            .args([
                "-c",
                "for i in $(seq 1 100); do echo line$i >> log.txt; done",
            ])
            .current_dir(&m.dir),
    );
    let expected: String = (1..=100).map(|i| format!("line{i}\n")).collect();
    assert_eq!(
        fs::read_to_string(m.path("log.txt")).unwrap(),
        expected,
        "through the mount"
    );
    m.unmount();
    let stored = server
        .get(&format!("{prefix}/log.txt"))
        .expect("object stored");
    assert_eq!(String::from_utf8_lossy(&stored), expected, "in the bucket");
}

#[test]
fn save_by_rename_replaces_the_object_and_leaves_no_temp_key() {
    let server = Server::running();
    let prefix = server.unique_prefix("saverename");
    let key = format!("{prefix}/doc.txt");
    server.put(&key, b"the old version\n");
    let m = mount(&server, &prefix);
    assert_eq!(fs::read(m.path("doc.txt")).unwrap(), b"the old version\n");
    let new = b"the new version, longer than the old one\n".repeat(50);
    let mut tmp = fs::File::create(m.path("doc.txt.tmp")).unwrap();
    tmp.write_all(&new).unwrap();
    tmp.sync_all().unwrap(); // as editors do before the rename
    drop(tmp);
    fs::rename(m.path("doc.txt.tmp"), m.path("doc.txt")).unwrap();
    assert_eq!(
        fs::read(m.path("doc.txt")).unwrap(),
        new,
        "through the mount"
    );
    assert!(!m.path("doc.txt.tmp").exists());
    m.unmount();
    assert_eq!(server.get(&key).as_deref(), Some(&new[..]), "in the bucket");
    assert_eq!(server.keys(&format!("{prefix}/")), vec![key], "no temp key");
}

#[test]
fn mkdir_p_and_rm_rf_of_a_deep_tree() {
    let server = Server::running();
    let prefix = server.unique_prefix("deep");
    let levels: Vec<String> = (1..=12).map(|i| format!("level{i:02}")).collect();
    let deep = levels.join("/");
    let middle = levels[..6].join("/");
    let m = mount(&server, &prefix);
    run_ok(tool("mkdir").arg("-p").arg(m.path(&deep)));
    fs::write(m.path(&format!("{deep}/bottom.txt")), b"bottom").unwrap();
    fs::write(m.path(&format!("{middle}/middle.txt")), b"middle").unwrap();
    m.unmount();
    let keys = server.keys(&format!("{prefix}/"));
    assert!(
        keys.contains(&format!("{prefix}/{deep}/bottom.txt"))
            && keys.contains(&format!("{prefix}/{middle}/middle.txt")),
        "{keys:?}"
    );

    let m = mount(&server, &prefix);
    let found = run_ok(
        tool("find")
            .arg("level01")
            .arg("-type")
            .arg("d")
            .current_dir(&m.dir),
    );
    assert_eq!(found.lines().count(), 12, "{found}");
    assert_eq!(
        fs::read(m.path(&format!("{deep}/bottom.txt"))).unwrap(),
        b"bottom"
    );
    run_ok(tool("rm").arg("-rf").arg("level01").current_dir(&m.dir));
    assert!(!m.path("level01").exists());
    m.unmount();
    assert_eq!(
        server.keys(&format!("{prefix}/")),
        Vec::<String>::new(),
        "no key left under the removed tree"
    );
}

#[test]
fn names_with_spaces_and_non_ascii_round_trip() {
    let server = Server::running();
    let prefix = server.unique_prefix("names");
    let files = ["my file.txt", "naïve café/résumé ü.txt", "日本語.txt"];
    let m = mount(&server, &prefix);
    fs::create_dir(m.path("naïve café")).unwrap();
    for f in files {
        fs::write(m.path(f), format!("contents of {f}\n")).unwrap();
    }
    m.unmount();

    let keys: BTreeSet<String> = server.keys(&format!("{prefix}/")).into_iter().collect();
    let objects: BTreeSet<String> = keys.iter().filter(|k| !k.ends_with('/')).cloned().collect();
    let expected: BTreeSet<String> = files.iter().map(|f| format!("{prefix}/{f}")).collect();
    assert_eq!(objects, expected, "keys are the exact UTF-8 names");
    for marker in keys.iter().filter(|k| k.ends_with('/')) {
        assert_eq!(marker, &format!("{prefix}/naïve café/"), "{keys:?}");
    }
    for f in files {
        let stored = server.get(&format!("{prefix}/{f}")).unwrap();
        assert_eq!(stored, format!("contents of {f}\n").as_bytes());
    }

    let m = mount(&server, &prefix);
    for f in files {
        assert_eq!(
            fs::read_to_string(m.path(f)).unwrap(),
            format!("contents of {f}\n"),
            "{f} through a fresh mount"
        );
    }
    let top = run_ok(tool("ls").arg("-1").arg(&m.dir));
    assert_eq!(
        top.lines().collect::<Vec<_>>(),
        vec!["my file.txt", "naïve café", "日本語.txt"],
        "ls of the root"
    );
    let sub = run_ok(tool("ls").arg("-1").arg(m.path("naïve café")));
    assert_eq!(sub.lines().collect::<Vec<_>>(), vec!["résumé ü.txt"]);
    let exact = fs::read_dir(m.path("naïve café"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect::<Vec<_>>();
    assert_eq!(
        exact,
        vec![OsStr::new("résumé ü.txt").to_os_string()],
        "the exact bytes"
    );
}

/// Names S3 can hold that XML text or URL encodings mangle: CR (XML turns it into LF), LF,
/// tab, `%`, `+`, space, `&`, `<`, non-ASCII.
const AWKWARD_NAMES: [&str; 6] = [
    "carriage\rreturn.txt",
    "line\nfeed\ttab.txt",
    "100% +plus & <space>.txt",
    "a+b",
    "a b",
    "ünï 日本.txt",
];

#[test]
fn keys_with_cr_lf_percent_plus_and_non_ascii_list_open_and_read_with_their_exact_names() {
    let server = Server::running();
    let prefix = server.unique_prefix("awkward");
    let dir = "dir\rwith cr+%";
    for name in AWKWARD_NAMES {
        server.put(
            &format!("{prefix}/{name}"),
            format!("contents of {name:?}").as_bytes(),
        );
        server.put(
            &format!("{prefix}/{dir}/{name}"),
            format!("inner {name:?}").as_bytes(),
        );
    }

    let m = mount(&server, &prefix);
    let listed = |path: &Path| -> BTreeSet<String> {
        fs::read_dir(path)
            .unwrap_or_else(|e| panic!("readdir {}: {e}", path.display()))
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    let mut want: BTreeSet<String> = AWKWARD_NAMES.iter().map(|n| n.to_string()).collect();
    want.insert(dir.to_string());
    assert_eq!(listed(&m.dir), want, "the root, byte for byte");
    let inner: BTreeSet<String> = AWKWARD_NAMES.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        listed(&m.path(dir)),
        inner,
        "a directory whose name has a CR"
    );
    for name in AWKWARD_NAMES {
        assert_eq!(
            fs::read_to_string(m.path(name)).unwrap_or_else(|e| panic!("open {name:?}: {e}")),
            format!("contents of {name:?}")
        );
        let nested = format!("{dir}/{name}");
        assert_eq!(
            fs::read_to_string(m.path(&nested)).unwrap_or_else(|e| panic!("open {nested:?}: {e}")),
            format!("inner {name:?}")
        );
    }
}

// --- extended attributes ---------------------------------------------------------------------

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// getxattr(2) of `name`, or the errno.
fn get_xattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let (p, n) = (c_path(path), CString::new(name).unwrap());
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the given length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(len as usize);
    Ok(buf)
}

/// setxattr(2) of `name` to `value`; panics on failure.
fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let (p, n) = (c_path(path), CString::new(name).unwrap());
    // SAFETY: valid C strings and a value of the given length.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// listxattr(2): the attribute names of `path`, sorted.
fn list_xattrs(path: &Path) -> Vec<String> {
    let p = c_path(path);
    let mut buf = vec![0u8; 65536];
    // SAFETY: a valid C string and a buffer of the given length.
    let len = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        len >= 0,
        "listxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    buf.truncate(len as usize);
    let mut names: Vec<String> = buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    names.sort();
    names
}

/// The `user.*` attributes set on the files of the tree of
/// `rsync_ax_carries_user_xattrs_both_ways_and_a_second_run_changes_nothing`.
const TREE_XATTRS: [(&str, &str, &str); 3] = [
    ("a.txt", "user.color", "blue"),
    ("sub/b.dat", "user.project", "apollo"),
    ("sub/b.dat", "user.team-name", "ops 2"),
];

#[test]
fn rsync_ax_carries_user_xattrs_both_ways_and_a_second_run_changes_nothing() {
    let server = Server::running();
    let prefix = server.unique_prefix("rsync-xattr");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("tree");
    fs::create_dir_all(src.join("sub")).unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    for f in ["a.txt", "sub/b.dat", "sub/plain.dat"] {
        write_random(&src.join(f), &mut rng, 100, 4096);
        set_mtime(&src.join(f), 1_600_000_000, 0);
    }
    for (f, name, value) in TREE_XATTRS {
        set_xattr(&src.join(f), name, value.as_bytes());
    }
    set_mtime(&src.join("sub"), 1_600_000_000, 0);
    let itemized = |from: &Path, to: &Path| {
        run_ok(tool("rsync").args([
            "-aX",
            "--itemize-changes",
            &format!("{}/", from.display()),
            &format!("{}/", to.display()),
        ]))
    };

    let m = mount(&server, &prefix);
    let on_mount = m.path("tree");
    let changes = itemized(&src, &on_mount);
    assert!(!changes.is_empty(), "run 1 copies the tree");
    for (f, name, value) in TREE_XATTRS {
        assert_eq!(
            get_xattr(&on_mount.join(f), name).as_deref(),
            Ok(value.as_bytes()),
            "{f} {name} on the mount"
        );
    }
    assert_eq!(
        itemized(&src, &on_mount),
        "",
        "run 2 into the mount changes nothing"
    );

    let back = tmp.path().join("back");
    itemized(&on_mount, &back);
    for f in ["a.txt", "sub/b.dat", "sub/plain.dat"] {
        assert_eq!(
            list_xattrs(&back.join(f)),
            list_xattrs(&src.join(f)),
            "{f} out of the mount has the attributes it went in with, and no others"
        );
    }
    for (f, name, value) in TREE_XATTRS {
        assert_eq!(
            get_xattr(&back.join(f), name).as_deref(),
            Ok(value.as_bytes()),
            "{f} {name} out of the mount"
        );
    }
    assert_eq!(
        itemized(&on_mount, &back),
        "",
        "run 2 out of the mount changes nothing"
    );
    m.unmount();

    let etag = server
        .head_full(&format!("{prefix}/tree/a.txt"))
        .and_then(|h| h.e_tag)
        .expect("a.txt is stored");
    let m = mount(&server, &prefix);
    let a = m.path("tree/a.txt");
    assert!(
        !list_xattrs(&a).iter().any(|n| n.starts_with("s3.")),
        "{:?}",
        list_xattrs(&a)
    );
    let shown = String::from_utf8(get_xattr(&a, "s3.etag").unwrap()).unwrap();
    assert_eq!(shown, etag.trim_matches('"'), "s3.etag is read by name");
    assert_eq!(
        itemized(&src, &m.path("tree")),
        "",
        "a run into a fresh mount changes nothing"
    );
}

#[test]
fn user_xattrs_are_user_metadata_and_s3_ones_describe_the_object() {
    let server = Server::running();
    let prefix = server.unique_prefix("xattr");
    let m = mount(&server, &prefix);
    let f = m.path("doc.txt");
    fs::write(&f, b"text").unwrap();
    let (p, n, v) = (c_path(&f), CString::new("user.project").unwrap(), b"apollo");
    // SAFETY: valid C strings and a value of the given length.
    let rc = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
    assert_eq!(get_xattr(&f, "user.project").unwrap(), b"apollo");
    assert_eq!(get_xattr(&f, "user.absent"), Err(libc::ENODATA));
    assert_eq!(get_xattr(&f, "s3.content_type").unwrap(), b"text/plain");
    m.unmount();

    let head = server
        .head_full(&format!("{prefix}/doc.txt"))
        .expect("stored");
    let meta = head.metadata.unwrap_or_default();
    assert_eq!(
        meta.get("project").map(String::as_str),
        Some("apollo"),
        "{meta:?}"
    );
    let etag = head.e_tag.unwrap_or_default();

    let m = mount(&server, &prefix);
    let f = m.path("doc.txt");
    assert_eq!(
        get_xattr(&f, "user.project").unwrap(),
        b"apollo",
        "after a remount"
    );
    let shown = String::from_utf8(get_xattr(&f, "s3.etag").unwrap()).unwrap();
    assert_eq!(shown, etag.trim_matches('"'));
}

/// mknod(2) of `mode` (type and permission bits) with device number `major:minor`.
fn mknod(path: &Path, mode: u32, major: u32, minor: u32) {
    let p = c_path(path);
    // SAFETY: a valid C string.
    let rc = unsafe { libc::mknod(p.as_ptr(), mode, libc::makedev(major, minor)) };
    assert_eq!(
        rc,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// A backup of a whole tree as root, the way `rsync -aHAX --devices --specials` does it:
/// a FIFO, a socket, a character and a block device, symlinks, user xattrs, a sparse file
/// and a hard link go into the mount and back out; after a remount everything but the hard
/// link (S3 cannot share one object under two keys: rsync reports it and exits 23) is
/// identical by type, device number, mode, owner, mtime (to the nanosecond), bytes and
/// xattrs.
#[test]
fn rsync_ahax_with_devices_and_specials_round_trips_everything_but_hard_links() {
    if !is_root() {
        eprintln!("skipped: device nodes need root");
        return;
    }
    let server = Server::running();
    let prefix = server.unique_prefix("rsync-ahax");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("tree");
    fs::create_dir_all(src.join("dev")).unwrap();
    let mut rng = StdRng::seed_from_u64(17);
    write_random(&src.join("a.txt"), &mut rng, 1000, 5000);
    set_xattr(&src.join("a.txt"), "user.color", b"blue");
    let sparse = fs::File::create(src.join("sparse.img")).unwrap();
    sparse.set_len(12 << 20).unwrap();
    sparse.write_all_at(b"in the middle", 6 << 20).unwrap();
    drop(sparse);
    symlink("a.txt", src.join("link-to-a")).unwrap();
    fs::hard_link(src.join("a.txt"), src.join("hard-link-to-a")).unwrap();
    mknod(&src.join("dev/fifo"), libc::S_IFIFO | 0o640, 0, 0);
    mknod(&src.join("dev/null-like"), libc::S_IFCHR | 0o666, 1, 3);
    mknod(&src.join("dev/disk"), libc::S_IFBLK | 0o660, 8, 17);
    drop(std::os::unix::net::UnixListener::bind(src.join("dev/socket")).unwrap());
    for (i, rel) in [
        "a.txt",
        "sparse.img",
        "link-to-a",
        "dev/fifo",
        "dev/null-like",
        "dev/disk",
        "dev/socket",
        "dev",
        ".",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&src.join(rel), 1_600_000_000 + i as i64, 123_456_789);
    }
    let rsync = |from: &Path, to: &Path| {
        tool("rsync")
            .args(["-aHAX", "--devices", "--specials"])
            .arg(format!("{}/", from.display()))
            .arg(format!("{}/", to.display()))
            .output()
            .unwrap()
    };

    // (into a directory of the mount: the mount root's own times are not stored)
    let m = mount(&server, &prefix);
    let dst = m.path("backup");
    let out = rsync(&src, &dst);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(23),
        "only the hard link fails: {stderr}"
    );
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("hard-link-to-a") && !l.starts_with("rsync error: some files"))
        .collect();
    assert!(
        complaints.is_empty(),
        "rsync complained of more than the hard link: {stderr}"
    );
    // One of the two names of the hard-linked file arrives (rsync chooses which).
    let (kept, lost) = if dst.join("a.txt").exists() {
        ("a.txt", "hard-link-to-a")
    } else {
        ("hard-link-to-a", "a.txt")
    };
    let expected = tmp.path().join("expected");
    run_ok(tool("cp").args(["-a"]).arg(&src).arg(&expected));
    fs::remove_file(expected.join(lost)).unwrap();
    set_mtime(&expected, 1_600_000_008, 123_456_789);
    let check = Check {
        nanos: true,
        dir_mtimes: true,
    };
    assert_same_tree(&expected, &dst, check, "the mount after rsync in");
    m.unmount();

    let m = mount(&server, &prefix);
    let dst = m.path("backup");
    assert_same_tree(&expected, &dst, check, "a fresh mount");
    assert_eq!(get_xattr(&dst.join(kept), "user.color").unwrap(), b"blue");
    let back = tmp.path().join("back");
    let out = rsync(&dst, &back);
    assert!(
        out.status.success(),
        "rsync out: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_tree(&expected, &back, check, "the tree rsynced back out");
    assert_eq!(get_xattr(&back.join(kept), "user.color").unwrap(), b"blue");
    m.unmount();
}

/// `tar -x` of an archive holding a FIFO, a device and a hard link: the FIFO and the device
/// are created (mknod), the hard link fails with tar's own message (EPERM: S3 cannot share
/// an object under two keys), and every other entry arrives intact.
#[test]
fn tar_x_creates_fifos_and_devices_and_loses_only_hard_links() {
    let server = Server::running();
    let prefix = server.unique_prefix("tar-special");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("tree");
    fs::create_dir_all(src.join("sub")).unwrap();
    let mut rng = StdRng::seed_from_u64(23);
    write_random(&src.join("sub/data.bin"), &mut rng, 20_000, 40_000);
    fs::hard_link(src.join("sub/data.bin"), src.join("sub/same-data.bin")).unwrap();
    mknod(&src.join("sub/pipe"), libc::S_IFIFO | 0o600, 0, 0);
    if is_root() {
        mknod(&src.join("sub/tty-like"), libc::S_IFCHR | 0o620, 4, 64);
    }
    for rel in ["sub/data.bin", "sub/pipe", "sub", "."] {
        set_mtime(&src.join(rel), 1_650_000_000, 0);
    }
    let archive = tmp.path().join("tree.tar");
    run_ok(
        tool("tar")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(&src)
            .arg("."),
    );

    let m = mount(&server, &prefix);
    let dst = m.path("x");
    fs::create_dir(&dst).unwrap();
    let out = tool("tar")
        .arg("-xpf")
        .arg(&archive)
        .arg("-C")
        .arg(&dst)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("same-data.bin") && !l.contains("Exiting with failure"))
        .collect();
    assert!(
        complaints.is_empty(),
        "tar complained of more than the hard link: {stderr}"
    );
    assert!(
        stderr.contains("Operation not permitted"),
        "the hard link: {stderr}"
    );
    let expected = tmp.path().join("expected");
    run_ok(tool("cp").args(["-a"]).arg(&src).arg(&expected));
    fs::remove_file(expected.join("sub/same-data.bin")).unwrap();
    set_mtime(&expected.join("sub"), 1_650_000_000, 0);
    set_mtime(&expected, 1_650_000_000, 0);
    let check = Check {
        nanos: false,
        dir_mtimes: true,
    };
    assert_same_tree(&expected, &dst, check, "tar -x into the mount");
    m.unmount();
    let m = mount(&server, &prefix);
    assert_same_tree(&expected, &m.path("x"), check, "a fresh mount");
}
