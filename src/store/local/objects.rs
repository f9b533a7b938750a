//! Whole-object requests (HEAD, GET, PUT, copy, DELETE) and what the store says about a file.
//!
//! Writes are staged in a temporary file and renamed into place under the store's lock
//! (`commit`), then the metadata sidecar is written. ETag: `"<len>-<mtime s>.<mtime ns>-<inode>"`
//! (hex) for files, `"d<inode>"` for directories: a PUT always makes a new inode, so the ETag
//! changes on every write through the store, and an edit in place behind its back changes it
//! through the mtime. DELETE of a missing key succeeds; DELETE of a marker over keys keeps it.

use std::fs::{self, Metadata, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::sync::PoisonError;
use std::time::SystemTime;

use bytes::Bytes;

use super::keys::{is_absent, refused, Key};
use super::temp::Temp;
use super::{Inner, IoContext};
use crate::store::{KeyRefusal, ObjectInfo, PutOptions, StoreError, StoreResult};

pub(super) fn etag_of(md: &Metadata) -> String {
    if md.is_dir() {
        format!("\"d{:x}\"", md.ino())
    } else {
        format!(
            "\"{:x}-{:x}.{:x}-{:x}\"",
            md.len(),
            md.mtime(),
            md.mtime_nsec(),
            md.ino()
        )
    }
}

pub(super) fn modified(md: &Metadata) -> SystemTime {
    md.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

pub(super) fn size_of(md: &Metadata) -> u64 {
    if md.is_dir() {
        0
    } else {
        md.len()
    }
}

impl Inner {
    /// Puts `data` (a staged file for an object; `None` for a marker) in place of `key` with
    /// `opts`, returning the new ETag.
    pub(super) fn commit(
        &self,
        key: &Key,
        data: Option<Temp>,
        opts: &PutOptions,
    ) -> StoreResult<String> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let path = self.prepare(key)?;
        if let Some(temp) = data {
            temp.persist(&path)?;
        }
        let md = fs::symlink_metadata(&path).at(&path)?;
        let etag = etag_of(&md);
        self.write_sidecar(key, &etag, opts)?;
        Ok(etag)
    }

    pub(super) fn marker_body_error(key: &Key) -> StoreError {
        refused(key.text, KeyRefusal::MarkerWithData)
    }

    pub(super) fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        let key = Key::parse(key)?;
        let (_, md) = self.lookup(&key)?.ok_or(StoreError::NotFound)?;
        let etag = etag_of(&md);
        let opts = self.read_sidecar(&key, &etag);
        Ok(ObjectInfo {
            size: size_of(&md),
            last_modified: modified(&md),
            etag: Some(etag),
            content_type: opts.content_type,
            metadata: opts.metadata,
            storage_class: None,
            version_id: None,
        })
    }

    pub(super) fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let key = Key::parse(key)?;
        let (path, md) = self.lookup(&key)?.ok_or(StoreError::NotFound)?;
        if md.is_dir() {
            return if range.start == 0 {
                Ok(Bytes::new())
            } else {
                Err(StoreError::InvalidRange)
            };
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .at(&path)?;
        let len = file.metadata().at(&path)?.len();
        if range.start >= len && !(len == 0 && range.start == 0) {
            return Err(StoreError::InvalidRange);
        }
        let end = range.end.min(len);
        if end <= range.start {
            return Ok(Bytes::new());
        }
        let mut buf = vec![0u8; (end - range.start) as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], range.start + filled as u64) {
                Ok(0) => break, // truncated meanwhile
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).at(&path),
            }
        }
        buf.truncate(filled);
        Ok(Bytes::from(buf))
    }

    pub(super) fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<String> {
        let key = Key::parse(key)?;
        let data = if key.marker {
            if !body.is_empty() {
                return Err(Self::marker_body_error(&key));
            }
            None
        } else {
            Some(self.temp_with(&body)?)
        };
        self.commit(&key, data, opts)
    }

    pub(super) fn copy(
        &self,
        from: &str,
        to: &str,
        replace: Option<&PutOptions>,
    ) -> StoreResult<String> {
        let src = Key::parse(from)?;
        let dst = Key::parse(to)?;
        let (path, md) = self.lookup(&src)?.ok_or(StoreError::NotFound)?;
        let opts = match replace {
            Some(opts) => opts.clone(),
            None => self.read_sidecar(&src, &etag_of(&md)),
        };
        let data = match (dst.marker, md.is_dir()) {
            (true, _) if size_of(&md) > 0 => return Err(Self::marker_body_error(&dst)),
            (true, _) => None,
            (false, true) => Some(self.temp_with(&[])?),
            (false, false) => {
                let mut source = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .at(&path)?;
                let (temp, mut file) = self.temp()?;
                io::copy(&mut source, &mut file).at(&temp.path)?;
                Some(temp)
            }
        };
        self.commit(&dst, data, &opts)
    }

    pub(super) fn delete(&self, key: &str) -> StoreResult<()> {
        let key = Key::parse(key)?;
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((path, _)) = self.lookup(&key)? else {
            return Ok(());
        };
        let removed = if key.marker {
            fs::remove_dir(&path)
        } else {
            fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {}
            Err(e) if is_absent(&e) => return Ok(()),
            // A marker over keys stays while they exist (see the module documentation).
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => return Ok(()),
            Err(e) => return Err(e).at(&path),
        }
        self.remove_sidecar(&key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::local::test_support::*;
    use crate::store::ObjectStore;

    #[tokio::test]
    async fn put_get_head_round_trip_with_metadata() {
        let (dir, store) = store();
        let o = opts("text/plain", &[("mode", "644"), ("uid", "1000")]);
        let etag = store
            .put("docs/readme.txt", Bytes::from_static(b"hello world"), &o)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            fs::read(dir.path().join("docs/readme.txt")).unwrap(),
            b"hello world"
        );
        let info = store.head("docs/readme.txt").await.unwrap();
        assert_eq!(info.size, 11);
        assert_eq!(info.etag.as_deref(), Some(etag.as_str()));
        assert_eq!(info.content_type.as_deref(), Some("text/plain"));
        assert_eq!(info.metadata, o.metadata);
        let all = store
            .get_range("docs/readme.txt", 0..u64::MAX)
            .await
            .unwrap();
        assert_eq!(&all[..], b"hello world");

        // The parent directory became a marker; the key without the slash is not an object.
        assert_eq!(store.head("docs/").await.unwrap().size, 0);
        assert!(matches!(
            store.head("docs").await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.head("nope").await,
            Err(StoreError::NotFound)
        ));

        // Overwriting without options changes the ETag and drops the metadata.
        put(&store, "docs/readme.txt", b"bye").await;
        let info = store.head("docs/readme.txt").await.unwrap();
        assert_ne!(info.etag.as_deref(), Some(etag.as_str()));
        assert_eq!(info.size, 3);
        assert_eq!(info.content_type, None);
        assert!(info.metadata.is_empty());
        assert!(!dir
            .path()
            .join(".bucketfs-local/meta/docs.d/readme.txt.toml")
            .exists());
    }

    #[tokio::test]
    async fn ranges_follow_s3() {
        let (_dir, store) = store();
        put(&store, "r", b"0123456789").await;
        put(&store, "empty", b"").await;
        assert_eq!(&store.get_range("r", 2..5).await.unwrap()[..], b"234");
        assert_eq!(&store.get_range("r", 7..100).await.unwrap()[..], b"789");
        assert!(matches!(
            store.get_range("r", 10..20).await,
            Err(StoreError::InvalidRange)
        ));
        assert!(matches!(
            store.get_range("r", 50..60).await,
            Err(StoreError::InvalidRange)
        ));
        assert!(store.get_range("empty", 0..10).await.unwrap().is_empty());
        assert!(matches!(
            store.get_range("empty", 1..10).await,
            Err(StoreError::InvalidRange)
        ));
        put(&store, "m/", b"").await;
        assert!(store.get_range("m/", 0..10).await.unwrap().is_empty());
        assert!(matches!(
            store.get_range("missing", 0..1).await,
            Err(StoreError::NotFound)
        ));
    }

    #[tokio::test]
    async fn copy_keeps_or_replaces_metadata() {
        let (_dir, store) = store();
        let o = opts("text/plain", &[("a", "1")]);
        store
            .put("src", Bytes::from_static(b"body"), &o)
            .await
            .unwrap();
        store.copy("src", "dir/copy", None).await.unwrap();
        let info = store.head("dir/copy").await.unwrap();
        assert_eq!(info.content_type, o.content_type);
        assert_eq!(info.metadata, o.metadata);
        assert_eq!(
            &store.get_range("dir/copy", 0..10).await.unwrap()[..],
            b"body"
        );

        let r = opts("application/json", &[("b", "2")]);
        store.copy("src", "src", Some(&r)).await.unwrap();
        let info = store.head("src").await.unwrap();
        assert_eq!(info.content_type, r.content_type);
        assert_eq!(info.metadata, r.metadata);
        assert_eq!(&store.get_range("src", 0..10).await.unwrap()[..], b"body");

        assert!(matches!(
            store.copy("missing", "x", None).await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(
            refusal("m/", store.copy("src", "m/", None).await),
            KeyRefusal::MarkerWithData
        );
    }

    #[tokio::test]
    async fn delete_of_missing_keys_succeeds() {
        let (dir, store) = store();
        store
            .put("a/f", Bytes::from_static(b"x"), &opts("text/plain", &[]))
            .await
            .unwrap();
        assert!(dir.path().join(".bucketfs-local/meta/a.d/f.toml").is_file());
        store.delete("a/f").await.unwrap();
        assert!(matches!(store.head("a/f").await, Err(StoreError::NotFound)));
        assert!(!dir.path().join(".bucketfs-local/meta/a.d").exists());
        store.delete("a/f").await.unwrap();
        store.delete("never/was").await.unwrap();
        store.delete("a").await.unwrap(); // a directory is not the object "a"
        assert!(dir.path().join("a").is_dir());
    }

    #[tokio::test]
    async fn copy_with_options_keeps_or_replaces_metadata() {
        let (_dir, store) = store();
        let o = opts("text/plain", &[("a", "1")]);
        store
            .put("src", Bytes::from_static(b"body"), &o)
            .await
            .unwrap();
        let stored_as = PutOptions {
            sse: Some(crate::store::Sse::Aes256),
            storage_class: Some("STANDARD_IA".into()),
            ..opts("application/json", &[("b", "2")])
        };
        store
            .copy_with_options("src", "kept", &stored_as, true)
            .await
            .unwrap();
        let info = store.head("kept").await.unwrap();
        assert_eq!(
            (info.content_type, info.metadata),
            (o.content_type, o.metadata)
        );
        store
            .copy_with_options("src", "replaced", &stored_as, false)
            .await
            .unwrap();
        let info = store.head("replaced").await.unwrap();
        assert_eq!(info.content_type, stored_as.content_type);
        assert_eq!(info.metadata, stored_as.metadata);
    }
}
