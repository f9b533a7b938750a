//! The filesystem layer's error type. Every operation returns `FsError`; the FUSE adapter turns
//! it into an errno in exactly one place (`fuse::errno`), logging the underlying cause there.

use crate::names::NameError;
use crate::store::StoreError;
use crate::upload::UploadError;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("name too long (255 bytes a name; a whole key at most max_key_length, 1,024 on S3)")]
    NameTooLong,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("read-only mount")]
    ReadOnly,
    #[error("operation not permitted: {0}")]
    NotPermitted(&'static str),
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    #[error("no such extended attribute")]
    NoAttribute,
    #[error("too large: {0}")]
    TooLarge(&'static str),
    #[error("unknown file handle")]
    BadHandle,
    #[error("object store: {0}")]
    Store(#[from] StoreError),
    #[error("upload failed: {0}")]
    Upload(#[from] UploadError),
    #[error("local staging I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Another client changed (or created) the object since the file was opened here: its
    /// version stays under the name, this file's bytes were stored under `kept_as`.
    #[error("{key} was changed by another client; this host's version was stored as {kept_as}")]
    Conflict { key: String, kept_as: String },
    /// An upload that can never succeed; its bytes were kept locally (the message says where).
    #[error("{0}")]
    NotStored(String),
}

pub type FsResult<T> = Result<T, FsError>;

impl From<NameError> for FsError {
    fn from(e: NameError) -> FsError {
        match e {
            NameError::NotFound => FsError::NotFound,
            NameError::NotDir => FsError::NotDir,
            NameError::TooLong | NameError::KeyTooLong => FsError::NameTooLong,
            NameError::Invalid(why) => FsError::Invalid(why),
            NameError::Store(e) => FsError::Store(e),
        }
    }
}
