//! The fault proxy of `tests/common/faults.rs` (used by `examples/fault_proxy.rs` and
//! `scripts/bench.sh --faults`), checked against a tiny in-process HTTP server with raw
//! client connections: each fault kind alone, a fault-free mix passing bytes exactly (also
//! chunked bodies, `Expect: 100-continue` and 64 connections at once), the same seed giving
//! the same decisions, and an outage. Needs no S3 server.

#[path = "common/faults.rs"]
mod faults;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faults::{Fault, FaultMix, FaultProxy};

/// What the server answers to a GET: 64 KiB of a pattern.
fn get_body() -> Vec<u8> {
    (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A tiny HTTP/1.1 server: GET answers `get_body()` (`/chunked`: the same, chunked), HEAD
/// its head, PUT and POST echo the request body (Content-Length or chunked), with `100
/// Continue` first when asked. Counts the requests it received.
struct Upstream {
    addr: String,
    requests: Arc<AtomicUsize>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let count = count.clone();
                std::thread::spawn(move || {
                    let _ = upstream_conn(conn, &count);
                });
            }
        });
        Upstream { addr, requests }
    }

    fn received(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn read_head_lines(r: &mut impl BufRead) -> io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines[1..].iter().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap(), 16).unwrap();
        if size == 0 {
            let mut rest = String::new();
            while r.read_line(&mut rest)? > 2 {
                rest.clear();
            }
            return Ok(out);
        }
        let mut chunk = vec![0; size + 2];
        r.read_exact(&mut chunk)?;
        out.extend_from_slice(&chunk[..size]);
    }
}

fn upstream_conn(conn: TcpStream, count: &AtomicUsize) -> io::Result<()> {
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    while let Some(lines) = read_head_lines(&mut r)? {
        count.fetch_add(1, Ordering::SeqCst);
        let mut start = lines[0].split(' ');
        let (method, target) = (start.next().unwrap(), start.next().unwrap());
        if header(&lines, "expect").is_some() {
            w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let body = if header(&lines, "transfer-encoding").is_some() {
            read_chunked(&mut r)?
        } else {
            let n: usize = header(&lines, "content-length").map_or(0, |v| v.parse().unwrap());
            let mut b = vec![0; n];
            r.read_exact(&mut b)?;
            b
        };
        let answer = if method == "PUT" || method == "POST" {
            body
        } else {
            get_body()
        };
        if target == "/chunked" {
            w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
            for piece in answer.chunks(10_000) {
                write!(w, "{:x};ext=1\r\n", piece.len())?;
                w.write_all(piece)?;
                w.write_all(b"\r\n")?;
            }
            w.write_all(b"0\r\nx-trailer: yes\r\n\r\n")?;
            continue;
        }
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"e\"\r\n\r\n",
            answer.len()
        )?;
        if method != "HEAD" {
            w.write_all(&answer)?;
        }
    }
    Ok(())
}

/// What a raw client saw of one exchange.
#[derive(Debug)]
struct Seen {
    /// The status line and headers (the last head, after any 100 Continue).
    head: String,
    status: Option<u16>,
    body: Vec<u8>,
    /// How the connection ended, if it did: the error kind (reset) or UnexpectedEof.
    error: Option<io::ErrorKind>,
    elapsed: Duration,
}

/// A raw keep-alive client connection.
struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    /// Sends a request (a body with Content-Length), reads the answer.
    fn send(&mut self, method: &str, target: &str, body: &[u8]) -> Seen {
        let start = Instant::now();
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        if let Err(e) = self.w.write_all(&req) {
            return Seen::failed(e.kind(), start);
        }
        self.answer(method, start)
    }

    /// Reads one answer (after any interim 1xx).
    fn answer(&mut self, method: &str, start: Instant) -> Seen {
        let mut seen = Seen::failed(io::ErrorKind::UnexpectedEof, start);
        let lines = loop {
            match read_head_lines(&mut self.r) {
                Ok(Some(l)) if l[0].contains(" 100 ") => continue,
                Ok(Some(l)) => break l,
                Ok(None) => return seen,
                Err(e) => return Seen::failed(e.kind(), start),
            }
        };
        seen.head = lines.join("\n");
        seen.status = lines[0].split(' ').nth(1).and_then(|s| s.parse().ok());
        seen.error = None;
        let result = if method == "HEAD" {
            Ok(())
        } else if header(&lines, "transfer-encoding").is_some() {
            read_chunked(&mut self.r).map(|b| seen.body = b)
        } else {
            let n: usize = header(&lines, "content-length").map_or(0, |v| v.parse().unwrap());
            let mut got = Vec::new();
            let r = (&mut self.r).take(n as u64).read_to_end(&mut got);
            seen.body = got;
            match r {
                Ok(_) if seen.body.len() < n => Err(io::ErrorKind::UnexpectedEof.into()),
                other => other.map(|_| ()),
            }
        };
        if let Err(e) = result {
            seen.error = Some(e.kind());
        }
        seen.elapsed = start.elapsed();
        seen
    }

    /// True if the server side closed the connection (EOF or reset) within a second.
    fn closed(&mut self) -> bool {
        self.r
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut b = [0u8; 1];
        match self.r.read(&mut b) {
            Ok(n) => n == 0,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        }
    }
}

impl Seen {
    fn failed(kind: io::ErrorKind, start: Instant) -> Seen {
        Seen {
            head: String::new(),
            status: None,
            body: Vec::new(),
            error: Some(kind),
            elapsed: start.elapsed(),
        }
    }
}

fn only(f: impl FnOnce(&mut FaultMix)) -> FaultMix {
    let mut mix = FaultMix::none();
    f(&mut mix);
    mix
}

#[test]
fn no_faults_pass_everything_byte_exact() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&format!("http://{}", up.addr), FaultMix::none(), 1);
    let mut c = Client::connect(proxy.port);
    let put: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..3 {
        let s = c.send("GET", "/bucket/key", b"");
        assert_eq!((s.status, s.error), (Some(200), None), "{s:?}");
        assert!(s.body == get_body(), "GET body differs");
        let s = c.send("PUT", "/bucket/key?partNumber=1&uploadId=u", &put);
        assert_eq!((s.status, s.error), (Some(200), None));
        assert!(s.body == put, "echoed PUT body differs");
        let s = c.send("HEAD", "/bucket/key", b"");
        assert_eq!((s.status, s.error), (Some(200), None));
        assert!(s
            .head
            .contains(&format!("Content-Length: {}", get_body().len())));
        assert!(s.body.is_empty());
    }
    // Chunked answer, relayed as it is.
    let s = c.send("GET", "/chunked", b"");
    assert_eq!((s.status, s.error), (Some(200), None));
    assert!(s.body == get_body(), "chunked body differs");
    // Chunked request body.
    let mut req =
        b"PUT /bucket/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in put.chunks(70_000) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    c.w.write_all(&req).unwrap();
    let s = c.answer("PUT", Instant::now());
    assert_eq!((s.status, s.error), (Some(200), None));
    assert!(s.body == put, "echoed chunked PUT body differs");
    // Expect: 100-continue: the body is sent after the server's 100 Continue.
    let head = format!(
        "PUT /bucket/e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        put.len()
    );
    c.w.write_all(head.as_bytes()).unwrap();
    let mut line = String::new();
    c.r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line}");
    c.r.read_line(&mut line).unwrap();
    c.w.write_all(&put).unwrap();
    let s = c.answer("PUT", Instant::now());
    assert_eq!((s.status, s.error), (Some(200), None));
    assert!(s.body == put, "echoed PUT after 100 Continue differs");

    let stats = proxy.stats();
    assert_eq!(stats.requests, 12);
    assert_eq!(stats.forwarded, 12);
    assert_eq!(stats.faults(), 0);
    assert_eq!(stats.connections, 1);
    assert_eq!(up.received(), 12);
    assert_eq!(proxy.requests_by_method()["GET"], 4);
    assert!(proxy.requests().iter().all(|r| r.fault == Fault::Pass));
}

#[test]
fn error_500_is_an_s3_internal_error_then_close() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.addr, only(|m| m.error_500 = 1.0), 1);
    let mut c = Client::connect(proxy.port);
    let s = c.send("PUT", "/bucket/k", &[7u8; 100_000]);
    assert_eq!(s.status, Some(500), "{s:?}");
    assert!(s.head.contains("Connection: close"));
    let text = String::from_utf8_lossy(&s.body);
    assert!(text.contains("<Code>InternalError</Code>"), "{text}");
    assert!(c.closed(), "the connection stays open after a 500");
    // A HEAD gets the head only.
    let s = Client::connect(proxy.port).send("HEAD", "/bucket/k", b"");
    assert_eq!((s.status, s.error, s.body.len()), (Some(500), None, 0));
    assert_eq!(up.received(), 0, "the server saw a rejected request");
    assert_eq!(proxy.stats().error_500, 2);
}

#[test]
fn error_503_is_slow_down() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.addr, only(|m| m.error_503 = 1.0), 1);
    let mut c = Client::connect(proxy.port);
    let s = c.send("GET", "/bucket/k", b"");
    assert_eq!(s.status, Some(503), "{s:?}");
    assert!(String::from_utf8_lossy(&s.body).contains("<Code>SlowDown</Code>"));
    assert!(c.closed());
    assert_eq!(up.received(), 0);
    assert_eq!(proxy.stats().error_503, 1);
}

#[test]
fn reset_before_the_response_answers_nothing() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.addr, only(|m| m.reset_before = 1.0), 1);
    let s = Client::connect(proxy.port).send("PUT", "/bucket/k", &[1u8; 50_000]);
    assert_eq!(s.status, None, "{s:?}");
    assert_eq!(s.error, Some(io::ErrorKind::ConnectionReset), "{s:?}");
    assert_eq!(up.received(), 0);
    assert_eq!(proxy.stats().reset_before, 1);
}

#[test]
fn reset_mid_body_cuts_the_body_then_resets() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.addr, only(|m| m.reset_mid_body = 1.0), 1);
    let s = Client::connect(proxy.port).send("GET", "/bucket/k", b"");
    assert_eq!(s.status, Some(200), "{s:?}");
    assert_eq!(
        s.error,
        Some(io::ErrorKind::ConnectionReset),
        "{:?}",
        s.error
    );
    let full = get_body().len();
    assert!(
        !s.body.is_empty() && s.body.len() <= full / 2,
        "{} of {full} bytes",
        s.body.len()
    );
    assert!(s.body[..] == get_body()[..s.body.len()]);
    // No body to cut (HEAD): reset right after the head.
    let mut c = Client::connect(proxy.port);
    let s = c.send("HEAD", "/bucket/k", b"");
    assert_eq!((s.status, s.error), (Some(200), None));
    assert!(c.closed());
    assert_eq!(up.received(), 2, "the server did the work");
    assert_eq!(proxy.stats().reset_mid_body, 2);
}

#[test]
fn stall_holds_the_answer() {
    let up = Upstream::start();
    let mix = only(|m| {
        m.stall = 1.0;
        m.stall_min = Duration::from_millis(300);
        m.stall_max = Duration::from_millis(400);
    });
    let proxy = FaultProxy::start(&up.addr, mix, 1);
    let mut c = Client::connect(proxy.port);
    for _ in 0..2 {
        let s = c.send("GET", "/bucket/k", b"");
        assert_eq!((s.status, s.error), (Some(200), None));
        assert!(s.body == get_body());
        assert!(s.elapsed >= Duration::from_millis(300), "{:?}", s.elapsed);
        assert!(s.elapsed < Duration::from_secs(3), "{:?}", s.elapsed);
    }
    let stats = proxy.stats();
    assert_eq!(stats.stalls, 2);
    assert!((600..=800).contains(&stats.stall_ms), "{}", stats.stall_ms);
}

/// One request per connection; checks the client saw what the recorded fault says.
fn run_sequence(addr: &str, mix: FaultMix, seed: u64, n: usize) -> Vec<Fault> {
    let proxy = FaultProxy::start(addr, mix, seed);
    for _ in 0..n {
        let s = Client::connect(proxy.port).send("GET", "/bucket/k", b"");
        let fault = proxy.requests().last().unwrap().fault;
        match fault {
            Fault::Pass | Fault::Stall(_) => assert!(s.error.is_none() && s.body == get_body()),
            Fault::Error500 => assert_eq!(s.status, Some(500)),
            Fault::Error503 => assert_eq!(s.status, Some(503)),
            Fault::ResetBefore => assert_eq!(
                (s.status, s.error),
                (None, Some(io::ErrorKind::ConnectionReset))
            ),
            Fault::ResetMidBody => assert_eq!(
                (s.status, s.error),
                (Some(200), Some(io::ErrorKind::ConnectionReset))
            ),
            Fault::Outage => unreachable!(),
        }
    }
    proxy.requests().into_iter().map(|r| r.fault).collect()
}

#[test]
fn the_same_seed_gives_the_same_decisions() {
    let up = Upstream::start();
    let mix = FaultMix {
        stall_min: Duration::from_millis(1),
        stall_max: Duration::from_millis(5),
        ..FaultMix::issue_14()
    };
    let first = run_sequence(&up.addr, mix, 14, 150);
    let second = run_sequence(&up.addr, mix, 14, 150);
    assert_eq!(first, second);
    assert_eq!(first, mix.decisions(14, 150));
    let faults = first.iter().filter(|f| **f != Fault::Pass).count();
    assert!(
        (10..=60).contains(&faults),
        "{faults} faults in 150 at 19 %"
    );
    assert_ne!(mix.decisions(14, 150), mix.decisions(15, 150));
    // Every kind shows up in a long sequence, at about its rate.
    let long = FaultMix::issue_14().decisions(14, 20_000);
    for (kind, rate) in [
        (Fault::Error500, 0.04),
        (Fault::Error503, 0.04),
        (Fault::ResetBefore, 0.04),
        (Fault::ResetMidBody, 0.04),
    ] {
        let n = long.iter().filter(|f| **f == kind).count() as f64 / 20_000.0;
        assert!((rate * 0.8..rate * 1.2).contains(&n), "{kind:?}: {n}");
    }
    let stalls: Vec<Duration> = long
        .iter()
        .filter_map(|f| match f {
            Fault::Stall(d) => Some(*d),
            _ => None,
        })
        .collect();
    assert!(
        (480..720).contains(&stalls.len()),
        "{} stalls",
        stalls.len()
    );
    assert!(stalls
        .iter()
        .all(|d| (Duration::from_secs(2)..=Duration::from_secs(5)).contains(d)));
}

#[test]
fn outage_resets_everything_and_ends() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.addr, FaultMix::none(), 1);
    let mut open = Client::connect(proxy.port);
    assert_eq!(open.send("GET", "/bucket/k", b"").status, Some(200));
    assert_eq!(up.received(), 1);

    proxy.set_outage(true);
    let s = Client::connect(proxy.port).send("GET", "/bucket/k", b"");
    assert_eq!(s.status, None, "{s:?}");
    assert!(
        matches!(
            s.error,
            Some(io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
        ),
        "{s:?}"
    );
    let s = open.send("GET", "/bucket/k", b"");
    assert_eq!(
        (s.status, s.error),
        (None, Some(io::ErrorKind::ConnectionReset))
    );
    assert_eq!(
        up.received(),
        1,
        "a request reached the server during the outage"
    );

    proxy.set_outage(false);
    let s = Client::connect(proxy.port).send("GET", "/bucket/k", b"");
    assert_eq!((s.status, s.error), (Some(200), None));
    let stats = proxy.stats();
    assert_eq!(stats.outage_connections, 1);
    assert_eq!(stats.outage_requests, 1);
    assert_eq!(stats.forwarded, 2);
    assert_eq!(up.received(), 2);
}

#[test]
fn many_connections_at_once_and_rude_clients() {
    let up = Upstream::start();
    let proxy = FaultProxy::start(&up.addr, FaultMix::none(), 1);
    // Clients that vanish mid-request or mid-answer end only their own connection.
    for cut in [5usize, 30, 60] {
        let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        let req = b"PUT /bucket/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc";
        s.write_all(&req[..cut.min(req.len())]).unwrap();
    }
    {
        let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        s.write_all(b"GET /bucket/k HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut b = [0u8; 100];
        let _ = s.read(&mut b);
    }
    let port = proxy.port;
    let threads: Vec<_> = (0..64)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                for j in 0..10 {
                    let body = vec![(i * 10 + j) as u8; 1000 + i * 100];
                    let s = c.send("PUT", "/bucket/k", &body);
                    assert_eq!((s.status, s.error), (Some(200), None));
                    assert!(s.body == body);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(proxy.stats().forwarded >= 640);
}
