//! Walks: telling when a tool walks a tree, and reading ahead of it. Tools that walk a tree
//! (find, du, rsync, ls -R) list one directory after another in name order; once a walk
//! shows itself (a second subdirectory of the same directory is listed), the subtrees of the
//! subdirectories after it are listed ahead in flat pages (`tree`), so the walk finds them
//! done. A lone `ls` reads nothing ahead.
//!
//! Also here: the read-ahead of one directory whose names a tool looks up one by one
//! (`read_ahead_listing`, see `lookup`).

use std::sync::Arc;

use super::inode::{Ino, InodeTable, Kind};
use super::listing::inos;
use super::{tree, Names};

/// How many walks (directories being walked) are remembered.
pub(super) const WALKS_REMEMBERED: usize = 256;

impl Names {
    /// Notes that `dir` is being listed afresh; when that continues a walk of its parent,
    /// starts the read-ahead of the siblings after it.
    pub fn walk_ahead(self: &Arc<Self>, dir: Ino) {
        let n = self.config.dir_read_ahead;
        if n == 0 || self.config.dir_ttl.is_zero() {
            return; // no listing would be kept until the walk comes
        }
        let (parent, unlisted) = {
            let t = self.table();
            let Some(node) = t.get(dir) else { return };
            let parent = node.parent;
            if parent == dir {
                return; // the root
            }
            let previous = self.walks.lock().unwrap().put(parent, dir);
            if previous.is_none_or(|p| p == dir) {
                return;
            }
            let after: Vec<Ino> = dirs_after(&t, parent, &node.name)
                .take(n + tree::TREE_CLAIMS)
                .collect();
            let unlisted = |ino: &Ino| self.unlisted(*ino);
            // Near what is not listed yet (nor being listed): the next run starts, and claims
            // a run's worth from there.
            if !after.iter().take(n).any(unlisted) {
                return;
            }
            let unlisted: Vec<Ino> = after
                .into_iter()
                .filter(unlisted)
                .take(tree::TREE_CLAIMS)
                .collect();
            (parent, unlisted)
        };
        self.start_tree_run(parent, &unlisted);
    }

    /// `dir`, a directory a tool asks the attributes of (a lookup: find and du open each
    /// directory before reading it), has a marker not read yet, if any: it is listed rather
    /// than its marker HEADed when its listing is what the tool reads next. The listing
    /// tells whether there is a marker to read (most directories have none), and the tool's
    /// readdir then costs nothing: one round trip instead of two. So it is
    /// - in a directory being walked (another of its subdirectories was listed): the tree
    ///   read-ahead starts from this one (`start_tree_run`), as the readdir of this one
    ///   would start it from the next, and the lookup waits for it (see `fetch_meta`);
    /// - for the first name of a directory just listed that a tool asks about (find and du
    ///   come to the first subdirectory right after reading its parent), if one page holds
    ///   it.
    pub(super) async fn list_for_marker(self: &Arc<Self>, dir: Ino, parent: Ino, first: bool) {
        if self.config.dir_read_ahead == 0 || self.config.dir_ttl.is_zero() {
            return;
        }
        let run = {
            let t = self.table();
            let Some(node) = t.get(dir) else { return };
            if node.kind != Kind::Dir
                || node.meta.is_some()
                || !node.linked
                || !self.unlisted(dir)
                || self.meta_inflight.contains(&dir)
            {
                return;
            }
            let walked = self
                .walks
                .lock()
                .unwrap()
                .peek(&parent)
                .is_some_and(|p| *p != dir);
            (walked && t.get(parent).is_some()).then(|| {
                let after = dirs_after(&t, parent, &node.name)
                    .take(tree::TREE_CLAIMS - 1)
                    .filter(|ino| self.unlisted(*ino));
                std::iter::once(dir).chain(after).collect::<Vec<Ino>>()
            })
        };
        match run {
            Some(dirs) => self.start_tree_run(parent, &dirs),
            None if first && self.listed.contains(&parent) => {
                let Some(_claim) = self.listings.claim(dir) else {
                    return;
                };
                if let Err(e) = self.list_if_small(dir).await {
                    tracing::debug!(dir, error = %e, "cannot list the directory");
                }
            }
            None => {}
        }
    }

    /// `dir` is gone through name by name (see `lookup`): lists it, and notes the walk it may
    /// continue as its readdir would — its parent is listed first when it is not (a tool
    /// that walks by name never reads it), so the walk knows the directories after it.
    pub(super) async fn read_ahead_by_name(self: &Arc<Self>, dir: Ino) {
        let parent = self.table().get(dir).map(|n| n.parent);
        let walk = async {
            if let Some(p) = parent.filter(|p| *p != dir && !self.listed.contains(p)) {
                self.read_ahead_listing(p).await;
            }
            self.walk_ahead(dir);
        };
        tokio::join!(walk, self.read_ahead_listing(dir));
    }

    /// Lists `dir` if one page holds it, then fetches its entries' metadata. A readdir of
    /// `dir` meanwhile waits for the listing (see `list_dir`) and the HEADs (`meta_settled`).
    pub(super) async fn read_ahead_listing(self: &Arc<Self>, dir: Ino) {
        let entries = {
            let Some(_claim) = self.listings.claim(dir) else {
                return;
            };
            if self.listed.contains(&dir) {
                return;
            }
            match self.list_if_small(dir).await {
                Ok(Some(entries)) => entries,
                Ok(None) => return, // more than a page: the walk lists it itself
                Err(e) => {
                    tracing::debug!(dir, error = %e, "directory read-ahead failed");
                    return;
                }
            }
        };
        if self.config.listing_metadata {
            self.ensure_meta_all(&inos(&entries)).await;
        }
    }

    /// Not listed recently, nor being listed.
    fn unlisted(&self, ino: Ino) -> bool {
        !self.listed.contains(&ino) && !self.listings.contains(&ino)
    }
}

/// The subdirectories of `parent` after `name`, in name order.
fn dirs_after<'a>(t: &'a InodeTable, parent: Ino, name: &'a str) -> impl Iterator<Item = Ino> + 'a {
    let siblings = t.get(parent).map(|p| &p.children);
    siblings
        .into_iter()
        .flat_map(move |s| s.after(name))
        .map(|(_, ino)| ino)
        .filter(|ino| t.get(*ino).is_some_and(|c| c.kind == Kind::Dir))
}
