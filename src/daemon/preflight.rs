//! Checks made before anything is mounted, so a start that cannot work is refused with one
//! line and leaves the system as it was: the mountpoint is a directory, is not already served
//! by a FUSE daemon (a second mount would stack on top of it), and is empty unless the user
//! accepts hiding its files (a `/dev/fd/N` mountpoint: N is an open FUSE device); the cache
//! directory can really be written (a full or read-only filesystem lets directories and empty
//! files be created, then fails the first write).

use std::fmt;
use std::io::Write;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

/// Why a mount is refused before it starts.
#[derive(Debug)]
pub enum Refusal {
    MissingMountpoint(PathBuf),
    NotADirectory(PathBuf),
    /// A FUSE mount whose daemon is gone (`ENOTCONN`).
    DeadMount(PathBuf),
    UnusableMountpoint(PathBuf, std::io::Error),
    /// A FUSE filesystem is already mounted there: (mountpoint, fstype, source).
    AlreadyMounted(PathBuf, String, String),
    NotEmpty(PathBuf),
    /// `/dev/fd/N` where N is not an open FUSE device.
    NotAFuseDescriptor(PathBuf),
    /// The cache directory cannot be written: (cache dir, the error of the write).
    CacheDirNotWritable(PathBuf, std::io::Error),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::MissingMountpoint(p) => write!(
                f,
                "mountpoint {} does not exist: create it with mkdir -p {}",
                p.display(),
                p.display()
            ),
            Refusal::NotADirectory(p) => write!(
                f,
                "mountpoint {} is not a directory: mount on an empty directory",
                p.display()
            ),
            Refusal::DeadMount(p) => write!(
                f,
                "mountpoint {} is a FUSE mount whose daemon has stopped: run `umount {}` first",
                p.display(),
                p.display()
            ),
            Refusal::UnusableMountpoint(p, e) => {
                write!(f, "cannot use mountpoint {}: {e}", p.display())
            }
            Refusal::AlreadyMounted(p, fstype, source) => write!(
                f,
                "{} is already mounted ({fstype}, {source}): unmount it first with `bucketfs unmount {}` (or `umount`), or choose another mountpoint",
                p.display(),
                p.display()
            ),
            Refusal::NotEmpty(p) => write!(
                f,
                "mountpoint {} is not empty and the mount would hide its files: use an empty directory, or pass --allow-non-empty",
                p.display()
            ),
            Refusal::NotAFuseDescriptor(p) => write!(
                f,
                "{} is not an open /dev/fuse descriptor: pass the descriptor of a FUSE device \
                 that is already mounted, or a directory",
                p.display()
            ),
            Refusal::CacheDirNotWritable(p, e) => write!(
                f,
                "cache directory {} cannot be written ({e}): free space there or choose another with --cache-dir",
                p.display()
            ),
        }
    }
}

/// The descriptor a `/dev/fd/N` mountpoint names: a FUSE device that a privileged parent
/// opened and mounted (as container and Kubernetes drivers do), served as it is. `None` for
/// any other path.
pub fn fuse_fd(path: &Path) -> Option<RawFd> {
    path.to_str()?.strip_prefix("/dev/fd/")?.parse().ok()
}

/// True if `fd` is open on the FUSE device (`/dev/fuse`, character device 10:229).
fn is_fuse_device(fd: RawFd) -> bool {
    // SAFETY: fstat only writes the struct it is given; a closed fd fails with EBADF.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::fstat(fd, &mut st) } == 0;
    ok && st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(10, 229)
}

/// The absolute mountpoint, once it is a directory nothing FUSE is mounted on, and empty
/// unless `allow_non_empty`; or `/dev/fd/N` as it is, once N is open on the FUSE device.
pub fn mountpoint(path: &Path, allow_non_empty: bool) -> Result<PathBuf, Refusal> {
    if let Some(fd) = fuse_fd(path) {
        return match is_fuse_device(fd) {
            true => Ok(path.to_path_buf()),
            false => Err(Refusal::NotAFuseDescriptor(path.to_path_buf())),
        };
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Refusal::MissingMountpoint(path.to_path_buf()))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(Refusal::DeadMount(path.to_path_buf()))
        }
        Err(e) => return Err(Refusal::UnusableMountpoint(path.to_path_buf(), e)),
    };
    if !meta.is_dir() {
        return Err(Refusal::NotADirectory(path.to_path_buf()));
    }
    let abs = path
        .canonicalize()
        .map_err(|e| Refusal::UnusableMountpoint(path.to_path_buf(), e))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Refusal::UnusableMountpoint(abs.clone(), e))?;
    if let Some(top) = mounts_at(&mountinfo, &abs).last() {
        if top.is_fuse() {
            return Err(Refusal::AlreadyMounted(
                abs,
                top.fstype.clone(),
                top.source.clone(),
            ));
        }
    }
    if !allow_non_empty {
        let mut entries =
            std::fs::read_dir(&abs).map_err(|e| Refusal::UnusableMountpoint(abs.clone(), e))?;
        if entries.next().is_some() {
            return Err(Refusal::NotEmpty(abs));
        }
    }
    Ok(abs)
}

/// Creates `mount_dir` (the mount's folder in `cache_dir`) and writes, syncs and removes a
/// probe file in it: a full filesystem accepts the directory and an empty file and only
/// refuses data.
pub fn cache_dir_writable(cache_dir: &Path, mount_dir: &Path) -> Result<(), Refusal> {
    let probe = mount_dir.join(format!(".write-probe-{}", std::process::id()));
    let written = std::fs::create_dir_all(mount_dir).and_then(|_| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&probe)?;
        let result = f.write_all(&[0u8; 4096]).and_then(|_| f.sync_all());
        let _ = std::fs::remove_file(&probe);
        result
    });
    written.map_err(|e| Refusal::CacheDirNotWritable(cache_dir.to_path_buf(), e))
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, PartialEq)]
pub struct MountEntry {
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub source: String,
}

impl MountEntry {
    /// A FUSE filesystem: `fuse`, `fuseblk` or `fuse.SUBTYPE` (ours is `fuse.bucketfs`).
    pub fn is_fuse(&self) -> bool {
        self.fstype == "fuse" || self.fstype == "fuseblk" || self.fstype.starts_with("fuse.")
    }
}

/// The mounts at exactly `path`, bottom first (mountinfo lists a mount after the one it
/// covers).
pub fn mounts_at(mountinfo: &str, path: &Path) -> Vec<MountEntry> {
    mountinfo
        .lines()
        .filter_map(parse_mountinfo_line)
        .filter(|m| m.mountpoint == path)
        .collect()
}

/// `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`
fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let (head, tail) = line.split_once(" - ")?;
    let mountpoint = head.split(' ').nth(4)?;
    let mut tail = tail.split(' ');
    let fstype = tail.next()?;
    let source = tail.next().unwrap_or("");
    Some(MountEntry {
        mountpoint: PathBuf::from(unescape(mountpoint)),
        fstype: unescape(fstype),
        source: unescape(source),
    })
}

/// The kernel writes space, tab, newline and backslash in mountinfo as `\NNN` (octal).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /mnt/with\\040space rw,nosuid,nodev,relatime shared:20 - fuse.bucketfs bucketfs:s3://b/p rw,user_id=0,group_id=0,default_permissions
41 22 0:36 / /mnt/plain rw,relatime - tmpfs tmpfs rw,size=1024k
42 41 0:37 / /mnt/plain rw,nosuid,nodev - fuse.bucketfs bucketfs:s3://other/ rw,user_id=0
";

    #[test]
    fn dev_fd_names_a_descriptor_that_must_be_a_fuse_device() {
        assert_eq!(fuse_fd(Path::new("/dev/fd/7")), Some(7));
        assert_eq!(fuse_fd(Path::new("/dev/fd/x")), None);
        assert_eq!(fuse_fd(Path::new("/mnt/fd/7")), None);
        let file = tempfile::tempfile().unwrap();
        let path = format!("/dev/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
        let e = mountpoint(Path::new(&path), false).unwrap_err();
        assert!(matches!(e, Refusal::NotAFuseDescriptor(_)), "{e:?}");
        assert!(
            e.to_string().contains("not an open /dev/fuse descriptor"),
            "{e}"
        );
        let fuse = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse");
        if let Ok(fuse) = fuse {
            let path = format!("/dev/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fuse));
            assert_eq!(
                mountpoint(Path::new(&path), false).unwrap(),
                Path::new(&path)
            );
        }
    }

    #[test]
    fn mountinfo_mountpoints_are_unescaped() {
        let found = mounts_at(MOUNTINFO, Path::new("/mnt/with space"));
        assert_eq!(
            found,
            vec![MountEntry {
                mountpoint: "/mnt/with space".into(),
                fstype: "fuse.bucketfs".into(),
                source: "bucketfs:s3://b/p".into(),
            }]
        );
    }

    #[test]
    fn mounts_at_a_path_are_listed_bottom_first_and_only_there() {
        let found = mounts_at(MOUNTINFO, Path::new("/mnt/plain"));
        let types: Vec<&str> = found.iter().map(|m| m.fstype.as_str()).collect();
        assert_eq!(types, ["tmpfs", "fuse.bucketfs"]);
        assert!(mounts_at(MOUNTINFO, Path::new("/mnt")).is_empty());
    }

    #[test]
    fn a_non_empty_mountpoint_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(mountpoint(dir.path(), false).is_ok());
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let refused = mountpoint(dir.path(), false).unwrap_err();
        assert!(matches!(refused, Refusal::NotEmpty(_)));
        assert!(refused.to_string().contains("--allow-non-empty"));
        assert_eq!(
            mountpoint(dir.path(), true).unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }

    #[test]
    fn a_cache_dir_under_a_regular_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let refused = cache_dir_writable(&file, &file.join("slug")).unwrap_err();
        assert!(matches!(refused, Refusal::CacheDirNotWritable(..)));
        assert!(refused.to_string().contains("--cache-dir"));
        let ok = dir.path().join("cache");
        cache_dir_writable(&ok, &ok.join("slug")).unwrap();
        assert_eq!(
            std::fs::read_dir(ok.join("slug")).unwrap().count(),
            0,
            "the probe is removed"
        );
    }
}
