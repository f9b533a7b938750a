//! The files in the per-user runtime directory that link a daemon to the commands that talk
//! to it, one set per mountpoint, named by a hash of its absolute path: the pid file (which
//! `bucketfs unmount` waits on), the status socket (`bucketfs status`) and the list of files
//! an exiting daemon could not store (which `bucketfs unmount` names). The daemon writes them
//! (`serve`, `shutdown`, `status_socket`); the commands read them (`unmount`, `status_socket`).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Per-user directory for pid files. Root's is always `/run/bucketfs`, whatever
/// `XDG_RUNTIME_DIR` says: a daemon started by systemd (which has none) and `bucketfs
/// status` from a root login shell (which has one) must find the same files.
fn runtime_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from("/run/bucketfs");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("bucketfs"),
        None => std::env::temp_dir().join(format!("bucketfs-{uid}")),
    }
}

/// Where an exiting daemon lists the keys it could not store, one per line.
pub(super) fn not_stored_file_for(mountpoint: &Path) -> PathBuf {
    pid_file_for(mountpoint).with_extension("not-stored")
}

pub(super) fn pid_file_for(mountpoint: &Path) -> PathBuf {
    // FNV-1a of the absolute mountpoint path: stable, short, filesystem-safe.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in mountpoint.as_os_str().as_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    runtime_dir().join(format!("mount-{h:016x}.pid"))
}

/// The control socket `bucketfs status` connects to, beside the pid file.
pub(super) fn socket_for(mountpoint: &Path) -> PathBuf {
    pid_file_for(mountpoint).with_extension("sock")
}

pub(super) fn write_pid_file(path: &Path, mountpoint: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        path,
        format!("{}\n{}\n", std::process::id(), mountpoint.display()),
    )
}

pub(super) fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}
