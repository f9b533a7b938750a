//! Keys and the paths they map to.
//!
//! The key `a/b/c` is the regular file `root/a/b/c`; the key `a/b/` (a directory marker) is the
//! directory `root/a/b`. Keys that are empty, start with `/`, hold an empty segment (`a//b`), a
//! `.` or `..` segment, or a NUL byte are refused, and so is everything under the store's
//! internal directory. Lookups walk only through real directories (symlinks and special files
//! are invisible and never followed), so no key reaches outside the root; a directory cannot be
//! both an object and a folder (`prepare`).

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use super::{Inner, IoContext, INTERNAL};
use crate::store::{KeyRefusal, StoreError, StoreResult};

/// A validated key: its path segments, and whether it names a directory marker (`a/b/`).
pub(super) struct Key<'a> {
    pub(super) text: &'a str,
    segs: Vec<&'a str>,
    pub(super) marker: bool,
}

impl<'a> Key<'a> {
    pub(super) fn parse(key: &'a str) -> StoreResult<Self> {
        let refuse = |reason| Err(refused(key, reason));
        if key.is_empty() {
            return refuse(KeyRefusal::Empty);
        }
        if key.starts_with('/') {
            return refuse(KeyRefusal::LeadingSlash);
        }
        if key.contains('\0') {
            return refuse(KeyRefusal::NulByte);
        }
        let (body, marker) = match key.strip_suffix('/') {
            Some(body) => (body, true),
            None => (key, false),
        };
        let segs: Vec<&str> = body.split('/').collect();
        for seg in &segs {
            if seg.is_empty() {
                return refuse(KeyRefusal::EmptySegment);
            }
            if *seg == "." || *seg == ".." {
                return refuse(KeyRefusal::DotSegment);
            }
        }
        if segs[0] == INTERNAL {
            return refuse(KeyRefusal::Reserved);
        }
        Ok(Key {
            text: key,
            segs,
            marker,
        })
    }

    /// The parent segments and the last one (there is always at least one segment).
    pub(super) fn split(&self) -> (&[&'a str], &'a str) {
        let (last, parents) = self.segs.split_last().expect("a key has a segment");
        (parents, last)
    }
}

/// `StoreError::KeyRefused` of `key`.
pub(super) fn refused(key: &str, reason: KeyRefusal) -> StoreError {
    StoreError::KeyRefused {
        key: key.to_string(),
        reason,
    }
}

/// What a path holds, without following symlinks.
enum Entry {
    Absent,
    File(Metadata),
    Dir(Metadata),
    /// A symlink, socket, FIFO or device: invisible to the store.
    Other,
}

fn entry(path: &Path) -> io::Result<Entry> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_file() => Ok(Entry::File(md)),
        Ok(md) if md.is_dir() => Ok(Entry::Dir(md)),
        Ok(_) => Ok(Entry::Other),
        Err(e) if is_absent(&e) => Ok(Entry::Absent),
        Err(e) => Err(e),
    }
}

pub(super) fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

impl Inner {
    /// The path and attributes of `key` if it exists, walking only through real directories.
    pub(super) fn lookup(&self, key: &Key) -> StoreResult<Option<(PathBuf, Metadata)>> {
        let mut path = self.root.clone();
        let (parents, last) = key.split();
        for seg in parents {
            path.push(seg);
            if !matches!(entry(&path).at(&path)?, Entry::Dir(_)) {
                return Ok(None);
            }
        }
        path.push(last);
        Ok(match (entry(&path).at(&path)?, key.marker) {
            (Entry::File(md), false) | (Entry::Dir(md), true) => Some((path, md)),
            _ => None,
        })
    }

    /// Checks that `key` can be stored and creates its parent directories (and, for a marker,
    /// the directory itself). Returns the key's path. Called with the lock held.
    pub(super) fn prepare(&self, key: &Key) -> StoreResult<PathBuf> {
        let (parents, last) = key.split();
        let mut path = self.root.clone();
        let mut missing = false;
        for (i, seg) in parents.iter().enumerate() {
            path.push(seg);
            if missing {
                continue;
            }
            let special = match entry(&path).at(&path)? {
                Entry::Dir(_) => continue,
                Entry::Absent => {
                    missing = true;
                    continue;
                }
                Entry::File(_) => false,
                Entry::Other => true,
            };
            let parent = parents[..=i].join("/");
            return Err(refused(
                key.text,
                KeyRefusal::ParentNotADirectory { parent, special },
            ));
        }
        if missing {
            fs::create_dir_all(&path).at(&path)?;
        }
        path.push(last);
        match (entry(&path).at(&path)?, key.marker) {
            (Entry::Dir(_), false) => Err(refused(key.text, KeyRefusal::IsADirectory)),
            (Entry::File(_), true) | (Entry::Other, true) => Err(refused(
                key.text,
                KeyRefusal::MarkerOverObject {
                    name: key.segs.join("/"),
                },
            )),
            (Entry::Absent, true) => match fs::create_dir(&path) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e).at(&path),
                _ => Ok(path),
            },
            _ => Ok(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::local::test_support::*;
    use crate::store::{ObjectStore, PutOptions};
    use bytes::Bytes;

    #[tokio::test]
    async fn markers_nested_dirs_and_conflicts() {
        let (dir, store) = store();
        let o = opts("application/x-directory", &[("mode", "755")]);
        store.put("x/y/", Bytes::new(), &o).await.unwrap();
        assert!(dir.path().join("x/y").is_dir());
        let info = store.head("x/y/").await.unwrap();
        assert_eq!(info.size, 0);
        assert_eq!(info.metadata, o.metadata);
        assert_eq!(info.content_type, o.content_type);
        assert!(store.head("x/").await.is_ok());
        assert!(matches!(store.head("x/y").await, Err(StoreError::NotFound)));

        // Adding a child keeps the marker's ETag, hence its metadata.
        put(&store, "x/y/z", b"data").await;
        assert_eq!(store.head("x/y/").await.unwrap().metadata, o.metadata);

        // A file cannot hold keys; a directory cannot be an object.
        let put_of = |key: &'static str, body: &'static [u8]| {
            let store = store.clone();
            async move {
                let r = store
                    .put(key, Bytes::from_static(body), &PutOptions::default())
                    .await;
                refusal(key, r)
            }
        };
        assert_eq!(put_of("x/y", b"f").await, KeyRefusal::IsADirectory);
        assert_eq!(
            put_of("x/y/z/w", b"f").await,
            KeyRefusal::ParentNotADirectory {
                parent: "x/y/z".into(),
                special: false
            }
        );
        assert_eq!(
            put_of("x/y/z/", b"").await,
            KeyRefusal::MarkerOverObject {
                name: "x/y/z".into()
            }
        );
        assert_eq!(put_of("m/", b"data").await, KeyRefusal::MarkerWithData);
        assert_eq!(&store.get_range("x/y/z", 0..10).await.unwrap()[..], b"data");

        // Deleting a non-empty marker keeps it; once empty it goes.
        store.delete("x/y/").await.unwrap();
        assert!(store.head("x/y/").await.is_ok());
        store.delete("x/y/z").await.unwrap();
        assert!(dir.path().join("x/y").is_dir());
        store.delete("x/y/").await.unwrap();
        assert!(!dir.path().join("x/y").exists());
        assert!(!dir
            .path()
            .join(".bucketfs-local/meta/x.d/y.d/.toml")
            .exists());
        assert_eq!(all_keys(&store, "").await, ["x/"]);
    }

    #[tokio::test]
    async fn bad_keys_are_refused() {
        let (dir, store) = store();
        for (key, why) in [
            ("../x", KeyRefusal::DotSegment),
            ("a//b", KeyRefusal::EmptySegment),
            ("/a", KeyRefusal::LeadingSlash),
            ("a/./b", KeyRefusal::DotSegment),
            ("a/..", KeyRefusal::DotSegment),
            ("", KeyRefusal::Empty),
            ("//", KeyRefusal::LeadingSlash),
            ("a\0b", KeyRefusal::NulByte),
            (".bucketfs-local/tmp/x", KeyRefusal::Reserved),
        ] {
            let put = store
                .put(key, Bytes::from_static(b"x"), &PutOptions::default())
                .await;
            assert_eq!(refusal(key, put), why);
            assert_eq!(refusal(key, store.head(key).await), why);
            assert_eq!(refusal(key, store.get_range(key, 0..1).await), why);
            assert_eq!(refusal(key, store.delete(key).await), why);
        }
        assert!(!dir.path().parent().unwrap().join("x").exists());
        // The internal name is only reserved at the top.
        put(&store, "a/.bucketfs-local", b"ok").await;
    }

    #[tokio::test]
    async fn symlinks_are_invisible_and_never_followed() {
        let (dir, store) = store();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("file-link"))
            .unwrap();
        assert!(all_keys(&store, "").await.is_empty());
        assert!(matches!(
            store.head("link/secret").await,
            Err(StoreError::NotFound)
        ));
        assert!(matches!(
            store.head("file-link").await,
            Err(StoreError::NotFound)
        ));
        assert!(all_keys(&store, "link/").await.is_empty());
        let through_link = store
            .put("link/new", Bytes::from_static(b"x"), &PutOptions::default())
            .await;
        assert_eq!(
            refusal("link/new", through_link),
            KeyRefusal::ParentNotADirectory {
                parent: "link".into(),
                special: true
            }
        );
        assert!(!outside.path().join("new").exists());
    }
}
