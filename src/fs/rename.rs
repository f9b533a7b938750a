//! rename: S3 has no rename, so a file is copied server-side and then deleted, and a directory
//! is every key under its prefix copied and then deleted (not atomic: see SEMANTICS.md).
//! A file not yet uploaded is only re-homed in the inode table; its upload goes to the new
//! key.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::error::{FsError, FsResult};
use super::file::based_on;
use super::Fs;
use crate::localfile::content::Content;
use crate::names::inode::{Ino, Kind};
use crate::names::rules::check_name;
use crate::names::NameError;
use crate::store::{list_all, Condition, StoreError};
use crate::upload::UploadError;

/// Copies or deletes for a directory rename in flight at once.
const RENAME_CONCURRENCY: usize = 16;

impl Fs {
    pub async fn rename(
        &self,
        parent: Ino,
        name: &std::ffi::OsStr,
        new_parent: Ino,
        new_name: &std::ffi::OsStr,
        flags: u32,
    ) -> FsResult<()> {
        self.check_writable()?;
        let name = check_name(name)?;
        let new_name = check_name(new_name)?;
        self.rename_checked(parent, name, new_parent, new_name, flags)
            .await?;
        self.names.name_appeared(new_parent, new_name);
        {
            let mut t = self.names.table();
            if let Some(moved) = t.child(new_parent, new_name).and_then(|i| t.get_mut(i)) {
                moved.status_changed();
            }
        }
        self.names.entries_changed(&[parent, new_parent]);
        Ok(())
    }

    async fn rename_checked(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        flags: u32,
    ) -> FsResult<()> {
        if flags & libc::RENAME_EXCHANGE != 0 {
            return Err(FsError::Unsupported("RENAME_EXCHANGE"));
        }
        let src = self.names.resolve(parent, name).await?;
        let dst = match self.names.resolve(new_parent, new_name).await {
            Ok(i) => Some(i),
            Err(NameError::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        if dst == Some(src) {
            return Ok(());
        }
        if dst.is_some() && flags & libc::RENAME_NOREPLACE != 0 {
            return Err(FsError::Exists);
        }
        let kind_of = |ino: Ino| self.names.table().get(ino).map(|n| n.kind());
        let src_kind = kind_of(src).ok_or(FsError::NotFound)?;
        match (src_kind, dst.and_then(kind_of)) {
            (k, Some(Kind::Dir)) if k != Kind::Dir => return Err(FsError::IsDir),
            (Kind::Dir, Some(k)) if k != Kind::Dir => return Err(FsError::NotDir),
            _ => {}
        }
        match src_kind {
            Kind::File | Kind::Symlink | Kind::Special(_) => {
                // Keys stay put meanwhile (lock order: `keys` before any `upload_lock`).
                let _keys_stay = self.keys.read().await;
                // What the replaced file's key holds (once an upload of it in flight is
                // done) is what the moved file replaces; no upload of it starts meanwhile.
                let replaced =
                    dst.and_then(|d| self.names.table().get(d).and_then(|n| n.content().cloned()));
                let _no_upload = match &replaced {
                    Some(c) => Some(c.upload_lock.lock().await),
                    None => None,
                };
                if let Some(d) = dst {
                    self.keep_if_open(d).await;
                }
                // What the new name must hold for the file to go there: what this mount saw
                // (another host's newer object there is never replaced unseen).
                let (replaced_remote, target) = {
                    let t = self.names.table();
                    match dst.and_then(|d| t.get(d)) {
                        Some(n) => (n.remote(), based_on(n)),
                        None => (false, Some(Condition::Absent)),
                    }
                };
                let target = self.under_policy(target);
                let from = self.names.file_key(src)?;
                let to = self.names.child_key(new_parent, new_name, src_kind)?;
                let moved = Moved {
                    new_parent,
                    new_name,
                    replaced_remote,
                    target,
                };
                self.rename_file(src, &from, &to, moved).await?;
                // Whatever the replaced file had pending is moot now (and kept while the
                // rename could still be refused).
                if let Some(c) = &replaced {
                    self.discard_content(c).await;
                }
                Ok(())
            }
            Kind::Dir => {
                if self.is_within(new_parent, src) {
                    return Err(FsError::Invalid("cannot move a directory into itself"));
                }
                // Uploads under way finish first and none starts until every node below has
                // its new key: an upload landing under the old prefix after the listing
                // would be left behind.
                let _keys = self.keys.write().await;
                let from = self.names.dir_prefix(src)?;
                let to = self.names.child_key(new_parent, new_name, Kind::Dir)?;
                // Listed (and every new key checked) before anything changes.
                let objs = self.keys_to_move(&from, &to).await?;
                if let Some(d) = dst {
                    let d_prefix = self.names.dir_prefix(d)?;
                    self.ensure_empty(d, &d_prefix).await?;
                    self.store.delete(&d_prefix).await?;
                }
                let copies = self.move_prefix(objs, &from, &to).await?;
                self.names.table().rename(src, new_parent, new_name);
                let below: Vec<(Ino, bool, Option<Arc<Content>>)> = self
                    .names
                    .table()
                    .all()
                    .filter(|(_, n)| n.kind() != Kind::Dir)
                    .map(|(i, n)| (i, n.remote(), n.content().cloned()))
                    .collect();
                for (ino, stored, content) in below {
                    if !self.is_within(ino, src) {
                        continue;
                    }
                    // A stored file is its copy now, with the copy's ETag (a later unlink or
                    // upload is conditional on it).
                    if stored {
                        if let Ok(key) = self.names.file_key(ino) {
                            let old = format!("{from}{}", &key[to.len()..]);
                            if let (Some(etag), Some(node)) =
                                (copies.get(&old), self.names.table().get_mut(ino))
                            {
                                node.copied(etag.clone());
                            }
                        }
                    }
                    // A file with local content reads its unchanged bytes from the copies, and
                    // is uploaded to its new key (the journal says so).
                    let Some(content) = content else {
                        continue;
                    };
                    // Its new key held nothing of its own: uploaded unconditionally.
                    content.set_based_on(None);
                    if let Some(old) = content.base_key() {
                        if let Some(etag) = copies.get(&old) {
                            let moved = format!("{to}{}", &old[from.len()..]);
                            content.base_moved(&moved, etag.clone());
                        }
                    }
                    self.journal_update(ino).await?;
                }
                Ok(())
            }
        }
    }

    async fn rename_file(&self, ino: Ino, from: &str, to: &str, moved: Moved<'_>) -> FsResult<()> {
        let Moved {
            new_parent,
            new_name,
            replaced_remote,
            target,
        } = moved;
        let content = {
            let t = self.names.table();
            t.get(ino).ok_or(FsError::NotFound)?.content().cloned()
        };
        if let Some(c) = &content {
            if c.is_dirty() && c.has_base() {
                // Unchanged ranges are still read from the object under the old name:
                // store the file there first, then move it like any stored file.
                self.upload_holding_keys(ino).await?;
            }
        }
        // What is stored under the old name (after that upload: its source delete is
        // conditional on this ETag).
        let (remote, size, etag) = {
            let t = self.names.table();
            let node = t.get(ino).ok_or(FsError::NotFound)?;
            (node.remote(), node.stored_size(), node.etag())
        };
        // The ETag of the copy under the new key, when the rename copied a stored object.
        let mut copied = None;
        let pending_upload = match &content {
            Some(c) => {
                // No upload of this file may run while it changes names.
                let _no_upload = c.upload_lock.lock().await;
                c.stream.lock().await.break_off(); // it streams under the old name
                let dirty = c.is_dirty();
                if dirty {
                    if remote {
                        // Only while it holds what this file's changes replace: another
                        // client's newer object there stays.
                        self.delete_if_unchanged(from, c.based_on()).await?;
                    }
                } else if remote {
                    let etag = self
                        .copy_then_delete(from, to, size, etag.as_deref(), target.clone())
                        .await?;
                    // Later writes keep reading unchanged bytes: from the copy now.
                    c.rebase(to, etag.clone(), c.size());
                    copied = Some(etag);
                }
                self.names.table().rename(ino, new_parent, new_name);
                // Its next upload replaces the copy, or what the rename replaced, and
                // nothing newer.
                c.set_based_on(match &copied {
                    Some(etag) => etag.clone().map(Condition::Is),
                    None => target,
                });
                dirty
            }
            None => {
                if remote {
                    let etag = self
                        .copy_then_delete(from, to, size, etag.as_deref(), target)
                        .await?;
                    copied = Some(etag);
                }
                self.names.table().rename(ino, new_parent, new_name);
                false
            }
        };
        if let Some(node) = self.names.table().get_mut(ino) {
            node.moved(pending_upload.then_some(replaced_remote));
            if let Some(etag) = copied {
                node.copied(etag);
            }
        }
        if pending_upload {
            // Still to be uploaded: it goes to the new name when due; the journal says so now.
            self.journal_update(ino).await?;
        }
        Ok(())
    }

    /// Copies a stored file to its new key (only while that holds `target`: else `EEXIST`,
    /// and nothing changed), then deletes the source (only while it is `etag`). Returns the
    /// copy's ETag.
    async fn copy_then_delete(
        &self,
        from: &str,
        to: &str,
        size: u64,
        etag: Option<&str>,
        target: Option<Condition>,
    ) -> FsResult<Option<String>> {
        let mut opts = self.opts.objects.for_key(to);
        opts.condition = target;
        let copied = match self.uploader.copy(from, to, size, &opts, true).await {
            Err(UploadError::Store(StoreError::PreconditionFailed)) => {
                tracing::warn!(
                    from,
                    to,
                    "another client wrote the rename's target meanwhile: the rename is refused"
                );
                return Err(FsError::Exists);
            }
            other => other?,
        };
        // The source is deleted only while it is the object that was renamed: another host's
        // newer version of it stays.
        self.delete_if_unchanged(from, etag.map(|e| Condition::Is(e.to_string())))
            .await?;
        Ok(copied)
    }

    /// The keys (and sizes) under `from`, each checked to fit under `to` in its place.
    async fn keys_to_move(&self, from: &str, to: &str) -> FsResult<Vec<(String, u64)>> {
        let objs: Vec<(String, u64)> = list_all(&*self.store, from)
            .await?
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        for (key, _) in &objs {
            self.names
                .check_key(&format!("{to}{}", &key[from.len()..]))?;
        }
        Ok(objs)
    }

    /// Copies `objs`, every key under `from` (`keys_to_move`), to the same relative key under
    /// `to` (of any size), then deletes the originals. Sources are deleted only once every
    /// copy succeeded, so a failure loses nothing. Returns the ETag of each copy by its
    /// source key.
    async fn move_prefix(
        &self,
        objs: Vec<(String, u64)>,
        from: &str,
        to: &str,
    ) -> FsResult<HashMap<String, Option<String>>> {
        let (from, to) = (from.to_string(), to.to_string());
        let copies = Arc::new(Mutex::new(HashMap::new()));
        for_each_concurrent(&objs, |(key, size)| {
            let uploader = self.uploader.clone();
            let target = format!("{to}{}", &key[from.len()..]);
            let opts = self.opts.objects.for_key(&target);
            let copies = copies.clone();
            async move {
                let etag = uploader.copy(&key, &target, size, &opts, true).await?;
                copies.lock().unwrap().insert(key, etag);
                Ok(())
            }
        })
        .await?;
        for_each_concurrent(&objs, |(key, _)| {
            let store = self.store.clone();
            async move { Ok(store.delete(&key).await?) }
        })
        .await?;
        let copies = std::mem::take(&mut *copies.lock().unwrap());
        Ok(copies)
    }

    /// True when `ino` is `ancestor` or lies below it.
    fn is_within(&self, ino: Ino, ancestor: Ino) -> bool {
        let t = self.names.table();
        let mut cur = ino;
        loop {
            if cur == ancestor {
                return true;
            }
            match t.get(cur) {
                Some(n) if n.parent() != cur => cur = n.parent(),
                _ => return false,
            }
        }
    }
}

/// Where a file goes in a rename, and what its new name must hold for it to go there.
struct Moved<'a> {
    new_parent: Ino,
    new_name: &'a str,
    /// An object is stored under the new name (the replaced file's).
    replaced_remote: bool,
    /// The condition on the new key: what this mount saw there (keep-both), or none.
    target: Option<Condition>,
}

/// Runs `f` on every item with at most `RENAME_CONCURRENCY` in flight; the first error wins.
async fn for_each_concurrent<T, F, Fut>(items: &[T], f: F) -> FsResult<()>
where
    T: Clone,
    F: Fn(T) -> Fut,
    Fut: Future<Output = FsResult<()>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(RENAME_CONCURRENCY));
    let mut tasks = JoinSet::new();
    let joined = |e| FsError::Store(StoreError::task_failed("a rename task", e));
    for item in items {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let fut = f(item.clone());
        tasks.spawn(async move {
            let _permit = permit;
            fut.await
        });
        while let Some(done) = tasks.try_join_next() {
            done.map_err(joined)??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(joined)??;
    }
    Ok(())
}
