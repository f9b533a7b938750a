//! From merged settings to the `Config` of one mount: every value checked, every derived value
//! computed (durations, the prefetch budget, object options, S3 settings).
//!
//! The defaults come from the option table through `Settings`; `FsOptions::default()` is the
//! same conversion of the defaults alone, so the daemon and the tests share one set of
//! defaults and a test can write `FsOptions { read_only: true, ..Default::default() }`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{ConfigError, Layer, RuleLayer, Settings, Source};
use crate::store::local::LocalStore;
use crate::store::retry::RetryPolicy;
use crate::store::s3::{S3Settings, S3Store};
use crate::store::{ObjectStore, SetupError, StoreError};
use crate::store::{Sse, SseCKey, CANNED_ACLS};
use crate::upload::options::{ObjectOptions, OptionsResolver, Rule};

/// Smallest part S3 accepts (except the last one).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

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
    /// Names the inode table keeps past those in use (see `names::inode::InodeTable::evict`).
    pub name_cache_entries: usize,
    /// Sibling directories listed ahead of a tree walk (0 = off); see `names::walk`.
    pub dir_read_ahead: usize,
    /// Longest key the server holds (bytes).
    pub max_key_length: usize,
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
    /// Also write the AWS file services' metadata keys (`names::posix::encode`).
    pub aws_file_metadata: bool,
    /// readdir fetches the metadata (mode, owner, mtime, symlink) of listed entries.
    pub listing_metadata: bool,
    /// What an upload does when another client changed the object meanwhile.
    pub conflict: ConflictPolicy,
    /// An exclusive create reserves the name in the bucket at open.
    pub exclusive_in_bucket: bool,
}

/// What an upload does when the object changed since its file was opened (another client
/// wrote or created it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// Every upload is conditional on the object it was based on; on a conflict the other
    /// client's object stays and this file's bytes are stored under a conflict name.
    KeepBoth,
    /// Uploads are unconditional: the last writer wins (what most S3 mounts do).
    Overwrite,
}

impl ConflictPolicy {
    fn parse(value: &str) -> Result<ConflictPolicy, ConfigError> {
        match value {
            "keep-both" => Ok(ConflictPolicy::KeepBoth),
            "overwrite" => Ok(ConflictPolicy::Overwrite),
            other => Err(ConfigError::UnknownName {
                what: "conflict policy",
                value: other.to_string(),
                expected: "keep-both or overwrite".into(),
            }),
        }
    }
}

/// The options of a mount that sets nothing (owner: the current user).
impl Default for FsOptions {
    fn default() -> Self {
        FsOptions::from_settings(&Settings::from(Layer::default()))
            .expect("the option table's defaults are valid")
    }
}

impl FsOptions {
    fn from_settings(s: &Settings) -> Result<FsOptions, ConfigError> {
        let part_size = s.part_size.0;
        if part_size < MIN_PART_SIZE {
            return Err(ConfigError::OutOfRange {
                key: "part_size",
                value: format!("{part_size} bytes"),
                problem: "below S3's minimum of 5 MiB",
                expected: "use --part-size 5MiB or more",
            });
        }
        if part_size > MAX_PART_SIZE {
            return Err(ConfigError::OutOfRange {
                key: "part_size",
                value: format!("{part_size} bytes"),
                problem: "above S3's maximum of 5 GiB",
                expected: "use --part-size 5GiB or less",
            });
        }
        if s.upload_concurrency == 0 {
            return Err(ConfigError::OutOfRange {
                key: "upload_concurrency",
                value: "0".into(),
                problem: "below 1",
                expected: "use 1 or more parts in parallel",
            });
        }
        let memory_cache = s.memory_cache.0;
        let memory_budget = s.memory_budget.0;
        if memory_budget < memory_cache + (8 << 20) {
            return Err(ConfigError::MemoryBudgetTooSmall {
                budget: memory_budget,
                cache: memory_cache,
            });
        }
        Ok(FsOptions {
            read_only: s.read_only,
            uid: s.uid,
            gid: s.gid,
            file_mode: s.file_mode.0,
            dir_mode: s.dir_mode.0,
            metadata_ttl: seconds("metadata_ttl", s.metadata_ttl)?,
            read_ahead: s.read_ahead.0.max(1 << 20),
            negative_ttl: seconds("negative_ttl", s.negative_ttl)?,
            negative_cache_entries: s.negative_cache_entries,
            dir_ttl: seconds("dir_ttl", s.dir_ttl)?,
            dir_cache_entries: s.dir_cache_entries,
            name_cache_entries: s.name_cache_entries.max(1),
            dir_read_ahead: s.dir_read_ahead,
            max_key_length: s.max_key_length,
            memory_cache,
            prefetch_budget: memory_budget - memory_cache,
            disk_cache: s.disk_cache.0,
            part_size,
            upload_concurrency: s.upload_concurrency,
            objects: object_options(s)?,
            stale_upload_age: seconds("stale_upload_age", s.stale_upload_age)?,
            retry_interval: seconds("retry_interval", s.retry_interval)?
                .max(Duration::from_millis(100)),
            write_back_delay: seconds("write_back_delay", s.write_back_delay)?,
            ignore_chmod: s.ignore_chmod,
            ignore_chown: s.ignore_chown,
            ignore_utimens: s.ignore_utimens,
            aws_file_metadata: s.aws_file_metadata,
            listing_metadata: s.listing_metadata,
            conflict: ConflictPolicy::parse(&s.conflict)?,
            exclusive_in_bucket: s.exclusive_in_bucket,
        })
    }
}

/// How the daemon writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per event (the default).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    fn parse(value: &str) -> Result<LogFormat, ConfigError> {
        match value {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(ConfigError::UnknownName {
                what: "log format",
                value: other.to_string(),
                expected: "text or json".into(),
            }),
        }
    }
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
    pub log_format: LogFormat,
    /// Where to serve the metrics (`None`: nowhere).
    pub metrics_addr: Option<SocketAddr>,
}

impl Config {
    /// Validates a merged layer (flags over environment over file) into a `Config`.
    pub fn resolve(layer: Layer) -> Result<Config, ConfigError> {
        let s = Settings::from(layer);
        let source_text = match (&s.source, &s.bucket) {
            (Some(source), _) => source.clone(),
            (None, Some(bucket)) => format!("s3://{bucket}"),
            (None, None) => return Err(ConfigError::MissingSource),
        };
        let source = Source::parse(&source_text)?;
        let fs = FsOptions::from_settings(&s)?;
        let log_format = LogFormat::parse(&s.log_format)?;
        let metrics_addr = s
            .metrics_addr
            .as_deref()
            .map(|text| {
                text.trim()
                    .parse::<SocketAddr>()
                    .map_err(|_| ConfigError::BadMetricsAddr { value: text.into() })
            })
            .transpose()?;
        let request_timeout = seconds("request_timeout", s.request_timeout)?;
        if request_timeout.is_zero() {
            return Err(ConfigError::OutOfRange {
                key: "request_timeout",
                value: s.request_timeout.to_string(),
                problem: "not above 0 seconds",
                expected: "use e.g. 30",
            });
        }
        let sse_c_key = s
            .sse_c_key_file
            .as_deref()
            .map(|p| SseCKey::from_file(p).map_err(ConfigError::SseCKeyFile))
            .transpose()?;
        if sse_c_key.is_some() && s.sse.is_some() {
            return Err(ConfigError::Conflict {
                first: "sse",
                second: "sse_c_key_file",
                fix: "choose S3-managed keys (--sse) or your own key (--sse-c-key-file)",
            });
        }
        let (prefix, s3) = match &source {
            Source::S3 { bucket, prefix } => {
                let endpoint = s.endpoint.as_deref().map(validate_endpoint).transpose()?;
                let path_style = s.force_path_style
                    || endpoint.as_deref().is_some_and(endpoint_wants_path_style);
                let settings = S3Settings {
                    bucket: bucket.clone(),
                    // An empty region is no region: it is asked of the server.
                    region: s.region.clone().filter(|r| !r.trim().is_empty()),
                    endpoint,
                    path_style,
                    access_key: s.access_key.clone(),
                    secret_key: s.secret_key.clone(),
                    session_token: s.session_token.clone(),
                    profile: s.profile.clone(),
                    sse_c_key: sse_c_key.clone(),
                    retry: RetryPolicy {
                        retry_timeout: seconds("retry_timeout", s.retry_timeout)?,
                        max_retries: s.max_retries,
                        base_delay: Duration::from_millis(100),
                        max_delay: Duration::from_secs(5),
                        request_timeout,
                    },
                };
                if settings.access_key.is_some() != settings.secret_key.is_some() {
                    return Err(ConfigError::IncompleteCredentials);
                }
                (prefix.clone(), Some(settings))
            }
            Source::Local { root } => {
                if !root.is_dir() {
                    return Err(ConfigError::LocalSourceNotDirectory { root: root.clone() });
                }
                (String::new(), None)
            }
        };

        // Absolute: the background daemon does not keep the caller's working directory, and
        // the journal names staging files by path.
        let cache_dir = std::path::absolute(&s.cache_dir).unwrap_or(s.cache_dir);
        Ok(Config {
            source,
            prefix,
            s3,
            fs,
            allow_other: s.allow_other,
            allow_non_empty: s.allow_non_empty,
            cache_dir,
            log_file: s.log_file,
            log_format,
            metrics_addr,
        })
    }

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
            (Source::S3 { .. }, Some(s)) => match (&s.endpoint, &s.region) {
                (Some(endpoint), _) => endpoint.clone(),
                (None, Some(region)) => format!("AWS S3 ({region})"),
                (None, None) => "AWS S3".into(),
            },
            (Source::Local { root }, _) => root.display().to_string(),
            _ => String::new(),
        }
    }
}

/// The object options of one level: the mount's, or one rule's.
struct ObjectLevel<'a> {
    sse: &'a Option<String>,
    sse_kms_key_id: &'a Option<String>,
    acl: &'a Option<String>,
    storage_class: &'a Option<String>,
    cache_control: &'a Option<String>,
}

impl ObjectLevel<'_> {
    fn parse(&self) -> Result<ObjectOptions, ConfigError> {
        let kms_needs = |needs| ConfigError::Needs {
            key: "sse_kms_key_id",
            needs,
        };
        let sse = match (self.sse.as_deref(), self.sse_kms_key_id) {
            (None, None) => None,
            (None, Some(_)) => return Err(kms_needs("sse = \"aws:kms\" (or \"aws:kms:dsse\")")),
            (Some("AES256"), None) => Some(Sse::Aes256),
            (Some("AES256"), Some(_)) => {
                return Err(kms_needs(
                    "sse = \"aws:kms\" (or \"aws:kms:dsse\"), not AES256",
                ))
            }
            (Some("aws:kms"), id) => Some(Sse::Kms { key_id: id.clone() }),
            (Some("aws:kms:dsse"), id) => Some(Sse::KmsDsse { key_id: id.clone() }),
            (Some(other), _) => {
                return Err(ConfigError::UnknownName {
                    what: "SSE mode",
                    value: other.to_string(),
                    expected:
                        "AES256, aws:kms or aws:kms:dsse (or --sse-c-key-file for your own key)"
                            .into(),
                })
            }
        };
        if let Some(a) = self.acl {
            if !CANNED_ACLS.contains(&a.as_str()) {
                return Err(ConfigError::UnknownName {
                    what: "canned ACL",
                    value: a.clone(),
                    expected: format!("one of {}", CANNED_ACLS.join(", ")),
                });
            }
        }
        Ok(ObjectOptions {
            sse,
            acl: self.acl.clone(),
            storage_class: self.storage_class.clone(),
            cache_control: self.cache_control.clone(),
        })
    }
}

fn object_options(s: &Settings) -> Result<OptionsResolver, ConfigError> {
    let defaults = ObjectLevel {
        sse: &s.sse,
        sse_kms_key_id: &s.sse_kms_key_id,
        acl: &s.acl,
        storage_class: &s.storage_class,
        cache_control: &s.cache_control,
    }
    .parse()?;
    let mut rules = Vec::new();
    for r in s.rules.iter().flatten() {
        let RuleLayer {
            prefix,
            sse,
            sse_kms_key_id,
            acl,
            storage_class,
            cache_control,
        } = r;
        let options = ObjectLevel {
            sse,
            sse_kms_key_id,
            acl,
            storage_class,
            cache_control,
        }
        .parse()
        .map_err(|error| ConfigError::InRule {
            prefix: prefix.clone(),
            error: Box::new(error),
        })?;
        rules.push(Rule {
            prefix: prefix.clone(),
            options,
        });
    }
    Ok(OptionsResolver::new(defaults, rules))
}

fn seconds(key: &'static str, v: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(v).map_err(|_| ConfigError::OutOfRange {
        key,
        value: v.to_string(),
        problem: "not a valid number of seconds",
        expected: "use 0 or more, e.g. 1.5",
    })
}

/// Checks an endpoint URL and returns it without a trailing slash.
fn validate_endpoint(text: &str) -> Result<String, ConfigError> {
    let bad = |problem: &str| ConfigError::BadEndpoint {
        url: text.to_string(),
        problem: problem.to_string(),
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

/// The default of `cache_dir`.
pub(super) fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("bucketfs");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache/bucketfs");
    }
    std::env::temp_dir().join("bucketfs-cache")
}

/// The default of `uid`: the user who mounts.
pub(super) fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The default of `gid`: the group of the user who mounts.
pub(super) fn current_gid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env::env;
    use crate::config::Size;

    fn s3(layer: Layer) -> Result<Config, ConfigError> {
        Config::resolve(Layer {
            source: Some("s3://bucket".into()),
            ..layer
        })
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
        assert_eq!(s3.region.as_deref(), Some("env-region"));
        assert_eq!(cfg.fs.uid, 9);
        assert_eq!(cfg.fs.part_size, 16 << 20);
        assert_eq!(cfg.fs.dir_mode, 0o755);
    }

    #[test]
    fn a_mount_that_sets_nothing_gets_the_default_fs_options() {
        let cfg = s3(Layer::default()).unwrap();
        let d = FsOptions::default();
        assert_eq!(format!("{:?}", cfg.fs), format!("{d:?}"));
        assert_eq!(d.part_size, 8 << 20);
        assert_eq!(d.dir_ttl, Duration::from_secs(1));
        assert_eq!(d.write_back_delay, Duration::from_millis(500));
        assert_eq!(d.prefetch_budget, (128 - 32) << 20);
        assert_eq!(d.uid, current_uid());
        assert!(!d.listing_metadata, "names-only listings");
        assert!(!d.read_only);
        assert_eq!(cfg.s3.unwrap().region, None, "asked of the server");
    }

    #[test]
    fn a_region_given_empty_is_no_region_and_is_asked_of_the_server() {
        let region = |r: &str| {
            s3(Layer {
                region: Some(r.into()),
                ..Layer::default()
            })
            .unwrap()
            .s3
            .unwrap()
            .region
        };
        assert_eq!(region(" "), None);
        assert_eq!(region("eu-west-2").as_deref(), Some("eu-west-2"));
    }

    #[test]
    fn the_log_format_is_text_unless_json_is_asked_for() {
        assert_eq!(s3(Layer::default()).unwrap().log_format, LogFormat::Text);
        let json = s3(Layer {
            log_format: Some("json".into()),
            ..Layer::default()
        });
        assert_eq!(json.unwrap().log_format, LogFormat::Json);
        let e = s3(Layer {
            log_format: Some("xml".into()),
            ..Layer::default()
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "unknown log format `xml`: use text or json");
    }

    #[test]
    fn metrics_are_served_nowhere_unless_an_ip_address_and_port_is_given() {
        assert_eq!(s3(Layer::default()).unwrap().metrics_addr, None);
        let with = |addr: &str| {
            s3(Layer {
                metrics_addr: Some(addr.into()),
                ..Layer::default()
            })
        };
        assert_eq!(
            with("127.0.0.1:9100").unwrap().metrics_addr,
            Some("127.0.0.1:9100".parse().unwrap())
        );
        assert_eq!(
            with("[::1]:9100").unwrap().metrics_addr,
            Some("[::1]:9100".parse().unwrap())
        );
        for bad in ["localhost:9100", "127.0.0.1", "9100", "127.0.0.1:http"] {
            let e = with(bad).unwrap_err();
            assert!(
                matches!(&e, ConfigError::BadMetricsAddr { value } if value == bad),
                "{e:?}"
            );
        }
        assert_eq!(
            with("127.0.0.1").unwrap_err().to_string(),
            "metrics_addr `127.0.0.1` is not an IP address and port: use e.g. 127.0.0.1:9100 \
             (host names are not looked up)"
        );
    }

    #[test]
    fn part_size_outside_s3s_limits_is_refused() {
        let e = s3(Layer {
            part_size: Some(Size(1 << 20)),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::OutOfRange {
                    key: "part_size",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("5 MiB"), "{e}");
        assert!(e.to_string().contains("--part-size 5MiB"), "{e}");
        let e = s3(Layer {
            part_size: Some(Size(6 << 30)),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("5 GiB"), "{e}");
    }

    #[test]
    fn impossible_numbers_are_refused_with_the_key() {
        let e = s3(Layer {
            upload_concurrency: Some(0),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::OutOfRange {
                    key: "upload_concurrency",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = s3(Layer {
            request_timeout: Some(0.0),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("request_timeout = 0"), "{e}");
        let e = s3(Layer {
            dir_ttl: Some(-1.0),
            ..Layer::default()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "dir_ttl = -1 is not a valid number of seconds: use 0 or more, e.g. 1.5"
        );
        let e = s3(Layer {
            memory_budget: Some(Size(32 << 20)),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(
            matches!(e, ConfigError::MemoryBudgetTooSmall { .. }),
            "{e:?}"
        );
    }

    #[test]
    fn missing_bucket_is_refused() {
        let e = Config::resolve(Layer::default()).unwrap_err();
        assert!(matches!(e, ConfigError::MissingSource), "{e:?}");
        assert!(e.to_string().contains("no bucket"), "{e}");
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
    fn one_half_of_a_key_pair_is_refused() {
        let e = s3(Layer {
            access_key: Some("id".into()),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(matches!(e, ConfigError::IncompleteCredentials), "{e:?}");
    }

    #[test]
    fn endpoints_are_validated_and_pick_the_addressing_style() {
        assert!(validate_endpoint("ftp://x").is_err());
        assert!(validate_endpoint("not a url").is_err());
        assert!(validate_endpoint("http://host:9000/path").is_err());
        assert_eq!(
            validate_endpoint("http://host:9000/").unwrap(),
            "http://host:9000"
        );
        assert!(endpoint_wants_path_style("http://localhost:3900"));
        assert!(endpoint_wants_path_style("http://[::1]:3900"));
        assert!(!endpoint_wants_path_style(
            "https://s3.eu-west-1.amazonaws.com"
        ));
        let e = s3(Layer {
            endpoint: Some("ftp://x".into()),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(
            e.to_string().starts_with("bad endpoint URL `ftp://x`"),
            "{e}"
        );
    }

    #[test]
    fn a_local_source_must_be_a_directory() {
        let e = Config::resolve(Layer {
            source: Some("file:///nonexistent/bucketfs-test".into()),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(
            matches!(e, ConfigError::LocalSourceNotDirectory { .. }),
            "{e:?}"
        );
    }

    #[test]
    fn bad_object_options_are_refused_at_start() {
        let e = s3(Layer {
            sse: Some("rot13".into()),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("unknown SSE mode `rot13`"), "{e}");
        let e = s3(Layer {
            sse_kms_key_id: Some("k".into()),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Needs {
                    key: "sse_kms_key_id",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("aws:kms"), "{e}");
        let e = s3(Layer {
            acl: Some("everyone".into()),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("canned ACL"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("short.key");
        std::fs::write(&key, b"too short").unwrap();
        let e = s3(Layer {
            sse_c_key_file: Some(key.clone()),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(matches!(e, ConfigError::SseCKeyFile(_)), "{e:?}");
        assert!(e.to_string().contains("sse-c-key-file"), "{e}");
        assert!(!e.to_string().contains("too short"), "no key bytes: {e}");
        let e = s3(Layer {
            sse_c_key_file: Some(dir.path().join("missing.key")),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("sse-c-key-file"), "{e}");
        let rule = RuleLayer {
            prefix: "p/".into(),
            sse: Some("AES-128".into()),
            ..RuleLayer::default()
        };
        let e = s3(Layer {
            rules: Some(vec![rule]),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(
            matches!(&e, ConfigError::InRule { prefix, .. } if prefix == "p/"),
            "{e:?}"
        );
        assert!(e.to_string().contains("rule for prefix `p/`"), "{e}");
    }

    #[test]
    fn sse_and_an_sse_c_key_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, [7u8; 32]).unwrap();
        let e = s3(Layer {
            sse: Some("AES256".into()),
            sse_c_key_file: Some(key),
            ..Layer::default()
        })
        .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Conflict {
                    first: "sse",
                    second: "sse_c_key_file",
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
