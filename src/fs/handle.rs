//! Open file and directory handles: what the kernel's `fh` numbers refer to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::error::{FsError, FsResult};
use crate::cache::reader::ObjectReader;
use crate::names::inode::Ino;
use crate::names::Arriving;

pub enum Handle {
    File {
        ino: Ino,
        writable: bool,
        /// Reads of the object (not of staged content), created at the first read.
        reader: tokio::sync::OnceCell<Box<ObjectReader>>,
    },
    Dir {
        ino: Ino,
        /// The listing taken at the first readdir (as it arrives), served by offset
        /// afterwards.
        entries: Mutex<Option<Arc<Arriving>>>,
        /// Entries below this index have had their metadata asked for (readdir run-ahead).
        meta_ahead: std::sync::atomic::AtomicUsize,
    },
}

#[derive(Default)]
pub struct HandleTable {
    next: AtomicU64,
    map: Mutex<HashMap<u64, Arc<Handle>>>,
}

impl HandleTable {
    pub fn insert(&self, handle: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map.lock().unwrap().insert(fh, Arc::new(handle));
        fh
    }

    pub fn get(&self, fh: u64) -> FsResult<Arc<Handle>> {
        self.map
            .lock()
            .unwrap()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle)
    }

    /// True while a writable handle of file `ino` is open (not yet released).
    pub fn open_for_writing(&self, ino: Ino) -> bool {
        self.map
            .lock()
            .unwrap()
            .values()
            .any(|h| matches!(**h, Handle::File { ino: i, writable: true, .. } if i == ino))
    }

    pub fn remove(&self, fh: u64) -> FsResult<Arc<Handle>> {
        self.map
            .lock()
            .unwrap()
            .remove(&fh)
            .ok_or(FsError::BadHandle)
    }
}
