//! The metrics page: with `--metrics-addr`, the daemon serves Prometheus's text format at
//! `http://ADDR/metrics` — S3 requests, FUSE operations, caches, read-ahead, pending uploads
//! (README lists every family).
//!
//! Pull, not push: each owner counts what it does as plain numbers beside its other state —
//! the S3 store in `StoreStats` (its retry layer sees every request), the FUSE adapter in
//! `FuseStats`, the caches in `CacheStats`, the local files their failures, replays and
//! conflicts, which `fs::Status` gathers with the pending uploads for `bucketfs status` too.
//! A scrape reads them all (`families`) and writes them with prometheus-client's encoder. So
//! nothing is counted twice, no owner knows about Prometheus, and a mount without
//! `--metrics-addr` pays only for the counting. `http` is the listener, bound before the
//! mount is made so that a bad address stops the start.

mod families;
mod http;

use std::sync::Arc;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;

use crate::fs::Fs;
use crate::fuse::stats::FuseStats;
use crate::store::ObjectStore;
pub use http::{bind, serve, MetricsError};

/// The Content-Type of the page (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The owners a scrape reads.
pub struct Sources {
    pub store: Arc<dyn ObjectStore>,
    pub fs: Arc<Fs>,
    pub fuse: Arc<FuseStats>,
}

/// Every metric family of a mount, read from `Sources` when the page is asked for.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new(sources: Sources) -> Metrics {
        let mut registry = Registry::with_prefix("bucketfs");
        registry.register_collector(Box::new(families::Families(sources)));
        Metrics { registry }
    }

    /// The page, as it is now.
    pub fn render(&self) -> String {
        let mut page = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut page, &self.registry);
        page
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::config::FsOptions;
    use crate::fs::{Owner, ROOT_INO};
    use crate::store::memory::MemoryStore;

    /// The value of the sample `series` (name and labels as the page writes them).
    pub(super) fn sample(page: &str, series: &str) -> Option<f64> {
        page.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    }

    #[tokio::test]
    async fn a_scrape_reads_each_owner_as_it_is_then() {
        let mem = Arc::new(MemoryStore::new());
        let staging = tempfile::tempdir().unwrap();
        let opts = FsOptions {
            write_back_delay: Duration::from_secs(3600),
            ..FsOptions::default()
        };
        let fs = Arc::new(Fs::new(
            mem.clone(),
            String::new(),
            opts,
            staging.path().to_path_buf(),
            None,
            None,
            None,
        ));
        let fuse = Arc::new(FuseStats::default());
        let metrics = Metrics::new(Sources {
            store: mem.clone(),
            fs: fs.clone(),
            fuse: fuse.clone(),
        });
        let page = metrics.render();
        assert_eq!(sample(&page, "bucketfs_pending_uploads"), Some(0.0));
        assert_eq!(sample(&page, "bucketfs_s3_sent_bytes_total"), Some(0.0));

        let owner = Owner {
            uid: 0,
            gid: 0,
            perm: 0o644,
        };
        let name = std::ffi::OsStr::new("f");
        let (_, fh) = fs
            .create(ROOT_INO, name, libc::O_WRONLY, owner)
            .await
            .unwrap();
        fs.write(fh, 0, Bytes::from_static(b"hello")).await.unwrap();
        fs.release(fh).await.unwrap();
        fuse.record("write", Duration::from_millis(2));
        let page = metrics.render();
        assert_eq!(sample(&page, "bucketfs_pending_uploads"), Some(1.0));
        assert_eq!(sample(&page, "bucketfs_pending_upload_bytes"), Some(5.0));
        let age = sample(&page, "bucketfs_pending_upload_oldest_age_seconds").unwrap();
        assert!((0.0..60.0).contains(&age), "{age}");
        let write = r#"bucketfs_fuse_operation_duration_seconds_count{operation="write"}"#;
        assert_eq!(sample(&page, write), Some(1.0));
        let le =
            r#"bucketfs_fuse_operation_duration_seconds_bucket{operation="write",le="0.0025"}"#;
        assert_eq!(sample(&page, le), Some(1.0));

        fs.drain().await;
        let page = metrics.render();
        assert_eq!(sample(&page, "bucketfs_pending_uploads"), Some(0.0));
        assert_eq!(
            sample(&page, "bucketfs_pending_upload_oldest_age_seconds"),
            Some(0.0)
        );
        assert_eq!(sample(&page, "bucketfs_s3_sent_bytes_total"), Some(5.0));
    }

    /// The metrics of a mount of an empty memory store that did nothing yet (and its
    /// staging directory).
    pub(super) fn idle() -> (Metrics, tempfile::TempDir) {
        let staging = tempfile::tempdir().unwrap();
        let mem = Arc::new(MemoryStore::new());
        let fs = Fs::new(
            mem.clone(),
            String::new(),
            FsOptions::default(),
            staging.path().to_path_buf(),
            None,
            None,
            None,
        );
        let metrics = Metrics::new(Sources {
            store: mem,
            fs: Arc::new(fs),
            fuse: Arc::default(),
        });
        (metrics, staging)
    }

    #[test]
    fn the_readme_lists_every_family_the_page_shows() {
        let (metrics, _staging) = idle();
        let page = metrics.render();
        let readme = include_str!("../../README.md");
        let families: Vec<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert!(families.len() >= 20, "{families:?}");
        for family in families {
            assert!(
                family.starts_with("bucketfs_") && readme.contains(&format!("`{family}`")),
                "README does not list `{family}`"
            );
        }
    }
}
