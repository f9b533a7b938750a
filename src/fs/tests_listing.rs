//! Specifications of how a large directory's listing reaches readdir: page by page as it
//! arrives from the store (the kernel reads the first pages while the next ones are
//! listed), each name once, with the names the table has that the store's pages lack.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::tests::{options, put, setup, setup_with, write_file, Setup};
use super::tests_failures::{failing, mount};
use super::{Fs, ROOT_INO};
use crate::config::FsOptions;
use crate::names::inode::Kind;
use crate::store::failing::{Failure, Op};
use crate::store::ObjectStore;

/// Long enough for anything that is not waiting for a held request.
const PATIENCE: Duration = Duration::from_secs(5);

/// A directory `big` of `files` files, looked up; its LISTs from now on wait for the
/// permits of the semaphore returned.
async fn gated_big_dir(s: &Setup, files: usize) -> (u64, Arc<Semaphore>) {
    for i in 0..files {
        put(&s.mem, &format!("big/f{i:04}"), b"x").await;
    }
    let dir = s.fs.lookup(ROOT_INO, OsStr::new("big")).await.unwrap().ino;
    let gate = Arc::new(Semaphore::new(0));
    s.mem.gate_lists(gate.clone());
    (dir, gate)
}

#[tokio::test]
async fn a_large_directory_is_served_from_its_first_page_while_the_next_is_listed() {
    let s = setup();
    let (dir, gate) = gated_big_dir(&s, 2500).await;
    let lists = || s.mem.stats().count("ListObjectsV2");
    let before = lists();
    gate.add_permits(1); // the first page of three

    let fh = s.fs.opendir(dir).await.unwrap();
    let first = tokio::time::timeout(PATIENCE, s.fs.readdir_attrs(fh, 0, 64))
        .await
        .expect("the first page's entries are served while the next pages are held")
        .unwrap();
    let names: Vec<&str> = first.iter().map(|l| &*l.entry.name).collect();
    assert_eq!(names[..4], [".", "..", "f0000", "f0001"]);
    assert_eq!(names.len(), 64);
    // The second page is asked for without the reader asking past the first.
    let asked = tokio::time::timeout(PATIENCE, async {
        while lists() < before + 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(asked.is_ok(), "the next page was not asked for ahead");
    assert_eq!(
        lists(),
        before + 2,
        "no page asked for before its token is known"
    );

    // Past the first page, a reader waits for the page that holds its entries.
    let fs = s.fs.clone();
    let later = tokio::spawn(async move { fs.readdir_attrs(fh, 1002, 64).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !later.is_finished(),
        "served entries that were not listed yet"
    );
    gate.add_permits(10);
    let later = tokio::time::timeout(PATIENCE, later)
        .await
        .expect("served once its page arrived")
        .unwrap()
        .unwrap();
    assert_eq!(&*later[0].entry.name, "f1000");

    let all = s.fs.readdir(fh, 1).await.unwrap();
    let unique: BTreeSet<&str> = all.iter().map(|e| &*e.name).collect();
    assert_eq!((all.len(), unique.len()), (2502, 2502));
    assert_eq!(lists(), before + 3, "each page listed once");
    s.fs.releasedir(fh).unwrap();
}

#[tokio::test]
async fn each_name_is_served_once_however_the_pages_split_the_directory() {
    let s = setup_with(
        "",
        FsOptions {
            write_back_delay: Duration::from_secs(3600),
            ..options()
        },
    );
    // `d/a` is on the first page, the prefix `d/a/` on the second ('.' sorts before '/'):
    // the directory shadows the file, and shows once.
    put(&s.mem, "d/a", b"file").await;
    for i in 0..1200 {
        put(&s.mem, &format!("d/a.{i:04}"), b"x").await;
    }
    put(&s.mem, "d/a/x", b"x").await;
    let dir = s.fs.lookup(ROOT_INO, OsStr::new("d")).await.unwrap().ino;
    // Written here and not uploaded yet: in no page, served at the end.
    write_file(&s.fs, dir, "zz-new", b"new").await;
    assert!(s.mem.bytes("d/zz-new").is_none());

    let fh = s.fs.opendir(dir).await.unwrap();
    let mut served = Vec::new();
    loop {
        let batch =
            s.fs.readdir_attrs(fh, served.len() as u64, 100)
                .await
                .unwrap();
        if batch.is_empty() {
            break;
        }
        served.extend(
            batch
                .into_iter()
                .map(|l| (l.entry.name.to_string(), l.entry.kind)),
        );
    }
    s.fs.releasedir(fh).unwrap();
    let count = |name: &str| served.iter().filter(|(n, _)| n == name).count();
    assert_eq!(count("a"), 1, "{:?}", &served[..4]);
    assert_eq!(count("zz-new"), 1);
    assert_eq!(served.len(), 2 + 1 + 1200 + 1);
    assert!(served.iter().any(|(n, k)| n == "a" && *k == Kind::Dir));
    let unique: BTreeSet<&String> = served.iter().map(|(n, _)| n).collect();
    assert_eq!(unique.len(), served.len());
}

#[tokio::test]
async fn the_next_page_is_asked_for_before_the_one_that_arrived_is_entered() {
    let (mem, failing) = failing();
    for i in 0..2500 {
        put(&mem, &format!("big/f{i:04}"), b"x").await;
    }
    let (fs, _staging) = mount(failing.clone(), options());
    let dir = fs.lookup(ROOT_INO, OsStr::new("big")).await.unwrap().ino;
    // At each LIST of the directory's pages: how many of its names the table holds then.
    let mounted: Arc<OnceLock<Weak<Fs>>> = Arc::default();
    let entered_when_asked: Arc<Mutex<Vec<usize>>> = Arc::default();
    let (seen, log) = (mounted.clone(), entered_when_asked.clone());
    failing.fail(Failure::on(Op::ListObjectsV2).key(move |prefix| {
        if let Some(fs) = seen
            .get()
            .and_then(Weak::upgrade)
            .filter(|_| prefix == "big/")
        {
            let t = fs.names.table();
            let held = t.get(dir).map_or(0, |n| n.child_inos().count());
            log.lock().unwrap().push(held);
        }
        false // fails nothing: it only looks
    }));
    mounted.set(Arc::downgrade(&fs)).unwrap();

    let fh = fs.opendir(dir).await.unwrap();
    assert_eq!(fs.readdir(fh, 0).await.unwrap().len(), 2502);
    fs.releasedir(fh).unwrap();
    // The second page was asked for as soon as the first arrived, before its 1,000 names
    // were entered (on this test's single thread, entering waits for the request to go;
    // asked for after entering, the log would read [0, 1000, 2000]).
    let log = entered_when_asked.lock().unwrap().clone();
    assert_eq!(
        (log.len(), log[1]),
        (3, 0),
        "names held at each page's LIST: {log:?}"
    );
}

/// `ls | head` of a large directory: once the handle is closed, the listing stops, rather
/// than listing the rest of the directory for no one.
#[tokio::test]
async fn a_listing_no_one_reads_any_more_stops() {
    let s = setup();
    let (dir, gate) = gated_big_dir(&s, 9500).await;
    let lists = || s.mem.stats().count("ListObjectsV2");
    let before = lists();
    gate.add_permits(1); // the first page of ten

    let fh = s.fs.opendir(dir).await.unwrap();
    let first = tokio::time::timeout(PATIENCE, s.fs.readdir_attrs(fh, 0, 10))
        .await
        .expect("the first page's entries are served")
        .unwrap();
    assert_eq!(first.len(), 10);
    s.fs.releasedir(fh).unwrap();
    gate.add_permits(100);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The page asked for when the first arrived, and the few the pages task had asked for
    // ahead of the listing when it stopped; not the ten.
    let listed = lists() - before;
    assert!(listed <= 6, "{listed} pages listed for a closed handle");
}
