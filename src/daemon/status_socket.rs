//! `bucketfs status`: a running daemon answers every connection to its status socket (in the
//! runtime directory, see `runtime_files`) with its report on pending uploads and recent
//! failures; the command connects, asks for the report as text or as JSON (one line, `text`
//! or `json`), prints it and exits. `bucketfs unmount` reads the same report to show the
//! progress of a long drain.
//!
//! The protocol: the client sends one request line, the daemon answers and closes the
//! connection. `text` (or nothing within a second, or anything unknown): the text report;
//! `json`: the report as one JSON line (`status_json`); `flush` with optional paths: uploads
//! what is pending under them and answers once done, one JSON line (see `flush`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::warn;

use super::flush;
use super::runtime_files::socket_for;
use super::status_json::status_json;
use crate::console::{stderr_line, usage_error};
use crate::fs::Fs;

/// How the report is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
}

impl ReportFormat {
    fn request(self) -> &'static [u8] {
        match self {
            ReportFormat::Text => b"text\n",
            ReportFormat::Json => b"json\n",
        }
    }
}

/// Answers every connection to `socket` with the status report, then closes it.
pub(super) async fn serve_status(socket: PathBuf, fs: Arc<Fs>, mountpoint: PathBuf) {
    let _ = std::fs::remove_file(&socket);
    let listener = match tokio::net::UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            warn!(path = %socket.display(), error = %e, "no status socket; `bucketfs status` will not work");
            return;
        }
    };
    while let Ok((conn, _)) = listener.accept().await {
        tokio::spawn(answer(conn, fs.clone(), mountpoint.clone()));
    }
}

/// Reads the request line (a client that sends none within a second gets the text) and
/// writes the report.
async fn answer(conn: tokio::net::UnixStream, fs: Arc<Fs>, mountpoint: PathBuf) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut conn = BufReader::new(conn);
    let mut request = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.read_line(&mut request)).await;
    let request = request.trim_end_matches(['\r', '\n']);
    if let Some(args) = request.strip_prefix(flush::REQUEST) {
        if args.is_empty() || args.starts_with(' ') {
            let answer = flush::answer(&fs, args).await;
            let _ = conn.get_mut().write_all(answer.as_bytes()).await;
            return;
        }
    }
    let status = fs.status();
    let now = SystemTime::now();
    let pid = std::process::id();
    let report = match request.trim() {
        "json" => status_json(&status, &mountpoint, pid, now).to_string() + "\n",
        _ => format!(
            "mount: {} (pid {pid})\n{}",
            mountpoint.display(),
            status.render(now)
        ),
    };
    let _ = conn.get_mut().write_all(report.as_bytes()).await;
}

/// The status report of the daemon serving `mountpoint` (absolute).
pub(super) fn query_status(mountpoint: &Path, format: ReportFormat) -> std::io::Result<String> {
    use std::io::Read;
    let mut conn = std::os::unix::net::UnixStream::connect(socket_for(mountpoint))?;
    conn.write_all(format.request())?;
    let mut report = String::new();
    conn.read_to_string(&mut report)?;
    Ok(report)
}

/// `bucketfs status [--json]`: the daemon's report on pending uploads and recent failures.
pub fn status(mountpoint: &Path, format: ReportFormat) -> ExitCode {
    let abs = match std::path::absolute(mountpoint) {
        Ok(p) => p,
        Err(e) => return usage_error(format!("bad mountpoint {}: {e}", mountpoint.display())),
    };
    match query_status(&abs, format) {
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
