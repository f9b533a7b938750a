//! Naming rules: which FUSE names are allowed, and how S3 keys become directory entries.
//!
//! S3 keys are arbitrary UTF-8; file names are not. A key segment that is empty (`a//b`), `.`,
//! `..`, or longer than 255 bytes cannot be shown, so the entry is skipped (and logged at debug
//! level) — it never hides its siblings. When a name is both an object (`a`) and a prefix
//! (`a/...`), the directory wins and the object is hidden, in listings and lookups alike.

use std::ffi::OsStr;

use super::error::{NameError, NameResult};

/// Longest name Linux accepts for one path component.
pub const NAME_MAX: usize = 255;

/// Checks that `key` fits in a server holding keys of at most `max` bytes (S3: 1024,
/// `max_key_length`): a deeper path than that cannot be created.
pub fn check_key(key: &str, max: usize) -> NameResult<()> {
    if key.len() > max {
        return Err(NameError::KeyTooLong);
    }
    Ok(())
}

/// Checks a name handed to us by the kernel (create, mkdir, rename target, lookup).
pub fn check_name(name: &OsStr) -> NameResult<&str> {
    if name.len() > NAME_MAX {
        return Err(NameError::TooLong);
    }
    let name = name.to_str().ok_or(NameError::Invalid(
        "names must be valid UTF-8 to become S3 keys",
    ))?;
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(NameError::Invalid("not a valid file name"));
    }
    Ok(name)
}

/// True when `segment` of a key can be shown as a file name.
pub fn showable(segment: &str) -> bool {
    !segment.is_empty() && segment != "." && segment != ".." && segment.len() <= NAME_MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_over_255_bytes_are_too_long() {
        let long = "x".repeat(256);
        assert!(matches!(
            check_name(OsStr::new(&long)),
            Err(NameError::TooLong)
        ));
        assert!(check_name(OsStr::new(&"x".repeat(255))).is_ok());
    }

    #[test]
    fn keys_over_1024_bytes_are_too_long() {
        assert!(check_key(&"k".repeat(1024), 1024).is_ok());
        assert!(matches!(
            check_key(&"k".repeat(1025), 1024),
            Err(NameError::KeyTooLong)
        ));
    }

    #[test]
    fn dot_segments_and_empty_names_are_not_showable() {
        for bad in ["", ".", ".."] {
            assert!(!showable(bad), "{bad:?}");
        }
        assert!(showable("a b ü"));
    }
}
