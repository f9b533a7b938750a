//! One slow S3 request must never block the session: while a read waits on a stalled
//! connection, other operations on the mount still answer promptly.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// A TCP proxy to the S3 server that holds back the response to any object GET whose request
/// line names `stall-me`, until `release` is set.
struct StallingProxy {
    port: u16,
    release: Arc<AtomicBool>,
}

impl StallingProxy {
    fn start(upstream: &str) -> StallingProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let release = Arc::new(AtomicBool::new(false));
        let rel = release.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = TcpStream::connect(&upstream).unwrap();
                let stalled = Arc::new(AtomicBool::new(false));
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let flag = stalled.clone();
                std::thread::spawn(move || {
                    pump(c2, s2, |chunk| {
                        let text = String::from_utf8_lossy(chunk);
                        if text.starts_with("GET /")
                            && text.contains("stall-me")
                            && !text.contains("list-type")
                        {
                            flag.store(true, Ordering::SeqCst);
                        }
                    })
                });
                let rel = rel.clone();
                std::thread::spawn(move || {
                    pump(server, client, |_| {
                        while stalled.load(Ordering::SeqCst) && !rel.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    })
                });
            }
        });
        StallingProxy { port, release }
    }
}

/// Copies `from` to `to`, calling `inspect` on each chunk before forwarding it.
fn pump(mut from: TcpStream, mut to: TcpStream, inspect: impl Fn(&[u8])) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                inspect(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

#[test]
fn stat_answers_promptly_while_a_large_read_is_stalled() {
    let server = Server::running();
    let prefix = server.unique_prefix("stall");
    let big = random_bytes(4 << 20);
    server.put(&format!("{prefix}/stall-me"), &big);
    server.put(&format!("{prefix}/other"), b"other");
    let proxy = StallingProxy::start(server.endpoint());
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
