//! Asking the kernel to drop names it holds, so a walk larger than `name_cache_entries`
//! runs in bounded memory (see `Names::trim`): the kernel keeps every name it looked up until
//! its own memory runs short, and the inode table cannot drop a name the kernel holds. Told
//! to invalidate one (`FUSE_NOTIFY_INVAL_ENTRY`), it drops the dentry and, the inode unused,
//! sends its forget; the next trim then evicts it.
//!
//! The notifications are written on a thread of their own: the kernel takes the parent
//! directory's lock to handle one, which a request on that directory may hold while it waits
//! for its answer from this daemon, so a notification must never be written by a thread
//! that answers requests.

use std::ffi::OsStr;
use std::sync::mpsc;
use std::sync::Arc;

use fuser::{INodeNo, Notifier};

use crate::names::inode::Ino;
use crate::names::Release;

/// Starts the thread writing the notifications of `notifier`; returns what hands it names.
/// The thread ends with the last sender (when the filesystem is dropped).
pub fn start(notifier: Notifier) -> Release {
    let (tx, rx) = mpsc::channel::<Vec<(Ino, Arc<str>)>>();
    let spawned = std::thread::Builder::new()
        .name("bucketfs-release".into())
        .spawn(move || {
            for names in rx {
                for (parent, name) in names {
                    // ENOENT: the kernel dropped it meanwhile
                    if let Err(e) = notifier.inval_entry(INodeNo(parent), OsStr::new(&*name)) {
                        tracing::trace!(parent, name = %name, error = %e, "inval_entry");
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the thread that asks the kernel to drop names: walks past the name cache keep every name");
    }
    let tx = std::sync::Mutex::new(tx);
    Box::new(move |names| {
        let _ = tx.lock().unwrap().send(names);
    })
}
