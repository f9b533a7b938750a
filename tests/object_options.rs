//! Object options reach the server: SSE, canned ACL, storage class, Cache-Control and the
//! Content-Type from the extension, on PUT, multipart and rename (copy), with per-prefix rules.
//! Garage ignores SSE and ACL headers, so these run against moto, which records them. SSE-C,
//! which moto ignores and Garage enforces, runs against Garage. No secret ever reaches a log.

mod common;

use std::fs;
use std::process::Command;

use common::*;

fn acl_of(server: &Server, key: &str) -> String {
    // moto answers unsigned requests; GetObjectAcl is not in rust-s3.
    let url = format!("{}/{}/{key}?acl", server.endpoint(), server.bucket_name());
    let out = Command::new("curl").args(["-s", &url]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn mount_options_and_prefix_rules_reach_every_new_object() {
    let server = Server::moto();
    let prefix = server.unique_prefix("options");
    let cfg = tempfile::NamedTempFile::new().unwrap();
    fs::write(
        cfg.path(),
        format!(
            "[[rules]]\nprefix = \"{prefix}/archive/\"\nstorage_class = \"GLACIER_IR\"\nacl = \"private\"\n"
        ),
    )
    .unwrap();
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &[
            "--config",
            cfg.path().to_str().unwrap(),
            "--sse",
            "AES256",
            "--acl",
            "public-read",
            "--storage-class",
            "STANDARD_IA",
            "--cache-control",
            "max-age=60",
            "--part-size",
            "5MiB",
        ],
    );
    fs::write(m.path("page.html"), b"<p>hi</p>").unwrap();
    fs::write(m.path("big.bin"), random_bytes(6 << 20)).unwrap(); // multipart
    fs::create_dir(m.path("archive")).unwrap();
    fs::write(m.path("archive/old.txt"), b"cold").unwrap();
    fs::write(m.path("draft"), b"to be renamed").unwrap();
    fs::rename(m.path("draft"), m.path("renamed.txt")).unwrap();

    for name in ["page.html", "big.bin", "renamed.txt"] {
        let h = server.head_full(&format!("{prefix}/{name}")).unwrap();
        assert_eq!(
            h.server_side_encryption.as_deref(),
            Some("AES256"),
            "{name}"
        );
        assert_eq!(h.storage_class.as_deref(), Some("STANDARD_IA"), "{name}");
        assert_eq!(h.cache_control.as_deref(), Some("max-age=60"), "{name}");
        let acl = acl_of(&server, &format!("{prefix}/{name}"));
        assert!(acl.contains("AllUsers"), "{name} is public-read: {acl}");
    }
    let page = server.head_full(&format!("{prefix}/page.html")).unwrap();
    assert_eq!(page.content_type.as_deref(), Some("text/html"));
    let big = server.head_full(&format!("{prefix}/big.bin")).unwrap();
    assert_eq!(
        big.content_type.as_deref(),
        Some("application/octet-stream")
    );

    let old = server
        .head_full(&format!("{prefix}/archive/old.txt"))
        .unwrap();
    assert_eq!(
        old.storage_class.as_deref(),
        Some("GLACIER_IR"),
        "the rule wins"
    );
    assert_eq!(
        old.server_side_encryption.as_deref(),
        Some("AES256"),
        "kept from the mount"
    );
    assert!(!acl_of(&server, &format!("{prefix}/archive/old.txt")).contains("AllUsers"));
}

#[test]
fn sse_c_objects_need_the_key_and_no_secret_is_logged() {
    let server = Server::running();
    let prefix = server.unique_prefix("ssec");
    let dir = tempfile::tempdir().unwrap();
    let key_bytes: Vec<u8> = random_bytes(32);
    let key_file = dir.path().join("sse-c.key");
    fs::write(&key_file, &key_bytes).unwrap();
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    let cache = dir.path().join("cache");
    let cache_arg = cache.display().to_string();
    let m = Mount::new(
        &server,
        &source,
        &[
            "--sse-c-key-file",
            key_file.to_str().unwrap(),
            "--cache-dir",
            &cache_arg,
            "--part-size",
            "5MiB",
        ],
    );
    let data = random_bytes(6 << 20);
    fs::write(m.path("secret.bin"), &data).unwrap();
    fs::write(m.path("small.txt"), b"hello").unwrap();
    fs::rename(m.path("small.txt"), m.path("moved.txt")).unwrap();
    assert_eq!(
        sha256(&fs::read(m.path("secret.bin")).unwrap()),
        sha256(&data)
    );
    assert_eq!(fs::read(m.path("moved.txt")).unwrap(), b"hello");
    let log = m.log_after_unmount();

    // Without the key the object cannot be read, directly or through a mount.
    let raw = server.try_get(&format!("{prefix}/moved.txt"));
    assert!(raw.is_err(), "a GET without the key fails: {raw:?}");
    let m = Mount::new(&server, &source, &["--cache-dir", &cache_arg]);
    let err = fs::read(m.path("moved.txt")).unwrap_err();
    assert_ne!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
    let log2 = m.log_after_unmount();
    assert!(
        log2.contains("sse-c-key-file"),
        "the log says what to do: {log2}"
    );

    use base64::Engine;
    let encode = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    for secret in [
        server.env["AWS_SECRET_ACCESS_KEY"].clone(),
        encode(&key_bytes),
        key_bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    ] {
        assert!(!log.contains(&secret), "a secret reached the log");
        assert!(!log2.contains(&secret), "a secret reached the log");
    }
}
