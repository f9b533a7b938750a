//! Sending the requests this layer builds itself, signed again, correctly (SigV4).
//!
//! HEAD, GET, PUT, CreateMultipartUpload, UploadPart, copies, UploadPartCopy and
//! CompleteMultipartUpload (whose document carries part checksums, see `checksums`) are built one
//! level below rust-s3's convenience methods, with `ReqwestRequest` + `Command`, and sent by
//! `send_signed`: rust-s3 0.38 orders the canonical headers wrongly when one header name is a
//! prefix of another (`x-amz-copy-source` / `-range`, the SSE-C `-key` / `-key-md5`, SSE-KMS),
//! and S3 servers then refuse the signature. LIST, DELETE, Abort and
//! ListMultipartUploads carry no such headers and use rust-s3's methods as they are.
//!
//! Keys are passed to rust-s3 as `/` + key (`object_path`): rust-s3 strips one leading `/`, so
//! keys that themselves start with `/` survive.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use s3::command::{Command, HttpMethod};
use s3::error::S3Error;
use s3::request::tokio_backend::ReqwestRequest;
use s3::request::{Request as _, ResponseData};
use s3::{Bucket, Region};
use time::OffsetDateTime;

use super::checksums::CHECKSUM_HEADER;

/// Sends `command` for `path` with `bucket`'s extra headers and query, signed by
/// [`send_signed`]. `etag`: the body of the answer is replaced by its ETag header, as rust-s3's
/// `response_data(true)` does.
pub(super) async fn send_command(
    bucket: &Bucket,
    path: &str,
    command: Command<'_>,
    etag: bool,
) -> Result<ResponseData, S3Error> {
    let request = ReqwestRequest::new(bucket, path, command).await?;
    send_signed(&request, etag, None).await
}

/// How a request body is vouched for.
pub(super) enum Integrity {
    /// Its SHA-256 is signed as the payload hash (small documents).
    Signed,
    /// `UNSIGNED-PAYLOAD`, and this CRC32 (`checksums::crc32`) for the server to check:
    /// object data (see `checksums`).
    Crc32(String),
}

/// `send_command` for a request whose body is `body` (PutObject, UploadPart,
/// CompleteMultipartUpload). The command is built with empty content (callers pass
/// `content: &[]` or no parts): rust-s3 would hash the content twice (SHA-256 for the
/// signature and MD5 for `Content-MD5`) and copy it.
pub(super) async fn send_command_with_body(
    bucket: &Bucket,
    path: &str,
    command: Command<'_>,
    etag: bool,
    body: Bytes,
    integrity: Integrity,
) -> Result<ResponseData, S3Error> {
    let request = ReqwestRequest::new(bucket, path, command).await?;
    let headers = match integrity {
        Integrity::Signed => vec![("x-amz-content-sha256", hex_sha256(&body))],
        Integrity::Crc32(crc) => vec![
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD".to_string()),
            (CHECKSUM_HEADER, crc),
        ],
    };
    send_signed(&request, etag, Some((body, headers))).await
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(data))
}

/// Lowercase hex of `bytes`, in one allocation (a `format!` a byte cost a tenth of the
/// daemon's CPU in `ls -l`, a signature a HEAD).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Sends a rust-s3 request signed again, correctly ([`sign_and_send`]), with rust-s3's
/// `fail-on-err` semantics: `HttpFailWithBody` for every non-2xx. `etag`: the body of the
/// answer is replaced by its ETag header.
async fn send_signed(
    request: &ReqwestRequest<'_>,
    etag: bool,
    body: Option<(Bytes, Vec<(&'static str, String)>)>,
) -> Result<ResponseData, S3Error> {
    let response = sign_and_send(request, body).await?;
    let status = response.status().as_u16();
    let response_headers = headers_of(&response);
    if !response.status().is_success() {
        return Err(S3Error::HttpFailWithBody(status, response.text().await?));
    }
    let body = if etag {
        Bytes::from(response_headers.get("etag").cloned().unwrap_or_default())
    } else {
        collect_body(response).await?
    };
    Ok(ResponseData::new(body, status, response_headers))
}

/// Sends `command` for `path` as [`send_command`] does, but returns every answer as it came,
/// a failure's headers included: `HttpFailWithBody` keeps only the status and the body, and
/// some failures say what matters in a header (`x-amz-bucket-region`, see `region`).
pub(super) async fn send_command_any_status(
    bucket: &Bucket,
    path: &str,
    command: Command<'_>,
) -> Result<ResponseData, S3Error> {
    let request = ReqwestRequest::new(bucket, path, command).await?;
    let response = sign_and_send(&request, None).await?;
    let status = response.status().as_u16();
    let headers = headers_of(&response);
    let body = collect_body(response).await?;
    Ok(ResponseData::new(body, status, headers))
}

/// The headers of an answer whose values are text, by (lowercase) name.
fn headers_of(response: &reqwest::Response) -> HashMap<String, String> {
    response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// Sends a rust-s3 request after signing it again, correctly; the answer is returned whatever
/// its status.
///
/// rust-s3 0.38 builds the canonical header list by sorting `name:value` lines instead of
/// sorting by name. When one header name is a prefix of another followed by `-`
/// (`x-amz-copy-source` and `x-amz-copy-source-range`, `x-amz-server-side-encryption` and
/// `...-aws-kms-key-id`, `...-customer-key` and `...-customer-key-md5`, `x-amz-meta-a` and
/// `x-amz-meta-a-b`), `:` sorts after `-` and its canonical request differs from the server's:
/// the signature is refused (Garage: 403 "Invalid signature"; AWS: SignatureDoesNotMatch).
/// So the headers rust-s3 builds (host, dates, payload hash, Content-MD5, extra headers) are
/// kept and the Authorization header is computed here with the SigV4 rules (sorted by name,
/// values trimmed, inner whitespace collapsed), with rust-s3's key derivation. The headers
/// of a HEAD or a GET are built here altogether (`unsigned_read_headers`: the same ones, more
/// cheaply).
/// The request is then sent as rust-s3 sends it, with its reqwest client.
async fn sign_and_send(
    request: &ReqwestRequest<'_>,
    body: Option<(Bytes, Vec<(&'static str, String)>)>,
) -> Result<reqwest::Response, S3Error> {
    let bucket = request.bucket;
    let integrity = body
        .as_ref()
        .map(|(body, integrity)| (body.len(), &integrity[..]));
    let (url, headers) = signed_headers(request, integrity).await?;
    let client = bucket.http_client();
    // The URL as parsed already (a string would be parsed again).
    let builder = match request.command.http_verb() {
        HttpMethod::Get => client.get(url),
        HttpMethod::Head => client.head(url),
        HttpMethod::Put => client.put(url),
        HttpMethod::Post => client.post(url),
        HttpMethod::Delete => client.delete(url),
    };
    let builder = builder.headers(headers);
    let mut builder = match body {
        Some((b, _)) => builder.body(b),
        None => builder.body(request.request_body()?),
    };
    if let Some(timeout) = bucket.request_timeout {
        builder = builder.timeout(timeout);
    }
    Ok(builder.send().await?)
}

/// The URL and the signed headers of `request` (see `sign_and_send`); `body`: the length and
/// the integrity headers of a body of ours.
async fn signed_headers(
    request: &ReqwestRequest<'_>,
    body: Option<(usize, &[(&'static str, String)])>,
) -> Result<(url::Url, reqwest::header::HeaderMap), S3Error> {
    let bucket = request.bucket;
    let url = request.url()?;
    // The headers of a read (HEAD, GET) are built here: rust-s3's `headers()` parses the URL
    // and copies the bucket again for each part of them, a quarter of the daemon's CPU in
    // `ls -l` of a large directory (one HEAD an entry).
    let read = body.is_none()
        && matches!(
            request.command,
            Command::HeadObject | Command::GetObject | Command::GetObjectRange { .. }
        );
    let mut headers = match read {
        true => unsigned_read_headers(request, &url).await?,
        false => request.headers().await?,
    };
    if let Some((len, integrity)) = body {
        // The command was built without content: describe the real body.
        headers.remove("content-md5");
        for (name, value) in integrity {
            headers.insert(*name, value.parse()?);
        }
        headers.insert("content-length", len.into());
    }
    // rust-s3's own signature holds for most HEADs and GETs: signing them again would only
    // cost CPU (a tenth of the daemon's, in `ls -l` of a large directory).
    let signed_right = !read
        && body.is_none()
        && matches!(
            request.command.http_verb(),
            HttpMethod::Get | HttpMethod::Head
        )
        && !has_prefixed_name(headers.keys().map(|name| name.as_str()));
    let secret = if signed_right {
        None
    } else {
        bucket.secret_key().await?
    };
    if let Some(secret) = secret {
        let access = bucket.access_key().await?.unwrap_or_default();
        let mut lines = Vec::new();
        for (name, value) in headers.iter() {
            if name.as_str() == "authorization" || name.as_str() == "date" {
                continue;
            }
            let value = value.to_str()?.split_whitespace().collect::<Vec<_>>();
            lines.push((name.as_str().to_ascii_lowercase(), value.join(" ")));
        }
        let payload_hash = headers
            .get("x-amz-content-sha256")
            .map(|v| v.to_str())
            .transpose()?
            .unwrap_or("UNSIGNED-PAYLOAD")
            .to_string();
        let canonical = canonical_request(
            &request.command.http_verb().to_string(),
            &s3::signing::canonical_uri_string(&url),
            &s3::signing::canonical_query_string(&url),
            &mut lines,
            &payload_hash,
        );
        let region = bucket.region();
        let signature = signature(&request.datetime, &region, &secret, &canonical)?;
        let signed: Vec<&str> = lines.iter().map(|(name, _)| name.as_str()).collect();
        let authorization = s3::signing::authorization_header(
            &access,
            &request.datetime,
            &region,
            &signed.join(";"),
            &signature,
        )?;
        headers.insert("authorization", authorization.parse()?);
    }
    Ok((url, headers))
}

/// The SHA-256 of an empty payload, what a HEAD's `x-amz-content-sha256` says.
const EMPTY_PAYLOAD_SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The headers rust-s3 sends with a HEAD or a GET, but its signature (and its unsigned
/// `Date`): the bucket's extra headers, the host, the payload hash, the date, the session
/// token, and for a GET `Accept` and its range.
async fn unsigned_read_headers(
    request: &ReqwestRequest<'_>,
    url: &url::Url,
) -> Result<reqwest::header::HeaderMap, S3Error> {
    let bucket = request.bucket;
    let mut headers = bucket.extra_headers.clone();
    let host = url.host_str().unwrap_or_default();
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    headers.insert(reqwest::header::HOST, host.parse()?);
    headers.insert("x-amz-content-sha256", EMPTY_PAYLOAD_SHA.parse()?);
    let d = request.datetime;
    let date = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    );
    headers.insert("x-amz-date", date.parse()?);
    let token = match bucket.session_token().await? {
        Some(token) => Some(token),
        None => bucket.security_token().await?,
    };
    if let Some(token) = token {
        headers.insert("x-amz-security-token", token.parse()?);
    }
    if let Command::GetObject | Command::GetObjectRange { .. } = request.command {
        headers.insert(reqwest::header::ACCEPT, "application/octet-stream".parse()?);
    }
    if let Command::GetObjectRange { start, end } = request.command {
        let range = match end {
            Some(end) => format!("bytes={start}-{end}"),
            None => format!("bytes={start}-"),
        };
        headers.insert(reqwest::header::RANGE, range.parse()?);
    }
    Ok(headers)
}

/// The largest buffer reserved up front from a Content-Length (a bigger body grows it).
const MAX_RESERVE: u64 = 64 << 20;

/// The body of `response`, copied into one buffer as its pieces arrive. reqwest's `bytes()`
/// keeps every piece received until the end and then copies them: twice the body's memory
/// per request, and the connection's receive buffers can never be reused, so each GET
/// touches fresh pages (half the page faults of a cold read).
async fn collect_body(mut response: reqwest::Response) -> Result<Bytes, S3Error> {
    let expected = response.content_length().unwrap_or(0);
    let Some(first) = response.chunk().await? else {
        return Ok(Bytes::new());
    };
    let Some(second) = response.chunk().await? else {
        return Ok(first); // a body in one piece (small answers): no copy
    };
    let reserve = expected
        .min(MAX_RESERVE)
        .max((first.len() + second.len()) as u64);
    let mut out = BytesMut::with_capacity(reserve as usize);
    out.extend_from_slice(&first);
    out.extend_from_slice(&second);
    while let Some(piece) = response.chunk().await? {
        out.extend_from_slice(&piece);
    }
    Ok(out.freeze())
}

/// True when one header name is another followed by `-` and more, the case rust-s3 signs
/// wrongly. A request without such a pair and with no body of ours (GET, HEAD: no header
/// values that need whitespace collapsed) keeps rust-s3's signature.
fn has_prefixed_name<'a>(names: impl Iterator<Item = &'a str>) -> bool {
    let names: Vec<&str> = names.collect();
    names.iter().any(|a| {
        names
            .iter()
            .any(|b| b.len() > a.len() + 1 && b.starts_with(a) && b.as_bytes()[a.len()] == b'-')
    })
}

/// The SigV4 signature (hex) of a canonical request.
fn signature(
    datetime: &OffsetDateTime,
    region: &Region,
    secret: &str,
    canonical_request: &str,
) -> Result<String, S3Error> {
    use hmac::Mac as _;
    let string_to_sign = s3::signing::string_to_sign(datetime, region, canonical_request)?;
    let key = signing_key(datetime, secret, region)?;
    let mut mac = s3::signing::HmacSha256::new_from_slice(&key)?;
    mac.update(string_to_sign.as_bytes());
    Ok(hex(&mac.finalize().into_bytes()))
}

/// The last signing key derived (it changes with the day, the region and the secret): four
/// HMACs a request saved.
static SIGNING_KEY: std::sync::Mutex<Option<(SigningScope, Vec<u8>)>> = std::sync::Mutex::new(None);

/// What a SigV4 signing key is derived from.
struct SigningScope {
    date: time::Date,
    region: String,
    secret: String,
}

/// rust-s3's signing key for `datetime`'s day, derived once a day and region.
fn signing_key(
    datetime: &OffsetDateTime,
    secret: &str,
    region: &Region,
) -> Result<Vec<u8>, S3Error> {
    let (date, region_name) = (datetime.date(), region.to_string());
    let mut last = SIGNING_KEY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((known, key)) = last.as_ref() {
        // Compared in place: the secret is copied only when the key is derived anew.
        if known.date == date && known.region == region_name && known.secret == secret {
            return Ok(key.clone());
        }
    }
    let key = s3::signing::signing_key(datetime, secret, region, "s3")?;
    let scope = SigningScope {
        date,
        region: region_name,
        secret: secret.to_string(),
    };
    *last = Some((scope, key.clone()));
    Ok(key)
}

/// The SigV4 canonical request; `headers` (lowercase names, normalized values) are sorted by
/// name here.
fn canonical_request(
    method: &str,
    uri: &str,
    query: &str,
    headers: &mut [(String, String)],
    payload_hash: &str,
) -> String {
    headers.sort();
    let canonical_headers: Vec<String> = headers.iter().map(|(n, v)| format!("{n}:{v}")).collect();
    let signed: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    format!(
        "{method}\n{uri}\n{query}\n{}\n\n{}\n{payload_hash}",
        canonical_headers.join("\n"),
        signed.join(";")
    )
}

/// The rust-s3 path of a key: rust-s3 strips one leading `/`.
pub(super) fn object_path(key: &str) -> String {
    format!("/{key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::s3::headers::header;

    /// A bucket as the store makes one: `endpoint` (path style) or AWS (virtual hosts).
    fn bucket(endpoint: Option<&str>, token: Option<&str>) -> Bucket {
        let credentials =
            s3::creds::Credentials::new(Some("AKID"), Some("SECRET"), token, None, None).unwrap();
        let region = match endpoint {
            Some(endpoint) => Region::Custom {
                region: "garage".into(),
                endpoint: endpoint.into(),
            },
            None => Region::EuWest1,
        };
        let mut bucket = *Bucket::new("bkt", region, credentials).unwrap();
        if endpoint.is_some() {
            bucket.set_path_style();
        }
        bucket
    }

    #[test]
    fn the_kept_signing_key_follows_the_day_the_region_and_the_secret() {
        let day = OffsetDateTime::from_unix_timestamp(1_764_900_000).unwrap();
        let next = day + time::Duration::days(1);
        let (eu, us) = (Region::EuWest1, Region::UsEast1);
        for (at, secret, region) in [
            (day, "one", &eu),
            (day, "one", &eu),
            (next, "one", &eu),
            (next, "two", &eu),
            (next, "two", &us),
            (day, "one", &eu),
        ] {
            let theirs = s3::signing::signing_key(&at, secret, region, "s3").unwrap();
            assert_eq!(signing_key(&at, secret, region).unwrap(), theirs);
        }
    }

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[tokio::test]
    async fn a_read_is_sent_with_the_headers_and_signature_rust_s3_gives_it() {
        let buckets = [
            bucket(Some("http://127.0.0.1:3900"), None),
            bucket(Some("https://s3.example.net"), Some("TOKEN")),
            bucket(None, None),
        ];
        let mut if_match = bucket(Some("http://127.0.0.1:3900"), None);
        if_match.add_header("If-Match", "\"0123abcd\"");
        let reads = [
            Command::HeadObject,
            Command::GetObject,
            Command::GetObjectRange {
                start: 5,
                end: Some(9),
            },
            Command::GetObjectRange {
                start: 5,
                end: None,
            },
        ];
        let cases = buckets
            .iter()
            .chain([&if_match])
            .flat_map(|b| reads.iter().map(move |c| (b, c.clone())));
        for (bucket, command) in cases {
            let path = object_path("dir/a b+c%d.txt");
            let request = ReqwestRequest::new(bucket, &path, command).await.unwrap();
            let (url, ours) = signed_headers(&request, None).await.unwrap();
            let theirs = request.headers().await.unwrap();
            assert_eq!(url, request.url().unwrap());
            for name in [
                "host",
                "x-amz-date",
                "x-amz-content-sha256",
                "x-amz-security-token",
                "accept",
                "range",
                "if-match",
                "authorization",
            ] {
                assert_eq!(ours.get(name), theirs.get(name), "{name} for {url}");
            }
            let unsigned = |h: &reqwest::header::HeaderMap| {
                let mut names: Vec<String> = h.keys().map(|k| k.to_string()).collect();
                names.retain(|n| n != "date");
                names.sort();
                names
            };
            assert_eq!(unsigned(&ours), unsigned(&theirs), "{url}");
        }
    }

    #[test]
    fn only_a_name_extended_by_a_dash_needs_signing_again() {
        let plain = [
            "host",
            "x-amz-date",
            "x-amz-content-sha256",
            "range",
            "if-match",
        ];
        assert!(!has_prefixed_name(plain.into_iter()));
        let sse_c = [
            "x-amz-server-side-encryption-customer-key",
            "x-amz-server-side-encryption-customer-key-md5",
        ];
        assert!(has_prefixed_name(sse_c.into_iter()));
        let copy = ["x-amz-copy-source", "x-amz-copy-source-range"];
        assert!(has_prefixed_name(copy.into_iter()));
        assert!(!has_prefixed_name(
            ["x-amz-meta-a", "x-amz-meta-ab"].into_iter()
        ));
    }

    #[test]
    fn signs_like_sigv4() {
        // The example of the S3 SigV4 documentation ("GET Object", also rust-s3's own test).
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut headers = vec![
            header("x-amz-date", "20130524T000000Z"),
            header("range", "bytes=0-9"),
            header("x-amz-content-sha256", empty),
            header("host", "examplebucket.s3.amazonaws.com"),
        ];
        let canonical = canonical_request("GET", "/test.txt", "", &mut headers, empty);
        assert_eq!(
            canonical,
            format!(
                "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
                 x-amz-content-sha256:{empty}\nx-amz-date:20130524T000000Z\n\n\
                 host;range;x-amz-content-sha256;x-amz-date\n{empty}"
            )
        );
        let datetime = time::Date::from_calendar_date(2013, time::Month::May, 24)
            .unwrap()
            .with_hms(0, 0, 0)
            .unwrap()
            .assume_utc();
        assert_eq!(
            signature(
                &datetime,
                &"us-east-1".parse().unwrap(),
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                &canonical
            )
            .unwrap(),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn canonical_headers_are_sorted_by_name() {
        // rust-s3 sorts `name:value` lines: `x-amz-copy-source-range:` before
        // `x-amz-copy-source:`, which no server accepts. By name, the shorter comes first.
        let mut headers = vec![
            header("x-amz-copy-source-range", "bytes=0-9"),
            header("x-amz-copy-source", "/b/k"),
            header("x-amz-server-side-encryption-customer-key-md5", "m"),
            header("x-amz-server-side-encryption-customer-key", "k"),
            header("host", "h"),
        ];
        let canonical = canonical_request("PUT", "/b/k", "partNumber=1", &mut headers, "x");
        let lines: Vec<&str> = canonical.lines().collect();
        assert_eq!(
            lines[3..8],
            [
                "host:h",
                "x-amz-copy-source:/b/k",
                "x-amz-copy-source-range:bytes=0-9",
                "x-amz-server-side-encryption-customer-key:k",
                "x-amz-server-side-encryption-customer-key-md5:m",
            ]
        );
        assert_eq!(
            lines[9],
            "host;x-amz-copy-source;x-amz-copy-source-range;\
             x-amz-server-side-encryption-customer-key;\
             x-amz-server-side-encryption-customer-key-md5"
        );
    }
}
