//! Configuration: one resolved `Config` from four layers, highest first:
//! command-line flags > environment > TOML config file > built-in defaults.
//!
//! Every option is declared once, in the table of `options.rs`: its key, type, default,
//! environment names, flag and help. From it come the `Layer` every source fills (all fields
//! optional), the environment reader, the clap flags, and the defaults. Layers are merged field
//! by field and only then validated (`resolve.rs`), so an error names the value the user
//! actually gave and how to fix it. Every key is documented in `config.example.toml`, which a
//! test checks against the table; unknown keys are refused.
//!
//! Files: `options.rs` the table, `table.rs` the macro that reads it, `values.rs` the value
//! types, `file.rs` / `env.rs` / `flags.rs` the three layers (`mount_options.rs`: the `-o`
//! options of `mount -t bucketfs`, in place of the flags), `aws_profile.rs` the region of the
//! AWS profile (below the three), `resolve.rs` the checks and the resolved structs,
//! `source.rs` the SOURCE argument, `error.rs` the errors.

mod aws_profile;
mod env;
mod error;
#[cfg(test)]
mod example;
mod file;
mod flags;
mod mount_options;
mod options;
mod resolve;
mod source;
mod table;
mod values;

pub use error::{ConfigError, Place};
pub use flags::{CheckFlags, MountFlags};
pub use mount_options::MountOptions;
pub use options::{Layer, RuleLayer, Settings, ENV_VARS, KEYS};
pub use resolve::{Config, ConflictPolicy, FsOptions, LogFormat, MAX_PART_SIZE, MIN_PART_SIZE};
pub use source::Source;
pub use values::{Mode, OptionValue, Size};
