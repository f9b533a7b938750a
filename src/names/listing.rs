//! Directory listings: ListObjectsV2 with a `/` delimiter, every page, entered into the
//! inode table. Files written here but not yet uploaded are kept; names the listing lacks
//! are forgotten (deleted by another client). A complete listing answers lookups of missing
//! names for `dir_ttl` (see `lookup`), and its entries' metadata HEADs start while the next
//! pages are listed. A readdir gets each page's entries as soon as they are in the table
//! (`arriving`), and the store asks for the next page as soon as a page's token is known
//! (`ObjectStore::list_pages`): the
//! pages come back to back, as fast as the store lists them, while the daemon enters them
//! and the kernel reads them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::arriving::Arriving;
use super::error::{NameError, NameResult};
use super::inode::{Ino, Kind, Stat, ROOT_INO};
use super::rules::showable;
use super::Names;
use crate::store::pages::{PagedList, PAGE_KEYS};
use crate::store::{ListPage, StoreError};

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

/// What `enter_listed` did with a page.
struct Entered {
    /// The files' inodes (their HEADs start at once with `listing_metadata`).
    files: Vec<Ino>,
    /// The entries to show now, in name order: each name once, as the table has it.
    shown: Vec<DirEntry>,
}

impl Names {
    /// The listing of `dir` (`.` and `..` first), once complete; notes the walk it may
    /// continue (see `walk`).
    pub async fn list(self: &Arc<Self>, dir: Ino) -> NameResult<Vec<DirEntry>> {
        self.walk_ahead(dir);
        self.list_dir(dir, false).await?.all().await
    }

    /// The listing of `dir` (`.` and `..` first) as it arrives: a recent complete listing,
    /// or the store's, page by page while the next pages are listed; notes the walk it may
    /// continue (see `walk`).
    pub async fn listing(self: &Arc<Self>, dir: Ino) -> NameResult<Arc<Arriving>> {
        self.walk_ahead(dir);
        self.list_dir(dir, true).await
    }

    /// The listing of `ino`; one the store must make arrives page by page when `arriving`,
    /// else it is complete when returned.
    async fn list_dir(self: &Arc<Self>, ino: Ino, arriving: bool) -> NameResult<Arc<Arriving>> {
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
            return self.list_from_table(ino).map(Arriving::complete);
        }
        if !listed_before && arriving {
            return self.list_arriving(ino);
        }
        if !listed_before {
            self.list_store(ino, None).await?;
            return self.list_from_table(ino).map(Arriving::complete);
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
            this.list_store(ino, None).await?;
            this.list_from_table(ino)
        });
        let listed = match self.refresh("a directory listing", relist).await {
            Some(joined) => joined.expect("a listing task does not panic"),
            None => self.list_from_table(ino),
        };
        listed.map(Arriving::complete)
    }

    /// Starts listing `ino` in the store: its entries arrive page by page (`list_store`),
    /// after `.` and `..`.
    fn list_arriving(self: &Arc<Self>, ino: Ino) -> NameResult<Arc<Arriving>> {
        let parent = self.table().get(ino).ok_or(NameError::NotFound)?.parent;
        let listing = Arriving::new();
        listing.push(dots(ino, parent));
        let (this, feed) = (self.clone(), listing.clone());
        tokio::spawn(async move {
            let listed = this.list_store(ino, Some(&feed)).await;
            feed.end(listed);
        });
        Ok(listing)
    }

    /// Lists `ino` in the store and records the listing, page by page: each page's entries
    /// go into the table as it arrives (a listing of 100,000 entries holds no second copy
    /// of them), then to `feed` (a readdir serves them while the next pages are listed),
    /// and with `listing_metadata` their HEADs start. The pages come from the store's
    /// `list_pages`, which asks for each next one as soon as it knows its token.
    ///
    /// A listing only `feed` wants is given up as soon as no one reads it any more (`ls |
    /// head` of a directory of a million names closed it after the first page): the
    /// directory is not recorded as listed, and what it entered stays as names found.
    async fn list_store(
        self: &Arc<Self>,
        ino: Ino,
        feed: Option<&Arc<Arriving>>,
    ) -> NameResult<()> {
        let dir_prefix = self.dir_prefix(ino)?;
        let started = Instant::now();
        let (mut marker, mut any) = (false, false);
        let mut pages = self
            .store
            .clone()
            .list_pages(PagedList::grouped(&dir_prefix, "/"));
        loop {
            let page = pages.recv().await.ok_or(StoreError::TaskFailed {
                task: "a directory listing's pages",
                cause: "ended before the last page".into(),
            })??;
            let last = page.next_token.is_none();
            let (entries, own_marker) = self.page_entries(&dir_prefix, page);
            marker |= own_marker;
            any |= !entries.is_empty();
            let entered = self.enter_listed(ino, entries, started)?;
            if self.config.listing_metadata {
                let (names, files) = (self.clone(), entered.files);
                tokio::spawn(async move { names.ensure_meta_all(&files).await });
            }
            if let Some(feed) = feed {
                feed.push(entered.shown);
                if !last && Arc::strong_count(feed) == 1 {
                    tracing::debug!(dir = ino, "a listing no one reads any more is given up");
                    return Ok(());
                }
            }
            if last {
                break;
            }
        }
        let shown = feed.map(|f| f.names());
        let not_shown = self.finish_listing(ino, marker, any, started, shown)?;
        self.trim();
        if let Some(feed) = feed {
            feed.push(not_shown);
            feed.end(Ok(()));
        }
        Ok(())
    }

    /// Lists the directory whole if one page of the listing holds it, and returns its
    /// entries (names looked up in it that are missing then cost no request); `None` for a
    /// larger one, left to lookups by name.
    pub(super) async fn list_if_small(&self, ino: Ino) -> NameResult<Option<Vec<DirEntry>>> {
        let dir_prefix = self.dir_prefix(ino)?;
        let started = Instant::now();
        let page = self
            .store
            .list_page(&dir_prefix, Some("/"), None, PAGE_KEYS)
            .await?;
        if page.next_token.is_some() {
            return Ok(None);
        }
        let (entries, marker) = self.page_entries(&dir_prefix, page);
        let any = !entries.is_empty();
        self.enter_listed(ino, entries, started)?;
        self.finish_listing(ino, marker, any, started, None)?;
        self.list_from_table(ino).map(Some)
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
        self.finish_listing(ino, listing.marker, any, started, None)?;
        self.list_from_table(ino)
    }

    /// Enters entries of a listing of `dir` taken from `started` on, confirmed now: what a
    /// listing says counts from when it arrived, not when it began (a listing slower than
    /// the TTL must still answer the `stat` calls of the tool that asked for it). A file
    /// whose name a directory of this same listing has is shadowed by it. A name entered
    /// since the listing began (an earlier page, or a change through this mount) is not
    /// shown again: `not_shown` adds it at the end if it was not shown.
    fn enter_listed(
        &self,
        dir: Ino,
        entries: Vec<(String, Stat)>,
        started: Instant,
    ) -> NameResult<Entered> {
        let now = Instant::now();
        let mut t = self.table();
        t.get(dir).ok_or(NameError::NotFound)?;
        let mut entered = Entered {
            files: Vec::new(),
            shown: Vec::with_capacity(entries.len()),
        };
        for (name, stat) in entries {
            let kind = stat.kind;
            let entered_since = t
                .child(dir, &name)
                .and_then(|c| t.get(c))
                .filter(|c| c.validated.is_some_and(|v| v >= started))
                .map(|c| c.kind);
            if kind == Kind::File && entered_since == Some(Kind::Dir) {
                continue;
            }
            let ino = t.upsert(dir, &name, stat, now);
            if kind == Kind::File {
                entered.files.push(ino);
            }
            if entered_since.is_none() {
                let node = t.get(ino).expect("just entered");
                entered.shown.push(DirEntry {
                    ino,
                    kind: node.kind,
                    name: node.name.clone(),
                });
            }
        }
        Ok(entered)
    }

    /// Ends a complete listing of `dir` taken from `started` on (`any`: it had keys,
    /// `marker`: its own `dir/` marker among them). Names it lacked are forgotten (deleted
    /// by another client), but for files not uploaded yet and names confirmed since it began
    /// (an upload that finished while it ran). Given the names the listing handed out
    /// (`shown`), returns the children it did not show: files written here and not uploaded
    /// yet, names that appeared while it ran. The children are then rebuilt with full nodes
    /// (see `children`).
    fn finish_listing(
        &self,
        dir: Ino,
        marker: bool,
        any: bool,
        started: Instant,
        shown: Option<Vec<Arc<str>>>,
    ) -> NameResult<Vec<DirEntry>> {
        let now = Instant::now();
        let mut not_shown = Vec::new();
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
            // Each name shown was entered by this listing. In one pass over the children
            // and the names shown, both in name order: the others are gone, or not shown.
            let shown = shown.map(|mut names| {
                // In key order, which is name order unless a directory's `name/` sorts
                // apart from its name.
                if !names.is_sorted() {
                    names.sort_unstable();
                }
                names
            });
            let mut next_shown = shown.as_ref().map(|names| names.iter().peekable());
            let node = t.get(dir).expect("just seen");
            let mut gone = Vec::new();
            for (name, ino) in node.children.iter() {
                if let Some(next) = next_shown.as_mut() {
                    while next.next_if(|s| ***s < **name).is_some() {}
                    if next.next_if(|s| ***s == **name).is_some() {
                        continue;
                    }
                }
                let Some(child) = t.get(ino) else { continue };
                if child.content.is_none() && child.validated.is_none_or(|v| v < started) {
                    gone.push(name.clone());
                } else if next_shown.is_some() {
                    not_shown.push(DirEntry {
                        ino,
                        kind: child.kind,
                        name: name.clone(),
                    });
                }
            }
            for name in gone {
                t.unlink(dir, &name);
            }
            if let Some(node) = t.get_mut(dir) {
                node.children.compact();
            }
        }
        self.listed.insert(dir);
        Ok(not_shown)
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

    /// The showable entries of one page of a delimiter listing of `dir_prefix` in name
    /// order (a directory in place of a file of the same name: it shadows it), and whether
    /// the directory's own marker was on it.
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
        // Two sorted runs (a stable sort merges them: files before directories of a name).
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|dir, file| {
            let same = dir.0 == file.0;
            if same {
                std::mem::swap(dir, file);
            }
            same
        });
        (entries, marker)
    }
}
