//! Extended attributes: `user.NAME` is the object's user metadata `x-amz-meta-NAME`
//! (stored like chmod's changes: with a pending upload, else by a copy onto itself), and
//! read-only `s3.*` attributes show what S3 says about the object (ETag, content type,
//! storage class, version id) and whether the file is in the bucket yet (`s3.state`, see
//! `state`). Other namespaces (security, system, trusted) are not supported (ENOTSUP).
//!
//! `listxattr` names only the `user.*` attributes: `s3.*` ones are read by name. Tools that
//! copy every listed attribute (`rsync -X`, `cp --preserve=xattr`, `tar --xattrs`) would
//! otherwise try to remove `s3.*` on the mount (EPERM) and to set them on a local disk (an
//! unknown namespace there), and fail.
//!
//! S3 lowercases metadata names and only carries header-safe text, so names are lowercased
//! and values must be printable ASCII; all user metadata together must fit in S3's 2 KiB.

use super::error::{FsError, FsResult};
use super::Fs;
use crate::names::inode::{Ino, Kind, Node};
use crate::names::posix as metadata;
use crate::store::UserMetadata;

/// `s3.state`: where the file's bytes are (see `fs::state`), on every file and directory.
const STATE: &str = "state";

/// S3's limit on the user metadata of one object (names and values together).
const MAX_METADATA: usize = 2048;

/// `XATTR_CREATE` / `XATTR_REPLACE` of setxattr(2).
const XATTR_CREATE: i32 = 1;
const XATTR_REPLACE: i32 = 2;

/// An attribute name, by namespace.
enum Name<'a> {
    User(String),
    S3(&'a str),
    Other,
}

fn parse(name: &str) -> Name<'_> {
    if let Some(n) = name.strip_prefix("user.") {
        Name::User(n.to_ascii_lowercase())
    } else if let Some(n) = name.strip_prefix("s3.") {
        Name::S3(n)
    } else {
        Name::Other
    }
}

/// Other namespaces (security, system, trusted) are not supported: ENOTSUP, which tools such
/// as `ls` remember per filesystem (GNU ls stops asking every file for its SELinux label and
/// ACLs after the first ENOTSUP; after ENODATA it would ask each file, 20,000 requests for
/// `ls -l` of 10,000 files).
const NO_NAMESPACE: &str = "only user.* and s3.* attributes exist here";

/// True when attribute `name` may exist here (`user.*`, `s3.*`). The adapter answers the rest
/// at once, without a task.
pub fn may_exist(name: &str) -> bool {
    !matches!(parse(name), Name::Other)
}

/// The error for a name outside `user.*` and `s3.*`.
pub fn unsupported() -> FsError {
    FsError::Unsupported(NO_NAMESPACE)
}

/// The `user.*` name (without its prefix) a change of attribute `name` is for.
fn writable_name(name: &str) -> FsResult<String> {
    match parse(name) {
        Name::User(n) => Ok(n),
        Name::S3(_) => Err(FsError::NotPermitted("s3.* attributes are read-only")),
        Name::Other => Err(unsupported()),
    }
}

/// A `user.*` name S3 can carry as `x-amz-meta-NAME` and that no POSIX convention uses.
fn check_user_name(name: &str) -> FsResult<()> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(FsError::Invalid(
            "a user.* attribute name may hold only letters, digits, '-', '_' and '.'",
        ));
    }
    if metadata::is_posix_key(name) {
        return Err(FsError::NotPermitted(
            "this name holds POSIX metadata: use chmod, chown or touch",
        ));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> FsResult<String> {
    let text = std::str::from_utf8(value)
        .ok()
        .filter(|v| v.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .filter(|v| v.trim() == *v)
        .ok_or(FsError::Invalid(
            "S3 metadata values must be printable ASCII without leading or trailing spaces",
        ))?;
    Ok(text.to_string())
}

impl Fs {
    pub async fn getxattr(&self, ino: Ino, name: &str) -> FsResult<Vec<u8>> {
        let name = parse(name);
        if matches!(name, Name::Other) {
            return Err(unsupported());
        }
        self.getattr(ino).await?; // the ETag is current
        if matches!(name, Name::S3(STATE)) {
            let state = self.upload_state(ino).ok_or(FsError::NotFound)?;
            return Ok(state.to_string().into_bytes());
        }
        self.names.ensure_meta(ino).await?;
        let t = self.names.table();
        let node = t.get(ino).ok_or(FsError::NotFound)?;
        let meta = node.meta().cloned().unwrap_or_default();
        let value = match name {
            Name::User(n) => meta.user.get(&n).cloned(),
            Name::S3(n) => self
                .s3_attributes(t.path(ino), node)
                .into_iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v),
            Name::Other => None,
        };
        value.map(String::into_bytes).ok_or(FsError::NoAttribute)
    }

    /// The `user.*` attribute names, each followed by a NUL (listxattr's format). The `s3.*`
    /// attributes are not listed (see the module comment) but `getxattr` answers them.
    pub async fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        self.getattr(ino).await?; // the ETag is current
        self.names.ensure_meta(ino).await?;
        let t = self.names.table();
        let node = t.get(ino).ok_or(FsError::NotFound)?;
        let mut out = Vec::new();
        for name in node.meta().iter().flat_map(|m| m.user.keys()) {
            out.extend_from_slice(format!("user.{name}\0").as_bytes());
        }
        Ok(out)
    }

    pub async fn setxattr(&self, ino: Ino, name: &str, value: &[u8], flags: i32) -> FsResult<()> {
        let user = writable_name(name)?;
        self.check_writable()?;
        check_user_name(&user)?;
        let value = check_value(value)?;
        self.edit_user_metadata(ino, |attrs| {
            let exists = attrs.contains_key(&user);
            if exists && flags & XATTR_CREATE != 0 {
                return Err(FsError::Exists);
            }
            if !exists && flags & XATTR_REPLACE != 0 {
                return Err(FsError::NoAttribute);
            }
            let mut edited = attrs.clone();
            edited.insert(user, value);
            let total: usize = edited.iter().map(|(k, v)| k.len() + v.len()).sum();
            if total > MAX_METADATA {
                return Err(FsError::TooLarge(
                    "S3 stores at most 2 KiB of user metadata per object",
                ));
            }
            *attrs = edited;
            Ok(())
        })
        .await
    }

    pub async fn removexattr(&self, ino: Ino, name: &str) -> FsResult<()> {
        let user = writable_name(name)?;
        self.check_writable()?;
        self.edit_user_metadata(ino, |attrs| match attrs.remove(&user) {
            Some(_) => Ok(()),
            None => Err(FsError::NoAttribute),
        })
        .await
    }

    /// Applies `edit` to the node's `user.*` attributes (known in full first) and stores
    /// them like chmod's changes; an edit that fails changes nothing.
    async fn edit_user_metadata(
        &self,
        ino: Ino,
        edit: impl FnOnce(&mut UserMetadata) -> FsResult<()>,
    ) -> FsResult<()> {
        self.names.ensure_meta(ino).await?;
        {
            let mut t = self.names.table();
            let node = t.get_mut(ino).ok_or(FsError::NotFound)?;
            node.edit_user(edit)?;
        }
        self.store_meta(ino).await
    }

    /// The read-only `s3.*` attributes of an object (directories have none).
    /// (A file not uploaded yet shows the content type its upload will have.) `path` is the
    /// node's path in the table (the caller holds the table).
    fn s3_attributes(&self, path: Option<String>, node: &Node) -> Vec<(&'static str, String)> {
        if node.kind() == Kind::Dir {
            return Vec::new();
        }
        let meta = node.meta().cloned().unwrap_or_default();
        let mut out = Vec::new();
        if let Some(e) = &node.etag() {
            out.push(("etag", e.trim_matches('"').to_string()));
        }
        let content_type = meta.content_type.clone().or_else(|| {
            let key = format!("{}{}", self.names.prefix(), path?);
            self.opts.objects.for_key(&key).content_type
        });
        if let Some(c) = content_type {
            out.push(("content_type", c));
        }
        out.push((
            "storage_class",
            meta.storage_class
                .clone()
                .unwrap_or_else(|| "STANDARD".into()),
        ));
        if let Some(v) = &meta.version_id {
            out.push(("version_id", v.clone()));
        }
        out
    }
}
