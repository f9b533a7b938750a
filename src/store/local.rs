//! A local directory as an `ObjectStore`, for development and demos (`LocalStore`).
//!
//! # Mapping
//!
//! * The key `a/b/c` is the regular file `root/a/b/c`. The key `a/b/` (a directory marker) is
//!   the directory `root/a/b`, and every directory below the root is such a marker object: size
//!   0, listed as `a/b/` (a common prefix when a delimiter groups it). PUT creates missing
//!   parent directories; a PUT of a marker creates the directory and must have an empty body.
//! * A directory cannot be both an object and a folder: a PUT of `a/b` while `a/b/…` keys exist,
//!   or of `a/b/c` (or `a/b/`) while `a/b` is an object, fails with `StoreError::Other`.
//! * Keys that are empty, start with `/`, hold an empty segment (`a//b`), a `.` or `..`
//!   segment, or a NUL byte are refused with `StoreError::Other`, and so is everything under the
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

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::listing::page_from_sorted;
use super::{
    check_copy_range, CompletedPart, ListPage, ListedObject, MultipartUploadInfo, ObjectInfo,
    ObjectStore, PutOptions, StoreError, StoreResult, UserMetadata,
};

/// The store's own directory at the top of the root: never listed, keys under it refused.
const INTERNAL: &str = ".bucketfs-local";
/// The file in an upload's directory that records its key and options.
const UPLOAD_MANIFEST: &str = "upload.toml";

/// An `ObjectStore` over a local directory (see the module documentation for the mapping).
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

impl LocalStore {
    /// Serves the directory `root`, which must exist. The internal directory is created on the
    /// first write, so a read-only root can still be browsed.
    pub fn new(root: PathBuf) -> StoreResult<Self> {
        let md = fs::metadata(&root)
            .map_err(|e| StoreError::Other(format!("local store root {}: {e}", root.display())))?;
        if !md.is_dir() {
            return Err(StoreError::Other(format!(
                "local store root {} is not a directory",
                root.display()
            )));
        }
        // Absolute, so a later change of working directory (daemonizing) does not move it.
        let root = fs::canonicalize(&root)
            .map_err(|e| StoreError::Other(format!("local store root {}: {e}", root.display())))?;
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
            .map_err(|e| StoreError::Other(format!("local store: worker task failed: {e}")))?
    }
}

/// A validated key: its path segments, and whether it names a directory marker (`a/b/`).
struct Key<'a> {
    text: &'a str,
    segs: Vec<&'a str>,
    marker: bool,
}

impl<'a> Key<'a> {
    fn parse(key: &'a str) -> StoreResult<Self> {
        let refuse = |why: &str| {
            Err(StoreError::Other(format!(
                "local store: key {key:?} refused: {why}"
            )))
        };
        if key.is_empty() {
            return refuse("empty key");
        }
        if key.starts_with('/') {
            return refuse("it starts with '/'");
        }
        if key.contains('\0') {
            return refuse("it contains a NUL byte");
        }
        let (body, marker) = match key.strip_suffix('/') {
            Some(body) => (body, true),
            None => (key, false),
        };
        let segs: Vec<&str> = body.split('/').collect();
        for seg in &segs {
            if seg.is_empty() {
                return refuse("empty path segment (a directory cannot have an empty name)");
            }
            if *seg == "." || *seg == ".." {
                return refuse("'.' and '..' segments are not allowed");
            }
        }
        if segs[0] == INTERNAL {
            return refuse("reserved for the local store's internal data");
        }
        Ok(Key {
            text: key,
            segs,
            marker,
        })
    }

    /// The parent segments and the last one (there is always at least one segment).
    fn split(&self) -> (&[&'a str], &'a str) {
        let (last, parents) = self.segs.split_last().expect("a key has a segment");
        (parents, last)
    }
}

/// What a path holds, without following symlinks.
enum Entry {
    Absent,
    File(Metadata),
    Dir(Metadata),
    /// A symlink, socket, FIFO or device: invisible to the store.
    Other,
}

fn entry(path: &Path) -> io::Result<Entry> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_file() => Ok(Entry::File(md)),
        Ok(md) if md.is_dir() => Ok(Entry::Dir(md)),
        Ok(_) => Ok(Entry::Other),
        Err(e) if is_absent(&e) => Ok(Entry::Absent),
        Err(e) => Err(e),
    }
}

fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Maps an I/O error to a `StoreError` naming the path (a missing path is `NotFound`).
trait IoContext<T> {
    fn at(self, path: &Path) -> StoreResult<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> StoreResult<T> {
        self.map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::NotFound
            } else {
                StoreError::Other(format!("local store: {}: {e}", path.display()))
            }
        })
    }
}

fn etag_of(md: &Metadata) -> String {
    if md.is_dir() {
        format!("\"d{:x}\"", md.ino())
    } else {
        format!(
            "\"{:x}-{:x}.{:x}-{:x}\"",
            md.len(),
            md.mtime(),
            md.mtime_nsec(),
            md.ino()
        )
    }
}

fn modified(md: &Metadata) -> SystemTime {
    md.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

fn size_of(md: &Metadata) -> u64 {
    if md.is_dir() {
        0
    } else {
        md.len()
    }
}

fn has_options(opts: &PutOptions) -> bool {
    opts.content_type.is_some() || !opts.metadata.is_empty()
}

/// The metadata sidecar of one object version.
#[derive(Serialize, Deserialize)]
struct Sidecar {
    /// The ETag of the version this belongs to; a sidecar that does not match is ignored.
    etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "UserMetadata::is_empty")]
    metadata: UserMetadata,
}

/// What `create_multipart` records for `complete_multipart`.
#[derive(Serialize, Deserialize)]
struct UploadManifest {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "UserMetadata::is_empty")]
    metadata: UserMetadata,
}

/// A temporary file, removed on drop unless renamed into place.
struct Temp {
    path: PathBuf,
    armed: bool,
}

impl Temp {
    fn persist(mut self, to: &Path) -> StoreResult<()> {
        fs::rename(&self.path, to).at(to)?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// One directory entry met while listing.
struct Node {
    /// The key: `dir/name` for a file, `dir/name/` for a directory.
    key: String,
    path: PathBuf,
    md: Metadata,
}

impl Node {
    fn listed(&self) -> ListedObject {
        ListedObject {
            key: self.key.clone(),
            size: size_of(&self.md),
            last_modified: modified(&self.md),
            etag: Some(etag_of(&self.md)),
        }
    }
}

struct Inner {
    root: PathBuf,
    /// Serializes mutations of the tree (renames into place, sidecars, deletes).
    lock: Mutex<()>,
}

impl Inner {
    fn internal(&self) -> PathBuf {
        self.root.join(INTERNAL)
    }

    fn meta_root(&self) -> PathBuf {
        self.internal().join("meta")
    }

    /// The sidecar of `key`: directories are `<name>.d`, files `<name>.toml`, a marker's own
    /// sidecar `.toml` inside its `.d` directory. No two keys share a path.
    fn meta_path(&self, key: &Key) -> PathBuf {
        let mut path = self.meta_root();
        let (parents, last) = key.split();
        for seg in parents {
            path.push(format!("{seg}.d"));
        }
        if key.marker {
            path.push(format!("{last}.d"));
            path.push(".toml");
        } else {
            path.push(format!("{last}.toml"));
        }
        path
    }

    fn upload_dir(&self, upload_id: &str) -> StoreResult<PathBuf> {
        // Ids come back from callers: only our own shape can name a directory.
        if upload_id.len() != 32 || !upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NotFound);
        }
        Ok(self.internal().join("uploads").join(upload_id))
    }

    /// A fresh temporary file in the internal `tmp` directory.
    fn temp(&self) -> StoreResult<(Temp, File)> {
        let dir = self.internal().join("tmp");
        fs::create_dir_all(&dir).at(&dir)?;
        loop {
            let path = dir.join(format!("{:016x}", rand::random::<u64>()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((Temp { path, armed: true }, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).at(&path),
            }
        }
    }

    fn temp_with(&self, body: &[u8]) -> StoreResult<Temp> {
        let (temp, mut file) = self.temp()?;
        file.write_all(body).at(&temp.path)?;
        Ok(temp)
    }

    /// The path and attributes of `key` if it exists, walking only through real directories.
    fn lookup(&self, key: &Key) -> StoreResult<Option<(PathBuf, Metadata)>> {
        let mut path = self.root.clone();
        let (parents, last) = key.split();
        for seg in parents {
            path.push(seg);
            if !matches!(entry(&path).at(&path)?, Entry::Dir(_)) {
                return Ok(None);
            }
        }
        path.push(last);
        Ok(match (entry(&path).at(&path)?, key.marker) {
            (Entry::File(md), false) | (Entry::Dir(md), true) => Some((path, md)),
            _ => None,
        })
    }

    /// Content type and metadata of the version with `etag`, if a matching sidecar exists.
    fn read_sidecar(&self, key: &Key, etag: &str) -> PutOptions {
        let path = self.meta_path(key);
        let Ok(text) = fs::read_to_string(&path) else {
            return PutOptions::default();
        };
        match toml::from_str::<Sidecar>(&text) {
            Ok(s) if s.etag == etag => PutOptions {
                content_type: s.content_type,
                metadata: s.metadata,
                ..PutOptions::default()
            },
            Ok(_) => PutOptions::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unreadable metadata sidecar: {e}");
                PutOptions::default()
            }
        }
    }

    /// Writes (or, without options, removes) the sidecar of `key`. Called with the lock held.
    fn write_sidecar(&self, key: &Key, etag: &str, opts: &PutOptions) -> StoreResult<()> {
        let path = self.meta_path(key);
        if !has_options(opts) {
            self.remove_sidecar(key);
            return Ok(());
        }
        let sidecar = Sidecar {
            etag: etag.to_string(),
            content_type: opts.content_type.clone(),
            metadata: opts.metadata.clone(),
        };
        let text = toml::to_string(&sidecar).map_err(|e| {
            StoreError::Other(format!("local store: metadata of {:?}: {e}", key.text))
        })?;
        let temp = self.temp_with(text.as_bytes())?;
        let parent = path.parent().expect("a sidecar has a parent");
        fs::create_dir_all(parent).at(parent)?;
        temp.persist(&path)
    }

    /// Removes the sidecar of `key` and the sidecar directories it leaves empty.
    fn remove_sidecar(&self, key: &Key) {
        let path = self.meta_path(key);
        if fs::remove_file(&path).is_err() {
            return;
        }
        let meta_root = self.meta_root();
        let mut dir = path;
        while dir.pop() && dir != meta_root && dir.starts_with(&meta_root) {
            if fs::remove_dir(&dir).is_err() {
                break;
            }
        }
    }

    /// Checks that `key` can be stored and creates its parent directories (and, for a marker,
    /// the directory itself). Returns the key's path. Called with the lock held.
    fn prepare(&self, key: &Key) -> StoreResult<PathBuf> {
        let (parents, last) = key.split();
        let mut path = self.root.clone();
        let mut missing = false;
        for (i, seg) in parents.iter().enumerate() {
            path.push(seg);
            if missing {
                continue;
            }
            let what = match entry(&path).at(&path)? {
                Entry::Dir(_) => continue,
                Entry::Absent => {
                    missing = true;
                    continue;
                }
                Entry::File(_) => "an object (a file)",
                Entry::Other => "a symlink or special file",
            };
            let name = parents[..=i].join("/");
            return Err(StoreError::Other(format!(
                "local store: cannot store {:?}: {name:?} is {what}, and only a directory can \
                 hold keys under \"{name}/\"",
                key.text
            )));
        }
        if missing {
            fs::create_dir_all(&path).at(&path)?;
        }
        path.push(last);
        match (entry(&path).at(&path)?, key.marker) {
            (Entry::Dir(_), false) => Err(StoreError::Other(format!(
                "local store: cannot store {0:?}: it is a directory here (\"{0}/\"), and a \
                 directory cannot also be an object",
                key.text
            ))),
            (Entry::File(_), true) | (Entry::Other, true) => Err(StoreError::Other(format!(
                "local store: cannot create the directory marker {:?}: {:?} is an object (a \
                 file or symlink), not a directory",
                key.text,
                key.segs.join("/")
            ))),
            (Entry::Absent, true) => match fs::create_dir(&path) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e).at(&path),
                _ => Ok(path),
            },
            _ => Ok(path),
        }
    }

    /// Puts `data` (a staged file for an object; `None` for a marker) in place of `key` with
    /// `opts`, returning the new ETag.
    fn commit(&self, key: &Key, data: Option<Temp>, opts: &PutOptions) -> StoreResult<String> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let path = self.prepare(key)?;
        if let Some(temp) = data {
            temp.persist(&path)?;
        }
        let md = fs::symlink_metadata(&path).at(&path)?;
        let etag = etag_of(&md);
        self.write_sidecar(key, &etag, opts)?;
        Ok(etag)
    }

    fn marker_body_error(key: &Key) -> StoreError {
        StoreError::Other(format!(
            "local store: {:?} is a directory marker and cannot hold data",
            key.text
        ))
    }

    fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        let key = Key::parse(key)?;
        let (_, md) = self.lookup(&key)?.ok_or(StoreError::NotFound)?;
        let etag = etag_of(&md);
        let opts = self.read_sidecar(&key, &etag);
        Ok(ObjectInfo {
            size: size_of(&md),
            last_modified: modified(&md),
            etag: Some(etag),
            content_type: opts.content_type,
            metadata: opts.metadata,
        })
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let key = Key::parse(key)?;
        let (path, md) = self.lookup(&key)?.ok_or(StoreError::NotFound)?;
        if md.is_dir() {
            return if range.start == 0 {
                Ok(Bytes::new())
            } else {
                Err(StoreError::InvalidRange)
            };
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .at(&path)?;
        let len = file.metadata().at(&path)?.len();
        if range.start >= len && !(len == 0 && range.start == 0) {
            return Err(StoreError::InvalidRange);
        }
        let end = range.end.min(len);
        if end <= range.start {
            return Ok(Bytes::new());
        }
        let mut buf = vec![0u8; (end - range.start) as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], range.start + filled as u64) {
                Ok(0) => break, // truncated meanwhile
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).at(&path),
            }
        }
        buf.truncate(filled);
        Ok(Bytes::from(buf))
    }

    /// The entries of `dir` (whose key is `dir_key`, "" for the root) whose names start with
    /// `name_prefix`, sorted by key. A directory that vanished or is not one lists as empty.
    fn children(&self, dir: &Path, dir_key: &str, name_prefix: &str) -> StoreResult<Vec<Node>> {
        let read = match fs::read_dir(dir) {
            Ok(read) => read,
            Err(e) if is_absent(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e).at(dir),
        };
        let mut nodes = Vec::new();
        for item in read {
            let item = item.at(dir)?;
            let name = item.file_name();
            let Some(name) = name.to_str() else {
                tracing::debug!(dir = %dir.display(), "skipping a name that is not UTF-8");
                continue;
            };
            if !name.starts_with(name_prefix) || (dir_key.is_empty() && name == INTERNAL) {
                continue;
            }
            // `DirEntry::metadata` does not follow symlinks.
            let md = match item.metadata() {
                Ok(md) => md,
                Err(e) if is_absent(&e) => continue,
                Err(e) => return Err(e).at(&item.path()),
            };
            let key = if md.is_dir() {
                format!("{dir_key}{name}/")
            } else if md.is_file() {
                format!("{dir_key}{name}")
            } else {
                continue;
            };
            nodes.push(Node {
                key,
                path: item.path(),
                md,
            });
        }
        nodes.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(nodes)
    }

    fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<&str>,
        max_keys: usize,
    ) -> StoreResult<ListPage> {
        // The directory the prefix points into, and the start of the names wanted in it.
        let (dir_key, name_prefix) = match prefix.rfind('/') {
            Some(i) => prefix.split_at(i + 1),
            None => ("", prefix),
        };
        let mut own_marker = None;
        let dir = if dir_key.is_empty() {
            self.root.clone()
        } else {
            // A prefix no valid key can have (`../`, `a//`, the internal dir) lists as empty.
            let Ok(key) = Key::parse(dir_key) else {
                return Ok(ListPage::default());
            };
            let Some((path, md)) = self.lookup(&key)? else {
                return Ok(ListPage::default());
            };
            if name_prefix.is_empty() {
                own_marker = Some(ListedObject {
                    key: dir_key.to_string(),
                    size: 0,
                    last_modified: modified(&md),
                    etag: Some(etag_of(&md)),
                });
            }
            path
        };
        let children = self.children(&dir, dir_key, name_prefix)?;
        if delimiter == Some("/") {
            // Deeper keys would all be grouped under the subdirectories' prefixes.
            let entries = own_marker
                .into_iter()
                .chain(children.iter().map(Node::listed));
            return Ok(page_from_sorted(
                entries, prefix, delimiter, token, max_keys,
            ));
        }
        let mut walk = Walk {
            inner: self,
            stack: vec![children.into_iter()],
            token,
            error: None,
        };
        let page = page_from_sorted(
            own_marker.into_iter().chain(&mut walk),
            prefix,
            delimiter,
            token,
            max_keys,
        );
        match walk.error {
            Some(e) => Err(e),
            None => Ok(page),
        }
    }

    fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<String> {
        let key = Key::parse(key)?;
        let data = if key.marker {
            if !body.is_empty() {
                return Err(Self::marker_body_error(&key));
            }
            None
        } else {
            Some(self.temp_with(&body)?)
        };
        self.commit(&key, data, opts)
    }

    fn copy(&self, from: &str, to: &str, replace: Option<&PutOptions>) -> StoreResult<()> {
        let src = Key::parse(from)?;
        let dst = Key::parse(to)?;
        let (path, md) = self.lookup(&src)?.ok_or(StoreError::NotFound)?;
        let opts = match replace {
            Some(opts) => opts.clone(),
            None => self.read_sidecar(&src, &etag_of(&md)),
        };
        let data = match (dst.marker, md.is_dir()) {
            (true, _) if size_of(&md) > 0 => return Err(Self::marker_body_error(&dst)),
            (true, _) => None,
            (false, true) => Some(self.temp_with(&[])?),
            (false, false) => {
                let mut source = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .at(&path)?;
                let (temp, mut file) = self.temp()?;
                io::copy(&mut source, &mut file).at(&temp.path)?;
                Some(temp)
            }
        };
        self.commit(&dst, data, &opts).map(drop)
    }

    fn delete(&self, key: &str) -> StoreResult<()> {
        let key = Key::parse(key)?;
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((path, _)) = self.lookup(&key)? else {
            return Ok(());
        };
        let removed = if key.marker {
            fs::remove_dir(&path)
        } else {
            fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {}
            Err(e) if is_absent(&e) => return Ok(()),
            // A marker over keys stays while they exist (see the module documentation).
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => return Ok(()),
            Err(e) => return Err(e).at(&path),
        }
        self.remove_sidecar(&key);
        Ok(())
    }

    fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        Key::parse(key)?;
        let uploads = self.internal().join("uploads");
        fs::create_dir_all(&uploads).at(&uploads)?;
        let (id, dir) = loop {
            let id = format!(
                "{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            );
            let dir = uploads.join(&id);
            match fs::create_dir(&dir) {
                Ok(()) => break (id, dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).at(&dir),
            }
        };
        let manifest = UploadManifest {
            key: key.to_string(),
            content_type: opts.content_type.clone(),
            metadata: opts.metadata.clone(),
        };
        let text = toml::to_string(&manifest)
            .map_err(|e| StoreError::Other(format!("local store: upload of {key:?}: {e}")))?;
        let path = dir.join(UPLOAD_MANIFEST);
        if let Err(e) = fs::write(&path, text) {
            let _ = fs::remove_dir_all(&dir);
            return Err(e).at(&path);
        }
        Ok(id)
    }

    fn manifest(&self, dir: &Path) -> StoreResult<UploadManifest> {
        let path = dir.join(UPLOAD_MANIFEST);
        let text = fs::read_to_string(&path).at(&path)?;
        toml::from_str(&text)
            .map_err(|e| StoreError::Other(format!("local store: {}: {e}", path.display())))
    }

    fn upload_part(&self, upload_id: &str, number: u32, body: Bytes) -> StoreResult<String> {
        let dir = self.upload_dir(upload_id)?;
        if !dir.is_dir() {
            return Err(StoreError::NotFound);
        }
        let temp = self.temp_with(&body)?;
        let etag = etag_of(&fs::metadata(&temp.path).at(&temp.path)?);
        temp.persist(&dir.join(number.to_string()))?;
        Ok(etag)
    }

    /// Stages `range` of the object `source` as part `number`, as `upload_part` would.
    fn upload_part_copy(
        &self,
        upload_id: &str,
        number: u32,
        source: &str,
        range: Range<u64>,
    ) -> StoreResult<String> {
        check_copy_range(&range)?;
        let dir = self.upload_dir(upload_id)?;
        if !dir.is_dir() {
            return Err(StoreError::NotFound);
        }
        let src = Key::parse(source)?;
        let (path, md) = self.lookup(&src)?.ok_or(StoreError::NotFound)?;
        if range.end > size_of(&md) {
            return Err(StoreError::InvalidRange);
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .at(&path)?;
        let (temp, out) = self.temp()?;
        let mut buf = vec![0u8; (range.end - range.start).min(1 << 20) as usize];
        let mut pos = range.start;
        while pos < range.end {
            let want = (range.end - pos).min(buf.len() as u64) as usize;
            let n = match file.read_at(&mut buf[..want], pos) {
                // Truncated since the size check: the range no longer exists.
                Ok(0) => return Err(StoreError::InvalidRange),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).at(&path),
            };
            out.write_all_at(&buf[..n], pos - range.start)
                .at(&temp.path)?;
            pos += n as u64;
        }
        drop(out);
        let etag = etag_of(&fs::metadata(&temp.path).at(&temp.path)?);
        temp.persist(&dir.join(number.to_string()))?;
        Ok(etag)
    }

    /// The uploads in progress whose keys start with `prefix`, by key then start time. The
    /// start time is the mtime of the upload's manifest, written once by `create_multipart`.
    fn list_multipart_uploads(&self, prefix: &str) -> StoreResult<Vec<MultipartUploadInfo>> {
        let uploads = self.internal().join("uploads");
        let read = match fs::read_dir(&uploads) {
            Ok(read) => read,
            Err(e) if is_absent(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e).at(&uploads),
        };
        let mut found = Vec::new();
        for item in read {
            let item = item.at(&uploads)?;
            let Some(id) = item.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(dir) = self.upload_dir(&id) else {
                continue; // not one of ours
            };
            let manifest_path = dir.join(UPLOAD_MANIFEST);
            let initiated = match fs::metadata(&manifest_path) {
                Ok(md) => modified(&md),
                // Completed or aborted meanwhile, or still being created.
                Err(e) if is_absent(&e) => continue,
                Err(e) => return Err(e).at(&manifest_path),
            };
            let manifest = match self.manifest(&dir) {
                Ok(m) => m,
                Err(StoreError::NotFound) => continue,
                Err(e) => {
                    tracing::warn!(upload = %id, "skipping an unreadable upload manifest: {e}");
                    continue;
                }
            };
            if manifest.key.starts_with(prefix) {
                found.push(MultipartUploadInfo {
                    key: manifest.key,
                    upload_id: id,
                    initiated,
                });
            }
        }
        found.sort_by(|a, b| {
            (&a.key, a.initiated, &a.upload_id).cmp(&(&b.key, b.initiated, &b.upload_id))
        });
        Ok(found)
    }

    fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> StoreResult<String> {
        let parsed = Key::parse(key)?;
        let dir = self.upload_dir(upload_id)?;
        let manifest = self.manifest(&dir)?;
        if manifest.key != key {
            return Err(StoreError::Other(format!(
                "local store: upload {upload_id} belongs to {:?}, not {key:?}",
                manifest.key
            )));
        }
        let (temp, mut file) = self.temp()?;
        for part in &parts {
            let path = dir.join(part.number.to_string());
            let mut source = match File::open(&path) {
                Ok(source) => source,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(StoreError::Other(format!(
                        "local store: part {} of upload {upload_id} was never uploaded",
                        part.number
                    )))
                }
                Err(e) => return Err(e).at(&path),
            };
            if etag_of(&source.metadata().at(&path)?) != part.etag {
                return Err(StoreError::Other(format!(
                    "local store: part {} of upload {upload_id}: ETag {} does not match the \
                     uploaded part",
                    part.number, part.etag
                )));
            }
            io::copy(&mut source, &mut file).at(&temp.path)?;
        }
        drop(file);
        let data = if parsed.marker {
            if fs::metadata(&temp.path).at(&temp.path)?.len() > 0 {
                return Err(Self::marker_body_error(&parsed));
            }
            None
        } else {
            Some(temp)
        };
        let opts = PutOptions {
            content_type: manifest.content_type,
            metadata: manifest.metadata,
            ..PutOptions::default()
        };
        let etag = self.commit(&parsed, data, &opts)?;
        let _ = fs::remove_dir_all(&dir);
        Ok(etag)
    }

    fn abort_multipart(&self, upload_id: &str) -> StoreResult<()> {
        let Ok(dir) = self.upload_dir(upload_id) else {
            return Ok(());
        };
        match fs::remove_dir_all(&dir) {
            Err(e) if !is_absent(&e) => Err(e).at(&dir),
            _ => Ok(()),
        }
    }
}

/// A depth-first walk in key order: siblings sorted by key (`name` or `name/`), each directory
/// followed by its contents, which is byte order over the whole tree since no sibling key falls
/// between `d/` and the keys below it. Read lazily, so a page stops the walk.
struct Walk<'a> {
    inner: &'a Inner,
    stack: Vec<std::vec::IntoIter<Node>>,
    token: Option<&'a str>,
    error: Option<StoreError>,
}

impl Iterator for Walk<'_> {
    type Item = ListedObject;

    fn next(&mut self) -> Option<ListedObject> {
        loop {
            let top = self.stack.last_mut()?;
            let Some(node) = top.next() else {
                self.stack.pop();
                continue;
            };
            if node.md.is_dir() {
                // Below the token and not an ancestor of it: the whole subtree is before it.
                if self
                    .token
                    .is_some_and(|t| node.key.as_str() < t && !t.starts_with(node.key.as_str()))
                {
                    continue;
                }
                match self.inner.children(&node.path, &node.key, "") {
                    Ok(children) => self.stack.push(children.into_iter()),
                    Err(e) => {
                        self.error = Some(e);
                        self.stack.clear();
                        return None;
                    }
                }
            }
            return Some(node.listed());
        }
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        let key = key.to_string();
        self.run(move |s| s.head(&key)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let key = key.to_string();
        self.run(move |s| s.get_range(&key, range)).await
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

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<Option<String>> {
        let key = key.to_string();
        let opts = opts.clone();
        self.run(move |s| s.put(&key, body, &opts).map(Some)).await
    }

    async fn copy(&self, from: &str, to: &str, replace: Option<&PutOptions>) -> StoreResult<()> {
        let (from, to) = (from.to_string(), to.to_string());
        let replace = replace.cloned();
        self.run(move |s| s.copy(&from, &to, replace.as_ref()))
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
    ) -> StoreResult<Option<String>> {
        let (key, upload_id) = (key.to_string(), upload_id.to_string());
        self.run(move |s| s.complete_multipart(&key, &upload_id, parts).map(Some))
            .await
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> StoreResult<()> {
        let upload_id = upload_id.to_string();
        self.run(move |s| s.abort_multipart(&upload_id)).await
    }

    /// SSE, ACL and storage class mean nothing here: only content type and metadata are kept.
    async fn copy_with_options(
        &self,
        from: &str,
        to: &str,
        opts: &PutOptions,
        keep_metadata: bool,
    ) -> StoreResult<()> {
        self.copy(from, to, (!keep_metadata).then_some(opts)).await
    }

    async fn upload_part_copy(
        &self,
        _key: &str,
        upload_id: &str,
        number: u32,
        source_key: &str,
        range: Range<u64>,
    ) -> StoreResult<String> {
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
    use crate::store::list_all;
    use tempfile::TempDir;

    fn store() -> (TempDir, LocalStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf()).unwrap();
        (dir, store)
    }

    fn opts(content_type: &str, pairs: &[(&str, &str)]) -> PutOptions {
        PutOptions {
            content_type: Some(content_type.to_string()),
            metadata: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..PutOptions::default()
        }
    }

    async fn put(store: &LocalStore, key: &str, body: &'static [u8]) {
        store
            .put(key, Bytes::from_static(body), &PutOptions::default())
            .await
            .unwrap();
    }

    async fn all_keys(store: &LocalStore, prefix: &str) -> Vec<String> {
        list_all(store, prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect()
    }

    fn is_other<T: std::fmt::Debug>(r: StoreResult<T>) -> bool {
        matches!(r, Err(StoreError::Other(_)))
    }

    #[test]
    fn new_requires_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        assert!(LocalStore::new(file).is_err());
        assert!(LocalStore::new(dir.path().join("missing")).is_err());
        assert!(LocalStore::new(dir.path().to_path_buf()).is_ok());
    }

    #[tokio::test]
    async fn put_get_head_round_trip_with_metadata() {
        let (dir, store) = store();
        let o = opts("text/plain", &[("mode", "644"), ("uid", "1000")]);
        let etag = store
            .put("docs/readme.txt", Bytes::from_static(b"hello world"), &o)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            fs::read(dir.path().join("docs/readme.txt")).unwrap(),
            b"hello world"
        );
        let info = store.head("docs/readme.txt").await.unwrap();
        assert_eq!(info.size, 11);
        assert_eq!(info.etag.as_deref(), Some(etag.as_str()));
        assert_eq!(info.content_type.as_deref(), Some("text/plain"));
        assert_eq!(info.metadata, o.metadata);
        let all = store
            .get_range("docs/readme.txt", 0..u64::MAX)
            .await
            .unwrap();
        assert_eq!(&all[..], b"hello world");

        // The parent directory became a marker; the key without the slash is not an object.
        assert_eq!(store.head("docs/").await.unwrap().size, 0);
        assert!(matches!(
            store.head("docs").await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.head("nope").await,
            Err(StoreError::NotFound)
        ));

        // Overwriting without options changes the ETag and drops the metadata.
        put(&store, "docs/readme.txt", b"bye").await;
        let info = store.head("docs/readme.txt").await.unwrap();
        assert_ne!(info.etag.as_deref(), Some(etag.as_str()));
        assert_eq!(info.size, 3);
        assert_eq!(info.content_type, None);
        assert!(info.metadata.is_empty());
        assert!(!dir
            .path()
            .join(".bucketfs-local/meta/docs.d/readme.txt.toml")
            .exists());
    }

    #[tokio::test]
    async fn a_file_changed_behind_the_store_loses_its_metadata() {
        let (dir, store) = store();
        store
            .put("f", Bytes::from_static(b"one"), &opts("text/plain", &[]))
            .await
            .unwrap();
        let before = store.head("f").await.unwrap();
        fs::write(dir.path().join("f"), b"other content").unwrap();
        let after = store.head("f").await.unwrap();
        assert_ne!(before.etag, after.etag);
        assert_eq!(after.content_type, None);
        // A plain file dropped into the root is an object without metadata.
        fs::write(dir.path().join("plain"), b"p").unwrap();
        let info = store.head("plain").await.unwrap();
        assert_eq!((info.size, info.content_type), (1, None));
    }

    #[tokio::test]
    async fn ranges_follow_s3() {
        let (_dir, store) = store();
        put(&store, "r", b"0123456789").await;
        put(&store, "empty", b"").await;
        assert_eq!(&store.get_range("r", 2..5).await.unwrap()[..], b"234");
        assert_eq!(&store.get_range("r", 7..100).await.unwrap()[..], b"789");
        assert!(matches!(
            store.get_range("r", 10..20).await,
            Err(StoreError::InvalidRange)
        ));
        assert!(matches!(
            store.get_range("r", 50..60).await,
            Err(StoreError::InvalidRange)
        ));
        assert!(store.get_range("empty", 0..10).await.unwrap().is_empty());
        assert!(matches!(
            store.get_range("empty", 1..10).await,
            Err(StoreError::InvalidRange)
        ));
        put(&store, "m/", b"").await;
        assert!(store.get_range("m/", 0..10).await.unwrap().is_empty());
        assert!(matches!(
            store.get_range("missing", 0..1).await,
            Err(StoreError::NotFound)
        ));
    }

    #[tokio::test]
    async fn list_with_delimiter_paginates() {
        let (_dir, store) = store();
        for key in ["p/a", "p/b/1", "p/b/2", "p/c", "p/d", "q"] {
            put(&store, key, b"x").await;
        }
        // Five entries under p/: the marker p/ itself, p/a, p/b/ (a prefix), p/c, p/d.
        let mut seen = Vec::new();
        let mut token = None;
        let mut pages = 0;
        loop {
            let page = store.list_page("p/", Some("/"), token, 2).await.unwrap();
            pages += 1;
            assert!(page.objects.len() + page.prefixes.len() <= 2);
            seen.extend(page.objects.iter().map(|o| o.key.clone()));
            seen.extend(page.prefixes.iter().cloned());
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        seen.sort();
        assert_eq!(seen, ["p/", "p/a", "p/b/", "p/c", "p/d"]);

        let first = store.list_page("p/", Some("/"), None, 2).await.unwrap();
        let keys: Vec<_> = first.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p/", "p/a"]);
        assert_eq!(first.objects[0].size, 0);

        let root = store.list_page("", Some("/"), None, 1000).await.unwrap();
        let keys: Vec<_> = root.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["q"]);
        assert_eq!(root.prefixes, ["p/"]);

        // A name prefix inside a directory.
        let page = store.list_page("p/b", Some("/"), None, 1000).await.unwrap();
        assert!(page.objects.is_empty());
        assert_eq!(page.prefixes, ["p/b/"]);
    }

    #[tokio::test]
    async fn list_without_delimiter_walks_in_key_order() {
        let (_dir, store) = store();
        for key in ["a/b.txt", "a/b/c", "a/b/d/e", "a0", "a-z", "z"] {
            put(&store, key, b"x").await;
        }
        put(&store, "a/empty/", b"").await;
        let expected = [
            "a-z", "a/", "a/b.txt", "a/b/", "a/b/c", "a/b/d/", "a/b/d/e", "a/empty/", "a0", "z",
        ];
        assert_eq!(all_keys(&store, "").await, expected);
        // Pagination with small pages gives the same sequence.
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = store.list_page("", None, token, 2).await.unwrap();
            assert!(page.prefixes.is_empty());
            keys.extend(page.objects.into_iter().map(|o| o.key));
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(keys, expected);
        assert_eq!(
            all_keys(&store, "a/b").await,
            ["a/b.txt", "a/b/", "a/b/c", "a/b/d/", "a/b/d/e"]
        );
        assert_eq!(
            all_keys(&store, "a/b/").await,
            ["a/b/", "a/b/c", "a/b/d/", "a/b/d/e"]
        );
        // Missing directories and prefixes no key can have list as empty.
        assert!(all_keys(&store, "missing/").await.is_empty());
        assert!(all_keys(&store, "z/").await.is_empty());
        assert!(all_keys(&store, "../").await.is_empty());
        assert!(all_keys(&store, "a//").await.is_empty());
    }

    #[tokio::test]
    async fn markers_nested_dirs_and_conflicts() {
        let (dir, store) = store();
        let o = opts("application/x-directory", &[("mode", "755")]);
        store.put("x/y/", Bytes::new(), &o).await.unwrap();
        assert!(dir.path().join("x/y").is_dir());
        let info = store.head("x/y/").await.unwrap();
        assert_eq!(info.size, 0);
        assert_eq!(info.metadata, o.metadata);
        assert_eq!(info.content_type, o.content_type);
        assert!(store.head("x/").await.is_ok());
        assert!(matches!(store.head("x/y").await, Err(StoreError::NotFound)));

        // Adding a child keeps the marker's ETag, hence its metadata.
        put(&store, "x/y/z", b"data").await;
        assert_eq!(store.head("x/y/").await.unwrap().metadata, o.metadata);

        // A file cannot hold keys; a directory cannot be an object.
        assert!(is_other(
            store
                .put("x/y", Bytes::from_static(b"f"), &PutOptions::default())
                .await
        ));
        assert!(is_other(
            store
                .put("x/y/z/w", Bytes::from_static(b"f"), &PutOptions::default())
                .await
        ));
        assert!(is_other(
            store
                .put("x/y/z/", Bytes::new(), &PutOptions::default())
                .await
        ));
        assert!(is_other(
            store
                .put("m/", Bytes::from_static(b"data"), &PutOptions::default())
                .await
        ));
        assert_eq!(&store.get_range("x/y/z", 0..10).await.unwrap()[..], b"data");

        // Deleting a non-empty marker keeps it; once empty it goes.
        store.delete("x/y/").await.unwrap();
        assert!(store.head("x/y/").await.is_ok());
        store.delete("x/y/z").await.unwrap();
        assert!(dir.path().join("x/y").is_dir());
        store.delete("x/y/").await.unwrap();
        assert!(!dir.path().join("x/y").exists());
        assert!(!dir
            .path()
            .join(".bucketfs-local/meta/x.d/y.d/.toml")
            .exists());
        assert_eq!(all_keys(&store, "").await, ["x/"]);
    }

    #[tokio::test]
    async fn multipart_concatenates_parts_in_order() {
        let (dir, store) = store();
        let o = opts("video/mp4", &[("k", "v")]);
        let id = store.create_multipart("big/file", &o).await.unwrap();
        let e2 = store
            .upload_part("big/file", &id, 2, Bytes::from_static(b"world"))
            .await
            .unwrap();
        let e1 = store
            .upload_part("big/file", &id, 1, Bytes::from_static(b"hello "))
            .await
            .unwrap();
        assert!(dir
            .path()
            .join(".bucketfs-local/uploads")
            .join(&id)
            .join("1")
            .is_file());
        let parts = vec![
            CompletedPart {
                number: 1,
                etag: e1,
            },
            CompletedPart {
                number: 2,
                etag: e2,
            },
        ];
        // The wrong key is refused and leaves the upload intact.
        assert!(is_other(
            store.complete_multipart("other", &id, parts.clone()).await
        ));
        let etag = store
            .complete_multipart("big/file", &id, parts)
            .await
            .unwrap();
        let info = store.head("big/file").await.unwrap();
        assert_eq!(info.etag, etag);
        assert_eq!(info.content_type.as_deref(), Some("video/mp4"));
        assert_eq!(info.metadata, o.metadata);
        assert_eq!(
            &store.get_range("big/file", 0..100).await.unwrap()[..],
            b"hello world"
        );
        assert!(!dir
            .path()
            .join(".bucketfs-local/uploads")
            .join(&id)
            .exists());

        // A part never uploaded, an unknown upload, and abort.
        let id = store
            .create_multipart("k", &PutOptions::default())
            .await
            .unwrap();
        let missing = vec![CompletedPart {
            number: 7,
            etag: "\"x\"".into(),
        }];
        assert!(is_other(store.complete_multipart("k", &id, missing).await));
        store.abort_multipart("k", &id).await.unwrap();
        assert!(!dir
            .path()
            .join(".bucketfs-local/uploads")
            .join(&id)
            .exists());
        assert!(matches!(
            store.upload_part("k", &id, 1, Bytes::new()).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.upload_part("k", "../../x", 1, Bytes::new()).await,
            Err(StoreError::NotFound)
        ));
        store.abort_multipart("k", &id).await.unwrap();
        assert!(matches!(store.head("k").await, Err(StoreError::NotFound)));
    }

    #[tokio::test]
    async fn copy_keeps_or_replaces_metadata() {
        let (_dir, store) = store();
        let o = opts("text/plain", &[("a", "1")]);
        store
            .put("src", Bytes::from_static(b"body"), &o)
            .await
            .unwrap();
        store.copy("src", "dir/copy", None).await.unwrap();
        let info = store.head("dir/copy").await.unwrap();
        assert_eq!(info.content_type, o.content_type);
        assert_eq!(info.metadata, o.metadata);
        assert_eq!(
            &store.get_range("dir/copy", 0..10).await.unwrap()[..],
            b"body"
        );

        let r = opts("application/json", &[("b", "2")]);
        store.copy("src", "src", Some(&r)).await.unwrap();
        let info = store.head("src").await.unwrap();
        assert_eq!(info.content_type, r.content_type);
        assert_eq!(info.metadata, r.metadata);
        assert_eq!(&store.get_range("src", 0..10).await.unwrap()[..], b"body");

        assert!(matches!(
            store.copy("missing", "x", None).await,
            Err(StoreError::NotFound)
        ));
        assert!(is_other(store.copy("src", "m/", None).await));
    }

    #[tokio::test]
    async fn delete_of_missing_keys_succeeds() {
        let (dir, store) = store();
        store
            .put("a/f", Bytes::from_static(b"x"), &opts("text/plain", &[]))
            .await
            .unwrap();
        assert!(dir.path().join(".bucketfs-local/meta/a.d/f.toml").is_file());
        store.delete("a/f").await.unwrap();
        assert!(matches!(store.head("a/f").await, Err(StoreError::NotFound)));
        assert!(!dir.path().join(".bucketfs-local/meta/a.d").exists());
        store.delete("a/f").await.unwrap();
        store.delete("never/was").await.unwrap();
        store.delete("a").await.unwrap(); // a directory is not the object "a"
        assert!(dir.path().join("a").is_dir());
    }

    #[tokio::test]
    async fn bad_keys_are_refused() {
        let (dir, store) = store();
        for key in [
            "../x",
            "a//b",
            "/a",
            "a/./b",
            "a/..",
            "",
            "//",
            ".bucketfs-local/tmp/x",
        ] {
            assert!(
                is_other(
                    store
                        .put(key, Bytes::from_static(b"x"), &PutOptions::default())
                        .await
                ),
                "{key}"
            );
            assert!(is_other(store.head(key).await), "{key}");
            assert!(is_other(store.get_range(key, 0..1).await), "{key}");
            assert!(is_other(store.delete(key).await), "{key}");
        }
        assert!(!dir.path().parent().unwrap().join("x").exists());
        // The internal name is only reserved at the top.
        put(&store, "a/.bucketfs-local", b"ok").await;
    }

    #[tokio::test]
    async fn the_internal_dir_is_never_listed() {
        let (dir, store) = store();
        store
            .put("f", Bytes::from_static(b"x"), &opts("text/plain", &[]))
            .await
            .unwrap();
        let id = store
            .create_multipart("g", &PutOptions::default())
            .await
            .unwrap();
        store
            .upload_part("g", &id, 1, Bytes::from_static(b"p"))
            .await
            .unwrap();
        assert!(dir.path().join(".bucketfs-local").is_dir());
        assert_eq!(all_keys(&store, "").await, ["f"]);
        let page = store.list_page("", Some("/"), None, 1000).await.unwrap();
        assert!(page.prefixes.is_empty());
        assert_eq!(page.objects.len(), 1);
        assert!(all_keys(&store, ".bucketfs-local/").await.is_empty());
        assert!(all_keys(&store, ".b").await.is_empty());
    }

    #[tokio::test]
    async fn symlinks_are_invisible_and_never_followed() {
        let (dir, store) = store();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("file-link"))
            .unwrap();
        assert!(all_keys(&store, "").await.is_empty());
        assert!(matches!(
            store.head("link/secret").await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.head("file-link").await,
            Err(StoreError::NotFound)
        ));
        assert!(all_keys(&store, "link/").await.is_empty());
        assert!(is_other(
            store
                .put("link/new", Bytes::from_static(b"x"), &PutOptions::default())
                .await
        ));
        assert!(!outside.path().join("new").exists());
    }

    #[tokio::test]
    async fn upload_part_copy_stages_a_range_of_another_object() {
        let (dir, store) = store();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        store
            .put("src/big", Bytes::from(big.clone()), &PutOptions::default())
            .await
            .unwrap();
        put(&store, "src/small", b"0123456789").await;
        let id = store
            .create_multipart("dst", &opts("text/x", &[]))
            .await
            .unwrap();
        // A range over 1 MiB (copied in several chunks), a new part, a small range.
        let e1 = store
            .upload_part_copy("dst", &id, 1, "src/big", 100..2_500_000)
            .await
            .unwrap();
        let e2 = store
            .upload_part("dst", &id, 2, Bytes::from_static(b"-new-"))
            .await
            .unwrap();
        let e3 = store
            .upload_part_copy("dst", &id, 3, "src/small", 7..10)
            .await
            .unwrap();
        assert!(dir
            .path()
            .join(".bucketfs-local/uploads")
            .join(&id)
            .join("1")
            .is_file());
        // Errors: missing source, range past the end, empty range, unknown upload, bad key.
        let copy = |src: &'static str, range: Range<u64>| {
            let (store, id) = (store.clone(), id.clone());
            async move { store.upload_part_copy("dst", &id, 9, src, range).await }
        };
        assert!(matches!(
            copy("src/none", 0..1).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            copy("src/small", 5..11).await,
            Err(StoreError::InvalidRange)
        ));
        assert!(matches!(
            copy("src/", 0..1).await,
            Err(StoreError::InvalidRange)
        ));
        assert!(is_other(copy("src/small", 4..4).await));
        assert!(is_other(copy("../x", 0..1).await));
        assert!(matches!(
            store
                .upload_part_copy("dst", "0123", 1, "src/small", 0..1)
                .await,
            Err(StoreError::NotFound)
        ));
        let parts = [(1, e1), (2, e2), (3, e3)]
            .into_iter()
            .map(|(number, etag)| CompletedPart { number, etag })
            .collect();
        store.complete_multipart("dst", &id, parts).await.unwrap();
        let got = store.get_range("dst", 0..10_000_000).await.unwrap();
        let mut want = big[100..2_500_000].to_vec();
        want.extend_from_slice(b"-new-789");
        assert_eq!(got.len(), want.len());
        assert!(got[..] == want[..]);
        assert_eq!(
            store.head("dst").await.unwrap().content_type.as_deref(),
            Some("text/x")
        );
    }

    #[tokio::test]
    async fn lists_multipart_uploads_in_progress() {
        let (dir, store) = store();
        assert!(store.list_multipart_uploads("").await.unwrap().is_empty());
        let before = SystemTime::now() - std::time::Duration::from_secs(2);
        let b = store
            .create_multipart("d/b", &PutOptions::default())
            .await
            .unwrap();
        let a = store
            .create_multipart("d/a", &PutOptions::default())
            .await
            .unwrap();
        let x = store
            .create_multipart("x", &PutOptions::default())
            .await
            .unwrap();
        // Junk in the uploads directory is skipped.
        fs::create_dir(dir.path().join(".bucketfs-local/uploads/not-an-upload")).unwrap();
        fs::create_dir(
            dir.path()
                .join(".bucketfs-local/uploads")
                .join("f".repeat(32)),
        )
        .unwrap();
        let listed = store.list_multipart_uploads("d/").await.unwrap();
        let ids: Vec<_> = listed
            .iter()
            .map(|u| (u.key.as_str(), u.upload_id.as_str()))
            .collect();
        assert_eq!(ids, [("d/a", a.as_str()), ("d/b", b.as_str())]);
        assert!(listed.iter().all(|u| u.initiated >= before));
        assert_eq!(store.list_multipart_uploads("").await.unwrap().len(), 3);
        store.abort_multipart("x", &x).await.unwrap();
        assert_eq!(store.list_multipart_uploads("").await.unwrap().len(), 2);
        assert!(store.list_multipart_uploads("q").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn copy_with_options_keeps_or_replaces_metadata() {
        let (_dir, store) = store();
        let o = opts("text/plain", &[("a", "1")]);
        store
            .put("src", Bytes::from_static(b"body"), &o)
            .await
            .unwrap();
        let stored_as = PutOptions {
            sse: Some(crate::store::Sse::Aes256),
            storage_class: Some("STANDARD_IA".into()),
            ..opts("application/json", &[("b", "2")])
        };
        store
            .copy_with_options("src", "kept", &stored_as, true)
            .await
            .unwrap();
        let info = store.head("kept").await.unwrap();
        assert_eq!(
            (info.content_type, info.metadata),
            (o.content_type, o.metadata)
        );
        store
            .copy_with_options("src", "replaced", &stored_as, false)
            .await
            .unwrap();
        let info = store.head("replaced").await.unwrap();
        assert_eq!(info.content_type, stored_as.content_type);
        assert_eq!(info.metadata, stored_as.metadata);
    }
}
