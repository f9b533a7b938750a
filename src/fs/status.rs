//! What `bucketfs status` reports: the files whose content is not in the bucket yet (count,
//! bytes, how long the oldest has waited — files closed here and entries an earlier daemon
//! left in the journal alike), the files that can never be stored and were kept in the cache
//! directory (see `Journal::park`), the conflicts with other clients (see
//! `Fs::keep_conflict`), and the most recent upload failures, so an upload error after
//! `close` is never only in the log. The metrics show the same facts, and the counts of all
//! failures and of the journal entries replayed at start.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::Fs;
use crate::localfile::conflicts::Conflict;
use crate::localfile::content::Content;
use crate::localfile::failures::Failure;
use crate::localfile::journal::Parked;

#[derive(Debug, Clone, Default)]
pub struct Status {
    pub pending: usize,
    pub pending_bytes: u64,
    /// Since when the longest-waiting pending file has not been in the bucket.
    pub oldest: Option<SystemTime>,
    /// Most recent first.
    pub failures: Vec<Failure>,
    /// Upload failures since the mount, all of them.
    pub failure_total: u64,
    /// Entries of earlier daemons' journals read back at start (`Fs::recover`).
    pub replayed: u64,
    /// Files that could not be stored, kept in the cache directory (oldest first).
    pub unsaved: Vec<Parked>,
    /// Files another client changed meanwhile, most recent first, and how many in all.
    pub conflicts: Vec<Conflict>,
    pub conflict_total: u64,
    /// Names the inode table holds, and its bound (`name_cache_entries`).
    pub names: usize,
    pub names_limit: usize,
}

impl Fs {
    pub fn status(&self) -> Status {
        let (conflicts, conflict_total) = self.files.conflicts();
        let (failures, failure_total) = self.files.failures();
        let mut status = Status {
            failures,
            failure_total,
            replayed: self.files.replayed(),
            conflicts,
            conflict_total,
            names: self.names.table().node_count(),
            names_limit: self.opts.name_cache_entries,
            ..Status::default()
        };
        let mut count = |content: &Content| {
            if let Some(since) = content.dirty_since() {
                status.pending += 1;
                status.pending_bytes += content.size();
                status.oldest = Some(status.oldest.map_or(since, |o| o.min(since)));
            }
        };
        for (_, node) in self.names.table().all() {
            if let Some(content) = node.content().filter(|_| node.linked()) {
                count(content);
            }
        }
        for orphan in self.files.orphans() {
            count(&orphan.content);
        }
        match self.files.parked() {
            Ok(parked) => status.unsaved = parked,
            Err(e) => tracing::warn!(error = %e, "cannot list the unsaved files"),
        }
        status
    }
}

impl Status {
    /// The first line of the report: "pending uploads: N files, B bytes[, oldest waiting S s]"
    /// (also systemd's `STATUS=`).
    pub fn pending_line(&self, now: SystemTime) -> String {
        let mut line = format!(
            "pending uploads: {} files, {} bytes",
            self.pending, self.pending_bytes
        );
        if let Some(oldest) = self.oldest {
            let age = now.duration_since(oldest).unwrap_or_default().as_secs();
            let _ = write!(line, ", oldest waiting {age} s");
        }
        line
    }

    /// The report, one fact per line.
    pub fn render(&self, now: SystemTime) -> String {
        let age = |t: SystemTime| now.duration_since(t).unwrap_or_default().as_secs();
        let mut out = self.pending_line(now);
        if !self.unsaved.is_empty() {
            let _ = write!(
                out,
                "\nNOT STORED, kept in the cache directory: {} files (copy what you need, then delete both files)",
                self.unsaved.len()
            );
            for p in &self.unsaved {
                let _ = write!(
                    out,
                    "\n  {}  {} bytes written here at {:?} in {}  ({})",
                    p.entry.key,
                    p.entry.written.iter().map(|(s, e)| e - s).sum::<u64>(),
                    p.entry.written,
                    p.data.display(),
                    p.reason
                );
            }
        }
        if self.conflict_total > 0 {
            let _ = write!(
                out,
                "\nconflicts (another client changed the file; both versions kept): {}",
                self.conflict_total
            );
            for c in &self.conflicts {
                let _ = write!(
                    out,
                    "\n  {} s ago  {}  this host's version: {}",
                    age(c.at),
                    c.key,
                    c.kept_as
                );
            }
        }
        let _ = write!(out, "\nrecent upload failures: {}", self.failures.len());
        for f in &self.failures {
            let _ = write!(out, "\n  {} s ago  {}  {}", age(f.at), f.key, f.error);
        }
        out.push('\n');
        out
    }
}
