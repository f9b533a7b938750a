//! A seeded, reproducible fault-injecting HTTP/1.1 proxy between an S3 client and the S3
//! server, for tests (`#[path = "common/faults.rs"] mod faults;`) and for
//! `examples/fault_proxy.rs` (`scripts/bench.sh --faults`). Self-contained: std, `rand`
//! and `libc` only.
//!
//! What real S3 does now and then, injected per request: a 500 `InternalError`, a 503
//! `SlowDown`, a connection reset before the response, a reset in the middle of the response
//! body, a response held back for seconds; and, switched by hand, an outage (every
//! connection reset, nothing reaches the server).
//!
//! How it works: each client connection is served by one thread, with its own connection to
//! the server (opened at the first request that goes there, reopened if the server closed
//! it while idle). Requests are read one at a time: the head, then the body (`Content-Length`
//! or chunked; bucketfs, through rust-s3 and reqwest, always sends a `Content-Length`;
//! `Expect: 100-continue`, which curl-based clients such as s3fs send, is passed through to
//! the server, whose interim `100 Continue` is relayed). For each request one decision is
//! drawn from a seeded RNG shared by all connections: the n-th request the proxy reads gets
//! the n-th decision of the seed's sequence (`FaultMix::decisions`), whatever its
//! connection. Which request is the n-th depends on the client's timing when it sends
//! requests in parallel; for a client that sends one request at a time the whole run is
//! reproducible. Responses are parsed too (`Content-Length`, chunked, or until close; none
//! for HEAD, 1xx, 204 and 304), so a reset can cut a body in the middle.
//!
//! The faults:
//! - 500 / 503: the request (body included) is read, then answered by the proxy with an S3
//!   XML error (`InternalError` / `SlowDown`) and `Connection: close`; the connection is
//!   then closed. The server never sees the request.
//! - reset before the response: the request is read, then the connection is reset (SO_LINGER
//!   0, then close: the client gets ECONNRESET). The server never sees the request.
//! - reset in the middle of the body: the request goes to the server; its response head and
//!   the first half of a `Content-Length` body are relayed, then the connection is reset. A
//!   response with a body of 0 or 1 byte, with no body (HEAD), chunked or delimited by
//!   the close is reset right after its head. The server did the work (a PUT is stored).
//! - stall: the request goes to the server; its response is relayed after a pause drawn
//!   uniformly from `[stall_min, stall_max]`.
//!
//! Errors on one connection (a client that disconnects, a server that closes) end that
//! connection only; the proxy never panics on I/O.

#![allow(dead_code)] // each user takes part of it

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Probabilities (0..=1) of each fault per request; what is left passes untouched. Kinds
/// are exclusive: one request gets at most one fault. If they add up to more than 1, the
/// later kinds (in field order) get what is left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultMix {
    pub error_500: f64,
    pub error_503: f64,
    pub reset_before: f64,
    pub reset_mid_body: f64,
    pub stall: f64,
    pub stall_min: Duration,
    pub stall_max: Duration,
}

impl FaultMix {
    /// No faults: every request passes.
    pub fn none() -> FaultMix {
        FaultMix {
            error_500: 0.0,
            error_503: 0.0,
            reset_before: 0.0,
            reset_mid_body: 0.0,
            stall: 0.0,
            stall_min: Duration::from_secs(2),
            stall_max: Duration::from_secs(5),
        }
    }

    /// The reference mix of issue 14: 4 % each of 500, 503 SlowDown, reset before the
    /// response and reset in the middle of the body, and 3 % stalls of 2–5 s (19 % of the
    /// requests get a fault).
    pub fn issue_14() -> FaultMix {
        FaultMix {
            error_500: 0.04,
            error_503: 0.04,
            reset_before: 0.04,
            reset_mid_body: 0.04,
            stall: 0.03,
            ..FaultMix::none()
        }
    }

    /// The fault for one request, from two uniform draws in [0, 1): `pick` chooses the
    /// kind, `frac` the length of a stall.
    pub fn pick(&self, pick: f64, frac: f64) -> Fault {
        let kinds = [
            (self.error_500, Fault::Error500),
            (self.error_503, Fault::Error503),
            (self.reset_before, Fault::ResetBefore),
            (self.reset_mid_body, Fault::ResetMidBody),
        ];
        let mut edge = 0.0;
        for (p, fault) in kinds {
            edge += p.max(0.0);
            if pick < edge {
                return fault;
            }
        }
        edge += self.stall.max(0.0);
        if pick < edge {
            let span = self.stall_max.saturating_sub(self.stall_min);
            return Fault::Stall(self.stall_min + span.mul_f64(frac.clamp(0.0, 1.0)));
        }
        Fault::Pass
    }

    /// The first `n` decisions a proxy started with this mix and `seed` makes (as long as
    /// the mix is not changed).
    pub fn decisions(&self, seed: u64, n: usize) -> Vec<Fault> {
        let mut d = Decider::new(*self, seed);
        (0..n).map(|_| d.next()).collect()
    }
}

/// What the proxy did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Forwarded, answer relayed untouched.
    Pass,
    /// Answered by the proxy: 500 InternalError.
    Error500,
    /// Answered by the proxy: 503 SlowDown.
    Error503,
    /// Read, then the connection reset; nothing answered.
    ResetBefore,
    /// Forwarded; the answer cut in the middle of its body by a reset.
    ResetMidBody,
    /// Forwarded; the answer relayed after this pause.
    Stall(Duration),
    /// Reset because the outage was on (not a draw of the RNG).
    Outage,
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Pass => "pass",
            Fault::Error500 => "error_500",
            Fault::Error503 => "error_503",
            Fault::ResetBefore => "reset_before",
            Fault::ResetMidBody => "reset_mid_body",
            Fault::Stall(_) => "stall",
            Fault::Outage => "outage",
        }
    }
}

/// The seeded sequence of decisions: two draws per request, whatever the mix, so the n-th
/// decision depends only on the seed, n and the mix.
struct Decider {
    mix: FaultMix,
    rng: StdRng,
}

impl Decider {
    fn new(mix: FaultMix, seed: u64) -> Decider {
        Decider {
            mix,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn next(&mut self) -> Fault {
        let pick: f64 = self.rng.gen();
        let frac: f64 = self.rng.gen();
        self.mix.pick(pick, frac)
    }
}

/// Counters since the proxy started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Client connections accepted (outage resets included).
    pub connections: u64,
    /// Request heads read from clients (the ones reset by an outage included).
    pub requests: u64,
    /// Requests sent to the server (passed, stalled and cut mid-body).
    pub forwarded: u64,
    pub error_500: u64,
    pub error_503: u64,
    pub reset_before: u64,
    pub reset_mid_body: u64,
    pub stalls: u64,
    /// Total time of the stalls, in milliseconds.
    pub stall_ms: u64,
    /// Connections reset as soon as accepted, while the outage was on.
    pub outage_connections: u64,
    /// Requests on open connections reset while the outage was on.
    pub outage_requests: u64,
    /// The server could not be reached, or closed a connection before its answer ended
    /// (the client then got a 502 or a closed connection).
    pub upstream_errors: u64,
    /// Requests read, by method.
    pub by_method: BTreeMap<String, u64>,
}

impl FaultStats {
    /// Requests that got an injected fault (outage resets not included).
    pub fn faults(&self) -> u64 {
        self.error_500 + self.error_503 + self.reset_before + self.reset_mid_body + self.stalls
    }

    /// One JSON object, on one line.
    pub fn to_json(&self) -> String {
        let methods: Vec<String> = self
            .by_method
            .iter()
            .map(|(m, n)| format!("\"{}\":{n}", json_safe(m)))
            .collect();
        format!(
            "{{\"connections\":{},\"requests\":{},\"forwarded\":{},\"faults\":{},\
             \"error_500\":{},\"error_503\":{},\"reset_before\":{},\"reset_mid_body\":{},\
             \"stalls\":{},\"stall_ms\":{},\"outage_connections\":{},\"outage_requests\":{},\
             \"upstream_errors\":{},\"by_method\":{{{}}}}}",
            self.connections,
            self.requests,
            self.forwarded,
            self.faults(),
            self.error_500,
            self.error_503,
            self.reset_before,
            self.reset_mid_body,
            self.stalls,
            self.stall_ms,
            self.outage_connections,
            self.outage_requests,
            self.upstream_errors,
            methods.join(",")
        )
    }
}

fn json_safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .collect()
}

/// One request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub fault: Fault,
}

/// How many requests are kept for `FaultProxy::requests` (the counters go on).
pub const MAX_RECORDED: usize = 200_000;

#[derive(Default)]
struct State {
    stats: FaultStats,
    seen: Vec<Seen>,
}

struct Shared {
    /// `host:port` of the server.
    upstream: String,
    decider: Mutex<Decider>,
    state: Mutex<State>,
    outage: AtomicBool,
    stopped: AtomicBool,
    log: AtomicBool,
    next_conn: AtomicU64,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn count(&self, f: impl FnOnce(&mut FaultStats)) {
        f(&mut lock(&self.state).stats)
    }

    /// Draws the fault for `req` (or `Outage`) and records it.
    fn decide(&self, req: &Head, conn: u64) -> Fault {
        let fault = if self.outage.load(Ordering::SeqCst) {
            Fault::Outage
        } else {
            lock(&self.decider).next()
        };
        let mut state = lock(&self.state);
        let s = &mut state.stats;
        s.requests += 1;
        *s.by_method.entry(req.method.clone()).or_default() += 1;
        match fault {
            Fault::Pass => {}
            Fault::Error500 => s.error_500 += 1,
            Fault::Error503 => s.error_503 += 1,
            Fault::ResetBefore => s.reset_before += 1,
            Fault::ResetMidBody => s.reset_mid_body += 1,
            Fault::Stall(d) => {
                s.stalls += 1;
                s.stall_ms += d.as_millis() as u64;
            }
            Fault::Outage => s.outage_requests += 1,
        }
        if state.seen.len() < MAX_RECORDED {
            state.seen.push(Seen {
                method: req.method.clone(),
                target: req.target.clone(),
                fault,
            });
        }
        drop(state);
        if fault != Fault::Pass && self.log.load(Ordering::Relaxed) {
            eprintln!(
                "fault-proxy {:9.3}s conn {conn}: {} {} -> {fault:?}",
                self.started.elapsed().as_secs_f64(),
                req.method,
                req.target
            );
        }
        fault
    }
}

/// The proxy; it stops accepting connections when dropped (open ones run to their end).
pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and proxies to `upstream`
    /// (`http://127.0.0.1:3900` or `127.0.0.1:3900`). Panics if it cannot listen.
    pub fn start(upstream: &str, mix: FaultMix, seed: u64) -> FaultProxy {
        FaultProxy::bind("127.0.0.1:0", upstream, mix, seed)
            .unwrap_or_else(|e| panic!("fault proxy to {upstream}: {e}"))
    }

    /// Listens on `listen` (`127.0.0.1:3912`; port 0 for a free one) and proxies to
    /// `upstream`. Only plain HTTP upstreams.
    pub fn bind(listen: &str, upstream: &str, mix: FaultMix, seed: u64) -> io::Result<FaultProxy> {
        if upstream.starts_with("https://") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the fault proxy speaks plain HTTP only",
            ));
        }
        let host = upstream.trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host).to_string();
        host.to_socket_addrs()?; // a bad address fails here, not at the first request
        let listener = TcpListener::bind(listen)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            upstream: host,
            decider: Mutex::new(Decider::new(mix, seed)),
            state: Mutex::new(State::default()),
            outage: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            log: AtomicBool::new(false),
            next_conn: AtomicU64::new(0),
            started: Instant::now(),
        });
        let sh = shared.clone();
        std::thread::Builder::new()
            .name("fault-proxy-accept".into())
            .spawn(move || accept_loop(listener, sh))?;
        Ok(FaultProxy { port, shared })
    }

    /// The URL to hand a client as its endpoint: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Changes the mix for the requests read from now on (the RNG's sequence goes on).
    pub fn set_mix(&self, mix: FaultMix) {
        lock(&self.shared.decider).mix = mix;
    }

    pub fn mix(&self) -> FaultMix {
        lock(&self.shared.decider).mix
    }

    /// Outage on: every new connection is reset as soon as accepted, every open one at its
    /// next request; nothing reaches the server. Off: back to the mix.
    pub fn set_outage(&self, on: bool) {
        self.shared.outage.store(on, Ordering::SeqCst);
    }

    pub fn outage(&self) -> bool {
        self.shared.outage.load(Ordering::SeqCst)
    }

    /// Prints one line per injected fault on stderr (time, connection, method, target).
    pub fn log_faults(&self, on: bool) {
        self.shared.log.store(on, Ordering::Relaxed);
    }

    pub fn stats(&self) -> FaultStats {
        lock(&self.shared.state).stats.clone()
    }

    /// Requests read so far, by method.
    pub fn requests_by_method(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.state).stats.by_method.clone()
    }

    /// Every request read so far (up to `MAX_RECORDED`), in the order of the decisions.
    pub fn requests(&self) -> Vec<Seen> {
        lock(&self.shared.state).seen.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and closes the listener.
        let _ =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1));
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let client = match conn {
            Ok(c) => c,
            Err(_) => {
                // Out of file descriptors, or a connection gone before accept: go on.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        shared.count(|s| s.connections += 1);
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        if shared.outage.load(Ordering::SeqCst) {
            shared.count(|s| s.outage_connections += 1);
            if shared.log.load(Ordering::Relaxed) {
                eprintln!(
                    "fault-proxy {:9.3}s conn {id}: reset at accept (outage)",
                    shared.started.elapsed().as_secs_f64()
                );
            }
            reset(&client);
            continue;
        }
        let sh = shared.clone();
        let _ = std::thread::Builder::new()
            .name(format!("fault-proxy-{id}"))
            .spawn(move || {
                let _ = serve(client, &sh, id);
            });
        // A failed spawn drops the closure, and with it the connection.
    }
}

/// Sets SO_LINGER to 0: the close that follows resets the connection (RST, no FIN).
fn set_reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a `linger` of the size given.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Resets the connection now (this must be the stream's only handle).
fn reset(stream: &TcpStream) {
    set_reset_on_close(stream);
    // The caller drops (closes) the stream right after.
}

/// Closes our side cleanly after a final answer: FIN, then a short wait for the client to
/// close its side, so that a request the client still sends does not turn our close into a
/// reset that destroys the answer in flight.
fn close_gently(stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 16 * 1024];
    let mut s = stream;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
            Err(_) => return,
        }
    }
}

/// One parsed message head (request or response).
struct Head {
    raw: Vec<u8>,
    /// Request: method; response: HTTP version.
    method: String,
    /// Request: target; response: status code.
    target: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    fn chunked(&self) -> bool {
        self.has_token("transfer-encoding", "chunked")
    }

    fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// For a response: the status code.
    fn status(&self) -> u16 {
        self.target.parse().unwrap_or(0)
    }

    /// The request's body framing.
    fn request_body(&self) -> Body {
        if self.chunked() {
            Body::Chunked
        } else {
            match self.content_length() {
                Some(n) if n > 0 => Body::Length(n),
                _ => Body::Empty,
            }
        }
    }

    /// The body framing of this response to a `method` request.
    fn response_body(&self, method: &str) -> Body {
        let status = self.status();
        if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
            Body::Empty
        } else if self.chunked() {
            Body::Chunked
        } else {
            match self.content_length() {
                Some(0) => Body::Empty,
                Some(n) => Body::Length(n),
                None => Body::UntilClose,
            }
        }
    }

    /// True if the connection must close after this message.
    fn closes(&self) -> bool {
        self.has_token("connection", "close")
            || (self.method == "HTTP/1.0" && !self.has_token("connection", "keep-alive"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

const MAX_HEAD: u64 = 256 * 1024;

fn bad_data(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads one line (up to `\n`) into `out`; false at a clean end of stream before any byte.
fn read_line(from: &mut BufReader<TcpStream>, out: &mut Vec<u8>) -> io::Result<bool> {
    let start = out.len();
    let n = from.by_ref().take(MAX_HEAD).read_until(b'\n', out)?;
    if n == 0 {
        return Ok(false);
    }
    if out[start..].last() != Some(&b'\n') {
        return Err(bad_data("line too long or cut"));
    }
    Ok(true)
}

/// Reads one message head; `None` at a clean end of stream between messages.
fn read_head(from: &mut BufReader<TcpStream>) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    loop {
        let start = raw.len();
        if !read_line(from, &mut raw)? {
            if lines.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "head cut"));
        }
        let line = String::from_utf8_lossy(&raw[start..])
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if line.is_empty() {
            if lines.is_empty() {
                raw.clear(); // a stray blank line between messages
                continue;
            }
            break;
        }
        lines.push(line);
        if raw.len() as u64 > MAX_HEAD {
            return Err(bad_data("head too long"));
        }
    }
    let mut first = lines[0].split_whitespace();
    let method = first.next().ok_or_else(|| bad_data("empty start line"))?;
    let target = first.next().ok_or_else(|| bad_data("short start line"))?;
    let headers = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Some(Head {
        method: method.to_string(),
        target: target.to_string(),
        raw,
        headers,
    }))
}

/// Copies exactly `n` bytes.
fn copy_exact(from: &mut impl Read, to: &mut impl Write, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut from.take(n), to)?;
    if copied < n {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "body cut"));
    }
    Ok(())
}

/// Copies a chunked body as it is (sizes, extensions, trailers), up to its end.
fn copy_chunked(from: &mut BufReader<TcpStream>, to: &mut impl Write) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if !read_line(from, &mut line)? {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "chunk cut"));
        }
        to.write_all(&line)?;
        let text = String::from_utf8_lossy(&line);
        let size = text.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| bad_data("bad chunk size"))?;
        if size == 0 {
            loop {
                line.clear();
                if !read_line(from, &mut line)? {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "trailer cut"));
                }
                to.write_all(&line)?;
                if line == b"\r\n" || line == b"\n" {
                    return Ok(());
                }
            }
        }
        copy_exact(from, to, size + 2)?; // the data and its CRLF
    }
}

fn copy_body(from: &mut BufReader<TcpStream>, to: &mut impl Write, body: Body) -> io::Result<()> {
    match body {
        Body::Empty => Ok(()),
        Body::Length(n) => copy_exact(from, to, n),
        Body::Chunked => copy_chunked(from, to),
        Body::UntilClose => io::copy(from, to).map(|_| ()),
    }
}

/// The S3 error the proxy answers with (a HEAD answer has no body).
fn s3_error(status: &str, code: &str, message: &str, req: &Head, id: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><Resource>{}</Resource>\
         <RequestId>fault-proxy-{id}</RequestId></Error>",
        xml_escape(&req.target)
    );
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         x-amz-request-id: fault-proxy-{id}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if req.method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A writer that remembers whether a write failed (to tell which side broke a relay).
struct Tracked<W> {
    inner: W,
    failed: bool,
}

impl<W: Write> Write for Tracked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.failed |= r.is_err();
        r
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.failed |= r.is_err();
        r
    }
}

/// The server's connection of one client connection.
struct Upstream {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Upstream {
    fn connect(addr: &str) -> io::Result<Upstream> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Upstream {
            writer: s.try_clone()?,
            reader: BufReader::with_capacity(64 * 1024, s),
        })
    }

    /// True if the server closed this idle connection (or sent something unasked).
    fn stale(&self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let s = self.reader.get_ref();
        if s.set_nonblocking(true).is_err() {
            return true;
        }
        let mut b = [0u8; 1];
        let stale = match s.peek(&mut b) {
            Ok(_) => true, // end of stream, or bytes nobody asked for
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
        stale || s.set_nonblocking(false).is_err()
    }
}

/// Serves one client connection until it closes, a fault ends it or an error occurs.
fn serve(client: TcpStream, shared: &Shared, conn: u64) -> io::Result<()> {
    client.set_nodelay(true)?;
    // Two handles of one socket, one to read and one to write: a reset (SO_LINGER 0 set
    // through either) happens when both are closed, at the return.
    let mut to_client = client.try_clone()?;
    let mut from_client = BufReader::with_capacity(64 * 1024, client);
    let mut upstream: Option<Upstream> = None;
    let mut k = 0u64;
    while let Some(req) = read_head(&mut from_client)? {
        let fault = shared.decide(&req, conn);
        k += 1;
        let id = format!("{conn}-{k}");
        let body = req.request_body();
        let expect = req.has_token("expect", "100-continue") && body != Body::Empty;
        let answer = match fault {
            Fault::Outage | Fault::ResetBefore => {
                if fault == Fault::ResetBefore && !expect {
                    copy_body(&mut from_client, &mut io::sink(), body)?;
                }
                reset(&to_client);
                return Ok(());
            }
            Fault::Error500 => Some(s3_error(
                "500 Internal Server Error",
                "InternalError",
                "We encountered an internal error. Please try again.",
                &req,
                &id,
            )),
            Fault::Error503 => Some(s3_error(
                "503 Slow Down",
                "SlowDown",
                "Please reduce your request rate.",
                &req,
                &id,
            )),
            Fault::Pass | Fault::Stall(_) | Fault::ResetMidBody => None,
        };
        if let Some(answer) = answer {
            // The whole request is read first (a client still sending would see the
            // answer as a broken pipe); a client waiting for 100 Continue sends nothing.
            if !expect {
                copy_body(&mut from_client, &mut io::sink(), body)?;
            }
            to_client.write_all(&answer)?;
            close_gently(&to_client);
            return Ok(());
        }

        // Forward the request, on the connection to the server (reopened if it closed).
        if upstream.as_ref().is_none_or(|u| u.stale()) {
            upstream = match Upstream::connect(&shared.upstream) {
                Ok(u) => Some(u),
                Err(_) => {
                    shared.count(|s| s.upstream_errors += 1);
                    if !expect {
                        copy_body(&mut from_client, &mut io::sink(), body)?;
                    }
                    return bad_gateway(&to_client, &req, &id);
                }
            };
        }
        let Some(up) = upstream.as_mut() else {
            return Ok(());
        };
        shared.count(|s| s.forwarded += 1);
        up.writer.write_all(&req.raw)?;
        let mut early = None;
        if expect {
            // The server answers 100 Continue (relayed: the client then sends the body)
            // or a final answer at once (then the connection ends after it).
            match read_response(&mut up.reader, shared)? {
                Some(h) if h.status() == 100 => {
                    to_client.write_all(&h.raw)?;
                    copy_body(&mut from_client, &mut up.writer, body)?;
                }
                Some(h) => early = Some(h),
                None => return Ok(()),
            }
        } else {
            copy_body(&mut from_client, &mut up.writer, body)?;
        }
        if let Fault::Stall(d) = fault {
            std::thread::sleep(d);
        }
        // Interim answers (1xx) are relayed; then the final one.
        let early_answer = early.is_some();
        let head = loop {
            let h = match early.take() {
                Some(h) => h,
                None => match read_response(&mut up.reader, shared)? {
                    Some(h) => h,
                    None => return Ok(()),
                },
            };
            if (100..200).contains(&h.status()) && h.status() != 101 {
                to_client.write_all(&h.raw)?;
                continue;
            }
            break h;
        };
        let resp_body = head.response_body(&req.method);
        to_client.write_all(&head.raw)?;
        if fault == Fault::ResetMidBody {
            if let Body::Length(len) = resp_body {
                let _ = copy_exact(&mut up.reader, &mut to_client, len / 2);
            }
            reset(&to_client);
            return Ok(());
        }
        let mut tracked = Tracked {
            inner: &to_client,
            failed: false,
        };
        if let Err(e) = copy_body(&mut up.reader, &mut tracked, resp_body) {
            if !tracked.failed {
                // The server, not the client, broke off.
                shared.count(|s| s.upstream_errors += 1);
            }
            reset(&to_client); // the client must not take a cut body for a whole one
            return Err(e);
        }
        if early_answer
            || req.closes()
            || head.closes()
            || resp_body == Body::UntilClose
            || head.status() == 101
        {
            close_gently(&to_client);
            return Ok(());
        }
    }
    Ok(())
}

/// Reads a response head from the server; `None` if the server closed the connection
/// instead (counted; the client's connection is then closed without an answer, as a server
/// that goes away would).
fn read_response(from: &mut BufReader<TcpStream>, shared: &Shared) -> io::Result<Option<Head>> {
    match read_head(from) {
        Ok(Some(h)) => Ok(Some(h)),
        Ok(None) | Err(_) => {
            shared.count(|s| s.upstream_errors += 1);
            Ok(None)
        }
    }
}

/// The server cannot be reached: 502 with an S3-style body, then close.
fn bad_gateway(client: &TcpStream, req: &Head, id: &str) -> io::Result<()> {
    let answer = s3_error(
        "502 Bad Gateway",
        "BadGateway",
        "The fault proxy cannot reach the server.",
        req,
        id,
    );
    let mut c = client;
    c.write_all(&answer)?;
    close_gently(client);
    Ok(())
}
