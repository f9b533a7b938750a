//! Local content of a file being written: a staging file plus a version counter.
//!
//! Every write bumps `version`; an upload remembers the version it started from and marks
//! only that version as uploaded. A write that lands during an upload therefore leaves the
//! file dirty, and the next flush uploads again: no write is ever reported as stored when it
//! is not.

use std::io;
use std::sync::Mutex;

use bytes::Bytes;

use crate::upload::staging::StagingFile;

#[derive(Debug)]
struct State {
    size: u64,
    version: u64,
    uploaded: u64,
}

#[derive(Debug)]
pub struct Content {
    staging: StagingFile,
    state: Mutex<State>,
    /// Held while this file is being uploaded, so uploads of one file never overlap.
    pub upload_lock: tokio::sync::Mutex<()>,
}

impl Content {
    /// Content of `size` bytes already in `staging`; `dirty` if it differs from the bucket.
    pub fn new(staging: StagingFile, size: u64, dirty: bool) -> Content {
        Content {
            staging,
            state: Mutex::new(State {
                size,
                version: u64::from(dirty),
                uploaded: 0,
            }),
            upload_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn size(&self) -> u64 {
        self.state.lock().unwrap().size
    }

    pub fn is_dirty(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.version != s.uploaded
    }

    pub async fn write(&self, offset: u64, data: Bytes) -> io::Result<()> {
        let end = offset + data.len() as u64;
        self.staging.write_at(offset, data).await?;
        let mut s = self.state.lock().unwrap();
        s.size = s.size.max(end);
        s.version += 1;
        Ok(())
    }

    /// Reads up to `len` bytes at `offset`, never past the file's size.
    pub async fn read(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let size = self.size();
        if offset >= size {
            return Ok(Bytes::new());
        }
        let len = len.min((size - offset) as usize);
        let mut data = self.staging.read_at(offset, len).await?;
        if data.len() < len {
            // Sparse tail after a truncate-grow: zeros, as POSIX says.
            let mut v = data.to_vec();
            v.resize(len, 0);
            data = Bytes::from(v);
        }
        Ok(data)
    }

    pub async fn truncate(&self, size: u64) -> io::Result<()> {
        self.staging.set_len(size).await?;
        let mut s = self.state.lock().unwrap();
        s.size = size;
        s.version += 1;
        Ok(())
    }

    /// The version and size an upload starting now will store.
    pub fn snapshot(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap();
        (s.version, s.size)
    }

    pub fn mark_uploaded(&self, version: u64) {
        let mut s = self.state.lock().unwrap();
        s.uploaded = s.uploaded.max(version);
    }

    /// Forget pending changes (the file was unlinked: there is nothing left to upload).
    pub fn discard(&self) {
        let mut s = self.state.lock().unwrap();
        s.uploaded = s.version;
    }

    pub fn staging(&self) -> &StagingFile {
        &self.staging
    }
}
