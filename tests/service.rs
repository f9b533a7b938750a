//! Running as a service: systemd's notify protocol (`READY=1` only once the mount works,
//! `STATUS=` with the pending uploads, `STOPPING=1` and the drain on unmount), `bucketfs
//! status --json`, `--log-format json`, and the completions and man pages of the binary.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Receives notifications until one satisfies `want` (returned), or panics after `timeout`
/// naming everything received.
fn receive_until(
    sock: &UnixDatagram,
    timeout: Duration,
    seen: &mut Vec<String>,
    want: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(deadline - Instant::now()))
            .unwrap();
        let Ok(n) = sock.recv(&mut buf) else { break };
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        seen.push(message.clone());
        if want(&message) {
            return message;
        }
    }
    panic!("no such notification within {timeout:?}; received: {seen:#?}");
}

/// `bucketfs mount --foreground` with `NOTIFY_SOCKET` set, as a `Type=notify` unit runs it.
fn serve_with_notify_socket(
    server: &Server,
    source: &str,
    mountpoint: &Path,
    cache: &Path,
    notify_socket: &str,
) -> std::process::Child {
    Command::new(&*BIN)
        .args(["mount", "--foreground", source])
        .arg(mountpoint)
        .arg("--cache-dir")
        .arg(cache)
        .args(["--write-back-delay", "4"])
        .envs(&server.env)
        .env_remove("BUCKETFS_CONFIG")
        .env("NOTIFY_SOCKET", notify_socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn systemd_hears_ready_once_the_mount_works_then_pending_uploads_then_stopping() {
    let server = Server::running();
    let prefix = server.unique_prefix("notify");
    server.put(&format!("{prefix}/before"), b"already there");
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let mut daemon = serve_with_notify_socket(
        &server,
        &source,
        mnt.path(),
        dir.path(),
        &socket_path.display().to_string(),
    );
    let mut seen = Vec::new();

    // READY=1: at that moment the mountpoint serves the bucket.
    let ready = receive_until(&sock, Duration::from_secs(60), &mut seen, |m| {
        m.contains("READY=1")
    });
    assert!(is_mounted(mnt.path()), "READY=1 before the mount: {seen:?}");
    assert_eq!(
        std::fs::read(mnt.path().join("before")).unwrap(),
        b"already there"
    );
    assert!(
        ready.contains(&format!("MAINPID={}", daemon.id())),
        "{ready}"
    );
    assert!(
        ready.contains("STATUS=pending uploads: 0 files, 0 bytes"),
        "{ready}"
    );

    // A closed file waits 4 s for its upload: STATUS shows it within a couple of seconds.
    let data = vec![7u8; 12_345];
    std::fs::write(mnt.path().join("pending"), &data).unwrap();
    let status = receive_until(&sock, Duration::from_secs(3), &mut seen, |m| {
        m.starts_with("STATUS=pending uploads: 1 files, 12345 bytes")
    });
    assert!(status.contains("oldest waiting"), "{status}");
    assert_eq!(
        server.get(&format!("{prefix}/pending")),
        None,
        "still pending"
    );

    // SIGTERM: STOPPING=1 with the upload still to do, then the drain's end.
    // SAFETY: kill(2) on the daemon's pid.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let stopping = receive_until(&sock, Duration::from_secs(10), &mut seen, |m| {
        m.contains("STOPPING=1")
    });
    assert!(
        stopping.contains("STATUS=unmounting for 0 s; pending uploads: 1 files, 12345 bytes"),
        "{stopping}"
    );
    receive_until(&sock, Duration::from_secs(30), &mut seen, |m| {
        m == "STATUS=unmounted; all uploads finished"
    });
    assert!(daemon.wait().unwrap().success());
    assert_eq!(
        server.get(&format!("{prefix}/pending")).as_deref(),
        Some(&data[..])
    );
}

#[test]
fn an_abstract_notify_socket_is_written_to() {
    use std::os::linux::net::SocketAddrExt;
    let server = Server::running();
    let name = format!("bucketfs-test-notify-{}", rand::random::<u32>());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let source = format!(
        "s3://{}/{}",
        server.bucket_name(),
        server.unique_prefix("abs")
    );
    let mut daemon = serve_with_notify_socket(
        &server,
        &source,
        mnt.path(),
        cache.path(),
        &format!("@{name}"),
    );
    let mut seen = Vec::new();
    receive_until(&sock, Duration::from_secs(60), &mut seen, |m| {
        m.contains("READY=1")
    });
    let out = Command::new(&*BIN)
        .arg("unmount")
        .arg(mnt.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    receive_until(&sock, Duration::from_secs(10), &mut seen, |m| {
        m.contains("STOPPING=1")
    });
    assert!(daemon.wait().unwrap().success());
}

#[test]
fn status_json_reports_pending_uploads_under_stable_names() {
    let server = Server::running();
    let prefix = server.unique_prefix("statusjson");
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--write-back-delay", "30"],
    );
    std::fs::write(m.path("a"), vec![1u8; 1000]).unwrap();
    std::fs::write(m.path("b"), vec![2u8; 24]).unwrap();
    let out = Command::new(&*BIN)
        .args(["status", "--json"])
        .arg(&m.dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["mountpoint"], m.dir.display().to_string());
    assert!(v["pid"].as_u64().is_some_and(|p| p > 0), "{v}");
    assert_eq!(v["pending"]["files"], 2, "{v}");
    assert_eq!(v["pending"]["bytes"], 1024, "{v}");
    assert!(v["pending"]["oldest_age_seconds"].as_u64().is_some(), "{v}");
    assert_eq!(v["not_stored"], serde_json::json!([]));
    assert_eq!(v["conflicts"]["total"], 0);
    assert_eq!(v["recent_failures"], serde_json::json!([]));
    // The text report says the same.
    assert!(
        status(&m).contains("pending uploads: 2 files, 1024 bytes"),
        "{}",
        status(&m)
    );
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let server = Server::running();
    let m = Mount::new(
        &server,
        &format!(
            "s3://{}/{}",
            server.bucket_name(),
            server.unique_prefix("jsonlog")
        ),
        &["--log-format", "json"],
    );
    std::fs::write(m.path("f"), b"x").unwrap();
    let log = m.log_after_unmount();
    let mut messages = Vec::new();
    for line in log.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        messages.push(v["fields"]["message"].as_str().unwrap_or("").to_string());
    }
    assert!(messages.iter().any(|m| m == "mounted"), "{messages:?}");
    assert!(
        messages.iter().any(|m| m.starts_with("store requests")),
        "{messages:?}"
    );
}

#[test]
fn the_binary_prints_completions_and_man_pages() {
    let run = |args: &[&str]| {
        let out = Command::new(&*BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(run(&["completions", "bash"]).contains("--part-size"));
    assert!(run(&["completions", "zsh"]).contains("#compdef bucketfs"));
    assert!(run(&["man"]).contains(".TH bucketfs 1"));
    let dir = tempfile::tempdir().unwrap();
    run(&["man", &dir.path().display().to_string()]);
    let mount = std::fs::read_to_string(dir.path().join("bucketfs-mount.1")).unwrap();
    assert!(mount.contains("write\\-back\\-delay"), "{mount}");
    let help = run(&["--help"]);
    assert!(
        !help.contains("completions") && !help.contains("man "),
        "{help}"
    );
}

/// As root the daemon and the commands meet in `/run/bucketfs` whatever `XDG_RUNTIME_DIR`
/// says: `bucketfs status` and `unmount` from a root login shell (which has one) find a
/// daemon that systemd started (which has none).
#[test]
fn as_root_status_and_unmount_find_the_daemon_whatever_xdg_runtime_dir_says() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the runtime directory differs per user only for root");
        return;
    }
    let server = Server::running();
    let prefix = server.unique_prefix("xdg");
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &[],
    );
    let login_shell = tempfile::tempdir().unwrap();
    for command in ["status", "unmount"] {
        let out = Command::new(&*BIN)
            .arg(command)
            .arg(&m.dir)
            .env("XDG_RUNTIME_DIR", login_shell.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{command} from a shell with XDG_RUNTIME_DIR: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!is_mounted(&m.dir));
}
