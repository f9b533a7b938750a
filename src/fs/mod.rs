//! The filesystem core: POSIX operations over an `ObjectStore`, independent of FUSE.
//!
//! `Fs` owns the inode table (names ↔ inodes and their cached attributes), the open handles,
//! and the uploader. Each operation is an `async fn` returning `FsResult`; the FUSE adapter
//! runs them on tokio tasks, so a slow store request only delays the operation that needs it.
//! The operations are split by concern: `lookup` (finding names in the store), `dir` (listing,
//! mkdir, rmdir), `walk` (directory read-ahead), `file` (open, read, write, flush, truncate,
//! unlink), `rename`.

mod dir;
pub mod error;
mod file;
pub mod handle;
mod inflight;
pub mod inode;
mod lookup;
pub mod metadata;
pub mod names;
mod rename;
mod setattr;
pub mod status;
mod symlink;
mod walk;
mod writeback;
pub mod xattr;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use crate::cache::disk::DiskCache;
use crate::cache::reader::{Reader, ReaderConfig};
use crate::cache::ttl::TtlSet;
use crate::config::FsOptions;
use crate::localfile::journal::Journal;
use crate::localfile::{LocalFileConfig, LocalFiles};
use crate::store::ObjectStore;
use crate::upload::registry::UploadRegistry;
use crate::upload::Uploader;
pub use dir::{DirEntry, Listed};
use error::{FsError, FsResult};
use handle::HandleTable;
use inflight::InFlight;
pub use inode::{Ino, ROOT_INO};
use inode::{InodeTable, Kind, Node};
pub use setattr::{Owner, SetAttr};

/// Attributes of one inode, as the kernel will see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub atime: SystemTime,
    pub ctime: SystemTime,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

pub struct Fs {
    store: Arc<dyn ObjectStore>,
    uploader: Uploader,
    /// Key prefix of the mount root: "" or ending with '/'.
    prefix: String,
    opts: FsOptions,
    table: Mutex<InodeTable>,
    handles: HandleTable,
    started: SystemTime,
    /// The one reader every object byte goes through (block caches, read-ahead budget).
    reader: Arc<Reader>,
    /// Files whose bytes are here and not (all) in the bucket: staging, journal,
    /// write-back queue.
    files: LocalFiles,
    /// Names recently found missing: (parent, name).
    negative: TtlSet<(Ino, String)>,
    /// Directories whose children the table knows completely (a recent listing).
    listed: TtlSet<Ino>,
    /// Directories a read-ahead is listing now (see `walk`).
    listings: InFlight<Ino>,
    /// The subdirectory listed last in each directory being walked (see `walk`).
    walks: Mutex<lru::LruCache<Ino, Ino>>,
    /// Names found missing per directory since its last listing (see `lookup`).
    misses: Mutex<std::collections::HashMap<Ino, u32>>,
    /// Nodes whose metadata a HEAD is fetching now, each with the wake-up of its waiters.
    meta_inflight: InFlight<Ino>,
    /// Bounds the metadata HEADs in flight, all directories and run-ahead tasks together.
    meta_permits: tokio::sync::Semaphore,
    /// Keys stay put while held shared: every upload (and every file rename) holds it from
    /// choosing its key until the node knows the result; a directory rename holds it
    /// exclusively, so no upload is in flight under the old prefix while its keys are
    /// listed, copied and deleted, and none starts before the nodes below it have their new
    /// keys.
    /// Lock order: `keys` before a node's `Content::upload_lock`, before the table.
    keys: tokio::sync::RwLock<()>,
}

impl Fs {
    /// A filesystem over `store`, rooted at `prefix`, staging written files in `staging_dir`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: String,
        opts: FsOptions,
        staging_dir: PathBuf,
        disk_cache: Option<Arc<DiskCache>>,
        uploads: Option<Arc<UploadRegistry>>,
        journal: Option<Arc<Journal>>,
    ) -> Fs {
        let started = SystemTime::now();
        let reader = Arc::new(Reader::new(
            store.clone(),
            &ReaderConfig {
                memory_cache: opts.memory_cache,
                prefetch_budget: opts.prefetch_budget,
                read_ahead: opts.read_ahead,
            },
            disk_cache,
        ));
        let files = LocalFiles::new(
            staging_dir,
            reader.clone(),
            journal,
            LocalFileConfig {
                write_back_delay: opts.write_back_delay,
                retry_interval: opts.retry_interval,
            },
        );
        Fs {
            reader,
            files,
            negative: TtlSet::new(opts.negative_cache_entries, opts.negative_ttl),
            listed: TtlSet::new(opts.dir_cache_entries, opts.dir_ttl),
            listings: InFlight::default(),
            walks: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(walk::WALKS_REMEMBERED).unwrap(),
            )),
            uploader: Uploader::new(
                store.clone(),
                opts.part_size,
                opts.upload_concurrency,
                uploads,
            ),
            store,
            prefix,
            opts,
            table: Mutex::new(InodeTable::new(started)),
            handles: HandleTable::default(),
            started,
            misses: Default::default(),
            meta_inflight: Default::default(),
            meta_permits: tokio::sync::Semaphore::new(lookup::META_CONCURRENCY),
            keys: tokio::sync::RwLock::new(()),
        }
    }

    pub fn options(&self) -> &FsOptions {
        &self.opts
    }

    fn table(&self) -> MutexGuard<'_, InodeTable> {
        self.table.lock().unwrap()
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.opts.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// The object key of a file inode.
    fn file_key(&self, ino: Ino) -> FsResult<String> {
        let path = self.table().path(ino).ok_or(FsError::NotFound)?;
        Ok(format!("{}{}", self.prefix, path))
    }

    /// The key prefix of a directory inode's children ("" or ending with '/').
    fn dir_prefix(&self, ino: Ino) -> FsResult<String> {
        let path = self.table().path(ino).ok_or(FsError::NotFound)?;
        Ok(if path.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}{}/", self.prefix, path)
        })
    }

    fn attr_of(&self, ino: Ino, node: &Node) -> Attr {
        let size = match (&node.content, node.kind) {
            (Some(c), _) => c.size(),
            (None, Kind::Dir) => 0,
            (None, _) => node.size,
        };
        let posix = node.meta.as_ref().map(|m| &m.posix);
        let default_perm = match node.kind {
            Kind::File => self.opts.file_mode,
            Kind::Dir => self.opts.dir_mode,
            Kind::Symlink => 0o777,
        };
        Attr {
            ino,
            kind: node.kind,
            size,
            mtime: node.mtime,
            atime: posix.and_then(|p| p.atime).unwrap_or(node.mtime),
            ctime: posix.and_then(|p| p.ctime).unwrap_or(node.mtime),
            perm: posix
                .and_then(|p| p.mode)
                .map_or(default_perm, |m| (m & 0o7777) as u16),
            uid: posix.and_then(|p| p.uid).unwrap_or(self.opts.uid),
            gid: posix.and_then(|p| p.gid).unwrap_or(self.opts.gid),
        }
    }

    /// True when the node's attributes are the stored ones: its metadata was read (a listing
    /// does not carry it), or there is none to read (the mount root, a file only written
    /// here). Attributes that are not known never reach the kernel as valid: a stored 0600
    /// shown as the default 0644 would let other users read the file.
    fn attrs_known(ino: Ino, node: &Node) -> bool {
        ino == ROOT_INO || node.meta.is_some() || (node.kind != Kind::Dir && !node.remote)
    }

    /// The attributes of `ino` once they are known (see `attrs_known`); `NotFound` if the
    /// node lost its name meanwhile.
    fn known_attr(&self, ino: Ino) -> FsResult<Attr> {
        let t = self.table();
        let node = t.get(ino).ok_or(FsError::NotFound)?;
        if !Self::attrs_known(ino, node) {
            return Err(FsError::NotFound);
        }
        Ok(self.attr_of(ino, node))
    }

    /// Reads the stored metadata of `ino` unless it is known. When another task's HEAD was
    /// in flight and failed, it is made again here, so the caller gets its error rather
    /// than a made-up `NotFound`.
    async fn ensure_known(&self, ino: Ino) -> FsResult<()> {
        for _ in 0..2 {
            self.fetch_meta(ino).await?;
            let t = self.table();
            if t.get(ino)
                .is_none_or(|n| !n.linked || Self::attrs_known(ino, n))
            {
                break;
            }
        }
        Ok(())
    }

    fn is_fresh(&self, node: &Node, now: Instant) -> bool {
        node.content.is_some()
            || node
                .validated
                .is_some_and(|t| now.duration_since(t) < self.opts.metadata_ttl)
    }

    /// Attributes of `ino`, refreshed from the store when older than the metadata TTL.
    pub async fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        let stale = {
            let t = self.table();
            let node = t.get(ino).ok_or(FsError::NotFound)?;
            if !node.linked {
                return Ok(self.attr_of(ino, node)); // open, with no name left to refresh it by
            }
            let stale = ino != ROOT_INO && !self.is_fresh(node, Instant::now());
            stale.then(|| (node.parent, node.name.clone()))
        };
        if let Some((parent, name)) = stale {
            if self.resolve(parent, &name).await? != ino {
                // The name now stands for something else (replaced by another client).
                return Err(FsError::NotFound);
            }
        }
        self.ensure_known(ino).await?;
        self.known_attr(ino)
    }

    /// Looks `name` up in `parent` and takes a kernel reference on the result, its stored
    /// metadata read first when only a listing named it.
    pub async fn lookup(&self, parent: Ino, name: &std::ffi::OsStr) -> FsResult<Attr> {
        let name = names::check_name(name)?;
        let ino = self.resolve(parent, name).await?;
        self.ensure_known(ino).await?;
        // (the HEAD may have found a listed "file" to be a symlink: a new inode)
        let ino = self.table().child(parent, name).unwrap_or(ino);
        self.known_attr(ino)?;
        self.referenced(ino)
    }

    /// Takes one kernel reference on `ino` and returns its attributes.
    pub fn referenced(&self, ino: Ino) -> FsResult<Attr> {
        let mut t = self.table();
        let node = t.get_mut(ino).ok_or(FsError::NotFound)?;
        node.lookups += 1;
        let node = t.get(ino).expect("just seen");
        Ok(self.attr_of(ino, node))
    }

    pub fn forget(&self, ino: Ino, n: u64) {
        self.table().forget(ino, n);
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_failures;
#[cfg(test)]
mod tests_model;
#[cfg(test)]
mod tests_pending;
#[cfg(test)]
mod tests_posix;
#[cfg(test)]
mod tests_walk;
