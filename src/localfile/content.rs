//! Local content of a file being written: a staging file holding the bytes written here, over
//! an optional *base* — the object the file was opened from.
//!
//! Only written ranges live in the staging file; the rest of the file is still the base
//! object's bytes (read with ranged GETs pinned to its ETag), or zeros past the base's end or
//! after a truncate. Nothing is downloaded to modify a file, and at upload the unchanged ranges
//! are copied server-side (UploadPartCopy), so appending 1 MiB to a 1 GiB object sends about
//! 1 MiB.
//!
//! Every write bumps `version`; an upload remembers the version it started from and marks
//! only that version as uploaded. A write that lands during an upload therefore leaves the
//! file dirty, and the next flush uploads again: no write is ever reported as stored when it
//! is not.

use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::journal::BaseRef;
use super::ranges::Ranges;
use super::staging::StagingFile;
use crate::cache::reader::{ObjectReader, Reader};
use crate::store::{Condition, StoreError};
use crate::upload::multipart::Upload;
use crate::upload::{CopyFrom, PartSource, UploadError};

/// The object a file was opened from, read through the mount's one reader (its block
/// caches and read-ahead), every GET pinned to `etag`.
pub struct Base {
    reader: Arc<Reader>,
    object: ObjectReader,
    pub key: String,
    pub etag: Option<String>,
    pub size: u64,
}

impl Base {
    pub fn new(reader: Arc<Reader>, key: String, etag: Option<String>, size: u64) -> Base {
        Base {
            object: reader.object(&key, etag.as_deref(), size, None),
            reader,
            key,
            etag,
            size,
        }
    }
}

#[derive(Debug)]
struct State {
    size: u64,
    version: u64,
    uploaded: u64,
    written: Ranges,
    /// Bytes below this offset that were not written are the base's (a truncate lowers it).
    base_valid: u64,
    /// Since when the content differs from the bucket (for `bucketfs status`).
    dirty_since: Option<SystemTime>,
    /// The errno of a write or truncate of the staging file that failed (a full cache
    /// filesystem): the staged content is not what the writer wrote, so it is never
    /// uploaded, and every later change and flush of it fails with this error.
    failed: Option<i32>,
}

impl State {
    /// Records a change: a new version, dirty from now on if it was clean.
    fn changed(&mut self) {
        if self.version == self.uploaded {
            self.dirty_since = Some(SystemTime::now());
        }
        self.version += 1;
    }
}

/// Lock order (outermost first), with `Fs::keys` and the inode table around them:
/// `Fs::keys` → `upload_lock` → `stream` → `filling` → the inode table → `state` → `base`;
/// `pending` is a leaf too (taken under the table, never with `state` or `base`). The tokio
/// locks (`upload_lock`, `stream`, `filling`) are held across store requests; the std ones
/// never across an await.
pub struct Content {
    staging: StagingFile,
    /// Replaced (`rebase`) once the file is uploaded: the new object holds the same bytes
    /// where the old one was still used.
    base: Mutex<Option<Arc<Base>>>,
    state: Mutex<State>,
    /// Held while this file is being uploaded, so uploads of one file never overlap.
    pub upload_lock: tokio::sync::Mutex<()>,
    /// Writes and truncates hold it shared; `keep_locally` holds it exclusively while it
    /// copies the base's bytes in, so no write lands between its read and its copy.
    filling: tokio::sync::RwLock<()>,
    /// The upload that streams this file while it is written sequentially.
    pub stream: tokio::sync::Mutex<Stream>,
    /// Write-back of the closed file (see `localfile::LocalFiles`). A leaf lock.
    pending: Mutex<Pending>,
    /// What the file's key held when these bytes were based on it (the object it was opened
    /// from, or none for a new file): the condition of its next upload. `None`: not known
    /// (a renamed file), uploaded unconditionally. A leaf lock.
    based_on: Mutex<Option<Condition>>,
}

/// A closed file waiting for its upload (its due time is in the write-back queue).
#[derive(Debug, Default)]
struct Pending {
    /// Its journal entry, once written.
    journal: Option<String>,
    /// Upload attempts that failed in a row.
    failures: u32,
    /// Why the last attempt failed, until an upload succeeds (`s3.state`).
    last_failure: Option<String>,
}

/// Streaming of a file written from its start: parts leave while the file is written.
pub enum Stream {
    /// Not started (the file is still below one part, or its last upload finished).
    Idle,
    Active(Upload),
    /// A write landed in a part already sent: the file is uploaded whole at close instead.
    Broken,
}

impl Stream {
    /// Ends an active stream that can no longer be used; its upload is aborted in the
    /// background. (An idle one stays idle.)
    pub fn break_off(&mut self) {
        if matches!(self, Stream::Active(_)) {
            if let Stream::Active(up) = std::mem::replace(self, Stream::Broken) {
                tokio::spawn(up.abort());
            }
        }
    }
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content")
            .field("staging", &self.staging)
            .field("base", &self.base().map(|b| b.key.clone()))
            .field("state", &self.state)
            .finish()
    }
}

impl Content {
    /// A new, empty file (dirty: it does not exist in the bucket yet).
    pub fn empty(staging: StagingFile) -> Content {
        Self::with(staging, None, 0, 1)
    }

    /// The unchanged content of `base`, to be modified.
    pub fn over(staging: StagingFile, base: Base) -> Content {
        let size = base.size;
        Self::with(staging, Some(base), size, 0)
    }

    fn with(staging: StagingFile, base: Option<Base>, size: u64, version: u64) -> Content {
        Content {
            staging,
            state: Mutex::new(State {
                size,
                version,
                uploaded: 0,
                written: Ranges::default(),
                base_valid: base.as_ref().map_or(0, |b| b.size),
                dirty_since: (version > 0).then(SystemTime::now),
                failed: None,
            }),
            base: Mutex::new(base.map(Arc::new)),
            upload_lock: tokio::sync::Mutex::new(()),
            filling: tokio::sync::RwLock::new(()),
            stream: tokio::sync::Mutex::new(Stream::Idle),
            pending: Mutex::new(Pending::default()),
            based_on: Mutex::new(None),
        }
    }

    /// The condition of the next upload (see the field).
    pub fn based_on(&self) -> Option<Condition> {
        self.based_on.lock().unwrap().clone()
    }

    /// The key now holds `condition`'s object: an upload of this file stored it, or the
    /// file was opened (or created) over it.
    pub fn set_based_on(&self, condition: Option<Condition>) {
        *self.based_on.lock().unwrap() = condition;
    }

    /// Content a journal entry describes (left by an earlier daemon): dirty, `written`
    /// ranges in `staging`, the rest from `base` below `base_valid`.
    pub fn restore(
        staging: StagingFile,
        base: Option<Base>,
        size: u64,
        written: &[(u64, u64)],
        base_valid: u64,
    ) -> Content {
        let content = Self::with(staging, base, size, 1);
        {
            let mut s = content.state.lock().unwrap();
            for (start, end) in written {
                s.written.insert(*start..*end);
            }
            s.base_valid = base_valid.min(size);
        }
        content
    }

    /// What a journal entry records about this content: size, written ranges, base.
    pub fn journal_parts(&self) -> (u64, Vec<(u64, u64)>, Option<BaseRef>) {
        let s = self.state.lock().unwrap();
        let written = s.written.iter().map(|r| (r.start, r.end)).collect();
        let base = self.base().map(|b| BaseRef {
            key: b.key.clone(),
            etag: b.etag.clone(),
            size: b.size,
            valid: s.base_valid,
        });
        (s.size, written, base)
    }

    pub fn staging(&self) -> &StagingFile {
        &self.staging
    }

    pub fn size(&self) -> u64 {
        self.state.lock().unwrap().size
    }

    /// End of the part written contiguously from offset 0 (what a stream may send).
    pub fn written_prefix(&self) -> u64 {
        self.state.lock().unwrap().written.prefix_end()
    }

    /// True when some bytes still come from the base object.
    pub fn has_base(&self) -> bool {
        self.base().is_some()
    }

    fn base(&self) -> Option<Arc<Base>> {
        self.base.lock().unwrap().clone()
    }

    /// The file was just stored as `key` (ETag `etag`): bytes still read from the old base
    /// are now read from that object, which holds the same bytes there.
    pub fn rebase(&self, key: &str, etag: Option<String>, size: u64) {
        let mut base = self.base.lock().unwrap();
        if let Some(old) = base.as_ref() {
            *base = Some(Arc::new(Base::new(
                old.reader.clone(),
                key.to_string(),
                etag,
                size,
            )));
        }
    }

    /// Why the object unwritten bytes come from can no longer give them, if it cannot: it
    /// was deleted or replaced (its ETag changed) since the file was opened. One HEAD.
    pub async fn base_changed(&self) -> Option<String> {
        let base = self.base()?;
        match base.reader.head(&base.key).await {
            Err(StoreError::NotFound) => Some(format!(
                "the object it was modified from ({}) was deleted by another client",
                base.key
            )),
            Ok(info) if base.etag.is_some() && info.etag != base.etag => Some(format!(
                "the object it was modified from ({}) was replaced by another client",
                base.key
            )),
            _ => None,
        }
    }

    /// Copies every byte still read from the base object into the staging file and lets go
    /// of the base: the content no longer needs its object, which is about to be deleted or
    /// replaced while the file is open. Writes and truncates wait meanwhile.
    pub async fn keep_locally(&self) -> Result<(), UploadError> {
        const PIECE: u64 = 8 << 20;
        let _no_change = self.filling.write().await;
        let Some(base) = self.base() else {
            return Ok(());
        };
        let gaps: Vec<Range<u64>> = {
            let s = self.state.lock().unwrap();
            s.written
                .segments(0..s.base_valid)
                .into_iter()
                .filter_map(|(piece, written)| (!written).then_some(piece))
                .collect()
        };
        for gap in gaps {
            let mut at = gap.start;
            while at < gap.end {
                let len = PIECE.min(gap.end - at);
                let data = base.object.read(at, len).await?;
                let got = data.len() as u64;
                if got > 0 {
                    self.staging
                        .write_at(at, data)
                        .await
                        .map_err(|e| self.fail(e))?;
                    self.state.lock().unwrap().written.insert(at..at + got);
                }
                if got < len {
                    break; // the rest of the gap reads as zeros, as it did from the base
                }
                at += got;
            }
        }
        *self.base.lock().unwrap() = None;
        Ok(())
    }

    /// The key of the object unwritten bytes come from, if any.
    pub fn base_key(&self) -> Option<String> {
        self.base().map(|b| b.key.clone())
    }

    /// The version of the base object (its ETag), if the content has one.
    pub fn base_etag(&self) -> Option<String> {
        self.base().and_then(|b| b.etag.clone())
    }

    /// The base object was moved (copied, then deleted) to `key`, now with ETag `etag`.
    pub fn base_moved(&self, key: &str, etag: Option<String>) {
        if let Some(size) = self.base().map(|b| b.size) {
            self.rebase(key, etag, size);
        }
    }

    /// Since when the content has not been in the bucket, if it is dirty.
    pub fn dirty_since(&self) -> Option<SystemTime> {
        self.state.lock().unwrap().dirty_since
    }

    pub fn is_dirty(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.version != s.uploaded
    }

    pub async fn write(&self, offset: u64, data: Bytes) -> io::Result<()> {
        let _no_filling = self.filling.read().await;
        self.check_failed()?;
        let end = offset + data.len() as u64;
        if let Err(e) = self.staging.write_at(offset, data).await {
            return Err(self.fail(e));
        }
        let mut s = self.state.lock().unwrap();
        s.written.insert(offset..end);
        s.size = s.size.max(end);
        s.changed();
        Ok(())
    }

    /// Reads up to `len` bytes at `offset`, never past the file's size.
    pub async fn read(&self, offset: u64, len: usize) -> Result<Bytes, UploadError> {
        let size = self.size();
        if offset >= size {
            return Ok(Bytes::new());
        }
        self.read_range(offset..size.min(offset + len as u64)).await
    }

    async fn read_range(&self, range: Range<u64>) -> Result<Bytes, UploadError> {
        let base = self.base();
        let (segments, base_valid) = {
            let s = self.state.lock().unwrap();
            (s.written.segments(range.clone()), s.base_valid)
        };
        if let [(piece, written)] = segments.as_slice() {
            if *written || base.is_none() {
                // All from the staging file (the usual case for new files): no extra copy.
                let len = (piece.end - piece.start) as usize;
                let data = self.staging.read_at(piece.start, len).await?;
                if data.len() == len {
                    return Ok(data);
                }
            }
        }
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for (piece, written) in segments {
            let len = (piece.end - piece.start) as usize;
            if written || base.is_none() {
                let data = self.staging.read_at(piece.start, len).await?;
                out.extend_from_slice(&data);
                out.resize(out.len() + len - data.len(), 0); // a hole past the staged end
                continue;
            }
            let base = base.as_ref().expect("checked");
            let from_base = piece.start..piece.end.min(base_valid).max(piece.start);
            if !from_base.is_empty() {
                let data = base
                    .object
                    .read(from_base.start, from_base.end - from_base.start)
                    .await?;
                out.extend_from_slice(&data);
                let short = (from_base.end - from_base.start) as usize - data.len();
                out.extend(std::iter::repeat_n(0u8, short));
            }
            out.extend(std::iter::repeat_n(
                0u8,
                (piece.end - from_base.end) as usize,
            ));
        }
        Ok(out.freeze())
    }

    pub async fn truncate(&self, size: u64) -> io::Result<()> {
        let _no_filling = self.filling.read().await;
        self.check_failed()?;
        if let Err(e) = self.staging.set_len(size).await {
            return Err(self.fail(e));
        }
        let mut s = self.state.lock().unwrap();
        s.size = size;
        s.written.truncate(size);
        s.base_valid = s.base_valid.min(size);
        s.changed();
        Ok(())
    }

    /// The id of its journal entry, once it has one.
    pub fn journal_id(&self) -> Option<String> {
        self.pending.lock().unwrap().journal.clone()
    }

    /// The id of its journal entry, given by `new_id` if it has none yet.
    pub fn journal_id_or(&self, new_id: impl FnOnce() -> String) -> String {
        self.pending
            .lock()
            .unwrap()
            .journal
            .get_or_insert_with(new_id)
            .clone()
    }

    /// Its write-back is over (stored, dropped or parked): returns the journal id it had.
    pub fn settled(&self) -> Option<String> {
        let mut pending = self.pending.lock().unwrap();
        pending.failures = 0;
        pending.last_failure = None;
        pending.journal.take()
    }

    /// An upload of it failed with `error`: returns how many failed in a row.
    pub fn upload_failed(&self, error: &str) -> u32 {
        let mut pending = self.pending.lock().unwrap();
        pending.failures += 1;
        pending.last_failure = Some(error.to_string());
        pending.failures
    }

    /// Why its last upload failed, if the last one did (none since succeeded).
    pub fn last_failure(&self) -> Option<String> {
        self.pending.lock().unwrap().last_failure.clone()
    }

    /// True while an upload of it is in flight (it holds `upload_lock`; so does a rename
    /// of the file for the moment it changes names).
    pub fn upload_in_flight(&self) -> bool {
        self.upload_lock.try_lock().is_err()
    }

    /// The version and size an upload starting now will store.
    pub fn snapshot(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap();
        (s.version, s.size)
    }

    /// An upload of `version` succeeded: that version is in the bucket, and no failure
    /// counts any more.
    pub fn mark_uploaded(&self, version: u64) {
        {
            let mut s = self.state.lock().unwrap();
            s.uploaded = s.uploaded.max(version);
            if s.uploaded == s.version {
                s.dirty_since = None;
            }
        }
        let mut pending = self.pending.lock().unwrap();
        pending.failures = 0;
        pending.last_failure = None;
    }

    /// A change of the staging file failed: nothing of this content is uploaded any more
    /// (see `State::failed`). Returns the error.
    fn fail(&self, e: io::Error) -> io::Error {
        self.poison(e.raw_os_error().unwrap_or(libc::EIO));
        e
    }

    /// Makes this content unusable: nothing of it is uploaded any more, and every later
    /// change or flush fails with `errno` (see `State::failed`).
    pub fn poison(&self, errno: i32) {
        let mut s = self.state.lock().unwrap();
        s.failed = Some(errno);
        s.uploaded = s.version;
        s.dirty_since = None;
    }

    /// The error of a failed change of this content, if one failed (see `State::failed`).
    pub fn check_failed(&self) -> io::Result<()> {
        match self.state.lock().unwrap().failed {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    /// Forget pending changes (the file was unlinked: there is nothing left to upload).
    pub fn discard(&self) {
        let mut s = self.state.lock().unwrap();
        s.uploaded = s.version;
        s.dirty_since = None;
    }
}

#[async_trait]
impl PartSource for Content {
    async fn read(&self, range: Range<u64>) -> Result<Bytes, UploadError> {
        self.read_range(range).await
    }

    fn copy_source(&self, range: &Range<u64>) -> Option<CopyFrom> {
        let base = self.base()?;
        let s = self.state.lock().unwrap();
        (range.end <= s.base_valid && !s.written.overlaps(range)).then(|| CopyFrom {
            key: base.key.clone(),
            etag: base.etag.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{ObjectStore, PutOptions};

    async fn over(data: &[u8]) -> (Content, tempfile::TempDir) {
        let mem = Arc::new(MemoryStore::new());
        mem.put("k", Bytes::copy_from_slice(data), &PutOptions::default())
            .await
            .unwrap();
        let etag = mem.head("k").await.unwrap().etag;
        let dir = tempfile::tempdir().unwrap();
        let staging = StagingFile::create(dir.path()).unwrap();
        let reader = Arc::new(Reader::new(mem, &Default::default(), None));
        let base = Base::new(reader, "k".into(), etag, data.len() as u64);
        (Content::over(staging, base), dir)
    }

    #[tokio::test]
    async fn unwritten_ranges_read_from_the_base_written_ones_from_staging() {
        let (c, _d) = over(b"0123456789").await;
        assert!(!c.is_dirty());
        c.write(3, Bytes::from_static(b"ab")).await.unwrap();
        c.write(12, Bytes::from_static(b"Z")).await.unwrap();
        assert_eq!(&c.read(0, 100).await.unwrap()[..], b"012ab56789\0\0Z");
        assert!(c.is_dirty());
        let from = c.copy_source(&(5..10)).expect("unchanged: copied");
        assert_eq!(from.key, "k");
        assert!(
            from.etag.is_some(),
            "pinned to the version it was read from"
        );
        assert_eq!(c.copy_source(&(2..6)), None, "overlaps a write");
    }

    #[tokio::test]
    async fn a_truncate_then_grow_reads_zeros_not_the_old_bytes() {
        let (c, _d) = over(b"0123456789").await;
        c.truncate(4).await.unwrap();
        c.truncate(8).await.unwrap();
        assert_eq!(&c.read(0, 100).await.unwrap()[..], b"0123\0\0\0\0");
        assert_eq!(c.copy_source(&(0..8)), None, "past the truncate");
        assert_eq!(c.copy_source(&(0..4)).map(|f| f.key).as_deref(), Some("k"));
    }
}
