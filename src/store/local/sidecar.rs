//! Content type and user metadata, kept in a TOML sidecar per object.
//!
//! Sidecars live under `root/.bucketfs-local/meta/`, in a tree that mirrors the keys with
//! directories renamed `<name>.d` so that files and directories can never collide there:
//! `a/b/c` → `meta/a.d/b.d/c.toml`, marker `a/b/` → `meta/a.d/b.d/.toml`. A PUT without content
//! type or metadata writes no sidecar (and removes the old one). The sidecar records the ETag of
//! the version it belongs to and is ignored when the object no longer has that ETag, so a file
//! edited or replaced behind the store's back simply has no metadata (content type `None`)
//! rather than stale metadata.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::keys::Key;
use super::{Inner, IoContext};
use crate::store::{PutOptions, StoreError, StoreResult, UserMetadata};

fn has_options(opts: &PutOptions) -> bool {
    opts.content_type.is_some() || !opts.metadata.is_empty()
}

/// The metadata sidecar of one object version.
#[derive(Serialize, Deserialize)]
struct Sidecar {
    /// The ETag of the version this belongs to; a sidecar that does not match is ignored.
    etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "UserMetadata::is_empty")]
    metadata: UserMetadata,
}

impl Inner {
    fn meta_root(&self) -> PathBuf {
        self.internal().join("meta")
    }

    /// The sidecar of `key`: directories are `<name>.d`, files `<name>.toml`, a marker's own
    /// sidecar `.toml` inside its `.d` directory. No two keys share a path.
    fn meta_path(&self, key: &Key) -> PathBuf {
        let mut path = self.meta_root();
        let (parents, last) = key.split();
        for seg in parents {
            path.push(format!("{seg}.d"));
        }
        if key.marker {
            path.push(format!("{last}.d"));
            path.push(".toml");
        } else {
            path.push(format!("{last}.toml"));
        }
        path
    }

    /// Content type and metadata of the version with `etag`, if a matching sidecar exists.
    pub(super) fn read_sidecar(&self, key: &Key, etag: &str) -> PutOptions {
        let path = self.meta_path(key);
        let Ok(text) = fs::read_to_string(&path) else {
            return PutOptions::default();
        };
        match toml::from_str::<Sidecar>(&text) {
            Ok(s) if s.etag == etag => PutOptions {
                content_type: s.content_type,
                metadata: s.metadata,
                ..PutOptions::default()
            },
            Ok(_) => PutOptions::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unreadable metadata sidecar: {e}");
                PutOptions::default()
            }
        }
    }

    /// Writes (or, without options, removes) the sidecar of `key`. Called with the lock held.
    pub(super) fn write_sidecar(
        &self,
        key: &Key,
        etag: &str,
        opts: &PutOptions,
    ) -> StoreResult<()> {
        let path = self.meta_path(key);
        if !has_options(opts) {
            self.remove_sidecar(key);
            return Ok(());
        }
        let sidecar = Sidecar {
            etag: etag.to_string(),
            content_type: opts.content_type.clone(),
            metadata: opts.metadata.clone(),
        };
        let text = toml::to_string(&sidecar).map_err(|e| StoreError::MetadataFile {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let temp = self.temp_with(text.as_bytes())?;
        let parent = path.parent().expect("a sidecar has a parent");
        fs::create_dir_all(parent).at(parent)?;
        temp.persist(&path)
    }

    /// Removes the sidecar of `key` and the sidecar directories it leaves empty.
    pub(super) fn remove_sidecar(&self, key: &Key) {
        let path = self.meta_path(key);
        if fs::remove_file(&path).is_err() {
            return;
        }
        let meta_root = self.meta_root();
        let mut dir = path;
        while dir.pop() && dir != meta_root && dir.starts_with(&meta_root) {
            if fs::remove_dir(&dir).is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::local::test_support::*;
    use crate::store::ObjectStore;
    use bytes::Bytes;

    #[tokio::test]
    async fn a_file_changed_behind_the_store_loses_its_metadata() {
        let (dir, store) = store();
        store
            .put("f", Bytes::from_static(b"one"), &opts("text/plain", &[]))
            .await
            .unwrap();
        let before = store.head("f").await.unwrap();
        fs::write(dir.path().join("f"), b"other content").unwrap();
        let after = store.head("f").await.unwrap();
        assert_ne!(before.etag, after.etag);
        assert_eq!(after.content_type, None);
        // A plain file dropped into the root is an object without metadata.
        fs::write(dir.path().join("plain"), b"p").unwrap();
        let info = store.head("plain").await.unwrap();
        assert_eq!((info.size, info.content_type), (1, None));
    }
}
