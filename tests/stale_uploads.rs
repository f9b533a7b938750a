//! A daemon killed in the middle of a multipart upload leaves the upload behind; the next mount
//! with the same cache directory aborts it, and never touches other tools' uploads.

mod common;
#[path = "common/stall.rs"]
mod stall;

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use stall::StallingProxy;

#[test]
fn uploads_left_by_a_killed_daemon_are_aborted_at_the_next_mount_and_others_are_kept() {
    let server = Server::running();
    let prefix = server.unique_prefix("stale");
    let foreign = server.start_multipart(&format!("{prefix}/foreign"));
    // Hold back the answers to UploadPart: the upload stays in progress until the daemon dies.
    let proxy = StallingProxy::start(server.endpoint(), |line| {
        line.starts_with("PUT /") && line.contains("partNumber=")
    });
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().display().to_string();
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let m = Mount::new(
        &server,
        &source,
        &[
            "--endpoint",
            &endpoint,
            "--part-size",
            "5MiB",
            "--cache-dir",
            &cache_arg,
        ],
    );
    let path = m.path("big");
    let writer = std::thread::spawn(move || std::fs::write(path, random_bytes(12 << 20)));
    assert!(
        eventually(Duration::from_secs(60), || proxy
            .stalled_once
            .load(Ordering::SeqCst)),
        "the upload is sending parts"
    );
    let ours: Vec<String> = server
        .multipart_uploads(&format!("{prefix}/"))
        .into_iter()
        .filter(|(key, _)| key.ends_with("/big"))
        .map(|(_, id)| id)
        .collect();
    assert_eq!(ours.len(), 1, "bucketfs's upload is in progress");

    let pid = daemon_pid(&m.dir).expect("daemon running");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let _ = Command::new("umount").arg("-l").arg(&m.dir).status();
    let _ = writer.join();
    drop(m);

    let m = Mount::new(
        &server,
        &source,
        &["--cache-dir", &cache_arg, "--stale-upload-age", "0"],
    );
    let left: Vec<String> = server
        .multipart_uploads(&format!("{prefix}/"))
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert!(
        !left.contains(&ours[0]),
        "the killed daemon's upload is aborted"
    );
    assert!(left.contains(&foreign), "another tool's upload is kept");
    assert_eq!(
        server.get(&format!("{prefix}/big")),
        None,
        "no partial object"
    );
    drop(m);
}
