//! The extra headers of the requests that write or copy objects: user metadata
//! (`x-amz-meta-*`), Cache-Control, the object options (SSE-S3/KMS, canned ACL, storage class)
//! and the SSE-C key, and the checks that keep bad names and values from reaching rust-s3
//! (which panics on them).
//!
//! rust-s3 has no parameter for these on PUT and CreateMultipartUpload, so they travel as
//! extra headers of a `Bucket` clone. Object options go only on requests that create objects
//! (PutObject, CreateMultipartUpload, CopyObject): S3 rejects SSE-S3/KMS headers on GET and
//! HEAD, and does not carry them over from a copy's source. The SSE-C key goes on every
//! request that writes or reads object data and, for copies, twice: for the target and, as
//! `x-amz-copy-source-server-side-encryption-customer-*`, for the source.

use std::ops::Range;

use super::DEFAULT_CONTENT_TYPE;
use crate::store::{
    Condition, InvalidRequest, PutOptions, SseCKey, StoreError, StoreResult, UserMetadata,
    CANNED_ACLS,
};

/// A header name rust-s3 (`http::HeaderName`) accepts: RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value rust-s3 (`http::HeaderValue::from_str`) accepts: visible ASCII, space, tab.
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

pub(super) fn check_header(name: &str, value: &str) -> StoreResult<()> {
    if !is_header_name(name) {
        return Err(StoreError::InvalidRequest(InvalidRequest::HeaderName {
            name: name.to_string(),
        }));
    }
    if !is_header_value(value) {
        return Err(StoreError::InvalidRequest(InvalidRequest::HeaderValue {
            name: name.to_string(),
        }));
    }
    Ok(())
}

/// `x-amz-meta-*` headers for user metadata (keys lowercased).
fn metadata_headers(metadata: &UserMetadata) -> Vec<(String, String)> {
    metadata
        .iter()
        .map(|(k, v)| (format!("x-amz-meta-{}", k.to_lowercase()), v.clone()))
        .collect()
}

/// Header prefix of the SSE-C key for the object a request writes or reads.
pub(super) const SSE_C_PREFIX: &str = "x-amz-server-side-encryption-customer-";
/// Header prefix of the SSE-C key for the source of a copy.
const SSE_C_SOURCE_PREFIX: &str = "x-amz-copy-source-server-side-encryption-customer-";

pub(super) fn header(name: &str, value: &str) -> (String, String) {
    (name.to_string(), value.to_string())
}

/// The three SSE-C headers (algorithm, key, key MD5) under `prefix`.
pub(super) fn sse_c_headers(key: &SseCKey, prefix: &str) -> Vec<(String, String)> {
    vec![
        (format!("{prefix}algorithm"), "AES256".to_string()),
        (format!("{prefix}key"), key.key_base64().to_string()),
        (format!("{prefix}key-md5"), key.key_md5_base64().to_string()),
    ]
}

/// How a new object is stored: SSE-S3/KMS, canned ACL, storage class. Sent on every request
/// that creates an object, copies included (S3 does not carry them over from the source).
fn storage_headers(opts: &PutOptions, sse_c: bool) -> StoreResult<Vec<(String, String)>> {
    let mut headers = Vec::new();
    if let Some(sse) = &opts.sse {
        if sse_c {
            return Err(StoreError::InvalidRequest(InvalidRequest::SseWithSseC {
                algorithm: sse.algorithm(),
            }));
        }
        headers.push(header("x-amz-server-side-encryption", sse.algorithm()));
        if let Some(id) = sse.kms_key_id() {
            if id.trim().is_empty() {
                return Err(StoreError::InvalidRequest(InvalidRequest::EmptyKmsKeyId));
            }
            headers.push(header("x-amz-server-side-encryption-aws-kms-key-id", id));
        }
    }
    if let Some(acl) = &opts.acl {
        if !CANNED_ACLS.contains(&acl.as_str()) {
            return Err(StoreError::InvalidRequest(InvalidRequest::UnknownAcl {
                acl: acl.clone(),
            }));
        }
        headers.push(header("x-amz-acl", acl));
    }
    if let Some(class) = &opts.storage_class {
        if class.trim().is_empty() {
            return Err(StoreError::InvalidRequest(
                InvalidRequest::EmptyStorageClass,
            ));
        }
        headers.push(header("x-amz-storage-class", class));
    }
    Ok(headers)
}

/// Headers of PutObject and CreateMultipartUpload besides the content type (which rust-s3
/// sends itself): user metadata, Cache-Control, storage options, the SSE-C key.
pub(super) fn write_headers(
    opts: &PutOptions,
    sse_c: Option<&SseCKey>,
) -> StoreResult<Vec<(String, String)>> {
    let mut headers = metadata_headers(&opts.metadata);
    if let Some(cache_control) = &opts.cache_control {
        headers.push(header("cache-control", cache_control));
    }
    headers.extend(storage_headers(opts, sse_c.is_some())?);
    if let Some(key) = sse_c {
        headers.extend(sse_c_headers(key, SSE_C_PREFIX));
    }
    Ok(headers)
}

/// The headers of a write's condition (`If-None-Match: *` or `If-Match: "etag"`).
pub(super) fn condition_headers(condition: Option<&Condition>) -> Vec<(String, String)> {
    match condition {
        None => Vec::new(),
        Some(Condition::Absent) => vec![header("if-none-match", "*")],
        Some(Condition::Is(etag)) => {
            vec![header(
                "if-match",
                &format!("\"{}\"", etag.trim_matches('"')),
            )]
        }
    }
}

/// `x-amz-copy-source-if-match: "etag"`: a copy only of that version of its source.
fn copy_source_condition(etag: Option<&str>) -> Option<(String, String)> {
    etag.map(|e| {
        header(
            "x-amz-copy-source-if-match",
            &format!("\"{}\"", e.trim_matches('"')),
        )
    })
}

/// Headers of CopyObject besides `x-amz-copy-source`. `keep_metadata`: COPY directive (the
/// source's content type, metadata and Cache-Control stay; storage options are still sent);
/// else REPLACE with everything in `opts`. The target's condition and the source's
/// (`opts.copy_source_etag`). `source_key`: the SSE-C key of the source.
pub(super) fn copy_headers(
    opts: &PutOptions,
    keep_metadata: bool,
    sse_c: Option<&SseCKey>,
    source_key: Option<&SseCKey>,
) -> StoreResult<Vec<(String, String)>> {
    let mut headers = Vec::new();
    if keep_metadata {
        headers.push(header("x-amz-metadata-directive", "COPY"));
    } else {
        headers.push(header("x-amz-metadata-directive", "REPLACE"));
        let content_type = opts.content_type.as_deref().unwrap_or(DEFAULT_CONTENT_TYPE);
        headers.push(header("content-type", content_type));
        headers.extend(metadata_headers(&opts.metadata));
        if let Some(cache_control) = &opts.cache_control {
            headers.push(header("cache-control", cache_control));
        }
    }
    headers.extend(storage_headers(opts, sse_c.is_some())?);
    headers.extend(condition_headers(opts.condition.as_ref()));
    headers.extend(copy_source_condition(opts.copy_source_etag.as_deref()));
    if let Some(key) = sse_c {
        headers.extend(sse_c_headers(key, SSE_C_PREFIX));
    }
    if let Some(key) = source_key {
        headers.extend(sse_c_headers(key, SSE_C_SOURCE_PREFIX));
    }
    Ok(headers)
}

/// Headers of UploadPartCopy besides `x-amz-copy-source`: the range (end exclusive) and the
/// SSE-C keys of the upload (`sse_c`) and of the source.
pub(super) fn upload_part_copy_headers(
    range: &Range<u64>,
    source_etag: Option<&str>,
    sse_c: Option<&SseCKey>,
    source_key: Option<&SseCKey>,
) -> Vec<(String, String)> {
    let mut headers = vec![(
        "x-amz-copy-source-range".to_string(),
        format!("bytes={}-{}", range.start, range.end - 1),
    )];
    headers.extend(copy_source_condition(source_etag));
    if let Some(key) = sse_c {
        headers.extend(sse_c_headers(key, SSE_C_PREFIX));
    }
    if let Some(key) = source_key {
        headers.extend(sse_c_headers(key, SSE_C_SOURCE_PREFIX));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Sse;

    #[test]
    fn header_checks() {
        assert!(check_header("x-amz-meta-mode", "0644").is_ok());
        let refused = |name, value| match check_header(name, value) {
            Err(StoreError::InvalidRequest(why)) => why,
            other => panic!("{name} {value:?}: {other:?}"),
        };
        assert_eq!(
            refused("x-amz-meta-bad key", "v"),
            InvalidRequest::HeaderName {
                name: "x-amz-meta-bad key".into()
            }
        );
        for value in ["caf\u{e9}", "line\nbreak"] {
            assert_eq!(
                refused("x-amz-meta-k", value),
                InvalidRequest::HeaderValue {
                    name: "x-amz-meta-k".into()
                }
            );
        }
    }

    fn names(headers: &[(String, String)]) -> Vec<&str> {
        headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        let mut found = headers.iter().filter(|(n, _)| n == name);
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "{name} twice in {headers:?}");
        first
    }

    fn all_options() -> PutOptions {
        let mut opts = PutOptions {
            content_type: Some("text/plain".into()),
            sse: Some(Sse::Aes256),
            acl: Some("bucket-owner-full-control".into()),
            storage_class: Some("STANDARD_IA".into()),
            cache_control: Some("max-age=3600, public".into()),
            ..Default::default()
        };
        opts.metadata.insert("mode".into(), "0644".into());
        opts
    }

    const SSE_NAMES: [&str; 2] = [
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-aws-kms-key-id",
    ];

    #[test]
    fn sse_variants_become_headers() {
        let cases = [
            (Sse::Aes256, "AES256", None),
            (Sse::Kms { key_id: None }, "aws:kms", None),
            (
                Sse::Kms {
                    key_id: Some("arn:aws:kms:us-east-1:1:key/k".into()),
                },
                "aws:kms",
                Some("arn:aws:kms:us-east-1:1:key/k"),
            ),
            (Sse::KmsDsse { key_id: None }, "aws:kms:dsse", None),
            (
                Sse::KmsDsse {
                    key_id: Some("alias/mine".into()),
                },
                "aws:kms:dsse",
                Some("alias/mine"),
            ),
        ];
        for (sse, algorithm, key_id) in cases {
            let opts = PutOptions {
                sse: Some(sse.clone()),
                ..Default::default()
            };
            for headers in [
                write_headers(&opts, None).unwrap(),
                copy_headers(&opts, true, None, None).unwrap(),
                copy_headers(&opts, false, None, None).unwrap(),
            ] {
                assert_eq!(
                    value(&headers, "x-amz-server-side-encryption"),
                    Some(algorithm),
                    "{sse:?}"
                );
                assert_eq!(
                    value(&headers, "x-amz-server-side-encryption-aws-kms-key-id"),
                    key_id,
                    "{sse:?}"
                );
            }
        }
        let empty_id = PutOptions {
            sse: Some(Sse::Kms {
                key_id: Some(" ".into()),
            }),
            ..Default::default()
        };
        assert!(matches!(
            write_headers(&empty_id, None),
            Err(StoreError::InvalidRequest(InvalidRequest::EmptyKmsKeyId))
        ));
        // No options, no storage headers at all.
        let none = write_headers(&PutOptions::default(), None).unwrap();
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn acl_storage_class_and_cache_control_on_put_and_create() {
        let headers = write_headers(&all_options(), None).unwrap();
        assert_eq!(
            value(&headers, "x-amz-acl"),
            Some("bucket-owner-full-control")
        );
        assert_eq!(value(&headers, "x-amz-storage-class"), Some("STANDARD_IA"));
        assert_eq!(
            value(&headers, "cache-control"),
            Some("max-age=3600, public")
        );
        assert_eq!(value(&headers, "x-amz-meta-mode"), Some("0644"));
        assert_eq!(
            value(&headers, "x-amz-server-side-encryption"),
            Some("AES256")
        );
        // rust-s3 sends the content type itself on PUT / CreateMultipartUpload.
        assert_eq!(value(&headers, "content-type"), None);
        for acl in CANNED_ACLS {
            let opts = PutOptions {
                acl: Some(acl.to_string()),
                ..Default::default()
            };
            assert_eq!(
                value(&write_headers(&opts, None).unwrap(), "x-amz-acl"),
                Some(*acl)
            );
        }
        let bad = PutOptions {
            acl: Some("public".into()),
            ..Default::default()
        };
        let e = write_headers(&bad, None).unwrap_err();
        assert!(e.to_string().contains("public-read"), "{e}");
        let bad = PutOptions {
            storage_class: Some(String::new()),
            ..Default::default()
        };
        assert!(matches!(
            write_headers(&bad, None),
            Err(StoreError::InvalidRequest(
                InvalidRequest::EmptyStorageClass
            ))
        ));
    }

    #[test]
    fn copy_replace_sends_everything_again() {
        let headers = copy_headers(&all_options(), false, None, None).unwrap();
        assert_eq!(value(&headers, "x-amz-metadata-directive"), Some("REPLACE"));
        assert_eq!(value(&headers, "content-type"), Some("text/plain"));
        assert_eq!(value(&headers, "x-amz-meta-mode"), Some("0644"));
        assert_eq!(
            value(&headers, "cache-control"),
            Some("max-age=3600, public")
        );
        assert_eq!(
            value(&headers, "x-amz-server-side-encryption"),
            Some("AES256")
        );
        assert_eq!(
            value(&headers, "x-amz-acl"),
            Some("bucket-owner-full-control")
        );
        assert_eq!(value(&headers, "x-amz-storage-class"), Some("STANDARD_IA"));
        // Without a content type, REPLACE still sets one (S3 would default to binary/octet-stream).
        let h = copy_headers(&PutOptions::default(), false, None, None).unwrap();
        assert_eq!(value(&h, "content-type"), Some(DEFAULT_CONTENT_TYPE));
    }

    #[test]
    fn copy_keep_sends_storage_options_but_not_metadata() {
        let headers = copy_headers(&all_options(), true, None, None).unwrap();
        assert_eq!(value(&headers, "x-amz-metadata-directive"), Some("COPY"));
        assert_eq!(
            value(&headers, "x-amz-server-side-encryption"),
            Some("AES256")
        );
        assert_eq!(
            value(&headers, "x-amz-acl"),
            Some("bucket-owner-full-control")
        );
        assert_eq!(value(&headers, "x-amz-storage-class"), Some("STANDARD_IA"));
        for name in ["content-type", "cache-control", "x-amz-meta-mode"] {
            assert_eq!(value(&headers, name), None, "{name}");
        }
        let plain = copy_headers(&PutOptions::default(), true, None, None).unwrap();
        assert_eq!(names(&plain), ["x-amz-metadata-directive"]);
    }

    #[test]
    fn sse_c_headers_on_writes_and_copies() {
        let key = SseCKey::new(*b"0123456789abcdef0123456789abcdef");
        let b64 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let md5 = key.key_md5_base64().to_string();
        let target = [
            "x-amz-server-side-encryption-customer-algorithm",
            "x-amz-server-side-encryption-customer-key",
            "x-amz-server-side-encryption-customer-key-md5",
        ];
        let source = [
            "x-amz-copy-source-server-side-encryption-customer-algorithm",
            "x-amz-copy-source-server-side-encryption-customer-key",
            "x-amz-copy-source-server-side-encryption-customer-key-md5",
        ];
        let check = |headers: &[(String, String)], names: &[&str; 3], present: bool| {
            let want = [Some("AES256"), Some(b64), Some(md5.as_str())];
            for (name, want) in names.iter().zip(want) {
                assert_eq!(value(headers, name), want.filter(|_| present), "{name}");
            }
        };
        let opts = PutOptions {
            acl: Some("private".into()),
            ..Default::default()
        };
        // PUT / CreateMultipartUpload: the target key only.
        let put = write_headers(&opts, Some(&key)).unwrap();
        check(&put, &target, true);
        check(&put, &source, false);
        assert_eq!(value(&put, "x-amz-acl"), Some("private"));
        // Copies: both, with either directive; or the target only for a plain source.
        for keep in [true, false] {
            let copy = copy_headers(&opts, keep, Some(&key), Some(&key)).unwrap();
            check(&copy, &target, true);
            check(&copy, &source, true);
            let copy = copy_headers(&opts, keep, Some(&key), None).unwrap();
            check(&copy, &target, true);
            check(&copy, &source, false);
        }
        // UploadPartCopy.
        let upc = upload_part_copy_headers(&(5..10), None, Some(&key), Some(&key));
        assert_eq!(value(&upc, "x-amz-copy-source-range"), Some("bytes=5-9"));
        check(&upc, &target, true);
        check(&upc, &source, true);
        let plain = upload_part_copy_headers(&(0..1), None, None, None);
        assert_eq!(names(&plain), ["x-amz-copy-source-range"]);
        // SSE-S3/KMS and SSE-C exclude each other.
        let both = PutOptions {
            sse: Some(Sse::Aes256),
            ..Default::default()
        };
        let e = write_headers(&both, Some(&key)).unwrap_err();
        assert!(e.to_string().contains("SSE-C"), "{e}");
        assert!(matches!(
            copy_headers(&both, true, Some(&key), None),
            Err(StoreError::InvalidRequest(InvalidRequest::SseWithSseC {
                algorithm: "AES256"
            }))
        ));
        // Every header passes rust-s3's checks (it panics on bad ones).
        for (name, value) in put.iter().chain(&upc) {
            check_header(name, value).unwrap();
        }
        for name in SSE_NAMES {
            assert_eq!(value(&put, name), None);
        }
    }
}
