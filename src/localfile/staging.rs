//! A staging file: the local copy of a file's content while it is written, before (and while)
//! it is uploaded. Large reads and writes and syncs run on tokio's blocking pool so a slow
//! disk never stalls the runtime; small ones are page-cache copies done in place. The file is removed when the last handle to it is dropped, unless it was
//! marked `keep` (a journaled file whose upload is still to come: see `journal`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: File,
    keep: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.keep.load(Ordering::Relaxed) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A cheaply cloneable handle to one staging file.
#[derive(Debug, Clone)]
pub struct StagingFile(Arc<Inner>);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Reads and writes up to this size go straight to the page cache from the calling task:
/// handing a few KiB to the blocking pool costs more (two thread switches) than the copy.
const INLINE_IO: usize = 64 << 10;

impl StagingFile {
    /// Creates a new, empty staging file in `dir`.
    pub fn create(dir: &Path) -> io::Result<StagingFile> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("stage-{n}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(Self::with(path, file))
    }

    /// Opens the staging file a journal entry names (left by an earlier daemon). It is kept
    /// on drop until `keep(false)`.
    pub fn reopen(path: &Path) -> io::Result<StagingFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let staging = Self::with(path.to_path_buf(), file);
        staging.keep(true);
        Ok(staging)
    }

    fn with(path: PathBuf, file: File) -> StagingFile {
        StagingFile(Arc::new(Inner {
            path,
            file,
            keep: AtomicBool::new(false),
        }))
    }

    /// Whether the file survives when dropped (while a journal entry refers to it).
    pub fn keep(&self, keep: bool) {
        self.0.keep.store(keep, Ordering::Relaxed);
    }

    /// Flushes the written bytes to disk.
    pub async fn sync(&self) -> io::Result<()> {
        self.blocking(|f| f.sync_data()).await
    }

    pub fn path(&self) -> &Path {
        &self.0.path
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&File) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || f(&inner.file))
            .await
            .map_err(io::Error::other)?
    }

    pub async fn write_at(&self, offset: u64, data: Bytes) -> io::Result<()> {
        if data.len() <= INLINE_IO {
            return self.0.file.write_all_at(&data, offset);
        }
        self.blocking(move |f| f.write_all_at(&data, offset)).await
    }

    /// Reads up to `len` bytes at `offset` (fewer only at the end of the file).
    pub async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        if len <= INLINE_IO {
            return read_fully(&self.0.file, offset, len);
        }
        self.blocking(move |f| read_fully(f, offset, len)).await
    }

    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        self.blocking(move |f| f.set_len(len)).await
    }
}

fn read_fully(f: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match f.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    buf.truncate(done);
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_read_back_and_the_file_is_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let s = StagingFile::create(dir.path()).unwrap();
        s.write_at(3, Bytes::from_static(b"abc")).await.unwrap();
        assert_eq!(&s.read_at(0, 10).await.unwrap()[..], b"\0\0\0abc");
        s.set_len(4).await.unwrap();
        assert_eq!(&s.read_at(2, 10).await.unwrap()[..], b"\0a");
        let path = s.path().to_path_buf();
        drop(s);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_kept_file_survives_its_handles_and_can_be_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let s = StagingFile::create(dir.path()).unwrap();
        s.write_at(0, Bytes::from_static(b"data")).await.unwrap();
        s.keep(true);
        let path = s.path().to_path_buf();
        drop(s);
        let again = StagingFile::reopen(&path).unwrap();
        assert_eq!(&again.read_at(0, 10).await.unwrap()[..], b"data");
        again.keep(false);
        drop(again);
        assert!(!path.exists());
    }
}
