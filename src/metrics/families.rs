//! The metric families: each one's name, help and where its numbers come from, read from the
//! owners at every scrape. Names follow Prometheus's conventions: the `bucketfs_` prefix
//! (the registry's), the unit in the name, `_total` on counters (prometheus-client adds unit
//! and suffix to the names written here).

use std::fmt;
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::Sources;
use crate::latency::LatencyHistogram;

const COUNTER: MetricType = MetricType::Counter;
const GAUGE: MetricType = MetricType::Gauge;
const HISTOGRAM: MetricType = MetricType::Histogram;
const BYTES: Option<&Unit> = Some(&Unit::Bytes);
const SECONDS: Option<&Unit> = Some(&Unit::Seconds);
const NO_LABELS: [(&str, &str); 0] = [];

/// The collector the registry asks at every scrape.
pub(super) struct Families(pub(super) Sources);

impl fmt::Debug for Families {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Families")
    }
}

impl Collector for Families {
    fn encode(&self, mut out: DescriptorEncoder) -> fmt::Result {
        s3(&mut out, &self.0)?;
        fuse(&mut out, &self.0)?;
        caches(&mut out, &self.0)?;
        uploads(&mut out, &self.0)
    }
}

fn s3(out: &mut DescriptorEncoder, sources: &Sources) -> fmt::Result {
    let s3 = sources.store.stats();
    let mut m = out.encode_descriptor(
        "s3_requests",
        "S3 requests that ended, by operation and outcome: ok, not_found, access_denied, \
         precondition_failed, client_error, throttled, server_error, timeout, network_error, \
         bad_response, other, or cancelled (a hedged twin answered first)",
        None,
        COUNTER,
    )?;
    for ((operation, outcome), n) in &s3.outcomes {
        let labels = [("operation", *operation), ("outcome", *outcome)];
        counter(&mut m, &labels, *n)?;
    }
    let mut m = out.encode_descriptor(
        "s3_request_duration",
        "Time from sending an S3 request to its answer, by operation (requests that timed out \
         or were cancelled have none)",
        SECONDS,
        HISTOGRAM,
    )?;
    for (operation, latency) in &s3.latency {
        histogram(&mut m, &[("operation", *operation)], latency)?;
    }
    let mut m = out.encode_descriptor(
        "s3_retries",
        "S3 requests sent again after a transient failure, by operation",
        None,
        COUNTER,
    )?;
    for (operation, n) in &s3.retries {
        counter(&mut m, &[("operation", *operation)], *n)?;
    }
    let mut m = out.encode_descriptor(
        "s3_hedged_requests",
        "Further attempts started beside a slow read, part upload or small PUT",
        None,
        COUNTER,
    )?;
    counter(&mut m, &NO_LABELS, s3.hedged)?;
    let mut m = out.encode_descriptor(
        "s3_sent",
        "Object data sent to S3 (PUT and UploadPart bodies, retries included)",
        BYTES,
        COUNTER,
    )?;
    counter(&mut m, &NO_LABELS, s3.bytes_sent)?;
    let mut m = out.encode_descriptor(
        "s3_received",
        "Object data received from S3 (GET bodies)",
        BYTES,
        COUNTER,
    )?;
    counter(&mut m, &NO_LABELS, s3.bytes_received)
}

fn fuse(out: &mut DescriptorEncoder, sources: &Sources) -> fmt::Result {
    let mut m = out.encode_descriptor(
        "fuse_operation_duration",
        "FUSE operations answered, by operation (its _count is how many), and the time from \
         the request to the reply",
        SECONDS,
        HISTOGRAM,
    )?;
    for (operation, latency) in &sources.fuse.snapshot() {
        histogram(&mut m, &[("operation", *operation)], latency)?;
    }
    Ok(())
}

fn caches(out: &mut DescriptorEncoder, sources: &Sources) -> fmt::Result {
    let c = sources.fs.cache_stats();
    let mut tiers = vec![("memory", c.memory_hits, c.memory_hit_bytes, c.memory_misses)];
    if c.disk_size.is_some() {
        tiers.push(("disk", c.disk_hits, c.disk_hit_bytes, c.disk_misses));
    }
    let mut m = out.encode_descriptor(
        "cache_hits",
        "Blocks (1 MiB) found in the block cache: memory (by the read that needs them) or \
         disk (by any fetch)",
        None,
        COUNTER,
    )?;
    for (cache, hits, _, _) in &tiers {
        counter(&mut m, &[("cache", *cache)], *hits)?;
    }
    let mut m = out.encode_descriptor(
        "cache_hit",
        "Bytes of the blocks found in the block cache",
        BYTES,
        COUNTER,
    )?;
    for (cache, _, bytes, _) in &tiers {
        counter(&mut m, &[("cache", *cache)], *bytes)?;
    }
    let mut m = out.encode_descriptor(
        "cache_misses",
        "Blocks (1 MiB) not in the block cache: fetched from the disk cache or S3 (memory), \
         from S3 (disk)",
        None,
        COUNTER,
    )?;
    for (cache, _, _, misses) in &tiers {
        counter(&mut m, &[("cache", *cache)], *misses)?;
    }
    let mut m = out.encode_descriptor(
        "cache_size",
        "Bytes of blocks the cache holds now",
        BYTES,
        GAUGE,
    )?;
    m.encode_family(&[("cache", "memory")])?
        .encode_gauge(&c.memory_size)?;
    if let Some(disk) = c.disk_size {
        m.encode_family(&[("cache", "disk")])?.encode_gauge(&disk)?;
    }
    let mut m = out.encode_descriptor(
        "read_ahead",
        "Bytes fetched by read-ahead before a read asked for them",
        BYTES,
        COUNTER,
    )?;
    counter(&mut m, &NO_LABELS, c.read_ahead_bytes)?;
    let mut m = out.encode_descriptor(
        "read_ahead_unused",
        "Bytes fetched by read-ahead that the reading file let go unread (a seek, a close)",
        BYTES,
        COUNTER,
    )?;
    counter(&mut m, &NO_LABELS, c.read_ahead_unused_bytes)
}

fn uploads(out: &mut DescriptorEncoder, sources: &Sources) -> fmt::Result {
    let status = sources.fs.status();
    let oldest_age = status.oldest.map_or(0.0, |oldest| {
        let age = SystemTime::now().duration_since(oldest);
        age.unwrap_or_default().as_secs_f64()
    });
    let gauges: [(&str, &str, Option<&Unit>, u64); 3] = [
        (
            "pending_uploads",
            "Files whose content is not in the bucket yet (waiting, uploading, or failed and \
             to be tried again)",
            None,
            status.pending as u64,
        ),
        (
            "pending_upload",
            "Bytes of the files pending upload",
            BYTES,
            status.pending_bytes,
        ),
        (
            "files_not_stored",
            "Files that can never be stored, kept in the cache directory (bucketfs status)",
            None,
            status.unsaved.len() as u64,
        ),
    ];
    for (name, help, unit, value) in gauges {
        out.encode_descriptor(name, help, unit, GAUGE)?
            .encode_gauge(&value)?;
    }
    out.encode_descriptor(
        "pending_upload_oldest_age",
        "How long the longest-waiting pending file has not been in the bucket (0: none)",
        SECONDS,
        GAUGE,
    )?
    .encode_gauge(&oldest_age)?;
    let counters: [(&str, &str, u64); 3] = [
        (
            "upload_failures",
            "Failed uploads of files (each is tried again later, or kept if it never can be)",
            status.failure_total,
        ),
        (
            "journal_replayed_files",
            "Files an earlier daemon journaled and did not upload, read back at start",
            status.replayed,
        ),
        (
            "conflicts",
            "Files another client changed meanwhile, stored under a conflict name",
            status.conflict_total,
        ),
    ];
    for (name, help, value) in counters {
        let mut m = out.encode_descriptor(name, help, None, COUNTER)?;
        counter(&mut m, &NO_LABELS, value)?;
    }
    Ok(())
}

fn counter(m: &mut MetricEncoder, labels: &impl EncodeLabelSet, value: u64) -> fmt::Result {
    let mut sample = m.encode_family(labels)?;
    sample.encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn histogram(
    m: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    latency: &LatencyHistogram,
) -> fmt::Result {
    let buckets: Vec<(f64, u64)> = latency.buckets().collect();
    let sum = latency.sum().as_secs_f64();
    let mut sample = m.encode_family(labels)?;
    sample.encode_histogram::<NoLabelSet>(sum, latency.count(), &buckets, None)
}
