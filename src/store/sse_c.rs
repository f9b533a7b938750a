//! The customer-provided key of SSE-C (server-side encryption with a key of your own).
//!
//! With SSE-C, S3 encrypts each object with a key the client sends along with every request
//! that writes or reads the object's data (PUT, CreateMultipartUpload, UploadPart, GET, HEAD,
//! and both ends of a copy) and keeps only a salted hash of it: lose the key and the data is
//! gone. The key travels in headers (base64, plus the base64 MD5 of the key), so it is only
//! safe over HTTPS; AWS refuses SSE-C over plain HTTP.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// Longest key file read (a key file is 32 or ~45 bytes; anything much larger is a mistake).
const MAX_FILE_LEN: u64 = 4096;

/// A 256-bit SSE-C key. Its `Debug` never shows the key (nor its MD5).
#[derive(Clone, PartialEq, Eq)]
pub struct SseCKey {
    key: [u8; 32],
    key_base64: String,
    md5_base64: String,
}

impl fmt::Debug for SseCKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SseCKey(<redacted>)")
    }
}

impl SseCKey {
    /// The key length in bytes (AES-256).
    pub const LEN: usize = 32;

    pub fn new(key: [u8; 32]) -> SseCKey {
        SseCKey {
            key,
            key_base64: BASE64.encode(key),
            md5_base64: BASE64.encode(md5::compute(key).0),
        }
    }

    /// Reads a key file: exactly 32 raw bytes, or the key in base64 (44 characters, may end
    /// with a newline).
    pub fn from_file(path: &Path) -> Result<SseCKey, String> {
        let what = format!("SSE-C key file {}", path.display());
        let len = std::fs::metadata(path)
            .map_err(|e| format!("{what}: {e}"))?
            .len();
        if len > MAX_FILE_LEN {
            return Err(format!("{what}: {len} bytes; {}", Self::EXPECTED));
        }
        let contents = std::fs::read(path).map_err(|e| format!("{what}: {e}"))?;
        Self::parse(&contents).map_err(|e| format!("{what}: {e}"))
    }

    const EXPECTED: &'static str = "expected exactly 32 raw bytes, or the 32-byte key in base64 \
         (44 characters ending in '=', optionally followed by a newline), e.g. from \
         `head -c 32 /dev/urandom > key` or `openssl rand -base64 32 > key`";

    /// The key from a key file's contents (see [`SseCKey::from_file`]).
    pub fn parse(contents: &[u8]) -> Result<SseCKey, String> {
        if let Ok(raw) = <[u8; 32]>::try_from(contents) {
            return Ok(SseCKey::new(raw));
        }
        let text = contents
            .strip_suffix(b"\n")
            .map(|t| t.strip_suffix(b"\r").unwrap_or(t))
            .unwrap_or(contents);
        if text.len() != 44 {
            return Err(format!("{} bytes; {}", contents.len(), Self::EXPECTED));
        }
        let decoded = BASE64.decode(text).map_err(|e| {
            format!(
                "44 characters but not valid base64 ({e}); {}",
                Self::EXPECTED
            )
        })?;
        let raw = <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| {
            format!(
                "base64 of {} bytes, not 32; {}",
                decoded.len(),
                Self::EXPECTED
            )
        })?;
        Ok(SseCKey::new(raw))
    }

    /// The key in base64 (`x-amz-server-side-encryption-customer-key`).
    pub fn key_base64(&self) -> &str {
        &self.key_base64
    }

    /// The base64 MD5 of the key (`x-amz-server-side-encryption-customer-key-MD5`).
    pub fn key_md5_base64(&self) -> &str {
        &self.md5_base64
    }

    /// The raw key.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const KEY: [u8; 32] = *b"0123456789abcdef0123456789abcdef";
    const KEY_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    fn file(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(contents).unwrap();
        f
    }

    #[test]
    fn raw_32_bytes() {
        let raw: [u8; 32] = std::array::from_fn(|i| (i * 37 + 200) as u8); // binary, has \n-like bytes
        let key = SseCKey::from_file(file(&raw).path()).unwrap();
        assert_eq!(key.bytes(), &raw);
        // 32 bytes that happen to be text are still the raw key.
        let key = SseCKey::from_file(file(&KEY).path()).unwrap();
        assert_eq!(key.bytes(), &KEY);
    }

    #[test]
    fn base64_44_chars_with_or_without_newline() {
        for contents in [
            KEY_B64.to_string(),
            format!("{KEY_B64}\n"),
            format!("{KEY_B64}\r\n"),
        ] {
            let key = SseCKey::from_file(file(contents.as_bytes()).path()).unwrap();
            assert_eq!(key.bytes(), &KEY, "{contents:?}");
            assert_eq!(key.key_base64(), KEY_B64);
        }
    }

    #[test]
    fn md5_header_value() {
        // base64(md5("0123456789abcdef0123456789abcdef")), as `openssl md5 -binary | base64`.
        let key = SseCKey::new(KEY);
        assert_eq!(
            key.key_md5_base64(),
            BASE64.encode(md5::compute(b"0123456789abcdef0123456789abcdef").0)
        );
        assert_eq!(key.key_md5_base64().len(), 24);
    }

    #[test]
    fn wrong_sizes_are_clear_errors() {
        for contents in [
            &b""[..],
            &b"short"[..],
            &KEY[..31],
            &[KEY.as_slice(), b"\n"].concat()[..], // 33: not raw, not base64
            &[KEY.as_slice(), KEY.as_slice()].concat()[..],
            format!("{KEY_B64}\n\n").as_bytes(),
            &KEY_B64.as_bytes()[..43],
        ] {
            let e = SseCKey::from_file(file(contents).path()).unwrap_err();
            assert!(e.contains("expected exactly 32 raw bytes"), "{e}");
            assert!(e.contains("base64"), "{e}");
            assert!(e.contains("SSE-C key file"), "{e}");
            assert!(e.contains(&format!("{} bytes", contents.len())), "{e}");
        }
        // 44 characters, not base64.
        let e = SseCKey::parse(&[b'!'; 44]).unwrap_err();
        assert!(e.contains("not valid base64"), "{e}");
        // 44 characters of base64 without padding: 33 bytes.
        let e = SseCKey::parse(BASE64.encode([7u8; 33]).as_bytes()).unwrap_err();
        assert!(e.contains("33 bytes, not 32"), "{e}");
        // A missing file names the file.
        let e = SseCKey::from_file(Path::new("/nonexistent/key")).unwrap_err();
        assert!(e.contains("/nonexistent/key"), "{e}");
        // A huge file is not read.
        let big = file(&vec![0u8; 10_000]);
        let e = SseCKey::from_file(big.path()).unwrap_err();
        assert!(e.contains("10000 bytes"), "{e}");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = SseCKey::new(KEY);
        let text = format!("{key:?} {:?}", Some(key.clone()));
        assert!(!text.contains(KEY_B64), "{text}");
        assert!(!text.contains("0123456789"), "{text}");
        assert!(!text.contains(key.key_md5_base64()), "{text}");
        assert!(text.contains("redacted"));
    }
}
