//! Telling SSE-C problems apart in the 400 and 403 answers to reads and writes.
//!
//! Reads (GET, HEAD, a copy's source) of objects that were not written with SSE-C fail on S3
//! when a key is sent ("not applicable"): `ReadFailure::PlainObject` says to repeat the read
//! without the key, so a mount with a key still reads the bucket's plain objects. A read of an
//! SSE-C object without the key or with another key becomes `StoreError::SseCustomerKey`, with
//! what to pass. Writes with a key get the HTTPS rule and a hint when the bucket blocks SSE-C.
//! AWS and Garage word these answers differently, so the messages are matched (`read_failure`).

use s3::error::S3Error;

use super::errors::{error_detail, map_http_error, map_s3_error, xml_tag};
use crate::store::{StoreError, StoreResult};

/// A 400 or 403 answer, kept raw (status, body) so SSE-C problems can be told apart.
pub(super) type ClientError = (u16, String);

/// `Ok(Err(..))` for 400 and 403 answers, which need a closer look (`read_failure`); every
/// other error mapped as usual.
pub(super) fn split_client_error<T>(
    result: Result<T, S3Error>,
) -> StoreResult<Result<T, ClientError>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(S3Error::HttpFailWithBody(status @ (400 | 403), body)) => Ok(Err((status, body))),
        Err(e) => Err(map_s3_error(e)),
    }
}

/// The outcome (`StoreError::outcome`) of an answer `split_client_error` kept raw: a
/// refusal, though the request returns it as a value.
pub(super) fn refusal<T>(answer: &Result<T, ClientError>) -> Option<&'static str> {
    match answer {
        Ok(_) => None,
        Err((403, _)) => Some("access_denied"),
        Err(_) => Some("client_error"),
    }
}

/// What a 400/403 answer to a request that reads an object (GET, HEAD, copy source) means.
#[derive(Debug)]
pub(super) enum ReadFailure {
    /// The SSE-C key was sent but the object is not encrypted with one: repeat without it.
    PlainObject,
    Error(StoreError),
}

impl ReadFailure {
    pub(super) fn into_error(self) -> StoreError {
        match self {
            ReadFailure::Error(e) => e,
            ReadFailure::PlainObject => StoreError::SseCustomerKey(
                "the SSE-C key was refused as not applicable to a plain object".into(),
            ),
        }
    }
}

/// Tells SSE-C problems apart in a 400/403 answer about reading `key`; `key_sent`: the request
/// carried the SSE-C key for that object. Messages: AWS says "...stored using a form of Server
/// Side Encryption..." (no key), "The encryption parameters are not applicable to this
/// object" (key, plain object), "...must provide the correct secret key" (wrong key, 403);
/// Garage says "Object is encrypted", "Trying to decrypt a plaintext object", "Invalid
/// encryption key, could not decrypt object metadata" (all 400).
pub(super) fn read_failure(status: u16, body: &str, key: &str, key_sent: bool) -> ReadFailure {
    let message = xml_tag(body, "Message")
        .unwrap_or_else(|| body.to_string())
        .to_ascii_lowercase();
    let detail = || {
        let code = xml_tag(body, "Code");
        error_detail(
            status,
            code.as_deref(),
            xml_tag(body, "Message").as_deref(),
            body,
        )
    };
    if let Some(e) = sse_c_transport_error(&message, key_sent, &detail) {
        return ReadFailure::Error(e);
    }
    if key_sent && (message.contains("not applicable") || message.contains("plaintext")) {
        return ReadFailure::PlainObject;
    }
    if !key_sent && status == 400 && message.contains("encrypt") {
        return ReadFailure::Error(StoreError::SseCustomerKey(format!(
            "{key:?} is encrypted with a customer-provided key (SSE-C) and no key was given: \
             pass the key it was written with with --sse-c-key-file ({})",
            detail()
        )));
    }
    if key_sent
        && message.contains("key")
        && ["encrypt", "customer", "sse-c", "decrypt"]
            .iter()
            .any(|w| message.contains(w))
    {
        return ReadFailure::Error(StoreError::SseCustomerKey(format!(
            "{key:?} was encrypted with another customer-provided key (SSE-C) than the one \
             given with --sse-c-key-file ({})",
            detail()
        )));
    }
    ReadFailure::Error(map_http_error(status, body))
}

/// AWS refuses SSE-C over plain HTTP; say so whatever the request.
fn sse_c_transport_error(
    message: &str,
    key_sent: bool,
    detail: &dyn Fn() -> String,
) -> Option<StoreError> {
    (key_sent && message.contains("secure connection")).then(|| {
        StoreError::SseCustomerKey(format!(
            "S3 accepts customer-provided keys (SSE-C) only over HTTPS: use an https:// endpoint \
             ({})",
            detail()
        ))
    })
}

/// Maps the error of a request that writes with the SSE-C key (PUT, CreateMultipartUpload,
/// UploadPart, copy target): the HTTPS rule, and a hint on 403 (S3 blocks SSE-C writes on
/// buckets created since April 2026 unless their encryption configuration allows them).
pub(super) fn map_sse_c_write_error(err: S3Error, sse_c: bool) -> StoreError {
    match err {
        S3Error::HttpFailWithBody(status, body) if sse_c => map_sse_c_write_http(status, &body),
        other => map_s3_error(other),
    }
}

pub(super) fn map_sse_c_write_http(status: u16, body: &str) -> StoreError {
    let message = xml_tag(body, "Message").unwrap_or_default();
    let detail = || {
        let code = xml_tag(body, "Code");
        error_detail(
            status,
            code.as_deref(),
            Some(&message).filter(|m| !m.is_empty()).map(String::as_str),
            body,
        )
    };
    if let Some(e) = sse_c_transport_error(&message.to_ascii_lowercase(), true, &detail) {
        return e;
    }
    match map_http_error(status, body) {
        StoreError::AccessDenied(text) => StoreError::AccessDenied(format!(
            "{text}; writes with a customer-provided key (SSE-C) are refused by buckets that \
             block SSE-C (the default for S3 buckets created since April 2026: see the bucket's \
             default encryption, BlockedEncryptionTypes)"
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::s3::errors::xml_error;

    #[test]
    fn sse_c_read_failures_are_told_apart() {
        let is_key_error = |f: ReadFailure, what: &str| match f {
            ReadFailure::Error(StoreError::SseCustomerKey(text)) => {
                assert!(text.contains("--sse-c-key-file"), "{text}");
                assert!(text.contains(what), "{text}");
            }
            other => panic!("{other:?}"),
        };
        // AWS, no key sent.
        let aws_no_key = xml_error(
            "InvalidRequest",
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.",
        );
        is_key_error(
            read_failure(400, &aws_no_key, "k", false),
            "no key was given",
        );
        // AWS, key sent, plain object.
        let aws_plain = xml_error(
            "InvalidRequest",
            "The encryption parameters are not applicable to this object.",
        );
        assert!(matches!(
            read_failure(400, &aws_plain, "k", true),
            ReadFailure::PlainObject
        ));
        // AWS, wrong key.
        let aws_wrong = xml_error(
            "AccessDenied",
            "Requests specifying Server Side Encryption with Customer provided keys must provide the correct secret key.",
        );
        is_key_error(
            read_failure(403, &aws_wrong, "k", true),
            "another customer-provided key",
        );
        // Garage.
        let g = |m| xml_error("InvalidRequest", &format!("Bad request: {m}"));
        is_key_error(
            read_failure(400, &g("Object is encrypted"), "k", false),
            "no key",
        );
        assert!(matches!(
            read_failure(400, &g("Trying to decrypt a plaintext object"), "k", true),
            ReadFailure::PlainObject
        ));
        is_key_error(
            read_failure(
                400,
                &g("Invalid encryption key, could not decrypt object metadata."),
                "k",
                true,
            ),
            "another",
        );
        // Plain HTTP.
        let http = xml_error(
            "InvalidRequest",
            "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection.",
        );
        match read_failure(400, &http, "k", true) {
            ReadFailure::Error(StoreError::SseCustomerKey(t)) => {
                assert!(t.contains("https"), "{t}")
            }
            other => panic!("{other:?}"),
        }
        // Anything else keeps its usual mapping.
        assert!(matches!(
            read_failure(403, &xml_error("AccessDenied", "Access Denied"), "k", true),
            ReadFailure::Error(StoreError::AccessDenied(_))
        ));
        assert!(matches!(
            read_failure(403, &xml_error("SignatureDoesNotMatch", "x"), "k", false),
            ReadFailure::Error(StoreError::BadCredentials(_))
        ));
        assert!(matches!(
            read_failure(400, "", "k", false),
            ReadFailure::Error(StoreError::Rejected { status: 400, .. })
        ));
        // Writes refused with a key: a hint about buckets that block SSE-C.
        match map_sse_c_write_error(
            S3Error::HttpFailWithBody(403, xml_error("AccessDenied", "Access Denied")),
            true,
        ) {
            StoreError::AccessDenied(t) => assert!(t.contains("BlockedEncryptionTypes"), "{t}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            map_sse_c_write_error(
                S3Error::HttpFailWithBody(403, xml_error("AccessDenied", "Access Denied")),
                false,
            ),
            StoreError::AccessDenied(t) if !t.contains("SSE-C")
        ));
    }
}
