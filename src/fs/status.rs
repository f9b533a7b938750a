//! What `bucketfs status` reports: the files whose content is not in the bucket yet (count,
//! bytes, how long the oldest has waited) and the most recent upload failures, so an upload
//! error after `close` is never only in the log.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::SystemTime;

use super::Fs;

/// How many failures are remembered.
const KEEP: usize = 20;

#[derive(Debug, Clone)]
pub struct Failure {
    pub key: String,
    pub error: String,
    pub at: SystemTime,
}

#[derive(Debug, Clone, Default)]
pub struct Status {
    pub pending: usize,
    pub pending_bytes: u64,
    /// Since when the longest-waiting pending file has not been in the bucket.
    pub oldest: Option<SystemTime>,
    /// Most recent first.
    pub failures: Vec<Failure>,
}

#[derive(Default)]
pub struct FailureLog(Mutex<VecDeque<Failure>>);

impl FailureLog {
    pub fn record(&self, key: &str, error: &str) {
        let mut log = self.0.lock().unwrap();
        if log.len() == KEEP {
            log.pop_back();
        }
        log.push_front(Failure {
            key: key.to_string(),
            error: error.to_string(),
            at: SystemTime::now(),
        });
    }

    fn recent(&self) -> Vec<Failure> {
        self.0.lock().unwrap().iter().cloned().collect()
    }
}

impl Fs {
    pub fn status(&self) -> Status {
        let mut status = Status {
            failures: self.failures.recent(),
            ..Status::default()
        };
        for (_, node) in self.table().all() {
            let Some(content) = node.content.as_ref().filter(|_| node.linked) else {
                continue;
            };
            if let Some(since) = content.dirty_since() {
                status.pending += 1;
                status.pending_bytes += content.size();
                status.oldest = Some(status.oldest.map_or(since, |o| o.min(since)));
            }
        }
        status
    }
}

impl Status {
    /// The report, one fact per line.
    pub fn render(&self, now: SystemTime) -> String {
        let age = |t: SystemTime| now.duration_since(t).unwrap_or_default().as_secs();
        let mut out = format!(
            "pending uploads: {} files, {} bytes",
            self.pending, self.pending_bytes
        );
        if let Some(oldest) = self.oldest {
            let _ = write!(out, ", oldest waiting {} s", age(oldest));
        }
        let _ = write!(out, "\nrecent upload failures: {}", self.failures.len());
        for f in &self.failures {
            let _ = write!(out, "\n  {} s ago  {}  {}", age(f.at), f.key, f.error);
        }
        out.push('\n');
        out
    }
}
