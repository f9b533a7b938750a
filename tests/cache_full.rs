//! A cache directory whose filesystem fills up while a file is written: the writer gets
//! ENOSPC, nothing new appears under the key (an existing object keeps its content, a
//! streamed prefix is never completed), the daemon keeps serving, and writes work again once
//! there is room. The cache directory is a 64 MiB tmpfs (tests run as root). And the same
//! for the directory the local backend serves: its own ENOSPC reaches the writer.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs (run the integration tests as root)");
        Tmpfs { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// `dd` of 256 MiB of random data into `path`, synced: must fail with ENOSPC.
fn dd_fails_with_enospc(path: &Path) {
    let out = Command::new("dd")
        .arg("if=/dev/urandom")
        .arg(format!("of={}", path.display()))
        .args(["bs=1M", "count=256", "conv=fsync"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "dd must fail: {stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
}

#[test]
fn a_write_that_fills_the_cache_leaves_no_partial_object_and_the_mount_keeps_working() {
    let server = Server::running();
    let prefix = server.unique_prefix("cache-full");
    let cache = Tmpfs::new("64M");
    let cache_arg = cache.path().display().to_string();
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--cache-dir", &cache_arg, "--write-back-delay", "0.5"],
    );
    let old = random_bytes(100_000);
    fs::write(m.path("old.bin"), &old).unwrap();
    assert!(eventually(std::time::Duration::from_secs(10), || server
        .get(&format!("{prefix}/old.bin"))
        .is_some()));

    dd_fails_with_enospc(&m.path("big.bin"));
    dd_fails_with_enospc(&m.path("old.bin"));
    std::thread::sleep(std::time::Duration::from_secs(2)); // past the write-back delay

    assert_eq!(
        server.head(&format!("{prefix}/big.bin")),
        None,
        "no partial object"
    );
    assert_eq!(
        server.get(&format!("{prefix}/old.bin")),
        Some(old.clone()),
        "the existing object keeps its content"
    );
    assert!(
        server.multipart_uploads(&prefix).is_empty(),
        "no multipart upload left behind"
    );
    assert!(
        !m.path("big.bin").exists(),
        "a new file that was never stored is gone"
    );
    assert_eq!(fs::read(m.path("old.bin")).unwrap(), old);

    // Room again (the failed files' staged bytes were freed): writes work.
    fs::write(m.path("after.txt"), b"room again").unwrap();
    m.unmount();
    assert_eq!(
        server.get(&format!("{prefix}/after.txt")).as_deref(),
        Some(&b"room again"[..])
    );
}

/// The upload of a file into a full local backend directory fails with that file system's
/// errno, ENOSPC, not a generic EIO: the store keeps the I/O error, and `fuse::errno` passes
/// its errno on. Staging is in the (roomy) cache directory, so the write itself succeeds and
/// the error comes at fsync, from the upload.
#[test]
fn a_full_local_backend_directory_gives_the_writer_enospc() {
    let server = Server::running();
    let root = Tmpfs::new("1M");
    let m = Mount::new(&server, &format!("file://{}", root.path().display()), &[]);
    fs::write(m.path("small.txt"), b"fits").unwrap();

    let mut big = fs::File::create(m.path("big.bin")).unwrap();
    big.write_all(&random_bytes(3 << 20)).unwrap();
    let err = big.sync_all().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    drop(big);

    // Nothing of it in the directory; once it is removed, the mount works as before.
    assert!(!root.path().join("big.bin").exists());
    fs::remove_file(m.path("big.bin")).unwrap();
    fs::write(m.path("after.txt"), b"room again").unwrap();
    m.unmount();
    assert_eq!(fs::read(root.path().join("small.txt")).unwrap(), b"fits");
    assert_eq!(
        fs::read(root.path().join("after.txt")).unwrap(),
        b"room again"
    );
}
