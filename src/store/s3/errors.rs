//! S3 errors turned into `StoreError`, so that callers (and the retry layer) can tell a
//! missing key, bad credentials, a refused request and a transient server failure apart.
//!
//! rust-s3 (with `fail-on-err`) reports every non-2xx as `HttpFailWithBody(status, xml)`, which
//! `map_s3_error` turns into `StoreError` using the status and the S3 error `<Code>`.
//! CopyObject and CompleteMultipartUpload may answer 200 and report the failure in the body:
//! `check_ok_body`. Error texts carry the S3 `Code: Message`, shortened.

use s3::error::S3Error;
use s3::request::ResponseData;

use crate::store::{BadResponse, PartMismatch, SetupError, StoreError, StoreResult};

/// Longest S3 `<Message>` (in characters) copied into an error text.
const MAX_MESSAGE_CHARS: usize = 200;

/// S3 error codes that mean the credentials (or the region they are signed for) are wrong,
/// rather than that the policy denies the request.
const BAD_CREDENTIAL_CODES: &[&str] = &[
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AuthorizationHeaderMalformed",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
];

/// Turns a rust-s3 error into a `StoreError`.
pub fn map_s3_error(err: S3Error) -> StoreError {
    match err {
        S3Error::HttpFailWithBody(status, body) => map_http_error(status, &body),
        S3Error::Reqwest(e) => {
            let text = error_chain(&e);
            if e.is_builder() {
                StoreError::Client(format!("cannot build the request: {text}"))
            } else {
                // Connect failures, but also connections dropped mid-request (a server
                // closing a kept-alive connection): worth retrying for idempotent requests.
                StoreError::Unreachable(text)
            }
        }
        S3Error::Credentials(e) => {
            StoreError::Setup(SetupError::CredentialsUnavailable(e.to_string()))
        }
        // An answer that came but cannot be read.
        e @ (S3Error::Utf8(_)
        | S3Error::FromUtf8(_)
        | S3Error::SerdeXml(_)
        | S3Error::ReqwestHeaderToStr(_)) => {
            StoreError::BadResponse(BadResponse::Unparsable(describe_s3_error(&e)))
        }
        other => StoreError::Client(describe_s3_error(&other)),
    }
}

/// True when the request certainly never reached the server (TCP/TLS connect failed).
pub(super) fn is_connect_error(err: &S3Error) -> bool {
    matches!(err, S3Error::Reqwest(e) if e.is_connect())
}

pub(super) fn describe_s3_error(err: &S3Error) -> String {
    match err {
        S3Error::Reqwest(e) => error_chain(e),
        other => other.to_string(),
    }
}

/// An error and its sources, `a: b: c` (reqwest's own Display hides the cause).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Maps an HTTP error status and its S3 XML body (`<Error><Code>..</Code><Message>..`).
/// A 2xx status means an error body inside a 200 answer (CopyObject, Complete...).
pub fn map_http_error(status: u16, body: &str) -> StoreError {
    let code = xml_tag(body, "Code");
    let message = xml_tag(body, "Message");
    let detail = error_detail(status, code.as_deref(), message.as_deref(), body);
    let is_code = |c: &str| code.as_deref() == Some(c);
    let status = if (200..300).contains(&status) {
        code_status(code.as_deref())
    } else {
        status
    };
    match status {
        404 if is_code("NoSuchBucket") => StoreError::NoSuchBucket,
        404 => StoreError::NotFound,
        400 | 403 if BAD_CREDENTIAL_CODES.iter().any(|c| is_code(c)) => {
            StoreError::BadCredentials(detail)
        }
        // Garage answers a wrong secret with AccessDenied "Invalid signature".
        403 if message
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains("signature")) =>
        {
            StoreError::BadCredentials(detail)
        }
        403 => StoreError::AccessDenied(detail),
        412 => StoreError::PreconditionFailed,
        // Another conditional write to the key was in progress: the condition cannot be
        // known to hold, so the write is refused like a failed one.
        409 if is_code("ConditionalRequestConflict") => StoreError::PreconditionFailed,
        416 => StoreError::InvalidRange,
        // NotImplemented will not get better by retrying.
        501 => StoreError::NotImplemented(detail),
        408 | 429 | 500..=599 => StoreError::Server {
            status,
            message: detail,
        },
        301 | 307 if is_code("PermanentRedirect") || is_code("TemporaryRedirect") => {
            StoreError::WrongRegion(detail)
        }
        // What the memory and local stores call `InvalidPart` too.
        400 if is_code("InvalidPart") => StoreError::InvalidPart(PartMismatch::Reported(detail)),
        _ => StoreError::Rejected { status, detail },
    }
}

/// The HTTP status an error code stands for, for errors reported inside a 200 answer.
fn code_status(code: Option<&str>) -> u16 {
    match code {
        Some("NoSuchKey" | "NoSuchBucket" | "NoSuchUpload") => 404,
        Some(c) if BAD_CREDENTIAL_CODES.contains(&c) => 403,
        Some("AccessDenied") => 403,
        Some("PreconditionFailed") => 412,
        Some("InvalidRange") => 416,
        Some("SlowDown" | "ServiceUnavailable") => 503,
        Some("InternalError") => 500,
        // An unknown error inside a 200: treat as a server failure (retried).
        _ => 500,
    }
}

/// `Code: Message` (message shortened), or the start of a non-XML body, or `HTTP status`.
pub(super) fn error_detail(
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
    body: &str,
) -> String {
    match (code, message) {
        (Some(code), Some(message)) => format!("{code}: {}", shorten(message)),
        (Some(code), None) => code.to_string(),
        (None, _) => {
            let body = body.trim();
            if body.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {}", shorten(body))
            }
        }
    }
}

pub(super) fn shorten(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// The text of the first `<tag>...</tag>` in `xml`, entities decoded; `None` when absent or
/// empty. A plain string search: S3 error bodies are small and flat.
pub(super) fn xml_tag(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    let text = xml_unescape(xml[start..start + len].trim());
    (!text.is_empty()).then_some(text)
}

fn xml_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').and_then(|semi| {
            let entity = &rest[1..semi];
            let ch = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let num = if let Some(hex) = entity.strip_prefix("#x") {
                        u32::from_str_radix(hex, 16).ok()
                    } else if let Some(dec) = entity.strip_prefix('#') {
                        dec.parse().ok()
                    } else {
                        None
                    };
                    num.and_then(char::from_u32)
                }
            };
            ch.map(|c| (c, semi + 1))
        });
        match decoded {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// An `<Error>` document in a 2xx answer (CopyObject and CompleteMultipartUpload may answer
/// 200 and report the failure in the body).
pub(super) fn check_ok_body(data: &ResponseData) -> StoreResult<()> {
    let body = String::from_utf8_lossy(data.as_slice());
    if body.contains("<Error>") {
        return Err(map_http_error(data.status_code(), &body));
    }
    Ok(())
}

/// An S3 `<Error>` document, as servers send it (for the tests of the error mapping).
#[cfg(test)]
pub(super) fn xml_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><Resource>/b/k</Resource><RequestId>1</RequestId></Error>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn maps_http_errors() {
        let m = |status, code, msg| map_http_error(status, &xml_error(code, msg));
        assert!(matches!(
            m(404, "NoSuchKey", "The specified key does not exist."),
            StoreError::NotFound
        ));
        assert!(matches!(
            m(404, "NoSuchBucket", "The specified bucket does not exist"),
            StoreError::NoSuchBucket
        ));
        assert!(matches!(map_http_error(404, ""), StoreError::NotFound));
        match m(403, "AccessDenied", "Access Denied") {
            StoreError::AccessDenied(t) => assert_eq!(t, "AccessDenied: Access Denied"),
            other => panic!("{other:?}"),
        }
        for code in [
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
            "AuthorizationHeaderMalformed",
        ] {
            match m(403, code, "nope") {
                StoreError::BadCredentials(t) => assert_eq!(t, format!("{code}: nope")),
                other => panic!("{code}: {other:?}"),
            }
        }
        assert!(matches!(
            m(400, "AuthorizationHeaderMalformed", "wrong region"),
            StoreError::BadCredentials(_)
        ));
        assert!(matches!(
            map_http_error(403, ""),
            StoreError::AccessDenied(_)
        ));
        assert!(matches!(
            m(412, "PreconditionFailed", "x"),
            StoreError::PreconditionFailed
        ));
        assert!(matches!(
            m(416, "InvalidRange", "x"),
            StoreError::InvalidRange
        ));
        match m(503, "SlowDown", "Please reduce your request rate.") {
            e @ StoreError::Server { status: 503, .. } => {
                assert!(e.is_transient());
                assert!(e.to_string().contains("SlowDown"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            map_http_error(500, "<html>oops</html>"),
            StoreError::Server { status: 500, .. }
        ));
        assert!(matches!(
            m(429, "SlowDown", "x"),
            StoreError::Server { status: 429, .. }
        ));
        let not_impl = m(501, "NotImplemented", "x");
        assert!(matches!(not_impl, StoreError::NotImplemented(_)));
        assert!(!not_impl.is_transient());
        match m(400, "InvalidArgument", "bad") {
            e @ StoreError::Rejected { status: 400, .. } => {
                assert!(!e.is_transient());
                assert_eq!(e.to_string(), "HTTP 400: InvalidArgument: bad");
            }
            other => panic!("{other:?}"),
        }
        // The memory and local stores detect this one too: the same variant.
        match m(
            400,
            "InvalidPart",
            "One or more of the specified parts could not be found.",
        ) {
            StoreError::InvalidPart(PartMismatch::Reported(t)) => {
                assert!(t.starts_with("InvalidPart: One or more"), "{t}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            map_http_error(301, &xml_error("PermanentRedirect", "elsewhere")),
            StoreError::WrongRegion(_)
        ));
        // NoSuchUpload stays NotFound (aborting a gone upload succeeds: `upload::registry`).
        assert!(matches!(m(404, "NoSuchUpload", "x"), StoreError::NotFound));
    }

    #[test]
    fn error_in_200_body() {
        assert!(matches!(
            map_http_error(200, &xml_error("InternalError", "try again")),
            StoreError::Server { status: 500, .. }
        ));
        assert!(matches!(
            map_http_error(200, &xml_error("NoSuchKey", "gone")),
            StoreError::NotFound
        ));
        let data = ResponseData::new(
            Bytes::from(xml_error("SlowDown", "x")),
            200,
            Default::default(),
        );
        assert!(matches!(
            check_ok_body(&data),
            Err(StoreError::Server { status: 503, .. })
        ));
        let ok = ResponseData::new(
            Bytes::from_static(b"<CopyObjectResult><ETag>\"x\"</ETag></CopyObjectResult>"),
            200,
            Default::default(),
        );
        assert!(check_ok_body(&ok).is_ok());
    }

    #[test]
    fn s3_error_variants() {
        assert!(matches!(
            map_s3_error(S3Error::HttpFailWithBody(404, xml_error("NoSuchKey", "x"))),
            StoreError::NotFound
        ));
        assert!(matches!(
            map_s3_error(S3Error::HttpFail),
            StoreError::Client(_)
        ));
        let not_utf8 = String::from_utf8(vec![0xff]).unwrap_err();
        assert!(matches!(
            map_s3_error(S3Error::FromUtf8(not_utf8)),
            StoreError::BadResponse(BadResponse::Unparsable(_))
        ));
    }

    #[test]
    fn long_messages_are_shortened() {
        let long = "x".repeat(1000);
        match map_http_error(403, &xml_error("AccessDenied", &long)) {
            StoreError::AccessDenied(t) => {
                assert!(t.len() < 300, "{t}");
                assert!(t.ends_with("..."));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn extracts_xml_code_and_message() {
        let body = xml_error(
            "NoSuchKey",
            "The key &lt;a&amp;b&gt; &quot;is&quot; gone&#33;",
        );
        assert_eq!(xml_tag(&body, "Code").as_deref(), Some("NoSuchKey"));
        assert_eq!(
            xml_tag(&body, "Message").as_deref(),
            Some("The key <a&b> \"is\" gone!")
        );
        assert_eq!(xml_tag(&body, "Missing"), None);
        assert_eq!(xml_tag("<Error><Code></Code></Error>", "Code"), None);
        assert_eq!(xml_tag("<Error><Code>Oops", "Code"), None);
        assert_eq!(xml_tag("", "Code"), None);
        assert_eq!(
            xml_tag(
                "<CompleteMultipartUploadResult><ETag>&quot;abc-2&quot;</ETag></CompleteMultipartUploadResult>",
                "ETag"
            )
            .as_deref(),
            Some("\"abc-2\"")
        );
        assert_eq!(xml_unescape("a & b &bogus; &#x41;"), "a & b &bogus; A");
    }
}
