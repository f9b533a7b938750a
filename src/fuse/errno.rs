//! The one place where errors become errno values. Unexpected failures (store errors, staging
//! I/O) are logged here with their cause, once, so the user can see why a call got EIO.

use fuser::Errno;

use crate::fs::error::FsError;
use crate::store::StoreError;
use crate::upload::UploadError;

pub fn errno(op: &str, err: &FsError) -> Errno {
    let e = match err {
        FsError::NotFound => Errno::ENOENT,
        FsError::Exists => Errno::EEXIST,
        FsError::NotEmpty => Errno::ENOTEMPTY,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::NameTooLong => Errno::ENAMETOOLONG,
        FsError::Invalid(_) => Errno::EINVAL,
        FsError::ReadOnly => Errno::EROFS,
        FsError::NotPermitted(_) => Errno::EPERM,
        FsError::Unsupported(_) => Errno::ENOTSUP,
        FsError::NoAttribute => Errno::ENODATA,
        FsError::TooLarge(_) => Errno::E2BIG,
        FsError::BadHandle => Errno::EBADF,
        FsError::Store(s) | FsError::Upload(UploadError::Store(s)) => store_errno(s),
        FsError::Upload(_) | FsError::NotStored(_) => Errno::EIO,
        FsError::Io(io) => io.raw_os_error().map(Errno::from_i32).unwrap_or(Errno::EIO),
    };
    match err {
        FsError::Store(_) | FsError::Upload(_) | FsError::Io(_) | FsError::NotStored(_) => {
            tracing::warn!(op, error = %err, "operation failed");
        }
        _ => tracing::debug!(op, error = %err, "operation refused"),
    }
    e
}

fn store_errno(err: &StoreError) -> Errno {
    match err {
        StoreError::NotFound => Errno::ENOENT,
        StoreError::AccessDenied(_) | StoreError::BadCredentials(_) => Errno::EACCES,
        StoreError::PreconditionFailed => Errno::ESTALE,
        _ => Errno::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_errors_map_to_their_errno() {
        assert_eq!(errno("t", &FsError::NotEmpty), Errno::ENOTEMPTY);
        assert_eq!(errno("t", &FsError::ReadOnly), Errno::EROFS);
        assert_eq!(errno("t", &FsError::NameTooLong), Errno::ENAMETOOLONG);
    }

    #[test]
    fn store_failures_after_retries_are_eio() {
        let e = FsError::Store(StoreError::Server {
            status: 503,
            message: "SlowDown".into(),
        });
        assert_eq!(errno("t", &e), Errno::EIO);
        let e = FsError::Upload(UploadError::Store(StoreError::Unreachable("x".into())));
        assert_eq!(errno("t", &e), Errno::EIO);
    }
}
