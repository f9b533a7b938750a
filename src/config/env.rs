//! The environment layer: how an option's environment names are looked up.
//!
//! The names themselves are in the option table (`BUCKETFS_<KEY>` first, then the names other
//! S3 tools use: `AWS_REGION`, `S3_BUCKET`, ...); `Layer::from_env` is written from it. This
//! file holds the one lookup rule they share, and the tests of the environment layer.

/// The first of `names` that is set to something not empty, with its value. An empty
/// variable counts as unset, so `S3_BUCKET=` does not hide the config file's bucket.
pub(super) fn first_set(
    get: &impl Fn(&str) -> Option<String>,
    names: &[&'static str],
) -> Option<(&'static str, String)> {
    names
        .iter()
        .find_map(|&name| get(name).filter(|v| !v.is_empty()).map(|v| (name, v)))
}

#[cfg(test)]
pub(super) fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

#[cfg(test)]
mod tests {
    use super::env;
    use crate::config::{ConfigError, Layer, Mode, Size, ENV_VARS, KEYS};

    #[test]
    fn every_option_but_rules_is_read_from_bucketfs_key_first() {
        for (key, names) in ENV_VARS {
            if *key == "rules" {
                assert!(names.is_empty(), "rules are file-only");
                continue;
            }
            assert_eq!(
                names.first().copied(),
                Some(format!("BUCKETFS_{}", key.to_uppercase()).as_str()),
                "{key}"
            );
        }
        assert_eq!(ENV_VARS.len(), KEYS.len());
    }

    #[test]
    fn the_aws_and_s3_names_of_other_tools_are_read() {
        let l = Layer::from_env(env(&[
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_PROFILE", "work"),
            ("AWS_DEFAULT_REGION", "eu-west-3"),
            ("AWS_ENDPOINT_URL", "http://10.0.0.1:9000"),
            ("S3_BUCKET", "b"),
            ("S3_FORCE_PATH_STYLE", "yes"),
        ]))
        .unwrap();
        assert_eq!(l.access_key.as_deref(), Some("id"));
        assert_eq!(l.secret_key.as_deref(), Some("secret"));
        assert_eq!(l.session_token.as_deref(), Some("token"));
        assert_eq!(l.profile.as_deref(), Some("work"));
        assert_eq!(l.region.as_deref(), Some("eu-west-3"));
        assert_eq!(l.endpoint.as_deref(), Some("http://10.0.0.1:9000"));
        assert_eq!(l.bucket.as_deref(), Some("b"));
        assert_eq!(l.force_path_style, Some(true));
    }

    #[test]
    fn the_first_name_set_and_not_empty_wins() {
        let l = Layer::from_env(env(&[
            ("BUCKETFS_REGION", ""),
            ("AWS_REGION", "from-aws"),
            ("S3_REGION", "from-s3"),
            ("AWS_ENDPOINT_URL_S3", "http://s3-specific:1"),
            ("AWS_ENDPOINT_URL", "http://general:1"),
        ]))
        .unwrap();
        assert_eq!(l.region.as_deref(), Some("from-aws"));
        assert_eq!(l.endpoint.as_deref(), Some("http://s3-specific:1"));
    }

    #[test]
    fn typed_values_are_read_as_the_config_file_reads_them() {
        let l = Layer::from_env(env(&[
            ("BUCKETFS_UID", "8"),
            ("BUCKETFS_FILE_MODE", "0640"),
            ("BUCKETFS_PART_SIZE", "16MiB"),
            ("BUCKETFS_WRITE_BACK_DELAY", "0"),
            ("BUCKETFS_READ_ONLY", "1"),
            ("BUCKETFS_LISTING_METADATA", "off"),
            ("BUCKETFS_CACHE_CONTROL", "max-age=60"),
        ]))
        .unwrap();
        assert_eq!(l.uid, Some(8));
        assert_eq!(l.file_mode, Some(Mode(0o640)));
        assert_eq!(l.part_size, Some(Size(16 << 20)));
        assert_eq!(l.write_back_delay, Some(0.0));
        assert_eq!(l.read_only, Some(true));
        assert_eq!(l.listing_metadata, Some(false));
        assert_eq!(l.cache_control.as_deref(), Some("max-age=60"));
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let e = Layer::from_env(env(&[("S3_FORCE_PATH_STYLE", "perhaps")])).unwrap_err();
        assert!(
            matches!(&e, ConfigError::InEnv { var, .. } if var == "S3_FORCE_PATH_STYLE"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "environment variable S3_FORCE_PATH_STYLE: `perhaps` is not a boolean: use true or false"
        );
        let e = Layer::from_env(env(&[("BUCKETFS_PART_SIZE", "lots")])).unwrap_err();
        assert!(e.to_string().contains("BUCKETFS_PART_SIZE"), "{e}");
        assert!(e.to_string().contains("is not a size"), "{e}");
    }
}
