//! A latency histogram with fixed buckets, for the counts owners keep of what they do: the
//! S3 store per request (`store::StoreStats`), the FUSE adapter per operation
//! (`fuse::stats`). `metrics` shows them as Prometheus histograms.
//!
//! It is plain data (no atomics, no lock of its own): its owner keeps it beside its other
//! counts, under the lock it already takes, and hands out copies. Fixed buckets make two
//! copies comparable and a copy cheap (15 integers and a sum).

use std::time::Duration;

/// Upper bounds of the buckets, in seconds: from an answer out of a cache (under a
/// millisecond) to a request that runs into its timeout (30 s by default). Slower ones fall
/// in the last bucket, `+Inf`.
pub const BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// How many took at most `BOUNDS[i]` and more than `BOUNDS[i - 1]`; the last, more than
    /// every bound.
    counts: [u64; BOUNDS.len() + 1],
    sum: Duration,
}

impl LatencyHistogram {
    /// One event that took `took`.
    pub fn record(&mut self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BOUNDS.len());
        self.counts[bucket] += 1;
        self.sum += took;
    }

    /// Events recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Their times added up.
    pub fn sum(&self) -> Duration {
        self.sum
    }

    /// (upper bound in seconds, events in that bucket alone), the last bound infinite.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_time_falls_in_the_first_bucket_whose_bound_it_does_not_pass() {
        let mut h = LatencyHistogram::default();
        h.record(Duration::from_micros(200));
        h.record(Duration::from_millis(1)); // on the bound: in its bucket
        h.record(Duration::from_millis(300));
        h.record(Duration::from_secs(90));
        assert_eq!(h.count(), 4);
        assert_eq!(
            h.sum(),
            Duration::from_secs(90) + Duration::from_micros(301_200)
        );
        let filled: Vec<(f64, u64)> = h.buckets().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            filled,
            [(0.0005, 1), (0.001, 1), (0.5, 1), (f64::INFINITY, 1)]
        );
        assert_eq!(h.buckets().count(), BOUNDS.len() + 1);
    }
}
