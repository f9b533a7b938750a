//! The filesystem core: POSIX operations over an `ObjectStore`, independent of FUSE.
//!
//! `Fs` coordinates three owners — the names (`crate::names`: inodes, lookup, listings,
//! metadata), the local files (`crate::localfile`: staged content, journal, write-back
//! queue) and the one reader (`crate::cache::reader`: every object byte) — with the open
//! handles and the uploader. Each operation is an `async fn` returning `FsResult`; the FUSE
//! adapter runs them on tokio tasks, so a slow store request only delays the operation that
//! needs it. The operations are split by concern: `dir` (readdir, mkdir, rmdir), `file`
//! (open, read, write, flush, truncate, unlink), `rename`, `setattr`, `special` (mknod),
//! `symlink`, `xattr`,
//! `writeback` (uploads of closed files), `flush` (`bucketfs flush`: pending files under some
//! paths uploaded now), `state` (`s3.state`: is a file in the bucket yet), `status`.
mod dir;
pub mod error;
mod file;
pub mod flush;
pub mod handle;
mod rename;
mod setattr;
mod special;
pub mod state;
pub mod status;
mod symlink;
mod writeback;
pub mod xattr;

use std::path::PathBuf;
use std::sync::Arc;

use crate::cache::disk::DiskCache;
use crate::cache::reader::{Reader, ReaderConfig};
use crate::cache::stats::CacheStats;
use crate::config::FsOptions;
use crate::localfile::journal::Journal;
use crate::localfile::{LocalFileConfig, LocalFiles};
pub use crate::names::inode::{Ino, ROOT_INO};
pub use crate::names::{Attr, DirEntry};
use crate::names::{Names, NamesConfig};
use crate::store::ObjectStore;
use crate::upload::registry::UploadRegistry;
use crate::upload::Uploader;
pub use dir::Listed;
use error::{FsError, FsResult};
use handle::HandleTable;
pub use setattr::{Owner, SetAttr};

/// Lock order: `keys` (async), then a node's `Content::upload_lock` (async), then the
/// names' table (sync, never held across an `.await`); the handle table and the local
/// files' own locks are taken alone. Invariant: a node with local content that is not in
/// the bucket is in the write-back queue, or open, or being uploaded.
pub struct Fs {
    store: Arc<dyn ObjectStore>,
    opts: FsOptions,
    /// Inodes, names, listings and what is known of each object.
    names: Arc<Names>,
    /// Files whose bytes are here and not (all) in the bucket: staging, journal,
    /// write-back queue.
    files: LocalFiles,
    /// The one reader every object byte goes through (block caches, read-ahead budget).
    reader: Arc<Reader>,
    handles: HandleTable,
    uploader: Uploader,
    /// Keys stay put while held shared: every upload (and every file rename) holds it from
    /// choosing its key until the node knows the result; a directory rename holds it
    /// exclusively, so no upload is in flight under the old prefix while its keys are
    /// listed, copied and deleted, and none starts before the nodes below it have their new
    /// keys.
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
        let reader = Arc::new(Reader::new(
            store.clone(),
            &ReaderConfig::from(&opts),
            disk_cache,
        ));
        let files = LocalFiles::new(
            staging_dir,
            reader.clone(),
            journal,
            LocalFileConfig::from(&opts),
        );
        Fs {
            names: Arc::new(Names::new(store.clone(), prefix, NamesConfig::from(&opts))),
            reader,
            files,
            uploader: Uploader::new(
                store.clone(),
                opts.part_size,
                opts.upload_concurrency,
                uploads,
            ),
            store,
            opts,
            handles: HandleTable::default(),
            keys: tokio::sync::RwLock::new(()),
        }
    }

    pub fn options(&self) -> &FsOptions {
        &self.opts
    }

    /// What the block caches and the read-ahead did so far (for the metrics).
    pub fn cache_stats(&self) -> CacheStats {
        self.reader.stats()
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.opts.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Attributes of `ino`, refreshed from the store when older than the metadata TTL.
    pub async fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        Ok(self.names.getattr(ino).await?)
    }

    /// Looks `name` up in `parent` and takes a kernel reference on the result.
    pub async fn lookup(&self, parent: Ino, name: &std::ffi::OsStr) -> FsResult<Attr> {
        let name = crate::names::rules::check_name(name)?;
        Ok(self.names.lookup(parent, name).await?)
    }

    /// Takes one kernel reference on `ino` and returns its attributes.
    pub fn referenced(&self, ino: Ino) -> FsResult<Attr> {
        Ok(self.names.referenced(ino)?)
    }

    pub fn forget(&self, ino: Ino, n: u64) {
        self.names.forget(ino, n);
    }

    /// Keeps the inode table within its bound, for ever (see `Names::keep_bounded`).
    pub async fn keep_names_bounded(&self) {
        self.names.keep_bounded().await
    }

    /// How to ask the kernel to drop names past the name cache's bound (see
    /// `Names::on_release`).
    pub fn on_release(&self, release: crate::names::Release) {
        self.names.on_release(release);
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_conflicts;
#[cfg(test)]
mod tests_durability;
#[cfg(test)]
mod tests_failures;
#[cfg(test)]
mod tests_listing;
#[cfg(test)]
mod tests_model;
#[cfg(test)]
mod tests_network;
#[cfg(test)]
mod tests_pending;
#[cfg(test)]
mod tests_posix;
#[cfg(test)]
mod tests_walk;
