//! A TCP proxy for tests: forwards to the S3 server, and holds back the responses on a
#![allow(dead_code)] // each test binary uses part of it
//! connection once a request matching a predicate went through it — a stalled server.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A TCP proxy to the S3 server that holds back the response on a connection once a request
/// matching `stall` went through it, until `release` is set.
pub struct StallingProxy {
    pub port: u16,
    pub release: Arc<AtomicBool>,
    /// Set once a matching request was seen.
    pub stalled_once: Arc<AtomicBool>,
}

impl StallingProxy {
    pub fn start(upstream: &str, stall: fn(&str) -> bool) -> StallingProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let release = Arc::new(AtomicBool::new(false));
        let stalled_once = Arc::new(AtomicBool::new(false));
        let (rel, seen) = (release.clone(), stalled_once.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = TcpStream::connect(&upstream).unwrap();
                let stalled = Arc::new(AtomicBool::new(false));
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (flag, seen) = (stalled.clone(), seen.clone());
                std::thread::spawn(move || {
                    pump(c2, s2, |chunk| {
                        if stall(&String::from_utf8_lossy(chunk)) {
                            flag.store(true, Ordering::SeqCst);
                            seen.store(true, Ordering::SeqCst);
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
        StallingProxy {
            port,
            release,
            stalled_once,
        }
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
