//! How a serving daemon ends. Whatever ends the mount — a signal (SIGTERM, SIGINT), which
//! unmounts it here, or an unmount from outside (`bucketfs unmount`, `umount`,
//! `fusermount3 -u`) — every pending upload is finished before the process exits, with
//! progress in the log (and in systemd's `STATUS=`, after `STOPPING=1`). Files that could not
//! be stored are listed in the runtime directory for `bucketfs unmount` to name, and the exit
//! status is 1; otherwise 0.
//!
//! A session served on a descriptor its parent mounted (`/dev/fd/N`) cannot be unmounted
//! here: on a signal the daemon finishes its uploads while still serving, then exits, and the
//! parent unmounts.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};

use super::notify::Notifier;
use super::open::Opened;
use super::runtime_files::not_stored_file_for;
use crate::config::Config;
use crate::fs::Fs;

/// Waits until the FUSE session ends (`done_rx`). A signal first unmounts; if the mount is
/// still in use after a grace period, the connection of `device` is aborted. A session on a
/// descriptor the parent mounted (`fd_session`) is not unmounted here: on a signal this
/// returns at once, and false (the session goes on until the parent unmounts).
pub(super) fn wait_for_unmount(
    rt: &tokio::runtime::Runtime,
    signals: Signals,
    mut unmounter: fuser::SessionUnmounter,
    mut done_rx: tokio::sync::oneshot::Receiver<()>,
    device: Option<u64>,
    fd_session: bool,
) -> bool {
    rt.block_on(async {
        tokio::select! {
            signal = signals.next() => {
                if fd_session {
                    info!(signal, "stopping; the process that mounted the descriptor unmounts");
                    return false;
                }
                info!(signal, "unmounting");
                if let Err(e) = unmounter.unmount() {
                    warn!(error = %e, "unmount failed");
                }
                // A lazy unmount ends the session only once nothing uses the mount any more;
                // after a grace period, abort the connection so the daemon can finish.
                if tokio::time::timeout(Duration::from_secs(5), &mut done_rx).await.is_err() {
                    if let Some(dev) = device {
                        abort_connection(dev);
                    }
                }
            }
            _ = &mut done_rx => info!("unmounted"),
        }
        true
    })
}

/// After the session ended: uploads what is pending, tidies the journal, logs the store's
/// request counts, lists what could not be stored for `bucketfs unmount`, removes this
/// daemon's files, and returns the exit status (1 if anything is not stored).
pub(super) fn finish(
    opened: Opened,
    config: &Config,
    mountpoint: &Path,
    pid_file: &Path,
    socket: &Path,
    notifier: &Notifier,
) -> ExitCode {
    let failed = opened
        .rt
        .block_on(drain_with_progress(&opened.fs, notifier));
    if let Err(e) = opened.journal.close() {
        warn!(error = %e, "cannot tidy the write-back journal");
    }
    let stats = opened.store_stats.stats();
    let counts: Vec<String> = stats
        .requests
        .iter()
        .map(|(kind, n)| format!("{kind}={n}"))
        .collect();
    info!(
        "store requests: {} bytes_sent={} bytes_received={} hedged={}",
        counts.join(" "),
        stats.bytes_sent,
        stats.bytes_received,
        stats.hedged
    );
    if !failed.is_empty() {
        // For `bucketfs unmount`, which waits for this process and then names them.
        let report = not_stored_file_for(mountpoint);
        if let Err(e) = std::fs::write(&report, failed.join("\n") + "\n") {
            warn!(path = %report.display(), error = %e, "cannot write the list of files not stored");
        }
    }
    let _ = std::fs::remove_file(pid_file);
    let _ = std::fs::remove_file(socket);
    drop(opened.fs);
    let _ = std::fs::remove_dir(&opened.staging);
    if !failed.is_empty() {
        error!(
            failed = failed.len(),
            keys = failed.join(" "),
            journal = %config.mount_dir().join("journal").display(),
            "some files could not be stored: those still pending stay in the write-back journal and the next mount with the same cache directory uploads them; `bucketfs status` lists those kept in journal/unsaved/"
        );
        return ExitCode::from(1);
    }
    info!("all uploads finished; exiting");
    ExitCode::SUCCESS
}

/// Ends the FUSE connection of device `dev` (its session loop then returns).
fn abort_connection(dev: u64) {
    let path = format!("/sys/fs/fuse/connections/{}/abort", libc::minor(dev));
    match std::fs::write(&path, "1") {
        Ok(()) => warn!("the mount was still in use after unmounting; connection aborted"),
        Err(e) => warn!(path, error = %e, "cannot abort the FUSE connection"),
    }
}

/// Drains pending uploads, logging progress every few seconds for long drains (on stderr
/// in the foreground; `bucketfs unmount` shows it too) and telling systemd (`STOPPING=1`,
/// then the progress in `STATUS=`).
async fn drain_with_progress(fs: &Fs, notifier: &Notifier) -> Vec<String> {
    let started = Instant::now();
    let unmounting = |fs: &Fs| {
        let pending = fs.status().pending_line(SystemTime::now());
        format!(
            "unmounting for {} s; {pending}",
            started.elapsed().as_secs()
        )
    };
    notifier.stopping(&unmounting(fs));
    let drain = fs.drain();
    tokio::pin!(drain);
    let failed = loop {
        tokio::select! {
            failed = &mut drain => break failed,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                let status = fs.status();
                info!(
                    seconds = started.elapsed().as_secs(),
                    files = status.pending,
                    bytes = status.pending_bytes,
                    "still uploading pending files before exit"
                );
                notifier.status(&unmounting(fs));
            }
        }
    };
    notifier.status(&match failed.len() {
        0 => "unmounted; all uploads finished".to_string(),
        n => format!("unmounted; {n} files not stored (see the log)"),
    });
    failed
}

/// SIGTERM and SIGINT, registered when created.
pub(super) struct Signals {
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    pub(super) fn new() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let streams = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            _ => {
                warn!("cannot listen for SIGTERM/SIGINT; unmount with `bucketfs unmount`");
                None
            }
        };
        Signals { streams }
    }

    /// Waits for the first signal and names it.
    async fn next(mut self) -> &'static str {
        let Some((term, int)) = self.streams.as_mut() else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}
