//! Checks of `config.example.toml` against the option table.
//!
//! The example is the user's reference for every key, so it must not drift from the table:
//! every option documented, no key that does not exist, each fixed default shown as the table
//! has it, every value valid, and only flags and environment names that exist mentioned.
//!
//! The example shows each key commented out (`# key = value`); a key that cannot be combined
//! with the others' example values is commented twice (`## key = value`).

use std::collections::BTreeSet;

use super::flags::FlagsOf;
use super::{Config, Layer, ENV_VARS, KEYS};

const EXAMPLE: &str = include_str!("../../config.example.toml");

/// The top-level keys the example documents (`# key = ` or `## key = ` before the first
/// `[[rules]]`, and `rules` for that table), in order, repeats included.
fn documented_keys(example: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for line in example.lines() {
        let Some(text) = line.strip_prefix("## ").or_else(|| line.strip_prefix("# ")) else {
            continue;
        };
        if text.starts_with("[[rules]]") {
            keys.push("rules".to_string());
            break;
        }
        if let Some((key, _)) = text.split_once(" = ") {
            if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                keys.push(key.to_string());
            }
        }
    }
    keys
}

/// The example's settings, uncommented once (`# `), as TOML text.
fn uncommented(example: &str) -> String {
    example
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| {
            l.starts_with("[[") || l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' '))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn the_example_documents_every_option_once_and_no_other_key() {
    let documented = documented_keys(EXAMPLE);
    let set: BTreeSet<&str> = documented.iter().map(String::as_str).collect();
    let table: BTreeSet<&str> = KEYS.iter().copied().collect();
    let missing: Vec<_> = table.difference(&set).collect();
    let unknown: Vec<_> = set.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "options not documented in config.example.toml: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "config.example.toml documents keys that are no option: {unknown:?}"
    );
    assert_eq!(documented.len(), set.len(), "a key documented twice");
}

#[test]
fn the_example_shows_the_tables_defaults() {
    let layer = Layer::from_toml(&uncommented(EXAMPLE)).unwrap();
    assert_eq!(
        layer.differs_from_defaults(),
        Vec::<&str>::new(),
        "config.example.toml shows another default than the option table"
    );
}

#[test]
fn the_example_loads_as_it_is_and_its_values_are_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let as_is = Layer::from_file(path.as_ref()).unwrap();
    assert_eq!(
        as_is.unset_fields(),
        KEYS.to_vec(),
        "everything commented out"
    );

    let layer = Layer::from_toml(&uncommented(EXAMPLE)).unwrap();
    // The SSE-C key file and the S3-managed SSE mode exclude each other, so the example shows
    // the key file commented twice; it is checked on its own.
    assert_eq!(layer.unset_fields(), vec!["sse_c_key_file"]);
    let key_file = EXAMPLE
        .lines()
        .find_map(|l| l.strip_prefix("## sse_c_key_file = "))
        .expect("the example shows sse_c_key_file");
    assert!(Layer::from_toml(&format!("sse_c_key_file = {key_file}")).is_ok());
    let resolved = Config::resolve(Layer {
        source: Some("s3://bucket".into()),
        ..layer
    });
    assert!(
        resolved.is_ok(),
        "the example's values are valid: {:?}",
        resolved.err()
    );
}

#[test]
fn the_example_names_only_flags_and_environment_variables_that_exist() {
    let flags: BTreeSet<String> = Layer::flag_args(FlagsOf::Mount)
        .iter()
        .map(|a| format!("--{}", a.get_long().unwrap()))
        .chain(["--config".to_string(), "--help".to_string()])
        .collect();
    let env: BTreeSet<&str> = ENV_VARS
        .iter()
        .flat_map(|(_, names)| names.iter().copied())
        .chain(["BUCKETFS_CONFIG"])
        .collect();
    let words = EXAMPLE
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '<'))
        .filter(|w| !w.is_empty());
    for word in words {
        if word
            .strip_prefix("--")
            .is_some_and(|w| w.starts_with(|c: char| c.is_ascii_lowercase()))
        {
            assert!(flags.contains(word), "config.example.toml names {word}");
        }
        let env_like = ["BUCKETFS_", "AWS_", "S3_"]
            .iter()
            .any(|p| word.starts_with(p));
        if env_like && !word.contains('<') {
            assert!(env.contains(word), "config.example.toml names {word}");
        }
    }
}

#[test]
fn documented_keys_are_found_in_both_comment_styles() {
    let keys = documented_keys("# a = 1\n## b_c = 2\n# not a key = 3\n# [[rules]]\n# d = 4\n");
    assert_eq!(keys, ["a", "b_c", "rules"]);
}
