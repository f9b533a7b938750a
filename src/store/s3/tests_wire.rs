//! The store against a tiny canned-response HTTP server on 127.0.0.1: checks what goes over
//! the wire (headers, query strings, request counts) and how answers are read, with no S3.
//! The server and the settings are shared with `tests_region`.

use super::*;
use crate::store::InvalidRequest;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// Requests seen by the fake server: request line and headers, lowercased, then the body.
pub(super) type Seen = Arc<Mutex<Vec<String>>>;

fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).ok()?;
    Some(format!("{head}{}", String::from_utf8_lossy(&body)))
}

/// Answers each connection's request with the next of `responses` (raw HTTP, the server
/// adds `Connection: close`), then stops listening.
pub(super) fn serve(responses: Vec<String>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for response in responses {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            if let Some(head) = read_request(&mut stream) {
                seen2.lock().unwrap().push(head);
            }
            let (status_line, rest) = response.split_once("\r\n").unwrap();
            let reply = format!("{status_line}\r\nConnection: close\r\n{rest}");
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (endpoint, seen)
}

pub(super) fn response(status: &str, headers: &[&str], body: &str) -> String {
    let mut text = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

pub(super) fn error_body(code: &str) -> String {
    format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>m</Message></Error>")
}

fn store(endpoint: String, max_retries: u32, timeout: Duration) -> S3Store {
    store_with_key(endpoint, max_retries, timeout, None)
}

fn store_with_key(
    endpoint: String,
    max_retries: u32,
    timeout: Duration,
    sse_c_key: Option<SseCKey>,
) -> S3Store {
    S3Store::new(&S3Settings {
        sse_c_key,
        ..settings(endpoint, max_retries, timeout)
    })
    .unwrap()
}

/// Bucket `bkt` at `endpoint`, path style, static keys, region us-east-1, quick retries.
pub(super) fn settings(endpoint: String, max_retries: u32, timeout: Duration) -> S3Settings {
    S3Settings {
        bucket: "bkt".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint),
        path_style: true,
        access_key: Some("AKIDEXAMPLE".into()),
        secret_key: Some("secret".into()),
        session_token: None,
        profile: None,
        retry: RetryPolicy {
            retry_timeout: Duration::from_secs(60),
            max_retries: Some(max_retries),
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            request_timeout: timeout,
        },
        sse_c_key: None,
    }
}

pub(super) const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn head_retries_a_503_and_reads_headers() {
    let (endpoint, seen) = serve(vec![
        response("503 Service Unavailable", &[], &error_body("SlowDown")),
        response(
            "200 OK",
            &[
                "ETag: \"abc\"",
                "Content-Type: text/plain",
                "Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT",
                "x-amz-meta-Mode: 0644",
            ],
            "",
        )
        .replace("Content-Length: 0", "Content-Length: 7"),
    ]);
    let info = store(endpoint, 3, T).head("dir/a b").await.unwrap();
    assert_eq!(info.size, 7);
    assert_eq!(info.etag.as_deref(), Some("\"abc\""));
    assert_eq!(info.metadata.get("mode").map(String::as_str), Some("0644"));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[0].starts_with("head /bkt/dir/a%20b http/1.1"),
        "{}",
        seen[0]
    );
}

#[tokio::test]
async fn errors_are_typed_and_not_retried() {
    let (endpoint, seen) = serve(vec![response("404 Not Found", &[], "")]);
    let e = store(endpoint, 3, T).head("x").await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound), "{e:?}");
    assert_eq!(seen.lock().unwrap().len(), 1);

    let (endpoint, _) = serve(vec![response(
        "403 Forbidden",
        &[],
        &error_body("SignatureDoesNotMatch"),
    )]);
    let e = store(endpoint, 3, T)
        .get_range("x", 0..10)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::BadCredentials(_)), "{e:?}");
}

#[tokio::test]
async fn empty_object_range_is_empty() {
    let (endpoint, seen) = serve(vec![response(
        "416 Requested Range Not Satisfiable",
        &[],
        &error_body("InvalidRange"),
    )]);
    let data = store(endpoint, 3, T).get_range("e", 0..4096).await.unwrap();
    assert!(data.is_empty());
    let seen = seen.lock().unwrap();
    assert!(seen[0].contains("range: bytes=0-4095"), "{}", seen[0]);
}

#[tokio::test]
async fn a_body_that_arrives_in_pieces_is_read_whole() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let sent = body.clone();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        read_request(&mut stream);
        let head = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            sent.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        for piece in sent.chunks(70_000) {
            stream.write_all(piece).unwrap();
            stream.flush().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let data = store(endpoint, 0, T)
        .get_range("big", 0..body.len() as u64)
        .await
        .unwrap();
    assert_eq!(data.len(), body.len());
    assert!(data[..] == body[..], "the pieces were not joined in order");
}

#[tokio::test]
async fn range_past_the_end_is_invalid() {
    let (endpoint, _) = serve(vec![response(
        "416 Requested Range Not Satisfiable",
        &[],
        &error_body("InvalidRange"),
    )]);
    let e = store(endpoint, 3, T)
        .get_range("e", 10..20)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::InvalidRange), "{e:?}");
}

#[tokio::test]
async fn copy_encodes_the_source_and_retries_an_error_in_a_200() {
    let (endpoint, seen) = serve(vec![
        response("200 OK", &[], &error_body("InternalError")),
        response(
            "200 OK",
            &[],
            "<CopyObjectResult><ETag>\"e\"</ETag></CopyObjectResult>",
        ),
    ]);
    let mut opts = PutOptions {
        content_type: Some("text/x".into()),
        ..Default::default()
    };
    opts.metadata.insert("Mode".into(), "0600".into());
    store(endpoint, 3, T)
        .copy("a+b ü%/c", "to", Some(&opts))
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let req = &seen[1];
    assert!(req.starts_with("put /bkt/to http/1.1"), "{req}");
    assert!(
        req.contains("x-amz-copy-source: /bkt/a%2bb%20%c3%bc%25/c\r\n"),
        "{req}"
    );
    assert!(req.contains("x-amz-metadata-directive: replace"), "{req}");
    assert!(req.contains("content-type: text/x"), "{req}");
    assert!(req.contains("x-amz-meta-mode: 0600"), "{req}");
}

#[tokio::test]
async fn copy_without_replace_keeps_metadata() {
    let (endpoint, seen) = serve(vec![response(
        "200 OK",
        &[],
        "<CopyObjectResult></CopyObjectResult>",
    )]);
    store(endpoint, 0, T).copy("a", "b", None).await.unwrap();
    let req = &seen.lock().unwrap()[0];
    assert!(req.contains("x-amz-metadata-directive: copy"), "{req}");
    assert!(!req.contains("x-amz-meta-"), "{req}");
}

#[tokio::test]
async fn put_sends_metadata_and_returns_the_etag() {
    let (endpoint, seen) = serve(vec![response("200 OK", &["ETag: \"p\""], "")]);
    let mut opts = PutOptions::default();
    opts.metadata.insert("uid".into(), "1000".into());
    let etag = store(endpoint, 0, T)
        .put("k", Bytes::from_static(b"data"), &opts)
        .await
        .unwrap();
    assert_eq!(etag.as_deref(), Some("\"p\""));
    let req = &seen.lock().unwrap()[0];
    assert!(req.contains("x-amz-meta-uid: 1000"), "{req}");
    assert!(
        req.contains("content-type: application/octet-stream"),
        "{req}"
    );
}

fn conditional(condition: Condition) -> PutOptions {
    PutOptions {
        condition: Some(condition),
        ..PutOptions::default()
    }
}

#[tokio::test]
async fn a_conditional_put_sends_its_condition_and_a_refusal_is_precondition_failed() {
    let (endpoint, seen) = serve(vec![
        response("200 OK", &["ETag: \"new\""], ""),
        response(
            "412 Precondition Failed",
            &[],
            &error_body("PreconditionFailed"),
        ),
        response("404 Not Found", &[], &error_body("NoSuchKey")),
        response(
            "409 Conflict",
            &[],
            &error_body("ConditionalRequestConflict"),
        ),
    ]);
    let s = store(endpoint, 0, T);
    let body = || Bytes::from_static(b"data");
    s.put("k", body(), &conditional(Condition::Absent))
        .await
        .unwrap();
    let stale = s
        .put("k", body(), &conditional(Condition::Is("\"old\"".into())))
        .await;
    assert!(matches!(stale, Err(StoreError::PreconditionFailed)));
    let gone = s
        .put("k", body(), &conditional(Condition::Is("old".into())))
        .await;
    assert!(
        matches!(gone, Err(StoreError::PreconditionFailed)),
        "If-Match on a deleted object: the condition failed"
    );
    let racing = s.put("k", body(), &conditional(Condition::Absent)).await;
    assert!(matches!(racing, Err(StoreError::PreconditionFailed)));
    let seen = seen.lock().unwrap();
    assert!(seen[0].contains("if-none-match: *"), "{}", seen[0]);
    assert!(!seen[0].contains("if-match:"), "{}", seen[0]);
    for req in &seen[1..3] {
        assert!(req.contains("if-match: \"old\""), "quoted once: {req}");
    }
}

#[tokio::test]
async fn an_unconditional_put_sends_no_condition() {
    let (endpoint, seen) = serve(vec![response("200 OK", &["ETag: \"p\""], "")]);
    store(endpoint, 0, T)
        .put("k", Bytes::from_static(b"data"), &PutOptions::default())
        .await
        .unwrap();
    let req = &seen.lock().unwrap()[0];
    assert!(
        !req.contains("if-none-match") && !req.contains("if-match"),
        "{req}"
    );
}

/// A server that loses the answer to a conditional PUT's first attempt (a 500), refuses its
/// retry (412), and answers the HEAD that follows with `head_headers`.
fn serve_refused_after_a_lost_answer(head_headers: &[&str]) -> (String, Seen) {
    serve(vec![
        response(
            "500 Internal Server Error",
            &[],
            &error_body("InternalError"),
        ),
        response(
            "412 Precondition Failed",
            &[],
            &error_body("PreconditionFailed"),
        ),
        response("200 OK", head_headers, ""),
    ])
}

#[tokio::test]
async fn a_retried_conditional_put_refused_because_its_first_attempt_landed_succeeds() {
    // The first attempt's answer is lost (500 after the server stored it); the retry is
    // refused by the condition; the object's ETag is the MD5 of what was sent: ours.
    let md5 = format!("{:x}", md5::compute(b"data"));
    let etag_header = format!("ETag: \"{md5}\"");
    let (endpoint, seen) = serve_refused_after_a_lost_answer(&[&etag_header, "Content-Length: 4"]);
    let etag = store(endpoint, 3, T)
        .put(
            "k",
            Bytes::from_static(b"data"),
            &conditional(Condition::Absent),
        )
        .await
        .unwrap();
    assert_eq!(etag, Some(format!("\"{md5}\"")));
    let seen = seen.lock().unwrap();
    assert!(seen[2].starts_with("head /bkt/k "), "{}", seen[2]);
}

#[tokio::test]
async fn a_retried_conditional_put_refused_by_another_writers_object_fails() {
    let (endpoint, _seen) =
        serve_refused_after_a_lost_answer(&["ETag: \"theirs\"", "Content-Length: 4"]);
    let put = store(endpoint, 3, T)
        .put(
            "k",
            Bytes::from_static(b"data"),
            &conditional(Condition::Absent),
        )
        .await;
    assert!(
        matches!(put, Err(StoreError::PreconditionFailed)),
        "{put:?}"
    );
}

#[tokio::test]
async fn a_retried_conditional_put_refused_by_another_writers_same_bytes_fails() {
    // Two hosts reserving one name exclusively both send an empty body: the same ETag. The
    // object's metadata says whose it is.
    let md5 = format!("{:x}", md5::compute(b""));
    let etag_header = format!("ETag: \"{md5}\"");
    let refused_after_a_lost_answer = |metadata: &'static str| {
        let etag_header = etag_header.clone();
        async move {
            let (endpoint, _seen) =
                serve_refused_after_a_lost_answer(&[&etag_header, metadata, "Content-Length: 0"]);
            let mut opts = conditional(Condition::Absent);
            opts.metadata.insert("claim".into(), "ours".into());
            store(endpoint, 3, T).put("k", Bytes::new(), &opts).await
        }
    };
    let theirs = refused_after_a_lost_answer("x-amz-meta-claim: theirs").await;
    assert!(
        matches!(theirs, Err(StoreError::PreconditionFailed)),
        "{theirs:?}"
    );
    let ours = refused_after_a_lost_answer("x-amz-meta-claim: ours").await;
    assert_eq!(
        ours.unwrap(),
        Some(format!("\"{md5}\"")),
        "our own attempt landed"
    );
}

#[tokio::test]
async fn a_conditional_delete_sends_if_match_and_a_refusal_keeps_the_object() {
    let (endpoint, seen) = serve(vec![
        response(
            "412 Precondition Failed",
            &[],
            &error_body("PreconditionFailed"),
        ),
        response("204 No Content", &[], ""),
    ]);
    let s = store(endpoint, 0, T);
    let refused = s.delete_if_match("k", "\"old\"").await;
    assert!(matches!(refused, Err(StoreError::PreconditionFailed)));
    s.delete_if_match("k", "cur").await.unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen[0].starts_with("delete /bkt/k "), "{}", seen[0]);
    assert!(seen[0].contains("if-match: \"old\""), "{}", seen[0]);
    assert!(seen[1].contains("if-match: \"cur\""), "quoted: {}", seen[1]);
}

#[tokio::test]
async fn a_conditional_copy_sends_its_condition_and_a_refusal_is_precondition_failed() {
    let (endpoint, seen) = serve(vec![response(
        "412 Precondition Failed",
        &[],
        &error_body("PreconditionFailed"),
    )]);
    let copied = store(endpoint, 0, T)
        .copy_with_options("a", "b", &conditional(Condition::Absent), true)
        .await;
    assert!(
        matches!(copied, Err(StoreError::PreconditionFailed)),
        "{copied:?}"
    );
    let req = &seen.lock().unwrap()[0];
    assert!(req.contains("if-none-match: *"), "{req}");
}

#[tokio::test]
async fn a_copy_conditional_on_its_source_sends_copy_source_if_match() {
    let (endpoint, seen) = serve(vec![response(
        "412 Precondition Failed",
        &[],
        &error_body("PreconditionFailed"),
    )]);
    let of_seen = PutOptions {
        copy_source_etag: Some("seen".into()),
        ..conditional(Condition::Absent)
    };
    let copied = store(endpoint, 0, T)
        .copy_with_options("a", "b", &of_seen, true)
        .await;
    assert!(
        matches!(copied, Err(StoreError::PreconditionFailed)),
        "{copied:?}"
    );
    let req = &seen.lock().unwrap()[0];
    assert!(
        req.contains("x-amz-copy-source-if-match: \"seen\"\r\n"),
        "quoted: {req}"
    );
    assert!(req.contains("if-none-match: *"), "and the target's: {req}");
}

/// moto 5.2.5 honours the conditions of a PUT and ignores those of a copy: the probe finds
/// that out, and from then on a copy's conditions are checked by HEAD before it is sent.
#[tokio::test]
async fn a_server_that_ignores_copy_conditions_gets_them_checked_by_head() {
    let copied = || {
        response(
            "200 OK",
            &[],
            "<CopyObjectResult><ETag>\"c\"</ETag></CopyObjectResult>",
        )
    };
    let refused = || {
        response(
            "412 Precondition Failed",
            &[],
            &error_body("PreconditionFailed"),
        )
    };
    let (endpoint, seen) = serve(vec![
        response("200 OK", &["ETag: \"p\""], ""), // the probe's create
        refused(),                                // created again: refused
        copied(),                                 // copied onto itself: not refused
        copied(),                                 // copied from another version: not refused
        response("204 No Content", &[], ""),      // deleted
        response("200 OK", &["ETag: \"theirs\"", "Content-Length: 1"], ""), // HEAD b
        response("200 OK", &["ETag: \"newer\"", "Content-Length: 1"], ""), // HEAD a
    ]);
    let s = store(endpoint, 0, T);
    let honoured = s.probe_conditional_writes("probe").await.unwrap();
    assert_eq!(
        honoured,
        Honoured {
            puts: true,
            copies: false
        }
    );
    let onto_taken = s
        .copy_with_options("a", "b", &conditional(Condition::Absent), true)
        .await;
    assert!(
        matches!(onto_taken, Err(StoreError::PreconditionFailed)),
        "{onto_taken:?}"
    );
    let of_a_replaced_source = PutOptions {
        copy_source_etag: Some("seen".into()),
        ..PutOptions::default()
    };
    let from_newer = s
        .copy_with_options("a", "c", &of_a_replaced_source, true)
        .await;
    assert!(
        matches!(from_newer, Err(StoreError::PreconditionFailed)),
        "{from_newer:?}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 7, "no copy is sent once a HEAD refuses it");
    assert!(seen[2].contains("if-none-match: *"), "{}", seen[2]);
    assert!(
        seen[3].contains("x-amz-copy-source-if-match:"),
        "{}",
        seen[3]
    );
    assert!(seen[5].starts_with("head /bkt/b "), "{}", seen[5]);
    assert!(seen[6].starts_with("head /bkt/a "), "{}", seen[6]);
}

#[tokio::test]
async fn a_conditional_completion_sends_its_condition() {
    let (endpoint, seen) = serve(vec![
        response(
            "200 OK",
            &[],
            "<CompleteMultipartUploadResult><ETag>&quot;m-1&quot;</ETag></CompleteMultipartUploadResult>",
        ),
        response("412 Precondition Failed", &[], &error_body("PreconditionFailed")),
    ]);
    let s = store(endpoint, 0, T);
    let parts = || {
        vec![CompletedPart {
            number: 1,
            etag: "\"a\"".into(),
        }]
    };
    s.complete_multipart("k", "u1", parts(), Some(&Condition::Is("\"base\"".into())))
        .await
        .unwrap();
    let refused = s
        .complete_multipart("k", "u1", parts(), Some(&Condition::Absent))
        .await;
    assert!(matches!(refused, Err(StoreError::PreconditionFailed)));
    let seen = seen.lock().unwrap();
    assert!(seen[0].contains("if-match: \"base\""), "{}", seen[0]);
    assert!(seen[1].contains("if-none-match: *"), "{}", seen[1]);
}

#[tokio::test]
async fn upload_part_is_retried_alone() {
    let (endpoint, seen) = serve(vec![
        response(
            "500 Internal Server Error",
            &[],
            &error_body("InternalError"),
        ),
        response("200 OK", &["ETag: \"part3\""], ""),
    ]);
    let etag = store(endpoint, 3, T)
        .upload_part("k", "abc+def/=", 3, Bytes::from_static(b"xyz"))
        .await
        .unwrap();
    assert_eq!(etag, "\"part3\"");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "no abort in between: {seen:?}");
    for req in seen.iter() {
        assert!(
            req.starts_with("put /bkt/k?partnumber=3&uploadid=abc%2bdef%2f%3d http/1.1"),
            "{req}"
        );
    }
}

#[tokio::test]
async fn create_multipart_sends_metadata_and_is_not_retried_after_sending() {
    let (endpoint, seen) = serve(vec![
        response("500 Internal Server Error", &[], &error_body("InternalError")),
        response(
            "200 OK",
            &[],
            "<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>",
        ),
    ]);
    let s = store(endpoint, 3, T);
    let mut opts = PutOptions::default();
    opts.metadata.insert("uid".into(), "7".into());
    let e = s.create_multipart("k", &opts).await.unwrap_err();
    assert!(matches!(e, StoreError::Server { status: 500, .. }), "{e:?}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(s.create_multipart("k", &opts).await.unwrap(), "u1");
    let seen = seen.lock().unwrap();
    assert!(
        seen[1].starts_with("post /bkt/k?uploads http/1.1"),
        "{}",
        seen[1]
    );
    assert!(seen[1].contains("x-amz-meta-uid: 7"), "{}", seen[1]);
}

#[tokio::test]
async fn complete_reads_the_etag_and_checks_the_body() {
    let (endpoint, seen) = serve(vec![
        response("200 OK", &[], &error_body("InternalError")),
        response(
            "200 OK",
            &[],
            "<CompleteMultipartUploadResult><ETag>&quot;m-2&quot;</ETag></CompleteMultipartUploadResult>",
        ),
    ]);
    let parts = vec![
        CompletedPart {
            number: 1,
            etag: "\"a\"".into(),
        },
        CompletedPart {
            number: 2,
            etag: "\"b\"".into(),
        },
    ];
    let etag = store(endpoint, 3, T)
        .complete_multipart("k", "u1", parts, None)
        .await
        .unwrap();
    assert_eq!(etag.as_deref(), Some("\"m-2\""));
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn object_data_carries_a_crc32_for_the_server_to_check_instead_of_a_signed_sha256() {
    let (endpoint, seen) = serve(vec![
        response("200 OK", &["ETag: \"p\""], ""),
        response(
            "200 OK",
            &[],
            "<InitiateMultipartUploadResult><UploadId>u1</UploadId></InitiateMultipartUploadResult>",
        ),
        response("200 OK", &["ETag: \"e1\""], ""),
        response(
            "200 OK",
            &[],
            "<CopyPartResult><ETag>&quot;e2&quot;</ETag><ChecksumCRC32>Y29weQ==</ChecksumCRC32></CopyPartResult>",
        ),
        response(
            "200 OK",
            &[],
            "<CompleteMultipartUploadResult><ETag>&quot;m-2&quot;</ETag></CompleteMultipartUploadResult>",
        ),
    ]);
    let s = store(endpoint, 0, T);
    let data = Bytes::from_static(b"123456789"); // CRC32 0xCBF43926
    let plain = PutOptions::default();
    s.put("k", data.clone(), &plain).await.unwrap();
    let id = s.create_multipart("m", &plain).await.unwrap();
    let e1 = s.upload_part("m", &id, 1, data).await.unwrap();
    let e2 = s
        .upload_part_copy("m", &id, 2, "k", None, 0..9)
        .await
        .unwrap();
    let parts = vec![
        CompletedPart {
            number: 1,
            etag: e1,
        },
        CompletedPart {
            number: 2,
            etag: e2,
        },
    ];
    s.complete_multipart("m", &id, parts, None).await.unwrap();
    let seen = seen.lock().unwrap();
    for data in [&seen[0], &seen[2]] {
        assert!(
            data.contains("x-amz-content-sha256: unsigned-payload"),
            "{data}"
        );
        assert!(data.contains("x-amz-checksum-crc32: y/q5jg=="), "{data}");
    }
    // Part checksums need the algorithm named at creation, and are repeated at completion
    // (a copied part's as the server gave it); the small document itself is signed.
    assert!(
        seen[1].contains("x-amz-checksum-algorithm: crc32"),
        "{}",
        seen[1]
    );
    let complete = &seen[4];
    assert!(complete.ends_with(
        "<CompleteMultipartUpload>\
         <Part><PartNumber>1</PartNumber><ETag>&quot;e1&quot;</ETag><ChecksumCRC32>y/Q5Jg==</ChecksumCRC32></Part>\
         <Part><PartNumber>2</PartNumber><ETag>&quot;e2&quot;</ETag><ChecksumCRC32>Y29weQ==</ChecksumCRC32></Part>\
         </CompleteMultipartUpload>"
    ), "{complete}");
    assert!(!complete.contains("unsigned-payload"), "{complete}");
}

#[tokio::test]
async fn delete_and_abort_of_missing_things_succeed() {
    let (endpoint, _) = serve(vec![
        response("404 Not Found", &[], &error_body("NoSuchKey")),
        response("404 Not Found", &[], &error_body("NoSuchUpload")),
    ]);
    let s = store(endpoint, 0, T);
    s.delete("k").await.unwrap();
    s.abort_multipart("k", "u1").await.unwrap();
}

#[tokio::test]
async fn list_page_reads_objects_prefixes_and_token() {
    let body = "<ListBucketResult><Name>bkt</Name><Prefix>d/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true</IsTruncated><NextContinuationToken>tok</NextContinuationToken><Contents><Key>d/a</Key><LastModified>2015-10-21T07:28:00.000Z</LastModified><ETag>&quot;e&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents><CommonPrefixes><Prefix>d/sub/</Prefix></CommonPrefixes></ListBucketResult>";
    let (endpoint, seen) = serve(vec![response("200 OK", &[], body)]);
    let page = store(endpoint, 0, T)
        .list_page("d/", Some("/"), Some("t0".into()), 2)
        .await
        .unwrap();
    assert_eq!(page.objects.len(), 1);
    assert_eq!(page.objects[0].key, "d/a");
    assert_eq!(page.objects[0].size, 3);
    assert_eq!(page.objects[0].etag.as_deref(), Some("\"e\""));
    assert_eq!(
        page.objects[0]
            .last_modified
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        1_445_412_480
    );
    assert_eq!(page.prefixes, vec!["d/sub/".to_string()]);
    assert_eq!(page.next_token.as_deref(), Some("tok"));
    let req = &seen.lock().unwrap()[0];
    assert!(req.contains("continuation-token=t0"), "{req}");
    assert!(req.contains("max-keys=2"), "{req}");
}

/// A key with every kind of byte XML text cannot carry as it is or that URL encodings spell
/// differently: CR, LF, tab, `%`, `+`, space, `&`, `<`, non-ASCII.
const AWKWARD: &str = "d/a\rb\nc\td%e+f g&h<ü日";

#[tokio::test]
async fn listings_ask_for_url_encoded_keys_and_decode_them_exactly() {
    // As Garage encodes (space as %20, '/' as %2F) and as AWS does (space as '+', '/' kept).
    let garage = "d%2Fa%0Db%0Ac%09d%25e%2Bf%20g%26h%3C%C3%BC%E6%97%A5";
    let aws = "d/a%0Db%0Ac%09d%25e%2Bf+g%26h%3C%C3%BC%E6%97%A5";
    let item = |key: &str| {
        format!("<Contents><Key>{key}</Key><LastModified>2015-10-21T07:28:00.000Z</LastModified><ETag>&quot;e&quot;</ETag><Size>3</Size></Contents>")
    };
    let body = format!(
        "<ListBucketResult><Name>bkt</Name><Prefix>d%2F</Prefix><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>{}{}<CommonPrefixes><Prefix>{garage}%2F</Prefix></CommonPrefixes><CommonPrefixes><Prefix>{aws}/x/</Prefix></CommonPrefixes></ListBucketResult>",
        item(garage),
        item(aws),
    );
    let (endpoint, seen) = serve(vec![response("200 OK", &[], &body)]);
    let page = store(endpoint, 0, T)
        .list_page("d/", Some("/"), None, 1000)
        .await
        .unwrap();
    let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, [AWKWARD, AWKWARD]);
    assert_eq!(
        page.prefixes,
        [format!("{AWKWARD}/"), format!("{AWKWARD}/x/")]
    );
    let req = &seen.lock().unwrap()[0];
    assert!(
        req.lines().next().unwrap().contains("encoding-type=url"),
        "{req}"
    );
}

#[tokio::test]
async fn a_listing_with_a_malformed_escape_is_an_error_not_a_guessed_key() {
    let body = "<ListBucketResult><Name>bkt</Name><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated><Contents><Key>50%</Key><LastModified>2015-10-21T07:28:00.000Z</LastModified><Size>3</Size></Contents></ListBucketResult>";
    let (endpoint, _) = serve(vec![response("200 OK", &[], body)]);
    let e = store(endpoint, 0, T)
        .list_page("", None, None, 1000)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            StoreError::BadResponse(BadResponse::UndecodableName(DecodeError::BadEscape { text, .. }))
                if text == "50%"
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn multipart_upload_listings_decode_keys_and_send_the_key_marker_back_decoded() {
    let encoded = "d/a%0Db%0Ac%09d%25e%2Bf+g%26h%3C%C3%BC%E6%97%A5";
    let page1 = format!("<ListMultipartUploadsResult><Bucket>bkt</Bucket><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><NextKeyMarker>{encoded}</NextKeyMarker><NextUploadIdMarker>u1</NextUploadIdMarker>\
        <Upload><Key>{encoded}</Key><UploadId>u1</UploadId><Initiated>2015-10-21T07:28:00.000Z</Initiated><StorageClass>STANDARD</StorageClass></Upload>\
        </ListMultipartUploadsResult>");
    let page2 = "<ListMultipartUploadsResult><Bucket>bkt</Bucket><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>";
    let (endpoint, seen) = serve(vec![
        response("200 OK", &[], &page1),
        response("200 OK", &[], page2),
    ]);
    let uploads = store(endpoint, 0, T)
        .list_multipart_uploads("d/")
        .await
        .unwrap();
    let listed: Vec<_> = uploads.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(listed, [AWKWARD]);
    let seen = seen.lock().unwrap();
    assert!(
        seen[0]
            .lines()
            .next()
            .unwrap()
            .contains("encoding-type=url"),
        "{}",
        seen[0]
    );
    let marker: String = url::form_urlencoded::byte_serialize(AWKWARD.as_bytes()).collect();
    assert!(
        seen[1].contains(&format!("key-marker={}", marker.to_lowercase())),
        "the decoded key, encoded once for the query: {}",
        seen[1]
    );
}

#[tokio::test]
async fn hung_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..2 {
            if let Ok((stream, _)) = listener.accept() {
                held.push(stream);
            }
        }
        std::thread::sleep(Duration::from_secs(3));
    });
    let started = std::time::Instant::now();
    let e = store(endpoint, 1, Duration::from_millis(200))
        .head("k")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Timeout(_)), "{e:?}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn nothing_listening_is_unreachable() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = store(format!("http://127.0.0.1:{port}"), 2, T);
    let e = s.head("k").await.unwrap_err();
    assert!(matches!(e, StoreError::Unreachable(_)), "{e:?}");
    // Connect failures are retried even for CreateMultipartUpload; still unreachable.
    let e = s
        .create_multipart("k", &PutOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unreachable(_)), "{e:?}");
}
fn key() -> SseCKey {
    SseCKey::new([42; 32])
}

/// The lines of `req` that name SSE-S3/KMS, ACL or storage class.
fn storage_lines(req: &str) -> Vec<&str> {
    req.lines()
        .filter(|l| {
            l.starts_with("x-amz-server-side-encryption:")
                || l.starts_with("x-amz-server-side-encryption-aws-kms-key-id:")
                || l.starts_with("x-amz-acl:")
                || l.starts_with("x-amz-storage-class:")
        })
        .collect()
}

fn customer_lines(req: &str) -> Vec<&str> {
    req.lines()
        .filter(|l| l.starts_with("x-amz-server-side-encryption-customer-"))
        .collect()
}

fn source_customer_lines(req: &str) -> Vec<&str> {
    req.lines()
        .filter(|l| l.starts_with("x-amz-copy-source-server-side-encryption-customer-"))
        .collect()
}

#[tokio::test]
async fn object_options_go_on_writes_and_never_on_reads() {
    let (endpoint, seen) = serve(vec![
        response("200 OK", &["ETag: \"p\""], ""),
        response(
            "200 OK",
            &[],
            "<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>m</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>",
        ),
        response("200 OK", &[], "<CopyObjectResult></CopyObjectResult>"),
        response("200 OK", &[], "<CopyObjectResult></CopyObjectResult>"),
        response("206 Partial Content", &[], "ab"),
        response("200 OK", &["Content-Length: 2"], "").replace("Content-Length: 0\r\n", ""),
        response("200 OK", &["ETag: \"part1\""], ""),
    ]);
    let s = store(endpoint, 0, T);
    let opts = PutOptions {
        sse: Some(crate::store::Sse::Kms {
            key_id: Some("alias/k".into()),
        }),
        acl: Some("public-read".into()),
        storage_class: Some("STANDARD_IA".into()),
        cache_control: Some("no-cache".into()),
        ..Default::default()
    };
    s.put("k", Bytes::from_static(b"ab"), &opts).await.unwrap();
    s.create_multipart("m", &opts).await.unwrap();
    s.copy_with_options("k", "keep", &opts, true).await.unwrap();
    s.copy_with_options("k", "repl", &opts, false)
        .await
        .unwrap();
    s.get_range("k", 0..2).await.unwrap();
    s.head("k").await.unwrap();
    s.upload_part("m", "u1", 1, Bytes::from_static(b"x"))
        .await
        .unwrap();
    let seen = seen.lock().unwrap();
    let mut all_storage = [
        "x-amz-server-side-encryption: aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id: alias/k",
        "x-amz-acl: public-read",
        "x-amz-storage-class: standard_ia",
    ];
    all_storage.sort();
    for (i, req) in seen[..4].iter().enumerate() {
        let mut lines = storage_lines(req);
        lines.sort();
        assert_eq!(lines, all_storage, "request {i}: {req}");
    }
    assert!(seen[0].contains("cache-control: no-cache"), "{}", seen[0]);
    assert!(seen[1].contains("cache-control: no-cache"), "{}", seen[1]);
    // COPY directive: the source's Cache-Control stays; REPLACE sends it again.
    assert!(!seen[2].contains("cache-control"), "{}", seen[2]);
    assert!(seen[3].contains("cache-control: no-cache"), "{}", seen[3]);
    // GET, HEAD, UploadPart: none of them (S3 rejects SSE headers on GET/HEAD).
    for req in &seen[4..] {
        assert!(storage_lines(req).is_empty(), "{req}");
        assert!(!req.contains("cache-control"), "{req}");
    }
    assert!(seen[4].starts_with("get "), "{}", seen[4]);
    assert!(seen[5].starts_with("head "), "{}", seen[5]);
}

#[tokio::test]
async fn upload_part_copy_request_shape_and_retry() {
    let (endpoint, seen) = serve(vec![
        response("503 Slow Down", &[], &error_body("SlowDown")),
        response("200 OK", &[], &error_body("InternalError")),
        response(
            "200 OK",
            &[],
            "<?xml version=\"1.0\"?><CopyPartResult><LastModified>2015-10-21T07:28:00.000Z</LastModified><ETag>&quot;e1&quot;</ETag></CopyPartResult>",
        ),
    ]);
    let s = store(endpoint, 3, T);
    let etag = s
        .upload_part_copy("dst key", "abc+def/=", 3, "src ü+", Some("v1"), 5..10)
        .await
        .unwrap();
    assert_eq!(etag, "\"e1\"");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "retried like UploadPart");
    for req in seen.iter() {
        let line = req.lines().next().unwrap();
        assert!(line.starts_with("put /bkt/dst%20key?"), "{line}");
        assert!(line.ends_with(" http/1.1"), "{line}");
        let query = line["put /bkt/dst%20key?".len()..].trim_end_matches(" http/1.1");
        let mut pairs: Vec<_> = query.split('&').collect();
        pairs.sort();
        assert_eq!(
            pairs,
            ["partnumber=3", "uploadid=abc%2bdef%2f%3d"],
            "{line}"
        );
        assert!(
            req.contains("x-amz-copy-source: /bkt/src%20%c3%bc%2b\r\n"),
            "{req}"
        );
        assert!(
            req.contains("x-amz-copy-source-range: bytes=5-9\r\n"),
            "{req}"
        );
        assert!(
            req.contains("x-amz-copy-source-if-match: \"v1\"\r\n"),
            "only from the version the bytes were read from: {req}"
        );
        for absent in ["content-md5", "x-amz-metadata-directive", "x-amz-acl"] {
            assert!(!req.contains(absent), "{absent}: {req}");
        }
        assert!(customer_lines(req).is_empty(), "{req}");
        // Signed, with the range and the query in the signature.
        assert!(req.contains("x-amz-copy-source-range;"), "{req}");
    }
    assert_eq!(s.stats().count("UploadPartCopy"), 3);
    assert_eq!(s.stats().bytes_sent, 0);
}

#[tokio::test]
async fn upload_part_copy_errors() {
    let (endpoint, _) = serve(vec![
        response("400 Bad Request", &[], &error_body("InvalidRange")),
        response("404 Not Found", &[], &error_body("NoSuchKey")),
        response(
            "400 Bad Request",
            &[],
            "<Error><Code>InvalidArgument</Code><Message>Range specified is not valid for source object of size: 10</Message></Error>",
        ),
    ]);
    let s = store(endpoint, 3, T);
    for want in ["range", "missing", "range"] {
        let e = s
            .upload_part_copy("d", "u", 1, "src", None, 0..100)
            .await
            .unwrap_err();
        match want {
            "range" => assert!(matches!(e, StoreError::InvalidRange), "{e:?}"),
            _ => assert!(matches!(e, StoreError::NotFound), "{e:?}"),
        }
    }
    // An empty range never reaches the server.
    assert!(matches!(
        s.upload_part_copy("d", "u", 1, "src", None, 4..4).await,
        Err(StoreError::InvalidRequest(InvalidRequest::EmptyCopyRange {
            start: 4,
            end: 4
        }))
    ));
}

#[tokio::test]
async fn sse_c_key_goes_on_data_requests_only() {
    let (endpoint, seen) = serve(vec![
        response("200 OK", &["ETag: \"p\""], ""),
        response(
            "200 OK",
            &[],
            "<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>m</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>",
        ),
        response("200 OK", &["ETag: \"part1\""], ""),
        response("200 OK", &[], "<CopyPartResult><ETag>\"c2\"</ETag></CopyPartResult>"),
        response(
            "200 OK",
            &[],
            "<CompleteMultipartUploadResult><ETag>\"m\"</ETag></CompleteMultipartUploadResult>",
        ),
        response("200 OK", &[], "<CopyObjectResult></CopyObjectResult>"),
        response("206 Partial Content", &[], "ab"),
        response("200 OK", &[], "").replace("Content-Length: 0", "Content-Length: 2"),
        response("204 No Content", &[], ""),
        response(
            "200 OK",
            &[],
            "<ListBucketResult><Name>bkt</Name><IsTruncated>false</IsTruncated></ListBucketResult>",
        ),
    ]);
    let s = store_with_key(endpoint, 0, T, Some(key()));
    s.put("k", Bytes::from_static(b"ab"), &PutOptions::default())
        .await
        .unwrap();
    s.create_multipart("m", &PutOptions::default())
        .await
        .unwrap();
    s.upload_part("m", "u1", 1, Bytes::from_static(b"x"))
        .await
        .unwrap();
    s.upload_part_copy("m", "u1", 2, "k", None, 0..2)
        .await
        .unwrap();
    s.complete_multipart("m", "u1", vec![], None).await.unwrap();
    s.copy("k", "c", None).await.unwrap();
    s.get_range("k", 0..2).await.unwrap();
    s.head("k").await.unwrap();
    s.delete("k").await.unwrap();
    s.list_page("", None, None, 10).await.unwrap();
    let seen = seen.lock().unwrap();
    let mut target = [
        "x-amz-server-side-encryption-customer-algorithm: aes256".to_string(),
        format!(
            "x-amz-server-side-encryption-customer-key: {}",
            key().key_base64().to_lowercase()
        ),
        format!(
            "x-amz-server-side-encryption-customer-key-md5: {}",
            key().key_md5_base64().to_lowercase()
        ),
    ];
    target.sort();
    let mut source: Vec<String> = target
        .iter()
        .map(|l| l.replacen("x-amz-", "x-amz-copy-source-", 1))
        .collect();
    source.sort();
    // PUT, Create, UploadPart, UploadPartCopy, Complete, Copy, GET, HEAD, DELETE, LIST.
    // Complete carries the key: S3 wants it for an upload created with a checksum algorithm.
    let with_target = [true, true, true, true, true, true, true, true, false, false];
    let with_source = [
        false, false, false, true, false, true, false, false, false, false,
    ];
    for (i, req) in seen.iter().enumerate() {
        let mut lines = customer_lines(req);
        lines.sort();
        let want: &[String] = if with_target[i] { &target } else { &[] };
        assert_eq!(lines, want, "request {i}: {req}");
        let mut lines = source_customer_lines(req);
        lines.sort();
        let want: &[String] = if with_source[i] { &source } else { &[] };
        assert_eq!(lines, want, "request {i}: {req}");
        assert!(storage_lines(req).is_empty(), "{req}");
    }
}

#[tokio::test]
async fn sse_c_reads_of_plain_objects_are_repeated_without_the_key() {
    let not_applicable = "<Error><Code>InvalidRequest</Code><Message>The encryption parameters are not applicable to this object.</Message></Error>";
    let (endpoint, seen) = serve(vec![
        response("400 Bad Request", &[], not_applicable),
        response("206 Partial Content", &[], "abc"),
        // HEAD: no body; tried again without the key.
        response("400 Bad Request", &[], ""),
        response("200 OK", &[], "").replace("Content-Length: 0", "Content-Length: 3"),
        // Copy of a plain source: repeated without the copy-source key.
        response("400 Bad Request", &[], not_applicable),
        response("200 OK", &[], "<CopyObjectResult></CopyObjectResult>"),
    ]);
    let s = store_with_key(endpoint, 0, T, Some(key()));
    assert_eq!(s.get_range("plain", 0..3).await.unwrap(), "abc");
    assert_eq!(s.head("plain").await.unwrap().size, 3);
    s.copy("plain", "to", None).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 6);
    for (i, with_key) in [true, false, true, false].into_iter().enumerate() {
        assert_eq!(
            !customer_lines(&seen[i]).is_empty(),
            with_key,
            "{}",
            seen[i]
        );
    }
    assert!(!source_customer_lines(&seen[4]).is_empty(), "{}", seen[4]);
    assert!(source_customer_lines(&seen[5]).is_empty(), "{}", seen[5]);
    // The copy target is still encrypted with the key.
    assert!(!customer_lines(&seen[5]).is_empty(), "{}", seen[5]);
}

#[tokio::test]
async fn sse_c_objects_without_or_with_the_wrong_key() {
    let no_key = "<Error><Code>InvalidRequest</Code><Message>The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.</Message></Error>";
    let wrong_key = "<Error><Code>AccessDenied</Code><Message>Requests specifying Server Side Encryption with Customer provided keys must provide the correct secret key.</Message></Error>";
    let (endpoint, seen) = serve(vec![
        // No key: GET.
        response("400 Bad Request", &[], no_key),
        // No key: HEAD (no body), then a 1-byte GET for the reason.
        response("400 Bad Request", &[], ""),
        response("400 Bad Request", &[], no_key),
        // No key: a 403 HEAD is access denied, one request.
        response("403 Forbidden", &[], ""),
    ]);
    let s = store(endpoint, 3, T);
    let e = s.get_range("enc", 0..10).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::SseCustomerKey(t) if t.contains("--sse-c-key-file")),
        "{e:?}"
    );
    let e = s.head("enc").await.unwrap_err();
    assert!(matches!(&e, StoreError::SseCustomerKey(_)), "{e:?}");
    let e = s.head("denied").await.unwrap_err();
    assert!(matches!(&e, StoreError::AccessDenied(_)), "{e:?}");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4);
        assert!(seen[2].contains("range: bytes=0-0"), "{}", seen[2]);
    }

    let (endpoint, seen) = serve(vec![
        response("403 Forbidden", &[], wrong_key),
        response("403 Forbidden", &[], ""),
        response("403 Forbidden", &[], wrong_key),
    ]);
    let s = store_with_key(endpoint, 3, T, Some(key()));
    let e = s.get_range("enc", 0..10).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::SseCustomerKey(t) if t.contains("another customer-provided key")),
        "{e:?}"
    );
    let e = s.head("enc").await.unwrap_err();
    assert!(matches!(&e, StoreError::SseCustomerKey(_)), "{e:?}");
    assert!(!e.is_transient());
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn lists_multipart_uploads_across_pages() {
    let page1 = "<ListMultipartUploadsResult><Bucket>bkt</Bucket><Prefix>d/</Prefix><IsTruncated>true</IsTruncated><NextKeyMarker>d/b</NextKeyMarker><NextUploadIdMarker>u+2</NextUploadIdMarker>\
        <Upload><Key>d/a</Key><UploadId>u1</UploadId><Initiated>2015-10-21T07:28:00.000Z</Initiated><StorageClass>STANDARD</StorageClass></Upload>\
        <Upload><Key>d/b</Key><UploadId>u+2</UploadId><Initiated>2015-10-21T07:28:01.000Z</Initiated><StorageClass>STANDARD</StorageClass></Upload>\
        </ListMultipartUploadsResult>";
    let page2 = "<ListMultipartUploadsResult><Bucket>bkt</Bucket><IsTruncated>false</IsTruncated>\
        <Upload><Key>d/c</Key><UploadId>u3</UploadId><Initiated>2015-10-21T07:28:02.000Z</Initiated><StorageClass>STANDARD</StorageClass></Upload>\
        </ListMultipartUploadsResult>";
    let (endpoint, seen) = serve(vec![
        response(
            "500 Internal Server Error",
            &[],
            &error_body("InternalError"),
        ),
        response("200 OK", &[], page1),
        response("200 OK", &[], page2),
    ]);
    let s = store(endpoint, 2, T);
    let uploads = s.list_multipart_uploads("d/").await.unwrap();
    let ids: Vec<_> = uploads
        .iter()
        .map(|u| (u.key.as_str(), u.upload_id.as_str()))
        .collect();
    assert_eq!(ids, [("d/a", "u1"), ("d/b", "u+2"), ("d/c", "u3")]);
    assert_eq!(
        uploads[2]
            .initiated
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        1_445_412_482
    );
    let seen = seen.lock().unwrap();
    assert!(seen[1].starts_with("get /bkt/?uploads"), "{}", seen[1]);
    assert!(seen[1].contains("prefix=d%2f"), "{}", seen[1]);
    assert!(seen[2].contains("key-marker=d%2fb"), "{}", seen[2]);
    assert!(seen[2].contains("upload-id-marker=u%2b2"), "{}", seen[2]);
    assert_eq!(s.stats().count("ListMultipartUploads"), 3);
}

#[tokio::test]
async fn counts_requests_and_bytes() {
    let (endpoint, _) = serve(vec![
        response("503 Slow Down", &[], &error_body("SlowDown")),
        response("200 OK", &["ETag: \"p\""], ""),
        response("206 Partial Content", &[], "0123"),
        response("200 OK", &[], "<CopyObjectResult></CopyObjectResult>"),
        response("200 OK", &["ETag: \"part1\""], ""),
        response("404 Not Found", &[], ""),
    ]);
    let s = store(endpoint, 3, T);
    assert_eq!(s.stats(), StoreStats::default());
    s.put("k", Bytes::from_static(b"hello"), &PutOptions::default())
        .await
        .unwrap();
    s.get_range("k", 0..4).await.unwrap();
    s.copy("k", "c", None).await.unwrap();
    s.upload_part("m", "u", 1, Bytes::from_static(b"123"))
        .await
        .unwrap();
    assert!(s.head("gone").await.is_err());
    let st = s.stats();
    assert_eq!(st.count("PutObject"), 2, "the retry counts");
    assert_eq!(st.count("GetObject"), 1);
    assert_eq!(st.count("CopyObject"), 1);
    assert_eq!(st.count("UploadPart"), 1);
    assert_eq!(st.count("HeadObject"), 1);
    assert_eq!(st.total_requests(), 6);
    assert_eq!(
        st.bytes_sent,
        5 + 5 + 3,
        "bodies of both PUT attempts; copies send none"
    );
    assert_eq!(st.bytes_received, 4);
}

#[tokio::test]
async fn each_request_is_counted_by_outcome_with_the_latency_of_its_answer_and_each_retry() {
    let (endpoint, _) = serve(vec![
        response("503 Slow Down", &[], &error_body("SlowDown")),
        response("200 OK", &["ETag: \"p\""], ""),
        response("404 Not Found", &[], ""),
        response("403 Forbidden", &[], ""),
        response("500 Internal Error", &[], &error_body("InternalError")),
        response("206 Partial Content", &[], "0123"),
    ]);
    let s = store(endpoint, 3, T);
    s.put("k", Bytes::from_static(b"hello"), &PutOptions::default())
        .await
        .unwrap();
    assert!(matches!(s.head("gone").await, Err(StoreError::NotFound)));
    // A 403 to a HEAD is kept raw to be read closer: still a refusal, not an `ok`.
    assert!(s.head("secret").await.is_err());
    s.get_range("k", 0..4).await.unwrap();
    let st = s.stats();
    let outcomes: Vec<_> = st.outcomes.iter().map(|(k, n)| (*k, *n)).collect();
    assert_eq!(
        outcomes,
        [
            (("GetObject", "ok"), 1),
            (("GetObject", "server_error"), 1),
            (("HeadObject", "access_denied"), 1),
            (("HeadObject", "not_found"), 1),
            (("PutObject", "ok"), 1),
            (("PutObject", "throttled"), 1),
        ]
    );
    let retries: Vec<_> = st.retries.iter().map(|(k, n)| (*k, *n)).collect();
    assert_eq!(retries, [("GetObject", 1), ("PutObject", 1)]);
    let answered = |kind| st.latency.get(kind).map_or(0, |h| h.count());
    assert_eq!(
        (
            answered("PutObject"),
            answered("HeadObject"),
            answered("GetObject")
        ),
        (2, 2, 2),
        "every answer, failures included, has its latency"
    );
    assert_eq!(
        st.total_requests(),
        6,
        "each request counted once when sent"
    );
}

#[tokio::test]
async fn requests_that_run_out_of_time_end_as_timeouts_without_a_latency() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..2 {
            if let Ok((stream, _)) = listener.accept() {
                held.push(stream);
            }
        }
        std::thread::sleep(Duration::from_secs(3));
    });
    let s = store(endpoint, 1, Duration::from_millis(200));
    assert!(matches!(s.delete("k").await, Err(StoreError::Timeout(_))));
    let st = s.stats();
    assert_eq!(st.outcomes.get(&("DeleteObject", "timeout")), Some(&2));
    assert_eq!(st.outcomes.len(), 1);
    assert_eq!(st.retries.get("DeleteObject"), Some(&1));
    assert!(st.latency.is_empty(), "{:?}", st.latency);
}

/// What a server that answers each connection on a thread of its own saw and did, in order:
/// `"<method> arrived"`, `"<method> answered"` (method lowercased, PUTs numbered: `put#1`).
type Events = Arc<Mutex<Vec<String>>>;

/// Answers each request with what `answer` gives for its name (`put#N` or the method) and
/// the events so far: a raw response, held back for the duration.
fn serve_concurrently(
    answer: impl Fn(&str, &[String]) -> (Duration, String) + Send + Sync + 'static,
) -> (String, Events) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let events: Events = Arc::default();
    let seen = events.clone();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        let mut puts = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let Some(request) = read_request(&mut stream) else {
                continue;
            };
            let mut name = request.split(' ').next().unwrap_or("").to_string();
            if name == "put" {
                puts += 1;
                name = format!("put#{puts}");
            }
            seen.lock().unwrap().push(format!("{name} arrived"));
            let (seen, answer) = (seen.clone(), answer.clone());
            std::thread::spawn(move || {
                let (delay, reply) = answer(&name, &seen.lock().unwrap());
                std::thread::sleep(delay);
                seen.lock().unwrap().push(format!("{name} answered"));
                let reply = reply.replacen("\r\n", "\r\nConnection: close\r\n", 1);
                let _ = stream.write_all(reply.as_bytes());
            });
        }
    });
    (endpoint, events)
}

const STALL: Duration = Duration::from_millis(1500);

/// Answers every request 200 with an ETag, the first PUT only after `STALL`.
fn serve_stalling_first_put() -> (String, Events) {
    serve_concurrently(|name, _| {
        let delay = if name == "put#1" {
            STALL
        } else {
            Duration::ZERO
        };
        (delay, response("200 OK", &["ETag: \"e\""], ""))
    })
}

fn at(events: &[String], event: &str) -> usize {
    events.iter().position(|x| x == event).unwrap_or(usize::MAX)
}

/// A small range (a symlink's target, a small file) is hedged as a HEAD is, after tens of
/// milliseconds, not after the second a data transfer gets.
#[tokio::test]
async fn a_stalled_get_of_a_small_range_is_hedged_like_a_head() {
    let (endpoint, events) = serve_concurrently(|_, seen| {
        let gets = seen.iter().filter(|e| *e == "get arrived").count();
        let delay = if gets == 1 { STALL } else { Duration::ZERO };
        (
            delay,
            response(
                "206 Partial Content",
                &["ETag: \"e\"", "Content-Range: bytes 0-3/4"],
                "dest",
            ),
        )
    });
    let s = store(endpoint, 0, T);
    let started = std::time::Instant::now();
    let data = s.get_range("link", 0..4).await.unwrap();
    assert_eq!(&data[..], b"dest");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(800),
        "the twin answered: {took:?}"
    );
    let events = events.lock().unwrap().clone();
    assert_eq!(
        events,
        ["get arrived", "get arrived", "get answered"],
        "the twin answered while the first still stalled"
    );
}

/// A large range is hedged after a few times its usual latency too, not a whole second: a
/// sequential read waits for each range in turn.
#[tokio::test]
async fn a_stalled_get_of_a_large_range_is_hedged_within_a_fraction_of_a_second() {
    const SIZE: usize = 2 << 20;
    let body = "x".repeat(SIZE);
    let (endpoint, events) = serve_concurrently(move |_, seen| {
        let gets = seen.iter().filter(|e| *e == "get arrived").count();
        let delay = if gets == 1 { STALL } else { Duration::ZERO };
        let range = format!("Content-Range: bytes 0-{}/{SIZE}", SIZE - 1);
        (
            delay,
            response("206 Partial Content", &["ETag: \"e\"", &range], &body),
        )
    });
    let s = store(endpoint, 0, T);
    let started = std::time::Instant::now();
    let data = s.get_range("big", 0..SIZE as u64).await.unwrap();
    assert_eq!(data.len(), SIZE);
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(800),
        "the twin answered: {took:?}"
    );
    let events = events.lock().unwrap().clone();
    assert_eq!(at(&events, "get answered"), 2, "{events:?}");
}

#[tokio::test]
async fn a_stalled_small_put_is_hedged_and_the_next_write_of_its_key_waits_for_the_stalled_twin() {
    let (endpoint, events) = serve_stalling_first_put();
    let s = store(endpoint, 0, T);
    let started = std::time::Instant::now();
    s.put("k", Bytes::from_static(b"v1"), &PutOptions::default())
        .await
        .unwrap();
    assert!(
        started.elapsed() < STALL * 2 / 3,
        "the second attempt answered: {:?}",
        started.elapsed()
    );
    // The first attempt cannot be taken back: the DELETE goes only once it has ended, so it
    // can never land after the DELETE and bring the file back.
    s.delete("k").await.unwrap();
    let events = events.lock().unwrap().clone();
    assert!(
        at(&events, "put#2 answered") < at(&events, "put#1 answered"),
        "{events:?}"
    );
    assert!(
        at(&events, "put#1 answered") < at(&events, "delete arrived"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_hedged_put_refused_because_of_its_own_stalled_twin_reads_the_object_after_the_twin() {
    // put#1 creates the object but its answer stalls; put#2, its twin, is refused (the name
    // is taken, or AWS's 409 for a conditional write in progress). The object read back to
    // tell whether the refusal was our own doing is read only once put#1 has ended.
    let body = Bytes::from_static(b"new file");
    let ours = format!("\"{:x}\"", md5::compute(&body));
    let etag = format!("ETag: {ours}");
    let (endpoint, events) = serve_concurrently(move |name, events| match name {
        "put#1" => (STALL, response("200 OK", &[&etag], "")),
        "put#2" => (
            Duration::ZERO,
            response(
                "412 Precondition Failed",
                &[],
                &error_body("PreconditionFailed"),
            ),
        ),
        _ if events.iter().any(|e| e == "put#1 answered") => (
            Duration::ZERO,
            response("200 OK", &[&etag, "Content-Length: 8"], "")
                .replace("Content-Length: 0\r\n", ""),
        ),
        _ => (Duration::ZERO, response("404 Not Found", &[], "")),
    });
    let s = store(endpoint, 0, T);
    let stored = s
        .put("k", body.clone(), &conditional(Condition::Absent))
        .await
        .expect("the object under k is the one this PUT sent");
    assert_eq!(stored.as_deref(), Some(&*ours));
    let events = events.lock().unwrap().clone();
    assert!(
        at(&events, "put#1 answered") < at(&events, "head arrived"),
        "{events:?}"
    );
}

#[tokio::test]
async fn settle_returns_once_the_twins_still_in_flight_have_ended() {
    // At unmount: a hedged PUT returned, its stalled twin is still on its way.
    let (endpoint, events) = serve_stalling_first_put();
    let s = store(endpoint, 0, T);
    s.put("k", Bytes::from_static(b"v1"), &PutOptions::default())
        .await
        .unwrap();
    assert!(!events
        .lock()
        .unwrap()
        .contains(&"put#1 answered".to_string()));
    s.settle().await;
    let events = events.lock().unwrap().clone();
    assert!(at(&events, "put#1 answered") < usize::MAX, "{events:?}");
}

/// A page of a listing that the server is slow to answer gets one twin, not the further
/// attempts a HEAD gets: a server that lists one request at a time (Garage) made every
/// listing after it wait behind four attempts of one delimiter page. A listing of one key
/// is a small request like a HEAD.
#[tokio::test]
async fn a_page_the_server_is_slow_to_list_gets_one_twin_and_a_probe_more() {
    let empty =
        "<ListBucketResult><Name>bkt</Name><IsTruncated>false</IsTruncated></ListBucketResult>";
    let arrivals_for = |max_keys: usize| async move {
        let (endpoint, events) = serve_concurrently(move |_, _| {
            (Duration::from_millis(400), response("200 OK", &[], empty))
        });
        let s = store(endpoint, 0, T);
        s.list_page("d/", Some("/"), None, max_keys).await.unwrap();
        let events = events.lock().unwrap().clone();
        events.iter().filter(|e| *e == "get arrived").count()
    };
    assert_eq!(
        arrivals_for(1000).await,
        2,
        "a page: the first and one twin"
    );
    assert!(
        arrivals_for(1).await >= 3,
        "a listing of one key is hedged further while all its attempts run long"
    );
}

/// A page of a flat listing: `key`, and `token` when more follow.
fn flat_page(key: &str, token: Option<&str>) -> String {
    let more = match token {
        Some(t) => format!(
            "<IsTruncated>true</IsTruncated><NextContinuationToken>{t}</NextContinuationToken>"
        ),
        None => "<IsTruncated>false</IsTruncated>".to_string(),
    };
    let body = format!("<ListBucketResult><Name>bkt</Name>{more}<Contents><Key>{key}</Key><LastModified>2015-10-21T07:28:00.000Z</LastModified><ETag>&quot;e&quot;</ETag><Size>3</Size></Contents></ListBucketResult>");
    response("200 OK", &[], &body)
}

async fn read_pages(mut pages: Pages) -> Vec<String> {
    let mut keys = Vec::new();
    while let Some(page) = pages.recv().await {
        keys.extend(page.unwrap().objects.into_iter().map(|o| o.key));
    }
    keys
}

#[tokio::test]
async fn a_paged_listing_starts_after_its_key_then_follows_the_tokens() {
    let (endpoint, seen) = serve(vec![
        flat_page("t/b", Some("tok1")),
        flat_page("t/c", Some("tok2")),
        flat_page("t/d", None),
    ]);
    let s = Arc::new(store(endpoint, 0, T));
    let keys = read_pages(s.list_pages(PagedList::flat("t/", "t/a", "t/z", 10))).await;
    assert_eq!(keys, ["t/b", "t/c", "t/d"]);
    let seen = seen.lock().unwrap();
    let lines: Vec<&str> = seen.iter().map(|r| r.lines().next().unwrap()).collect();
    assert!(lines[0].contains("start-after=t%2fa"), "{}", lines[0]);
    assert!(!lines[0].contains("continuation-token"), "{}", lines[0]);
    assert!(lines[1].contains("continuation-token=tok1"), "{}", lines[1]);
    assert!(!lines[1].contains("start-after"), "{}", lines[1]);
    assert!(lines[2].contains("continuation-token=tok2"), "{}", lines[2]);
    assert!(!lines.iter().any(|l| l.contains("delimiter")), "{lines:?}");
}

#[tokio::test]
async fn a_token_the_answer_escapes_is_followed_as_the_decoded_page_names_it() {
    let (endpoint, seen) = serve(vec![
        flat_page("d/a", Some("x&amp;y")),
        flat_page("d/b", None),
    ]);
    let s = Arc::new(store(endpoint, 0, T));
    let keys = read_pages(s.list_pages(PagedList::grouped("d/", "/"))).await;
    assert_eq!(keys, ["d/a", "d/b"]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "no request on a misread token");
    let second = seen[1].lines().next().unwrap();
    assert!(second.contains("continuation-token=x%26y"), "{second}");
}
