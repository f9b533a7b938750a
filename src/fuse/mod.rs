//! The FUSE adapter: decodes fuser calls, runs the matching `Fs` operation on a tokio task,
//! and answers the kernel from that task. fuser's session loop therefore only dispatches: a
//! slow S3 request delays its own reply, never the next request. Errors become errno in
//! `errno`, the only place that does so. Every operation is counted, with its time, in
//! `stats`.

pub mod errno;
pub mod release;
pub mod stats;

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use fuser::{
    FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::fs::{xattr, Attr, Fs, Owner, SetAttr};
use crate::names::inode::Kind;
use errno::errno;
use stats::FuseStats;

/// Largest write the kernel may send in one request.
const MAX_WRITE: u32 = 1 << 20;

pub struct FuseAdapter {
    fs: Arc<Fs>,
    rt: tokio::runtime::Handle,
    ttl: Duration,
    stats: Arc<FuseStats>,
}

impl FuseAdapter {
    /// Serves `fs` on the runtime `rt`, counting every operation in `stats`.
    pub fn new(fs: Arc<Fs>, rt: tokio::runtime::Handle, stats: Arc<FuseStats>) -> Self {
        let ttl = fs.options().metadata_ttl;
        FuseAdapter { fs, rt, ttl, stats }
    }

    /// Runs the operation `op` on the runtime (`task`, given the filesystem, the attribute
    /// TTL and `op`: it owns the reply and answers when done), counted once it has answered.
    fn run<F, Fut>(&self, op: &'static str, task: F)
    where
        F: FnOnce(Arc<Fs>, Duration, &'static str) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let began = Instant::now();
        let task = task(self.fs.clone(), self.ttl, op);
        let stats = self.stats.clone();
        self.rt.spawn(async move {
            task.await;
            stats.record(op, began.elapsed());
        });
    }

    /// Answers the operation `op` here, on the session's thread (`answer`, given `op`, is
    /// quick), counted like the others.
    fn here(&self, op: &'static str, answer: impl FnOnce(&'static str)) {
        let began = Instant::now();
        answer(op);
        self.stats.record(op, began.elapsed());
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Special(libc::S_IFIFO) => FileType::NamedPipe,
        Kind::Special(libc::S_IFSOCK) => FileType::Socket,
        Kind::Special(libc::S_IFCHR) => FileType::CharDevice,
        Kind::Special(_) => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

/// The caller of a create, mkdir or symlink, and the permission bits it asked for.
fn owner(req: &Request, mode: u32, umask: u32) -> Owner {
    Owner {
        uid: req.uid(),
        gid: req.gid(),
        perm: mode & !umask & 0o7777,
    }
}

/// getxattr/listxattr answer: the size when asked for it (`size` 0), else the bytes if they fit.
fn xattr_reply(reply: ReplyXattr, value: &[u8], size: u32) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() <= size as usize {
        reply.data(value);
    } else {
        reply.error(fuser::Errno::ERANGE);
    }
}

fn empty_reply(reply: ReplyEmpty, op: &str, result: crate::fs::error::FsResult<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(op, &e)),
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        if let Err(max) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(max);
        }
        let _ = config.set_max_background(64);
        for capability in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
        ] {
            if config.add_capabilities(capability).is_err() {
                tracing::debug!(?capability, "not supported by this kernel");
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_owned();
        self.run("lookup", |fs, ttl, op| async move {
            match fs.lookup(parent.0, &name).await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.here("forget", |_| self.fs.forget(ino.0, nlookup));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.run("getattr", |fs, ttl, op| async move {
            match fs.getattr(ino.0).await {
                Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let time = |t: TimeOrNow| match t {
            TimeOrNow::SpecificTime(t) => t,
            TimeOrNow::Now => SystemTime::now(),
        };
        let set = SetAttr {
            size,
            mode,
            uid,
            gid,
            atime: atime.map(time),
            mtime: mtime.map(time),
        };
        self.run("setattr", |fs, ttl, op| async move {
            match fs.setattr(ino.0, set).await {
                Ok(a) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let name = name.to_owned();
        let owner = owner(req, mode, umask);
        self.run("mkdir", |fs, ttl, op| async move {
            match fs.mkdir(parent.0, &name, owner).await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    #[allow(clippy::too_many_arguments)] // fuser's signature
    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let name = name.to_owned();
        let owner = owner(req, mode, umask);
        self.run("mknod", |fs, ttl, op| async move {
            match fs.mknod(parent.0, &name, mode, rdev, owner).await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.run("unlink", |fs, _, op| async move {
            empty_reply(reply, op, fs.unlink(parent.0, &name).await)
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.run("rmdir", |fs, _, op| async move {
            empty_reply(reply, op, fs.rmdir(parent.0, &name).await)
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let name = link_name.to_owned();
        let target = target.as_os_str().as_bytes().to_vec();
        let owner = owner(req, 0o777, 0);
        self.run("symlink", |fs, ttl, op| async move {
            match fs.symlink(parent.0, &name, &target, owner).await {
                Ok(a) => reply.entry(&ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.run("readlink", |fs, _, op| async move {
            match fs.readlink(ino.0).await {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname) = (name.to_owned(), newname.to_owned());
        self.run("rename", |fs, _, op| async move {
            let result = fs
                .rename(parent.0, &name, newparent.0, &newname, flags.bits())
                .await;
            empty_reply(reply, op, result)
        });
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.here("link", |op| reply.error(errno(op, &Fs::link())));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.run("open", |fs, _, op| async move {
            match fs.open(ino.0, flags.0).await {
                Ok((fh, keep_cache)) => {
                    let flags = if keep_cache {
                        FopenFlags::FOPEN_KEEP_CACHE
                    } else {
                        FopenFlags::empty()
                    };
                    reply.opened(FileHandle(fh), flags)
                }
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.run("read", |fs, _, op| async move {
            match fs.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = Bytes::copy_from_slice(data);
        self.run("write", |fs, _, op| async move {
            match fs.write(fh.0, offset, data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.run("flush", |fs, _, op| async move {
            empty_reply(reply, op, fs.flush(fh.0).await)
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.run("release", |fs, _, op| async move {
            empty_reply(reply, op, fs.release(fh.0).await)
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.run("fsync", |fs, _, op| async move {
            empty_reply(reply, op, fs.fsync(fh.0).await)
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.run("opendir", |fs, _, op| async move {
            match fs.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.run("readdir", |fs, _, op| async move {
            let filled = fs
                .fill_dir(fh.0, offset, false, |l| {
                    let e = &l.entry;
                    reply.add(INodeNo(e.ino), l.next, file_type(e.kind), &*e.name)
                })
                .await;
            match filled {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.run("readdirplus", |fs, ttl, op| async move {
            let filled = fs
                .fill_dir(fh.0, offset, true, |l| {
                    let e = &l.entry;
                    // Attributes that are not the stored ones yet are valid for no time: the
                    // kernel looks the name up (and we read its metadata) before using them.
                    let ttl = if l.known { ttl } else { Duration::ZERO };
                    reply.add(
                        INodeNo(e.ino),
                        l.next,
                        &*e.name,
                        &ttl,
                        &file_attr(&l.attr),
                        Generation(0),
                    )
                })
                .await;
            match filled {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.here("releasedir", |op| {
            empty_reply(reply, op, self.fs.releasedir(fh.0))
        });
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.here("fsyncdir", |_| reply.ok());
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = name.to_string_lossy().into_owned();
        if !xattr::may_exist(&name) {
            // SELinux label, ACLs, capabilities: answered right here, without a task.
            return self.here("getxattr", |op| {
                reply.error(errno(op, &xattr::unsupported()))
            });
        }
        self.run("getxattr", |fs, _, op| async move {
            match fs.getxattr(ino.0, &name).await {
                Ok(value) => xattr_reply(reply, &value, size),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.run("listxattr", |fs, _, op| async move {
            match fs.listxattr(ino.0).await {
                Ok(names) => xattr_reply(reply, &names, size),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let name = name.to_string_lossy().into_owned();
        let value = value.to_vec();
        self.run("setxattr", |fs, _, op| async move {
            let result = fs.setxattr(ino.0, &name, &value, flags).await;
            empty_reply(reply, op, result)
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_string_lossy().into_owned();
        self.run("removexattr", |fs, _, op| async move {
            empty_reply(reply, op, fs.removexattr(ino.0, &name).await)
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.here("statfs", |_| {
            let s = self.fs.statfs();
            reply.statfs(
                s.blocks, s.bfree, s.bfree, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
            )
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = name.to_owned();
        let owner = owner(req, mode, umask);
        self.run("create", |fs, ttl, op| async move {
            match fs.create(parent.0, &name, flags, owner).await {
                Ok((a, fh)) => reply.created(
                    &ttl,
                    &file_attr(&a),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(errno(op, &e)),
            }
        });
    }
}
