//! Specifications of several clients writing one bucket: every upload is conditional on the
//! object its file was based on, and a conflict keeps both versions (run against the memory
//! store, which honours conditions as S3 does).

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::error::{FsError, FsResult};
use super::tests::{options, put, read_all, setup, setup_with, write_file, Setup, OWNER};
use super::tests_failures::{failing, mount};
use super::{Attr, ROOT_INO};
use crate::config::{ConflictPolicy, FsOptions};
use crate::names::posix::CLAIM_KEY;
use crate::store::failing::{FailingStore, Failure, Op};
use crate::store::ObjectStore;

/// The keys of `mem` that keep this host's version of `key` after a conflict.
fn conflict_copies(s: &Setup, key: &str) -> Vec<String> {
    let prefix = format!("{key}.conflict-");
    s.mem
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(&prefix))
        .collect()
}

/// A mount that trusts the attributes it saw for a minute: an operation on a name does not
/// look at the store first, so another client's change meanwhile goes unseen until then.
fn trusting_attributes() -> Setup {
    setup_with(
        "",
        FsOptions {
            metadata_ttl: std::time::Duration::from_secs(60),
            ..options()
        },
    )
}

/// Opens `name` for writing, writes `data` at 0, and returns the handle (not closed).
async fn open_and_write(s: &Setup, name: &str, data: &'static [u8]) -> u64 {
    let ino = s.fs.lookup(ROOT_INO, OsStr::new(name)).await.unwrap().ino;
    let (fh, _) = s.fs.open(ino, libc::O_RDWR).await.unwrap();
    s.fs.write(fh, 0, Bytes::from_static(data)).await.unwrap();
    fh
}

#[tokio::test]
async fn an_update_over_another_clients_newer_object_keeps_both_and_reports_it() {
    let s = setup();
    put(&s.mem, "f", b"old").await;
    let fh = open_and_write(&s, "f", b"mine").await;
    put(&s.mem, "f", b"theirs").await; // another host, meanwhile
    let closed = s.fs.flush(fh).await;
    s.fs.release(fh).await.unwrap();
    let Err(FsError::Conflict { key, kept_as }) = closed else {
        panic!("the waiter hears of the conflict: {closed:?}");
    };
    assert_eq!(key, "f");
    assert_eq!(
        s.mem.bytes("f").unwrap(),
        "theirs",
        "the other version stays"
    );
    assert_eq!(conflict_copies(&s, "f"), std::slice::from_ref(&kept_as));
    assert_eq!(
        s.mem.bytes(&kept_as).unwrap(),
        "mine",
        "ours is kept next to it"
    );
    let status = s.fs.status();
    assert_eq!(status.conflict_total, 1);
    assert_eq!(status.pending, 0, "nothing is left to upload");
    let ino = s.fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap().ino;
    assert_eq!(
        read_all(&s.fs, ino).await,
        b"theirs",
        "the name shows theirs"
    );
}

#[tokio::test]
async fn a_new_file_whose_name_another_client_took_meanwhile_keeps_both() {
    let s = setup();
    let (_, fh) =
        s.fs.create(ROOT_INO, OsStr::new("n"), libc::O_WRONLY, OWNER)
            .await
            .unwrap();
    s.fs.write(fh, 0, Bytes::from_static(b"mine"))
        .await
        .unwrap();
    put(&s.mem, "n", b"theirs").await;
    let closed = s.fs.flush(fh).await;
    s.fs.release(fh).await.unwrap();
    assert!(
        matches!(closed, Err(FsError::Conflict { .. })),
        "{closed:?}"
    );
    assert_eq!(s.mem.bytes("n").unwrap(), "theirs");
    let copies = conflict_copies(&s, "n");
    assert_eq!(copies.len(), 1);
    assert_eq!(s.mem.bytes(&copies[0]).unwrap(), "mine");
}

#[tokio::test]
async fn a_file_written_and_uploaded_again_by_this_mount_is_no_conflict() {
    let s = setup();
    let ino = write_file(&s.fs, ROOT_INO, "f", b"one").await;
    for data in [&b"two"[..], b"three", b"four"] {
        let (fh, _) = s.fs.open(ino, libc::O_RDWR).await.unwrap();
        s.fs.write(fh, 0, Bytes::copy_from_slice(data))
            .await
            .unwrap();
        s.fs.fsync(fh).await.unwrap();
        s.fs.flush(fh).await.unwrap();
        s.fs.release(fh).await.unwrap();
    }
    assert_eq!(s.mem.bytes("f").unwrap(), "foure");
    assert!(conflict_copies(&s, "f").is_empty());
    assert_eq!(s.fs.status().conflict_total, 0);
}

#[tokio::test]
async fn a_renamed_file_replaces_what_its_new_name_held() {
    let s = setup();
    put(&s.mem, "dst", b"before").await;
    let (_, fh) =
        s.fs.create(ROOT_INO, OsStr::new("tmp"), libc::O_WRONLY, OWNER)
            .await
            .unwrap();
    s.fs.write(fh, 0, Bytes::from_static(b"new")).await.unwrap();
    s.fs.lookup(ROOT_INO, OsStr::new("dst")).await.unwrap();
    s.fs.rename(ROOT_INO, OsStr::new("tmp"), ROOT_INO, OsStr::new("dst"), 0)
        .await
        .unwrap();
    s.fs.flush(fh).await.unwrap();
    s.fs.release(fh).await.unwrap();
    assert_eq!(
        s.mem.bytes("dst").unwrap(),
        "new",
        "rsync's temp-then-rename"
    );
    assert!(conflict_copies(&s, "dst").is_empty());
}

#[tokio::test]
async fn with_the_overwrite_policy_the_last_writer_wins() {
    let s = setup_with(
        "",
        FsOptions {
            conflict: ConflictPolicy::Overwrite,
            ..options()
        },
    );
    put(&s.mem, "f", b"old").await;
    let fh = open_and_write(&s, "f", b"mine").await;
    put(&s.mem, "f", b"theirs").await;
    s.fs.flush(fh).await.unwrap();
    s.fs.release(fh).await.unwrap();
    assert_eq!(s.mem.bytes("f").unwrap(), "mine");
    assert!(conflict_copies(&s, "f").is_empty());
}

/// `open(name, O_WRONLY | O_CREAT | O_EXCL)` in the root, as `OWNER`.
async fn create_exclusive(s: &Setup, name: &str) -> FsResult<(Attr, u64)> {
    s.fs.create(
        ROOT_INO,
        OsStr::new(name),
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        OWNER,
    )
    .await
}

fn exclusive_in_bucket() -> Setup {
    setup_with(
        "",
        FsOptions {
            exclusive_in_bucket: true,
            ..options()
        },
    )
}

#[tokio::test]
async fn without_exclusive_in_bucket_an_exclusive_create_costs_no_request_and_a_lost_race_keeps_both(
) {
    let s = setup();
    assert!(s.fs.lookup(ROOT_INO, OsStr::new("tmp")).await.is_err());
    let requests = s.mem.stats().total_requests();
    let (_, fh) = create_exclusive(&s, "tmp").await.unwrap();
    assert_eq!(
        s.mem.stats().total_requests(),
        requests,
        "rsync's mkstemp stays cheap"
    );
    s.fs.write(fh, 0, Bytes::from_static(b"mine"))
        .await
        .unwrap();
    put(&s.mem, "tmp", b"theirs").await;
    let closed = s.fs.flush(fh).await;
    s.fs.release(fh).await.unwrap();
    assert!(
        matches!(closed, Err(FsError::Conflict { .. })),
        "{closed:?}"
    );
    assert_eq!(s.mem.bytes("tmp").unwrap(), "theirs");
    assert_eq!(conflict_copies(&s, "tmp").len(), 1);
}

#[tokio::test]
async fn an_exclusive_create_of_a_name_another_client_took_meanwhile_is_eexist() {
    let s = exclusive_in_bucket();
    assert!(s.fs.lookup(ROOT_INO, OsStr::new("lock")).await.is_err());
    put(&s.mem, "lock", b"theirs").await; // another host wins the race
    let created = create_exclusive(&s, "lock").await;
    assert!(matches!(created, Err(FsError::Exists)), "{created:?}");
    assert_eq!(s.mem.bytes("lock").unwrap(), "theirs");
}

#[tokio::test]
async fn an_exclusive_create_reserves_the_name_in_the_bucket_at_once() {
    let s = exclusive_in_bucket();
    let (_, fh) = create_exclusive(&s, "lock").await.unwrap();
    assert_eq!(
        s.mem.bytes("lock").unwrap(),
        "",
        "reserved before the first write"
    );
    assert_eq!(
        s.mem.options("lock").unwrap().metadata.get("mode").cloned(),
        Some((libc::S_IFREG | 0o640).to_string()),
        "with its mode"
    );
    let claim = |key: &str| s.mem.options(key).unwrap().metadata.get(CLAIM_KEY).cloned();
    let first = claim("lock").expect("a claim: whose empty object this is");
    let (_, other) = create_exclusive(&s, "lock2").await.unwrap();
    s.fs.release(other).await.unwrap();
    assert_ne!(claim("lock2"), Some(first), "each create its own");
    s.fs.write(fh, 0, Bytes::from_static(b"pid 42"))
        .await
        .unwrap();
    s.fs.flush(fh).await.unwrap();
    s.fs.release(fh).await.unwrap();
    assert_eq!(s.mem.bytes("lock").unwrap(), "pid 42");
    assert_eq!(claim("lock"), None, "gone with the first upload");
    assert!(conflict_copies(&s, "lock").is_empty());
}

#[tokio::test]
async fn a_rename_whose_source_another_client_replaced_meanwhile_leaves_the_new_source() {
    let s = trusting_attributes(); // (the rename does not look at the store first)
    put(&s.mem, "a", b"old").await;
    s.fs.lookup(ROOT_INO, OsStr::new("a")).await.unwrap();
    put(&s.mem, "a", b"newer").await; // another host, after this mount saw "old"
    s.fs.rename(ROOT_INO, OsStr::new("a"), ROOT_INO, OsStr::new("b"), 0)
        .await
        .unwrap();
    assert_eq!(
        s.mem.bytes("a").unwrap(),
        "newer",
        "the other host's version is not deleted"
    );
    assert!(s.mem.bytes("b").is_some());
}

#[tokio::test]
async fn a_killed_daemons_file_another_client_wrote_meanwhile_is_kept_as_a_conflict() {
    use super::tests_posix::{journaled, journaled_as, KILLED};
    use std::sync::Arc;
    use std::time::Duration;
    let mem = Arc::new(crate::store::memory::MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    {
        let fs = journaled_as(mem.clone(), dir.path(), Duration::from_secs(3600), KILLED);
        write_file(&fs, ROOT_INO, "f", b"mine").await; // journaled, not uploaded: killed
    }
    put(&mem, "f", b"theirs").await; // another host, while this one was down
    let fs = journaled(mem.clone(), dir.path(), Duration::from_secs(3600));
    fs.recover().await;
    assert_eq!(
        mem.bytes("f").unwrap(),
        "theirs",
        "not overwritten by the replay"
    );
    let copies: Vec<String> = mem
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("f.conflict-"))
        .collect();
    assert_eq!(copies.len(), 1, "{:?}", mem.keys());
    assert_eq!(mem.bytes(&copies[0]).unwrap(), "mine");
    assert_eq!(fs.status().pending, 0);
    assert_eq!(fs.status().conflict_total, 1);
}

#[tokio::test]
async fn a_stored_file_renamed_twice_leaves_nothing_under_its_earlier_names() {
    // The memory store gives a copy its own ETag (as S3 does for multipart and SSE-KMS
    // objects): the second rename must delete the copy the first one made. The file stays
    // open, so its node is not looked up again in between.
    let s = setup();
    let (_, fh) =
        s.fs.create(ROOT_INO, OsStr::new("a"), libc::O_RDWR, OWNER)
            .await
            .unwrap();
    s.fs.write(fh, 0, Bytes::from_static(b"data"))
        .await
        .unwrap();
    s.fs.fsync(fh).await.unwrap();
    for (from, to) in [("a", "b"), ("b", "c")] {
        s.fs.rename(ROOT_INO, OsStr::new(from), ROOT_INO, OsStr::new(to), 0)
            .await
            .unwrap();
    }
    s.fs.flush(fh).await.unwrap();
    s.fs.release(fh).await.unwrap();
    assert_eq!(s.mem.keys(), ["c"]);
    assert_eq!(s.mem.bytes("c").unwrap(), "data");
}

#[tokio::test]
async fn a_rename_onto_a_name_another_client_took_meanwhile_is_refused() {
    // (a missing name is trusted for a minute: the rename does not look at the store first)
    let s = setup_with(
        "",
        FsOptions {
            negative_ttl: std::time::Duration::from_secs(60),
            ..options()
        },
    );
    write_file(&s.fs, ROOT_INO, "a", b"mine").await;
    assert!(s.fs.lookup(ROOT_INO, OsStr::new("b")).await.is_err());
    put(&s.mem, "b", b"theirs").await; // seen missing here, written there
    let renamed =
        s.fs.rename(ROOT_INO, OsStr::new("a"), ROOT_INO, OsStr::new("b"), 0)
            .await;
    assert!(matches!(renamed, Err(FsError::Exists)), "{renamed:?}");
    assert_eq!(s.mem.bytes("b").unwrap(), "theirs");
    assert_eq!(s.mem.bytes("a").unwrap(), "mine", "nothing moved");
}

#[tokio::test]
async fn an_unlink_of_a_file_another_client_replaced_meanwhile_leaves_the_new_version() {
    let s = trusting_attributes(); // (the unlink does not look at the store first)
    put(&s.mem, "a", b"old").await;
    put(&s.mem, "b", b"mine").await;
    s.fs.lookup(ROOT_INO, OsStr::new("a")).await.unwrap();
    s.fs.lookup(ROOT_INO, OsStr::new("b")).await.unwrap();
    put(&s.mem, "a", b"newer").await; // another host, after this mount saw "old"
    s.fs.unlink(ROOT_INO, OsStr::new("a")).await.unwrap();
    s.fs.unlink(ROOT_INO, OsStr::new("b")).await.unwrap();
    assert_eq!(
        s.mem.bytes("a").unwrap(),
        "newer",
        "the other host's version is not deleted"
    );
    assert!(s.mem.bytes("b").is_none(), "what this mount saw is deleted");
}

/// A mount that trusts a missing name for a minute: a create does not look at the store
/// first, so a name another client creates meanwhile goes unseen until then.
fn trusting_missing_names() -> Setup {
    setup_with(
        "",
        FsOptions {
            negative_ttl: std::time::Duration::from_secs(60),
            ..options()
        },
    )
}

#[tokio::test]
async fn a_symlink_onto_a_name_another_client_took_meanwhile_is_eexist_and_changes_nothing() {
    let s = trusting_missing_names();
    assert!(s.fs.lookup(ROOT_INO, OsStr::new("l")).await.is_err());
    put(&s.mem, "l", b"theirs").await;
    let made =
        s.fs.symlink(ROOT_INO, OsStr::new("l"), b"target", OWNER)
            .await;
    assert!(matches!(made, Err(FsError::Exists)), "{made:?}");
    assert_eq!(s.mem.bytes("l").unwrap(), "theirs");
}

#[tokio::test]
async fn a_mknod_onto_a_name_another_client_took_meanwhile_is_eexist_and_changes_nothing() {
    let s = trusting_missing_names();
    assert!(s.fs.lookup(ROOT_INO, OsStr::new("fifo")).await.is_err());
    put(&s.mem, "fifo", b"theirs").await;
    let made =
        s.fs.mknod(
            ROOT_INO,
            OsStr::new("fifo"),
            libc::S_IFIFO | 0o644,
            0,
            OWNER,
        )
        .await;
    assert!(matches!(made, Err(FsError::Exists)), "{made:?}");
    assert_eq!(s.mem.bytes("fifo").unwrap(), "theirs");
}

#[tokio::test]
async fn a_mkdir_of_a_directory_another_client_made_meanwhile_is_eexist_and_keeps_its_marker() {
    let s = trusting_missing_names();
    assert!(s.fs.lookup(ROOT_INO, OsStr::new("d")).await.is_err());
    put(&s.mem, "d/", b"their marker").await;
    let made = s.fs.mkdir(ROOT_INO, OsStr::new("d"), OWNER).await;
    assert!(matches!(made, Err(FsError::Exists)), "{made:?}");
    assert_eq!(s.mem.bytes("d/").unwrap(), "their marker");
}

/// A mount over a store that can stall chosen requests, with `d/a` and `d/b` stored.
async fn a_directory_of_two(opts: FsOptions) -> (Setup, Arc<FailingStore>) {
    let (mem, store) = failing();
    let (fs, staging) = mount(store.clone(), opts);
    let s = Setup {
        fs,
        mem,
        _staging: staging,
    };
    put(&s.mem, "d/a", b"a").await;
    put(&s.mem, "d/b", b"b").await;
    s.fs.lookup(ROOT_INO, OsStr::new("d")).await.unwrap();
    (s, store)
}

/// Renames `d` to `e` in a task, with the copy to `stalled` held up for half a second.
fn rename_d_to_e_stalling(
    s: &Setup,
    store: &FailingStore,
    stalled: &'static str,
) -> tokio::task::JoinHandle<Result<(), FsError>> {
    store.fail(
        Failure::on(Op::CopyObject)
            .key(move |k| k == stalled)
            .once()
            .stall(Duration::from_millis(500)),
    );
    let fs = s.fs.clone();
    tokio::spawn(async move {
        fs.rename(ROOT_INO, OsStr::new("d"), ROOT_INO, OsStr::new("e"), 0)
            .await
    })
}

/// Waits until `key` is in the store.
async fn until_stored(s: &Setup, key: &str) {
    while s.mem.bytes(key).is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_directory_rename_leaves_a_file_another_client_rewrote_after_its_copy_under_the_old_name()
{
    let (s, store) = a_directory_of_two(options()).await;
    let renamed = rename_d_to_e_stalling(&s, &store, "e/b");
    until_stored(&s, "e/a").await;
    put(&s.mem, "d/a", b"newer").await; // another host, after the copy, before the delete
    renamed.await.unwrap().unwrap();
    assert_eq!(
        s.mem.bytes("d/a").unwrap(),
        "newer",
        "the other host's version is not deleted"
    );
    assert_eq!(s.mem.bytes("e/a").unwrap(), "a", "the version copied moved");
    assert_eq!(s.mem.bytes("e/b").unwrap(), "b");
    assert!(s.mem.bytes("d/b").is_none());
}

#[tokio::test]
async fn a_directory_rename_moves_the_current_version_of_a_file_another_client_replaced_since_the_listing(
) {
    let (s, store) = a_directory_of_two(options()).await;
    let renamed = rename_d_to_e_stalling(&s, &store, "e/a");
    until_stored(&s, "e/b").await; // listed, and the copy of d/a is under way
    put(&s.mem, "d/a", b"newer").await;
    renamed.await.unwrap().unwrap();
    assert_eq!(
        s.mem.bytes("e/a").unwrap(),
        "newer",
        "the rename moves what the directory holds"
    );
    assert!(
        s.mem.bytes("d/a").is_none(),
        "and leaves no second copy behind"
    );
}

#[tokio::test]
async fn a_directory_rename_onto_a_name_another_client_wrote_into_meanwhile_is_refused_and_undone()
{
    let opts = FsOptions {
        negative_ttl: Duration::from_secs(60),
        ..options()
    };
    let (s, _) = a_directory_of_two(opts).await;
    assert!(s.fs.lookup(ROOT_INO, OsStr::new("e")).await.is_err());
    put(&s.mem, "e/b", b"theirs").await; // seen missing here, written there
    let renamed =
        s.fs.rename(ROOT_INO, OsStr::new("d"), ROOT_INO, OsStr::new("e"), 0)
            .await;
    assert!(matches!(renamed, Err(FsError::NotEmpty)), "{renamed:?}");
    assert_eq!(s.mem.keys(), ["d/a", "d/b", "e/b"], "our copies are undone");
    assert_eq!(s.mem.bytes("e/b").unwrap(), "theirs");
    assert_eq!(s.mem.bytes("d/a").unwrap(), "a", "nothing moved");
}

#[tokio::test]
async fn a_file_being_written_in_a_renamed_directory_replaces_its_copy_and_nothing_newer() {
    let s = setup();
    let d =
        s.fs.mkdir(ROOT_INO, OsStr::new("d"), OWNER)
            .await
            .unwrap()
            .ino;
    let f = write_file(&s.fs, d, "f", b"old").await;
    let (fh, _) = s.fs.open(f, libc::O_RDWR).await.unwrap();
    s.fs.write(fh, 0, Bytes::from_static(b"mine"))
        .await
        .unwrap();
    s.fs.rename(ROOT_INO, OsStr::new("d"), ROOT_INO, OsStr::new("e"), 0)
        .await
        .unwrap();
    put(&s.mem, "e/f", b"theirs").await; // another host, after the rename
    let closed = s.fs.flush(fh).await;
    s.fs.release(fh).await.unwrap();
    assert!(
        matches!(closed, Err(FsError::Conflict { .. })),
        "{closed:?}"
    );
    assert_eq!(s.mem.bytes("e/f").unwrap(), "theirs");
    let copies = conflict_copies(&s, "e/f");
    assert_eq!(copies.len(), 1, "{:?}", s.mem.keys());
    assert_eq!(s.mem.bytes(&copies[0]).unwrap(), "mine");
}

#[tokio::test]
async fn with_the_overwrite_policy_a_directory_rename_replaces_what_another_client_wrote_there() {
    let opts = FsOptions {
        negative_ttl: Duration::from_secs(60),
        conflict: ConflictPolicy::Overwrite,
        ..options()
    };
    let (s, _) = a_directory_of_two(opts).await;
    assert!(s.fs.lookup(ROOT_INO, OsStr::new("e")).await.is_err());
    put(&s.mem, "e/b", b"theirs").await;
    s.fs.rename(ROOT_INO, OsStr::new("d"), ROOT_INO, OsStr::new("e"), 0)
        .await
        .unwrap();
    assert_eq!(s.mem.keys(), ["e/a", "e/b"], "the last writer wins");
    assert_eq!(s.mem.bytes("e/b").unwrap(), "b");
}
