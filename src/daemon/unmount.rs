//! `bucketfs unmount`: unmounts (as root directly, otherwise through `fusermount3`),
//! retrying for a moment while the kernel still reports the mount busy, then waits for the
//! daemon to finish its uploads and exit, showing the progress of a long drain. A daemon that
//! could not store everything leaves a list in the runtime directory; the command names those
//! files and exits 1.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use super::runtime_files::{not_stored_file_for, pid_file_for, read_pid};
use super::status_socket::{query_status, ReportFormat};
use crate::console::{stderr_line, usage_error};

/// `bucketfs unmount`: unmounts, then waits for the daemon to finish its uploads and exit.
pub fn unmount(mountpoint: &Path) -> ExitCode {
    let abs = match std::path::absolute(mountpoint) {
        Ok(p) => p,
        Err(e) => return usage_error(format!("bad mountpoint {}: {e}", mountpoint.display())),
    };
    let pid = read_pid(&pid_file_for(&abs)).filter(|p| process_alive(*p));
    if let Err(msg) = unmount_path(&abs) {
        return usage_error(msg);
    }
    if let Some(pid) = pid {
        // A long drain shows its progress every few seconds.
        let mut next_report = Instant::now() + Duration::from_secs(2);
        while process_alive(pid) {
            if Instant::now() >= next_report {
                let pending = query_status(&abs, ReportFormat::Text)
                    .ok()
                    .and_then(|r| {
                        r.lines()
                            .find(|l| l.starts_with("pending uploads:"))
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| "pending uploads: finishing".into());
                stderr_line(format_args!(
                    "bucketfs: unmounting {}: {pending}",
                    abs.display()
                ));
                next_report = Instant::now() + Duration::from_secs(2);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The daemon names what it could not store (and exits 1) when anything is left.
    let report = not_stored_file_for(&abs);
    if let Ok(text) = std::fs::read_to_string(&report) {
        let _ = std::fs::remove_file(&report);
        let keys: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        if !keys.is_empty() {
            stderr_line(format_args!(
                "bucketfs: unmounted {}, but {} files are not stored: {} (see `bucketfs status` on the next mount and the daemon's log)",
                abs.display(),
                keys.len(),
                keys.join(", ")
            ));
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// Unmounts `path`. The kernel keeps a mount busy until the daemon has answered the RELEASE
/// of files closed just before, so "busy" is retried for a moment before it is reported.
fn unmount_path(path: &Path) -> Result<(), String> {
    let started = Instant::now();
    loop {
        match unmount_once(path) {
            Err(Unmount::Busy) if started.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(Unmount::Busy) => {
                return Err(format!(
                    "{} is busy: close the files open in it (see `fuser -m {}`) and retry",
                    path.display(),
                    path.display()
                ))
            }
            Err(Unmount::Failed(msg)) => return Err(msg),
            Ok(()) => return Ok(()),
        }
    }
}

enum Unmount {
    Busy,
    Failed(String),
}

fn unmount_once(path: &Path) -> Result<(), Unmount> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Unmount::Failed("the mountpoint path contains a NUL byte".into()))?;
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EBUSY) => Unmount::Busy,
            Some(libc::EINVAL) => {
                Unmount::Failed(format!("{} is not a mount point", path.display()))
            }
            _ => Unmount::Failed(format!("cannot unmount {}: {err}", path.display())),
        });
    }
    let out = Command::new("fusermount3")
        .arg("-u")
        .arg(path)
        .output()
        .map_err(|e| {
            Unmount::Failed(format!(
                "cannot run fusermount3: {e} (install the fuse3 package)"
            ))
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.success() {
        true => Ok(()),
        false if stderr.contains("busy") => Err(Unmount::Busy),
        false => Err(Unmount::Failed(format!(
            "cannot unmount {}: {}",
            path.display(),
            stderr.trim()
        ))),
    }
}

/// True while `pid` runs (a zombie waiting to be reaped counts as gone).
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
