//! bucketfs: mount an S3-compatible bucket as a local directory over FUSE.
//!
//! Layers, top to bottom: `fuse` (thin adapter from fuser calls to the core) → `fs` (inodes,
//! handles, POSIX semantics) → `cache` / `upload` (read-ahead, staging and multipart) →
//! `store` (one `ObjectStore` trait: S3, a local directory, or memory). `cli`, `config`,
//! `check` and `daemon` sit at the edge; `console` (lines on stderr) serves `cli` and `daemon`.

pub mod cache;
pub mod check;
pub mod cli;
pub mod config;
pub mod console;
pub mod daemon;
pub mod fs;
pub mod fuse;
pub mod localfile;
pub mod store;
pub mod upload;
