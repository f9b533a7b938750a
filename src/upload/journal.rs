//! The write-back journal: closed files whose content is not yet in the bucket.
//!
//! A closed file is uploaded after a short delay (see `fs::writeback`). Until then its bytes
//! live only in its staging file, so a daemon killed in between would lose them. Each such
//! file therefore gets one entry here, written before `close` returns: the key it goes to, its
//! staging file, which ranges were written (the rest comes from the object it was opened
//! from), and the user metadata to store. Entries are small TOML files, replaced atomically
//! (write, fsync, rename) and removed once the upload succeeded. The next mount with the same
//! cache directory uploads whatever entries are left.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// One closed file waiting for its upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The full bucket key it is uploaded to.
    pub key: String,
    /// The staging file holding the written bytes (kept until the upload succeeded).
    pub staging: PathBuf,
    pub size: u64,
    /// Written ranges `[start, end)`, in the staging file at the same offsets.
    pub written: Vec<(u64, u64)>,
    /// The object the unwritten bytes come from, if the file was opened from one.
    pub base: Option<BaseRef>,
    /// User metadata (POSIX attributes, `user.*` attributes) to store with it.
    pub metadata: BTreeMap<String, String>,
}

/// The object a journaled file was opened from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRef {
    pub key: String,
    pub etag: Option<String>,
    pub size: u64,
    /// Unwritten bytes below this offset are the object's; above it, zeros (a truncate).
    pub valid: u64,
}

pub struct Journal {
    dir: PathBuf,
    next: AtomicU64,
}

const SUFFIX: &str = ".toml";

impl Journal {
    /// Opens (creating if needed) the journal in `dir`.
    pub fn open(dir: &Path) -> io::Result<Journal> {
        fs::create_dir_all(dir)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            next: AtomicU64::new(0),
        })
    }

    /// A name for a new entry, unique across restarts (process id + counter).
    pub fn new_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", std::process::id())
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}{SUFFIX}"))
    }

    /// Writes (or atomically replaces) entry `id`. With `durable` it is on disk when this
    /// returns (fsync of the entry and of the directory); without, it survives the daemon
    /// (the kernel has it) but a power loss may keep the previous version.
    pub fn record(&self, id: &str, entry: &Entry, durable: bool) -> io::Result<()> {
        let text = toml::to_string(entry).map_err(io::Error::other)?;
        let tmp = self.dir.join(format!(".{id}.tmp"));
        let mut file = File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        if durable {
            file.sync_data()?;
        }
        fs::rename(&tmp, self.path(id))?;
        if durable {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Removes entry `id` (its upload is done). A missing entry is not an error.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every entry on disk. An unreadable entry is renamed to `*.bad` (kept for a human to
    /// look at) and logged, never fatal.
    pub fn entries(&self) -> io::Result<Vec<(String, Entry)>> {
        let mut out = Vec::new();
        for dirent in fs::read_dir(&self.dir)? {
            let path = dirent?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(SUFFIX))
                .filter(|n| !n.starts_with('.'))
            else {
                continue;
            };
            let parsed = fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| toml::from_str::<Entry>(&t).map_err(|e| e.to_string()));
            match parsed {
                Ok(entry) => out.push((id.to_string(), entry)),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "unreadable journal entry; renamed to .bad");
                    let _ = fs::rename(&path, path.with_extension("bad"));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The entries left by daemons that are no longer running (another daemon may share the
    /// cache directory: its entries are its own business).
    /// Half-written entries of dead daemons (killed while writing one) are removed.
    pub fn orphaned(&self) -> io::Result<Vec<(String, Entry)>> {
        for dirent in fs::read_dir(&self.dir)? {
            let path = dirent?.path();
            let half_written = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix('.')?.strip_suffix(".tmp"))
                .is_some_and(|id| !writer_alive(id));
            if half_written {
                let _ = fs::remove_file(&path);
            }
        }
        let mut entries = self.entries()?;
        entries.retain(|(id, _)| !writer_alive(id));
        Ok(entries)
    }

    /// The staging files the entries refer to.
    pub fn staging_files(&self) -> io::Result<Vec<PathBuf>> {
        Ok(self
            .entries()?
            .into_iter()
            .map(|(_, e)| e.staging)
            .collect())
    }
}

/// True when the process that wrote entry `id` (`PID-N`) still runs and is not this one.
fn writer_alive(id: &str) -> bool {
    let Some(pid) = id.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
        return false;
    };
    if pid == std::process::id() as i32 {
        return false;
    }
    pid_alive(pid)
}

/// True when process `pid` runs (a zombie, killed but not yet reaped, does not).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "PID (COMM) STATE ...": the state follows the last ')'.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        return !matches!(state, Some("Z" | "X"));
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> Entry {
        Entry {
            key: key.into(),
            staging: "/tmp/stage-1".into(),
            size: 10,
            written: vec![(0, 4), (8, 10)],
            base: Some(BaseRef {
                key: key.into(),
                etag: Some("\"e\"".into()),
                size: 9,
                valid: 9,
            }),
            metadata: [("mode".to_string(), "33188".to_string())].into(),
        }
    }

    #[test]
    fn recorded_entries_survive_reopening_and_removed_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let (a, b) = (j.new_id(), j.new_id());
        j.record(&a, &entry("dir/a b"), true).unwrap();
        j.record(&b, &entry("b"), true).unwrap();
        j.record(&b, &entry("renamed"), false).unwrap();
        j.remove(&a).unwrap();
        j.remove("never-there").unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.entries().unwrap(), vec![(b, entry("renamed"))]);
    }

    #[test]
    fn an_unreadable_entry_is_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        fs::write(dir.path().join("9-9.toml"), "key = [").unwrap();
        let id = j.new_id();
        j.record(&id, &entry("k"), true).unwrap();
        assert_eq!(j.entries().unwrap().len(), 1);
        assert!(dir.path().join("9-9.bad").exists());
    }

    #[test]
    fn entries_of_a_running_daemon_are_not_orphaned() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let live = format!("{}-0", child.id());
        j.record(&live, &entry("theirs"), true).unwrap();
        j.record("999999999-0", &entry("dead"), true).unwrap();
        fs::write(dir.path().join(".999999999-1.tmp"), "key = ").unwrap();
        let orphaned: Vec<String> = j
            .orphaned()
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.key)
            .collect();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(orphaned, ["dead"]);
        assert!(
            !dir.path().join(".999999999-1.tmp").exists(),
            "half-written entry removed"
        );
    }
}
