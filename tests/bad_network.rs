//! A bad network between bucketfs and the S3 server: real tools run through the fault proxy of
//! `common/faults.rs` (the mix of issue 14: 500s, 503s, resets before and in the middle of an
//! answer, stalls of 2-5 s; or an outage where every connection is reset), and the bucket is
//! checked directly afterwards: every file present with its bytes and its stored mode, no
//! other key (no partial object, no conflict copy), no multipart upload left, and no error
//! seen by a tool that it should not have seen.

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use faults::{FaultMix, FaultProxy};

/// A mount of `prefix` whose requests all go through `proxy`.
fn mount_through(server: &Server, proxy: &FaultProxy, prefix: &str, extra: &[&str]) -> Mount {
    let endpoint = proxy.endpoint();
    let mut flags = vec!["--endpoint", &endpoint];
    flags.extend_from_slice(extra);
    Mount::new(
        server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &flags,
    )
}

/// `n` files in `dir` (in 10 subdirectories), each with its own bytes and mode.
fn make_tree(dir: &Path, n: usize) -> Vec<(String, Vec<u8>, u32)> {
    let mut files = Vec::new();
    for i in 0..n {
        let rel = format!("d{:02}/f{i:04}", i % 10);
        let path = dir.join(&rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let data = random_bytes(100 + (i * 37) % 5000);
        fs::write(&path, &data).unwrap();
        let mode = [0o644, 0o600, 0o755, 0o640][i % 4];
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        files.push((rel, data, mode));
    }
    files
}

/// Every file is in the bucket under `prefix/dest/` with its bytes (and, when `modes`, its
/// stored mode); nothing else is under `prefix/dest/` but the directories' markers.
fn assert_bucket_holds(
    server: &Server,
    prefix: &str,
    dest: &str,
    files: &[(String, Vec<u8>, u32)],
    modes: bool,
) {
    let base = format!("{prefix}/{dest}/");
    let mut expected: Vec<String> = files
        .iter()
        .map(|(rel, ..)| format!("{base}{rel}"))
        .collect();
    expected.sort();
    let found: Vec<String> = server
        .keys(&base)
        .into_iter()
        .filter(|k| !k.ends_with('/'))
        .collect();
    assert_eq!(
        found, expected,
        "exactly the files, nothing partial or extra"
    );
    for (rel, data, mode) in files {
        let key = format!("{base}{rel}");
        let stored = server.get(&key).unwrap_or_else(|| panic!("{key} missing"));
        assert!(
            stored == *data,
            "{key}: {} bytes stored, {} written",
            stored.len(),
            data.len()
        );
        if modes {
            let meta = server.head_full(&key).unwrap().metadata.unwrap_or_default();
            assert_eq!(
                meta.get("mode").cloned(),
                Some((libc::S_IFREG | mode).to_string()),
                "{key}: stored mode"
            );
        }
    }
    assert!(
        server.multipart_uploads(prefix).is_empty(),
        "no multipart upload left"
    );
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn cp_r_rides_out_a_20_second_outage_and_every_file_arrives() {
    let server = Server::running();
    let prefix = server.unique_prefix("outage-cp");
    let proxy = FaultProxy::start(server.endpoint(), FaultMix::none(), 14);
    let m = mount_through(&server, &proxy, &prefix, &[]);
    let src = tempfile::tempdir().unwrap();
    let files = make_tree(src.path(), 500);

    let dest = m.path("copy");
    let source = src.path().to_path_buf();
    let cp = std::thread::spawn(move || {
        let started = Instant::now();
        let result = run(Command::new("cp").arg("-r").arg(&source).arg(&dest));
        (result, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300)); // cp is under way
    proxy.set_outage(true);
    std::thread::sleep(Duration::from_secs(20));
    proxy.set_outage(false);
    let ((ok, output), took) = cp.join().unwrap();
    assert!(ok, "cp failed after {took:?}: {output}");
    let outage = proxy.stats();
    assert!(
        outage.outage_connections + outage.outage_requests > 0,
        "the outage was met: {outage:?}"
    );
    eprintln!("cp -r of 500 files across a 20 s outage took {took:?}");
    m.unmount();
    assert_bucket_holds(&server, &prefix, "copy", &files, false);
}

#[test]
fn rsync_ls_find_and_reads_under_the_fault_mix_lose_nothing_and_see_no_error() {
    let server = Server::running();
    let prefix = server.unique_prefix("faults-tools");
    let proxy = FaultProxy::start(server.endpoint(), FaultMix::issue_14(), 14);
    let m = mount_through(&server, &proxy, &prefix, &["--write-back-delay", "0.5"]);
    let src = tempfile::tempdir().unwrap();
    let files = make_tree(src.path(), 200);

    let (ok, out) = run(Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", src.path().display()))
        .arg(m.path("dest")));
    assert!(ok, "rsync: {out}");
    let (ok, out) = run(Command::new("ls").arg("-lR").arg(m.path("dest")));
    assert!(ok, "ls -lR: {out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with('-')).count(),
        200,
        "{out}"
    );
    let (ok, out) = run(Command::new("find")
        .arg(m.path("dest"))
        .arg("-type")
        .arg("f"));
    assert!(ok, "find: {out}");
    assert_eq!(out.lines().count(), 200);
    // Every file reads back as written, on this mount and on a fresh one (cold caches).
    let (ok, out) = run(Command::new("diff")
        .arg("-r")
        .arg(src.path())
        .arg(m.path("dest")));
    assert!(ok, "diff -r: {out}");
    m.unmount();
    let cold = mount_through(&server, &proxy, &prefix, &[]);
    let (ok, out) = run(Command::new("diff")
        .arg("-r")
        .arg(src.path())
        .arg(cold.path("dest")));
    assert!(ok, "diff -r on a fresh mount: {out}");
    cold.unmount();

    let stats = proxy.stats();
    eprintln!("{stats:?}");
    assert!(stats.faults() > 50, "the faults were met: {stats:?}");
    assert_bucket_holds(&server, &prefix, "dest", &files, true);
}

#[test]
fn a_64_mib_file_is_written_and_read_back_exactly_under_the_fault_mix() {
    let server = Server::running();
    let prefix = server.unique_prefix("faults-big");
    let proxy = FaultProxy::start(server.endpoint(), FaultMix::issue_14(), 15);
    let m = mount_through(&server, &proxy, &prefix, &["--part-size", "8MiB"]);
    let data = random_bytes(64 << 20);
    fs::write(m.path("big"), &data).expect("close reports the upload");
    m.unmount();
    let cold = mount_through(&server, &proxy, &prefix, &[]);
    let read = fs::read(cold.path("big")).unwrap();
    assert_eq!(sha256(&read), sha256(&data), "read back through the faults");
    cold.unmount();
    assert_eq!(
        server.get(&format!("{prefix}/big")).map(|b| sha256(&b)),
        Some(sha256(&data))
    );
    assert!(server.multipart_uploads(&prefix).is_empty());
}

#[test]
fn cached_names_listings_data_and_status_answer_within_a_second_during_an_outage() {
    let server = Server::running();
    let prefix = server.unique_prefix("outage-cached");
    let proxy = FaultProxy::start(server.endpoint(), FaultMix::none(), 14);
    let m = mount_through(&server, &proxy, &prefix, &[]);
    fs::create_dir(m.path("dir")).unwrap();
    let data = random_bytes(300_000);
    for i in 0..20 {
        fs::write(m.path(&format!("dir/f{i}")), &data).unwrap();
    }
    assert_eq!(fs::read_dir(m.path("dir")).unwrap().count(), 20);
    assert!(fs::read(m.path("dir/f3")).unwrap() == data);

    proxy.set_outage(true);
    std::thread::sleep(Duration::from_secs(2)); // every TTL has run out: each use refreshes

    let timed = |what: &str, f: &dyn Fn()| {
        let started = Instant::now();
        f();
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "{what} took {took:?}");
    };
    timed("stat of a cached name", &|| {
        assert_eq!(
            fs::metadata(m.path("dir/f3")).unwrap().len(),
            data.len() as u64
        );
    });
    timed("ls of a cached directory", &|| {
        let (ok, out) = run(Command::new("ls").arg(m.path("dir")));
        assert!(ok, "{out}");
        assert_eq!(out.lines().count(), 20);
    });
    timed("bucketfs status", &|| {
        assert!(status(&m).contains("pending"), "status answers");
    });
    timed("a read of cached data", &|| {
        assert!(fs::read(m.path("dir/f3")).unwrap() == data);
    });
    // Nothing is pending: the unmount does not wait for the store either.
    let started = Instant::now();
    m.unmount();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "unmount took {took:?}");
    proxy.set_outage(false);
}
