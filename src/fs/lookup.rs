//! Finding one name in the store. A name is a directory when any key lies under `name/`
//! (a `dir/` marker or an implicit prefix), else a file when the object `name` exists. Both
//! requests run concurrently; the directory wins when both exist (see `names`).

use std::time::{Instant, SystemTime};

use super::error::{FsError, FsResult};
use super::inode::{Ino, Kind, Stat};
use super::Fs;
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
        let marker = list.objects.iter().find(|o| o.key == sub);
        return Ok(Some(Stat {
            kind: Kind::Dir,
            size: 0,
            mtime: marker.map(|m| m.last_modified).unwrap_or(dir_mtime),
            etag: None,
            remote: marker.is_some(),
        }));
    }
    match head {
        Ok(info) => Ok(Some(Stat {
            kind: Kind::File,
            size: info.size,
            mtime: info.last_modified,
            etag: info.etag,
            remote: true,
        })),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Fs {
    /// The inode for `parent/name`, from the table while fresh, else from the store.
    /// Takes no kernel reference.
    pub(super) async fn resolve(&self, parent: Ino, name: &str) -> FsResult<Ino> {
        {
            let t = self.table();
            let p = t.get(parent).ok_or(FsError::NotFound)?;
            if p.kind != Kind::Dir {
                return Err(FsError::NotDir);
            }
            match t.child(parent, name) {
                Some(ino) => {
                    let node = t.get(ino).expect("child points at a node");
                    if self.is_fresh(node, Instant::now()) {
                        return Ok(ino);
                    }
                }
                // A fresh complete listing of the parent, or a recent miss, says it is absent.
                None if self.listed.contains(&parent) => return Err(FsError::NotFound),
                None if self.negative.contains(&(parent, name.to_string())) => {
                    return Err(FsError::NotFound)
                }
                None => {}
            }
        }
        let dir_prefix = self.dir_prefix(parent)?;
        match stat_name(&*self.store, &dir_prefix, name, self.started).await? {
            Some(stat) => Ok(self.table().upsert(parent, name, stat, Instant::now())),
            None => {
                let mut t = self.table();
                if let Some(ino) = t.child(parent, name) {
                    if t.get(ino).is_some_and(|n| n.content.is_some()) {
                        return Ok(ino); // written here, not uploaded yet
                    }
                    t.unlink(parent, name);
                }
                self.negative.insert((parent, name.to_string()));
                Err(FsError::NotFound)
            }
        }
    }

    /// A name now exists here (created by this mount): forget that it was missing.
    pub(super) fn name_appeared(&self, parent: Ino, name: &str) {
        self.negative.remove(&(parent, name.to_string()));
    }
}
