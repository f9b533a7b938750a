//! Walks: telling when a tool walks a tree, and reading ahead of it. Tools that walk a tree
//! (find, du, rsync, ls -R) list one directory after another in name order; once a walk
//! shows itself (a second subdirectory of the same directory is listed), the subtrees of the
//! subdirectories after it are listed ahead in flat pages (`tree`), so the walk finds them
//! done. A lone `ls` reads nothing ahead.
//!
//! Also here: the read-ahead of one directory whose names a tool looks up one by one
//! (`read_ahead_listing`, see `lookup`).

use std::sync::Arc;

use super::inode::{Ino, Kind};
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
            let Some(siblings) = t.get(parent).map(|p| &p.children) else {
                return;
            };
            let unlisted = |ino: &Ino| !self.listed.contains(ino) && !self.listings.contains(ino);
            let after: Vec<Ino> = siblings
                .after(&node.name)
                .map(|(_, ino)| ino)
                .filter(|ino| t.get(*ino).is_some_and(|c| c.kind == Kind::Dir))
                .take(n.max(tree::TREE_CLAIMS))
                .collect();
            // Near what is not listed yet (nor being listed): the next run starts.
            if !after.iter().take(n).any(unlisted) {
                return;
            }
            let unlisted: Vec<Ino> = after.into_iter().filter(unlisted).collect();
            (parent, unlisted)
        };
        self.start_tree_run(parent, &unlisted);
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
}
