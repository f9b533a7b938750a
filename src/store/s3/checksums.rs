//! CRC32 checksums of uploaded data, checked by the server.
//!
//! Object data (PutObject, UploadPart) is sent with `x-amz-content-sha256: UNSIGNED-PAYLOAD`
//! and `x-amz-checksum-crc32`, instead of signing its SHA-256: the server still refuses bytes
//! that differ from what was sent (Garage answers `InvalidDigest`), but the CRC costs a few
//! percent of the SHA-256 on both sides. Hashing was a quarter of the daemon's CPU in a 1 GiB
//! write, and Garage hashes again to check the signature.
//!
//! S3 accepts part checksums only in an upload created with `x-amz-checksum-algorithm`, and
//! then wants each part's checksum repeated in CompleteMultipartUpload (its own XML here, as
//! rust-s3's has no checksum field). `PartChecksums` keeps them from the parts to the
//! completion. A part copied server-side has the checksum the server answers with, if any
//! (S3 gives one, Garage none; Garage completes without it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use base64::Engine as _;

use crate::store::CompletedPart;

/// The header that names the algorithm at CreateMultipartUpload.
pub(super) const ALGORITHM_HEADER: (&str, &str) = ("x-amz-checksum-algorithm", "CRC32");
/// The header that carries a body's checksum.
pub(super) const CHECKSUM_HEADER: &str = "x-amz-checksum-crc32";
/// The element that carries a part's checksum in XML.
pub(super) const CHECKSUM_ELEMENT: &str = "ChecksumCRC32";

/// Base64 of the big-endian CRC32 of `data`, as S3 writes checksums.
pub(super) fn crc32(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc32fast::hash(data).to_be_bytes())
}

/// The checksums of the parts of the multipart uploads in progress, by upload id.
#[derive(Default)]
pub(super) struct PartChecksums(Mutex<HashMap<String, BTreeMap<u32, String>>>);

impl PartChecksums {
    /// Part `number` of `upload_id` has `checksum` (`None`: the server gave none).
    pub(super) fn record(&self, upload_id: &str, number: u32, checksum: Option<String>) {
        let mut uploads = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let parts = uploads.entry(upload_id.to_string()).or_default();
        match checksum {
            Some(c) => parts.insert(number, c),
            None => parts.remove(&number),
        };
    }

    /// The recorded checksums of `upload_id`, forgotten here (the upload ends).
    pub(super) fn take(&self, upload_id: &str) -> BTreeMap<u32, String> {
        let mut uploads = self.0.lock().unwrap_or_else(|e| e.into_inner());
        uploads.remove(upload_id).unwrap_or_default()
    }
}

/// The CompleteMultipartUpload document: every part with its ETag and, when known, checksum.
pub(super) fn complete_body(parts: &[CompletedPart], checksums: &BTreeMap<u32, String>) -> String {
    let mut xml = String::from("<CompleteMultipartUpload>");
    for part in parts {
        xml.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag>",
            part.number,
            escape(&part.etag)
        ));
        if let Some(c) = checksums.get(&part.number) {
            xml.push_str(&format!("<{CHECKSUM_ELEMENT}>{c}</{CHECKSUM_ELEMENT}>"));
        }
        xml.push_str("</Part>");
    }
    xml.push_str("</CompleteMultipartUpload>");
    xml
}

/// XML text escaping (ETags are quoted strings).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_the_base64_of_the_big_endian_crc32() {
        // CRC32 of "123456789" is 0xCBF43926.
        assert_eq!(crc32(b"123456789"), "y/Q5Jg==");
        assert_eq!(crc32(b""), "AAAAAA==");
    }

    #[test]
    fn completion_lists_every_part_with_the_checksums_known() {
        let checksums = PartChecksums::default();
        checksums.record("u", 1, Some("AAAAAQ==".into()));
        checksums.record("u", 2, Some("stale".into()));
        checksums.record("u", 2, None); // sent again as a copy without a checksum
        checksums.record("other", 1, Some("x".into()));
        let parts = [
            CompletedPart {
                number: 1,
                etag: "\"e1\"".into(),
            },
            CompletedPart {
                number: 2,
                etag: "\"e2\"".into(),
            },
        ];
        assert_eq!(
            complete_body(&parts, &checksums.take("u")),
            "<CompleteMultipartUpload>\
             <Part><PartNumber>1</PartNumber><ETag>&quot;e1&quot;</ETag><ChecksumCRC32>AAAAAQ==</ChecksumCRC32></Part>\
             <Part><PartNumber>2</PartNumber><ETag>&quot;e2&quot;</ETag></Part>\
             </CompleteMultipartUpload>"
        );
        assert!(checksums.take("u").is_empty(), "taken once");
        assert_eq!(checksums.take("other").len(), 1);
    }
}
