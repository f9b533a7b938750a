//! The one place where errors become errno values. Unexpected failures (store errors, staging
//! I/O) are logged here with their cause, once, so the user can see why a call got EIO.
//!
//! An I/O error keeps its errno all the way here (`FsError::Io`, `UploadError::Staging`,
//! `StoreError::Io` of the local store): the application gets ENOSPC, EACCES, ... as the file
//! system underneath gave it. Every other failure of the store or of an upload is EIO, except
//! the few with a POSIX meaning (`store_errno`).

use std::io;

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
        FsError::Store(s) => store_errno(s),
        FsError::Upload(u) => upload_errno(u),
        FsError::NotStored(_) | FsError::Conflict { .. } => Errno::EIO,
        FsError::Io(io) => io_errno(io),
    };
    match err {
        FsError::Store(_)
        | FsError::Upload(_)
        | FsError::Io(_)
        | FsError::NotStored(_)
        | FsError::Conflict { .. } => {
            tracing::warn!(op, error = %err, "operation failed");
        }
        _ => tracing::debug!(op, error = %err, "operation refused"),
    }
    e
}

/// The errno of an I/O error: its own, or EIO when it has none (an error made up in code).
fn io_errno(err: &io::Error) -> Errno {
    err.raw_os_error()
        .map(Errno::from_i32)
        .unwrap_or(Errno::EIO)
}

fn upload_errno(err: &UploadError) -> Errno {
    match err {
        UploadError::Store(s) => store_errno(s),
        UploadError::Staging(io) => io_errno(io),
        UploadError::StagedShort
        | UploadError::TooManyParts { .. }
        | UploadError::TaskFailed { .. }
        | UploadError::CopyNotKept { .. }
        | UploadError::CopySendsNoData => Errno::EIO,
    }
}

/// Every variant is listed: a new one needs a decision here.
fn store_errno(err: &StoreError) -> Errno {
    match err {
        StoreError::NotFound => Errno::ENOENT,
        StoreError::AccessDenied(_) | StoreError::BadCredentials(_) => Errno::EACCES,
        StoreError::PreconditionFailed => Errno::ESTALE,
        StoreError::Io { source, .. } => io_errno(source),
        StoreError::NoSuchBucket
        | StoreError::InvalidRange
        | StoreError::Unreachable(_)
        | StoreError::Timeout(_)
        | StoreError::Server { .. }
        | StoreError::SseCustomerKey(_)
        | StoreError::MetadataFile { .. }
        | StoreError::KeyRefused { .. }
        | StoreError::InvalidRequest(_)
        | StoreError::InvalidPart(_)
        | StoreError::Rejected { .. }
        | StoreError::NotImplemented(_)
        | StoreError::Unsupported(_)
        | StoreError::WrongRegion(_)
        | StoreError::BadResponse(_)
        | StoreError::TaskFailed { .. }
        | StoreError::ReadAheadDropped
        | StoreError::Setup(_)
        | StoreError::Client(_) => Errno::EIO,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{
        BadResponse, InvalidRequest, KeyRefusal, PartMismatch, SetupError, StoreError,
    };

    fn store(e: StoreError) -> Errno {
        errno("t", &FsError::Store(e))
    }

    fn local_io(errno: i32) -> StoreError {
        StoreError::io("/srv/data/f", io::Error::from_raw_os_error(errno))
    }

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

    #[test]
    fn store_errors_with_a_posix_meaning_keep_it() {
        assert_eq!(store(StoreError::NotFound), Errno::ENOENT);
        assert_eq!(store(StoreError::AccessDenied("x".into())), Errno::EACCES);
        assert_eq!(store(StoreError::BadCredentials("x".into())), Errno::EACCES);
        assert_eq!(store(StoreError::PreconditionFailed), Errno::ESTALE);
    }

    #[test]
    fn a_local_store_io_error_gives_its_own_errno() {
        for errno in [libc::ENOSPC, libc::EACCES, libc::EROFS, libc::ENAMETOOLONG] {
            assert_eq!(store(local_io(errno)), Errno::from_i32(errno));
            let through_upload = FsError::Upload(UploadError::Store(local_io(errno)));
            assert_eq!(super::errno("t", &through_upload), Errno::from_i32(errno));
        }
        // An I/O error made up in code has no errno: EIO.
        let made_up = StoreError::io("/srv/data/f", io::Error::other("no errno"));
        assert_eq!(store(made_up), Errno::EIO);
    }

    #[test]
    fn a_staging_io_error_gives_its_own_errno() {
        let staging = |e: io::Error| FsError::Upload(UploadError::Staging(Arc::new(e)));
        let e = staging(io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(errno("t", &e), Errno::ENOSPC);
        assert_eq!(errno("t", &staging(io::Error::other("x"))), Errno::EIO);
        let e = FsError::Io(io::Error::from_raw_os_error(libc::EDQUOT));
        assert_eq!(errno("t", &e), Errno::EDQUOT);
    }

    #[test]
    fn other_store_and_upload_failures_are_eio() {
        let store_errors = [
            StoreError::NoSuchBucket,
            StoreError::InvalidRange,
            StoreError::MetadataFile {
                path: "/srv/data/.bucketfs-local/meta/f.toml".into(),
                detail: "x".into(),
            },
            StoreError::KeyRefused {
                key: "a//b".into(),
                reason: KeyRefusal::EmptySegment,
            },
            StoreError::InvalidRequest(InvalidRequest::EmptyCopyRange { start: 1, end: 1 }),
            StoreError::InvalidPart(PartMismatch::NeverUploaded {
                upload_id: "u".into(),
                number: 2,
            }),
            StoreError::Rejected {
                status: 400,
                detail: "InvalidArgument: x".into(),
            },
            StoreError::NotImplemented("x".into()),
            StoreError::Unsupported("x"),
            StoreError::WrongRegion("x".into()),
            StoreError::BadResponse(BadResponse::RepeatedCursor { request: "x" }),
            StoreError::TaskFailed {
                task: "a task",
                cause: "panicked".into(),
            },
            StoreError::ReadAheadDropped,
            StoreError::Setup(SetupError::NoBucket),
            StoreError::Client("x".into()),
        ];
        for e in store_errors {
            assert_eq!(store(e.clone()), Errno::EIO, "{e:?}");
        }
        let upload_errors = [
            UploadError::StagedShort,
            UploadError::TooManyParts { max: 10_000 },
            UploadError::TaskFailed {
                cause: "panicked".into(),
            },
            UploadError::CopyNotKept {
                from: "a".into(),
                to: "b".into(),
                tries: 3,
            },
            UploadError::CopySendsNoData,
        ];
        for e in upload_errors {
            assert_eq!(errno("t", &FsError::Upload(e.clone())), Errno::EIO, "{e:?}");
        }
    }
}
