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

/// Why an upload failed. `fuse::errno` maps it: a store error as the store layer says, a
/// staging I/O error to its own errno, anything else to EIO.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UploadError {
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Reading the staged copy of the file failed. The I/O error is kept whole, errno
    /// included.
    #[error("cannot read staged data: {0}")]
    Staging(Arc<std::io::Error>),
    /// The staged copy holds fewer bytes than the upload is to send.
    #[error("cannot read staged data: the staged file is shorter than the file")]
    StagedShort,
    /// A multipart upload of the file would need more parts than S3 allows.
    #[error("the file needs more than {max} parts: raise --part-size")]
    TooManyParts { max: u32 },
    /// A part upload task panicked or was cancelled. `cause`: tokio's description.
    #[error("a part upload task failed: {cause}")]
    TaskFailed { cause: String },
    /// A copy the server answered but never kept (see `Uploader::copy`): the source stays.
    #[error(
        "the server kept the previous version of {to} after {tries} copies of {from} \
         ({from} is left as it was)"
    )]
    CopyNotKept {
        from: String,
        to: String,
        tries: u32,
    },
    /// A part of a server-side copy was to be sent rather than copied (a bug).
    #[error("a server-side copy sends no data (every part is copied)")]
    CopySendsNoData,
}

impl From<std::io::Error> for UploadError {
    fn from(e: std::io::Error) -> Self {
        UploadError::Staging(Arc::new(e))
    }
}

impl From<tokio::task::JoinError> for UploadError {
    fn from(e: tokio::task::JoinError) -> Self {
        UploadError::TaskFailed {
            cause: e.to_string(),
        }
    }
}

/// The content to upload, by range.
#[async_trait]
pub trait PartSource: Send + Sync {
    /// The bytes of `range` of the new content.
    async fn read(&self, range: Range<u64>) -> Result<Bytes, UploadError>;
    /// An object that holds exactly these bytes at the same offsets, when one does.
    fn copy_source(&self, range: &Range<u64>) -> Option<CopyFrom>;
}

/// An object parts are copied from server-side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFrom {
    pub key: String,
    /// Copied only while the object is this version (`None`: whatever the key holds).
    pub etag: Option<String>,
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
                return Err(UploadError::StagedShort);
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
