//! Tests against a real S3 server (`scripts/s3-server.sh start`); run with
//! `cargo test s3_live -- --ignored`. They read the env file the script writes
//! (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `S3_BUCKET`) from the process environment.

use super::*;
use crate::store::list_all;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn store() -> S3Store {
    S3Store::new(&live_settings()).unwrap()
}

/// A fresh directory-like prefix for one test run.
fn run_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("s3-live-{nanos}/")
}

#[tokio::test]
#[ignore]
async fn s3_live_roundtrip() {
    let store = store();
    let dir = run_prefix();
    let unique = |name: &str| format!("{dir}{name}");
    let key = unique("dir one/a+b%c ü.txt");
    let mut opts = PutOptions {
        content_type: Some("text/plain".into()),
        ..Default::default()
    };
    opts.metadata.insert("mode".into(), "0644".into());
    let etag = store
        .put(&key, Bytes::from_static(b"hello world"), &opts)
        .await
        .unwrap();
    assert!(etag.is_some());

    let info = store.head(&key).await.unwrap();
    assert_eq!(info.size, 11);
    assert_eq!(info.content_type.as_deref(), Some("text/plain"));
    assert_eq!(info.metadata.get("mode").map(String::as_str), Some("0644"));
    assert!(info.last_modified > UNIX_EPOCH);

    assert_eq!(store.get_range(&key, 6..11).await.unwrap(), "world");
    assert_eq!(store.get_range(&key, 6..100).await.unwrap(), "world");
    assert!(matches!(
        store.get_range(&key, 50..100).await,
        Err(StoreError::InvalidRange)
    ));

    // Empty object.
    let empty = unique("empty");
    store
        .put(&empty, Bytes::new(), &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(store.get_range(&empty, 0..4096).await.unwrap(), "");
    assert_eq!(store.head(&empty).await.unwrap().size, 0);

    // Copy, keeping and replacing metadata.
    let copy1 = unique("copy one ü+");
    let copied = store
        .copy_with_options(&key, &copy1, &PutOptions::default(), true)
        .await
        .unwrap();
    let info1 = store.head(&copy1).await.unwrap();
    // The ETag the copy answers with is the one a HEAD then shows (how a copy is checked).
    assert!(copied.is_some());
    assert_eq!(copied, info1.etag);
    assert_eq!(info1.metadata.get("mode").map(String::as_str), Some("0644"));
    assert_eq!(info1.content_type.as_deref(), Some("text/plain"));
    let mut replace = PutOptions {
        content_type: Some("application/x-test".into()),
        ..Default::default()
    };
    replace.metadata.insert("mode".into(), "0600".into());
    store.copy(&key, &key, Some(&replace)).await.unwrap();
    let info2 = store.head(&key).await.unwrap();
    assert_eq!(info2.metadata.get("mode").map(String::as_str), Some("0600"));
    assert_eq!(info2.content_type.as_deref(), Some("application/x-test"));
    assert!(matches!(
        store.copy(&unique("missing"), &copy1, None).await,
        Err(StoreError::NotFound)
    ));

    // Listing with a delimiter.
    let page = store.list_page(&dir, Some("/"), None, 1000).await.unwrap();
    assert!(
        page.prefixes.contains(&format!("{dir}dir one/")),
        "{page:?}"
    );
    assert!(page.objects.iter().any(|o| o.key == empty && o.size == 0));
    assert!(page.objects.iter().all(|o| o.last_modified > UNIX_EPOCH));
    let first = store.list_page(&dir, None, None, 1).await.unwrap();
    assert_eq!(first.objects.len(), 1);
    assert!(first.next_token.is_some());
    let all = list_all(&store, &dir).await.unwrap();
    assert_eq!(all.len(), 3);

    // Missing things.
    assert!(matches!(
        store.head(&unique("nope")).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.get_range(&unique("nope"), 0..1).await,
        Err(StoreError::NotFound)
    ));
    store.delete(&unique("nope")).await.unwrap();

    // Multipart with metadata; one part retried alone after a failure-free re-upload.
    let mp = unique("multi part");
    let mut mopts = PutOptions {
        content_type: Some("application/x-mp".into()),
        ..Default::default()
    };
    mopts.metadata.insert("uid".into(), "1000".into());
    let id = store.create_multipart(&mp, &mopts).await.unwrap();
    let part1 = Bytes::from(vec![b'a'; 5 << 20]);
    let part2 = Bytes::from_static(b"tail");
    let e1 = store.upload_part(&mp, &id, 1, part1.clone()).await.unwrap();
    let e1_again = store.upload_part(&mp, &id, 1, part1).await.unwrap();
    assert_eq!(e1, e1_again);
    let e2 = store.upload_part(&mp, &id, 2, part2).await.unwrap();
    let etag = store
        .complete_multipart(
            &mp,
            &id,
            vec![
                CompletedPart {
                    number: 1,
                    etag: e1,
                },
                CompletedPart {
                    number: 2,
                    etag: e2,
                },
            ],
            None,
        )
        .await
        .unwrap();
    assert!(etag.is_some());
    let info = store.head(&mp).await.unwrap();
    assert_eq!(info.size, (5 << 20) + 4);
    assert_eq!(info.metadata.get("uid").map(String::as_str), Some("1000"));
    assert_eq!(info.content_type.as_deref(), Some("application/x-mp"));
    assert_eq!(
        store
            .get_range(&mp, (5 << 20) - 1..(5 << 20) + 4)
            .await
            .unwrap(),
        "atail"
    );

    // Abort (twice: the second finds nothing, which is fine).
    let id = store.create_multipart(&mp, &mopts).await.unwrap();
    store.abort_multipart(&mp, &id).await.unwrap();
    store.abort_multipart(&mp, &id).await.unwrap();

    for k in [&key, &empty, &copy1, &mp] {
        store.delete(k).await.unwrap();
    }
    assert!(list_all(&store, &dir).await.unwrap().is_empty());
}

#[tokio::test]
#[ignore]
async fn s3_live_errors() {
    // Wrong secret: a signature error, not "access denied".
    let bad = S3Settings {
        secret_key: Some("wrong".into()),
        ..live_settings()
    };
    let bad_store = S3Store::new(&bad).unwrap();
    let e = bad_store
        .list_page("", Some("/"), None, 10)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::BadCredentials(_) | StoreError::AccessDenied(_)
        ),
        "{e:?}"
    );
    // Missing bucket.
    let missing = S3Settings {
        bucket: "no-such-bucket-bucketfs".into(),
        ..live_settings()
    };
    let e = S3Store::new(&missing)
        .unwrap()
        .list_page("", None, None, 10)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NoSuchBucket), "{e:?}");
    // Nothing listening.
    let dead = S3Settings {
        endpoint: Some("http://127.0.0.1:9".into()),
        retry: RetryPolicy {
            retry_timeout: Duration::from_secs(10),
            max_retries: Some(1),
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            request_timeout: Duration::from_secs(5),
        },
        ..live_settings()
    };
    let e = S3Store::new(&dead).unwrap().head("x").await.unwrap_err();
    assert!(matches!(e, StoreError::Unreachable(_)), "{e:?}");
}

/// Keys XML text cannot carry as they are (CR, tab, `&`, `<`) or that URL encodings spell
/// differently (`%`, `+`, space, `/`, non-ASCII). No LF: moto 5 answers 404 to a PUT of a key
/// holding one (Garage takes it; tests/posix_tools.rs lists and reads one through a mount).
const AWKWARD_KEYS: [&str; 6] = [
    "cr\rname",
    "name\ttab",
    "100% +plus & <lt>",
    "a+b",
    "a b",
    "ünï 日本",
];

/// Runs on Garage and on moto (both answer `encoding-type=url`, each in its own spelling).
#[tokio::test]
#[ignore]
async fn s3_live_awkward_keys_come_back_exactly_from_listings() {
    let store = store();
    let dir = run_prefix();
    let sub = format!("{dir}sub\r+% ü/");
    let mut want = Vec::new();
    for name in AWKWARD_KEYS {
        for parent in [&dir, &sub] {
            let key = format!("{parent}{name}");
            store
                .put(&key, Bytes::from(key.clone()), &PutOptions::default())
                .await
                .unwrap();
            want.push(key);
        }
    }
    want.sort();

    let page = store.list_page(&dir, Some("/"), None, 1000).await.unwrap();
    let mut top: Vec<_> = page.objects.iter().map(|o| o.key.clone()).collect();
    top.sort();
    let mut top_want: Vec<_> = AWKWARD_KEYS.iter().map(|n| format!("{dir}{n}")).collect();
    top_want.sort();
    assert_eq!(top, top_want);
    assert_eq!(page.prefixes, std::slice::from_ref(&sub));

    // One key a page: every continuation token (and key) goes back and forth.
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let page = store.list_page(&dir, None, token, 1).await.unwrap();
        all.extend(page.objects.into_iter().map(|o| o.key));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    all.sort();
    assert_eq!(all, want);
    for key in &all {
        assert_eq!(
            store.get_range(key, 0..1000).await.unwrap(),
            key.as_bytes(),
            "{key:?} opens under its listed name"
        );
    }

    // No CR here: moto 5 ignores encoding-type on ListMultipartUploads (its answer has no
    // EncodingType, so the key is taken as XML text, where a CR arrives as LF). The wire test
    // `multipart_upload_listings_decode_keys_and_send_the_key_marker_back_decoded` covers it.
    let mp = format!("{dir}{}", AWKWARD_KEYS[2]);
    let id = store
        .create_multipart(&mp, &PutOptions::default())
        .await
        .unwrap();
    let uploads = store.list_multipart_uploads(&dir).await.unwrap();
    assert!(
        uploads.iter().any(|u| u.key == mp && u.upload_id == id),
        "{uploads:?}"
    );
    store.abort_multipart(&mp, &id).await.unwrap();
    for key in &all {
        store.delete(key).await.unwrap();
    }
    assert!(list_all(&store, &dir).await.unwrap().is_empty());
}

// ---- Object options, SSE-C, UploadPartCopy (issue 4) --------------------------------------
//
// `s3_live_moto_*` need a server that keeps SSE / ACL / storage class (moto:
// `. "$(scripts/moto-server.sh start)"`); Garage ignores those headers. `s3_live_sse_c` needs
// a server that enforces SSE-C (Garage does; moto 5 ignores SSE-C). `s3_live_upload_part_copy`
// runs on both.

use crate::store::Sse;

fn store_with_key(key: Option<SseCKey>) -> S3Store {
    S3Store::new(&S3Settings {
        sse_c_key: key,
        ..live_settings()
    })
    .unwrap()
}

/// HEAD (with the SSE-C key if the store has one), for the headers `ObjectInfo` does not
/// carry.
async fn raw_head(store: &S3Store, key: &str) -> HeadObjectResult {
    store.head_raw(key, true).await.unwrap().unwrap()
}

/// GetObjectAcl (`GET /key?acl`), the XML answer.
async fn get_acl(store: &S3Store, key: &str) -> String {
    let mut bucket = store.bucket.clone();
    bucket.extra_query.insert("acl".into(), String::new());
    let data = send_command(&bucket, &object_path(key), Command::GetObject, false)
        .await
        .unwrap();
    String::from_utf8_lossy(data.as_slice()).into_owned()
}

/// Bytes that differ at every offset (catches misplaced ranges).
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test]
#[ignore]
async fn s3_live_moto_object_options() {
    let store = store();
    let dir = run_prefix();
    let k = |name: &str| format!("{dir}{name}");

    // SSE-S3.
    let sse = PutOptions {
        sse: Some(Sse::Aes256),
        ..Default::default()
    };
    store
        .put(&k("aes"), Bytes::from_static(b"x"), &sse)
        .await
        .unwrap();
    let head = raw_head(&store, &k("aes")).await;
    assert_eq!(head.server_side_encryption.as_deref(), Some("AES256"));
    // The object reads back (no SSE headers on GET/HEAD, or S3 would refuse them).
    assert_eq!(store.get_range(&k("aes"), 0..10).await.unwrap(), "x");
    store.head(&k("aes")).await.unwrap();

    // SSE-KMS with a key id.
    let kms = PutOptions {
        sse: Some(Sse::Kms {
            key_id: Some("alias/bucketfs-test".into()),
        }),
        ..Default::default()
    };
    store
        .put(&k("kms"), Bytes::from_static(b"x"), &kms)
        .await
        .unwrap();
    let head = raw_head(&store, &k("kms")).await;
    assert_eq!(head.server_side_encryption.as_deref(), Some("aws:kms"));
    assert_eq!(head.ssekms_key_id.as_deref(), Some("alias/bucketfs-test"));

    // Canned ACL: GetObjectAcl shows the AllUsers READ grant.
    let public = PutOptions {
        acl: Some("public-read".into()),
        ..Default::default()
    };
    store
        .put(&k("public"), Bytes::from_static(b"x"), &public)
        .await
        .unwrap();
    let acl = get_acl(&store, &k("public")).await;
    assert!(
        acl.contains("http://acs.amazonaws.com/groups/global/AllUsers"),
        "{acl}"
    );
    assert!(acl.contains("<Permission>READ</Permission>"), "{acl}");
    let private = PutOptions {
        acl: Some("private".into()),
        ..Default::default()
    };
    store
        .put(&k("private"), Bytes::from_static(b"x"), &private)
        .await
        .unwrap();
    let acl = get_acl(&store, &k("private")).await;
    assert!(!acl.contains("AllUsers"), "{acl}");

    // Storage class and Cache-Control.
    let ia = PutOptions {
        storage_class: Some("STANDARD_IA".into()),
        cache_control: Some("max-age=60".into()),
        content_type: Some("text/x-ia".into()),
        ..Default::default()
    };
    store
        .put(&k("ia"), Bytes::from_static(b"x"), &ia)
        .await
        .unwrap();
    let head = raw_head(&store, &k("ia")).await;
    assert_eq!(head.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(head.cache_control.as_deref(), Some("max-age=60"));

    // Copies: COPY directive keeps content type and Cache-Control and applies the storage
    // options again; REPLACE sets everything.
    let stored_as = PutOptions {
        sse: Some(Sse::Aes256),
        acl: Some("public-read".into()),
        storage_class: Some("STANDARD_IA".into()),
        ..Default::default()
    };
    store
        .copy_with_options(&k("ia"), &k("copy-keep"), &stored_as, true)
        .await
        .unwrap();
    let head = raw_head(&store, &k("copy-keep")).await;
    assert_eq!(head.server_side_encryption.as_deref(), Some("AES256"));
    assert_eq!(head.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(head.cache_control.as_deref(), Some("max-age=60"));
    assert_eq!(head.content_type.as_deref(), Some("text/x-ia"));
    assert!(get_acl(&store, &k("copy-keep")).await.contains("AllUsers"));
    let replace = PutOptions {
        content_type: Some("text/x-new".into()),
        cache_control: Some("no-store".into()),
        ..stored_as.clone()
    };
    store
        .copy_with_options(&k("aes"), &k("copy-replace"), &replace, false)
        .await
        .unwrap();
    let head = raw_head(&store, &k("copy-replace")).await;
    assert_eq!(head.content_type.as_deref(), Some("text/x-new"));
    assert_eq!(head.cache_control.as_deref(), Some("no-store"));
    assert_eq!(head.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(head.server_side_encryption.as_deref(), Some("AES256"));

    // Multipart with options.
    let id = store.create_multipart(&k("mp"), &replace).await.unwrap();
    let listed = store.list_multipart_uploads(&dir).await.unwrap();
    assert!(
        listed.iter().any(|u| u.upload_id == id && u.key == k("mp")),
        "{listed:?}"
    );
    let e1 = store
        .upload_part(&k("mp"), &id, 1, Bytes::from_static(b"part"))
        .await
        .unwrap();
    store
        .complete_multipart(
            &k("mp"),
            &id,
            vec![CompletedPart {
                number: 1,
                etag: e1,
            }],
            None,
        )
        .await
        .unwrap();
    let head = raw_head(&store, &k("mp")).await;
    assert_eq!(head.server_side_encryption.as_deref(), Some("AES256"));
    assert_eq!(head.storage_class.as_deref(), Some("STANDARD_IA"));
    assert_eq!(head.cache_control.as_deref(), Some("no-store"));
    assert!(get_acl(&store, &k("mp")).await.contains("AllUsers"));

    let stats = store.stats();
    assert!(stats.count("PutObject") >= 5, "{stats:?}");
    assert!(stats.bytes_sent >= 5, "{stats:?}");
    eprintln!("moto object options: ok; stats {stats:?}");
    for o in list_all(&store, &dir).await.unwrap() {
        store.delete(&o.key).await.unwrap();
    }
}

#[tokio::test]
#[ignore]
async fn s3_live_sse_c() {
    let key = SseCKey::new(*b"bucketfs-live-test-key-32-bytes!");
    let other = SseCKey::new([9; 32]);
    let with_key = store_with_key(Some(key.clone()));
    let without = store_with_key(None);
    let wrong = store_with_key(Some(other));
    let dir = run_prefix();
    let k = |name: &str| format!("{dir}{name}");

    with_key
        .put(
            &k("enc"),
            Bytes::from_static(b"secret data"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    // With the key.
    assert_eq!(
        with_key.get_range(&k("enc"), 0..100).await.unwrap(),
        "secret data"
    );
    let head = raw_head(&with_key, &k("enc")).await;
    eprintln!(
        "SSE-C HEAD: algorithm {:?}, key MD5 {:?}",
        head.sse_customer_algorithm, head.sse_customer_key_md5
    );
    assert_eq!(with_key.head(&k("enc")).await.unwrap().size, 11);
    // Without a key, and with another key: a clear error, for GET and HEAD.
    let get = without.get_range(&k("enc"), 0..100).await;
    assert!(
        matches!(&get, Err(StoreError::SseCustomerKey(t)) if t.contains("--sse-c-key-file")),
        "GET without the key: {get:?} (does this server enforce SSE-C?)"
    );
    eprintln!("GET without key: {}", get.unwrap_err());
    let head = without.head(&k("enc")).await;
    assert!(
        matches!(&head, Err(StoreError::SseCustomerKey(_))),
        "{head:?}"
    );
    let get = wrong.get_range(&k("enc"), 0..100).await;
    assert!(
        matches!(&get, Err(StoreError::SseCustomerKey(_))),
        "{get:?}"
    );
    eprintln!("GET with another key: {}", get.unwrap_err());
    let head = wrong.head(&k("enc")).await;
    assert!(
        matches!(&head, Err(StoreError::SseCustomerKey(_))),
        "{head:?}"
    );

    // A plain object is still readable through a mount with a key.
    without
        .put(
            &k("plain"),
            Bytes::from_static(b"plain"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        with_key.get_range(&k("plain"), 0..10).await.unwrap(),
        "plain"
    );
    assert_eq!(with_key.head(&k("plain")).await.unwrap().size, 5);

    // Copies: SSE-C source to SSE-C target, and a plain source to an SSE-C target.
    with_key
        .copy(&k("enc"), &k("enc-copy"), None)
        .await
        .unwrap();
    assert_eq!(
        with_key.get_range(&k("enc-copy"), 0..100).await.unwrap(),
        "secret data"
    );
    with_key
        .copy(&k("plain"), &k("plain-to-enc"), None)
        .await
        .unwrap();
    assert_eq!(
        with_key.get_range(&k("plain-to-enc"), 0..10).await.unwrap(),
        "plain"
    );
    assert!(matches!(
        without.get_range(&k("plain-to-enc"), 0..10).await,
        Err(StoreError::SseCustomerKey(_))
    ));

    // Multipart: UploadPart and UploadPartCopy (source and target encrypted).
    let big = pattern(5 << 20, 3);
    with_key
        .put(&k("big"), big.clone(), &PutOptions::default())
        .await
        .unwrap();
    let id = with_key
        .create_multipart(&k("mp"), &PutOptions::default())
        .await
        .unwrap();
    let e1 = with_key
        .upload_part_copy(&k("mp"), &id, 1, &k("big"), None, 0..5 << 20)
        .await
        .unwrap();
    let e2 = with_key
        .upload_part(&k("mp"), &id, 2, Bytes::from_static(b"-end"))
        .await
        .unwrap();
    with_key
        .complete_multipart(
            &k("mp"),
            &id,
            vec![
                CompletedPart {
                    number: 1,
                    etag: e1,
                },
                CompletedPart {
                    number: 2,
                    etag: e2,
                },
            ],
            None,
        )
        .await
        .unwrap();
    let got = with_key
        .get_range(&k("mp"), 0..(5 << 20) + 100)
        .await
        .unwrap();
    assert_eq!(got.len(), (5 << 20) + 4);
    assert!(got[..5 << 20] == big[..], "copied part differs");
    assert_eq!(&got[5 << 20..], b"-end");
    assert!(matches!(
        without.get_range(&k("mp"), 0..1).await,
        Err(StoreError::SseCustomerKey(_))
    ));
    eprintln!("SSE-C: ok; stats {:?}", with_key.stats());
    for o in list_all(&without, &dir).await.unwrap() {
        without.delete(&o.key).await.unwrap();
    }
}

#[tokio::test]
#[ignore]
async fn s3_live_upload_part_copy() {
    let store = store();
    let dir = run_prefix();
    let k = |name: &str| format!("{dir}{name}");
    let src = pattern((6 << 20) + 12_345, 7);
    store
        .put(&k("source file"), src.clone(), &PutOptions::default())
        .await
        .unwrap();
    let dst = k("dst ü+x");
    let id = store
        .create_multipart(&dst, &PutOptions::default())
        .await
        .unwrap();
    let uploads = store.list_multipart_uploads(&dir).await.unwrap();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(
        (uploads[0].key.as_str(), uploads[0].upload_id.as_str()),
        (dst.as_str(), id.as_str())
    );
    assert!(uploads[0].initiated > UNIX_EPOCH);
    // Part 1: a copied range (5 MiB + 1 byte, not at the start); part 2: new bytes.
    let range = 1_000..(5 << 20) + 1_001;
    let before = store.stats();
    let e1 = store
        .upload_part_copy(&dst, &id, 1, &k("source file"), None, range.clone())
        .await
        .unwrap();
    let after = store.stats();
    assert_eq!(after.bytes_sent, before.bytes_sent, "a copy sends no data");
    assert_eq!(after.count("UploadPartCopy"), 1);
    let tail = Bytes::from_static(b"and a new part at the end");
    let e2 = store.upload_part(&dst, &id, 2, tail.clone()).await.unwrap();
    // A range past the end of the source: S3 refuses it (InvalidRange); Garage clamps it
    // to the object, as for a GET (the part is not used below).
    let past_end = store
        .upload_part_copy(&dst, &id, 3, &k("source file"), None, 0..(7 << 20))
        .await;
    eprintln!("range past the end: {past_end:?}");
    assert!(
        matches!(past_end, Ok(_) | Err(StoreError::InvalidRange)),
        "{past_end:?}"
    );
    // A missing source.
    let e = store
        .upload_part_copy(&dst, &id, 3, &k("missing"), None, 0..1)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound), "{e:?}");
    store
        .complete_multipart(
            &dst,
            &id,
            vec![
                CompletedPart {
                    number: 1,
                    etag: e1,
                },
                CompletedPart {
                    number: 2,
                    etag: e2,
                },
            ],
            None,
        )
        .await
        .unwrap();
    let want: Vec<u8> = [&src[range.start as usize..range.end as usize], &tail[..]].concat();
    let info = store.head(&dst).await.unwrap();
    assert_eq!(info.size, want.len() as u64);
    let got = store.get_range(&dst, 0..info.size).await.unwrap();
    assert!(got[..] == want[..], "assembled object differs");
    assert!(store.list_multipart_uploads(&dir).await.unwrap().is_empty());
    eprintln!(
        "UploadPartCopy: ok ({} bytes); stats {:?}",
        want.len(),
        store.stats()
    );
    for o in list_all(&store, &dir).await.unwrap() {
        store.delete(&o.key).await.unwrap();
    }
}

fn live_settings() -> S3Settings {
    settings_from(|name| match std::env::var(name) {
        Ok(v) => v,
        Err(_) if name == "AWS_REGION" => "us-east-1".into(),
        Err(_) => panic!("{name} not set"),
    })
}

/// Settings of a test server whose bucket, endpoint and keys `var` gives by their usual
/// environment names, with short retries for tests.
pub(in crate::store) fn settings_from(var: impl Fn(&str) -> String) -> S3Settings {
    S3Settings {
        bucket: var("S3_BUCKET"),
        region: Some(var("AWS_REGION")),
        endpoint: Some(var("AWS_ENDPOINT_URL")),
        path_style: true,
        access_key: Some(var("AWS_ACCESS_KEY_ID")),
        secret_key: Some(var("AWS_SECRET_ACCESS_KEY")),
        session_token: None,
        profile: None,
        retry: RetryPolicy {
            retry_timeout: Duration::from_secs(60),
            max_retries: Some(2),
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
            request_timeout: Duration::from_secs(20),
        },
        sse_c_key: None,
    }
}
