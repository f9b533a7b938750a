//! URL-encoded listings: ListObjectsV2 and ListMultipartUploads are asked for with
//! `encoding-type=url`, and the keys and prefixes of their answers are decoded here.
//!
//! Without it, keys travel as XML text, and XML cannot carry every key S3 can hold: a parser
//! turns a `\r` into `\n` (XML end-of-line handling), and most other control characters are
//! not allowed in XML 1.0 at all. With it, the server percent-encodes `Key`, `Prefix`,
//! `Delimiter`, `StartAfter`, `KeyMarker`, `NextKeyMarker` and `CommonPrefixes/Prefix` (not
//! the continuation token or upload ids) and says so with `<EncodingType>url</EncodingType>`.
//! The store reads only `Key`, `CommonPrefixes/Prefix` and `NextKeyMarker` (sent back decoded
//! as the next `key-marker`); the echoes of what it sent (`Prefix`, `Delimiter`, ...) are not
//! read, so a server's quirks there (moto leaves `Delimiter` unencoded) do not matter.
//!
//! Servers encode differently, so decoding accepts each of their spellings: AWS uses form
//! encoding (a space is `+`, a literal `+` is `%2B`), Garage percent-encodes everything but
//! `A-Za-z0-9-_.~` (a space is `%20`, a `/` may be `%2F`), moto uses Python's `quote` (`/`
//! left alone). In all of them a literal `+` is `%2B`, so `+` decodes to a space. Decoding is
//! strict: a `%` not followed by two hex digits, or bytes that are not UTF-8, are an error,
//! never a guessed key. An answer without `EncodingType` url (a server that ignores the
//! parameter) is taken as it is.

use std::borrow::Cow;

use percent_encoding::percent_decode;

use crate::store::{BadResponse, StoreError};

/// The query parameter that asks for URL-encoded keys.
pub(super) const ENCODING_TYPE: (&str, &str) = ("encoding-type", "url");

/// Why a name in a URL-encoded listing could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("'%' at byte {at} of {text:?} is not followed by two hex digits")]
    BadEscape { text: String, at: usize },
    #[error("{text:?} does not decode to UTF-8")]
    NotUtf8 { text: String },
}

impl From<DecodeError> for StoreError {
    fn from(e: DecodeError) -> StoreError {
        StoreError::BadResponse(BadResponse::UndecodableName(e))
    }
}

/// How the names of one listing answer are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Names {
    /// `<EncodingType>url</EncodingType>`: percent-encoded.
    UrlEncoded,
    /// No encoding type: XML text as it is.
    Plain,
}

impl Names {
    /// From the answer's `EncodingType` element.
    pub(super) fn of_answer(encoding_type: Option<&str>) -> Names {
        match encoding_type {
            Some(e) if e.trim().eq_ignore_ascii_case(ENCODING_TYPE.1) => Names::UrlEncoded,
            _ => Names::Plain,
        }
    }

    /// The name `text` stands for.
    pub(super) fn decode(self, text: String) -> Result<String, DecodeError> {
        match self {
            Names::Plain => Ok(text),
            Names::UrlEncoded => url_decode(&text),
        }
    }
}

/// Decodes one URL-encoded name: `%XX` is the byte XX, `+` is a space.
fn url_decode(text: &str) -> Result<String, DecodeError> {
    let bytes = text.as_bytes();
    if let Some(at) = bytes.iter().enumerate().find_map(|(i, b)| {
        let escape_ok = bytes
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        (*b == b'%' && !escape_ok).then_some(i)
    }) {
        return Err(DecodeError::BadEscape {
            text: text.to_string(),
            at,
        });
    }
    let spaced: Cow<[u8]> = if bytes.contains(&b'+') {
        Cow::Owned(
            bytes
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(bytes)
    };
    percent_decode(&spaced)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|_| DecodeError::NotUtf8 {
            text: text.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Result<String, DecodeError> {
        Names::UrlEncoded.decode(text.to_string())
    }

    #[test]
    fn garage_aws_and_moto_spellings_of_awkward_keys_decode_to_the_same_key() {
        let key = "d/a\rb\nc %+ü/日";
        for spelling in [
            // Garage: everything but unreserved characters, '/' included.
            "d%2Fa%0Db%0Ac%20%25%2B%C3%BC%2F%E6%97%A5",
            // AWS: form encoding, '/' kept, space as '+'.
            "d/a%0Db%0Ac+%25%2B%C3%BC/%E6%97%A5",
            // moto: Python's quote, '/' kept, space as %20, lowercase hex accepted.
            "d/a%0db%0ac%20%25%2b%c3%bc/%e6%97%a5",
        ] {
            assert_eq!(decode(spelling).unwrap(), key, "{spelling}");
        }
    }

    #[test]
    fn a_literal_plus_is_kept_only_when_encoded() {
        assert_eq!(decode("a%2Bb").unwrap(), "a+b");
        assert_eq!(decode("a+b").unwrap(), "a b");
        assert_eq!(decode("100%25+sure").unwrap(), "100% sure");
    }

    #[test]
    fn malformed_escapes_and_non_utf8_bytes_are_errors_not_guesses() {
        for bad in ["50%", "a%2", "a%zz", "%%41", "a%2Gb"] {
            assert!(
                matches!(decode(bad), Err(DecodeError::BadEscape { .. })),
                "{bad}: {:?}",
                decode(bad)
            );
        }
        assert!(matches!(decode("%FF%FE"), Err(DecodeError::NotUtf8 { .. })));
    }

    #[test]
    fn names_are_decoded_only_when_the_answer_says_it_is_url_encoded() {
        assert_eq!(Names::of_answer(Some("url")), Names::UrlEncoded);
        assert_eq!(Names::of_answer(Some("URL")), Names::UrlEncoded);
        assert_eq!(Names::of_answer(None), Names::Plain);
        assert_eq!(
            Names::Plain.decode("a%41+b".to_string()).unwrap(),
            "a%41+b",
            "a server that ignored encoding-type sent the key as it is"
        );
        assert_eq!(
            Names::UrlEncoded.decode("a%41+b".to_string()).unwrap(),
            "aA b"
        );
    }
}
