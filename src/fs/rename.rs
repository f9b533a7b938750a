//! rename: S3 has no rename, so a file is copied server-side and then deleted, and a directory
//! is every key under its prefix copied and then deleted (not atomic: see SEMANTICS.md).
//! A file not yet uploaded is only re-homed in the inode table; its upload goes to the new
//! key. Under the `keep-both` policy every copy is conditional on its target (what this mount
//! saw there; for a directory, a free name) and on its source (the version listed), and every
//! source is deleted only while it is the version copied: another host's write meanwhile is
//! never lost.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};

use super::error::{FsError, FsResult};
use super::file::{delete_unless_replaced, replaced_at};
use super::Fs;
use crate::localfile::content::Content;
use crate::names::inode::{Ino, Kind};
use crate::names::rules::check_name;
use crate::names::NameError;
use crate::store::{list_all, Condition, ListedObject, ObjectStore, PutOptions, StoreError};
use crate::upload::{UploadError, Uploader};

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
                        Some(n) => (n.remote(), replaced_at(n)),
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
                self.rehome_below(src, &from, &to, &copies).await
            }
        }
    }

    /// After a directory rename: every file below `dir` (moved from `from` to `to`) is its
    /// copy now. A stored file takes the copy's ETag when the copy is of the version it
    /// knew (else it is read again at its next use); a file with local content reads its
    /// unchanged bytes from the copy and its next upload replaces the copy and nothing
    /// newer (the journal says so).
    async fn rehome_below(
        &self,
        dir: Ino,
        from: &str,
        to: &str,
        copies: &HashMap<String, Copied>,
    ) -> FsResult<()> {
        let below: Vec<(Ino, bool, Option<Arc<Content>>)> = self
            .names
            .table()
            .all()
            .filter(|(_, n)| n.kind() != Kind::Dir)
            .map(|(i, n)| (i, n.remote(), n.content().cloned()))
            .collect();
        for (ino, stored, content) in below {
            if !self.is_within(ino, dir) {
                continue;
            }
            let Ok(key) = self.names.file_key(ino) else {
                continue;
            };
            let copy = copies.get(&format!("{from}{}", &key[to.len()..]));
            if let (true, Some(copy)) = (stored, copy) {
                if let Some(node) = self.names.table().get_mut(ino) {
                    if copy.is_of(node.etag().as_deref()) {
                        node.copied(copy.etag.clone());
                    } else {
                        node.unknown(); // the copy is of another host's newer version
                    }
                }
            }
            let Some(content) = content else {
                continue;
            };
            if let Some(copy) = copy {
                if content.based_on().is_some_and(|c| copy.is_of_condition(&c)) {
                    content.set_based_on(copy.etag.clone().map(Condition::Is));
                }
            }
            // (A base another host replaced before the copy is gone: not moved.)
            if let Some(old) = content.base_key() {
                let base = content.base_etag();
                if let Some(copy) = copies.get(&old).filter(|c| c.is_of(base.as_deref())) {
                    let moved = format!("{to}{}", &old[from.len()..]);
                    content.base_moved(&moved, copy.etag.clone());
                }
            }
            self.journal_update(ino).await?;
        }
        Ok(())
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

    /// The keys under `from` (with size and ETag), each checked to fit under `to` in its
    /// place.
    async fn keys_to_move(&self, from: &str, to: &str) -> FsResult<Vec<ListedObject>> {
        let objs = list_all(&*self.store, from).await?;
        for o in &objs {
            self.names
                .check_key(&format!("{to}{}", &o.key[from.len()..]))?;
        }
        Ok(objs)
    }

    /// Copies `objs`, every key under `from` (`keys_to_move`), to the same relative key under
    /// `to` (of any size, see `copy_listed`), then deletes each original while it is the
    /// version copied. Sources are deleted only once every copy succeeded; when one fails,
    /// the copies made are deleted again (each while it is the copy), so a failure loses
    /// nothing and leaves the source whole. Returns the copies by source key.
    async fn move_prefix(
        &self,
        objs: Vec<ListedObject>,
        from: &str,
        to: &str,
    ) -> FsResult<HashMap<String, Copied>> {
        let copies = Arc::new(Mutex::new(HashMap::new()));
        let conditional = self.under_policy(Some(Condition::Absent)).is_some();
        let copied = for_each_concurrent(&objs, |obj| {
            let target = format!("{to}{}", &obj.key[from.len()..]);
            let opts = self.opts.objects.for_key(&target);
            let (uploader, store) = (self.uploader.clone(), self.store.clone());
            let copies = copies.clone();
            async move {
                let key = obj.key.clone();
                if let Some(copy) =
                    copy_listed(&uploader, &*store, obj, target, opts, conditional).await?
                {
                    copies.lock().unwrap().insert(key, copy);
                }
                Ok(())
            }
        })
        .await;
        let copies = std::mem::take(&mut *copies.lock().unwrap());
        if let Err(e) = copied {
            self.undo_copies(&copies).await;
            return Err(e);
        }
        let sources: Vec<(String, Option<Condition>)> = copies
            .iter()
            .map(|(key, c)| (key.clone(), self.under_policy(c.source_condition())))
            .collect();
        for_each_concurrent(&sources, |(key, seen)| {
            let store = self.store.clone();
            async move { delete_unless_replaced(&*store, &key, seen).await }
        })
        .await?;
        Ok(copies)
    }

    /// A directory rename failed part-way: its copies are deleted (each only while it is
    /// the copy: another host's write over it stays). Best effort; what cannot be deleted
    /// is logged and stays under the new name, next to the whole source.
    async fn undo_copies(&self, copies: &HashMap<String, Copied>) {
        for copy in copies.values() {
            let ours = self.under_policy(copy.etag.clone().map(Condition::Is));
            if let Err(e) = delete_unless_replaced(&*self.store, &copy.target, ours).await {
                tracing::warn!(key = copy.target, error = %e, "cannot delete a copy of a failed directory rename");
            }
        }
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
/// After an error no item starts, and those in flight are waited for (not dropped: a copy
/// cancelled mid-request might still land, unknown to the caller).
async fn for_each_concurrent<T, F, Fut>(items: &[T], f: F) -> FsResult<()>
where
    T: Clone,
    F: Fn(T) -> Fut,
    Fut: Future<Output = FsResult<()>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(RENAME_CONCURRENCY));
    let mut tasks = JoinSet::new();
    let mut failed = None;
    let settle = |failed: &mut Option<FsError>, done: Result<FsResult<()>, JoinError>| {
        let joined = |e| FsError::Store(StoreError::task_failed("a rename task", e));
        if let Err(e) = done.map_err(joined).and_then(|r| r) {
            failed.get_or_insert(e);
        }
    };
    for item in items {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        while let Some(done) = tasks.try_join_next() {
            settle(&mut failed, done);
        }
        if failed.is_some() {
            break;
        }
        let fut = f(item.clone());
        tasks.spawn(async move {
            let _permit = permit;
            fut.await
        });
    }
    while let Some(done) = tasks.join_next().await {
        settle(&mut failed, done);
    }
    failed.map_or(Ok(()), Err)
}

/// How often a directory rename copies a key again whose source another host replaced
/// while it was being copied, before leaving it under the old name.
const SOURCE_TRIES: u32 = 3;

/// One key of a directory rename once copied.
struct Copied {
    /// The version of the source that was copied (`None`: the store gave no ETag).
    source_etag: Option<String>,
    target: String,
    /// The copy's ETag.
    etag: Option<String>,
}

impl Copied {
    /// The copy is of the version with ETag `etag` (unknown ETags are taken to match).
    fn is_of(&self, etag: Option<&str>) -> bool {
        match (etag, &self.source_etag) {
            (Some(e), Some(_)) => self.is_of_condition(&Condition::Is(e.to_string())),
            _ => true,
        }
    }

    /// The version copied meets `condition`.
    fn is_of_condition(&self, condition: &Condition) -> bool {
        condition.holds_for(self.source_etag.as_deref())
    }

    /// What the source must still be to be deleted: the version copied.
    fn source_condition(&self) -> Option<Condition> {
        self.source_etag.clone().map(Condition::Is)
    }
}

/// Copies the listed object `obj` to `target` for a directory rename. `conditional`
/// (keep-both): only onto a free name, and only the version listed. When the source changed
/// since the listing, its current version is copied (a rename moves what the directory holds
/// when it runs); a source deleted meanwhile is skipped (`None`); a target another host
/// wrote meanwhile fails the rename with `NotEmpty` (the target directory is not empty any
/// more).
async fn copy_listed(
    uploader: &Uploader,
    store: &dyn ObjectStore,
    obj: ListedObject,
    target: String,
    mut opts: PutOptions,
    conditional: bool,
) -> FsResult<Option<Copied>> {
    let (key, mut etag, mut size) = (obj.key, obj.etag, obj.size);
    for _ in 0..SOURCE_TRIES {
        if conditional {
            opts.condition = Some(Condition::Absent);
            opts.copy_source_etag = etag.clone();
        }
        let precondition = match uploader.copy(&key, &target, size, &opts, true).await {
            Ok(copy) => {
                return Ok(Some(Copied {
                    source_etag: etag,
                    target,
                    etag: copy,
                }))
            }
            Err(UploadError::Store(StoreError::NotFound)) => false,
            Err(UploadError::Store(StoreError::PreconditionFailed)) if conditional => true,
            Err(e) => return Err(e.into()),
        };
        match why_refused(store, &key, etag.as_deref(), &target, precondition).await? {
            Refused::SourceGone => {
                tracing::info!(
                    key,
                    "deleted by another client during a directory rename: not moved"
                );
                return Ok(None);
            }
            Refused::SourceChanged(now, now_size) => {
                tracing::info!(
                    key,
                    "replaced by another client during a directory rename: moving its new version"
                );
                (etag, size) = (now, now_size);
            }
            Refused::OurCopy(copy) => {
                return Ok(Some(Copied {
                    source_etag: etag,
                    target,
                    etag: copy,
                }))
            }
            Refused::TargetTaken => {
                tracing::warn!(key, target, "another client wrote into the rename's target directory meanwhile: the rename is refused");
                return Err(FsError::NotEmpty);
            }
        }
    }
    tracing::warn!(key, "replaced again and again by another client during a directory rename: left under its old name");
    Ok(None)
}

/// Why a directory rename's copy of `key` (listed as `etag`) to `target` did not happen.
enum Refused {
    /// Another host deleted the source.
    SourceGone,
    /// The source is another version now: its ETag and size.
    SourceChanged(Option<String>, u64),
    /// The target holds the copy already (the answer to an earlier attempt was lost, and
    /// the copy kept the source's ETag): its ETag.
    OurCopy(Option<String>),
    /// Another host wrote the target.
    TargetTaken,
}

/// Finds out why a copy of `key` to `target` was refused (`precondition`: a condition
/// failed; else the source was not found), with a HEAD of the source and then of the target.
async fn why_refused(
    store: &dyn ObjectStore,
    key: &str,
    etag: Option<&str>,
    target: &str,
    precondition: bool,
) -> FsResult<Refused> {
    let source = match store.head(key).await {
        Err(StoreError::NotFound) => return Ok(Refused::SourceGone),
        other => other?,
    };
    let listed = etag.map(|e| Condition::Is(e.to_string()));
    let same = |now: Option<&str>| listed.as_ref().is_some_and(|c| c.holds_for(now));
    if !precondition || (listed.is_some() && !same(source.etag.as_deref())) {
        return Ok(Refused::SourceChanged(source.etag, source.size));
    }
    match store.head(target).await {
        Ok(t) if same(t.etag.as_deref()) => Ok(Refused::OurCopy(t.etag)),
        Ok(_) | Err(StoreError::NotFound) => Ok(Refused::TargetTaken),
        Err(e) => Err(e.into()),
    }
}
