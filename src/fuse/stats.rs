//! FUSE operations by kind: how many were answered and how long each took, from the
//! request reaching the adapter to its reply (its task's wait for the store included).
//! Kept by the adapter, which sees every operation; read by `metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::latency::LatencyHistogram;

#[derive(Debug, Default)]
pub struct FuseStats(Mutex<BTreeMap<&'static str, LatencyHistogram>>);

impl FuseStats {
    /// An operation `op` (`read`, `lookup`, ...) answered after `took`.
    pub fn record(&self, op: &'static str, took: Duration) {
        let mut ops = self.0.lock().unwrap_or_else(|e| e.into_inner());
        ops.entry(op).or_default().record(took);
    }

    /// Each kind of operation seen so far, with its count and times.
    pub fn snapshot(&self) -> BTreeMap<&'static str, LatencyHistogram> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
