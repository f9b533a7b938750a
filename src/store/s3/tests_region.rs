//! `S3Store::locate` against the canned-response server of `tests_wire`, answering as AWS
//! does: the region the store finds, and the requests after it signed for that region (the
//! SigV4 credential scope `DATE/REGION/s3/aws4_request` of their Authorization header).

use super::tests_wire::{error_body, response, serve, settings, T};
use super::*;

/// A store of bucket `bkt` at `endpoint` with no region configured.
fn unlocated(endpoint: String, max_retries: u32) -> S3Store {
    S3Store::new(&S3Settings {
        region: None,
        ..settings(endpoint, max_retries, T)
    })
    .unwrap()
}

/// The request (lowercased, as the server saw it) is signed for `region`.
fn signed_for(request: &str, region: &str) -> bool {
    let authorization = request
        .lines()
        .find_map(|l| l.strip_prefix("authorization: aws4-hmac-sha256 credential="))
        .unwrap_or_else(|| panic!("not signed: {request}"));
    authorization.contains(&format!("/{region}/s3/aws4_request,"))
}

/// Locates the region of a store with none configured against `answers`, then sends one
/// HEAD of key `k` (answered 200); returns the region found and every request seen.
async fn locate_then_head(answers: Vec<String>) -> (BucketRegion, Vec<String>) {
    let mut answers = answers;
    answers.push(response("200 OK", &["ETag: \"e\""], ""));
    let (endpoint, seen) = serve(answers);
    let (store, region) = unlocated(endpoint, 0).locate().await.unwrap();
    store.head("k").await.unwrap();
    let seen = seen.lock().unwrap().clone();
    (region, seen)
}

const REGION_HEADER: &str = "x-amz-bucket-region: eu-west-2";

#[tokio::test]
async fn head_bucket_names_the_region_in_a_header_on_200_301_and_403() {
    for (status, code) in [
        ("200 OK", 200),
        ("301 Moved Permanently", 301),
        ("403 Forbidden", 403),
    ] {
        let (region, seen) = locate_then_head(vec![response(status, &[REGION_HEADER], "")]).await;
        assert_eq!(
            region,
            BucketRegion {
                name: "eu-west-2".into(),
                how: HowKnown::Found(Clue::Header {
                    request: "HeadBucket",
                    status: code
                }),
            },
            "{status}"
        );
        assert_eq!(seen.len(), 2, "one question, then the HEAD of k: {seen:?}");
        assert!(seen[0].starts_with("head /bkt/ http/1.1"), "{}", seen[0]);
        assert!(
            signed_for(&seen[0], "us-east-1"),
            "asked as the default: {}",
            seen[0]
        );
        assert!(seen[1].starts_with("head /bkt/k "), "{}", seen[1]);
        assert!(signed_for(&seen[1], "eu-west-2"), "{status}: {}", seen[1]);
    }
}

#[tokio::test]
async fn a_head_bucket_that_fails_unnamed_is_asked_again_as_a_listing_whose_error_names_the_region()
{
    let malformed = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-2'</Message><Region>eu-west-2</Region><RequestId>1</RequestId></Error>";
    let redirect = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Endpoint>bkt.s3.eu-west-2.amazonaws.com</Endpoint><Bucket>bkt</Bucket><Region>eu-west-2</Region></Error>";
    for (status, code, body) in [
        ("400 Bad Request", 400, malformed),
        ("301 Moved Permanently", 301, redirect),
    ] {
        // A HEAD answer has no body: the HEAD says nothing but its status.
        let (region, seen) =
            locate_then_head(vec![response(status, &[], ""), response(status, &[], body)]).await;
        let error = body
            .split("<Code>")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap();
        assert_eq!(
            region.how,
            HowKnown::Found(Clue::ErrorDocument {
                request: "ListObjectsV2",
                status: code,
                code: Some(error.into())
            }),
        );
        assert_eq!(region.name, "eu-west-2");
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen[1].starts_with("get /bkt/?"), "{}", seen[1]);
        assert!(seen[1].contains("list-type=2"), "{}", seen[1]);
        assert!(seen[1].contains("max-keys=1"), "{}", seen[1]);
        assert!(signed_for(&seen[2], "eu-west-2"), "{}", seen[2]);
    }
}

#[tokio::test]
async fn a_server_that_names_no_region_is_signed_for_us_east_1() {
    // Garage or MinIO without regions: HeadBucket signed for us-east-1 succeeds.
    let (region, seen) = locate_then_head(vec![response("200 OK", &[], "")]).await;
    assert_eq!(region.name, "us-east-1");
    assert_eq!(
        region.how,
        HowKnown::Default(NotNamed::Accepted {
            request: "HeadBucket"
        })
    );
    assert_eq!(
        seen.len(),
        2,
        "no listing after a HeadBucket that succeeded"
    );
    assert!(signed_for(&seen[1], "us-east-1"), "{}", seen[1]);

    // Refused twice without a region: the default, and the report says what was answered.
    let (region, seen) = locate_then_head(vec![
        response("403 Forbidden", &[], ""),
        response("403 Forbidden", &[], &error_body("AccessDenied")),
    ])
    .await;
    assert_eq!(region.name, "us-east-1");
    assert_eq!(
        region.how,
        HowKnown::Default(NotNamed::Refused {
            head_status: 403,
            list: "HTTP 403 (AccessDenied: m)".into()
        })
    );
    let report = region.to_string();
    assert!(report.contains("NOT FOUND"), "{report}");
    assert!(report.contains("--region"), "{report}");
    assert!(signed_for(&seen[2], "us-east-1"), "{}", seen[2]);
}

#[tokio::test]
async fn a_configured_region_is_used_without_asking() {
    let (endpoint, seen) = serve(vec![response("200 OK", &["ETag: \"e\""], "")]);
    let store = S3Store::new(&S3Settings {
        region: Some("eu-central-1".into()),
        ..settings(endpoint, 0, T)
    })
    .unwrap();
    let (store, region) = store.locate().await.unwrap();
    assert_eq!(
        region,
        BucketRegion {
            name: "eu-central-1".into(),
            how: HowKnown::Configured
        }
    );
    store.head("k").await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "no question: {seen:?}");
    assert!(signed_for(&seen[0], "eu-central-1"), "{}", seen[0]);
}

#[tokio::test]
async fn a_transient_failure_is_asked_again_and_no_answer_is_an_error() {
    let (endpoint, seen) = serve(vec![
        response("503 Slow Down", &[], &error_body("SlowDown")),
        response("200 OK", &[REGION_HEADER], ""),
    ]);
    let (_, region) = unlocated(endpoint, 2).locate().await.unwrap();
    assert_eq!(region.name, "eu-west-2");
    assert_eq!(seen.lock().unwrap().len(), 2);

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let e = unlocated(closed, 0).locate().await.unwrap_err();
    assert!(matches!(e, StoreError::Unreachable(_)), "{e:?}");
}

#[tokio::test]
async fn every_request_after_the_region_is_found_is_signed_for_it() {
    let (endpoint, seen) =
        serve(vec![
        response("301 Moved Permanently", &["x-amz-bucket-region: ap-south-1"], ""),
        response(
            "200 OK",
            &[],
            "<ListBucketResult><Name>bkt</Name><IsTruncated>false</IsTruncated></ListBucketResult>",
        ),
        response("200 OK", &["ETag: \"p\""], ""),
        response("200 OK", &["ETag: \"part1\""], ""),
        response("206 Partial Content", &[], "ab"),
    ]);
    let (s, _) = unlocated(endpoint, 0).locate().await.unwrap();
    s.list_page("", Some("/"), None, 10).await.unwrap();
    s.put("k", Bytes::from_static(b"ab"), &PutOptions::default())
        .await
        .unwrap();
    s.upload_part("m", "u1", 1, Bytes::from_static(b"x"))
        .await
        .unwrap();
    s.get_range("k", 0..2).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 5);
    for req in &seen[1..] {
        assert!(signed_for(req, "ap-south-1"), "{req}");
    }
    assert_eq!(s.stats().count("HeadBucket"), 1, "the question is counted");
}

#[test]
fn on_aws_the_region_found_also_picks_the_host() {
    let mut store = S3Store::new(&S3Settings {
        region: None,
        endpoint: None,
        path_style: false,
        ..settings(String::new(), 0, T)
    })
    .unwrap();
    assert_eq!(store.bucket.url(), "https://bkt.s3.amazonaws.com");
    store.sign_for("eu-west-2").unwrap();
    for bucket in [&store.bucket, &store.list_bucket, &store.data_bucket] {
        // rust-s3 names this region's endpoint in its older form, `s3-eu-west-2`.
        assert_eq!(bucket.url(), "https://bkt.s3-eu-west-2.amazonaws.com");
        assert_eq!(bucket.region.to_string(), "eu-west-2");
    }
}
