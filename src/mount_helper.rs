//! `mount.bucketfs`: the helper mount(8) runs for `mount -t bucketfs` and for `/etc/fstab`
//! lines of type `bucketfs` or `fuse.bucketfs` (then as `mount.fuse.bucketfs`). It is the
//! bucketfs binary under another name (`scripts/install-mount-helper.sh` makes the symlinks);
//! `cli::main` sends here by argv[0].
//!
//! mount(8) calls helpers as `mount.TYPE SPEC DIR [-sfnv] [-N NAMESPACE] [-o OPTIONS]
//! [-t TYPE]`. SPEC is the source (`s3://BUCKET[/PREFIX]`), DIR the mountpoint (or
//! `/dev/fd/N`), and OPTIONS the mount options (`config/mount_options.rs`), which take the
//! place of `bucketfs mount`'s flags: options over environment over config file. `-s`
//! (sloppy) skips unknown options, `-f` (fake) checks everything but does not mount, `-n` and
//! `-v` change nothing, `-N` is refused. Then it is `bucketfs mount`: the helper returns once
//! the mount is live, with the daemon in the background (`--foreground`, never passed by
//! mount(8), keeps it attached, as a systemd unit may want).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::ConfigFile;
use crate::config::{Layer, MountOptions};
use crate::console::{stderr_line, usage_error};

/// The names the helper is installed under.
pub const NAMES: &[&str] = &["mount.bucketfs", "mount.fuse.bucketfs"];

/// True if the binary runs as the mount helper (argv[0] is one of `NAMES`).
pub fn called_as_helper(argv0: &Path) -> bool {
    argv0
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| NAMES.contains(&n))
}

const USAGE: &str = "mount.bucketfs s3://BUCKET[/PREFIX] MOUNTPOINT [-sfnv] [-o OPTIONS]";

/// One call of the helper.
#[derive(Debug, Default, PartialEq)]
struct Invocation {
    source: String,
    mountpoint: PathBuf,
    /// Every `-o`, joined by commas.
    options: String,
    sloppy: bool,
    fake: bool,
    foreground: bool,
}

impl Invocation {
    fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, String> {
        let mut inv = Invocation::default();
        let mut positional = Vec::new();
        let mut args = args.into_iter().map(|a| a.to_string_lossy().into_owned());
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-o" => {
                    let opts = args.next().ok_or("-o needs the options")?;
                    if !inv.options.is_empty() {
                        inv.options.push(',');
                    }
                    inv.options.push_str(&opts);
                }
                "-t" => {
                    args.next().ok_or("-t needs a type")?;
                }
                "-N" | "--namespace" => {
                    return Err("mounting in another namespace (-N) is not supported: run \
                                mount inside that namespace"
                        .into())
                }
                "--foreground" => inv.foreground = true,
                flags if flags.starts_with('-') && flags.len() > 1 => {
                    for flag in flags[1..].chars() {
                        match flag {
                            's' => inv.sloppy = true,
                            'f' => inv.fake = true,
                            'n' | 'v' => {}
                            other => return Err(format!("unknown flag -{other}: {USAGE}")),
                        }
                    }
                }
                _ => positional.push(arg),
            }
        }
        match <[String; 2]>::try_from(positional) {
            Ok([source, mountpoint]) => {
                inv.source = source;
                inv.mountpoint = PathBuf::from(mountpoint);
                Ok(inv)
            }
            Err(_) => Err(format!("usage: {USAGE}")),
        }
    }
}

/// `mount.bucketfs SPEC DIR [-sfnv] [-o OPTIONS]`; `args` without argv[0].
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let inv = match Invocation::parse(args) {
        Ok(inv) => inv,
        Err(msg) => return usage_error(msg),
    };
    let options = match MountOptions::parse(&inv.options, inv.sloppy) {
        Ok(o) => o,
        Err(e) => return usage_error(e),
    };
    if !options.skipped.is_empty() {
        stderr_line(format_args!(
            "bucketfs: ignoring unknown mount options (mount -s): {}",
            options.skipped.join(",")
        ));
    }
    let layer = Layer {
        source: Some(inv.source),
        ..options.layer
    };
    let file = ConfigFile {
        config: options.config,
    };
    let config = match file.resolve(layer) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    if inv.fake {
        return ExitCode::SUCCESS;
    }
    crate::daemon::mount(config, inv.mountpoint, inv.foreground)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, String> {
        Invocation::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn mount_calls_helpers_with_spec_dir_flags_and_options() {
        let inv = parse(&[
            "s3://b/p",
            "/mnt/x",
            "-sv",
            "-o",
            "allow_other,_netdev",
            "-t",
            "fuse.bucketfs",
            "-o",
            "ro",
        ])
        .unwrap();
        assert_eq!(
            inv,
            Invocation {
                source: "s3://b/p".into(),
                mountpoint: "/mnt/x".into(),
                options: "allow_other,_netdev,ro".into(),
                sloppy: true,
                ..Invocation::default()
            }
        );
        let inv = parse(&["-f", "-o", "ro", "s3://b", "/dev/fd/3", "--foreground"]).unwrap();
        assert!(inv.fake && inv.foreground && !inv.sloppy);
        assert_eq!(inv.mountpoint, Path::new("/dev/fd/3"));
    }

    #[test]
    fn bad_calls_are_refused_with_one_line() {
        assert!(parse(&["s3://b"])
            .unwrap_err()
            .starts_with("usage: mount.bucketfs"));
        assert!(parse(&["s3://b", "/m", "/n"]).is_err());
        assert!(parse(&["s3://b", "/m", "-o"]).is_err());
        assert!(parse(&["s3://b", "/m", "-x"]).unwrap_err().contains("-x"));
        assert!(parse(&["s3://b", "/m", "-N", "/proc/1/ns/mnt"])
            .unwrap_err()
            .contains("namespace"));
    }

    #[test]
    fn the_helper_answers_to_its_two_names_only() {
        assert!(called_as_helper(Path::new("/sbin/mount.bucketfs")));
        assert!(called_as_helper(Path::new("mount.fuse.bucketfs")));
        assert!(!called_as_helper(Path::new("/usr/bin/bucketfs")));
        assert!(!called_as_helper(Path::new("mount.bucketfs2")));
    }
}
