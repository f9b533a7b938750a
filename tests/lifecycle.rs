//! Starting and stopping: bad input is refused with one line and exit status 2 and nothing is
//! mounted; `check` reports each step; every way of unmounting leaves no mount and no daemon.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Runs a mount that must fail: exit 2 within a minute, one stderr line containing `expect`,
/// and no mount added at the mountpoint (the last argument). `RUST_LOG` is left unset, so a
/// `--foreground` run logs at the default level.
fn refused(server: &Server, mount_args: &[String], env: &[(&str, &str)], expect: &str) {
    let mountpoint = Path::new(mount_args.last().unwrap());
    let mounts_before = mount_count(mountpoint);
    let mut child = Command::new(&*BIN)
        .args(mount_args)
        .envs(&server.env)
        .env_remove("RUST_LOG")
        .env_remove("BUCKETFS_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = eventually(Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    if !exited {
        // A foreground mount that was not refused serves until it is stopped.
        let _ = child.kill();
        let _ = Command::new("umount").arg("-l").arg(mountpoint).status();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        exited,
        "{mount_args:?} was not refused: it mounted and served"
    );
    assert_eq!(out.status.code(), Some(2), "{mount_args:?}: {stderr}");
    assert!(
        stderr.contains(expect),
        "{mount_args:?}: expected `{expect}` in: {stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert_eq!(
        mount_count(mountpoint),
        mounts_before,
        "{mount_args:?}: nothing mounted"
    );
}

/// How many mounts are stacked at `path`.
fn mount_count(path: &Path) -> usize {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    let p = path.display().to_string();
    mounts
        .lines()
        .filter(|l| l.split(' ').nth(1) == Some(p.as_str()))
        .count()
}

/// A tmpfs mounted on a temporary directory for one test, lazily unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(options: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs -o {options}");
        Tmpfs { dir }
    }

    /// A 1 MiB tmpfs filled up: directories and empty files can be made, data cannot.
    fn full() -> Tmpfs {
        let t = Tmpfs::mount("size=1M");
        assert!(fs::write(t.path().join("filler"), vec![0u8; 2 << 20]).is_err());
        assert!(
            fs::write(t.path().join("probe"), [0u8; 4096]).is_err(),
            "full"
        );
        t
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Lazily unmounts whatever a test left mounted at a directory when dropped.
struct DetachOnDrop<'a>(&'a Path);

impl Drop for DetachOnDrop<'_> {
    fn drop(&mut self) {
        while is_mounted(self.0) {
            if !Command::new("umount")
                .arg("-l")
                .arg(self.0)
                .status()
                .is_ok_and(|s| s.success())
            {
                break;
            }
        }
    }
}

#[test]
fn bad_input_exits_2_with_a_message_and_mounts_nothing() {
    let server = Server::running();
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mp");
    fs::create_dir(&mp).unwrap();
    let mp = mp.display().to_string();
    let bucket = format!("s3://{}", server.bucket_name());
    let cfg = |name: &str, text: &str| {
        let p = dir.path().join(name);
        fs::write(&p, text).unwrap();
        p.display().to_string()
    };

    let unknown = cfg("unknown.toml", "region = \"us-east-1\"\nregoin = \"x\"\n");
    refused(
        &server,
        &args(&["mount", &bucket, "--config", &unknown, &mp]),
        &[],
        "regoin",
    );
    let unparsable = cfg("bad.toml", "part_size = \"lots\"\n");
    refused(
        &server,
        &args(&["mount", &bucket, "--config", &unparsable, &mp]),
        &[],
        "part_size",
    );
    refused(
        &server,
        &args(&["mount", &mp]),
        &[("S3_BUCKET", ""), ("BUCKETFS_BUCKET", "")],
        "no bucket",
    );
    refused(
        &server,
        &args(&["mount", &bucket, "--endpoint", "ftp://x", &mp]),
        &[],
        "bad endpoint URL",
    );
    let missing = dir.path().join("missing").display().to_string();
    refused(
        &server,
        &args(&["mount", &bucket, &missing]),
        &[],
        "does not exist",
    );
    let file = cfg("plainfile", "");
    refused(
        &server,
        &args(&["mount", &bucket, &file]),
        &[],
        "not a directory",
    );
    refused(
        &server,
        &args(&["mount", &bucket, "--part-size", "1MiB", &mp]),
        &[],
        "5 MiB",
    );
    refused(
        &server,
        &args(&[
            "mount",
            &bucket,
            "--endpoint",
            "http://127.0.0.1:9",
            "--max-retries",
            "1",
            &mp,
        ]),
        &[],
        "cannot reach",
    );
    refused(
        &server,
        &args(&["mount", &bucket, &mp]),
        &[(
            "AWS_SECRET_ACCESS_KEY",
            "0000000000000000000000000000000000000000000000000000000000000000",
        )],
        "credentials were rejected",
    );
    refused(
        &server,
        &args(&["mount", &format!("{bucket}-does-not-exist"), &mp]),
        &[],
        "does not exist",
    );
}

#[test]
fn check_reports_every_step_and_fails_with_a_hint() {
    let server = Server::running();
    let prefix = server.unique_prefix("check");
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let out = bucketfs(&server, &args(&["check", &source]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for step in ["credentials", "bucket and list", "put", "get", "delete"] {
        assert!(
            stdout.contains(&format!("ok    {step}")),
            "{step} in {stdout}"
        );
    }
    assert!(
        stdout.contains("ok    conditional writes: IGNORED"),
        "Garage 2.5 ignores If-None-Match, and check says so: {stdout}"
    );
    assert!(
        server.keys(&format!("{prefix}/")).is_empty(),
        "the temporary keys are removed"
    );

    let out = Command::new(&*BIN)
        .args(["check", &source])
        .envs(&server.env)
        .env("AWS_ACCESS_KEY_ID", "GK000000000000000000000000")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains("check"), "a hint: {stdout}");
}

#[test]
fn credentials_come_from_the_profile_in_the_shared_credentials_file() {
    let server = Server::running();
    let home = tempfile::tempdir().unwrap();
    fs::create_dir(home.path().join(".aws")).unwrap();
    fs::write(
        home.path().join(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id = GK000000000000000000000000\naws_secret_access_key = wrong\n\n[bucketfs-test]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            server.env["AWS_ACCESS_KEY_ID"], server.env["AWS_SECRET_ACCESS_KEY"]
        ),
    )
    .unwrap();
    let source = format!(
        "s3://{}/{}",
        server.bucket_name(),
        server.unique_prefix("profile")
    );
    let run = |profile: &str| {
        Command::new(&*BIN)
            .args(["check", &source])
            .envs(&server.env)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("HOME", home.path())
            .env("AWS_PROFILE", profile)
            .output()
            .unwrap()
    };
    let good = run("bucketfs-test");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );
    let bad = run("default");
    assert!(!bad.status.success(), "the other profile's keys are wrong");
}

fn succeeds(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn eventually_succeeds(mut run: impl FnMut() -> Output) {
    let mut last = run();
    for _ in 0..30 {
        if last.status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
        last = run();
    }
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
}

fn gone(pid: i32) -> bool {
    eventually(Duration::from_secs(10), || {
        fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z"))
            .unwrap_or(true)
    })
}

#[test]
fn every_way_of_unmounting_ends_the_daemon_after_uploading() {
    let server = Server::running();
    for how in [
        "bucketfs-unmount",
        "umount",
        "fusermount3",
        "SIGTERM",
        "SIGINT",
    ] {
        let prefix = server.unique_prefix("unmount");
        let m = Mount::new(
            &server,
            &format!("s3://{}/{prefix}", server.bucket_name()),
            &[],
        );
        let pid = daemon_pid(&m.dir).expect("daemon running");
        fs::write(m.path("f"), how).unwrap();
        let dir = m.dir.display().to_string();
        match how {
            "bucketfs-unmount" => succeeds(Command::new(&*BIN).args(["unmount", &dir])),
            // The kernel keeps the mount busy until the daemon answered the RELEASE of the file
            // just closed, so the system tools may need a second try, as a user would.
            "umount" => eventually_succeeds(|| Command::new("umount").arg(&dir).output().unwrap()),
            "fusermount3" => eventually_succeeds(|| {
                Command::new("fusermount3")
                    .args(["-u", &dir])
                    .output()
                    .unwrap()
            }),
            signal => {
                let sig = if signal == "SIGTERM" {
                    libc::SIGTERM
                } else {
                    libc::SIGINT
                };
                assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
            }
        }
        assert!(gone(pid), "{how}: the daemon exits");
        assert!(!is_mounted(&m.dir), "{how}: nothing stays mounted");
        assert_eq!(server.get(&format!("{prefix}/f")).unwrap(), how.as_bytes());
        m.unmount();
    }
}

#[test]
fn the_local_backend_passes_the_file_tests() {
    let server = Server::running();
    let root = tempfile::tempdir().unwrap();
    let source = format!("file://{}", root.path().display());
    let m = Mount::new(&server, &source, &[]);
    for (name, len) in [
        ("zero", 0),
        ("one", 1),
        ("five-mib-plus-one", 5 * (1 << 20) + 1),
    ] {
        let data = random_bytes(len);
        fs::write(m.path(name), &data).unwrap();
        assert_eq!(
            sha256(&fs::read(root.path().join(name)).unwrap()),
            sha256(&data)
        );
        assert_eq!(sha256(&fs::read(m.path(name)).unwrap()), sha256(&data));
    }
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("d/x"), b"x").unwrap();
    assert_eq!(
        fs::remove_dir(m.path("d")).unwrap_err().raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    fs::rename(m.path("d"), m.path("e")).unwrap();
    assert_eq!(fs::read(root.path().join("e/x")).unwrap(), b"x");
    fs::remove_file(m.path("e/x")).unwrap();
    fs::remove_dir(m.path("e")).unwrap();
    assert!(!root.path().join("e").exists());
}

#[test]
fn start_up_errors_in_the_foreground_print_one_line() {
    let server = Server::running();
    let mp = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (mp, cache) = (
        mp.path().display().to_string(),
        cache.path().display().to_string(),
    );
    let bucket = format!("s3://{}", server.bucket_name());
    let missing = format!("{bucket}-does-not-exist");
    refused(
        &server,
        &args(&[
            "mount",
            "--foreground",
            "--cache-dir",
            &cache,
            &missing,
            &mp,
        ]),
        &[],
        "does not exist",
    );
    refused(
        &server,
        &args(&["mount", "--foreground", "--cache-dir", &cache, &bucket, &mp]),
        &[(
            "AWS_SECRET_ACCESS_KEY",
            "0000000000000000000000000000000000000000000000000000000000000000",
        )],
        "credentials were rejected",
    );
}

#[test]
fn a_cache_dir_that_cannot_be_written_is_refused_before_mounting() {
    let server = Server::running();
    let mp = tempfile::tempdir().unwrap();
    let _cleanup = DetachOnDrop(mp.path());
    let mp = mp.path().display().to_string();
    let source = format!(
        "s3://{}/{}",
        server.bucket_name(),
        server.unique_prefix("cachedir")
    );
    let full = Tmpfs::full();
    let read_only = Tmpfs::mount("ro,size=1M");
    let plain = tempfile::tempdir().unwrap();
    let file = plain.path().join("file");
    fs::write(&file, "").unwrap();
    for cache in [full.path(), read_only.path(), &file.join("cache")] {
        let cache = cache.display().to_string();
        for mode in [None, Some("--foreground")] {
            let mut mount = args(&["mount", &source, "--cache-dir", &cache]);
            mount.extend(mode.map(String::from));
            mount.push(mp.clone());
            refused(&server, &mount, &[], "cache directory");
        }
    }
}

/// Writes a file through the mount at `mp`, reads it back, finds it in the bucket and
/// unmounts with `bucketfs unmount`.
fn serves_then_unmounts(server: &Server, mp: &Path, prefix: &str, name: &str) {
    fs::write(mp.join(name), name).unwrap_or_else(|e| panic!("{name}: write: {e}"));
    assert_eq!(fs::read(mp.join(name)).unwrap(), name.as_bytes());
    assert_eq!(
        server.get(&format!("{prefix}/{name}")).unwrap(),
        name.as_bytes()
    );
    succeeds(Command::new(&*BIN).arg("unmount").arg(mp));
    assert!(!is_mounted(mp), "{name}: unmounted");
}

fn dev_full() -> fs::File {
    fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
}

#[test]
fn a_log_or_stderr_that_cannot_be_written_does_not_stop_the_daemon() {
    let server = Server::running();
    let full = Tmpfs::full();
    let prefix = server.unique_prefix("fulllog");
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().display().to_string();

    // In the background, logging to a file on a full filesystem.
    let mp = tempfile::tempdir().unwrap();
    let _cleanup = DetachOnDrop(mp.path());
    let log = full.path().join("bucketfs.log").display().to_string();
    let out = bucketfs(
        &server,
        &args(&[
            "mount",
            &source,
            &mp.path().display().to_string(),
            "--cache-dir",
            &cache,
            "--log-file",
            &log,
            "--write-back-delay",
            "0",
        ]),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serves_then_unmounts(&server, mp.path(), &prefix, "background");

    // In the foreground, with stderr on /dev/full.
    let mp = tempfile::tempdir().unwrap();
    let _cleanup = DetachOnDrop(mp.path());
    let mut daemon = Command::new(&*BIN)
        .args(["mount", "--foreground", &source])
        .arg(mp.path())
        .args(["--cache-dir", &cache, "--write-back-delay", "0"])
        .envs(&server.env)
        .env("RUST_LOG", "bucketfs=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(dev_full())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || is_mounted(mp.path())),
        "the foreground daemon mounts"
    );
    serves_then_unmounts(&server, mp.path(), &prefix, "foreground");
    assert!(
        eventually(Duration::from_secs(30), || daemon
            .try_wait()
            .unwrap()
            .is_some()),
        "the daemon exits after unmounting"
    );
    assert_eq!(daemon.wait().unwrap().code(), Some(0));

    // A start that fails still exits 2, not in a panic.
    let status = Command::new(&*BIN)
        .args(["mount", "--foreground", "--cache-dir", &cache])
        .arg(format!("s3://{}-does-not-exist", server.bucket_name()))
        .arg(mp.path())
        .envs(&server.env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(dev_full())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
    assert!(!is_mounted(mp.path()));
}

#[test]
fn mounting_over_a_live_mount_is_refused_and_the_mount_keeps_serving() {
    let server = Server::running();
    let prefix = server.unique_prefix("stacked");
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let other = format!(
        "s3://{}/{}",
        server.bucket_name(),
        server.unique_prefix("other")
    );
    let m = Mount::new(&server, &source, &[]);
    let pid = daemon_pid(&m.dir).expect("daemon running");
    let dir = m.dir.display().to_string();
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().display().to_string();
    // The mount is empty (a fresh prefix): only its being mounted can refuse these.
    for attempt in [
        args(&["mount", &source, "--cache-dir", &cache, &dir]),
        args(&[
            "mount",
            &other,
            "--allow-non-empty",
            "--cache-dir",
            &cache,
            &dir,
        ]),
        args(&["mount", "--foreground", &other, "--cache-dir", &cache, &dir]),
    ] {
        refused(&server, &attempt, &[], "already mounted");
    }
    fs::write(m.path("f"), b"still served").unwrap();
    assert_eq!(fs::read(m.path("f")).unwrap(), b"still served");
    assert_eq!(server.get(&format!("{prefix}/f")).unwrap(), b"still served");
    let status = bucketfs(&server, &args(&["status", &dir]));
    let report = String::from_utf8_lossy(&status.stdout);
    assert!(
        report.contains(&format!("(pid {pid})")),
        "status answers for the first daemon: {report}"
    );
    let dir = m.dir.clone();
    m.unmount();
    assert!(gone(pid), "the daemon exits");
    assert!(!is_mounted(&dir), "one unmount leaves nothing mounted");
}

#[test]
fn a_non_empty_mountpoint_is_refused_unless_allow_non_empty_is_given() {
    let server = Server::running();
    let prefix = server.unique_prefix("nonempty");
    server.put(&format!("{prefix}/remote"), b"remote");
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let mp = tempfile::tempdir().unwrap();
    let _cleanup = DetachOnDrop(mp.path());
    fs::write(mp.path().join("local"), b"local").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().display().to_string();
    let mp_s = mp.path().display().to_string();
    refused(
        &server,
        &args(&["mount", &source, "--cache-dir", &cache, &mp_s]),
        &[],
        "--allow-non-empty",
    );
    let names = || -> Vec<String> {
        fs::read_dir(mp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    // The flag, then its environment name.
    for via_env in [false, true] {
        let mut mount = Command::new(&*BIN);
        mount
            .args(["mount", "--cache-dir", &cache, &source])
            .envs(&server.env)
            .env_remove("BUCKETFS_CONFIG");
        if via_env {
            mount.env("BUCKETFS_ALLOW_NON_EMPTY", "1");
        } else {
            mount.arg("--allow-non-empty");
        }
        succeeds(mount.arg(&mp_s));
        assert_eq!(
            names(),
            ["remote"],
            "env {via_env}: the mount hides the files"
        );
        succeeds(Command::new(&*BIN).args(["unmount", &mp_s]));
        assert_eq!(names(), ["local"], "env {via_env}: and they are back after");
    }
}
