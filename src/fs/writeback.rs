//! Write-back: when closed files are uploaded, and how none is lost meanwhile.
//!
//! `close` (flush) of a changed file journals it (`localfile::journal`: its staging file is
//! synced and an entry written) and marks it due after `write_back_delay`. A background loop
//! (`write_back`) uploads the due files that nobody holds open, several at once. Until then a
//! chmod, utimens, setxattr or rename only changes the node (and rewrites its entry), so
//! rsync's write-temp, close, chmod, utimens, rename is one PUT under the final name.
//!
//! A delay of 0 uploads at close and returns the upload's error from close; a file already
//! streaming its parts is also finished at close. A failed upload stays journaled and is
//! retried with a doubling backoff. Unmount uploads everything (`drain`); the next mount with
//! the same cache directory uploads what a killed daemon left in the journal (`recover`).
//!
//! Every upload is conditional on what its file was based on (`conflict = keep-both`): when
//! another client changed or created the object meanwhile, the other client's object stays
//! and this file's bytes are stored under a conflict name next to it (`keep_conflict`).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use tokio::sync::Semaphore;

use super::error::{FsError, FsResult};
use super::Fs;
use crate::config::ConflictPolicy;
use crate::localfile::content::{Content, Stream};
use crate::localfile::journal::Entry;
use crate::localfile::{Due, Orphan, Settled};
use crate::names::inode::Ino;
use crate::store::{Condition, PutOptions, StoreError};
use crate::upload::{PartSource, UploadError};

/// Closed files uploaded at once by the write-back loop, the drain and the recovery.
const CONCURRENCY: usize = 16;

impl Fs {
    /// `close` of a writable handle: uploads now (delay 0, or a file already streaming) and
    /// returns the error, or journals the file and leaves the upload to `upload_due`.
    pub(super) async fn close_written(&self, ino: Ino) -> FsResult<()> {
        if let Some(c) = self
            .names
            .table()
            .get(ino)
            .and_then(|n| n.content().cloned())
        {
            c.check_failed()?; // its changes were dropped: the writer must know
        }
        let Some(content) = self.dirty_content(ino) else {
            return Ok(());
        };
        let streaming = matches!(*content.stream.lock().await, Stream::Active(_));
        if self.files.write_back_delay().is_zero() || streaming {
            let result = self.upload_if_dirty(ino).await;
            if result.is_err() {
                self.journal(ino, &content, true).await?; // kept, retried in the background
            }
            return result;
        }
        self.journal(ino, &content, true).await?;
        self.files.schedule_after_delay(Due::File(ino));
        Ok(())
    }

    /// Uploads closed files as they come due, for as long as the mount lives: sleeps until
    /// the write-back queue's earliest due time, then starts the uploads of what is due, at
    /// most `CONCURRENCY` at once. Each upload frees its slot when it ends, and the files that
    /// come due meanwhile take it: one upload that stalls (a slow answer, a backoff) holds up
    /// only itself, never the files closed after it. (Waiting for a whole round before taking
    /// the next due files made every round last as long as its slowest upload.)
    pub async fn write_back(self: Arc<Self>) {
        let slots = Arc::new(Semaphore::new(CONCURRENCY));
        loop {
            self.files.wait_due().await;
            // (a failed upload is logged, and tried again later)
            let (files, orphans) = self.take_due_uploads();
            for ino in files {
                let fs = self.clone();
                in_slot(&slots, async move { fs.upload_closed(ino).await }).await;
            }
            for o in orphans {
                let fs = self.clone();
                in_slot(&slots, async move { fs.upload_orphan_settled(&o).await }).await;
            }
        }
    }

    fn dirty_content(&self, ino: Ino) -> Option<Arc<Content>> {
        let t = self.names.table();
        let node = t.get(ino)?;
        node.content()
            .cloned()
            .filter(|c| node.linked() && c.is_dirty())
    }

    /// Writes (or rewrites) the journal entry of `ino`'s content (see `LocalFiles::journal`).
    async fn journal(&self, ino: Ino, content: &Arc<Content>, durable: bool) -> FsResult<()> {
        let Some(entry) = self.entry_of(ino, content) else {
            return Ok(()); // unlinked: nothing to keep
        };
        Ok(self.files.journal(content, entry, durable).await?)
    }

    /// What a journal entry says of `ino`'s content now; `None` once it has no name.
    fn entry_of(&self, ino: Ino, content: &Content) -> Option<Entry> {
        let t = self.names.table();
        let node = t.get(ino)?;
        let path = t.path(ino)?;
        let (size, written, base) = content.journal_parts();
        let mut entry = Entry {
            key: format!("{}{}", self.names.prefix(), path),
            staging: content.staging().path().to_path_buf(),
            size,
            written,
            base,
            metadata: self.stored_metadata(node.meta()),
            ..Entry::default()
        };
        entry.set_based_on(content.based_on());
        Some(entry)
    }

    /// `condition` as the mount's conflict policy has it: kept (`keep-both`), or none
    /// (`overwrite`: every write replaces whatever is there).
    pub(super) fn under_policy(&self, condition: Option<Condition>) -> Option<Condition> {
        match self.opts.conflict {
            ConflictPolicy::KeepBoth => condition,
            ConflictPolicy::Overwrite => None,
        }
    }

    /// An upload of `ino` (to `key`) failed with `e`. Refused because another client
    /// changed the object: kept under a conflict name (`keep_conflict`). Otherwise see
    /// `LocalFiles::settle_failure`; the node then shows what the bucket holds (parked), or
    /// keeps its metadata for the next try.
    pub(super) async fn upload_error(
        &self,
        ino: Ino,
        key: &str,
        content: &Arc<Content>,
        e: UploadError,
    ) -> FsError {
        if matches!(e, UploadError::Store(StoreError::PreconditionFailed))
            && self.under_policy(content.based_on()).is_some()
        {
            let opts = self
                .put_options(key, ino)
                .unwrap_or_else(|_| self.opts.objects.for_key(key));
            match self.keep_conflict(key, content, opts).await {
                Ok(kept_as) => {
                    self.journal_done(content);
                    if let Some(node) = self.names.table().get_mut(ino) {
                        node.unknown(); // the name shows the other client's object
                    }
                    return FsError::Conflict {
                        key: key.to_string(),
                        kept_as,
                    };
                }
                Err(e2) => {
                    tracing::warn!(key, error = %e2, "cannot store a conflicting version under a conflict name");
                }
            }
        }
        let settled = self
            .files
            .settle_failure(
                Due::File(ino),
                key,
                content,
                || self.entry_of(ino, content),
                &e,
            )
            .await;
        let err = match settled {
            Settled::Parked(message) => FsError::NotStored(message),
            Settled::Retry => FsError::Upload(e),
        };
        if let Some(node) = self.names.table().get_mut(ino) {
            match err {
                FsError::NotStored(_) => node.unknown(), // someone else's object, or none
                _ => node.meta_unsent(),
            }
        }
        err
    }

    /// Stores the file's bytes and metadata (`opts`) under a conflict name next to `key` (which
    /// another client changed), and records the conflict. The file's changes are then in the
    /// bucket: nothing stays pending.
    async fn keep_conflict(
        &self,
        key: &str,
        content: &Arc<Content>,
        mut opts: PutOptions,
    ) -> Result<String, UploadError> {
        let kept_as = self.files.conflict_key(key);
        opts.condition = Some(Condition::Absent);
        let (version, size) = content.snapshot();
        let source: Arc<dyn PartSource> = content.clone();
        self.uploader.upload(&kept_as, source, size, &opts).await?;
        content.mark_uploaded(version);
        self.files.record_conflict(key, &kept_as);
        Ok(kept_as)
    }

    /// The file's key or metadata changed while its upload is pending: rewrite its entry.
    pub(super) async fn journal_update(&self, ino: Ino) -> FsResult<()> {
        let Some(content) = self.dirty_content(ino) else {
            return Ok(());
        };
        if !self.files.is_journaled(&content) {
            return Ok(()); // still open: journaled at close
        }
        self.journal(ino, &content, false).await
    }

    /// The content is in the bucket (or no longer wanted): drop its entry and staging file.
    pub(super) fn journal_done(&self, content: &Content) {
        self.files.done(content);
    }

    /// Uploads the closed files (and earlier daemons' entries, see `Orphan`) whose time has
    /// come, and waits for all of them. Returns how many uploads failed.
    pub async fn upload_due(&self) -> usize {
        let (files, orphans) = self.take_due_uploads();
        self.upload_all(files).await.len() + self.upload_orphans(orphans).await.len()
    }

    /// Takes the due items of the write-back queue that need an upload now: a due file still
    /// held open is left to its last release (which makes it due again, see `release`); one
    /// stored or dropped meanwhile needs none.
    fn take_due_uploads(&self) -> (Vec<Ino>, Vec<Arc<Orphan>>) {
        let mut files = Vec::new();
        let mut orphans = Vec::new();
        for item in self.files.take_due() {
            match item {
                Due::File(ino) => {
                    let t = self.names.table();
                    let Some(node) = t.get(ino) else { continue };
                    if !node.linked() || !node.content().is_some_and(|c| c.is_dirty()) {
                        continue; // stored or dropped meanwhile
                    }
                    if node.open_handles() > 0 {
                        continue; // its last release makes it due again (see `release`)
                    }
                    files.push(ino);
                }
                Due::Orphan(id) => orphans.extend(self.files.orphan_by_id(&id)),
            }
        }
        (files, orphans)
    }

    /// Uploads every file whose content is not yet in the bucket, open or not, due or not
    /// (at unmount), and waits until no write the store sent is still in flight. Returns the
    /// keys of what could not be stored: failed uploads, and the files parked during this
    /// daemon's life (see `Journal::park`).
    pub async fn drain(&self) -> Vec<String> {
        let pending: Vec<Ino> = self
            .names
            .table()
            .all()
            .filter(|(_, n)| n.linked() && n.content().is_some_and(|c| c.is_dirty()))
            .map(|(i, _)| i)
            .collect();
        let orphans = self.files.orphans();
        if !pending.is_empty() || !orphans.is_empty() {
            tracing::info!(
                files = pending.len() + orphans.len(),
                "uploading pending files before exit"
            );
        }
        let mut failed: Vec<String> = self.upload_all(pending).await.into_keys().collect();
        failed.extend(self.upload_orphans(orphans).await.into_keys());
        failed.extend(self.files.unsaved());
        failed.sort();
        failed.dedup();
        // A hedged PUT's twin may still be on its way: it lands before this daemon exits.
        self.store.settle().await;
        failed
    }

    /// Uploads these files; returns the keys of those that failed, with their errors.
    pub(super) async fn upload_all(&self, inos: Vec<Ino>) -> BTreeMap<String, FsError> {
        stream::iter(inos)
            .map(|ino| self.upload_closed(ino))
            .buffer_unordered(CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// Uploads one file whose changes are not yet stored; its key and the error when that
    /// failed (logged and recorded for `status` by the upload).
    async fn upload_closed(&self, ino: Ino) -> Option<(String, FsError)> {
        let key = self.names.file_key(ino).ok();
        let result = self.upload_if_dirty(ino).await;
        self.drop_clean_content(ino);
        Some((key?, result.err()?))
    }

    /// Uploads what an earlier daemon journaled and did not upload (it was killed), before
    /// the mount is ready. Entries that fail stay pending (see `Orphan`). Returns
    /// (uploaded, failed).
    pub async fn recover(&self) -> (usize, usize) {
        let orphans = self.files.recover().await;
        if !orphans.is_empty() {
            tracing::info!(
                files = orphans.len(),
                "uploading files an earlier bucketfs left pending"
            );
        }
        let total = orphans.len();
        let failed = self.upload_orphans(orphans).await.len();
        self.files.compact_journal().await;
        (total - failed, failed)
    }

    /// Uploads these entries of earlier daemons; those that fail and can be retried stay in
    /// `orphans` with a backoff. Returns the keys of the ones that failed (parked included),
    /// with their errors.
    pub(super) async fn upload_orphans(
        &self,
        orphans: Vec<Arc<Orphan>>,
    ) -> BTreeMap<String, FsError> {
        stream::iter(orphans)
            .map(|o| async move { self.upload_orphan_settled(&o).await })
            .buffer_unordered(CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// Uploads one entry of an earlier daemon; when that failed, its key and the error. One
    /// that can never be stored is parked and no longer pending; any other stays, tried again
    /// later.
    async fn upload_orphan_settled(&self, o: &Arc<Orphan>) -> Option<(String, FsError)> {
        let e = self.upload_orphan(o).await.err()?;
        if matches!(e, FsError::NotStored(_)) {
            self.files.orphan_gone(o);
        }
        Some((o.entry.key.clone(), e))
    }

    /// Uploads one entry of an earlier daemon, unless another upload of it (a flush's, the
    /// write-back loop's) stored it meanwhile: one upload of it at a time, as of a file.
    async fn upload_orphan(&self, o: &Arc<Orphan>) -> FsResult<()> {
        let _keys_stay = self.keys.read().await;
        let _one_upload = o.content.upload_lock.lock().await;
        if self.files.orphan_by_id(&o.id).is_none() {
            return Ok(()); // stored (or parked, and reported) by the upload before
        }
        let entry = &o.entry;
        let mut opts = self.opts.objects.for_key(&entry.key);
        opts.metadata = entry.metadata.clone();
        opts.condition = self.under_policy(o.content.based_on());
        let source: Arc<dyn PartSource> = o.content.clone();
        let result = self
            .uploader
            .upload(&entry.key, source, entry.size, &opts)
            .await;
        let conditional = opts.condition.is_some();
        let result = self
            .unless_stored_already(&entry.key, &o.content, entry.size, conditional, result)
            .await;
        if conditional
            && matches!(
                result,
                Err(UploadError::Store(StoreError::PreconditionFailed))
            )
        {
            // Another client changed the object while this host was down.
            if let Ok(kept_as) = self.keep_conflict(&entry.key, &o.content, opts).await {
                self.journal_done(&o.content);
                self.files.orphan_gone(o);
                return Err(FsError::Conflict {
                    key: entry.key.clone(),
                    kept_as,
                });
            }
        }
        match result {
            Ok(_) => {
                tracing::info!(
                    key = entry.key,
                    size = entry.size,
                    "uploaded a recovered file"
                );
                self.journal_done(&o.content);
                self.files.orphan_gone(o);
                Ok(())
            }
            Err(e) => {
                let item = Due::Orphan(o.id.clone());
                match (self.files)
                    .settle_failure(item, &entry.key, &o.content, || Some(entry.clone()), &e)
                    .await
                {
                    Settled::Parked(message) => Err(FsError::NotStored(message)),
                    Settled::Retry => Err(FsError::Upload(e)),
                }
            }
        }
    }
}

/// Runs `upload` as a task of its own once one of `slots` is free; the slot is the task's
/// until it ends.
async fn in_slot<T: Send + 'static>(
    slots: &Arc<Semaphore>,
    upload: impl std::future::Future<Output = T> + Send + 'static,
) {
    let slot = slots.clone().acquire_owned().await.expect("never closed");
    tokio::spawn(async move {
        upload.await;
        drop(slot);
    });
}
