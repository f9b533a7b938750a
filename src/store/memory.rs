//! An in-memory `ObjectStore` for unit tests: a sorted map of keys to bytes and metadata.
//! It follows S3's rules (overwrite, copy, multipart assembled in part order) with no I/O.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use super::listing::page_from_sorted;
use super::*;

#[derive(Clone)]
struct Stored {
    data: Bytes,
    opts: PutOptions,
    modified: SystemTime,
    etag: String,
}

impl Stored {
    /// A copy from this object conditional on its version (`x-amz-copy-source-if-match`):
    /// refused unless it is `etag`.
    fn check_source(&self, etag: Option<&str>) -> StoreResult<()> {
        match etag {
            Some(e) if !Condition::Is(e.into()).holds_for(Some(&self.etag)) => {
                Err(StoreError::PreconditionFailed)
            }
            _ => Ok(()),
        }
    }
}

/// An open multipart upload: its key, options, when it started, and the parts received so far.
struct Upload {
    key: String,
    opts: PutOptions,
    initiated: SystemTime,
    /// Creation order, to list uploads of one key in the order they were started.
    seq: u64,
    parts: BTreeMap<u32, Bytes>,
}

#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Stored>>,
    uploads: Mutex<HashMap<String, Upload>>,
    next_id: Mutex<u64>,
    stats: StatsCounter,
    timing: Timing,
}

/// How long a HEAD or LIST takes (zero unless a test sets it), and how many HEADs overlapped
/// at most: the concurrency a caller really has in flight only shows when requests take time.
/// A gate, when a test sets one, holds each GET, PUT or LIST until the test lets it through.
#[derive(Default)]
struct Timing {
    latency: Mutex<std::time::Duration>,
    get_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    put_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    list_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
    /// Copies still to be lost (see `lose_copies`).
    lost_copies: std::sync::atomic::AtomicUsize,
    /// PutObjects still to fail (see `fail_puts`).
    failing_puts: std::sync::atomic::AtomicUsize,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn fresh_id(&self) -> u64 {
        let mut n = self.next_id.lock().unwrap();
        *n += 1;
        *n
    }

    /// An ETag no object has had before.
    fn fresh_etag(&self) -> String {
        format!("\"m{}\"", self.fresh_id())
    }

    /// Stores the object if `condition` holds for what `key` holds now (checked and written
    /// under one lock, as S3 does).
    fn insert_if(
        &self,
        key: &str,
        data: Bytes,
        mut opts: PutOptions,
        condition: Option<&Condition>,
    ) -> StoreResult<String> {
        opts.condition = None;
        let etag = self.fresh_etag();
        let stored = Stored {
            data,
            opts,
            modified: SystemTime::now(),
            etag: etag.clone(),
        };
        let mut objects = self.objects.lock().unwrap();
        if let Some(c) = condition {
            if !c.holds_for(objects.get(key).map(|o| o.etag.as_str())) {
                return Err(StoreError::PreconditionFailed);
            }
        }
        objects.insert(key.to_string(), stored);
        Ok(etag)
    }

    /// The bytes stored under `key` (test helper).
    pub fn bytes(&self, key: &str) -> Option<Bytes> {
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .map(|s| s.data.clone())
    }

    /// Makes every HEAD and LIST take `latency` (test helper).
    pub fn set_latency(&self, latency: std::time::Duration) {
        *self.timing.latency.lock().unwrap() = latency;
    }

    /// Makes every GET first take one permit of `gate` for good (test helper: the test lets
    /// GETs through one at a time with `add_permits`).
    pub fn gate_gets(&self, gate: Arc<tokio::sync::Semaphore>) {
        *self.timing.get_gate.lock().unwrap() = Some(gate);
    }

    /// Makes every PutObject first take one permit of `gate` for good (test helper: an
    /// upload the test holds in flight until it calls `add_permits`).
    pub fn gate_puts(&self, gate: Arc<tokio::sync::Semaphore>) {
        *self.timing.put_gate.lock().unwrap() = Some(gate);
    }

    /// Makes every ListObjectsV2 (counted as it is asked for) first take one permit of
    /// `gate` for good (test helper: the test hands out LIST pages one at a time with
    /// `add_permits`).
    pub fn gate_lists(&self, gate: Arc<tokio::sync::Semaphore>) {
        *self.timing.list_gate.lock().unwrap() = Some(gate);
    }

    /// Makes the next `n` PutObjects fail with a 503, as a server in trouble does (test
    /// helper).
    pub fn fail_puts(&self, n: usize) {
        self.timing.failing_puts.store(n, Ordering::SeqCst);
    }

    /// Makes the next `n` copies succeed without changing anything, as Garage does with a
    /// copy that lands in the same millisecond as the write before it (test helper).
    pub fn lose_copies(&self, n: usize) {
        self.timing.lost_copies.store(n, Ordering::SeqCst);
    }

    /// The most HEADs that were in flight at once (test helper; see `set_latency`).
    pub fn max_heads_in_flight(&self) -> usize {
        self.timing.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every key in the store (test helper).
    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    /// The options an object was stored with (test helper): content type, metadata, and the
    /// SSE / ACL / storage class / Cache-Control S3 would have applied.
    pub fn options(&self, key: &str) -> Option<PutOptions> {
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .map(|s| s.opts.clone())
    }
}

/// Takes one permit of `gate` for good, when a test set one (see `gate_gets`).
async fn pass_gate(gate: &Mutex<Option<Arc<tokio::sync::Semaphore>>>) {
    let gate = gate.lock().unwrap().clone();
    if let Some(gate) = gate {
        gate.acquire()
            .await
            .expect("the gate is never closed")
            .forget();
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        self.stats.request("HeadObject", 0);
        let latency = *self.timing.latency.lock().unwrap();
        if !latency.is_zero() {
            let now = self.timing.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.timing.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(latency).await;
            self.timing.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        let objects = self.objects.lock().unwrap();
        let s = objects.get(key).ok_or(StoreError::NotFound)?;
        Ok(ObjectInfo {
            size: s.data.len() as u64,
            last_modified: s.modified,
            etag: Some(s.etag.clone()),
            content_type: s.opts.content_type.clone(),
            metadata: s.opts.metadata.clone(),
            storage_class: s.opts.storage_class.clone(),
            version_id: None,
        })
    }

    async fn get_range_if_match(
        &self,
        key: &str,
        range: Range<u64>,
        etag: Option<&str>,
    ) -> StoreResult<Bytes> {
        self.stats.request("GetObject", 0);
        pass_gate(&self.timing.get_gate).await;
        let objects = self.objects.lock().unwrap();
        let s = objects.get(key).ok_or(StoreError::NotFound)?;
        if etag.is_some_and(|e| e != s.etag) {
            return Err(StoreError::PreconditionFailed);
        }
        let len = s.data.len() as u64;
        if range.start >= len && !(len == 0 && range.start == 0) {
            return Err(StoreError::InvalidRange);
        }
        let end = range.end.min(len).max(range.start);
        let data = s.data.slice(range.start as usize..end as usize);
        self.stats.received(data.len() as u64);
        Ok(data)
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: usize,
    ) -> StoreResult<ListPage> {
        self.stats.request("ListObjectsV2", 0);
        pass_gate(&self.timing.list_gate).await;
        let latency = *self.timing.latency.lock().unwrap();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let objects = self.objects.lock().unwrap();
        let entries = objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, s)| ListedObject {
                key: k.clone(),
                size: s.data.len() as u64,
                last_modified: s.modified,
                etag: Some(s.etag.clone()),
            });
        Ok(page_from_sorted(
            entries,
            prefix,
            delimiter,
            token.as_deref(),
            max_keys,
        ))
    }

    async fn list_page_after(
        &self,
        prefix: &str,
        start_after: &str,
        max_keys: usize,
    ) -> StoreResult<ListPage> {
        let token = crate::store::listing::token_after(start_after);
        self.list_page(prefix, None, Some(token), max_keys).await
    }

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<Option<String>> {
        self.stats.request("PutObject", body.len() as u64);
        pass_gate(&self.timing.put_gate).await;
        let fail = self
            .timing
            .failing_puts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if fail.is_ok() {
            return Err(StoreError::Server {
                status: 503,
                message: "SlowDown".into(),
            });
        }
        let etag = self.insert_if(key, body, opts.clone(), opts.condition.as_ref())?;
        Ok(Some(etag))
    }

    async fn copy_with_options(
        &self,
        from: &str,
        to: &str,
        opts: &PutOptions,
        keep_metadata: bool,
    ) -> StoreResult<Option<String>> {
        self.stats.request("CopyObject", 0);
        let lose = self
            .timing
            .lost_copies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if lose.is_ok() {
            // As Garage does: the answer names the version the server then drops.
            return Ok(Some(self.fresh_etag()));
        }
        let src = self
            .objects
            .lock()
            .unwrap()
            .get(from)
            .cloned()
            .ok_or(StoreError::NotFound)?;
        src.check_source(opts.copy_source_etag.as_deref())?;
        let new_opts = if keep_metadata {
            PutOptions {
                content_type: src.opts.content_type,
                metadata: src.opts.metadata,
                cache_control: src.opts.cache_control,
                sse: opts.sse.clone(),
                acl: opts.acl.clone(),
                storage_class: opts.storage_class.clone(),
                condition: None,
                copy_source_etag: None,
            }
        } else {
            opts.clone()
        };
        let etag = self.insert_if(to, src.data, new_opts, opts.condition.as_ref())?;
        Ok(Some(etag))
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.stats.request("DeleteObject", 0);
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }

    async fn delete_if_match(&self, key: &str, etag: &str) -> StoreResult<()> {
        self.stats.request("DeleteObject", 0);
        let mut objects = self.objects.lock().unwrap();
        match objects.get(key) {
            Some(o) if !Condition::Is(etag.into()).holds_for(Some(&o.etag)) => {
                Err(StoreError::PreconditionFailed)
            }
            _ => {
                objects.remove(key);
                Ok(())
            }
        }
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        self.stats.request("CreateMultipartUpload", 0);
        let seq = self.fresh_id();
        let id = format!("upload-{seq}");
        let upload = Upload {
            key: key.to_string(),
            opts: opts.clone(),
            initiated: SystemTime::now(),
            seq,
            parts: BTreeMap::new(),
        };
        self.uploads.lock().unwrap().insert(id.clone(), upload);
        Ok(id)
    }

    async fn upload_part(
        &self,
        _key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> StoreResult<String> {
        self.stats.request("UploadPart", body.len() as u64);
        let mut uploads = self.uploads.lock().unwrap();
        let upload = uploads.get_mut(upload_id).ok_or(StoreError::NotFound)?;
        upload.parts.insert(number, body);
        Ok(format!("\"part{number}\""))
    }

    async fn upload_part_copy(
        &self,
        _key: &str,
        upload_id: &str,
        number: u32,
        source_key: &str,
        source_etag: Option<&str>,
        range: Range<u64>,
    ) -> StoreResult<String> {
        self.stats.request("UploadPartCopy", 0);
        check_copy_range(&range)?;
        let data = {
            let objects = self.objects.lock().unwrap();
            let src = objects.get(source_key).ok_or(StoreError::NotFound)?;
            src.check_source(source_etag)?;
            if range.end > src.data.len() as u64 {
                return Err(StoreError::InvalidRange);
            }
            src.data.slice(range.start as usize..range.end as usize)
        };
        let mut uploads = self.uploads.lock().unwrap();
        let upload = uploads.get_mut(upload_id).ok_or(StoreError::NotFound)?;
        upload.parts.insert(number, data);
        Ok(format!("\"part{number}\""))
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> StoreResult<Vec<MultipartUploadInfo>> {
        self.stats.request("ListMultipartUploads", 0);
        let uploads = self.uploads.lock().unwrap();
        let mut found: Vec<(&String, &Upload)> = uploads
            .iter()
            .filter(|(_, u)| u.key.starts_with(prefix))
            .collect();
        found.sort_by(|a, b| (&a.1.key, a.1.seq).cmp(&(&b.1.key, b.1.seq)));
        Ok(found
            .into_iter()
            .map(|(id, u)| MultipartUploadInfo {
                key: u.key.clone(),
                upload_id: id.clone(),
                initiated: u.initiated,
            })
            .collect())
    }

    fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
        condition: Option<&Condition>,
    ) -> StoreResult<Option<String>> {
        self.stats.request("CompleteMultipartUpload", 0);
        let upload = self
            .uploads
            .lock()
            .unwrap()
            .remove(upload_id)
            .ok_or(StoreError::NotFound)?;
        if upload.key != key {
            return Err(StoreError::InvalidRequest(
                InvalidRequest::UploadOfAnotherKey {
                    upload_id: upload_id.to_string(),
                    key: key.to_string(),
                    upload_key: upload.key,
                },
            ));
        }
        let mut data = Vec::new();
        for part in parts {
            let bytes = upload.parts.get(&part.number).ok_or_else(|| {
                StoreError::InvalidPart(PartMismatch::NeverUploaded {
                    upload_id: upload_id.to_string(),
                    number: part.number,
                })
            })?;
            data.extend_from_slice(bytes);
        }
        match self.insert_if(key, Bytes::from(data), upload.opts.clone(), condition) {
            Ok(etag) => Ok(Some(etag)),
            Err(e) => {
                // Refused: the upload stays, to be aborted (as on S3).
                self.uploads
                    .lock()
                    .unwrap()
                    .insert(upload_id.to_string(), upload);
                Err(e)
            }
        }
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> StoreResult<()> {
        self.stats.request("AbortMultipartUpload", 0);
        self.uploads.lock().unwrap().remove(upload_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts_with_everything() -> PutOptions {
        let mut opts = PutOptions {
            content_type: Some("text/plain".into()),
            sse: Some(Sse::Kms {
                key_id: Some("k1".into()),
            }),
            acl: Some("public-read".into()),
            storage_class: Some("STANDARD_IA".into()),
            cache_control: Some("max-age=60".into()),
            ..Default::default()
        };
        opts.metadata.insert("mode".into(), "0644".into());
        opts
    }

    #[tokio::test]
    async fn upload_part_copy_assembles_ranges_of_other_objects() {
        let s = MemoryStore::new();
        s.put(
            "src",
            Bytes::from_static(b"0123456789"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
        let id = s
            .create_multipart("dst", &PutOptions::default())
            .await
            .unwrap();
        let e1 = s
            .upload_part_copy("dst", &id, 1, "src", None, 2..5)
            .await
            .unwrap();
        let e2 = s
            .upload_part("dst", &id, 2, Bytes::from_static(b"new"))
            .await
            .unwrap();
        let e3 = s
            .upload_part_copy("dst", &id, 3, "src", None, 9..10)
            .await
            .unwrap();
        // Errors: missing source, range past the end, empty range, unknown upload.
        assert!(matches!(
            s.upload_part_copy("dst", &id, 4, "nope", None, 0..1).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            s.upload_part_copy("dst", &id, 4, "src", None, 5..11).await,
            Err(StoreError::InvalidRange)
        ));
        assert!(matches!(
            s.upload_part_copy("dst", &id, 4, "src", None, 3..3).await,
            Err(StoreError::InvalidRequest(InvalidRequest::EmptyCopyRange {
                start: 3,
                end: 3
            }))
        ));
        assert!(matches!(
            s.upload_part_copy("dst", "upload-999", 1, "src", None, 0..1)
                .await,
            Err(StoreError::NotFound)
        ));
        let parts = [(1, e1), (2, e2), (3, e3)]
            .into_iter()
            .map(|(number, etag)| CompletedPart { number, etag })
            .collect();
        s.complete_multipart("dst", &id, parts, None).await.unwrap();
        assert_eq!(s.bytes("dst").unwrap(), "234new9");
    }

    #[tokio::test]
    async fn lists_uploads_in_progress_by_prefix() {
        let s = MemoryStore::new();
        let before = SystemTime::now();
        let b1 = s
            .create_multipart("d/b", &PutOptions::default())
            .await
            .unwrap();
        let a = s
            .create_multipart("d/a", &PutOptions::default())
            .await
            .unwrap();
        let b2 = s
            .create_multipart("d/b", &PutOptions::default())
            .await
            .unwrap();
        let other = s
            .create_multipart("e/x", &PutOptions::default())
            .await
            .unwrap();
        let listed = s.list_multipart_uploads("d/").await.unwrap();
        let ids: Vec<_> = listed
            .iter()
            .map(|u| (u.key.as_str(), u.upload_id.as_str()))
            .collect();
        assert_eq!(ids, [("d/a", a.as_str()), ("d/b", &b1), ("d/b", &b2)]);
        assert!(listed.iter().all(|u| u.initiated >= before));
        assert_eq!(s.list_multipart_uploads("").await.unwrap().len(), 4);
        s.abort_multipart("e/x", &other).await.unwrap();
        s.complete_multipart("d/a", &a, vec![], None).await.unwrap();
        assert_eq!(s.list_multipart_uploads("").await.unwrap().len(), 2);
        assert!(s.list_multipart_uploads("zzz").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn copies_keep_or_replace_like_s3() {
        let s = MemoryStore::new();
        let full = opts_with_everything();
        s.put("src", Bytes::from_static(b"x"), &full).await.unwrap();
        // COPY directive: content type, metadata and Cache-Control stay; SSE, ACL and
        // storage class are what the copy asks for (nothing = bucket defaults).
        s.copy("src", "plain", None).await.unwrap();
        let o = s.options("plain").unwrap();
        assert_eq!(o.content_type, full.content_type);
        assert_eq!(o.metadata, full.metadata);
        assert_eq!(o.cache_control, full.cache_control);
        assert_eq!((o.sse, o.acl, o.storage_class), (None, None, None));
        let stored_as = PutOptions {
            sse: Some(Sse::Aes256),
            acl: Some("private".into()),
            storage_class: Some("GLACIER".into()),
            content_type: Some("ignored/with-copy".into()),
            ..Default::default()
        };
        s.copy_with_options("src", "kept", &stored_as, true)
            .await
            .unwrap();
        let o = s.options("kept").unwrap();
        assert_eq!(o.content_type, full.content_type);
        assert_eq!(o.sse, Some(Sse::Aes256));
        assert_eq!(o.storage_class.as_deref(), Some("GLACIER"));
        // REPLACE: everything from the options.
        s.copy_with_options("src", "replaced", &stored_as, false)
            .await
            .unwrap();
        assert_eq!(s.options("replaced").unwrap(), stored_as);
        s.copy("src", "r2", Some(&full)).await.unwrap();
        assert_eq!(s.options("r2").unwrap(), full);
    }

    #[tokio::test]
    async fn counts_requests_and_bytes() {
        let s = MemoryStore::new();
        assert_eq!(s.stats(), StoreStats::default());
        s.put("a", Bytes::from_static(b"12345"), &PutOptions::default())
            .await
            .unwrap();
        s.get_range("a", 1..3).await.unwrap();
        s.get_range("a", 0..100).await.unwrap();
        s.head("a").await.unwrap();
        s.copy("a", "b", None).await.unwrap();
        let id = s
            .create_multipart("c", &PutOptions::default())
            .await
            .unwrap();
        s.upload_part("c", &id, 1, Bytes::from_static(b"xyz"))
            .await
            .unwrap();
        s.upload_part_copy("c", &id, 2, "a", None, 0..5)
            .await
            .unwrap();
        let st = s.stats();
        assert_eq!(st.count("PutObject"), 1);
        assert_eq!(st.count("GetObject"), 2);
        assert_eq!(st.count("HeadObject"), 1);
        assert_eq!(st.count("CopyObject"), 1);
        assert_eq!(st.count("CreateMultipartUpload"), 1);
        assert_eq!(st.count("UploadPart"), 1);
        assert_eq!(st.count("UploadPartCopy"), 1);
        assert_eq!(st.total_requests(), 8);
        assert_eq!(st.bytes_sent, 5 + 3, "copies send no bytes");
        assert_eq!(st.bytes_received, 2 + 5);
    }
}
