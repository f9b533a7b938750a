//! Modifying existing objects through the mount: append, overwrite in the middle and truncate
//! change exactly the bytes they should, and unchanged ranges are copied server-side, not sent.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Seek, SeekFrom, Write};

use common::*;

const MIB: usize = 1 << 20;

/// `bytes_sent` and request counts from the daemon's exit summary.
fn summary(log: &str) -> BTreeMap<String, u64> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("store requests"))
        .unwrap_or_else(|| panic!("no request summary in the log:\n{log}"));
    line.split_whitespace()
        .filter_map(|p| p.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim_matches('"').parse().ok()?)))
        .collect()
}

#[test]
fn appending_1_mib_to_a_64_mib_object_sends_about_1_mib() {
    let server = Server::running();
    let prefix = server.unique_prefix("append");
    let key = format!("{prefix}/big");
    let mut expected = random_bytes(64 * MIB);
    server.put(&key, &expected);
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &[],
    );
    let extra = random_bytes(MIB);
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.path("big"))
        .unwrap();
    f.write_all(&extra).unwrap();
    drop(f);
    expected.extend_from_slice(&extra);
    let counts = summary(&m.log_after_unmount());
    let sent = counts["bytes_sent"];
    assert!(
        sent < 2 * MIB as u64,
        "sent {sent} bytes for a 1 MiB append: {counts:?}"
    );
    assert!(
        counts.get("UploadPartCopy").copied().unwrap_or(0) >= 1,
        "{counts:?}"
    );
    assert_eq!(sha256(&server.get(&key).unwrap()), sha256(&expected));
}

#[test]
fn overwriting_the_middle_of_a_large_object_keeps_the_rest() {
    let server = Server::running();
    let prefix = server.unique_prefix("middle");
    let key = format!("{prefix}/f");
    let mut expected = random_bytes(20 * MIB);
    server.put(&key, &expected);
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &[],
    );
    let patch = random_bytes(MIB + 17);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("f"))
        .unwrap();
    f.seek(SeekFrom::Start(9 * MIB as u64 + 5)).unwrap();
    f.write_all(&patch).unwrap();
    drop(f);
    let at = 9 * MIB + 5;
    expected[at..at + patch.len()].copy_from_slice(&patch);
    assert_eq!(sha256(&server.get(&key).unwrap()), sha256(&expected));
    assert_eq!(sha256(&fs::read(m.path("f")).unwrap()), sha256(&expected));
}

#[test]
fn truncate_shrinks_and_grows_with_zeros() {
    let server = Server::running();
    let prefix = server.unique_prefix("truncate");
    let key = format!("{prefix}/f");
    let original = random_bytes(12 * MIB);
    server.put(&key, &original);
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &[],
    );
    let f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("f"))
        .unwrap();
    f.set_len(6 * MIB as u64).unwrap();
    f.set_len(7 * MIB as u64).unwrap();
    drop(f);
    let mut expected = original[..6 * MIB].to_vec();
    expected.resize(7 * MIB, 0);
    assert_eq!(sha256(&server.get(&key).unwrap()), sha256(&expected));
    assert_eq!(fs::metadata(m.path("f")).unwrap().len(), 7 * MIB as u64);
}
