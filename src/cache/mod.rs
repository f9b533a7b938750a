//! Caches between the filesystem and the store.
//!
//! - `ttl`: bounded, time-limited sets: the negative-lookup cache and the "directory fully
//!   listed" cache. Used by the names owner; attributes live in its inode table (`names::inode`).
//! - `blocks`: the memory block cache (LRU, bounded in bytes).
//! - `disk`: the optional on-disk block cache (bounded, checksummed, survives restarts).
//! - `prefetch`: per-handle adaptive read-ahead with parallel ranged GETs.
//! - `reader`: the one reader every object byte goes through (caches, read-ahead budget,
//!   the cache identity of a version).
//! - `stats`: hits and misses of both caches, bytes read ahead and left unread.

pub mod blocks;
pub mod disk;
pub mod prefetch;
pub mod reader;
pub mod stats;
pub mod ttl;
