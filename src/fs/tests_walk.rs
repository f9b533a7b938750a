//! Specifications of the read-ahead of tree walks (`names::walk`, `names::tree`), against the
//! in-memory store.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use super::tests::{options, put, setup_with, Setup};
use super::tests_failures::{failing, mount};
use super::{Fs, FsOptions, ROOT_INO};
use crate::names::TREE_CLAIMS;
use crate::store::failing::{FailingStore, Failure, Op};
use crate::store::memory::MemoryStore;
use crate::store::ObjectStore;
use crate::store::PutOptions;
use bytes::Bytes;

/// The options of these specifications: listings and names trusted for a minute, the tree
/// read-ahead starting within `read_ahead` subdirectories.
fn walk_options(read_ahead: usize) -> FsOptions {
    FsOptions {
        dir_ttl: Duration::from_secs(60),
        dir_cache_entries: 1000,
        metadata_ttl: Duration::from_secs(60),
        dir_read_ahead: read_ahead,
        ..options()
    }
}

/// Fills `mem` with a directory `t` with subdirectories named `d{i:02}` for `i` in
/// `0..dirs`, each holding `files` files `f{j:03}` and a subdirectory `s` holding one file
/// `g`.
async fn fill(mem: &MemoryStore, dirs: usize, files: usize) {
    for d in 0..dirs {
        for f in 0..files {
            put(mem, &format!("t/d{d:02}/f{f:03}"), b"x").await;
        }
        put(mem, &format!("t/d{d:02}/s/g"), b"x").await;
    }
}

/// A mount of the tree of `fill`, and the inode of `t`.
async fn tree(read_ahead: usize, dirs: usize, files: usize) -> (Setup, u64) {
    let s = setup_with("", walk_options(read_ahead));
    fill(&s.mem, dirs, files).await;
    let t = s.fs.lookup(ROOT_INO, OsStr::new("t")).await.unwrap().ino;
    (s, t)
}

/// `tree` with `opts`, over a store that stalls the requests a test chooses.
async fn tree_failing(
    opts: FsOptions,
    dirs: usize,
    files: usize,
) -> (Setup, Arc<FailingStore>, u64) {
    let (mem, failing) = failing();
    fill(&mem, dirs, files).await;
    let (fs, staging) = mount(failing.clone(), opts);
    let t = fs.lookup(ROOT_INO, OsStr::new("t")).await.unwrap().ino;
    let s = Setup {
        fs,
        mem,
        _staging: staging,
    };
    (s, failing, t)
}

/// From now on, the `nth` listing of the whole tree under `t/` (the read-ahead's flat pages;
/// a directory's own listing has a longer prefix) is answered `for_` late.
fn stall_tree_page(failing: &FailingStore, nth: u64, for_: Duration) {
    failing.fail(
        Failure::on(Op::ListObjectsV2)
            .key(|prefix| prefix == "t/")
            .nth(nth)
            .stall(for_),
    );
}

/// Lists `dir` as `ls` does.
async fn list(fs: &Arc<Fs>, dir: u64) -> Vec<String> {
    let fh = fs.opendir(dir).await.unwrap();
    let entries = fs.readdir_attrs(fh, 0, 100_000).await.unwrap();
    fs.releasedir(fh).unwrap();
    entries
        .into_iter()
        .map(|l| l.entry.name.to_string())
        .collect()
}

async fn subdir(fs: &Arc<Fs>, t: u64, name: &str) -> u64 {
    fs.lookup(t, OsStr::new(name)).await.unwrap().ino
}

/// Walks `d{i:02}` and its `s` as find does, checking what each lists.
async fn walk_one(s: &Setup, t: u64, i: usize, files: usize) {
    let d = subdir(&s.fs, t, &format!("d{i:02}")).await;
    let mut want: Vec<String> = [".", ".."].iter().map(|n| n.to_string()).collect();
    want.extend((0..files).map(|f| format!("f{f:03}")));
    want.push("s".into());
    assert_eq!(list(&s.fs, d).await, want, "d{i:02}");
    let sub = subdir(&s.fs, d, "s").await;
    assert_eq!(list(&s.fs, sub).await, [".", "..", "g"], "d{i:02}/s");
}

fn lists(s: &Setup) -> u64 {
    s.mem.stats().count("ListObjectsV2")
}

/// Waits until the store has seen `want` LISTs, or fails after 5 s.
async fn wait_for_lists(s: &Setup, want: u64) {
    for _ in 0..500 {
        if lists(s) >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the store saw {} LISTs, not {want}", lists(s));
}

#[tokio::test]
async fn a_walk_lists_the_rest_of_the_tree_ahead_in_flat_pages() {
    let (s, t) = tree(4, 8, 2).await;
    // d05 has a marker that stores its mode; the others have none.
    let mut marked = PutOptions::default();
    marked
        .metadata
        .insert("mode".into(), (0o040700).to_string());
    s.mem.put("t/d05/", Bytes::new(), &marked).await.unwrap();
    list(&s.fs, t).await;
    walk_one(&s, t, 0, 2).await;
    let before = lists(&s);
    walk_one(&s, t, 1, 2).await;
    // Looking up a second subdirectory after one was listed makes it a walk: the subtrees
    // of d01..d07, every level, come in one flat page.
    wait_for_lists(&s, before + 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(lists(&s), before + 1, "one page");
    let heads = s.mem.stats().count("HeadObject");
    for i in 2..8 {
        walk_one(&s, t, i, 2).await;
    }
    assert_eq!(lists(&s), before + 1, "the rest of the walk asks nothing");
    assert_eq!(
        s.mem.stats().count("HeadObject"),
        heads,
        "no HEAD: the subdirectories of t were read ahead as the walk looked them up in \
         order (d05's marker among them), and a directory the listing shows without a marker \
         (each s) has the default attributes"
    );
    let d05 = s.fs.lookup(t, OsStr::new("d05")).await.unwrap();
    assert_eq!(d05.perm, 0o700);
}

#[tokio::test]
async fn listing_one_subdirectory_reads_nothing_ahead() {
    let (s, t) = tree(4, 8, 2).await;
    list(&s.fs, t).await;
    let d0 = subdir(&s.fs, t, "d00").await;
    list(&s.fs, d0).await;
    list(&s.fs, d0).await;
    let before = s.mem.stats().total_requests();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.mem.stats().total_requests(), before);
}

#[tokio::test]
async fn a_walk_that_overtakes_its_read_ahead_waits_for_it_and_lists_nothing_twice() {
    let mut counts = Vec::new();
    for read_ahead in [0, 4] {
        let (s, t) = tree(read_ahead, 8, 2).await;
        s.mem.set_latency(Duration::from_millis(30));
        list(&s.fs, t).await;
        // Right behind the read-ahead: each listing below starts while its run goes on.
        for i in 0..8 {
            walk_one(&s, t, i, 2).await;
        }
        counts.push(lists(&s));
    }
    // (t's lookup and listing; then each directory by itself, or d00 and d00/s by
    // themselves and the rest in one page)
    assert_eq!(
        counts,
        [2 + 16, 2 + 2 + 1],
        "LISTs without and with read-ahead"
    );
}

#[tokio::test]
async fn a_long_walk_costs_about_the_pages_of_one_recursive_listing() {
    // However far ahead the next run starts (with 64, a run started at every step claimed
    // one directory and listed a page for it: 4 times slower at 100,000 keys).
    for read_ahead in [4, 64] {
        // 100 directories of 99 files and a subdirectory holding one: 10,000 keys.
        let (s, t) = tree(read_ahead, 100, 99).await;
        list(&s.fs, t).await;
        let before = lists(&s);
        for i in 0..100 {
            walk_one(&s, t, i, 99).await;
        }
        let walked = lists(&s) - before;
        // d00 and d00/s by themselves; then the 9,900 keys of d01..d99 in runs of at most 8
        // pages of 1,000, each started as the walk comes near the end of the last (a page
        // where two runs meet may be listed twice).
        assert!(
            (2 + 10..=2 + 10 + 2).contains(&walked),
            "{walked} LISTs for the walk with dir_read_ahead {read_ahead}"
        );
    }
}

/// A run lists the subtrees it claimed and stops after the page that goes past them: what
/// follows is the next run's (the walk starts it before this one ends) or the walk's own.
#[tokio::test]
async fn a_read_ahead_run_stops_after_the_subtrees_it_claimed() {
    // 200 directories of 16 keys: 3,200 keys, four pages from d02 on. The run started at
    // d01 claims d02..d65 (keys 32..1,055): the second page goes past them.
    let (s, t) = tree(4, 200, 15).await;
    list(&s.fs, t).await;
    walk_one(&s, t, 0, 15).await;
    let before = lists(&s);
    walk_one(&s, t, 1, 15).await;
    wait_for_lists(&s, before + 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(lists(&s), before + 2, "two pages, not the four to the end");
}

/// `find` of a tree whose directories have no marker (most trees: keys another tool wrote):
/// the walk looks each directory up before it reads it, and a listing of it (its own, or
/// the walk's read-ahead) says there is no marker to read. No HEAD at all, none running
/// ahead either, not even for the directories past what the read-ahead claimed at first
/// (at 100,000 objects in 1,000 directories, 1,000 HEADs that found nothing).
#[tokio::test]
async fn a_walk_reads_no_directory_marker_that_its_listing_shows_missing() {
    // More directories than a read-ahead run claims at first, in two pages (the second late).
    let (dirs, files) = (TREE_CLAIMS + 16, 15);
    let (s, failing, t) = tree_failing(walk_options(4), dirs, files).await;
    list(&s.fs, t).await;
    let before = heads(&s);
    walk_one(&s, t, 0, files).await;
    stall_tree_page(&failing, 2, Duration::from_millis(300));
    for i in 1..dirs {
        walk_one(&s, t, i, files).await;
    }
    assert_eq!(failing.injected(Op::ListObjectsV2), 1, "a page was late");
    assert_eq!(heads_settled(&s).await - before, 0);
}

/// A directory the walk's read-ahead is listing is looked up (find opens each directory it
/// comes to) before the page holding it arrives: the lookup waits for that listing, which
/// tells whether there is a marker to read, instead of a HEAD of its own per directory, one
/// after the other.
#[tokio::test]
async fn looking_up_a_directory_being_read_ahead_waits_for_its_listing() {
    let (s, failing, t) = tree_failing(walk_options(4), 8, 2).await;
    list(&s.fs, t).await;
    walk_one(&s, t, 0, 2).await;
    let before = heads(&s);
    stall_tree_page(&failing, 1, Duration::from_millis(300));
    // The second directory shows a walk: the read-ahead starts, its page late.
    for i in 1..8 {
        walk_one(&s, t, i, 2).await;
    }
    assert_eq!(failing.injected(Op::ListObjectsV2), 1, "the page was late");
    assert_eq!(heads(&s), before);
}

/// The same when the walk comes to the directory after its name's TTL (a walk of 100,000
/// objects takes seconds): the lookup waits for the listing under way, which confirms the
/// directory, instead of asking for the name (a HEAD and a LIST) and then its marker.
#[tokio::test]
async fn looking_up_a_stale_directory_being_read_ahead_waits_for_its_listing() {
    let opts = FsOptions {
        metadata_ttl: Duration::from_millis(300),
        ..walk_options(4)
    };
    let (s, failing, t) = tree_failing(opts, 8, 2).await;
    list(&s.fs, t).await;
    walk_one(&s, t, 0, 2).await;
    // What the listing of t said of d01..d07 is older than the TTL now.
    tokio::time::sleep(Duration::from_millis(400)).await;
    stall_tree_page(&failing, 1, Duration::from_millis(600));
    // (d01 is asked for again; its listing starts the read-ahead of d02..d07, late)
    walk_one(&s, t, 1, 2).await;
    let (heads_before, lists_before) = (heads(&s), lists(&s));
    for i in 2..8 {
        walk_one(&s, t, i, 2).await;
    }
    assert_eq!(failing.injected(Op::ListObjectsV2), 1, "the page was late");
    assert_eq!(heads(&s), heads_before);
    assert!(
        lists(&s) <= lists_before + 1,
        "{} LISTs: more than the read-ahead's page",
        lists(&s) - lists_before
    );
}

/// find and du come to the first subdirectory right after reading its parent, and read it
/// right after looking it up: the lookup lists it instead of reading its marker, which the
/// listing shows missing (or present: then it is read). One round trip instead of two, and
/// the readdir after it costs nothing.
#[tokio::test]
async fn looking_up_the_first_directory_after_its_parent_was_read_lists_it() {
    let (s, t) = tree(4, 2, 2).await;
    let mut marked = PutOptions::default();
    marked
        .metadata
        .insert("mode".into(), (0o040700).to_string());
    s.mem.put("t/d00/s/", Bytes::new(), &marked).await.unwrap();
    list(&s.fs, t).await;
    let (heads_before, lists_before) = (heads(&s), lists(&s));
    let d00 = s.fs.lookup(t, OsStr::new("d00")).await.unwrap();
    assert_eq!(d00.perm, 0o755, "no marker: the defaults");
    assert_eq!((heads(&s), lists(&s)), (heads_before, lists_before + 1));
    list(&s.fs, d00.ino).await;
    assert_eq!(
        lists(&s),
        lists_before + 1,
        "the readdir was answered by that listing"
    );
    // d00/s has a marker: its listing shows it, and it is read.
    let sub = s.fs.lookup(d00.ino, OsStr::new("s")).await.unwrap();
    assert_eq!(sub.perm, 0o700);
    assert_eq!((heads(&s), lists(&s)), (heads_before + 1, lists_before + 2));
}

/// Once a walk has shown itself (a subdirectory was read), looking up the next directory
/// starts the read-ahead of the rest of the tree from it: the lookup waits for the
/// read-ahead's first page instead of reading the directory's marker first, and the
/// readdir after it costs nothing.
#[tokio::test]
async fn looking_up_the_next_directory_of_a_walk_starts_the_read_ahead_from_it() {
    let (s, t) = tree(4, 8, 2).await;
    list(&s.fs, t).await;
    walk_one(&s, t, 0, 2).await;
    let (heads_before, lists_before) = (heads(&s), lists(&s));
    let d01 = subdir(&s.fs, t, "d01").await;
    assert_eq!(heads(&s), heads_before, "no marker read");
    list(&s.fs, d01).await;
    assert_eq!(lists(&s), lists_before + 1, "the read-ahead's page only");
    for i in 1..8 {
        walk_one(&s, t, i, 2).await;
    }
    assert_eq!((heads(&s), lists(&s)), (heads_before, lists_before + 1));
}

/// A tree whose directories have markers (made through a mount, or by s3fs): the walk's
/// read-ahead reads the markers it lists, in parallel, so the walk finds each directory's
/// stored mode known when it comes to it instead of reading them one at a time.
#[tokio::test]
async fn a_walk_reads_the_markers_its_read_ahead_lists_ahead_of_it() {
    let (s, t) = tree(4, 8, 2).await;
    let mut marked = PutOptions::default();
    marked
        .metadata
        .insert("mode".into(), (0o040700).to_string());
    for i in 2..8 {
        let marker = format!("t/d{i:02}/");
        s.mem.put(&marker, Bytes::new(), &marked).await.unwrap();
    }
    list(&s.fs, t).await;
    walk_one(&s, t, 0, 2).await;
    walk_one(&s, t, 1, 2).await;
    let before = heads_settled(&s).await;
    for i in 2..8 {
        walk_one(&s, t, i, 2).await;
        let d =
            s.fs.lookup(t, OsStr::new(&format!("d{i:02}")))
                .await
                .unwrap();
        assert_eq!(d.perm, 0o700, "d{i:02}");
    }
    assert_eq!(
        heads(&s),
        before,
        "the markers were read before the walk came"
    );
}

fn heads(s: &Setup) -> u64 {
    s.mem.stats().count("HeadObject")
}

/// Waits until no HEAD has been sent for 100 ms (the run-ahead's are done).
async fn heads_settled(s: &Setup) -> u64 {
    let mut last = heads(s);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = heads(s);
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Stats every file of `d{i:02}` in order after listing it, as `du` and `ls -lR` do.
async fn stat_files(s: &Setup, t: u64, i: usize, files: usize) {
    let d = subdir(&s.fs, t, &format!("d{i:02}")).await;
    list(&s.fs, d).await;
    for f in 0..files {
        let name = format!("f{f:03}");
        s.fs.lookup(d, OsStr::new(&name)).await.unwrap();
    }
}

/// `du` or `ls -l` asks for the first entry of a directory right after reading it: the
/// HEADs of the files after it start at once, not at the second entry (under faults, that
/// first HEAD alone held `du` up in every directory). Its subdirectories are left for
/// later (a walk lists them).
#[tokio::test]
async fn the_first_entry_asked_for_after_a_listing_starts_the_heads_of_the_files_after_it() {
    let (s, t) = tree(0, 1, 20).await;
    let d00 = subdir(&s.fs, t, "d00").await;
    list(&s.fs, d00).await;
    let before = heads(&s);
    s.fs.lookup(d00, OsStr::new("f000")).await.unwrap();
    assert_eq!(heads_settled(&s).await - before, 20, "f000..f019, not s");
}

/// A lone `stat` of a later entry costs its own HEAD only.
#[tokio::test]
async fn a_lone_stat_after_a_listing_reads_nothing_ahead() {
    let (s, t) = tree(0, 1, 20).await;
    let d00 = subdir(&s.fs, t, "d00").await;
    list(&s.fs, d00).await;
    let before = heads(&s);
    s.fs.lookup(d00, OsStr::new("f007")).await.unwrap();
    assert_eq!(heads_settled(&s).await - before, 1);
}

/// `du` of a tree: the HEADs of the files of the directories it comes to next start while
/// it is still in the one before, so it never waits for each directory's slowest HEAD in
/// turn (under faults, one retried HEAD per directory made `du` 6.5× slower).
#[tokio::test]
async fn a_walk_reads_the_attributes_of_the_next_directories_ahead() {
    let (s, t) = tree(4, 6, 20).await;
    list(&s.fs, t).await;
    stat_files(&s, t, 0, 20).await;
    // (The second directory listed shows a walk: the rest of the tree is listed ahead,
    // which takes the store a moment.)
    list(&s.fs, subdir(&s.fs, t, "d01").await).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stat_files(&s, t, 1, 20).await;
    let before = heads_settled(&s).await;
    stat_files(&s, t, 2, 20).await;
    stat_files(&s, t, 3, 20).await;
    assert_eq!(
        heads(&s),
        before,
        "the files of d02 and d03 had their attributes read before du came to them"
    );
}

/// Looks up `d{i:02}` and then each of its files in order, name by name, as rsync does
/// on the receiving side when it compares a tree it sent before (no readdir).
async fn lookup_files(s: &Setup, t: u64, i: usize, files: usize) {
    let d = subdir(&s.fs, t, &format!("d{i:02}")).await;
    for f in 0..files {
        let name = format!("f{f:03}");
        s.fs.lookup(d, OsStr::new(&name)).await.unwrap();
    }
    // (the tool's own work between directories: the read-ahead runs meanwhile)
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// rsync run again over a tree it sent (a fresh mount): once two directories were gone
/// through name by name, the rest of the tree is listed ahead, so the later directories
/// cost no lookup one name at a time (each a HEAD and a LIST, serial: under faults this
/// made the run 6-9x slower).
#[tokio::test]
async fn going_through_two_directories_name_by_name_lists_the_rest_of_the_tree_ahead() {
    let (s, t) = tree(4, 8, 10).await;
    lookup_files(&s, t, 0, 10).await;
    lookup_files(&s, t, 1, 10).await;
    let before = lists(&s);
    for i in 2..8 {
        lookup_files(&s, t, i, 10).await;
    }
    assert!(
        lists(&s) <= before + 1,
        "the store saw {} LISTs for the last six directories",
        lists(&s) - before
    );
}
