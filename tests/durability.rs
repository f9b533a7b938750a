//! Nothing that was closed is lost: a daemon killed with SIGKILL while files are being
//! written leaves its closed files in the write-back journal, and the next mount with the same
//! cache directory uploads them (bytes and metadata) before it shows anything.

mod common;
#[path = "common/stall.rs"]
mod stall;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use stall::StallingProxy;

const FILES: usize = 200;

fn content(i: usize) -> Vec<u8> {
    format!("file {i}\n").repeat(50 + i).into_bytes()
}

fn mtime_of(i: usize) -> i64 {
    1_600_000_000 + i as i64
}

/// Writes file `i` the way cp -p does: write, close, chmod, set the mtime.
fn write_one(dir: &Path, i: usize) -> std::io::Result<()> {
    let path = dir.join(format!("f{i:03}"));
    std::fs::write(&path, content(i))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    set_times(&path, mtime_of(i), 0)
}

#[test]
fn files_closed_before_a_kill_9_are_uploaded_by_the_next_mount() {
    let server = Server::running();
    let prefix = server.unique_prefix("kill9");
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().display().to_string();
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    // A long delay: what is closed is still only in the journal when the daemon dies.
    let m = Mount::new(
        &server,
        &source,
        &["--cache-dir", &cache_arg, "--write-back-delay", "30"],
    );
    let done = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (dir, done) = (m.dir.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..FILES {
                if write_one(&dir, i).is_err() {
                    return; // the daemon is gone
                }
                done.store(i + 1, Ordering::SeqCst);
            }
        })
    };
    assert!(
        eventually(Duration::from_secs(60), || done.load(Ordering::SeqCst)
            >= FILES / 2),
        "half of the files are written"
    );
    let pid = daemon_pid(&m.dir).expect("daemon running");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    writer.join().unwrap();
    let closed = done.load(Ordering::SeqCst);
    let _ = Command::new("umount").arg("-l").arg(&m.dir).status();
    drop(m);
    assert!(
        server.keys(&format!("{prefix}/")).len() < closed,
        "the test needs files that were closed but not uploaded when the daemon died"
    );

    // The next mount replays the journal before it is ready.
    let m = Mount::new(&server, &source, &["--cache-dir", &cache_arg]);
    for i in 0..closed {
        let key = format!("{prefix}/f{i:03}");
        assert_eq!(server.get(&key), Some(content(i)), "{key}: bytes");
        let head = server.head_full(&key).unwrap();
        let meta = head.metadata.unwrap_or_default();
        let get = |k: &str| meta.iter().find(|(n, _)| n.eq_ignore_ascii_case(k));
        assert_eq!(
            get("mode").map(|(_, v)| v.as_str()),
            Some("33152"),
            "{key}: mode 0600"
        );
        let mtime = get("mtime").map(|(_, v)| v.split('.').next().unwrap().to_string());
        assert_eq!(mtime, Some(mtime_of(i).to_string()), "{key}: mtime");
    }
    // A file the kill interrupted is absent or whole, never partial.
    for key in server.keys(&format!("{prefix}/")) {
        let i: usize = key.rsplit('f').next().unwrap().parse().unwrap();
        assert_eq!(server.get(&key), Some(content(i)), "{key} is whole");
    }
    let md = std::fs::metadata(m.path("f000")).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    drop(m);
    let journal = cache_dir_entries(cache.path(), "journal");
    assert!(journal.is_empty(), "journal emptied: {journal:?}");
}

#[test]
fn closed_files_wait_for_the_delay_status_lists_them_and_unmount_shows_its_progress() {
    let server = Server::running();
    let prefix = server.unique_prefix("pending");
    // Hold back the answer to the first PutObject: the drain at unmount then takes a while.
    let proxy = StallingProxy::start(server.endpoint(), |line| {
        line.starts_with("PUT /")
            && !line.contains("partNumber=")
            && !line.contains("uploadId=")
            && !line.contains(".bucketfs-check-") // the probe of conditional writes at mount
    });
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let m = Mount::new(
        &server,
        &source,
        &["--endpoint", &endpoint, "--write-back-delay", "60"],
    );
    for i in 0..3 {
        std::fs::write(m.path(&format!("f{i}")), b"12345").unwrap();
    }
    assert!(
        server.keys(&format!("{prefix}/")).is_empty(),
        "not before the delay"
    );
    let out = Command::new(&*BIN)
        .args(["status", &m.dir.display().to_string()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("pending uploads: 3 files, 15 bytes"),
        "{report}"
    );

    let unmount = Command::new(&*BIN)
        .args(["unmount", &m.dir.display().to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || proxy
            .stalled_once
            .load(Ordering::SeqCst)),
        "the drain is uploading"
    );
    std::thread::sleep(Duration::from_secs(3));
    proxy.release.store(true, Ordering::SeqCst);
    let out = unmount.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("pending uploads:"),
        "a long drain shows its progress: {stderr}"
    );
    for i in 0..3 {
        let key = format!("{prefix}/f{i}");
        assert_eq!(server.get(&key), Some(b"12345".to_vec()), "{key}");
    }
    drop(m);
}

/// Files (not directories) under any `name` directory below `root`.
fn cache_dir_entries(root: &Path, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for mount_dir in std::fs::read_dir(root).unwrap().flatten() {
        let dir = mount_dir.path().join(name);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            out.push(e.path().display().to_string());
        }
    }
    out
}
