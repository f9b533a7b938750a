//! Temporary files, which make writes atomic.
//!
//! PUT, copy, multipart parts and completion, and sidecars are written to a temporary file in
//! `root/.bucketfs-local/tmp/` and renamed into place, so a reader never sees half of a write.
//! There is no fsync: a crash may lose a recent write, never expose half of one. A temporary
//! file that is not renamed is removed on drop; leftovers after a crash can be deleted while no
//! daemon runs.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{Inner, IoContext};
use crate::store::StoreResult;

/// A temporary file, removed on drop unless renamed into place.
pub(super) struct Temp {
    pub(super) path: PathBuf,
    armed: bool,
}

impl Temp {
    pub(super) fn persist(mut self, to: &Path) -> StoreResult<()> {
        fs::rename(&self.path, to).at(to)?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Inner {
    /// A fresh temporary file in the internal `tmp` directory.
    pub(super) fn temp(&self) -> StoreResult<(Temp, File)> {
        let dir = self.internal().join("tmp");
        fs::create_dir_all(&dir).at(&dir)?;
        loop {
            let path = dir.join(format!("{:016x}", rand::random::<u64>()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((Temp { path, armed: true }, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).at(&path),
            }
        }
    }

    pub(super) fn temp_with(&self, body: &[u8]) -> StoreResult<Temp> {
        let (temp, mut file) = self.temp()?;
        file.write_all(body).at(&temp.path)?;
        Ok(temp)
    }
}
