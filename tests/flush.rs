//! Durability you can query, on a real mount: `s3.state` says where a file's bytes are
//! (`local` while it waits for the write-back delay, `uploading` while its PUT is in flight,
//! `stored <ETag>` once the object is in the bucket, `failed: <reason>` when its upload
//! failed), and `bucketfs flush MNT [PATH...]` returns once everything pending under the
//! paths is in the bucket — long before the write-back delay — or exits 1 naming each file
//! that is not. Each claim is checked in the bucket right after the command returns.

mod common;
#[path = "common/proxy.rs"]
mod proxy;
#[path = "common/stall.rs"]
mod stall;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use proxy::{Action, Proxy};
use stall::StallingProxy;

/// Long enough that nothing is uploaded by the write-back loop during a test.
const DELAY: &str = "30";

/// The `s3.state` attribute of `path` (getxattr(2)).
fn s3_state(path: &Path) -> String {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new("s3.state").unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the given length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        len >= 0,
        "getxattr s3.state of {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    buf.truncate(len as usize);
    String::from_utf8(buf).unwrap()
}

/// `bucketfs flush` with these arguments.
fn flush(args: &[&Path]) -> Output {
    Command::new(&*BIN)
        .arg("flush")
        .args(args)
        .output()
        .unwrap()
}

/// The object's ETag as the bucket shows it, without quotes.
fn etag_in_bucket(server: &Server, key: &str) -> String {
    let head = server.head_full(key).expect("the object is in the bucket");
    head.e_tag.unwrap().trim_matches('"').to_string()
}

#[test]
fn a_file_goes_local_uploading_stored_and_flush_returns_once_it_is_in_the_bucket() {
    let server = Server::running();
    let prefix = server.unique_prefix("flush-states");
    // The server's answers to the PUT of state.txt are held back until released.
    let proxy = StallingProxy::start(server.endpoint(), |chunk| {
        chunk.starts_with("PUT /") && chunk.contains("/state.txt HTTP/")
    });
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--endpoint", &endpoint, "--write-back-delay", DELAY],
    );
    let key = format!("{prefix}/state.txt");
    let file = m.path("state.txt");
    std::fs::write(&file, b"durable").unwrap();
    let closed = Instant::now();
    assert_eq!(s3_state(&file), "local", "closed, waiting for the delay");

    let flushing = Command::new(&*BIN)
        .args(["flush", &m.dir.display().to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || proxy
            .stalled_once
            .load(Ordering::SeqCst)),
        "the flush uploads at once"
    );
    assert_eq!(s3_state(&file), "uploading", "its PUT is in flight");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s3_state(&file), "uploading", "still");
    let mut flushing = flushing;
    assert!(
        flushing.try_wait().unwrap().is_none(),
        "flush waits while the upload is held back"
    );

    proxy.release.store(true, Ordering::SeqCst);
    let out = flushing.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        server.get(&key).as_deref(),
        Some(&b"durable"[..]),
        "in the bucket when flush returns"
    );
    assert!(
        closed.elapsed() < Duration::from_secs(20),
        "long before the write-back delay"
    );
    let etag = etag_in_bucket(&server, &key);
    assert_eq!(s3_state(&file), format!("stored {etag}"));
    m.unmount();
}

#[test]
fn a_failed_upload_is_failed_and_flush_exits_1_naming_the_file() {
    let server = Server::running();
    let prefix = server.unique_prefix("flush-fails");
    let refusing = Arc::new(AtomicBool::new(true));
    let refuse = refusing.clone();
    let proxy = Proxy::start(server.endpoint(), move |req| {
        if refuse.load(Ordering::SeqCst) && req.is_put_object() && req.target.contains("/bad.txt") {
            Action::Reject {
                status: "403 Forbidden",
                code: "AccessDenied",
            }
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
            "--write-back-delay",
            DELAY,
            "--retry-interval",
            "60",
        ],
    );
    std::fs::write(m.path("good.txt"), b"good").unwrap();
    std::fs::write(m.path("bad.txt"), b"bad").unwrap();

    let out = flush(&[&m.dir]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("flush said: {stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line per file not stored: {stderr}");
    assert!(
        lines[0].contains(&m.path("bad.txt").display().to_string()),
        "{stderr}"
    );
    assert!(server.get(&format!("{prefix}/bad.txt")).is_none());
    assert_eq!(
        server.get(&format!("{prefix}/good.txt")).as_deref(),
        Some(&b"good"[..]),
        "the other file is stored"
    );

    let state = s3_state(&m.path("bad.txt"));
    assert!(state.starts_with("failed: "), "{state}");
    let etag = etag_in_bucket(&server, &format!("{prefix}/good.txt"));
    assert_eq!(s3_state(&m.path("good.txt")), format!("stored {etag}"));

    // The server takes it again: a flush uploads it now (the retry would wait a minute).
    refusing.store(false, Ordering::SeqCst);
    let out = flush(&[&m.dir, &m.path("bad.txt")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        server.get(&format!("{prefix}/bad.txt")).as_deref(),
        Some(&b"bad"[..])
    );
    m.unmount();
}

#[test]
fn flush_of_a_path_stores_what_is_under_it_and_leaves_the_rest_local() {
    let server = Server::running();
    let prefix = server.unique_prefix("flush-path");
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--write-back-delay", DELAY],
    );
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("sub/a.txt"), b"a").unwrap();
    std::fs::write(src.path().join("top.txt"), b"t").unwrap();
    std::fs::create_dir(m.path("photos")).unwrap();
    let rsync = Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", src.path().display()))
        .arg(m.path("photos"))
        .status()
        .unwrap();
    assert!(rsync.success());
    std::fs::create_dir(m.path("other")).unwrap();
    std::fs::write(m.path("other/b.txt"), b"b").unwrap();

    // A PATH relative to the current directory, as any command takes it.
    let out = Command::new(&*BIN)
        .current_dir(&m.dir)
        .args(["flush", &m.dir.display().to_string(), "photos"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (key, data) in [("photos/sub/a.txt", b"a"), ("photos/top.txt", b"t")] {
        let got = server.get(&format!("{prefix}/{key}"));
        assert_eq!(got.as_deref(), Some(&data[..]), "{key}");
    }
    assert!(server.get(&format!("{prefix}/other/b.txt")).is_none());
    assert_eq!(s3_state(&m.path("other/b.txt")), "local");

    let out = flush(&[&m.dir, Path::new("/somewhere/else")]);
    assert_eq!(out.status.code(), Some(2), "a path outside the mount");
    assert!(server.get(&format!("{prefix}/other/b.txt")).is_none());
    m.unmount();
}
