//! Going to the background and telling the user how start-up went. `bucketfs mount` (without
//! `--foreground`) re-runs itself as a detached child whose stderr is the log file and whose
//! stdout is a pipe back to the parent; the child writes "ready" or "error: …" there once
//! (`Ready`), and the parent exits 0 or prints the error and exits 2. A child that dies
//! without a word has its mount, if any, removed, so nothing is left answering ENOTCONN.

use std::ffi::CString;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use tracing::error;

use super::preflight;
use crate::config::{Config, LogFormat};
use crate::console::usage_error;

/// Set in the environment of the background child; its stdout is then the ready pipe.
pub(super) const READY_ENV: &str = "BUCKETFS_READY_PIPE";

/// Logs to stderr: the terminal in the foreground, the log file in the background child; as
/// text, or as one JSON object per line (`--log-format json`).
pub(super) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("bucketfs=info,fuser=error"));
    // A log write that fails (a full disk, `2>/dev/full`) loses that line. tracing-subscriber
    // would otherwise report it with `eprintln!`, which panics when stderr cannot be written:
    // the daemon died and left its mount dead.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn log_path(config: &Config) -> PathBuf {
    config
        .log_file
        .clone()
        .unwrap_or_else(|| config.mount_dir().join("bucketfs.log"))
}

/// Starts the daemon in the background and waits for it to report the mount live.
pub(super) fn spawn_background(config: &Config, mountpoint: &Path) -> ExitCode {
    let log = log_path(config);
    let log_file = log
        .parent()
        .map(std::fs::create_dir_all)
        .transpose()
        .and_then(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
        });
    let log_file = match log_file {
        Ok(f) => f,
        Err(e) => {
            return usage_error(format!(
                "cannot open the log file {}: {e} (set --log-file or --cache-dir)",
                log.display()
            ))
        }
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return usage_error(format!("cannot find the bucketfs binary: {e}")),
    };
    // The same command line, argv[0] included: `mount.bucketfs` runs as the mount helper.
    let mut args = std::env::args_os();
    let mut cmd = Command::new(exe);
    cmd.arg0(args.next().unwrap_or_default())
        .args(args)
        .arg("--foreground")
        .env(READY_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our terminal session.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return usage_error(format!("cannot start the daemon: {e}")),
    };
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    let _ = BufReader::new(stdout).read_line(&mut line);
    match line.trim_end().split_once(' ') {
        _ if line.trim_end() == "ready" => ExitCode::SUCCESS,
        Some(("error:", msg)) => {
            let _ = child.wait();
            usage_error(msg)
        }
        _ => {
            let status = child
                .wait()
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string());
            // It may have died after mounting: a dead mount would answer ENOTCONN to
            // everyone. preflight found no FUSE mount there, so one there now is its.
            let detached = detach_fuse_mount(mountpoint);
            usage_error(format!(
                "the daemon stopped during start-up ({status}{}): see {}",
                if detached { ", its mount removed" } else { "" },
                log.display()
            ))
        }
    }
}

/// Lazily unmounts the FUSE mount on top of `mountpoint`, if there is one; true if it did.
fn detach_fuse_mount(mountpoint: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let fuse_on_top = preflight::mounts_at(&mountinfo, mountpoint)
        .last()
        .is_some_and(preflight::MountEntry::is_fuse);
    if !fuse_on_top {
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let Ok(c) = CString::new(mountpoint.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: c is a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) == 0 }
    } else {
        Command::new("fusermount3")
            .arg("-uz")
            .arg(mountpoint)
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// Tells whoever started us how start-up went.
pub(super) struct Ready {
    /// True in the background child: stdout is the parent's pipe.
    pub(super) pipe: bool,
}

impl Ready {
    pub(super) fn ok(&self) {
        if self.pipe {
            let mut out = std::io::stdout();
            let _ = out.write_all(b"ready\n");
            let _ = out.flush();
            // Nothing else may go to the pipe: point stdout at /dev/null.
            if let Ok(null) = std::fs::File::open("/dev/null") {
                use std::os::fd::AsRawFd;
                // SAFETY: dup2 onto our own stdout descriptor.
                unsafe { libc::dup2(null.as_raw_fd(), 1) };
            }
        }
    }

    /// Reports a failed start once: in the background to the log and the parent (which
    /// prints it); in the foreground as one line on stderr, which is also where the log goes.
    pub(super) fn fail(&self, msg: &str) -> ExitCode {
        if self.pipe {
            error!("{msg}");
            let mut out = std::io::stdout();
            let _ = writeln!(out, "error: {msg}");
            let _ = out.flush();
            ExitCode::from(2)
        } else {
            usage_error(msg)
        }
    }
}
