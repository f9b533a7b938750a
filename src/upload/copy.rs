//! Server-side copies of any size. S3 copies up to 5 GiB in one CopyObject and refuses more;
//! a larger object is copied as a multipart upload whose every part is an UploadPartCopy of
//! the source (nothing passes through bucketfs). Used by rename and by metadata changes.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{CopyFrom, PartSource, UploadError, Uploader};
use crate::store::{ObjectInfo, PutOptions, StoreError, UserMetadata};

/// Largest object one CopyObject copies. (Small in unit tests, so that the multipart path
/// runs on the in-memory store.)
const MAX_SINGLE_COPY: u64 = if cfg!(test) { 6 << 20 } else { 5 << 30 };

impl Uploader {
    /// Copies `from` (`size` bytes) to `to` with `opts`. `keep_metadata`: the copy keeps the
    /// source's content type and user metadata (for a multipart copy they are read with a
    /// HEAD first); only the storage options of `opts` apply. Otherwise everything in `opts`.
    /// Returns the ETag of the object at `to` once the copy is there. `opts.condition` is on
    /// `to` (at completion for a multipart copy), `opts.copy_source_etag` on `from` (on every
    /// part).
    ///
    /// The copy is read back (HEAD) and made again while the server still shows what `to`
    /// held before: a server that orders versions by a millisecond clock (Garage) answers
    /// 200 to a copy that lands in the same millisecond as the write before it (an upload at
    /// close then a chmod, a file written then renamed over) and drops it. Callers delete a
    /// source only after this returns, so a dropped copy never loses data. What the read-back
    /// cannot tell: a COPY-directive copy onto an object with the same content (same ETag).
    pub async fn copy(
        &self,
        from: &str,
        to: &str,
        size: u64,
        opts: &PutOptions,
        keep_metadata: bool,
    ) -> Result<Option<String>, UploadError> {
        let metadata = (!keep_metadata).then_some(&opts.metadata);
        for attempt in 1..=COPY_TRIES {
            let etag = self.copy_once(from, to, size, opts, keep_metadata).await?;
            match self.store.head(to).await {
                Ok(info) if is_the_copy(&info, etag.as_deref(), metadata) => return Ok(info.etag),
                Ok(_) | Err(StoreError::NotFound) => {}
                Err(e) => return Err(e.into()),
            }
            tracing::debug!(
                from,
                to,
                attempt,
                "the server kept the previous version; copying again"
            );
            tokio::time::sleep(COPY_RETRY_DELAY).await;
        }
        Err(UploadError::CopyNotKept {
            from: from.to_string(),
            to: to.to_string(),
            tries: COPY_TRIES,
        })
    }

    /// One copy, in one request or as a multipart upload; the ETag the server gave it.
    async fn copy_once(
        &self,
        from: &str,
        to: &str,
        size: u64,
        opts: &PutOptions,
        keep_metadata: bool,
    ) -> Result<Option<String>, UploadError> {
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
        let source = Arc::new(CopyOf(CopyFrom {
            key: from.to_string(),
            etag: opts.copy_source_etag.clone(),
        }));
        self.upload(to, source, size, &opts).await
    }
}

/// Copies made before giving up on a server that keeps dropping them.
const COPY_TRIES: u32 = 3;

/// Wait before copying again: past the millisecond of the write the copy collided with.
const COPY_RETRY_DELAY: Duration = Duration::from_millis(2);

/// True when `info` (a HEAD after a copy) shows the copy: the ETag the copy was given (when
/// the server gave one) and, for a REPLACE copy, the metadata it sent.
fn is_the_copy(info: &ObjectInfo, etag: Option<&str>, metadata: Option<&UserMetadata>) -> bool {
    let unquoted = |e: &str| e.trim_matches('"').to_string();
    let same_etag = etag.is_none_or(|e| info.etag.as_deref().map(unquoted) == Some(unquoted(e)));
    same_etag && metadata.is_none_or(|sent| same_metadata(&info.metadata, sent))
}

/// Metadata as read back equals metadata as sent (servers lowercase the names).
fn same_metadata(stored: &UserMetadata, sent: &UserMetadata) -> bool {
    stored.len() == sent.len()
        && sent
            .iter()
            .all(|(k, v)| stored.get(&k.to_ascii_lowercase()) == Some(v))
}

/// Every part of the new object is the same range of the object `0` (of that version only,
/// when it names one).
struct CopyOf(CopyFrom);

#[async_trait]
impl PartSource for CopyOf {
    async fn read(&self, _range: Range<u64>) -> Result<Bytes, UploadError> {
        Err(UploadError::CopySendsNoData)
    }

    fn copy_source(&self, _range: &Range<u64>) -> Option<CopyFrom> {
        Some(self.0.clone())
    }
}
