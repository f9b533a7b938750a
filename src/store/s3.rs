//! The S3 implementation of `ObjectStore`, over one rust-s3 `Bucket`.
//!
//! What this layer adds on top of rust-s3 0.38:
//! - every request goes through `retry::with_retries` (per-attempt timeout, backoff with
//!   jitter); rust-s3's own global retries are switched off and its per-bucket timeout removed
//!   so ours is the one that governs;
//! - errors are typed: rust-s3 (with `fail-on-err`) reports every non-2xx as
//!   `HttpFailWithBody(status, xml)`, which `map_s3_error` turns into `StoreError` using the
//!   status and the S3 error `<Code>`;
//! - the few places where rust-s3's convenience methods are wrong for us are done one level
//!   lower, with `ReqwestRequest` + `Command` (still signed by rust-s3):
//!   - copy: rust-s3 does not URL-encode the copy source and cannot send metadata; we send
//!     `Command::CopyObject` with an encoded source from a `Bucket` clone whose extra headers
//!     carry `x-amz-metadata-directive` (and content type / `x-amz-meta-*` for REPLACE);
//!   - UploadPart: `put_multipart_chunk` aborts the whole upload when one part fails; we send
//!     the same `Command::PutObject { multipart: Some(..) }` ourselves so a part can be retried
//!     alone;
//!   - user metadata on PUT and CreateMultipartUpload: rust-s3 has no parameter for it there,
//!     so it travels as extra headers of a `Bucket` clone (clones share the connection pool).
//!
//! Keys are passed to rust-s3 as `/` + key: rust-s3 strips one leading `/`, so keys that
//! themselves start with `/` survive.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use s3::command::{Command, Multipart};
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::request::tokio_backend::ReqwestRequest;
use s3::request::{Request as _, ResponseData};
use s3::serde_types::{HeadObjectResult, Part};
use s3::{Bucket, Region};
use time::format_description::well_known::{Iso8601, Rfc2822, Rfc3339};
use time::OffsetDateTime;

use super::retry::{with_retries, with_retries_if, RetryPolicy};
use super::{
    CompletedPart, ListPage, ListedObject, ObjectInfo, ObjectStore, PutOptions, StoreError,
    StoreResult, UserMetadata,
};

/// Content type of objects written without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Longest S3 `<Message>` (in characters) copied into an error text.
const MAX_MESSAGE_CHARS: usize = 200;

/// Where the bucket is and how to sign requests to it.
#[derive(Clone)]
pub struct S3Settings {
    pub bucket: String,
    pub region: String,
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
            .finish()
    }
}

/// An `ObjectStore` backed by an S3 (or S3-compatible) bucket.
pub struct S3Store {
    bucket: Bucket,
    retry: RetryPolicy,
}

impl fmt::Debug for S3Store {
    // Manual: `Bucket`'s Debug would print the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket.name)
            .field("region", &self.bucket.region.to_string())
            .field("url", &self.bucket.url())
            .field("retry", &self.retry)
            .finish()
    }
}

impl S3Store {
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
            return Err(StoreError::Other("no bucket name given".into()));
        }
        let region = region_of(settings)?;
        let credentials = load_credentials(settings)?;
        let mut bucket = *Bucket::new(&settings.bucket, region, credentials).map_err(|e| {
            StoreError::Other(format!(
                "cannot set up the S3 client: {}",
                describe_s3_error(&e)
            ))
        })?;
        if settings.path_style {
            bucket.set_path_style();
        }
        // Our `with_retries` bounds every attempt; a shorter rust-s3 timeout would cut in first.
        bucket.set_request_timeout(None);
        s3::set_retries(0);
        Ok(S3Store {
            bucket,
            retry: settings.retry,
        })
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
}

/// `Region::Custom` when an endpoint is given, else the AWS region by name.
fn region_of(settings: &S3Settings) -> StoreResult<Region> {
    if let Some(endpoint) = &settings.endpoint {
        let endpoint = endpoint.trim().trim_end_matches('/');
        if endpoint.is_empty() {
            return Err(StoreError::Other("the S3 endpoint is empty".into()));
        }
        return Ok(Region::Custom {
            region: settings.region.clone(),
            endpoint: endpoint.to_string(),
        });
    }
    let name = settings.region.trim();
    if name.is_empty() {
        return Err(StoreError::Other(
            "no region given: set AWS_REGION or `region` in the config".into(),
        ));
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
            Credentials::new(Some(access), Some(secret), None, token, None).map_err(|e| {
                StoreError::Other(format!("cannot use the given AWS credentials: {e}"))
            })
        }
        (Some(_), None) | (None, Some(_)) => Err(StoreError::Other(
            "only one of access_key and secret_key is set: set both (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or neither".into(),
        )),
        (None, None) => {
            let found = Credentials::new(None, None, None, None, settings.profile.as_deref())
                .ok()
                .filter(|c| c.access_key.is_some() && c.secret_key.is_some());
            found.ok_or_else(|| {
                let profile = match &settings.profile {
                    Some(p) => format!(" (profile `{p}` was not found or is incomplete)"),
                    None => String::new(),
                };
                StoreError::Other(format!(
                    "no AWS credentials found{profile}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or access_key/secret_key in the config"
                ))
            })
        }
    }
}

/// The rust-s3 path of a key: rust-s3 strips one leading `/`.
fn object_path(key: &str) -> String {
    format!("/{key}")
}

/// A header name rust-s3 (`http::HeaderName`) accepts: RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value rust-s3 (`http::HeaderValue::from_str`) accepts: visible ASCII, space, tab.
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

fn check_header(name: &str, value: &str) -> StoreResult<()> {
    if !is_header_name(name) {
        return Err(StoreError::Other(format!(
            "invalid header name {name:?} (metadata keys must be ASCII letters, digits, '-', '_' or '.')"
        )));
    }
    if !is_header_value(value) {
        return Err(StoreError::Other(format!(
            "invalid value for {name}: S3 headers only carry printable ASCII"
        )));
    }
    Ok(())
}

/// `x-amz-meta-*` headers for user metadata (keys lowercased).
fn metadata_headers(metadata: &UserMetadata) -> Vec<(String, String)> {
    metadata
        .iter()
        .map(|(k, v)| (format!("x-amz-meta-{}", k.to_lowercase()), v.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------------------

/// S3 error codes that mean the credentials (or the region they are signed for) are wrong,
/// rather than that the policy denies the request.
const BAD_CREDENTIAL_CODES: &[&str] = &[
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AuthorizationHeaderMalformed",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
];

/// Turns a rust-s3 error into a `StoreError`.
pub fn map_s3_error(err: S3Error) -> StoreError {
    match err {
        S3Error::HttpFailWithBody(status, body) => map_http_error(status, &body),
        S3Error::Reqwest(e) => {
            let text = error_chain(&e);
            if e.is_builder() {
                StoreError::Other(format!("cannot build the request: {text}"))
            } else {
                // Connect failures, but also connections dropped mid-request (a server
                // closing a kept-alive connection): worth retrying for idempotent requests.
                StoreError::Unreachable(text)
            }
        }
        S3Error::Credentials(e) => StoreError::Other(format!("cannot load AWS credentials: {e}")),
        other => StoreError::Other(describe_s3_error(&other)),
    }
}

/// True when the request certainly never reached the server (TCP/TLS connect failed).
fn is_connect_error(err: &S3Error) -> bool {
    matches!(err, S3Error::Reqwest(e) if e.is_connect())
}

fn describe_s3_error(err: &S3Error) -> String {
    match err {
        S3Error::Reqwest(e) => error_chain(e),
        other => other.to_string(),
    }
}

/// An error and its sources, `a: b: c` (reqwest's own Display hides the cause).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Maps an HTTP error status and its S3 XML body (`<Error><Code>..</Code><Message>..`).
/// A 2xx status means an error body inside a 200 answer (CopyObject, Complete...).
pub fn map_http_error(status: u16, body: &str) -> StoreError {
    let code = xml_tag(body, "Code");
    let message = xml_tag(body, "Message");
    let detail = error_detail(status, code.as_deref(), message.as_deref(), body);
    let is_code = |c: &str| code.as_deref() == Some(c);
    let status = if (200..300).contains(&status) {
        code_status(code.as_deref())
    } else {
        status
    };
    match status {
        404 if is_code("NoSuchBucket") => StoreError::NoSuchBucket,
        404 => StoreError::NotFound,
        400 | 403 if BAD_CREDENTIAL_CODES.iter().any(|c| is_code(c)) => {
            StoreError::BadCredentials(detail)
        }
        // Garage answers a wrong secret with AccessDenied "Invalid signature".
        403 if message
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains("signature")) =>
        {
            StoreError::BadCredentials(detail)
        }
        403 => StoreError::AccessDenied(detail),
        412 => StoreError::PreconditionFailed,
        416 => StoreError::InvalidRange,
        // NotImplemented will not get better by retrying.
        501 => StoreError::Other(format!("not supported by this S3 server: {detail}")),
        408 | 429 | 500..=599 => StoreError::Server {
            status,
            message: detail,
        },
        301 | 307 if is_code("PermanentRedirect") || is_code("TemporaryRedirect") => {
            StoreError::Other(format!(
                "the bucket is in another region or behind another endpoint: {detail} (check the region)"
            ))
        }
        _ => StoreError::Other(format!("HTTP {status}: {detail}")),
    }
}

/// The HTTP status an error code stands for, for errors reported inside a 200 answer.
fn code_status(code: Option<&str>) -> u16 {
    match code {
        Some("NoSuchKey" | "NoSuchBucket" | "NoSuchUpload") => 404,
        Some(c) if BAD_CREDENTIAL_CODES.contains(&c) => 403,
        Some("AccessDenied") => 403,
        Some("PreconditionFailed") => 412,
        Some("InvalidRange") => 416,
        Some("SlowDown" | "ServiceUnavailable") => 503,
        Some("InternalError") => 500,
        // An unknown error inside a 200: treat as a server failure (retried).
        _ => 500,
    }
}

/// `Code: Message` (message shortened), or the start of a non-XML body, or `HTTP status`.
fn error_detail(status: u16, code: Option<&str>, message: Option<&str>, body: &str) -> String {
    match (code, message) {
        (Some(code), Some(message)) => format!("{code}: {}", shorten(message)),
        (Some(code), None) => code.to_string(),
        (None, _) => {
            let body = body.trim();
            if body.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {}", shorten(body))
            }
        }
    }
}

fn shorten(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// The text of the first `<tag>...</tag>` in `xml`, entities decoded; `None` when absent or
/// empty. A plain string search: S3 error bodies are small and flat.
fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    let text = xml_unescape(xml[start..start + len].trim());
    (!text.is_empty()).then_some(text)
}

fn xml_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').and_then(|semi| {
            let entity = &rest[1..semi];
            let ch = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let num = if let Some(hex) = entity.strip_prefix("#x") {
                        u32::from_str_radix(hex, 16).ok()
                    } else if let Some(dec) = entity.strip_prefix('#') {
                        dec.parse().ok()
                    } else {
                        None
                    };
                    num.and_then(char::from_u32)
                }
            };
            ch.map(|c| (c, semi + 1))
        });
        match decoded {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// An `<Error>` document in a 2xx answer (CopyObject and CompleteMultipartUpload may answer
/// 200 and report the failure in the body).
fn check_ok_body(data: &ResponseData) -> StoreResult<()> {
    let body = String::from_utf8_lossy(data.as_slice());
    if body.contains("<Error>") {
        return Err(map_http_error(data.status_code(), &body));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------------

/// HEAD/GET `Last-Modified` (an HTTP date, RFC 2822 style); `UNIX_EPOCH` when unreadable.
fn parse_http_time(text: &str) -> SystemTime {
    let text = text.trim();
    httpdate::parse_http_date(text)
        .ok()
        .or_else(|| {
            OffsetDateTime::parse(text, &Rfc2822)
                .ok()
                .map(SystemTime::from)
        })
        .unwrap_or(UNIX_EPOCH)
}

/// LIST `LastModified` (ISO 8601, `2024-01-02T03:04:05.000Z`); `UNIX_EPOCH` when unreadable.
fn parse_iso_time(text: &str) -> SystemTime {
    let text = text.trim();
    OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(text, &Iso8601::DEFAULT))
        .map(SystemTime::from)
        .unwrap_or(UNIX_EPOCH)
}

fn object_info(head: HeadObjectResult) -> ObjectInfo {
    ObjectInfo {
        size: head.content_length.unwrap_or(0).max(0) as u64,
        last_modified: head
            .last_modified
            .as_deref()
            .map(parse_http_time)
            .unwrap_or(UNIX_EPOCH),
        etag: head.e_tag.filter(|e| !e.is_empty()),
        content_type: head.content_type.filter(|c| !c.is_empty()),
        metadata: head
            .metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect(),
    }
}

/// The ETag rust-s3 puts in the body for `response_data(true)`.
fn etag_of(data: &ResponseData) -> Option<String> {
    std::str::from_utf8(data.as_slice())
        .ok()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
}

/// The slice of `body` for `start..end` when the server answered a ranged GET.
fn range_body(status: u16, body: Bytes, start: u64, end: u64) -> StoreResult<Bytes> {
    let len = body.len() as u64;
    match status {
        206 => Ok(body.slice(..len.min(end - start) as usize)),
        // The server ignored the Range header and sent the whole object.
        200 => {
            if start >= len {
                if start == 0 {
                    Ok(Bytes::new())
                } else {
                    Err(StoreError::InvalidRange)
                }
            } else {
                Ok(body.slice(start as usize..len.min(end) as usize))
            }
        }
        other => Err(StoreError::Other(format!(
            "unexpected HTTP {other} answer to a ranged GET"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// ObjectStore
// ---------------------------------------------------------------------------------------------

#[async_trait]
impl ObjectStore for S3Store {
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        let path = &object_path(key);
        let (head, _status) = with_retries(
            &self.retry,
            &format!("HeadObject {key}"),
            move || async move { self.bucket.head_object(path).await.map_err(map_s3_error) },
        )
        .await?;
        Ok(object_info(head))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let (start, end) = (range.start, range.end);
        if end <= start {
            return Ok(Bytes::new());
        }
        let path = &object_path(key);
        let data = with_retries(
            &self.retry,
            &format!("GetObject {key} {start}..{end}"),
            move || async move {
                match self
                    .bucket
                    .get_object_range(path, start, Some(end - 1))
                    .await
                {
                    Ok(data) => Ok(Some(data)),
                    // `bytes=0-N` on an empty object: S3 answers 416; it is just empty.
                    Err(S3Error::HttpFailWithBody(416, _)) if start == 0 => Ok(None),
                    Err(e) => Err(map_s3_error(e)),
                }
            },
        )
        .await?;
        match data {
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
        let max_keys = max_keys.max(1);
        let token = &token;
        let (result, _status) = with_retries(
            &self.retry,
            &format!("ListObjectsV2 {prefix}"),
            move || async move {
                self.bucket
                    .list_page(
                        prefix.to_string(),
                        delimiter.map(str::to_string),
                        token.clone(),
                        None,
                        Some(max_keys),
                    )
                    .await
                    .map_err(map_s3_error)
            },
        )
        .await?;
        let next_token = if result.is_truncated {
            match result.next_continuation_token {
                Some(t) if !t.is_empty() => Some(t),
                _ => {
                    return Err(StoreError::Other(
                        "the listing is truncated but has no continuation token".into(),
                    ))
                }
            }
        } else {
            None
        };
        Ok(ListPage {
            objects: result
                .contents
                .into_iter()
                .map(|o| ListedObject {
                    last_modified: parse_iso_time(&o.last_modified),
                    key: o.key,
                    size: o.size,
                    etag: o.e_tag.filter(|e| !e.is_empty()),
                })
                .collect(),
            prefixes: result
                .common_prefixes
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.prefix)
                .collect(),
            next_token,
        })
    }

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<Option<String>> {
        let path = &object_path(key);
        let content_type = opts.content_type.as_deref().unwrap_or(DEFAULT_CONTENT_TYPE);
        check_header("content-type", content_type)?;
        let bucket = &self.bucket_with_headers(&metadata_headers(&opts.metadata))?;
        let data = with_retries(&self.retry, &format!("PutObject {key}"), move || {
            let body = body.clone();
            async move {
                bucket
                    .put_object_with_content_type(path, &body, content_type)
                    .await
                    .map_err(map_s3_error)
            }
        })
        .await?;
        Ok(etag_of(&data))
    }

    async fn copy(&self, from: &str, to: &str, replace: Option<&PutOptions>) -> StoreResult<()> {
        let source = &format!(
            "/{}/{}",
            self.bucket.name,
            s3::signing::uri_encode(from, false)
        );
        let path = &object_path(to);
        let mut headers = Vec::new();
        match replace {
            Some(opts) => {
                headers.push((
                    "x-amz-metadata-directive".to_string(),
                    "REPLACE".to_string(),
                ));
                let content_type = opts.content_type.as_deref().unwrap_or(DEFAULT_CONTENT_TYPE);
                headers.push(("content-type".to_string(), content_type.to_string()));
                headers.extend(metadata_headers(&opts.metadata));
            }
            None => headers.push(("x-amz-metadata-directive".to_string(), "COPY".to_string())),
        }
        let bucket = &self.bucket_with_headers(&headers)?;
        with_retries(
            &self.retry,
            &format!("CopyObject {from} -> {to}"),
            move || async move {
                let command = Command::CopyObject { from: source };
                let request = ReqwestRequest::new(bucket, path, command)
                    .await
                    .map_err(map_s3_error)?;
                let data = request.response_data(false).await.map_err(map_s3_error)?;
                check_ok_body(&data)
            },
        )
        .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = &object_path(key);
        let result = with_retries(
            &self.retry,
            &format!("DeleteObject {key}"),
            move || async move { self.bucket.delete_object(path).await.map_err(map_s3_error) },
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
        let bucket = &self.bucket_with_headers(&metadata_headers(&opts.metadata))?;
        // Not idempotent (each call creates an upload): retry only when the request never
        // left (connect failed); a timeout or a dropped connection may have created one.
        let never_sent = &AtomicBool::new(false);
        with_retries_if(
            &self.retry,
            &format!("CreateMultipartUpload {key}"),
            |_| never_sent.load(Ordering::SeqCst),
            move || async move {
                never_sent.store(false, Ordering::SeqCst);
                match bucket.initiate_multipart_upload(path, content_type).await {
                    Ok(response) => Ok(response.upload_id),
                    Err(e) => {
                        never_sent.store(is_connect_error(&e), Ordering::SeqCst);
                        Err(map_s3_error(e))
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
        with_retries(
            &self.retry,
            &format!("UploadPart {key} #{number}"),
            move || {
                let body = body.clone();
                async move {
                    let command = Command::PutObject {
                        content: &body,
                        content_type: DEFAULT_CONTENT_TYPE,
                        custom_headers: None,
                        multipart: Some(Multipart::new(number, upload_id)),
                    };
                    let request = ReqwestRequest::new(&self.bucket, path, command)
                        .await
                        .map_err(map_s3_error)?;
                    let data = request.response_data(true).await.map_err(map_s3_error)?;
                    etag_of(&data).ok_or_else(|| {
                        StoreError::Other(format!("UploadPart {number} answered without an ETag"))
                    })
                }
            },
        )
        .await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> StoreResult<Option<String>> {
        let path = &object_path(key);
        let upload_id = &s3::signing::uri_encode(upload_id, true);
        let parts: &Vec<Part> = &parts
            .into_iter()
            .map(|p| Part {
                part_number: p.number,
                etag: p.etag,
            })
            .collect();
        let data = with_retries(
            &self.retry,
            &format!("CompleteMultipartUpload {key}"),
            move || async move {
                let data = self
                    .bucket
                    .complete_multipart_upload(path, upload_id, parts.clone())
                    .await
                    .map_err(map_s3_error)?;
                check_ok_body(&data)?;
                Ok(data)
            },
        )
        .await?;
        Ok(xml_tag(&String::from_utf8_lossy(data.as_slice()), "ETag"))
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        let path = &object_path(key);
        let upload_id = &s3::signing::uri_encode(upload_id, true);
        let result = with_retries(
            &self.retry,
            &format!("AbortMultipartUpload {key}"),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn xml_error(code: &str, message: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><Resource>/b/k</Resource><RequestId>1</RequestId></Error>"
        )
    }

    fn settings() -> S3Settings {
        S3Settings {
            bucket: "bucket".into(),
            region: "us-east-1".into(),
            endpoint: Some("http://127.0.0.1:1".into()),
            path_style: true,
            access_key: Some("GKaccesskeyid".into()),
            secret_key: Some("very-secret-value".into()),
            session_token: Some("session-token-value".into()),
            profile: None,
            retry: RetryPolicy {
                max_retries: 0,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(1),
                request_timeout: Duration::from_secs(5),
            },
        }
    }

    #[test]
    fn maps_http_errors() {
        let m = |status, code, msg| map_http_error(status, &xml_error(code, msg));
        assert!(matches!(
            m(404, "NoSuchKey", "The specified key does not exist."),
            StoreError::NotFound
        ));
        assert!(matches!(
            m(404, "NoSuchBucket", "The specified bucket does not exist"),
            StoreError::NoSuchBucket
        ));
        assert!(matches!(map_http_error(404, ""), StoreError::NotFound));
        match m(403, "AccessDenied", "Access Denied") {
            StoreError::AccessDenied(t) => assert_eq!(t, "AccessDenied: Access Denied"),
            other => panic!("{other:?}"),
        }
        for code in [
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "AuthorizationHeaderMalformed",
        ] {
            match m(403, code, "nope") {
                StoreError::BadCredentials(t) => assert_eq!(t, format!("{code}: nope")),
                other => panic!("{code}: {other:?}"),
            }
        }
        assert!(matches!(
            m(400, "AuthorizationHeaderMalformed", "wrong region"),
            StoreError::BadCredentials(_)
        ));
        assert!(matches!(
            map_http_error(403, ""),
            StoreError::AccessDenied(_)
        ));
        assert!(matches!(
            m(412, "PreconditionFailed", "x"),
            StoreError::PreconditionFailed
        ));
        assert!(matches!(
            m(416, "InvalidRange", "x"),
            StoreError::InvalidRange
        ));
        match m(503, "SlowDown", "Please reduce your request rate.") {
            e @ StoreError::Server { status: 503, .. } => {
                assert!(e.is_transient());
                assert!(e.to_string().contains("SlowDown"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            map_http_error(500, "<html>oops</html>"),
            StoreError::Server { status: 500, .. }
        ));
        assert!(matches!(
            m(429, "SlowDown", "x"),
            StoreError::Server { status: 429, .. }
        ));
        let not_impl = m(501, "NotImplemented", "x");
        assert!(matches!(not_impl, StoreError::Other(_)));
        assert!(!not_impl.is_transient());
        assert!(matches!(
            m(400, "InvalidArgument", "bad"),
            StoreError::Other(_)
        ));
    }

    #[test]
    fn error_in_200_body() {
        assert!(matches!(
            map_http_error(200, &xml_error("InternalError", "try again")),
            StoreError::Server { status: 500, .. }
        ));
        assert!(matches!(
            map_http_error(200, &xml_error("NoSuchKey", "gone")),
            StoreError::NotFound
        ));
        let data = ResponseData::new(
            Bytes::from(xml_error("SlowDown", "x")),
            200,
            Default::default(),
        );
        assert!(matches!(
            check_ok_body(&data),
            Err(StoreError::Server { status: 503, .. })
        ));
        let ok = ResponseData::new(
            Bytes::from_static(b"<CopyObjectResult><ETag>\"x\"</ETag></CopyObjectResult>"),
            200,
            Default::default(),
        );
        assert!(check_ok_body(&ok).is_ok());
    }

    #[test]
    fn s3_error_variants() {
        assert!(matches!(
            map_s3_error(S3Error::HttpFailWithBody(404, xml_error("NoSuchKey", "x"))),
            StoreError::NotFound
        ));
        assert!(matches!(
            map_s3_error(S3Error::HttpFail),
            StoreError::Other(_)
        ));
    }

    #[test]
    fn long_messages_are_shortened() {
        let long = "x".repeat(1000);
        match map_http_error(403, &xml_error("AccessDenied", &long)) {
            StoreError::AccessDenied(t) => {
                assert!(t.len() < 300, "{t}");
                assert!(t.ends_with("..."));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn extracts_xml_code_and_message() {
        let body = xml_error(
            "NoSuchKey",
            "The key &lt;a&amp;b&gt; &quot;is&quot; gone&#33;",
        );
        assert_eq!(xml_tag(&body, "Code").as_deref(), Some("NoSuchKey"));
        assert_eq!(
            xml_tag(&body, "Message").as_deref(),
            Some("The key <a&b> \"is\" gone!")
        );
        assert_eq!(xml_tag(&body, "Missing"), None);
        assert_eq!(xml_tag("<Error><Code></Code></Error>", "Code"), None);
        assert_eq!(xml_tag("<Error><Code>Oops", "Code"), None);
        assert_eq!(xml_tag("", "Code"), None);
        assert_eq!(
            xml_tag(
                "<CompleteMultipartUploadResult><ETag>&quot;abc-2&quot;</ETag></CompleteMultipartUploadResult>",
                "ETag"
            )
            .as_deref(),
            Some("\"abc-2\"")
        );
        assert_eq!(xml_unescape("a & b &bogus; &#x41;"), "a & b &bogus; A");
    }

    #[test]
    fn settings_debug_hides_secrets() {
        let s = settings();
        let text = format!("{s:?}");
        assert!(!text.contains("very-secret-value"), "{text}");
        assert!(!text.contains("session-token-value"), "{text}");
        assert!(text.contains("bucket"));
        assert!(text.contains("<redacted>"));
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
        let mut s = settings();
        assert!(matches!(
            region_of(&s).unwrap(),
            Region::Custom { ref endpoint, .. } if endpoint == "http://127.0.0.1:1"
        ));
        s.endpoint = None;
        assert_eq!(region_of(&s).unwrap(), Region::UsEast1);
        s.region = "xx-future-9".into();
        assert!(matches!(
            region_of(&s).unwrap(),
            Region::Custom { ref endpoint, .. } if endpoint == "https://s3.xx-future-9.amazonaws.com"
        ));
    }

    #[test]
    fn parses_times() {
        let t = parse_http_time("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_445_412_480
        );
        let t = parse_iso_time("2015-10-21T07:28:00.000Z");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_445_412_480
        );
        assert_eq!(parse_http_time("garbage"), UNIX_EPOCH);
        assert_eq!(parse_iso_time("garbage"), UNIX_EPOCH);
    }

    #[test]
    fn range_bodies() {
        let b = Bytes::from_static(b"0123456789");
        assert_eq!(range_body(206, b.slice(2..5), 2, 5).unwrap(), "234");
        assert_eq!(range_body(200, b.clone(), 2, 5).unwrap(), "234");
        assert_eq!(range_body(200, b.clone(), 8, 20).unwrap(), "89");
        assert!(matches!(
            range_body(200, b.clone(), 10, 20),
            Err(StoreError::InvalidRange)
        ));
        assert_eq!(range_body(200, Bytes::new(), 0, 20).unwrap(), "");
    }

    #[test]
    fn header_checks() {
        assert!(check_header("x-amz-meta-mode", "0644").is_ok());
        assert!(check_header("x-amz-meta-bad key", "v").is_err());
        assert!(check_header("x-amz-meta-k", "caf\u{e9}").is_err());
        assert!(check_header("x-amz-meta-k", "line\nbreak").is_err());
    }

    #[test]
    fn object_info_from_head() {
        let mut head = HeadObjectResult {
            content_length: Some(12),
            e_tag: Some("\"e\"".into()),
            content_type: Some("text/plain".into()),
            last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
            ..Default::default()
        };
        head.metadata = Some([("Mode".to_string(), "0644".to_string())].into());
        let info = object_info(head);
        assert_eq!(info.size, 12);
        assert_eq!(info.etag.as_deref(), Some("\"e\""));
        assert_eq!(info.metadata.get("mode").map(String::as_str), Some("0644"));
        let info = object_info(HeadObjectResult::default());
        assert_eq!(info.last_modified, UNIX_EPOCH);
    }
}

/// The store against a tiny canned-response HTTP server on 127.0.0.1: checks what goes over
/// the wire (headers, query strings, request counts) and how answers are read, with no S3.
#[cfg(test)]
mod wire {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Requests seen by the fake server: request line and headers, lowercased.
    type Seen = Arc<Mutex<Vec<String>>>;

    fn read_request(stream: &mut TcpStream) -> Option<String> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).ok()? == 0 {
                return None;
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).to_lowercase();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).ok()?;
        Some(head)
    }

    /// Answers each connection's request with the next of `responses` (raw HTTP, the server
    /// adds `Connection: close`), then stops listening.
    fn serve(responses: Vec<String>) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for response in responses {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                if let Some(head) = read_request(&mut stream) {
                    seen2.lock().unwrap().push(head);
                }
                let (status_line, rest) = response.split_once("\r\n").unwrap();
                let reply = format!("{status_line}\r\nConnection: close\r\n{rest}");
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        (endpoint, seen)
    }

    fn response(status: &str, headers: &[&str], body: &str) -> String {
        let mut text = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
        for h in headers {
            text.push_str(h);
            text.push_str("\r\n");
        }
        text.push_str("\r\n");
        text.push_str(body);
        text
    }

    fn error_body(code: &str) -> String {
        format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m</Message></Error>")
    }

    fn store(endpoint: String, max_retries: u32, timeout: Duration) -> S3Store {
        S3Store::new(&S3Settings {
            bucket: "bkt".into(),
            region: "us-east-1".into(),
            endpoint: Some(endpoint),
            path_style: true,
            access_key: Some("AKIDEXAMPLE".into()),
            secret_key: Some("secret".into()),
            session_token: None,
            profile: None,
            retry: RetryPolicy {
                max_retries,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(2),
                request_timeout: timeout,
            },
        })
        .unwrap()
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn head_retries_a_503_and_reads_headers() {
        let (endpoint, seen) = serve(vec![
            response("503 Service Unavailable", &[], &error_body("SlowDown")),
            response(
                "200 OK",
                &[
                    "ETag: \"abc\"",
                    "Content-Type: text/plain",
                    "Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT",
                    "x-amz-meta-Mode: 0644",
                ],
                "",
            )
            .replace("Content-Length: 0", "Content-Length: 7"),
        ]);
        let info = store(endpoint, 3, T).head("dir/a b").await.unwrap();
        assert_eq!(info.size, 7);
        assert_eq!(info.etag.as_deref(), Some("\"abc\""));
        assert_eq!(info.metadata.get("mode").map(String::as_str), Some("0644"));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(
            seen[0].starts_with("head /bkt/dir/a%20b http/1.1"),
            "{}",
            seen[0]
        );
    }

    #[tokio::test]
    async fn errors_are_typed_and_not_retried() {
        let (endpoint, seen) = serve(vec![response("404 Not Found", &[], "")]);
        let e = store(endpoint, 3, T).head("x").await.unwrap_err();
        assert!(matches!(e, StoreError::NotFound), "{e:?}");
        assert_eq!(seen.lock().unwrap().len(), 1);

        let (endpoint, _) = serve(vec![response(
            "403 Forbidden",
            &[],
            &error_body("SignatureDoesNotMatch"),
        )]);
        let e = store(endpoint, 3, T)
            .get_range("x", 0..10)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::BadCredentials(_)), "{e:?}");
    }

    #[tokio::test]
    async fn empty_object_range_is_empty() {
        let (endpoint, seen) = serve(vec![response(
            "416 Requested Range Not Satisfiable",
            &[],
            &error_body("InvalidRange"),
        )]);
        let data = store(endpoint, 3, T).get_range("e", 0..4096).await.unwrap();
        assert!(data.is_empty());
        let seen = seen.lock().unwrap();
        assert!(seen[0].contains("range: bytes=0-4095"), "{}", seen[0]);
    }

    #[tokio::test]
    async fn range_past_the_end_is_invalid() {
        let (endpoint, _) = serve(vec![response(
            "416 Requested Range Not Satisfiable",
            &[],
            &error_body("InvalidRange"),
        )]);
        let e = store(endpoint, 3, T)
            .get_range("e", 10..20)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::InvalidRange), "{e:?}");
    }

    #[tokio::test]
    async fn copy_encodes_the_source_and_retries_an_error_in_a_200() {
        let (endpoint, seen) = serve(vec![
            response("200 OK", &[], &error_body("InternalError")),
            response(
                "200 OK",
                &[],
                "<CopyObjectResult><ETag>\"e\"</ETag></CopyObjectResult>",
            ),
        ]);
        let mut opts = PutOptions {
            content_type: Some("text/x".into()),
            ..Default::default()
        };
        opts.metadata.insert("Mode".into(), "0600".into());
        store(endpoint, 3, T)
            .copy("a+b ü%/c", "to", Some(&opts))
            .await
            .unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        let req = &seen[1];
        assert!(req.starts_with("put /bkt/to http/1.1"), "{req}");
        assert!(
            req.contains("x-amz-copy-source: /bkt/a%2bb%20%c3%bc%25/c\r\n"),
            "{req}"
        );
        assert!(req.contains("x-amz-metadata-directive: replace"), "{req}");
        assert!(req.contains("content-type: text/x"), "{req}");
        assert!(req.contains("x-amz-meta-mode: 0600"), "{req}");
    }

    #[tokio::test]
    async fn copy_without_replace_keeps_metadata() {
        let (endpoint, seen) = serve(vec![response(
            "200 OK",
            &[],
            "<CopyObjectResult></CopyObjectResult>",
        )]);
        store(endpoint, 0, T).copy("a", "b", None).await.unwrap();
        let req = &seen.lock().unwrap()[0];
        assert!(req.contains("x-amz-metadata-directive: copy"), "{req}");
        assert!(!req.contains("x-amz-meta-"), "{req}");
    }

    #[tokio::test]
    async fn put_sends_metadata_and_returns_the_etag() {
        let (endpoint, seen) = serve(vec![response("200 OK", &["ETag: \"p\""], "")]);
        let mut opts = PutOptions::default();
        opts.metadata.insert("uid".into(), "1000".into());
        let etag = store(endpoint, 0, T)
            .put("k", Bytes::from_static(b"data"), &opts)
            .await
            .unwrap();
        assert_eq!(etag.as_deref(), Some("\"p\""));
        let req = &seen.lock().unwrap()[0];
        assert!(req.contains("x-amz-meta-uid: 1000"), "{req}");
        assert!(
            req.contains("content-type: application/octet-stream"),
            "{req}"
        );
    }

    #[tokio::test]
    async fn upload_part_is_retried_alone() {
        let (endpoint, seen) = serve(vec![
            response(
                "500 Internal Server Error",
                &[],
                &error_body("InternalError"),
            ),
            response("200 OK", &["ETag: \"part3\""], ""),
        ]);
        let etag = store(endpoint, 3, T)
            .upload_part("k", "abc+def/=", 3, Bytes::from_static(b"xyz"))
            .await
            .unwrap();
        assert_eq!(etag, "\"part3\"");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "no abort in between: {seen:?}");
        for req in seen.iter() {
            assert!(
                req.starts_with("put /bkt/k?partnumber=3&uploadid=abc%2bdef%2f%3d http/1.1"),
                "{req}"
            );
        }
    }

    #[tokio::test]
    async fn create_multipart_sends_metadata_and_is_not_retried_after_sending() {
        let (endpoint, seen) = serve(vec![
            response("500 Internal Server Error", &[], &error_body("InternalError")),
            response(
                "200 OK",
                &[],
                "<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>",
            ),
        ]);
        let s = store(endpoint, 3, T);
        let mut opts = PutOptions::default();
        opts.metadata.insert("uid".into(), "7".into());
        let e = s.create_multipart("k", &opts).await.unwrap_err();
        assert!(matches!(e, StoreError::Server { status: 500, .. }), "{e:?}");
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert_eq!(s.create_multipart("k", &opts).await.unwrap(), "u1");
        let seen = seen.lock().unwrap();
        assert!(
            seen[1].starts_with("post /bkt/k?uploads http/1.1"),
            "{}",
            seen[1]
        );
        assert!(seen[1].contains("x-amz-meta-uid: 7"), "{}", seen[1]);
    }

    #[tokio::test]
    async fn complete_reads_the_etag_and_checks_the_body() {
        let (endpoint, seen) = serve(vec![
            response("200 OK", &[], &error_body("InternalError")),
            response(
                "200 OK",
                &[],
                "<CompleteMultipartUploadResult><ETag>&quot;m-2&quot;</ETag></CompleteMultipartUploadResult>",
            ),
        ]);
        let parts = vec![
            CompletedPart {
                number: 1,
                etag: "\"a\"".into(),
            },
            CompletedPart {
                number: 2,
                etag: "\"b\"".into(),
            },
        ];
        let etag = store(endpoint, 3, T)
            .complete_multipart("k", "u1", parts)
            .await
            .unwrap();
        assert_eq!(etag.as_deref(), Some("\"m-2\""));
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn delete_and_abort_of_missing_things_succeed() {
        let (endpoint, _) = serve(vec![
            response("404 Not Found", &[], &error_body("NoSuchKey")),
            response("404 Not Found", &[], &error_body("NoSuchUpload")),
        ]);
        let s = store(endpoint, 0, T);
        s.delete("k").await.unwrap();
        s.abort_multipart("k", "u1").await.unwrap();
    }

    #[tokio::test]
    async fn list_page_reads_objects_prefixes_and_token() {
        let body = "<ListBucketResult><Name>bkt</Name><Prefix>d/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true</IsTruncated><NextContinuationToken>tok</NextContinuationToken><Contents><Key>d/a</Key><LastModified>2015-10-21T07:28:00.000Z</LastModified><ETag>&quot;e&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents><CommonPrefixes><Prefix>d/sub/</Prefix></CommonPrefixes></ListBucketResult>";
        let (endpoint, seen) = serve(vec![response("200 OK", &[], body)]);
        let page = store(endpoint, 0, T)
            .list_page("d/", Some("/"), Some("t0".into()), 2)
            .await
            .unwrap();
        assert_eq!(page.objects.len(), 1);
        assert_eq!(page.objects[0].key, "d/a");
        assert_eq!(page.objects[0].size, 3);
        assert_eq!(page.objects[0].etag.as_deref(), Some("\"e\""));
        assert_eq!(
            page.objects[0]
                .last_modified
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            1_445_412_480
        );
        assert_eq!(page.prefixes, vec!["d/sub/".to_string()]);
        assert_eq!(page.next_token.as_deref(), Some("tok"));
        let req = &seen.lock().unwrap()[0];
        assert!(req.contains("continuation-token=t0"), "{req}");
        assert!(req.contains("max-keys=2"), "{req}");
    }

    #[tokio::test]
    async fn hung_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for _ in 0..2 {
                if let Ok((stream, _)) = listener.accept() {
                    held.push(stream);
                }
            }
            std::thread::sleep(Duration::from_secs(3));
        });
        let started = std::time::Instant::now();
        let e = store(endpoint, 1, Duration::from_millis(200))
            .head("k")
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Timeout(_)), "{e:?}");
        assert!(started.elapsed() >= Duration::from_millis(400));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let s = store(format!("http://127.0.0.1:{port}"), 2, T);
        let e = s.head("k").await.unwrap_err();
        assert!(matches!(e, StoreError::Unreachable(_)), "{e:?}");
        // Connect failures are retried even for CreateMultipartUpload; still unreachable.
        let e = s
            .create_multipart("k", &PutOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Unreachable(_)), "{e:?}");
    }
}

/// Tests against a real S3 server (`scripts/s3-server.sh start`); run with
/// `cargo test s3_live -- --ignored`. They read the env file the script writes
/// (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
/// `S3_BUCKET`) from the process environment.
#[cfg(test)]
mod s3_live {
    use super::*;
    use crate::store::list_all;
    use std::time::Duration;

    fn store() -> S3Store {
        S3Store::new(&live_settings()).unwrap()
    }

    /// A fresh directory-like prefix for one test run.
    fn run_prefix() -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("s3-live-{nanos}/")
    }

    #[tokio::test]
    #[ignore]
    async fn s3_live_roundtrip() {
        let store = store();
        let dir = run_prefix();
        let unique = |name: &str| format!("{dir}{name}");
        let key = unique("dir one/a+b%c ü.txt");
        let mut opts = PutOptions {
            content_type: Some("text/plain".into()),
            ..Default::default()
        };
        opts.metadata.insert("mode".into(), "0644".into());
        let etag = store
            .put(&key, Bytes::from_static(b"hello world"), &opts)
            .await
            .unwrap();
        assert!(etag.is_some());

        let info = store.head(&key).await.unwrap();
        assert_eq!(info.size, 11);
        assert_eq!(info.content_type.as_deref(), Some("text/plain"));
        assert_eq!(info.metadata.get("mode").map(String::as_str), Some("0644"));
        assert!(info.last_modified > UNIX_EPOCH);

        assert_eq!(store.get_range(&key, 6..11).await.unwrap(), "world");
        assert_eq!(store.get_range(&key, 6..100).await.unwrap(), "world");
        assert!(matches!(
            store.get_range(&key, 50..100).await,
            Err(StoreError::InvalidRange)
        ));

        // Empty object.
        let empty = unique("empty");
        store
            .put(&empty, Bytes::new(), &PutOptions::default())
            .await
            .unwrap();
        assert_eq!(store.get_range(&empty, 0..4096).await.unwrap(), "");
        assert_eq!(store.head(&empty).await.unwrap().size, 0);

        // Copy, keeping and replacing metadata.
        let copy1 = unique("copy one ü+");
        store.copy(&key, &copy1, None).await.unwrap();
        let info1 = store.head(&copy1).await.unwrap();
        assert_eq!(info1.metadata.get("mode").map(String::as_str), Some("0644"));
        assert_eq!(info1.content_type.as_deref(), Some("text/plain"));
        let mut replace = PutOptions {
            content_type: Some("application/x-test".into()),
            ..Default::default()
        };
        replace.metadata.insert("mode".into(), "0600".into());
        store.copy(&key, &key, Some(&replace)).await.unwrap();
        let info2 = store.head(&key).await.unwrap();
        assert_eq!(info2.metadata.get("mode").map(String::as_str), Some("0600"));
        assert_eq!(info2.content_type.as_deref(), Some("application/x-test"));
        assert!(matches!(
            store.copy(&unique("missing"), &copy1, None).await,
            Err(StoreError::NotFound)
        ));

        // Listing with a delimiter.
        let page = store.list_page(&dir, Some("/"), None, 1000).await.unwrap();
        assert!(
            page.prefixes.contains(&format!("{dir}dir one/")),
            "{page:?}"
        );
        assert!(page.objects.iter().any(|o| o.key == empty && o.size == 0));
        assert!(page.objects.iter().all(|o| o.last_modified > UNIX_EPOCH));
        let first = store.list_page(&dir, None, None, 1).await.unwrap();
        assert_eq!(first.objects.len(), 1);
        assert!(first.next_token.is_some());
        let all = list_all(&store, &dir).await.unwrap();
        assert_eq!(all.len(), 3);

        // Missing things.
        assert!(matches!(
            store.head(&unique("nope")).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.get_range(&unique("nope"), 0..1).await,
            Err(StoreError::NotFound)
        ));
        store.delete(&unique("nope")).await.unwrap();

        // Multipart with metadata; one part retried alone after a failure-free re-upload.
        let mp = unique("multi part");
        let mut mopts = PutOptions {
            content_type: Some("application/x-mp".into()),
            ..Default::default()
        };
        mopts.metadata.insert("uid".into(), "1000".into());
        let id = store.create_multipart(&mp, &mopts).await.unwrap();
        let part1 = Bytes::from(vec![b'a'; 5 << 20]);
        let part2 = Bytes::from_static(b"tail");
        let e1 = store.upload_part(&mp, &id, 1, part1.clone()).await.unwrap();
        let e1_again = store.upload_part(&mp, &id, 1, part1).await.unwrap();
        assert_eq!(e1, e1_again);
        let e2 = store.upload_part(&mp, &id, 2, part2).await.unwrap();
        let etag = store
            .complete_multipart(
                &mp,
                &id,
                vec![
                    CompletedPart {
                        number: 1,
                        etag: e1,
                    },
                    CompletedPart {
                        number: 2,
                        etag: e2,
                    },
                ],
            )
            .await
            .unwrap();
        assert!(etag.is_some());
        let info = store.head(&mp).await.unwrap();
        assert_eq!(info.size, (5 << 20) + 4);
        assert_eq!(info.metadata.get("uid").map(String::as_str), Some("1000"));
        assert_eq!(info.content_type.as_deref(), Some("application/x-mp"));
        assert_eq!(
            store
                .get_range(&mp, (5 << 20) - 1..(5 << 20) + 4)
                .await
                .unwrap(),
            "atail"
        );

        // Abort (twice: the second finds nothing, which is fine).
        let id = store.create_multipart(&mp, &mopts).await.unwrap();
        store.abort_multipart(&mp, &id).await.unwrap();
        store.abort_multipart(&mp, &id).await.unwrap();

        for k in [&key, &empty, &copy1, &mp] {
            store.delete(k).await.unwrap();
        }
        assert!(list_all(&store, &dir).await.unwrap().is_empty());
    }

    #[tokio::test]
    #[ignore]
    async fn s3_live_errors() {
        let mut s = store();
        // Wrong secret: a signature error, not "access denied".
        let bad = S3Settings {
            secret_key: Some("wrong".into()),
            ..live_settings()
        };
        let bad_store = S3Store::new(&bad).unwrap();
        let e = bad_store
            .list_page("", Some("/"), None, 10)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::BadCredentials(_) | StoreError::AccessDenied(_)
            ),
            "{e:?}"
        );
        // Missing bucket.
        s.bucket.name = "no-such-bucket-bucketfs".into();
        let e = s.list_page("", None, None, 10).await.unwrap_err();
        assert!(matches!(e, StoreError::NoSuchBucket), "{e:?}");
        // Nothing listening.
        let dead = S3Settings {
            endpoint: Some("http://127.0.0.1:9".into()),
            retry: RetryPolicy {
                max_retries: 1,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(1),
                request_timeout: Duration::from_secs(5),
            },
            ..live_settings()
        };
        let e = S3Store::new(&dead).unwrap().head("x").await.unwrap_err();
        assert!(matches!(e, StoreError::Unreachable(_)), "{e:?}");
    }

    fn live_settings() -> S3Settings {
        let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
        S3Settings {
            bucket: var("S3_BUCKET"),
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
            endpoint: Some(var("AWS_ENDPOINT_URL")),
            path_style: true,
            access_key: Some(var("AWS_ACCESS_KEY_ID")),
            secret_key: Some(var("AWS_SECRET_ACCESS_KEY")),
            session_token: None,
            profile: None,
            retry: RetryPolicy {
                max_retries: 2,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(500),
                request_timeout: Duration::from_secs(20),
            },
        }
    }
}
