//! Specifications of the filesystem over a slow or stalling store: what a listing that took
//! longer than the TTLs still answers, and that a name or a listing this mount knew is served
//! within `STALE_GRACE` while the store stalls. The stalls come from
//! `store::failing::FailingStore` (`Failure::stall`) over the in-memory store.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tests::{options, put, write_file};
use super::tests_failures::{failing, mount};
use super::{Fs, ROOT_INO};
use crate::config::FsOptions;
use crate::names::STALE_GRACE;
use crate::store::failing::{FailingStore, Failure, Op};
use crate::store::memory::MemoryStore;
use crate::store::ObjectStore;

const TTL: Duration = Duration::from_millis(200);

/// A mount whose names and listings are trusted for `TTL`, over a failing store over the
/// memory store holding `dir/file-000` .. `dir/file-{n-1}`.
async fn mount_with_files(
    n: usize,
) -> (
    Arc<Fs>,
    Arc<MemoryStore>,
    Arc<FailingStore>,
    tempfile::TempDir,
) {
    let (mem, failing) = failing();
    for i in 0..n {
        put(&mem, &format!("dir/file-{i:03}"), b"x").await;
    }
    let opts = FsOptions {
        metadata_ttl: TTL,
        dir_ttl: TTL,
        negative_ttl: TTL,
        ..options()
    };
    let (fs, staging) = mount(failing.clone(), opts);
    (fs, mem, failing, staging)
}

async fn list(fs: &Arc<Fs>, dir: u64) -> Vec<String> {
    let fh = fs.opendir(dir).await.unwrap();
    let entries = fs.readdir(fh, 0).await.unwrap();
    fs.releasedir(fh).unwrap();
    entries.iter().skip(2).map(|e| e.name.to_string()).collect()
}

/// Listing requests so far: each lookup that asks the store lists under `name/`.
fn listings(mem: &MemoryStore) -> u64 {
    mem.stats().count("ListObjectsV2")
}

#[tokio::test]
async fn a_listing_slower_than_the_ttl_still_answers_the_lookups_of_its_entries_and_its_path() {
    let (fs, mem, failing, _staging) = mount_with_files(20).await;
    let dir = fs.lookup(ROOT_INO, OsStr::new("dir")).await.unwrap().ino;
    // Each listing request takes longer than the TTL (a big directory, a slow network).
    failing.fail(Failure::on(Op::ListObjectsV2).stall(TTL + TTL / 2));
    assert_eq!(list(&fs, dir).await.len(), 20);
    failing.heal();
    let before = listings(&mem);
    // `ls -l` now looks up the path and each entry it was just given.
    fs.lookup(ROOT_INO, OsStr::new("dir")).await.unwrap();
    for i in 0..20 {
        fs.lookup(dir, OsStr::new(&format!("file-{i:03}")))
            .await
            .unwrap();
    }
    assert_eq!(
        listings(&mem) - before,
        0,
        "what the listing said counts from when it completed, for its entries and its directory"
    );
}

#[tokio::test]
async fn a_cached_name_is_answered_within_the_grace_while_the_store_stalls() {
    let (fs, _mem, failing, _staging) = mount_with_files(1).await;
    let dir = fs.lookup(ROOT_INO, OsStr::new("dir")).await.unwrap().ino;
    let file = fs.lookup(dir, OsStr::new("file-000")).await.unwrap();
    tokio::time::sleep(TTL * 2).await; // no longer fresh: the next use asks the store
    failing
        .fail(Failure::on_any(&[Op::HeadObject, Op::ListObjectsV2]).stall(Duration::from_secs(30)));
    let started = Instant::now();
    let again = fs.getattr(file.ino).await.unwrap();
    assert!(
        started.elapsed() < STALE_GRACE + Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((again.ino, again.size), (file.ino, file.size));
    // Having met a slow store, the next uses of known names do not wait for it again.
    let started = Instant::now();
    assert_eq!(
        fs.lookup(dir, OsStr::new("file-000")).await.unwrap().ino,
        file.ino
    );
    assert_eq!(
        fs.lookup(ROOT_INO, OsStr::new("dir")).await.unwrap().ino,
        dir
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_directory_listed_before_is_served_from_its_last_listing_while_the_store_stalls() {
    let (fs, mem, failing, _staging) = mount_with_files(5).await;
    let dir = fs.lookup(ROOT_INO, OsStr::new("dir")).await.unwrap().ino;
    let first = list(&fs, dir).await;
    tokio::time::sleep(TTL * 2).await;
    failing.fail(Failure::on(Op::ListObjectsV2).stall(Duration::from_millis(2500)));
    let started = Instant::now();
    assert_eq!(list(&fs, dir).await, first);
    assert!(
        started.elapsed() < STALE_GRACE + Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // A second readdir while the slow listing goes on does not wait at all, nor list again.
    let started = Instant::now();
    assert_eq!(list(&fs, dir).await, first);
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        failing.injected(Op::ListObjectsV2),
        1,
        "one listing in flight"
    );
    // The slow listing lands when it ends: a file added meanwhile shows up without a new one.
    put(&mem, "dir/late", b"y").await;
    failing.heal();
    let lists = listings(&mem);
    while listings(&mem) == lists {
        tokio::time::sleep(Duration::from_millis(5)).await; // the stalled request arrives
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let names = list(&fs, dir).await;
    assert!(names.contains(&"late".to_string()), "{names:?}");
    assert_eq!(listings(&mem), lists + 1, "the landed listing is used");
}

#[tokio::test]
async fn a_name_never_seen_waits_for_the_store() {
    let (fs, _mem, failing, _staging) = mount_with_files(1).await;
    failing.fail(Failure::on_any(&[Op::HeadObject, Op::ListObjectsV2]).stall(STALE_GRACE * 2));
    let started = Instant::now();
    fs.lookup(ROOT_INO, OsStr::new("dir")).await.unwrap();
    assert!(
        started.elapsed() >= STALE_GRACE * 2,
        "nothing to serve meanwhile: it waits"
    );
}

// Multi-threaded: the listing runs beside the lookups, as in the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_looked_up_name_by_name_is_listed_once_and_the_rest_cost_no_request() {
    // rsync run again over a tree it sent: every name is looked up, one after the other.
    let (fs, mem, _failing, _staging) = mount_with_files(40).await;
    let dir = fs.lookup(ROOT_INO, OsStr::new("dir")).await.unwrap().ino;
    let before = listings(&mem);
    for i in 0..40 {
        let name = format!("file-{i:03}");
        fs.lookup(dir, OsStr::new(&name)).await.unwrap();
        // A tool's pace: each lookup is a FUSE round trip and some work of its own.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let lists = listings(&mem) - before;
    assert!(
        lists <= 20,
        "{lists} listings: the directory was listed ahead instead of one per name"
    );
}

#[tokio::test]
async fn one_stalled_upload_does_not_hold_up_the_files_closed_after_it() {
    // rsync of many small files: a PUT that meets a stall (2-5 s on a bad network) must
    // delay only its own file; the files closed after it are stored meanwhile.
    let (mem, failing) = failing();
    let opts = FsOptions {
        write_back_delay: Duration::from_millis(20),
        ..options()
    };
    let (fs, _staging) = mount(failing.clone(), opts);
    failing.fail(
        Failure::on(Op::PutObject)
            .key(|k| k == "slow")
            .stall(Duration::from_secs(60)),
    );
    tokio::spawn(fs.clone().write_back());
    write_file(&fs, ROOT_INO, "slow", b"s").await;
    while failing.injected(Op::PutObject) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await; // its PUT is in flight, stalled
    }
    for i in 0..20 {
        write_file(&fs, ROOT_INO, &format!("f{i}"), b"x").await;
    }
    let started = Instant::now();
    while (0..20).any(|i| mem.bytes(&format!("f{i}")).is_none()) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "files closed after a stalled upload waited for it: {:?} stored",
            mem.keys()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        mem.bytes("slow").is_none(),
        "the stalled PUT has not landed"
    );
}
