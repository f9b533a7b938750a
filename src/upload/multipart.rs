//! Multipart uploads: parts are read from a `PartSource` and sent with at most `concurrency`
//! in flight, so memory stays bounded by `part size × concurrency`. A part the source says is
//! unchanged in an existing object is copied server-side (UploadPartCopy) when it is at least
//! 5 MiB or the last. On any part's final failure the upload is aborted.
//!
//! An `Upload` can be fed while the file is still being written (`send_available`): whole parts
//! go out as soon as the writer is past them, which is how sequential writes stream. `finish`
//! sends the rest and completes.
//!
//! Part sizes grow with the part number: the configured size for parts 1–1,000, twice that for
//! 1,001–2,000, and so on (at most 5 GiB), so with the default 8 MiB one object can reach
//! S3's 5 TiB limit within its 10,000 parts while small files keep small parts.

use std::ops::Range;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::registry::UploadRegistry;
use super::{PartSource, UploadError};
use crate::store::{CompletedPart, Condition, ObjectStore, PutOptions};

/// Smallest part S3 accepts, except the last.
const MIN_PART: u64 = 5 << 20;
/// Most parts one multipart upload may have.
pub const MAX_PARTS: u32 = 10_000;
/// Largest part S3 accepts.
const MAX_PART: u64 = 5 << 30;

/// Size of part `number` (1-based) when the first parts are `first` bytes.
pub fn part_len(number: u32, first: u64) -> u64 {
    (first << ((number - 1) / 1000).min(20)).min(MAX_PART)
}

/// Uploads `size` bytes of `source` as `key` in one go.
#[allow(clippy::too_many_arguments)]
pub async fn upload(
    store: Arc<dyn ObjectStore>,
    registry: Option<Arc<UploadRegistry>>,
    key: &str,
    source: Arc<dyn PartSource>,
    size: u64,
    part_size: u64,
    concurrency: usize,
    opts: &PutOptions,
) -> Result<Option<String>, UploadError> {
    let upload = Upload::start(store, registry, key, opts, source, part_size, concurrency).await?;
    upload.finish(size, opts.condition.as_ref()).await
}

/// One multipart upload in progress.
pub struct Upload {
    store: Arc<dyn ObjectStore>,
    registry: Option<Arc<UploadRegistry>>,
    key: String,
    upload_id: String,
    source: Arc<dyn PartSource>,
    part_size: u64,
    permits: Arc<Semaphore>,
    tasks: JoinSet<Result<CompletedPart, UploadError>>,
    parts: Vec<CompletedPart>,
    next_offset: u64,
    next_number: u32,
    /// The user metadata the object gets (fixed when the upload was created).
    metadata: crate::store::UserMetadata,
}

impl Upload {
    /// CreateMultipartUpload (recorded in `registry` until completed or aborted).
    pub async fn start(
        store: Arc<dyn ObjectStore>,
        registry: Option<Arc<UploadRegistry>>,
        key: &str,
        opts: &PutOptions,
        source: Arc<dyn PartSource>,
        part_size: u64,
        concurrency: usize,
    ) -> Result<Upload, UploadError> {
        let upload_id = store.create_multipart(key, opts).await?;
        if let Some(r) = &registry {
            r.started(key, &upload_id);
        }
        Ok(Upload {
            store,
            registry,
            key: key.to_string(),
            upload_id,
            source,
            part_size,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            tasks: JoinSet::new(),
            parts: Vec::new(),
            next_offset: 0,
            next_number: 1,
            metadata: opts.metadata.clone(),
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The user metadata given when the upload was created.
    pub fn metadata(&self) -> &crate::store::UserMetadata {
        &self.metadata
    }

    /// Bytes already handed to part uploads: a write below this invalidates the upload.
    pub fn sent_up_to(&self) -> u64 {
        self.next_offset
    }

    /// Sends every whole part that ends at or below `available`; waits while `concurrency`
    /// parts are in flight (backpressure on the writer).
    pub async fn send_available(&mut self, available: u64) -> Result<(), UploadError> {
        loop {
            let len = part_len(self.next_number, self.part_size);
            if self.next_offset + len > available {
                return Ok(());
            }
            self.send(self.next_offset..self.next_offset + len, false)
                .await?;
        }
    }

    async fn send(&mut self, range: Range<u64>, last: bool) -> Result<(), UploadError> {
        if self.next_number > MAX_PARTS {
            return Err(UploadError::TooManyParts { max: MAX_PARTS });
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        // Collect finished parts early so a failure stops the upload promptly.
        while let Some(done) = self.tasks.try_join_next() {
            self.parts.push(done.map_err(UploadError::from)??);
        }
        let number = self.next_number;
        self.next_number += 1;
        self.next_offset = range.end;
        let (store, key, id, source) = (
            self.store.clone(),
            self.key.clone(),
            self.upload_id.clone(),
            self.source.clone(),
        );
        self.tasks.spawn(async move {
            let _permit = permit;
            let len = range.end - range.start;
            // Unchanged bytes of an existing object are copied server-side, not sent.
            let copy = source
                .copy_source(&range)
                .filter(|_| len >= MIN_PART || last);
            let etag = match copy {
                Some(from) => {
                    store
                        .upload_part_copy(&key, &id, number, &from.key, from.etag.as_deref(), range)
                        .await?
                }
                None => {
                    let body = source.read(range).await?;
                    if (body.len() as u64) < len {
                        return Err(UploadError::StagedShort);
                    }
                    store.upload_part(&key, &id, number, body).await?
                }
            };
            Ok(CompletedPart { number, etag })
        });
        Ok(())
    }

    /// Sends the rest of a `size`-byte file and completes the upload, only while the key
    /// holds what `condition` says (given now, not when the upload started: a streamed file
    /// may have been stored meanwhile); aborts it on failure.
    pub async fn finish(
        mut self,
        size: u64,
        condition: Option<&Condition>,
    ) -> Result<Option<String>, UploadError> {
        let result = self.send_rest(size).await;
        let result = match result {
            Ok(()) => {
                let mut parts = std::mem::take(&mut self.parts);
                parts.sort_by_key(|p| p.number);
                self.store
                    .complete_multipart(&self.key, &self.upload_id, parts, condition)
                    .await
                    .map_err(UploadError::from)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(etag) => {
                self.settled();
                Ok(etag)
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    async fn send_rest(&mut self, size: u64) -> Result<(), UploadError> {
        while self.next_offset < size {
            let end = (self.next_offset + part_len(self.next_number, self.part_size)).min(size);
            self.send(self.next_offset..end, end == size).await?;
        }
        while let Some(done) = self.tasks.join_next().await {
            self.parts.push(done.map_err(UploadError::from)??);
        }
        Ok(())
    }

    /// Abandons the upload: stops its parts and aborts it. If even the abort fails, its record
    /// stays, so the next mount cleans it up.
    pub async fn abort(mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        match self.store.abort_multipart(&self.key, &self.upload_id).await {
            Ok(()) => self.settled(),
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "could not abort a failed multipart upload")
            }
        }
    }

    fn settled(&self) {
        if let Some(r) = &self.registry {
            r.ended(&self.upload_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use bytes::Bytes;

    #[test]
    fn parts_double_every_thousand_so_five_tib_fits_in_ten_thousand_parts() {
        let first = 8 << 20;
        assert_eq!(part_len(1, first), first);
        assert_eq!(part_len(1000, first), first);
        assert_eq!(part_len(1001, first), 2 * first);
        let total: u64 = (1..=MAX_PARTS).map(|n| part_len(n, first)).sum();
        assert!(total >= 5 << 40, "10,000 parts hold {total} bytes");
        assert!((1..=MAX_PARTS).all(|n| part_len(n, first) <= 5 << 30));
    }

    #[tokio::test]
    async fn parts_sent_while_writing_and_the_rest_at_finish_make_the_whole_file() {
        let mem = Arc::new(MemoryStore::new());
        let store: Arc<dyn ObjectStore> = mem.clone();
        let bytes = data(10_000);
        let source = Arc::new(Source {
            data: Bytes::from(bytes.clone()),
            base: None,
        });
        let mut up = Upload::start(store, None, "k", &PutOptions::default(), source, 1024, 2)
            .await
            .unwrap();
        up.send_available(3000).await.unwrap();
        assert_eq!(up.sent_up_to(), 2048, "only whole parts");
        up.finish(10_000, None).await.unwrap();
        assert_eq!(&mem.bytes("k").unwrap()[..], &bytes[..]);
    }

    #[tokio::test]
    async fn a_streamed_upload_completes_under_the_condition_given_at_its_end() {
        // Started while the key was free, then this file's own earlier upload stored it:
        // the completion is conditional on that object, not on the key being free.
        let mem = Arc::new(MemoryStore::new());
        let store: Arc<dyn ObjectStore> = mem.clone();
        let source = Arc::new(Source {
            data: Bytes::from(data(3000)),
            base: None,
        });
        let created_free = PutOptions {
            condition: Some(Condition::Absent),
            ..PutOptions::default()
        };
        let up = Upload::start(store.clone(), None, "k", &created_free, source, 1024, 2)
            .await
            .unwrap();
        let earlier = store
            .put("k", Bytes::from_static(b"first part"), &created_free)
            .await
            .unwrap()
            .unwrap();
        up.finish(3000, Some(&Condition::Is(earlier)))
            .await
            .unwrap();
        assert_eq!(mem.bytes("k").unwrap().len(), 3000);
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
        fn copy_source(&self, r: &std::ops::Range<u64>) -> Option<crate::upload::CopyFrom> {
            self.base
                .filter(|(_, below)| r.end <= *below)
                .map(|(k, _)| crate::upload::CopyFrom {
                    key: k.to_string(),
                    etag: None,
                })
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
