//! Directories: listing (ListObjectsV2 with a `/` delimiter, every page), mkdir (a `dir/`
//! marker object) and rmdir (only when nothing lies under the prefix).
//!
//! A listing is taken once per open directory handle, at the first readdir, and served by
//! offset from then on, so a directory that changes while it is read never repeats or skips
//! entries. Files written here but not yet uploaded are merged in.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::error::{FsError, FsResult};
use super::handle::Handle;
use super::inode::{Ino, Kind, Stat};
use super::names::{check_name, showable};
use super::setattr::Owner;
use super::{Attr, Fs};
use crate::store::PutOptions;

/// One entry of a directory listing as served to readdir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub kind: Kind,
    pub name: String,
}

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

/// How many entries past the ones being returned readdir starts fetching metadata for.
const META_RUN_AHEAD: usize = 512;

/// The inodes of `entries` other than `.` and `..`.
pub(super) fn inos(entries: &[DirEntry]) -> Vec<Ino> {
    entries
        .iter()
        .filter(|e| e.name != "." && e.name != "..")
        .map(|e| e.ino)
        .collect()
}

/// The `.` and `..` entries every listing starts with.
fn dots(ino: Ino, parent: Ino) -> Vec<DirEntry> {
    let dir = |ino, name: &str| DirEntry {
        ino,
        kind: Kind::Dir,
        name: name.into(),
    };
    vec![dir(ino, "."), dir(parent, "..")]
}

impl Fs {
    pub async fn opendir(&self, ino: Ino) -> FsResult<u64> {
        let t = self.table();
        let node = t.get(ino).ok_or(FsError::NotFound)?;
        if node.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        Ok(self.handles.insert(Handle::Dir {
            ino,
            entries: std::sync::Mutex::new(None),
            meta_ahead: Default::default(),
        }))
    }

    pub fn releasedir(&self, fh: u64) -> FsResult<()> {
        self.handles.remove(fh).map(|_| ())
    }

    /// Up to `count` entries from `offset` of the directory open as `fh`, each with its
    /// attributes, the metadata of listed entries fetched first (unless switched off by
    /// `listing_metadata`). Each comes with the offset of the entry after it, and with
    /// whether its attributes are known (see `Fs::attrs_known`): an entry whose metadata
    /// was not read (switched off, or its HEAD failed) must not be cached by the kernel.
    pub async fn readdir_attrs(
        self: &Arc<Self>,
        fh: u64,
        offset: u64,
        count: usize,
    ) -> FsResult<Vec<Listed>> {
        let all = self.readdir(fh, offset).await?;
        let start = (offset as usize).min(all.len());
        let end = (start + count).min(all.len());
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
        let batch = &all[start..end];
        if self.opts.listing_metadata {
            // Run ahead: the next entries' HEADs start now, so the next readdir call finds
            // them done.
            let ahead = (end + META_RUN_AHEAD).min(all.len());
            let from = meta_ahead.fetch_max(ahead, Ordering::Relaxed).max(end);
            if from < ahead {
                let (fs, next) = (self.clone(), inos(&all[from..ahead]));
                tokio::spawn(async move { fs.ensure_meta_all(&next).await });
            }
            let now = inos(batch);
            self.ensure_meta_all(&now).await;
            self.meta_settled(&now).await;
        }
        let t = self.table();
        let mut out = Vec::with_capacity(batch.len());
        for (i, e) in batch.iter().enumerate() {
            // An entry's inode may have been replaced (a listed "file" that is a symlink).
            let ino = match e.name.as_str() {
                "." | ".." => e.ino,
                name => t.child(dir, name).unwrap_or(e.ino),
            };
            let Some(node) = t.get(ino) else { continue };
            out.push(Listed {
                next: (start + i + 1) as u64,
                entry: DirEntry {
                    ino,
                    kind: node.kind,
                    name: e.name.clone(),
                },
                attr: self.attr_of(ino, node),
                known: Self::attrs_known(ino, node),
            });
        }
        Ok(out)
    }

    /// The whole listing of the directory open as `fh` (`.` and `..` first); readdir serves
    /// entries from an offset into it. Listed at offset 0, reused afterwards.
    pub async fn readdir(self: &Arc<Self>, fh: u64, offset: u64) -> FsResult<Arc<Vec<DirEntry>>> {
        let handle = self.handles.get(fh)?;
        let Handle::Dir { ino, entries, .. } = &*handle else {
            return Err(FsError::BadHandle);
        };
        if offset > 0 {
            if let Some(e) = entries.lock().unwrap().clone() {
                return Ok(e);
            }
        }
        self.walk_ahead(*ino);
        let listed = Arc::new(self.list_dir(*ino).await?);
        *entries.lock().unwrap() = Some(listed.clone());
        Ok(listed)
    }

    async fn list_dir(self: &Arc<Self>, ino: Ino) -> FsResult<Vec<DirEntry>> {
        // A read-ahead listing of this directory under way (see `walk`): its result is ours.
        self.listings.settled(&ino).await;
        if self.listed.contains(&ino) {
            return self.list_from_table(ino);
        }
        let dir_prefix = self.dir_prefix(ino)?;
        let started = Instant::now();
        let early_metadata = |files: &[(String, Stat)]| {
            if self.opts.listing_metadata {
                self.start_metadata(ino, files, started);
            }
        };
        let children = self
            .list_children(&dir_prefix, None, early_metadata)
            .await?
            .expect("no page limit");
        self.apply_listing(ino, &children, started)
    }

    /// Starts the HEADs of files one page of a listing found, while the next pages are
    /// listed (the listing alone takes a tenth of `ls -l` in a directory of 10,000). The
    /// files are entered in the table now; `apply_listing` keeps what the HEADs learn.
    fn start_metadata(self: &Arc<Self>, dir: Ino, files: &[(String, Stat)], started: Instant) {
        let inos: Vec<Ino> = {
            let mut t = self.table();
            if t.get(dir).is_none() {
                return;
            }
            files
                .iter()
                .map(|(name, stat)| t.upsert(dir, name, stat.clone(), started))
                .collect()
        };
        let fs = self.clone();
        tokio::spawn(async move { fs.ensure_meta_all(&inos).await });
    }

    /// Lists the directory whole if one page of the listing holds it, and returns its
    /// entries (names looked up in it that are missing then cost no request); `None` for a
    /// larger one, left to lookups by name.
    pub(super) async fn list_if_small(&self, ino: Ino) -> FsResult<Option<Vec<DirEntry>>> {
        let dir_prefix = self.dir_prefix(ino)?;
        let started = Instant::now();
        match self.list_children(&dir_prefix, Some(1), |_| {}).await? {
            Some(children) => self.apply_listing(ino, &children, started).map(Some),
            None => Ok(None),
        }
    }

    /// Records a complete listing of `ino` taken from `started` on, and returns its entries.
    fn apply_listing(
        &self,
        ino: Ino,
        children: &BTreeMap<String, Stat>,
        started: Instant,
    ) -> FsResult<Vec<DirEntry>> {
        let mut t = self.table();
        let parent = t.get(ino).ok_or(FsError::NotFound)?.parent;
        let mut out = dots(ino, parent);
        for (name, stat) in children {
            let kind = stat.kind;
            let child = t.upsert(ino, name, stat.clone(), started);
            out.push(DirEntry {
                ino: child,
                kind,
                name: name.clone(),
            });
        }
        // Names we know that the listing lacks: keep files not uploaded yet and names
        // confirmed after the listing began (an upload that finished while it ran); forget
        // the rest (deleted by another client).
        let known: Vec<(String, Ino)> = t
            .get(ino)
            .map(|n| n.children.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        for (name, child) in known {
            if children.contains_key(&name) {
                continue;
            }
            let Some(node) = t.get(child) else { continue };
            let confirmed_since = node.validated.is_some_and(|v| v >= started);
            if node.content.is_some() || confirmed_since {
                out.push(DirEntry {
                    ino: child,
                    kind: node.kind,
                    name,
                });
            } else {
                t.unlink(ino, &name);
            }
        }
        self.listed.insert(ino);
        Ok(out)
    }

    /// The listing from the inode table, which holds every child after a recent listing
    /// (changes made through this mount are applied to it directly).
    fn list_from_table(&self, ino: Ino) -> FsResult<Vec<DirEntry>> {
        let t = self.table();
        let node = t.get(ino).ok_or(FsError::NotFound)?;
        let mut out = dots(ino, node.parent);
        out.extend(node.children.iter().filter_map(|(name, child)| {
            t.get(*child).map(|c| DirEntry {
                ino: *child,
                kind: c.kind,
                name: name.clone(),
            })
        }));
        Ok(out)
    }

    /// Every showable child of `dir_prefix` in the store, by name; directories shadow files.
    /// With `max_pages`, `None` when the directory has more pages than that. `on_page` sees
    /// the files of each page as it arrives (a directory on a later page may still shadow
    /// one of them).
    async fn list_children(
        &self,
        dir_prefix: &str,
        max_pages: Option<usize>,
        mut on_page: impl FnMut(&[(String, Stat)]),
    ) -> FsResult<Option<BTreeMap<String, Stat>>> {
        let mut files = BTreeMap::new();
        let mut dirs = BTreeMap::new();
        let mut token = None;
        let mut pages = 0;
        loop {
            if max_pages.is_some_and(|max| pages == max) {
                return Ok(None);
            }
            pages += 1;
            let page = self
                .store
                .list_page(dir_prefix, Some("/"), token, 1000)
                .await?;
            let mut page_files = Vec::with_capacity(page.objects.len());
            for obj in page.objects {
                let name = &obj.key[dir_prefix.len()..];
                if obj.key == dir_prefix {
                    continue; // this directory's own marker
                }
                if !showable(name) {
                    tracing::debug!(key = %obj.key, "skipping a key that cannot be shown as a name");
                    continue;
                }
                page_files.push((
                    name.to_string(),
                    Stat {
                        kind: Kind::File,
                        size: obj.size,
                        mtime: obj.last_modified,
                        etag: obj.etag,
                        remote: true,
                        meta: None,
                    },
                ));
            }
            for prefix in page.prefixes {
                let name = &prefix[dir_prefix.len()..prefix.len() - 1];
                if !showable(name) {
                    tracing::debug!(prefix = %prefix, "skipping a prefix that cannot be shown as a name");
                    continue;
                }
                dirs.insert(
                    name.to_string(),
                    Stat {
                        kind: Kind::Dir,
                        size: 0,
                        mtime: self.started,
                        etag: None,
                        remote: false,
                        meta: None,
                    },
                );
            }
            page_files.retain(|(name, _)| !dirs.contains_key(name));
            on_page(&page_files);
            files.extend(page_files);
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        for name in dirs.keys() {
            if files.remove(name).is_some() {
                tracing::debug!(
                    name,
                    "an object is shadowed by a directory of the same name"
                );
            }
        }
        files.extend(dirs);
        Ok(Some(files))
    }

    pub async fn mkdir(&self, parent: Ino, name: &std::ffi::OsStr, owner: Owner) -> FsResult<Attr> {
        self.check_writable()?;
        let name = check_name(name)?;
        match self.resolve(parent, name).await {
            Ok(_) => return Err(FsError::Exists),
            Err(FsError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let key = format!("{}{}/", self.dir_prefix(parent)?, name);
        let meta = self.new_meta(Kind::Dir, owner);
        let mtime = SystemTime::now();
        let opts = PutOptions {
            content_type: Some(DIRECTORY_CONTENT_TYPE.into()),
            metadata: self.stored_metadata(Some(&meta)),
            ..self.opts.objects.for_key(&key)
        };
        self.store.put(&key, Bytes::new(), &opts).await?;
        self.name_appeared(parent, name);
        let stat = Stat {
            kind: Kind::Dir,
            size: 0,
            mtime,
            etag: None,
            remote: true,
            meta: Some(meta),
        };
        let ino = self.table().upsert(parent, name, stat, Instant::now());
        // Just made: nothing lies under it, so lookups inside need not ask the store.
        self.listed.insert(ino);
        self.referenced(ino)
    }

    pub async fn rmdir(&self, parent: Ino, name: &std::ffi::OsStr) -> FsResult<()> {
        self.check_writable()?;
        let name = check_name(name)?;
        let ino = self.resolve(parent, name).await?;
        if self.table().get(ino).map(|n| n.kind) != Some(Kind::Dir) {
            return Err(FsError::NotDir);
        }
        let prefix = self.dir_prefix(ino)?;
        self.ensure_empty(ino, &prefix).await?;
        self.store.delete(&prefix).await?;
        self.table().unlink(parent, name);
        Ok(())
    }

    /// `NotEmpty` unless nothing but the marker lies under `prefix` and no file is pending here.
    pub(super) async fn ensure_empty(&self, ino: Ino, prefix: &str) -> FsResult<()> {
        let pending = {
            let t = self.table();
            let node = t.get(ino).ok_or(FsError::NotFound)?;
            node.children
                .values()
                .any(|c| t.get(*c).is_some_and(|n| n.content.is_some()))
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
