//! The value types of options and how each is read from text.
//!
//! An option's value arrives as TOML (the config file), as an environment variable or as a
//! command-line flag. `OptionValue` says, once per type, how the two text forms are read and
//! how a default is shown in `--help`, so the option table only has to name the type.

use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::ConfigError;

/// A type an option can have.
pub trait OptionValue: DeserializeOwned + Clone + Send + Sync + 'static {
    /// Reads the text of an environment variable. By default the text is read as a TOML value
    /// ("8", "0o644", "0.5") and, when it is not one, as a string ("8MiB"), so the environment
    /// takes what the config file takes.
    fn from_env(text: &str) -> Result<Self, ConfigError> {
        toml_or_string(text)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Toml {
                at: None,
                message: e.message().replace('\n', " "),
            })
    }

    /// What a mount option of this type given without a value (`-o read_only`) stands for;
    /// `None`: the option needs a value.
    const WITHOUT_VALUE: Option<&'static str> = None;

    /// How clap parses the value of this type's flags.
    fn value_parser() -> clap::builder::ValueParser;

    /// The value as `--help` shows it.
    fn show(&self) -> String;
}

/// Interprets environment text as a TOML value ("8", "0o644"), else as a plain string.
fn toml_or_string(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

/// Text options take the environment's text as it is: a region, a key, a path.
impl OptionValue for String {
    fn from_env(text: &str) -> Result<Self, ConfigError> {
        Ok(text.to_string())
    }
    fn value_parser() -> clap::builder::ValueParser {
        clap::value_parser!(String)
    }
    fn show(&self) -> String {
        self.clone()
    }
}

impl OptionValue for PathBuf {
    fn from_env(text: &str) -> Result<Self, ConfigError> {
        Ok(PathBuf::from(text))
    }
    fn value_parser() -> clap::builder::ValueParser {
        clap::value_parser!(PathBuf)
    }
    fn show(&self) -> String {
        self.display().to_string()
    }
}

/// Booleans in the environment are `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`; a
/// mount option without a value (`-o read_only`) is true.
impl OptionValue for bool {
    const WITHOUT_VALUE: Option<&'static str> = Some("true");

    fn from_env(text: &str) -> Result<Self, ConfigError> {
        match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::InvalidValue {
                value: text.to_string(),
                problem: "is not a boolean",
                expected: "use true or false".into(),
            }),
        }
    }
    fn value_parser() -> clap::builder::ValueParser {
        clap::value_parser!(bool)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl OptionValue for u32 {
    fn value_parser() -> clap::builder::ValueParser {
        clap::value_parser!(u32).into()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl OptionValue for usize {
    fn value_parser() -> clap::builder::ValueParser {
        clap::value_parser!(usize).into()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// Seconds.
impl OptionValue for f64 {
    fn value_parser() -> clap::builder::ValueParser {
        clap::value_parser!(f64).into()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// A byte count written as an integer or as "8MiB", "64 KiB", "1G".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(text: &str) -> Result<Size, ConfigError> {
        let bad = |problem, expected: &str| ConfigError::InvalidValue {
            value: text.to_string(),
            problem,
            expected: expected.into(),
        };
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| bad("is not a size", "use bytes or a unit, e.g. 8MiB"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => return Err(bad("has an unknown size unit", "use KiB, MiB or GiB")),
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| bad("is too large", "use less than 16 EiB"))
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
            Raw::Text(t) => Size::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl OptionValue for Size {
    fn value_parser() -> clap::builder::ValueParser {
        clap::builder::ValueParser::new(Size::parse)
    }
    /// In the largest binary unit that divides it: "8MiB", "0".
    fn show(&self) -> String {
        let n = self.0;
        for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if n != 0 && n.is_multiple_of(1 << shift) {
                return format!("{}{unit}", n >> shift);
            }
        }
        n.to_string()
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
            _ => Err(ConfigError::InvalidValue {
                value: text.to_string(),
                problem: "is not a permission mode",
                expected: "use octal, e.g. 0644".into(),
            }),
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
            Raw::Int(n) => Err(serde::de::Error::custom(ConfigError::InvalidValue {
                value: n.to_string(),
                problem: "is not a permission mode",
                expected: "use an octal string, e.g. \"0644\"".into(),
            })),
            Raw::Text(t) => Mode::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl OptionValue for Mode {
    fn value_parser() -> clap::builder::ValueParser {
        clap::builder::ValueParser::new(Mode::parse)
    }
    fn show(&self) -> String {
        format!("{:04o}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units_and_show_in_the_largest_exact_one() {
        assert_eq!(Size::parse("8MiB").unwrap(), Size(8 << 20));
        assert_eq!(Size::parse("64 KiB").unwrap(), Size(64 << 10));
        assert_eq!(Size::parse("1024").unwrap(), Size(1024));
        assert!(Size::parse("8 parsecs").is_err());
        assert!(Size::parse("lots").is_err());
        assert!(Size::parse("99999999999T").is_err());
        assert_eq!(Size(8 << 20).show(), "8MiB");
        assert_eq!(Size(0).show(), "0");
        assert_eq!(Size(1536).show(), "1536");
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(Mode::parse("0640").unwrap(), Mode(0o640));
        assert_eq!(Mode::parse("0o755").unwrap(), Mode(0o755));
        assert!(Mode::parse("rw-").is_err());
        assert!(Mode::parse("0999").is_err());
        assert_eq!(Mode(0o644).show(), "0644");
    }

    #[test]
    fn environment_text_is_read_as_toml_then_as_a_string() {
        assert_eq!(u32::from_env("8").unwrap(), 8);
        assert_eq!(f64::from_env("30").unwrap(), 30.0);
        assert_eq!(Mode::from_env("0o644").unwrap(), Mode(0o644));
        assert_eq!(Mode::from_env("0644").unwrap(), Mode(0o644));
        assert_eq!(Size::from_env("8MiB").unwrap(), Size(8 << 20));
        assert!(u32::from_env("eight").is_err());
        // Text options keep the text as it is, quotes included.
        assert_eq!(String::from_env("\"x\"").unwrap(), "\"x\"");
    }

    #[test]
    fn environment_booleans_take_the_usual_spellings() {
        for yes in ["1", "true", "YES", "on"] {
            assert!(bool::from_env(yes).unwrap(), "{yes}");
        }
        for no in ["0", "false", "No", "off"] {
            assert!(!bool::from_env(no).unwrap(), "{no}");
        }
        let e = bool::from_env("perhaps").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`perhaps` is not a boolean: use true or false"
        );
    }
}
