//! Caches between the filesystem and the store. For now: the per-handle read-ahead window
//! (`readahead`). Metadata TTLs live with the inode table (`fs::inode`).

pub mod readahead;
