//! A TCP proxy that makes the local S3 server look remote, for `scripts/bench.sh --remote`.
//!
//! Answers reach the client `--delay-ms` after the server sent them, and each connection
//! delivers at most `--mib-per-s`: what a client sees of a server in another data centre,
//! where the time to first byte and the throughput of one connection, not the server's CPU,
//! bound a read. The local server alone hides both, and so hides a client that waits for
//! one request before it sends the next (the proxy showed a read lock held across a GET that
//! the local benchmark did not). Requests go to the server without delay.

use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:3911
    listen: String,
    /// The server's address, e.g. 127.0.0.1:3900
    upstream: String,
    /// Delay added to every byte the server sends back
    #[arg(long, default_value_t = 30)]
    delay_ms: u64,
    /// Throughput of one connection, server to client
    #[arg(long, default_value_t = 60.0)]
    mib_per_s: f64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(&args.listen).await?;
    let delay = Duration::from_millis(args.delay_ms);
    let rate = args.mib_per_s * 1_048_576.0;
    loop {
        let (client, _) = listener.accept().await?;
        let upstream = args.upstream.clone();
        tokio::spawn(async move {
            if let Ok(server) = TcpStream::connect(&upstream).await {
                let _ = relay(client, server, delay, rate).await;
            }
        });
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    delay: Duration,
    rate: f64,
) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
        let _ = to_server.shutdown().await;
    });
    // What the server sent, each piece with the time it arrived.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 256 << 10];
        while let Ok(n @ 1..) = from_server.read(&mut buf).await {
            if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    // Each piece leaves `delay` after it arrived, and no sooner than the connection's rate
    // allows after the one before (an idle connection saves no credit).
    let mut free_at = Instant::now();
    while let Some((arrived, piece)) = rx.recv().await {
        let at = (arrived + delay).max(free_at);
        tokio::time::sleep_until(at.into()).await;
        to_client.write_all(&piece).await?;
        free_at = at + Duration::from_secs_f64(piece.len() as f64 / rate);
    }
    to_client.shutdown().await
}
