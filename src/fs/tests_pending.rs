//! Specifications of files whose upload is pending (the write-back delay) or in flight:
//! unlink, rename over a file and directory rename must leave the bucket as the mount shows
//! it — no deleted file comes back, no file is left under an old name — and an upload that
//! can never succeed keeps its bytes locally and says so, instead of retrying forever.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::error::FsError;
use super::tests::{options, put, read_all, setup_with, write_file, Setup, OWNER};
use super::tests_posix::{journaled, journaled_as, KILLED};
use super::ROOT_INO;
use crate::config::FsOptions;
use crate::store::memory::MemoryStore;
use crate::store::ObjectStore;

/// A mount whose closed files wait (as with the default write-back delay) until `drain`.
fn write_back() -> Setup {
    setup_with(
        "",
        FsOptions {
            write_back_delay: Duration::from_secs(600),
            ..options()
        },
    )
}

/// Holds every PutObject in flight until the returned gate gets permits.
fn hold_puts(s: &Setup) -> Arc<Semaphore> {
    let gate = Arc::new(Semaphore::new(0));
    s.mem.gate_puts(gate.clone());
    gate
}

/// Lets a spawned task reach its first await on the store.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn rename(s: &Setup, from: &str, to: &str) -> Result<(), FsError> {
    s.fs.rename(ROOT_INO, OsStr::new(from), ROOT_INO, OsStr::new(to), 0)
        .await
}

#[tokio::test]
async fn a_stored_file_replaced_by_a_pending_rename_then_unlinked_leaves_no_object() {
    // git: write f.lock, rename it over the stored f, delete f — all within the delay.
    let s = write_back();
    write_file(&s.fs, ROOT_INO, "f", b"v1").await;
    assert!(s.fs.drain().await.is_empty());
    assert_eq!(&s.mem.bytes("f").unwrap()[..], b"v1");
    write_file(&s.fs, ROOT_INO, "f.lock", b"v2").await;
    rename(&s, "f.lock", "f").await.unwrap();
    s.fs.unlink(ROOT_INO, OsStr::new("f")).await.unwrap();
    assert!(s.fs.drain().await.is_empty());
    assert!(s.mem.keys().is_empty(), "left: {:?}", s.mem.keys());
    assert!(matches!(
        s.fs.lookup(ROOT_INO, OsStr::new("f")).await,
        Err(FsError::NotFound)
    ));
}

#[tokio::test]
async fn an_unlink_while_the_upload_is_in_flight_leaves_no_object() {
    let s = write_back();
    write_file(&s.fs, ROOT_INO, "f", b"data").await;
    let gate = hold_puts(&s);
    let fs = s.fs.clone();
    let upload = tokio::spawn(async move { fs.drain().await });
    settle().await; // the PUT is in flight
    let fs = s.fs.clone();
    let unlink = tokio::spawn(async move { fs.unlink(ROOT_INO, OsStr::new("f")).await });
    settle().await;
    gate.add_permits(100);
    upload.await.unwrap();
    unlink.await.unwrap().unwrap();
    assert!(s.mem.keys().is_empty(), "left: {:?}", s.mem.keys());
}

#[tokio::test]
async fn a_rename_over_a_file_whose_upload_is_in_flight_keeps_the_renamed_content() {
    let s = write_back();
    put(&s.mem, "new", b"renamed").await;
    write_file(&s.fs, ROOT_INO, "old", b"replaced").await;
    let gate = hold_puts(&s);
    let fs = s.fs.clone();
    let upload = tokio::spawn(async move { fs.drain().await });
    settle().await; // "old" is being PUT
    let fs = s.fs.clone();
    let mv = tokio::spawn(async move {
        fs.rename(ROOT_INO, OsStr::new("new"), ROOT_INO, OsStr::new("old"), 0)
            .await
    });
    settle().await;
    gate.add_permits(100);
    upload.await.unwrap();
    mv.await.unwrap().unwrap();
    assert_eq!(s.mem.keys(), vec!["old".to_string()]);
    assert_eq!(&s.mem.bytes("old").unwrap()[..], b"renamed");
}

#[tokio::test]
async fn a_directory_renamed_while_uploads_are_pending_and_in_flight_moves_them_all() {
    let s = write_back();
    let src =
        s.fs.mkdir(ROOT_INO, OsStr::new("src"), OWNER)
            .await
            .unwrap()
            .ino;
    for i in 0..20 {
        write_file(&s.fs, src, &format!("f{i}"), format!("{i}").as_bytes()).await;
    }
    let gate = hold_puts(&s);
    let fs = s.fs.clone();
    let upload = tokio::spawn(async move { fs.drain().await }); // 16 in flight, 4 waiting
    settle().await;
    let fs = s.fs.clone();
    let mv = tokio::spawn(async move {
        fs.rename(ROOT_INO, OsStr::new("src"), ROOT_INO, OsStr::new("dst"), 0)
            .await
    });
    settle().await;
    gate.add_permits(1000);
    assert!(upload.await.unwrap().is_empty());
    mv.await.unwrap().unwrap();
    assert!(s.fs.drain().await.is_empty());
    let mut keys = s.mem.keys();
    keys.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("dst/f{i}")).collect();
    want.push("dst/".into());
    want.sort();
    assert_eq!(keys, want);
    for i in 0..20 {
        assert_eq!(
            s.mem.bytes(&format!("dst/f{i}")).unwrap(),
            Bytes::from(format!("{i}"))
        );
    }
}

#[tokio::test]
async fn a_file_modified_in_a_directory_then_renamed_keeps_its_unchanged_bytes() {
    let s = write_back();
    put(&s.mem, "d/f", b"0123456789").await;
    let d = s.fs.lookup(ROOT_INO, OsStr::new("d")).await.unwrap().ino;
    let f = s.fs.lookup(d, OsStr::new("f")).await.unwrap().ino;
    let (fh, _) = s.fs.open(f, libc::O_WRONLY).await.unwrap();
    s.fs.write(fh, 2, Bytes::from_static(b"ab")).await.unwrap();
    s.fs.flush(fh).await.unwrap();
    s.fs.release(fh).await.unwrap();
    rename(&s, "d", "e").await.unwrap();
    assert_eq!(read_all(&s.fs, f).await, b"01ab456789");
    assert!(s.fs.drain().await.is_empty());
    assert_eq!(s.mem.keys(), vec!["e/f".to_string()]);
    assert_eq!(&s.mem.bytes("e/f").unwrap()[..], b"01ab456789");
}

/// Opens the stored `f` ("0123456789"), appends "abc" and closes it; then another host
/// deletes the object, so the unchanged bytes the upload needs are gone.
async fn append_then_lose_the_object(fs: &super::Fs, mem: &MemoryStore) {
    append(fs).await;
    mem.delete("f").await.unwrap();
}

async fn append(fs: &super::Fs) {
    let f = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap().ino;
    let (fh, _) = fs.open(f, libc::O_WRONLY | libc::O_APPEND).await.unwrap();
    fs.write(fh, 10, Bytes::from_static(b"abc")).await.unwrap();
    fs.flush(fh).await.unwrap();
    fs.release(fh).await.unwrap();
}

#[tokio::test]
async fn a_file_whose_base_another_host_replaced_is_kept_locally_and_the_other_version_stays() {
    let mem = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    put(&mem, "f", b"0123456789").await;
    let fs = journaled(mem.clone(), dir.path(), Duration::from_secs(3600));
    append(&fs).await;
    put(&mem, "f", b"their version").await;
    assert_eq!(fs.drain().await, ["f"]);
    assert_eq!(&mem.bytes("f").unwrap()[..], b"their version");
    let (key, data) = parked_bytes(&fs.status());
    assert_eq!((key.as_str(), &data[10..13]), ("f", &b"abc"[..]));
    let f = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap().ino;
    assert_eq!(
        read_all(&fs, f).await,
        b"their version",
        "the name shows the bucket"
    );
}

/// The parked file's written bytes, as `bucketfs status` points to them.
fn parked_bytes(status: &super::status::Status) -> (String, Vec<u8>) {
    assert_eq!(status.unsaved.len(), 1, "{:?}", status.unsaved);
    let p = &status.unsaved[0];
    (p.entry.key.clone(), std::fs::read(&p.data).unwrap())
}

#[tokio::test]
async fn a_file_whose_base_another_host_deleted_is_kept_locally_reported_and_not_retried() {
    let mem = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    put(&mem, "f", b"0123456789").await;
    let fs = journaled(mem.clone(), dir.path(), Duration::from_secs(3600));
    append_then_lose_the_object(&fs, &mem).await;
    assert_eq!(fs.drain().await, ["f"], "named as not stored");
    let puts = mem.stats().count("PutObject");
    let gets = mem.stats().count("GetObject");
    assert_eq!(fs.drain().await, ["f"], "still named at exit");
    assert_eq!(fs.upload_due().await, 0);
    assert_eq!(
        (
            mem.stats().count("PutObject"),
            mem.stats().count("GetObject")
        ),
        (puts, gets),
        "never tried again"
    );
    assert!(mem.keys().is_empty(), "nothing partial stored");
    let status = fs.status();
    assert_eq!(status.pending, 0);
    let (key, data) = parked_bytes(&status);
    assert_eq!(key, "f");
    assert_eq!(&data[10..13], b"abc", "the bytes written here are kept");
    assert!(status
        .render(std::time::SystemTime::now())
        .contains("NOT STORED"));
    drop(fs);
    // The next mount with the same cache directory replays nothing and still reports it.
    let fs = journaled(mem.clone(), dir.path(), Duration::from_secs(3600));
    assert_eq!(fs.recover().await, (0, 0));
    parked_bytes(&fs.status());
}

#[tokio::test]
async fn a_killed_daemons_entry_whose_base_is_gone_is_kept_locally_not_replayed_forever() {
    let mem = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    put(&mem, "f", b"0123456789").await;
    {
        let fs = journaled_as(mem.clone(), dir.path(), Duration::from_secs(3600), KILLED);
        append_then_lose_the_object(&fs, &mem).await;
        // Dropped without a drain: what a kill -9 leaves.
    }
    let fs = journaled(mem.clone(), dir.path(), Duration::from_secs(3600));
    assert_eq!(fs.recover().await, (0, 1));
    assert_eq!(fs.status().pending, 0);
    assert_eq!(parked_bytes(&fs.status()).0, "f");
    drop(fs);
    let fs = journaled(mem.clone(), dir.path(), Duration::from_secs(3600));
    assert_eq!(fs.recover().await, (0, 0), "not replayed again");
    assert!(mem.keys().is_empty());
}

#[tokio::test]
async fn a_killed_daemons_entry_that_fails_at_mount_stays_pending_counted_and_is_retried() {
    let mem = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    {
        let fs = journaled_as(mem.clone(), dir.path(), Duration::from_secs(3600), KILLED);
        write_file(&fs, ROOT_INO, "f", b"closed").await;
    }
    mem.fail_puts(1); // the server is in trouble when the next daemon starts
    let fs = journaled(mem.clone(), dir.path(), Duration::from_secs(3600));
    assert_eq!(fs.recover().await, (0, 1));
    let status = fs.status();
    assert_eq!(
        (status.pending, status.pending_bytes),
        (1, 6),
        "counted as pending"
    );
    assert_eq!(status.failures[0].key, "f");
    assert!(fs.drain().await.is_empty(), "retried by this daemon");
    assert_eq!(&mem.bytes("f").unwrap()[..], b"closed");
    assert_eq!(fs.status().pending, 0);
    drop(fs);
    let fs = journaled(mem.clone(), dir.path(), Duration::from_secs(3600));
    assert_eq!(fs.recover().await, (0, 0), "done with");
}
