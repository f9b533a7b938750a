//! `bucketfs status`: a running daemon answers every connection to its status socket (in the
//! runtime directory, see `runtime_files`) with its report on pending uploads and recent
//! failures; the command connects, prints the report and exits. `bucketfs unmount` reads the
//! same report to show the progress of a long drain.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use tracing::warn;

use super::runtime_files::socket_for;
use crate::console::{stderr_line, usage_error};
use crate::fs::Fs;

/// Answers every connection to `socket` with the status report, then closes it.
pub(super) async fn serve_status(socket: PathBuf, fs: Arc<Fs>, mountpoint: PathBuf) {
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
pub(super) fn query_status(mountpoint: &Path) -> std::io::Result<String> {
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
