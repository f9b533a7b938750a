//! Files: create, open, read, write, flush/fsync/release, truncate and unlink.
//!
//! Reads of a file with no local content go through the handle's prefetcher. The first write
//! (or truncate) gives the file local content: a staging file holding the written ranges over
//! the object (`content`); at upload, unchanged ranges are copied server-side. Uploads happen at
//! flush (close) and fsync, and their errors are returned there. A file whose upload failed
//! keeps its staged content and is retried at the next flush and at unmount.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::error::{FsError, FsResult};
use super::handle::Handle;
use super::setattr::Owner;
use super::{Attr, Fs};
use crate::localfile::content::{Content, Stream};
use crate::localfile::Due;
use crate::names::inode::{Ino, Kind, Meta, Node, Stat};
use crate::names::posix::CLAIM_KEY;
use crate::names::rules::check_name;
use crate::store::{Condition, ObjectStore, PutOptions, StoreError};
use crate::upload::{PartSource, UploadError};

/// What the node's key holds as far as this mount knows, as the condition of a write
/// over it: nothing (a name not in the bucket), or the object of the ETag it last saw.
pub(super) fn based_on(node: &Node) -> Option<Condition> {
    if node.remote() {
        node.etag().map(Condition::Is)
    } else {
        Some(Condition::Absent)
    }
}

/// What a write over the node's key, or its delete, would replace (as its condition): what
/// the file's own changes were based on when it has local content (a file that took over a
/// stored name by a rename knows it only there), else `based_on`.
pub(super) fn replaced_at(node: &Node) -> Option<Condition> {
    match node.content() {
        Some(c) => c.based_on(),
        None => based_on(node),
    }
}

impl Fs {
    fn new_file_handle(&self, ino: Ino, writable: bool) -> u64 {
        self.handles.insert(Handle::File {
            ino,
            writable,
            reader: tokio::sync::OnceCell::new(),
        })
    }

    /// Creates an empty file (uploaded at the first flush) and opens it. With `O_EXCL` and
    /// `exclusive_in_bucket` the name is reserved in the bucket first: an empty object is
    /// created only if none exists, so of several hosts creating one name exclusively, one
    /// succeeds and the others get `EEXIST`. Otherwise the upload is conditional on the name
    /// being free (`conflict = keep-both`), and a host that lost the race keeps its bytes
    /// under a conflict name.
    pub async fn create(
        &self,
        parent: Ino,
        name: &std::ffi::OsStr,
        flags: i32,
        owner: Owner,
    ) -> FsResult<(Attr, u64)> {
        self.check_writable()?;
        let name = check_name(name)?;
        // The kernel sends create only after our lookup said the name is free, so the store
        // is not asked again; a name taken meanwhile by this mount still counts for O_EXCL.
        if flags & libc::O_EXCL != 0 && self.names.table().child(parent, name).is_some() {
            return Err(FsError::Exists);
        }
        let key = self.names.child_key(parent, name, Kind::File)?;
        let content = self.files.empty()?;
        content.set_based_on(Some(Condition::Absent)); // a new name: nothing to replace
        let meta = self.new_meta(Kind::File, owner);
        let mut stat = Stat {
            kind: Kind::File,
            size: 0,
            mtime: SystemTime::now(),
            etag: None,
            remote: false,
            meta: None,
        };
        if flags & libc::O_EXCL != 0 && self.opts.exclusive_in_bucket {
            let mut opts = self.opts.objects.for_key(&key);
            opts.metadata = self.stored_metadata(Some(&meta));
            // Every host reserving the name sends the same empty body: the claim tells this
            // create's own object (an answer lost, a retry refused) from another host's.
            let claim = format!("{:016x}", rand::random::<u64>());
            opts.metadata.insert(CLAIM_KEY.into(), claim);
            opts.condition = Some(Condition::Absent);
            match self.store.put(&key, Bytes::new(), &opts).await {
                Ok(etag) => {
                    content.set_based_on(etag.clone().map(Condition::Is));
                    content.mark_uploaded(content.snapshot().0); // stored, empty
                    stat.remote = true;
                    stat.etag = etag;
                }
                Err(StoreError::PreconditionFailed) => return Err(FsError::Exists),
                Err(e) => return Err(e.into()),
            }
        }
        stat.meta = Some(Meta::shared(meta));
        self.names.name_appeared(parent, name);
        let ino = {
            let mut t = self.names.table();
            if t.get(parent).map(|p| p.kind()) != Some(Kind::Dir) {
                return Err(FsError::NotFound);
            }
            // (upsert would replace a directory of that name by the new file: refuse instead)
            let existing = t
                .child(parent, name)
                .and_then(|c| t.get(c))
                .map(|n| n.kind());
            if existing == Some(Kind::Dir) {
                return Err(FsError::IsDir);
            }
            let ino = t.upsert(parent, name, stat, Instant::now());
            let node = t.get_mut(ino).expect("just inserted");
            node.created_here(content);
            ino
        };
        self.names.entries_changed(&[parent]);
        let attr = self.referenced(ino)?;
        Ok((attr, self.new_file_handle(ino, true)))
    }

    /// Opens a file; also says whether the kernel may keep the pages it cached at an earlier
    /// open (true when the object's ETag has not changed since).
    pub async fn open(&self, ino: Ino, flags: i32) -> FsResult<(u64, bool)> {
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if writable {
            self.check_writable()?;
        }
        // Revalidates stale attributes, so the ETag (and the caches keyed by it) are current.
        self.getattr(ino).await?;
        if writable {
            // The upload will store the metadata: know all of it first.
            self.names.ensure_meta(ino).await?;
        }
        let keep_cache = {
            let mut t = self.names.table();
            let node = t.get_mut(ino).ok_or(FsError::NotFound)?;
            if node.kind() == Kind::Dir {
                return Err(FsError::IsDir);
            }
            node.opened(writable)
        };
        if writable && flags & libc::O_TRUNC != 0 {
            if let Err(e) = self.truncate_content(ino, 0).await {
                if let Some(n) = self.names.table().get_mut(ino) {
                    n.closed();
                }
                return Err(e);
            }
        }
        Ok((self.new_file_handle(ino, writable), keep_cache && !writable))
    }

    pub async fn read(&self, fh: u64, offset: u64, len: u32) -> FsResult<Bytes> {
        let handle = self.handles.get(fh)?;
        let Handle::File { ino, reader, .. } = &*handle else {
            return Err(FsError::BadHandle);
        };
        let content = self
            .names
            .table()
            .get(*ino)
            .ok_or(FsError::NotFound)?
            .content()
            .cloned();
        if let Some(content) = content {
            return Ok(content.read(offset, len as usize).await?);
        }
        let object = reader.get_or_try_init(|| async {
            let key = self.names.file_key(*ino)?;
            let t = self.names.table();
            let node = t.get(*ino).ok_or(FsError::NotFound)?;
            let object = (self.reader).object(
                &key,
                node.etag().as_deref(),
                node.stored_size(),
                Some(node.mtime()),
            );
            Ok::<_, FsError>(Box::new(object))
        });
        Ok(object.await?.read(offset, u64::from(len)).await?)
    }

    pub async fn write(&self, fh: u64, offset: u64, data: Bytes) -> FsResult<u32> {
        let handle = self.handles.get(fh)?;
        let Handle::File { ino, writable, .. } = &*handle else {
            return Err(FsError::BadHandle);
        };
        if !*writable {
            return Err(FsError::BadHandle);
        }
        let len = data.len() as u32;
        let content = self.content_for_write(*ino).await?;
        if let Err(e) = content.write(offset, data).await {
            return Err(self.staging_failed(&content, e).await);
        }
        self.stream_written(*ino, &content, offset).await;
        self.touched_by_write(*ino);
        Ok(len)
    }

    /// Sends the whole parts of a file written sequentially from its start while it is being
    /// written (a file over an existing object is uploaded at close instead). A write into a
    /// part already sent breaks the stream off; the file is then uploaded whole at close.
    async fn stream_written(&self, ino: Ino, content: &Arc<Content>, offset: u64) {
        if content.has_base() {
            return;
        }
        let available = content.written_prefix();
        let mut stream = content.stream.lock().await;
        match &*stream {
            Stream::Broken => return,
            Stream::Active(up) if offset < up.sent_up_to() => return stream.break_off(),
            Stream::Idle if available < self.uploader.part_size() => return,
            Stream::Idle => {
                let Ok(key) = self.names.file_key(ino) else {
                    return;
                };
                let source: Arc<dyn PartSource> = content.clone();
                // (its condition is given when it completes: see `upload_holding_keys`)
                let Ok(opts) = self.put_options(&key, ino) else {
                    return;
                };
                match self.uploader.start(&key, source, &opts).await {
                    Ok(up) => *stream = Stream::Active(up),
                    Err(e) => {
                        tracing::warn!(key, error = %e, "cannot stream; the file is uploaded at close");
                        *stream = Stream::Broken;
                        return;
                    }
                }
            }
            Stream::Active(_) => {}
        }
        if let Stream::Active(up) = &mut *stream {
            if let Err(e) = up.send_available(available).await {
                tracing::warn!(key = up.key(), error = %e, "streaming failed; the file is uploaded at close");
                stream.break_off();
            }
        }
    }

    /// The file's local content; the first time, an empty staging file over the object.
    async fn content_for_write(&self, ino: Ino) -> FsResult<Arc<Content>> {
        if let Some(c) = self
            .names
            .table()
            .get(ino)
            .and_then(|n| n.content().cloned())
        {
            return Ok(c);
        }
        let key = self.names.file_key(ino)?;
        let staging = self.files.new_staging()?;
        let mut t = self.names.table();
        let node = t.get_mut(ino).ok_or(FsError::NotFound)?;
        let content = if node.remote() {
            Content::over(
                staging,
                self.files.base(key, node.etag(), node.stored_size()),
            )
        } else {
            Content::empty(staging)
        };
        content.set_based_on(based_on(node));
        Ok(node.local_content(Arc::new(content)))
    }

    async fn truncate_content(&self, ino: Ino, size: u64) -> FsResult<()> {
        let existing = self
            .names
            .table()
            .get(ino)
            .and_then(|n| n.content().cloned());
        let content = match existing {
            Some(c) => c,
            None if size == 0 => {
                let c = self.files.empty()?;
                let mut t = self.names.table();
                let node = t.get_mut(ino).ok_or(FsError::NotFound)?;
                c.set_based_on(based_on(node));
                node.local_content(c)
            }
            None => self.content_for_write(ino).await?,
        };
        content.stream.lock().await.break_off();
        if let Err(e) = content.truncate(size).await {
            return Err(self.staging_failed(&content, e).await);
        }
        self.touched_by_write(ino);
        Ok(())
    }

    /// A write or truncate of the staging file failed (the cache filesystem is full, say):
    /// what is staged is not what the writer wrote, so none of it may be stored — no
    /// streamed prefix is completed, no journal entry is replayed. The file keeps the object
    /// it had in the bucket; flush and fsync return the error (see `Content::check_failed`).
    async fn staging_failed(&self, content: &Content, e: std::io::Error) -> FsError {
        tracing::error!(staging = %content.staging().path().display(), error = %e,
            "cannot stage written data (is the cache directory's filesystem full?); the file's changes are dropped");
        content.stream.lock().await.break_off();
        self.journal_done(content);
        FsError::Io(e)
    }

    /// A write or truncate sets the mtime to now, and a stored mtime no longer holds: the
    /// upload's Last-Modified will say when the file was last written.
    fn touched_by_write(&self, ino: Ino) {
        if let Some(node) = self.names.table().get_mut(ino) {
            node.written();
        }
    }

    /// Changes the size of a file; one with no open handle is uploaded at once.
    pub(super) async fn truncate(&self, ino: Ino, size: u64) -> FsResult<()> {
        self.check_writable()?;
        let (kind, open) = {
            let t = self.names.table();
            let node = t.get(ino).ok_or(FsError::NotFound)?;
            (node.kind(), node.open_handles())
        };
        match kind {
            Kind::Dir => return Err(FsError::IsDir),
            Kind::Symlink => return Err(FsError::Invalid("cannot truncate a symlink")),
            Kind::Special(_) => return Err(FsError::Invalid("cannot truncate a special file")),
            Kind::File => {}
        }
        self.names.ensure_meta(ino).await?;
        self.truncate_content(ino, size).await?;
        if open == 0 {
            self.upload_if_dirty(ino).await?;
            self.drop_clean_content(ino);
        }
        Ok(())
    }

    /// Uploads the file's content if it changed since the last upload.
    pub(super) async fn upload_if_dirty(&self, ino: Ino) -> FsResult<()> {
        let _keys_stay = self.keys.read().await;
        self.upload_holding_keys(ino).await
    }

    /// `upload_if_dirty` for a caller that holds `keys` (shared or exclusive).
    pub(super) async fn upload_holding_keys(&self, ino: Ino) -> FsResult<()> {
        let Some(content) = self
            .names
            .table()
            .get(ino)
            .and_then(|n| n.content().cloned())
        else {
            return Ok(());
        };
        content.check_failed()?;
        let _one_upload = content.upload_lock.lock().await;
        if !content.is_dirty() {
            return Ok(());
        }
        let key = match self.names.file_key(ino) {
            Ok(k) => k,
            Err(_) => {
                content.discard(); // unlinked: nothing to store
                return Ok(());
            }
        };
        let (version, size) = content.snapshot();
        // The metadata as it is now goes with the upload; a change made meanwhile is stored
        // afterwards.
        let mut opts = self.put_options(&key, ino)?;
        opts.condition = self.under_policy(content.based_on());
        if let Some(node) = self.names.table().get_mut(ino) {
            node.meta_sent();
        }
        let streamed = std::mem::replace(&mut *content.stream.lock().await, Stream::Idle);
        let result = match streamed {
            Stream::Active(up) if up.key() == key => {
                // Created with the metadata of its start (the mtime has moved on since):
                // stored again below by a copy when it differs.
                let stale = up.metadata() != &opts.metadata;
                let result = up.finish(size, opts.condition.as_ref()).await;
                if stale && result.is_ok() {
                    if let Some(node) = self.names.table().get_mut(ino) {
                        node.meta_unsent();
                    }
                }
                result
            }
            other => {
                if let Stream::Active(up) = other {
                    up.abort().await; // streamed under a name the file no longer has
                }
                let source: Arc<dyn PartSource> = content.clone();
                self.uploader.upload(&key, source, size, &opts).await
            }
        };
        let result = self
            .unless_stored_already(&key, &content, size, opts.condition.is_some(), result)
            .await;
        let etag = match result {
            Ok(etag) => etag,
            Err(e) => {
                let err = self.upload_error(ino, &key, &content, e).await;
                if matches!(err, FsError::NotStored(_) | FsError::Conflict { .. }) {
                    self.drop_clean_content(ino);
                }
                return Err(err);
            }
        };
        content.mark_uploaded(version);
        content.rebase(&key, etag.clone(), size);
        content.set_based_on(etag.clone().map(Condition::Is));
        if !content.is_dirty() {
            self.journal_done(&content);
        }
        let meta_changed = {
            let mut t = self.names.table();
            let Some(node) = t.get_mut(ino) else {
                return Ok(());
            };
            node.stored(etag, size, opts.content_type.clone());
            node.meta_dirty()
        };
        tracing::debug!(key, size, "uploaded");
        if meta_changed && !content.is_dirty() {
            self.store_meta(ino).await?;
        }
        Ok(())
    }

    /// The `result` of a (`conditional`) upload of `content` to `key`, with a refusal taken
    /// as the success it was when an earlier attempt, whose answer was lost, stored these
    /// very bytes.
    pub(super) async fn unless_stored_already(
        &self,
        key: &str,
        content: &Arc<Content>,
        size: u64,
        conditional: bool,
        result: Result<Option<String>, UploadError>,
    ) -> Result<Option<String>, UploadError> {
        match result {
            Err(UploadError::Store(StoreError::PreconditionFailed)) if conditional => {
                match self.stored_already(key, content, size).await {
                    Some(etag) => Ok(etag),
                    None => Err(UploadError::Store(StoreError::PreconditionFailed)),
                }
            }
            other => other,
        }
    }

    /// The ETag of the object under `key` when it holds exactly the `size` bytes of
    /// `content` (compared piece by piece through the reader, stopping at the first
    /// difference); `None` when it does not, or cannot be read.
    async fn stored_already(
        &self,
        key: &str,
        content: &Arc<Content>,
        size: u64,
    ) -> Option<Option<String>> {
        const PIECE: u64 = 8 << 20;
        let info = self.store.head(key).await.ok()?;
        if info.size != size {
            return None;
        }
        let object = self.reader.object(key, info.etag.as_deref(), size, None);
        let mut at = 0;
        while at < size {
            let range = at..(at + PIECE).min(size);
            let theirs = object
                .read(range.start, range.end - range.start)
                .await
                .ok()?;
            let ours = PartSource::read(&**content, range.clone()).await.ok()?;
            if theirs != ours {
                return None;
            }
            at = range.end;
        }
        tracing::info!(
            key,
            "the object is this file's content already (an answer was lost)"
        );
        Some(info.etag)
    }

    /// Forgets the pending changes of a file that is unlinked or replaced.
    pub(super) async fn discard_content(&self, content: &Content) {
        content.discard();
        content.stream.lock().await.break_off();
        self.journal_done(content);
    }

    /// Frees the staging file of a closed file once everything is in the bucket (or its
    /// changes were dropped: a new file whose staging failed then has no name left).
    pub(super) fn drop_clean_content(&self, ino: Ino) {
        let mut t = self.names.table();
        let mut nameless = None;
        if let Some(node) = t.get_mut(ino) {
            if node.open_handles() == 0 && node.content().is_some_and(|c| !c.is_dirty()) {
                let failed = node
                    .drop_content()
                    .is_some_and(|c| c.check_failed().is_err());
                if failed && !node.remote() && node.linked() {
                    nameless = Some((node.parent(), node.name().to_string()));
                }
            }
        }
        if let Some((parent, name)) = nameless {
            t.unlink(parent, &name);
        }
        t.reclaim(ino);
    }

    pub async fn flush(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.get(fh)?;
        match &*handle {
            Handle::File {
                ino,
                writable: true,
                ..
            } => self.close_written(*ino).await,
            _ => Ok(()),
        }
    }

    /// fsync: returns once the content is in the bucket (or with the upload's error).
    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.get(fh)?;
        match &*handle {
            Handle::File { ino, .. } => self.upload_if_dirty(*ino).await,
            Handle::Dir { .. } => Ok(()),
        }
    }

    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles.remove(fh)?;
        let Handle::File { ino, .. } = &*handle else {
            return Err(FsError::BadHandle);
        };
        // (a written file was uploaded or journaled at flush, which close always sends)
        let journaled = {
            let mut t = self.names.table();
            let Some(node) = t.get_mut(*ino) else {
                return Ok(());
            };
            node.closed();
            let dirty = node.content().filter(|c| node.linked() && c.is_dirty());
            node.open_handles() == 0 && dirty.is_some_and(|c| self.files.is_journaled(c))
        };
        // The last release of a file whose upload came due while it was held open (the
        // write-back loop skipped it).
        let item = Due::File(*ino);
        if journaled && !self.files.is_scheduled(&item) {
            self.files.schedule(item, std::time::Instant::now());
        }
        self.drop_clean_content(*ino);
        Ok(())
    }

    pub async fn unlink(&self, parent: Ino, name: &std::ffi::OsStr) -> FsResult<()> {
        self.check_writable()?;
        let name = check_name(name)?;
        let ino = self.names.resolve(parent, name).await?;
        let (kind, content) = {
            let t = self.names.table();
            let node = t.get(ino).ok_or(FsError::NotFound)?;
            (node.kind(), node.content().cloned())
        };
        if kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let _no_upload = self.settle_for_removal(content.as_deref()).await;
        self.keep_if_open(ino).await;
        let stored = match self.names.table().get(ino) {
            Some(n) if n.remote() => Some(replaced_at(n)),
            _ => None,
        };
        if let Some(seen) = stored {
            let key = self.names.file_key(ino)?;
            self.delete_if_unchanged(&key, seen).await?;
        }
        {
            let mut t = self.names.table();
            if let Some(node) = t.get_mut(ino) {
                node.status_changed(); // no link left (seen through a descriptor still open)
            }
            t.unlink(parent, name);
        }
        self.names.entries_changed(&[parent]);
        Ok(())
    }

    /// A file is about to lose its name (unlink, or replaced by a rename): its pending
    /// changes are dropped and an upload of it in flight is waited for. While the returned
    /// guard lives no upload of it starts, so `Node::remote` — is an object stored under its
    /// key? — stays true until the caller has deleted or replaced that key. (Without the
    /// wait, an upload finishing after the DELETE brought the file back.)
    pub(super) async fn settle_for_removal<'a>(
        &self,
        content: Option<&'a Content>,
    ) -> Option<tokio::sync::MutexGuard<'a, ()>> {
        let content = content?;
        self.discard_content(content).await;
        Some(content.upload_lock.lock().await)
    }

    /// PUTs a new object (a symlink, a special file, a directory marker) under a name this
    /// mount saw free, only while it is still free (`If-None-Match: *`, under the `keep-both`
    /// policy): a name another host created meanwhile is not replaced, and the caller gets
    /// `EEXIST`. Returns the new object's ETag.
    pub(super) async fn put_new(
        &self,
        key: &str,
        body: Bytes,
        mut opts: PutOptions,
    ) -> FsResult<Option<String>> {
        opts.condition = self.under_policy(Some(Condition::Absent));
        match self.store.put(key, body, &opts).await {
            Err(StoreError::PreconditionFailed) => {
                tracing::warn!(
                    key,
                    "another client created the name meanwhile: it is not replaced"
                );
                Err(FsError::Exists)
            }
            other => Ok(other?),
        }
    }

    /// Deletes `key` while it holds the object this mount saw (`seen`): another host's newer
    /// version stays under the name (it shows again at the next lookup), and that is logged.
    /// Under the `overwrite` policy, or without an ETag, the DELETE is unconditional.
    pub(super) async fn delete_if_unchanged(
        &self,
        key: &str,
        seen: Option<Condition>,
    ) -> FsResult<()> {
        delete_unless_replaced(&*self.store, key, self.under_policy(seen)).await
    }

    /// A file about to lose its name (unlink, or replaced by a rename) while it is open
    /// keeps its bytes: whatever is still read from its object is copied into its staging
    /// file before that object is deleted or replaced, so its descriptors read, write and
    /// truncate it until the last close (then it is gone, and nothing of it is uploaded). A
    /// file nobody has open needs nothing.
    pub(super) async fn keep_if_open(&self, ino: Ino) {
        let (content, remote) = match self.names.table().get(ino) {
            Some(n) if n.kind() == Kind::File && n.open_handles() > 0 => {
                (n.content().cloned(), n.remote())
            }
            _ => return,
        };
        let kept = match content {
            Some(c) => c.keep_locally().await.map_err(FsError::from),
            None if !remote => return, // all of it is here
            None => match self.content_for_write(ino).await {
                Ok(c) => c.keep_locally().await.map_err(FsError::from),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = kept {
            tracing::warn!(ino, error = %e, "cannot keep the bytes of an open file that loses its name; reads of it may fail");
        }
    }

    pub fn statfs(&self) -> Statfs {
        Statfs {
            blocks: 1 << 40,
            bfree: 1 << 40,
            files: 1 << 32,
            ffree: 1 << 32,
            bsize: 4096,
            namelen: crate::names::rules::NAME_MAX as u32,
        }
    }
}

/// What statfs reports: S3 has no capacity limit, so large constant numbers.
#[derive(Debug, Clone, Copy)]
pub struct Statfs {
    pub blocks: u64,
    pub bfree: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

/// Deletes `key` only while it holds `seen` (already under the conflict policy: `None` deletes
/// whatever it holds). When another client replaced it, its version stays and that is logged.
pub(super) async fn delete_unless_replaced(
    store: &dyn ObjectStore,
    key: &str,
    seen: Option<Condition>,
) -> FsResult<()> {
    match seen {
        Some(Condition::Is(etag)) => match store.delete_if_match(key, &etag).await {
            Err(StoreError::PreconditionFailed) => {
                tracing::warn!(
                    key,
                    "another client replaced the file since this mount saw it: its version stays"
                );
                Ok(())
            }
            other => Ok(other?),
        },
        _ => Ok(store.delete(key).await?),
    }
}
