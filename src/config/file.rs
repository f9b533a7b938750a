//! The config-file layer: reading a TOML file into a `Layer`.
//!
//! serde does the reading (the `Layer` it fills is written from the option table, unknown keys
//! refused); this file turns the TOML reader's errors into `ConfigError`s that name the file,
//! the line and the key.

use std::path::Path;

use super::error::Place;
use super::{ConfigError, Layer};

impl Layer {
    /// Reads a TOML config file. Errors name the file, the line and the offending key.
    pub fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::FileUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|error| ConfigError::InFile {
            path: path.to_path_buf(),
            error: Box::new(error),
        })
    }

    pub fn from_toml(text: &str) -> Result<Layer, ConfigError> {
        toml::from_str(text).map_err(|e| toml_error(text, &e))
    }
}

fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map(|s| {
        let n = text[..s.start].matches('\n').count();
        Place {
            line: n + 1,
            text: text.lines().nth(n).unwrap_or("").trim().to_string(),
        }
    });
    let message = e.message().replace('\n', " ");
    match unknown_field(&message) {
        Some((key, expected)) => ConfigError::UnknownKey { at, key, expected },
        None => ConfigError::Toml { at, message },
    }
}

/// serde words an unknown key as "unknown field `KEY`, expected LIST".
fn unknown_field(message: &str) -> Option<(String, String)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest.strip_prefix(", expected ")?;
    Some((key.to_string(), expected.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_config_key_is_refused_with_its_line() {
        let e = Layer::from_toml("region = \"x\"\nregoin = \"y\"\n").unwrap_err();
        let ConfigError::UnknownKey { at, key, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(key, "regoin");
        assert_eq!(at.as_ref().map(|p| p.line), Some(2));
        let text = e.to_string();
        assert!(text.starts_with("line 2 (`regoin = \"y\"`): "), "{text}");
        assert!(text.contains("see config.example.toml"), "{text}");
    }

    #[test]
    fn unknown_key_in_a_rule_is_refused() {
        let e = Layer::from_toml("[[rules]]\nprefix = \"a/\"\nstorage = \"x\"\n").unwrap_err();
        assert!(
            matches!(&e, ConfigError::UnknownKey { key, .. } if key == "storage"),
            "{e:?}"
        );
    }

    #[test]
    fn unparsable_values_are_refused_with_their_line() {
        let e = Layer::from_toml("part_size = \"8 parsecs\"").unwrap_err();
        assert!(matches!(e, ConfigError::Toml { .. }), "{e:?}");
        assert!(e.to_string().contains("part_size"), "{e}");
        assert!(e.to_string().contains("has an unknown size unit"), "{e}");
        assert!(Layer::from_toml("file_mode = \"0999\"").is_err());
        assert!(Layer::from_toml("file_mode = 4096").is_err());
        assert!(Layer::from_toml("read_only = \"maybe\"").is_err());
        assert!(Layer::from_toml("uid = -1").is_err());
    }

    #[test]
    fn a_missing_file_keeps_its_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Layer::from_file(&dir.path().join("nope.toml")).unwrap_err();
        let ConfigError::FileUnreadable { source, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains("check the --config path"), "{e}");
    }

    #[test]
    fn an_error_in_a_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "regoin = 1\n").unwrap();
        let e = Layer::from_file(&path).unwrap_err();
        assert!(matches!(e, ConfigError::InFile { .. }), "{e:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: line 1", path.display())),
            "{e}"
        );
    }
}
