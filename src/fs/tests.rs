//! Specifications of the filesystem core, run against the in-memory store.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::error::FsError;
use super::{Fs, Owner, SetAttr, ROOT_INO};
use crate::config::FsOptions;
use crate::names::inode::Kind;
use crate::store::memory::MemoryStore;
use crate::store::{ObjectStore, PutOptions};

pub(super) struct Setup {
    pub fs: Arc<Fs>,
    pub mem: Arc<MemoryStore>,
    pub _staging: tempfile::TempDir,
}

pub(super) fn options() -> FsOptions {
    FsOptions {
        uid: 1,
        gid: 1,
        metadata_ttl: Duration::from_secs(0),
        read_ahead: 1 << 20,
        negative_ttl: Duration::from_secs(0),
        negative_cache_entries: 100,
        dir_ttl: Duration::from_secs(0),
        dir_cache_entries: 100,
        dir_read_ahead: 0,
        memory_cache: 1 << 20,
        prefetch_budget: 8 << 20,
        part_size: 5 << 20,
        upload_concurrency: 2,
        write_back_delay: Duration::ZERO,
        ..FsOptions::default()
    }
}

/// The caller of creates in these tests.
pub(super) const OWNER: Owner = Owner {
    uid: 1000,
    gid: 100,
    perm: 0o640,
};

pub(super) fn size(n: u64) -> SetAttr {
    SetAttr {
        size: Some(n),
        ..SetAttr::default()
    }
}

pub(super) fn setup_with(prefix: &str, opts: FsOptions) -> Setup {
    let mem = Arc::new(MemoryStore::new());
    let staging = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = mem.clone();
    let fs = Arc::new(Fs::new(
        store,
        prefix.into(),
        opts,
        staging.path().to_path_buf(),
        None,
        None,
        None,
    ));
    Setup {
        fs,
        mem,
        _staging: staging,
    }
}

pub(super) fn setup() -> Setup {
    setup_with("", options())
}

pub(super) async fn put(mem: &MemoryStore, key: &str, data: &[u8]) {
    mem.put(key, Bytes::copy_from_slice(data), &PutOptions::default())
        .await
        .unwrap();
}

pub(super) async fn names(fs: &Arc<Fs>, dir: u64) -> Vec<(String, Kind)> {
    let fh = fs.opendir(dir).await.unwrap();
    let entries = fs.readdir(fh, 0).await.unwrap();
    fs.releasedir(fh).unwrap();
    entries
        .iter()
        .skip(2)
        .map(|e| (e.name.to_string(), e.kind))
        .collect()
}

pub(super) async fn write_file(fs: &Fs, parent: u64, name: &str, data: &[u8]) -> u64 {
    let (attr, fh) = fs
        .create(parent, OsStr::new(name), libc::O_WRONLY, OWNER)
        .await
        .unwrap();
    fs.write(fh, 0, Bytes::copy_from_slice(data)).await.unwrap();
    fs.flush(fh).await.unwrap();
    fs.release(fh).await.unwrap();
    attr.ino
}

pub(super) async fn read_all(fs: &Fs, ino: u64) -> Vec<u8> {
    let (fh, _) = fs.open(ino, libc::O_RDONLY).await.unwrap();
    let mut out = Vec::new();
    loop {
        let chunk = fs.read(fh, out.len() as u64, 65536).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    fs.release(fh).await.unwrap();
    out
}

#[tokio::test]
async fn a_closed_file_is_in_the_bucket_under_the_prefix() {
    let s = setup_with("pre/", options());
    write_file(&s.fs, ROOT_INO, "hello.txt", b"hello").await;
    assert_eq!(&s.mem.bytes("pre/hello.txt").unwrap()[..], b"hello");
}

#[tokio::test]
async fn a_large_file_is_uploaded_in_parts_and_reads_back() {
    let s = setup();
    let data: Vec<u8> = (0..(11u32 << 20)).map(|i| (i % 253) as u8).collect();
    let ino = write_file(&s.fs, ROOT_INO, "big", &data).await;
    assert_eq!(s.mem.bytes("big").unwrap().len(), data.len());
    assert!(s.mem.bytes("big").unwrap() == data);
    assert!(read_all(&s.fs, ino).await == data);
}

#[tokio::test]
async fn a_read_of_fetched_bytes_does_not_wait_behind_a_read_whose_get_is_slow() {
    // The kernel sends the reads of one file in parallel: its read-ahead runs ahead of the
    // reads the reader is blocked on.
    let mut opts = options();
    opts.read_ahead = 16 << 20; // chunks of 8 blocks of 1 MiB
    opts.prefetch_budget = 64 << 20;
    let s = setup_with("", opts);
    let data: Vec<u8> = (0..(16u32 << 20)).map(|i| (i % 253) as u8).collect();
    put(&s.mem, "big", &data).await;
    // The first two GETs only: the first read's block, then the rest of its chunk.
    let gate = Arc::new(tokio::sync::Semaphore::new(2));
    s.mem.gate_gets(gate.clone());
    let ino = s.fs.lookup(ROOT_INO, OsStr::new("big")).await.unwrap().ino;
    let (fh, _) = s.fs.open(ino, libc::O_RDONLY).await.unwrap();
    let mib = 1u64 << 20;
    for at in 0..3 {
        // Fetches blocks 0-7; the third read's read-ahead asks for 8-15, held at the gate.
        s.fs.read(fh, at * mib, mib as u32).await.unwrap();
    }
    let fs = s.fs.clone();
    let ahead = tokio::spawn(async move { fs.read(fh, 8 * mib, mib as u32).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!ahead.is_finished(), "block 8 waits for its GET");

    let behind = tokio::time::timeout(Duration::from_secs(2), s.fs.read(fh, 3 * mib, mib as u32))
        .await
        .expect("block 3 was fetched already: its read must not wait for block 8's GET")
        .unwrap();
    assert!(behind[..] == data[3 << 20..4 << 20]);

    gate.add_permits(100);
    let ahead = ahead.await.unwrap().unwrap();
    assert!(ahead[..] == data[8 << 20..9 << 20]);
}

#[tokio::test]
async fn listing_shows_objects_prefixes_and_hides_unshowable_keys() {
    let s = setup();
    for key in ["a", "d/x", "d2/", "bad//x", "./y", "e", "e/inner"] {
        put(&s.mem, key, b"1").await;
    }
    let listed = names(&s.fs, ROOT_INO).await;
    assert_eq!(
        listed,
        vec![
            (".".to_string(), Kind::Dir),
            ("a".into(), Kind::File),
            ("bad".into(), Kind::Dir),
            ("d".into(), Kind::Dir),
            ("d2".into(), Kind::Dir),
            ("e".into(), Kind::Dir),
        ]
        .into_iter()
        .filter(|(n, _)| n != ".")
        .collect::<Vec<_>>(),
        "`e` is both an object and a prefix: the directory wins; `./y` is skipped"
    );
    let bad = s.fs.lookup(ROOT_INO, OsStr::new("bad")).await.unwrap();
    assert!(
        names(&s.fs, bad.ino).await.is_empty(),
        "`bad//x` has an empty segment"
    );
}

#[tokio::test]
async fn lookup_finds_files_implicit_directories_and_reports_missing_names() {
    let s = setup();
    put(&s.mem, "dir/file", b"abc").await;
    let dir = s.fs.lookup(ROOT_INO, OsStr::new("dir")).await.unwrap();
    assert_eq!(dir.kind, Kind::Dir);
    let file = s.fs.lookup(dir.ino, OsStr::new("file")).await.unwrap();
    assert_eq!((file.kind, file.size), (Kind::File, 3));
    assert!(matches!(
        s.fs.lookup(ROOT_INO, OsStr::new("nope")).await,
        Err(FsError::NotFound)
    ));
    let long = "n".repeat(256);
    assert!(matches!(
        s.fs.lookup(ROOT_INO, OsStr::new(&long)).await,
        Err(FsError::NameTooLong)
    ));
}

#[tokio::test]
async fn mkdir_writes_a_marker_and_rmdir_refuses_a_non_empty_directory() {
    let s = setup();
    let d = s.fs.mkdir(ROOT_INO, OsStr::new("d"), OWNER).await.unwrap();
    assert!(s.mem.keys().contains(&"d/".to_string()));
    assert!(matches!(
        s.fs.mkdir(ROOT_INO, OsStr::new("d"), OWNER).await,
        Err(FsError::Exists)
    ));
    write_file(&s.fs, d.ino, "f", b"x").await;
    assert!(matches!(
        s.fs.rmdir(ROOT_INO, OsStr::new("d")).await,
        Err(FsError::NotEmpty)
    ));
    s.fs.unlink(d.ino, OsStr::new("f")).await.unwrap();
    s.fs.rmdir(ROOT_INO, OsStr::new("d")).await.unwrap();
    assert!(s.mem.keys().is_empty());
}

#[tokio::test]
async fn renaming_a_directory_moves_every_key_below_it() {
    let s = setup();
    for i in 0..5 {
        put(&s.mem, &format!("src/f{i}"), b"data").await;
    }
    put(&s.mem, "src/sub/g", b"g").await;
    s.fs.rename(ROOT_INO, OsStr::new("src"), ROOT_INO, OsStr::new("dst"), 0)
        .await
        .unwrap();
    let keys = s.mem.keys();
    assert!(keys.iter().all(|k| k.starts_with("dst/")), "{keys:?}");
    assert_eq!(keys.len(), 6);
    let dst = s.fs.lookup(ROOT_INO, OsStr::new("dst")).await.unwrap();
    let sub = s.fs.lookup(dst.ino, OsStr::new("sub")).await.unwrap();
    let g = s.fs.lookup(sub.ino, OsStr::new("g")).await.unwrap();
    assert_eq!(read_all(&s.fs, g.ino).await, b"g");
}

#[tokio::test]
async fn renaming_a_file_replaces_the_target() {
    let s = setup();
    put(&s.mem, "a", b"new").await;
    put(&s.mem, "b", b"old").await;
    s.fs.rename(ROOT_INO, OsStr::new("a"), ROOT_INO, OsStr::new("b"), 0)
        .await
        .unwrap();
    assert_eq!(s.mem.keys(), vec!["b".to_string()]);
    assert_eq!(&s.mem.bytes("b").unwrap()[..], b"new");
}

#[tokio::test]
async fn a_rename_whose_copy_the_server_dropped_is_copied_again_before_the_source_goes() {
    let s = setup();
    put(&s.mem, "a", b"new").await;
    put(&s.mem, "b", b"old").await;
    // Garage drops a copy that lands in the same millisecond as the write before it.
    s.mem.lose_copies(1);
    s.fs.rename(ROOT_INO, OsStr::new("a"), ROOT_INO, OsStr::new("b"), 0)
        .await
        .unwrap();
    assert_eq!(s.mem.keys(), vec!["b".to_string()]);
    assert_eq!(&s.mem.bytes("b").unwrap()[..], b"new");
    assert_eq!(s.mem.stats().count("CopyObject"), 2);
}

#[tokio::test]
async fn a_rename_the_server_never_keeps_fails_and_keeps_the_source() {
    let s = setup();
    put(&s.mem, "a", b"new").await;
    put(&s.mem, "b", b"old").await;
    s.mem.lose_copies(100);
    assert!(s
        .fs
        .rename(ROOT_INO, OsStr::new("a"), ROOT_INO, OsStr::new("b"), 0)
        .await
        .is_err());
    assert_eq!(&s.mem.bytes("a").unwrap()[..], b"new");
    assert_eq!(&s.mem.bytes("b").unwrap()[..], b"old");
}

#[tokio::test]
async fn a_directory_rename_deletes_no_source_whose_copy_the_server_dropped() {
    let s = setup();
    for i in 0..3 {
        put(&s.mem, &format!("src/f{i}"), b"data").await;
    }
    s.mem.lose_copies(100);
    assert!(s
        .fs
        .rename(ROOT_INO, OsStr::new("src"), ROOT_INO, OsStr::new("dst"), 0)
        .await
        .is_err());
    for i in 0..3 {
        assert_eq!(&s.mem.bytes(&format!("src/f{i}")).unwrap()[..], b"data");
    }
}

#[tokio::test]
async fn a_file_renamed_before_close_is_uploaded_once_under_the_new_name() {
    let s = setup();
    let (_, fh) =
        s.fs.create(ROOT_INO, OsStr::new("tmp"), libc::O_WRONLY, OWNER)
            .await
            .unwrap();
    s.fs.write(fh, 0, Bytes::from_static(b"content"))
        .await
        .unwrap();
    s.fs.rename(
        ROOT_INO,
        OsStr::new("tmp"),
        ROOT_INO,
        OsStr::new("final"),
        0,
    )
    .await
    .unwrap();
    s.fs.flush(fh).await.unwrap();
    s.fs.release(fh).await.unwrap();
    assert_eq!(s.mem.keys(), vec!["final".to_string()]);
}

#[tokio::test]
async fn overwrite_in_the_middle_and_truncate_keep_the_rest() {
    let s = setup();
    put(&s.mem, "f", b"0123456789").await;
    let f = s.fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    let (fh, _) = s.fs.open(f.ino, libc::O_RDWR).await.unwrap();
    s.fs.write(fh, 3, Bytes::from_static(b"xyz")).await.unwrap();
    s.fs.flush(fh).await.unwrap();
    s.fs.release(fh).await.unwrap();
    assert_eq!(&s.mem.bytes("f").unwrap()[..], b"012xyz6789");
    s.fs.setattr(f.ino, size(4)).await.unwrap();
    assert_eq!(&s.mem.bytes("f").unwrap()[..], b"012x");
    s.fs.setattr(f.ino, size(6)).await.unwrap();
    assert_eq!(&s.mem.bytes("f").unwrap()[..], b"012x\0\0");
}

#[tokio::test]
async fn a_read_only_mount_refuses_every_change() {
    let mut opts = options();
    opts.read_only = true;
    let s = setup_with("", opts);
    put(&s.mem, "f", b"x").await;
    let f = s.fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    assert!(matches!(
        s.fs.create(ROOT_INO, OsStr::new("n"), libc::O_WRONLY, OWNER)
            .await,
        Err(FsError::ReadOnly)
    ));
    assert!(matches!(
        s.fs.open(f.ino, libc::O_WRONLY).await,
        Err(FsError::ReadOnly)
    ));
    assert!(matches!(
        s.fs.unlink(ROOT_INO, OsStr::new("f")).await,
        Err(FsError::ReadOnly)
    ));
    assert!(matches!(
        s.fs.mkdir(ROOT_INO, OsStr::new("d"), OWNER).await,
        Err(FsError::ReadOnly)
    ));
    assert_eq!(read_all(&s.fs, f.ino).await, b"x");
}

#[tokio::test]
async fn an_unlinked_open_file_is_not_resurrected_at_close() {
    let s = setup();
    let (_, fh) =
        s.fs.create(ROOT_INO, OsStr::new("gone"), libc::O_WRONLY, OWNER)
            .await
            .unwrap();
    s.fs.write(fh, 0, Bytes::from_static(b"data"))
        .await
        .unwrap();
    s.fs.unlink(ROOT_INO, OsStr::new("gone")).await.unwrap();
    s.fs.flush(fh).await.unwrap();
    s.fs.release(fh).await.unwrap();
    assert!(s.mem.keys().is_empty());
}

#[tokio::test]
async fn a_stored_file_unlinked_or_replaced_while_open_reads_back_through_its_handle() {
    let s = setup();
    put(&s.mem, "a", b"stored bytes of a").await;
    put(&s.mem, "b", b"stored bytes of b").await;
    put(&s.mem, "new", b"replacement").await;
    let a = s.fs.lookup(ROOT_INO, OsStr::new("a")).await.unwrap().ino;
    let b = s.fs.lookup(ROOT_INO, OsStr::new("b")).await.unwrap().ino;
    let (fa, _) = s.fs.open(a, libc::O_RDWR).await.unwrap();
    let (fb, _) = s.fs.open(b, libc::O_RDONLY).await.unwrap();
    s.fs.write(fa, 0, Bytes::from_static(b"STORED"))
        .await
        .unwrap();
    s.fs.unlink(ROOT_INO, OsStr::new("a")).await.unwrap();
    s.fs.rename(ROOT_INO, OsStr::new("new"), ROOT_INO, OsStr::new("b"), 0)
        .await
        .unwrap();
    assert_eq!(s.mem.keys(), vec!["b".to_string()], "a deleted, b replaced");
    assert_eq!(
        &s.fs.read(fa, 0, 100).await.unwrap()[..],
        b"STORED bytes of a"
    );
    assert_eq!(
        &s.fs.read(fb, 0, 100).await.unwrap()[..],
        b"stored bytes of b"
    );
    assert_eq!(s.fs.getattr(a).await.unwrap().nlink, 0);
    for fh in [fa, fb] {
        s.fs.flush(fh).await.unwrap();
        s.fs.release(fh).await.unwrap();
    }
    assert_eq!(s.mem.keys(), vec!["b".to_string()]);
    assert_eq!(&s.mem.bytes("b").unwrap()[..], b"replacement");
}

#[tokio::test]
async fn a_file_not_yet_closed_is_listed() {
    let s = setup();
    let (_, fh) =
        s.fs.create(ROOT_INO, OsStr::new("open"), libc::O_WRONLY, OWNER)
            .await
            .unwrap();
    assert_eq!(
        names(&s.fs, ROOT_INO).await,
        vec![("open".into(), Kind::File)]
    );
    s.fs.release(fh).await.unwrap();
}

#[tokio::test]
async fn a_sequential_write_sends_parts_before_the_file_is_closed() {
    let s = setup();
    let (_, fh) =
        s.fs.create(ROOT_INO, OsStr::new("stream"), libc::O_WRONLY, OWNER)
            .await
            .unwrap();
    let chunk = vec![7u8; 1 << 20];
    for i in 0..12u64 {
        s.fs.write(fh, i << 20, Bytes::from(chunk.clone()))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // let the part tasks run
    let parts_before_close = s
        .mem
        .stats()
        .requests
        .get("UploadPart")
        .copied()
        .unwrap_or(0);
    assert!(
        parts_before_close >= 2,
        "two whole 5 MiB parts were streamed: {parts_before_close}"
    );
    assert!(s.mem.keys().is_empty(), "nothing is visible before close");
    s.fs.flush(fh).await.unwrap();
    s.fs.release(fh).await.unwrap();
    assert_eq!(s.mem.bytes("stream").unwrap().len(), 12 << 20);
}

#[tokio::test]
async fn a_rewrite_of_a_streamed_part_falls_back_to_a_whole_upload() {
    let s = setup();
    let (_, fh) =
        s.fs.create(ROOT_INO, OsStr::new("f"), libc::O_WRONLY, OWNER)
            .await
            .unwrap();
    let data: Vec<u8> = (0..(11u32 << 20)).map(|i| (i % 249) as u8).collect();
    s.fs.write(fh, 0, Bytes::from(data.clone())).await.unwrap();
    s.fs.write(fh, 10, Bytes::from_static(b"PATCH"))
        .await
        .unwrap();
    s.fs.flush(fh).await.unwrap();
    s.fs.release(fh).await.unwrap();
    let mut expected = data;
    expected[10..15].copy_from_slice(b"PATCH");
    assert!(s.mem.bytes("f").unwrap() == expected);
}

#[tokio::test]
async fn status_counts_files_not_yet_in_the_bucket() {
    let s = setup();
    let (_, fh) =
        s.fs.create(ROOT_INO, OsStr::new("pending"), libc::O_WRONLY, OWNER)
            .await
            .unwrap();
    s.fs.write(fh, 0, Bytes::from_static(b"12345"))
        .await
        .unwrap();
    let status = s.fs.status();
    assert_eq!((status.pending, status.pending_bytes), (1, 5));
    assert!(status.oldest.is_some());
    s.fs.flush(fh).await.unwrap();
    s.fs.release(fh).await.unwrap();
    let status = s.fs.status();
    assert_eq!(status.pending, 0, "uploaded at close");
    assert!(status
        .render(std::time::SystemTime::now())
        .contains("pending uploads: 0 files"));
}

#[tokio::test]
async fn a_file_stored_while_its_directory_was_being_listed_is_in_that_listing() {
    let s = setup();
    put(&s.mem, "old", b"x").await;
    // What an upload finishing during the LIST leaves: a name the LIST (taken just before
    // the PUT) lacks, confirmed by the store after the listing began.
    let later = std::time::Instant::now() + Duration::from_secs(3600);
    let stat = crate::names::inode::Stat {
        kind: Kind::File,
        size: 1,
        mtime: std::time::SystemTime::now(),
        etag: None,
        remote: true,
        meta: None,
    };
    s.fs.names.table().upsert(ROOT_INO, "new", stat, later);
    let listed = names(&s.fs, ROOT_INO).await;
    assert!(listed.iter().any(|(n, _)| n == "new"), "{listed:?}");
    assert!(listed.iter().any(|(n, _)| n == "old"), "{listed:?}");
}

#[tokio::test]
async fn after_two_missing_names_a_small_directory_is_listed_and_later_misses_are_free() {
    let s = setup_with(
        "",
        FsOptions {
            dir_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(60),
            metadata_ttl: Duration::from_secs(60),
            ..options()
        },
    );
    put(&s.mem, "d/a", b"x").await;
    let d = s.fs.lookup(ROOT_INO, OsStr::new("d")).await.unwrap();
    for missing in ["x", "y"] {
        assert!(matches!(
            s.fs.lookup(d.ino, OsStr::new(missing)).await,
            Err(FsError::NotFound)
        ));
    }
    let before = s.mem.stats().total_requests();
    let before_heads = s.mem.stats().count("HeadObject");
    for missing in ["z", "w", "v"] {
        assert!(matches!(
            s.fs.lookup(d.ino, OsStr::new(missing)).await,
            Err(FsError::NotFound)
        ));
    }
    assert_eq!(
        s.mem.stats().total_requests(),
        before,
        "answered from the listing"
    );
    // A listed name that exists: the listing has no metadata, so one HEAD reads it.
    assert!(s.fs.lookup(d.ino, OsStr::new("a")).await.is_ok());
    assert_eq!(s.mem.stats().total_requests(), before + 1);
    assert_eq!(s.mem.stats().count("HeadObject"), 1 + before_heads);
}

#[tokio::test]
async fn a_directory_larger_than_one_page_is_not_listed_for_misses() {
    let s = setup_with(
        "",
        FsOptions {
            dir_ttl: Duration::from_secs(60),
            ..options()
        },
    );
    let keys: Vec<String> = (0..1001).map(|i| format!("d/f{i:04}")).collect();
    for k in &keys {
        put(&s.mem, k, b"x").await;
    }
    let d = s.fs.lookup(ROOT_INO, OsStr::new("d")).await.unwrap();
    for missing in ["x", "y"] {
        let _ = s.fs.lookup(d.ino, OsStr::new(missing)).await;
    }
    let before = s.mem.stats().count("HeadObject");
    let _ = s.fs.lookup(d.ino, OsStr::new("z")).await;
    assert_eq!(
        s.mem.stats().count("HeadObject"),
        before + 1,
        "still asked by name"
    );
}

/// A mount whose root holds `f0000`..`f0999`, listings and metadata kept for a minute.
async fn thousand_files_kept_a_minute() -> Setup {
    let s = setup_with(
        "",
        FsOptions {
            metadata_ttl: Duration::from_secs(60),
            dir_ttl: Duration::from_secs(60),
            ..options()
        },
    );
    for i in 0..1000 {
        put(&s.mem, &format!("f{i:04}"), b"x").await;
    }
    s
}

#[tokio::test]
async fn a_listing_costs_no_head_and_a_tool_stating_its_entries_in_order_gets_them_read_ahead() {
    let s = thousand_files_kept_a_minute().await;
    let fh = s.fs.opendir(ROOT_INO).await.unwrap();
    let listed = s.fs.readdir_attrs(fh, 0, 2000).await.unwrap();
    assert_eq!(listed.len(), 1002);
    assert_eq!(s.mem.stats().count("HeadObject"), 0, "names only");
    assert!(
        listed.iter().skip(2).all(|l| !l.known),
        "attributes not read are not handed out as known"
    );
    // A lone stat costs its own HEAD, and nothing more.
    s.fs.lookup(ROOT_INO, OsStr::new("f0500")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(s.mem.stats().count("HeadObject"), 1);
    // `ls -l`: every entry stated in order, one at a time, each HEAD 5 ms away.
    s.mem.set_latency(Duration::from_millis(5));
    let started = std::time::Instant::now();
    for i in 0..1000 {
        let f = s.fs.lookup(ROOT_INO, OsStr::new(&format!("f{i:04}"))).await;
        assert_eq!(f.unwrap().size, 1);
    }
    assert_eq!(
        s.mem.stats().count("HeadObject"),
        1000,
        "one HEAD per entry"
    );
    let max = s.mem.max_heads_in_flight();
    assert!(
        max >= crate::names::META_CONCURRENCY / 2,
        "the HEADs ran ahead in parallel: at most {max} at once, {:?} in all",
        started.elapsed()
    );
}

/// `ls -l`: the kernel reads entries by readdirplus, and the tool stats each. Once it has
/// stated the first ones in order, the next readdirplus hands over the entries' stored
/// attributes (their HEADs done first), so the tool's stats need no lookup each.
#[tokio::test]
async fn once_a_tool_stats_a_directorys_entries_in_order_readdirplus_hands_over_their_attributes() {
    let s = thousand_files_kept_a_minute().await;
    for i in 0..10 {
        put(&s.mem, &format!("d/g{i}"), b"x").await;
    }
    let fh = s.fs.opendir(ROOT_INO).await.unwrap();
    let first = s.fs.readdir_attrs(fh, 0, 64).await.unwrap();
    assert!(first.iter().skip(2).all(|l| !l.known), "names only so far");
    for name in ["f0000", "f0001"] {
        s.fs.lookup(ROOT_INO, OsStr::new(name)).await.unwrap();
    }
    // Past what the stats' run-ahead started.
    let later = s.fs.readdir_attrs(fh, 700, 64).await.unwrap();
    assert_eq!(later.len(), 64);
    assert!(
        later.iter().all(|l| l.known),
        "handed over with their attributes"
    );
    // `ls -f` of another directory after a lone stat: still names only.
    let d = s.fs.lookup(ROOT_INO, OsStr::new("d")).await.unwrap();
    let fh = s.fs.opendir(d.ino).await.unwrap();
    s.fs.readdir_attrs(fh, 0, 64).await.unwrap();
    s.fs.lookup(d.ino, OsStr::new("g5")).await.unwrap();
    let heads = s.mem.stats().count("HeadObject");
    let again = s.fs.readdir_attrs(fh, 0, 64).await.unwrap();
    assert_eq!(
        again.iter().filter(|l| l.known).count(),
        2 + 1,
        "., .. and g5"
    );
    assert_eq!(s.mem.stats().count("HeadObject"), heads);
}

#[tokio::test]
async fn a_tool_slower_than_the_ttl_through_a_long_listing_finds_its_entries_fresh() {
    let s = setup_with(
        "",
        FsOptions {
            metadata_ttl: Duration::from_millis(200),
            dir_ttl: Duration::from_millis(200),
            ..options()
        },
    );
    for i in 0..2000 {
        put(&s.mem, &format!("f{i:04}"), b"x").await;
    }
    s.mem.set_latency(Duration::from_millis(1));
    let fh = s.fs.opendir(ROOT_INO).await.unwrap();
    assert_eq!(s.fs.readdir(fh, 0).await.unwrap().len(), 2002);
    // `ls -l` at its own pace: about 500 ms for 2,000 entries, longer than the TTLs.
    for i in 0..2000 {
        s.fs.lookup(ROOT_INO, OsStr::new(&format!("f{i:04}")))
            .await
            .unwrap();
        if i % 8 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let stats = s.mem.stats();
    assert_eq!(
        (stats.count("ListObjectsV2"), stats.count("HeadObject")),
        (2, 2000),
        "one listing (two pages) and one HEAD per entry, read ahead: nothing asked again"
    );
}

#[tokio::test]
async fn a_stale_name_whose_head_is_under_way_waits_for_it_instead_of_asking_again() {
    let s = setup_with(
        "",
        FsOptions {
            metadata_ttl: Duration::from_millis(50),
            dir_ttl: Duration::from_millis(50),
            ..options()
        },
    );
    for i in 0..200 {
        put(&s.mem, &format!("f{i:03}"), b"x").await;
    }
    s.mem.set_latency(Duration::from_millis(20));
    let fh = s.fs.opendir(ROOT_INO).await.unwrap();
    assert_eq!(s.fs.readdir(fh, 0).await.unwrap().len(), 202);
    tokio::time::sleep(Duration::from_millis(60)).await;
    // Every name is stale now; from the second on, the HEADs run ahead of the tool, which
    // then finds each under way (HEADs slower than the tool).
    for i in 0..200 {
        s.fs.lookup(ROOT_INO, OsStr::new(&format!("f{i:03}")))
            .await
            .unwrap();
    }
    let lists = s.mem.stats().count("ListObjectsV2");
    assert!(
        lists <= 1 + 3,
        "the listing, and f000, f001 (and f002, when asked before the read-ahead task has \
         started) asked for by name: {lists}"
    );
}

#[tokio::test]
async fn names_past_the_cache_bound_are_dropped_and_found_again_when_asked_for() {
    let s = setup_with(
        "",
        FsOptions {
            name_cache_entries: 100,
            metadata_ttl: Duration::from_secs(60),
            dir_ttl: Duration::from_secs(60),
            ..options()
        },
    );
    for i in 0..300 {
        put(&s.mem, &format!("d/f{i:03}"), b"x").await;
    }
    let d = s.fs.lookup(ROOT_INO, OsStr::new("d")).await.unwrap().ino;
    assert_eq!(names(&s.fs, d).await.len(), 300);
    assert!(
        s.fs.names.table().node_count() > 300,
        "just listed: all kept for the grace"
    );
    // Past the grace, the next name entered trims the table to a tenth below the bound.
    tokio::time::sleep(Duration::from_millis(5100)).await;
    put(&s.mem, "e", b"x").await;
    s.fs.lookup(ROOT_INO, OsStr::new("e")).await.unwrap();
    assert!(
        s.fs.names.table().node_count() <= 100,
        "{}",
        s.fs.names.table().node_count()
    );
    // The listing is no longer complete: every name is still found, by asking the store.
    let lists = s.mem.stats().count("ListObjectsV2");
    for i in [0, 150, 299] {
        let f = s.fs.lookup(d, OsStr::new(&format!("f{i:03}"))).await;
        assert_eq!(f.unwrap().size, 1, "f{i:03}");
    }
    assert!(s.fs.lookup(d, OsStr::new("f300")).await.is_err());
    assert_eq!(names(&s.fs, d).await.len(), 300);
    assert!(s.mem.stats().count("ListObjectsV2") > lists);
}

#[tokio::test]
async fn listing_metadata_heads_stay_bounded_however_many_readdir_calls_run_ahead() {
    let s = setup_with(
        "",
        FsOptions {
            listing_metadata: true,
            ..options()
        },
    );
    for i in 0..1000 {
        put(&s.mem, &format!("f{i:04}"), b"x").await;
    }
    s.mem.set_latency(Duration::from_millis(5));
    let fh = s.fs.opendir(ROOT_INO).await.unwrap();
    let mut offset = 0;
    // Small batches, as the kernel asks: each call starts the HEADs of entries further on.
    loop {
        let batch = s.fs.readdir_attrs(fh, offset, 20).await.unwrap();
        let Some(last) = batch.last() else {
            break;
        };
        offset = last.next;
    }
    assert_eq!(s.mem.stats().count("HeadObject"), 1000);
    let max = s.mem.max_heads_in_flight();
    assert!(
        max <= crate::names::META_CONCURRENCY,
        "{max} HEADs were in flight at once"
    );
    assert!(
        max >= crate::names::META_CONCURRENCY / 2,
        "the HEADs ran in parallel: at most {max} at once"
    );
}

#[tokio::test]
async fn the_heads_of_a_listings_first_page_start_while_the_next_page_is_listed() {
    let s = setup_with(
        "",
        FsOptions {
            listing_metadata: true,
            ..options()
        },
    );
    for i in 0..1500 {
        put(&s.mem, &format!("f{i:04}"), b"x").await;
    }
    s.mem.set_latency(Duration::from_millis(5));
    let fh = s.fs.opendir(ROOT_INO).await.unwrap();
    let listing = s.fs.readdir(fh, 0).await.unwrap();
    assert_eq!(listing.len(), 1502);
    assert_eq!(s.mem.stats().count("ListObjectsV2"), 2);
    assert!(
        s.mem.stats().count("HeadObject") > 0,
        "no HEAD started before the listing ended"
    );
}
