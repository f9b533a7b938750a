//! The metrics page on a real mount: `--metrics-addr` serves Prometheus text at `/metrics`,
//! and a workload moves its numbers as it must — files written and fsync'd are PUTs and
//! bytes sent, FUSE writes are counted, closed files show as pending uploads until a flush
//! stores them, a throttled PUT is a retry, a refused one an upload failure, a cold read is
//! cache misses, bytes received and read-ahead, and a killed daemon's journal is counted as
//! replayed by the next one. Without the option nothing listens; an address that cannot be
//! served stops the start.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use proxy::{Action, Proxy};

/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One scrape of the page: each series (name and labels as written) and its value.
struct Page(BTreeMap<String, f64>);

impl Page {
    fn scrape(port: u16) -> Page {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        let series = body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                (series.to_string(), value.parse().unwrap())
            })
            .collect();
        Page(series)
    }

    /// The value of `series`; 0 for one not written yet (a counter nothing counted).
    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// How much `series` rose since `before`.
    fn rose(&self, before: &Page, series: &str) -> f64 {
        self.get(series) - before.get(series)
    }
}

fn requests(operation: &str, outcome: &str) -> String {
    format!("bucketfs_s3_requests_total{{operation=\"{operation}\",outcome=\"{outcome}\"}}")
}

fn by_operation(family: &str, operation: &str) -> String {
    format!("{family}{{operation=\"{operation}\"}}")
}

fn fuse_ops(operation: &str) -> String {
    by_operation("bucketfs_fuse_operation_duration_seconds_count", operation)
}

/// The TCP ports process `pid` listens on (its sockets in LISTEN state).
fn listening_ports(pid: i32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ... inode (the tenth field)
            if fields[3] == "0A" && inodes.iter().any(|i| i == fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

fn flush(m: &Mount) -> std::process::Output {
    Command::new(&*BIN)
        .args(["flush", &m.dir.display().to_string()])
        .output()
        .unwrap()
}

/// Answers the first PUT of a key ending in `name` itself, with `status` and `code`.
fn once(
    name: &'static str,
    status: &'static str,
    code: &'static str,
) -> impl Fn(&proxy::Request) -> Option<Action> {
    let done = AtomicBool::new(false);
    move |r| {
        (r.is_put_object() && r.target.ends_with(name) && !done.swap(true, Ordering::SeqCst))
            .then_some(Action::Reject { status, code })
    }
}

#[test]
fn a_workload_moves_the_numbers_as_it_must() {
    let server = Server::running();
    let prefix = server.unique_prefix("metrics");
    const COLD: usize = 4 << 20;
    let data = random_bytes(COLD);
    server.put(&format!("{prefix}/other/cold.bin"), &data);
    let throttled = once("/retried.bin", "503 Slow Down", "SlowDown");
    let refused = once("/refused.bin", "403 Forbidden", "AccessDenied");
    let proxy = Proxy::start(server.endpoint(), move |r| {
        throttled(r)
            .or_else(|| refused(r))
            .unwrap_or(Action::Forward)
    });
    let port = free_port();
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &[
            "--endpoint",
            &proxy.endpoint(),
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--write-back-delay",
            "30",
            "--retry-interval",
            "0.2",
        ],
    );
    let pid = daemon_pid(&m.dir).expect("the daemon runs");
    assert_eq!(
        listening_ports(pid),
        [port],
        "the daemon listens there alone"
    );
    let start = Page::scrape(port);
    assert_eq!(start.get("bucketfs_pending_uploads"), 0.0);

    // Files written and fsync'd: each is a PUT at its fsync.
    const N: usize = 4;
    const SIZE: usize = 300 << 10;
    for i in 0..N {
        let mut f = std::fs::File::create(m.path(&format!("synced{i}.bin"))).unwrap();
        f.write_all(&random_bytes(SIZE)).unwrap();
        f.sync_all().unwrap();
    }
    let synced = Page::scrape(port);
    let puts = synced.rose(&start, &requests("PutObject", "ok"));
    assert!(puts >= N as f64, "PutObject ok rose by {puts}");
    let timed = by_operation("bucketfs_s3_request_duration_seconds_count", "PutObject");
    assert!(
        synced.rose(&start, &timed) >= N as f64,
        "each PUT has its latency"
    );
    let sent = synced.rose(&start, "bucketfs_s3_sent_bytes_total");
    assert!(sent >= (N * SIZE) as f64, "bytes sent rose by {sent}");
    // An operation is counted once its task ends, just after its reply: the last fsync's
    // count may land a moment after the program has its answer.
    for (op, at_least) in [("create", N), ("write", N), ("fsync", N)] {
        let counted = || Page::scrape(port).rose(&start, &fuse_ops(op));
        assert!(
            eventually(Duration::from_secs(2), || counted() >= at_least as f64),
            "{op}: {}",
            counted()
        );
    }
    assert_eq!(synced.get("bucketfs_pending_uploads"), 0.0, "all stored");

    // Files closed: pending for the write-back delay, until a flush stores them.
    const M: usize = 3;
    const SMALL: usize = 100 << 10;
    for i in 0..M {
        std::fs::write(m.path(&format!("closed{i}.bin")), random_bytes(SMALL)).unwrap();
    }
    let closed = Page::scrape(port);
    assert_eq!(closed.get("bucketfs_pending_uploads"), M as f64);
    assert_eq!(
        closed.get("bucketfs_pending_upload_bytes"),
        (M * SMALL) as f64
    );
    let age = closed.get("bucketfs_pending_upload_oldest_age_seconds");
    assert!((0.0..30.0).contains(&age), "oldest waits {age} s");
    let out = flush(&m);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flushed = Page::scrape(port);
    for gauge in [
        "bucketfs_pending_uploads",
        "bucketfs_pending_upload_bytes",
        "bucketfs_pending_upload_oldest_age_seconds",
    ] {
        assert_eq!(flushed.get(gauge), 0.0, "{gauge} after the flush");
    }
    let puts = flushed.rose(&closed, &requests("PutObject", "ok"));
    assert!(puts >= M as f64, "PutObject ok rose by {puts}");

    // A PUT answered 503 SlowDown: retried, and stored.
    std::fs::write(m.path("retried.bin"), b"again").unwrap();
    let out = flush(&m);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let retried = Page::scrape(port);
    let retries = by_operation("bucketfs_s3_retries_total", "PutObject");
    assert_eq!(retried.rose(&flushed, &retries), 1.0);
    assert_eq!(
        retried.rose(&flushed, &requests("PutObject", "throttled")),
        1.0
    );
    assert_eq!(retried.get("bucketfs_upload_failures_total"), 0.0);

    // A PUT refused with 403: the upload fails (flush says so), is counted, and is tried
    // again in the background.
    std::fs::write(m.path("refused.bin"), b"later").unwrap();
    let out = flush(&m);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failed = Page::scrape(port);
    assert_eq!(
        failed.rose(&retried, &requests("PutObject", "access_denied")),
        1.0
    );
    assert_eq!(failed.get("bucketfs_upload_failures_total"), 1.0);
    assert!(
        eventually(Duration::from_secs(15), || {
            Page::scrape(port).get("bucketfs_pending_uploads") == 0.0
        }),
        "stored by the retry"
    );
    assert_eq!(
        server.get(&format!("{prefix}/refused.bin")).as_deref(),
        Some(&b"later"[..])
    );

    // A cold read of an object another client stored: misses, GETs, bytes down, read-ahead.
    let before = Page::scrape(port);
    assert!(read_slowly(&m.path("other/cold.bin")) == data);
    let read = Page::scrape(port);
    let misses = read.rose(&before, "bucketfs_cache_misses_total{cache=\"memory\"}");
    assert!(misses >= 1.0, "memory misses rose by {misses}");
    let received = read.rose(&before, "bucketfs_s3_received_bytes_total");
    assert!(received >= COLD as f64, "bytes received rose by {received}");
    assert!(read.rose(&before, &requests("GetObject", "ok")) >= 1.0);
    let ahead = read.rose(&before, "bucketfs_read_ahead_bytes_total");
    assert!(ahead > 0.0 && ahead < received + 1.0, "read ahead {ahead}");
    assert!(read.rose(&before, &fuse_ops("read")) >= 1.0);
    m.unmount();
}

/// The whole file, its first 256 KiB read before a pause: the read-ahead the sequential
/// start begins has time to land before it is needed (a reader that keeps catching up with
/// it, as a loaded machine made `std::fs::read`, waits for those blocks as its own reads,
/// and the read-ahead counter may stay at 0).
fn read_slowly(path: &std::path::Path) -> Vec<u8> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut out = vec![0; 256 << 10];
    for half in out.chunks_mut(128 << 10) {
        f.read_exact(half).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    f.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn a_killed_daemons_journal_is_counted_as_replayed_by_the_next_one() {
    let server = Server::running();
    let prefix = server.unique_prefix("metrics-replay");
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = cache.path().display().to_string();
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let m = Mount::new(
        &server,
        &source,
        &["--cache-dir", &cache_arg, "--write-back-delay", "30"],
    );
    std::fs::write(m.path("a.txt"), b"journaled").unwrap();
    let pid = daemon_pid(&m.dir).expect("the daemon runs");
    // SAFETY: a plain kill(2) of the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert!(eventually(Duration::from_secs(10), || daemon_pid(&m.dir).is_none()));
    let _ = Command::new("umount").arg("-l").arg(&m.dir).status();
    drop(m);
    assert_eq!(server.get(&format!("{prefix}/a.txt")), None, "not uploaded");

    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let m = Mount::new(
        &server,
        &source,
        &["--cache-dir", &cache_arg, "--metrics-addr", &metrics_addr],
    );
    let page = Page::scrape(port);
    assert_eq!(page.get("bucketfs_journal_replayed_files_total"), 1.0);
    assert_eq!(
        page.get("bucketfs_pending_uploads"),
        0.0,
        "replayed, stored"
    );
    assert_eq!(
        server.get(&format!("{prefix}/a.txt")).as_deref(),
        Some(&b"journaled"[..])
    );
    m.unmount();
}

#[test]
fn without_the_option_the_daemon_listens_nowhere() {
    let server = Server::running();
    let prefix = server.unique_prefix("metrics-off");
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &[],
    );
    std::fs::write(m.path("f"), b"x").unwrap();
    let pid = daemon_pid(&m.dir).expect("the daemon runs");
    assert_eq!(listening_ports(pid), [] as [u16; 0]);
    m.unmount();
}

/// `bucketfs mount` with `--metrics-addr addr` must exit 2 with one line containing
/// `expect`, and mount nothing.
fn refused(server: &Server, addr: &str, expect: &str) {
    let mountpoint = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let prefix = server.unique_prefix("metrics-refused");
    let out = Command::new(&*BIN)
        .args(["mount", &format!("s3://{}/{prefix}", server.bucket_name())])
        .arg(mountpoint.path())
        .args(["--cache-dir", &cache.path().display().to_string()])
        .args(["--metrics-addr", addr])
        .envs(&server.env)
        .env_remove("BUCKETFS_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if is_mounted(mountpoint.path()) {
        let _ = Command::new(&*BIN)
            .arg("unmount")
            .arg(mountpoint.path())
            .status();
        panic!("--metrics-addr {addr} was not refused: {stderr}");
    }
    assert_eq!(out.status.code(), Some(2), "{addr}: {stderr}");
    assert!(
        stderr.contains(expect),
        "{addr}: expected `{expect}` in: {stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(!is_mounted(Path::new(mountpoint.path())));
}

#[test]
fn an_address_that_cannot_be_served_stops_the_start_with_one_line() {
    let server = Server::running();
    refused(
        &server,
        "localhost:9100",
        "metrics_addr `localhost:9100` is not an IP address and port",
    );
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    refused(
        &server,
        &addr,
        &format!("cannot serve metrics on {addr}: Address already in use"),
    );
    // TEST-NET-1: an address of no interface here.
    refused(
        &server,
        "192.0.2.1:9100",
        "cannot serve metrics on 192.0.2.1:9100: Cannot assign requested address",
    );
}
