//! The bucket's region found by itself (issue 18), against moto: moto answers HeadBucket
//! with `x-amz-bucket-region` (HTTP 200) for a bucket created with a LocationConstraint.
//! moto takes requests signed for any region, so these show that the region is asked,
//! reported and logged; that the requests after it are signed for it is checked on the wire
//! in `src/store/s3/tests_region.rs`.

mod common;

use std::fs;

use common::*;

/// A bucket of this test's own on moto, in eu-west-2.
fn bucket_in_eu_west_2(test: &str) -> Server {
    let name = format!("bucketfs-{test}-{:08x}", rand::random::<u32>());
    Server::moto().new_bucket_in(&name, "eu-west-2")
}

#[test]
fn check_with_no_region_reports_the_region_the_server_names() {
    let server = bucket_in_eu_west_2("region-check");
    let source = format!("s3://{}", server.bucket_name());
    let out = bucketfs(&server, &["check".into(), source.clone()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("ok    region: eu-west-2 (configured)\n"),
        "AWS_REGION names it: {stdout}"
    );

    let server = server.without_region();
    let out = bucketfs(&server, &["check".into(), source]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "ok    region: eu-west-2 (found: the x-amz-bucket-region header of the answer to \
             HeadBucket (HTTP 200))\n"
        ),
        "{stdout}"
    );
    server.delete_bucket();
}

#[test]
fn a_mount_with_no_region_logs_the_region_found_and_works() {
    let server = bucket_in_eu_west_2("region-mount").without_region();
    let source = format!("s3://{}", server.bucket_name());
    let mount = Mount::new(&server, &source, &[]);
    fs::write(mount.path("a.txt"), b"hello").unwrap();
    let log = mount.log_after_unmount();
    assert_eq!(server.get("a.txt").as_deref(), Some(&b"hello"[..]));
    let found = log
        .lines()
        .find(|l| l.contains("the bucket's region: found"))
        .unwrap_or_else(|| panic!("no region line in the log:\n{log}"));
    assert!(found.contains("INFO"), "{found}");
    assert!(found.contains("region=eu-west-2"), "{found}");
    server.delete("a.txt");
    server.delete_bucket();
}
