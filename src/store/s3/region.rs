//! The bucket's region, asked of the server when none is configured.
//!
//! SigV4 signs every request for one region, and S3 refuses a request signed for another one
//! (400 AuthorizationHeaderMalformed) or sent to another region's endpoint (301
//! PermanentRedirect). Whoever asks is told the bucket's region, though: the answer to
//! HeadBucket carries it in the `x-amz-bucket-region` header (on 200, and on the 301 and 403
//! that a request for the wrong region or without permission gets; on 400 too), and the error
//! document of a request signed for the wrong region names it in `<Region>` (400
//! AuthorizationHeaderMalformed; a 301 PermanentRedirect may). botocore reads the same two
//! places.
//!
//! So when no region is configured, [`S3Store::locate`] asks, whatever the endpoint: a server
//! that names a region is saying what it signs for (moto and MinIO send the header; Garage names
//! its `s3_region` in AuthorizationHeaderMalformed).
//! 1. HeadBucket (`HEAD /BUCKET/`), signed for us-east-1: the header, if its answer has one.
//!    A successful answer without it means the server takes requests signed for us-east-1 (a
//!    server without regions): that is the region.
//! 2. A HEAD answer has no body: when HeadBucket failed without the header, a ListObjectsV2 of
//!    one key asks again, and its header or its error document may name the region.
//! 3. Otherwise us-east-1, with a warning saying what the server answered ([`NotNamed`]); the
//!    first listing then reports what is wrong (no such bucket, access denied).
//!
//! A transient failure (5xx, throttling, a dropped connection) is retried as any request is;
//! no answer at all is an error (nothing else would work either). A configured region is used
//! as it is, without a request. The region found becomes the store's: its `Bucket`s are
//! pointed at it, keeping their credentials, connection pool and counters.

use std::fmt;

use s3::command::Command;
use s3::request::ResponseData;
use tracing::{debug, info, warn};

use super::errors::{error_detail, map_http_error, map_s3_error, xml_tag};
use super::signing::{object_path, send_command_any_status};
use super::{region_of, S3Store};
use crate::store::retry::{with_retries, Call};
use crate::store::StoreResult;

/// The region requests are signed for when none is configured and the server names none:
/// S3's first, the one `s3.amazonaws.com` answers for.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The header in which S3 names a bucket's region.
const REGION_HEADER: &str = "x-amz-bucket-region";

/// The region requests are signed for, and how bucketfs knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRegion {
    pub name: String,
    pub how: HowKnown,
}

/// How the region of a store was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HowKnown {
    /// Set by the user (flag, environment, config file or AWS profile); nothing was asked.
    Configured,
    /// Named by the server.
    Found(Clue),
    /// Not named by the server: [`DEFAULT_REGION`].
    Default(NotNamed),
}

/// Where the server named the region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clue {
    /// The `x-amz-bucket-region` header of the answer to `request`.
    Header { request: &'static str, status: u16 },
    /// `<Region>` in the error document of the answer to `request`, whose code is `code`
    /// (AuthorizationHeaderMalformed, PermanentRedirect).
    ErrorDocument {
        request: &'static str,
        status: u16,
        code: Option<String>,
    },
}

/// Why the server's answers named no region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotNamed {
    /// `request`, signed for the default region, succeeded: the server takes that region.
    Accepted { request: &'static str },
    /// HeadBucket failed with `head_status` and the listing with `list` (its status and
    /// error), neither naming a region.
    Refused { head_status: u16, list: String },
}

impl fmt::Display for BucketRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.how)
    }
}

impl fmt::Display for HowKnown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HowKnown::Configured => write!(f, "configured"),
            HowKnown::Found(clue) => write!(f, "found: {clue}"),
            HowKnown::Default(why) => write!(f, "the default: {why}"),
        }
    }
}

impl fmt::Display for Clue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clue::Header { request, status } => write!(
                f,
                "the {REGION_HEADER} header of the answer to {request} (HTTP {status})"
            ),
            Clue::ErrorDocument {
                request,
                status,
                code,
            } => write!(
                f,
                "<Region> in the {} error answered to {request} (HTTP {status})",
                code.as_deref().unwrap_or("unnamed")
            ),
        }
    }
}

impl fmt::Display for NotNamed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotNamed::Accepted { request } => write!(
                f,
                "the server names no region and takes {request} signed for {DEFAULT_REGION}"
            ),
            NotNamed::Refused { head_status, list } => write!(
                f,
                "NOT FOUND: HeadBucket answered HTTP {head_status} and ListObjectsV2 {list}, \
                 neither naming the bucket's region: if requests are refused, set --region"
            ),
        }
    }
}

impl S3Store {
    /// This store signing for the bucket's region, and that region with how it is known: a
    /// configured one as it is, without a request; otherwise the one the server names
    /// (see the module comment), or [`DEFAULT_REGION`] when it names none. Logged (info; a
    /// warning when the server's answers failed without naming it). Errors: the server did
    /// not answer.
    pub async fn locate(mut self) -> StoreResult<(S3Store, BucketRegion)> {
        if let Some(name) = self.configured_region.clone() {
            debug!(region = %name, "the bucket's region is configured");
            let how = HowKnown::Configured;
            return Ok((self, BucketRegion { name, how }));
        }
        let (name, how) = match self.ask_region().await? {
            Ok((name, clue)) => (name, HowKnown::Found(clue)),
            Err(why) => (DEFAULT_REGION.to_string(), HowKnown::Default(why)),
        };
        let found = BucketRegion { name, how };
        match &found.how {
            HowKnown::Default(NotNamed::Refused { .. }) => {
                warn!(bucket = %self.bucket.name, region = %found.name, "the bucket's region: {}", found.how)
            }
            _ => {
                info!(bucket = %self.bucket.name, region = %found.name, "the bucket's region: {}", found.how)
            }
        }
        self.sign_for(&found.name)?;
        Ok((self, found))
    }

    /// Points every `Bucket` of the store at region `name` (signatures and, on AWS, the host).
    pub(super) fn sign_for(&mut self, name: &str) -> StoreResult<()> {
        let region = region_of(self.endpoint.as_deref(), name)?;
        for bucket in [
            &mut self.bucket,
            &mut self.list_bucket,
            &mut self.data_bucket,
        ] {
            bucket.region = region.clone();
        }
        Ok(())
    }

    /// The region the server names, and where; or why it named none.
    async fn ask_region(&self) -> StoreResult<Result<(String, Clue), NotNamed>> {
        const HEAD: &str = "HeadBucket";
        const LIST: &str = "ListObjectsV2";
        let head = self.ask(HEAD, Command::HeadObject).await?;
        if let Some(named) = named_region(HEAD, &head) {
            return Ok(Ok(named));
        }
        if succeeded(&head) {
            return Ok(Err(NotNamed::Accepted { request: HEAD }));
        }
        let list = Command::ListObjectsV2 {
            prefix: String::new(),
            delimiter: None,
            continuation_token: None,
            start_after: None,
            max_keys: Some(1),
        };
        let list = self.ask(LIST, list).await?;
        if let Some(named) = named_region(LIST, &list) {
            return Ok(Ok(named));
        }
        if succeeded(&list) {
            return Ok(Err(NotNamed::Accepted { request: LIST }));
        }
        Ok(Err(NotNamed::Refused {
            head_status: head.status_code(),
            list: failure_text(&list),
        }))
    }

    /// One question to the bucket (its root, `/BUCKET/`), signed for the store's region, its
    /// answer returned whatever the status; retried while it fails transiently without naming
    /// a region.
    async fn ask(&self, request: &'static str, command: Command<'_>) -> StoreResult<ResponseData> {
        let path = &object_path("");
        let command = &command;
        let call = Call::small(request)
            .counted(&self.stats, request, 0)
            .refusals(refusal);
        with_retries(&self.retry, call, move || async move {
            let answer = send_command_any_status(&self.bucket, path, command.clone())
                .await
                .map_err(map_s3_error)?;
            if !succeeded(&answer) && named_region(request, &answer).is_none() {
                let failure = map_http_error(
                    answer.status_code(),
                    &String::from_utf8_lossy(answer.as_slice()),
                );
                if failure.is_transient() {
                    return Err(failure);
                }
            }
            Ok(answer)
        })
        .await
    }
}

fn succeeded(answer: &ResponseData) -> bool {
    (200..300).contains(&answer.status_code())
}

/// The outcome (`StoreError::outcome`) of an answer that is no success (`ask` returns
/// every answer as a value).
fn refusal(answer: &ResponseData) -> Option<&'static str> {
    let body = || String::from_utf8_lossy(answer.as_slice()).into_owned();
    (!succeeded(answer)).then(|| map_http_error(answer.status_code(), &body()).outcome())
}

/// The region `answer` (to `request`) names, and where: its `x-amz-bucket-region` header, or
/// `<Region>` in its error document (a HEAD answer has none).
fn named_region(request: &'static str, answer: &ResponseData) -> Option<(String, Clue)> {
    let status = answer.status_code();
    if let Some(name) = answer.headers().get(REGION_HEADER) {
        let name = name.trim();
        if is_region_name(name) {
            return Some((name.to_string(), Clue::Header { request, status }));
        }
    }
    if succeeded(answer) {
        return None;
    }
    let body = String::from_utf8_lossy(answer.as_slice());
    let name = xml_tag(&body, "Region").filter(|r| is_region_name(r))?;
    let code = xml_tag(&body, "Code");
    Some((
        name,
        Clue::ErrorDocument {
            request,
            status,
            code,
        },
    ))
}

/// `HTTP STATUS (Code: Message)` of a failed answer.
fn failure_text(answer: &ResponseData) -> String {
    let status = answer.status_code();
    let body = String::from_utf8_lossy(answer.as_slice());
    let (code, message) = (xml_tag(&body, "Code"), xml_tag(&body, "Message"));
    match error_detail(status, code.as_deref(), message.as_deref(), &body) {
        detail if detail.starts_with("HTTP ") => detail,
        detail => format!("HTTP {status} ({detail})"),
    }
}

/// What may be a region's name (it becomes part of a host name and of every signature):
/// letters, digits and dashes.
fn is_region_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plausible_region_names_are_taken() {
        for good in ["eu-west-2", "us-gov-west-1", "garage", "cn-north-1"] {
            assert!(is_region_name(good), "{good}");
        }
        for bad in [
            "",
            "eu west",
            "evil.example.com/x",
            "a\r\nb",
            &"x".repeat(65),
        ] {
            assert!(!is_region_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_report_says_where_the_region_came_from() {
        let found = BucketRegion {
            name: "eu-west-2".into(),
            how: HowKnown::Found(Clue::Header {
                request: "HeadBucket",
                status: 301,
            }),
        };
        assert_eq!(
            found.to_string(),
            "eu-west-2 (found: the x-amz-bucket-region header of the answer to HeadBucket (HTTP 301))"
        );
        let refused = HowKnown::Default(NotNamed::Refused {
            head_status: 403,
            list: "HTTP 403 (AccessDenied: Access Denied)".into(),
        });
        assert!(refused.to_string().contains("set --region"), "{refused}");
    }
}
