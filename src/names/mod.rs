//! The names owner: which inode stands for which name, and what is known of the object (or
//! `dir/` marker) behind it. It finds names in the store (`lookup`), lists directories
//! (`listing`, handed to readdir page by page as they arrive: `arriving`) and reads ahead of
//! tree walks (`walk`, `tree`), learns stored metadata by HEAD, keeps what it learnt in the
//! inode table (`inode`) and what it found missing in a negative cache, and translates POSIX
//! attributes to and from user metadata (`posix`).
//!
//! `fs` asks it for inodes, attributes and keys, and changes the table through
//! `InodeTable`'s and `Node`'s methods (one per way a node learns its object); everything
//! else here is private. It never uploads, never holds a file's bytes and never sees a
//! handle.

mod arriving;
mod children;
pub mod error;
mod etag;
mod inflight;
pub mod inode;
mod listing;
mod lookup;
pub mod posix;
pub mod rules;
mod slots;
mod tree;
mod walk;

/// How long a name or a listing this mount knew is refreshed from the store before the
/// last known answer is served instead: a stalled or unreachable store must not stall a
/// `stat` of a cached name or an `ls` of a cached directory.
pub const STALE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Once a refresh ran past `STALE_GRACE`, names and listings this mount knew are served
/// without asking for this long (a path of ten cached components, or an `ls -l` of cached
/// entries, then costs one grace, not one per name); the next use after it asks again.
pub const SLOW_STORE_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

/// Names confirmed by the store this recently are not evicted from a full table: the tool
/// that asked for them (a lookup, a listing being read) is about to use them.
const EVICT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long after a trim that left the table over its bound the next one waits (see
/// `Names::trim`).
const RETRIM: std::time::Duration = std::time::Duration::from_secs(1);

/// Asks the kernel to drop names (parent, name) it holds (see `Names::on_release`).
pub type Release = Box<dyn Fn(Vec<(Ino, Arc<str>)>) + Send + Sync>;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use crate::cache::ttl::TtlSet;
use crate::config::FsOptions;
use crate::store::ObjectStore;
pub use arriving::Arriving;
pub use error::{NameError, NameResult};
use inflight::InFlight;
use inode::{Ino, InodeTable, Kind, Node, ROOT_INO};
pub use listing::{inos as listing_inos, DirEntry};
pub use lookup::{META_CONCURRENCY, META_RUN_AHEAD};
pub use tree::TREE_CLAIMS;

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
    /// Links: 0 once unlinked (still open), 2 for a directory, else 1.
    pub nlink: u32,
    /// A device's number (0 for every other kind).
    pub rdev: u32,
}

/// What the names owner needs to know (derived from the mount's options).
#[derive(Debug, Clone)]
pub struct NamesConfig {
    /// How long attributes confirmed by the store are trusted.
    pub metadata_ttl: std::time::Duration,
    pub negative_ttl: std::time::Duration,
    pub negative_cache_entries: usize,
    /// How long a complete listing answers lookups of names it lacks.
    pub dir_ttl: std::time::Duration,
    pub dir_cache_entries: usize,
    /// Names the inode table keeps past those in use (see `InodeTable::evict`).
    pub name_cache_entries: usize,
    /// Sibling directories listed ahead of a tree walk (0 = off).
    pub dir_read_ahead: usize,
    /// Longest key the server holds: longer new names are refused (`child_key`).
    pub max_key_length: usize,
    /// Listings are followed by the HEADs of their entries (mode, owner, mtime, symlink).
    pub listing_metadata: bool,
    /// Attributes of objects that store none.
    pub file_mode: u16,
    pub dir_mode: u16,
    pub uid: u32,
    pub gid: u32,
}

impl From<&FsOptions> for NamesConfig {
    fn from(o: &FsOptions) -> Self {
        NamesConfig {
            metadata_ttl: o.metadata_ttl,
            negative_ttl: o.negative_ttl,
            negative_cache_entries: o.negative_cache_entries,
            dir_ttl: o.dir_ttl,
            dir_cache_entries: o.dir_cache_entries,
            name_cache_entries: o.name_cache_entries,
            dir_read_ahead: o.dir_read_ahead,
            max_key_length: o.max_key_length,
            listing_metadata: o.listing_metadata,
            file_mode: o.file_mode,
            dir_mode: o.dir_mode,
            uid: o.uid,
            gid: o.gid,
        }
    }
}

/// The defaults of a mount that sets nothing.
impl Default for NamesConfig {
    fn default() -> Self {
        NamesConfig::from(&FsOptions::default())
    }
}

/// Invariants: a node's `children` hold exactly the linked nodes whose `parent` it is; a
/// name is in `negative` only while the table has no child by that name (`name_appeared`
/// and `upsert` keep it so); `listed` holds a directory only while the table has every
/// child its store listing had (changes through this mount are applied to the table).
/// Lock order: `table` is taken last and never held across an `.await` (but for
/// `trim_short_at`, taken inside it, and the leaf locks of `walks` and of the sets `listed`
/// and `listings`, asked while it is held); `misses` and `found` are taken alone,
/// `meta_ahead` before `table`.
pub struct Names {
    store: Arc<dyn ObjectStore>,
    /// Key prefix of the mount root: "" or ending with '/'.
    prefix: String,
    /// The mtime of directories without a marker.
    started: SystemTime,
    config: NamesConfig,
    table: Mutex<InodeTable>,
    /// Names recently found missing: (parent, name).
    negative: TtlSet<(Ino, String)>,
    /// Directories whose children the table knows completely (a recent listing).
    listed: TtlSet<Ino>,
    /// Directories a read-ahead is listing now (see `walk`).
    listings: Arc<InFlight<Ino>>,
    /// The subdirectory listed last in each directory being walked (see `walk`).
    walks: Mutex<lru::LruCache<Ino, Ino>>,
    /// Names found missing per directory since its last listing (see `lookup`).
    misses: lookup::DirTally,
    /// Names found in the store one by one per directory, since when (see `lookup`).
    found: lookup::DirTally,
    /// Nodes whose metadata a HEAD is fetching now, each with the wake-up of its waiters.
    meta_inflight: InFlight<Ino>,
    /// Bounds the metadata HEADs in flight, all directories and run-ahead tasks together.
    meta_permits: tokio::sync::Semaphore,
    /// Per directory, how far the HEADs run ahead of a tool asking for its entries'
    /// attributes in order (see `lookup`).
    meta_ahead: Mutex<lru::LruCache<Ino, lookup::MetaAhead>>,
    /// When a refresh last ran past `STALE_GRACE` (see `SLOW_STORE_WINDOW`).
    slow_store_at: Mutex<Option<Instant>>,
    /// When the last trim left the table over its bound (taken after `table`, see `trim`).
    trim_short_at: Mutex<Option<Instant>>,
    /// Asks the kernel to drop names it holds (see `on_release`).
    release: std::sync::OnceLock<Release>,
}

impl Names {
    pub fn new(store: Arc<dyn ObjectStore>, prefix: String, config: NamesConfig) -> Names {
        let started = SystemTime::now();
        Names {
            store,
            prefix,
            started,
            negative: TtlSet::new(config.negative_cache_entries, config.negative_ttl),
            listed: TtlSet::new(config.dir_cache_entries, config.dir_ttl),
            config,
            table: Mutex::new(InodeTable::new(started)),
            listings: Default::default(),
            walks: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(walk::WALKS_REMEMBERED).unwrap(),
            )),
            misses: Default::default(),
            found: Default::default(),
            meta_inflight: Default::default(),
            meta_permits: tokio::sync::Semaphore::new(META_CONCURRENCY),
            meta_ahead: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(walk::WALKS_REMEMBERED).unwrap(),
            )),
            slow_store_at: Mutex::new(None),
            trim_short_at: Mutex::new(None),
            release: Default::default(),
        }
    }

    /// The inode table, locked (never held across an `.await`).
    pub fn table(&self) -> MutexGuard<'_, InodeTable> {
        self.table.lock().unwrap()
    }

    /// The key prefix of the mount root ("" or ending with '/').
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// When this mount started (the mtime of directories without a marker).
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// The object key of a file inode.
    pub fn file_key(&self, ino: Ino) -> NameResult<String> {
        let path = self.table().path(ino).ok_or(NameError::NotFound)?;
        Ok(format!("{}{}", self.prefix, path))
    }

    /// The key prefix of a directory inode's children ("" or ending with '/').
    pub fn dir_prefix(&self, ino: Ino) -> NameResult<String> {
        let path = self.table().path(ino).ok_or(NameError::NotFound)?;
        Ok(if path.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}{}/", self.prefix, path)
        })
    }

    /// The key a new entry `name` of kind `kind` in `parent` would have (a directory's
    /// marker ends in '/'); `KeyTooLong` when the server cannot hold it.
    pub fn child_key(&self, parent: Ino, name: &str, kind: Kind) -> NameResult<String> {
        let slash = if kind == Kind::Dir { "/" } else { "" };
        let key = format!("{}{name}{slash}", self.dir_prefix(parent)?);
        self.check_key(&key)?;
        Ok(key)
    }

    /// `KeyTooLong` when the server cannot hold `key` (`max_key_length`).
    pub fn check_key(&self, key: &str) -> NameResult<()> {
        rules::check_key(key, self.config.max_key_length)
    }

    /// The key holding `ino`'s metadata: the object, or a directory's marker.
    pub fn meta_key(&self, ino: Ino, kind: Kind) -> NameResult<String> {
        match kind {
            Kind::Dir => self.dir_prefix(ino),
            _ => self.file_key(ino),
        }
    }

    /// The attributes the kernel sees for `node` (the mount's defaults where nothing is
    /// stored).
    pub fn attr_of(&self, ino: Ino, node: &Node) -> Attr {
        let size = match (&node.content, node.kind) {
            (Some(c), _) => c.size(),
            (None, Kind::Dir) => 0,
            (None, _) => node.size,
        };
        let posix = node.meta.as_ref().map(|m| &m.posix);
        let default_perm = match node.kind {
            Kind::File | Kind::Special(_) => self.config.file_mode,
            Kind::Dir => self.config.dir_mode,
            Kind::Symlink => 0o777,
        };
        let mtime = node.entries_changed_at().unwrap_or(node.mtime);
        let stored_ctime = posix.and_then(|p| p.ctime).unwrap_or(node.mtime);
        Attr {
            ino,
            kind: node.kind,
            size,
            mtime,
            atime: posix.and_then(|p| p.atime).unwrap_or(node.mtime),
            ctime: node
                .changed_here()
                .map_or(stored_ctime, |here| here.max(stored_ctime)),
            perm: posix
                .and_then(|p| p.mode)
                .map_or(default_perm, |m| (m & 0o7777) as u16),
            uid: posix.and_then(|p| p.uid).unwrap_or(self.config.uid),
            gid: posix.and_then(|p| p.gid).unwrap_or(self.config.gid),
            rdev: posix.and_then(|p| p.rdev).unwrap_or(0),
            nlink: match node.kind {
                _ if !node.linked => 0,
                Kind::Dir => 2,
                _ => 1,
            },
        }
    }

    /// True when the node's attributes are the stored ones: its metadata was read (a listing
    /// does not carry it), or there is none to read (the mount root, a file only written
    /// here). Attributes that are not known never reach the kernel as valid: a stored 0600
    /// shown as the default 0644 would let other users read the file.
    pub fn attrs_known(ino: Ino, node: &Node) -> bool {
        ino == ROOT_INO || node.meta.is_some() || (node.kind != Kind::Dir && !node.remote)
    }

    /// The attributes of `ino` once they are known (see `attrs_known`); `NotFound` if the
    /// node lost its name meanwhile.
    pub fn known_attr(&self, ino: Ino) -> NameResult<Attr> {
        let t = self.table();
        let node = t.get(ino).ok_or(NameError::NotFound)?;
        if !Self::attrs_known(ino, node) {
            return Err(NameError::NotFound);
        }
        Ok(self.attr_of(ino, node))
    }

    /// Reads the stored metadata of `ino` unless it is known (with the HEADs of the entries
    /// after it, when a tool goes through its directory: see `meta_run_ahead`). When another
    /// task's HEAD was in flight and failed, it is made again here, so the caller gets its
    /// error rather than a made-up `NotFound`.
    pub async fn ensure_known(self: &Arc<Self>, ino: Ino) -> NameResult<()> {
        let named = {
            let t = self.table();
            t.get(ino)
                .filter(|n| n.linked && ino != ROOT_INO)
                .map(|n| (n.parent, n.name.clone()))
        };
        if let Some((parent, name)) = named {
            let first = self.meta_run_ahead(parent, name);
            self.list_for_marker(ino, parent, first).await;
        }
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

    /// Refreshes what this mount knew, allowing the store `STALE_GRACE` to answer: `None`
    /// when it did not (the caller serves what it knew), and for `SLOW_STORE_WINDOW` after
    /// such a miss, `None` at once without asking.
    async fn refresh<T>(&self, what: &str, ask: impl std::future::Future<Output = T>) -> Option<T> {
        let slow_at = *self.slow_store_at.lock().unwrap();
        if slow_at.is_some_and(|at| at.elapsed() < SLOW_STORE_WINDOW) {
            return None;
        }
        match tokio::time::timeout(STALE_GRACE, ask).await {
            Ok(answer) => Some(answer),
            Err(_) => {
                tracing::info!(
                    what,
                    "the store is slow to answer: serving what this mount knew for a few seconds"
                );
                *self.slow_store_at.lock().unwrap() = Some(Instant::now());
                None
            }
        }
    }

    /// The node's attributes were confirmed by the store within the metadata TTL (or it
    /// has local content, which is newer than any stored object).
    pub fn is_fresh(&self, node: &Node, now: Instant) -> bool {
        node.content.is_some()
            || node
                .validated
                .is_some_and(|t| now.duration_since(t) < self.config.metadata_ttl)
    }

    /// Attributes of `ino`, refreshed from the store when older than the metadata TTL.
    pub async fn getattr(self: &Arc<Self>, ino: Ino) -> NameResult<Attr> {
        let stale = {
            let t = self.table();
            let node = t.get(ino).ok_or(NameError::NotFound)?;
            if !node.linked {
                return Ok(self.attr_of(ino, node)); // open, with no name left to refresh it by
            }
            let stale = ino != ROOT_INO && !self.is_fresh(node, Instant::now());
            stale.then(|| (node.parent, node.name.clone()))
        };
        if let Some((parent, name)) = stale {
            if self.resolve(parent, &name).await? != ino {
                // The name now stands for something else (replaced by another client).
                return Err(NameError::NotFound);
            }
        }
        self.ensure_known(ino).await?;
        self.known_attr(ino)
    }

    /// Looks `name` up in `parent` and takes a kernel reference on the result, its stored
    /// metadata read first when only a listing named it.
    pub async fn lookup(self: &Arc<Self>, parent: Ino, name: &str) -> NameResult<Attr> {
        let ino = self.resolve(parent, name).await?;
        match self.known_and_referenced(parent, name, ino).await {
            // Dropped from a full table (see `trim`) while its metadata was read, or
            // deleted meanwhile: the store says which.
            Err(NameError::NotFound) if self.table().get(ino).is_none() => {
                let ino = self.resolve(parent, name).await?;
                self.known_and_referenced(parent, name, ino).await
            }
            found => found,
        }
    }

    async fn known_and_referenced(
        self: &Arc<Self>,
        parent: Ino,
        name: &str,
        ino: Ino,
    ) -> NameResult<Attr> {
        self.ensure_known(ino).await?;
        // (the HEAD may have found a listed "file" to be a symlink: a new inode)
        let ino = self.table().child(parent, name).unwrap_or(ino);
        self.known_attr(ino)?;
        self.referenced(ino)
    }

    /// Takes one kernel reference on `ino` and returns its attributes.
    pub fn referenced(&self, ino: Ino) -> NameResult<Attr> {
        let mut t = self.table();
        let node = t.get_mut(ino).ok_or(NameError::NotFound)?;
        node.lookups += 1;
        let node = t.get(ino).expect("just seen");
        Ok(self.attr_of(ino, node))
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: Ino, n: u64) {
        self.table().forget(ino, n);
        self.trim();
    }

    /// Keeps the table within `name_cache_entries` (see `InodeTable::evict`): a directory
    /// that lost a child this way no longer has a complete listing. Names the kernel holds
    /// past the bound are handed to `release` (the kernel is asked to drop them). A trim
    /// that leaves the table over its bound is not tried again for `RETRIM` (each scans
    /// the whole table, and a forget or a name entered calls it).
    fn trim(&self) {
        let mut t = self.table();
        if t.node_count() <= self.config.name_cache_entries {
            return;
        }
        let mut short_at = self.trim_short_at.lock().unwrap();
        if short_at.is_some_and(|at| at.elapsed() < RETRIM) {
            return;
        }
        let evicted = t.evict(self.config.name_cache_entries, EVICT_GRACE);
        *short_at = (t.node_count() > self.config.name_cache_entries).then(Instant::now);
        drop((short_at, t));
        for parent in evicted.parents {
            self.listed.remove(&parent);
        }
        if let Some(release) = self.release.get().filter(|_| !evicted.release.is_empty()) {
            tracing::debug!(
                names = evicted.release.len(),
                "asking the kernel to drop names past the name cache's bound"
            );
            release(evicted.release);
        }
    }

    /// Trims the table once every `RETRIM`, for ever: names past the bound that were in use
    /// (within `EVICT_GRACE`, held by the kernel, read by an open directory handle) go once
    /// they are not, whether or not the mount is still used (the daemon runs it).
    pub async fn keep_bounded(&self) {
        loop {
            tokio::time::sleep(RETRIM).await;
            self.trim();
        }
    }

    /// Past `name_cache_entries`, names the kernel holds are handed to `release`, which asks
    /// the kernel to drop them (its forgets then let the table shrink; see `trim`). Set once,
    /// by the daemon (`fuse::release`); without it (tests) they stay.
    pub fn on_release(&self, release: Release) {
        let _ = self.release.set(release);
    }

    /// A handle on directory `ino` was opened: its entries stay in the table while it is
    /// read (the handle serves them by inode).
    pub fn dir_opened(&self, ino: Ino) {
        if let Some(node) = self.table().get_mut(ino) {
            node.open += 1;
        }
    }

    /// A handle on directory `ino` was closed: its entries may go now, if the table is
    /// over its bound.
    pub fn dir_closed(&self, ino: Ino) {
        let mut t = self.table();
        if let Some(node) = t.get_mut(ino) {
            node.closed();
        }
        t.reclaim(ino);
        drop(t);
        self.trim();
    }

    /// This mount added, removed or renamed an entry of each of `dirs` (after the operation
    /// succeeded): their mtime and ctime are now.
    pub fn entries_changed(&self, dirs: &[Ino]) {
        let mut t = self.table();
        for dir in dirs {
            if let Some(node) = t.get_mut(*dir) {
                node.entries_changed();
            }
        }
    }

    /// This mount made `dir` (mkdir): it is empty, so its listing is complete.
    pub fn made_empty(&self, dir: Ino) {
        self.listed.insert(dir);
    }
}
