//! Multipart upload: parts are read from the `PartSource` and sent with at most `concurrency`
//! in flight, so memory stays bounded by `part size × concurrency`. A part the source says is
//! unchanged in an existing object is copied server-side (UploadPartCopy) when it is at least
//! 5 MiB or the last. On any part's final failure the upload is aborted.
//!
//! Part sizes grow with the part number: the configured size for parts 1–1,000, twice that for
//! 1,001–2,000, and so on (at most 5 GiB), so with the default 8 MiB one object can reach
//! S3's 5 TiB limit within its 10,000 parts while small files keep small parts.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::registry::UploadRegistry;
use super::{PartSource, UploadError};
use crate::store::{CompletedPart, ObjectStore, PutOptions};

#[allow(clippy::too_many_arguments)]
pub async fn upload(
    store: Arc<dyn ObjectStore>,
    registry: Option<&UploadRegistry>,
    key: &str,
    source: Arc<dyn PartSource>,
    size: u64,
    part_size: u64,
    concurrency: usize,
    opts: &PutOptions,
) -> Result<Option<String>, UploadError> {
    let upload_id = store.create_multipart(key, opts).await?;
    if let Some(r) = registry {
        r.started(key, &upload_id);
    }
    let sent = send_parts(
        &store,
        key,
        &upload_id,
        source,
        size,
        part_size,
        concurrency,
    )
    .await;
    let result = match sent {
        Ok(parts) => store
            .complete_multipart(key, &upload_id, parts)
            .await
            .map_err(UploadError::from),
        Err(e) => Err(e),
    };
    // A failed upload is aborted; if even that fails, its record stays so the next mount
    // cleans it up.
    let settled = result.is_ok() || abort(&store, key, &upload_id).await;
    if let Some(r) = registry.filter(|_| settled) {
        r.ended(&upload_id);
    }
    result
}

/// Aborts a failed upload; false if the abort failed too.
async fn abort(store: &Arc<dyn ObjectStore>, key: &str, upload_id: &str) -> bool {
    match store.abort_multipart(key, upload_id).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(key, error = %e, "could not abort a failed multipart upload");
            false
        }
    }
}

async fn send_parts(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    upload_id: &str,
    source: Arc<dyn PartSource>,
    size: u64,
    part_size: u64,
    concurrency: usize,
) -> Result<Vec<CompletedPart>, UploadError> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut parts = Vec::new();
    let ranges = part_ranges(size, part_size)?;
    for (i, range) in ranges.into_iter().enumerate() {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        // Collect finished parts early so a failure stops the loop promptly.
        while let Some(done) = tasks.try_join_next() {
            parts.push(done.map_err(|e| UploadError::Staging(e.to_string()))??);
        }
        let (store, key, id, source) = (
            store.clone(),
            key.to_string(),
            upload_id.to_string(),
            source.clone(),
        );
        let last = range.end == size;
        tasks.spawn(async move {
            let _permit = permit;
            let number = i as u32 + 1;
            let len = range.end - range.start;
            // Unchanged bytes of an existing object are copied server-side, not sent.
            let copy = source
                .copy_source(&range)
                .filter(|_| len >= MIN_PART || last)
                .map(str::to_string);
            let etag = match copy {
                Some(from) => {
                    store
                        .upload_part_copy(&key, &id, number, &from, range)
                        .await?
                }
                None => {
                    let body = source.read(range).await?;
                    if (body.len() as u64) < len {
                        return Err(UploadError::Staging(
                            "staged file is shorter than the file".into(),
                        ));
                    }
                    store.upload_part(&key, &id, number, body).await?
                }
            };
            Ok::<_, UploadError>(CompletedPart { number, etag })
        });
    }
    while let Some(done) = tasks.join_next().await {
        parts.push(done.map_err(|e| UploadError::Staging(e.to_string()))??);
    }
    parts.sort_by_key(|p| p.number);
    Ok(parts)
}

/// Smallest part S3 accepts, except the last.
const MIN_PART: u64 = 5 << 20;
/// Most parts one multipart upload may have.
pub const MAX_PARTS: usize = 10_000;
/// Largest part S3 accepts.
const MAX_PART: u64 = 5 << 30;

/// The byte ranges of the parts of a `size`-byte object whose first parts are `first` bytes.
pub fn part_ranges(size: u64, first: u64) -> Result<Vec<std::ops::Range<u64>>, UploadError> {
    let mut ranges = Vec::new();
    let mut offset = 0;
    while offset < size {
        let n = ranges.len() as u32;
        if ranges.len() == MAX_PARTS {
            return Err(UploadError::Staging(format!(
                "a file of {size} bytes needs more than {MAX_PARTS} parts: raise --part-size"
            )));
        }
        let part = (first << (n / 1000).min(20)).min(MAX_PART);
        let end = (offset + part).min(size);
        ranges.push(offset..end);
        offset = end;
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use bytes::Bytes;

    #[test]
    fn parts_double_every_thousand_so_five_tib_fits_in_ten_thousand_parts() {
        let ranges = part_ranges(5 << 40, 8 << 20).unwrap();
        assert!(ranges.len() <= MAX_PARTS, "{}", ranges.len());
        assert_eq!(ranges[0], 0..8 << 20);
        assert_eq!(ranges[1000].end - ranges[1000].start, 16 << 20);
        assert_eq!(ranges.last().unwrap().end, 5 << 40);
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        assert!(ranges.iter().all(|r| r.end - r.start <= 5 << 30));
    }

    /// New content held in memory; ranges before `copy_below` are unchanged in `base`.
    struct Source {
        data: Bytes,
        base: Option<(&'static str, u64)>,
    }

    #[async_trait::async_trait]
    impl PartSource for Source {
        async fn read(&self, r: std::ops::Range<u64>) -> Result<Bytes, UploadError> {
            Ok(self.data.slice(r.start as usize..r.end as usize))
        }
        fn copy_source(&self, r: &std::ops::Range<u64>) -> Option<&str> {
            self.base
                .filter(|(_, below)| r.end <= *below)
                .map(|(k, _)| k)
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len as u32).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn parts_are_assembled_in_order() {
        let mem = Arc::new(MemoryStore::new());
        let store: Arc<dyn ObjectStore> = mem.clone();
        let bytes = data(10_000);
        let source = Arc::new(Source {
            data: Bytes::from(bytes.clone()),
            base: None,
        });
        upload(
            store,
            None,
            "k",
            source,
            10_000,
            1024,
            3,
            &PutOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(&mem.bytes("k").unwrap()[..], &bytes[..]);
    }

    #[tokio::test]
    async fn unchanged_parts_of_the_old_object_are_copied_not_sent() {
        let mem = Arc::new(MemoryStore::new());
        let store: Arc<dyn ObjectStore> = mem.clone();
        let old = data(15 << 20);
        mem.put("k", Bytes::from(old.clone()), &PutOptions::default())
            .await
            .unwrap();
        let mut new = old.clone();
        new.extend_from_slice(b"appended");
        let before = mem.stats().bytes_sent;
        let source = Arc::new(Source {
            data: Bytes::from(new.clone()),
            base: Some(("k", 15 << 20)),
        });
        upload(
            store,
            None,
            "k",
            source,
            new.len() as u64,
            5 << 20,
            2,
            &PutOptions::default(),
        )
        .await
        .unwrap();
        assert!(mem.bytes("k").unwrap() == new);
        assert_eq!(
            mem.stats().bytes_sent - before,
            8,
            "only the appended bytes are sent"
        );
        assert_eq!(mem.stats().requests.get("UploadPartCopy"), Some(&3));
    }
}
