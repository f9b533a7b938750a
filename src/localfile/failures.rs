//! The most recent upload failures, kept for `bucketfs status`, so an upload error after
//! `close` is never only in the log.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

/// How many failures are remembered.
const KEEP: usize = 20;

#[derive(Debug, Clone)]
pub struct Failure {
    pub key: String,
    pub error: String,
    pub at: SystemTime,
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

    pub fn recent(&self) -> Vec<Failure> {
        self.0.lock().unwrap().iter().cloned().collect()
    }
}
