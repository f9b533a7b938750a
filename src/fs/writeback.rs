//! Write-back: when closed files are uploaded, and how none is lost meanwhile.
//!
//! `close` (flush) of a changed file journals it (`upload::journal`: its staging file is
//! synced and an entry written) and marks it due after `write_back_delay`. A background loop
//! (`upload_due`) uploads the due files that nobody holds open, several at once. Until then a
//! chmod, utimens, setxattr or rename only changes the node (and rewrites its entry), so
//! rsync's write-temp, close, chmod, utimens, rename is one PUT under the final name.
//!
//! A delay of 0 uploads at close and returns the upload's error from close; a file already
//! streaming its parts is also finished at close. A failed upload stays journaled and is
//! retried with a doubling backoff. Unmount uploads everything (`drain`); the next mount with
//! the same cache directory uploads what a killed daemon left in the journal (`recover`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use super::content::{Base, Content, Stream};
use super::error::{FsError, FsResult};
use super::inode::Ino;
use super::Fs;
use crate::store::StoreError;
use crate::upload::journal::Entry;
use crate::upload::staging::StagingFile;
use crate::upload::{PartSource, UploadError};

/// Closed files uploaded at once by the write-back loop, the drain and the recovery.
const CONCURRENCY: usize = 16;

/// Longest wait between two attempts of a failing upload.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Fs {
    /// `close` of a writable handle: uploads now (delay 0, or a file already streaming) and
    /// returns the error, or journals the file and leaves the upload to `upload_due`.
    pub(super) async fn close_written(&self, ino: Ino) -> FsResult<()> {
        if let Some(c) = self.table().get(ino).and_then(|n| n.content.clone()) {
            c.check_failed()?; // its changes were dropped: the writer must know
        }
        let Some(content) = self.dirty_content(ino) else {
            return Ok(());
        };
        let streaming = matches!(*content.stream.lock().await, Stream::Active(_));
        if self.opts.write_back_delay.is_zero() || streaming {
            let result = self.upload_if_dirty(ino).await;
            if result.is_err() {
                self.journal(ino, &content, true).await?; // kept, retried in the background
            }
            return result;
        }
        self.journal(ino, &content, true).await?;
        self.schedule(&content, Instant::now() + self.opts.write_back_delay);
        Ok(())
    }

    /// Makes `content`'s upload due at `at`. Every due time is set here, so that the
    /// write-back loop, which scans the inode table only when the earliest one has passed,
    /// never misses one.
    fn schedule(&self, content: &Content, at: Instant) {
        content.pending.lock().unwrap().due = Some(at);
        self.due_by(Some(at));
    }

    /// Lowers the write-back loop's next scan to `at`.
    fn due_by(&self, at: Option<Instant>) {
        let mut next = self.next_due.lock().unwrap();
        *next = match (*next, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    fn dirty_content(&self, ino: Ino) -> Option<Arc<Content>> {
        let t = self.table();
        let node = t.get(ino)?;
        node.content.clone().filter(|c| node.linked && c.is_dirty())
    }

    /// Writes (or rewrites) the journal entry of `ino`'s content. At close (`durable`) the
    /// staged bytes and the entry are synced to disk; an update after close (a rename, a
    /// chmod) replaces the entry atomically without a sync of its own.
    async fn journal(&self, ino: Ino, content: &Arc<Content>, durable: bool) -> FsResult<()> {
        let Some(journal) = self.journal.clone() else {
            return Ok(());
        };
        let Some(entry) = self.entry_of(ino, content) else {
            return Ok(()); // unlinked: nothing to keep
        };
        let id = content
            .pending
            .lock()
            .unwrap()
            .journal
            .get_or_insert_with(|| journal.new_id())
            .clone();
        content.staging().keep(true);
        if durable {
            content.staging().sync().await?;
        }
        tokio::task::spawn_blocking(move || journal.record(&id, &entry, durable))
            .await
            .map_err(std::io::Error::other)??;
        Ok(())
    }

    /// What a journal entry says of `ino`'s content now; `None` once it has no name.
    fn entry_of(&self, ino: Ino, content: &Content) -> Option<Entry> {
        let t = self.table();
        let node = t.get(ino)?;
        let path = t.path(ino)?;
        let (size, written, base) = content.journal_parts();
        Some(Entry {
            key: format!("{}{}", self.prefix, path),
            staging: content.staging().path().to_path_buf(),
            size,
            written,
            base,
            metadata: self.stored_metadata(node.meta.as_ref()),
        })
    }

    /// An upload of `ino` (to `key`) failed with `e` (see `settle_failure`); the node then
    /// shows what the bucket holds (parked), or keeps its metadata for the next try.
    pub(super) async fn upload_error(
        &self,
        ino: Ino,
        key: &str,
        content: &Content,
        e: UploadError,
    ) -> FsError {
        let err = self
            .settle_failure(key, content, || self.entry_of(ino, content), e)
            .await;
        if let Some(node) = self.table().get_mut(ino) {
            match err {
                FsError::NotStored(_) => node.unknown(), // someone else's object, or none
                _ => node.meta_dirty = true,
            }
        }
        err
    }

    /// A failed upload of `content` to `key`, closed here or left by an earlier daemon. It
    /// is tried again later — unless it never can succeed: the object its unchanged bytes
    /// come from was deleted or replaced by another client. Then its staged bytes are
    /// parked (`Journal::park`, with the entry `entry` gives), never dropped, and the
    /// failure is reported. Returns the error for whoever waits on the upload.
    async fn settle_failure(
        &self,
        key: &str,
        content: &Content,
        entry: impl FnOnce() -> Option<Entry>,
        e: UploadError,
    ) -> FsError {
        if let Some(reason) = base_lost(content, &e).await {
            if let Some(entry) = entry() {
                if let Some(err) = self.park(&entry, content, &reason).await {
                    return err;
                }
            }
        }
        tracing::error!(key, error = %e, "upload failed; it stays pending and is tried again");
        self.failures.record(key, &e.to_string());
        self.upload_failed(content);
        FsError::Upload(e)
    }

    /// Parks `entry` (its content can never be uploaded: `reason`), reports it, and returns
    /// the error for whoever waits on the upload; `None` when it cannot be parked (no
    /// journal, or the move failed: it then stays pending, logged).
    async fn park(&self, entry: &Entry, content: &Content, reason: &str) -> Option<FsError> {
        let journal = self.journal.clone()?;
        let id = content
            .pending
            .lock()
            .unwrap()
            .journal
            .clone()
            .unwrap_or_else(|| journal.new_id());
        content.staging().keep(true);
        let (e2, id2) = (entry.clone(), id.clone());
        let why = reason.to_string();
        let parked = tokio::task::spawn_blocking(move || journal.park(&id2, &e2, &why))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        match parked {
            Ok(parked) => {
                // Its staging file is the parked copy now: a handle still open on it gets
                // ESTALE from here on instead of writing into it.
                content.poison(libc::ESTALE);
                {
                    let mut pending = content.pending.lock().unwrap();
                    pending.journal = None;
                    pending.due = None;
                }
                let message = format!(
                    "not stored: {reason}; the bytes written here are kept in {}",
                    parked.data.display()
                );
                tracing::error!(key = entry.key, "{message}");
                self.failures.record(&entry.key, &message);
                self.unsaved.lock().unwrap().push(entry.key.clone());
                Some(FsError::NotStored(message))
            }
            Err(e) => {
                tracing::error!(key = entry.key, id, error = %e, "cannot keep the bytes of a file that cannot be stored; it stays pending");
                None
            }
        }
    }

    /// The file's key or metadata changed while its upload is pending: rewrite its entry.
    pub(super) async fn journal_update(&self, ino: Ino) -> FsResult<()> {
        let Some(content) = self.dirty_content(ino) else {
            return Ok(());
        };
        if content.pending.lock().unwrap().journal.is_none() {
            return Ok(()); // still open: journaled at close
        }
        self.journal(ino, &content, false).await
    }

    /// The content is in the bucket (or no longer wanted): drop its entry and staging file.
    pub(super) fn journal_done(&self, content: &Content) {
        let id = {
            let mut pending = content.pending.lock().unwrap();
            pending.due = None;
            pending.failures = 0;
            pending.journal.take()
        };
        if let (Some(journal), Some(id)) = (&self.journal, id) {
            if let Err(e) = journal.remove(&id) {
                tracing::warn!(id, error = %e, "cannot remove a journal entry");
            }
        }
        content.staging().keep(false);
    }

    /// An upload failed: try again after a backoff that doubles with each failure.
    pub(super) fn upload_failed(&self, content: &Content) {
        let backoff = {
            let mut pending = content.pending.lock().unwrap();
            pending.failures += 1;
            self.opts
                .retry_interval
                .saturating_mul(1 << (pending.failures - 1).min(16))
                .min(MAX_BACKOFF)
        };
        self.schedule(content, Instant::now() + backoff);
    }

    /// Uploads the closed files (and earlier daemons' entries, see `Orphan`) whose time has
    /// come. Returns how many of them failed.
    pub async fn upload_due(&self) -> usize {
        let now = Instant::now();
        {
            let mut next = self.next_due.lock().unwrap();
            match *next {
                Some(at) if at <= now => *next = None,
                _ => return 0, // nothing due yet: no scan of what may be a million nodes
            }
        }
        let mut due = Vec::new();
        let mut later = None;
        for (ino, node) in self.table().all() {
            let Some(content) = node
                .content
                .as_ref()
                .filter(|c| node.linked && c.is_dirty())
            else {
                continue;
            };
            match content.pending.lock().unwrap().due {
                Some(at) if at <= now && node.open == 0 => due.push(ino),
                // Not yet, or held open: look again then (or at the next tick).
                Some(at) => later = Some(later.map_or(at, |l: Instant| l.min(at))),
                None => {}
            }
        }
        let orphans: Vec<Arc<Orphan>> = self
            .orphans
            .lock()
            .unwrap()
            .iter()
            .filter(|o| {
                let due = o.content.pending.lock().unwrap().due;
                if due.is_some_and(|at| at > now) {
                    later = due.map(|at| later.map_or(at, |l: Instant| l.min(at)));
                }
                due.is_none_or(|at| at <= now)
            })
            .cloned()
            .collect();
        self.due_by(later);
        self.upload_all(due).await.len() + self.upload_orphans(orphans).await.len()
    }

    /// Uploads every file whose content is not yet in the bucket, open or not, due or not
    /// (at unmount). Returns the keys of what could not be stored: failed uploads, and the
    /// files parked during this daemon's life (see `Journal::park`).
    pub async fn drain(&self) -> Vec<String> {
        let pending: Vec<Ino> = self
            .table()
            .all()
            .filter(|(_, n)| n.linked && n.content.as_ref().is_some_and(|c| c.is_dirty()))
            .map(|(i, _)| i)
            .collect();
        let orphans = self.orphans.lock().unwrap().clone();
        if !pending.is_empty() || !orphans.is_empty() {
            tracing::info!(
                files = pending.len() + orphans.len(),
                "uploading pending files before exit"
            );
        }
        let mut failed = self.upload_all(pending).await;
        failed.extend(self.upload_orphans(orphans).await);
        failed.extend(self.unsaved.lock().unwrap().iter().cloned());
        failed.sort();
        failed.dedup();
        failed
    }

    /// Uploads these files; returns the keys of those that failed.
    async fn upload_all(&self, inos: Vec<Ino>) -> Vec<String> {
        stream::iter(inos)
            .map(|ino| async move {
                let key = self.file_key(ino).ok();
                let result = self.upload_if_dirty(ino).await;
                self.drop_clean_content(ino);
                // (logged and recorded for `status` by the upload)
                result.err().and(key)
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// Uploads what an earlier daemon journaled and did not upload (it was killed), before
    /// the mount is ready. Entries that fail stay pending (see `Orphan`). Returns
    /// (uploaded, failed).
    pub async fn recover(&self) -> (usize, usize) {
        let Some(journal) = self.journal.clone() else {
            return (0, 0);
        };
        let entries = match tokio::task::spawn_blocking(move || journal.orphaned()).await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the write-back journal");
                return (0, 0);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the write-back journal");
                return (0, 0);
            }
        };
        if !entries.is_empty() {
            tracing::info!(
                files = entries.len(),
                "uploading files an earlier bucketfs left pending"
            );
        }
        let orphans: Vec<Arc<Orphan>> = entries
            .into_iter()
            .filter_map(|(id, entry)| self.orphan(id, entry))
            .collect();
        let total = orphans.len();
        let failed = self.upload_orphans(orphans).await.len();
        if let Some(journal) = self.journal.clone() {
            // Deletes the logs whose entries are now all done.
            let _ = tokio::task::spawn_blocking(move || journal.orphaned()).await;
        }
        (total - failed, failed)
    }

    /// The content a journal entry of an earlier daemon describes; `None` (logged, entry
    /// dropped) when its staged bytes are gone.
    fn orphan(&self, id: String, entry: Entry) -> Option<Arc<Orphan>> {
        let journal = self.journal.as_ref()?;
        let staging = match StagingFile::reopen(&entry.staging) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(key = entry.key, staging = %entry.staging.display(), error = %e,
                    "the staged data of a pending file is gone; it cannot be uploaded");
                self.failures.record(
                    &entry.key,
                    "its staged data is gone from the cache directory",
                );
                let _ = journal.remove(&id);
                return None;
            }
        };
        let base = entry
            .base
            .as_ref()
            .map(|b| Base::new(self.reader.clone(), b.key.clone(), b.etag.clone(), b.size));
        let valid = entry.base.as_ref().map_or(0, |b| b.valid);
        let content = Arc::new(Content::restore(
            staging,
            base,
            entry.size,
            &entry.written,
            valid,
        ));
        content.pending.lock().unwrap().journal = Some(id);
        Some(Arc::new(Orphan { entry, content }))
    }

    /// Uploads these entries of earlier daemons; those that fail and can be retried stay in
    /// `orphans` with a backoff. Returns the keys of the ones that failed (parked included).
    async fn upload_orphans(&self, orphans: Vec<Arc<Orphan>>) -> Vec<String> {
        stream::iter(orphans)
            .map(|o| async move {
                let result = self.upload_orphan(&o).await;
                let mut list = self.orphans.lock().unwrap();
                list.retain(|x| !Arc::ptr_eq(x, &o));
                match result {
                    Ok(()) => None,
                    Err(FsError::NotStored(_)) => Some(o.entry.key.clone()),
                    Err(_) => {
                        list.push(o.clone());
                        Some(o.entry.key.clone())
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    async fn upload_orphan(&self, o: &Orphan) -> FsResult<()> {
        let entry = &o.entry;
        let mut opts = self.opts.objects.for_key(&entry.key);
        opts.metadata = entry.metadata.clone();
        let source: Arc<dyn PartSource> = o.content.clone();
        let result = {
            let _keys_stay = self.keys.read().await;
            self.uploader
                .upload(&entry.key, source, entry.size, &opts)
                .await
        };
        match result {
            Ok(_) => {
                tracing::info!(
                    key = entry.key,
                    size = entry.size,
                    "uploaded a recovered file"
                );
                self.journal_done(&o.content);
                Ok(())
            }
            Err(e) => Err(self
                .settle_failure(&entry.key, &o.content, || Some(entry.clone()), e)
                .await),
        }
    }
}

/// A journal entry an earlier daemon left (it was killed) that is not uploaded yet: retried
/// like a closed file (with a backoff, and at unmount), and counted by `bucketfs status`.
/// Its key is fixed: no inode stands for it.
pub(super) struct Orphan {
    pub(super) entry: Entry,
    pub(super) content: Arc<Content>,
}

/// Why `content` can never be uploaded after failing with `e`, if it cannot: the object its
/// unchanged bytes come from is gone or was replaced (asked with one HEAD). A failure of
/// any other kind is worth another try.
async fn base_lost(content: &Content, e: &UploadError) -> Option<String> {
    let UploadError::Store(StoreError::NotFound | StoreError::PreconditionFailed) = e else {
        return None;
    };
    content.base_changed().await
}
