//! The command line: `bucketfs mount`, `unmount`, `status`, `flush` and `check` (and, hidden,
//! `completions` and `man`: `cli_docs`). The flags of options form the top layer of the
//! configuration; they, their help and their environment names are written from the option
//! table (`config/options.rs`), so only the commands and the flags that are no option
//! (`--config`, `--foreground`) are defined here. Called as `mount.bucketfs` (argv[0]), the
//! binary is the mount helper instead (`mount_helper`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{CheckFlags, Config, ConfigError, Layer, MountFlags};
use crate::console::usage_error;
use crate::daemon::ReportFormat;

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
        /// One JSON object, for scripts (its fields are described in README).
        #[arg(long)]
        json: bool,
    },
    /// Upload now what is not in the bucket yet under each PATH (default: the whole mount),
    /// and return once it is; exit 1 naming each file that is not stored and why.
    Flush {
        /// The directory where bucketfs is mounted.
        mountpoint: PathBuf,
        /// Files or directories in the mount (absolute, or relative to the current
        /// directory).
        paths: Vec<PathBuf>,
    },
    /// Check credentials, the bucket, and list/put/get/delete under the prefix.
    Check(Box<CheckArgs>),
    /// Print the shell completion script for SHELL (see `cli_docs`).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Print bucketfs(1), or write every command's man page to DIR (see `cli_docs`).
    #[command(hide = true)]
    Man { dir: Option<PathBuf> },
}

/// The config file of `mount` and `check`.
#[derive(Args, Debug, Default)]
pub struct ConfigFile {
    /// TOML configuration file (every key is described in config.example.toml)
    /// [env: BUCKETFS_CONFIG].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigFile {
    /// Flags (or mount options) over environment over config file over defaults (the region
    /// over the AWS profile's).
    pub(crate) fn resolve(&self, flags: Layer) -> Result<Config, ConfigError> {
        let config_path = self
            .config
            .clone()
            .or_else(|| std::env::var_os("BUCKETFS_CONFIG").map(PathBuf::from));
        let file = match config_path {
            Some(p) => Layer::from_file(&p)?,
            None => Layer::default(),
        };
        let get = |k: &str| std::env::var(k).ok();
        let env = Layer::from_env(get)?;
        Config::resolve(flags.over(env.over(file)).or_profile_region(&get))
    }
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// [SOURCE] MOUNTPOINT
    #[arg(num_args = 1..=2, value_names = ["SOURCE", "MOUNTPOINT"], required = true)]
    pub positional: Vec<String>,
    #[command(flatten)]
    pub config: ConfigFile,
    /// Every option that has a flag (see `config::options`).
    #[command(flatten)]
    pub options: MountFlags,
    /// Stay attached and log to stderr instead of running in the background.
    #[arg(long, short = 'f')]
    pub foreground: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// s3://BUCKET[/PREFIX] or file:///dir (default: S3_BUCKET or the config file).
    pub source: Option<String>,
    #[command(flatten)]
    pub config: ConfigFile,
    #[command(flatten)]
    pub options: CheckFlags,
}

impl CheckArgs {
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let flags = Layer {
            source: self.source.clone(),
            ..self.options.0.clone()
        };
        self.config.resolve(flags)
    }
}

impl MountArgs {
    /// The resolved configuration and the mountpoint.
    pub fn resolve(&self) -> Result<(Config, PathBuf), ConfigError> {
        let (source, mountpoint) = match self.positional.as_slice() {
            [mp] => (None, mp.clone()),
            [src, mp] => (Some(src.clone()), mp.clone()),
            _ => return Err(ConfigError::Usage("bucketfs mount [SOURCE] MOUNTPOINT")),
        };
        let flags = Layer {
            source,
            ..self.options.0.clone()
        };
        Ok((self.config.resolve(flags)?, PathBuf::from(mountpoint)))
    }
}

pub fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    if crate::mount_helper::called_as_helper(argv0.as_ref()) {
        return crate::mount_helper::main(args);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Mount(args) => match args.resolve() {
            Ok((config, mountpoint)) => crate::daemon::mount(config, mountpoint, args.foreground),
            Err(e) => usage_error(e),
        },
        Command::Unmount { mountpoint } => crate::daemon::unmount(&mountpoint),
        Command::Status { mountpoint, json } => {
            let format = match json {
                true => ReportFormat::Json,
                false => ReportFormat::Text,
            };
            crate::daemon::status(&mountpoint, format)
        }
        Command::Flush { mountpoint, paths } => crate::daemon::flush(&mountpoint, &paths),
        Command::Check(args) => match args.resolve() {
            Ok(config) => crate::check::run(config),
            Err(e) => usage_error(e),
        },
        Command::Completions { shell } => crate::cli_docs::completions(shell),
        Command::Man { dir } => crate::cli_docs::man(dir.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn longs(subcommand: &str) -> Vec<String> {
        let cli = Cli::command();
        let cmd = cli.find_subcommand(subcommand).unwrap();
        cmd.get_arguments()
            .filter_map(|a| a.get_long())
            .map(|l| format!("--{l}"))
            .collect()
    }

    #[test]
    fn mount_and_check_keep_every_flag_they_had() {
        let mount = longs("mount");
        for flag in [
            "--config",
            "--endpoint",
            "--region",
            "--force-path-style",
            "--profile",
            "--retry-timeout",
            "--max-retries",
            "--request-timeout",
            "--read-only",
            "--allow-other",
            "--allow-non-empty",
            "--uid",
            "--gid",
            "--file-mode",
            "--dir-mode",
            "--cache-dir",
            "--part-size",
            "--upload-concurrency",
            "--metadata-ttl",
            "--read-ahead",
            "--memory-cache",
            "--memory-budget",
            "--disk-cache",
            "--sse",
            "--sse-kms-key-id",
            "--sse-c-key-file",
            "--acl",
            "--storage-class",
            "--cache-control",
            "--stale-upload-age",
            "--retry-interval",
            "--write-back-delay",
            "--dir-read-ahead",
            "--max-key-length",
            "--ignore-chmod",
            "--ignore-chown",
            "--ignore-utimens",
            "--aws-file-metadata",
            "--listing-metadata",
            "--foreground",
            "--log-file",
            "--log-format",
        ] {
            assert!(mount.iter().any(|l| l == flag), "mount {flag}");
        }
        assert_eq!(
            longs("check"),
            [
                "--config",
                "--endpoint",
                "--region",
                "--force-path-style",
                "--profile",
                "--retry-timeout",
                "--max-retries",
                "--request-timeout",
                "--max-key-length",
            ]
        );
    }

    #[test]
    fn mount_takes_source_and_flags_in_any_order() {
        let cli = Cli::try_parse_from([
            "bucketfs",
            "mount",
            "-f",
            "s3://bucket/p",
            "--read-only",
            "--listing-metadata",
            "--part-size",
            "16MiB",
            "/mnt",
        ])
        .unwrap();
        let Command::Mount(args) = cli.command else {
            panic!("mount");
        };
        assert!(args.foreground);
        let flags = &args.options.0;
        assert_eq!(flags.read_only, Some(true));
        assert_eq!(flags.listing_metadata, Some(true));
        assert_eq!(flags.part_size, Some(crate::config::Size(16 << 20)));
        assert_eq!(args.positional, ["s3://bucket/p", "/mnt"]);
    }

    #[test]
    fn the_systemd_unit_runs_a_notify_service_in_the_foreground_with_its_config_file() {
        let unit = include_str!("../contrib/bucketfs@.service");
        assert!(unit.lines().any(|l| l == "Type=notify"));
        let exec = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap()
            .replace("%i", "data");
        let mut words = exec.split_whitespace();
        assert!(words.next().unwrap().ends_with("/bucketfs"));
        let cli = Cli::try_parse_from(std::iter::once("bucketfs").chain(words)).unwrap();
        let Command::Mount(args) = cli.command else {
            panic!("mount");
        };
        assert!(
            args.foreground,
            "systemd waits for READY=1 from its main process"
        );
        assert_eq!(
            args.config.config.as_deref(),
            Some(std::path::Path::new("/etc/bucketfs/data.toml"))
        );
        assert_eq!(args.positional, ["/mnt/data"]);
    }

    #[test]
    fn check_takes_an_optional_source_and_the_store_flags() {
        let cli =
            Cli::try_parse_from(["bucketfs", "check", "--region", "r", "s3://bucket"]).unwrap();
        let Command::Check(args) = cli.command else {
            panic!("check");
        };
        assert_eq!(args.source.as_deref(), Some("s3://bucket"));
        assert_eq!(args.options.0.region.as_deref(), Some("r"));
    }
}
