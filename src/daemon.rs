//! The mount's life: start-up checks (`preflight`), going to the background, serving, and a
//! clean exit.
//!
//! `bucketfs mount` re-runs itself as a detached child (`--foreground`, with a pipe on its
//! stdout) and waits until the child reports "ready" — the mount is live — or an error, which
//! it prints and exits 2 on. However the mount ends (`bucketfs unmount`, `umount`,
//! `fusermount3 -u`, SIGINT, SIGTERM), the daemon first uploads every pending file and only
//! then exits; `bucketfs unmount` waits for that exit. A pid file per mountpoint in the runtime
//! directory links the two.

use std::ffi::CString;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fuser::{MountOption, Session, SessionACL};
use tracing::{error, info, warn};

use crate::cache::disk::DiskCache;
use crate::check;
use crate::config::Config;
use crate::console::{stderr_line, usage_error};
use crate::fs::Fs;
use crate::fuse::FuseAdapter;
use crate::upload::journal::Journal;
use crate::upload::registry::{abort_stale, UploadRegistry};

mod preflight;

/// Set in the environment of the background child; its stdout is then the ready pipe.
const READY_ENV: &str = "BUCKETFS_READY_PIPE";

pub fn mount(config: Config, mountpoint: PathBuf, foreground: bool) -> ExitCode {
    let child = std::env::var_os(READY_ENV).is_some();
    if foreground || child {
        init_logging();
    }
    let ready = Ready { pipe: child };
    let mountpoint = match preflight::mountpoint(&mountpoint, config.allow_non_empty) {
        Ok(p) => p,
        Err(refusal) => return ready.fail(&refusal.to_string()),
    };
    if let Err(refusal) = preflight::cache_dir_writable(&config.cache_dir, &config.mount_dir()) {
        return ready.fail(&refusal.to_string());
    }
    if !foreground && !child {
        return spawn_background(&config, &mountpoint);
    }
    match serve(config, mountpoint, ready) {
        Ok(code) => code,
        Err((ready, msg)) => ready.fail(&msg),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("bucketfs=info,fuser=error"));
    // A log write that fails (a full disk, `2>/dev/full`) loses that line. tracing-subscriber
    // would otherwise report it with `eprintln!`, which panics when stderr cannot be written:
    // the daemon died and left its mount dead.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}

fn log_path(config: &Config) -> PathBuf {
    config
        .log_file
        .clone()
        .unwrap_or_else(|| config.mount_dir().join("bucketfs.log"))
}

/// Starts the daemon in the background and waits for it to report the mount live.
fn spawn_background(config: &Config, mountpoint: &Path) -> ExitCode {
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
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
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
struct Ready {
    /// True in the background child: stdout is the parent's pipe.
    pipe: bool,
}

impl Ready {
    fn ok(&self) {
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
    fn fail(&self, msg: &str) -> ExitCode {
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

type ServeError = (Ready, String);

fn serve(config: Config, mountpoint: PathBuf, ready: Ready) -> Result<ExitCode, ServeError> {
    let store = match config.open_store() {
        Ok(s) => s,
        Err(e) => return Err((ready, check::hint(&config, &e))),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Err((ready, format!("cannot start the async runtime: {e}"))),
    };
    if let Err(msg) = rt.block_on(check::probe(&config, &*store)) {
        return Err((ready, msg));
    }
    let staging = config
        .mount_dir()
        .join(format!("staging-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&staging) {
        return Err((
            ready,
            format!(
                "cannot create the staging directory {}: {e} (set --cache-dir)",
                staging.display()
            ),
        ));
    }
    let disk_cache = match config.fs.disk_cache {
        0 => None,
        bytes => {
            let dir = config.mount_dir().join("blocks");
            match DiskCache::open(&dir, bytes) {
                Ok(c) => Some(c),
                Err(e) => {
                    return Err((
                        ready,
                        format!(
                        "cannot open the disk cache {}: {e} (set --cache-dir, or disk_cache = 0)",
                        dir.display()
                    ),
                    ))
                }
            }
        }
    };
    let uploads = match UploadRegistry::open(&config.mount_dir().join("multipart")) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            return Err((
                ready,
                format!(
                    "cannot use the cache directory {}: {e} (set --cache-dir)",
                    config.mount_dir().display()
                ),
            ))
        }
    };
    let journal_dir = config.mount_dir().join("journal");
    let journal = match Journal::open(&journal_dir) {
        Ok(j) => Arc::new(j),
        Err(e) => {
            return Err((
                ready,
                format!(
                    "cannot open the write-back journal {}: {e} (set --cache-dir)",
                    journal_dir.display()
                ),
            ))
        }
    };
    rt.block_on(abort_stale(&*store, &uploads, config.fs.stale_upload_age));
    let store_stats = store.clone();
    let fs = Arc::new(Fs::new(
        store,
        config.prefix.clone(),
        config.fs.clone(),
        staging.clone(),
        disk_cache,
        Some(uploads),
        Some(journal.clone()),
    ));
    // What a killed daemon left pending goes to the bucket before the mount shows anything.
    let (recovered, unrecovered) = rt.block_on(fs.recover());
    if recovered + unrecovered > 0 {
        info!(recovered, unrecovered, "write-back journal replayed");
    }
    remove_old_staging(&config.mount_dir(), &staging, &journal);
    let adapter = FuseAdapter::new(fs.clone(), rt.handle().clone());

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
    let mut session = match Session::new(adapter, &mountpoint, &fuse_config) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir(&staging);
            return Err((
                ready,
                format!("cannot mount at {}: {e}", mountpoint.display()),
            ));
        }
    };
    let mut unmounter = session.unmount_callable();
    let start_guard = UnmountUnlessStarted(Some(session.unmount_callable()));
    let pid_file = pid_file_for(&mountpoint);
    let _ = std::fs::remove_file(not_stored_file_for(&mountpoint)); // an earlier daemon's
    if let Err(e) = write_pid_file(&pid_file, &mountpoint) {
        warn!(path = %pid_file.display(), error = %e, "cannot write the pid file; `bucketfs unmount` will not wait for uploads");
    }
    // Listen for signals before anyone can send one, and serve before saying "ready".
    let signals = rt.block_on(async { Signals::new() });
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let loop_thread = std::thread::spawn(move || {
        let result = session.run();
        let _ = done_tx.send(());
        result
    });
    let device = mount_device(&mountpoint);
    if let Some(dev) = device {
        raise_kernel_readahead(dev, config.fs.read_ahead);
    }
    rt.spawn(write_back(fs.clone()));
    let socket = socket_for(&mountpoint);
    rt.spawn(serve_status(socket.clone(), fs.clone(), mountpoint.clone()));
    info!(mountpoint = %mountpoint.display(), source = ?config.source, "mounted");
    ready.ok();
    start_guard.started();

    rt.block_on(async {
        tokio::select! {
            signal = signals.next() => {
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
    });
    if let Ok(Err(e)) = loop_thread.join() {
        warn!(error = %e, "the FUSE session ended with an error");
    }
    let failed = rt.block_on(drain_with_progress(&fs));
    if let Err(e) = journal.close() {
        warn!(error = %e, "cannot tidy the write-back journal");
    }
    let stats = store_stats.stats();
    let counts: Vec<String> = stats
        .requests
        .iter()
        .map(|(kind, n)| format!("{kind}={n}"))
        .collect();
    info!(
        "store requests: {} bytes_sent={} bytes_received={}",
        counts.join(" "),
        stats.bytes_sent,
        stats.bytes_received
    );
    if !failed.is_empty() {
        // For `bucketfs unmount`, which waits for this process and then names them.
        let report = not_stored_file_for(&mountpoint);
        if let Err(e) = std::fs::write(&report, failed.join("\n") + "\n") {
            warn!(path = %report.display(), error = %e, "cannot write the list of files not stored");
        }
    }
    let _ = std::fs::remove_file(&pid_file);
    let _ = std::fs::remove_file(&socket);
    drop(fs);
    let _ = std::fs::remove_dir(&staging);
    if !failed.is_empty() {
        error!(
            failed = failed.len(),
            keys = failed.join(" "),
            journal = %config.mount_dir().join("journal").display(),
            "some files could not be stored: those still pending stay in the write-back journal and the next mount with the same cache directory uploads them; `bucketfs status` lists those kept in journal/unsaved/"
        );
        return Ok(ExitCode::from(1));
    }
    info!("all uploads finished; exiting");
    Ok(ExitCode::SUCCESS)
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

/// Ends the FUSE connection of device `dev` (its session loop then returns).
fn abort_connection(dev: u64) {
    let path = format!("/sys/fs/fuse/connections/{}/abort", libc::minor(dev));
    match std::fs::write(&path, "1") {
        Ok(()) => warn!("the mount was still in use after unmounting; connection aborted"),
        Err(e) => warn!(path, error = %e, "cannot abort the FUSE connection"),
    }
}

/// Drains pending uploads, logging progress every few seconds for long drains (on stderr
/// in the foreground; `bucketfs unmount` shows it too).
async fn drain_with_progress(fs: &Fs) -> Vec<String> {
    let started = Instant::now();
    let drain = fs.drain();
    tokio::pin!(drain);
    loop {
        tokio::select! {
            failed = &mut drain => return failed,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                let status = fs.status();
                info!(
                    seconds = started.elapsed().as_secs(),
                    files = status.pending,
                    bytes = status.pending_bytes,
                    "still uploading pending files before exit"
                );
            }
        }
    }
}

/// SIGTERM and SIGINT, registered when created.
struct Signals {
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> Signals {
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

fn fs_name(config: &Config) -> String {
    match &config.source {
        crate::config::Source::S3 { bucket, prefix } => format!("bucketfs:s3://{bucket}/{prefix}"),
        crate::config::Source::Local { root } => format!("bucketfs:file://{}", root.display()),
    }
}

/// Per-user directory for pid files.
fn runtime_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("bucketfs");
    }
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        PathBuf::from("/run/bucketfs")
    } else {
        std::env::temp_dir().join(format!("bucketfs-{uid}"))
    }
}

/// Where an exiting daemon lists the keys it could not store, one per line.
fn not_stored_file_for(mountpoint: &Path) -> PathBuf {
    pid_file_for(mountpoint).with_extension("not-stored")
}

fn pid_file_for(mountpoint: &Path) -> PathBuf {
    // FNV-1a of the absolute mountpoint path: stable, short, filesystem-safe.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in mountpoint.as_os_str().as_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    runtime_dir().join(format!("mount-{h:016x}.pid"))
}

/// Uploads closed files once their write-back delay (or a failed upload's backoff) is over.
async fn write_back(fs: Arc<Fs>) {
    loop {
        tokio::time::sleep(WRITE_BACK_TICK).await;
        let failed = fs.upload_due().await;
        if failed > 0 {
            warn!(
                failed,
                "uploads failed; they stay pending and are tried again later"
            );
        }
    }
}

/// How often the write-back loop looks for files that are due.
const WRITE_BACK_TICK: Duration = Duration::from_millis(100);

/// Removes the staging files earlier daemons of this mount left behind (files open when they
/// died; what was closed is in the journal and was uploaded or is kept for the next mount).
fn remove_old_staging(mount_dir: &Path, own: &Path, journal: &Journal) {
    let keep: std::collections::HashSet<PathBuf> = match journal.staging_files() {
        Ok(k) => k.into_iter().collect(),
        Err(e) => {
            warn!(error = %e, "cannot read the journal; old staging files are kept");
            return;
        }
    };
    let Ok(dirs) = std::fs::read_dir(mount_dir) else {
        return;
    };
    for dir in dirs.flatten().map(|d| d.path()) {
        let is_staging = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("staging-"));
        let pid = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("staging-"))
            .and_then(|p| p.parse::<i32>().ok());
        if !is_staging || dir == own || pid.is_none_or(crate::upload::journal::pid_alive) {
            continue; // ours, or another running daemon's
        }
        for file in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if !keep.contains(&file.path()) {
                let _ = std::fs::remove_file(file.path());
            }
        }
        let _ = std::fs::remove_dir(&dir); // only once empty
    }
}

/// The control socket `bucketfs status` connects to, beside the pid file.
fn socket_for(mountpoint: &Path) -> PathBuf {
    pid_file_for(mountpoint).with_extension("sock")
}

/// Answers every connection to `socket` with the status report, then closes it.
async fn serve_status(socket: PathBuf, fs: Arc<Fs>, mountpoint: PathBuf) {
    use tokio::io::AsyncWriteExt;
    let _ = std::fs::remove_file(&socket);
    let listener = match tokio::net::UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            warn!(path = %socket.display(), error = %e, "no status socket; `bucketfs status` will not work");
            return;
        }
    };
    while let Ok((mut conn, _)) = listener.accept().await {
        let report = format!(
            "mount: {} (pid {})\n{}",
            mountpoint.display(),
            std::process::id(),
            fs.status().render(std::time::SystemTime::now())
        );
        let _ = conn.write_all(report.as_bytes()).await;
    }
}

/// The status report of the daemon serving `mountpoint` (absolute).
fn query_status(mountpoint: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut report = String::new();
    std::os::unix::net::UnixStream::connect(socket_for(mountpoint))?.read_to_string(&mut report)?;
    Ok(report)
}

/// `bucketfs status`: the daemon's report on pending uploads and recent failures.
pub fn status(mountpoint: &Path) -> ExitCode {
    let abs = match std::path::absolute(mountpoint) {
        Ok(p) => p,
        Err(e) => return usage_error(format!("bad mountpoint {}: {e}", mountpoint.display())),
    };
    match query_status(&abs) {
        Ok(report) => {
            let _ = std::io::stdout().lock().write_all(report.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            stderr_line(format_args!(
                "bucketfs: error: no bucketfs daemon answers for {} ({e}): is it mounted?",
                abs.display()
            ));
            ExitCode::from(1)
        }
    }
}

fn write_pid_file(path: &Path, mountpoint: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        path,
        format!("{}\n{}\n", std::process::id(), mountpoint.display()),
    )
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
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
                let pending = query_status(&abs)
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
