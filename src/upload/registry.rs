//! Which multipart uploads this bucketfs started, so stale ones can be cleaned up safely.
//!
//! S3 lists in-progress multipart uploads without any tag an uploader could set, so bucketfs
//! records each upload it starts as a small file in the mount's cache folder and removes it
//! when the upload completes or is aborted. A record left behind means the daemon died
//! mid-upload; at the next mount, recorded uploads older than `stale_upload_age` are aborted.
//! Uploads of other tools are never recorded, so never touched.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::store::{ObjectStore, StoreError};

pub struct UploadRegistry {
    dir: PathBuf,
}

/// One recorded upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub key: String,
    pub upload_id: String,
    pub started: SystemTime,
}

fn file_name(upload_id: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in upload_id.as_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

impl UploadRegistry {
    pub fn open(dir: &Path) -> io::Result<UploadRegistry> {
        std::fs::create_dir_all(dir)?;
        Ok(UploadRegistry {
            dir: dir.to_path_buf(),
        })
    }

    pub fn started(&self, key: &str, upload_id: &str) {
        let path = self.dir.join(file_name(upload_id));
        if let Err(e) = std::fs::write(&path, format!("{key}\n{upload_id}\n")) {
            tracing::warn!(path = %path.display(), error = %e, "cannot record a multipart upload");
        }
    }

    pub fn ended(&self, upload_id: &str) {
        let _ = std::fs::remove_file(self.dir.join(file_name(upload_id)));
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                let mut lines = text.lines();
                Some(Recorded {
                    key: lines.next()?.to_string(),
                    upload_id: lines.next()?.to_string(),
                    started: e.metadata().ok()?.modified().ok()?,
                })
            })
            .collect()
    }
}

/// Aborts the recorded uploads older than `max_age`; returns how many were aborted.
pub async fn abort_stale(
    store: &dyn ObjectStore,
    registry: &UploadRegistry,
    max_age: Duration,
) -> usize {
    let mut aborted = 0;
    for r in registry.recorded() {
        let age = SystemTime::now()
            .duration_since(r.started)
            .unwrap_or_default();
        if age < max_age {
            continue;
        }
        match store.abort_multipart(&r.key, &r.upload_id).await {
            Ok(()) | Err(StoreError::NotFound) => {
                tracing::info!(key = %r.key, ?age, "aborted a stale multipart upload of an earlier run");
                registry.ended(&r.upload_id);
                aborted += 1;
            }
            Err(e) => {
                tracing::warn!(key = %r.key, error = %e, "cannot abort a stale multipart upload")
            }
        }
    }
    aborted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::PutOptions;

    #[tokio::test]
    async fn only_recorded_uploads_older_than_the_age_are_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let registry = UploadRegistry::open(dir.path()).unwrap();
        let mem = MemoryStore::new();
        let ours = mem
            .create_multipart("a", &PutOptions::default())
            .await
            .unwrap();
        let foreign = mem
            .create_multipart("b", &PutOptions::default())
            .await
            .unwrap();
        registry.started("a", &ours);
        assert_eq!(
            abort_stale(&mem, &registry, Duration::from_secs(3600)).await,
            0,
            "too young"
        );
        assert_eq!(abort_stale(&mem, &registry, Duration::ZERO).await, 1);
        let left: Vec<String> = mem
            .list_multipart_uploads("")
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.upload_id)
            .collect();
        assert_eq!(left, vec![foreign], "another tool's upload is untouched");
        assert!(registry.recorded().is_empty());
    }
}
