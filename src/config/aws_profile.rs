//! The region of the AWS profile, from the AWS config file (`AWS_CONFIG_FILE`, by default
//! `~/.aws/config`), as the AWS CLI and SDKs read it:
//!
//! ```text
//! [default]
//! region = eu-west-2
//!
//! [profile work]
//! region = us-west-2
//! ```
//!
//! It is the region bucketfs uses when none is set by flag, environment or config file (the
//! profile is the `profile` option, else `default`): a configured region, so the server is not
//! asked (see `store::s3::region`). Credentials stay with rust-s3, which reads
//! `~/.aws/credentials` only.

use std::path::PathBuf;

use super::Layer;

impl Layer {
    /// This (merged) layer, its region taken from the AWS profile when it sets none.
    pub fn or_profile_region(mut self, get: &impl Fn(&str) -> Option<String>) -> Layer {
        if self.region.as_deref().is_none_or(|r| r.trim().is_empty()) {
            self.region = region(self.profile.as_deref(), get).or(self.region);
        }
        self
    }
}

/// The region of `profile` (`None`: the default profile) in the AWS config file that `get`
/// (the environment) points at; `None` when the file, the profile or its region is missing.
pub(super) fn region(
    profile: Option<&str>,
    get: &impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let path = match get("AWS_CONFIG_FILE").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(get("HOME")?).join(".aws/config"),
    };
    let text = std::fs::read_to_string(path).ok()?;
    region_in(&text, profile.unwrap_or("default"))
}

/// `region` of the section of `profile` in an AWS config file's text: `[profile NAME]`, or
/// `[default]` for the default profile. Indented lines belong to a nested setting
/// (`s3 =` followed by `  addressing_style = path`) and are skipped.
fn region_in(text: &str, profile: &str) -> Option<String> {
    let mut in_profile = false;
    let mut found = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let line = line.trim();
        if line.starts_with(['#', ';']) || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let section = section.trim();
            let name = match section.strip_prefix("profile ") {
                Some(name) => name.trim(),
                None if section == "default" => "default",
                None => "", // sso-session, services, ...: no profile
            };
            in_profile = !name.is_empty() && name == profile;
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            if in_profile && key.trim() == "region" {
                found = Some(value.trim().to_string()).filter(|v| !v.is_empty());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env::env;

    const CONFIG: &str = "\
# the AWS CLI's file
[default]
output = json
region = eu-west-2

[profile work]
s3 =
  region = not-this-one
region=us-west-2

[sso-session work]
region = ap-south-1

[profile empty]
region =
";

    #[test]
    fn the_profiles_region_is_read_from_its_section() {
        assert_eq!(region_in(CONFIG, "default").as_deref(), Some("eu-west-2"));
        assert_eq!(region_in(CONFIG, "work").as_deref(), Some("us-west-2"));
        assert_eq!(region_in(CONFIG, "empty"), None);
        assert_eq!(region_in(CONFIG, "missing"), None);
        assert_eq!(
            region_in("[profile default]\nregion = x\n", "default").as_deref(),
            Some("x")
        );
    }

    #[test]
    fn the_file_is_aws_config_file_or_the_one_in_home() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::write(dir.path().join(".aws/config"), CONFIG).unwrap();
        let home = dir.path().to_str().unwrap();
        assert_eq!(
            region(None, &env(&[("HOME", home)])).as_deref(),
            Some("eu-west-2")
        );
        assert_eq!(
            region(Some("work"), &env(&[("HOME", home)])).as_deref(),
            Some("us-west-2")
        );
        let other = dir.path().join("other");
        std::fs::write(&other, "[default]\nregion = ca-central-1\n").unwrap();
        let named = env(&[("HOME", home), ("AWS_CONFIG_FILE", other.to_str().unwrap())]);
        assert_eq!(region(None, &named).as_deref(), Some("ca-central-1"));
        assert_eq!(region(None, &env(&[("HOME", "/nonexistent")])), None);
        assert_eq!(region(None, &env(&[])), None);
    }

    #[test]
    fn the_profiles_region_comes_after_every_other_layer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config");
        std::fs::write(&file, CONFIG).unwrap();
        let get = env(&[("AWS_CONFIG_FILE", file.to_str().unwrap())]);
        let unset = Layer::default().or_profile_region(&get);
        assert_eq!(unset.region.as_deref(), Some("eu-west-2"));
        let work = Layer {
            profile: Some("work".into()),
            ..Layer::default()
        };
        assert_eq!(
            work.or_profile_region(&get).region.as_deref(),
            Some("us-west-2")
        );
        let set = Layer {
            region: Some("sa-east-1".into()),
            ..Layer::default()
        };
        assert_eq!(
            set.or_profile_region(&get).region.as_deref(),
            Some("sa-east-1")
        );
    }
}
