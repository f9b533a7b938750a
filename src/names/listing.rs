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
use crate::store::ListPage;

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

    /// Lists `ino` in the store and records the listing, page by page: each page's entries
    /// go into the table as it arrives (a listing of 100,000 entries holds no second copy
    /// of them), and with `listing_metadata` their HEADs start while the next page is listed.
    async fn list_store(self: &Arc<Self>, ino: Ino) -> NameResult<Vec<DirEntry>> {
        let dir_prefix = self.dir_prefix(ino)?;
        let started = Instant::now();
        let (mut token, mut marker, mut any) = (None, false, false);
        loop {
            let page = self
                .store
                .list_page(&dir_prefix, Some("/"), token, 1000)
                .await?;
            let next = page.next_token.clone();
            let (entries, own_marker) = self.page_entries(&dir_prefix, page);
            marker |= own_marker;
            any |= !entries.is_empty();
            let files = self.enter_listed(ino, entries, started)?;
            if self.config.listing_metadata {
                let names = self.clone();
                tokio::spawn(async move { names.ensure_meta_all(&files).await });
            }
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        let listed = self.finish_listing(ino, marker, any, started);
        self.trim();
        listed
    }

    /// Lists the directory whole if one page of the listing holds it, and returns its
    /// entries (names looked up in it that are missing then cost no request); `None` for a
    /// larger one, left to lookups by name.
    pub(super) async fn list_if_small(&self, ino: Ino) -> NameResult<Option<Vec<DirEntry>>> {
        let dir_prefix = self.dir_prefix(ino)?;
        let started = Instant::now();
        let page = self
            .store
            .list_page(&dir_prefix, Some("/"), None, 1000)
            .await?;
        if page.next_token.is_some() {
            return Ok(None);
        }
        let (entries, marker) = self.page_entries(&dir_prefix, page);
        let any = !entries.is_empty();
        self.enter_listed(ino, entries, started)?;
        self.finish_listing(ino, marker, any, started).map(Some)
    }

    /// Records a complete listing of `ino` taken from `started` on, and returns its entries.
    pub(super) fn apply_listing(
        &self,
        ino: Ino,
        listing: Listing,
        started: Instant,
    ) -> NameResult<Vec<DirEntry>> {
        let any = !listing.children.is_empty();
        self.enter_listed(ino, listing.children.into_iter().collect(), started)?;
        self.finish_listing(ino, listing.marker, any, started)
    }

    /// Enters entries of a listing of `dir` taken from `started` on, confirmed now: what a
    /// listing says counts from when it arrived, not when it began (a listing slower than
    /// the TTL must still answer the `stat` calls of the tool that asked for it). A file
    /// whose name a directory of this same listing has is shadowed by it. Returns the files'
    /// inodes.
    fn enter_listed(
        &self,
        dir: Ino,
        entries: Vec<(String, Stat)>,
        started: Instant,
    ) -> NameResult<Vec<Ino>> {
        let now = Instant::now();
        let mut t = self.table();
        t.get(dir).ok_or(NameError::NotFound)?;
        let mut files = Vec::new();
        for (name, stat) in entries {
            let kind = stat.kind;
            if kind == Kind::File {
                let shadowed = t.child(dir, &name).and_then(|c| t.get(c)).is_some_and(|c| {
                    c.kind == Kind::Dir && c.validated.is_some_and(|v| v >= started)
                });
                if shadowed {
                    continue;
                }
            }
            let ino = t.upsert(dir, &name, stat, now);
            if kind == Kind::File {
                files.push(ino);
            }
        }
        Ok(files)
    }

    /// Ends a complete listing of `dir` taken from `started` on (`any`: it had keys,
    /// `marker`: its own `dir/` marker among them). Names it lacked are forgotten (deleted
    /// by another client), but for files not uploaded yet and names confirmed since it began
    /// (an upload that finished while it ran). Returns the entries.
    fn finish_listing(
        &self,
        dir: Ino,
        marker: bool,
        any: bool,
        started: Instant,
    ) -> NameResult<Vec<DirEntry>> {
        let now = Instant::now();
        {
            let mut t = self.table();
            let node = t.get_mut(dir).ok_or(NameError::NotFound)?;
            if any {
                // Keys under its prefix: the directory itself is confirmed too, so the
                // lookups of its path while a tool goes through its entries need no request.
                node.confirmed(now);
            }
            if dir != ROOT_INO {
                node.marker_listed(marker);
            }
            node.children.compact();
            let children: Vec<(Arc<str>, Ino)> = node
                .children
                .iter()
                .map(|(name, ino)| (name.clone(), ino))
                .collect();
            let gone: Vec<Arc<str>> = children
                .into_iter()
                .filter(|(_, c)| {
                    t.get(*c).is_some_and(|c| {
                        c.content.is_none() && c.validated.is_none_or(|v| v < started)
                    })
                })
                .map(|(name, _)| name)
                .collect();
            for name in gone {
                t.unlink(dir, &name);
            }
        }
        self.listed.insert(dir);
        self.list_from_table(dir)
    }

    /// The listing from the inode table, which holds every child after a recent listing
    /// (changes made through this mount are applied to it directly).
    fn list_from_table(&self, ino: Ino) -> NameResult<Vec<DirEntry>> {
        let t = self.table();
        let node = t.get(ino).ok_or(NameError::NotFound)?;
        let mut out = Vec::with_capacity(node.children.len() + 2);
        out.extend(dots(ino, node.parent));
        out.extend(node.children.iter().filter_map(|(name, child)| {
            t.get(child).map(|c| DirEntry {
                ino: child,
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

    /// The showable entries of one page of a delimiter listing of `dir_prefix`, files
    /// first, and whether the directory's own marker was on it.
    fn page_entries(&self, dir_prefix: &str, page: ListPage) -> (Vec<(String, Stat)>, bool) {
        let mut marker = false;
        let mut entries = Vec::with_capacity(page.objects.len() + page.prefixes.len());
        for obj in page.objects {
            if obj.key == dir_prefix {
                marker = true; // this directory's own marker
                continue;
            }
            let name = &obj.key[dir_prefix.len()..];
            if !showable(name) {
                tracing::debug!(key = %obj.key, "skipping a key that cannot be shown as a name");
                continue;
            }
            entries.push((name.to_string(), Stat::listed_file(&obj)));
        }
        for prefix in page.prefixes {
            let name = &prefix[dir_prefix.len()..prefix.len() - 1];
            if !showable(name) {
                tracing::debug!(prefix = %prefix, "skipping a prefix that cannot be shown as a name");
                continue;
            }
            entries.push((name.to_string(), self.listed_dir()));
        }
        (entries, marker)
    }
}
