//! Raw S3 baseline for `scripts/bench.sh`: the same S3 operations bucketfs performs, done
//! directly with rust-s3 (the library bucketfs uses), so the bench can tell how much of a
//! number is the server and how much is the filesystem layer on top of it.
//!
//! Connection settings come from the environment written by `scripts/s3-server.sh`:
//! AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, S3_BUCKET
//! (path-style addressing). Every subcommand prints one JSON line on stdout.
//!
//!   get KEY [--parallel N] [--part-size BYTES]          parallel ranged GETs, bytes discarded
//!   put KEY --size BYTES [--parallel N] [--part-size B]  multipart PUT of random data
//!   list PREFIX [--heads N]                              ListObjectsV2 without a delimiter
//!                                                        (every key below PREFIX: the flat,
//!                                                        recursive listing of a walk), pages
//!                                                        of 1000; with --heads, then a HEAD
//!                                                        of every key, N in flight (what
//!                                                        `ls -l` needs to show stored modes
//!                                                        and mtimes)
//!   put-many PREFIX --count N --size BYTES [--parallel P] [--dirs D]
//!   head KEY                                             size of one object
//!   wait-size KEY --size BYTES [--timeout S]             poll HEAD until the object has that size
//!   wait-count PREFIX --count N [--timeout S]            poll LIST until N files are there
//!                                                        (`dir/` markers and dotfiles not counted)
//!   delete-prefix PREFIX [--parallel P]                  delete every key under PREFIX
//!
//! Garage compresses (zstd) and deduplicates 1 MiB blocks by hash, so uploaded data must be
//! random *and* every block distinct: `put` reuses one random buffer per part but stamps a
//! unique 8-byte value every 256 KiB (run nonce, part number, offset).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rand::RngCore;
use s3::creds::Credentials;
use s3::serde_types::{ObjectIdentifier, Part};
use s3::{Bucket, Region};
use tokio::task::JoinSet;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const MIB: f64 = 1024.0 * 1024.0;
/// Distance between the unique stamps written into `put` buffers.
const STAMP_EVERY: usize = 256 * 1024;

#[derive(Parser)]
#[command(about = "Raw S3 baseline for scripts/bench.sh (reads the s3-server.sh env vars)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Parallel ranged GET of a whole object; the bytes are discarded.
    Get {
        key: String,
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        #[arg(long, default_value_t = 8 << 20)]
        part_size: u64,
    },
    /// Multipart PUT of random data (initiate, upload parts, complete).
    Put {
        key: String,
        #[arg(long)]
        size: u64,
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        #[arg(long, default_value_t = 8 << 20)]
        part_size: u64,
    },
    /// List every key under PREFIX (ListObjectsV2 without a delimiter: recursive, pages of
    /// 1000), then HEAD each key with `--heads` in flight if given.
    List {
        prefix: String,
        #[arg(long)]
        heads: Option<usize>,
    },
    /// Create COUNT objects of SIZE random bytes under PREFIX (in DIRS subfolders if > 0).
    PutMany {
        prefix: String,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        size: usize,
        #[arg(long, default_value_t = 32)]
        parallel: usize,
        #[arg(long, default_value_t = 0)]
        dirs: usize,
    },
    /// Size of one object (exit status 1 if it does not exist).
    Head { key: String },
    /// Wait until KEY exists with SIZE bytes.
    WaitSize {
        key: String,
        #[arg(long)]
        size: u64,
        #[arg(long, default_value_t = 600.0)]
        timeout: f64,
    },
    /// Wait until at least COUNT files (not `dir/` markers, not dotfiles) exist under PREFIX.
    WaitCount {
        prefix: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 600.0)]
        timeout: f64,
    },
    /// Delete every key under PREFIX (DeleteObjects, batches of 1000).
    DeletePrefix {
        prefix: String,
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
}

fn env(name: &str) -> Res<String> {
    std::env::var(name)
        .map_err(|_| format!("{name} is not set (source the s3-server.sh env file)").into())
}

fn bucket() -> Res<Arc<Bucket>> {
    let region = Region::Custom {
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        endpoint: env("AWS_ENDPOINT_URL")?,
    };
    let creds = Credentials::new(
        Some(&env("AWS_ACCESS_KEY_ID")?),
        Some(&env("AWS_SECRET_ACCESS_KEY")?),
        None,
        None,
        None,
    )?;
    let mut b = Bucket::new(&env("S3_BUCKET")?, region, creds)?.with_path_style();
    // Bounded ranges/parts keep each request short; the default 60 s is plenty.
    b.set_request_timeout(Some(Duration::from_secs(120)));
    Ok(Arc::from(b))
}

/// One JSON line: {"op":..., <fields>, "seconds":..., "bytes":..., "mib_s":...}.
fn report(op: &str, fields: &[(&str, String)], secs: f64, bytes: u64) {
    let mut out = format!("{{\"op\":\"{op}\"");
    for (k, v) in fields {
        out.push_str(&format!(",\"{k}\":{v}"));
    }
    let mib_s = if secs > 0.0 {
        bytes as f64 / MIB / secs
    } else {
        0.0
    };
    out.push_str(&format!(
        ",\"seconds\":{secs:.6},\"bytes\":{bytes},\"mib_s\":{mib_s:.2}}}"
    ));
    println!("{out}");
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

async fn object_size(b: &Bucket, key: &str) -> Res<u64> {
    let (head, _) = b.head_object(key).await?;
    Ok(head.content_length.unwrap_or(0).max(0) as u64)
}

/// Runs `parallel` workers that each take the next index below `n` and call `job(index)`.
async fn run_workers<F, Fut, T>(n: u64, parallel: usize, job: F) -> Res<Vec<T>>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Res<T>> + Send,
    T: Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let job = Arc::new(job);
    let mut set = JoinSet::new();
    for _ in 0..parallel.max(1) {
        let (next, job) = (next.clone(), job.clone());
        set.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(done);
                }
                done.push(job(i).await?);
            }
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    Ok(all)
}

async fn get(key: String, parallel: usize, part_size: u64) -> Res<()> {
    let b = bucket()?;
    let size = object_size(&b, &key).await?;
    let start = Instant::now();
    let parts = size.div_ceil(part_size);
    let (b2, k2) = (b.clone(), key.clone());
    let got = run_workers(parts, parallel, move |i| {
        let (b, key) = (b2.clone(), k2.clone());
        async move {
            let first = i * part_size;
            let last = (first + part_size).min(size) - 1;
            let mut sink = tokio::io::sink();
            b.get_object_range_to_writer(&key, first, Some(last), &mut sink)
                .await?;
            Ok(last + 1 - first)
        }
    })
    .await?;
    let bytes: u64 = got.iter().sum();
    if bytes != size {
        return Err(format!("read {bytes} bytes of {size}").into());
    }
    let fields = [("key", quoted(&key)), ("parallel", parallel.to_string())];
    report("get", &fields, start.elapsed().as_secs_f64(), bytes);
    Ok(())
}

/// Writes a value unique to (nonce, part, offset) every STAMP_EVERY bytes.
fn stamp(buf: &mut [u8], nonce: u64, part: u64) {
    for off in (0..buf.len()).step_by(STAMP_EVERY) {
        let v = nonce ^ (part << 40) ^ (off as u64);
        let end = (off + 8).min(buf.len());
        buf[off..end].copy_from_slice(&v.to_le_bytes()[..end - off]);
    }
}

async fn put(key: String, size: u64, parallel: usize, part_size: u64) -> Res<()> {
    let b = bucket()?;
    let mut base = vec![0u8; part_size.min(size) as usize];
    rand::thread_rng().fill_bytes(&mut base);
    let base = Arc::new(base);
    let nonce = rand::random::<u64>();
    let start = Instant::now();
    let upload = b
        .initiate_multipart_upload(&key, "application/octet-stream")
        .await?;
    let id = upload.upload_id;
    let parts = size.div_ceil(part_size);
    let (b2, k2, id2) = (b.clone(), key.clone(), id.clone());
    let result = run_workers(parts, parallel, move |i| {
        let (b, key, id, base) = (b2.clone(), k2.clone(), id2.clone(), base.clone());
        async move {
            let len = (size - i * part_size).min(part_size) as usize;
            let mut chunk = base[..len].to_vec();
            stamp(&mut chunk, nonce, i);
            let part: Part = b
                .put_multipart_chunk(chunk, &key, i as u32 + 1, &id, "application/octet-stream")
                .await?;
            Ok(part)
        }
    })
    .await;
    let mut done = match result {
        Ok(p) => p,
        Err(e) => {
            let _ = b.abort_upload(&key, &id).await;
            return Err(e);
        }
    };
    done.sort_by_key(|p| p.part_number);
    b.complete_multipart_upload(&key, &id, done).await?;
    let fields = [("key", quoted(&key)), ("parallel", parallel.to_string())];
    report("put", &fields, start.elapsed().as_secs_f64(), size);
    Ok(())
}

/// All keys under `prefix` (ListObjectsV2, no delimiter, pages of 1000).
async fn list_keys(b: &Bucket, prefix: &str) -> Res<Vec<String>> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let (page, _) = b
            .list_page(prefix.to_string(), None, token, None, Some(1000))
            .await?;
        keys.extend(page.contents.into_iter().map(|o| o.key));
        token = page.next_continuation_token;
        if token.is_none() {
            return Ok(keys);
        }
    }
}

/// Keys that are files: not `dir/` markers, and not dotfiles (rsync's `.name.XXXXXX`
/// temporaries must not count as transferred files).
fn count_files(keys: &[String]) -> usize {
    let is_file = |k: &&String| {
        let name = k.rsplit('/').next().unwrap_or(k);
        !k.ends_with('/') && !name.starts_with('.')
    };
    keys.iter().filter(is_file).count()
}

async fn list(prefix: String, heads: Option<usize>) -> Res<()> {
    let b = bucket()?;
    let start = Instant::now();
    let keys = list_keys(&b, &prefix).await?;
    if let Some(parallel) = heads {
        let mut set = JoinSet::new();
        for key in &keys {
            if set.len() >= parallel.max(1) {
                set.join_next().await.expect("non-empty")??;
            }
            let (b, key) = (b.clone(), key.clone());
            set.spawn(async move { b.head_object(&key).await.map(|_| ()) });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let fields = [
        ("prefix", quoted(&prefix)),
        ("count", keys.len().to_string()),
        ("files", count_files(&keys).to_string()),
        ("heads", heads.map_or(0, |_| keys.len()).to_string()),
    ];
    report("list", &fields, secs, 0);
    Ok(())
}

fn many_key(prefix: &str, i: usize, dirs: usize) -> String {
    let prefix = prefix.trim_end_matches('/');
    if dirs == 0 {
        format!("{prefix}/f{i:05}")
    } else {
        format!("{prefix}/d{:03}/f{i:05}", i % dirs)
    }
}

async fn put_many(
    prefix: String,
    count: usize,
    size: usize,
    parallel: usize,
    dirs: usize,
) -> Res<()> {
    let b = bucket()?;
    let start = Instant::now();
    let (b2, p2) = (b.clone(), prefix.clone());
    run_workers(count as u64, parallel, move |i| {
        let (b, key) = (b2.clone(), many_key(&p2, i as usize, dirs));
        async move {
            let mut data = vec![0u8; size];
            rand::thread_rng().fill_bytes(&mut data);
            b.put_object(&key, &data).await?;
            Ok(())
        }
    })
    .await?;
    let fields = [
        ("prefix", quoted(&prefix)),
        ("count", count.to_string()),
        ("parallel", parallel.to_string()),
    ];
    report(
        "put-many",
        &fields,
        start.elapsed().as_secs_f64(),
        (count * size) as u64,
    );
    Ok(())
}

async fn head(key: String) -> Res<()> {
    let b = bucket()?;
    let start = Instant::now();
    let size = object_size(&b, &key).await?;
    report(
        "head",
        &[("key", quoted(&key))],
        start.elapsed().as_secs_f64(),
        size,
    );
    Ok(())
}

/// Polls `check` every `every` until it returns true or `timeout` seconds pass.
async fn poll<F, Fut>(timeout: f64, every: Duration, mut check: F) -> Res<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed().as_secs_f64() > timeout {
            return Err(format!("timed out after {timeout} s").into());
        }
        tokio::time::sleep(every).await;
    }
}

async fn wait_size(key: String, size: u64, timeout: f64) -> Res<()> {
    let b = bucket()?;
    let every = Duration::from_millis(50);
    let secs = poll(timeout, every, || async {
        matches!(object_size(&b, &key).await, Ok(s) if s == size)
    })
    .await?;
    report("wait-size", &[("key", quoted(&key))], secs, size);
    Ok(())
}

async fn wait_count(prefix: String, count: usize, timeout: f64) -> Res<()> {
    let b = bucket()?;
    let every = Duration::from_millis(100);
    let secs = poll(timeout, every, || async {
        matches!(list_keys(&b, &prefix).await, Ok(k) if count_files(&k) >= count)
    })
    .await?;
    let fields = [("prefix", quoted(&prefix)), ("count", count.to_string())];
    report("wait-count", &fields, secs, 0);
    Ok(())
}

async fn delete_prefix(prefix: String, parallel: usize) -> Res<()> {
    let b = bucket()?;
    let start = Instant::now();
    let keys = list_keys(&b, &prefix).await?;
    let n = keys.len();
    let batches: Arc<Vec<Vec<String>>> = Arc::new(keys.chunks(1000).map(|c| c.to_vec()).collect());
    let (b2, batches2) = (b.clone(), batches.clone());
    run_workers(batches.len() as u64, parallel, move |i| {
        let (b, batch) = (b2.clone(), batches2[i as usize].clone());
        async move {
            let ids: Vec<ObjectIdentifier> = batch.into_iter().map(ObjectIdentifier::new).collect();
            let r = b.delete_objects(ids).await?;
            if !r.errors.is_empty() {
                return Err(format!("{} keys not deleted", r.errors.len()).into());
            }
            Ok(())
        }
    })
    .await?;
    let fields = [("prefix", quoted(&prefix)), ("count", n.to_string())];
    report("delete-prefix", &fields, start.elapsed().as_secs_f64(), 0);
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let r = match Cli::parse().cmd {
        Cmd::Get {
            key,
            parallel,
            part_size,
        } => get(key, parallel, part_size).await,
        Cmd::Put {
            key,
            size,
            parallel,
            part_size,
        } => put(key, size, parallel, part_size).await,
        Cmd::List { prefix, heads } => list(prefix, heads).await,
        Cmd::PutMany {
            prefix,
            count,
            size,
            parallel,
            dirs,
        } => put_many(prefix, count, size, parallel, dirs).await,
        Cmd::Head { key } => head(key).await,
        Cmd::WaitSize { key, size, timeout } => wait_size(key, size, timeout).await,
        Cmd::WaitCount {
            prefix,
            count,
            timeout,
        } => wait_count(prefix, count, timeout).await,
        Cmd::DeletePrefix { prefix, parallel } => delete_prefix(prefix, parallel).await,
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raw_s3: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
