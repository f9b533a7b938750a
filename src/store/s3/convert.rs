//! S3 answers read into the store's types: the headers of a HEAD answer into `ObjectInfo`, HTTP
//! and ISO 8601 times, the ETag of a PUT or UploadPart answer, and the requested slice of a
//! ranged GET (a server may ignore the Range header and send the whole object).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use s3::request::ResponseData;
use s3::serde_types::HeadObjectResult;
use time::format_description::well_known::{Iso8601, Rfc2822, Rfc3339};
use time::OffsetDateTime;

use crate::store::{BadResponse, ObjectInfo, StoreError, StoreResult, UserMetadata};

/// The parts of a HEAD answer `object_info` reads (and the SSE ones, for tests), from
/// lowercase header names.
pub(super) fn head_result(headers: &HashMap<String, String>) -> HeadObjectResult {
    let get = |name: &str| headers.get(name).cloned();
    HeadObjectResult {
        content_length: get("content-length").and_then(|v| v.trim().parse().ok()),
        content_type: get("content-type"),
        e_tag: get("etag"),
        last_modified: get("last-modified"),
        cache_control: get("cache-control"),
        server_side_encryption: get("x-amz-server-side-encryption"),
        ssekms_key_id: get("x-amz-server-side-encryption-aws-kms-key-id"),
        sse_customer_algorithm: get("x-amz-server-side-encryption-customer-algorithm"),
        sse_customer_key_md5: get("x-amz-server-side-encryption-customer-key-md5"),
        storage_class: get("x-amz-storage-class"),
        metadata: Some(
            headers
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("x-amz-meta-")?.to_string(), v.clone())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// HEAD/GET `Last-Modified` (an HTTP date, RFC 2822 style); `UNIX_EPOCH` when unreadable.
fn parse_http_time(text: &str) -> SystemTime {
    let text = text.trim();
    httpdate::parse_http_date(text)
        .ok()
        .or_else(|| {
            OffsetDateTime::parse(text, &Rfc2822)
                .ok()
                .map(SystemTime::from)
        })
        .unwrap_or(UNIX_EPOCH)
}

/// LIST `LastModified` (ISO 8601, `2024-01-02T03:04:05.000Z`); `UNIX_EPOCH` when unreadable.
pub(super) fn parse_iso_time(text: &str) -> SystemTime {
    let text = text.trim();
    OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(text, &Iso8601::DEFAULT))
        .map(SystemTime::from)
        .unwrap_or(UNIX_EPOCH)
}

pub(super) fn object_info(head: HeadObjectResult) -> ObjectInfo {
    ObjectInfo {
        size: head.content_length.unwrap_or(0).max(0) as u64,
        last_modified: head
            .last_modified
            .as_deref()
            .map(parse_http_time)
            .unwrap_or(UNIX_EPOCH),
        etag: head.e_tag.filter(|e| !e.is_empty()),
        content_type: head.content_type.filter(|c| !c.is_empty()),
        metadata: head
            .metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect(),
        storage_class: head.storage_class.filter(|c| !c.is_empty()),
        version_id: head.version_id.filter(|v| !v.is_empty() && v != "null"),
    }
}

/// Whether an object's user metadata (`stored`, as a HEAD reads it: keys lowercased) is what
/// a write `sent` (keys lowercased on the way out).
pub(super) fn same_metadata(stored: &UserMetadata, sent: &UserMetadata) -> bool {
    stored.len() == sent.len()
        && sent
            .iter()
            .all(|(k, v)| stored.get(&k.to_lowercase()) == Some(v))
}

/// The ETag rust-s3 puts in the body for `response_data(true)`.
pub(super) fn etag_of(data: &ResponseData) -> Option<String> {
    std::str::from_utf8(data.as_slice())
        .ok()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
}

/// The slice of `body` for `start..end` when the server answered a ranged GET.
pub(super) fn range_body(status: u16, body: Bytes, start: u64, end: u64) -> StoreResult<Bytes> {
    let len = body.len() as u64;
    match status {
        206 => Ok(body.slice(..len.min(end - start) as usize)),
        // The server ignored the Range header and sent the whole object.
        200 => {
            if start >= len {
                if start == 0 {
                    Ok(Bytes::new())
                } else {
                    Err(StoreError::InvalidRange)
                }
            } else {
                Ok(body.slice(start as usize..len.min(end) as usize))
            }
        }
        other => Err(StoreError::BadResponse(BadResponse::UnexpectedStatus {
            request: "a ranged GET",
            status: other,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times() {
        let t = parse_http_time("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_445_412_480
        );
        let t = parse_iso_time("2015-10-21T07:28:00.000Z");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_445_412_480
        );
        assert_eq!(parse_http_time("garbage"), UNIX_EPOCH);
        assert_eq!(parse_iso_time("garbage"), UNIX_EPOCH);
    }

    #[test]
    fn range_bodies() {
        let b = Bytes::from_static(b"0123456789");
        assert_eq!(range_body(206, b.slice(2..5), 2, 5).unwrap(), "234");
        assert_eq!(range_body(200, b.clone(), 2, 5).unwrap(), "234");
        assert_eq!(range_body(200, b.clone(), 8, 20).unwrap(), "89");
        assert!(matches!(
            range_body(200, b.clone(), 10, 20),
            Err(StoreError::InvalidRange)
        ));
        assert_eq!(range_body(200, Bytes::new(), 0, 20).unwrap(), "");
        assert!(matches!(
            range_body(204, Bytes::new(), 0, 20),
            Err(StoreError::BadResponse(BadResponse::UnexpectedStatus {
                status: 204,
                ..
            }))
        ));
    }

    #[test]
    fn object_info_from_head() {
        let mut head = HeadObjectResult {
            content_length: Some(12),
            e_tag: Some("\"e\"".into()),
            content_type: Some("text/plain".into()),
            last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
            ..Default::default()
        };
        head.metadata = Some([("Mode".to_string(), "0644".to_string())].into());
        let info = object_info(head);
        assert_eq!(info.size, 12);
        assert_eq!(info.etag.as_deref(), Some("\"e\""));
        assert_eq!(info.metadata.get("mode").map(String::as_str), Some("0644"));
        let info = object_info(HeadObjectResult::default());
        assert_eq!(info.last_modified, UNIX_EPOCH);
    }
}
