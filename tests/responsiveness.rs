//! One slow S3 request must never block the session: while a read waits on a stalled
//! connection, other operations on the mount still answer promptly.

mod common;
#[path = "common/stall.rs"]
mod stall;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use stall::StallingProxy;

#[test]
fn stat_answers_promptly_while_a_large_read_is_stalled() {
    let server = Server::running();
    let prefix = server.unique_prefix("stall");
    let big = random_bytes(4 << 20);
    server.put(&format!("{prefix}/stall-me"), &big);
    server.put(&format!("{prefix}/other"), b"other");
    let proxy = StallingProxy::start(server.endpoint(), |request_line| {
        request_line.starts_with("GET /")
            && request_line.contains("stall-me")
            && !request_line.contains("list-type")
    });
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--endpoint", &endpoint, "--request-timeout", "120"],
    );

    let path = m.path("stall-me");
    let reader = std::thread::spawn(move || std::fs::read(path).unwrap());
    std::thread::sleep(Duration::from_secs(1));
    assert!(!reader.is_finished(), "the read is held by the proxy");

    let started = Instant::now();
    let meta = std::fs::metadata(m.path("other")).unwrap();
    assert_eq!(std::fs::read(m.path("other")).unwrap(), b"other");
    let took = started.elapsed();
    assert_eq!(meta.len(), 5);
    assert!(
        took < Duration::from_secs(5),
        "stat and read of another file took {took:?} while a read was stalled"
    );
    assert!(
        !reader.is_finished(),
        "the stalled read was still waiting meanwhile"
    );

    proxy.release.store(true, Ordering::SeqCst);
    let data = reader.join().unwrap();
    assert_eq!(sha256(&data), sha256(&big));
}
