//! An in-memory `ObjectStore` for unit tests: a sorted map of keys to bytes and metadata.
//! It follows S3's rules (overwrite, copy, multipart assembled in part order) with no I/O.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Mutex;
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

/// An open multipart upload: its key, options, and the parts received so far.
type Upload = (String, PutOptions, BTreeMap<u32, Bytes>);

#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Stored>>,
    uploads: Mutex<HashMap<String, Upload>>,
    next_id: Mutex<u64>,
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

    fn insert(&self, key: &str, data: Bytes, opts: PutOptions) -> String {
        let etag = format!("\"m{}\"", self.fresh_id());
        let stored = Stored {
            data,
            opts,
            modified: SystemTime::now(),
            etag: etag.clone(),
        };
        self.objects.lock().unwrap().insert(key.to_string(), stored);
        etag
    }

    /// The bytes stored under `key` (test helper).
    pub fn bytes(&self, key: &str) -> Option<Bytes> {
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .map(|s| s.data.clone())
    }

    /// Every key in the store (test helper).
    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        let objects = self.objects.lock().unwrap();
        let s = objects.get(key).ok_or(StoreError::NotFound)?;
        Ok(ObjectInfo {
            size: s.data.len() as u64,
            last_modified: s.modified,
            etag: Some(s.etag.clone()),
            content_type: s.opts.content_type.clone(),
            metadata: s.opts.metadata.clone(),
        })
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let objects = self.objects.lock().unwrap();
        let s = objects.get(key).ok_or(StoreError::NotFound)?;
        let len = s.data.len() as u64;
        if range.start >= len && !(len == 0 && range.start == 0) {
            return Err(StoreError::InvalidRange);
        }
        let end = range.end.min(len);
        Ok(s.data.slice(range.start as usize..end as usize))
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: usize,
    ) -> StoreResult<ListPage> {
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

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<Option<String>> {
        Ok(Some(self.insert(key, body, opts.clone())))
    }

    async fn copy(&self, from: &str, to: &str, replace: Option<&PutOptions>) -> StoreResult<()> {
        let src = self
            .objects
            .lock()
            .unwrap()
            .get(from)
            .cloned()
            .ok_or(StoreError::NotFound)?;
        let opts = replace.cloned().unwrap_or(src.opts);
        self.insert(to, src.data, opts);
        Ok(())
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.objects.lock().unwrap().remove(key);
        Ok(())
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        let id = format!("upload-{}", self.fresh_id());
        self.uploads
            .lock()
            .unwrap()
            .insert(id.clone(), (key.to_string(), opts.clone(), BTreeMap::new()));
        Ok(id)
    }

    async fn upload_part(
        &self,
        _key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> StoreResult<String> {
        let mut uploads = self.uploads.lock().unwrap();
        let upload = uploads.get_mut(upload_id).ok_or(StoreError::NotFound)?;
        upload.2.insert(number, body);
        Ok(format!("\"part{number}\""))
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> StoreResult<Option<String>> {
        let (upload_key, opts, stored) = self
            .uploads
            .lock()
            .unwrap()
            .remove(upload_id)
            .ok_or(StoreError::NotFound)?;
        if upload_key != key {
            return Err(StoreError::Other("upload id belongs to another key".into()));
        }
        let mut data = Vec::new();
        for part in parts {
            let bytes = stored.get(&part.number).ok_or_else(|| {
                StoreError::Other(format!("part {} was never uploaded", part.number))
            })?;
            data.extend_from_slice(bytes);
        }
        Ok(Some(self.insert(key, Bytes::from(data), opts)))
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> StoreResult<()> {
        self.uploads.lock().unwrap().remove(upload_id);
        Ok(())
    }
}
