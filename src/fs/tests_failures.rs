//! Specifications of the filesystem when the store fails: what is retried, what is aborted,
//! what stays pending (and survives a kill -9), and that no error is mistaken for an answer.
//! The failures come from `store::failing::FailingStore` over the in-memory store.
//!
//! Where the failing store sits is part of each spec. The S3 store retries transient errors
//! inside each request (`store::retry::with_retries`), so:
//! - *above the retry layer* (the failing store straight under the `Fs`, the default here) a
//!   failure is what the filesystem sees once the store layer has given up;
//! - *below the retry layer* (`Retrying` over the failing store, standing in for the S3
//!   store's own retries, which cannot be put over another store) a failure is one attempt
//!   that the store layer may retry without the filesystem knowing.

use std::ffi::OsStr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::error::FsError;
use super::tests::{options, put, read_all, write_file, OWNER};
use super::tests_posix::{journaled, journaled_as, KILLED};
use super::{Fs, ROOT_INO};
use crate::config::FsOptions;
use crate::store::failing::{slow_down, unreachable, FailingStore, Failure, Op};
use crate::store::memory::MemoryStore;
use crate::store::retry::{with_retries, Call, RetryPolicy};
use crate::store::*;
use crate::upload::UploadError;

const MIB: usize = 1 << 20;

/// A second daemon that is killed (no process has this id either).
const KILLED_TOO: &str = "999999902";

/// A mount over `store` with `opts` and no journal (as `tests::setup_with`).
pub(super) fn mount(store: Arc<dyn ObjectStore>, opts: FsOptions) -> (Arc<Fs>, tempfile::TempDir) {
    let staging = tempfile::tempdir().unwrap();
    let fs = Fs::new(
        store,
        String::new(),
        opts,
        staging.path().to_path_buf(),
        None,
        None,
        None,
    );
    (Arc::new(fs), staging)
}

/// The memory store, and a failing store over it.
pub(super) fn failing() -> (Arc<MemoryStore>, Arc<FailingStore>) {
    let mem = Arc::new(MemoryStore::new());
    let store = Arc::new(FailingStore::new(mem.clone()));
    (mem, store)
}

/// Bytes that differ at every nearby offset.
fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Creates `name`, writes `data` and closes it; the result of the close (flush).
async fn create_and_close(fs: &Fs, name: &str, data: Bytes) -> Result<(), FsError> {
    let (_, fh) = fs
        .create(ROOT_INO, OsStr::new(name), libc::O_WRONLY, OWNER)
        .await
        .unwrap();
    fs.write(fh, 0, data).await.unwrap();
    let closed = fs.flush(fh).await;
    fs.release(fh).await.unwrap();
    closed
}

/// Multipart uploads left in the bucket, once the aborts spawned in the background are done.
async fn uploads_left(mem: &MemoryStore) -> Vec<MultipartUploadInfo> {
    for _ in 0..100 {
        let left = mem.list_multipart_uploads("").await.unwrap();
        if left.is_empty() {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    mem.list_multipart_uploads("").await.unwrap()
}

/// The S3 store's retry layer over any store: every request goes through `with_retries`
/// with a millisecond backoff, except CreateMultipartUpload, which the S3 store repeats
/// only when the request certainly never left (this stand-in cannot know: it never does).
struct Retrying {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
}

impl Retrying {
    fn over(inner: Arc<dyn ObjectStore>) -> Arc<Retrying> {
        let policy = RetryPolicy {
            retry_timeout: Duration::from_secs(10),
            max_retries: Some(3),
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            request_timeout: Duration::ZERO,
        };
        Arc::new(Retrying { inner, policy })
    }
}

#[async_trait]
impl ObjectStore for Retrying {
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        with_retries(&self.policy, Call::small("HeadObject"), || {
            self.inner.head(key)
        })
        .await
    }
    async fn get_range_if_match(
        &self,
        key: &str,
        range: Range<u64>,
        etag: Option<&str>,
    ) -> StoreResult<Bytes> {
        with_retries(&self.policy, Call::small("GetObject"), || {
            self.inner.get_range_if_match(key, range.clone(), etag)
        })
        .await
    }
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: usize,
    ) -> StoreResult<ListPage> {
        with_retries(&self.policy, Call::small("ListObjectsV2"), || {
            self.inner
                .list_page(prefix, delimiter, token.clone(), max_keys)
        })
        .await
    }
    async fn list_page_after(
        &self,
        prefix: &str,
        start_after: &str,
        max_keys: usize,
    ) -> StoreResult<ListPage> {
        with_retries(&self.policy, Call::small("ListObjectsV2"), || {
            self.inner.list_page_after(prefix, start_after, max_keys)
        })
        .await
    }
    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<Option<String>> {
        with_retries(&self.policy, Call::small("PutObject"), || {
            self.inner.put(key, body.clone(), opts)
        })
        .await
    }
    async fn copy_with_options(
        &self,
        from: &str,
        to: &str,
        opts: &PutOptions,
        keep_metadata: bool,
    ) -> StoreResult<Option<String>> {
        with_retries(&self.policy, Call::small("CopyObject"), || {
            self.inner.copy_with_options(from, to, opts, keep_metadata)
        })
        .await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        with_retries(&self.policy, Call::small("DeleteObject"), || {
            self.inner.delete(key)
        })
        .await
    }
    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        self.inner.create_multipart(key, opts).await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> StoreResult<String> {
        with_retries(&self.policy, Call::small("UploadPart"), || {
            self.inner.upload_part(key, upload_id, number, body.clone())
        })
        .await
    }
    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        source_key: &str,
        source_etag: Option<&str>,
        range: Range<u64>,
    ) -> StoreResult<String> {
        with_retries(&self.policy, Call::small("UploadPartCopy"), || {
            self.inner.upload_part_copy(
                key,
                upload_id,
                number,
                source_key,
                source_etag,
                range.clone(),
            )
        })
        .await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
        condition: Option<&Condition>,
    ) -> StoreResult<Option<String>> {
        with_retries(&self.policy, Call::small("CompleteMultipartUpload"), || {
            self.inner
                .complete_multipart(key, upload_id, parts.clone(), condition)
        })
        .await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        with_retries(&self.policy, Call::small("AbortMultipartUpload"), || {
            self.inner.abort_multipart(key, upload_id)
        })
        .await
    }
    async fn list_multipart_uploads(&self, prefix: &str) -> StoreResult<Vec<MultipartUploadInfo>> {
        with_retries(&self.policy, Call::small("ListMultipartUploads"), || {
            self.inner.list_multipart_uploads(prefix)
        })
        .await
    }
}

// ---- Below the retry layer: one failed attempt ---------------------------------------

#[tokio::test]
async fn a_part_that_fails_once_is_retried_by_the_store_layer_and_the_object_is_right() {
    let (mem, failing) = failing();
    // Below the retry layer: the 2nd UploadPart's first attempt gets a 503.
    failing.fail(Failure::on(Op::UploadPart).nth(2));
    let (fs, _staging) = mount(Retrying::over(failing.clone()), options());
    let data = pattern(12 * MIB); // three parts of 5 MiB, 5 MiB, 2 MiB
    create_and_close(&fs, "big", data.clone()).await.unwrap();
    assert!(mem.bytes("big").unwrap() == data, "the object is right");
    assert_eq!(failing.injected(Op::UploadPart), 1);
    let stats = mem.stats();
    assert_eq!(
        stats.count("UploadPart"),
        3,
        "the failed attempt never arrived"
    );
    assert_eq!(
        stats.count("CreateMultipartUpload"),
        1,
        "one upload, not restarted"
    );
    assert_eq!(stats.count("AbortMultipartUpload"), 0);
    assert!(
        fs.status().failures.is_empty(),
        "the filesystem saw no error"
    );
}

#[tokio::test]
async fn a_put_that_fails_once_is_retried_by_the_store_layer_and_close_succeeds() {
    let (mem, failing) = failing();
    failing.fail(Failure::on(Op::PutObject).once().with(unreachable()));
    let (fs, _staging) = mount(Retrying::over(failing.clone()), options());
    create_and_close(&fs, "f", Bytes::from_static(b"small"))
        .await
        .unwrap();
    assert_eq!(mem.bytes("f").unwrap(), "small");
    assert_eq!(mem.stats().count("PutObject"), 1);
    assert_eq!(failing.injected(Op::PutObject), 1);
}

// ---- Above the retry layer: the store layer gave up ----------------------------------

#[tokio::test]
async fn a_multipart_upload_whose_part_keeps_failing_is_aborted_and_leaves_nothing() {
    let (mem, failing) = failing();
    failing.fail(Failure::on(Op::UploadPart).key(|k| k == "big"));
    let (fs, _staging) = mount(failing.clone(), options()); // delay 0: uploaded at close
    let data = pattern(12 * MIB);
    let closed = create_and_close(&fs, "big", data.clone()).await;
    assert!(
        matches!(
            closed,
            Err(FsError::Upload(UploadError::Store(StoreError::Server {
                status: 503,
                ..
            })))
        ),
        "close reports the failure: {closed:?}"
    );
    assert!(mem.keys().is_empty(), "no partial object: {:?}", mem.keys());
    let left = uploads_left(&mem).await;
    assert!(left.is_empty(), "every upload aborted: {left:?}");
    assert!(mem.stats().count("AbortMultipartUpload") >= 1);
    assert_eq!(fs.status().pending, 1, "the file is kept for a retry");

    failing.heal();
    assert!(fs.drain().await.is_empty());
    assert!(mem.bytes("big").unwrap() == data);
    assert!(uploads_left(&mem).await.is_empty());
}

#[tokio::test]
async fn a_completion_whose_reply_is_lost_is_uploaded_again_and_leaves_no_upload() {
    // Above the retry layer: the server completed the upload, the answer never came back.
    let (mem, failing) = failing();
    failing.fail(
        Failure::on(Op::CompleteMultipartUpload)
            .once()
            .after_forwarding()
            .with(unreachable()),
    );
    let (fs, _staging) = mount(failing.clone(), options());
    let data = pattern(11 * MIB);
    assert!(create_and_close(&fs, "big", data.clone()).await.is_err());
    assert_eq!(fs.status().pending, 1, "not known to be stored: kept");
    assert!(fs.drain().await.is_empty());
    assert!(mem.bytes("big").unwrap() == data);
    assert_eq!(mem.stats().count("CompleteMultipartUpload"), 2);
    assert!(uploads_left(&mem).await.is_empty());
    assert_eq!(fs.status().pending, 0);
}

#[tokio::test]
async fn a_failed_upload_after_close_stays_pending_until_its_backoff_and_drain_stores_it() {
    let (mem, failing) = failing();
    let dir = tempfile::tempdir().unwrap();
    let fs = journaled(failing.clone(), dir.path(), Duration::from_millis(10));
    write_file(&fs, ROOT_INO, "f", b"closed").await;
    failing.fail(Failure::on(Op::PutObject).with(slow_down()));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(fs.upload_due().await, 1, "due, tried, failed");
    assert_eq!(failing.injected(Op::PutObject), 1);
    let status = fs.status();
    assert_eq!((status.pending, status.pending_bytes), (1, 6));
    assert_eq!(status.failures[0].key, "f");
    // The retry waits for its backoff (retry_interval, 5 s here): not tried again at once.
    assert_eq!(fs.upload_due().await, 0);
    assert_eq!(failing.injected(Op::PutObject), 1);

    assert_eq!(
        fs.drain().await,
        ["f"],
        "unmount names what it could not store"
    );
    assert!(mem.keys().is_empty());
    failing.heal();
    assert!(fs.drain().await.is_empty());
    assert_eq!(mem.bytes("f").unwrap(), "closed");
    assert_eq!(fs.status().pending, 0);
    assert_eq!(mem.stats().count("PutObject"), 1, "stored once");
}

#[tokio::test]
async fn an_fsync_whose_upload_fails_returns_the_error_and_a_later_fsync_succeeds() {
    let (mem, failing) = failing();
    let dir = tempfile::tempdir().unwrap();
    let fs = journaled(failing.clone(), dir.path(), Duration::from_secs(3600));
    let (_, fh) = fs
        .create(ROOT_INO, OsStr::new("f"), libc::O_WRONLY, OWNER)
        .await
        .unwrap();
    fs.write(fh, 0, Bytes::from_static(b"synced"))
        .await
        .unwrap();
    failing.fail(Failure::on(Op::PutObject).once().with(unreachable()));
    let synced = fs.fsync(fh).await;
    assert!(
        matches!(
            synced,
            Err(FsError::Upload(UploadError::Store(
                StoreError::Unreachable(_)
            )))
        ),
        "{synced:?}"
    );
    assert!(mem.keys().is_empty());
    fs.fsync(fh).await.unwrap();
    assert_eq!(mem.bytes("f").unwrap(), "synced");
    fs.flush(fh).await.unwrap();
    fs.release(fh).await.unwrap();
    assert_eq!(fs.status().pending, 0, "nothing left for the write-back");
    assert_eq!(mem.stats().count("PutObject"), 1);
}

#[tokio::test]
async fn a_recovery_whose_put_fails_keeps_the_entry_through_another_kill() {
    let (mem, failing) = failing();
    let dir = tempfile::tempdir().unwrap();
    {
        let fs = journaled_as(mem.clone(), dir.path(), Duration::from_secs(3600), KILLED);
        write_file(&fs, ROOT_INO, "f", b"closed").await;
        // Dropped without a drain: what a kill -9 leaves.
    }
    failing.fail(Failure::on(Op::PutObject).with(unreachable()));
    {
        // (another dead daemon's id: a daemon does not recover its own entries)
        let fs = journaled_as(
            failing.clone(),
            dir.path(),
            Duration::from_secs(3600),
            KILLED_TOO,
        );
        assert_eq!(fs.recover().await, (0, 1));
        assert_eq!(fs.status().pending, 1, "kept pending");
        // Killed again before the store came back.
    }
    assert!(mem.keys().is_empty());
    failing.heal();
    let fs = journaled(failing.clone(), dir.path(), Duration::from_secs(3600));
    assert_eq!(fs.recover().await, (1, 0), "the entry survived both kills");
    assert_eq!(mem.bytes("f").unwrap(), "closed");
}

#[tokio::test]
async fn a_recovered_large_file_whose_part_fails_is_aborted_and_stays_pending() {
    let (mem, failing) = failing();
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(11 * MIB);
    {
        // No multipart upload can start, so the file is not streamed while written (a
        // streamed file is finished at close): it is journaled whole, then the daemon dies.
        failing.fail(Failure::on(Op::CreateMultipartUpload));
        let fs = journaled_as(
            failing.clone(),
            dir.path(),
            Duration::from_secs(3600),
            KILLED,
        );
        write_file(&fs, ROOT_INO, "big", &data[..]).await;
    }
    assert!(mem.keys().is_empty());
    failing.heal();
    // Above the retry layer: the store gave up on the 2nd part of the recovery's upload.
    failing.fail(Failure::on(Op::UploadPart).nth(2));
    let fs = journaled(failing.clone(), dir.path(), Duration::from_secs(3600));
    assert_eq!(fs.recover().await, (0, 1));
    let left = uploads_left(&mem).await;
    assert!(left.is_empty(), "the failed upload is aborted: {left:?}");
    assert!(mem.keys().is_empty(), "no partial object");
    assert_eq!(fs.status().pending, 1, "kept pending");

    assert!(fs.drain().await.is_empty(), "retried by this daemon");
    assert!(mem.bytes("big").unwrap() == data);
    assert!(uploads_left(&mem).await.is_empty());
}

#[tokio::test]
async fn a_not_found_while_the_unchanged_bytes_are_still_there_does_not_park_the_file() {
    // A GET of the unchanged bytes answers 404 (a lagging replica), yet a HEAD shows the
    // object unchanged: the upload is worth another try, the file is not given up.
    let (mem, failing) = failing();
    put(&mem, "f", b"0123456789").await;
    let dir = tempfile::tempdir().unwrap();
    let fs = journaled(failing.clone(), dir.path(), Duration::from_secs(3600));
    let f = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap().ino;
    let (fh, _) = fs.open(f, libc::O_WRONLY | libc::O_APPEND).await.unwrap();
    fs.write(fh, 10, Bytes::from_static(b"abc")).await.unwrap();
    fs.flush(fh).await.unwrap();
    fs.release(fh).await.unwrap();
    failing.fail(Failure::on(Op::GetObject).once().with(StoreError::NotFound));
    assert_eq!(fs.drain().await, ["f"], "this attempt failed");
    assert_eq!(failing.injected(Op::GetObject), 1);
    let status = fs.status();
    assert!(
        status.unsaved.is_empty(),
        "not parked: {:?}",
        status.unsaved
    );
    assert_eq!(status.pending, 1);
    assert!(fs.drain().await.is_empty());
    assert_eq!(mem.bytes("f").unwrap(), "0123456789abc");
}

// ---- Errors are not answers ----------------------------------------------------------

#[tokio::test]
async fn a_lookup_whose_head_fails_is_an_error_not_a_cached_missing_name() {
    let (mem, failing) = failing();
    put(&mem, "f", b"x").await;
    let opts = FsOptions {
        negative_ttl: Duration::from_secs(600),
        ..options()
    };
    let (fs, _staging) = mount(failing.clone(), opts);
    failing.fail(Failure::on_any(&[Op::HeadObject, Op::ListObjectsV2]).with(slow_down()));
    let failed = fs.lookup(ROOT_INO, OsStr::new("f")).await;
    assert!(
        matches!(failed, Err(FsError::Store(StoreError::Server { .. }))),
        "{failed:?}"
    );
    failing.heal();
    assert_eq!(fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap().size, 1);
}

#[tokio::test]
async fn a_listing_that_fails_is_an_error_and_the_next_one_lists() {
    let (mem, failing) = failing();
    put(&mem, "d/a", b"1").await;
    put(&mem, "d/b", b"2").await;
    let (fs, _staging) = mount(failing.clone(), options());
    let d = fs.lookup(ROOT_INO, OsStr::new("d")).await.unwrap().ino;
    failing.fail(Failure::on(Op::ListObjectsV2).once().with(unreachable()));
    let fh = fs.opendir(d).await.unwrap();
    assert!(
        fs.readdir(fh, 0).await.is_err(),
        "no empty listing for a failed one"
    );
    fs.releasedir(fh).unwrap();
    assert_eq!(failing.injected(Op::ListObjectsV2), 1);
    let fh = fs.opendir(d).await.unwrap();
    let names: Vec<String> = fs
        .readdir(fh, 0)
        .await
        .unwrap()
        .iter()
        .skip(2)
        .map(|e| e.name.to_string())
        .collect();
    fs.releasedir(fh).unwrap();
    assert_eq!(names, ["a", "b"]);
}

#[tokio::test]
async fn an_unlink_whose_delete_fails_keeps_the_file() {
    let (mem, failing) = failing();
    put(&mem, "f", b"kept").await;
    let (fs, _staging) = mount(failing.clone(), options());
    failing.fail(Failure::on(Op::DeleteObject).once());
    assert!(fs.unlink(ROOT_INO, OsStr::new("f")).await.is_err());
    assert_eq!(mem.bytes("f").unwrap(), "kept");
    let f = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap();
    assert_eq!(read_all(&fs, f.ino).await, b"kept");
    fs.unlink(ROOT_INO, OsStr::new("f")).await.unwrap();
    assert!(mem.keys().is_empty());
}

#[tokio::test]
async fn a_rename_whose_copy_fails_changes_nothing() {
    let (mem, failing) = failing();
    put(&mem, "old", b"data").await;
    let (fs, _staging) = mount(failing.clone(), options());
    failing.fail(Failure::on(Op::CopyObject).once().with(unreachable()));
    let renamed = fs
        .rename(ROOT_INO, OsStr::new("old"), ROOT_INO, OsStr::new("new"), 0)
        .await;
    assert!(renamed.is_err());
    assert_eq!(mem.keys(), ["old"]);
    assert!(fs.lookup(ROOT_INO, OsStr::new("old")).await.is_ok());
    assert!(matches!(
        fs.lookup(ROOT_INO, OsStr::new("new")).await,
        Err(FsError::NotFound)
    ));
}

#[tokio::test]
async fn a_rename_whose_delete_fails_reports_it_and_shows_both_names_as_the_bucket_does() {
    let (mem, failing) = failing();
    put(&mem, "old", b"data").await;
    let (fs, _staging) = mount(failing.clone(), options());
    failing.fail(Failure::on(Op::DeleteObject).once());
    let renamed = fs
        .rename(ROOT_INO, OsStr::new("old"), ROOT_INO, OsStr::new("new"), 0)
        .await;
    assert!(renamed.is_err(), "the rename did not complete");
    assert_eq!(mem.keys(), ["new", "old"], "copied, not deleted");
    for name in ["old", "new"] {
        let f = fs.lookup(ROOT_INO, OsStr::new(name)).await.unwrap();
        assert_eq!(read_all(&fs, f.ino).await, b"data", "{name}");
    }
    fs.rename(ROOT_INO, OsStr::new("old"), ROOT_INO, OsStr::new("new"), 0)
        .await
        .unwrap();
    assert_eq!(mem.keys(), ["new"], "done once the store works");
}

#[tokio::test]
async fn a_lookup_that_waited_on_another_tasks_failed_head_asks_again() {
    // Two lookups of a name only a listing knows: the first HEAD fails; the lookup that
    // waited for it must not answer ENOENT for a file that exists.
    let (mem, failing) = failing();
    put(&mem, "f", b"x").await;
    let opts = FsOptions {
        listing_metadata: false,
        metadata_ttl: Duration::from_secs(60),
        dir_ttl: Duration::from_secs(60),
        ..options()
    };
    let (fs, _cache) = mount(failing.clone(), opts);
    let fh = fs.opendir(ROOT_INO).await.unwrap();
    fs.readdir(fh, 0).await.unwrap(); // the node, without its metadata
    mem.set_latency(Duration::from_millis(50));
    failing.fail(Failure::on(Op::HeadObject).once().after_forwarding()); // fails late
    let (first, second) = tokio::join!(
        fs.lookup(ROOT_INO, OsStr::new("f")),
        fs.lookup(ROOT_INO, OsStr::new("f"))
    );
    let errors: Vec<_> = [&first, &second]
        .into_iter()
        .filter_map(|r| r.as_ref().err())
        .collect();
    assert!(
        errors.iter().all(|e| !matches!(e, FsError::NotFound)),
        "no made-up ENOENT: {first:?} {second:?}"
    );
    assert!(first.is_ok() || second.is_ok(), "{first:?} {second:?}");
}

#[tokio::test]
async fn the_unwritten_bytes_of_a_file_being_modified_come_from_the_block_cache() {
    let (mem, store) = failing();
    let original = pattern(512 * 1024);
    put(&mem, "f", &original).await;
    let opts = FsOptions {
        memory_cache: 8 << 20,
        ..options()
    };
    let (fs, _staging) = mount(store.clone(), opts);
    let ino = fs.lookup(ROOT_INO, OsStr::new("f")).await.unwrap().ino;
    assert_eq!(read_all(&fs, ino).await, original, "a read fills the cache");
    // The store can no longer be read: the file is modified and read back from the cache.
    store.fail(Failure::on(Op::GetObject));
    let (fh, _) = fs.open(ino, libc::O_RDWR).await.unwrap();
    fs.write(fh, 1000, Bytes::from_static(b"here"))
        .await
        .unwrap();
    let mut expected = original.to_vec();
    expected[1000..1004].copy_from_slice(b"here");
    let mut read = Vec::new();
    while read.len() < expected.len() {
        read.extend_from_slice(&fs.read(fh, read.len() as u64, 65536).await.unwrap());
    }
    assert_eq!(read, expected);
    assert_eq!(store.injected(Op::GetObject), 0, "no GET was made");
    store.heal();
    fs.flush(fh).await.unwrap();
    fs.release(fh).await.unwrap();
}
