//! ListObjectsV2 semantics over a sorted sequence of keys, shared by the `memory` and `local`
//! stores so both paginate and group by delimiter exactly as S3 does.
//!
//! The continuation token is the last key or common prefix returned ("start after"), which
//! is enough for stores that can cheaply re-enumerate their keys in order. It says which of
//! the two it is (`o` or `p` before the key): an object whose key ends with the delimiter
//! (a directory's own marker) is not a common prefix, and the page after it must list the
//! keys below it.

use super::{ListPage, ListedObject};

/// Builds one page from `entries`, which must be sorted by key (byte order).
pub fn page_from_sorted(
    entries: impl IntoIterator<Item = ListedObject>,
    prefix: &str,
    delimiter: Option<&str>,
    token: Option<&str>,
    max_keys: usize,
) -> ListPage {
    let max_keys = max_keys.max(1);
    let mut page = ListPage::default();
    let mut last: Option<Token> = None;
    let mut count = 0usize;
    let token = token.map(Token::decode);
    for entry in entries {
        if !entry.key.starts_with(prefix) {
            continue;
        }
        if let Some(t) = &token {
            let inside_token_prefix = t.is_prefix && entry.key.starts_with(&t.key);
            if entry.key <= t.key || inside_token_prefix {
                continue;
            }
        }
        let group = delimiter.and_then(|d| {
            entry.key[prefix.len()..]
                .find(d)
                .map(|i| entry.key[..prefix.len() + i + d.len()].to_string())
        });
        if let (Some(g), Some(l)) = (&group, &last) {
            if l.is_prefix && *g == l.key {
                continue;
            }
        }
        if count == max_keys {
            page.next_token = last.map(|l| l.encode());
            return page;
        }
        count += 1;
        match group {
            Some(g) => {
                last = Some(Token {
                    key: g.clone(),
                    is_prefix: true,
                });
                page.prefixes.push(g);
            }
            None => {
                last = Some(Token {
                    key: entry.key.clone(),
                    is_prefix: false,
                });
                page.objects.push(entry);
            }
        }
    }
    page
}

/// A continuation token: the last object key or common prefix a page returned.
struct Token {
    key: String,
    is_prefix: bool,
}

impl Token {
    fn encode(&self) -> String {
        format!("{}{}", if self.is_prefix { 'p' } else { 'o' }, self.key)
    }

    /// A token this module made (anything else reads as an object key to start after).
    fn decode(token: &str) -> Token {
        match token.split_at_checked(1) {
            Some(("p", key)) => Token {
                key: key.to_string(),
                is_prefix: true,
            },
            Some(("o", key)) => Token {
                key: key.to_string(),
                is_prefix: false,
            },
            _ => Token {
                key: token.to_string(),
                is_prefix: false,
            },
        }
    }
}

/// The continuation token of a listing that starts after `key` (an object key).
pub fn token_after(key: &str) -> String {
    Token {
        key: key.to_string(),
        is_prefix: false,
    }
    .encode()
}

/// The key a continuation token starts after (for stores that skip ahead themselves).
pub fn token_key(token: &str) -> String {
    Token::decode(token).key
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn obj(key: &str) -> ListedObject {
        ListedObject {
            key: key.into(),
            size: 1,
            last_modified: SystemTime::UNIX_EPOCH,
            etag: None,
        }
    }

    fn keys(list: &[&str]) -> Vec<ListedObject> {
        let mut v: Vec<_> = list.iter().map(|k| obj(k)).collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    #[test]
    fn delimiter_groups_keys_into_common_prefixes() {
        let entries = keys(&["a/1", "a/2", "b", "c/x/y", "d/"]);
        let page = page_from_sorted(entries, "", Some("/"), None, 1000);
        let objs: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(objs, ["b"]);
        assert_eq!(page.prefixes, ["a/", "c/", "d/"]);
        assert_eq!(page.next_token, None);
    }

    #[test]
    fn pages_continue_after_the_token_without_repeating_a_prefix() {
        let entries = keys(&["p/a", "p/b/1", "p/b/2", "p/c", "p/d"]);
        let first = page_from_sorted(entries.clone(), "p/", Some("/"), None, 2);
        assert_eq!(first.objects.len() + first.prefixes.len(), 2);
        assert_eq!(first.next_token.as_deref(), Some("pp/b/"));
        let second = page_from_sorted(entries, "p/", Some("/"), first.next_token.as_deref(), 2);
        let objs: Vec<_> = second.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(objs, ["p/c", "p/d"]);
        assert!(second.prefixes.is_empty());
        assert_eq!(second.next_token, None);
    }

    #[test]
    fn a_page_ending_at_a_directory_marker_goes_on_below_it() {
        let entries = keys(&["d/", "d/a", "d/b/1", "d/c"]);
        let first = page_from_sorted(entries.clone(), "d/", Some("/"), None, 1);
        assert_eq!(first.objects[0].key, "d/");
        let rest = page_from_sorted(entries, "d/", Some("/"), first.next_token.as_deref(), 10);
        let objs: Vec<_> = rest.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(objs, ["d/a", "d/c"]);
        assert_eq!(rest.prefixes, ["d/b/"]);
    }

    #[test]
    fn without_delimiter_every_key_is_listed() {
        let entries = keys(&["x/1", "x/2/3", "y"]);
        let page = page_from_sorted(entries, "x/", None, None, 1000);
        assert_eq!(page.objects.len(), 2);
        assert!(page.prefixes.is_empty());
    }
}
