//! Multipart upload of a staged file: parts of `part_size` bytes are read from the staging file
//! and sent with at most `concurrency` in flight, so memory stays bounded by
//! `part_size × concurrency`. On any part's final failure the upload is aborted.

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
    let count = size.div_ceil(part_size);
    for i in 0..count {
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
            let offset = i * part_size;
            let len = part_size.min(size - offset) as usize;
            let body = staging.read_at(offset, len).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use bytes::Bytes;

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
