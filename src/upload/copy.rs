//! Server-side copies of any size. S3 copies up to 5 GiB in one CopyObject and refuses more;
//! a larger object is copied as a multipart upload whose every part is an UploadPartCopy of
//! the source (nothing passes through bucketfs). Used by rename and by metadata changes.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{PartSource, UploadError, Uploader};
use crate::store::PutOptions;

/// Largest object one CopyObject copies. (Small in unit tests, so that the multipart path
/// runs on the in-memory store.)
const MAX_SINGLE_COPY: u64 = if cfg!(test) { 6 << 20 } else { 5 << 30 };

impl Uploader {
    /// Copies `from` (`size` bytes) to `to` with `opts`. `keep_metadata`: the copy keeps the
    /// source's content type and user metadata (for a multipart copy they are read with a
    /// HEAD first); only the storage options of `opts` apply. Otherwise everything in `opts`.
    pub async fn copy(
        &self,
        from: &str,
        to: &str,
        size: u64,
        opts: &PutOptions,
        keep_metadata: bool,
    ) -> Result<(), UploadError> {
        if size <= MAX_SINGLE_COPY {
            return Ok(self
                .store
                .copy_with_options(from, to, opts, keep_metadata)
                .await?);
        }
        let mut opts = opts.clone();
        if keep_metadata {
            let info = self.store.head(from).await?;
            opts.metadata = info.metadata;
            opts.content_type = info.content_type;
        }
        let source = Arc::new(CopyOf(from.to_string()));
        self.upload(to, source, size, &opts).await.map(|_| ())
    }
}

/// Every part of the new object is the same range of the object `0`.
struct CopyOf(String);

#[async_trait]
impl PartSource for CopyOf {
    async fn read(&self, _range: Range<u64>) -> Result<Bytes, UploadError> {
        Err(UploadError::Staging(
            "a server-side copy sends no data (every part is copied)".into(),
        ))
    }

    fn copy_source(&self, _range: &Range<u64>) -> Option<String> {
        Some(self.0.clone())
    }
}
