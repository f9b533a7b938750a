//! Uploads: turns a file's new content into an object. Below the part size it is one PUT;
//! above it a multipart upload with parts sent in parallel (`multipart`), where a part whose
//! bytes are unchanged in an existing object is copied server-side (UploadPartCopy) instead of
//! sent. Each request is retried by the store layer; a multipart upload that still fails is
//! aborted, so no partial object is ever visible under the key. `copy` copies objects
//! server-side, of any size.

pub mod copy;
pub mod multipart;
pub mod options;
pub mod registry;

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::store::{ObjectStore, PutOptions, StoreError};
use registry::UploadRegistry;

#[derive(Debug, Clone, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot read staged data: {0}")]
    Staging(String),
}

impl From<std::io::Error> for UploadError {
    fn from(e: std::io::Error) -> Self {
        UploadError::Staging(e.to_string())
    }
}

/// The content to upload, by range.
#[async_trait]
pub trait PartSource: Send + Sync {
    /// The bytes of `range` of the new content.
    async fn read(&self, range: Range<u64>) -> Result<Bytes, UploadError>;
    /// A key whose object holds exactly these bytes at the same offsets, when one does.
    fn copy_source(&self, range: &Range<u64>) -> Option<String>;
}

#[derive(Clone)]
pub struct Uploader {
    store: Arc<dyn ObjectStore>,
    part_size: u64,
    concurrency: usize,
    registry: Option<Arc<UploadRegistry>>,
}

impl Uploader {
    /// `registry` records the multipart uploads in progress (see `registry`).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        part_size: u64,
        concurrency: usize,
        registry: Option<Arc<UploadRegistry>>,
    ) -> Self {
        Uploader {
            store,
            part_size,
            concurrency,
            registry,
        }
    }

    pub fn part_size(&self) -> u64 {
        self.part_size
    }

    /// Starts a multipart upload of `source` as `key`, to be fed while it is written.
    pub async fn start(
        &self,
        key: &str,
        source: Arc<dyn PartSource>,
        opts: &PutOptions,
    ) -> Result<multipart::Upload, UploadError> {
        multipart::Upload::start(
            self.store.clone(),
            self.registry.clone(),
            key,
            opts,
            source,
            self.part_size,
            self.concurrency,
        )
        .await
    }

    /// Uploads `size` bytes of `source` as `key`; returns the new ETag if known.
    pub async fn upload(
        &self,
        key: &str,
        source: Arc<dyn PartSource>,
        size: u64,
        opts: &PutOptions,
    ) -> Result<Option<String>, UploadError> {
        if size < self.part_size {
            let body = source.read(0..size).await?;
            if (body.len() as u64) < size {
                return Err(UploadError::Staging(
                    "staged file is shorter than the file".into(),
                ));
            }
            return Ok(self.store.put(key, body, opts).await?);
        }
        multipart::upload(
            self.store.clone(),
            self.registry.clone(),
            key,
            source,
            size,
            self.part_size,
            self.concurrency,
            opts,
        )
        .await
    }
}
