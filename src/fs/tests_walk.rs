//! Specifications of directory read-ahead during tree walks (`walk`), against the in-memory
//! store.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use super::tests::{options, put, setup_with, Setup};
use super::{Fs, FsOptions, ROOT_INO};
use crate::store::ObjectStore;

/// A directory `t` with subdirectories d0..d7, each holding two files.
async fn tree(read_ahead: usize) -> (Setup, u64) {
    let s = setup_with(
        "",
        FsOptions {
            dir_ttl: Duration::from_secs(60),
            metadata_ttl: Duration::from_secs(60),
            dir_read_ahead: read_ahead,
            listing_metadata: true,
            ..options()
        },
    );
    for d in 0..8 {
        for f in 0..2 {
            put(&s.mem, &format!("t/d{d}/f{f}"), b"x").await;
        }
    }
    let t = s.fs.lookup(ROOT_INO, OsStr::new("t")).await.unwrap().ino;
    (s, t)
}

/// Lists `dir` as `ls -l` does: every entry with its attributes.
async fn list(fs: &Arc<Fs>, dir: u64) -> Vec<String> {
    let fh = fs.opendir(dir).await.unwrap();
    let entries = fs.readdir_attrs(fh, 0, 1000).await.unwrap();
    fs.releasedir(fh).unwrap();
    entries
        .into_iter()
        .map(|l| l.entry.name.to_string())
        .collect()
}

async fn subdir(fs: &Arc<Fs>, t: u64, name: &str) -> u64 {
    fs.lookup(t, OsStr::new(name)).await.unwrap().ino
}

fn requests(s: &Setup) -> (u64, u64) {
    let stats = s.mem.stats();
    (stats.count("ListObjectsV2"), stats.count("HeadObject"))
}

/// Waits until the store has seen `want` (LISTs, HEADs), or fails after 5 s.
async fn wait_for(s: &Setup, want: (u64, u64)) {
    for _ in 0..500 {
        if requests(s) >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the store saw {:?}, not {want:?}", requests(s));
}

#[tokio::test]
async fn walking_a_tree_lists_the_next_subdirectories_before_the_walk_reaches_them() {
    let (s, t) = tree(2).await;
    list(&s.fs, t).await;
    for name in ["d0", "d1"] {
        let d = subdir(&s.fs, t, name).await;
        list(&s.fs, d).await;
    }
    // The second subdirectory listed makes it a walk: d2 and d3 are read ahead, each a LIST
    // and a HEAD per file.
    let (lists, heads) = requests(&s);
    wait_for(&s, (lists + 2, heads + 4)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(requests(&s), (lists + 2, heads + 4), "only 2 read ahead");

    // The window slides: listing d2 or d3 asks nothing for itself and reads one more
    // subdirectory ahead (d4, then d5), the one that entered the window.
    let walked = requests(&s);
    for (step, name) in [(1, "d2"), (2, "d3")] {
        let d = subdir(&s.fs, t, name).await;
        assert_eq!(list(&s.fs, d).await, [".", "..", "f0", "f1"]);
        let want = (walked.0 + step, walked.1 + 2 * step);
        wait_for(&s, want).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(requests(&s), want, "after listing {name}");
    }
}

#[tokio::test]
async fn listing_one_subdirectory_reads_nothing_ahead() {
    let (s, t) = tree(4).await;
    list(&s.fs, t).await;
    let d0 = subdir(&s.fs, t, "d0").await;
    list(&s.fs, d0).await;
    list(&s.fs, d0).await;
    let before = requests(&s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(requests(&s), before);
}

#[tokio::test]
async fn a_walk_that_overtakes_its_read_ahead_waits_for_it_and_lists_nothing_twice() {
    let mut counts = Vec::new();
    for read_ahead in [0, 4] {
        let (s, t) = tree(read_ahead).await;
        s.mem.set_latency(Duration::from_millis(30));
        list(&s.fs, t).await;
        // Right behind the read-ahead: each listing below starts while its read-ahead runs.
        for d in 0..8 {
            let dir = subdir(&s.fs, t, &format!("d{d}")).await;
            assert_eq!(list(&s.fs, dir).await, [".", "..", "f0", "f1"]);
        }
        counts.push(requests(&s));
    }
    assert_eq!(counts[1], counts[0], "requests without and with read-ahead");
}
