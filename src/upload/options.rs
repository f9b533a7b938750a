//! Object options per key: what every new object (PUT, multipart upload, copy) carries.
//!
//! The mount-wide options from the configuration apply to every key; `[[rules]]` override
//! them field by field for keys under a prefix (the longest matching prefix wins). The
//! Content-Type comes from the file name's extension (`application/octet-stream` when it has
//! none that is known).

use crate::store::{PutOptions, Sse};

/// Options a rule or the mount sets; `None` = not set at this level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectOptions {
    pub sse: Option<Sse>,
    pub acl: Option<String>,
    pub storage_class: Option<String>,
    pub cache_control: Option<String>,
}

impl ObjectOptions {
    fn over(&self, lower: &ObjectOptions) -> ObjectOptions {
        ObjectOptions {
            sse: self.sse.clone().or_else(|| lower.sse.clone()),
            acl: self.acl.clone().or_else(|| lower.acl.clone()),
            storage_class: self
                .storage_class
                .clone()
                .or_else(|| lower.storage_class.clone()),
            cache_control: self
                .cache_control
                .clone()
                .or_else(|| lower.cache_control.clone()),
        }
    }
}

/// Options for keys under `prefix` (a full bucket key prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub prefix: String,
    pub options: ObjectOptions,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionsResolver {
    defaults: ObjectOptions,
    /// Longest prefix first.
    rules: Vec<Rule>,
}

pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

impl OptionsResolver {
    pub fn new(defaults: ObjectOptions, mut rules: Vec<Rule>) -> Self {
        rules.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        OptionsResolver { defaults, rules }
    }

    /// The options for a new object at `key`.
    pub fn for_key(&self, key: &str) -> PutOptions {
        let options = match self.rules.iter().find(|r| key.starts_with(&r.prefix)) {
            Some(rule) => rule.options.over(&self.defaults),
            None => self.defaults.clone(),
        };
        let content_type = mime_guess::from_path(key)
            .first_raw()
            .unwrap_or(DEFAULT_CONTENT_TYPE);
        PutOptions {
            content_type: Some(content_type.to_string()),
            metadata: Default::default(),
            sse: options.sse,
            acl: options.acl,
            storage_class: options.storage_class,
            cache_control: options.cache_control,
            condition: None,
            copy_source_etag: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver() -> OptionsResolver {
        OptionsResolver::new(
            ObjectOptions {
                sse: Some(Sse::Aes256),
                storage_class: Some("STANDARD".into()),
                ..ObjectOptions::default()
            },
            vec![
                Rule {
                    prefix: "logs/".into(),
                    options: ObjectOptions {
                        storage_class: Some("STANDARD_IA".into()),
                        ..ObjectOptions::default()
                    },
                },
                Rule {
                    prefix: "logs/public/".into(),
                    options: ObjectOptions {
                        acl: Some("public-read".into()),
                        ..ObjectOptions::default()
                    },
                },
            ],
        )
    }

    #[test]
    fn mount_defaults_apply_outside_every_rule() {
        let o = resolver().for_key("data/report.pdf");
        assert_eq!(o.sse, Some(Sse::Aes256));
        assert_eq!(o.storage_class.as_deref(), Some("STANDARD"));
        assert_eq!(o.content_type.as_deref(), Some("application/pdf"));
    }

    #[test]
    fn the_longest_matching_rule_overrides_field_by_field() {
        let o = resolver().for_key("logs/public/index.html");
        assert_eq!(o.acl.as_deref(), Some("public-read"));
        assert_eq!(
            o.storage_class.as_deref(),
            Some("STANDARD"),
            "only the rule's own fields"
        );
        assert_eq!(o.sse, Some(Sse::Aes256));
        assert_eq!(o.content_type.as_deref(), Some("text/html"));
        let o = resolver().for_key("logs/app.log");
        assert_eq!(o.storage_class.as_deref(), Some("STANDARD_IA"));
    }

    #[test]
    fn unknown_extensions_are_octet_stream() {
        let o = resolver().for_key("blob.zzqx");
        assert_eq!(o.content_type.as_deref(), Some(DEFAULT_CONTENT_TYPE));
        let o = resolver().for_key("noext");
        assert_eq!(o.content_type.as_deref(), Some(DEFAULT_CONTENT_TYPE));
    }
}
