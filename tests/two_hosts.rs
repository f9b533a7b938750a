//! Two mounts of one prefix with separate cache directories stand for two hosts. When one
//! host deletes the object another host is appending to, the appended bytes cannot become a
//! whole file: they are kept in the writer's cache directory, `bucketfs status` lists them
//! (also after a remount), `bucketfs unmount` exits 1 naming the file, and nothing is retried
//! forever.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn bytes_appended_to_an_object_another_host_deleted_are_kept_reported_and_not_retried() {
    let server = Server::running();
    let prefix = server.unique_prefix("two-hosts-append");
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let b_cache = tempfile::tempdir().unwrap();
    let b_cache_arg = b_cache.path().display().to_string();
    let b_args = [
        "--cache-dir",
        &b_cache_arg,
        "--write-back-delay",
        "0.5",
        "--retry-interval",
        "0.2",
    ];
    let a = Mount::new(&server, &source, &[]);
    fs::write(a.path("log.txt"), b"first line\n").unwrap();
    let b = Mount::new(&server, &source, &b_args);

    let mut f = OpenOptions::new()
        .append(true)
        .open(b.path("log.txt"))
        .unwrap();
    f.write_all(b"from B, 1\n").unwrap();
    fs::remove_file(a.path("log.txt")).unwrap(); // host A deletes it meanwhile
    f.write_all(b"from B, 2\n").unwrap();
    drop(f); // close returns 0: the upload follows the write-back delay

    let key = format!("{prefix}/log.txt");
    assert!(
        eventually(Duration::from_secs(10), || status(&b)
            .contains("NOT STORED")),
        "status names it: {}",
        status(&b)
    );
    let report = status(&b);
    assert!(report.contains(&key), "{report}");
    assert!(report.contains("pending uploads: 0 files"), "{report}");
    std::thread::sleep(Duration::from_secs(2)); // ten retry intervals
    let log = b.log();
    let attempts = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(
        (attempts("not stored:"), attempts("upload failed")),
        (1, 0),
        "one attempt, not retried: {log}"
    );
    assert_eq!(server.get(&key), None, "no partial object");

    let out = Command::new(&*BIN)
        .args(["unmount", &b.dir.display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&key), "names the file: {stderr}");

    // The bytes written on B are in its cache directory, and a later mount still says so.
    let b = Mount::new(&server, &source, &b_args);
    let report = status(&b);
    assert!(
        report.contains("NOT STORED") && report.contains(&key),
        "{report}"
    );
    let data_path = report
        .lines()
        .find(|l| l.contains(&key))
        .and_then(|l| l.split(" in ").nth(1))
        .and_then(|rest| rest.split("  (").next())
        .unwrap_or_else(|| panic!("a path in: {report}"));
    let data = fs::read(data_path.trim()).unwrap();
    assert_eq!(&data[11..], b"from B, 1\nfrom B, 2\n");
    assert!(
        !b.path("log.txt").exists(),
        "the name shows what the bucket holds"
    );
    drop(a);
}
