//! Local files: files whose bytes are here and not (all) in the bucket. This owner keeps
//! their staged content (`content`, `ranges`, `staging`), the journal entry that is the
//! persisted state of a closed one (`journal`), the write-back queue that says when each is
//! due (`queue`, with its own timer), the backoff of failed uploads, the files that can never
//! be stored (parked), and the entries an earlier daemon left (`Orphan`).
//!
//! It never sees an inode: the filesystem names a file by an id of its own (`Due::File`) and
//! gives keys and journal entries; what an upload did comes back to it as values.

pub mod conflicts;
pub mod content;
pub mod failures;
pub mod journal;
pub mod queue;
mod ranges;
pub mod staging;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cache::reader::Reader;
use crate::config::FsOptions;
use crate::store::StoreError;
use crate::upload::UploadError;
use conflicts::ConflictLog;
use content::{Base, Content};
use failures::FailureLog;
use journal::{Entry, Journal, Parked};
use queue::DueQueue;
use staging::StagingFile;

/// Longest wait between two attempts of a failing upload.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What the local files need to know (derived from the mount's options).
#[derive(Debug, Clone)]
pub struct LocalFileConfig {
    /// How long a closed file waits before its upload (0: uploaded at close).
    pub write_back_delay: Duration,
    /// The first wait before a failed upload is tried again (it doubles each time).
    pub retry_interval: Duration,
}

impl From<&FsOptions> for LocalFileConfig {
    fn from(o: &FsOptions) -> Self {
        LocalFileConfig {
            write_back_delay: o.write_back_delay,
            retry_interval: o.retry_interval,
        }
    }
}

/// The defaults of a mount that sets nothing.
impl Default for LocalFileConfig {
    fn default() -> Self {
        LocalFileConfig::from(&FsOptions::default())
    }
}

/// An item of the write-back queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Due {
    /// A closed file, by the id its owner gives it.
    File(u64),
    /// An earlier daemon's entry, by its journal id.
    Orphan(String),
}

/// A journal entry an earlier daemon left (it was killed) that is not uploaded yet: retried
/// like a closed file (with a backoff, and at unmount), and counted by `bucketfs status`.
/// Its key is fixed: no file of this mount stands for it.
pub struct Orphan {
    pub id: String,
    pub entry: Entry,
    pub content: Arc<Content>,
}

/// How a failed upload was settled (see `LocalFiles::settle_failure`).
pub enum Settled {
    /// Tried again after a backoff.
    Retry,
    /// It can never be stored: its bytes were parked; the message says where.
    Parked(String),
}

pub struct LocalFiles {
    staging_dir: PathBuf,
    /// Reads the unchanged bytes of modified files (their bases).
    reader: Arc<Reader>,
    /// `None` in unit tests that do not need one.
    journal: Option<Arc<Journal>>,
    config: LocalFileConfig,
    queue: DueQueue<Due>,
    /// Recent upload failures, for `bucketfs status`.
    failures: FailureLog,
    /// Files another client changed meanwhile, kept under a conflict name.
    conflicts: ConflictLog,
    /// This machine's name, in conflict names.
    host: String,
    /// Entries of earlier daemons not uploaded yet. A leaf lock.
    orphans: Mutex<Vec<Arc<Orphan>>>,
    /// Keys of files parked during this daemon's life, reported when it exits. A leaf lock.
    unsaved: Mutex<Vec<String>>,
    /// Journal entries of earlier daemons read back (`recover`).
    replayed: AtomicU64,
}

impl LocalFiles {
    pub fn new(
        staging_dir: PathBuf,
        reader: Arc<Reader>,
        journal: Option<Arc<Journal>>,
        config: LocalFileConfig,
    ) -> LocalFiles {
        LocalFiles {
            staging_dir,
            reader,
            journal,
            config,
            queue: DueQueue::default(),
            failures: FailureLog::default(),
            conflicts: ConflictLog::default(),
            host: conflicts::host_name(),
            orphans: Mutex::default(),
            unsaved: Mutex::default(),
            replayed: AtomicU64::new(0),
        }
    }

    pub fn write_back_delay(&self) -> Duration {
        self.config.write_back_delay
    }

    /// A new, empty file.
    pub fn empty(&self) -> std::io::Result<Arc<Content>> {
        Ok(Arc::new(Content::empty(self.new_staging()?)))
    }

    /// A staging file for a new content.
    pub fn new_staging(&self) -> std::io::Result<StagingFile> {
        StagingFile::create(&self.staging_dir)
    }

    /// The stored object `key` (ETag `etag`, `size` bytes) as the base of a content.
    pub fn base(&self, key: String, etag: Option<String>, size: u64) -> Base {
        Base::new(self.reader.clone(), key, etag, size)
    }

    /// Writes (or rewrites) the journal entry of `content`. When `durable` (at close) the
    /// staged bytes and the entry are synced to disk; an update after close (a rename, a
    /// chmod) replaces the entry atomically without a sync of its own.
    pub async fn journal(
        &self,
        content: &Content,
        entry: Entry,
        durable: bool,
    ) -> std::io::Result<()> {
        let Some(journal) = self.journal.clone() else {
            return Ok(());
        };
        let id = content.journal_id_or(|| journal.new_id());
        content.staging().keep(true);
        if durable {
            content.staging().sync().await?;
        }
        tokio::task::spawn_blocking(move || journal.record(&id, &entry, durable))
            .await
            .map_err(std::io::Error::other)?
    }

    /// True when `content` has a journal entry (it was closed, and is not stored yet).
    pub fn is_journaled(&self, content: &Content) -> bool {
        content.journal_id().is_some()
    }

    /// The content is in the bucket (or no longer wanted): drop its entry and staging file.
    pub fn done(&self, content: &Content) {
        if let (Some(journal), Some(id)) = (&self.journal, content.settled()) {
            if let Err(e) = journal.remove(&id) {
                tracing::warn!(id, error = %e, "cannot remove a journal entry");
            }
        }
        content.staging().keep(false);
    }

    /// Makes `item` due after the write-back delay.
    pub fn schedule_after_delay(&self, item: Due) {
        self.schedule(item, Instant::now() + self.config.write_back_delay);
    }

    pub fn schedule(&self, item: Due, at: Instant) {
        self.queue.schedule(item, at);
    }

    pub fn is_scheduled(&self, item: &Due) -> bool {
        self.queue.contains(item)
    }

    /// The items whose time has come.
    pub fn take_due(&self) -> Vec<Due> {
        self.queue.take_due(Instant::now())
    }

    /// Returns once some item is due.
    pub async fn wait_due(&self) {
        self.queue.wait().await
    }

    /// A failed upload of `content` (of `item`, to `key`), closed here or left by an
    /// earlier daemon. It is tried again after a backoff that doubles with each failure —
    /// unless it never can succeed: the object its unchanged bytes come from was deleted or
    /// replaced by another client. Then its staged bytes are parked (`Journal::park`, with
    /// the entry `entry` gives), never dropped, and the failure is reported.
    pub async fn settle_failure(
        &self,
        item: Due,
        key: &str,
        content: &Content,
        entry: impl FnOnce() -> Option<Entry>,
        e: &UploadError,
    ) -> Settled {
        if let Some(reason) = base_lost(content, e).await {
            if let Some(entry) = entry() {
                if let Some(message) = self.park(&entry, content, &reason).await {
                    return Settled::Parked(message);
                }
            }
        }
        tracing::error!(key, error = %e, "upload failed; it stays pending and is tried again");
        let error = e.to_string();
        self.failures.record(key, &error);
        let failures = content.upload_failed(&error);
        let backoff = self
            .config
            .retry_interval
            .saturating_mul(1 << (failures - 1).min(16))
            .min(MAX_BACKOFF);
        self.schedule(item, Instant::now() + backoff);
        Settled::Retry
    }

    /// Parks `entry` (its content can never be uploaded: `reason`), reports it, and returns
    /// the message for whoever waits on the upload; `None` when it cannot be parked (no
    /// journal, or the move failed: it then stays pending, logged).
    async fn park(&self, entry: &Entry, content: &Content, reason: &str) -> Option<String> {
        let journal = self.journal.clone()?;
        let id = content.journal_id().unwrap_or_else(|| journal.new_id());
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
                content.settled();
                let message = format!(
                    "not stored: {reason}; the bytes written here are kept in {}",
                    parked.data.display()
                );
                tracing::error!(key = entry.key, "{message}");
                self.failures.record(&entry.key, &message);
                self.unsaved.lock().unwrap().push(entry.key.clone());
                Some(message)
            }
            Err(e) => {
                tracing::error!(key = entry.key, id, error = %e, "cannot keep the bytes of a file that cannot be stored; it stays pending");
                None
            }
        }
    }

    /// The key a file's bytes are kept under when another client changed its object `key`.
    pub fn conflict_key(&self, key: &str) -> String {
        conflicts::conflict_key(key, &self.host, std::time::SystemTime::now())
    }

    /// A conflict was settled: the other client's object stays under `key`, this file's
    /// bytes are under `kept_as`. Logged, counted and shown by `bucketfs status`.
    pub fn record_conflict(&self, key: &str, kept_as: &str) {
        tracing::error!(
            key,
            kept_as,
            "another client changed the file since it was opened here: its version stays, \
             this host's version is stored under the conflict name"
        );
        self.conflicts.record(key, kept_as);
    }

    /// The most recent conflicts (most recent first) and how many there were in all.
    pub fn conflicts(&self) -> (Vec<conflicts::Conflict>, u64) {
        (self.conflicts.recent(), self.conflicts.total())
    }

    /// Records a failure for `bucketfs status` (one not settled here).
    pub fn record_failure(&self, key: &str, error: &str) {
        self.failures.record(key, error);
    }

    /// The most recent upload failures, newest first, and how many there were in all.
    pub fn failures(&self) -> (Vec<failures::Failure>, u64) {
        (self.failures.recent(), self.failures.total())
    }

    /// How many journal entries of earlier daemons `recover` read back.
    pub fn replayed(&self) -> u64 {
        self.replayed.load(Ordering::Relaxed)
    }

    /// Keys of the files parked during this daemon's life.
    pub fn unsaved(&self) -> Vec<String> {
        self.unsaved.lock().unwrap().clone()
    }

    /// Every parked file in the cache directory (earlier daemons' too).
    pub fn parked(&self) -> std::io::Result<Vec<Parked>> {
        match &self.journal {
            Some(journal) => journal.parked(),
            None => Ok(Vec::new()),
        }
    }

    /// Reads what earlier daemons journaled and did not upload (they were killed), as
    /// orphans now pending here. Entries whose staged bytes are gone are dropped (logged,
    /// recorded as failures).
    pub async fn recover(&self) -> Vec<Arc<Orphan>> {
        let Some(journal) = self.journal.clone() else {
            return Vec::new();
        };
        let entries = match tokio::task::spawn_blocking(move || journal.orphaned()).await {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the write-back journal");
                return Vec::new();
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the write-back journal");
                return Vec::new();
            }
        };
        self.replayed
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        let orphans: Vec<Arc<Orphan>> = entries
            .into_iter()
            .filter_map(|(id, entry)| self.orphan(id, entry))
            .collect();
        self.orphans.lock().unwrap().extend(orphans.iter().cloned());
        orphans
    }

    /// Deletes the journal logs whose entries are now all done.
    pub async fn compact_journal(&self) {
        if let Some(journal) = self.journal.clone() {
            let _ = tokio::task::spawn_blocking(move || journal.orphaned()).await;
        }
    }

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
            .map(|b| self.base(b.key.clone(), b.etag.clone(), b.size));
        let valid = entry.base.as_ref().map_or(0, |b| b.valid);
        let content = Arc::new(Content::restore(
            staging,
            base,
            entry.size,
            &entry.written,
            valid,
        ));
        content.journal_id_or(|| id.clone());
        content.set_based_on(entry.based_on());
        Some(Arc::new(Orphan { id, entry, content }))
    }

    /// The orphans still pending.
    pub fn orphans(&self) -> Vec<Arc<Orphan>> {
        self.orphans.lock().unwrap().clone()
    }

    /// The orphan with journal id `id`, if still pending.
    pub fn orphan_by_id(&self, id: &str) -> Option<Arc<Orphan>> {
        self.orphans
            .lock()
            .unwrap()
            .iter()
            .find(|o| o.id == id)
            .cloned()
    }

    /// The orphan still pending for `key`, if any.
    pub fn orphan_for_key(&self, key: &str) -> Option<Arc<Orphan>> {
        self.orphans
            .lock()
            .unwrap()
            .iter()
            .find(|o| o.entry.key == key)
            .cloned()
    }

    /// An orphan was stored, or parked: it is no longer pending here.
    pub fn orphan_gone(&self, o: &Arc<Orphan>) {
        self.orphans.lock().unwrap().retain(|x| !Arc::ptr_eq(x, o));
    }
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
