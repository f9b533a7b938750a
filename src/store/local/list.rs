//! LIST over the directory tree.
//!
//! With the delimiter `/`, a LIST reads only the directory the prefix points into; without a
//! delimiter it walks the tree depth first in key order (`Walk`) and stops once the page is full
//! (subtrees entirely before the continuation token are skipped). Other delimiters walk the tree
//! too. A missing directory lists as empty; the internal directory, symlinks, special files and
//! names that are not UTF-8 are never listed.

use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};

use super::keys::{is_absent, Key};
use super::objects::{etag_of, modified, size_of};
use super::{Inner, IoContext, INTERNAL};
use crate::store::listing::{page_from_sorted, token_key};
use crate::store::{ListPage, ListedObject, StoreError, StoreResult};

/// One directory entry met while listing.
struct Node {
    /// The key: `dir/name` for a file, `dir/name/` for a directory.
    key: String,
    path: PathBuf,
    md: Metadata,
}

impl Node {
    fn listed(&self) -> ListedObject {
        ListedObject {
            key: self.key.clone(),
            size: size_of(&self.md),
            last_modified: modified(&self.md),
            etag: Some(etag_of(&self.md)),
        }
    }
}

impl Inner {
    /// The entries of `dir` (whose key is `dir_key`, "" for the root) whose names start with
    /// `name_prefix`, sorted by key. A directory that vanished or is not one lists as empty.
    fn children(&self, dir: &Path, dir_key: &str, name_prefix: &str) -> StoreResult<Vec<Node>> {
        let read = match fs::read_dir(dir) {
            Ok(read) => read,
            Err(e) if is_absent(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e).at(dir),
        };
        let mut nodes = Vec::new();
        for item in read {
            let item = item.at(dir)?;
            let name = item.file_name();
            let Some(name) = name.to_str() else {
                tracing::debug!(dir = %dir.display(), "skipping a name that is not UTF-8");
                continue;
            };
            if !name.starts_with(name_prefix) || (dir_key.is_empty() && name == INTERNAL) {
                continue;
            }
            // `DirEntry::metadata` does not follow symlinks.
            let md = match item.metadata() {
                Ok(md) => md,
                Err(e) if is_absent(&e) => continue,
                Err(e) => return Err(e).at(&item.path()),
            };
            let key = if md.is_dir() {
                format!("{dir_key}{name}/")
            } else if md.is_file() {
                format!("{dir_key}{name}")
            } else {
                continue;
            };
            nodes.push(Node {
                key,
                path: item.path(),
                md,
            });
        }
        nodes.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(nodes)
    }

    pub(super) fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<&str>,
        max_keys: usize,
    ) -> StoreResult<ListPage> {
        // The directory the prefix points into, and the start of the names wanted in it.
        let (dir_key, name_prefix) = match prefix.rfind('/') {
            Some(i) => prefix.split_at(i + 1),
            None => ("", prefix),
        };
        let mut own_marker = None;
        let dir = if dir_key.is_empty() {
            self.root.clone()
        } else {
            // A prefix no valid key can have (`../`, `a//`, the internal dir) lists as empty.
            let Ok(key) = Key::parse(dir_key) else {
                return Ok(ListPage::default());
            };
            let Some((path, md)) = self.lookup(&key)? else {
                return Ok(ListPage::default());
            };
            if name_prefix.is_empty() {
                own_marker = Some(ListedObject {
                    key: dir_key.to_string(),
                    size: 0,
                    last_modified: modified(&md),
                    etag: Some(etag_of(&md)),
                });
            }
            path
        };
        let children = self.children(&dir, dir_key, name_prefix)?;
        if delimiter == Some("/") {
            // Deeper keys would all be grouped under the subdirectories' prefixes.
            let entries = own_marker
                .into_iter()
                .chain(children.iter().map(Node::listed));
            return Ok(page_from_sorted(
                entries, prefix, delimiter, token, max_keys,
            ));
        }
        let start_after = token.map(token_key);
        let mut walk = Walk {
            inner: self,
            stack: vec![children.into_iter()],
            token: start_after.as_deref(),
            error: None,
        };
        let page = page_from_sorted(
            own_marker.into_iter().chain(&mut walk),
            prefix,
            delimiter,
            token,
            max_keys,
        );
        match walk.error {
            Some(e) => Err(e),
            None => Ok(page),
        }
    }
}

/// A depth-first walk in key order: siblings sorted by key (`name` or `name/`), each directory
/// followed by its contents, which is byte order over the whole tree since no sibling key falls
/// between `d/` and the keys below it. Read lazily, so a page stops the walk.
struct Walk<'a> {
    inner: &'a Inner,
    stack: Vec<std::vec::IntoIter<Node>>,
    token: Option<&'a str>,
    error: Option<StoreError>,
}

impl Iterator for Walk<'_> {
    type Item = ListedObject;

    fn next(&mut self) -> Option<ListedObject> {
        loop {
            let top = self.stack.last_mut()?;
            let Some(node) = top.next() else {
                self.stack.pop();
                continue;
            };
            if node.md.is_dir() {
                // Below the token and not an ancestor of it: the whole subtree is before it.
                if self
                    .token
                    .is_some_and(|t| node.key.as_str() < t && !t.starts_with(node.key.as_str()))
                {
                    continue;
                }
                match self.inner.children(&node.path, &node.key, "") {
                    Ok(children) => self.stack.push(children.into_iter()),
                    Err(e) => {
                        self.error = Some(e);
                        self.stack.clear();
                        return None;
                    }
                }
            }
            return Some(node.listed());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::local::test_support::*;
    use crate::store::{ObjectStore, PutOptions};
    use bytes::Bytes;

    #[tokio::test]
    async fn list_with_delimiter_paginates() {
        let (_dir, store) = store();
        for key in ["p/a", "p/b/1", "p/b/2", "p/c", "p/d", "q"] {
            put(&store, key, b"x").await;
        }
        // Five entries under p/: the marker p/ itself, p/a, p/b/ (a prefix), p/c, p/d.
        let mut seen = Vec::new();
        let mut token = None;
        let mut pages = 0;
        loop {
            let page = store.list_page("p/", Some("/"), token, 2).await.unwrap();
            pages += 1;
            assert!(page.objects.len() + page.prefixes.len() <= 2);
            seen.extend(page.objects.iter().map(|o| o.key.clone()));
            seen.extend(page.prefixes.iter().cloned());
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        seen.sort();
        assert_eq!(seen, ["p/", "p/a", "p/b/", "p/c", "p/d"]);

        let first = store.list_page("p/", Some("/"), None, 2).await.unwrap();
        let keys: Vec<_> = first.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p/", "p/a"]);
        assert_eq!(first.objects[0].size, 0);

        let root = store.list_page("", Some("/"), None, 1000).await.unwrap();
        let keys: Vec<_> = root.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["q"]);
        assert_eq!(root.prefixes, ["p/"]);

        // A name prefix inside a directory.
        let page = store.list_page("p/b", Some("/"), None, 1000).await.unwrap();
        assert!(page.objects.is_empty());
        assert_eq!(page.prefixes, ["p/b/"]);
    }

    #[tokio::test]
    async fn list_without_delimiter_walks_in_key_order() {
        let (_dir, store) = store();
        for key in ["a/b.txt", "a/b/c", "a/b/d/e", "a0", "a-z", "z"] {
            put(&store, key, b"x").await;
        }
        put(&store, "a/empty/", b"").await;
        let expected = [
            "a-z", "a/", "a/b.txt", "a/b/", "a/b/c", "a/b/d/", "a/b/d/e", "a/empty/", "a0", "z",
        ];
        assert_eq!(all_keys(&store, "").await, expected);
        // Pagination with small pages gives the same sequence.
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = store.list_page("", None, token, 2).await.unwrap();
            assert!(page.prefixes.is_empty());
            keys.extend(page.objects.into_iter().map(|o| o.key));
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(keys, expected);
        assert_eq!(
            all_keys(&store, "a/b").await,
            ["a/b.txt", "a/b/", "a/b/c", "a/b/d/", "a/b/d/e"]
        );
        assert_eq!(
            all_keys(&store, "a/b/").await,
            ["a/b/", "a/b/c", "a/b/d/", "a/b/d/e"]
        );
        // Missing directories and prefixes no key can have list as empty.
        assert!(all_keys(&store, "missing/").await.is_empty());
        assert!(all_keys(&store, "z/").await.is_empty());
        assert!(all_keys(&store, "../").await.is_empty());
        assert!(all_keys(&store, "a//").await.is_empty());
    }

    #[tokio::test]
    async fn the_internal_dir_is_never_listed() {
        let (dir, store) = store();
        store
            .put("f", Bytes::from_static(b"x"), &opts("text/plain", &[]))
            .await
            .unwrap();
        let id = store
            .create_multipart("g", &PutOptions::default())
            .await
            .unwrap();
        store
            .upload_part("g", &id, 1, Bytes::from_static(b"p"))
            .await
            .unwrap();
        assert!(dir.path().join(".bucketfs-local").is_dir());
        assert_eq!(all_keys(&store, "").await, ["f"]);
        let page = store.list_page("", Some("/"), None, 1000).await.unwrap();
        assert!(page.prefixes.is_empty());
        assert_eq!(page.objects.len(), 1);
        assert!(all_keys(&store, ".bucketfs-local/").await.is_empty());
        assert!(all_keys(&store, ".b").await.is_empty());
    }
}
