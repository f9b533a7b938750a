//! Where a file's bytes are: the read-only attribute `s3.state`, so a script can ask of one
//! file whether it is in the bucket yet.
//!
//! The state is computed from what the owners already know, without a request: the node's
//! local content (changed here and not uploaded: dirty), whether an upload of it is in flight
//! (it holds its upload lock), why its last upload failed, and the entries an earlier daemon
//! left in the journal for its key. A file with nothing pending is `stored`, with the ETag
//! the names know (current within the metadata TTL, as `s3.etag`).

use std::fmt;

use super::Fs;
use crate::localfile::content::Content;
use crate::names::inode::{Ino, Kind};

/// What `s3.state` says of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadState {
    /// Written here, not uploaded yet: journaled and waiting for the write-back delay, or
    /// still open.
    Local,
    /// An upload of it is in flight.
    Uploading,
    /// In the bucket, nothing pending; the object's ETag when the mount knows it
    /// (directories show none).
    Stored(Option<String>),
    /// Its last upload failed (why): it is tried again later.
    Failed(String),
}

impl fmt::Display for UploadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadState::Local => f.write_str("local"),
            UploadState::Uploading => f.write_str("uploading"),
            UploadState::Stored(Some(etag)) => write!(f, "stored {etag}"),
            UploadState::Stored(None) => f.write_str("stored"),
            UploadState::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// The state of content that is not in the bucket yet.
fn pending_state(content: &Content) -> UploadState {
    if content.upload_in_flight() {
        UploadState::Uploading
    } else if let Some(why) = content.last_failure() {
        UploadState::Failed(why)
    } else {
        UploadState::Local
    }
}

impl Fs {
    /// Where `ino`'s bytes are now (see `UploadState`); `None` when the inode is gone.
    pub fn upload_state(&self, ino: Ino) -> Option<UploadState> {
        let (etag, key) = {
            let t = self.names.table();
            let node = t.get(ino)?;
            if let Some(content) = node.content().filter(|c| c.is_dirty()) {
                return Some(pending_state(content));
            }
            if node.kind() == Kind::Dir {
                return Some(UploadState::Stored(None));
            }
            let key = t.path(ino).map(|p| format!("{}{p}", self.names.prefix()));
            (node.etag().map(|e| e.trim_matches('"').to_string()), key)
        };
        // An earlier daemon's entry for this key is not uploaded yet (see `Orphan`).
        if let Some(orphan) = key.and_then(|k| self.files.orphan_for_key(&k)) {
            return Some(pending_state(&orphan.content));
        }
        Some(UploadState::Stored(etag))
    }
}
