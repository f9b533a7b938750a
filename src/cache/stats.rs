//! What the block caches and the read-ahead did since the mount started: counted where it
//! happens (`prefetch`), read through `Reader::stats` (by `metrics`).
//!
//! A block is looked up in the memory cache by the read that needs it: a hit is a block
//! served from memory; a miss is a block the read has to fetch (from the disk cache or the
//! store). Blocks a handle read ahead and holds are neither: they are the read-ahead's.
//! Every fetch asks the disk cache first, when there is one: a hit is a block read from
//! disk, a miss one fetched from the store. Read-ahead counts the bytes it fetched before any
//! read asked for them, and those the handle let go unread (a seek, a close, or left a whole
//! window behind; another handle may still find them in the memory cache).

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters, shared by every handle of the mount.
#[derive(Debug, Default)]
pub struct CacheCounters {
    memory_hits: AtomicU64,
    memory_hit_bytes: AtomicU64,
    memory_misses: AtomicU64,
    disk_hits: AtomicU64,
    disk_hit_bytes: AtomicU64,
    disk_misses: AtomicU64,
    read_ahead_bytes: AtomicU64,
    read_ahead_unused_bytes: AtomicU64,
}

/// A copy of the counters, with how much each cache holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub memory_hits: u64,
    pub memory_hit_bytes: u64,
    pub memory_misses: u64,
    /// Bytes of blocks in the memory cache now.
    pub memory_size: u64,
    pub disk_hits: u64,
    pub disk_hit_bytes: u64,
    pub disk_misses: u64,
    /// Bytes of blocks in the disk cache now; `None` without a disk cache.
    pub disk_size: Option<u64>,
    pub read_ahead_bytes: u64,
    pub read_ahead_unused_bytes: u64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl CacheCounters {
    /// A block of `bytes` served from the memory cache.
    pub fn memory_hit(&self, bytes: u64) {
        add(&self.memory_hits, 1);
        add(&self.memory_hit_bytes, bytes);
    }

    /// `blocks` a read needs that the memory cache does not have.
    pub fn memory_misses(&self, blocks: u64) {
        add(&self.memory_misses, blocks);
    }

    /// `blocks` of `bytes` in all read from the disk cache.
    pub fn disk_hits(&self, blocks: u64, bytes: u64) {
        add(&self.disk_hits, blocks);
        add(&self.disk_hit_bytes, bytes);
    }

    /// `blocks` the disk cache does not have (fetched from the store).
    pub fn disk_misses(&self, blocks: u64) {
        add(&self.disk_misses, blocks);
    }

    /// `bytes` fetched by read-ahead.
    pub fn read_ahead(&self, bytes: u64) {
        add(&self.read_ahead_bytes, bytes);
    }

    /// `bytes` fetched by read-ahead that the handle let go unread.
    pub fn read_ahead_unused(&self, bytes: u64) {
        add(&self.read_ahead_unused_bytes, bytes);
    }

    /// The counts now, with the sizes the caches give.
    pub fn snapshot(&self, memory_size: u64, disk_size: Option<u64>) -> CacheStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            memory_hits: get(&self.memory_hits),
            memory_hit_bytes: get(&self.memory_hit_bytes),
            memory_misses: get(&self.memory_misses),
            memory_size,
            disk_hits: get(&self.disk_hits),
            disk_hit_bytes: get(&self.disk_hit_bytes),
            disk_misses: get(&self.disk_misses),
            disk_size,
            read_ahead_bytes: get(&self.read_ahead_bytes),
            read_ahead_unused_bytes: get(&self.read_ahead_unused_bytes),
        }
    }
}
