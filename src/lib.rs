//! bucketfs: mount an S3-compatible bucket as a local directory over FUSE.
//!
//! Layers, top to bottom: `fuse` (thin adapter from fuser calls to the core) → `fs` (POSIX
//! semantics over three owners: `names` — inodes, lookup, listings, metadata; `localfile` —
//! staged content, journal, write-back queue; `cache::reader` — every object byte) →
//! `upload` (PUT and multipart) → `store` (one `ObjectStore` trait: S3, a local directory,
//! or memory). `cli`, `mount_helper`
//! (`mount -t bucketfs`), `config`, `check`, `daemon` and `metrics` (the `/metrics` page) sit
//! at the edge; `console` (lines on stderr) serves `cli` and `daemon`; `latency` (a histogram
//! the store and the adapter keep) serves every layer.

pub mod cache;
pub mod check;
pub mod cli;
pub mod cli_docs;
pub mod config;
pub mod console;
pub mod daemon;
pub mod fs;
pub mod fuse;
pub mod latency;
pub mod localfile;
pub mod metrics;
pub mod mount_helper;
pub mod names;
pub mod store;
pub mod upload;
