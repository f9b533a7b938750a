//! The inode table: which inode number stands for which name, and what we last knew about it.
//!
//! S3 has no inodes, so they are made up here and kept stable while the kernel holds a reference
//! (its lookup count) or a handle is open. A node stores its parent and its name, never its full
//! key: the key is derived by walking up to the root, so renaming a directory re-homes every
//! node below it at once, including files still being written. Nodes that were replaced or
//! deleted are unlinked from their parent but live on until the kernel forgets them.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::children::Children;
use super::etag::ETag;
use super::posix::Posix;
use super::slots::Slots;
use crate::localfile::content::Content;
use crate::store::{ObjectInfo, UserMetadata};

pub type Ino = u64;
pub const ROOT_INO: Ino = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket, character or block device (`mknod`): an empty object whose stored
    /// mode carries these type bits (`S_IFIFO`, `S_IFSOCK`, `S_IFCHR`, `S_IFBLK`).
    Special(u32),
}

impl Kind {
    /// The st_mode of a node of this kind with permission bits `perm`.
    pub fn st_mode(self, perm: u32) -> u32 {
        let type_bits = match self {
            Kind::File => libc::S_IFREG,
            Kind::Dir => libc::S_IFDIR,
            Kind::Symlink => libc::S_IFLNK,
            Kind::Special(type_bits) => type_bits,
        };
        type_bits | (perm & 0o7777)
    }

    /// The special kind of a mode's type bits, if they are one.
    pub fn special(mode: u32) -> Option<Kind> {
        let type_bits = mode & libc::S_IFMT;
        [libc::S_IFIFO, libc::S_IFSOCK, libc::S_IFCHR, libc::S_IFBLK]
            .contains(&type_bits)
            .then_some(Kind::Special(type_bits))
    }
}

/// What an object's HEAD says beyond its size: POSIX attributes from user metadata, the other
/// user metadata (`user.*` extended attributes) and the headers shown as `s3.*` attributes.
/// chmod, chown, utimens and setxattr change it here first (see `Node::meta_dirty`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub posix: Posix,
    /// User metadata that is not a POSIX convention.
    pub user: UserMetadata,
    pub content_type: Option<String>,
    pub storage_class: Option<String>,
    pub version_id: Option<String>,
}

impl Meta {
    /// `meta`, shared with the last value made equal to it: the objects of one directory
    /// nearly always have the same metadata (a content type, nothing else), so a listing's
    /// HEADs hold one value, not 200 bytes an entry. Changed by copy on write.
    pub fn shared(meta: Meta) -> Arc<Meta> {
        thread_local! {
            /// The last value made on this thread (a HEAD's answer is taken on a runtime
            /// worker: each keeps its own, no lock).
            static LAST: std::cell::RefCell<Option<Arc<Meta>>> = const { std::cell::RefCell::new(None) };
        }
        LAST.with_borrow_mut(|last| match last.as_ref() {
            Some(same) if **same == meta => same.clone(),
            _ => {
                let value = if meta == Meta::default() {
                    Meta::none()
                } else {
                    Arc::new(meta)
                };
                *last = Some(value.clone());
                value
            }
        })
    }

    /// The metadata of an object that stores none (shared).
    pub fn none() -> Arc<Meta> {
        static NONE: std::sync::LazyLock<Arc<Meta>> = std::sync::LazyLock::new(Arc::default);
        NONE.clone()
    }

    pub fn from_info(info: &ObjectInfo) -> Meta {
        Meta {
            posix: super::posix::parse(&info.metadata),
            user: info
                .metadata
                .iter()
                .filter(|(k, _)| !super::posix::is_posix_key(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            content_type: info.content_type.clone(),
            storage_class: info.storage_class.clone(),
            version_id: info.version_id.clone(),
        }
    }

    /// The kind the stored mode says, when it says one bucketfs shows.
    pub fn kind(&self) -> Option<Kind> {
        if self.posix.symlink_target.is_some() {
            return Some(Kind::Symlink);
        }
        let mode = self.posix.mode?;
        match mode & libc::S_IFMT {
            libc::S_IFLNK => Some(Kind::Symlink),
            libc::S_IFDIR => Some(Kind::Dir),
            libc::S_IFREG => Some(Kind::File),
            _ => Kind::special(mode),
        }
    }
}

/// What the names owner knows of one inode. Its fields are the owner's: `fs` reads them
/// through the getters below and changes them only through the methods that say what
/// happened (opened, written, metadata changed, …).
///
/// A table may hold millions of nodes, so a node is kept small (144 bytes, see the test at
/// the end): what most nodes never have (metadata read by HEAD, a symlink's target, times
/// changed here; a file's children) lives behind a box, the name is shared with the parent's
/// `children` and an MD5 ETag is held inline.
#[derive(Debug)]
pub struct Node {
    pub(super) parent: Ino,
    pub(super) name: Arc<str>,
    pub(super) kind: Kind,
    pub(super) size: u64,
    /// The stored mtime when there is one, else the object's Last-Modified.
    pub(super) mtime: SystemTime,
    pub(super) etag: Option<ETag>,
    /// What HEAD said (or this mount set); `None` until asked (a listing has no metadata).
    pub(super) meta: Option<Arc<Meta>>,
    /// When the attributes were last confirmed by the store; `None` = must ask again.
    pub(super) validated: Option<Instant>,
    /// References the kernel holds (lookups not yet forgotten).
    pub(super) lookups: u64,
    /// Open file handles.
    pub(super) open: u32,
    /// `meta` holds changes (chmod, chown, utimens, setxattr) not yet in the bucket.
    pub(super) meta_dirty: bool,
    /// The object (file) or its `dir/` marker (directory) exists under this node's key.
    pub(super) remote: bool,
    /// False once unlinked or replaced: the node no longer has a name.
    pub(super) linked: bool,
    /// Local content of a file being written (staged, maybe not yet uploaded).
    pub(super) content: Option<Arc<Content>>,
    /// Children by name (directories only); each name is the child's own `name`.
    pub(super) children: Children,
    /// What few nodes have; `None` = all of it unset.
    pub(super) extra: Option<Box<Extra>>,
}

/// The part of a node most nodes never need (see `Node`).
#[derive(Debug, Default)]
pub(super) struct Extra {
    /// A symlink's target, once read.
    pub(super) target: Option<bytes::Bytes>,
    /// ETag of the content the kernel's page cache may hold from an earlier open.
    pub(super) kept_etag: Option<ETag>,
    /// When this mount last changed the node's status (write, truncate, chmod, chown,
    /// utimens, setxattr, rename, unlink; a directory's entries): its ctime while the mount
    /// lives, where newer than the stored one. Only what is stored anyway is stored.
    pub(super) changed_here: Option<SystemTime>,
    /// Directories: when this mount last added, removed or renamed an entry in it — its
    /// mtime while the mount lives, until a utimens sets one (kept in memory only: no
    /// request per entry).
    pub(super) entries_changed: Option<SystemTime>,
}

impl Node {
    fn new(parent: Ino, name: Arc<str>, stat: Stat, validated: Option<Instant>) -> Node {
        Node {
            parent,
            name,
            kind: stat.kind,
            size: stat.size,
            mtime: stat.mtime,
            etag: stat.etag.as_deref().map(ETag::new),
            meta: stat.meta,
            validated,
            lookups: 0,
            open: 0,
            meta_dirty: false,
            remote: stat.remote,
            linked: true,
            content: None,
            children: Children::default(),
            extra: None,
        }
    }

    fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

    /// When this mount last changed the node's status (see `Extra`).
    pub(super) fn changed_here(&self) -> Option<SystemTime> {
        self.extra.as_ref().and_then(|e| e.changed_here)
    }

    /// When this mount last changed the directory's entries (see `Extra`).
    pub(super) fn entries_changed_at(&self) -> Option<SystemTime> {
        self.extra.as_ref().and_then(|e| e.entries_changed)
    }
}

/// What is known of the node (read-only outside the names owner).
impl Node {
    pub fn parent(&self) -> Ino {
        self.parent
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// The stored object's size (a file with local content has that content's size).
    pub fn stored_size(&self) -> u64 {
        self.size
    }
    pub fn mtime(&self) -> SystemTime {
        self.mtime
    }
    /// The stored object's ETag, as the store gave it.
    pub fn etag(&self) -> Option<String> {
        self.etag.as_ref().map(ETag::text)
    }
    pub fn meta(&self) -> Option<&Meta> {
        self.meta.as_deref()
    }
    /// The metadata holds changes not yet in the bucket.
    pub fn meta_dirty(&self) -> bool {
        self.meta_dirty
    }
    /// A symlink's target, once read.
    pub fn target(&self) -> Option<&bytes::Bytes> {
        self.extra.as_ref().and_then(|e| e.target.as_ref())
    }
    /// The object (file) or its `dir/` marker (directory) exists under the node's key.
    pub fn remote(&self) -> bool {
        self.remote
    }
    pub fn open_handles(&self) -> u32 {
        self.open
    }
    /// False once unlinked or replaced: the node no longer has a name.
    pub fn linked(&self) -> bool {
        self.linked
    }
    /// Local content of a file being written (staged, maybe not yet uploaded).
    pub fn content(&self) -> Option<&Arc<Content>> {
        self.content.as_ref()
    }
    /// The inodes of a directory's children.
    pub fn child_inos(&self) -> impl Iterator<Item = Ino> + '_ {
        self.children.iter().map(|(_, ino)| ino)
    }
}

/// What happens to a node here: opened, closed, written, its metadata changed or sent.
impl Node {
    /// Created by this mount with `content`, open once.
    pub fn created_here(&mut self, content: Arc<Content>) {
        self.content = Some(content);
        self.open += 1;
    }

    /// Opened once more; true when the kernel may keep the pages it cached at an earlier
    /// open (a read-only open of the same ETag, and no local content). What is written
    /// through a writable handle lands in the page cache too: those pages are the object's
    /// only once an upload gives it a new ETag.
    pub fn opened(&mut self, writable: bool) -> bool {
        self.open += 1;
        let kept = self.extra.as_ref().and_then(|e| e.kept_etag.as_ref());
        let keep = self.content.is_none() && self.etag.is_some() && kept == self.etag.as_ref();
        let etag = if writable { None } else { self.etag.clone() };
        if etag.is_some() || kept.is_some() {
            self.extra_mut().kept_etag = etag;
        }
        keep
    }

    /// One handle closed.
    pub fn closed(&mut self) {
        self.open = self.open.saturating_sub(1);
    }

    /// The node's local content: the one it has, or `content`, which it keeps from now on.
    pub fn local_content(&mut self, content: Arc<Content>) -> Arc<Content> {
        self.content.get_or_insert(content).clone()
    }

    /// The local content is no longer needed (all of it is in the bucket, or it was
    /// dropped): the node lets it go.
    pub fn drop_content(&mut self) -> Option<Arc<Content>> {
        self.content.take()
    }

    /// Written or truncated: the mtime and ctime are now, and a stored mtime or ctime no
    /// longer holds (the upload's Last-Modified will say when the file was last written:
    /// nothing changes per write but this node).
    pub fn written(&mut self) {
        let now = SystemTime::now();
        self.mtime = now;
        self.extra_mut().changed_here = Some(now);
        if let Some(meta) = self.meta.as_mut() {
            let meta = Arc::make_mut(meta);
            meta.posix.mtime = None;
            meta.posix.ctime = None;
        }
    }

    /// chmod, chown, utimens: `edit` changes the POSIX attributes and the mtime; the ctime
    /// is now. The metadata (with the new ctime, and the mtime as it is) is marked changed
    /// only when a value really differs (a chmod to the same mode stores nothing).
    pub fn change_posix(&mut self, edit: impl FnOnce(Kind, &mut Posix, &mut SystemTime)) {
        let now = SystemTime::now();
        let meta = Arc::make_mut(self.meta.get_or_insert_with(Meta::none));
        let before = (meta.posix.clone(), self.mtime);
        edit(self.kind, &mut meta.posix, &mut self.mtime);
        if (&meta.posix, self.mtime) != (&before.0, before.1) {
            meta.posix.ctime = Some(now);
            // Storing metadata rewrites the object: its new Last-Modified is no mtime.
            meta.posix.mtime.get_or_insert(self.mtime);
            self.meta_dirty = true;
        }
        self.extra_mut().changed_here = Some(now);
    }

    /// utimens set the times: they stand, not when the directory's entries last changed.
    pub fn times_set(&mut self) {
        if let Some(extra) = self.extra.as_mut() {
            extra.entries_changed = None;
        }
    }

    /// setxattr, removexattr: `edit` changes the `user.*` attributes, and the ctime is now;
    /// a failed edit changes nothing.
    pub fn edit_user<E>(
        &mut self,
        edit: impl FnOnce(&mut UserMetadata) -> Result<(), E>,
    ) -> Result<(), E> {
        let now = SystemTime::now();
        let meta = Arc::make_mut(self.meta.get_or_insert_with(Meta::none));
        edit(&mut meta.user)?;
        meta.posix.ctime = Some(now);
        meta.posix.mtime.get_or_insert(self.mtime); // (see `change_posix`)
        self.meta_dirty = true;
        self.extra_mut().changed_here = Some(now);
        Ok(())
    }

    /// Renamed, or unlinked while open: the ctime is now (kept in memory).
    pub fn status_changed(&mut self) {
        self.extra_mut().changed_here = Some(SystemTime::now());
    }

    /// A directory in which this mount just added, removed or renamed an entry: its mtime
    /// and ctime are now (kept in memory).
    pub fn entries_changed(&mut self) {
        let now = SystemTime::now();
        let extra = self.extra_mut();
        extra.entries_changed = Some(now);
        extra.changed_here = Some(now);
    }

    /// The metadata as it is now left with an upload.
    pub fn meta_sent(&mut self) {
        self.meta_dirty = false;
    }

    /// The metadata did not reach the bucket (or the upload stored an older copy of it): it
    /// is stored again later.
    pub fn meta_unsent(&mut self) {
        self.meta_dirty = true;
    }

    /// A symlink's target was read (or written) here.
    pub fn target_known(&mut self, target: bytes::Bytes) {
        self.extra_mut().target = Some(target);
    }
}

/// How a node learns what its object now is: one method per way (a listing goes through
/// `InodeTable::upsert`, which may also replace the node).
impl Node {
    /// A listing just found keys under this directory: it still exists (its attributes
    /// stand as they were).
    pub fn confirmed(&mut self, at: Instant) {
        self.validated = Some(at);
    }

    /// A complete listing of this directory told whether its `dir/` marker exists. Without
    /// one nothing is stored for it: its attributes are the defaults, known without a HEAD.
    /// A marker that appeared (another client's mkdir or chmod) is read at the next use.
    pub fn marker_listed(&mut self, marker: bool) {
        if self.kind != Kind::Dir || self.meta_dirty {
            return;
        }
        match (marker, self.remote) {
            (false, _) => {
                if self.remote || self.meta.is_none() {
                    self.meta = Some(Meta::none());
                }
                self.remote = false;
            }
            (true, false) => self.meta = None,
            (true, true) => {}
        }
    }

    /// This mount just stored the object (an upload): its ETag, size and content type.
    pub fn stored(&mut self, etag: Option<String>, size: u64, content_type: Option<String>) {
        self.remote = true;
        self.etag = etag.as_deref().map(ETag::new);
        self.size = size;
        self.validated = Some(Instant::now());
        if let Some(meta) = self.meta.as_mut() {
            if meta.content_type != content_type {
                Arc::make_mut(meta).content_type = content_type;
            }
        }
    }

    /// This mount just stored the node's metadata: by a copy of the object onto itself
    /// (`Some(etag)`, the ETag its read-back saw), or by writing it anew (`None`: a
    /// directory's marker keeps no ETag; a symlink's new one is read again when needed).
    pub fn meta_stored(&mut self, copied: Option<Option<String>>) {
        self.meta_dirty = false;
        self.remote = true;
        self.validated = Some(Instant::now());
        match copied {
            Some(etag) => self.etag = etag.as_deref().map(ETag::new),
            None if self.kind != Kind::Dir => self.unknown(),
            None => {}
        }
    }

    /// A HEAD told the stored metadata (of the same kind of node). A HEAD that found the
    /// object (or the marker) confirms it, as a listing does: a tool going through a long
    /// listing finds the entries read ahead of it fresh, however long ago the listing was.
    pub fn headed(&mut self, stat: Stat) {
        if stat.remote {
            self.validated = Some(Instant::now());
        }
        if self.content.is_none() {
            self.mtime = stat.mtime;
        }
        if self.kind == Kind::Dir {
            self.remote = stat.remote;
        } else if let Some(etag) = stat.etag.as_deref() {
            self.etag = Some(ETag::new(etag));
        }
        self.meta = stat.meta;
    }

    /// The node was renamed. Stored, it was copied (a new ETag and Last-Modified, to be
    /// asked for); still pending (`replaced_remote: Some`), the new key holds the replaced
    /// file's object, if any, until its upload lands — and an unlink meanwhile must delete
    /// that object.
    pub fn moved(&mut self, replaced_remote: Option<bool>) {
        self.validated = None;
        if let Some(remote) = replaced_remote {
            self.remote = remote;
            self.etag = None;
        }
    }

    /// This mount copied the node's object to its new key (a rename): the copy's ETag
    /// (`None`: the server gave none; asked for at the next use).
    pub fn copied(&mut self, etag: Option<String>) {
        self.remote = true;
        self.etag = etag.as_deref().map(ETag::new);
    }

    /// What the node's key holds is no longer known: the store is asked at the next use.
    pub fn unknown(&mut self) {
        self.etag = None;
        self.validated = None;
    }
}

/// What the store says about one name.
#[derive(Debug, Clone)]
pub struct Stat {
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub etag: Option<String>,
    pub remote: bool,
    /// From a HEAD; `None` from a listing.
    pub meta: Option<Arc<Meta>>,
}

impl Stat {
    /// A directory with no `dir/` marker: nothing stored, the defaults apply.
    pub fn unmarked_dir(mtime: SystemTime) -> Stat {
        Stat {
            kind: Kind::Dir,
            size: 0,
            mtime,
            etag: None,
            remote: false,
            meta: Some(Meta::none()),
        }
    }

    /// An object as a listing shows it: a file (a HEAD may find it is a symlink).
    pub fn listed_file(obj: &crate::store::ListedObject) -> Stat {
        Stat {
            kind: Kind::File,
            size: obj.size,
            mtime: obj.last_modified,
            etag: obj.etag.clone(),
            remote: true,
            meta: None,
        }
    }

    /// A file, directory, symlink or special file as HEAD describes it (the stored mtime
    /// wins).
    pub fn from_head(kind: Kind, info: &ObjectInfo) -> Stat {
        let meta = Meta::from_info(info);
        let kind = match (kind, meta.kind()) {
            (Kind::Dir, _) => Kind::Dir,
            (_, Some(Kind::Symlink)) => Kind::Symlink,
            (_, Some(special @ Kind::Special(_))) => special,
            _ => Kind::File,
        };
        Stat {
            kind,
            size: info.size,
            mtime: meta.posix.mtime.unwrap_or(info.last_modified),
            etag: info.etag.clone(),
            remote: true,
            meta: Some(Meta::shared(meta)),
        }
    }
}

/// What `InodeTable::evict` did and would do.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Directories that lost children: their listings are no longer complete.
    pub parents: Vec<Ino>,
    /// Names (parent, name) the kernel holds that would have gone otherwise.
    pub release: Vec<(Ino, Arc<str>)>,
}

pub struct InodeTable {
    /// Every node by inode (see `slots`: an inode number is never given out twice).
    nodes: Slots<Node>,
}

impl InodeTable {
    pub fn new(root_mtime: SystemTime) -> Self {
        let mut root = Node::new(ROOT_INO, "".into(), Stat::unmarked_dir(root_mtime), None);
        (root.meta, root.remote, root.lookups) = (None, true, 1);
        let mut nodes = Slots::default();
        assert_eq!(nodes.insert(root), ROOT_INO, "the first inode given out");
        InodeTable { nodes }
    }

    pub fn get(&self, ino: Ino) -> Option<&Node> {
        self.nodes.get(ino)
    }

    pub fn get_mut(&mut self, ino: Ino) -> Option<&mut Node> {
        self.nodes.get_mut(ino)
    }

    pub fn child(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.nodes.get(parent)?.children.get(name)
    }

    /// Path of `ino` relative to the mount root ("" for the root), or `None` if unlinked.
    pub fn path(&self, ino: Ino) -> Option<String> {
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let node = self.nodes.get(cur)?;
            if !node.linked {
                return None;
            }
            parts.push(&*node.name);
            cur = node.parent;
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    /// Records what the store said about `parent/name`, reusing the existing inode when the
    /// kind matches and replacing (unlinking) it otherwise. Returns the inode.
    pub fn upsert(&mut self, parent: Ino, name: &str, stat: Stat, now: Instant) -> Ino {
        if let Some(ino) = self.child(parent, name) {
            let node = self.nodes.get_mut(ino).expect("child points at a node");
            // A listing cannot tell a symlink or a special file from a file: keep what a HEAD
            // said.
            let same_kind = node.kind == stat.kind
                || (stat.meta.is_none()
                    && matches!(node.kind, Kind::Symlink | Kind::Special(_))
                    && stat.kind == Kind::File);
            if same_kind {
                // A node with changes of its own keeps what this mount knows its key held
                // (its ETag, whether anything was stored): another client's object appearing
                // there is no base of this mount's changes — an unlink must not delete it,
                // an upload must find it a conflict.
                if node.content.is_none() && !node.meta_dirty {
                    node.remote = stat.remote;
                    let etag = stat.etag.as_deref().map(ETag::new);
                    let same_object = node.etag.is_some() && node.etag == etag;
                    node.size = stat.size;
                    node.etag = etag;
                    match stat.meta {
                        Some(meta) => {
                            node.mtime = stat.mtime;
                            node.meta = Some(meta);
                        }
                        // Listed again, unchanged: what HEAD said still holds.
                        None if same_object && node.meta.is_some() => {}
                        // A directory known to have no marker: the defaults still hold (its
                        // own listing tells when a marker appears).
                        None if node.kind == Kind::Dir && !node.remote && node.meta.is_some() => {}
                        None => {
                            node.mtime = stat.mtime;
                            node.meta = None;
                            if let Some(extra) = node.extra.as_mut() {
                                extra.target = None;
                            }
                        }
                    }
                }
                node.validated = Some(now);
                return ino;
            }
            self.unlink(parent, name);
        }
        let name: Arc<str> = name.into();
        let ino = self
            .nodes
            .insert(Node::new(parent, name.clone(), stat, Some(now)));
        if let Some(p) = self.nodes.get_mut(parent) {
            p.children.insert(name, ino);
        }
        ino
    }

    /// Removes the name `parent/name`; the node lives on while referenced. Returns its inode.
    pub fn unlink(&mut self, parent: Ino, name: &str) -> Option<Ino> {
        let ino = self.nodes.get_mut(parent)?.children.remove(name)?;
        if let Some(node) = self.nodes.get_mut(ino) {
            node.linked = false;
        }
        self.reclaim(ino);
        Some(ino)
    }

    /// Gives `ino` a new parent and name, unlinking whatever had that name before.
    pub fn rename(&mut self, ino: Ino, new_parent: Ino, new_name: &str) {
        if self.child(new_parent, new_name) == Some(ino) {
            return;
        }
        self.unlink(new_parent, new_name);
        let (old_parent, old_name) = match self.nodes.get(ino) {
            Some(n) => (n.parent, n.name.clone()),
            None => return,
        };
        if let Some(p) = self.nodes.get_mut(old_parent) {
            p.children.remove_if(&old_name, ino);
        }
        let new_name: Arc<str> = new_name.into();
        if let Some(node) = self.nodes.get_mut(ino) {
            node.parent = new_parent;
            node.name = new_name.clone();
            node.linked = true;
        }
        if let Some(p) = self.nodes.get_mut(new_parent) {
            p.children.insert(new_name, ino);
        }
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&mut self, ino: Ino, n: u64) {
        if let Some(node) = self.nodes.get_mut(ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        self.reclaim(ino);
    }

    /// Drops the node if nothing needs it any more: no kernel reference, no open handle, no
    /// children, and no local content that is not yet in the bucket.
    pub fn reclaim(&mut self, ino: Ino) {
        let Some(node) = self.nodes.get(ino) else {
            return;
        };
        let pending = node.content.as_ref().is_some_and(|c| c.is_dirty());
        if ino == ROOT_INO
            || node.lookups > 0
            || node.open > 0
            || !node.children.is_empty()
            || (pending && node.linked)
        {
            return;
        }
        let (parent, name, linked) = (node.parent, node.name.clone(), node.linked);
        if linked && node.validated.is_some() {
            // Still a valid cache entry for its name: keep until unlinked or relisted.
            return;
        }
        self.nodes.remove(ino);
        if let Some(p) = self.nodes.get_mut(parent) {
            p.children.remove_if(&name, ino);
        }
    }

    /// Past `limit` nodes, drops the ones nothing needs until a tenth below it (a scan of the
    /// table then pays for a tenth of its size in insertions), those least recently
    /// confirmed by the store first. Kept: the root, nodes the kernel holds (its lookups)
    /// or that are open, nodes with local content or metadata not yet stored, directories
    /// with children, the entries of a directory open for reading (its handle serves them by
    /// inode), and nodes confirmed within `grace` (a tool is about to use them).
    ///
    /// When that is not enough, the names the kernel holds but that would go otherwise, least
    /// recently confirmed first, are returned in `release` (as many as are still too many):
    /// the kernel forgets a name only under its own memory pressure, so a walk of ten
    /// million keys would keep every one; asked to drop them (`Names::trim`), it sends their
    /// forgets and the next trim evicts them.
    pub fn evict(&mut self, limit: usize, grace: std::time::Duration) -> Evicted {
        let mut evicted = Evicted::default();
        if self.nodes.len() <= limit {
            return evicted;
        }
        let now = Instant::now();
        let being_read: std::collections::HashSet<Ino> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.kind == Kind::Dir && n.open > 0)
            .map(|(ino, _)| ino)
            .collect();
        // (held by the kernel, last confirmed, inode)
        let mut unused: Vec<(bool, Option<Instant>, Ino)> = self
            .nodes
            .iter()
            .filter(|(ino, n)| {
                *ino != ROOT_INO
                    && n.linked
                    && n.open == 0
                    && n.content.is_none()
                    && !n.meta_dirty
                    && n.children.is_empty()
                    && !being_read.contains(&n.parent)
                    && n.validated.is_none_or(|v| now.duration_since(v) >= grace)
            })
            .map(|(ino, n)| (n.lookups > 0, n.validated, ino))
            .collect();
        unused.sort_unstable();
        let excess = self.nodes.len() - (limit - limit / 10);
        for (held, _, ino) in unused.into_iter().take(excess) {
            let node = self.nodes.get(ino).expect("just seen");
            if held {
                evicted.release.push((node.parent, node.name.clone()));
                continue;
            }
            let node = self.nodes.remove(ino).expect("just seen");
            if let Some(p) = self.nodes.get_mut(node.parent) {
                p.children.remove_if(&node.name, ino);
            }
            evicted.parents.push(node.parent);
        }
        self.nodes.give_back_empty_chunks();
        evicted.parents.sort_unstable();
        evicted.parents.dedup();
        evicted
    }

    /// How many nodes the table holds.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Every node (for draining pending uploads).
    pub fn all(&self) -> impl Iterator<Item = (Ino, &Node)> {
        self.nodes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(kind: Kind) -> Stat {
        Stat {
            kind,
            size: 3,
            mtime: SystemTime::UNIX_EPOCH,
            etag: None,
            remote: true,
            meta: None,
        }
    }

    #[test]
    fn paths_follow_renamed_directories() {
        let mut t = InodeTable::new(SystemTime::UNIX_EPOCH);
        let now = Instant::now();
        let a = t.upsert(ROOT_INO, "a", stat(Kind::Dir), now);
        let f = t.upsert(a, "f", stat(Kind::File), now);
        assert_eq!(t.path(f).unwrap(), "a/f");
        let b = t.upsert(ROOT_INO, "b", stat(Kind::Dir), now);
        t.rename(a, b, "moved");
        assert_eq!(t.path(f).unwrap(), "b/moved/f");
        assert_eq!(t.child(ROOT_INO, "a"), None);
    }

    #[test]
    fn same_name_and_kind_keeps_the_inode_other_kind_replaces_it() {
        let mut t = InodeTable::new(SystemTime::UNIX_EPOCH);
        let now = Instant::now();
        let f = t.upsert(ROOT_INO, "x", stat(Kind::File), now);
        t.get_mut(f).unwrap().lookups = 1;
        assert_eq!(t.upsert(ROOT_INO, "x", stat(Kind::File), now), f);
        let d = t.upsert(ROOT_INO, "x", stat(Kind::Dir), now);
        assert_ne!(d, f);
        assert!(!t.get(f).unwrap().linked, "the old file node is unlinked");
        assert_eq!(t.path(f), None);
    }

    #[test]
    fn forgotten_unlinked_nodes_are_dropped() {
        let mut t = InodeTable::new(SystemTime::UNIX_EPOCH);
        let f = t.upsert(ROOT_INO, "f", stat(Kind::File), Instant::now());
        t.get_mut(f).unwrap().lookups = 2;
        t.unlink(ROOT_INO, "f");
        assert!(t.get(f).is_some(), "kernel still holds it");
        t.forget(f, 2);
        assert!(t.get(f).is_none());
    }
}

#[cfg(test)]
mod eviction {
    use super::*;
    use std::time::Duration;

    fn file() -> Stat {
        Stat {
            kind: Kind::File,
            size: 1,
            mtime: SystemTime::UNIX_EPOCH,
            etag: None,
            remote: true,
            meta: None,
        }
    }

    /// A table with directory `d` holding `n` files confirmed `age` ago.
    fn table(n: usize, age: Duration) -> (InodeTable, Ino) {
        let mut t = InodeTable::new(SystemTime::UNIX_EPOCH);
        let then = Instant::now() - age;
        let dir = Stat {
            kind: Kind::Dir,
            ..file()
        };
        let d = t.upsert(ROOT_INO, "d", dir, then);
        for i in 0..n {
            t.upsert(d, &format!("f{i:03}"), file(), then);
        }
        (t, d)
    }

    #[test]
    fn past_the_limit_names_nothing_holds_go_least_recently_confirmed_first() {
        let (mut t, d) = table(100, Duration::from_secs(60));
        let recent = t.upsert(
            d,
            "recent",
            file(),
            Instant::now() - Duration::from_secs(30),
        );
        let held = t.child(d, "f050").unwrap();
        t.get_mut(held).unwrap().lookups = 1;
        assert_eq!(t.node_count(), 103);
        assert_eq!(t.evict(50, Duration::from_secs(5)).parents, vec![d]);
        assert_eq!(t.node_count(), 45, "a tenth below the limit");
        assert_eq!(t.child(d, "f050"), Some(held), "the kernel holds it");
        assert!(t.child(d, "recent").is_some_and(|i| i == recent));
        assert!(t.child(d, "f000").is_none(), "the oldest went first");
        assert_eq!(t.path(held).as_deref(), Some("d/f050"));
    }

    #[test]
    fn the_slots_of_the_names_let_go_give_their_memory_back() {
        let (mut t, _) = table(5000, Duration::from_secs(60));
        assert_eq!(t.nodes.chunks_in_use(), 5);
        t.evict(100, Duration::from_secs(5));
        assert_eq!(t.node_count(), 90);
        // The root and `d` in the first chunk, the 88 newest files in the last.
        assert_eq!(t.nodes.chunks_in_use(), 2);
    }

    #[test]
    fn names_the_kernel_holds_are_named_for_release_when_nothing_else_can_go() {
        let (mut t, d) = table(100, Duration::from_secs(60));
        let inos: Vec<Ino> = t.get(d).unwrap().child_inos().collect();
        for ino in &inos {
            t.get_mut(*ino).unwrap().lookups = 1;
        }
        let recent = t.child(d, "f099").unwrap();
        t.get_mut(recent).unwrap().validated = Some(Instant::now());
        let evicted = t.evict(50, Duration::from_secs(5));
        assert!(evicted.parents.is_empty());
        assert_eq!(t.node_count(), 102, "the kernel holds them all");
        assert_eq!(evicted.release.len(), 102 - 45, "as many as are too many");
        assert!(evicted
            .release
            .iter()
            .all(|(p, name)| *p == d && &**name != "f099"));
        // Forgotten by the kernel, they go at the next trim.
        for ino in &inos {
            t.forget(*ino, 1);
        }
        assert_eq!(t.evict(50, Duration::from_secs(5)).parents, vec![d]);
        assert_eq!(t.node_count(), 45);
    }

    #[test]
    fn within_the_limit_or_the_grace_or_while_the_directory_is_read_nothing_goes() {
        let (mut t, _) = table(100, Duration::from_secs(60));
        assert_eq!(t.evict(200, Duration::from_secs(5)), Default::default());
        assert_eq!(t.node_count(), 102);

        let (mut t, _) = table(100, Duration::ZERO);
        assert_eq!(t.evict(10, Duration::from_secs(5)), Default::default());
        assert_eq!(t.node_count(), 102, "all just confirmed");

        let (mut t, d) = table(100, Duration::from_secs(60));
        t.get_mut(d).unwrap().open = 1;
        assert_eq!(t.evict(10, Duration::from_secs(5)), Default::default());
        assert_eq!(t.node_count(), 102, "a handle serves them");
    }
}

#[cfg(test)]
mod size {
    use std::sync::Arc;

    #[test]
    fn objects_with_the_same_metadata_share_one_value() {
        let a = super::Meta::shared(super::Meta::default());
        assert!(Arc::ptr_eq(&a, &super::Meta::none()));
        let typed = || super::Meta {
            content_type: Some("text/plain".into()),
            ..Default::default()
        };
        let b = super::Meta::shared(typed());
        assert!(!Arc::ptr_eq(&b, &a));
        assert!(
            Arc::ptr_eq(&super::Meta::shared(typed()), &b),
            "equal metadata one after the other is one value"
        );
    }

    /// A table of a million entries must fit in a few hundred MiB (issue 19: ~300 bytes an
    /// entry with the node's slot, the name and the parent's `children`; see
    /// tests/entry_memory.rs).
    #[test]
    fn a_node_stays_small() {
        let size = std::mem::size_of::<super::Node>();
        assert!(size <= 144, "a node takes {size} bytes");
    }
}
