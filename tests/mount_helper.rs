//! `mount -t bucketfs` and `/etc/fstab`: mount(8) runs the helper `mount.bucketfs` (or
//! `mount.fuse.bucketfs`) that `scripts/install-mount-helper.sh` links to the binary under
//! test; `-o` options set bucketfs's options, the generic ones are ignored, unknown ones are
//! refused with one line, and mount returns once the mount is live. Also a `/dev/fd/N`
//! mountpoint: a FUSE descriptor opened and mounted by a privileged parent (this test), as
//! container and Kubernetes drivers pass it.
//!
//! Needs root (mount(8) and /sbin); tests run as root here.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::*;

/// Installs the helper links to the binary under test, once per run.
static HELPER: LazyLock<()> = LazyLock::new(|| {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/install-mount-helper.sh"
    );
    let out = Command::new(script).arg(&*BIN).output().unwrap();
    assert!(
        out.status.success(),
        "install-mount-helper.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["mount.bucketfs", "mount.fuse.bucketfs"] {
        let target = std::fs::read_link(Path::new("/sbin").join(name)).unwrap();
        assert_eq!(target, std::fs::canonicalize(&*BIN).unwrap(), "{name}");
    }
});

/// A mountpoint and a cache directory, unmounted (waiting for the daemon) on drop.
struct Place {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Place {
    fn new() -> Place {
        Place {
            dir: tempfile::tempdir().unwrap(),
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if is_mounted(self.path()) {
            // `bucketfs unmount` finds a helper's daemon as any other and waits for it.
            let out = Command::new(&*BIN)
                .arg("unmount")
                .arg(self.path())
                .output()
                .unwrap();
            if !out.status.success() {
                let _ = Command::new("umount").arg("-l").arg(self.path()).status();
            }
        }
    }
}

/// Runs mount(8) with the server's credentials in its environment.
fn mount(server: &Server, args: &[&str]) -> Output {
    LazyLock::force(&HELPER);
    Command::new("mount")
        .args(args)
        .envs(&server.env)
        .env_remove("BUCKETFS_CONFIG")
        .output()
        .unwrap()
}

/// How many mounts are at `path`.
fn mounts_at(path: &Path) -> usize {
    let p = path.display().to_string();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(1) == Some(p.as_str()))
        .count()
}

/// The options column of the mount at `path`.
fn mount_options(path: &Path) -> String {
    let p = path.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(p.as_str()))
        .unwrap_or_else(|| panic!("{p} is not mounted"));
    line.split(' ').nth(3).unwrap().to_string()
}

#[test]
fn mount_t_bucketfs_takes_options_and_a_config_file_and_returns_once_live() {
    let server = Server::running();
    let prefix = server.unique_prefix("helper");
    server.put(&format!("{prefix}/stored.txt"), b"stored before");
    let place = Place::new();
    let config = place.cache.path().join("x.toml");
    std::fs::write(&config, "file_mode = \"0600\"\nwrite_back_delay = 0.0\n").unwrap();
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let options = format!(
        "allow_other,_netdev,nofail,x-systemd.automount,defaults,config={},cache_dir={},metadata_ttl=0.5",
        config.display(),
        place.cache.path().display()
    );
    let out = mount(
        &server,
        &[
            "-t",
            "bucketfs",
            &source,
            &place.path().display().to_string(),
            "-o",
            &options,
        ],
    );
    assert!(
        out.status.success(),
        "mount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Live as soon as mount returns: no waiting.
    assert_eq!(mounts_at(place.path()), 1);
    let read = std::fs::read(place.path().join("stored.txt")).unwrap();
    assert_eq!(read, b"stored before");
    // allow_other from -o, file_mode from the config file named by config=.
    assert!(mount_options(place.path()).contains("allow_other"));
    let mode = std::fs::metadata(place.path().join("stored.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // write_back_delay = 0 (config file): the object is in the bucket once close returns.
    std::fs::write(place.path().join("new.txt"), b"written through mount(8)").unwrap();
    assert_eq!(
        server.get(&format!("{prefix}/new.txt")).as_deref(),
        Some(&b"written through mount(8)"[..])
    );
}

#[test]
fn unknown_mount_options_are_refused_with_one_line_and_nothing_is_mounted() {
    let server = Server::running();
    let place = Place::new();
    let source = format!(
        "s3://{}/{}",
        server.bucket_name(),
        server.unique_prefix("bad")
    );
    let dir = place.path().display().to_string();
    for (options, expect) in [
        (
            "allow_other,part_sise=16MiB",
            "unknown mount option `part_sise`",
        ),
        (
            "part_size=lots",
            "mount option `part_size=lots`: `lots` is not a size",
        ),
        ("secret_key=abc", "mount option `secret_key` is refused"),
        ("noexec", "cannot mount noexec"),
    ] {
        let out = mount(&server, &["-t", "bucketfs", &source, &dir, "-o", options]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{options}: mounted");
        assert!(stderr.contains(expect), "{options}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{options}: {stderr}");
        assert!(!stderr.contains("abc"), "no secret repeated: {stderr}");
        assert_eq!(mounts_at(place.path()), 0, "{options}");
    }
}

#[test]
fn mount_a_mounts_fstab_lines_of_both_spellings_once() {
    let server = Server::running();
    let prefix = server.unique_prefix("fstab");
    let (plain, fuse) = (Place::new(), Place::new());
    let fstab = plain.cache.path().join("fstab");
    let line = |place: &Place, sub: &str, fstype: &str, extra: &str| {
        format!(
            "s3://{}/{prefix}/{sub} {} {fstype} _netdev,nofail,noatime,nodev,nosuid,\
             cache_dir={},write_back_delay=0{extra} 0 0\n",
            server.bucket_name(),
            place.path().display(),
            place.cache.path().display(),
        )
    };
    std::fs::write(
        &fstab,
        format!(
            "# a test fstab\n{}{}",
            line(&plain, "a", "bucketfs", ",allow_other"),
            line(&fuse, "b", "fuse.bucketfs", ",read_only"),
        ),
    )
    .unwrap();
    let fstab = fstab.display().to_string();
    let out = mount(&server, &["-a", "-T", &fstab]);
    assert!(
        out.status.success(),
        "mount -a: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!((mounts_at(plain.path()), mounts_at(fuse.path())), (1, 1));
    std::fs::write(plain.path().join("f"), b"via fstab").unwrap();
    assert_eq!(
        server.get(&format!("{prefix}/a/f")).as_deref(),
        Some(&b"via fstab"[..])
    );
    let e = std::fs::write(fuse.path().join("f"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "read_only from fstab");

    // Again: the lines are mounted already (same source and target), so mount -a skips them.
    let out = mount(&server, &["-a", "-T", &fstab]);
    assert!(
        out.status.success(),
        "second mount -a: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!((mounts_at(plain.path()), mounts_at(fuse.path())), (1, 1));
}

/// Opens /dev/fuse and mounts it at `dir` as a privileged container driver would; returns
/// the descriptor.
fn mount_fuse_descriptor(dir: &Path) -> std::fs::File {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .unwrap();
    let data = CString::new(format!(
        "fd={},rootmode=40000,user_id=0,group_id=0",
        dev.as_raw_fd()
    ))
    .unwrap();
    let target = CString::new(dir.as_os_str().as_bytes()).unwrap();
    let source = CString::new("bucketfs-fd-test").unwrap();
    let fstype = CString::new("fuse.bucketfs").unwrap();
    // SAFETY: valid C strings; mount(2) reads them only.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    assert_eq!(rc, 0, "mount(2): {}", std::io::Error::last_os_error());
    dev
}

#[test]
fn a_dev_fd_mountpoint_serves_the_descriptor_its_parent_mounted() {
    let server = Server::running();
    let prefix = server.unique_prefix("devfd");
    server.put(&format!("{prefix}/hello"), b"over a descriptor");
    let place = Place::new();
    let dev = mount_fuse_descriptor(place.path());
    let fd = dev.as_raw_fd();
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let mountpoint = format!("/dev/fd/{fd}");
    // Drivers run the binary themselves (mount(8) would resolve /dev/fd/N to /dev/fuse).
    let mut cmd = Command::new(&*BIN);
    cmd.args(["mount", &source, &mountpoint, "--write-back-delay", "0"])
        .arg("--cache-dir")
        .arg(place.cache.path())
        .envs(&server.env)
        .env_remove("BUCKETFS_CONFIG");
    // The descriptor goes to bucketfs and on to its background daemon.
    // SAFETY: fcntl on a descriptor of the child's own table, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            match libc::fcntl(fd, libc::F_SETFD, 0) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let out = cmd.output().unwrap();
    drop(dev); // the daemon holds its own copy
    assert!(
        out.status.success(),
        "mount of /dev/fd/N: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(place.path().join("hello")).unwrap(),
        b"over a descriptor"
    );
    std::fs::write(place.path().join("new"), b"written over a descriptor").unwrap();
    assert_eq!(
        server.get(&format!("{prefix}/new")).as_deref(),
        Some(&b"written over a descriptor"[..])
    );

    // The parent unmounts; the daemon sees the session end and exits.
    let pid = daemon_pid(Path::new(&mountpoint)).expect("the daemon runs");
    assert!(Command::new("umount")
        .arg(place.path())
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && started.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !Path::new(&format!("/proc/{pid}/exe")).exists(),
        "the daemon exited"
    );
}
