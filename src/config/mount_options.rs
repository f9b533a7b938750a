//! The mount-option layer: the `-o` string of `mount -t bucketfs` and of an `/etc/fstab` line,
//! read into a `Layer` (it takes the place of the flags: it is the top layer).
//!
//! Every option of the table is a mount option under its key, its value read as its
//! environment text is (`part_size=16MiB`, `uid=1000`; a boolean alone means true:
//! `read_only`) — `Layer::set_mount_option`, written from the table, so no second list of
//! options exists. Dashes may stand for underscores (`part-size=16MiB`). `config=FILE` names
//! the config file (`--config`), `ro` is `read_only`. Secrets are refused (`ps` shows mount
//! options and `/etc/fstab` is world-readable), as are `[[rules]]` (config file only).
//!
//! mount(8) and systemd add options of their own; those in `GENERIC` are what they are for
//! (when to mount, who may) or what every bucketfs mount already is (`nodev`, `nosuid`,
//! `noatime`), and are ignored; the few a bucketfs mount cannot honour are refused. Anything
//! else is refused with one line, unless mount was called with `-s` (sloppy).

use std::path::PathBuf;

use super::{ConfigError, Layer};

/// What the `-o` string of one mount sets.
#[derive(Debug, Default)]
pub struct MountOptions {
    /// The options of the table that were given.
    pub layer: Layer,
    /// `config=FILE`.
    pub config: Option<PathBuf>,
    /// Options skipped because mount was called with `-s` (sloppy): to be logged.
    pub skipped: Vec<String>,
}

/// A generic mount option: ignored, or refused with the reason.
enum Generic {
    Ignored,
    Refused(&'static str),
}

/// Options mount(8), fstab and systemd use that are not bucketfs's (`x-*` and `comment=*` too).
const GENERIC: &[(&str, Generic)] = &[
    // When and how mount and systemd mount it, and who may.
    ("defaults", Generic::Ignored),
    ("_netdev", Generic::Ignored),
    ("auto", Generic::Ignored),
    ("noauto", Generic::Ignored),
    ("nofail", Generic::Ignored),
    ("user", Generic::Ignored),
    ("nouser", Generic::Ignored),
    ("users", Generic::Ignored),
    ("owner", Generic::Ignored),
    ("group", Generic::Ignored),
    ("rw", Generic::Ignored),
    ("async", Generic::Ignored),
    // What every bucketfs mount is: no devices, no set-uid, executable per mode.
    ("nodev", Generic::Ignored),
    ("nosuid", Generic::Ignored),
    ("exec", Generic::Ignored),
    // Access times are never stored in the bucket.
    ("atime", Generic::Ignored),
    ("noatime", Generic::Ignored),
    ("relatime", Generic::Ignored),
    ("norelatime", Generic::Ignored),
    ("strictatime", Generic::Ignored),
    ("nostrictatime", Generic::Ignored),
    ("lazytime", Generic::Ignored),
    ("nolazytime", Generic::Ignored),
    ("diratime", Generic::Ignored),
    ("nodiratime", Generic::Ignored),
    // What a bucketfs mount cannot be.
    (
        "dev",
        Generic::Refused("bucketfs mounts are always nodev: remove it"),
    ),
    (
        "suid",
        Generic::Refused("bucketfs mounts are always nosuid: remove it"),
    ),
    (
        "noexec",
        Generic::Refused("bucketfs cannot mount noexec yet: remove it, or chmod the files"),
    ),
    (
        "sync",
        Generic::Refused(
            "uploads are asynchronous: remove it, and use write_back_delay=0 to upload at close",
        ),
    ),
];

impl MountOptions {
    /// Reads a `-o` string (`a,b=c,d="x,y"`). With `sloppy` (mount -s) unknown options are
    /// skipped instead of refused.
    pub fn parse(text: &str, sloppy: bool) -> Result<MountOptions, ConfigError> {
        let mut out = MountOptions::default();
        for (name, value) in split(text) {
            if name.starts_with("x-") || name == "comment" {
                continue;
            }
            // With or without a value: mount(8) passes `user=NAME` for `user`.
            if let Some((option, generic)) = GENERIC.iter().find(|(n, _)| *n == name) {
                match generic {
                    Generic::Ignored => continue,
                    Generic::Refused(fix) => {
                        return Err(ConfigError::MountOptionRefused { option, fix })
                    }
                }
            }
            match (name.as_str(), value) {
                ("ro", None) => out.layer.read_only = Some(true),
                ("config", Some(path)) => out.config = Some(PathBuf::from(path)),
                ("config", None) => {
                    return Err(ConfigError::MountOptionNeedsValue { option: "config" })
                }
                (_, value) => {
                    let key = name.replace('-', "_");
                    match out.layer.set_mount_option(&key, value.as_deref()) {
                        Some(result) => result?,
                        None if sloppy => out.skipped.push(name),
                        None => return Err(ConfigError::UnknownMountOption { option: name }),
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Splits `a,b=c,d="x,y"` into names and values; double quotes keep commas in a value and
/// are removed.
fn split(text: &str) -> Vec<(String, Option<String>)> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => items.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    items.push(current);
    items
        .into_iter()
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (item, None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mode, Size, ENV_VARS, KEYS};

    fn parse(text: &str) -> Result<MountOptions, ConfigError> {
        MountOptions::parse(text, false)
    }

    #[test]
    fn options_are_the_keys_of_the_table_with_their_values() {
        let o = parse(
            "allow_other,part_size=16MiB,file-mode=0640,uid=1000,write_back_delay=0,\
             listing_metadata=off,endpoint=http://127.0.0.1:3900,config=/etc/bucketfs/x.toml",
        )
        .unwrap();
        assert_eq!(o.layer.allow_other, Some(true));
        assert_eq!(o.layer.part_size, Some(Size(16 << 20)));
        assert_eq!(o.layer.file_mode, Some(Mode(0o640)));
        assert_eq!(o.layer.uid, Some(1000));
        assert_eq!(o.layer.write_back_delay, Some(0.0));
        assert_eq!(o.layer.listing_metadata, Some(false));
        assert_eq!(o.layer.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(o.config, Some(PathBuf::from("/etc/bucketfs/x.toml")));
        assert_eq!(o.layer.unset_fields().len(), KEYS.len() - 7);
    }

    #[test]
    fn every_option_but_secrets_and_rules_has_a_mount_option() {
        for (key, env) in ENV_VARS {
            let mut layer = Layer::default();
            let result = layer.set_mount_option(key, Some("1"));
            match *key {
                "secret_key" | "session_token" | "rules" => assert!(
                    matches!(result, Some(Err(ConfigError::MountOptionRefused { .. }))),
                    "{key}"
                ),
                _ => {
                    assert!(!env.is_empty(), "{key}");
                    assert!(matches!(result, Some(Ok(()))), "{key}: {result:?}");
                    assert!(!layer.unset_fields().contains(key), "{key} is set");
                }
            }
        }
    }

    #[test]
    fn the_generic_options_of_mount_and_systemd_are_ignored() {
        let o = parse(
            "defaults,_netdev,nofail,noauto,auto,user=alice,users,rw,nodev,nosuid,exec,noatime,\
             relatime,x-systemd.automount,x-systemd.mount-timeout=30,comment=backup",
        )
        .unwrap();
        assert_eq!(o.layer.unset_fields(), KEYS.to_vec());
        assert_eq!(o.config, None);
    }

    #[test]
    fn ro_is_read_only() {
        assert_eq!(parse("ro").unwrap().layer.read_only, Some(true));
        assert_eq!(parse("rw").unwrap().layer.read_only, None);
    }

    #[test]
    fn an_unknown_option_is_refused_with_one_line_unless_sloppy() {
        let e = parse("allow_other,part_sise=8MiB").unwrap_err();
        assert!(
            matches!(&e, ConfigError::UnknownMountOption { option } if option == "part_sise"),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with("unknown mount option `part_sise`: use"),
            "{text}"
        );
        assert!(!text.contains('\n'));
        let o = MountOptions::parse("allow_other,part_sise=8MiB", true).unwrap();
        assert_eq!(o.skipped, ["part_sise"]);
        assert_eq!(o.layer.allow_other, Some(true));
    }

    #[test]
    fn secrets_suid_and_bad_values_are_refused_with_the_fix() {
        let e = parse("secret_key=abc").unwrap_err();
        assert!(e.to_string().contains("config=FILE"), "{e}");
        assert!(
            !e.to_string().contains("abc"),
            "the secret is not repeated: {e}"
        );
        let e = parse("suid").unwrap_err();
        assert_eq!(
            e.to_string(),
            "mount option `suid` is refused: bucketfs mounts are always nosuid: remove it"
        );
        let e = parse("part_size=lots").unwrap_err();
        assert_eq!(
            e.to_string(),
            "mount option `part_size=lots`: `lots` is not a size: use bytes or a unit, e.g. 8MiB"
        );
        let e = parse("region").unwrap_err();
        assert_eq!(
            e.to_string(),
            "mount option `region` needs a value: write region=VALUE"
        );
        assert!(parse("read_only=perhaps").is_err());
    }

    #[test]
    fn quotes_keep_commas_in_a_value() {
        let o = parse("cache_control=\"max-age=60,public\",ro").unwrap();
        assert_eq!(o.layer.cache_control.as_deref(), Some("max-age=60,public"));
        assert_eq!(o.layer.read_only, Some(true));
    }
}
