//! Symlinks, stored as s3fs stores them: an object whose body is the target and whose
//! `x-amz-meta-mode` has the S_IFLNK type bits. A target kept in metadata instead (geesefs)
//! is read too. Hard links cannot exist in S3 and are refused (EPERM, in the adapter).

use std::time::SystemTime;

use bytes::Bytes;

use super::error::{FsError, FsResult};
use super::setattr::Owner;
use super::{Attr, Fs};
use crate::names::inode::{Ino, Kind, Meta, Stat};
use crate::names::rules::check_name;
use crate::names::NameError;

/// Longest target accepted (Linux's PATH_MAX).
const MAX_TARGET: usize = 4096;

impl Fs {
    pub async fn symlink(
        &self,
        parent: Ino,
        name: &std::ffi::OsStr,
        target: &[u8],
        owner: Owner,
    ) -> FsResult<Attr> {
        self.check_writable()?;
        let name = check_name(name)?;
        if target.is_empty() || target.len() > MAX_TARGET {
            return Err(FsError::Invalid("a symlink target is 1 to 4096 bytes"));
        }
        match self.names.resolve(parent, name).await {
            Ok(_) => return Err(FsError::Exists),
            Err(NameError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let key = self.names.child_key(parent, name, Kind::Symlink)?;
        let owner = Owner {
            perm: 0o777,
            ..owner
        };
        let stat = Stat {
            kind: Kind::Symlink,
            size: target.len() as u64,
            mtime: SystemTime::now(),
            etag: None,
            remote: false,
            meta: Some(Meta::shared(self.new_meta(Kind::Symlink, owner))),
        };
        // Stored before it shows: the node is only entered once the PUT succeeded (and only
        // onto a free name: `EEXIST` when another host created it meanwhile).
        let mut opts = self.opts.objects.for_key(&key);
        opts.metadata = self.stored_metadata(stat.meta.as_deref());
        let body = Bytes::copy_from_slice(target);
        let etag = self.put_new(&key, body.clone(), opts).await?;
        let stored = Stat {
            etag,
            remote: true,
            ..stat
        };
        let ino = self.entered(parent, name, stored);
        if let Some(node) = self.names.table().get_mut(ino) {
            node.target_known(body);
        }
        self.referenced(ino)
    }

    /// Hard links cannot exist: S3 cannot keep one object under two keys (a copy would
    /// drift apart at the next write). `EPERM`, as on filesystems without hard links.
    pub fn link() -> FsError {
        FsError::NotPermitted("hard links: S3 cannot keep one object under two names")
    }

    pub async fn readlink(&self, ino: Ino) -> FsResult<Bytes> {
        let (kind, target, in_meta) = {
            let t = self.names.table();
            let node = t.get(ino).ok_or(FsError::NotFound)?;
            let in_meta = node
                .meta()
                .as_ref()
                .and_then(|m| m.posix.symlink_target.clone());
            (node.kind(), node.target().cloned(), in_meta)
        };
        if kind != Kind::Symlink {
            return Err(FsError::Invalid("not a symlink"));
        }
        if let Some(t) = target {
            return Ok(t);
        }
        if let Some(t) = in_meta {
            return Ok(Bytes::from(t));
        }
        let key = self.names.file_key(ino)?;
        let body = self.store.get_range(&key, 0..MAX_TARGET as u64).await?;
        if let Some(node) = self.names.table().get_mut(ino) {
            node.target_known(body.clone());
        }
        Ok(body)
    }
}
