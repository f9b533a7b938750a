//! `StoreError`: what went wrong talking to the store, one variant per kind of failure, so that
//! callers (and the retry layer) can react and `fuse::errno` maps each to an errno once. There
//! is no free-text catch-all: a new kind of failure gets a variant, and with it a decision on
//! its errno and on whether it is retried.
//!
//! Some variants nest an enum of their own (`KeyRefusal`, `InvalidRequest`, `PartMismatch`,
//! `BadResponse`, `SetupError`): the outer variant is what a caller reacts to, the inner one
//! says precisely what happened (and what to do) for the log and for the tests.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::s3::DecodeError;
use super::CANNED_ACLS;

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
    Timeout(Duration),
    #[error("server error {status}: {message}")]
    Server { status: u16, message: String },
    /// An object encrypted with a customer-provided key (SSE-C) was read without a key, or
    /// with another key than the one it was written with. The text says which, and what to do.
    #[error("{0}")]
    SseCustomerKey(String),
    /// A file operation of the local store failed at `path`. The I/O error is kept whole, so
    /// its errno (ENOSPC, EACCES, EROFS, ...) is what the application gets (`fuse::errno`).
    /// A missing path is `NotFound` instead.
    #[error("local store: {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: Arc<io::Error>,
    },
    /// A file the local store keeps for itself (a metadata sidecar, an upload's manifest)
    /// cannot be written or parsed.
    #[error("local store: {}: {detail}", path.display())]
    MetadataFile { path: PathBuf, detail: String },
    /// The local store cannot hold (or look up) `key`, which S3 could: see `reason`.
    #[error("local store: key {key:?} refused: {reason}")]
    KeyRefused { key: String, reason: KeyRefusal },
    /// A request refused before it reached the store: a bad object option (fix the
    /// configuration) or a call no store accepts (a bug in the caller).
    #[error("{0}")]
    InvalidRequest(InvalidRequest),
    /// CompleteMultipartUpload named a part the upload does not hold (S3's `InvalidPart`).
    #[error("multipart upload: {0}")]
    InvalidPart(PartMismatch),
    /// The server refused the request with a 4xx status nothing above has a meaning for
    /// (S3 `InvalidArgument`, `InvalidRequest`, `EntityTooSmall`, ...). `detail`: S3's
    /// `Code: Message`.
    #[error("HTTP {status}: {detail}")]
    Rejected { status: u16, detail: String },
    /// 501 NotImplemented: the server does not offer this request.
    #[error("not supported by this S3 server: {0}")]
    NotImplemented(String),
    /// A request this kind of store does not implement (see `ObjectStore`'s defaults).
    #[error("{0} is not supported by this store")]
    Unsupported(&'static str),
    /// A 301/307 redirect: the bucket answers at another endpoint.
    #[error("the bucket is in another region or behind another endpoint: {0} (check the region)")]
    WrongRegion(String),
    /// The server answered something the request cannot go on with.
    #[error("unusable answer from the server: {0}")]
    BadResponse(BadResponse),
    /// A task that did the work panicked or was cancelled. `cause`: tokio's description.
    #[error("{task} failed: {cause}")]
    TaskFailed { task: &'static str, cause: String },
    /// Read-ahead gave up before its request was sent: nobody wants the range any more (the
    /// reader moved elsewhere). A reader that needs the range fetches it itself.
    #[error("read-ahead dropped (nobody reads that range any more)")]
    ReadAheadDropped,
    /// The store cannot be used as configured.
    #[error("{0}")]
    Setup(SetupError),
    /// The S3 client library failed without an answer from the server to show for it (a
    /// request it cannot build, a URL it cannot parse, ...). Its own description.
    #[error("S3 client: {0}")]
    Client(String),
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

    /// The server asks to slow down (503 SlowDown, 429 Too Many Requests): retries must
    /// back off, not come at once.
    pub fn is_throttling(&self) -> bool {
        matches!(
            self,
            StoreError::Server {
                status: 503 | 429,
                ..
            }
        )
    }

    /// How a request that failed with this error ended, as the metrics name it (the label
    /// `outcome` of `bucketfs_s3_requests_total`; `ok` is a success's).
    pub fn outcome(&self) -> &'static str {
        match self {
            StoreError::NotFound | StoreError::NoSuchBucket => "not_found",
            StoreError::AccessDenied(_) | StoreError::BadCredentials(_) => "access_denied",
            StoreError::PreconditionFailed => "precondition_failed",
            StoreError::Timeout(_) => "timeout",
            StoreError::Unreachable(_) => "network_error",
            e if e.is_throttling() => "throttled",
            StoreError::Server { .. } | StoreError::NotImplemented(_) => "server_error",
            StoreError::InvalidRange
            | StoreError::SseCustomerKey(_)
            | StoreError::InvalidPart(_)
            | StoreError::Rejected { .. }
            | StoreError::WrongRegion(_)
            | StoreError::InvalidRequest(_)
            | StoreError::KeyRefused { .. } => "client_error",
            StoreError::BadResponse(_) => "bad_response",
            StoreError::Io { .. }
            | StoreError::MetadataFile { .. }
            | StoreError::Unsupported(_)
            | StoreError::TaskFailed { .. }
            | StoreError::ReadAheadDropped
            | StoreError::Setup(_)
            | StoreError::Client(_) => "other",
        }
    }

    /// `StoreError::Io` of `source` at `path`.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// `StoreError::TaskFailed` of a task that did not finish.
    pub fn task_failed(task: &'static str, e: tokio::task::JoinError) -> Self {
        StoreError::TaskFailed {
            task,
            cause: e.to_string(),
        }
    }
}

/// Why the local store refuses a key (see `store::local`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    #[error("empty key")]
    Empty,
    #[error("it starts with '/'")]
    LeadingSlash,
    #[error("it contains a NUL byte")]
    NulByte,
    #[error("empty path segment (a directory cannot have an empty name)")]
    EmptySegment,
    #[error("'.' and '..' segments are not allowed")]
    DotSegment,
    #[error("reserved for the local store's internal data")]
    Reserved,
    /// A key below `parent` while `parent` is a file or a symlink (`special`): only a directory
    /// holds keys.
    #[error(
        "{parent:?} is {}, and only a directory can hold keys under \"{parent}/\"",
        parent_kind(.special)
    )]
    ParentNotADirectory { parent: String, special: bool },
    /// An object where a directory is: a directory cannot also be an object.
    #[error("it is a directory here, and a directory cannot also be an object")]
    IsADirectory,
    /// A directory marker `a/b/` where `a/b` is a file or symlink.
    #[error("cannot create the directory marker: {name:?} is an object (a file or symlink), not a directory")]
    MarkerOverObject { name: String },
    /// Data for a directory marker, which is a directory here.
    #[error("it is a directory marker and cannot hold data")]
    MarkerWithData,
}

/// A request refused before it reached the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("empty copy range {start}..{end}: a copied part needs at least one byte")]
    EmptyCopyRange { start: u64, end: u64 },
    /// CompleteMultipartUpload with the id of an upload of another key (S3 says
    /// `NoSuchUpload`; only a bug in the caller can do this).
    #[error("multipart upload {upload_id} belongs to {upload_key:?}, not {key:?}")]
    UploadOfAnotherKey {
        upload_id: String,
        key: String,
        upload_key: String,
    },
    #[error(
        "invalid header name {name:?} (metadata keys must be ASCII letters, digits, '-', '_' or '.')"
    )]
    HeaderName { name: String },
    #[error("invalid value for {name}: S3 headers only carry printable ASCII")]
    HeaderValue { name: String },
    #[error(
        "server-side encryption {algorithm} cannot be combined with a customer-provided key \
         (SSE-C): choose one"
    )]
    SseWithSseC { algorithm: &'static str },
    #[error("the KMS key id is empty (leave it out to use the default KMS key)")]
    EmptyKmsKeyId,
    #[error("unknown canned ACL {acl:?}: use one of {}", CANNED_ACLS.join(", "))]
    UnknownAcl { acl: String },
    #[error("the storage class is empty")]
    EmptyStorageClass,
}

/// A part CompleteMultipartUpload names that the upload does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartMismatch {
    #[error("part {number} of upload {upload_id} was never uploaded")]
    NeverUploaded { upload_id: String, number: u32 },
    #[error("part {number} of upload {upload_id}: ETag {etag} does not match the uploaded part")]
    OtherEtag {
        upload_id: String,
        number: u32,
        etag: String,
    },
    /// S3's `InvalidPart`, which does not say which of the two: its `Code: Message`.
    #[error("a part is missing or has another ETag ({0})")]
    Reported(String),
}

/// What is wrong with an answer of the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadResponse {
    /// A truncated listing without the marker that continues it.
    #[error("{request}: truncated answer without {missing}")]
    TruncatedWithout {
        request: &'static str,
        missing: &'static str,
    },
    /// A successful answer without an element it must carry. `body`: its start, if useful.
    #[error("{request} answered without {missing}{}", colon_then(.body))]
    Missing {
        request: String,
        missing: &'static str,
        body: Option<String>,
    },
    /// A listing that sent a page cursor it had sent before (it would never end).
    #[error("{request}: the server repeated a page cursor")]
    RepeatedCursor { request: &'static str },
    #[error("unexpected HTTP {status} answer to {request}")]
    UnexpectedStatus { request: &'static str, status: u16 },
    #[error("unreadable name in a URL-encoded listing: {0}")]
    UndecodableName(DecodeError),
    /// An answer the S3 client cannot parse (XML, UTF-8): its description.
    #[error("{0}")]
    Unparsable(String),
}

/// Why the store cannot be used as configured; each says what to set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("no bucket name given")]
    NoBucket,
    #[error("the S3 endpoint is empty")]
    EmptyEndpoint,
    #[error("no region given: set AWS_REGION or `region` in the config")]
    NoRegion,
    #[error("no S3 settings")]
    NoS3Settings,
    /// The S3 client refused the settings: its description.
    #[error("cannot set up the S3 client: {0}")]
    Client(String),
    #[error(
        "only one of access_key and secret_key is set: set both (AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY) or neither"
    )]
    HalfCredentials,
    #[error(
        "no AWS credentials found{}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, \
         or access_key/secret_key in the config",
        profile_note(.profile)
    )]
    NoCredentials { profile: Option<String> },
    /// The given keys cannot be used: the credential library's description.
    #[error("cannot use the given AWS credentials: {0}")]
    CredentialsRefused(String),
    /// The credential chain failed while the store runs (a refresh): its description.
    #[error("cannot load AWS credentials: {0}")]
    CredentialsUnavailable(String),
    #[error("local store root {} is not a directory", .0.display())]
    RootNotADirectory(PathBuf),
}

fn parent_kind(special: &bool) -> &'static str {
    if *special {
        "a symlink or special file"
    } else {
        "an object (a file)"
    }
}

fn colon_then(text: &Option<String>) -> String {
    text.as_deref()
        .map(|t| format!(": {t}"))
        .unwrap_or_default()
}

fn profile_note(profile: &Option<String>) -> String {
    profile
        .as_deref()
        .map(|p| format!(" (profile `{p}` was not found or is incomplete)"))
        .unwrap_or_default()
}
