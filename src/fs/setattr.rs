//! setattr and the metadata it changes: truncate, chmod, chown and utimens.
//!
//! A size change is a content change (`file`). Mode, owner and times are POSIX metadata
//! stored s3fs-style in the object's user metadata (`metadata`). They are changed on the node
//! first (`meta_dirty`) and then stored:
//! - a file whose content is still to be uploaded carries them on that upload (rsync's
//!   write, close, chmod, utimens, rename becomes one PUT);
//! - any other file or symlink is copied onto itself with the REPLACE directive (a multipart
//!   copy above 5 GiB), keeping its object options;
//! - a directory's live on its `dir/` marker, which is written anew.
//!
//! The `ignore_chmod` / `ignore_chown` / `ignore_utimens` switches make those calls succeed
//! without changing or storing anything.

use std::time::SystemTime;

use bytes::Bytes;

use super::dir::DIRECTORY_CONTENT_TYPE;
use super::error::{FsError, FsResult};
use super::{Attr, Fs};
use crate::names::inode::{Ino, Kind, Meta, Node};
use crate::names::posix as metadata;
use crate::store::{Condition, PutOptions};

/// What one setattr call changes (`None` = unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub size: Option<u64>,
    /// Permission bits (the file type bits are ignored).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

/// Who creates a file, directory or symlink, and with which permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits, the umask already applied.
    pub perm: u32,
}

impl Fs {
    pub async fn setattr(&self, ino: Ino, set: SetAttr) -> FsResult<Attr> {
        if let Some(size) = set.size {
            self.truncate(ino, size).await?;
        }
        let set = SetAttr {
            mode: set.mode.filter(|_| !self.opts.ignore_chmod),
            uid: set.uid.filter(|_| !self.opts.ignore_chown),
            gid: set.gid.filter(|_| !self.opts.ignore_chown),
            atime: set.atime.filter(|_| !self.opts.ignore_utimens),
            mtime: set.mtime.filter(|_| !self.opts.ignore_utimens),
            size: None,
        };
        if set != SetAttr::default() {
            self.check_writable()?;
            self.names.ensure_meta(ino).await?;
            {
                let mut t = self.names.table();
                let node = t.get_mut(ino).ok_or(FsError::NotFound)?;
                apply(node, &set);
            }
            self.store_meta(ino).await?;
        }
        self.getattr(ino).await
    }

    /// Stores the node's changed metadata (see the module comment for how).
    pub(super) async fn store_meta(&self, ino: Ino) -> FsResult<()> {
        let (kind, pending, remote, size, meta) = {
            let t = self.names.table();
            let node = t.get(ino).ok_or(FsError::NotFound)?;
            if !node.meta_dirty() || !node.linked() {
                return Ok(()); // (an unlinked file, still open, has no object to hold it)
            }
            let pending = node.content().is_some_and(|c| c.is_dirty());
            (
                node.kind(),
                pending,
                node.remote(),
                node.stored_size(),
                node.meta().cloned().unwrap_or_default(),
            )
        };
        if pending {
            // Rides on the upload still to come; the journal must say so meanwhile.
            return self.journal_update(ino).await;
        }
        let key = self.names.meta_key(ino, kind)?;
        let opts = self.put_options(&key, ino)?;
        let mut copied_etag = None;
        match kind {
            Kind::Dir if key.is_empty() => {} // the bucket's root has no marker
            Kind::Dir => {
                let opts = PutOptions {
                    content_type: Some(DIRECTORY_CONTENT_TYPE.into()),
                    ..opts
                };
                self.store.put(&key, Bytes::new(), &opts).await?;
            }
            _ if !remote => {} // nothing stored yet: the first upload carries it
            Kind::Symlink => {
                // Written anew with its target as the body (also moves a target kept in
                // metadata, geesefs style, into the body, where bucketfs keeps it).
                let target = self.readlink(ino).await?;
                self.store.put(&key, target, &opts).await?;
            }
            _ => {
                let opts = PutOptions {
                    content_type: meta.content_type.clone().or(opts.content_type),
                    ..opts
                };
                copied_etag = Some(self.uploader.copy(&key, &key, size, &opts, false).await?);
            }
        }
        let mut t = self.names.table();
        if let Some(node) = t.get_mut(ino) {
            if let (Some(c), Some(etag)) = (&node.content(), &copied_etag) {
                // An open file still reads its unchanged bytes from the object: from the
                // copy now, whose ETag is new (reads pinned to the old one would fail).
                if c.base_key().as_deref() == Some(key.as_str()) {
                    c.base_moved(&key, etag.clone());
                }
                // Its next upload replaces the copy, not another client's version: the
                // copy's new ETag is no conflict.
                if let (Some(b @ Condition::Is(_)), Some(copied_over)) = (c.based_on(), node.etag())
                {
                    if b.holds_for(Some(&copied_over)) {
                        c.set_based_on(etag.clone().map(Condition::Is));
                    }
                }
            }
            // A copy may have a new ETag (multipart): the one its read-back saw.
            node.meta_stored(copied_etag);
        }
        Ok(())
    }

    /// The options of a new object at `key` (from the configuration) with `ino`'s metadata.
    pub(super) fn put_options(&self, key: &str, ino: Ino) -> FsResult<PutOptions> {
        let mut opts = self.opts.objects.for_key(key);
        let t = self.names.table();
        let node = t.get(ino).ok_or(FsError::NotFound)?;
        opts.metadata = self.stored_metadata(node.meta());
        Ok(opts)
    }

    /// The user metadata to store for a node: its POSIX attributes and its `user.*`
    /// attributes. An mtime is stored only when one was set (utimens, or read from the
    /// object and not changed by a write since): otherwise the object's Last-Modified, the
    /// time of the upload that follows the last write, is the mtime.
    pub(super) fn stored_metadata(&self, meta: Option<&Meta>) -> crate::store::UserMetadata {
        let meta = meta.cloned().unwrap_or_default();
        let mut out = meta.user;
        metadata::encode(&meta.posix, &mut out, self.opts.aws_file_metadata);
        out
    }

    /// New POSIX metadata for a node created by `owner`.
    pub(super) fn new_meta(&self, kind: Kind, owner: Owner) -> Meta {
        let mut meta = Meta::default();
        meta.posix.mode = Some(kind.st_mode(owner.perm));
        meta.posix.uid = Some(owner.uid);
        meta.posix.gid = Some(owner.gid);
        meta
    }
}

/// Applies the changes of `set` to the node (its size aside).
fn apply(node: &mut Node, set: &SetAttr) {
    node.change_posix(|kind, posix, node_mtime| {
        if let Some(mode) = set.mode {
            posix.mode = Some(kind.st_mode(mode));
        }
        if let Some(uid) = set.uid {
            posix.uid = Some(uid);
        }
        if let Some(gid) = set.gid {
            posix.gid = Some(gid);
        }
        if let Some(atime) = set.atime {
            posix.atime = Some(atime);
        }
        if let Some(mtime) = set.mtime {
            posix.mtime = Some(mtime);
            *node_mtime = mtime;
        }
    });
    if set.mtime.is_some() {
        node.times_set();
    }
}
