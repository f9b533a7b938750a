//! An object's ETag as the inode table keeps it. Most ETags are an MD5 in hex (a single PUT's,
//! on S3 and Garage alike): those are kept as their 16 bytes, so a table of a million entries
//! holds no ETag on the heap (the text took 48 bytes of heap per entry). Any other ETag
//! (multipart `…-N`, other servers' forms) is kept as its text. The text given back is the
//! text the store gave, quotes included.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ETag {
    /// An MD5 in lowercase hex, with or without the quotes S3 puts around it.
    Md5 {
        bytes: [u8; 16],
        quoted: bool,
    },
    Other(Box<str>),
}

impl ETag {
    pub fn new(text: &str) -> ETag {
        let (hex, quoted) = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(inner) => (inner, true),
            None => (text, false),
        };
        match md5_bytes(hex) {
            Some(bytes) => ETag::Md5 { bytes, quoted },
            None => ETag::Other(text.into()),
        }
    }

    /// The ETag as the store gave it.
    pub fn text(&self) -> String {
        match self {
            ETag::Md5 { bytes, quoted } => {
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                if *quoted {
                    format!("\"{hex}\"")
                } else {
                    hex
                }
            }
            ETag::Other(text) => text.to_string(),
        }
    }
}

/// The 16 bytes of 32 lowercase hex digits (uppercase is kept as text: it would not come back
/// the same).
fn md5_bytes(hex: &str) -> Option<[u8; 16]> {
    let digits = hex.as_bytes();
    if digits.len() != 32 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0u8; 16];
    for (i, pair) in digits.chunks(2).enumerate() {
        bytes[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_etag_comes_back_as_the_store_gave_it() {
        for text in [
            "\"0123456789abcdef0123456789abcdef\"",
            "0123456789abcdef0123456789abcdef",
            "\"0123456789ABCDEF0123456789ABCDEF\"",
            "\"0123456789abcdef0123456789abcdef-3\"",
            "\"abc\"",
            "",
        ] {
            assert_eq!(ETag::new(text).text(), text);
        }
    }

    #[test]
    fn an_md5_is_kept_inline_and_others_as_text() {
        assert!(matches!(
            ETag::new("\"0123456789abcdef0123456789abcdef\""),
            ETag::Md5 { quoted: true, .. }
        ));
        assert!(matches!(ETag::new("\"x-2\""), ETag::Other(_)));
        assert_ne!(
            ETag::new("\"0123456789abcdef0123456789abcdef\""),
            ETag::new("\"0123456789abcdef0123456789abcdee\"")
        );
        assert!(std::mem::size_of::<Option<ETag>>() <= 24);
    }
}
