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
use crate::upload::journal::Entry;
use crate::upload::staging::StagingFile;
use crate::upload::PartSource;

/// Closed files uploaded at once by the write-back loop, the drain and the recovery.
const CONCURRENCY: usize = 16;

/// Longest wait between two attempts of a failing upload.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Fs {
    /// `close` of a writable handle: uploads now (delay 0, or a file already streaming) and
    /// returns the error, or journals the file and leaves the upload to `upload_due`.
    pub(super) async fn close_written(&self, ino: Ino) -> FsResult<()> {
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
        let (entry, id) = {
            let t = self.table();
            let node = t.get(ino).ok_or(FsError::NotFound)?;
            let Some(path) = t.path(ino) else {
                return Ok(()); // unlinked: nothing to keep
            };
            let (size, written, base) = content.journal_parts();
            let entry = Entry {
                key: format!("{}{}", self.prefix, path),
                staging: content.staging().path().to_path_buf(),
                size,
                written,
                base,
                metadata: self.stored_metadata(node.meta.as_ref()),
            };
            let mut pending = content.pending.lock().unwrap();
            let id = pending.journal.get_or_insert_with(|| journal.new_id());
            (entry, id.clone())
        };
        content.staging().keep(true);
        if durable {
            content.staging().sync().await?;
        }
        tokio::task::spawn_blocking(move || journal.record(&id, &entry, durable))
            .await
            .map_err(std::io::Error::other)??;
        Ok(())
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

    /// Uploads the closed files whose time has come. Returns how many of them failed.
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
        self.due_by(later);
        self.upload_all(due).await
    }

    /// Uploads every file whose content is not yet in the bucket, open or not, due or not
    /// (at unmount). Returns how many could not be uploaded.
    pub async fn drain(&self) -> usize {
        let pending: Vec<Ino> = self
            .table()
            .all()
            .filter(|(_, n)| n.linked && n.content.as_ref().is_some_and(|c| c.is_dirty()))
            .map(|(i, _)| i)
            .collect();
        if !pending.is_empty() {
            tracing::info!(files = pending.len(), "uploading pending files before exit");
        }
        self.upload_all(pending).await
    }

    async fn upload_all(&self, inos: Vec<Ino>) -> usize {
        stream::iter(inos)
            .map(|ino| async move {
                let result = self.upload_if_dirty(ino).await;
                self.drop_clean_content(ino);
                result.is_err() // logged and recorded for `status` by the upload
            })
            .buffer_unordered(CONCURRENCY)
            .filter(|failed| std::future::ready(*failed))
            .count()
            .await
    }

    /// Uploads what an earlier daemon journaled and did not upload (it was killed). Entries
    /// that fail stay in the journal for the next mount. Returns (uploaded, failed).
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
        let results: Vec<bool> = stream::iter(entries)
            .map(|(id, entry)| self.recover_one(id, entry))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let failed = results.iter().filter(|ok| !**ok).count();
        if let Some(journal) = self.journal.clone() {
            // Deletes the logs whose entries are now all done.
            let _ = tokio::task::spawn_blocking(move || journal.orphaned()).await;
        }
        (results.len() - failed, failed)
    }

    async fn recover_one(&self, id: String, entry: Entry) -> bool {
        let journal = self.journal.as_ref().expect("recover checked");
        let staging = match StagingFile::reopen(&entry.staging) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(key = entry.key, staging = %entry.staging.display(), error = %e,
                    "the staged data of a pending file is gone; it cannot be uploaded");
                let _ = journal.remove(&id);
                return false;
            }
        };
        let base = entry.base.as_ref().map(|b| Base {
            store: self.store.clone(),
            key: b.key.clone(),
            etag: b.etag.clone(),
            size: b.size,
        });
        let valid = entry.base.as_ref().map_or(0, |b| b.valid);
        let content = Arc::new(Content::restore(
            staging,
            base,
            entry.size,
            &entry.written,
            valid,
        ));
        let mut opts = self.opts.objects.for_key(&entry.key);
        opts.metadata = entry.metadata.clone();
        let source: Arc<dyn PartSource> = content.clone();
        match self
            .uploader
            .upload(&entry.key, source, entry.size, &opts)
            .await
        {
            Ok(_) => {
                tracing::info!(
                    key = entry.key,
                    size = entry.size,
                    "uploaded a recovered file"
                );
                let _ = journal.remove(&id);
                content.staging().keep(false);
                true
            }
            Err(e) => {
                tracing::error!(key = entry.key, error = %e,
                    "a recovered file could not be uploaded; it stays in the journal for the next mount");
                self.failures.record(&entry.key, &e.to_string());
                false
            }
        }
    }
}
