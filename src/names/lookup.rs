//! Finding one name in the store. A name is a directory when any key lies under `name/`
//! (a `dir/` marker or an implicit prefix), else a file when the object `name` exists. Both
//! requests run concurrently; the directory wins when both exist (see `names`).
//!
//! A listing says nothing of user metadata, so a listed entry's mode, owner, stored mtime and
//! whether it is a symlink are learnt by a HEAD (of the object, or of a directory's marker)
//! when first needed: `ensure_meta` for one node, `ensure_meta_all` for the entries readdir
//! is about to return, in bounded parallel. A tool that asks for the attributes of one
//! directory's entries in order (`ls -l`, `du`, `rsync`) gets the next entries' HEADs started
//! ahead of it (`meta_run_ahead`), so names-only listings cost no HEAD and attribute walks
//! still run at the store's parallel speed. A directory's marker is read only once a listing
//! of the directory found one: a lookup of a directory that a walk's read-ahead is listing
//! waits for that listing (`fetch_meta`, `answer_under_way`), and the run-ahead leaves the
//! directories a walk will list to it (`meta_wanted`, see `tree`).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures_util::stream::{self, StreamExt};

use super::error::{NameError, NameResult};
use super::inode::{Ino, InodeTable, Kind, Node, Stat, ROOT_INO};
use super::Names;
use crate::store::{ObjectStore, StoreError};

/// What the store holds under `dir_prefix` + `name`, or `None`.
pub async fn stat_name(
    store: &dyn ObjectStore,
    dir_prefix: &str,
    name: &str,
    dir_mtime: SystemTime,
) -> Result<Option<Stat>, StoreError> {
    let key = format!("{dir_prefix}{name}");
    let sub = format!("{key}/");
    let (head, list) = tokio::join!(store.head(&key), store.list_page(&sub, Some("/"), None, 1));
    let list = list?;
    if !list.objects.is_empty() || !list.prefixes.is_empty() {
        if !list.objects.iter().any(|o| o.key == sub) {
            return Ok(Some(Stat::unmarked_dir(dir_mtime)));
        }
        // The marker holds the directory's mode, owner and times.
        return match store.head(&sub).await {
            Ok(info) => Ok(Some(Stat {
                size: 0,
                etag: None,
                ..Stat::from_head(Kind::Dir, &info)
            })),
            Err(StoreError::NotFound) => Ok(Some(Stat::unmarked_dir(dir_mtime))),
            Err(e) => Err(e),
        };
    }
    match head {
        Ok(info) => Ok(Some(Stat::from_head(Kind::File, &info))),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Names found missing in a directory not listed recently before it is listed whole (if it
/// fits in one page).
const MISSES_BEFORE_LISTING: u32 = 2;

/// Names found in the store one by one in a directory, within `FOUND_WINDOW`, before it is
/// listed ahead with its entries' metadata (if one page holds it): rsync run again over a
/// tree it sent looks every name up, and under a flaky network each of those lookups (a
/// HEAD and a LIST, one after the other) cost it more than the whole listing.
const FOUND_BEFORE_LISTING: u32 = 4;
const FOUND_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// Lookups counted per directory (names found missing, names found one by one), to tell
/// when a directory is worth listing whole. A bound, not a cache: past 10,000 directories
/// counting starts again.
#[derive(Default)]
pub(super) struct DirTally(std::sync::Mutex<std::collections::HashMap<Ino, (Instant, u32)>>);

impl DirTally {
    /// Counts one for `dir`; true once `threshold` were counted (all within `window` of the
    /// first, when given), and counting for `dir` starts again.
    fn count(&self, dir: Ino, threshold: u32, window: Option<std::time::Duration>) -> bool {
        let mut counts = self.0.lock().unwrap();
        if counts.len() > 10_000 {
            counts.clear();
        }
        let now = Instant::now();
        let (since, n) = counts.entry(dir).or_insert((now, 0));
        if window.is_some_and(|w| now.duration_since(*since) > w) {
            (*since, *n) = (now, 0);
        }
        *n += 1;
        if *n >= threshold {
            counts.remove(&dir);
            return true;
        }
        false
    }
}

/// Metadata HEADs in flight, however many readdir calls and run-ahead tasks ask at once
/// (each readdir call starts the next entries' HEADs: unbounded, 10,000 entries opened
/// hundreds of connections and took the server's CPU). With answers 30 ms away
/// (`bench.sh --remote`), 64 rather than 32 halved a cold `ls -l` of 10,000 entries
/// (10.2 s to 5.2 s) and cut `find` from 5.4 s to 4.0 s; on the local server both took the
/// same time.
pub const META_CONCURRENCY: usize = 64;

/// Entries past the one asked for whose metadata HEADs start at once, when a tool asks for
/// the attributes of a directory's entries in order.
pub const META_RUN_AHEAD: usize = 512;

/// How many directories after the one a walking tool is in the attribute run-ahead looks
/// into (see `Names::meta_run_ahead`).
const SIBLINGS_AHEAD: usize = 16;

/// Where the attribute run-ahead of one directory stands (see `Names::meta_run_ahead`).
pub(super) struct MetaAhead {
    /// The last name whose attributes were asked for. (The names are the table's, shared:
    /// this runs at every stat, and copies no name.)
    last: Arc<str>,
    /// HEADs were started up to this name (inclusive).
    until: Option<Arc<str>>,
    /// When a name at or past this one is asked for, the next entries' HEADs start.
    refill_at: Option<Arc<str>>,
    /// The HEADs of the entries of the directories a walk comes to after this one started.
    siblings_started: bool,
    /// HEADs were started ahead: a tool asks for the attributes of the entries in order, and
    /// a readdirplus of the directory waits for its entries' (see `attrs_walked`).
    started: bool,
}

impl Names {
    /// The inode for `parent/name`, from the table while fresh, else from the store.
    /// Takes no kernel reference.
    pub async fn resolve(self: &Arc<Self>, parent: Ino, name: &str) -> NameResult<Ino> {
        let unknown = self.table().child(parent, name).is_none();
        if unknown && self.listings.contains(&parent) {
            // The directory is being listed ahead (a walk, or names found below): its
            // answer is ours, and cheaper than asking for one name.
            self.listings.settled(&parent).await;
        }
        let known = {
            let t = self.table();
            let p = t.get(parent).ok_or(NameError::NotFound)?;
            if p.kind != Kind::Dir {
                return Err(NameError::NotDir);
            }
            match t.child(parent, name) {
                Some(ino) => {
                    let node = t.get(ino).expect("child points at a node");
                    if self.is_fresh(node, Instant::now()) {
                        return Ok(ino);
                    }
                    Some(ino)
                }
                // A fresh complete listing of the parent, or a recent miss, says it is absent.
                None if self.listed.contains(&parent) => return Err(NameError::NotFound),
                None if self.negative.contains(&(parent, name.to_string())) => {
                    return Err(NameError::NotFound)
                }
                None => None,
            }
        };
        if let Some(ino) = known {
            match self.answer_under_way(parent, ino).await {
                Some(true) => {
                    let t = self.table();
                    if t.child(parent, name) == Some(ino)
                        && t.get(ino).is_some_and(|n| self.is_fresh(n, Instant::now()))
                    {
                        return Ok(ino);
                    }
                }
                Some(false) => {}
                None => return Ok(ino), // a store slower than the grace: as it was
            }
        }
        let dir_prefix = self.dir_prefix(parent)?;
        let asked = stat_name(&*self.store, &dir_prefix, name, self.started);
        let found = match known {
            // A name known before: a store slower than the grace leaves it as it was.
            Some(ino) => match self.refresh(name, asked).await {
                Some(found) => found?,
                None => return Ok(ino),
            },
            None => asked.await?,
        };
        match found {
            Some(stat) => {
                let ino = self.table().upsert(parent, name, stat, Instant::now());
                self.trim();
                if self.found_in(parent) {
                    // A tool going through this directory name by name (rsync comparing
                    // a tree it sent before): list it with its entries' metadata, so the
                    // next names cost nothing; the second such directory of a parent shows
                    // a walk, and the directories after it are listed ahead too.
                    let names = self.clone();
                    tokio::spawn(async move { names.read_ahead_by_name(parent).await });
                }
                Ok(ino)
            }
            None => {
                {
                    let mut t = self.table();
                    if let Some(ino) = t.child(parent, name) {
                        if t.get(ino).is_some_and(|n| n.content.is_some()) {
                            return Ok(ino); // written here, not uploaded yet
                        }
                        t.unlink(parent, name);
                    }
                }
                self.negative.insert((parent, name.to_string()));
                if self.missed_in(parent) {
                    // Several names missing here (a tool creating files): if the directory
                    // is small, list it once and answer the next misses without a request.
                    if let Err(e) = self.list_if_small(parent).await {
                        tracing::debug!(parent, error = %e, "cannot list the directory");
                    }
                }
                Err(NameError::NotFound)
            }
        }
    }

    /// Waits for a request already under way that confirms the known name `ino` in `parent`,
    /// cheaper than asking for it again: its metadata HEAD (read ahead of a tool going
    /// through the directory), a listing of it (a directory a walk's read-ahead is listing:
    /// `find` looks each one up before reading it) or of its parent. `Some(true)` once one
    /// ended, `Some(false)` when none is under way, `None` when a listing took longer than
    /// `STALE_GRACE` (see `Names::refresh`).
    async fn answer_under_way(&self, parent: Ino, ino: Ino) -> Option<bool> {
        if self.meta_inflight.contains(&ino) {
            self.meta_inflight.settled(&ino).await;
            return Some(true);
        }
        let Some(listing) = [ino, parent]
            .into_iter()
            .find(|dir| self.listings.contains(dir))
        else {
            return Some(false);
        };
        self.refresh("a directory listing", self.listings.settled(&listing))
            .await
            .map(|()| true)
    }

    /// Makes sure the node knows what the object's HEAD says (a listing does not say it),
    /// so a change of one attribute keeps the others.
    pub async fn ensure_meta(&self, ino: Ino) -> NameResult<()> {
        match self.fetch_meta(ino).await {
            Err(NameError::NotFound) => Ok(()), // gone meanwhile: the caller's next step says so
            other => other,
        }
    }

    /// `ensure_meta` for many nodes at once, `META_CONCURRENCY` HEADs in flight. A node whose
    /// HEAD fails keeps the mount's defaults (logged).
    pub async fn ensure_meta_all(&self, inos: &[Ino]) {
        let fetches: Vec<_> = inos
            .iter()
            .map(|ino| self.fetch_meta_logged(*ino))
            .collect();
        stream::iter(fetches)
            .buffer_unordered(META_CONCURRENCY)
            .collect::<()>()
            .await;
    }

    async fn fetch_meta_logged(&self, ino: Ino) {
        if let Err(e) = self.fetch_meta(ino).await {
            tracing::debug!(ino, error = %e, "cannot read an object's metadata");
        }
    }

    /// Waits until no HEAD for these nodes' metadata is in flight (another task's).
    pub async fn meta_settled(&self, inos: &[Ino]) {
        for ino in inos {
            self.meta_inflight.settled(ino).await;
        }
    }

    /// Reads the stored metadata of `ino` unless it is known (see `Names::attrs_known`).
    /// A directory a listing is reading now (a walk's read-ahead) waits for it: the listing
    /// tells whether it has a marker to read at all, and most have none.
    pub(super) async fn fetch_meta(&self, ino: Ino) -> NameResult<()> {
        let (kind, parent, name) = loop {
            {
                let t = self.table();
                let node = t.get(ino).ok_or(NameError::NotFound)?;
                if node.meta.is_some() || ino == ROOT_INO || !node.linked {
                    return Ok(());
                }
                if node.kind != Kind::Dir && !node.remote {
                    return Ok(()); // not in the bucket yet
                }
                if node.kind != Kind::Dir || !self.listings.contains(&ino) {
                    break (node.kind, node.parent, node.name.clone());
                }
            }
            self.listings.settled(&ino).await;
        };
        let Some(_claim) = self.meta_inflight.claim(ino) else {
            // Another task is asking: its answer is ours.
            self.meta_inflight.settled(&ino).await;
            return Ok(());
        };
        let _permit = self.meta_permits.acquire().await;
        self.head_meta(ino, kind, parent, &name).await
    }

    async fn head_meta(&self, ino: Ino, kind: Kind, parent: Ino, name: &str) -> NameResult<()> {
        let key = self.meta_key(ino, kind)?;
        let stat = match self.store.head(&key).await {
            Ok(info) => Stat::from_head(kind, &info),
            // A directory without a marker: nothing stored, the defaults apply.
            Err(StoreError::NotFound) if kind == Kind::Dir => Stat::unmarked_dir(self.started),
            Err(e) => return Err(e.into()),
        };
        let mut t = self.table();
        let node = t.get_mut(ino).ok_or(NameError::NotFound)?;
        if node.meta.is_some() {
            return Ok(()); // someone else was quicker
        }
        if stat.kind != node.kind {
            // A listed "file" is a symlink: a new inode (the kernel must never see a type change).
            t.upsert(parent, name, stat, Instant::now());
            return Ok(());
        }
        node.headed(stat);
        Ok(())
    }

    /// `name` in `dir` is asked for its attributes: when the names of `dir` are asked for in
    /// order (the second in a row did so), the HEADs of the next `META_RUN_AHEAD` entries
    /// whose metadata is not known start now, and again once the tool is halfway through
    /// them. A lone `stat` costs its own HEAD only. In a tree being walked (`du`, `ls -lR`),
    /// once this directory's entries are all under way, so are those of the directories
    /// after it (its following siblings already listed), up to the same count: the tool's
    /// wait for one directory's slowest HEAD overlaps with the next ones'.
    ///
    /// The first entry of a directory whose listing was just read is asked for first by a
    /// tool going through it (`du`, `ls -l`): the HEADs of the files after it start at once
    /// rather than at the second (under faults, that first HEAD alone held up `du` in every
    /// directory); its subdirectories wait for the second, when a walk has shown itself or
    /// not. True when `name` is the first of `dir` asked for (no run-ahead state).
    pub(super) fn meta_run_ahead(self: &Arc<Self>, dir: Ino, name: Arc<str>) -> bool {
        let mut first = false;
        let inos = {
            let mut ahead = self.meta_ahead.lock().unwrap();
            if !ahead.contains(&dir) {
                first = true;
                ahead.put(
                    dir,
                    MetaAhead {
                        last: name.clone(),
                        until: None,
                        refill_at: None,
                        siblings_started: false,
                        started: false,
                    },
                );
            }
            let state = ahead.get_mut(&dir).expect("just entered");
            let t = self.table();
            let Some(node) = t.get(dir) else { return first };
            let inos: Vec<Ino> = if first {
                let opens = self.listed.contains(&dir)
                    && node.children.iter().next().is_some_and(|(n, _)| *n == name);
                if !opens {
                    return first;
                }
                node.children
                    .after(&name)
                    .map(|(_, ino)| ino)
                    .filter(|ino| {
                        self.meta_wanted(&t, *ino)
                            && t.get(*ino).is_some_and(|c| c.kind != Kind::Dir)
                    })
                    .take(META_RUN_AHEAD)
                    .collect()
            } else {
                let in_order = name > state.last;
                state.last = name.clone();
                if !in_order || state.refill_at.as_deref().is_some_and(|at| *name < *at) {
                    return first;
                }
                let from = match state.until.as_deref() {
                    Some(until) if until > &*name => until,
                    _ => &*name,
                };
                let next: Vec<(&Arc<str>, Ino)> = node
                    .children
                    .after(from)
                    .filter(|(_, ino)| self.meta_wanted(&t, *ino))
                    .take(META_RUN_AHEAD)
                    .collect();
                match next.last() {
                    Some((last, _)) => {
                        state.until = Some((*last).clone());
                        state.refill_at = Some(next[next.len() / 2].0.clone());
                    }
                    None => state.refill_at = None,
                }
                let mut inos: Vec<Ino> = next.into_iter().map(|(_, ino)| ino).collect();
                if !state.siblings_started
                    && inos.len() < META_RUN_AHEAD
                    && self.walks.lock().unwrap().contains(&node.parent)
                {
                    let budget = META_RUN_AHEAD - inos.len();
                    if let Some(after) = self.entries_after(&t, node, budget) {
                        state.siblings_started = true;
                        inos.extend(after);
                    }
                }
                inos
            };
            state.started |= !inos.is_empty();
            inos
        };
        if !inos.is_empty() {
            let names = self.clone();
            tokio::spawn(async move { names.ensure_meta_all(&inos).await });
        }
        first
    }

    /// True when a tool asks for the attributes of `dir`'s entries in order (`ls -l`, `du`,
    /// `rsync`: the run-ahead started their HEADs). A readdirplus of it then waits for its
    /// entries' metadata, as with `listing_metadata`: handed over unknown, each entry would
    /// cost the tool a lookup of its own (29,000 of the 100,000 of an `ls -l`, each a round
    /// trip through the kernel while the HEADs ran).
    pub fn attrs_walked(&self, dir: Ino) -> bool {
        let ahead = self.meta_ahead.lock().unwrap();
        ahead.peek(&dir).is_some_and(|state| state.started)
    }

    /// Whether the attribute run-ahead should read `ino`'s metadata: not known, and not a
    /// directory whose listing will tell whether it has a marker to read at all (most have
    /// none): one a tree run is listing, or one not listed yet in a directory being walked
    /// (the walk's read-ahead lists it, and reads the markers it finds: see `tree`).
    fn meta_wanted(&self, t: &InodeTable, ino: Ino) -> bool {
        let Some(c) = t.get(ino) else { return false };
        if c.meta.is_some() || self.meta_inflight.contains(&ino) {
            return false;
        }
        c.kind != Kind::Dir
            || !(self.listings.contains(&ino)
                || !self.listed.contains(&ino) && self.walks.lock().unwrap().contains(&c.parent))
    }

    /// Up to `budget` entries whose metadata is wanted, of the (at most `SIBLINGS_AHEAD`)
    /// directories after `dir` in its parent, in the order a walk comes to them, as far as
    /// they are listed. `None` while the next one is not listed yet (ask again later).
    fn entries_after(&self, t: &InodeTable, dir: &Node, budget: usize) -> Option<Vec<Ino>> {
        let parent = t.get(dir.parent)?;
        let siblings = parent.children.after(&dir.name).map(|(_, ino)| ino);
        let mut dirs = siblings
            .filter(|ino| t.get(*ino).is_some_and(|s| s.kind == Kind::Dir))
            .take(SIBLINGS_AHEAD)
            .peekable();
        if !dirs.peek().is_some_and(|d| self.listed.contains(d)) {
            return None;
        }
        let mut inos = Vec::new();
        // (up to the first not listed yet: the walk's read-ahead has not come this far)
        for sibling in dirs.take_while(|d| self.listed.contains(d)) {
            let Some(s) = t.get(sibling) else { break };
            let wanted = s.children.iter().map(|(_, ino)| ino);
            let wanted = wanted.filter(|ino| self.meta_wanted(t, *ino));
            inos.extend(wanted.take(budget - inos.len()));
            if inos.len() >= budget {
                break;
            }
        }
        Some(inos)
    }

    /// Counts a name found missing in `dir`; true once `MISSES_BEFORE_LISTING` were.
    fn missed_in(&self, dir: Ino) -> bool {
        self.misses.count(dir, MISSES_BEFORE_LISTING, None)
    }

    /// Counts a name found in the store in `dir`; true once `FOUND_BEFORE_LISTING` were
    /// within `FOUND_WINDOW` of each other (a tool walking it, not an application opening
    /// a few files now and then).
    fn found_in(&self, dir: Ino) -> bool {
        self.found
            .count(dir, FOUND_BEFORE_LISTING, Some(FOUND_WINDOW))
    }

    /// A name now exists here (created by this mount): forget that it was missing.
    pub fn name_appeared(&self, parent: Ino, name: &str) {
        self.negative.remove(&(parent, name.to_string()));
    }
}
