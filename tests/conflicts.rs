//! Two mounts of one prefix with separate cache directories stand for two hosts writing one
//! bucket. A write based on an object another host has replaced since never silently
//! replaces it: both versions are kept (the other host's under the name, this one's under
//! `NAME.conflict-HOST-TIME`), the writer's fsync fails, and `bucketfs status` reports it.
//! On moto the server refuses the conditional write; Garage 2.5 ignores conditions, so
//! bucketfs checks with a HEAD just before the upload (found out by a probe at mount).

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use proxy::{Action, Proxy};

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

/// B's reservation of a name is refused because A holds it, after B's first attempt failed
/// as if its answer were lost: the empty object A stored is the same bytes B sent, and B took
/// it for its own and reported success too — two hosts holding one lock.
#[test]
fn an_exclusive_create_retried_after_a_lost_answer_still_loses_to_another_hosts() {
    let server = Server::moto();
    let prefix = server.unique_prefix("conflict-claim");
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let a = Mount::new(&server, &source, &["--exclusive-in-bucket"]);
    let failed_once = AtomicBool::new(false);
    let proxy = Proxy::start(server.endpoint(), move |r| {
        let first = r.is_put_object()
            && r.target.ends_with("/lock")
            && !failed_once.swap(true, Ordering::SeqCst);
        match first {
            true => Action::internal_error(),
            false => Action::Forward,
        }
    });
    let b = Mount::new(
        &server,
        &source,
        &["--exclusive-in-bucket", "--endpoint", &proxy.endpoint()],
    );
    assert!(!b.path("lock").exists(), "B has seen the name free");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(a.path("lock"))
        .expect("A reserves the name");
    let on_b = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(b.path("lock"));
    assert_eq!(
        on_b.map(drop).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::AlreadyExists)
    );
    assert_eq!(
        proxy.count(|r| r.is_put_object() && r.target.ends_with("/lock")),
        2,
        "B's first attempt failed and its retry was refused"
    );
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

/// Host A renames a file host B replaced after A saw it: B's version is never deleted. A
/// moves it when it learns of it before the rename (its lookup of the new name lists the
/// directory), else it stays under the old name (the DELETE is conditional on what A saw).
fn a_rename_keeps_a_source_another_host_replaced_on(server: &Server, test: &str) {
    let prefix = server.unique_prefix(test);
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    // A trusts what it saw for a minute: its rename does not HEAD the source first.
    let a = Mount::new(server, &source, &["--metadata-ttl", "60"]);
    fs::write(a.path("doc.txt"), b"version 0\n").unwrap();
    let b = Mount::new(server, &source, &[]);
    fs::write(b.path("doc.txt"), b"version B\n").unwrap(); // stored at close on B
    fs::rename(a.path("doc.txt"), a.path("moved.txt")).unwrap();
    let (old, new) = (
        server.get(&format!("{prefix}/doc.txt")),
        server.get(&format!("{prefix}/moved.txt")),
    );
    let b_version = Some(b"version B\n".to_vec());
    assert!(
        old == b_version || new == b_version,
        "B's version survives: under the old name {old:?}, the new {new:?}"
    );
    assert!(new.is_some(), "the rename happened");
}

#[test]
fn a_rename_keeps_a_source_another_host_replaced_on_a_server_that_honours_conditions() {
    a_rename_keeps_a_source_another_host_replaced_on(&Server::moto(), "conflict-mv-moto");
}

#[test]
fn a_rename_keeps_a_source_another_host_replaced_on_a_server_that_ignores_conditions() {
    a_rename_keeps_a_source_another_host_replaced_on(&Server::running(), "conflict-mv-garage");
}

/// Host A renames a directory of many files; host B rewrites the first one as soon as its
/// copy is under the new name (before the sources are deleted): B's version survives.
fn a_directory_rename_keeps_a_file_another_host_rewrote_during_it_on(server: &Server, test: &str) {
    let prefix = server.unique_prefix(test);
    let keys: Vec<String> = (0..200).map(|i| format!("{prefix}/dir/f{i:03}")).collect();
    server.put_many(&keys, b"listed\n");
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let a = Mount::new(server, &source, &[]);
    let (from, to) = (a.path("dir"), a.path("moved"));
    assert!(from.is_dir());
    let renamed = std::thread::spawn(move || fs::rename(from, to));
    let (first, first_copy) = (keys[0].clone(), format!("{prefix}/moved/f000"));
    assert!(
        eventually(std::time::Duration::from_secs(30), || server
            .head(&first_copy)
            .is_some()),
        "the first copy appears"
    );
    server.put(&first, b"version B\n"); // another host, during the rename
    renamed.join().unwrap().unwrap();
    assert_eq!(
        server.get(&first).as_deref(),
        Some(&b"version B\n"[..]),
        "B's version survives under the old name"
    );
    assert_eq!(server.get(&first_copy).as_deref(), Some(&b"listed\n"[..]));
    let moved = server.keys(&format!("{prefix}/moved/"));
    assert_eq!(moved.len(), 200, "every file moved");
    assert_eq!(server.keys(&format!("{prefix}/dir/")), [first]);
}

#[test]
fn a_directory_rename_keeps_a_file_another_host_rewrote_during_it_on_a_server_that_honours_conditions(
) {
    a_directory_rename_keeps_a_file_another_host_rewrote_during_it_on(
        &Server::moto(),
        "conflict-mvdir-moto",
    );
}

#[test]
fn a_directory_rename_keeps_a_file_another_host_rewrote_during_it_on_a_server_that_ignores_conditions(
) {
    a_directory_rename_keeps_a_file_another_host_rewrote_during_it_on(
        &Server::running(),
        "conflict-mvdir-garage",
    );
}

#[test]
fn a_new_big_file_whose_name_another_host_took_while_it_streamed_keeps_both() {
    let server = Server::moto(); // refuses the completion itself (If-None-Match: *)
    let prefix = server.unique_prefix("conflict-stream");
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let a = Mount::new(&server, &source, &["--part-size", "5MiB"]);
    let b = Mount::new(&server, &source, &[]);
    let big = random_bytes(12 << 20); // over two parts: streamed while written
    let mut on_a = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(a.path("big.bin"))
        .unwrap();
    on_a.write_all(&big).unwrap();
    assert!(
        eventually(std::time::Duration::from_secs(30), || !server
            .multipart_uploads(&format!("{prefix}/"))
            .is_empty()),
        "A streams its parts"
    );
    fs::write(b.path("big.bin"), b"version B\n").unwrap(); // stored at close on B
    let synced = on_a.sync_all();
    assert!(synced.is_err(), "A's fsync reports the conflict");
    drop(on_a);
    let key = format!("{prefix}/big.bin");
    assert_eq!(
        server.get(&key).as_deref(),
        Some(&b"version B\n"[..]),
        "B's version stays under the name"
    );
    let copies: Vec<String> = server
        .keys(&format!("{prefix}/"))
        .into_iter()
        .filter(|k| k.starts_with(&format!("{key}.conflict-")))
        .collect();
    assert_eq!(copies.len(), 1, "A's is kept next to it: {copies:?}");
    assert_eq!(
        server.sha256_streamed(&copies[0], big.len() as u64, 4 << 20),
        sha256(&big)
    );
    let counts = request_counts(&a.log_after_unmount());
    assert!(
        counts.get("UploadPart").copied().unwrap_or(0) >= 2,
        "streamed in parts: {counts:?}"
    );
}
