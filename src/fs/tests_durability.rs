//! Specifications of what a file says of its durability (`s3.state`) and of `flush_paths`
//! (`bucketfs flush`): local until an upload starts, uploading while it is in flight, stored
//! with the object's ETag once it landed, failed with the reason while its upload fails; a
//! flush uploads the pending files under its paths (and nothing else) and names what it could
//! not store.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::error::FsError;
use super::flush::{Flushed, STILL_OPEN};
use super::tests::{options, put, setup_with, write_file, Setup, OWNER};
use super::tests_failures::{failing, mount};
use super::tests_posix::{journaled, journaled_as, KILLED};
use super::{Fs, Ino, ROOT_INO};
use crate::config::FsOptions;
use crate::store::failing::{unreachable, Failure, Op};
use crate::store::memory::MemoryStore;
use crate::store::{ObjectStore, StoreError};

/// Closed files wait for a long write-back delay (nothing uploads them but a flush).
fn delayed() -> FsOptions {
    FsOptions {
        write_back_delay: Duration::from_secs(600),
        ..options()
    }
}

async fn state(fs: &Fs, ino: Ino) -> String {
    String::from_utf8(fs.getxattr(ino, "s3.state").await.unwrap()).unwrap()
}

async fn etag(mem: &MemoryStore, key: &str) -> String {
    let etag = mem.head(key).await.unwrap().etag.unwrap();
    etag.trim_matches('"').to_string()
}

fn paths(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn a_written_file_is_local_then_uploading_then_stored_with_the_objects_etag() {
    let Setup { fs, mem, _staging } = setup_with("", delayed());
    let ino = write_file(&fs, ROOT_INO, "f", b"data").await;
    assert_eq!(
        state(&fs, ino).await,
        "local",
        "closed, waiting for the delay"
    );

    let gate = Arc::new(Semaphore::new(0));
    mem.gate_puts(gate.clone());
    let flushing = tokio::spawn({
        let fs = fs.clone();
        async move { fs.flush_paths(&[]).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await; // the PUT is in flight
    assert_eq!(state(&fs, ino).await, "uploading");
    assert!(!flushing.is_finished(), "a flush waits for the upload");

    gate.add_permits(100);
    let flushed = flushing.await.unwrap();
    assert_eq!(
        flushed,
        Flushed {
            stored: 1,
            not_stored: vec![]
        }
    );
    assert_eq!(&mem.bytes("f").unwrap()[..], b"data");
    let want = format!("stored {}", etag(&mem, "f").await);
    assert_eq!(state(&fs, ino).await, want);
}

#[tokio::test]
async fn a_failing_upload_shows_failed_with_its_reason_until_one_succeeds() {
    let (mem, store) = failing();
    let (fs, _staging) = mount(store.clone(), delayed());
    store.fail(
        Failure::on(Op::PutObject)
            .key(|k| k == "bad")
            .with(StoreError::AccessDenied("injected".into())),
    );
    let good = write_file(&fs, ROOT_INO, "good", b"1").await;
    let bad = write_file(&fs, ROOT_INO, "bad", b"2").await;

    let flushed = fs.flush_paths(&[]).await;
    assert_eq!(flushed.stored, 1, "{flushed:?}");
    let [(path, why)] = flushed.not_stored.as_slice() else {
        panic!("one file not stored: {flushed:?}");
    };
    assert_eq!(path, "bad");
    assert!(why.contains("injected"), "the reason: {why}");
    let shown = state(&fs, bad).await;
    assert!(
        shown.starts_with("failed: ") && shown.contains("injected"),
        "{shown}"
    );
    assert!(state(&fs, good).await.starts_with("stored "));

    store.heal();
    assert_eq!(fs.flush_paths(&[]).await.not_stored, vec![]);
    let want = format!("stored {}", etag(&mem, "bad").await);
    assert_eq!(state(&fs, bad).await, want, "a success clears the failure");
}

#[tokio::test]
async fn a_flush_of_a_path_uploads_only_what_is_under_it() {
    let Setup { fs, mem, _staging } = setup_with("", delayed());
    let mut dirs = Vec::new();
    for d in ["a", "a2", "b"] {
        dirs.push(fs.mkdir(ROOT_INO, OsStr::new(d), OWNER).await.unwrap().ino);
    }
    let inside = write_file(&fs, dirs[0], "x", b"x").await;
    let sibling = write_file(&fs, dirs[1], "y", b"y").await;
    let other = write_file(&fs, dirs[2], "z", b"z").await;
    let top = write_file(&fs, ROOT_INO, "t", b"t").await;

    let flushed = fs.flush_paths(&paths(&["a"])).await;
    assert_eq!(flushed.stored, 1, "{flushed:?}");
    assert!(mem.bytes("a/x").is_some());
    for (ino, name) in [(sibling, "a2/y"), (other, "b/z"), (top, "t")] {
        assert_eq!(state(&fs, ino).await, "local", "{name} is not under a");
        assert!(mem.bytes(name).is_none(), "{name}");
    }
    assert!(state(&fs, inside).await.starts_with("stored "));

    let flushed = fs.flush_paths(&paths(&["b/z", "t"])).await;
    assert_eq!(flushed.stored, 2, "a path may name a file");
    assert!(mem.bytes("a2/y").is_none());
}

#[tokio::test]
async fn a_file_still_open_for_writing_is_named_not_uploaded() {
    let Setup { fs, mem, _staging } = setup_with("", delayed());
    let (attr, fh) = fs
        .create(ROOT_INO, OsStr::new("open"), libc::O_WRONLY, OWNER)
        .await
        .unwrap();
    fs.write(fh, 0, Bytes::from_static(b"half")).await.unwrap();
    let closed = write_file(&fs, ROOT_INO, "closed", b"done").await;
    let (reading, _) = fs.open(closed, libc::O_RDONLY).await.unwrap();

    let flushed = fs.flush_paths(&[]).await;
    assert_eq!(flushed.stored, 1, "{flushed:?}");
    assert_eq!(
        flushed.not_stored,
        vec![("open".to_string(), STILL_OPEN.to_string())]
    );
    assert!(mem.bytes("open").is_none(), "its writer is not done");
    assert!(
        mem.bytes("closed").is_some(),
        "a reader does not hold a file back"
    );
    fs.release(reading).await.unwrap();
    assert_eq!(state(&fs, attr.ino).await, "local");

    fs.flush(fh).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(fs.flush_paths(&[]).await.stored, 1, "after its close");
    assert_eq!(&mem.bytes("open").unwrap()[..], b"half");
}

#[tokio::test]
async fn a_file_closed_but_not_yet_released_is_flushed() {
    // close(2) returns after FLUSH; the kernel sends RELEASE afterwards, on its own.
    let Setup { fs, mem, _staging } = setup_with("", delayed());
    let (_, fh) = fs
        .create(ROOT_INO, OsStr::new("f"), libc::O_WRONLY, OWNER)
        .await
        .unwrap();
    fs.write(fh, 0, Bytes::from_static(b"all")).await.unwrap();
    fs.flush(fh).await.unwrap();
    let release = tokio::spawn({
        let fs = fs.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            fs.release(fh).await.unwrap();
        }
    });
    let flushed = fs.flush_paths(&[]).await;
    assert_eq!(flushed.not_stored, vec![], "{flushed:?}");
    assert_eq!(&mem.bytes("f").unwrap()[..], b"all");
    release.await.unwrap();
}

#[tokio::test]
async fn directories_and_symlinks_are_stored_and_the_state_cannot_be_set() {
    let Setup { fs, mem, _staging } = setup_with("", delayed());
    let dir = fs.mkdir(ROOT_INO, OsStr::new("d"), OWNER).await.unwrap();
    assert_eq!(state(&fs, dir.ino).await, "stored");
    let link = fs
        .symlink(ROOT_INO, OsStr::new("l"), b"d", OWNER)
        .await
        .unwrap();
    let want = format!("stored {}", etag(&mem, "l").await);
    assert_eq!(state(&fs, link.ino).await, want);
    assert!(matches!(
        fs.setxattr(dir.ino, "s3.state", b"stored", 0).await,
        Err(FsError::NotPermitted(_))
    ));
    assert!(
        !String::from_utf8(fs.listxattr(dir.ino).await.unwrap())
            .unwrap()
            .contains("s3."),
        "read by name, never listed"
    );
}

#[tokio::test]
async fn an_entry_an_earlier_daemon_left_is_not_stored_until_flushed() {
    let (mem, failing) = failing();
    put(&mem, "f", b"old").await;
    let dir = tempfile::tempdir().unwrap();
    {
        let fs = journaled_as(mem.clone(), dir.path(), Duration::from_secs(3600), KILLED);
        let ino = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap().ino;
        let (fh, _) = fs.open(ino, libc::O_WRONLY).await.unwrap();
        fs.write(fh, 0, Bytes::from_static(b"closed"))
            .await
            .unwrap();
        fs.flush(fh).await.unwrap();
        fs.release(fh).await.unwrap();
        // Dropped without a drain: what a kill -9 leaves.
    }
    failing.fail(Failure::on(Op::PutObject).with(unreachable()));
    let fs = journaled(failing.clone(), dir.path(), Duration::from_secs(3600));
    assert_eq!(fs.recover().await, (0, 1));
    let ino = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap().ino;
    let shown = state(&fs, ino).await;
    assert!(
        shown.starts_with("failed: "),
        "the bucket's old object is not what was written: {shown}"
    );

    failing.heal();
    let flushed = fs.flush_paths(&paths(&["f"])).await;
    assert_eq!(
        flushed,
        Flushed {
            stored: 1,
            not_stored: vec![]
        }
    );
    assert_eq!(&mem.bytes("f").unwrap()[..], b"closed");
    tokio::time::sleep(Duration::from_millis(5)).await; // past the metadata TTL (0 here)
    let want = format!("stored {}", etag(&mem, "f").await);
    assert_eq!(state(&fs, ino).await, want);
}

#[tokio::test]
async fn an_earlier_daemons_entry_is_uploaded_once_when_two_flushes_race() {
    let mem = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    {
        let fs = journaled_as(mem.clone(), dir.path(), Duration::from_secs(3600), KILLED);
        write_file(&fs, ROOT_INO, "f", b"closed").await;
        // Dropped without a drain: what a kill -9 leaves.
    }
    mem.fail_puts(1);
    let fs = Arc::new(journaled(
        mem.clone(),
        dir.path(),
        Duration::from_secs(3600),
    ));
    assert_eq!(fs.recover().await, (0, 1), "pending after a failed PUT");
    let status = fs.status();
    assert_eq!((status.failure_total, status.failures.len()), (1, 1));

    let gate = Arc::new(Semaphore::new(0));
    mem.gate_puts(gate.clone());
    let flushes: Vec<_> = (0..2)
        .map(|_| {
            let fs = fs.clone();
            tokio::spawn(async move { fs.flush_paths(&[]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await; // both have started
    gate.add_permits(100);
    for flush in flushes {
        assert_eq!(flush.await.unwrap().not_stored, vec![]);
    }
    assert_eq!(&mem.bytes("f").unwrap()[..], b"closed");
    assert_eq!(
        mem.stats().count("PutObject"),
        2,
        "the failed PUT, then one upload: the second flush waited for the first"
    );
}
