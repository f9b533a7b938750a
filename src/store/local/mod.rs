//! A local directory as an `ObjectStore`, for development and demos (`LocalStore`).
//!
//! # Mapping
//!
//! * The key `a/b/c` is the regular file `root/a/b/c`. The key `a/b/` (a directory marker) is
//!   the directory `root/a/b`, and every directory below the root is such a marker object: size
//!   0, listed as `a/b/` (a common prefix when a delimiter groups it). PUT creates missing
//!   parent directories; a PUT of a marker creates the directory and must have an empty body.
//! * A directory cannot be both an object and a folder: a PUT of `a/b` while `a/b/…` keys exist,
//!   or of `a/b/c` (or `a/b/`) while `a/b` is an object, fails with `StoreError::KeyRefused`.
//! * Keys that are empty, start with `/`, hold an empty segment (`a//b`), a `.` or `..`
//!   segment, or a NUL byte are refused with `StoreError::KeyRefused`, and so is everything under the
//!   store's internal directory `root/.bucketfs-local/`, which is never listed. Symlinks and
//!   special files are invisible (not listed, `NotFound`), and keys that pass through a symlinked
//!   directory are never followed, so no key reaches outside the root. Names that are not UTF-8
//!   are not listed.
//! * Writes are atomic: PUT, copy and multipart completion write a temporary file in
//!   `root/.bucketfs-local/tmp/` and rename it into place (no fsync: a crash may lose a recent
//!   write, never expose half of one). Leftover temporary files after a crash can be deleted
//!   while no daemon runs.
//! * Content type and user metadata live in a TOML sidecar under `root/.bucketfs-local/meta/`,
//!   whose tree mirrors the keys with directories renamed `<name>.d` so that files and
//!   directories can never collide there: `a/b/c` → `meta/a.d/b.d/c.toml`, marker `a/b/` →
//!   `meta/a.d/b.d/.toml`. A PUT without content type or metadata writes no sidecar (and removes
//!   the old one). The sidecar records the ETag of the version it belongs to and is ignored when
//!   the object no longer has that ETag, so a file edited or replaced behind the store's back
//!   simply has no metadata (content type `None`) rather than stale metadata.
//! * ETag: `"<len>-<mtime s>.<mtime ns>-<inode>"` (hex) for files, `"d<inode>"` for directories.
//!   A PUT always makes a new inode, so the ETag changes on every write through the store; an
//!   edit in place behind its back changes it through the mtime. `last_modified` is the mtime
//!   (for a directory, it also moves when entries are added or removed).
//! * LIST with the delimiter `/` reads only the directory the prefix points into; without a
//!   delimiter it walks the tree depth first in key order and stops once the page is full
//!   (subtrees entirely before the continuation token are skipped). Other delimiters walk the
//!   tree too. A missing directory lists as empty.
//! * DELETE of a missing key succeeds. DELETE of a marker `a/` removes the directory only when it
//!   is empty; otherwise it succeeds without changing anything (the directory, and so the marker,
//!   stays while keys exist below it). Deleting the last file of a directory keeps the directory.
//! * Multipart: parts are staged as `root/.bucketfs-local/uploads/<id>/<n>` (with the target key
//!   and options in `upload.toml`); completion concatenates them in the given order (each part's
//!   ETag must match), renames the result into place and removes the upload; abort removes it.
//!
//! # Limits
//!
//! Mutations are serialized by one lock per store (the data itself is staged outside it); two
//! processes writing the same root are not coordinated. Data and sidecar are renamed one after
//! the other, so a crash in between loses the metadata of that write (never mismatches it). A
//! name must leave room for the `.toml`/`.d` suffix (5 bytes) under the file system's name limit
//! for metadata to be stored. Symlinks are not served. Every request runs on tokio's blocking
//! pool, one task per request.
//!
//! # Layout
//!
//! This file holds `LocalStore` and its `ObjectStore` requests, each run on the blocking pool
//! by a method of `Inner`. Those methods live beside it, one concern each:
//! - `keys`: key validation and the key → path mapping (lookups, parent directories);
//! - `objects`: HEAD, GET, PUT, copy and DELETE, and the attributes (size, ETag) of a file;
//! - `temp`: the temporary files that make writes atomic;
//! - `sidecar`: content type and user metadata in TOML sidecars;
//! - `list`: LIST, over one directory or a depth-first walk;
//! - `multipart`: multipart uploads staged under the internal directory.

use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    check_condition_by_head, CompletedPart, Condition, ListPage, MultipartUploadInfo, ObjectInfo,
    ObjectStore, PutOptions, SetupError, StoreError, StoreResult,
};

mod keys;
mod list;
mod multipart;
mod objects;
mod sidecar;
mod temp;
#[cfg(test)]
mod test_support;

/// The store's own directory at the top of the root: never listed, keys under it refused.
const INTERNAL: &str = ".bucketfs-local";

/// An `ObjectStore` over a local directory (see the module documentation for the mapping).
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

impl LocalStore {
    /// Serves the directory `root`, which must exist. The internal directory is created on the
    /// first write, so a read-only root can still be browsed.
    pub fn new(root: PathBuf) -> StoreResult<Self> {
        let md = fs::metadata(&root).map_err(|e| StoreError::io(&root, e))?;
        if !md.is_dir() {
            return Err(StoreError::Setup(SetupError::RootNotADirectory(root)));
        }
        // Absolute, so a later change of working directory (daemonizing) does not move it.
        let root = fs::canonicalize(&root).map_err(|e| StoreError::io(&root, e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                lock: Mutex::new(()),
            }),
        })
    }

    /// The directory served (absolute).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Runs `f` on the blocking pool: every request does file I/O.
    async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> StoreResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::task_failed("the local store's worker task", e))?
    }
}

/// Maps an I/O error to `StoreError::Io` at the path, which keeps the error and so its errno
/// (a missing path is `NotFound`).
trait IoContext<T> {
    fn at(self, path: &Path) -> StoreResult<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> StoreResult<T> {
        self.map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::NotFound
            } else {
                StoreError::io(path, e)
            }
        })
    }
}

/// The state shared by the clones of a `LocalStore`. Its methods, which do the file I/O of each
/// request, are spread over this module's files by concern.
struct Inner {
    root: PathBuf,
    /// Serializes mutations of the tree (renames into place, sidecars, deletes).
    lock: Mutex<()>,
}

impl Inner {
    fn internal(&self) -> PathBuf {
        self.root.join(INTERNAL)
    }
}

impl LocalStore {
    /// Refuses a write whose condition does not hold for what `key` holds now. Checked just
    /// before the write, not atomically with it: the local store serves one mount.
    async fn check_condition(&self, key: &str, condition: Option<&Condition>) -> StoreResult<()> {
        match condition {
            Some(c) => check_condition_by_head(self, key, c).await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        let key = key.to_string();
        self.run(move |s| s.head(&key)).await
    }

    async fn get_range_if_match(
        &self,
        key: &str,
        range: Range<u64>,
        etag: Option<&str>,
    ) -> StoreResult<Bytes> {
        let (key, etag) = (key.to_string(), etag.map(str::to_string));
        self.run(move |s| {
            // Compared before the read: a writer racing this read is not excluded (dev backend).
            if let Some(etag) = &etag {
                if s.head(&key)?.etag.as_deref() != Some(etag.as_str()) {
                    return Err(StoreError::PreconditionFailed);
                }
            }
            s.get_range(&key, range)
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
        let prefix = prefix.to_string();
        let delimiter = delimiter.map(str::to_string);
        self.run(move |s| s.list_page(&prefix, delimiter.as_deref(), token.as_deref(), max_keys))
            .await
    }

    async fn list_page_after(
        &self,
        prefix: &str,
        start_after: &str,
        max_keys: usize,
    ) -> StoreResult<ListPage> {
        let token = crate::store::listing::token_after(start_after);
        self.list_page(prefix, None, Some(token), max_keys).await
    }

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<Option<String>> {
        self.check_condition(key, opts.condition.as_ref()).await?;
        let key = key.to_string();
        let opts = opts.clone();
        self.run(move |s| s.put(&key, body, &opts).map(Some)).await
    }

    /// SSE, ACL and storage class mean nothing here: only content type and metadata are kept
    /// (COPY) or replaced (REPLACE).
    async fn copy_with_options(
        &self,
        from: &str,
        to: &str,
        opts: &PutOptions,
        keep_metadata: bool,
    ) -> StoreResult<Option<String>> {
        self.check_condition(to, opts.condition.as_ref()).await?;
        let source = opts.copy_source_etag.clone().map(Condition::Is);
        self.check_condition(from, source.as_ref()).await?;
        let (from, to) = (from.to_string(), to.to_string());
        let replace = (!keep_metadata).then(|| opts.clone());
        self.run(move |s| s.copy(&from, &to, replace.as_ref()).map(Some))
            .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let key = key.to_string();
        self.run(move |s| s.delete(&key)).await
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        let key = key.to_string();
        let opts = opts.clone();
        self.run(move |s| s.create_multipart(&key, &opts)).await
    }

    async fn upload_part(
        &self,
        _key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> StoreResult<String> {
        let upload_id = upload_id.to_string();
        self.run(move |s| s.upload_part(&upload_id, number, body))
            .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
        condition: Option<&Condition>,
    ) -> StoreResult<Option<String>> {
        self.check_condition(key, condition).await?;
        let (key, upload_id) = (key.to_string(), upload_id.to_string());
        self.run(move |s| s.complete_multipart(&key, &upload_id, parts).map(Some))
            .await
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> StoreResult<()> {
        let upload_id = upload_id.to_string();
        self.run(move |s| s.abort_multipart(&upload_id)).await
    }

    async fn upload_part_copy(
        &self,
        _key: &str,
        upload_id: &str,
        number: u32,
        source_key: &str,
        source_etag: Option<&str>,
        range: Range<u64>,
    ) -> StoreResult<String> {
        if let Some(etag) = source_etag {
            self.check_condition(source_key, Some(&Condition::Is(etag.into())))
                .await?;
        }
        let (upload_id, source) = (upload_id.to_string(), source_key.to_string());
        self.run(move |s| s.upload_part_copy(&upload_id, number, &source, range))
            .await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> StoreResult<Vec<MultipartUploadInfo>> {
        let prefix = prefix.to_string();
        self.run(move |s| s.list_multipart_uploads(&prefix)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_requires_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(
            LocalStore::new(file.clone()),
            Err(StoreError::Setup(SetupError::RootNotADirectory(p))) if p == file
        ));
        // A missing root is an I/O error like any other here (there is no key to miss).
        match LocalStore::new(dir.path().join("missing")) {
            Err(StoreError::Io { path, source }) => {
                assert_eq!(path, dir.path().join("missing"));
                assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
            }
            other => panic!("{:?}", other.err()),
        }
        assert!(LocalStore::new(dir.path().to_path_buf()).is_ok());
    }

    /// A failed file operation keeps its I/O error, so the errno reaches the application
    /// (`fuse::errno`): here ENAMETOOLONG, which the local store meets for a name whose
    /// metadata sidecar (`<name>.toml`) is over the file system's name limit.
    #[tokio::test]
    async fn io_errors_keep_their_errno() {
        let (_dir, store) = test_support::store();
        let errno_of = |r: StoreResult<_>| match r {
            Err(StoreError::Io { path, source }) => (path, source.raw_os_error()),
            other => panic!("expected StoreError::Io, got {:?}", other.map(drop)),
        };
        let too_long = "n".repeat(300);
        let (path, errno) = errno_of(store.head(&too_long).await.map(drop));
        assert_eq!(errno, Some(libc::ENAMETOOLONG));
        assert!(path.ends_with(&too_long), "{path:?}");

        let name = "m".repeat(252);
        let with_metadata = test_support::opts("text/plain", &[]);
        let put = store
            .put(&name, Bytes::from_static(b"x"), &with_metadata)
            .await;
        let (path, errno) = errno_of(put.map(drop));
        assert_eq!(errno, Some(libc::ENAMETOOLONG));
        assert!(path.ends_with(format!("{name}.toml")), "{path:?}");
    }
}
