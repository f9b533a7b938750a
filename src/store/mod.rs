//! The object store layer: one `ObjectStore` trait that everything above talks to.
//!
//! The filesystem never builds an S3 request itself. It asks this trait for whole-object
//! operations (HEAD, ranged GET, LIST with a delimiter, PUT, copy, delete, multipart). Three
//! implementations exist: `s3` (rust-s3, with retries and typed errors), `local` (a directory,
//! for development and demos) and `memory` (unit tests). Keys are full bucket keys: the prefix a
//! mount is rooted at is applied by the filesystem layer, not here.

pub mod listing;
pub mod local;
pub mod memory;
pub mod retry;
pub mod s3;

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

/// What went wrong talking to the store, typed so callers can react (and map to errno once).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("no such key")]
    NotFound,
    #[error(
        "the bucket does not exist (check the bucket name, the region, or --force-path-style)"
    )]
    NoSuchBucket,
    #[error("access denied: {0} (check the access keys and the bucket policy)")]
    AccessDenied(String),
    #[error("the request signature was rejected: {0} (check the secret key and the region)")]
    BadCredentials(String),
    #[error("precondition failed (the object changed)")]
    PreconditionFailed,
    #[error("requested range is not satisfiable")]
    InvalidRange,
    #[error("cannot reach the endpoint: {0}")]
    Unreachable(String),
    #[error("request timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("server error {status}: {message}")]
    Server { status: u16, message: String },
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    /// True when repeating the same request may succeed (5xx, throttling, network, timeout).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unreachable(_) | StoreError::Timeout(_) => true,
            StoreError::Server { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// User metadata, keys lowercased and without the `x-amz-meta-` prefix.
pub type UserMetadata = BTreeMap<String, String>;

/// The attributes of one object as HEAD reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub last_modified: SystemTime,
    pub etag: Option<String>,
    pub content_type: Option<String>,
    pub metadata: UserMetadata,
}

/// One object in a listing (LIST returns no user metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    pub last_modified: SystemTime,
    pub etag: Option<String>,
}

/// One page of a ListObjectsV2-style listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    /// Common prefixes, each ending with the delimiter.
    pub prefixes: Vec<String>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_token: Option<String>,
}

/// Options for a new object (PUT, CreateMultipartUpload, copy with metadata REPLACE).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub content_type: Option<String>,
    pub metadata: UserMetadata,
}

/// A part of a multipart upload once uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    pub number: u32,
    pub etag: String,
}

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// HEAD: the object's attributes, or `NotFound`.
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo>;

    /// GET of `range` (end exclusive). Returns fewer bytes only at the end of the object.
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes>;

    /// One page of keys under `prefix`, grouped by `delimiter` when given, at most `max_keys`.
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: usize,
    ) -> StoreResult<ListPage>;

    /// PUT a whole object; returns its ETag when the store gives one.
    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<Option<String>>;

    /// Server-side copy. `replace` = new metadata (REPLACE); `None` keeps the source's (COPY).
    async fn copy(&self, from: &str, to: &str, replace: Option<&PutOptions>) -> StoreResult<()>;

    /// DELETE; deleting a missing key succeeds, as on S3.
    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// CreateMultipartUpload; returns the upload id.
    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String>;

    /// UploadPart; returns the part's ETag.
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> StoreResult<String>;

    /// CompleteMultipartUpload with the parts in order.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> StoreResult<Option<String>>;

    /// AbortMultipartUpload.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()>;
}

/// Every key under `prefix`, following continuation tokens (no delimiter).
pub async fn list_all(store: &dyn ObjectStore, prefix: &str) -> StoreResult<Vec<ListedObject>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = store.list_page(prefix, None, token, 1000).await?;
        out.extend(page.objects);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}
