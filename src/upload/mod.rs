//! Uploads: turns a staged file into an object. Below the part size it is one PUT; above it a
//! multipart upload with parts sent in parallel (`multipart`). Each request is retried by the
//! store layer; a multipart upload that still fails is aborted, so no partial object is ever
//! visible under the key.

pub mod multipart;
pub mod options;
pub mod staging;

use std::sync::Arc;

use crate::store::{ObjectStore, PutOptions, StoreError};
use staging::StagingFile;

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

pub struct Uploader {
    store: Arc<dyn ObjectStore>,
    part_size: u64,
    concurrency: usize,
}

impl Uploader {
    pub fn new(store: Arc<dyn ObjectStore>, part_size: u64, concurrency: usize) -> Self {
        Uploader {
            store,
            part_size,
            concurrency,
        }
    }

    /// Uploads the first `size` bytes of `staging` as `key`; returns the new ETag if known.
    pub async fn upload(
        &self,
        key: &str,
        staging: &StagingFile,
        size: u64,
        opts: &PutOptions,
    ) -> Result<Option<String>, UploadError> {
        if size < self.part_size {
            let body = staging.read_at(0, size as usize).await?;
            if (body.len() as u64) < size {
                return Err(UploadError::Staging(
                    "staged file is shorter than the file".into(),
                ));
            }
            return Ok(self.store.put(key, body, opts).await?);
        }
        multipart::upload(
            self.store.clone(),
            key,
            staging,
            size,
            self.part_size,
            self.concurrency,
            opts,
        )
        .await
    }
}
