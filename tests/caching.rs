//! Metadata and data caches on a real mount: a names-only listing (`ls`, `find -name`) of a
//! large directory costs one listing pass and no HEAD when listing metadata is off, and
//! `ls -l` at most one HEAD per entry (for stored modes and mtimes) either way — attributes
//! never reach the kernel before the stored metadata is known; changed objects are never served from stale caches; the disk
//! cache survives a remount and serves reads without GETs; a file held open with its
//! read-ahead unread does not stall the reading of another (the prefetch budget); a tree walk
//! (with directory read-ahead) sees stored modes and symlinks and lists each directory once.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn a_listing_costs_no_head_and_ls_l_one_per_entry() {
    let server = Server::running();
    let prefix = server.unique_prefix("lsl");
    let keys: Vec<String> = (0..1500).map(|i| format!("{prefix}/d/f{i:05}")).collect();
    server.put_many(&keys, b"0123456789");
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--metadata-ttl", "30"],
    );
    let names = Command::new("find")
        .arg(m.path("d"))
        .args(["-name", "f*"])
        .output()
        .unwrap();
    assert!(names.status.success());
    assert_eq!(String::from_utf8_lossy(&names.stdout).lines().count(), 1500);
    let out = Command::new("ls")
        .arg("-l")
        .arg(m.path("d"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().filter(|l| l.starts_with('-')).count(), 1500);
    assert!(text.contains(" 10 "), "sizes: {}", &text[..200]);
    let counts = request_counts(&m.log_after_unmount());
    let heads = counts.get("HeadObject").copied().unwrap_or(0);
    let lists = counts.get("ListObjectsV2").copied().unwrap_or(0);
    assert!(
        (1500..=1502 + counts["hedged"]).contains(&heads),
        "find: no HEAD; ls -l: one per entry it stats, once: {counts:?}"
    );
    assert!(
        lists <= 5 + counts["hedged"],
        "one listing pass (two pages) plus lookups: {counts:?}"
    );
}

#[test]
fn ls_l_shows_stored_modes_and_mtimes_with_at_most_one_head_per_entry() {
    let server = Server::running();
    let prefix = server.unique_prefix("lslmeta");
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let m = Mount::new(&server, &source, &[]);
    fs::create_dir(m.path("d")).unwrap();
    for i in 0..300 {
        let path = m.path(&format!("d/f{i:03}"));
        fs::write(&path, b"x").unwrap();
        let touch = Command::new("chmod")
            .arg("700")
            .arg(&path)
            .status()
            .unwrap();
        assert!(touch.success());
    }
    let touch = Command::new("sh")
        .arg("-c")
        .arg(format!("touch -d @1500000000 {}/d/f*", m.dir.display()))
        .status()
        .unwrap();
    assert!(touch.success());
    m.unmount();

    let m = Mount::new(&server, &source, &["--metadata-ttl", "30"]);
    let out = Command::new("ls")
        .args(["-l", "--time-style=+%s"])
        .arg(m.path("d"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let files: Vec<&str> = text.lines().filter(|l| l.starts_with('-')).collect();
    assert_eq!(files.len(), 300);
    for line in files {
        assert!(
            line.starts_with("-rwx------") && line.contains(" 1500000000 "),
            "stored mode and mtime: {line}"
        );
    }
    let counts = request_counts(&m.log_after_unmount());
    let heads = counts.get("HeadObject").copied().unwrap_or(0);
    assert!(
        heads <= 300 + 5 + counts["hedged"],
        "at most one HEAD per entry (and the hedges of slow ones): {counts:?}"
    );
}

#[test]
fn a_changed_object_is_read_fresh_after_the_ttl() {
    let server = Server::running();
    let prefix = server.unique_prefix("fresh");
    let key = format!("{prefix}/f");
    server.put(&key, &random_bytes(3 << 20));
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--metadata-ttl", "0.2"],
    );
    let first = fs::read(m.path("f")).unwrap();
    let second = fs::read(m.path("f")).unwrap();
    assert_eq!(sha256(&first), sha256(&second), "re-read from the caches");
    let changed = random_bytes(3 << 20);
    server.put(&key, &changed);
    std::thread::sleep(Duration::from_millis(400));
    let third = fs::read(m.path("f")).unwrap();
    assert_eq!(
        sha256(&third),
        sha256(&changed),
        "the new version, not cached blocks"
    );
}

#[test]
fn the_disk_cache_survives_a_remount_and_serves_reads_without_gets() {
    let server = Server::running();
    let prefix = server.unique_prefix("disk");
    let data = random_bytes(6 << 20);
    server.put(&format!("{prefix}/f"), &data);
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().display().to_string();
    let flags = [
        "--disk-cache",
        "64MiB",
        "--memory-cache",
        "0",
        "--cache-dir",
        cache_dir.as_str(),
    ];
    let m = Mount::new(&server, &source, &flags);
    assert_eq!(sha256(&fs::read(m.path("f")).unwrap()), sha256(&data));
    let first = request_counts(&m.log_after_unmount());
    assert!(
        first.get("GetObject").copied().unwrap_or(0) >= 1,
        "{first:?}"
    );

    let m = Mount::new(&server, &source, &flags);
    assert_eq!(sha256(&fs::read(m.path("f")).unwrap()), sha256(&data));
    let log = m.log_after_unmount();
    let second = request_counts(&log);
    assert_eq!(
        second.get("GetObject").copied().unwrap_or(0),
        0,
        "served from disk: {second:?}"
    );

    // A new version under the same key misses the old blocks.
    let changed = random_bytes(6 << 20);
    server.put(&format!("{prefix}/f"), &changed);
    let m = Mount::new(&server, &source, &flags);
    assert_eq!(sha256(&fs::read(m.path("f")).unwrap()), sha256(&changed));
}

#[test]
fn a_file_held_open_with_its_read_ahead_unread_does_not_stall_reading_another() {
    let server = Server::running();
    let prefix = server.unique_prefix("budget");
    let (paused, read) = (random_bytes(40 << 20), random_bytes(40 << 20));
    server.put(&format!("{prefix}/paused"), &paused);
    server.put(&format!("{prefix}/read"), &read);
    // A prefetch budget of 12 MiB: the paused file's read-ahead holds most of it.
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--memory-budget", "16MiB", "--memory-cache", "4MiB"],
    );
    let mut held = fs::File::open(m.path("paused")).unwrap();
    let mut start = vec![0u8; 2 << 20];
    std::io::Read::read_exact(&mut held, &mut start).unwrap();
    assert!(start[..] == paused[..2 << 20]);
    std::thread::sleep(Duration::from_millis(500));

    let path = m.path("read");
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(fs::read(path).map(|d| sha256(&d))));
    let got = finished
        .recv_timeout(Duration::from_secs(30))
        .expect("the second file was read while the first stayed open, its read-ahead unread")
        .unwrap();
    assert_eq!(got, sha256(&read));
    drop(held);
}

#[test]
fn a_tree_walk_sees_stored_modes_and_symlinks_and_lists_each_directory_once() {
    let server = Server::running();
    let prefix = server.unique_prefix("walk");
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let m = Mount::new(&server, &source, &[]);
    fs::create_dir(m.path("t")).unwrap();
    for d in 0..6 {
        let dir = m.path(&format!("t/d{d}"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("f"), b"x").unwrap();
        let chmod = Command::new("chmod")
            .arg("700")
            .arg(dir.join("f"))
            .status()
            .unwrap();
        assert!(chmod.success());
        std::os::unix::fs::symlink("f", dir.join("l")).unwrap();
    }
    m.unmount();

    // A fresh mount: the walk reads directories ahead, and what it prints must come from
    // each entry's stored metadata (a symlink is only known as one from its HEAD).
    let m = Mount::new(&server, &source, &["--metadata-ttl", "30"]);
    let out = Command::new("find")
        .arg(m.path("t"))
        .args(["-mindepth", "2", "-printf", "%y %m %P\n"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    let mut want: Vec<String> = (0..6)
        .flat_map(|d| [format!("f 700 d{d}/f"), format!("l 777 d{d}/l")])
        .collect();
    want.sort();
    assert_eq!(lines, want);
    let counts = request_counts(&m.log_after_unmount());
    let lists = counts.get("ListObjectsV2").copied().unwrap_or(0);
    assert!(
        lists <= 6 + 4 + counts["hedged"],
        "each directory listed once, plus the lookups of t: {counts:?}"
    );
}
