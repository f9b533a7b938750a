//! The command line: `bucketfs mount`, `unmount` and `check`. Flags form the top layer of
//! the configuration (see `config`); each flag is documented where it is defined.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, Layer, Mode, Size};
use crate::console::usage_error;

#[derive(Parser, Debug)]
#[command(
    name = "bucketfs",
    version,
    about = "Mount an S3-compatible bucket (or a prefix of it) as a local directory"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mount SOURCE (s3://BUCKET[/PREFIX] or file:///dir) at MOUNTPOINT. SOURCE may be left out
    /// when S3_BUCKET or the config file names the bucket.
    Mount(Box<MountArgs>),
    /// Unmount MOUNTPOINT and wait until every pending upload has finished.
    Unmount {
        /// The directory where bucketfs is mounted.
        mountpoint: PathBuf,
    },
    /// Show pending uploads (count, bytes, oldest) and recent upload failures of a mount.
    Status {
        /// The directory where bucketfs is mounted.
        mountpoint: PathBuf,
    },
    /// Check credentials, the bucket, and list/put/get/delete under the prefix.
    Check(CheckArgs),
}

/// Options that say where the bucket is and how to reach it.
#[derive(Args, Debug, Default)]
pub struct StoreArgs {
    /// TOML configuration file (every key is described in config.example.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// S3 endpoint URL, e.g. http://127.0.0.1:3900 (default: AWS for the region).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Region of the bucket (default us-east-1).
    #[arg(long)]
    pub region: Option<String>,
    /// Address the bucket as ENDPOINT/BUCKET instead of BUCKET.ENDPOINT (automatic for IP
    /// addresses and localhost).
    #[arg(long)]
    pub force_path_style: bool,
    /// Named profile from the AWS shared credentials file.
    #[arg(long)]
    pub profile: Option<String>,
    /// Attempts after the first for a request that failed transiently.
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Seconds one S3 request may take before it is retried.
    #[arg(long, value_name = "SECONDS")]
    pub request_timeout: Option<f64>,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// [SOURCE] MOUNTPOINT
    #[arg(num_args = 1..=2, value_names = ["SOURCE", "MOUNTPOINT"], required = true)]
    pub positional: Vec<String>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Refuse every change (EROFS).
    #[arg(long)]
    pub read_only: bool,
    /// Let other users access the mount (needs user_allow_other in /etc/fuse.conf unless root).
    #[arg(long)]
    pub allow_other: bool,
    /// Mount even if MOUNTPOINT has files; they are hidden while the bucket is mounted.
    #[arg(long)]
    pub allow_non_empty: bool,
    /// Owner shown for every file (default: the user who mounts).
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group shown for every file (default: the group of the user who mounts).
    #[arg(long)]
    pub gid: Option<u32>,
    /// Permission bits of files, octal (default 0644).
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub file_mode: Option<Mode>,
    /// Permission bits of directories, octal (default 0755).
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub dir_mode: Option<Mode>,
    /// Directory for staged writes and logs (default ~/.cache/bucketfs).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Multipart part size, at least 5MiB (default 8MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub part_size: Option<Size>,
    /// Parts uploaded in parallel per file (default 4).
    #[arg(long, value_name = "N")]
    pub upload_concurrency: Option<usize>,
    /// Seconds metadata (attributes, names) is trusted before the bucket is asked again.
    #[arg(long, value_name = "SECONDS")]
    pub metadata_ttl: Option<f64>,
    /// Largest read-ahead window of one file, e.g. 32MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub read_ahead: Option<Size>,
    /// Memory block cache size, e.g. 64MiB (0 = off).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_cache: Option<Size>,
    /// Memory for cached and prefetched data together, e.g. 128MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_budget: Option<Size>,
    /// On-disk block cache size under CACHE_DIR, kept across mounts (0 = off, the default).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub disk_cache: Option<Size>,
    /// Server-side encryption of new objects: AES256, aws:kms or aws:kms:dsse.
    #[arg(long, value_name = "MODE")]
    pub sse: Option<String>,
    /// KMS key id for --sse aws:kms / aws:kms:dsse.
    #[arg(long, value_name = "ID")]
    pub sse_kms_key_id: Option<String>,
    /// SSE-C: file holding your 256-bit key (32 raw bytes or base64).
    #[arg(long, value_name = "FILE")]
    pub sse_c_key_file: Option<PathBuf>,
    /// Canned ACL of new objects, e.g. bucket-owner-full-control.
    #[arg(long, value_name = "ACL")]
    pub acl: Option<String>,
    /// Storage class of new objects, e.g. STANDARD_IA.
    #[arg(long, value_name = "CLASS")]
    pub storage_class: Option<String>,
    /// Cache-Control of new objects, e.g. "max-age=3600".
    #[arg(long, value_name = "VALUE")]
    pub cache_control: Option<String>,
    /// Seconds after which multipart uploads bucketfs left behind (a daemon that died
    /// mid-upload) are aborted at mount (default 86400).
    #[arg(long, value_name = "SECONDS")]
    pub stale_upload_age: Option<f64>,
    /// Seconds before a failed upload of a closed file is tried again; doubles while it keeps
    /// failing, up to 5 minutes (default 5).
    #[arg(long, value_name = "SECONDS")]
    pub retry_interval: Option<f64>,
    /// Seconds a closed file waits before it is uploaded, so a rename, chmod or utimens
    /// right after close rides on the upload (default 0.5; 0 = upload at close and return its
    /// error from close).
    #[arg(long, value_name = "SECONDS")]
    pub write_back_delay: Option<f64>,
    /// Directories listed ahead while a tool walks a tree (find, du, rsync, ls -R): the
    /// next N subdirectories, with their entries' metadata (default 4; 0 = off).
    #[arg(long, value_name = "N")]
    pub dir_read_ahead: Option<usize>,
    /// chmod succeeds without changing or storing the mode.
    #[arg(long)]
    pub ignore_chmod: bool,
    /// chown succeeds without changing or storing the owner.
    #[arg(long)]
    pub ignore_chown: bool,
    /// utimens (touch, cp -p) succeeds without changing or storing times.
    #[arg(long)]
    pub ignore_utimens: bool,
    /// Do not HEAD listed objects for their mode, owner, mtime and symlink target: listings
    /// are faster and show the defaults until a file is looked up.
    #[arg(long)]
    pub no_listing_metadata: bool,
    /// Stay attached and log to stderr instead of running in the background.
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Log file of the background daemon (default CACHE_DIR/<mount>/bucketfs.log).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// s3://BUCKET[/PREFIX] or file:///dir (default: S3_BUCKET or the config file).
    pub source: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).map_err(|e| e.0)
}

fn parse_size(s: &str) -> Result<Size, String> {
    Size::parse(s).map_err(|e| e.0)
}

fn flag(set: bool) -> Option<bool> {
    set.then_some(true)
}

impl StoreArgs {
    fn layer(&self, source: Option<String>) -> Layer {
        Layer {
            source,
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            force_path_style: flag(self.force_path_style),
            profile: self.profile.clone(),
            max_retries: self.max_retries,
            request_timeout: self.request_timeout,
            ..Layer::default()
        }
    }

    /// Flags over environment over config file over defaults.
    fn resolve(&self, flags: Layer) -> Result<Config, ConfigError> {
        let config_path = self
            .config
            .clone()
            .or_else(|| std::env::var_os("BUCKETFS_CONFIG").map(PathBuf::from));
        let file = match config_path {
            Some(p) => Layer::from_file(&p)?,
            None => Layer::default(),
        };
        let env = Layer::from_env(|k| std::env::var(k).ok())?;
        Config::resolve(flags.over(env.over(file)))
    }
}

impl MountArgs {
    /// The resolved configuration and the mountpoint.
    pub fn resolve(&self) -> Result<(Config, PathBuf), ConfigError> {
        let (source, mountpoint) = match self.positional.as_slice() {
            [mp] => (None, mp.clone()),
            [src, mp] => (Some(src.clone()), mp.clone()),
            _ => {
                return Err(ConfigError(
                    "usage: bucketfs mount [SOURCE] MOUNTPOINT".into(),
                ))
            }
        };
        let flags = Layer {
            read_only: flag(self.read_only),
            allow_other: flag(self.allow_other),
            allow_non_empty: flag(self.allow_non_empty),
            uid: self.uid,
            gid: self.gid,
            file_mode: self.file_mode,
            dir_mode: self.dir_mode,
            cache_dir: self.cache_dir.clone(),
            part_size: self.part_size,
            upload_concurrency: self.upload_concurrency,
            metadata_ttl: self.metadata_ttl,
            read_ahead: self.read_ahead,
            memory_cache: self.memory_cache,
            memory_budget: self.memory_budget,
            disk_cache: self.disk_cache,
            sse: self.sse.clone(),
            sse_kms_key_id: self.sse_kms_key_id.clone(),
            sse_c_key_file: self.sse_c_key_file.clone(),
            acl: self.acl.clone(),
            storage_class: self.storage_class.clone(),
            cache_control: self.cache_control.clone(),
            stale_upload_age: self.stale_upload_age,
            retry_interval: self.retry_interval,
            write_back_delay: self.write_back_delay,
            dir_read_ahead: self.dir_read_ahead,
            ignore_chmod: flag(self.ignore_chmod),
            ignore_chown: flag(self.ignore_chown),
            ignore_utimens: flag(self.ignore_utimens),
            listing_metadata: self.no_listing_metadata.then_some(false),
            log_file: self.log_file.clone(),
            ..self.store.layer(source)
        };
        Ok((self.store.resolve(flags)?, PathBuf::from(mountpoint)))
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Mount(args) => match args.resolve() {
            Ok((config, mountpoint)) => crate::daemon::mount(config, mountpoint, args.foreground),
            Err(e) => usage_error(e),
        },
        Command::Unmount { mountpoint } => crate::daemon::unmount(&mountpoint),
        Command::Status { mountpoint } => crate::daemon::status(&mountpoint),
        Command::Check(args) => match args.store.resolve(args.store.layer(args.source.clone())) {
            Ok(config) => crate::check::run(&config),
            Err(e) => usage_error(e),
        },
    }
}
