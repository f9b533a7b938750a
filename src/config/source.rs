//! `Source`: what a mount shows, parsed from `s3://BUCKET[/PREFIX]` or `file:///dir`.
//!
//! Kept apart from the option table because it is a value with its own grammar (bucket name
//! rules, prefix segments) and is used past configuration (cache folder names, mount names).

use std::path::PathBuf;

use super::ConfigError;

/// Where the objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `s3://BUCKET[/PREFIX]`; `prefix` is empty or ends with `/`.
    S3 { bucket: String, prefix: String },
    /// `file:///some/dir`.
    Local { root: PathBuf },
}

impl Source {
    pub fn parse(text: &str) -> Result<Source, ConfigError> {
        let invalid = |value: &str, problem, expected: &str| ConfigError::InvalidValue {
            value: value.to_string(),
            problem,
            expected: expected.to_string(),
        };
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid(
                    text,
                    "names no bucket",
                    "use s3://BUCKET or s3://BUCKET/PREFIX",
                ));
            }
            if !valid_bucket_name(bucket) {
                return Err(invalid(
                    bucket,
                    "is not a valid bucket name",
                    "use 3-63 characters: a-z, 0-9, '.', '-', '_'",
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
                && !prefix.is_empty()
            {
                return Err(invalid(
                    prefix,
                    "is a prefix with an empty, `.` or `..` segment",
                    "use s3://BUCKET/a/b",
                ));
            }
            let prefix = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            };
            return Ok(Source::S3 {
                bucket: bucket.into(),
                prefix,
            });
        }
        if let Some(path) = text.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(invalid(
                    text,
                    "is not an absolute file URL",
                    "use file:///absolute/dir",
                ));
            }
            return Ok(Source::Local { root: path.into() });
        }
        Err(invalid(
            text,
            "is not a source",
            "use s3://BUCKET[/PREFIX] or file:///some/dir",
        ))
    }

    /// A short, filesystem-safe name for this source (used for per-mount cache folders).
    pub fn slug(&self) -> String {
        let raw = match self {
            Source::S3 { bucket, prefix } => format!("s3-{bucket}-{prefix}"),
            Source::Local { root } => format!("file-{}", root.display()),
        };
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

fn valid_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_bucket_and_prefix() {
        assert_eq!(
            Source::parse("s3://my-bucket/a/b/").unwrap(),
            Source::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b/".into()
            }
        );
        assert_eq!(
            Source::parse("file:///srv/data").unwrap(),
            Source::Local {
                root: "/srv/data".into()
            }
        );
        assert!(Source::parse("s3:///x").is_err());
        assert!(Source::parse("s3://b/a//c").is_err());
        assert!(Source::parse("s3://UPPER").is_err());
        assert!(Source::parse("http://x").is_err());
        assert!(Source::parse("file://relative").is_err());
    }

    #[test]
    fn a_bad_source_says_what_to_write() {
        let e = Source::parse("http://x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`http://x` is not a source: use s3://BUCKET[/PREFIX] or file:///some/dir"
        );
    }
}
