//! Multipart uploads, staged under the internal directory.
//!
//! Parts are staged as `root/.bucketfs-local/uploads/<id>/<n>`, with the target key and options
//! in `upload.toml` (whose mtime is the upload's start time); completion concatenates them in
//! the given order (each part's ETag must match), renames the result into place and removes the
//! upload; abort removes it. Upload ids come back from callers, so only our own shape (32 hex
//! digits) can name a directory.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::keys::{is_absent, Key};
use super::objects::{etag_of, modified, size_of};
use super::{Inner, IoContext};
use crate::store::{
    check_copy_range, CompletedPart, InvalidRequest, MultipartUploadInfo, PartMismatch, PutOptions,
    StoreError, StoreResult, UserMetadata,
};

/// The file in an upload's directory that records its key and options.
const UPLOAD_MANIFEST: &str = "upload.toml";

/// What `create_multipart` records for `complete_multipart`.
#[derive(Serialize, Deserialize)]
struct UploadManifest {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "UserMetadata::is_empty")]
    metadata: UserMetadata,
}

impl Inner {
    fn upload_dir(&self, upload_id: &str) -> StoreResult<PathBuf> {
        // Ids come back from callers: only our own shape can name a directory.
        if upload_id.len() != 32 || !upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NotFound);
        }
        Ok(self.internal().join("uploads").join(upload_id))
    }

    pub(super) fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        Key::parse(key)?;
        let uploads = self.internal().join("uploads");
        fs::create_dir_all(&uploads).at(&uploads)?;
        let (id, dir) = loop {
            let id = format!(
                "{:016x}{:016x}",
                rand::random::<u64>(),
                rand::random::<u64>()
            );
            let dir = uploads.join(&id);
            match fs::create_dir(&dir) {
                Ok(()) => break (id, dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).at(&dir),
            }
        };
        let manifest = UploadManifest {
            key: key.to_string(),
            content_type: opts.content_type.clone(),
            metadata: opts.metadata.clone(),
        };
        let path = dir.join(UPLOAD_MANIFEST);
        let text = toml::to_string(&manifest).map_err(|e| StoreError::MetadataFile {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if let Err(e) = fs::write(&path, text) {
            let _ = fs::remove_dir_all(&dir);
            return Err(e).at(&path);
        }
        Ok(id)
    }

    fn manifest(&self, dir: &Path) -> StoreResult<UploadManifest> {
        let path = dir.join(UPLOAD_MANIFEST);
        let text = fs::read_to_string(&path).at(&path)?;
        toml::from_str(&text).map_err(|e| StoreError::MetadataFile {
            path,
            detail: e.to_string(),
        })
    }

    pub(super) fn upload_part(
        &self,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> StoreResult<String> {
        let dir = self.upload_dir(upload_id)?;
        if !dir.is_dir() {
            return Err(StoreError::NotFound);
        }
        let temp = self.temp_with(&body)?;
        let etag = etag_of(&fs::metadata(&temp.path).at(&temp.path)?);
        temp.persist(&dir.join(number.to_string()))?;
        Ok(etag)
    }

    /// Stages `range` of the object `source` as part `number`, as `upload_part` would.
    pub(super) fn upload_part_copy(
        &self,
        upload_id: &str,
        number: u32,
        source: &str,
        range: Range<u64>,
    ) -> StoreResult<String> {
        check_copy_range(&range)?;
        let dir = self.upload_dir(upload_id)?;
        if !dir.is_dir() {
            return Err(StoreError::NotFound);
        }
        let src = Key::parse(source)?;
        let (path, md) = self.lookup(&src)?.ok_or(StoreError::NotFound)?;
        if range.end > size_of(&md) {
            return Err(StoreError::InvalidRange);
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .at(&path)?;
        let (temp, out) = self.temp()?;
        let mut buf = vec![0u8; (range.end - range.start).min(1 << 20) as usize];
        let mut pos = range.start;
        while pos < range.end {
            let want = (range.end - pos).min(buf.len() as u64) as usize;
            let n = match file.read_at(&mut buf[..want], pos) {
                // Truncated since the size check: the range no longer exists.
                Ok(0) => return Err(StoreError::InvalidRange),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).at(&path),
            };
            out.write_all_at(&buf[..n], pos - range.start)
                .at(&temp.path)?;
            pos += n as u64;
        }
        drop(out);
        let etag = etag_of(&fs::metadata(&temp.path).at(&temp.path)?);
        temp.persist(&dir.join(number.to_string()))?;
        Ok(etag)
    }

    /// The uploads in progress whose keys start with `prefix`, by key then start time. The
    /// start time is the mtime of the upload's manifest, written once by `create_multipart`.
    pub(super) fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> StoreResult<Vec<MultipartUploadInfo>> {
        let uploads = self.internal().join("uploads");
        let read = match fs::read_dir(&uploads) {
            Ok(read) => read,
            Err(e) if is_absent(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e).at(&uploads),
        };
        let mut found = Vec::new();
        for item in read {
            let item = item.at(&uploads)?;
            let Some(id) = item.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(dir) = self.upload_dir(&id) else {
                continue; // not one of ours
            };
            let manifest_path = dir.join(UPLOAD_MANIFEST);
            let initiated = match fs::metadata(&manifest_path) {
                Ok(md) => modified(&md),
                // Completed or aborted meanwhile, or still being created.
                Err(e) if is_absent(&e) => continue,
                Err(e) => return Err(e).at(&manifest_path),
            };
            let manifest = match self.manifest(&dir) {
                Ok(m) => m,
                Err(StoreError::NotFound) => continue,
                Err(e) => {
                    tracing::warn!(upload = %id, "skipping an unreadable upload manifest: {e}");
                    continue;
                }
            };
            if manifest.key.starts_with(prefix) {
                found.push(MultipartUploadInfo {
                    key: manifest.key,
                    upload_id: id,
                    initiated,
                });
            }
        }
        found.sort_by(|a, b| {
            (&a.key, a.initiated, &a.upload_id).cmp(&(&b.key, b.initiated, &b.upload_id))
        });
        Ok(found)
    }

    pub(super) fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> StoreResult<String> {
        let parsed = Key::parse(key)?;
        let dir = self.upload_dir(upload_id)?;
        let manifest = self.manifest(&dir)?;
        if manifest.key != key {
            return Err(StoreError::InvalidRequest(
                InvalidRequest::UploadOfAnotherKey {
                    upload_id: upload_id.to_string(),
                    key: key.to_string(),
                    upload_key: manifest.key,
                },
            ));
        }
        let (temp, mut file) = self.temp()?;
        for part in &parts {
            let path = dir.join(part.number.to_string());
            let mut source = match File::open(&path) {
                Ok(source) => source,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(StoreError::InvalidPart(PartMismatch::NeverUploaded {
                        upload_id: upload_id.to_string(),
                        number: part.number,
                    }))
                }
                Err(e) => return Err(e).at(&path),
            };
            if etag_of(&source.metadata().at(&path)?) != part.etag {
                return Err(StoreError::InvalidPart(PartMismatch::OtherEtag {
                    upload_id: upload_id.to_string(),
                    number: part.number,
                    etag: part.etag.clone(),
                }));
            }
            io::copy(&mut source, &mut file).at(&temp.path)?;
        }
        drop(file);
        let data = if parsed.marker {
            if fs::metadata(&temp.path).at(&temp.path)?.len() > 0 {
                return Err(Self::marker_body_error(&parsed));
            }
            None
        } else {
            Some(temp)
        };
        let opts = PutOptions {
            content_type: manifest.content_type,
            metadata: manifest.metadata,
            ..PutOptions::default()
        };
        let etag = self.commit(&parsed, data, &opts)?;
        let _ = fs::remove_dir_all(&dir);
        Ok(etag)
    }

    pub(super) fn abort_multipart(&self, upload_id: &str) -> StoreResult<()> {
        let Ok(dir) = self.upload_dir(upload_id) else {
            return Ok(());
        };
        match fs::remove_dir_all(&dir) {
            Err(e) if !is_absent(&e) => Err(e).at(&dir),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::local::test_support::*;
    use crate::store::{KeyRefusal, ObjectStore};
    use std::time::SystemTime;

    #[tokio::test]
    async fn multipart_concatenates_parts_in_order() {
        let (dir, store) = store();
        let o = opts("video/mp4", &[("k", "v")]);
        let id = store.create_multipart("big/file", &o).await.unwrap();
        let e2 = store
            .upload_part("big/file", &id, 2, Bytes::from_static(b"world"))
            .await
            .unwrap();
        let e1 = store
            .upload_part("big/file", &id, 1, Bytes::from_static(b"hello "))
            .await
            .unwrap();
        assert!(dir
            .path()
            .join(".bucketfs-local/uploads")
            .join(&id)
            .join("1")
            .is_file());
        let parts = vec![
            CompletedPart {
                number: 1,
                etag: e1,
            },
            CompletedPart {
                number: 2,
                etag: e2,
            },
        ];
        // The wrong key, and a part with another ETag, are refused and leave the upload intact.
        match store
            .complete_multipart("other", &id, parts.clone(), None)
            .await
        {
            Err(StoreError::InvalidRequest(InvalidRequest::UploadOfAnotherKey {
                upload_id,
                key,
                upload_key,
            })) => assert_eq!(
                (upload_id.as_str(), key.as_str(), upload_key.as_str()),
                (id.as_str(), "other", "big/file")
            ),
            other => panic!("{other:?}"),
        }
        let mut stale = parts.clone();
        stale[1].etag = "\"stale\"".into();
        match store.complete_multipart("big/file", &id, stale, None).await {
            Err(StoreError::InvalidPart(PartMismatch::OtherEtag { number, etag, .. })) => {
                assert_eq!((number, etag.as_str()), (2, "\"stale\""))
            }
            other => panic!("{other:?}"),
        }
        let etag = store
            .complete_multipart("big/file", &id, parts, None)
            .await
            .unwrap();
        let info = store.head("big/file").await.unwrap();
        assert_eq!(info.etag, etag);
        assert_eq!(info.content_type.as_deref(), Some("video/mp4"));
        assert_eq!(info.metadata, o.metadata);
        assert_eq!(
            &store.get_range("big/file", 0..100).await.unwrap()[..],
            b"hello world"
        );
        assert!(!dir
            .path()
            .join(".bucketfs-local/uploads")
            .join(&id)
            .exists());

        // A part never uploaded, an unknown upload, and abort.
        let id = store
            .create_multipart("k", &PutOptions::default())
            .await
            .unwrap();
        let missing = vec![CompletedPart {
            number: 7,
            etag: "\"x\"".into(),
        }];
        assert!(matches!(
            store.complete_multipart("k", &id, missing, None).await,
            Err(StoreError::InvalidPart(PartMismatch::NeverUploaded { number: 7, upload_id }))
                if upload_id == id
        ));
        store.abort_multipart("k", &id).await.unwrap();
        assert!(!dir
            .path()
            .join(".bucketfs-local/uploads")
            .join(&id)
            .exists());
        assert!(matches!(
            store.upload_part("k", &id, 1, Bytes::new()).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.upload_part("k", "../../x", 1, Bytes::new()).await,
            Err(StoreError::NotFound)
        ));
        store.abort_multipart("k", &id).await.unwrap();
        assert!(matches!(store.head("k").await, Err(StoreError::NotFound)));
    }

    #[tokio::test]
    async fn upload_part_copy_stages_a_range_of_another_object() {
        let (dir, store) = store();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        store
            .put("src/big", Bytes::from(big.clone()), &PutOptions::default())
            .await
            .unwrap();
        put(&store, "src/small", b"0123456789").await;
        let id = store
            .create_multipart("dst", &opts("text/x", &[]))
            .await
            .unwrap();
        // A range over 1 MiB (copied in several chunks), a new part, a small range.
        let e1 = store
            .upload_part_copy("dst", &id, 1, "src/big", None, 100..2_500_000)
            .await
            .unwrap();
        let e2 = store
            .upload_part("dst", &id, 2, Bytes::from_static(b"-new-"))
            .await
            .unwrap();
        let e3 = store
            .upload_part_copy("dst", &id, 3, "src/small", None, 7..10)
            .await
            .unwrap();
        assert!(dir
            .path()
            .join(".bucketfs-local/uploads")
            .join(&id)
            .join("1")
            .is_file());
        // Errors: missing source, range past the end, empty range, unknown upload, bad key.
        let copy = |src: &'static str, range: Range<u64>| {
            let (store, id) = (store.clone(), id.clone());
            async move {
                store
                    .upload_part_copy("dst", &id, 9, src, None, range)
                    .await
            }
        };
        assert!(matches!(
            copy("src/none", 0..1).await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            copy("src/small", 5..11).await,
            Err(StoreError::InvalidRange)
        ));
        assert!(matches!(
            copy("src/", 0..1).await,
            Err(StoreError::InvalidRange)
        ));
        assert!(matches!(
            copy("src/small", 4..4).await,
            Err(StoreError::InvalidRequest(InvalidRequest::EmptyCopyRange {
                start: 4,
                end: 4
            }))
        ));
        assert_eq!(
            refusal("../x", copy("../x", 0..1).await),
            KeyRefusal::DotSegment
        );
        assert!(matches!(
            store
                .upload_part_copy("dst", "0123", 1, "src/small", None, 0..1)
                .await,
            Err(StoreError::NotFound)
        ));
        let parts = [(1, e1), (2, e2), (3, e3)]
            .into_iter()
            .map(|(number, etag)| CompletedPart { number, etag })
            .collect();
        store
            .complete_multipart("dst", &id, parts, None)
            .await
            .unwrap();
        let got = store.get_range("dst", 0..10_000_000).await.unwrap();
        let mut want = big[100..2_500_000].to_vec();
        want.extend_from_slice(b"-new-789");
        assert_eq!(got.len(), want.len());
        assert!(got[..] == want[..]);
        assert_eq!(
            store.head("dst").await.unwrap().content_type.as_deref(),
            Some("text/x")
        );
    }

    #[tokio::test]
    async fn lists_multipart_uploads_in_progress() {
        let (dir, store) = store();
        assert!(store.list_multipart_uploads("").await.unwrap().is_empty());
        let before = SystemTime::now() - std::time::Duration::from_secs(2);
        let b = store
            .create_multipart("d/b", &PutOptions::default())
            .await
            .unwrap();
        let a = store
            .create_multipart("d/a", &PutOptions::default())
            .await
            .unwrap();
        let x = store
            .create_multipart("x", &PutOptions::default())
            .await
            .unwrap();
        // Junk in the uploads directory is skipped.
        fs::create_dir(dir.path().join(".bucketfs-local/uploads/not-an-upload")).unwrap();
        fs::create_dir(
            dir.path()
                .join(".bucketfs-local/uploads")
                .join("f".repeat(32)),
        )
        .unwrap();
        let listed = store.list_multipart_uploads("d/").await.unwrap();
        let ids: Vec<_> = listed
            .iter()
            .map(|u| (u.key.as_str(), u.upload_id.as_str()))
            .collect();
        assert_eq!(ids, [("d/a", a.as_str()), ("d/b", b.as_str())]);
        assert!(listed.iter().all(|u| u.initiated >= before));
        assert_eq!(store.list_multipart_uploads("").await.unwrap().len(), 3);
        store.abort_multipart("x", &x).await.unwrap();
        assert_eq!(store.list_multipart_uploads("").await.unwrap().len(), 2);
        assert!(store.list_multipart_uploads("q").await.unwrap().is_empty());
    }
}
