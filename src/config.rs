//! Configuration: one resolved `Config` from four layers, highest first:
//! command-line flags > environment > TOML config file > built-in defaults.
//!
//! Every layer fills the same `Layer` (all fields optional); layers are merged field by field
//! and only then validated, so an error names the value the user actually gave and how to fix
//! it. Every key is documented in `config.example.toml`; unknown keys are refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use serde::Deserialize;

use crate::store::local::LocalStore;
use crate::store::s3::S3Store;
use crate::store::{ObjectStore, SetupError, StoreError};

use crate::store::retry::RetryPolicy;
use crate::store::s3::S3Settings;
use crate::store::{Sse, SseCKey, CANNED_ACLS};
use crate::upload::options::{ObjectOptions, OptionsResolver, Rule};

/// Smallest part S3 accepts (except the last one).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// A configuration problem, worded for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// One layer of settings; `None` means "not set here".
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub source: Option<String>,
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub force_path_style: Option<bool>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub session_token: Option<String>,
    pub profile: Option<String>,
    pub read_only: Option<bool>,
    pub allow_other: Option<bool>,
    pub allow_non_empty: Option<bool>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub file_mode: Option<Mode>,
    pub dir_mode: Option<Mode>,
    pub cache_dir: Option<PathBuf>,
    pub part_size: Option<Size>,
    pub upload_concurrency: Option<usize>,
    pub max_retries: Option<u32>,
    pub request_timeout: Option<f64>,
    pub metadata_ttl: Option<f64>,
    pub read_ahead: Option<Size>,
    pub log_file: Option<PathBuf>,
    pub negative_ttl: Option<f64>,
    pub negative_cache_entries: Option<usize>,
    pub dir_ttl: Option<f64>,
    pub dir_cache_entries: Option<usize>,
    pub dir_read_ahead: Option<usize>,
    pub memory_cache: Option<Size>,
    pub memory_budget: Option<Size>,
    pub disk_cache: Option<Size>,
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    pub sse_c_key_file: Option<PathBuf>,
    pub acl: Option<String>,
    pub storage_class: Option<String>,
    pub cache_control: Option<String>,
    pub rules: Option<Vec<RuleLayer>>,
    pub stale_upload_age: Option<f64>,
    pub retry_interval: Option<f64>,
    pub write_back_delay: Option<f64>,
    pub ignore_chmod: Option<bool>,
    pub ignore_chown: Option<bool>,
    pub ignore_utimens: Option<bool>,
    pub listing_metadata: Option<bool>,
}

/// Writes the methods that go over every field of `Layer` from one list of its fields.
macro_rules! layer_fields {
    ($($f:ident),* $(,)?) => {
        impl Layer {
            /// Fields set in `self` win over those in `lower`.
            pub fn over(self, lower: Layer) -> Layer {
                Layer { $($f: self.$f.or(lower.$f)),* }
            }

            /// Names of the keys this layer leaves unset.
            pub fn unset_fields(&self) -> Vec<&'static str> {
                [$((stringify!($f), self.$f.is_none())),*]
                    .into_iter()
                    .filter(|(_, unset)| *unset)
                    .map(|(name, _)| name)
                    .collect()
            }
        }
    };
}

layer_fields!(
    source,
    bucket,
    endpoint,
    region,
    force_path_style,
    access_key,
    secret_key,
    session_token,
    profile,
    read_only,
    allow_other,
    allow_non_empty,
    uid,
    gid,
    file_mode,
    dir_mode,
    cache_dir,
    part_size,
    upload_concurrency,
    max_retries,
    request_timeout,
    metadata_ttl,
    read_ahead,
    log_file,
    negative_ttl,
    negative_cache_entries,
    dir_ttl,
    dir_cache_entries,
    dir_read_ahead,
    memory_cache,
    memory_budget,
    disk_cache,
    sse,
    sse_kms_key_id,
    sse_c_key_file,
    acl,
    storage_class,
    cache_control,
    rules,
    stale_upload_age,
    retry_interval,
    write_back_delay,
    ignore_chmod,
    ignore_chown,
    ignore_utimens,
    listing_metadata,
);

/// One `[[rules]]` entry: object options for keys under `prefix` (a bucket key prefix).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleLayer {
    pub prefix: String,
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
    pub acl: Option<String>,
    pub storage_class: Option<String>,
    pub cache_control: Option<String>,
}

impl Layer {
    /// Reads a TOML config file. Errors name the file, the line and the offending key.
    pub fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "cannot read config file {}: {e} (check the --config path)",
                path.display()
            ))
        })?;
        Self::from_toml(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    pub fn from_toml(text: &str) -> Result<Layer, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start].matches('\n').count())
                .map(|n| {
                    let shown = text.lines().nth(n).unwrap_or("").trim();
                    format!("line {} (`{shown}`): ", n + 1)
                })
                .unwrap_or_default();
            let msg = e.message().replace('\n', " ");
            let hint = if msg.contains("unknown field") {
                " (see config.example.toml for the valid keys)"
            } else {
                ""
            };
            ConfigError(format!("{line}{msg}{hint}"))
        })
    }

    /// Reads the environment: the AWS names, the `S3_*` names other S3 tools use, and
    /// `BUCKETFS_<KEY>` for every config key.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
        let first = |names: &[&str]| names.iter().find_map(|n| get(n).filter(|v| !v.is_empty()));
        let mut l = Layer {
            bucket: first(&["BUCKETFS_BUCKET", "S3_BUCKET"]),
            endpoint: first(&[
                "BUCKETFS_ENDPOINT",
                "AWS_ENDPOINT_URL_S3",
                "AWS_ENDPOINT_URL",
                "S3_ENDPOINT",
            ]),
            region: first(&[
                "BUCKETFS_REGION",
                "AWS_REGION",
                "AWS_DEFAULT_REGION",
                "S3_REGION",
            ]),
            access_key: first(&["BUCKETFS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "S3_ACCESS_KEY"]),
            secret_key: first(&[
                "BUCKETFS_SECRET_KEY",
                "AWS_SECRET_ACCESS_KEY",
                "S3_SECRET_KEY",
            ]),
            session_token: first(&["BUCKETFS_SESSION_TOKEN", "AWS_SESSION_TOKEN"]),
            profile: first(&["BUCKETFS_PROFILE", "AWS_PROFILE"]),
            source: first(&["BUCKETFS_SOURCE"]),
            cache_dir: first(&["BUCKETFS_CACHE_DIR"]).map(PathBuf::from),
            log_file: first(&["BUCKETFS_LOG_FILE"]).map(PathBuf::from),
            ..Layer::default()
        };
        let mut typed = toml::Table::new();
        if let Some(v) = first(&["BUCKETFS_FORCE_PATH_STYLE", "S3_FORCE_PATH_STYLE"]) {
            typed.insert("force_path_style".into(), parse_bool_env(&v)?);
        }
        for key in [
            "read_only",
            "allow_other",
            "allow_non_empty",
            "uid",
            "gid",
            "file_mode",
            "dir_mode",
            "part_size",
            "upload_concurrency",
            "max_retries",
            "request_timeout",
            "metadata_ttl",
            "read_ahead",
            "negative_ttl",
            "negative_cache_entries",
            "dir_ttl",
            "dir_cache_entries",
            "dir_read_ahead",
            "memory_cache",
            "memory_budget",
            "disk_cache",
            "sse",
            "sse_kms_key_id",
            "sse_c_key_file",
            "acl",
            "storage_class",
            "cache_control",
            "stale_upload_age",
            "retry_interval",
            "write_back_delay",
            "ignore_chmod",
            "ignore_chown",
            "ignore_utimens",
            "listing_metadata",
        ] {
            let name = format!("BUCKETFS_{}", key.to_uppercase());
            if let Some(v) = first(&[name.as_str()]) {
                let value = if BOOL_KEYS.contains(&key) {
                    parse_bool_env(&v)?
                } else {
                    env_value(v)
                };
                typed.insert(key.into(), value);
            }
        }
        let from_typed: Layer = typed
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(format!("environment: {}", e.message())))?;
        l = l.over(from_typed);
        Ok(l)
    }
}

/// Keys whose environment values are booleans (`1`, `true`, `yes`, ...).
const BOOL_KEYS: &[&str] = &[
    "read_only",
    "allow_other",
    "allow_non_empty",
    "ignore_chmod",
    "ignore_chown",
    "ignore_utimens",
    "listing_metadata",
];

/// Interprets environment text as a TOML value ("8", "0o644"), else as a plain string.
fn env_value(text: String) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or(toml::Value::String(text))
}

fn parse_bool_env(v: &str) -> Result<toml::Value, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
        "0" | "false" | "no" | "off" => Ok(toml::Value::Boolean(false)),
        _ => err(format!("`{v}` is not a boolean: use true or false")),
    }
}

/// A byte count written as an integer or as "8MiB", "64 KiB", "1G".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(text: &str) -> Result<Size, ConfigError> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            ConfigError(format!(
                "`{text}` is not a size: use bytes or a unit, e.g. 8MiB"
            ))
        })?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => {
                return err(format!(
                    "`{text}` has an unknown size unit: use KiB, MiB or GiB"
                ))
            }
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| ConfigError(format!("`{text}` is too large")))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Size(n)),
            Raw::Text(t) => Size::parse(&t).map_err(|e| serde::de::Error::custom(e.0)),
        }
    }
}

/// Permission bits written as an octal string ("0644") or a TOML octal integer (0o644).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u16);

impl Mode {
    pub fn parse(text: &str) -> Result<Mode, ConfigError> {
        let t = text.trim().trim_start_matches("0o");
        match u16::from_str_radix(t, 8) {
            Ok(m) if m <= 0o7777 => Ok(Mode(m)),
            _ => err(format!(
                "`{text}` is not a permission mode: use octal, e.g. 0644"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u16),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) if n <= 0o7777 => Ok(Mode(n)),
            Raw::Int(n) => Err(serde::de::Error::custom(format!(
                "{n} is not a permission mode: use an octal string, e.g. \"0644\""
            ))),
            Raw::Text(t) => Mode::parse(&t).map_err(|e| serde::de::Error::custom(e.0)),
        }
    }
}

/// Where the objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `s3://BUCKET[/PREFIX]`; `prefix` is empty or ends with `/`.
    S3 { bucket: String, prefix: String },
    /// `file:///some/dir`.
    Local { root: PathBuf },
}

impl Source {
    pub fn parse(text: &str) -> Result<Source, ConfigError> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return err(format!(
                    "`{text}` names no bucket: use s3://BUCKET or s3://BUCKET/PREFIX"
                ));
            }
            if !valid_bucket_name(bucket) {
                return err(format!(
                    "`{bucket}` is not a valid bucket name (3-63 characters: a-z, 0-9, '.', '-', '_')"
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
                && !prefix.is_empty()
            {
                return err(format!(
                    "prefix `{prefix}` has an empty, `.` or `..` segment: use s3://BUCKET/a/b"
                ));
            }
            let prefix = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            };
            return Ok(Source::S3 {
                bucket: bucket.into(),
                prefix,
            });
        }
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return err(format!(
                    "`{text}` is not an absolute file URL: use file:///absolute/dir"
                ));
            }
            return Ok(Source::Local { root: path.into() });
        }
        err(format!(
            "`{text}` is not a source: use s3://BUCKET[/PREFIX] or file:///some/dir"
        ))
    }

    /// A short, filesystem-safe name for this source (used for per-mount cache folders).
    pub fn slug(&self) -> String {
        let raw = match self {
            Source::S3 { bucket, prefix } => format!("s3-{bucket}-{prefix}"),
            Source::Local { root } => format!("file-{}", root.display()),
        };
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c))
}

/// Options the filesystem layer needs.
#[derive(Debug, Clone)]
pub struct FsOptions {
    pub read_only: bool,
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    pub metadata_ttl: Duration,
    /// Largest read-ahead window of one handle.
    pub read_ahead: u64,
    pub negative_ttl: Duration,
    pub negative_cache_entries: usize,
    pub dir_ttl: Duration,
    pub dir_cache_entries: usize,
    /// Sibling directories listed ahead of a tree walk (0 = off); see `fs::walk`.
    pub dir_read_ahead: usize,
    /// Memory block cache, bytes (0 = off).
    pub memory_cache: u64,
    /// Memory for prefetched data in flight, all handles together, bytes.
    pub prefetch_budget: u64,
    /// On-disk block cache, bytes (0 = off).
    pub disk_cache: u64,
    pub part_size: u64,
    pub upload_concurrency: usize,
    /// Options of new objects (SSE, ACL, storage class, Cache-Control, per-prefix rules).
    pub objects: OptionsResolver,
    /// Multipart uploads this bucketfs started and left behind longer ago are aborted at mount.
    pub stale_upload_age: Duration,
    /// First wait before a failed upload of a closed file is tried again (then doubling).
    pub retry_interval: Duration,
    /// How long a closed file waits before it is uploaded (0 = at close).
    pub write_back_delay: Duration,
    /// chmod / chown / utimens succeed without changing or storing anything.
    pub ignore_chmod: bool,
    pub ignore_chown: bool,
    pub ignore_utimens: bool,
    /// readdir fetches the metadata (mode, owner, mtime, symlink) of listed entries.
    pub listing_metadata: bool,
}

/// The fully resolved configuration of one mount (or `check`).
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    /// Key prefix inside the bucket ("" or ending with '/'); empty for a local source.
    pub prefix: String,
    pub s3: Option<S3Settings>,
    pub fs: FsOptions,
    pub allow_other: bool,
    /// Mount over a directory that has files (they are hidden while mounted).
    pub allow_non_empty: bool,
    pub cache_dir: PathBuf,
    pub log_file: Option<PathBuf>,
}

impl Config {
    /// Validates a merged layer into a `Config`. `source_arg` is the SOURCE given on the
    /// command line, if any.
    pub fn resolve(layer: Layer) -> Result<Config, ConfigError> {
        let source_text = match (&layer.source, &layer.bucket) {
            (Some(s), _) => s.clone(),
            (None, Some(b)) => format!("s3://{b}"),
            (None, None) => {
                return err(
                    "no bucket given: pass SOURCE (s3://BUCKET[/PREFIX]), set S3_BUCKET, or set `source` in the config file",
                )
            }
        };
        let source = Source::parse(&source_text)?;

        let part_size = layer.part_size.map(|s| s.0).unwrap_or(8 << 20);
        if part_size < MIN_PART_SIZE {
            return err(format!(
                "part size {part_size} bytes is below S3's minimum of 5 MiB: use --part-size 5MiB or more"
            ));
        }
        if part_size > MAX_PART_SIZE {
            return err(format!(
                "part size {part_size} bytes is above S3's maximum of 5 GiB: use --part-size 5GiB or less"
            ));
        }
        let upload_concurrency = layer.upload_concurrency.unwrap_or(4);
        if upload_concurrency == 0 {
            return err("upload_concurrency must be at least 1");
        }
        let request_timeout = seconds("request_timeout", layer.request_timeout.unwrap_or(30.0))?;
        if request_timeout.is_zero() {
            return err("request_timeout must be above 0 seconds");
        }
        let metadata_ttl = seconds("metadata_ttl", layer.metadata_ttl.unwrap_or(1.0))?;
        let negative_ttl = seconds("negative_ttl", layer.negative_ttl.unwrap_or(1.0))?;
        let dir_ttl = seconds("dir_ttl", layer.dir_ttl.unwrap_or(1.0))?;
        let memory_cache = layer.memory_cache.map(|s| s.0).unwrap_or(32 << 20);
        let memory_budget = layer.memory_budget.map(|s| s.0).unwrap_or(128 << 20);
        let read_ahead = layer
            .read_ahead
            .map(|s| s.0)
            .unwrap_or(64 << 20)
            .max(1 << 20);
        if memory_budget < memory_cache + (8 << 20) {
            return err(format!(
                "memory_budget ({memory_budget} bytes) must exceed memory_cache ({memory_cache} bytes) by at least 8 MiB for reads in flight"
            ));
        }

        let objects = object_options(&layer)?;
        let sse_c_key = layer
            .sse_c_key_file
            .as_deref()
            .map(|p| {
                SseCKey::from_file(p).map_err(|e| ConfigError(format!("--sse-c-key-file: {e}")))
            })
            .transpose()?;
        if sse_c_key.is_some() && layer.sse.is_some() {
            return err("sse and sse_c_key_file cannot both be set: choose S3-managed keys (--sse) or your own key (--sse-c-key-file)");
        }
        let (prefix, s3) = match &source {
            Source::S3 { bucket, prefix } => {
                let endpoint = layer
                    .endpoint
                    .clone()
                    .map(|e| validate_endpoint(&e))
                    .transpose()?;
                let path_style = layer.force_path_style.unwrap_or(false)
                    || endpoint.as_deref().is_some_and(endpoint_wants_path_style);
                let settings = S3Settings {
                    bucket: bucket.clone(),
                    region: layer.region.clone().unwrap_or_else(|| "us-east-1".into()),
                    endpoint,
                    path_style,
                    access_key: layer.access_key.clone(),
                    secret_key: layer.secret_key.clone(),
                    session_token: layer.session_token.clone(),
                    profile: layer.profile.clone(),
                    sse_c_key: sse_c_key.clone(),
                    retry: RetryPolicy {
                        max_retries: layer.max_retries.unwrap_or(4),
                        base_delay: Duration::from_millis(100),
                        max_delay: Duration::from_secs(5),
                        request_timeout,
                    },
                };
                if settings.access_key.is_some() != settings.secret_key.is_some() {
                    return err(
                        "only one of access key and secret key is set: set both (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or neither",
                    );
                }
                (prefix.clone(), Some(settings))
            }
            Source::Local { root } => {
                if !root.is_dir() {
                    return err(format!(
                        "local source {} is not a directory: create it first",
                        root.display()
                    ));
                }
                (String::new(), None)
            }
        };

        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        // Absolute: the background daemon does not keep the caller's working directory, and
        // the journal names staging files by path.
        let cache_dir = layer.cache_dir.clone().unwrap_or_else(default_cache_dir);
        let cache_dir = std::path::absolute(&cache_dir).unwrap_or(cache_dir);
        Ok(Config {
            source,
            prefix,
            s3,
            fs: FsOptions {
                read_only: layer.read_only.unwrap_or(false),
                uid: layer.uid.unwrap_or(euid),
                gid: layer.gid.unwrap_or(egid),
                file_mode: layer.file_mode.map(|m| m.0).unwrap_or(0o644),
                dir_mode: layer.dir_mode.map(|m| m.0).unwrap_or(0o755),
                metadata_ttl,
                read_ahead,
                negative_ttl,
                negative_cache_entries: layer.negative_cache_entries.unwrap_or(10_000),
                dir_ttl,
                dir_cache_entries: layer.dir_cache_entries.unwrap_or(1_000),
                dir_read_ahead: layer.dir_read_ahead.unwrap_or(4),
                memory_cache,
                prefetch_budget: memory_budget - memory_cache,
                disk_cache: layer.disk_cache.map(|s| s.0).unwrap_or(0),
                part_size,
                upload_concurrency,
                objects,
                stale_upload_age: seconds(
                    "stale_upload_age",
                    layer.stale_upload_age.unwrap_or(86_400.0),
                )?,
                retry_interval: seconds("retry_interval", layer.retry_interval.unwrap_or(5.0))?
                    .max(Duration::from_millis(100)),
                write_back_delay: seconds(
                    "write_back_delay",
                    layer.write_back_delay.unwrap_or(0.5),
                )?,
                ignore_chmod: layer.ignore_chmod.unwrap_or(false),
                ignore_chown: layer.ignore_chown.unwrap_or(false),
                ignore_utimens: layer.ignore_utimens.unwrap_or(false),
                listing_metadata: layer.listing_metadata.unwrap_or(true),
            },
            allow_other: layer.allow_other.unwrap_or(false),
            allow_non_empty: layer.allow_non_empty.unwrap_or(false),
            cache_dir,
            log_file: layer.log_file.clone(),
        })
    }
}

impl Config {
    /// Opens the store this configuration names. For S3 this resolves credentials, which may
    /// block on the network (instance metadata): call it outside the async runtime.
    pub fn open_store(&self) -> Result<Arc<dyn ObjectStore>, StoreError> {
        match (&self.source, &self.s3) {
            (Source::S3 { .. }, Some(settings)) => Ok(Arc::new(S3Store::new(settings)?)),
            (Source::Local { root }, _) => Ok(Arc::new(LocalStore::new(root.clone())?)),
            (Source::S3 { .. }, None) => Err(StoreError::Setup(SetupError::NoS3Settings)),
        }
    }

    /// Where this mount keeps its staging files and log.
    pub fn mount_dir(&self) -> PathBuf {
        self.cache_dir.join(self.source.slug())
    }

    /// Where the endpoint is, for messages.
    pub fn endpoint_text(&self) -> String {
        match (&self.source, &self.s3) {
            (Source::S3 { .. }, Some(s)) => s
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("AWS S3 ({})", s.region)),
            (Source::Local { root }, _) => root.display().to_string(),
            _ => String::new(),
        }
    }
}

/// Parses one level of object options (the mount's, or a rule's).
fn options_level(
    sse: &Option<String>,
    kms_key_id: &Option<String>,
    acl: &Option<String>,
    storage_class: &Option<String>,
    cache_control: &Option<String>,
) -> Result<ObjectOptions, ConfigError> {
    let sse = match (sse.as_deref(), kms_key_id) {
        (None, None) => None,
        (None, Some(_)) => return err("sse_kms_key_id needs sse = \"aws:kms\" (or \"aws:kms:dsse\")"),
        (Some("AES256"), None) => Some(Sse::Aes256),
        (Some("AES256"), Some(_)) => {
            return err("sse_kms_key_id needs sse = \"aws:kms\" (or \"aws:kms:dsse\"), not AES256")
        }
        (Some("aws:kms"), id) => Some(Sse::Kms { key_id: id.clone() }),
        (Some("aws:kms:dsse"), id) => Some(Sse::KmsDsse { key_id: id.clone() }),
        (Some(other), _) => {
            return err(format!(
                "unknown SSE mode `{other}`: use AES256, aws:kms or aws:kms:dsse (or --sse-c-key-file for your own key)"
            ))
        }
    };
    if let Some(a) = acl {
        if !CANNED_ACLS.contains(&a.as_str()) {
            return err(format!(
                "unknown canned ACL `{a}`: use one of {}",
                CANNED_ACLS.join(", ")
            ));
        }
    }
    Ok(ObjectOptions {
        sse,
        acl: acl.clone(),
        storage_class: storage_class.clone(),
        cache_control: cache_control.clone(),
    })
}

fn object_options(layer: &Layer) -> Result<OptionsResolver, ConfigError> {
    let defaults = options_level(
        &layer.sse,
        &layer.sse_kms_key_id,
        &layer.acl,
        &layer.storage_class,
        &layer.cache_control,
    )?;
    let mut rules = Vec::new();
    for r in layer.rules.iter().flatten() {
        let options = options_level(
            &r.sse,
            &r.sse_kms_key_id,
            &r.acl,
            &r.storage_class,
            &r.cache_control,
        )
        .map_err(|e| ConfigError(format!("rule for prefix `{}`: {}", r.prefix, e.0)))?;
        rules.push(Rule {
            prefix: r.prefix.clone(),
            options,
        });
    }
    Ok(OptionsResolver::new(defaults, rules))
}

fn seconds(name: &str, v: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| ConfigError(format!("{name} = {v} is not a valid number of seconds")))
}

/// Checks an endpoint URL and returns it without a trailing slash.
fn validate_endpoint(text: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| {
        ConfigError(format!(
            "bad endpoint URL `{text}`: {why} (use e.g. http://127.0.0.1:3900 or https://s3.example.com)"
        ))
    };
    let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(|h| h.is_empty()) {
        return Err(bad("it has no host"));
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(bad("it must not contain a path"));
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// Virtual-host addressing needs DNS names; IP addresses and `localhost` need path style.
fn endpoint_wants_path_style(endpoint: &str) -> bool {
    match url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_)) => true,
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("bucketfs");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache/bucketfs");
    }
    std::env::temp_dir().join("bucketfs-cache")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn flags_beat_environment_beat_file_beat_defaults() {
        let file =
            Layer::from_toml("region = \"file-region\"\npart_size = \"16MiB\"\nuid = 7").unwrap();
        let envl =
            Layer::from_env(env(&[("AWS_REGION", "env-region"), ("BUCKETFS_UID", "8")])).unwrap();
        let flags = Layer {
            uid: Some(9),
            source: Some("s3://bucket".into()),
            ..Layer::default()
        };
        let cfg = Config::resolve(flags.over(envl.over(file))).unwrap();
        let s3 = cfg.s3.unwrap();
        assert_eq!(s3.region, "env-region");
        assert_eq!(cfg.fs.uid, 9);
        assert_eq!(cfg.fs.part_size, 16 << 20);
        assert_eq!(cfg.fs.dir_mode, 0o755);
    }

    #[test]
    fn unknown_config_key_is_refused_with_its_line() {
        let e = Layer::from_toml("region = \"x\"\nregoin = \"y\"\n").unwrap_err();
        assert!(e.0.contains("line 2"), "{}", e.0);
        assert!(e.0.contains("regoin"), "{}", e.0);
    }

    #[test]
    fn unparsable_values_are_refused() {
        assert!(Layer::from_toml("part_size = \"8 parsecs\"").is_err());
        assert!(Layer::from_toml("file_mode = \"0999\"").is_err());
        assert!(Layer::from_toml("read_only = \"maybe\"").is_err());
        assert!(Layer::from_env(env(&[("S3_FORCE_PATH_STYLE", "perhaps")])).is_err());
    }

    #[test]
    fn part_size_below_five_mib_is_refused() {
        let l = Layer {
            source: Some("s3://bucket".into()),
            part_size: Some(Size(1 << 20)),
            ..Layer::default()
        };
        let e = Config::resolve(l).unwrap_err();
        assert!(e.0.contains("5 MiB"), "{}", e.0);
    }

    #[test]
    fn sources_parse_bucket_and_prefix() {
        assert_eq!(
            Source::parse("s3://my-bucket/a/b/").unwrap(),
            Source::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b/".into()
            }
        );
        assert!(Source::parse("s3:///x").is_err());
        assert!(Source::parse("s3://b/a//c").is_err());
        assert!(Source::parse("http://x").is_err());
        assert!(Source::parse("file://relative").is_err());
    }

    #[test]
    fn missing_bucket_is_refused() {
        let e = Config::resolve(Layer::default()).unwrap_err();
        assert!(e.0.contains("no bucket"), "{}", e.0);
    }

    #[test]
    fn s3_bucket_env_names_the_bucket() {
        let l = Layer::from_env(env(&[
            ("S3_BUCKET", "envbucket"),
            ("S3_ENDPOINT", "http://10.0.0.1:9000"),
        ]))
        .unwrap();
        let cfg = Config::resolve(l).unwrap();
        assert_eq!(
            cfg.source,
            Source::S3 {
                bucket: "envbucket".into(),
                prefix: String::new()
            }
        );
        assert!(
            cfg.s3.unwrap().path_style,
            "an IP endpoint selects path style"
        );
    }

    #[test]
    fn endpoints_are_validated_and_pick_the_addressing_style() {
        assert!(validate_endpoint("ftp://x").is_err());
        assert!(validate_endpoint("not a url").is_err());
        assert!(validate_endpoint("http://host:9000/path").is_err());
        assert!(endpoint_wants_path_style("http://localhost:3900"));
        assert!(endpoint_wants_path_style("http://[::1]:3900"));
        assert!(!endpoint_wants_path_style(
            "https://s3.eu-west-1.amazonaws.com"
        ));
    }

    #[test]
    fn config_example_documents_every_key_with_a_valid_value() {
        let example = include_str!("../config.example.toml");
        let uncommented: String = example
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.starts_with("[[") || l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' '))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let layer = Layer::from_toml(&uncommented).unwrap();
        // The SSE-C key file and the S3-managed SSE mode exclude each other, so the example
        // shows the key file commented twice (##) and it is checked on its own.
        assert_eq!(
            layer.unset_fields(),
            vec!["sse_c_key_file"],
            "undocumented keys"
        );
        assert!(example.contains("## sse_c_key_file = "));
        let resolved = Config::resolve(Layer {
            source: Some("s3://bucket".into()),
            ..layer
        });
        assert!(
            resolved.is_ok(),
            "the example's values are valid: {:?}",
            resolved.err()
        );
    }

    #[test]
    fn bad_object_options_are_refused_at_start() {
        let with = |l: Layer| {
            Config::resolve(Layer {
                source: Some("s3://bucket".into()),
                ..l
            })
        };
        let e = with(Layer {
            sse: Some("rot13".into()),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(e.0.contains("unknown SSE mode"), "{}", e.0);
        let e = with(Layer {
            sse_kms_key_id: Some("k".into()),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(e.0.contains("aws:kms"), "{}", e.0);
        let e = with(Layer {
            acl: Some("everyone".into()),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(e.0.contains("canned ACL"), "{}", e.0);
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("short.key");
        std::fs::write(&key, b"too short").unwrap();
        let e = with(Layer {
            sse_c_key_file: Some(key),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(e.0.contains("sse-c-key-file"), "{}", e.0);
        let e = with(Layer {
            sse_c_key_file: Some(dir.path().join("missing.key")),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(e.0.contains("sse-c-key-file"), "{}", e.0);
        let rule = RuleLayer {
            prefix: "p/".into(),
            sse: Some("AES-128".into()),
            ..RuleLayer::default()
        };
        let e = with(Layer {
            rules: Some(vec![rule]),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(e.0.contains("rule for prefix `p/`"), "{}", e.0);
    }

    #[test]
    fn sizes_and_modes_parse() {
        assert_eq!(Size::parse("8MiB").unwrap(), Size(8 << 20));
        assert_eq!(Size::parse("1024").unwrap(), Size(1024));
        assert_eq!(Mode::parse("0640").unwrap(), Mode(0o640));
        assert!(Mode::parse("rw-").is_err());
    }
}
