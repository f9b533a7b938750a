//! What can go wrong while finding a name or learning its object: the name is missing, a
//! path component is no directory, the kernel handed a name S3 cannot hold, or the store
//! failed. `fs` turns each into its `FsError` (and so into one errno).

use crate::store::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum NameError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotDir,
    #[error("name longer than 255 bytes")]
    TooLong,
    #[error("the path's key would be longer than the server holds (max_key_length)")]
    KeyTooLong,
    #[error("invalid name: {0}")]
    Invalid(&'static str),
    #[error("object store: {0}")]
    Store(#[from] StoreError),
}

pub type NameResult<T> = Result<T, NameError>;
