//! The write-back journal: closed files whose content is not yet in the bucket.
//!
//! A closed file is uploaded after a short delay (see `fs::writeback`). Until then its bytes
//! live only in its staging file, so a daemon killed in between would lose them. Each such
//! file therefore gets an entry here, written before `close` returns: the key it goes to, its
//! staging file, which ranges were written (the rest comes from the object it was opened
//! from), and the user metadata to store. The next mount with the same cache directory
//! uploads whatever entries are left.
//!
//! Each daemon appends to a log file of its own, `PID.log`: a record (`R`) per new or changed
//! entry, a done mark (`D`) once its upload succeeded. One file, synced at each close, and no
//! file created per entry: creating and deleting thousands of small files per second is what
//! made ext4 (its search for a free inode that was not recently deleted) the bottleneck of
//! `rsync`. The log is emptied whenever nothing is pending, and rewritten when it grows large.
//! Records carry a length and a CRC, so a record torn by a crash ends the log cleanly.
//!
//! An entry that can never be uploaded — the object its unchanged bytes were to come from
//! was deleted or replaced by another client — is *parked*: its staging file and a
//! description (`Parked`) move to `unsaved/` in the journal directory, where they stay until
//! someone removes them, and `bucketfs status` lists them. Nothing written is dropped, and
//! nothing is retried forever.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::store::Condition;

/// One closed file waiting for its upload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Entry {
    /// The full bucket key it is uploaded to.
    pub key: String,
    /// The staging file holding the written bytes (kept until the upload succeeded).
    pub staging: PathBuf,
    pub size: u64,
    /// Written ranges `[start, end)`, in the staging file at the same offsets.
    pub written: Vec<(u64, u64)>,
    /// The condition of its upload (`Content::based_on`): the key held the object of this
    /// ETag, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub based_on_etag: Option<String>,
    /// … or nothing (a new file). Neither: uploaded unconditionally (a renamed file, or an
    /// entry written before conditions were recorded).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub based_on_nothing: bool,
    /// The object the unwritten bytes come from, if the file was opened from one.
    pub base: Option<BaseRef>,
    /// User metadata (POSIX attributes, `user.*` attributes) to store with it.
    pub metadata: BTreeMap<String, String>,
}

impl Entry {
    /// The condition of the entry's upload.
    pub fn based_on(&self) -> Option<Condition> {
        match (&self.based_on_etag, self.based_on_nothing) {
            (Some(etag), _) => Some(Condition::Is(etag.clone())),
            (None, true) => Some(Condition::Absent),
            (None, false) => None,
        }
    }

    /// Records `condition` as the entry's.
    pub fn set_based_on(&mut self, condition: Option<Condition>) {
        (self.based_on_etag, self.based_on_nothing) = match condition {
            Some(Condition::Is(etag)) => (Some(etag), false),
            Some(Condition::Absent) => (None, true),
            None => (None, false),
        };
    }
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

/// A file that could not be stored and was kept in `unsaved/` (see the module doc): the bytes
/// written on this host are in `data` at their offsets (`entry.written`), the rest of the
/// file was the object `entry.base` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    pub entry: Entry,
    /// Why it cannot be uploaded.
    pub reason: String,
    /// When it was parked (seconds since the epoch).
    pub at: u64,
    /// The file holding the written bytes.
    pub data: PathBuf,
}

/// Pending entries by id.
type Entries = Vec<(String, Entry)>;

/// Past this size a log holding pending entries is rewritten with just those.
const COMPACT_AT: u64 = 8 << 20;

pub struct Journal {
    dir: PathBuf,
    /// Who writes: this process's id (tests pose as other daemons).
    me: String,
    next: AtomicU64,
    own: Mutex<OwnLog>,
}

/// This daemon's log and the entries in it that are still pending.
struct OwnLog {
    file: Option<File>,
    len: u64,
    live: HashMap<String, Entry>,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`.
    pub fn open(dir: &Path) -> io::Result<Journal> {
        Self::open_as(dir, &std::process::id().to_string())
    }

    /// The journal as the daemon with process id `me` writes it.
    pub fn open_as(dir: &Path, me: &str) -> io::Result<Journal> {
        fs::create_dir_all(dir)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            me: me.to_string(),
            next: AtomicU64::new(0),
            own: Mutex::new(OwnLog {
                file: None,
                len: 0,
                live: HashMap::new(),
            }),
        })
    }

    /// A name for a new entry, unique across restarts (process id + counter).
    pub fn new_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.me)
    }

    fn log_path(&self, pid: &str) -> PathBuf {
        self.dir.join(format!("{pid}.log"))
    }

    /// Writes entry `id` (new or changed). With `durable` it is on disk when this returns;
    /// without, it survives the daemon (the kernel has it) but a power loss may lose it.
    pub fn record(&self, id: &str, entry: &Entry, durable: bool) -> io::Result<()> {
        let mut own = self.own.lock().unwrap();
        own.live.insert(id.to_string(), entry.clone());
        if own.len > COMPACT_AT {
            return self.rewrite(&mut own);
        }
        let record = encode_record(id, entry)?;
        self.append(&mut own, &record)?;
        if durable {
            own.file.as_ref().expect("appended").sync_data()?;
        }
        Ok(())
    }

    /// Marks entry `id` done (its upload succeeded). Unknown ids are ignored.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        let pid = id.split('-').next().unwrap_or_default();
        if pid != self.me {
            // An entry of a dead daemon's log (replayed at mount).
            let mut file = OpenOptions::new().append(true).open(self.log_path(pid))?;
            return file.write_all(format!("D {id}\n").as_bytes());
        }
        let mut own = self.own.lock().unwrap();
        if own.live.remove(id).is_none() {
            return Ok(());
        }
        if own.live.is_empty() {
            // Nothing pending: start the log afresh (a crash now loses nothing).
            if let Some(f) = &own.file {
                f.set_len(0)?;
            }
            own.len = 0;
            return Ok(());
        }
        self.append(&mut own, format!("D {id}\n").as_bytes())
    }

    /// Parks entry `id` (see the module doc): moves its staging file to `unsaved/ID.data`,
    /// writes `unsaved/ID.toml`, then marks the entry done. Returns the description.
    pub fn park(&self, id: &str, entry: &Entry, reason: &str) -> io::Result<Parked> {
        let dir = self.unsaved_dir();
        fs::create_dir_all(&dir)?;
        let data = dir.join(format!("{id}.data"));
        fs::rename(&entry.staging, &data)?;
        let parked = Parked {
            entry: entry.clone(),
            reason: reason.to_string(),
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            data,
        };
        let text = toml::to_string(&parked).map_err(io::Error::other)?;
        let path = dir.join(format!("{id}.toml"));
        let tmp = path.with_extension("tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        fs::rename(&tmp, &path)?;
        File::open(&dir)?.sync_all()?;
        self.remove(id)?;
        Ok(parked)
    }

    /// Every parked file, oldest first (unreadable descriptions are skipped, logged).
    pub fn parked(&self) -> io::Result<Vec<Parked>> {
        let mut out = Vec::new();
        let dirents = match fs::read_dir(self.unsaved_dir()) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for dirent in dirents {
            let path = dirent?.path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            match fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| toml::from_str::<Parked>(&t).map_err(|e| e.to_string()))
            {
                Ok(p) => out.push(p),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable description of an unsaved file")
                }
            }
        }
        out.sort_by(|a, b| (a.at, &a.entry.key).cmp(&(b.at, &b.entry.key)));
        Ok(out)
    }

    /// Where parked files are kept.
    pub fn unsaved_dir(&self) -> PathBuf {
        self.dir.join("unsaved")
    }

    /// At exit: removes the own log when nothing is pending (else the next mount replays it).
    pub fn close(&self) -> io::Result<()> {
        let mut own = self.own.lock().unwrap();
        if own.live.is_empty() && own.file.take().is_some() {
            fs::remove_file(self.log_path(&self.me))?;
        }
        Ok(())
    }

    fn append(&self, own: &mut OwnLog, bytes: &[u8]) -> io::Result<()> {
        if own.file.is_none() {
            let path = self.log_path(&self.me);
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            // The log's name must survive a crash too.
            File::open(&self.dir)?.sync_all()?;
            own.len = file.metadata()?.len();
            own.file = Some(file);
        }
        own.file.as_mut().expect("just opened").write_all(bytes)?;
        own.len += bytes.len() as u64;
        Ok(())
    }

    /// Replaces the own log by one holding only the pending entries.
    fn rewrite(&self, own: &mut OwnLog) -> io::Result<()> {
        let path = self.log_path(&self.me);
        let tmp = path.with_extension("tmp");
        let mut out = Vec::new();
        for (id, entry) in &own.live {
            out.extend(encode_record(id, entry)?);
        }
        let mut file = File::create(&tmp)?;
        file.write_all(&out)?;
        file.sync_data()?;
        fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        own.file = Some(OpenOptions::new().append(true).open(&path)?);
        own.len = out.len() as u64;
        Ok(())
    }

    /// Every pending entry of every log, by id.
    pub fn entries(&self) -> io::Result<Entries> {
        let mut out = Vec::new();
        for (_, entries) in self.logs()? {
            out.extend(entries);
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The pending entries left by daemons that are no longer running (another daemon may
    /// share the cache directory: its entries are its own business). The logs of dead
    /// daemons with nothing pending are deleted.
    pub fn orphaned(&self) -> io::Result<Entries> {
        let mut out = Vec::new();
        for (pid, entries) in self.logs()? {
            if pid == self.me || pid_alive(pid.parse().unwrap_or(0)) {
                continue;
            }
            if entries.is_empty() {
                let _ = fs::remove_file(self.log_path(&pid));
            }
            out.extend(entries);
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The staging files the pending entries refer to.
    pub fn staging_files(&self) -> io::Result<Vec<PathBuf>> {
        Ok(self
            .entries()?
            .into_iter()
            .map(|(_, e)| e.staging)
            .collect())
    }

    /// Each log (by writer pid) with its pending entries, replayed.
    fn logs(&self) -> io::Result<Vec<(String, Entries)>> {
        let mut out = Vec::new();
        for dirent in fs::read_dir(&self.dir)? {
            let path = dirent?.path();
            let Some(pid) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".log"))
            else {
                continue;
            };
            let entries = if pid == self.me {
                // Ours: what is in memory is what is pending (the file may be mid-append).
                let own = self.own.lock().unwrap();
                if own.file.is_some() {
                    own.live
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                } else {
                    replay(&path)?
                }
            } else {
                replay(&path)?
            };
            out.push((pid.to_string(), entries));
        }
        Ok(out)
    }
}

/// `R ID LEN CRC\n<LEN bytes of TOML>\n`.
fn encode_record(id: &str, entry: &Entry) -> io::Result<Vec<u8>> {
    let text = toml::to_string(entry).map_err(io::Error::other)?;
    let crc = crc32fast::hash(text.as_bytes());
    let mut out = format!("R {id} {} {crc:08x}\n", text.len()).into_bytes();
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
    Ok(out)
}

/// The pending entries of one log. A torn or corrupt record (a crash mid-append) ends it.
fn replay(path: &Path) -> io::Result<Entries> {
    let data = fs::read(path)?;
    let mut live: BTreeMap<String, Entry> = BTreeMap::new();
    let mut pos = 0;
    while pos < data.len() {
        let Some(nl) = data[pos..].iter().position(|b| *b == b'\n') else {
            break;
        };
        let header = String::from_utf8_lossy(&data[pos..pos + nl]).into_owned();
        pos += nl + 1;
        let fields: Vec<&str> = header.split(' ').collect();
        match fields.as_slice() {
            ["D", id] => {
                live.remove(*id);
            }
            ["R", id, len, crc] => {
                let Ok(len) = len.parse::<usize>() else { break };
                let Some(body) = data.get(pos..pos + len) else {
                    break;
                };
                if format!("{:08x}", crc32fast::hash(body)) != *crc {
                    break;
                }
                pos += len + 1;
                match std::str::from_utf8(body)
                    .map_err(|e| e.to_string())
                    .and_then(|t| toml::from_str::<Entry>(t).map_err(|e| e.to_string()))
                {
                    Ok(entry) => {
                        live.insert(id.to_string(), entry);
                    }
                    Err(e) => {
                        tracing::error!(path = %path.display(), id, error = %e, "unreadable journal record; skipped");
                    }
                }
            }
            _ => break,
        }
    }
    if pos < data.len() {
        tracing::warn!(path = %path.display(), at = pos, "journal log ends in a torn record (a crash mid-write); the rest is ignored");
    }
    Ok(live.into_iter().collect())
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
            ..Entry::default()
        }
    }

    /// A log as a dead daemon `pid` left it.
    fn dead_log(dir: &Path, pid: &str, records: &[(&str, Option<&str>)]) -> PathBuf {
        let mut out = Vec::new();
        for (id, key) in records {
            match key {
                Some(k) => out.extend(encode_record(id, &entry(k)).unwrap()),
                None => out.extend(format!("D {id}\n").into_bytes()),
            }
        }
        let path = dir.join(format!("{pid}.log"));
        fs::write(&path, out).unwrap();
        path
    }

    #[test]
    fn the_last_record_of_an_entry_wins_and_done_entries_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        dead_log(
            dir.path(),
            "999999998",
            &[
                ("999999998-0", Some("a")),
                ("999999998-1", Some("b")),
                ("999999998-1", Some("renamed")),
                ("999999998-0", None),
            ],
        );
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(
            j.orphaned().unwrap(),
            vec![("999999998-1".to_string(), entry("renamed"))]
        );
    }

    #[test]
    fn own_entries_are_pending_until_removed_and_the_log_empties_when_nothing_is() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let (a, b) = (j.new_id(), j.new_id());
        j.record(&a, &entry("dir/a b"), true).unwrap();
        j.record(&b, &entry("b"), false).unwrap();
        j.remove(&a).unwrap();
        assert_eq!(j.entries().unwrap(), vec![(b.clone(), entry("b"))]);
        let log = dir.path().join(format!("{}.log", std::process::id()));
        assert_eq!(
            replay(&log).unwrap(),
            vec![(b.clone(), entry("b"))],
            "on disk too"
        );
        j.remove(&b).unwrap();
        assert_eq!(fs::metadata(&log).unwrap().len(), 0);
        assert!(j.entries().unwrap().is_empty());
        j.close().unwrap();
        assert!(!log.exists(), "nothing pending at exit: no log left");
    }

    #[test]
    fn a_record_torn_by_a_crash_ends_the_log_without_losing_the_ones_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dead_log(dir.path(), "999999997", &[("999999997-0", Some("whole"))]);
        let mut torn = encode_record("999999997-1", &entry("torn")).unwrap();
        torn.truncate(torn.len() / 2);
        let mut data = fs::read(&path).unwrap();
        data.extend(torn);
        fs::write(&path, data).unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let keys: Vec<String> = j
            .orphaned()
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.key)
            .collect();
        assert_eq!(keys, ["whole"]);
    }

    #[test]
    fn entries_of_a_running_daemon_are_not_orphaned_and_finished_dead_logs_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let live = child.id().to_string();
        dead_log(dir.path(), &live, &[(&format!("{live}-0"), Some("theirs"))]);
        dead_log(dir.path(), "999999999", &[("999999999-0", Some("dead"))]);
        let done = dead_log(
            dir.path(),
            "999999996",
            &[("999999996-0", Some("x")), ("999999996-0", None)],
        );
        let j = Journal::open(dir.path()).unwrap();
        let orphaned: Vec<String> = j
            .orphaned()
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.key)
            .collect();
        j.remove("999999999-0").unwrap();
        let after = j.orphaned().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(orphaned, ["dead"]);
        assert!(!done.exists(), "a dead daemon's finished log is deleted");
        assert!(after.is_empty(), "marked done in the dead log");
    }

    #[test]
    fn a_large_log_is_rewritten_with_just_the_pending_entries() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let keep = j.new_id();
        j.record(&keep, &entry("kept"), true).unwrap();
        let mut n = 0;
        while j.own.lock().unwrap().len <= COMPACT_AT {
            let id = j.new_id();
            j.record(&id, &entry(&format!("k{n}")), false).unwrap();
            j.remove(&id).unwrap();
            n += 1;
        }
        let id = j.new_id();
        j.record(&id, &entry("last"), false).unwrap();
        let log = dir.path().join(format!("{}.log", std::process::id()));
        assert!(fs::metadata(&log).unwrap().len() < 4096);
        let mut keys: Vec<String> = replay(&log)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.key)
            .collect();
        keys.sort();
        assert_eq!(keys, ["kept", "last"]);
    }
}
