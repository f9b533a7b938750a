//! Serving a mount: the FUSE session on its own thread, the tokio runtime every operation runs
//! on, the write-back loop that uploads closed files once they are due, the status socket,
//! the metrics page (`--metrics-addr`, bound first of all) and systemd's notifications.
//! `serve` runs the whole life of the daemon in order — open (`open`), mount (or take the
//! descriptor of `/dev/fd/N`, already mounted by the parent), report "ready" (to the waiting
//! parent and to systemd), wait for the unmount and finish (`shutdown`) — so the sequence
//! reads in one place.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{MountOption, Session, SessionACL};
use tracing::{info, warn};

use super::background::Ready;
use super::notify::{keep_status_current, Notifier};
use super::open;
use super::preflight;
use super::runtime_files::{not_stored_file_for, pid_file_for, socket_for, write_pid_file};
use super::shutdown::{self, Signals};
use super::status_socket::serve_status;
use crate::config::Config;
use crate::fs::Fs;
use crate::fuse::stats::FuseStats;
use crate::fuse::FuseAdapter;
use crate::metrics::{self, Metrics, Sources};

/// A start that failed: the reporter, handed back, and the line for the user.
pub(super) type ServeError = (Ready, String);

/// Serves `mountpoint` until it is unmounted; the exit status says whether every file was
/// stored.
pub(super) fn serve(
    mut config: Config,
    mountpoint: PathBuf,
    ready: Ready,
) -> Result<ExitCode, ServeError> {
    // Before anything else: an address that cannot be served stops the start.
    let metrics_listener = match config.metrics_addr.map(metrics::bind).transpose() {
        Ok(l) => l,
        Err(e) => return Err((ready, e.to_string())),
    };
    let opened = match open::open(&mut config) {
        Ok(o) => o,
        Err(msg) => return Err((ready, msg)),
    };
    let fuse_stats = Arc::new(FuseStats::default());
    let adapter = FuseAdapter::new(
        opened.fs.clone(),
        opened.rt.handle().clone(),
        fuse_stats.clone(),
    );

    let mut options = vec![
        MountOption::FSName(fs_name(&config)),
        MountOption::Subtype("bucketfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
    ];
    if config.fs.read_only {
        options.push(MountOption::RO);
    }
    let mut fuse_config = fuser::Config::default();
    fuse_config.mount_options = options;
    fuse_config.acl = if config.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    let fd_session = preflight::fuse_fd(&mountpoint);
    let session = match fd_session {
        // SAFETY: preflight checked that the descriptor is open on /dev/fuse; it was handed
        // to this process to serve, and nothing else here uses it.
        Some(fd) => Session::from_fd(
            adapter,
            unsafe { OwnedFd::from_raw_fd(fd) },
            fuse_config.acl,
            fuse_config,
        ),
        None => Session::new(adapter, &mountpoint, &fuse_config),
    };
    let mut session = match session {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir(&opened.staging);
            return Err((
                ready,
                format!("cannot mount at {}: {e}", mountpoint.display()),
            ));
        }
    };
    opened
        .fs
        .on_release(crate::fuse::release::start(session.notifier()));
    let unmounter = session.unmount_callable();
    let start_guard = UnmountUnlessStarted(Some(session.unmount_callable()));
    let pid_file = pid_file_for(&mountpoint);
    let _ = std::fs::remove_file(not_stored_file_for(&mountpoint)); // an earlier daemon's
    if let Err(e) = write_pid_file(&pid_file, &mountpoint) {
        warn!(path = %pid_file.display(), error = %e, "cannot write the pid file; `bucketfs unmount` will not wait for uploads");
    }
    // Listen for signals before anyone can send one, and serve before saying "ready".
    let signals = opened.rt.block_on(async { Signals::new() });
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let loop_thread = std::thread::spawn(move || {
        let result = session.run();
        let _ = done_tx.send(());
        result
    });
    // A descriptor's mount is the parent's: its mountpoint is not known here.
    let device = fd_session
        .is_none()
        .then(|| mount_device(&mountpoint))
        .flatten();
    if let Some(dev) = device {
        raise_kernel_readahead(dev, config.fs.read_ahead);
    }
    opened.rt.spawn(write_back_loop(opened.fs.clone()));
    opened.rt.spawn(super::heap::give_back_free_memory());
    let fs = opened.fs.clone();
    opened
        .rt
        .spawn(async move { fs.keep_names_bounded().await });
    let socket = socket_for(&mountpoint);
    opened.rt.spawn(serve_status(
        socket.clone(),
        opened.fs.clone(),
        mountpoint.clone(),
    ));
    if let Some(listener) = metrics_listener {
        let metrics = Metrics::new(Sources {
            store: opened.store_stats.clone(),
            fs: opened.fs.clone(),
            fuse: fuse_stats,
        });
        opened.rt.spawn(metrics::serve(listener, Arc::new(metrics)));
    }
    info!(mountpoint = %mountpoint.display(), source = ?config.source, "mounted");
    ready.ok();
    start_guard.started();
    let notifier = Arc::new(Notifier::from_env());
    notifier.ready(&opened.fs.status().pending_line(SystemTime::now()));
    let status_task = notifier.enabled().then(|| {
        opened
            .rt
            .spawn(keep_status_current(notifier.clone(), opened.fs.clone()))
    });

    let ended = shutdown::wait_for_unmount(
        &opened.rt,
        signals,
        unmounter,
        done_rx,
        device,
        fd_session.is_some(),
    );
    if let Some(task) = status_task {
        task.abort();
    }
    if ended {
        if let Ok(Err(e)) = loop_thread.join() {
            warn!(error = %e, "the FUSE session ended with an error");
        }
    }
    Ok(shutdown::finish(
        opened,
        &config,
        &mountpoint,
        &pid_file,
        &socket,
        &notifier,
    ))
}

/// Uploads closed files once their write-back delay (or a failed upload's backoff) is over
/// (the write-back queue has its own timer: see `Fs::write_back`).
async fn write_back_loop(fs: Arc<Fs>) {
    fs.write_back().await
}

/// Unmounts on drop unless `started` was called: a start that fails after mounting, by a
/// panic included, leaves nothing mounted.
struct UnmountUnlessStarted(Option<fuser::SessionUnmounter>);

impl UnmountUnlessStarted {
    fn started(mut self) {
        self.0 = None;
    }
}

impl Drop for UnmountUnlessStarted {
    fn drop(&mut self) {
        if let Some(mut unmounter) = self.0.take() {
            let _ = unmounter.unmount();
        }
    }
}

/// The device number of the mount at `mountpoint` (stat needs the session loop running).
fn mount_device(mountpoint: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(mountpoint).ok().map(|m| m.dev())
}

/// The kernel reads a FUSE file ahead by only 128 KiB unless told otherwise, and only through
/// sysfs after the mount exists.
fn raise_kernel_readahead(dev: u64, read_ahead: u64) {
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    let kb = (read_ahead / 1024).clamp(128, 16 * 1024);
    if let Err(e) = std::fs::write(&path, kb.to_string()) {
        tracing::debug!(path, error = %e, "cannot raise the kernel read-ahead");
    }
}

/// The mount's source as `/proc/mounts` shows it: the source as an fstab line writes it
/// (`s3://BUCKET/PREFIX`, no trailing slash), so that `mount -a` finds a line already mounted
/// and skips it (it compares source and target).
fn fs_name(config: &Config) -> String {
    match &config.source {
        crate::config::Source::S3 { bucket, prefix } if prefix.is_empty() => {
            format!("s3://{bucket}")
        }
        crate::config::Source::S3 { bucket, prefix } => {
            format!("s3://{bucket}/{}", prefix.trim_end_matches('/'))
        }
        crate::config::Source::Local { root } => format!("file://{}", root.display()),
    }
}
