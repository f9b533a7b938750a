//! Conflicts: a closed file whose object another client changed (or created) since the file
//! was opened. Under the `keep-both` policy the other client's object stays under the name
//! and this file's bytes are stored next to it under a conflict name; each such event is
//! remembered here for `bucketfs status` (and counted), so it is never only in the log.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

/// How many conflicts are remembered (all are counted).
const KEEP: usize = 20;

#[derive(Debug, Clone)]
pub struct Conflict {
    /// The key both clients wrote; it keeps the other client's object.
    pub key: String,
    /// Where this file's bytes were stored instead.
    pub kept_as: String,
    pub at: SystemTime,
}

#[derive(Default)]
pub struct ConflictLog {
    recent: Mutex<VecDeque<Conflict>>,
    total: AtomicU64,
}

impl ConflictLog {
    pub fn record(&self, key: &str, kept_as: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut recent = self.recent.lock().unwrap();
        if recent.len() == KEEP {
            recent.pop_back();
        }
        recent.push_front(Conflict {
            key: key.to_string(),
            kept_as: kept_as.to_string(),
            at: SystemTime::now(),
        });
    }

    /// Most recent first.
    pub fn recent(&self) -> Vec<Conflict> {
        self.recent.lock().unwrap().iter().cloned().collect()
    }

    /// Every conflict since the mount.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// The key this host's version of `key` is kept under after a conflict:
/// `KEY.conflict-HOST-YYYYMMDDTHHMMSSZ` (UTC), next to the original so a listing shows
/// both. Characters of the host name that are not letters, digits, `-` or `.` become `-`.
pub fn conflict_key(key: &str, host: &str, at: SystemTime) -> String {
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let host = if host.is_empty() { "host" } else { &host };
    let at = time::OffsetDateTime::from(at);
    format!(
        "{key}.conflict-{host}-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// This machine's host name (`gethostname`), or "host" when it has none.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its whole length, which is passed.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..len]) {
        Ok(name) if ok && !name.is_empty() => name.to_string(),
        _ => "host".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_conflict_key_names_the_file_the_host_and_the_utc_second() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_392_800); // 2026-12-04 14:00 UTC
        assert_eq!(
            conflict_key("dir/report.txt", "web-1.example", at),
            "dir/report.txt.conflict-web-1.example-20261204T140000Z"
        );
        assert_eq!(
            conflict_key("f", "a b/c", at),
            "f.conflict-a-b-c-20261204T140000Z",
            "no separator or space from the host name reaches the key"
        );
    }

    #[test]
    fn conflicts_are_counted_all_and_the_recent_ones_kept() {
        let log = ConflictLog::default();
        for i in 0..KEEP + 5 {
            log.record(&format!("k{i}"), &format!("k{i}.conflict"));
        }
        assert_eq!(log.total(), (KEEP + 5) as u64);
        let recent = log.recent();
        assert_eq!(recent.len(), KEEP);
        assert_eq!(recent[0].key, format!("k{}", KEEP + 4), "most recent first");
    }
}
