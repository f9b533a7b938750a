//! Uploads under failure and at scale: a part that fails once is retried alone, an upload that
//! keeps failing is aborted (no object, no multipart upload left) and reported as `EIO`, and
//! a 1 GiB file streams through the daemon in bounded memory. Failures are injected by an
//! HTTP-aware proxy between bucketfs and the S3 server; results are checked in the bucket.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use common::*;
use proxy::{Action, Proxy};
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

#[test]
fn a_part_that_fails_once_is_retried_and_the_object_is_correct() {
    let server = Server::running();
    let prefix = server.unique_prefix("part-fails-once");
    let failed = AtomicBool::new(false);
    let proxy = Proxy::start(server.endpoint(), move |req| {
        if req.is_upload_part() && !failed.swap(true, Ordering::SeqCst) {
            Action::internal_error()
        } else {
            Action::Forward
        }
    });
    let endpoint = proxy.endpoint();
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--endpoint", &endpoint, "--part-size", "5MiB"],
    );

    let data = random_bytes(12 * MIB);
    fs::write(m.path("big"), &data).expect("close reports a successful upload");

    let key = format!("{prefix}/big");
    let stored = server.get(&key).expect("the object is in the bucket");
    assert_eq!(stored.len(), data.len());
    assert_eq!(sha256(&stored), sha256(&data));
    assert_eq!(
        server.keys(&prefix),
        vec![key.clone()],
        "nothing else written"
    );
    let injected = proxy.count(|r| r.rejected);
    let parts = proxy.count(|r| r.is_upload_part());
    assert_eq!(injected, 1, "{:#?}", proxy.requests());
    assert!(parts > 1, "a multipart upload: {parts} UploadPart requests");
    assert_eq!(
        proxy.count(|r| r.is_abort_multipart()),
        0,
        "one failed part does not abort the upload"
    );
    assert!(server.multipart_uploads(&prefix).is_empty());
    // 12 MiB in 5 MiB parts: three parts, one of them sent twice — plus the hedged attempts
    // of parts that ran slow on a loaded machine, which the daemon counts.
    let hedged = request_counts(&m.log_after_unmount())["hedged"];
    assert!(
        (4..=4 + hedged).contains(&(parts as u64)),
        "{parts} parts, {hedged} hedged requests: {:#?}",
        proxy.requests()
    );
}

#[test]
fn an_upload_that_keeps_failing_leaves_no_object_and_fsync_returns_eio() {
    let server = Server::running();
    let prefix = server.unique_prefix("upload-keeps-failing");
    let proxy = Proxy::start(server.endpoint(), |req| {
        if req.is_upload_part() || (req.is_put_object() && req.target.contains("/big")) {
            Action::internal_error()
        } else {
            Action::Forward
        }
    });
    let endpoint = proxy.endpoint();
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &[
            "--endpoint",
            &endpoint,
            "--max-retries",
            "1",
            "--part-size",
            "5MiB",
        ],
    );
    let key = format!("{prefix}/big");

    let mut f = fs::File::create(m.path("big")).unwrap();
    f.write_all(&random_bytes(12 * MIB)).unwrap();
    let started = Instant::now();
    let err = f
        .sync_all()
        .expect_err("fsync must report the failed upload");
    eprintln!("fsync failed after {:?}: {err}", started.elapsed());
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err:?}");
    assert!(server.head_full(&key).is_none(), "no object after fsync");
    assert_eq!(
        server.multipart_uploads(&prefix),
        Vec::<(String, String)>::new(),
        "the failed multipart upload was aborted"
    );
    assert!(proxy.count(|r| r.is_abort_multipart()) >= 1);
    drop(f); // close uploads again and fails again: its error is not ours to check here

    // `bucketfs status` shows the file as pending and the failure with its key.
    let out = std::process::Command::new(&*BIN)
        .args(["status", &m.dir.display().to_string()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("pending uploads: 1 files"), "{report}");
    assert!(!report.contains("recent upload failures: 0"), "{report}");
    assert!(report.contains(&key), "the failure names the key: {report}");

    // At unmount the daemon tries the pending file once more, fails, and exits.
    let log = m.log_after_unmount();
    let requests = proxy.requests();
    assert!(server.head_full(&key).is_none(), "no object after unmount");
    assert!(
        server.keys(&prefix).is_empty(),
        "nothing at all under the prefix: {:?}",
        server.keys(&prefix)
    );
    assert_eq!(
        server.multipart_uploads(&prefix),
        Vec::<(String, String)>::new(),
        "no multipart upload left behind"
    );
    let created = requests.iter().filter(|r| r.is_create_multipart()).count();
    let aborted = requests.iter().filter(|r| r.is_abort_multipart()).count();
    let parts = requests.iter().filter(|r| r.is_upload_part()).count();
    eprintln!("{created} uploads created, {aborted} aborted, {parts} parts rejected");
    assert!(created >= 1);
    assert!(
        aborted >= created,
        "every upload started was aborted: {created} created, {aborted} aborted"
    );
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.is_complete_multipart())
            .count(),
        0,
        "never completed"
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.is_upload_part())
            .all(|r| r.rejected),
        "every part was rejected"
    );
    assert!(
        log.contains("could not be stored") && log.contains(&format!("{prefix}/big")),
        "the daemon names the failure at exit:\n{log}"
    );
}

/// A `/proc/<pid>/status` field in bytes (`VmHWM`, `VmRSS`).
fn proc_status_bytes(pid: i32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_one_gib_write_streams_with_bounded_memory() {
    const SIZE: usize = 1 << 30;
    const CHUNK: usize = 8 * MIB;
    let server = Server::running();
    let prefix = server.unique_prefix("one-gib");
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &[],
    );
    let pid = daemon_pid(&m.dir).expect("daemon running");
    let key = format!("{prefix}/big");

    let started = Instant::now();
    let mut hash = Sha256::new();
    let mut f = fs::File::create(m.path("big")).unwrap();
    let mut chunk = vec![0u8; CHUNK];
    let mut rng = rand::thread_rng();
    for _ in 0..SIZE / CHUNK {
        rand::Rng::fill(&mut rng, &mut chunk[..]);
        hash.update(&chunk);
        f.write_all(&chunk).unwrap();
    }
    let written = started.elapsed();
    drop(f); // close: the upload
    let uploaded = started.elapsed();
    let want = format!("{:x}", hash.finalize());
    drop(chunk);

    let peak = proc_status_bytes(pid, "VmHWM");
    eprintln!(
        "1 GiB: written in {written:?}, closed (uploaded) at {uploaded:?}; \
         daemon peak RSS (VmHWM) {:.1} MiB",
        peak as f64 / MIB as f64
    );

    let (_, size) = server.head(&key).expect("the object is in the bucket");
    assert_eq!(size, SIZE as u64);
    let t = Instant::now();
    let got = server.sha256_streamed(&key, size, 16 * MIB as u64);
    eprintln!("verified in {:?}", t.elapsed());
    assert_eq!(got, want, "the object's bytes");

    m.unmount();
    server.delete(&key);
    assert!(
        peak < 256 * MIB as u64,
        "the daemon's peak RSS while writing 1 GiB was {} MiB",
        peak / MIB as u64
    );
}

#[test]
fn a_failed_upload_after_close_is_retried_in_the_background_until_stored() {
    let server = Server::running();
    let prefix = server.unique_prefix("retry-later");
    let key = format!("{prefix}/note.txt");
    let outage = std::sync::Arc::new(AtomicBool::new(true));
    let down = outage.clone();
    let proxy = Proxy::start(server.endpoint(), move |req| {
        if down.load(Ordering::SeqCst) && req.is_put_object() && req.target.contains("/note.txt") {
            Action::internal_error()
        } else {
            Action::Forward
        }
    });
    let endpoint = proxy.endpoint();
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &[
            "--endpoint",
            &endpoint,
            "--max-retries",
            "1",
            "--retry-interval",
            "0.5",
        ],
    );
    let mut f = fs::File::create(m.path("note.txt")).unwrap();
    f.write_all(b"keep me").unwrap();
    let err = f.sync_all().expect_err("the server is down for this key");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    // With --write-back-delay 0 (the harness's setting) close uploads and returns the error.
    let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
    // SAFETY: fd is an open descriptor we own; it is closed once, here.
    let rc = unsafe { libc::close(fd) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!(
        (rc, errno),
        (-1, Some(libc::EIO)),
        "close reports the failed upload"
    );
    assert!(server.get(&key).is_none());

    outage.store(false, Ordering::SeqCst);
    assert!(
        eventually(std::time::Duration::from_secs(15), || {
            server.get(&key).as_deref() == Some(&b"keep me"[..])
        }),
        "the closed file is stored once the server is back, without any new close"
    );
    let out = std::process::Command::new(&*BIN)
        .args(["status", &m.dir.display().to_string()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("pending uploads: 0 files"), "{report}");
    m.unmount();
}
