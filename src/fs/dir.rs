//! Directories: readdir (the names owner lists; see `names::listing`), mkdir (a `dir/`
//! marker object) and rmdir (only when nothing lies under the prefix).
//!
//! A listing is taken once per open directory handle, at the first readdir, and served by
//! offset from then on, so a directory that changes while it is read never repeats or skips
//! entries. A listing from the store is served as it arrives (`names::Arriving`): the kernel
//! reads the first pages while the next ones are listed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::error::{FsError, FsResult};
use super::handle::Handle;
use super::setattr::Owner;
use super::{Attr, Fs};
use crate::names::inode::{Ino, Kind, Meta, Stat};
use crate::names::listing_inos as inos;
use crate::names::rules::check_name;
use crate::names::NameError;
use crate::names::{Arriving, DirEntry, Names, META_RUN_AHEAD};
use crate::store::PutOptions;

/// One entry of a readdirplus answer (see `Fs::readdir_attrs`).
#[derive(Debug, Clone)]
pub struct Listed {
    /// The offset of the entry after it.
    pub next: u64,
    pub entry: DirEntry,
    pub attr: Attr,
    /// The attributes are the stored ones; if not, the kernel must not keep them.
    pub known: bool,
}

pub const DIRECTORY_CONTENT_TYPE: &str = "application/x-directory";

/// Directory entries prepared at a time for one readdir reply (their metadata is fetched
/// in parallel first).
const READDIR_BATCH: usize = 64;

impl Fs {
    pub async fn opendir(&self, ino: Ino) -> FsResult<u64> {
        let t = self.names.table();
        let node = t.get(ino).ok_or(FsError::NotFound)?;
        if node.kind() != Kind::Dir {
            return Err(FsError::NotDir);
        }
        drop(t);
        self.names.dir_opened(ino);
        Ok(self.handles.insert(Handle::Dir {
            ino,
            entries: std::sync::Mutex::new(None),
            meta_ahead: Default::default(),
        }))
    }

    pub fn releasedir(&self, fh: u64) -> FsResult<()> {
        if let Handle::Dir { ino, .. } = &*self.handles.remove(fh)? {
            self.names.dir_closed(*ino);
        }
        Ok(())
    }

    /// Up to `count` entries from `offset` of the directory open as `fh`, each with its
    /// attributes, the metadata of listed entries fetched first when `listing_metadata` says
    /// so or a tool asks for the attributes of the directory's entries in order
    /// (`Names::attrs_walked`). Each comes with the offset of the entry after it, and with
    /// whether its attributes are known (see `Names::attrs_known`): an entry whose metadata
    /// was not read (switched off, or its HEAD failed) must not be cached by the kernel.
    pub async fn readdir_attrs(
        self: &Arc<Self>,
        fh: u64,
        offset: u64,
        count: usize,
    ) -> FsResult<Vec<Listed>> {
        let listing = self.listing(fh, offset).await?;
        let start = offset as usize;
        let batch = listing.get(start, count).await?;
        let end = start + batch.len();
        let handle = self.handles.get(fh)?;
        let Handle::Dir {
            ino: dir,
            meta_ahead,
            ..
        } = &*handle
        else {
            return Err(FsError::BadHandle);
        };
        let dir = *dir;
        if self.opts.listing_metadata || self.names.attrs_walked(dir) {
            // Run ahead: the next entries' HEADs start now (of those listed so far), so the
            // next readdir call finds them done.
            let ahead = listing.arrived_len().clamp(end, end + META_RUN_AHEAD);
            let from = meta_ahead.fetch_max(ahead, Ordering::Relaxed).max(end);
            if from < ahead {
                let next = inos(&listing.arrived(from, ahead));
                let names = self.names.clone();
                tokio::spawn(async move { names.ensure_meta_all(&next).await });
            }
            let now = inos(&batch);
            self.names.ensure_meta_all(&now).await;
            self.names.meta_settled(&now).await;
        }
        let t = self.names.table();
        let mut out = Vec::with_capacity(batch.len());
        for (i, e) in batch.iter().enumerate() {
            // An entry's inode may have been replaced (a listed "file" that is a symlink):
            // unless it still has its name here, the name says which.
            let ino = match &*e.name {
                "." | ".." => e.ino,
                name => match t.get(e.ino) {
                    Some(n) if n.linked() && n.parent() == dir && n.name() == name => e.ino,
                    _ => t.child(dir, name).unwrap_or(e.ino),
                },
            };
            let Some(node) = t.get(ino) else { continue };
            out.push(Listed {
                next: (start + i + 1) as u64,
                entry: DirEntry {
                    ino,
                    kind: node.kind(),
                    name: e.name.clone(),
                },
                attr: self.names.attr_of(ino, node),
                known: Names::attrs_known(ino, node),
            });
        }
        Ok(out)
    }

    /// Hands `add` the entries of the directory open as `fh` from `offset` on, a batch at a
    /// time, until `add` says the reply is full (true) or the entries end. With `plus`
    /// (readdirplus), every entry the reply took other than `.` and `..` gives the kernel a
    /// reference, as a lookup does.
    pub async fn fill_dir(
        self: &Arc<Self>,
        fh: u64,
        mut offset: u64,
        plus: bool,
        mut add: impl FnMut(&Listed) -> bool,
    ) -> FsResult<()> {
        loop {
            let batch = self.readdir_attrs(fh, offset, READDIR_BATCH).await?;
            let Some(last) = batch.last() else {
                return Ok(());
            };
            offset = last.next;
            for listed in &batch {
                if add(listed) {
                    return Ok(());
                }
                let name = &*listed.entry.name;
                if plus && name != "." && name != ".." {
                    // (gone meanwhile: the kernel's forget will find nothing to drop)
                    let _ = self.names.referenced(listed.entry.ino);
                }
            }
        }
    }

    /// The whole listing of the directory open as `fh` (`.` and `..` first), once complete.
    pub async fn readdir(self: &Arc<Self>, fh: u64, offset: u64) -> FsResult<Arc<Vec<DirEntry>>> {
        let listing = self.listing(fh, offset).await?;
        Ok(Arc::new(listing.all().await?))
    }

    /// The listing of the directory open as `fh` as it arrives; readdir serves entries from
    /// an offset into it. Listed at offset 0, reused afterwards.
    async fn listing(self: &Arc<Self>, fh: u64, offset: u64) -> FsResult<Arc<Arriving>> {
        let handle = self.handles.get(fh)?;
        let Handle::Dir { ino, entries, .. } = &*handle else {
            return Err(FsError::BadHandle);
        };
        if offset > 0 {
            if let Some(e) = entries.lock().unwrap().clone() {
                return Ok(e);
            }
        }
        let listing = self.names.listing(*ino).await?;
        *entries.lock().unwrap() = Some(listing.clone());
        Ok(listing)
    }

    pub async fn mkdir(&self, parent: Ino, name: &std::ffi::OsStr, owner: Owner) -> FsResult<Attr> {
        self.check_writable()?;
        let name = check_name(name)?;
        match self.names.resolve(parent, name).await {
            Ok(_) => return Err(FsError::Exists),
            Err(NameError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let key = self.names.child_key(parent, name, Kind::Dir)?;
        let meta = self.new_meta(Kind::Dir, owner);
        let mtime = SystemTime::now();
        let opts = PutOptions {
            content_type: Some(DIRECTORY_CONTENT_TYPE.into()),
            metadata: self.stored_metadata(Some(&meta)),
            ..self.opts.objects.for_key(&key)
        };
        // Only while no marker is there: another host's means the directory exists (`EEXIST`).
        self.put_new(&key, Bytes::new(), opts).await?;
        let stat = Stat {
            kind: Kind::Dir,
            size: 0,
            mtime,
            etag: None,
            remote: true,
            meta: Some(Meta::shared(meta)),
        };
        let ino = self.entered(parent, name, stat);
        // Just made: nothing lies under it, so lookups inside need not ask the store.
        self.names.made_empty(ino);
        self.referenced(ino)
    }

    /// `parent/name`, just stored as `stat` says, enters the names (its directory's times
    /// move). Returns its inode.
    pub(super) fn entered(&self, parent: Ino, name: &str, stat: Stat) -> Ino {
        self.names.name_appeared(parent, name);
        let ino = self
            .names
            .table()
            .upsert(parent, name, stat, Instant::now());
        self.names.entries_changed(&[parent]);
        ino
    }

    pub async fn rmdir(&self, parent: Ino, name: &std::ffi::OsStr) -> FsResult<()> {
        self.check_writable()?;
        let name = check_name(name)?;
        let ino = self.names.resolve(parent, name).await?;
        if self.names.table().get(ino).map(|n| n.kind()) != Some(Kind::Dir) {
            return Err(FsError::NotDir);
        }
        let prefix = self.names.dir_prefix(ino)?;
        self.ensure_empty(ino, &prefix).await?;
        self.store.delete(&prefix).await?;
        self.names.table().unlink(parent, name);
        self.names.entries_changed(&[parent]);
        Ok(())
    }

    /// `NotEmpty` unless nothing but the marker lies under `prefix` and no file is pending here.
    pub(super) async fn ensure_empty(&self, ino: Ino, prefix: &str) -> FsResult<()> {
        let pending = {
            let t = self.names.table();
            let node = t.get(ino).ok_or(FsError::NotFound)?;
            let pending = node
                .child_inos()
                .any(|c| t.get(c).is_some_and(|n| n.content().is_some()));
            pending
        };
        if pending {
            return Err(FsError::NotEmpty);
        }
        let page = self.store.list_page(prefix, Some("/"), None, 2).await?;
        if page.objects.iter().any(|o| o.key != prefix) || !page.prefixes.is_empty() {
            return Err(FsError::NotEmpty);
        }
        Ok(())
    }
}
