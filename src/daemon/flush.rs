//! `bucketfs flush MOUNTPOINT [PATH...]`: asks the daemon serving the mount to upload now what
//! is not in the bucket yet under each PATH (none: the whole mount), waits for its answer, and
//! names each file that could not be stored, one line each (exit 1). Exit 0 means every file
//! under the paths is in the bucket (see `fs::flush`).
//!
//! It speaks over the status socket (see `status_socket`), one request line and one answer
//! line:
//!
//!     flush ["photos","notes/today.txt"]
//!     {"stored":12,"not_stored":[{"path":"photos/a.jpg","error":"..."}]}
//!
//! The request is `flush`, then optionally a space and a JSON array of paths relative to the
//! mount root (JSON, so any name, a newline in it included, fits on the line); no array, or
//! an empty one, is the whole mount. A request the daemon cannot read gets
//! `{"error":"..."}`. The command takes its PATHs as any command does (absolute, or relative
//! to the current directory) and sends them relative to the mountpoint.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use serde_json::{json, Value};

use super::runtime_files::socket_for;
use crate::console::{stderr_line, usage_error};
use crate::fs::Fs;

/// The request word of a flush on the status socket.
pub(super) const REQUEST: &str = "flush";

/// The daemon's answer to the request line `flush[ ARGS]` (`args` is what follows the word).
pub(super) async fn answer(fs: &Fs, args: &str) -> String {
    let paths: Vec<String> = match args.trim() {
        "" => Vec::new(),
        json => match serde_json::from_str(json) {
            Ok(paths) => paths,
            Err(e) => {
                let error = format!("bad flush request (a JSON array of paths expected): {e}");
                return json!({ "error": error }).to_string() + "\n";
            }
        },
    };
    let paths: Vec<String> = paths
        .iter()
        .map(|p| p.trim_matches('/').to_string())
        .collect();
    tracing::info!(?paths, "flush asked for");
    let flushed = fs.flush_paths(&paths).await;
    if !flushed.not_stored.is_empty() {
        tracing::warn!(
            stored = flushed.stored,
            not_stored = flushed.not_stored.len(),
            "flush: some files are not in the bucket"
        );
    }
    let not_stored: Vec<Value> = flushed
        .not_stored
        .iter()
        .map(|(path, error)| json!({ "path": path, "error": error }))
        .collect();
    json!({ "stored": flushed.stored, "not_stored": not_stored }).to_string() + "\n"
}

/// `path` with `.` and `..` resolved lexically (symlinks are not followed: a PATH names an
/// entry of the mount, not what it points to).
fn normalized(path: &Path) -> std::io::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in std::path::absolute(path)?.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `path` relative to `mountpoint` (both normalized), as the daemon names it: `/`-separated
/// UTF-8, "" for the mountpoint itself.
fn relative_to(mountpoint: &Path, path: &Path) -> Result<String, String> {
    let abs = normalized(path).map_err(|e| format!("bad path {}: {e}", path.display()))?;
    let rel = abs.strip_prefix(mountpoint).map_err(|_| {
        format!(
            "{} is not in the mount {}",
            path.display(),
            mountpoint.display()
        )
    })?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    parts
        .map(|p| p.join("/"))
        .ok_or_else(|| format!("{} is not valid UTF-8 (no S3 key is)", path.display()))
}

/// `bucketfs flush`: see the module comment.
pub fn flush(mountpoint: &Path, paths: &[PathBuf]) -> ExitCode {
    let abs = match normalized(mountpoint) {
        Ok(p) => p,
        Err(e) => return usage_error(format!("bad mountpoint {}: {e}", mountpoint.display())),
    };
    let mut relative = Vec::new();
    for path in paths {
        match relative_to(&abs, path) {
            Ok(rel) => relative.push(rel),
            Err(msg) => return usage_error(msg),
        }
        if let Err(e) = std::fs::symlink_metadata(path) {
            return usage_error(format!("{}: {e}", path.display()));
        }
    }
    let answer = match ask(&abs, &relative) {
        Ok(a) => a,
        Err(e) => {
            stderr_line(format_args!(
                "bucketfs: error: no bucketfs daemon answers for {} ({e}): is it mounted?",
                abs.display()
            ));
            return ExitCode::from(1);
        }
    };
    if let Some(error) = answer["error"].as_str() {
        stderr_line(format_args!("bucketfs: error: {error}"));
        return ExitCode::from(1);
    }
    let Some(not_stored) = answer["not_stored"].as_array() else {
        stderr_line(format_args!(
            "bucketfs: error: the daemon's answer makes no sense: {answer}"
        ));
        return ExitCode::from(1);
    };
    for item in not_stored {
        let path = abs.join(item["path"].as_str().unwrap_or_default());
        let error = item["error"].as_str().unwrap_or_default();
        stderr_line(format_args!(
            "bucketfs: not in the bucket: {}: {error}",
            path.display()
        ));
    }
    match not_stored.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    }
}

/// Sends the flush request for `paths` to the daemon serving `mountpoint` and waits for
/// its answer (as long as the uploads take).
fn ask(mountpoint: &Path, paths: &[String]) -> std::io::Result<Value> {
    let mut conn = std::os::unix::net::UnixStream::connect(socket_for(mountpoint))?;
    let request = match paths.is_empty() {
        true => format!("{REQUEST}\n"),
        false => format!("{REQUEST} {}\n", json!(paths)),
    };
    conn.write_all(request.as_bytes())?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    serde_json::from_str(&answer).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_sent_relative_to_the_mountpoint() {
        let mnt = Path::new("/mnt/data");
        assert_eq!(relative_to(mnt, Path::new("/mnt/data")).unwrap(), "");
        assert_eq!(
            relative_to(mnt, Path::new("/mnt/data/a/./b/../c")).unwrap(),
            "a/c"
        );
        assert!(relative_to(mnt, Path::new("/mnt/data/../other")).is_err());
        assert!(relative_to(mnt, Path::new("/mnt/database")).is_err());
    }
}
