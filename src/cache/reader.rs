//! The one reader: every byte of an object the mount reads goes through here — a handle's
//! sequential reads and the unwritten ranges of a file being modified alike — so all of
//! them share the block caches (memory, disk) and the read-ahead budget, and the cache
//! identity of an object version is decided in one place (`Reader::object`).
//!
//! `Reader::object` names a version (key, ETag or size and mtime, size) and returns its
//! `ObjectReader`: a `Prefetcher` whose GETs are pinned to that ETag, so bytes of two
//! versions are never mixed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use super::disk::DiskCache;
use super::prefetch::{Caches, Prefetcher, Version};
use super::stats::CacheStats;
use crate::config::FsOptions;
use crate::store::{ObjectInfo, ObjectStore, StoreResult};

/// What the reader needs to know (derived from the mount's options).
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// Bytes of blocks kept in memory.
    pub memory_cache: u64,
    /// Bytes of read-ahead in flight or fetched and not yet read, all handles together.
    pub prefetch_budget: u64,
    /// Largest read-ahead window of one reader.
    pub read_ahead: u64,
}

impl From<&FsOptions> for ReaderConfig {
    fn from(o: &FsOptions) -> Self {
        ReaderConfig {
            memory_cache: o.memory_cache,
            prefetch_budget: o.prefetch_budget,
            read_ahead: o.read_ahead,
        }
    }
}

/// The defaults of a mount that sets nothing.
impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig::from(&FsOptions::default())
    }
}

pub struct Reader {
    store: Arc<dyn ObjectStore>,
    caches: Arc<Caches>,
    read_ahead: u64,
    /// Gives versions without an ETag or mtime an identity no other version shares.
    unique: AtomicU64,
}

/// One version of one object, read through the caches.
pub type ObjectReader = Prefetcher;

impl Reader {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        config: &ReaderConfig,
        disk: Option<Arc<DiskCache>>,
    ) -> Reader {
        Reader {
            store,
            caches: Arc::new(Caches::new(
                config.memory_cache,
                config.prefetch_budget,
                disk,
            )),
            read_ahead: config.read_ahead,
            unique: AtomicU64::new(0),
        }
    }

    /// A reader of the version of `key` with `etag` (else identified by size and `mtime`;
    /// with neither, by nothing it could share with another version).
    pub fn object(
        &self,
        key: &str,
        etag: Option<&str>,
        size: u64,
        mtime: Option<SystemTime>,
    ) -> ObjectReader {
        let identity = match (etag, mtime) {
            (Some(e), _) => e.to_string(),
            (None, Some(mtime)) => {
                let t = mtime
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                format!("size{size}-mtime{}", t.as_nanos())
            }
            (None, None) => format!("unique{}", self.unique.fetch_add(1, Ordering::Relaxed)),
        };
        let version = Version {
            key: key.into(),
            etag: identity.into(),
            pin: etag.map(Into::into),
            size,
        };
        Prefetcher::new(
            self.store.clone(),
            self.caches.clone(),
            version,
            self.read_ahead,
        )
    }

    /// What the caches and the read-ahead did so far (see `stats`).
    pub fn stats(&self) -> CacheStats {
        self.caches.stats()
    }

    /// What the store says of `key` now (to tell whether a version is still there).
    pub async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        self.store.head(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::failing::{FailingStore, Failure, Op};
    use crate::store::memory::MemoryStore;
    use crate::store::PutOptions;
    use bytes::Bytes;

    async fn stored(data: &'static [u8]) -> (Arc<MemoryStore>, Option<String>) {
        let mem = Arc::new(MemoryStore::new());
        mem.put("k", Bytes::from_static(data), &PutOptions::default())
            .await
            .unwrap();
        let etag = mem.head("k").await.unwrap().etag;
        (mem, etag)
    }

    #[tokio::test]
    async fn two_readers_of_one_version_share_its_blocks() {
        let (mem, etag) = stored(b"0123456789").await;
        let failing = Arc::new(FailingStore::new(mem));
        let reader = Reader::new(failing.clone(), &ReaderConfig::default(), None);
        let first = reader.object("k", etag.as_deref(), 10, None);
        assert_eq!(&first.read(2, 3).await.unwrap()[..], b"234");
        // Every GET fails from now on: the second reader is served from the memory cache.
        failing.fail(Failure::on(Op::GetObject));
        let second = reader.object("k", etag.as_deref(), 10, None);
        assert_eq!(&second.read(5, 5).await.unwrap()[..], b"56789");
    }

    #[tokio::test]
    async fn versions_without_etag_or_mtime_never_share_blocks() {
        let (mem, _) = stored(b"0123456789").await;
        let failing = Arc::new(FailingStore::new(mem));
        let reader = Reader::new(failing.clone(), &ReaderConfig::default(), None);
        reader
            .object("k", None, 10, None)
            .read(0, 10)
            .await
            .unwrap();
        failing.fail(Failure::on(Op::GetObject));
        assert!(reader
            .object("k", None, 10, None)
            .read(0, 10)
            .await
            .is_err());
    }
}
