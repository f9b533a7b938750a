//! Two mounts of one prefix with separate cache directories stand for two hosts writing one
//! bucket. A write based on an object another host has replaced since never silently
//! replaces it: both versions are kept (the other host's under the name, this one's under
//! `NAME.conflict-HOST-TIME`), the writer's fsync fails, and `bucketfs status` reports it.
//! On moto the server refuses the conditional write; Garage 2.5 ignores conditions, so
//! bucketfs checks with a HEAD just before the upload (found out by a probe at mount).

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};

use common::*;

/// Host B edits a file host A replaced meanwhile: the bucket keeps both versions.
fn a_lost_update_keeps_both_versions_on(server: &Server, test: &str) {
    let prefix = server.unique_prefix(test);
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let a = Mount::new(server, &source, &[]);
    fs::write(a.path("doc.txt"), b"version 0\n").unwrap();
    let b = Mount::new(server, &source, &[]);

    let mut on_b = OpenOptions::new()
        .write(true)
        .open(b.path("doc.txt"))
        .unwrap();
    fs::write(a.path("doc.txt"), b"version A\n").unwrap(); // stored at close on A
    on_b.seek(SeekFrom::Start(0)).unwrap();
    on_b.write_all(b"version B\n").unwrap();
    let synced = on_b.sync_all();
    assert!(synced.is_err(), "B's fsync reports the conflict");
    drop(on_b);

    let key = format!("{prefix}/doc.txt");
    assert_eq!(
        server.get(&key).as_deref(),
        Some(&b"version A\n"[..]),
        "A's version stays under the name"
    );
    let copies: Vec<String> = server
        .keys(&format!("{prefix}/"))
        .into_iter()
        .filter(|k| k.starts_with(&format!("{key}.conflict-")))
        .collect();
    assert_eq!(
        copies.len(),
        1,
        "B's version is kept next to it: {copies:?}"
    );
    assert_eq!(server.get(&copies[0]).as_deref(), Some(&b"version B\n"[..]));
    let report = status(&b);
    assert!(report.contains("conflicts"), "{report}");
    assert!(report.contains(&copies[0]), "{report}");
    assert_eq!(
        fs::read(b.path("doc.txt")).unwrap(),
        b"version A\n",
        "B now shows A's version under the name"
    );
}

#[test]
fn a_lost_update_keeps_both_versions_on_a_server_that_honours_conditions() {
    a_lost_update_keeps_both_versions_on(&Server::moto(), "conflict-moto");
}

#[test]
fn a_lost_update_keeps_both_versions_on_a_server_that_ignores_conditions() {
    a_lost_update_keeps_both_versions_on(&Server::running(), "conflict-garage");
}

#[test]
fn with_the_overwrite_policy_the_last_writer_wins() {
    let server = Server::running();
    let prefix = server.unique_prefix("conflict-overwrite");
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let a = Mount::new(&server, &source, &[]);
    fs::write(a.path("doc.txt"), b"version 0\n").unwrap();
    let b = Mount::new(&server, &source, &["--conflict", "overwrite"]);
    let mut on_b = OpenOptions::new()
        .write(true)
        .open(b.path("doc.txt"))
        .unwrap();
    fs::write(a.path("doc.txt"), b"version A\n").unwrap();
    on_b.write_all(b"version B\n").unwrap();
    on_b.sync_all().unwrap();
    drop(on_b);
    let key = format!("{prefix}/doc.txt");
    assert_eq!(server.get(&key).as_deref(), Some(&b"version B\n"[..]));
    assert_eq!(server.keys(&format!("{prefix}/")), [key]);
}

#[test]
fn of_two_hosts_creating_one_name_exclusively_at_once_exactly_one_wins() {
    let server = Server::moto(); // the server decides (Garage would need its HEAD race)
    let prefix = server.unique_prefix("conflict-excl");
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let a = Mount::new(&server, &source, &["--exclusive-in-bucket"]);
    let b = Mount::new(&server, &source, &["--exclusive-in-bucket"]);
    for round in 0..50 {
        let name = format!("lock-{round}");
        let (pa, pb) = (a.path(&name), b.path(&name));
        let start = std::sync::Arc::new(std::sync::Barrier::new(2));
        let create = |path: std::path::PathBuf, start: std::sync::Arc<std::sync::Barrier>| {
            std::thread::spawn(move || {
                start.wait();
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map(drop)
            })
        };
        let ta = create(pa, start.clone());
        let tb = create(pb, start);
        let results = [ta.join().unwrap(), tb.join().unwrap()];
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "round {round}");
            }
        }
    }
}
