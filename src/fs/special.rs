//! Special files (`mknod`): FIFOs, sockets, character and block devices, stored as s3fs
//! stores them — an empty object whose `x-amz-meta-mode` carries the file type bits — plus the
//! device number in `x-amz-meta-rdev`, so `stat` shows type and major:minor after a remount
//! and `rsync --devices --specials` or `tar -x` round-trip them. bucketfs only keeps the
//! inode: the kernel carries a FIFO's data between the processes of this host, and a mount
//! is `nodev`, so a device node cannot be opened through it.

use std::time::SystemTime;

use bytes::Bytes;

use super::error::{FsError, FsResult};
use super::setattr::Owner;
use super::{Attr, Fs};
use crate::names::inode::{Ino, Kind, Meta, Stat};
use crate::names::rules::check_name;
use crate::names::NameError;

impl Fs {
    /// Creates `parent/name` of the type in `mode` (a regular file when it has none) with
    /// `owner`'s permission bits; `rdev` is kept for character and block devices.
    pub async fn mknod(
        &self,
        parent: Ino,
        name: &std::ffi::OsStr,
        mode: u32,
        rdev: u32,
        owner: Owner,
    ) -> FsResult<Attr> {
        let type_bits = mode & libc::S_IFMT;
        if type_bits == 0 || type_bits == libc::S_IFREG {
            // An empty regular file, closed at once (stored as any closed file is).
            let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
            let (attr, fh) = self.create(parent, name, flags, owner).await?;
            let flushed = self.flush(fh).await;
            self.release(fh).await?;
            return flushed.map(|()| attr);
        }
        let kind = Kind::special(mode).ok_or(FsError::Invalid("mknod of an unknown file type"))?;
        self.check_writable()?;
        let name = check_name(name)?;
        match self.names.resolve(parent, name).await {
            Ok(_) => return Err(FsError::Exists),
            Err(NameError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let key = self.names.child_key(parent, name, kind)?;
        let mut meta = self.new_meta(kind, owner);
        if matches!(kind, Kind::Special(libc::S_IFCHR | libc::S_IFBLK)) {
            meta.posix.rdev = Some(rdev);
        }
        // Stored before it shows: the node is only entered once the PUT succeeded (and only
        // onto a free name: `EEXIST` when another host created it meanwhile).
        let mut opts = self.opts.objects.for_key(&key);
        opts.metadata = self.stored_metadata(Some(&meta));
        let etag = self.put_new(&key, Bytes::new(), opts).await?;
        let stat = Stat {
            kind,
            size: 0,
            mtime: SystemTime::now(),
            etag,
            remote: true,
            meta: Some(Meta::shared(meta)),
        };
        let ino = self.entered(parent, name, stat);
        self.referenced(ino)
    }
}
