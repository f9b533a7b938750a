//! Multipart upload of a staged file: parts are read from the staging file and sent with at
//! most `concurrency` in flight, so memory stays bounded by `part size × concurrency`. On any
//! part's final failure the upload is aborted.
//!
//! Part sizes grow with the part number: the configured size for parts 1–1,000, twice that for
//! 1,001–2,000, and so on (at most 5 GiB), so with the default 8 MiB one object can reach
//! S3's 5 TiB limit within its 10,000 parts while small files keep small parts.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::staging::StagingFile;
use super::UploadError;
use crate::store::{CompletedPart, ObjectStore, PutOptions};

pub async fn upload(
    store: Arc<dyn ObjectStore>,
    key: &str,
    staging: &StagingFile,
    size: u64,
    part_size: u64,
    concurrency: usize,
    opts: &PutOptions,
) -> Result<Option<String>, UploadError> {
    let upload_id = store.create_multipart(key, opts).await?;
    match send_parts(
        &store,
        key,
        &upload_id,
        staging,
        size,
        part_size,
        concurrency,
    )
    .await
    {
        Ok(parts) => match store.complete_multipart(key, &upload_id, parts).await {
            Ok(etag) => Ok(etag),
            Err(e) => {
                abort(&store, key, &upload_id).await;
                Err(e.into())
            }
        },
        Err(e) => {
            abort(&store, key, &upload_id).await;
            Err(e)
        }
    }
}

async fn abort(store: &Arc<dyn ObjectStore>, key: &str, upload_id: &str) {
    if let Err(e) = store.abort_multipart(key, upload_id).await {
        tracing::warn!(key, error = %e, "could not abort a failed multipart upload");
    }
}

async fn send_parts(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    upload_id: &str,
    staging: &StagingFile,
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
        let (store, key, id, staging) = (
            store.clone(),
            key.to_string(),
            upload_id.to_string(),
            staging.clone(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            let len = (range.end - range.start) as usize;
            let body = staging.read_at(range.start, len).await?;
            if body.len() < len {
                return Err(UploadError::Staging(
                    "staged file is shorter than the file".into(),
                ));
            }
            let number = i as u32 + 1;
            let etag = store.upload_part(&key, &id, number, body).await?;
            Ok::<_, UploadError>(CompletedPart { number, etag })
        });
    }
    while let Some(done) = tasks.join_next().await {
        parts.push(done.map_err(|e| UploadError::Staging(e.to_string()))??);
    }
    parts.sort_by_key(|p| p.number);
    Ok(parts)
}

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

    #[tokio::test]
    async fn parts_are_assembled_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let staging = StagingFile::create(dir.path()).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        staging
            .write_at(0, Bytes::from(data.clone()))
            .await
            .unwrap();
        let mem = Arc::new(MemoryStore::new());
        let store: Arc<dyn ObjectStore> = mem.clone();
        upload(
            store,
            "k",
            &staging,
            10_000,
            1024,
            3,
            &PutOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(&mem.bytes("k").unwrap()[..], &data[..]);
    }
}
