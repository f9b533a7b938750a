//! The metrics listener: a minimal HTTP/1.1 responder, all a scraper needs. `GET /metrics`
//! (or `HEAD`) answers the page, another path 404, another method 405; one request per
//! connection (`Connection: close`). A client gets a few seconds to send its request, and
//! its request line and headers at most 8 KiB.
//!
//! `bind` runs before the mount is made, on the plain std listener, so that an address in
//! use or not of this host stops the start with one line; `serve` takes it over on the
//! runtime.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Metrics, CONTENT_TYPE};

/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The most a request line and headers may take.
const MAX_REQUEST: usize = 8 << 10;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}: {source} (choose another --metrics-addr)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Listens on `addr` (not yet serving).
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, MetricsError> {
    let bound = std::net::TcpListener::bind(addr).and_then(|listener| {
        listener.set_nonblocking(true)?;
        Ok(listener)
    });
    bound.map_err(|source| MetricsError::Bind { addr, source })
}

/// Answers every connection to `listener` with `metrics` (on the runtime, for the daemon's
/// life).
pub async fn serve(listener: std::net::TcpListener, metrics: Arc<Metrics>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve the metrics");
            return;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving metrics at http://{addr}/metrics");
    }
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                tokio::spawn(answer(conn, metrics.clone()));
            }
            // Out of descriptors, or a connection reset before it was taken: the next
            // scrape tries again.
            Err(e) => {
                tracing::debug!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut conn: TcpStream, metrics: Arc<Metrics>) {
    let request = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut conn)).await;
    let reply = match request {
        Ok(Some(head)) => reply(&head, &metrics),
        Ok(None) => plain("400 Bad Request", "bad request\n"),
        Err(_) => return, // nothing asked in time
    };
    let _ = conn.write_all(&reply).await;
    let _ = conn.shutdown().await;
}

/// The request line and headers, up to the empty line; `None` when the client closes first
/// or sends too much.
async fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(head).ok()
}

/// The whole answer to the request `head`.
fn reply(head: &str, metrics: &Metrics) -> Vec<u8> {
    let mut words = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let page = metrics.render();
            let mut reply = response("200 OK", CONTENT_TYPE, page.len(), "");
            if method == "GET" {
                reply.extend_from_slice(page.as_bytes());
            }
            reply
        }
        ("GET" | "HEAD", _) => plain("404 Not Found", "not found: the metrics are at /metrics\n"),
        _ => {
            let text = "only GET and HEAD\n";
            let mut reply = response(
                "405 Method Not Allowed",
                "text/plain",
                text.len(),
                "Allow: GET, HEAD\r\n",
            );
            reply.extend_from_slice(text.as_bytes());
            reply
        }
    }
}

/// A text answer.
fn plain(status: &str, text: &str) -> Vec<u8> {
    let mut reply = response(status, "text/plain", text.len(), "");
    reply.extend_from_slice(text.as_bytes());
    reply
}

/// The status line and headers of an answer with a body of `len` bytes.
fn response(status: &str, content_type: &str, len: usize, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n{extra}Connection: close\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::{idle, sample};

    /// The whole answer to `request`, sent to a listener serving an idle mount's metrics.
    async fn ask(request: &str) -> String {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (metrics, _staging) = idle();
        let server = tokio::spawn(serve(listener, Arc::new(metrics)));
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        server.abort();
        answer
    }

    #[tokio::test]
    async fn get_metrics_answers_the_page_in_prometheus_text_format() {
        let answer = ask("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n").await;
        let (head, page) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", page.len())));
        assert!(head.ends_with("\r\nConnection: close"), "{head}");
        assert_eq!(sample(page, "bucketfs_pending_uploads"), Some(0.0));

        let head_only = ask("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(head_only.starts_with("HTTP/1.1 200 OK\r\n"), "{head_only}");
        assert!(head_only.ends_with("\r\n\r\n"), "no body: {head_only}");
    }

    #[tokio::test]
    async fn other_paths_and_methods_are_refused() {
        let answer = ask("GET / HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
        assert!(
            answer.ends_with("the metrics are at /metrics\n"),
            "{answer}"
        );
        let answer = ask("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(answer.contains("\r\nAllow: GET, HEAD\r\n"), "{answer}");
        let answer = ask(&format!(
            "GET /{} HTTP/1.1\r\n\r\n",
            "x".repeat(MAX_REQUEST)
        ))
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
    }

    #[test]
    fn an_address_in_use_is_an_error_naming_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = bind(addr).unwrap_err();
        let MetricsError::Bind {
            addr: named,
            source,
        } = &e;
        assert_eq!((*named, source.kind()), (addr, io::ErrorKind::AddrInUse));
        assert!(
            e.to_string()
                .starts_with(&format!("cannot serve metrics on {addr}: ")),
            "{e}"
        );
        assert!(
            e.to_string().ends_with("(choose another --metrics-addr)"),
            "{e}"
        );
    }
}
