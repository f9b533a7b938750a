//! `ConfigError`: every way a configuration can be refused, one variant each.
//!
//! Each message names what is wrong and says what to do, because it is the one line a user
//! sees before `bucketfs` exits with status 2. Variants keep their parts (the key, the value,
//! the io error) so callers and tests can tell the cases apart without reading the text.

use std::fmt;
use std::path::PathBuf;

/// Where in a TOML text a problem is: the line number (1-based) and that line, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub line: usize,
    pub text: String,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} (`{}`): ", self.line, self.text)
    }
}

/// Shows an optional `Place` as its prefix, or nothing.
struct At<'a>(&'a Option<Place>);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(place) => place.fmt(f),
            None => Ok(()),
        }
    }
}

/// A configuration problem, worded for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read at all.
    #[error("cannot read config file {}: {source} (check the --config path)", path.display())]
    FileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A problem inside the config file at `path`.
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        error: Box<ConfigError>,
    },

    /// A value in the environment variable `var`.
    #[error("environment variable {var}: {error}")]
    InEnv {
        var: String,
        #[source]
        error: Box<ConfigError>,
    },

    /// A problem in the `[[rules]]` entry for `prefix`.
    #[error("rule for prefix `{prefix}`: {error}")]
    InRule {
        prefix: String,
        #[source]
        error: Box<ConfigError>,
    },

    /// A key that is no option (in the file, or in a `[[rules]]` entry). `expected` lists the
    /// valid keys as the TOML reader words it ("one of `source`, `bucket`, ...").
    #[error(
        "{}unknown field `{key}`, expected {expected} (see config.example.toml for the valid keys)",
        At(at)
    )]
    UnknownKey {
        at: Option<Place>,
        key: String,
        expected: String,
    },

    /// Text that is not TOML, or a value of the wrong type, in the TOML reader's words.
    #[error("{}{message}", At(at))]
    Toml { at: Option<Place>, message: String },

    /// A value that does not parse as what its option takes: "`{value}` {problem}: {expected}",
    /// e.g. "`lots` is not a size: use bytes or a unit, e.g. 8MiB".
    #[error("`{value}` {problem}: {expected}")]
    InvalidValue {
        value: String,
        problem: &'static str,
        expected: String,
    },

    /// A value outside the range its option allows.
    #[error("{key} = {value} is {problem}: {expected}")]
    OutOfRange {
        key: &'static str,
        value: String,
        problem: &'static str,
        expected: &'static str,
    },

    /// A name outside a closed list (an SSE mode, a canned ACL).
    #[error("unknown {what} `{value}`: use {expected}")]
    UnknownName {
        what: &'static str,
        value: String,
        expected: String,
    },

    /// An endpoint URL bucketfs cannot use.
    #[error(
        "bad endpoint URL `{url}`: {problem} (use e.g. http://127.0.0.1:3900 or https://s3.example.com)"
    )]
    BadEndpoint { url: String, problem: String },

    /// `metrics_addr` is not an IP address and a port.
    #[error(
        "metrics_addr `{value}` is not an IP address and port: use e.g. 127.0.0.1:9100 (host names are not looked up)"
    )]
    BadMetricsAddr { value: String },

    /// Two options that exclude each other are both set.
    #[error("{first} and {second} cannot both be set: {fix}")]
    Conflict {
        first: &'static str,
        second: &'static str,
        fix: &'static str,
    },

    /// An option that only means something together with another one.
    #[error("{key} needs {needs}")]
    Needs {
        key: &'static str,
        needs: &'static str,
    },

    /// `memory_budget` leaves less than 8 MiB beyond `memory_cache` for reads in flight.
    #[error(
        "memory_budget ({budget} bytes) must exceed memory_cache ({cache} bytes) by at least 8 MiB for reads in flight: raise memory_budget or lower memory_cache"
    )]
    MemoryBudgetTooSmall { budget: u64, cache: u64 },

    /// Neither `source` nor `bucket` is set anywhere.
    #[error(
        "no bucket given: pass SOURCE (s3://BUCKET[/PREFIX]), set S3_BUCKET, or set `source` in the config file"
    )]
    MissingSource,

    /// Only one half of a static key pair is set.
    #[error(
        "only one of access key and secret key is set: set both (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) or neither"
    )]
    IncompleteCredentials,

    /// The SSE-C key file cannot be read or holds no 256-bit key. The message names the file
    /// and what a key file must hold; it never contains key bytes.
    #[error("--sse-c-key-file: {0}")]
    SseCKeyFile(String),

    /// A `file://` source that is not a directory.
    #[error("local source {} is not a directory: create it first", root.display())]
    LocalSourceNotDirectory { root: PathBuf },

    /// A mount option (`mount -o`) that is no option of bucketfs.
    #[error(
        "unknown mount option `{option}`: use the keys of config.example.toml (e.g. part_size=16MiB, read_only), config=FILE, or the generic options README lists"
    )]
    UnknownMountOption { option: String },

    /// A mount option bucketfs refuses on purpose (a secret, a file-only option, `suid`).
    #[error("mount option `{option}` is refused: {fix}")]
    MountOptionRefused {
        option: &'static str,
        fix: &'static str,
    },

    /// A mount option that takes a value, given without one.
    #[error("mount option `{option}` needs a value: write {option}=VALUE")]
    MountOptionNeedsValue { option: &'static str },

    /// A bad value of the mount option `option` (`key=value`).
    #[error("mount option `{option}`: {error}")]
    InMountOption {
        option: String,
        #[source]
        error: Box<ConfigError>,
    },

    /// Command-line arguments in a shape the command does not take.
    #[error("usage: {0}")]
    Usage(&'static str),
}
