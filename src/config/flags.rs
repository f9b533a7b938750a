//! The flag layer: the command-line flags of the options, for clap.
//!
//! The flags are written from the option table (`Layer::flag_args`), so a flag, its help and
//! the key it sets cannot drift apart. `MountFlags` and `CheckFlags` plug them into the clap
//! derive of `cli.rs` (`#[command(flatten)]`) and give back the layer the flags make.

use clap::{ArgMatches, Args, Command, FromArgMatches};

use super::Layer;

/// Which commands take an option's flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagScope {
    /// `bucketfs mount` only.
    Mount,
    /// `bucketfs mount` and `bucketfs check` (where the bucket is and how to reach it).
    MountAndCheck,
}

/// The command whose flags are built or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagsOf {
    Mount,
    Check,
}

impl FlagsOf {
    pub fn takes(self, scope: FlagScope) -> bool {
        self == FlagsOf::Mount || scope == FlagScope::MountAndCheck
    }
}

/// `"--part-size"` as clap's long name, `"part-size"`.
pub(super) fn long(flag: &'static str) -> &'static str {
    flag.strip_prefix("--")
        .expect("flags in the option table start with --")
}

/// A flag's help: the table's text, then the default and the environment names.
pub(super) fn help_text(help: &str, default: Option<String>, env: &[&str]) -> String {
    let mut text = help.to_string();
    if let Some(d) = default {
        text.push_str(&format!(" [default: {d}]"));
    }
    if !env.is_empty() {
        text.push_str(&format!(" [env: {}]", env.join(", ")));
    }
    text
}

/// Writes a clap `Args` type holding the layer of one command's option flags.
macro_rules! flags_of {
    ($(#[$doc:meta])* $name:ident, $of:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default)]
        pub struct $name(pub Layer);

        impl FromArgMatches for $name {
            fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
                Ok($name(Layer::from_flags(m, $of)))
            }
            fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
                *self = Self::from_arg_matches(m)?;
                Ok(())
            }
        }

        impl Args for $name {
            fn augment_args(cmd: Command) -> Command {
                cmd.args(Layer::flag_args($of))
            }
            fn augment_args_for_update(cmd: Command) -> Command {
                Self::augment_args(cmd)
            }
        }
    };
}

flags_of!(
    /// The option flags of `bucketfs mount`.
    MountFlags,
    FlagsOf::Mount
);
flags_of!(
    /// The option flags of `bucketfs check`: where the bucket is and how to reach it.
    CheckFlags,
    FlagsOf::Check
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mode, Size, KEYS};

    fn mount(args: &[&str]) -> Result<Layer, clap::Error> {
        let cmd = MountFlags::augment_args(Command::new("mount").no_binary_name(true));
        let m = cmd.try_get_matches_from(args)?;
        Ok(MountFlags::from_arg_matches(&m).unwrap().0)
    }

    fn check(args: &[&str]) -> Result<Layer, clap::Error> {
        let cmd = CheckFlags::augment_args(Command::new("check").no_binary_name(true));
        let m = cmd.try_get_matches_from(args)?;
        Ok(CheckFlags::from_arg_matches(&m).unwrap().0)
    }

    #[test]
    fn flags_set_their_keys_and_nothing_else() {
        let l = mount(&[
            "--part-size",
            "16MiB",
            "--file-mode",
            "0600",
            "--uid",
            "7",
            "--write-back-delay",
            "0",
            "--cache-dir",
            "/tmp/c",
            "--read-only",
            "--endpoint",
            "http://h:1",
        ])
        .unwrap();
        assert_eq!(l.part_size, Some(Size(16 << 20)));
        assert_eq!(l.file_mode, Some(Mode(0o600)));
        assert_eq!(l.uid, Some(7));
        assert_eq!(l.write_back_delay, Some(0.0));
        assert_eq!(l.cache_dir, Some("/tmp/c".into()));
        assert_eq!(l.read_only, Some(true));
        assert_eq!(l.endpoint.as_deref(), Some("http://h:1"));
        assert_eq!(l.unset_fields().len(), KEYS.len() - 7);
    }

    #[test]
    fn a_switch_not_given_leaves_its_key_to_lower_layers() {
        let l = mount(&[]).unwrap();
        assert_eq!(l.unset_fields(), KEYS.to_vec());
    }

    #[test]
    fn switches_set_their_value_and_take_none() {
        let l = mount(&["--listing-metadata"]).unwrap();
        assert_eq!(l.listing_metadata, Some(true));
        assert!(mount(&["--listing-metadata=false"]).is_err());
    }

    #[test]
    fn check_takes_only_the_flags_that_reach_the_bucket() {
        let l = check(&[
            "--endpoint",
            "http://h:1",
            "--region",
            "r",
            "--force-path-style",
            "--profile",
            "p",
            "--max-retries",
            "1",
            "--request-timeout",
            "2.5",
        ])
        .unwrap();
        assert_eq!(l.unset_fields().len(), KEYS.len() - 6);
        assert!(check(&["--read-only"]).is_err());
        assert!(check(&["--part-size", "8MiB"]).is_err());
    }

    #[test]
    fn bad_flag_values_are_refused_by_clap() {
        let e = mount(&["--part-size", "lots"]).unwrap_err();
        assert!(e.to_string().contains("is not a size"), "{e}");
        assert!(mount(&["--uid", "-1"]).is_err());
        assert!(mount(&["--file-mode", "0999"]).is_err());
    }

    #[test]
    fn every_flag_is_its_key_in_kebab_case() {
        for arg in Layer::flag_args(FlagsOf::Mount) {
            let key = arg.get_id().as_str().replace('_', "-");
            let long = arg.get_long().unwrap();
            assert!(
                long == key || long == format!("no-{key}"),
                "--{long} sets {key}"
            );
        }
    }

    #[test]
    fn help_shows_the_default_and_the_environment_names() {
        let args = Layer::flag_args(FlagsOf::Mount);
        let help = |id: &str| {
            args.iter()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_help())
                .map(|h| h.to_string())
                .unwrap()
        };
        assert_eq!(
            help("part_size"),
            "Multipart part size, at least 5MiB [default: 8MiB] [env: BUCKETFS_PART_SIZE]"
        );
        assert!(help("region")
            .contains("[default: asked of the server] [env: BUCKETFS_REGION, AWS_REGION"));
        assert!(help("uid").contains("[default: the user who mounts]"));
        assert!(!help("read_only").contains("default"), "switches show none");
    }
}
