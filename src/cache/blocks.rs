//! The memory block cache: fixed-size blocks of object data, keyed by object key, ETag and
//! block index, evicted least-recently-used once their total size passes a byte budget.
//!
//! Keying by ETag means a changed object can never be served from stale blocks: its new
//! ETag simply misses. Blocks are `Bytes`, so a hit is a reference-count increment, not a copy.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;

/// Identifies one block of one version of an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockId {
    pub key: Arc<str>,
    pub etag: Arc<str>,
    pub index: u64,
}

pub struct BlockCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

struct Inner {
    lru: LruCache<BlockId, Bytes>,
    bytes: usize,
}

impl BlockCache {
    /// A cache holding at most `capacity` bytes (0 disables it).
    pub fn new(capacity: usize) -> Self {
        BlockCache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            capacity,
        }
    }

    pub fn get(&self, id: &BlockId) -> Option<Bytes> {
        self.inner.lock().unwrap().lru.get(id).cloned()
    }

    pub fn insert(&self, id: BlockId, data: Bytes) {
        if data.len() > self.capacity {
            return;
        }
        let mut inner = self.inner.lock().unwrap();
        inner.bytes += data.len();
        if let Some(old) = inner.lru.put(id, data) {
            inner.bytes -= old.len();
        }
        while inner.bytes > self.capacity {
            match inner.lru.pop_lru() {
                Some((_, evicted)) => inner.bytes -= evicted.len(),
                None => break,
            }
        }
    }

    /// Bytes held now.
    pub fn size(&self) -> usize {
        self.inner.lock().unwrap().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: &str, etag: &str, index: u64) -> BlockId {
        BlockId {
            key: key.into(),
            etag: etag.into(),
            index,
        }
    }

    #[test]
    fn least_recently_used_blocks_go_first_when_over_budget() {
        let cache = BlockCache::new(10);
        cache.insert(id("k", "e", 0), Bytes::from(vec![0; 4]));
        cache.insert(id("k", "e", 1), Bytes::from(vec![1; 4]));
        assert!(cache.get(&id("k", "e", 0)).is_some()); // 0 is now the most recent
        cache.insert(id("k", "e", 2), Bytes::from(vec![2; 4]));
        assert!(
            cache.get(&id("k", "e", 1)).is_none(),
            "1 was least recently used"
        );
        assert!(cache.get(&id("k", "e", 0)).is_some());
        assert!(cache.size() <= 10);
    }

    #[test]
    fn another_etag_never_hits() {
        let cache = BlockCache::new(100);
        cache.insert(id("k", "v1", 0), Bytes::from_static(b"old"));
        assert!(cache.get(&id("k", "v2", 0)).is_none());
    }
}
