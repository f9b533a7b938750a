//! `bucketfs flush`: the files under some paths that are not in the bucket yet are uploaded
//! now, without waiting for their write-back delay, and the caller learns which of them could
//! not be stored and why. `rsync -a src/ MNT/ && bucketfs flush MNT` then means "in S3".
//!
//! It is unmount's drain (`Fs::drain`) restricted to paths: the same uploads
//! (`upload_all`, `upload_orphans`), which wait for an upload of the file already in flight
//! and leave a failed one to the write-back loop's retries. One difference: a file still
//! held open for writing is not uploaded — its writer is not done, so what it would store is
//! not what the file will hold; it is uploaded after its last close, and reported here.
//! `close(2)` returns before the kernel's RELEASE reaches the daemon, so a file whose writer
//! has just closed it is given a moment (`RELEASE_GRACE`) to be released first.
//!
//! Files that can never be stored and were kept in the cache directory (`bucketfs status`'
//! NOT STORED) are reported too, until they are dealt with: they are not in the bucket.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Fs;
use crate::localfile::journal::Parked;
use crate::names::inode::Ino;

/// How long a file open for writing is waited for before it is reported as still open.
const RELEASE_GRACE: Duration = Duration::from_secs(1);

/// What a flush did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Files that were pending and are now in the bucket.
    pub stored: usize,
    /// Files that are not (path relative to the mount root, why), by path.
    pub not_stored: Vec<(String, String)>,
}

/// What a file open for writing gets instead of an upload.
pub const STILL_OPEN: &str =
    "still open for writing: it is uploaded after its last close (flush again then)";

/// True when `path` is `under`, or below it ("" is the mount root: everything).
fn is_under(path: &str, under: &str) -> bool {
    under.is_empty()
        || path
            .strip_prefix(under)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl Fs {
    /// Uploads every file under `paths` (relative to the mount root; none: the whole mount)
    /// whose content is not in the bucket, due or not, and returns once each is stored or
    /// has failed. Files still open for writing are left to their close and reported.
    pub async fn flush_paths(&self, paths: &[String]) -> Flushed {
        let wanted = |path: &str| paths.is_empty() || paths.iter().any(|p| is_under(path, p));
        let files = self.pending_under(&wanted);
        let deadline = Instant::now() + RELEASE_GRACE;
        while files
            .iter()
            .any(|&(ino, _)| self.handles.open_for_writing(ino))
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (open, files): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|&(ino, _)| self.handles.open_for_writing(ino));
        let prefix = self.names.prefix().to_string();
        let orphans: Vec<_> = self
            .files
            .orphans()
            .into_iter()
            .filter(|o| o.entry.key.strip_prefix(&prefix).is_some_and(&wanted))
            .collect();
        let tried = files.len() + orphans.len();
        let mut failed = self
            .upload_all(files.into_iter().map(|(i, _)| i).collect())
            .await;
        failed.extend(self.upload_orphans(orphans).await);
        let stored = tried.saturating_sub(failed.len());
        let path_of = |key: &str| key.strip_prefix(&prefix).unwrap_or(key).to_string();
        let mut not_stored = BTreeMap::new();
        for p in self.parked_files() {
            if wanted(&path_of(&p.entry.key)) {
                let why = format!(
                    "{}; the bytes written here are kept in {}",
                    p.reason,
                    p.data.display()
                );
                not_stored.insert(path_of(&p.entry.key), why);
            }
        }
        for (key, e) in failed {
            not_stored.insert(path_of(&key), e.to_string());
        }
        for (_, path) in open {
            not_stored.insert(path, STILL_OPEN.to_string());
        }
        let not_stored = not_stored.into_iter().collect();
        Flushed { stored, not_stored }
    }

    /// Every file kept in the cache directory because it can never be stored (see
    /// `Journal::park`): not in the bucket until someone deals with it.
    fn parked_files(&self) -> Vec<Parked> {
        self.files.parked().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot list the unsaved files");
            Vec::new()
        })
    }

    /// The linked files whose content is not in the bucket, with their paths, where
    /// `wanted(path)`.
    fn pending_under(&self, wanted: &impl Fn(&str) -> bool) -> Vec<(Ino, String)> {
        let t = self.names.table();
        t.all()
            .filter(|(_, n)| n.linked() && n.content().is_some_and(|c| c.is_dirty()))
            .filter_map(|(ino, _)| Some((ino, t.path(ino)?)))
            .filter(|(_, path)| wanted(path))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::is_under;

    #[test]
    fn a_path_is_under_itself_its_ancestors_and_the_root_only() {
        assert!(is_under("a/b", ""));
        assert!(is_under("a/b", "a"));
        assert!(is_under("a/b", "a/b"));
        assert!(!is_under("a/bc", "a/b"), "a sibling with a longer name");
        assert!(!is_under("a", "a/b"));
    }
}
