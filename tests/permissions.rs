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
