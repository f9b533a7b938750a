//! A mount shared with `--allow-other` enforces permissions (default_permissions): another
//! user may read what the mode lets them read and nothing more, and a chmod changes that.
//! Needs the `bucketfs-test` user that scripts/install-deps.sh creates, and root to mount
//! for it.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

const USER: &str = "bucketfs-test";

/// Runs `sh -c script` as the test user; true when it succeeds.
fn as_user(script: &str, path: &Path) -> bool {
    let out = Command::new("runuser")
        .args(["-u", USER, "--", "sh", "-c", script, "sh"])
        .arg(path)
        .output()
        .expect("runuser (util-linux) runs");
    out.status.success()
}

#[test]
fn other_users_get_exactly_what_the_modes_allow() {
    // SAFETY: no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "run the integration tests as root (scripts/test.sh): mounting for other users needs it"
    );
    let exists = Command::new("id")
        .arg(USER)
        .output()
        .unwrap()
        .status
        .success();
    assert!(
        exists,
        "user {USER} is missing: run scripts/install-deps.sh"
    );

    let server = Server::running();
    let prefix = server.unique_prefix("perms");
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--allow-other"],
    );
    let (private, shared) = (m.path("private"), m.path("shared"));
    fs::write(&private, b"secret").unwrap();
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(&shared, b"hello").unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o644)).unwrap();

    assert!(
        as_user("cat \"$1\" >/dev/null", &shared),
        "0644: others read"
    );
    assert!(
        !as_user("cat \"$1\" >/dev/null", &private),
        "0600: others do not read"
    );
    assert!(
        !as_user("echo x >> \"$1\"", &shared),
        "0644: others do not write"
    );
    assert!(
        !as_user("echo x > \"$1/new\"", &m.dir),
        "a 0755 root-owned directory: others do not create in it"
    );
    assert!(
        !as_user("chmod 666 \"$1\"", &shared),
        "only the owner chmods"
    );

    fs::set_permissions(&shared, fs::Permissions::from_mode(0o666)).unwrap();
    assert!(
        as_user("echo more >> \"$1\"", &shared),
        "0666: others write"
    );
    assert_eq!(fs::read(&shared).unwrap(), b"hellomore\n");
}

/// Mounts `prefix` afresh with `extra` flags plus `--allow-other` and the default TTLs.
fn fresh_mount(server: &Server, prefix: &str, extra: &[&str]) -> Mount {
    let mut args = vec!["--allow-other", "--metadata-ttl", "1"];
    args.extend_from_slice(extra);
    Mount::new(
        server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &args,
    )
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn stored_modes_survive_a_listing_made_for_missing_names_on_a_fresh_mount() {
    // Two missing names make bucketfs list the directory; a listing carries no metadata, and
    // the files it names must still show their stored modes — not the default 0644, which
    // would let another user read a 0600 file and stop a 0755 script from running.
    let server = Server::running();
    let prefix = server.unique_prefix("listed-modes");
    let m = fresh_mount(&server, &prefix, &[]);
    fs::create_dir(m.path("nl")).unwrap();
    fs::write(m.path("nl/run.sh"), b"#!/bin/sh\necho ok\n").unwrap();
    fs::set_permissions(m.path("nl/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(m.path("nl/private"), b"secret").unwrap();
    fs::set_permissions(m.path("nl/private"), fs::Permissions::from_mode(0o600)).unwrap();
    m.unmount();

    let m = fresh_mount(&server, &prefix, &[]);
    for missing in ["x1", "x2"] {
        assert!(fs::symlink_metadata(m.path("nl").join(missing)).is_err());
    }
    assert_eq!(mode_of(&m.path("nl/run.sh")), 0o755);
    assert_eq!(mode_of(&m.path("nl/private")), 0o600);
    let ran = Command::new(m.path("nl/run.sh")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "ok\n");
    assert!(
        !as_user("cat \"$1\" >/dev/null", &m.path("nl/private")),
        "0600: others do not read, even on a fresh mount"
    );
}

#[test]
fn names_only_listings_still_show_ls_l_the_stored_modes() {
    let server = Server::running();
    let prefix = server.unique_prefix("no-listing-meta");
    let m = fresh_mount(&server, &prefix, &[]);
    fs::write(m.path("private"), b"secret").unwrap();
    fs::set_permissions(m.path("private"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(m.path("d")).unwrap();
    fs::set_permissions(m.path("d"), fs::Permissions::from_mode(0o700)).unwrap();
    m.unmount();

    let m = fresh_mount(&server, &prefix, &[]);
    let out = Command::new("ls").arg("-ln").arg(&m.dir).output().unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} in {listing}"))
            .to_string()
    };
    assert!(line("private").starts_with("-rw------- "), "{listing}");
    assert!(line("d").starts_with("drwx------ "), "{listing}");
    assert!(!as_user("cat \"$1\" >/dev/null", &m.path("private")));
}
