//! A walk larger than `--name-cache-entries` on a real mount: the kernel keeps every name a
//! tool looked up until its own memory runs short, so the daemon asks it to drop the names
//! past the bound (`FUSE_NOTIFY_INVAL_ENTRY`), their forgets come, and the inode table
//! shrinks back to the bound (`bucketfs status --json`, `name_cache.entries`) — a walk of
//! ten million keys runs in bounded memory. The tree is still whole afterwards.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// The names the daemon of `m` holds now.
fn names_held(m: &Mount) -> u64 {
    let out = Command::new(&*BIN)
        .args(["status", "--json"])
        .arg(&m.dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name_cache"]["limit"], 300, "{v}");
    v["name_cache"]["entries"].as_u64().unwrap()
}

fn find_count(m: &Mount) -> usize {
    let out = Command::new("find").arg(&m.dir).output().unwrap();
    assert!(out.status.success());
    out.stdout.iter().filter(|b| **b == b'\n').count()
}

#[test]
fn a_walk_past_the_name_cache_shrinks_back_to_its_bound() {
    let server = Server::running();
    let prefix = server.unique_prefix("boundedwalk");
    let keys: Vec<String> = (0..3000)
        .map(|i| format!("{prefix}/d{:02}/f{i:04}", i / 100))
        .collect();
    server.put_many(&keys, b"0123456789abcdef");
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--name-cache-entries", "300"],
    );
    assert_eq!(find_count(&m), 1 + 30 + 3000);
    assert!(
        names_held(&m) > 3000,
        "the kernel holds every name it was given"
    );
    // Past the grace of the names just used, the kernel is asked to drop them.
    assert!(
        eventually(Duration::from_secs(20), || names_held(&m) <= 300),
        "the table stays at {} names",
        names_held(&m)
    );
    // Dropped names are found again.
    assert_eq!(find_count(&m), 1 + 30 + 3000);
    let meta = std::fs::metadata(m.path("d07/f0712")).unwrap();
    assert_eq!(meta.len(), 16);
    m.unmount();
}
