//! Directory listings: ListObjectsV2 with a `/` delimiter, every page, entered into the
//! inode table. Files written here but not yet uploaded are kept; names the listing lacks
//! are forgotten (deleted by another client). A complete listing answers lookups of missing
//! names for `dir_ttl` (see `lookup`), and its entries' metadata HEADs start while the next
//! pages are listed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::error::{NameError, NameResult};
use super::inode::{Ino, Kind, Stat, ROOT_INO};
use super::rules::showable;
use super::Names;

/// One entry of a directory listing as served to readdir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub kind: Kind,
    /// Shared with the inode table (a listing of 100,000 entries copies no name).
    pub name: Arc<str>,
}

/// The inodes of `entries` other than `.` and `..`.
pub fn inos(entries: &[DirEntry]) -> Vec<Ino> {
    entries
        .iter()
        .filter(|e| &*e.name != "." && &*e.name != "..")
        .map(|e| e.ino)
        .collect()
}

/// A directory's complete listing as the store gave it.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// Every showable child, by name; directories shadow files.
    pub children: BTreeMap<String, Stat>,
    /// The directory's own `dir/` marker was among the keys. Without one nothing is stored
    /// for it: its attributes are the mount's defaults, known without a HEAD.
    pub marker: bool,
}

/// The `.` and `..` entries every listing starts with.
fn dots(ino: Ino, parent: Ino) -> Vec<DirEntry> {
    let dir = |ino, name: &str| DirEntry {
        ino,
        kind: Kind::Dir,
        name: name.into(),
    };
    vec![dir(ino, "."), dir(parent, "..")]
}

impl Names {
    /// The listing of `dir` (`.` and `..` first), from a recent complete listing or the
    /// store; notes the walk it may continue (see `walk`).
    pub async fn list(self: &Arc<Self>, dir: Ino) -> NameResult<Vec<DirEntry>> {
        self.walk_ahead(dir);
        self.list_dir(dir).await
    }

    async fn list_dir(self: &Arc<Self>, ino: Ino) -> NameResult<Vec<DirEntry>> {
        let listed_before = self.listed.was_inserted(&ino);
        // A listing of this directory under way (a read-ahead, see `walk`, or a slow one
        // started below): its result is ours — but when there is a last listing to serve,
        // it is waited for no longer than a refresh.
        if listed_before {
            self.refresh("a directory listing", self.listings.settled(&ino))
                .await;
        } else {
            self.listings.settled(&ino).await;
        }
        if self.listed.contains(&ino) {
            return self.list_from_table(ino);
        }
        if !listed_before {
            return self.list_store(ino).await;
        }
        // Listed before: a store that takes longer than `STALE_GRACE` to list it again (a
        // stall, an outage) gets the last listing served meanwhile, while the new listing
        // goes on and lands in the table when it ends (see `Names::refresh`).
        let this = self.clone();
        let relist = tokio::spawn(async move {
            let Some(_claim) = this.listings.claim(ino) else {
                this.listings.settled(&ino).await;
                return this.list_from_table(ino);
            };
            this.list_store(ino).await
        });
        match self.refresh("a directory listing", relist).await {
            Some(joined) => joined.expect("a listing task does not panic"),
            None => self.list_from_table(ino),
        }
    }

    /// Lists `ino` in the store and records the listing.
    async fn list_store(self: &Arc<Self>, ino: Ino) -> NameResult<Vec<DirEntry>> {
        let dir_prefix = self.dir_prefix(ino)?;
        let started = Instant::now();
        let early_metadata = |files: &[(String, Stat)]| {
            if self.config.listing_metadata {
                self.start_metadata(ino, files);
            }
        };
        let listing = self
            .list_children(&dir_prefix, None, early_metadata)
            .await?
            .expect("no page limit");
        let listed = self.apply_listing(ino, &listing, started);
        self.trim();
        listed
    }

    /// Starts the HEADs of files one page of a listing found, while the next pages are
    /// listed (the listing alone takes a tenth of `ls -l` in a directory of 10,000). The
    /// files are entered in the table now; `apply_listing` keeps what the HEADs learn.
    fn start_metadata(self: &Arc<Self>, dir: Ino, files: &[(String, Stat)]) {
        let inos: Vec<Ino> = {
            let mut t = self.table();
            if t.get(dir).is_none() {
                return;
            }
            let now = Instant::now();
            files
                .iter()
                .map(|(name, stat)| t.upsert(dir, name, stat.clone(), now))
                .collect()
        };
        let fs = self.clone();
        tokio::spawn(async move { fs.ensure_meta_all(&inos).await });
    }

    /// Lists the directory whole if one page of the listing holds it, and returns its
    /// entries (names looked up in it that are missing then cost no request); `None` for a
    /// larger one, left to lookups by name.
    pub(super) async fn list_if_small(&self, ino: Ino) -> NameResult<Option<Vec<DirEntry>>> {
        let dir_prefix = self.dir_prefix(ino)?;
        let started = Instant::now();
        match self.list_children(&dir_prefix, Some(1), |_| {}).await? {
            Some(listing) => self.apply_listing(ino, &listing, started).map(Some),
            None => Ok(None),
        }
    }

    /// Records a complete listing of `ino` taken from `started` on, and returns its entries.
    /// What it says counts as confirmed when it completed (`now`), not when it began: a
    /// listing slower than the TTL (thousands of entries, a flaky network) must still answer
    /// the `stat` calls of the tool that asked for it.
    pub(super) fn apply_listing(
        &self,
        ino: Ino,
        listing: &Listing,
        started: Instant,
    ) -> NameResult<Vec<DirEntry>> {
        let children = &listing.children;
        let now = Instant::now();
        let mut t = self.table();
        let parent = t.get(ino).ok_or(NameError::NotFound)?.parent;
        if ino != ROOT_INO {
            t.get_mut(ino)
                .expect("just seen")
                .marker_listed(listing.marker);
        }
        if !children.is_empty() {
            // Keys under its prefix: the directory itself is confirmed too, so the lookups of
            // its path while a tool goes through its entries need no request of their own.
            t.get_mut(ino).expect("just seen").confirmed(now);
        }
        let mut out = dots(ino, parent);
        for (name, stat) in children {
            let kind = stat.kind;
            let child = t.upsert(ino, name, stat.clone(), now);
            out.push(DirEntry {
                ino: child,
                kind,
                name: t.get(child).expect("just entered").name.clone(),
            });
        }
        // Names we know that the listing lacks: keep files not uploaded yet and names
        // confirmed after the listing began (an upload that finished while it ran); forget
        // the rest (deleted by another client).
        let known: Vec<(Arc<str>, Ino)> = t
            .get(ino)
            .map(|n| n.children.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        for (name, child) in known {
            if children.contains_key(&*name) {
                continue;
            }
            let Some(node) = t.get(child) else { continue };
            let confirmed_since = node.validated.is_some_and(|v| v >= started);
            if node.content.is_some() || confirmed_since {
                out.push(DirEntry {
                    ino: child,
                    kind: node.kind,
                    name,
                });
            } else {
                t.unlink(ino, &name);
            }
        }
        self.listed.insert(ino);
        Ok(out)
    }

    /// The listing from the inode table, which holds every child after a recent listing
    /// (changes made through this mount are applied to it directly).
    fn list_from_table(&self, ino: Ino) -> NameResult<Vec<DirEntry>> {
        let t = self.table();
        let node = t.get(ino).ok_or(NameError::NotFound)?;
        let mut out = dots(ino, node.parent);
        out.extend(node.children.iter().filter_map(|(name, child)| {
            t.get(*child).map(|c| DirEntry {
                ino: *child,
                kind: c.kind,
                name: name.clone(),
            })
        }));
        Ok(out)
    }

    /// A subdirectory as a listing shows it: a prefix, nothing of it stored is known yet.
    pub(super) fn listed_dir(&self) -> Stat {
        Stat {
            kind: Kind::Dir,
            size: 0,
            mtime: self.started,
            etag: None,
            remote: false,
            meta: None,
        }
    }

    /// Every showable child of `dir_prefix` in the store, by name; directories shadow files.
    /// With `max_pages`, `None` when the directory has more pages than that. `on_page` sees
    /// the files of each page as it arrives (a directory on a later page may still shadow
    /// one of them).
    async fn list_children(
        &self,
        dir_prefix: &str,
        max_pages: Option<usize>,
        mut on_page: impl FnMut(&[(String, Stat)]),
    ) -> NameResult<Option<Listing>> {
        let mut files = BTreeMap::new();
        let mut dirs = BTreeMap::new();
        let mut token = None;
        let mut pages = 0;
        let mut marker = false;
        loop {
            if max_pages.is_some_and(|max| pages == max) {
                return Ok(None);
            }
            pages += 1;
            let page = self
                .store
                .list_page(dir_prefix, Some("/"), token, 1000)
                .await?;
            let mut page_files = Vec::with_capacity(page.objects.len());
            for obj in page.objects {
                let name = &obj.key[dir_prefix.len()..];
                if obj.key == dir_prefix {
                    marker = true; // this directory's own marker
                    continue;
                }
                if !showable(name) {
                    tracing::debug!(key = %obj.key, "skipping a key that cannot be shown as a name");
                    continue;
                }
                page_files.push((name.to_string(), Stat::listed_file(&obj)));
            }
            for prefix in page.prefixes {
                let name = &prefix[dir_prefix.len()..prefix.len() - 1];
                if !showable(name) {
                    tracing::debug!(prefix = %prefix, "skipping a prefix that cannot be shown as a name");
                    continue;
                }
                dirs.insert(name.to_string(), self.listed_dir());
            }
            page_files.retain(|(name, _)| !dirs.contains_key(name));
            on_page(&page_files);
            files.extend(page_files);
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        for name in dirs.keys() {
            if files.remove(name).is_some() {
                tracing::debug!(
                    name,
                    "an object is shadowed by a directory of the same name"
                );
            }
        }
        files.extend(dirs);
        Ok(Some(Listing {
            children: files,
            marker,
        }))
    }
}
