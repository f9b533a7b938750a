//! The object store layer: one `ObjectStore` trait that everything above talks to.
//!
//! The filesystem never builds an S3 request itself. It asks this trait for whole-object
//! operations (HEAD, ranged GET, LIST with a delimiter, PUT, copy, delete, multipart). Three
//! implementations exist: `s3` (rust-s3, with retries and typed errors), `local` (a directory,
//! for development and demos) and `memory` (unit tests). Keys are full bucket keys: the prefix a
//! mount is rooted at is applied by the filesystem layer, not here.

#[cfg(test)]
mod contract;
mod error;
#[cfg(test)]
pub mod failing;
pub mod fence;
pub mod listing;
pub mod local;
pub mod memory;
pub mod pages;
pub mod retry;
pub mod s3;
pub mod sse_c;

pub use error::{BadResponse, InvalidRequest, KeyRefusal, PartMismatch, SetupError, StoreError};
pub use pages::{PagedList, Pages};
pub use sse_c::SseCKey;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use crate::latency::LatencyHistogram;

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
    /// `x-amz-storage-class` (S3 leaves it out for STANDARD).
    pub storage_class: Option<String>,
    /// `x-amz-version-id` on a versioned bucket.
    pub version_id: Option<String>,
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

/// Options for a new object (PUT, CreateMultipartUpload, copies).
///
/// Content type, metadata and `cache_control` describe the object's content: a copy with the
/// COPY directive keeps the source's. `sse`, `acl` and `storage_class` are how the object is
/// stored: S3 does not carry them over on a copy, so every copy sends them (see
/// [`ObjectStore::copy_with_options`]). `None` = the bucket's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub content_type: Option<String>,
    pub metadata: UserMetadata,
    /// Server-side encryption with keys S3 manages (SSE-S3, SSE-KMS, DSSE-KMS). Encryption with
    /// a key of your own (SSE-C) is mount-wide instead: `s3::S3Settings::sse_c_key`.
    pub sse: Option<Sse>,
    /// A canned ACL, one of [`CANNED_ACLS`] (`x-amz-acl`).
    pub acl: Option<String>,
    /// `x-amz-storage-class` (`STANDARD`, `STANDARD_IA`, `INTELLIGENT_TIERING`, ...; other
    /// S3 servers have their own names, so any value is passed on).
    pub storage_class: Option<String>,
    /// `Cache-Control` of the object (returned on GET, used by HTTP caches in front of S3).
    pub cache_control: Option<String>,
    /// What the key must hold for a PUT to take effect (not stored with the object; a
    /// multipart upload takes its condition at completion instead).
    pub condition: Option<Condition>,
    /// A copy's condition on its source: copied only while the source is the object with
    /// this ETag (`x-amz-copy-source-if-match`, else `PreconditionFailed` and nothing is
    /// written), so the copy is the version the caller saw. Ignored by PUT and multipart
    /// uploads; not stored.
    pub copy_source_etag: Option<String>,
}

/// What a key must hold for a write to it to take effect (S3 conditional writes): a write
/// whose condition fails changes nothing and answers `PreconditionFailed`. Servers that
/// ignore the headers (Garage 2.5) write anyway: see `bucketfs check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// No object under the key (`If-None-Match: *`).
    Absent,
    /// The object with this ETag (`If-Match`); a missing object fails the condition too.
    Is(String),
}

impl Condition {
    /// True when an object with `etag` (`None`: no object) meets the condition.
    pub fn holds_for(&self, etag: Option<&str>) -> bool {
        match (self, etag) {
            (Condition::Absent, None) => true,
            (Condition::Is(want), Some(have)) => want.trim_matches('"') == have.trim_matches('"'),
            _ => false,
        }
    }
}

/// Server-side encryption with keys S3 manages (`x-amz-server-side-encryption`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3: `AES256`.
    Aes256,
    /// SSE-KMS: `aws:kms`, with the bucket's / account's default KMS key when `key_id` is `None`.
    Kms { key_id: Option<String> },
    /// DSSE-KMS (dual-layer): `aws:kms:dsse`.
    KmsDsse { key_id: Option<String> },
}

impl Sse {
    /// The value of `x-amz-server-side-encryption`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Sse::Aes256 => "AES256",
            Sse::Kms { .. } => "aws:kms",
            Sse::KmsDsse { .. } => "aws:kms:dsse",
        }
    }

    /// The KMS key (`x-amz-server-side-encryption-aws-kms-key-id`), if one is named.
    pub fn kms_key_id(&self) -> Option<&str> {
        match self {
            Sse::Aes256 => None,
            Sse::Kms { key_id } | Sse::KmsDsse { key_id } => key_id.as_deref(),
        }
    }
}

/// The canned ACLs S3 accepts in `x-amz-acl` for objects.
pub const CANNED_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
];

/// One multipart upload that was started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUploadInfo {
    pub key: String,
    pub upload_id: String,
    pub initiated: SystemTime,
}

/// What a store sent and received since it was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Requests by S3 operation name (`GetObject`, `PutObject`, `UploadPartCopy`, ...). Every
    /// attempt counts, retries included, when it is sent.
    pub requests: BTreeMap<&'static str, u64>,
    /// Requests that ended, by operation and outcome: `ok`, a failure's
    /// [`StoreError::outcome`], or for one given up unanswered `timeout` (its attempt ran
    /// out of time) or `cancelled` (a hedged twin answered first, or nobody waited any more).
    /// Kept by the stores that count through the retry layer (`s3`).
    pub outcomes: BTreeMap<(&'static str, &'static str), u64>,
    /// Time from sending to the answer, by operation, of the requests that got one (not of
    /// those that timed out or were cancelled).
    pub latency: BTreeMap<&'static str, LatencyHistogram>,
    /// Requests sent again after a transient failure, by operation (each also counts in
    /// `requests`).
    pub retries: BTreeMap<&'static str, u64>,
    /// Object data sent in request bodies (PUT, UploadPart; retries included). Copies send none.
    pub bytes_sent: u64,
    /// Object data received in GET response bodies.
    pub bytes_received: u64,
    /// Of `requests`, the hedged second (or third) attempts of slow reads and parts (see
    /// `retry`): load the store took so that a stall cost less time.
    pub hedged: u64,
}

impl StoreStats {
    /// Requests of one kind.
    pub fn count(&self, kind: &str) -> u64 {
        self.requests.get(kind).copied().unwrap_or(0)
    }

    /// Requests of all kinds.
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }
}

/// Thread-safe counters behind [`ObjectStore::stats`].
#[derive(Debug, Default)]
pub struct StatsCounter(Mutex<StoreStats>);

impl StatsCounter {
    /// One request of `kind` with `body_bytes` of object data in its body.
    pub fn request(&self, kind: &'static str, body_bytes: u64) {
        let mut stats = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *stats.requests.entry(kind).or_insert(0) += 1;
        stats.bytes_sent += body_bytes;
    }

    /// A request of `kind` ended with `outcome` (see `StoreStats::outcomes`); `answered`:
    /// how long its answer took, when it got one.
    pub fn ended(&self, kind: &'static str, outcome: &'static str, answered: Option<Duration>) {
        let mut stats = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *stats.outcomes.entry((kind, outcome)).or_insert(0) += 1;
        if let Some(took) = answered {
            stats.latency.entry(kind).or_default().record(took);
        }
    }

    /// A request of `kind` is sent again after a transient failure.
    pub fn retried(&self, kind: &'static str) {
        let mut stats = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *stats.retries.entry(kind).or_insert(0) += 1;
    }

    /// `n` bytes of object data received.
    pub fn received(&self, n: u64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bytes_received += n;
    }

    pub fn snapshot(&self) -> StoreStats {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
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
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        self.get_range_if_match(key, range, None).await
    }

    /// `get_range`, but only while the object's ETag is `etag` (`If-Match`): a changed object
    /// gives `PreconditionFailed`, never bytes of another version. `None` = no condition.
    async fn get_range_if_match(
        &self,
        key: &str,
        range: Range<u64>,
        etag: Option<&str>,
    ) -> StoreResult<Bytes>;

    /// One page of keys under `prefix`, grouped by `delimiter` when given, at most `max_keys`.
    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: usize,
    ) -> StoreResult<ListPage>;

    /// The first page of a flat listing (no delimiter) of the keys under `prefix` after
    /// `start_after` (ListObjectsV2's StartAfter), at most `max_keys`; `list_page` goes on
    /// with the page's token.
    async fn list_page_after(
        &self,
        prefix: &str,
        start_after: &str,
        max_keys: usize,
    ) -> StoreResult<ListPage>;

    /// The pages of `list`, read by a task of their own while the caller takes them (see
    /// `pages`). Stores whose answers can be read for their token before they are decoded
    /// ask for the next page sooner.
    fn list_pages(self: Arc<Self>, list: PagedList) -> Pages {
        pages::one_by_one(self, list)
    }

    /// PUT a whole object; returns its ETag when the store gives one. With
    /// `opts.condition`, only when the key holds what it says (else `PreconditionFailed`).
    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<Option<String>>;

    /// Server-side copy. `replace` = new metadata (REPLACE); `None` keeps the source's (COPY),
    /// with no object options (the copy gets the bucket's defaults, as on S3).
    async fn copy(&self, from: &str, to: &str, replace: Option<&PutOptions>) -> StoreResult<()> {
        let copied = match replace {
            Some(opts) => self.copy_with_options(from, to, opts, false).await,
            None => {
                self.copy_with_options(from, to, &PutOptions::default(), true)
                    .await
            }
        };
        copied.map(drop)
    }

    /// DELETE; deleting a missing key succeeds, as on S3.
    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// DELETE only while the object is `etag` (`If-Match`), else `PreconditionFailed` and
    /// the object stays; a missing key succeeds. The default checks with a HEAD first (a
    /// best effort, with a race window).
    async fn delete_if_match(&self, key: &str, etag: &str) -> StoreResult<()> {
        match self.head(key).await {
            Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
            Ok(info) if Condition::Is(etag.into()).holds_for(info.etag.as_deref()) => {
                self.delete(key).await
            }
            Ok(_) => Err(StoreError::PreconditionFailed),
        }
    }

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

    /// CompleteMultipartUpload with the parts in order; with `condition`, only when the key
    /// holds what it says (else `PreconditionFailed`, and the upload stays to be aborted).
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
        condition: Option<&Condition>,
    ) -> StoreResult<Option<String>>;

    /// AbortMultipartUpload.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()>;

    /// Server-side copy with object options. `keep_metadata`: COPY directive, the target keeps
    /// the source's content type, user metadata and Cache-Control, and only `opts.sse`,
    /// `opts.acl` and `opts.storage_class` apply; otherwise REPLACE with everything in `opts`.
    /// S3 does not carry SSE or ACL over on a copy: pass the mount's options here rather than
    /// calling `copy(from, to, None)`, or the copy gets the bucket's defaults.
    /// `opts.condition` is on the target, `opts.copy_source_etag` on the source; S3 answers
    /// the same `PreconditionFailed` to either.
    /// Returns the new object's ETag when the store gives one.
    async fn copy_with_options(
        &self,
        from: &str,
        to: &str,
        opts: &PutOptions,
        keep_metadata: bool,
    ) -> StoreResult<Option<String>>;

    /// UploadPartCopy: part `number` of the upload is `range` (end exclusive) of the object
    /// `source_key`, copied server-side. Returns the part's ETag. The range must not be empty
    /// and must lie within the source: S3 refuses a range past its end (`InvalidRange`, as do
    /// the memory and local stores), but Garage clamps it to the object like a GET range, so
    /// do not rely on the error. Part size rules are S3's: every part but the last >= 5 MiB.
    ///
    /// With `source_etag`, only while the source is that object
    /// (`x-amz-copy-source-if-match`; else `PreconditionFailed`): a part never mixes in bytes
    /// of a version another client wrote meanwhile.
    ///
    /// The default reads the range and uploads it as a part.
    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        source_key: &str,
        source_etag: Option<&str>,
        range: Range<u64>,
    ) -> StoreResult<String> {
        check_copy_range(&range)?;
        let data = self
            .get_range_if_match(source_key, range.clone(), source_etag)
            .await?;
        if (data.len() as u64) < range.end - range.start {
            return Err(StoreError::InvalidRange);
        }
        self.upload_part(key, upload_id, number, data).await
    }

    /// Every multipart upload in progress whose key starts with `prefix` (all pages), in key
    /// order.
    async fn list_multipart_uploads(&self, prefix: &str) -> StoreResult<Vec<MultipartUploadInfo>> {
        let _ = prefix;
        Err(StoreError::Unsupported("listing multipart uploads"))
    }

    /// Which conditional writes the store honours, found out with `probe_key` (see
    /// `probe_conditions`). A store that does not honour them (Garage 2.5 on PUT, moto 5.2.5
    /// on copies) checks each such condition itself from then on, with a HEAD just before
    /// the write: a best effort, with a race window.
    async fn probe_conditional_writes(&self, probe_key: &str) -> StoreResult<Honoured> {
        probe_conditions(self, probe_key).await
    }

    /// Requests made and bytes moved so far. Stores that do not count return zeros.
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }

    /// Returns once no write this store sent is still in flight (a hedged PUT's twin, see
    /// `fence`): at unmount, so that nothing this daemon sent lands after it has exited.
    async fn settle(&self) {}
}

/// Refuses (`PreconditionFailed`) a write to `key` whose `condition` does not hold for what
/// the key holds now, by a HEAD: for stores that cannot make the check part of the write.
/// Another client may still write between the HEAD and the write.
pub async fn check_condition_by_head<S: ObjectStore + ?Sized>(
    store: &S,
    key: &str,
    condition: &Condition,
) -> StoreResult<()> {
    let etag = match store.head(key).await {
        Ok(info) => info.etag,
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e),
    };
    if condition.holds_for(etag.as_deref()) {
        Ok(())
    } else {
        Err(StoreError::PreconditionFailed)
    }
}

/// Which conditional writes a server honours (`ObjectStore::probe_conditional_writes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Honoured {
    /// `If-None-Match` / `If-Match` on PutObject.
    pub puts: bool,
    /// `If-None-Match` on CopyObject's target and `x-amz-copy-source-if-match` on its source.
    pub copies: bool,
}

impl Honoured {
    pub const ALL: Honoured = Honoured {
        puts: true,
        copies: true,
    };
}

/// The probe of `ObjectStore::probe_conditional_writes`: `probe_key` is created with
/// `If-None-Match: *` and created again (refused where PUT conditions are honoured), copied
/// onto itself with `If-None-Match: *` and then conditional on a version it is not (both
/// refused where copy conditions are honoured), and deleted.
pub async fn probe_conditions<S: ObjectStore + ?Sized>(
    store: &S,
    probe_key: &str,
) -> StoreResult<Honoured> {
    let create = PutOptions {
        condition: Some(Condition::Absent),
        ..PutOptions::default()
    };
    let body = || Bytes::from_static(b"bucketfs: probe of conditional writes");
    store.put(probe_key, body(), &create).await?;
    let probes = async {
        let puts = refused(store.put(probe_key, body(), &create).await)?;
        let onto_taken = store
            .copy_with_options(probe_key, probe_key, &create, false)
            .await;
        let of_other_version = PutOptions {
            copy_source_etag: Some("bucketfs-probe-not-this-version".into()),
            ..PutOptions::default()
        };
        let from_other = store
            .copy_with_options(probe_key, probe_key, &of_other_version, false)
            .await;
        let copies = refused(onto_taken)? && refused(from_other)?;
        Ok(Honoured { puts, copies })
    };
    let honoured = probes.await;
    let deleted = store.delete(probe_key).await;
    honoured.and_then(|h| deleted.map(|_| h))
}

/// A probe write was refused by its condition (true) or done anyway (false).
fn refused<T>(written: StoreResult<T>) -> StoreResult<bool> {
    match written {
        Err(StoreError::PreconditionFailed) => Ok(true),
        Ok(_) => Ok(false),
        Err(e) => Err(e),
    }
}

/// An UploadPartCopy range must hold at least one byte.
pub fn check_copy_range(range: &Range<u64>) -> StoreResult<()> {
    if range.end <= range.start {
        return Err(StoreError::InvalidRequest(InvalidRequest::EmptyCopyRange {
            start: range.start,
            end: range.end,
        }));
    }
    Ok(())
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
