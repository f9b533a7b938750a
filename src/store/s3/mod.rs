//! The S3 implementation of `ObjectStore`, over one rust-s3 `Bucket`.
//!
//! What this layer adds on top of rust-s3 0.38:
//! - every request goes through `retry::with_retries` (per-attempt timeout, backoff with
//!   jitter); rust-s3's own global retries are switched off and its per-bucket timeout removed
//!   so ours is the one that governs;
//! - errors are typed: rust-s3 (with `fail-on-err`) reports every non-2xx as
//!   `HttpFailWithBody(status, xml)`, which `map_s3_error` turns into `StoreError` using the
//!   status and the S3 error `<Code>`;
//! - HEAD, GET, PUT, CreateMultipartUpload, UploadPart, copies, UploadPartCopy and
//!   CompleteMultipartUpload (its document carries part checksums: `checksums`) are built
//!   one level lower, with `ReqwestRequest` + `Command`, and signed again by `send_signed`:
//!   rust-s3 0.38 orders the canonical headers wrongly when one header name is a prefix of
//!   another (`x-amz-copy-source` / `-range`, the SSE-C `-key` / `-key-md5`, SSE-KMS), and
//!   S3 servers then refuse the signature. LIST, DELETE, Abort and
//!   ListMultipartUploads carry no such headers and are signed by rust-s3 as they are (the
//!   two listings from a `Bucket` clone whose extra query asks for URL-encoded keys:
//!   `listing_encoding`); ListObjectsV2 answers are decoded here (`pages`), so the next
//!   page can be asked for before a page is decoded;
//! - the few places where rust-s3's convenience methods are wrong for us:
//!   - copy: rust-s3 does not URL-encode the copy source and cannot send metadata; we send
//!     `Command::CopyObject` with an encoded source from a `Bucket` clone whose extra headers
//!     carry `x-amz-metadata-directive` (and content type / `x-amz-meta-*` for REPLACE);
//!   - UploadPart: `put_multipart_chunk` aborts the whole upload when one part fails; we send
//!     the same `Command::PutObject { multipart: Some(..) }` ourselves so a part can be retried
//!     alone;
//!   - user metadata on PUT and CreateMultipartUpload: rust-s3 has no parameter for it there,
//!     so it travels as extra headers of a `Bucket` clone (clones share the connection pool);
//!     so do the object options (SSE, ACL, storage class, Cache-Control) and the SSE-C key;
//!   - UploadPartCopy: rust-s3 has none; it is `Command::CopyObject` (which sends
//!     `x-amz-copy-source`) from a `Bucket` clone whose extra query carries `partNumber` and
//!     `uploadId` and whose extra headers carry `x-amz-copy-source-range`: the same signed
//!     request path as CopyObject, answered with `<CopyPartResult><ETag>`.
//!
//! Object options go only on requests that create objects (PutObject, CreateMultipartUpload,
//! CopyObject): S3 rejects SSE-S3/KMS headers on GET and HEAD. The SSE-C key (mount-wide,
//! `S3Settings::sse_c_key`) goes on every request that writes or reads object data (PUT,
//! CreateMultipartUpload, UploadPart, GET, HEAD) and, for copies, twice: for the target and, as
//! `x-amz-copy-source-server-side-encryption-customer-*`, for the source. Reads of objects that
//! were not written with SSE-C fail on S3 when a key is sent ("not applicable"): such a read is
//! repeated without the key, so a mount with a key still reads the bucket's plain objects (at
//! the price of a second request each time). A read of an SSE-C object without the key or with
//! another key becomes `StoreError::SseCustomerKey`; HEAD answers carry no error text, so a
//! failed HEAD asks a 1-byte GET for the reason.
//!
//! Every request (every attempt) is counted by operation name (by the retry layer: when sent,
//! and when it ends, by outcome, with its latency), with the object bytes sent and received:
//! `ObjectStore::stats`.
//!
//! Keys are passed to rust-s3 as `/` + key: rust-s3 strips one leading `/`, so keys that
//! themselves start with `/` survive.
//!
//! # Layout
//!
//! This file holds `S3Store`, its settings and constructor, and the `ObjectStore` requests.
//! The helpers those requests use live beside it, one concern each:
//! - `signing`: sending a request signed again, correctly (SigV4);
//! - `headers`: the extra headers of writes and copies (metadata, object options, SSE-C);
//! - `errors`: S3 errors to `StoreError` (`map_s3_error`, `map_http_error`);
//! - `sse_c_errors`: telling SSE-C problems apart in 400/403 answers;
//! - `convert`: S3 answers to the store's types (times, `ObjectInfo`, ranged bodies);
//! - `pages`: ListObjectsV2 requests, and their answers read for the next page's token before
//!   they are decoded (`ObjectStore::list_pages`);
//! - `listing_encoding`: listings with URL-encoded keys, decoded (XML text cannot carry
//!   every key: a `\r` would come back as `\n`);
//! - `region`: the bucket's region, asked of the server when none is configured
//!   (`S3Store::locate`).
//!
//! `tests_wire` runs the store against a canned-response HTTP server (`tests_region` too, for
//! `locate`); `tests_live` against a real S3 server (ignored by default).

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use s3::command::{Command, Multipart};
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::request::ResponseData;
use s3::serde_types::{CompleteMultipartUploadData, HeadObjectResult};
use s3::{Bucket, Region};

use super::fence::WriteFences;
use super::pages::{self as store_pages, PagedList, Pages};
use super::retry::{with_retries, with_retries_if, Call, Latency, RetryPolicy, SMALL_BODY};
use super::{
    check_copy_range, BadResponse, CompletedPart, Condition, Honoured, ListPage,
    MultipartUploadInfo, ObjectInfo, ObjectStore, PutOptions, SetupError, SseCKey, StatsCounter,
    StoreError, StoreResult, StoreStats, UserMetadata,
};
use convert::{etag_of, head_result, object_info, parse_iso_time, range_body, same_metadata};
use errors::{check_ok_body, describe_s3_error, is_connect_error, shorten, xml_tag};
use headers::{
    check_header, condition_headers, copy_headers, sse_c_headers, upload_part_copy_headers,
    write_headers, SSE_C_PREFIX,
};
use listing_encoding::{Names, ENCODING_TYPE};
use signing::{object_path, send_command, send_command_with_body, Integrity};
use sse_c_errors::{
    map_sse_c_write_error, map_sse_c_write_http, read_failure, refusal, split_client_error,
    ClientError, ReadFailure,
};

mod checksums;
mod convert;
mod errors;
mod headers;
mod listing_encoding;
mod pages;
mod region;
mod signing;
mod sse_c_errors;
#[cfg(test)]
pub(in crate::store) mod tests_live;
#[cfg(test)]
mod tests_region;
#[cfg(test)]
mod tests_wire;

pub use errors::{map_http_error, map_s3_error};
pub use listing_encoding::DecodeError;
pub use region::{BucketRegion, Clue, HowKnown, NotNamed, DEFAULT_REGION};

/// Content type of objects written without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Where the bucket is and how to sign requests to it.
#[derive(Clone, Default)]
pub struct S3Settings {
    pub bucket: String,
    /// The region requests are signed for; `None`: not configured, asked of the server
    /// (`S3Store::locate`, see `region`), us-east-1 until then.
    pub region: Option<String>,
    /// Custom endpoint URL (`http://127.0.0.1:3900`, `https://minio.example`); `None` = AWS.
    pub endpoint: Option<String>,
    /// Path-style URLs (`endpoint/bucket/key`) instead of virtual-host style.
    pub path_style: bool,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub session_token: Option<String>,
    /// Profile in `~/.aws/credentials` for the credential chain (`AWS_PROFILE` is not read
    /// here: the caller passes it).
    pub profile: Option<String>,
    pub retry: RetryPolicy,
    /// Customer-provided key (SSE-C) for every object written and read through this mount.
    pub sse_c_key: Option<SseCKey>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn redacted(v: &Option<String>) -> &'static str {
            match v {
                Some(_) => "Some(<redacted>)",
                None => "None",
            }
        }
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &format_args!("{}", redacted(&self.secret_key)),
            )
            .field(
                "session_token",
                &format_args!("{}", redacted(&self.session_token)),
            )
            .field("profile", &self.profile)
            .field("retry", &self.retry)
            .field("sse_c_key", &self.sse_c_key)
            .finish()
    }
}

/// An `ObjectStore` backed by an S3 (or S3-compatible) bucket.
pub struct S3Store {
    /// For requests that carry no object data: DELETE, Abort.
    bucket: Bucket,
    /// `bucket` asking for URL-encoded keys: ListObjectsV2, ListMultipartUploads.
    list_bucket: Bucket,
    /// `bucket` plus the SSE-C headers when a key is set (else the same): GET, HEAD,
    /// UploadPart, CompleteMultipartUpload.
    data_bucket: Bucket,
    sse_c: Option<SseCKey>,
    retry: RetryPolicy,
    /// The usual latency of the requests that may be hedged (see `retry`).
    latency: Latencies,
    stats: StatsCounter,
    part_checksums: checksums::PartChecksums,
    /// The server ignores conditional writes (see `probe_conditional_writes`): each
    /// condition is checked here with a HEAD just before the write.
    check_conditions: AtomicBool,
    /// The same for the conditions of a copy (its target's and its source's).
    check_copy_conditions: AtomicBool,
    /// Keys with PUT attempts still in flight (hedged twins): every write or delete of a key
    /// waits for them first (see `fence`).
    fences: WriteFences,
    /// The endpoint as configured (`None`: AWS), to address the region `locate` finds.
    endpoint: Option<String>,
    /// The region as configured (`None`: `locate` asks the server).
    configured_region: Option<String>,
}

/// One latency record per kind of request that may be hedged: reads (they change nothing),
/// parts (sending one twice stores the same part; a late twin after the completion is
/// refused) and small PUTs, whose attempts hold a write fence on their key until they end
/// (`fence`): a twin left behind may be applied after the caller has moved on, and without
/// the fence a PUT landed after the DELETE that followed it and brought a deleted file back
/// (`git gc` on the mount failed its repack). No other write is hedged.
#[derive(Debug)]
struct Latencies {
    head: Latency,
    /// Pages of listings, and listings of one key (is there anything under a prefix?).
    list_page: Latency,
    list_probe: Latency,
    /// Ranges of less than `SMALL_BODY`, and the others.
    small_get: Latency,
    get: Latency,
    part: Latency,
    small_put: Latency,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            head: Latency::small(),
            list_page: Latency::page(),
            list_probe: Latency::small(),
            small_get: Latency::small(),
            get: Latency::download(),
            part: Latency::upload(),
            small_put: Latency::small(),
        }
    }
}

impl fmt::Debug for S3Store {
    // Manual: `Bucket`'s Debug would print the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket.name)
            .field("region", &self.bucket.region.to_string())
            .field("url", &self.bucket.url())
            .field("retry", &self.retry)
            .field("sse_c", &self.sse_c)
            .finish()
    }
}

impl S3Store {
    /// The error of a conditional write. A missing object fails `If-Match` with NoSuchKey:
    /// a failed condition too. A `PreconditionFailed` after a retried PUT may be the PUT's own
    /// earlier attempt, which landed before its answer was lost: when the object holds what
    /// was `retried` — its ETag the MD5 of the body, and the same user metadata — it is, and
    /// the write succeeded. The same bytes alone say nothing: two hosts reserving one name
    /// exclusively both send an empty body, and both took the name as theirs.
    async fn condition_failed(
        &self,
        key: &str,
        condition: &Condition,
        e: StoreError,
        retried: Option<(&Bytes, &UserMetadata)>,
    ) -> StoreResult<Option<String>> {
        match e {
            StoreError::NotFound if matches!(condition, Condition::Is(_)) => {
                Err(StoreError::PreconditionFailed)
            }
            StoreError::PreconditionFailed => {
                if let Some((body, metadata)) = retried {
                    let ours = format!("{:x}", md5::compute(body));
                    // A twin still in flight (a hedged attempt, or one that ran out of time)
                    // may be what refused this one, or be about to: read the object once
                    // every attempt has ended.
                    self.fences.wait(key).await;
                    if let Ok(info) = self.head(key).await {
                        if info.etag.as_deref().map(|t| t.trim_matches('"')) == Some(&*ours)
                            && same_metadata(&info.metadata, metadata)
                        {
                            return Ok(info.etag);
                        }
                    }
                }
                Err(StoreError::PreconditionFailed)
            }
            e => Err(e),
        }
    }

    /// Builds the store: region / endpoint, credentials, one `Bucket`.
    ///
    /// **Blocking**: when no static keys are given, the AWS credential chain may read files and
    /// make HTTP requests (STS web identity, container or instance metadata) with a blocking
    /// client. Call this before starting the tokio runtime or inside `spawn_blocking`.
    /// It does not read `AWS_PROFILE` itself: pass the profile in `settings.profile`. The
    /// chain's order is: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, then the profile in
    /// `~/.aws/credentials` (`AWS_SHARED_CREDENTIALS_FILE`), then STS / container / instance
    /// metadata. No network request is made to S3 here.
    ///
    /// Also sets rust-s3's process-wide retry count to 0 (our retry layer retries).
    pub fn new(settings: &S3Settings) -> StoreResult<S3Store> {
        if settings.bucket.is_empty() {
            return Err(StoreError::Setup(SetupError::NoBucket));
        }
        let region = region_of(
            settings.endpoint.as_deref(),
            settings.region.as_deref().unwrap_or(DEFAULT_REGION),
        )?;
        let credentials = load_credentials(settings)?;
        let mut bucket = *Bucket::new(&settings.bucket, region, credentials)
            .map_err(|e| StoreError::Setup(SetupError::Client(describe_s3_error(&e))))?;
        if settings.path_style {
            bucket.set_path_style();
        }
        // Our `with_retries` bounds every attempt; a shorter rust-s3 timeout would cut in first.
        bucket.set_request_timeout(None);
        s3::set_retries(0);
        let mut data_bucket = bucket.clone();
        if let Some(key) = &settings.sse_c_key {
            for (name, value) in sse_c_headers(key, SSE_C_PREFIX) {
                data_bucket.add_header(&name, &value);
            }
        }
        let encoded = [ENCODING_TYPE].map(|(k, v)| (k.to_string(), v.to_string()));
        let list_bucket = bucket
            .with_extra_query(encoded.into_iter().collect())
            .map_err(|e| StoreError::Setup(SetupError::Client(describe_s3_error(&e))))?;
        Ok(S3Store {
            bucket,
            list_bucket,
            data_bucket,
            sse_c: settings.sse_c_key.clone(),
            retry: settings.retry,
            latency: Latencies::default(),
            stats: StatsCounter::default(),
            part_checksums: Default::default(),
            check_conditions: AtomicBool::new(false),
            check_copy_conditions: AtomicBool::new(false),
            fences: WriteFences::default(),
            endpoint: settings.endpoint.clone(),
            configured_region: settings.region.clone(),
        })
    }

    /// On a server that ignores conditional writes: refuses a write whose condition does
    /// not hold for what `key` holds now (a HEAD, so another client may still write between
    /// it and the write).
    async fn check_condition(&self, key: &str, condition: Option<&Condition>) -> StoreResult<()> {
        match condition {
            Some(c) if self.check_conditions.load(Ordering::Relaxed) => {
                super::check_condition_by_head(self, key, c).await
            }
            _ => Ok(()),
        }
    }

    /// On a server that ignores the conditions of a copy: refuses one whose target or
    /// source does not hold what `opts` says (HEADs, with the same race window).
    async fn check_copy_conditions(
        &self,
        from: &str,
        to: &str,
        opts: &PutOptions,
    ) -> StoreResult<()> {
        if !self.check_copy_conditions.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(c) = &opts.condition {
            super::check_condition_by_head(self, to, c).await?;
        }
        if let Some(etag) = &opts.copy_source_etag {
            super::check_condition_by_head(self, from, &Condition::Is(etag.clone())).await?;
        }
        Ok(())
    }

    /// The bucket name.
    pub fn bucket_name(&self) -> &str {
        &self.bucket.name
    }

    /// The retry policy every request runs under.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// A clone of the bucket that sends `headers` with every request (clones share the
    /// connection pool). Header names and values are checked first: rust-s3 panics on bad ones.
    fn bucket_with_headers(&self, headers: &[(String, String)]) -> StoreResult<Bucket> {
        let mut bucket = self.bucket.clone();
        for (name, value) in headers {
            check_header(name, value)?;
            bucket.add_header(name, value);
        }
        Ok(bucket)
    }

    /// `/bucket/key` for `x-amz-copy-source`, the key URL-encoded (rust-s3 does not).
    fn copy_source(&self, key: &str) -> String {
        format!(
            "/{}/{}",
            self.bucket.name,
            s3::signing::uri_encode(key, false)
        )
    }

    /// The bucket for reading `key`'s data or metadata: with the SSE-C key unless `with_key`
    /// is false (the retry after a "not applicable" answer).
    fn read_bucket(&self, with_key: bool) -> &Bucket {
        if with_key {
            &self.data_bucket
        } else {
            &self.bucket
        }
    }

    /// One HEAD (retried on transient errors); 400/403 answers come back raw.
    async fn head_raw(
        &self,
        key: &str,
        with_key: bool,
    ) -> StoreResult<Result<HeadObjectResult, ClientError>> {
        let path = &object_path(key);
        let bucket = self.read_bucket(with_key);
        with_retries(
            &self.retry,
            Call::small(&format!("HeadObject {key}"))
                .hedged(&self.latency.head)
                .counted(&self.stats, "HeadObject", 0)
                .refusals(refusal),
            move || async move {
                let data = send_command(bucket, path, Command::HeadObject, false).await;
                split_client_error(data.map(|data| head_result(&data.headers())))
            },
        )
        .await
    }

    /// One ranged GET (retried on transient errors); 400/403 answers come back raw. `None`:
    /// the object is empty and the range starts at 0.
    async fn get_raw(
        &self,
        key: &str,
        start: u64,
        end: u64,
        with_key: bool,
        if_match: Option<&str>,
    ) -> StoreResult<Result<Option<ResponseData>, ClientError>> {
        let path = &object_path(key);
        let pinned;
        let bucket = match if_match {
            Some(etag) => {
                // A clone shares the connection pool; only its extra headers differ.
                check_header("If-Match", etag)?;
                let mut b = self.read_bucket(with_key).clone();
                b.add_header("If-Match", etag);
                pinned = b;
                &pinned
            }
            None => self.read_bucket(with_key),
        };
        // A small range (a symlink's target, a small file) is hedged as a HEAD would be, not
        // after the second a data transfer may take (a stalled readlink held rsync 1 s).
        let bytes = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX);
        let latency = match bytes < SMALL_BODY {
            true => &self.latency.small_get,
            false => &self.latency.get,
        };
        with_retries(
            &self.retry,
            Call::sized(&format!("GetObject {key} {start}..{end}"), bytes)
                .hedged(latency)
                .counted(&self.stats, "GetObject", 0)
                .refusals(refusal),
            move || async move {
                let command = Command::GetObjectRange {
                    start,
                    end: Some(end - 1),
                };
                match send_command(bucket, path, command, false).await {
                    Ok(data) => {
                        self.stats.received(data.as_slice().len() as u64);
                        Ok(Ok(Some(data)))
                    }
                    // `bytes=0-N` on an empty object: S3 answers 416; it is just empty.
                    Err(S3Error::HttpFailWithBody(416, _)) if start == 0 => Ok(Ok(None)),
                    Err(e) => split_client_error(Err(e)),
                }
            },
        )
        .await
    }

    /// A ranged GET with the SSE-C handling of the module documentation.
    async fn get_checked(
        &self,
        key: &str,
        start: u64,
        end: u64,
        if_match: Option<&str>,
    ) -> StoreResult<Option<ResponseData>> {
        let with_key = self.sse_c.is_some();
        let (status, body) = match self.get_raw(key, start, end, with_key, if_match).await? {
            Ok(data) => return Ok(data),
            Err(failure) => failure,
        };
        match read_failure(status, &body, key, with_key) {
            ReadFailure::PlainObject => match self.get_raw(key, start, end, false, if_match).await?
            {
                Ok(data) => Ok(data),
                Err((status, body)) => Err(read_failure(status, &body, key, false).into_error()),
            },
            failure => Err(failure.into_error()),
        }
    }

    /// The reason a HEAD failed with `status` and no body: asks a 1-byte GET (error answers
    /// to GET carry a body). `None` when the GET does not fail with a reason.
    async fn head_failure_reason(&self, key: &str) -> Option<StoreError> {
        match self.get_checked(key, 0, 1, None).await {
            Ok(_) | Err(StoreError::InvalidRange) => None,
            Err(e) => Some(e),
        }
    }
}

/// Region `name` at `endpoint`: `Region::Custom` when an endpoint is given, else the AWS
/// region by name.
fn region_of(endpoint: Option<&str>, name: &str) -> StoreResult<Region> {
    if let Some(endpoint) = endpoint {
        let endpoint = endpoint.trim().trim_end_matches('/');
        if endpoint.is_empty() {
            return Err(StoreError::Setup(SetupError::EmptyEndpoint));
        }
        return Ok(Region::Custom {
            region: name.to_string(),
            endpoint: endpoint.to_string(),
        });
    }
    let name = name.trim();
    if name.is_empty() {
        return Err(StoreError::Setup(SetupError::NoRegion));
    }
    match name.parse::<Region>() {
        // A region rust-s3 does not know (a new AWS region): use the standard AWS endpoint
        // rather than rust-s3's fallback, which would use the name itself as the host.
        Ok(Region::Custom { .. }) | Err(_) => Ok(Region::Custom {
            region: name.to_string(),
            endpoint: format!("https://s3.{name}.amazonaws.com"),
        }),
        Ok(region) => Ok(region),
    }
}

/// Static keys when both are given, else the AWS credential chain (blocking).
fn load_credentials(settings: &S3Settings) -> StoreResult<Credentials> {
    let token = settings.session_token.as_deref();
    match (&settings.access_key, &settings.secret_key) {
        (Some(access), Some(secret)) => {
            Credentials::new(Some(access), Some(secret), None, token, None)
                .map_err(|e| StoreError::Setup(SetupError::CredentialsRefused(e.to_string())))
        }
        (Some(_), None) | (None, Some(_)) => Err(StoreError::Setup(SetupError::HalfCredentials)),
        (None, None) => {
            let found = Credentials::new(None, None, None, None, settings.profile.as_deref())
                .ok()
                .filter(|c| c.access_key.is_some() && c.secret_key.is_some());
            found.ok_or_else(|| {
                StoreError::Setup(SetupError::NoCredentials {
                    profile: settings.profile.clone(),
                })
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ObjectStore
// ---------------------------------------------------------------------------------------------

#[async_trait]
impl ObjectStore for S3Store {
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        let with_key = self.sse_c.is_some();
        let (status, body) = match self.head_raw(key, with_key).await? {
            Ok(head) => return Ok(object_info(head)),
            Err(failure) => failure,
        };
        if !body.trim().is_empty() {
            return match read_failure(status, &body, key, with_key) {
                ReadFailure::PlainObject => match self.head_raw(key, false).await? {
                    Ok(head) => Ok(object_info(head)),
                    Err((status, body)) => {
                        Err(read_failure(status, &body, key, false).into_error())
                    }
                },
                failure => Err(failure.into_error()),
            };
        }
        // HEAD answers have no body. With the key, a 400 is most often a plain object (S3:
        // "not applicable"): try without it first.
        if with_key && status == 400 {
            if let Ok(head) = self.head_raw(key, false).await? {
                return Ok(object_info(head));
            }
        }
        // A 400 (or, with a key, a 403) may be an SSE-C problem: a GET says which. A 403
        // without a key is left alone: S3 answers 403 for missing keys when the ListBucket
        // permission is missing, and a lookup of a missing name must stay one request.
        if status == 400 || with_key {
            if let Some(e) = self.head_failure_reason(key).await {
                return Err(e);
            }
        }
        Err(map_http_error(status, &body))
    }

    async fn get_range_if_match(
        &self,
        key: &str,
        range: Range<u64>,
        etag: Option<&str>,
    ) -> StoreResult<Bytes> {
        let (start, end) = (range.start, range.end);
        if end <= start {
            return Ok(Bytes::new());
        }
        match self.get_checked(key, start, end, etag).await? {
            None => Ok(Bytes::new()),
            Some(data) => {
                let status = data.status_code();
                range_body(status, data.into_bytes(), start, end)
            }
        }
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: usize,
    ) -> StoreResult<ListPage> {
        let answer = self
            .list_answer(prefix, delimiter, token, None, max_keys)
            .await?;
        pages::decode_page(&answer)
    }

    async fn list_page_after(
        &self,
        prefix: &str,
        start_after: &str,
        max_keys: usize,
    ) -> StoreResult<ListPage> {
        let answer = self
            .list_answer(prefix, None, None, Some(start_after), max_keys)
            .await?;
        pages::decode_page(&answer)
    }

    fn list_pages(self: Arc<Self>, list: PagedList) -> Pages {
        store_pages::decoded_behind(self, list)
    }

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<Option<String>> {
        let path = object_path(key);
        let content_type = opts
            .content_type
            .clone()
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string());
        check_header("content-type", &content_type)?;
        self.fences.wait(key).await;
        self.check_condition(key, opts.condition.as_ref()).await?;
        let mut headers = write_headers(opts, self.sse_c.as_ref())?;
        headers.extend(condition_headers(opts.condition.as_ref()));
        let bucket = self.bucket_with_headers(&headers)?;
        let sse_c = self.sse_c.is_some();
        let crc = checksums::crc32(&body);
        let attempts = Arc::new(AtomicU32::new(0));
        let sent = body.clone();
        let what = format!("PutObject {key}");
        let call =
            Call::sized(&what, sent.len()).counted(&self.stats, "PutObject", sent.len() as u64);
        let bound = self.retry.attempt_timeout(&call);
        // A small PUT is hedged like a read: each attempt is a task of its own that runs to
        // its end holding a fence on the key, so the next write of the key waits for a
        // stalled twin (see `fence`). A big one is not (its twin would send it all again).
        let call = match sent.len() < SMALL_BODY {
            true => call.hedged(&self.latency.small_put),
            false => call,
        };
        let data = with_retries(&self.retry, call, || {
            let fence = self.fences.enter(key);
            let (bucket, path, content_type) = (bucket.clone(), path.clone(), content_type.clone());
            let (body, crc, attempts) = (body.clone(), crc.clone(), attempts.clone());
            let attempt = tokio::spawn(async move {
                let _fence = fence; // until this attempt has ended, whoever waits for it
                attempts.fetch_add(1, Ordering::Relaxed);
                let command = Command::PutObject {
                    content: &[], // the body goes separately, see send_command_with_body
                    content_type: &content_type,
                    custom_headers: None,
                    multipart: None,
                };
                let integrity = Integrity::Crc32(crc);
                let send = send_command_with_body(&bucket, &path, command, true, body, integrity);
                let result = match bound.is_zero() {
                    true => send.await,
                    false => match tokio::time::timeout(bound, send).await {
                        Ok(result) => result,
                        Err(_) => return Err(StoreError::Timeout(bound)),
                    },
                };
                result.map_err(|e| map_sse_c_write_error(e, sse_c))
            });
            async move {
                match attempt.await {
                    Ok(result) => result,
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => Err(StoreError::Unreachable(
                        "the runtime is shutting down".into(),
                    )),
                }
            }
        })
        .await;
        match (data, &opts.condition) {
            (Ok(data), _) => Ok(etag_of(&data)),
            (Err(e), Some(condition)) => {
                let retried = attempts.load(Ordering::Relaxed) > 1;
                let sent = retried.then_some((&sent, &opts.metadata));
                self.condition_failed(key, condition, e, sent).await
            }
            (Err(e), None) => Err(e),
        }
    }

    async fn copy_with_options(
        &self,
        from: &str,
        to: &str,
        opts: &PutOptions,
        keep_metadata: bool,
    ) -> StoreResult<Option<String>> {
        self.fences.wait(to).await;
        self.check_copy_conditions(from, to, opts).await?;
        let source = &self.copy_source(from);
        let path = &object_path(to);
        let sse_c = self.sse_c.as_ref();
        // The source is read with the key too, unless it turns out to be a plain object.
        let mut source_key = sse_c;
        loop {
            let headers = copy_headers(opts, keep_metadata, sse_c, source_key)?;
            let bucket = &self.bucket_with_headers(&headers)?;
            let result = with_retries(
                &self.retry,
                Call::data(&format!("CopyObject {from} -> {to}"))
                    .counted(&self.stats, "CopyObject", 0)
                    .refusals(refusal),
                move || async move {
                    let command = Command::CopyObject { from: source };
                    let answer = send_command(bucket, path, command, false).await;
                    let data = match split_client_error(answer)? {
                        Ok(data) => data,
                        Err(failure) => return Ok(Err(failure)),
                    };
                    check_ok_body(&data)?;
                    Ok(Ok(xml_tag(
                        &String::from_utf8_lossy(data.as_slice()),
                        "ETag",
                    )))
                },
            )
            .await?;
            let (status, body) = match result {
                Ok(etag) => return Ok(etag),
                Err(failure) => failure,
            };
            match read_failure(status, &body, from, source_key.is_some()) {
                // Only when the key was sent: the next round goes without it.
                ReadFailure::PlainObject => source_key = None,
                // The target side: the bucket may refuse SSE-C writes.
                ReadFailure::Error(StoreError::AccessDenied(_)) if sse_c.is_some() => {
                    return Err(map_sse_c_write_http(status, &body))
                }
                ReadFailure::Error(e) => return Err(e),
            }
        }
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.fences.wait(key).await;
        let path = &object_path(key);
        let result = with_retries(
            &self.retry,
            Call::small(&format!("DeleteObject {key}")).counted(&self.stats, "DeleteObject", 0),
            move || async move { self.bucket.delete_object(path).await.map_err(map_s3_error) },
        )
        .await;
        match result {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete_if_match(&self, key: &str, etag: &str) -> StoreResult<()> {
        self.fences.wait(key).await;
        let condition = Condition::Is(etag.to_string());
        self.check_condition(key, Some(&condition)).await?;
        let path = &object_path(key);
        let bucket = &self.bucket_with_headers(&condition_headers(Some(&condition)))?;
        let result = with_retries(
            &self.retry,
            Call::small(&format!("DeleteObject {key} if {etag}")).counted(
                &self.stats,
                "DeleteObject",
                0,
            ),
            move || async move { bucket.delete_object(path).await.map_err(map_s3_error) },
        )
        .await;
        match result {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        let path = &object_path(key);
        let content_type = opts.content_type.as_deref().unwrap_or(DEFAULT_CONTENT_TYPE);
        check_header("content-type", content_type)?;
        let mut headers = write_headers(opts, self.sse_c.as_ref())?;
        let (name, algorithm) = checksums::ALGORITHM_HEADER;
        headers.push((name.to_string(), algorithm.to_string()));
        let bucket = &self.bucket_with_headers(&headers)?;
        let sse_c = self.sse_c.is_some();
        // Not idempotent (each call creates an upload): retry only when the request never
        // left (connect failed); a timeout or a dropped connection may have created one.
        let never_sent = &AtomicBool::new(false);
        with_retries_if(
            &self.retry,
            Call::small(&format!("CreateMultipartUpload {key}")).counted(
                &self.stats,
                "CreateMultipartUpload",
                0,
            ),
            |_| never_sent.load(Ordering::SeqCst),
            move || async move {
                never_sent.store(false, Ordering::SeqCst);
                let command = Command::InitiateMultipartUpload { content_type };
                match send_command(bucket, path, command, false).await {
                    Ok(data) => {
                        check_ok_body(&data)?;
                        let body = String::from_utf8_lossy(data.as_slice());
                        xml_tag(&body, "UploadId").ok_or_else(|| {
                            StoreError::BadResponse(BadResponse::Missing {
                                request: "CreateMultipartUpload".into(),
                                missing: "an UploadId",
                                body: Some(shorten(&body)),
                            })
                        })
                    }
                    Err(e) => {
                        never_sent.store(is_connect_error(&e), Ordering::SeqCst);
                        Err(map_sse_c_write_error(e, sse_c))
                    }
                }
            },
        )
        .await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> StoreResult<String> {
        let path = &object_path(key);
        // rust-s3 puts the upload id into the query string as is.
        let upload_id = &s3::signing::uri_encode(upload_id, true);
        // With SSE-C, every part carries the key too.
        let bucket = &self.data_bucket;
        let sse_c = self.sse_c.is_some();
        let crc = &checksums::crc32(&body);
        let etag = with_retries(
            &self.retry,
            Call::data(&format!("UploadPart {key} #{number}"))
                .hedged(&self.latency.part)
                .counted(&self.stats, "UploadPart", body.len() as u64),
            move || {
                let body = body.clone();
                async move {
                    let command = Command::PutObject {
                        content: &[], // the body goes separately, see send_command_with_body
                        content_type: DEFAULT_CONTENT_TYPE,
                        custom_headers: None,
                        multipart: Some(Multipart::new(number, upload_id)),
                    };
                    let integrity = Integrity::Crc32(crc.clone());
                    let data = send_command_with_body(
                        bucket,
                        path,
                        command,
                        true,
                        body.clone(),
                        integrity,
                    )
                    .await
                    .map_err(|e| map_sse_c_write_error(e, sse_c))?;
                    etag_of(&data).ok_or_else(|| {
                        StoreError::BadResponse(BadResponse::Missing {
                            request: format!("UploadPart {number}"),
                            missing: "an ETag",
                            body: None,
                        })
                    })
                }
            },
        )
        .await?;
        self.part_checksums
            .record(upload_id, number, Some(crc.clone()));
        Ok(etag)
    }

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
        let source = &self.copy_source(source_key);
        let path = &object_path(key);
        let sse_c = self.sse_c.as_ref();
        let mut source_sse_c = sse_c;
        loop {
            let mut bucket = self.bucket_with_headers(&upload_part_copy_headers(
                &range,
                source_etag,
                sse_c,
                source_sse_c,
            ))?;
            // Added to the URL with proper encoding (and signed) by rust-s3.
            bucket
                .extra_query
                .insert("partNumber".into(), number.to_string());
            bucket
                .extra_query
                .insert("uploadId".into(), upload_id.to_string());
            let bucket = &bucket;
            let result = with_retries(
                &self.retry,
                Call::data(&format!(
                    "UploadPartCopy {key} #{number} <- {source_key} {range:?}"
                ))
                .counted(&self.stats, "UploadPartCopy", 0)
                .refusals(refusal),
                move || async move {
                    let command = Command::CopyObject { from: source };
                    let answer = send_command(bucket, path, command, false).await;
                    let data = match split_client_error(answer)? {
                        Ok(data) => data,
                        Err(failure) => return Ok(Err(failure)),
                    };
                    check_ok_body(&data)?;
                    let body = String::from_utf8_lossy(data.as_slice());
                    let etag = xml_tag(&body, "ETag").ok_or_else(|| {
                        StoreError::BadResponse(BadResponse::Missing {
                            request: format!("UploadPartCopy {number}"),
                            missing: "an ETag",
                            body: Some(shorten(&body)),
                        })
                    })?;
                    Ok(Ok((etag, xml_tag(&body, checksums::CHECKSUM_ELEMENT))))
                },
            )
            .await?;
            let (status, body) = match result {
                Ok((etag, checksum)) => {
                    self.part_checksums.record(upload_id, number, checksum);
                    return Ok(etag);
                }
                Err(failure) => failure,
            };
            // S3 reports a range past the end of the source as 400 InvalidArgument / InvalidRange.
            if xml_tag(&body, "Code").as_deref() == Some("InvalidRange")
                || xml_tag(&body, "Message").is_some_and(|m| {
                    m.to_ascii_lowercase()
                        .contains("range specified is not valid")
                })
            {
                return Err(StoreError::InvalidRange);
            }
            match read_failure(status, &body, source_key, source_sse_c.is_some()) {
                // Only when the key was sent: the next round goes without it.
                ReadFailure::PlainObject => source_sse_c = None,
                // The target side: the bucket may refuse SSE-C writes.
                ReadFailure::Error(StoreError::AccessDenied(_)) if sse_c.is_some() => {
                    return Err(map_sse_c_write_http(status, &body))
                }
                ReadFailure::Error(e) => return Err(e),
            }
        }
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
        condition: Option<&Condition>,
    ) -> StoreResult<Option<String>> {
        self.fences.wait(key).await;
        if let Err(e) = self.check_condition(key, condition).await {
            self.part_checksums.take(upload_id); // refused: the upload is to be aborted
            return Err(e);
        }
        let path = &object_path(key);
        let mut bucket = self.data_bucket.clone();
        for (name, value) in condition_headers(condition) {
            bucket.add_header(&name, &value);
        }
        let bucket = &bucket;
        let body = Bytes::from(checksums::complete_body(
            &parts,
            &self.part_checksums.take(upload_id),
        ));
        let upload_id = &s3::signing::uri_encode(upload_id, true);
        let data = with_retries(
            &self.retry,
            Call::data(&format!("CompleteMultipartUpload {key}")).counted(
                &self.stats,
                "CompleteMultipartUpload",
                0,
            ),
            move || {
                let body = body.clone();
                async move {
                    // The document goes separately (it carries the part checksums). With
                    // SSE-C the key goes too: S3 wants it to complete an upload created with
                    // a checksum algorithm.
                    let data = CompleteMultipartUploadData { parts: Vec::new() };
                    let command = Command::CompleteMultipartUpload { upload_id, data };
                    let data = send_command_with_body(
                        bucket,
                        path,
                        command,
                        false,
                        body,
                        Integrity::Signed,
                    )
                    .await
                    .map_err(map_s3_error)?;
                    check_ok_body(&data)?;
                    Ok(data)
                }
            },
        )
        .await;
        match (data, condition) {
            (Ok(data), _) => Ok(xml_tag(&String::from_utf8_lossy(data.as_slice()), "ETag")),
            (Err(e), Some(condition)) => self.condition_failed(key, condition, e, None).await,
            (Err(e), None) => Err(e),
        }
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.part_checksums.take(upload_id); // the upload ends: its checksums are moot
        let path = &object_path(key);
        let upload_id = &s3::signing::uri_encode(upload_id, true);
        let result = with_retries(
            &self.retry,
            Call::small(&format!("AbortMultipartUpload {key}")).counted(
                &self.stats,
                "AbortMultipartUpload",
                0,
            ),
            move || async move {
                self.bucket
                    .abort_upload(path, upload_id)
                    .await
                    .map_err(map_s3_error)
            },
        )
        .await;
        match result {
            // Already gone (or an earlier attempt's answer was lost): that is what we wanted.
            Ok(()) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> StoreResult<Vec<MultipartUploadInfo>> {
        let prefix = (!prefix.is_empty()).then_some(prefix);
        let mut out = Vec::new();
        let mut cursor: (Option<String>, Option<String>) = (None, None);
        let mut seen = std::collections::HashSet::new();
        loop {
            if !seen.insert(cursor.clone()) {
                return Err(StoreError::BadResponse(BadResponse::RepeatedCursor {
                    request: "ListMultipartUploads",
                }));
            }
            let cursor_now = &cursor;
            let (page, _status) = with_retries(
                &self.retry,
                Call::small(&format!("ListMultipartUploads {}", prefix.unwrap_or(""))).counted(
                    &self.stats,
                    "ListMultipartUploads",
                    0,
                ),
                move || async move {
                    self.list_bucket
                        .list_multiparts_uploads_page(
                            prefix,
                            None,
                            cursor_now.0.clone(),
                            cursor_now.1.clone(),
                            None,
                        )
                        .await
                        .map_err(map_s3_error)
                },
            )
            .await?;
            let names = Names::of_answer(page.encoding_type.as_deref());
            for u in page.uploads {
                out.push(MultipartUploadInfo {
                    initiated: parse_iso_time(&u.initiated),
                    key: names.decode(u.key)?,
                    upload_id: u.id,
                });
            }
            if !page.is_truncated {
                return Ok(out);
            }
            match page.next_marker.filter(|m| !m.is_empty()) {
                Some(key_marker) => {
                    cursor = (
                        Some(names.decode(key_marker)?),
                        page.next_upload_id_marker.filter(|m| !m.is_empty()),
                    )
                }
                None => {
                    return Err(StoreError::BadResponse(BadResponse::TruncatedWithout {
                        request: "ListMultipartUploads",
                        missing: "NextKeyMarker",
                    }))
                }
            }
        }
    }

    async fn probe_conditional_writes(&self, probe_key: &str) -> StoreResult<Honoured> {
        self.check_conditions.store(false, Ordering::Relaxed);
        self.check_copy_conditions.store(false, Ordering::Relaxed);
        let honoured = super::probe_conditions(self, probe_key).await?;
        self.check_conditions
            .store(!honoured.puts, Ordering::Relaxed);
        self.check_copy_conditions
            .store(!honoured.copies, Ordering::Relaxed);
        Ok(honoured)
    }

    async fn settle(&self) {
        self.fences.wait_all().await
    }

    fn stats(&self) -> StoreStats {
        let l = &self.latency;
        StoreStats {
            hedged: [
                &l.head,
                &l.list_page,
                &l.list_probe,
                &l.small_get,
                &l.get,
                &l.part,
                &l.small_put,
            ]
            .iter()
            .map(|kind| kind.hedges())
            .sum(),
            ..self.stats.snapshot()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> S3Settings {
        S3Settings {
            bucket: "bucket".into(),
            region: Some("us-east-1".into()),
            endpoint: Some("http://127.0.0.1:1".into()),
            path_style: true,
            access_key: Some("GKaccesskeyid".into()),
            secret_key: Some("very-secret-value".into()),
            session_token: Some("session-token-value".into()),
            profile: None,
            retry: RetryPolicy {
                retry_timeout: Duration::ZERO,
                max_retries: None,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(1),
                request_timeout: Duration::from_secs(5),
            },
            sse_c_key: Some(SseCKey::new([7; 32])),
        }
    }

    #[test]
    fn settings_debug_hides_secrets() {
        let s = settings();
        let text = format!("{s:?}");
        assert!(!text.contains("very-secret-value"), "{text}");
        assert!(!text.contains("session-token-value"), "{text}");
        assert!(text.contains("bucket"));
        assert!(text.contains("<redacted>"));
        let key = s.sse_c_key.as_ref().unwrap();
        assert!(!text.contains(key.key_base64()), "{text}");
        assert!(!text.contains(key.key_md5_base64()), "{text}");
        let store = format!("{:?}", S3Store::new(&s).unwrap());
        assert!(!store.contains(key.key_base64()), "{store}");
    }

    #[test]
    fn store_debug_hides_secrets() {
        let store = S3Store::new(&settings()).unwrap();
        let text = format!("{store:?}");
        assert!(!text.contains("very-secret-value"), "{text}");
        assert!(!text.contains("session-token-value"), "{text}");
        assert_eq!(store.bucket_name(), "bucket");
    }

    #[test]
    fn half_given_keys_are_rejected() {
        let mut s = settings();
        s.secret_key = None;
        let err = S3Store::new(&s).unwrap_err();
        assert!(err.to_string().contains("both"), "{err}");
    }

    #[test]
    fn regions() {
        assert!(matches!(
            region_of(Some("http://127.0.0.1:1"), "eu-west-2").unwrap(),
            Region::Custom { ref endpoint, ref region }
                if endpoint == "http://127.0.0.1:1" && region == "eu-west-2"
        ));
        assert_eq!(region_of(None, "us-east-1").unwrap(), Region::UsEast1);
        assert_eq!(region_of(None, "eu-west-2").unwrap(), Region::EuWest2);
        assert!(matches!(
            region_of(None, "xx-future-9").unwrap(),
            Region::Custom { ref endpoint, .. } if endpoint == "https://s3.xx-future-9.amazonaws.com"
        ));
        assert!(matches!(
            region_of(None, " "),
            Err(StoreError::Setup(SetupError::NoRegion))
        ));
    }
}
