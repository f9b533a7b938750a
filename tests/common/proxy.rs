//! An HTTP-aware TCP proxy between bucketfs and the S3 server, for fault injection.
//!
//! Each client connection gets its own upstream connection. Requests from the client are read
//! one at a time (request line, headers, a `Content-Length` body); a `decide` callback sees
//! each request's head and either lets it through or answers it itself with an error, after
//! reading and discarding the request's body, and then closes the connection (so the client
//! gets a clean HTTP answer, not a reset in the middle of sending). Responses from the server
//! are copied back as they are. Every request is recorded, with whether it was rejected.
//!
//! HTTP/1.1 clients do not pipeline, so when a new request arrives on a connection the
//! previous response has been fully received and the proxy may answer in its place.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The head of one request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent (`/bucket/key?partNumber=1&uploadId=...`).
    pub target: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// True if the proxy answered it itself.
    pub rejected: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn query_has(&self, param: &str) -> bool {
        self.target
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|kv| kv.split('=').next() == Some(param)))
    }

    /// `PUT /...?partNumber=N&uploadId=...` without a copy source: UploadPart.
    pub fn is_upload_part(&self) -> bool {
        self.method == "PUT"
            && self.query_has("partNumber")
            && self.query_has("uploadId")
            && self.header("x-amz-copy-source").is_none()
    }

    /// A `PUT` of a whole object (not a part, not a copy).
    pub fn is_put_object(&self) -> bool {
        self.method == "PUT"
            && !self.query_has("uploadId")
            && self.header("x-amz-copy-source").is_none()
    }

    /// `DELETE /...?uploadId=...`: AbortMultipartUpload.
    pub fn is_abort_multipart(&self) -> bool {
        self.method == "DELETE" && self.query_has("uploadId")
    }

    /// `POST /...?uploads`: CreateMultipartUpload.
    pub fn is_create_multipart(&self) -> bool {
        self.method == "POST" && self.query_has("uploads")
    }

    /// `POST /...?uploadId=...`: CompleteMultipartUpload.
    pub fn is_complete_multipart(&self) -> bool {
        self.method == "POST" && self.query_has("uploadId")
    }
}

/// What the proxy does with one request.
pub enum Action {
    /// Send it to the server.
    Forward,
    /// Answer it with this status line (`500 Internal Server Error`) and an S3 error body
    /// with this code (`InternalError`), then close the connection.
    Reject {
        status: &'static str,
        code: &'static str,
    },
}

impl Action {
    pub fn internal_error() -> Action {
        Action::Reject {
            status: "500 Internal Server Error",
            code: "InternalError",
        }
    }
}

type Decide = dyn Fn(&Request) -> Action + Send + Sync;

pub struct Proxy {
    pub port: u16,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and proxies to `upstream` (`http://host:port`).
    pub fn start(
        upstream: &str,
        decide: impl Fn(&Request) -> Action + Send + Sync + 'static,
    ) -> Proxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let decide: Arc<Decide> = Arc::new(decide);
        let log = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (decide, log) = (decide.clone(), log.clone());
                std::thread::spawn(move || serve(client, server, &*decide, &log));
            }
        });
        Proxy { port, seen }
    }

    /// The URL to hand bucketfs as `--endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request seen so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests seen so far match `f`.
    pub fn count(&self, f: impl Fn(&Request) -> bool) -> usize {
        self.seen.lock().unwrap().iter().filter(|r| f(r)).count()
    }
}

/// Serves one client connection until either side closes it or a request is rejected.
fn serve(client: TcpStream, server: TcpStream, decide: &Decide, log: &Mutex<Vec<Request>>) {
    let (Ok(client_w), Ok(server_r)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let mut client_w2 = client_w.try_clone().unwrap();
    std::thread::spawn(move || pump(server_r, client_w));
    let mut reader = BufReader::with_capacity(64 * 1024, client);
    let mut server_w = server;
    while let Some((head, mut request)) = read_head(&mut reader) {
        let action = decide(&request);
        if let Action::Reject { .. } = action {
            request.rejected = true;
        }
        let chunked = request
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length: u64 = request
            .header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let expect_continue = request
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        log.lock().unwrap().push(request);
        match action {
            Action::Forward => {
                if server_w.write_all(&head).is_err() {
                    break;
                }
                if chunked {
                    // Not parsed: pass the rest of the connection through unexamined.
                    let _ = std::io::copy(&mut reader, &mut server_w);
                    break;
                }
                let copied = std::io::copy(&mut (&mut reader).take(length), &mut server_w);
                if copied.map_or(true, |n| n < length) {
                    break;
                }
            }
            Action::Reject { status, code } => {
                if !expect_continue && !chunked {
                    // Let the client finish sending, so it reads our answer cleanly.
                    let _ = std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink());
                }
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                     <Message>injected by the test proxy</Message>\
                     <RequestId>proxy</RequestId></Error>"
                );
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = client_w2.write_all(answer.as_bytes());
                let _ = client_w2.flush();
                break;
            }
        }
    }
    let _ = server_w.shutdown(Shutdown::Both);
    let _ = client_w2.shutdown(Shutdown::Both);
}

/// Reads one request head (up to and including the blank line): its raw bytes and parse.
/// `None` at end of stream or on a malformed head.
fn read_head(reader: &mut BufReader<TcpStream>) -> Option<(Vec<u8>, Request)> {
    let mut head = Vec::new();
    let mut lines = Vec::new();
    loop {
        let start = head.len();
        match reader.read_until(b'\n', &mut head) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&head[start..])
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if line.is_empty() {
            if lines.is_empty() {
                // Stray blank line between requests.
                head.clear();
                continue;
            }
            break;
        }
        lines.push(line);
        if head.len() > 1 << 20 {
            return None;
        }
    }
    let mut first = lines[0].split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((
        head,
        Request {
            method,
            target,
            headers,
            rejected: false,
        },
    ))
}

/// Copies `from` to `to` until `from` ends, then closes `to` for writing.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
