//! Tree read-ahead. A tool walking a tree (find, du, rsync, ls -R) lists one directory after
//! another, and a listing per directory costs a round trip each: a tree of 1,000 small
//! directories cost 1,000 LISTs, 30 ms apart behind a distant server. Once a walk shows
//! itself (a second subdirectory of one directory is listed: see `walk`), the subdirectories
//! after the one it is in are listed ahead in flat ListObjectsV2 pages (no delimiter, from
//! the first one not listed yet): a page of 1,000 keys holds many small directories at every
//! depth, so the walk costs about the pages of one recursive listing of the tree.
//!
//! Keys come in byte order and the keys under one directory are contiguous, so a directory is
//! complete once a key outside it (or the end of the listing) comes: it is then entered as a
//! complete listing, exactly as its own delimiter listing would have been (`apply_listing`),
//! and the walk lists it from the table. A run lists at most `TREE_PAGES` pages, so a walk
//! that stops early leaves little work done for nothing, and no further than the subtrees it
//! claimed; the walk starts the next run when it comes within `dir_read_ahead`
//! subdirectories of what is not listed yet.
//!
//! A walk looks each directory up before it reads it (find opens it), and the lookup needs
//! the directory's stored mode and owner, kept by its `dir/` marker if it has one. The run's
//! listing tells whether it has: most directories have none (their attributes are then the
//! defaults, known without a request), so a lookup of a directory a run is listing waits for
//! it (`lookup`), and the HEADs of the markers a run finds start as it finds them, in
//! parallel (`read_markers`), rather than one at a time as the walk comes to each.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::inflight::OwnedClaim;
use super::inode::{Ino, Kind, Stat};
use super::listing::{inos, Listing};
use super::rules::showable;
use super::Names;
use crate::store::{ListedObject, PagedList};

/// Pages of 1,000 keys one run lists at most.
pub(super) const TREE_PAGES: usize = 8;

/// Subdirectories one run claims at most: a readdir of a claimed one waits for the run
/// rather than listing it too.
pub const TREE_CLAIMS: usize = 64;

/// A directory the run's keys are inside of, and its listing so far.
struct Open {
    ino: Ino,
    name: String,
    listing: Listing,
}

/// One run over the subtrees of `dir`.
struct Run {
    dir: Ino,
    /// Key prefix of `dir`'s children.
    prefix: String,
    started: Instant,
    /// The directories the current key is inside of, `dir`'s subdirectory first.
    open: Vec<Open>,
    claims: HashMap<Ino, OwnedClaim<Ino>>,
    /// Entries of the directories entered (for `listing_metadata`).
    entered: Vec<Ino>,
    /// Directories entered whose marker was listed, whose HEADs have not started yet.
    marked: Vec<Ino>,
    /// Directories entered as complete listings.
    completed: usize,
}

impl Names {
    /// Claims the subdirectories of `dir` in `unlisted` (in name order) that no one lists
    /// now, and lists their subtrees ahead of a walk from the first, in a task of its own
    /// (see the module comment). The claims are taken at once: a readdir of one of them from
    /// now on waits for the run.
    pub(super) fn start_tree_run(self: &Arc<Self>, dir: Ino, unlisted: &[Ino]) {
        let claims: HashMap<Ino, OwnedClaim<Ino>> = unlisted
            .iter()
            .filter_map(|ino| self.listings.claim_owned(*ino).map(|c| (*ino, c)))
            .collect();
        let (first, last) = {
            let t = self.table();
            let mut claimed = unlisted
                .iter()
                .filter(|ino| claims.contains_key(ino))
                .filter_map(|ino| t.get(*ino).map(|n| n.name.clone()));
            let first = claimed.next();
            (first.clone(), claimed.next_back().or(first))
        };
        let (Some(first), Some(last), Ok(prefix)) = (first, last, self.dir_prefix(dir)) else {
            return; // read ahead by another run already, or gone
        };
        let names = self.clone();
        tokio::spawn(async move {
            names
                .read_ahead_tree(dir, prefix, (&first, &last), claims)
                .await
        });
    }

    /// The run itself: lists from the subtree of `first` on, and stops after the page that
    /// goes past the subtree of `last` (the walk may have started the next run there).
    async fn read_ahead_tree(
        self: &Arc<Self>,
        dir: Ino,
        prefix: String,
        (first, last): (&str, &str),
        claims: HashMap<Ino, OwnedClaim<Ino>>,
    ) {
        let start_after = format!("{prefix}{first}");
        let mut run = Run {
            dir,
            prefix,
            started: Instant::now(),
            open: Vec::new(),
            claims,
            entered: Vec::new(),
            marked: Vec::new(),
            completed: 0,
        };
        // The last key of `last`'s subtree, near enough: the pages stop after the one that
        // goes past it (what follows is another run's, or the walk's).
        let until = format!("{}{last}/{}", run.prefix, char::MAX);
        let list = PagedList::flat(&run.prefix, &start_after, &until, TREE_PAGES);
        let mut pages = self.store.clone().list_pages(list);
        while let Some(page) = pages.recv().await {
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    tracing::debug!(dir, error = %e, "tree read-ahead failed");
                    break;
                }
            };
            for obj in &page.objects {
                self.tree_key(&mut run, obj);
            }
            self.read_markers(&mut run);
            if run.completed > self.config.dir_cache_entries / 2 {
                break; // more would push the first out of the listings kept
            }
            if page.next_token.is_none() {
                while let Some(open) = run.open.pop() {
                    self.tree_complete(&mut run, open);
                }
                self.read_markers(&mut run);
                break;
            }
        }
        // Directories still open were not seen to their end: the walk lists them itself.
        drop(run.claims);
        self.trim();
        if self.config.listing_metadata {
            self.ensure_meta_all(&run.entered).await;
        }
    }

    /// Takes one key of the run: closes the directories it is not inside of, opens the ones
    /// it is, and enters it in the innermost (a `dir/` marker enters nothing more).
    fn tree_key(&self, run: &mut Run, obj: &ListedObject) {
        let Some(rel) = obj.key.strip_prefix(&run.prefix) else {
            return;
        };
        let mut parts: Vec<&str> = rel.split('/').collect();
        let leaf = parts.pop().expect("split gives one part at least");
        if parts.is_empty() {
            return; // a file of `dir` itself: its listing has it
        }
        if !parts.iter().all(|p| showable(p)) || !(leaf.is_empty() || showable(leaf)) {
            tracing::debug!(key = %obj.key, "skipping a key that cannot be shown as a name");
            return;
        }
        let inside = run
            .open
            .iter()
            .zip(&parts)
            .take_while(|(open, part)| open.name == **part)
            .count();
        while run.open.len() > inside {
            let open = run.open.pop().expect("longer than inside");
            self.tree_complete(run, open);
        }
        for (depth, name) in parts.iter().enumerate().skip(inside) {
            let stat = self.listed_dir();
            let parent = match depth {
                0 => run.dir,
                _ => run.open[depth - 1].ino,
            };
            if let Some(up) = run.open.last_mut() {
                // A directory shadows a file of the same name (listed just before it).
                up.listing.children.insert(name.to_string(), stat.clone());
            }
            let mut t = self.table();
            let ino = match t.child(parent, name) {
                Some(ino) if t.get(ino).is_some_and(|n| n.kind == Kind::Dir) => ino,
                _ => t.upsert(parent, name, stat, run.started),
            };
            drop(t);
            run.open.push(Open {
                ino,
                name: name.to_string(),
                listing: Listing::default(),
            });
        }
        let innermost = &mut run.open.last_mut().expect("inside one directory").listing;
        if leaf.is_empty() {
            innermost.marker = true; // the innermost directory's own marker
        } else if !innermost
            .children
            .get(leaf)
            .is_some_and(|s| s.kind == Kind::Dir)
        {
            innermost
                .children
                .insert(leaf.to_string(), Stat::listed_file(obj));
        }
    }

    /// Starts the HEADs of the markers of the directories the run entered so far (their
    /// stored mode and owner), in parallel: the walk looks each directory up before it
    /// reads it, and would otherwise wait for them one at a time.
    fn read_markers(self: &Arc<Self>, run: &mut Run) {
        if run.marked.is_empty() {
            return;
        }
        let (names, marked) = (self.clone(), std::mem::take(&mut run.marked));
        tokio::spawn(async move { names.ensure_meta_all(&marked).await });
    }

    /// All keys of `open` were seen: it is entered as a complete listing, and a readdir
    /// waiting for it goes on.
    fn tree_complete(&self, run: &mut Run, open: Open) {
        if open.listing.marker {
            run.marked.push(open.ino);
        }
        match self.apply_listing(open.ino, open.listing, run.started) {
            Ok(entries) if self.config.listing_metadata => run.entered.extend(inos(&entries)),
            Ok(_) => {}
            Err(e) => tracing::debug!(dir = open.ino, error = %e, "a directory read ahead is gone"),
        }
        run.claims.remove(&open.ino);
        run.completed += 1;
    }
}
