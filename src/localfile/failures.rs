//! The most recent upload failures, kept for `bucketfs status`, so an upload error after
//! `close` is never only in the log, and all of them counted (for the metrics).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

/// How many failures are remembered (all are counted).
const KEEP: usize = 20;

#[derive(Debug, Clone)]
pub struct Failure {
    pub key: String,
    pub error: String,
    pub at: SystemTime,
}

#[derive(Default)]
pub struct FailureLog {
    recent: Mutex<VecDeque<Failure>>,
    total: AtomicU64,
}

impl FailureLog {
    pub fn record(&self, key: &str, error: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut log = self.recent.lock().unwrap();
        if log.len() == KEEP {
            log.pop_back();
        }
        log.push_front(Failure {
            key: key.to_string(),
            error: error.to_string(),
            at: SystemTime::now(),
        });
    }

    pub fn recent(&self) -> Vec<Failure> {
        self.recent.lock().unwrap().iter().cloned().collect()
    }

    /// Every failure since the mount.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}
