//! The mount's life: start-up checks (`preflight`), going to the background, serving, and a
//! clean exit.
//!
//! `bucketfs mount` re-runs itself as a detached child (`--foreground`, with a pipe on its
//! stdout) and waits until the child reports "ready" — the mount is live — or an error, which
//! it prints and exits 2 on. However the mount ends (`bucketfs unmount`, `umount`,
//! `fusermount3 -u`, SIGINT, SIGTERM), the daemon first uploads every pending file and only
//! then exits; `bucketfs unmount` waits for that exit. A pid file per mountpoint in the runtime
//! directory links the two.
//!
//! The modules, in the order a mount lives through them: `preflight` (refusals before
//! anything is mounted), `background` (the detached child, its log and the ready pipe), `open`
//! (store, runtime, caches, journal, recovery), `serve` (the FUSE session and the write-back
//! loop), `notify` (systemd's `READY=1`, `STATUS=`, `STOPPING=1`), `shutdown` (signals,
//! draining uploads, the exit status). The commands that talk to a running daemon: `unmount`,
//! `status_socket` (`bucketfs status`, its JSON in `status_json`) and `flush` (`bucketfs
//! flush`, a request on the same socket), which find it through `runtime_files`. Only `cli`
//! and `mount_helper` call in here; nothing here calls them.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;

mod background;
mod flush;
mod heap;
mod notify;
mod open;
mod preflight;
mod runtime_files;
mod serve;
mod shutdown;
mod status_json;
mod status_socket;
mod unmount;

pub use flush::flush;
pub use status_socket::{status, ReportFormat};
pub use unmount::unmount;

/// `bucketfs mount`: the checks, then serving here (`--foreground`, or as the background
/// child) or starting the background child and waiting for its report.
pub fn mount(config: Config, mountpoint: PathBuf, foreground: bool) -> ExitCode {
    let child = std::env::var_os(background::READY_ENV).is_some();
    if foreground || child {
        background::init_logging(config.log_format);
    }
    let ready = background::Ready { pipe: child };
    let mountpoint = match preflight::mountpoint(&mountpoint, config.allow_non_empty) {
        Ok(p) => p,
        Err(refusal) => return ready.fail(&refusal.to_string()),
    };
    if let Err(refusal) = preflight::cache_dir_writable(&config.cache_dir, &config.mount_dir()) {
        return ready.fail(&refusal.to_string());
    }
    if !foreground && !child {
        return background::spawn_background(&config, &mountpoint);
    }
    match serve::serve(config, mountpoint, ready) {
        Ok(code) => code,
        Err((ready, msg)) => ready.fail(&msg),
    }
}
