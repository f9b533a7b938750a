//! A real bucketfs mount against the real S3 server: bytes, listings, directories, renames,
//! read-only and prefix mounts, each checked both through the mount and in the bucket.

mod common;

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::time::Duration;

use common::*;

const MIB: usize = 1 << 20;

fn mount_prefix(server: &Server, test: &str, extra: &[&str]) -> (Mount, String) {
    let prefix = server.unique_prefix(test);
    let source = format!("s3://{}/{prefix}", server.bucket_name());
    (Mount::new(server, &source, extra), prefix)
}

#[test]
fn files_of_every_size_class_round_trip_through_mount_and_bucket() {
    let server = Server::running();
    let (m, prefix) = mount_prefix(&server, "sizes", &[]);
    for (name, len) in [
        ("zero", 0),
        ("one", 1),
        ("five-mib-plus-one", 5 * MIB + 1),
        ("hundred-mib", 100 * MIB),
    ] {
        // Written through the mount: the bucket holds the same bytes after close.
        let data = random_bytes(len);
        fs::write(m.path(name), &data).unwrap();
        let stored = server
            .get(&format!("{prefix}/{name}"))
            .unwrap_or_else(|| panic!("{name} is not in the bucket after close"));
        assert_eq!(
            sha256(&stored),
            sha256(&data),
            "{name}: bucket bytes differ"
        );
        assert_eq!(fs::metadata(m.path(name)).unwrap().len(), len as u64);

        // Put directly into the bucket: the mount reads the same bytes (a new object of
        // another client shows within the listing TTL, as the directory may just have been
        // listed).
        let direct = random_bytes(len);
        server.put(&format!("{prefix}/direct-{name}"), &direct);
        let path = m.path(&format!("direct-{name}"));
        assert!(
            eventually(Duration::from_secs(5), || path.exists()),
            "direct-{name} shows up"
        );
        let read = fs::read(&path).unwrap();
        assert_eq!(
            sha256(&read),
            sha256(&direct),
            "direct-{name}: mount bytes differ"
        );
    }
}

#[test]
fn a_directory_of_2500_entries_lists_completely() {
    let server = Server::running();
    let prefix = server.unique_prefix("big-dir");
    let keys: Vec<String> = (0..2500).map(|i| format!("{prefix}/d/f{i:05}")).collect();
    server.put_many(&keys, b"x");
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &[],
    );
    let mut names: Vec<String> = fs::read_dir(m.path("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2500);
    assert_eq!(names[0], "f00000");
    assert_eq!(names[2499], "f02499");
}

#[test]
fn objects_put_directly_into_the_bucket_appear_in_the_mount() {
    let server = Server::running();
    let (m, prefix) = mount_prefix(&server, "appear", &[]);
    assert!(fs::read_dir(&m.dir).unwrap().next().is_none());
    server.put(&format!("{prefix}/later.txt"), b"hello");
    server.put(&format!("{prefix}/sub/deep.txt"), b"deep");
    assert!(
        eventually(Duration::from_secs(5), || m.path("later.txt").exists()),
        "a new object shows up within the metadata TTL"
    );
    assert_eq!(fs::read(m.path("later.txt")).unwrap(), b"hello");
    assert!(
        m.path("sub").is_dir(),
        "an implicit directory is a directory"
    );
    assert_eq!(fs::read(m.path("sub/deep.txt")).unwrap(), b"deep");
}

#[test]
fn mkdir_writes_a_marker_and_rmdir_refuses_non_empty_directories() {
    let server = Server::running();
    let (m, prefix) = mount_prefix(&server, "dirs", &[]);
    fs::create_dir(m.path("d")).unwrap();
    let (content_type, size) = server.head(&format!("{prefix}/d/")).expect("marker object");
    assert_eq!(content_type.as_deref(), Some("application/x-directory"));
    assert_eq!(size, 0);
    assert_eq!(
        fs::create_dir(m.path("d")).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );

    fs::write(m.path("d/f"), b"x").unwrap();
    let err = fs::remove_dir(m.path("d")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));

    fs::remove_file(m.path("d/f")).unwrap();
    assert_eq!(
        server.get(&format!("{prefix}/d/f")),
        None,
        "unlink deletes the object"
    );
    fs::remove_dir(m.path("d")).unwrap();
    assert!(server.keys(&format!("{prefix}/")).is_empty());
    assert!(!m.path("d").exists());
}

#[test]
fn rename_moves_a_file_and_a_directory_of_50_files() {
    let server = Server::running();
    let (m, prefix) = mount_prefix(&server, "rename", &[]);
    fs::write(m.path("a.txt"), b"file a").unwrap();
    fs::rename(m.path("a.txt"), m.path("b.txt")).unwrap();
    assert_eq!(server.get(&format!("{prefix}/a.txt")), None);
    assert_eq!(server.get(&format!("{prefix}/b.txt")).unwrap(), b"file a");
    assert_eq!(fs::read(m.path("b.txt")).unwrap(), b"file a");

    fs::create_dir(m.path("src")).unwrap();
    for i in 0..50 {
        fs::write(m.path(&format!("src/f{i}")), format!("content {i}")).unwrap();
    }
    fs::rename(m.path("src"), m.path("dst")).unwrap();
    assert!(server.keys(&format!("{prefix}/src/")).is_empty());
    let moved = server.keys(&format!("{prefix}/dst/"));
    assert_eq!(moved.len(), 51, "50 files and the marker: {moved:?}");
    for i in 0..50 {
        assert_eq!(
            fs::read_to_string(m.path(&format!("dst/f{i}"))).unwrap(),
            format!("content {i}")
        );
    }
    assert!(!m.path("src").exists());
}

#[test]
fn fsync_returns_once_the_object_is_in_the_bucket() {
    let server = Server::running();
    let (m, prefix) = mount_prefix(&server, "fsync", &[]);
    let mut f = fs::File::create(m.path("synced")).unwrap();
    f.write_all(b"durable").unwrap();
    f.sync_all().unwrap();
    assert_eq!(
        server.get(&format!("{prefix}/synced")).unwrap(),
        b"durable",
        "in the bucket before close"
    );
    drop(f);
}

#[test]
fn overwrite_append_and_truncate_change_the_object() {
    let server = Server::running();
    let (m, prefix) = mount_prefix(&server, "modify", &[]);
    let key = format!("{prefix}/f");
    server.put(&key, b"0123456789");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("f"))
        .unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(4)).unwrap();
    f.write_all(b"ab").unwrap();
    drop(f);
    assert_eq!(server.get(&key).unwrap(), b"0123ab6789");

    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.path("f"))
        .unwrap();
    f.write_all(b"!").unwrap();
    drop(f);
    assert_eq!(server.get(&key).unwrap(), b"0123ab6789!");

    fs::OpenOptions::new()
        .write(true)
        .open(m.path("f"))
        .unwrap()
        .set_len(3)
        .unwrap();
    assert_eq!(server.get(&key).unwrap(), b"012");
}

#[test]
fn names_longer_than_255_bytes_are_refused() {
    let server = Server::running();
    let (m, _) = mount_prefix(&server, "namelen", &[]);
    let err = fs::write(m.path(&"n".repeat(256)), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));
}

#[test]
fn a_read_only_mount_refuses_writes_with_erofs() {
    let server = Server::running();
    let prefix = server.unique_prefix("ro");
    server.put(&format!("{prefix}/existing"), b"keep");
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--read-only"],
    );
    assert_eq!(fs::read(m.path("existing")).unwrap(), b"keep");
    let erofs = Some(libc::EROFS);
    assert_eq!(
        fs::write(m.path("new"), b"x").unwrap_err().raw_os_error(),
        erofs
    );
    assert_eq!(
        fs::OpenOptions::new()
            .write(true)
            .open(m.path("existing"))
            .unwrap_err()
            .raw_os_error(),
        erofs
    );
    assert_eq!(
        fs::remove_file(m.path("existing"))
            .unwrap_err()
            .raw_os_error(),
        erofs
    );
    assert_eq!(
        fs::create_dir(m.path("d")).unwrap_err().raw_os_error(),
        erofs
    );
    assert_eq!(
        server.keys(&format!("{prefix}/")),
        vec![format!("{prefix}/existing")]
    );
}

#[test]
fn a_prefix_mount_sees_only_its_prefix_and_writes_there() {
    let server = Server::running();
    let base = server.unique_prefix("prefix");
    server.put(&format!("{base}/inside/a"), b"in");
    server.put(&format!("{base}/outside/b"), b"out");
    server.put(&format!("{base}/insider"), b"sibling with a longer name");
    let m = Mount::new(
        &server,
        &format!("s3://{}/{base}/inside", server.bucket_name()),
        &[],
    );
    let names: Vec<String> = fs::read_dir(&m.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["a".to_string()]);
    fs::write(m.path("new"), b"n").unwrap();
    assert_eq!(server.get(&format!("{base}/inside/new")).unwrap(), b"n");
}

#[test]
fn keys_that_cannot_be_names_never_hide_their_siblings() {
    let server = Server::running();
    let prefix = server.unique_prefix("oddkeys");
    // (Keys with `.` segments are covered by the unit tests: HTTP clients normalise them away.)
    for key in ["a//b", "both", "both/child", "dirdata/", "plain"] {
        server.put(&format!("{prefix}/{key}"), b"data");
    }
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &[],
    );
    let mut names: Vec<String> = fs::read_dir(&m.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "both", "dirdata", "plain"]);
    assert!(
        m.path("both").is_dir(),
        "a key that is both object and prefix is a directory"
    );
    assert!(
        m.path("dirdata").is_dir(),
        "a dir/ object with data is a directory"
    );
    assert_eq!(
        fs::read_dir(m.path("a")).unwrap().count(),
        0,
        "a//b has an empty segment"
    );
    assert_eq!(fs::read(m.path("plain")).unwrap(), b"data");
}

#[test]
fn objects_without_stored_metadata_show_the_mount_defaults() {
    let server = Server::running();
    let (m, prefix) = mount_prefix(
        &server,
        "attrs",
        &[
            "--uid",
            "1234",
            "--gid",
            "4321",
            "--file-mode",
            "0600",
            "--dir-mode",
            "0700",
        ],
    );
    server.put(&format!("{prefix}/f"), b"12345");
    server.put(&format!("{prefix}/d/inner"), b"x");
    let f = fs::metadata(m.path("f")).unwrap();
    assert_eq!(
        (f.len(), f.uid(), f.gid(), f.mode() & 0o7777),
        (5, 1234, 4321, 0o600)
    );
    let age = std::time::SystemTime::now()
        .duration_since(f.modified().unwrap())
        .unwrap_or_default();
    assert!(
        age < Duration::from_secs(120),
        "mtime is Last-Modified: {age:?}"
    );
    assert_eq!(fs::metadata(m.path("d")).unwrap().mode() & 0o7777, 0o700);
    let st = nix_statfs(&m.dir);
    assert!(st > 0, "statfs reports space");
}

#[test]
fn a_created_file_belongs_to_its_creator_with_the_mode_it_asked_for() {
    let server = Server::running();
    let (m, _) = mount_prefix(
        &server,
        "creator",
        &["--uid", "1234", "--file-mode", "0600"],
    );
    let path = m.path("f");
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&path)
        .unwrap();
    drop(file);
    let f = fs::metadata(&path).unwrap();
    // SAFETY: no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    assert_eq!((f.uid(), f.gid()), (uid, gid));
    assert_eq!(f.mode() & 0o7777, 0o640 & !umask());
}

/// The process's umask (read by setting it and putting it back).
fn umask() -> u32 {
    // SAFETY: umask has no preconditions; the old value is restored at once.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old as u32
    }
}

fn nix_statfs(path: &std::path::Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bavail
}
