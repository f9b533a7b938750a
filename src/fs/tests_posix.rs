//! Specifications of POSIX metadata, symlinks, extended attributes and the write-back journal,
//! run against the in-memory store.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::error::FsError;
use super::tests::{options, put, read_all, setup, write_file, Setup, OWNER};
use super::{Fs, SetAttr, ROOT_INO};
use crate::config::FsOptions;
use crate::localfile::journal::Journal;
use crate::names::inode::Kind;
use crate::store::memory::MemoryStore;
use crate::store::{ObjectStore, PutOptions};

fn meta(mem: &MemoryStore, key: &str, name: &str) -> Option<String> {
    mem.options(key)?.metadata.get(name).cloned()
}

fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

/// A mount with a write-back delay and a journal in `dir` (the cache directory), as the
/// daemon with process id `pid` (a number that is no running process stands for a killed one).
pub(super) fn journaled_as(
    store: Arc<dyn ObjectStore>,
    dir: &std::path::Path,
    delay: Duration,
    pid: &str,
) -> Fs {
    let opts = FsOptions {
        write_back_delay: delay,
        ..options()
    };
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let journal = Arc::new(Journal::open_as(&dir.join("journal"), pid).unwrap());
    Fs::new(
        store,
        String::new(),
        opts,
        staging,
        None,
        None,
        Some(journal),
    )
}

/// `journaled_as` this test process.
pub(super) fn journaled(store: Arc<dyn ObjectStore>, dir: &std::path::Path, delay: Duration) -> Fs {
    journaled_as(store, dir, delay, &std::process::id().to_string())
}

/// The daemon that is killed in the recovery specs (no process has this id).
pub(super) const KILLED: &str = "999999901";

#[tokio::test]
async fn a_new_file_stores_its_creator_mode_and_mtime_s3fs_style() {
    let s = setup();
    let ino = write_file(&s.fs, ROOT_INO, "f", b"x").await;
    assert_eq!(meta(&s.mem, "f", "mode").as_deref(), Some("33184")); // 0o100640
    assert_eq!(meta(&s.mem, "f", "uid").as_deref(), Some("1000"));
    assert_eq!(meta(&s.mem, "f", "gid").as_deref(), Some("100"));
    let attr = s.fs.getattr(ino).await.unwrap();
    assert_eq!((attr.perm, attr.uid, attr.gid), (0o640, 1000, 100));
    assert_eq!(
        meta(&s.mem, "f", "mtime"),
        None,
        "written, never touched: the mtime is the upload's Last-Modified"
    );
}

#[tokio::test]
async fn chmod_chown_and_utimens_of_a_stored_file_persist_by_a_copy_onto_itself() {
    let s = setup();
    put(&s.mem, "f", b"data").await;
    let f = s.fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    let set = SetAttr {
        mode: Some(0o100755),
        uid: Some(7),
        gid: Some(8),
        mtime: Some(at(1_600_000_000, 123_456_789)),
        ..SetAttr::default()
    };
    let attr = s.fs.setattr(f.ino, set).await.unwrap();
    assert_eq!((attr.perm, attr.uid, attr.gid), (0o755, 7, 8));
    assert_eq!(attr.mtime, at(1_600_000_000, 123_456_789));
    assert_eq!(meta(&s.mem, "f", "mode").as_deref(), Some("33261"));
    assert_eq!(
        meta(&s.mem, "f", "mtime").as_deref(),
        Some("1600000000.123456789")
    );
    assert_eq!(&s.mem.bytes("f").unwrap()[..], b"data");
    assert_eq!(s.mem.stats().count("CopyObject"), 1);
    assert_eq!(
        s.mem.stats().count("PutObject"),
        1,
        "only the test's own PUT"
    );
}

#[tokio::test]
async fn a_chmod_whose_copy_the_server_did_not_keep_is_copied_again() {
    let s = setup();
    put(&s.mem, "f", b"data").await;
    let f = s.fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    // Garage keeps the previous version when the copy lands in the same millisecond as the
    // write before it: the copy "succeeds" and changes nothing.
    s.mem.lose_copies(1);
    let attr =
        s.fs.setattr(
            f.ino,
            SetAttr {
                mode: Some(0o100600),
                ..SetAttr::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(attr.perm, 0o600);
    assert_eq!(meta(&s.mem, "f", "mode").as_deref(), Some("33152"));
    assert_eq!(s.mem.stats().count("CopyObject"), 2);
}

#[tokio::test]
async fn a_chmod_the_server_never_keeps_fails_rather_than_pretending() {
    let s = setup();
    put(&s.mem, "f", b"data").await;
    let f = s.fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    s.mem.lose_copies(100);
    assert!(s
        .fs
        .setattr(
            f.ino,
            SetAttr {
                mode: Some(0o100600),
                ..SetAttr::default()
            }
        )
        .await
        .is_err());
    assert_eq!(meta(&s.mem, "f", "mode"), None);
}

#[tokio::test]
async fn a_chmod_of_an_object_too_large_for_one_copy_is_a_multipart_copy() {
    let s = setup();
    let data: Vec<u8> = (0..(11u32 << 20)).map(|i| (i % 251) as u8).collect();
    s.mem
        .put("big", Bytes::from(data.clone()), &PutOptions::default())
        .await
        .unwrap();
    let f = s.fs.lookup(ROOT_INO, OsStr::new("big")).await.unwrap();
    let set = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    s.fs.setattr(f.ino, set).await.unwrap();
    assert_eq!(meta(&s.mem, "big", "mode").as_deref(), Some("33152"));
    assert!(s.mem.bytes("big").unwrap() == data, "the bytes are kept");
    let stats = s.mem.stats();
    assert_eq!(stats.count("CopyObject"), 0, "{stats:?}");
    assert!(stats.count("UploadPartCopy") >= 2, "{stats:?}");
    assert_eq!(
        stats.bytes_sent,
        data.len() as u64,
        "only the test's own PUT sent data"
    );
}

#[tokio::test]
async fn renaming_objects_too_large_for_one_copy_keeps_bytes_and_metadata() {
    let s = setup();
    let data: Vec<u8> = (0..(11u32 << 20)).map(|i| (i % 249) as u8).collect();
    let opts = PutOptions {
        metadata: [("mode".to_string(), "33152".to_string())].into(),
        ..PutOptions::default()
    };
    s.mem
        .put("big", Bytes::from(data.clone()), &opts)
        .await
        .unwrap();
    s.mem
        .put("d/big", Bytes::from(data.clone()), &opts)
        .await
        .unwrap();
    s.fs.lookup(ROOT_INO, OsStr::new("big")).await.unwrap();
    s.fs.rename(
        ROOT_INO,
        OsStr::new("big"),
        ROOT_INO,
        OsStr::new("moved"),
        0,
    )
    .await
    .unwrap();
    s.fs.lookup(ROOT_INO, OsStr::new("d")).await.unwrap();
    s.fs.rename(ROOT_INO, OsStr::new("d"), ROOT_INO, OsStr::new("e"), 0)
        .await
        .unwrap();
    assert_eq!(s.mem.keys(), ["e/big", "moved"]);
    for key in ["moved", "e/big"] {
        assert!(s.mem.bytes(key).unwrap() == data, "{key}: bytes");
        assert_eq!(meta(&s.mem, key, "mode").as_deref(), Some("33152"), "{key}");
    }
    let stats = s.mem.stats();
    assert_eq!(stats.count("CopyObject"), 0, "{stats:?}");
    assert!(stats.count("UploadPartCopy") >= 4, "{stats:?}");
}

#[tokio::test]
async fn stored_metadata_is_what_a_fresh_mount_shows() {
    let s = setup();
    let mut opts = PutOptions::default();
    opts.metadata.insert("mode".into(), "33152".into()); // 0o100600
    opts.metadata.insert("uid".into(), "42".into());
    opts.metadata.insert("mtime".into(), "1500000000.5".into());
    s.mem
        .put("f", Bytes::from_static(b"x"), &opts)
        .await
        .unwrap();
    let f = s.fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    assert_eq!(
        (f.perm, f.uid, f.gid),
        (0o600, 42, 1),
        "gid: the mount default"
    );
    assert_eq!(f.mtime, at(1_500_000_000, 500_000_000));
}

#[tokio::test]
async fn with_listing_metadata_a_listing_fetches_the_metadata_of_the_entries_it_returns() {
    let s = super::tests::setup_with(
        "",
        FsOptions {
            listing_metadata: true,
            ..options()
        },
    );
    let mut opts = PutOptions::default();
    opts.metadata.insert("mode".into(), "33261".into());
    s.mem
        .put("x", Bytes::from_static(b"x"), &opts)
        .await
        .unwrap();
    let fh = s.fs.opendir(ROOT_INO).await.unwrap();
    let entries = s.fs.readdir_attrs(fh, 0, 64).await.unwrap();
    let x = entries.iter().find(|l| &*l.entry.name == "x").unwrap();
    assert_eq!(x.attr.perm, 0o755);
}

/// The inode of `name` as a readdir (`plus`: readdirplus) of the root handed it out.
async fn listed_ino(s: &Setup, name: &str, plus: bool) -> u64 {
    let fh = s.fs.opendir(ROOT_INO).await.unwrap();
    let mut ino = None;
    s.fs.fill_dir(fh, 0, plus, |l| {
        if &*l.entry.name == name {
            ino = Some(l.entry.ino);
        }
        false
    })
    .await
    .unwrap();
    s.fs.releasedir(fh).unwrap();
    ino.expect("listed")
}

#[tokio::test]
async fn an_entry_readdirplus_hands_out_is_referenced_until_the_kernel_forgets_it() {
    let s = setup();
    put(&s.mem, "x", b"x").await;
    let ino = listed_ino(&s, "x", true).await;
    s.fs.unlink(ROOT_INO, OsStr::new("x")).await.unwrap();
    assert!(
        s.fs.getattr(ino).await.is_ok(),
        "the kernel may still use the inode"
    );
    s.fs.forget(ino, 1);
    assert!(matches!(s.fs.getattr(ino).await, Err(FsError::NotFound)));
}

#[tokio::test]
async fn an_entry_plain_readdir_hands_out_takes_no_reference() {
    let s = setup();
    put(&s.mem, "x", b"x").await;
    let ino = listed_ino(&s, "x", false).await;
    s.fs.unlink(ROOT_INO, OsStr::new("x")).await.unwrap();
    assert!(matches!(s.fs.getattr(ino).await, Err(FsError::NotFound)));
}

/// Puts `key` with a stored mode of 0600 and owner 42 (a private file).
async fn put_private(mem: &MemoryStore, key: &str) {
    let mut opts = PutOptions::default();
    opts.metadata.insert("mode".into(), "33152".into()); // 0o100600
    opts.metadata.insert("uid".into(), "42".into());
    mem.put(key, Bytes::from_static(b"secret"), &opts)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_file_named_by_a_listing_for_missing_names_shows_its_stored_mode() {
    // Two missing names make the directory listed; the listing carries no metadata, and the
    // next lookup of a listed file must not hand the kernel the default 0644.
    let s = super::tests::setup_with(
        "",
        FsOptions {
            dir_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(60),
            metadata_ttl: Duration::from_secs(60),
            ..options()
        },
    );
    put_private(&s.mem, "nl/secret").await;
    let nl = s.fs.lookup(ROOT_INO, OsStr::new("nl")).await.unwrap().ino;
    for missing in ["x1", "x2"] {
        assert!(s.fs.lookup(nl, OsStr::new(missing)).await.is_err());
    }
    let f = s.fs.lookup(nl, OsStr::new("secret")).await.unwrap();
    assert_eq!((f.perm, f.uid), (0o600, 42));
    assert_eq!(s.fs.getattr(f.ino).await.unwrap().perm, 0o600);
}

#[tokio::test]
async fn listed_entries_whose_metadata_was_not_read_are_not_given_as_known() {
    let s = super::tests::setup_with(
        "",
        FsOptions {
            listing_metadata: false,
            ..options()
        },
    );
    put_private(&s.mem, "secret").await;
    s.mem
        .put("d/", Bytes::new(), &PutOptions::default())
        .await
        .unwrap();
    let fh = s.fs.opendir(ROOT_INO).await.unwrap();
    let entries = s.fs.readdir_attrs(fh, 0, 64).await.unwrap();
    for name in ["secret", "d"] {
        let e = entries.iter().find(|l| &*l.entry.name == name).unwrap();
        assert!(
            !e.known,
            "{name}: only listed, its attributes are not the stored ones"
        );
    }
    let dot = entries.iter().find(|l| &*l.entry.name == ".").unwrap();
    assert!(dot.known, "the mount root has nothing stored");
    let ino = entries
        .iter()
        .find(|l| &*l.entry.name == "secret")
        .unwrap()
        .entry
        .ino;
    assert_eq!(s.fs.getattr(ino).await.unwrap().perm, 0o600);
}

#[tokio::test]
async fn a_chmod_to_the_mode_a_file_already_has_stores_nothing() {
    let s = setup();
    let opts = PutOptions {
        metadata: [("mode".to_string(), "33188".to_string())].into(),
        ..PutOptions::default()
    };
    s.mem
        .put("f", Bytes::from_static(b"x"), &opts)
        .await
        .unwrap();
    let f = s.fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    let set = SetAttr {
        mode: Some(0o644),
        ..SetAttr::default()
    };
    s.fs.setattr(f.ino, set).await.unwrap();
    assert_eq!(s.mem.stats().count("CopyObject"), 0);
}

#[tokio::test]
async fn ignored_chmod_succeeds_and_changes_nothing() {
    let s = super::tests::setup_with(
        "",
        FsOptions {
            ignore_chmod: true,
            ..options()
        },
    );
    put(&s.mem, "f", b"data").await;
    let f = s.fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    let set = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    let attr = s.fs.setattr(f.ino, set).await.unwrap();
    assert_eq!(attr.perm, 0o644);
    assert_eq!(s.mem.stats().count("CopyObject"), 0);
}

#[tokio::test]
async fn a_directory_keeps_its_mode_and_mtime_on_its_marker() {
    let s = setup();
    let d = s.fs.mkdir(ROOT_INO, OsStr::new("d"), OWNER).await.unwrap();
    assert_eq!(meta(&s.mem, "d/", "mode").as_deref(), Some("16800")); // 0o40640
    let set = SetAttr {
        mode: Some(0o750),
        mtime: Some(at(1_000_000_000, 0)),
        ..SetAttr::default()
    };
    s.fs.setattr(d.ino, set).await.unwrap();
    assert_eq!(meta(&s.mem, "d/", "mode").as_deref(), Some("16872")); // 0o40750
    let fresh = setup();
    let opts = PutOptions {
        metadata: s.mem.options("d/").unwrap().metadata,
        ..PutOptions::default()
    };
    fresh.mem.put("d/", Bytes::new(), &opts).await.unwrap();
    let d = fresh.fs.lookup(ROOT_INO, OsStr::new("d")).await.unwrap();
    assert_eq!(
        (d.kind, d.perm, d.mtime),
        (Kind::Dir, 0o750, at(1_000_000_000, 0))
    );
}

#[tokio::test]
async fn a_symlink_is_an_object_holding_its_target() {
    let s = setup();
    let l =
        s.fs.symlink(ROOT_INO, OsStr::new("l"), b"../target dir/f", OWNER)
            .await
            .unwrap();
    assert_eq!(l.kind, Kind::Symlink);
    assert_eq!(&s.mem.bytes("l").unwrap()[..], b"../target dir/f");
    assert_eq!(meta(&s.mem, "l", "mode").as_deref(), Some("41471")); // 0o120777
                                                                     // Another mount sees a symlink by lookup; in a listing too when it reads metadata.
    for listing_metadata in [false, true] {
        let other = super::tests::setup_with(
            "",
            FsOptions {
                listing_metadata,
                ..options()
            },
        );
        let opts = PutOptions {
            metadata: s.mem.options("l").unwrap().metadata,
            ..PutOptions::default()
        };
        other
            .mem
            .put("l", s.mem.bytes("l").unwrap(), &opts)
            .await
            .unwrap();
        let fh = other.fs.opendir(ROOT_INO).await.unwrap();
        let entries = other.fs.readdir_attrs(fh, 0, 64).await.unwrap();
        let listed = &entries
            .iter()
            .find(|l| &*l.entry.name == "l")
            .unwrap()
            .entry;
        let want = if listing_metadata {
            Kind::Symlink
        } else {
            Kind::File
        };
        assert_eq!(listed.kind, want, "listing_metadata = {listing_metadata}");
        let looked_up = other.fs.lookup(ROOT_INO, OsStr::new("l")).await.unwrap();
        assert_eq!(looked_up.kind, Kind::Symlink);
        let target = other.fs.readlink(looked_up.ino).await.unwrap();
        assert_eq!(&target[..], b"../target dir/f");
    }
}

#[tokio::test]
async fn user_xattrs_are_user_metadata_and_s3_ones_are_read_only() {
    let s = setup();
    put(&s.mem, "f", b"data").await;
    let f = s.fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    s.fs.setxattr(f.ino, "user.Color", b"blue", 0)
        .await
        .unwrap();
    assert_eq!(meta(&s.mem, "f", "color").as_deref(), Some("blue"));
    assert_eq!(s.fs.getxattr(f.ino, "user.color").await.unwrap(), b"blue");
    let names = String::from_utf8(s.fs.listxattr(f.ino).await.unwrap()).unwrap();
    assert!(names.contains("user.color\0"), "{names:?}");
    assert!(matches!(
        s.fs.setxattr(f.ino, "user.color", b"red", 1).await,
        Err(FsError::Exists)
    ));
    assert!(matches!(
        s.fs.setxattr(f.ino, "s3.etag", b"x", 0).await,
        Err(FsError::NotPermitted(_))
    ));
    assert!(
        matches!(
            s.fs.getxattr(f.ino, "security.selinux").await,
            Err(FsError::Unsupported(_))
        ),
        "ENOTSUP, which ls remembers (ENODATA it would ask again for every file)"
    );
    s.fs.removexattr(f.ino, "user.color").await.unwrap();
    assert_eq!(meta(&s.mem, "f", "color"), None);
    assert_eq!(&s.mem.bytes("f").unwrap()[..], b"data");
}

#[tokio::test]
async fn listxattr_names_only_user_attributes_and_s3_ones_are_read_by_name() {
    let s = setup();
    put(&s.mem, "f", b"data").await;
    let f = s.fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    assert_eq!(
        s.fs.listxattr(f.ino).await.unwrap(),
        b"",
        "no user.* attribute yet: nothing to list, whatever S3 says about the object"
    );
    s.fs.setxattr(f.ino, "user.a", b"1", 0).await.unwrap();
    s.fs.setxattr(f.ino, "user.b", b"2", 0).await.unwrap();
    assert_eq!(s.fs.listxattr(f.ino).await.unwrap(), b"user.a\0user.b\0");
    let etag = s.mem.head("f").await.unwrap().etag.unwrap();
    assert_eq!(
        s.fs.getxattr(f.ino, "s3.etag").await.unwrap(),
        etag.trim_matches('"').as_bytes(),
        "s3.* attributes are still there when asked for by name"
    );
    assert_eq!(
        s.fs.getxattr(f.ino, "s3.storage_class").await.unwrap(),
        b"STANDARD"
    );
}

#[tokio::test]
async fn files_closed_at_different_times_are_each_uploaded_when_their_delay_is_over() {
    let mem = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let fs = journaled(mem.clone(), dir.path(), Duration::from_millis(200));
    write_file(&fs, ROOT_INO, "first", b"1").await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    write_file(&fs, ROOT_INO, "second", b"2").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fs.upload_due().await, 0);
    assert_eq!(mem.keys(), ["first"], "the second file's delay is not over");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(fs.upload_due().await, 0);
    assert_eq!(mem.keys(), ["first", "second"]);
}

#[tokio::test]
async fn a_due_file_held_open_is_uploaded_once_it_is_closed() {
    let mem = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let fs = journaled(mem.clone(), dir.path(), Duration::from_millis(20));
    let ino = write_file(&fs, ROOT_INO, "f", b"data").await;
    let (fh, _) = fs.open(ino, libc::O_RDONLY).await.unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(fs.upload_due().await, 0);
    assert!(mem.keys().is_empty(), "not uploaded while open");
    fs.release(fh).await.unwrap();
    assert_eq!(fs.upload_due().await, 0);
    assert_eq!(mem.keys(), ["f"]);
}

#[tokio::test]
async fn write_close_chmod_utimens_rename_is_one_put_under_the_final_name() {
    let mem = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let fs = journaled(mem.clone(), dir.path(), Duration::from_millis(50));
    let ino = write_file(&fs, ROOT_INO, ".f.tmp", b"content").await;
    assert!(mem.keys().is_empty(), "not uploaded at close");
    let set = SetAttr {
        mode: Some(0o600),
        mtime: Some(at(1_234_567_890, 5)),
        ..SetAttr::default()
    };
    fs.setattr(ino, set).await.unwrap();
    fs.rename(ROOT_INO, OsStr::new(".f.tmp"), ROOT_INO, OsStr::new("f"), 0)
        .await
        .unwrap();
    assert_eq!(fs.upload_due().await, 0);
    assert!(mem.keys().is_empty(), "the delay is not over");
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(fs.upload_due().await, 0);
    assert_eq!(mem.keys(), ["f"]);
    assert_eq!(meta(&mem, "f", "mode").as_deref(), Some("33152"));
    assert_eq!(
        meta(&mem, "f", "mtime").as_deref(),
        Some("1234567890.000000005")
    );
    let stats = mem.stats();
    assert_eq!(stats.count("PutObject"), 1, "{stats:?}");
    assert_eq!(stats.count("CopyObject") + stats.count("DeleteObject"), 0);
    assert!(
        Journal::open(&dir.path().join("journal"))
            .unwrap()
            .entries()
            .unwrap()
            .is_empty(),
        "uploaded: no longer journaled"
    );
}

#[tokio::test]
async fn a_closed_file_left_by_a_killed_daemon_is_uploaded_by_the_next_one() {
    let mem = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    put(&mem, "old", b"0123456789").await;
    {
        let fs = journaled_as(mem.clone(), dir.path(), Duration::from_secs(3600), KILLED);
        let ino = write_file(&fs, ROOT_INO, "new", b"fresh bytes").await;
        let set = SetAttr {
            mode: Some(0o700),
            ..SetAttr::default()
        };
        fs.setattr(ino, set).await.unwrap();
        let old = fs.lookup(ROOT_INO, OsStr::new("old")).await.unwrap();
        let (fh, _) = fs.open(old.ino, libc::O_RDWR).await.unwrap();
        fs.write(fh, 2, Bytes::from_static(b"AB")).await.unwrap();
        fs.flush(fh).await.unwrap();
        fs.release(fh).await.unwrap();
        // Dropped without a drain: what a kill -9 leaves.
    }
    assert_eq!(mem.keys(), ["old"]);
    assert_eq!(&mem.bytes("old").unwrap()[..], b"0123456789");
    let fs = journaled(mem.clone(), dir.path(), Duration::from_secs(3600));
    assert_eq!(fs.recover().await, (2, 0));
    assert_eq!(fs.status().replayed, 2, "both entries read back");
    assert_eq!(&mem.bytes("new").unwrap()[..], b"fresh bytes");
    assert_eq!(meta(&mem, "new", "mode").as_deref(), Some("33216")); // 0o100700
    assert_eq!(&mem.bytes("old").unwrap()[..], b"01AB456789");
    assert_eq!(fs.recover().await, (0, 0), "nothing left to replay");
    assert_eq!(fs.status().replayed, 2);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("staging"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "staged data removed once uploaded");
}

#[tokio::test]
async fn a_pending_file_in_a_renamed_directory_is_replayed_under_its_new_key() {
    let mem = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    {
        let fs = journaled_as(mem.clone(), dir.path(), Duration::from_secs(3600), KILLED);
        let d = fs.mkdir(ROOT_INO, OsStr::new("a"), OWNER).await.unwrap();
        let (_, fh) = fs
            .create(d.ino, OsStr::new("f"), libc::O_WRONLY, OWNER)
            .await
            .unwrap();
        fs.write(fh, 0, Bytes::from_static(b"x")).await.unwrap();
        fs.flush(fh).await.unwrap();
        fs.release(fh).await.unwrap();
        fs.rename(ROOT_INO, OsStr::new("a"), ROOT_INO, OsStr::new("b"), 0)
            .await
            .unwrap();
    }
    let fs = journaled(mem.clone(), dir.path(), Duration::from_secs(3600));
    assert_eq!(fs.recover().await, (1, 0));
    assert_eq!(&mem.bytes("b/f").unwrap()[..], b"x");
    assert!(mem.bytes("a/f").is_none());
}

#[tokio::test]
async fn an_unlinked_pending_file_is_neither_uploaded_nor_replayed() {
    let mem = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    {
        let fs = journaled_as(mem.clone(), dir.path(), Duration::from_secs(3600), KILLED);
        write_file(&fs, ROOT_INO, "gone", b"x").await;
        fs.unlink(ROOT_INO, OsStr::new("gone")).await.unwrap();
    }
    let fs = journaled(mem.clone(), dir.path(), Duration::from_secs(3600));
    assert_eq!(fs.recover().await, (0, 0));
    assert!(mem.keys().is_empty());
}

#[tokio::test]
async fn fsync_uploads_at_once_whatever_the_delay() {
    let mem = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let fs = journaled(mem.clone(), dir.path(), Duration::from_secs(3600));
    let (_, fh) = fs
        .create(ROOT_INO, OsStr::new("f"), libc::O_WRONLY, OWNER)
        .await
        .unwrap();
    fs.write(fh, 0, Bytes::from_static(b"now")).await.unwrap();
    fs.fsync(fh).await.unwrap();
    assert_eq!(&mem.bytes("f").unwrap()[..], b"now");
    fs.flush(fh).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(fs.status().pending, 0, "nothing left for the write-back");
}

#[tokio::test]
async fn a_pending_file_reads_back_and_drain_uploads_it() {
    let mem = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let fs = journaled(mem.clone(), dir.path(), Duration::from_secs(3600));
    let ino = write_file(&fs, ROOT_INO, "f", b"abc").await;
    assert_eq!(read_all(&fs, ino).await, b"abc");
    assert_eq!(fs.status().pending, 1);
    assert!(fs.drain().await.is_empty());
    assert_eq!(&mem.bytes("f").unwrap()[..], b"abc");
    assert_eq!(fs.status().pending, 0);
}

#[tokio::test]
async fn a_hard_link_target_that_is_a_symlink_is_not_truncated() {
    let s: Setup = setup();
    let l =
        s.fs.symlink(ROOT_INO, OsStr::new("l"), b"t", OWNER)
            .await
            .unwrap();
    assert!(matches!(
        s.fs.setattr(l.ino, super::tests::size(0)).await,
        Err(FsError::Invalid(_))
    ));
}

#[tokio::test]
async fn the_write_back_loop_uploads_a_closed_file_once_its_delay_is_over() {
    let mem = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(journaled(
        mem.clone(),
        dir.path(),
        Duration::from_millis(300),
    ));
    let loop_task = tokio::spawn(fs.clone().write_back());
    write_file(&fs, ROOT_INO, "f", b"data").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(mem.keys().is_empty(), "the delay is not over");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while mem.keys().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        mem.keys(),
        ["f"],
        "uploaded by the loop, with no one asking"
    );
    loop_task.abort();
}

#[tokio::test]
async fn mknod_stores_an_empty_object_whose_mode_and_rdev_say_what_it_is() {
    let s = setup();
    let dev = libc::makedev(8, 17) as u32;
    let attr =
        s.fs.mknod(
            ROOT_INO,
            OsStr::new("disk"),
            libc::S_IFBLK | 0o660,
            dev,
            OWNER,
        )
        .await
        .unwrap();
    assert_eq!((attr.kind, attr.rdev), (Kind::Special(libc::S_IFBLK), dev));
    s.fs.mknod(
        ROOT_INO,
        OsStr::new("pipe"),
        libc::S_IFIFO | 0o600,
        0,
        OWNER,
    )
    .await
    .unwrap();
    assert_eq!(s.mem.bytes("disk").unwrap().len(), 0);
    assert_eq!(
        meta(&s.mem, "disk", "mode"),
        Some((libc::S_IFBLK | 0o640).to_string()),
        "the caller's permission bits (OWNER's 0640)"
    );
    assert_eq!(meta(&s.mem, "disk", "rdev"), Some(dev.to_string()));
    assert_eq!(
        meta(&s.mem, "pipe", "rdev"),
        None,
        "only devices have a number"
    );
    // Another mount of the same bucket sees them for what they are.
    let store: Arc<dyn ObjectStore> = s.mem.clone();
    let other = Fs::new(
        store,
        String::new(),
        options(),
        std::env::temp_dir(),
        None,
        None,
        None,
    );
    let disk = other.lookup(ROOT_INO, OsStr::new("disk")).await.unwrap();
    assert_eq!((disk.kind, disk.rdev), (Kind::Special(libc::S_IFBLK), dev));
    let pipe = other.lookup(ROOT_INO, OsStr::new("pipe")).await.unwrap();
    assert_eq!(pipe.kind, Kind::Special(libc::S_IFIFO));
    assert!(matches!(
        s.fs.mknod(
            ROOT_INO,
            OsStr::new("pipe"),
            libc::S_IFIFO | 0o600,
            0,
            OWNER
        )
        .await,
        Err(FsError::Exists)
    ));
}

/// A moment later than every time taken before it (the clock moves on).
async fn tick() -> SystemTime {
    tokio::time::sleep(Duration::from_millis(5)).await;
    SystemTime::now()
}

#[tokio::test]
async fn the_ctime_moves_with_every_change_and_a_chmod_stores_it() {
    let s = setup();
    let ino = write_file(&s.fs, ROOT_INO, "f", b"data").await;
    let created = s.fs.getattr(ino).await.unwrap();
    let before = tick().await;
    let set = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    let chmodded = s.fs.setattr(ino, set).await.unwrap();
    assert!(chmodded.ctime >= before, "chmod changes the ctime");
    assert_eq!(chmodded.mtime, created.mtime, "and not the mtime");
    let stored = meta(&s.mem, "f", "ctime").expect("stored with the mode");
    assert_eq!(stored, crate::names::posix::format_time(chmodded.ctime));

    let before = tick().await;
    s.fs.setxattr(ino, "user.tag", b"v", 0).await.unwrap();
    assert!(s.fs.getattr(ino).await.unwrap().ctime >= before, "setxattr");

    let before = tick().await;
    let (fh, _) = s.fs.open(ino, libc::O_RDWR).await.unwrap();
    s.fs.write(fh, 0, Bytes::from_static(b"D")).await.unwrap();
    let written = s.fs.getattr(ino).await.unwrap();
    assert!(written.ctime >= before && written.mtime >= before, "write");
    s.fs.flush(fh).await.unwrap();
    s.fs.release(fh).await.unwrap();
    assert_eq!(
        meta(&s.mem, "f", "ctime"),
        None,
        "a write leaves it to Last-Modified"
    );

    let before = tick().await;
    s.fs.rename(ROOT_INO, OsStr::new("f"), ROOT_INO, OsStr::new("g"), 0)
        .await
        .unwrap();
    let g = s.fs.lookup(ROOT_INO, OsStr::new("g")).await.unwrap();
    assert!(g.ctime >= before, "rename");

    let unchanged = g.ctime;
    tick().await;
    let refused = SetAttr {
        size: Some(1),
        ..SetAttr::default()
    };
    let dir =
        s.fs.mkdir(ROOT_INO, OsStr::new("d"), OWNER)
            .await
            .unwrap()
            .ino;
    let dir_ctime = s.fs.getattr(dir).await.unwrap().ctime;
    assert!(
        s.fs.setattr(dir, refused).await.is_err(),
        "truncating a directory fails"
    );
    let after = s.fs.getattr(dir).await.unwrap().ctime;
    assert_eq!(after, dir_ctime, "a failed change");
    assert_eq!(s.fs.getattr(g.ino).await.unwrap().ctime, unchanged);
}

#[tokio::test]
async fn a_directory_s_times_move_when_entries_come_and_go_until_utimens_sets_them() {
    let s = setup();
    let d = s.fs.mkdir(ROOT_INO, OsStr::new("d"), OWNER).await.unwrap();
    let e = s.fs.mkdir(ROOT_INO, OsStr::new("e"), OWNER).await.unwrap();
    let attr = |s: &Setup, ino| {
        let fs = s.fs.clone();
        async move { fs.getattr(ino).await.unwrap() }
    };

    let before = tick().await;
    write_file(&s.fs, d.ino, "f", b"x").await;
    let a = attr(&s, d.ino).await;
    assert!(a.mtime >= before && a.ctime >= before, "create");

    let before = tick().await;
    s.fs.rename(d.ino, OsStr::new("f"), e.ino, OsStr::new("f"), 0)
        .await
        .unwrap();
    assert!(attr(&s, d.ino).await.mtime >= before, "renamed out of d");
    assert!(attr(&s, e.ino).await.mtime >= before, "renamed into e");

    let before = tick().await;
    s.fs.unlink(e.ino, OsStr::new("f")).await.unwrap();
    assert!(attr(&s, e.ino).await.mtime >= before, "unlink");

    let before = tick().await;
    s.fs.symlink(d.ino, OsStr::new("l"), b"t", OWNER)
        .await
        .unwrap();
    assert!(attr(&s, d.ino).await.mtime >= before, "symlink");

    let set = SetAttr {
        mtime: Some(at(1_600_000_000, 0)),
        ..SetAttr::default()
    };
    s.fs.setattr(d.ino, set).await.unwrap();
    assert_eq!(
        attr(&s, d.ino).await.mtime,
        at(1_600_000_000, 0),
        "utimens stands"
    );
    let untouched = attr(&s, ROOT_INO).await.mtime;
    s.fs.setattr(
        d.ino,
        SetAttr {
            mode: Some(0o700),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        attr(&s, d.ino).await.mtime,
        at(1_600_000_000, 0),
        "chmod is no entry change"
    );
    assert_eq!(
        attr(&s, ROOT_INO).await.mtime,
        untouched,
        "nor is a change below"
    );
}

#[tokio::test]
async fn a_directory_rename_whose_keys_would_be_too_long_changes_nothing() {
    let opts = FsOptions {
        max_key_length: 20,
        ..options()
    };
    let s = super::tests::setup_with("", opts);
    let src =
        s.fs.mkdir(ROOT_INO, OsStr::new("src"), OWNER)
            .await
            .unwrap();
    write_file(&s.fs, src.ino, "a-long-name", b"x").await; // "src/a-long-name": 15
    s.fs.mkdir(ROOT_INO, OsStr::new("empty-target"), OWNER)
        .await
        .unwrap();
    let moved =
        s.fs.rename(
            ROOT_INO,
            OsStr::new("src"),
            ROOT_INO,
            OsStr::new("empty-target"),
            0,
        )
        .await;
    assert!(matches!(moved, Err(FsError::NameTooLong)), "{moved:?}");
    let mut keys = s.mem.keys();
    keys.sort();
    assert_eq!(
        keys,
        ["empty-target/", "src/", "src/a-long-name"],
        "nothing moved or lost"
    );
}
