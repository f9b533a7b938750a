//! Test harness: real mounts of the real `bucketfs` binary against the S3 server started by
//! `scripts/s3-server.sh`, plus a direct S3 client (rust-s3, not our store) to check what is
//! really in the bucket. Every mount gets its own key prefix, so tests run in parallel.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use s3::creds::Credentials;
use s3::{Bucket, Region};
use sha2::{Digest, Sha256};

/// The binary under test: this build's, or `BUCKETFS_TEST_BIN` (to check that a test fails
/// on an older build).
pub static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("BUCKETFS_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_bucketfs").into())
});

/// The running S3 server, read from the env file `scripts/s3-server.sh start` writes.
pub struct Server {
    pub env: HashMap<String, String>,
    /// Variables removed from bucketfs's environment (`without_region`).
    unset: Vec<&'static str>,
    bucket: Box<Bucket>,
    rt: tokio::runtime::Runtime,
}

/// Every place a region can be configured from the environment.
const REGION_VARS: [&str; 4] = [
    "BUCKETFS_REGION",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "S3_REGION",
];

impl Server {
    /// The Garage server of `scripts/s3-server.sh`.
    pub fn running() -> Server {
        Self::from_env_file("BUCKETFS_TEST_ENV", "/tmp/bucketfs-s3/env")
    }

    /// The moto server of `scripts/moto-server.sh` (it records SSE, ACLs, storage classes).
    pub fn moto() -> Server {
        Self::from_env_file("BUCKETFS_TEST_MOTO_ENV", "/tmp/bucketfs-moto/env")
    }

    fn from_env_file(var: &str, default: &str) -> Server {
        let path = std::env::var(var).unwrap_or_else(|_| default.to_string());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("no S3 test server ({path}: {e}): run scripts/test.sh (or scripts/s3-server.sh / scripts/moto-server.sh start)")
        });
        let env: HashMap<String, String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        Self::from_env(env)
    }

    fn from_env(env: HashMap<String, String>) -> Server {
        let bucket = Bucket::new(
            &env["S3_BUCKET"],
            Self::region(&env),
            Self::credentials(&env),
        )
        .unwrap()
        .with_path_style();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Server {
            env,
            unset: Vec::new(),
            bucket,
            rt,
        }
    }

    fn region(env: &HashMap<String, String>) -> Region {
        Region::Custom {
            region: env["AWS_REGION"].clone(),
            endpoint: env["AWS_ENDPOINT_URL"].clone(),
        }
    }

    fn credentials(env: &HashMap<String, String>) -> Credentials {
        Credentials::new(
            Some(&env["AWS_ACCESS_KEY_ID"]),
            Some(&env["AWS_SECRET_ACCESS_KEY"]),
            None,
            None,
            None,
        )
        .unwrap()
    }

    /// A new bucket `name` on this server, created in `region` (CreateBucket with that
    /// LocationConstraint), as a server of its own whose environment names it and the region.
    pub fn new_bucket_in(&self, name: &str, region: &str) -> Server {
        let mut env = self.env.clone();
        env.insert("S3_BUCKET".into(), name.into());
        env.insert("AWS_REGION".into(), region.into());
        let server = Self::from_env(env);
        let created = server.rt.block_on(Bucket::create_with_path_style(
            name,
            Self::region(&server.env),
            Self::credentials(&server.env),
            s3::BucketConfiguration::default(),
        ));
        match created {
            Ok(r) if r.success() => server,
            Ok(r) => panic!(
                "CreateBucket {name} in {region}: HTTP {}: {}",
                r.response_code, r.response_text
            ),
            Err(e) => panic!("CreateBucket {name} in {region}: {e}"),
        }
    }

    /// Deletes the (empty) bucket.
    pub fn delete_bucket(&self) {
        self.rt
            .block_on(self.bucket.delete())
            .unwrap_or_else(|e| panic!("DeleteBucket {}: {e}", self.bucket_name()));
    }

    /// This server with no region in bucketfs's environment (none inherited either, nor an
    /// AWS profile's): bucketfs then asks the server for the bucket's region.
    pub fn without_region(mut self) -> Server {
        for var in REGION_VARS {
            self.env.remove(var);
        }
        self.unset.extend(REGION_VARS);
        self.env
            .insert("AWS_CONFIG_FILE".into(), "/dev/null".into());
        self
    }

    pub fn bucket_name(&self) -> &str {
        &self.env["S3_BUCKET"]
    }

    pub fn endpoint(&self) -> &str {
        &self.env["AWS_ENDPOINT_URL"]
    }

    pub fn put(&self, key: &str, data: &[u8]) {
        self.rt
            .block_on(self.bucket.put_object(key, data))
            .unwrap_or_else(|e| panic!("direct PUT {key}: {e}"));
    }

    /// PUT with user metadata (`x-amz-meta-NAME: VALUE` for each pair), as another tool
    /// would store it.
    pub fn put_with_metadata(&self, key: &str, data: &[u8], metadata: &[(&str, &str)]) {
        let mut put = self.bucket.put_object_builder(key, data);
        for (name, value) in metadata {
            put = put.with_metadata(name, value).unwrap();
        }
        self.rt
            .block_on(put.execute())
            .unwrap_or_else(|e| panic!("direct PUT {key}: {e}"));
    }

    /// The object's bytes, or `None` if it does not exist.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.rt.block_on(self.bucket.get_object(key)) {
            Ok(r) => Some(r.bytes().to_vec()),
            Err(s3::error::S3Error::HttpFailWithBody(404, _)) => None,
            Err(e) => panic!("direct GET {key}: {e}"),
        }
    }

    /// The object's bytes, `None` if missing, or the error's text.
    pub fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self.rt.block_on(self.bucket.get_object(key)) {
            Ok(r) => Ok(Some(r.bytes().to_vec())),
            Err(s3::error::S3Error::HttpFailWithBody(404, _)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The whole HEAD answer, or `None`.
    pub fn head_full(&self, key: &str) -> Option<s3::serde_types::HeadObjectResult> {
        match self.rt.block_on(self.bucket.head_object(key)) {
            Ok((h, _)) => Some(h),
            Err(s3::error::S3Error::HttpFailWithBody(404, _)) => None,
            Err(e) => panic!("direct HEAD {key}: {e}"),
        }
    }

    /// (content type, size) of an object, or `None`.
    pub fn head(&self, key: &str) -> Option<(Option<String>, u64)> {
        match self.rt.block_on(self.bucket.head_object(key)) {
            Ok((h, _)) => Some((h.content_type, h.content_length.unwrap_or(0) as u64)),
            Err(s3::error::S3Error::HttpFailWithBody(404, _)) => None,
            Err(e) => panic!("direct HEAD {key}: {e}"),
        }
    }

    /// Every key under `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let pages = self
            .rt
            .block_on(self.bucket.list(prefix.to_string(), None))
            .unwrap();
        let mut keys: Vec<String> = pages
            .into_iter()
            .flat_map(|p| p.contents.into_iter().map(|o| o.key))
            .collect();
        keys.sort();
        keys
    }

    /// PUTs many small objects, 32 at a time.
    pub fn put_many(&self, keys: &[String], data: &[u8]) {
        self.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for key in keys {
                let (bucket, key, data) = (self.bucket.clone(), key.clone(), data.to_vec());
                set.spawn(async move { bucket.put_object(&key, &data).await.map(|_| ()) });
                if set.len() >= 32 {
                    set.join_next().await.unwrap().unwrap().unwrap();
                }
            }
            while let Some(r) = set.join_next().await {
                r.unwrap().unwrap();
            }
        });
    }

    /// The sha256 of an object of `size` bytes, fetched in ranged GETs of `chunk` bytes (the
    /// object is never held whole in memory).
    pub fn sha256_streamed(&self, key: &str, size: u64, chunk: u64) -> String {
        let mut hash = Sha256::new();
        let mut offset = 0;
        while offset < size {
            let end = (offset + chunk).min(size) - 1;
            let r = self
                .rt
                .block_on(self.bucket.get_object_range(key, offset, Some(end)))
                .unwrap_or_else(|e| panic!("direct GET {key} {offset}-{end}: {e}"));
            assert_eq!(
                r.bytes().len() as u64,
                end + 1 - offset,
                "range {offset}-{end} of {key}"
            );
            hash.update(r.bytes());
            offset = end + 1;
        }
        format!("{:x}", hash.finalize())
    }

    pub fn delete(&self, key: &str) {
        let _ = self.rt.block_on(self.bucket.delete_object(key));
    }

    /// Starts a multipart upload directly (as another tool would) and returns its id.
    pub fn start_multipart(&self, key: &str) -> String {
        self.rt
            .block_on(
                self.bucket
                    .initiate_multipart_upload(key, "application/octet-stream"),
            )
            .unwrap()
            .upload_id
    }

    /// Unfinished multipart uploads under `prefix`: (key, upload id).
    pub fn multipart_uploads(&self, prefix: &str) -> Vec<(String, String)> {
        self.rt
            .block_on(self.bucket.list_multiparts_uploads(Some(prefix), None))
            .unwrap()
            .into_iter()
            .flat_map(|page| page.uploads.into_iter().map(|u| (u.key, u.id)))
            .collect()
    }

    /// A fresh prefix for one test.
    pub fn unique_prefix(&self, test: &str) -> String {
        format!("t-{test}-{:08x}", rand::random::<u32>())
    }
}

/// One live mount, unmounted (waiting for uploads) on drop.
pub struct Mount {
    pub dir: PathBuf,
    /// The mount's cache directory (staging, log, disk cache).
    pub cache: PathBuf,
    _cache_guard: Option<tempfile::TempDir>,
    _mountpoint: tempfile::TempDir,
    mounted: bool,
}

impl Mount {
    /// Mounts `source` with the server's credentials in the environment and `extra` flags.
    pub fn new(server: &Server, source: &str, extra: &[&str]) -> Mount {
        let mountpoint = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = vec![
            "mount".into(),
            source.into(),
            mountpoint.path().display().to_string(),
        ];
        let given = |flag: &str| extra.iter().position(|a| *a == flag);
        let (cache, cache_guard) = match given("--cache-dir") {
            Some(i) => (PathBuf::from(extra[i + 1]), None),
            None => {
                let t = tempfile::tempdir().unwrap();
                args.extend(["--cache-dir".into(), t.path().display().to_string()]);
                (t.path().to_path_buf(), Some(t))
            }
        };
        if given("--metadata-ttl").is_none() {
            args.extend(["--metadata-ttl".into(), "0.5".into()]);
        }
        // Most tests look in the bucket right after close: upload at close unless a test
        // asks for write-back (tests/posix_tools.rs and tests/durability.rs do).
        if given("--write-back-delay").is_none() {
            args.extend(["--write-back-delay".into(), "0".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = bucketfs(server, &args);
        assert!(
            out.status.success(),
            "mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount {
            dir: mountpoint.path().to_path_buf(),
            cache,
            _cache_guard: cache_guard,
            _mountpoint: mountpoint,
            mounted: true,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Unmounts with `bucketfs unmount`, which waits for pending uploads.
    pub fn unmount(mut self) {
        self.do_unmount();
    }

    fn do_unmount(&mut self) {
        if self.mounted {
            self.mounted = false;
            if !is_mounted(&self.dir) {
                return; // the test unmounted it another way
            }
            let out = Command::new(&*BIN)
                .args(["unmount", &self.dir.display().to_string()])
                .output()
                .unwrap();
            if !out.status.success() {
                eprintln!(
                    "unmount of {} failed: {}",
                    self.dir.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                // Leave no mount behind for later tests: detach it (the daemon then exits).
                let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
            }
        }
    }

    /// Unmounts and returns the daemon's whole log.
    pub fn log_after_unmount(mut self) -> String {
        self.do_unmount();
        self.log()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        let mut all = String::new();
        for entry in walk(&self.cache) {
            if entry.file_name().is_some_and(|n| n == "bucketfs.log") {
                all.push_str(&std::fs::read_to_string(entry).unwrap_or_default());
            }
        }
        all
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.do_unmount();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Runs the bucketfs binary with the server's environment.
/// What `bucketfs status` prints for the mount `m`.
pub fn status(m: &Mount) -> String {
    let out = std::process::Command::new(&*BIN)
        .args(["status", &m.dir.display().to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn bucketfs(server: &Server, args: &[String]) -> Output {
    let log_level = std::env::var("RUST_LOG").unwrap_or_else(|_| "bucketfs=debug".into());
    let mut command = Command::new(&*BIN);
    for var in &server.unset {
        command.env_remove(var);
    }
    command
        .args(args)
        .envs(&server.env)
        .env("RUST_LOG", log_level)
        .env_remove("BUCKETFS_CONFIG")
        .output()
        .unwrap()
}

pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::Rng::fill(&mut rand::thread_rng(), &mut v[..]);
    v
}

pub fn sha256(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// Retries `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// The pid of the bucketfs daemon serving `mountpoint` (found by its command line).
pub fn daemon_pid(mountpoint: &Path) -> Option<i32> {
    let target = mountpoint.display().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let parts: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if parts.first().is_some_and(|p| p.ends_with(b"bucketfs"))
            && parts.contains(&target.as_bytes())
            && parts.iter().any(|p| *p == b"--foreground")
        {
            return Some(pid);
        }
    }
    None
}

/// True if `path` is a mount point (listed in /proc/self/mounts).
pub fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let p = path.display().to_string();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(p.as_str()))
}

/// Request counts by kind, from the line the daemon logs at exit ("store requests: ...").
pub fn request_counts(log: &str) -> std::collections::BTreeMap<String, u64> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("store requests"))
        .unwrap_or_else(|| panic!("no request summary in the log:\n{log}"));
    let mut counts = std::collections::BTreeMap::new();
    for part in line.split_whitespace() {
        if let Some((kind, n)) = part.split_once('=') {
            if let Ok(n) = n.trim_matches(|c| c == ',' || c == '"').parse() {
                counts.insert(kind.to_string(), n);
            }
        }
    }
    counts
}

/// Sets atime and mtime of `path` (not following a symlink) to `secs`.`nanos`.
pub fn set_times(path: &Path, secs: i64, nanos: i64) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: nanos as _,
    };
    // SAFETY: a valid C string and two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [t, t].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
