//! POSIX where S3 allows it, on a real mount, as specifications: a file unlinked (or renamed
//! over) while open stays usable through its descriptors until the last close and leaves
//! nothing in the bucket.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};

use common::*;

fn mount(server: &Server, prefix: &str) -> Mount {
    Mount::new(
        server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &[],
    )
}

/// Reads the whole file through `f` from its start.
fn read_back(f: &mut File) -> Vec<u8> {
    let mut out = Vec::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut out).unwrap();
    out
}

/// The scratch-file pattern: open, unlink, keep using the descriptor. Every use works (read,
/// write, ftruncate, fstat, fchmod) until the last close, and nothing is left in the bucket.
fn use_after_unlink(f: &mut File, path: &std::path::Path, before: &[u8]) {
    assert!(!path.exists(), "the name is gone");
    assert_eq!(read_back(f), before, "read after unlink");
    f.write_all_at(b"MORE", before.len() as u64).unwrap();
    let mut expected = before.to_vec();
    expected.extend_from_slice(b"MORE");
    assert_eq!(read_back(f), expected, "read of a write after unlink");
    f.set_len(3).unwrap();
    assert_eq!(read_back(f), &expected[..3], "ftruncate after unlink");
    let meta = f.metadata().unwrap();
    assert_eq!(meta.len(), 3, "fstat after unlink");
    assert_eq!(meta.nlink(), 0, "an unlinked file has no links");
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .unwrap();
    assert_eq!(
        f.metadata().unwrap().mode() & 0o7777,
        0o600,
        "fchmod after unlink"
    );
    f.sync_all().unwrap();
}

#[test]
fn a_stored_file_unlinked_while_open_stays_usable_until_closed() {
    let server = Server::running();
    let prefix = server.unique_prefix("open-unlink");
    let m = mount(&server, &prefix);
    let path = m.path("scratch");
    let data = random_bytes(300_000);
    fs::write(&path, &data).unwrap();
    let key = format!("{prefix}/scratch");
    assert!(server.head(&key).is_some(), "stored at close");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut reader = File::open(&path).unwrap();
    fs::remove_file(&path).unwrap();
    assert!(server.head(&key).is_none(), "unlink deletes the object");
    use_after_unlink(&mut f, &path, &data);
    assert_eq!(
        read_back(&mut reader),
        &data[..3],
        "another descriptor sees it too"
    );
    drop(f);
    drop(reader);
    m.unmount();
    assert_eq!(server.keys(&format!("{prefix}/")), Vec::<String>::new());
}

#[test]
fn a_new_file_unlinked_while_being_written_is_never_uploaded() {
    let server = Server::running();
    let prefix = server.unique_prefix("open-unlink-new");
    let m = mount(&server, &prefix);
    let path = m.path("tmp");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    f.write_all(b"scratch data").unwrap();
    fs::remove_file(&path).unwrap();
    use_after_unlink(&mut f, &path, b"scratch data");
    drop(f);
    m.unmount();
    assert_eq!(server.keys(&format!("{prefix}/")), Vec::<String>::new());
}

#[test]
fn a_file_replaced_by_a_rename_while_open_stays_usable_until_closed() {
    let server = Server::running();
    let prefix = server.unique_prefix("open-replaced");
    let m = mount(&server, &prefix);
    let (old, new) = (m.path("f"), m.path("f.new"));
    let data = random_bytes(200_000);
    fs::write(&old, &data).unwrap();
    let mut f = File::open(&old).unwrap();
    fs::write(&new, b"replacement").unwrap();
    fs::rename(&new, &old).unwrap();
    assert_eq!(fs::read(&old).unwrap(), b"replacement");
    assert_eq!(
        read_back(&mut f),
        data,
        "the replaced file through its descriptor"
    );
    drop(f);
    m.unmount();
    assert_eq!(server.get(&format!("{prefix}/f")).unwrap(), b"replacement");
    assert_eq!(
        server.keys(&format!("{prefix}/")),
        vec![format!("{prefix}/f")]
    );
}

/// The longest key `server` holds, as `bucketfs check` measures it (1024 on S3; Garage on
/// LMDB holds fewer and answers longer keys with a 503).
fn measured_key_limit(server: &Server, prefix: &str) -> usize {
    let out = bucketfs(
        server,
        &[
            "check".into(),
            format!("s3://{}/{prefix}", server.bucket_name()),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("key length"))
        .unwrap_or_else(|| panic!("no key length line:\n{text}"));
    let number = |after: &str| -> usize {
        let rest = &line[line.find(after).expect(line) + after.len()..];
        rest.split(' ').next().unwrap().parse().expect(line)
    };
    if line.contains("SHORTER") {
        number("at most ")
    } else {
        number("keys of ")
    }
}

/// A path whose key would be longer than the server holds fails with ENAMETOOLONG at mkdir,
/// create, symlink and rename (not EIO after a minute of retries, and nothing is stored);
/// one that just fits works.
fn long_paths_are_refused_with_enametoolong(server: &Server, test: &str) -> usize {
    let prefix = server.unique_prefix(test);
    let limit = measured_key_limit(server, &prefix);
    let m = Mount::new(
        server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--max-key-length", &limit.to_string()],
    );
    let segment = "d".repeat(200);
    let mut deep = m.dir.clone();
    let mut used = prefix.len() + 1; // "PREFIX/"
    while limit - used > 250 {
        deep.push(&segment);
        used += 201;
    }
    fs::create_dir_all(&deep).unwrap();
    let fits = "f".repeat(limit - used);
    let too_long = "f".repeat(limit - used + 1);
    let too_long_dir = "g".repeat(limit - used); // + the '/' of its marker
    let enametoolong = |r: std::io::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG), "{what}: {e}");
    };
    fs::write(deep.join(&fits), b"just fits").unwrap();
    enametoolong(fs::write(deep.join(&too_long), b"x"), "create");
    enametoolong(fs::create_dir(deep.join(&too_long_dir)), "mkdir");
    enametoolong(
        std::os::unix::fs::symlink("t", deep.join(&too_long)),
        "symlink",
    );
    enametoolong(
        fs::rename(deep.join(&fits), deep.join(&too_long)),
        "rename of a file",
    );
    fs::create_dir(m.path("short")).unwrap();
    fs::write(m.path("short/x"), b"x").unwrap();
    enametoolong(
        fs::rename(m.path("short"), deep.join("s".repeat(limit - used - 1))),
        "rename of a directory whose keys below would be too long",
    );
    assert_eq!(
        fs::read(m.path("short/x")).unwrap(),
        b"x",
        "the directory stays"
    );
    drop(m);
    let keys = server.keys(&format!("{prefix}/"));
    assert!(keys.iter().any(|k| k.ends_with(&fits)), "{keys:?}");
    assert!(keys.iter().all(|k| k.len() <= limit), "{keys:?}");
    limit
}

#[test]
fn a_path_longer_than_garage_holds_is_refused_with_enametoolong() {
    long_paths_are_refused_with_enametoolong(&Server::running(), "long-keys");
}

#[test]
fn a_path_longer_than_1024_bytes_is_refused_with_enametoolong() {
    let limit = long_paths_are_refused_with_enametoolong(&Server::moto(), "long-keys-moto");
    assert_eq!(limit, 1024, "moto holds keys as long as S3 does");
}

/// An object stored by an AWS file service (DataSync, FSx for Lustre) shows the mode, owner
/// and times of its `file-*` metadata; with `--aws-file-metadata` a chmod and a touch are
/// stored in those keys too (beside the s3fs ones).
#[test]
fn the_aws_file_services_metadata_is_read_and_written_when_asked() {
    let server = Server::running();
    let prefix = server.unique_prefix("aws-meta");
    server.put_with_metadata(
        &format!("{prefix}/from-datasync"),
        b"data",
        &[
            ("file-permissions", "0100604"),
            ("file-owner", "1234"),
            ("file-group", "2345"),
            ("file-mtime", "1595002920123456789ns"),
        ],
    );
    let m = Mount::new(
        &server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &["--aws-file-metadata"],
    );
    let meta = fs::metadata(m.path("from-datasync")).unwrap();
    assert_eq!(meta.mode(), 0o100604);
    assert_eq!((meta.uid(), meta.gid()), (1234, 2345));
    assert_eq!(
        (meta.mtime(), meta.mtime_nsec()),
        (1_595_002_920, 123_456_789)
    );
    fs::write(m.path("mine"), b"x").unwrap();
    fs::set_permissions(m.path("mine"), fs::Permissions::from_mode(0o640)).unwrap();
    set_times(&m.path("mine"), 1_700_000_000, 5).unwrap();
    m.unmount();
    let head = server.head_full(&format!("{prefix}/mine")).unwrap();
    let stored = head.metadata.unwrap_or_default();
    let get = |k: &str| stored.get(k).map(String::as_str);
    assert_eq!(get("file-permissions"), Some("0100640"), "{stored:?}");
    assert_eq!(get("mode"), Some("33184"), "the s3fs key too: {stored:?}");
    assert_eq!(
        get("file-mtime"),
        Some("1700000000000000005ns"),
        "{stored:?}"
    );
    assert!(
        get("file-owner").is_some() && get("file-group").is_some(),
        "{stored:?}"
    );
}

fn times(path: &std::path::Path) -> ((i64, i64), (i64, i64)) {
    let m = fs::symlink_metadata(path).unwrap();
    ((m.mtime(), m.mtime_nsec()), (m.ctime(), m.ctime_nsec()))
}

fn later() {
    std::thread::sleep(std::time::Duration::from_millis(20));
}

/// ctime and directory times move as on a local disk: a directory's mtime and ctime when
/// an entry comes, goes or is renamed in or out; a file's ctime (not its mtime) at chmod and
/// rename. What is stored anyway survives a remount: the chmod's ctime, the mtime it did not
/// change, and a directory mtime set by utimens.
#[test]
fn ctime_and_directory_times_move_as_on_a_local_disk() {
    let server = Server::running();
    let prefix = server.unique_prefix("ctime");
    let m = mount(&server, &prefix);
    let (d, e) = (m.path("d"), m.path("e"));
    fs::create_dir(&d).unwrap();
    fs::create_dir(&e).unwrap();
    let (d_mtime, d_ctime) = times(&d);
    later();
    fs::write(d.join("f"), b"data").unwrap();
    let (new_mtime, new_ctime) = times(&d);
    assert!(new_mtime > d_mtime && new_ctime > d_ctime, "a new entry");
    let (f_mtime, f_ctime) = times(&d.join("f"));
    later();
    fs::set_permissions(d.join("f"), fs::Permissions::from_mode(0o600)).unwrap();
    let (mtime, chmod_ctime) = times(&d.join("f"));
    assert!(chmod_ctime > f_ctime, "chmod changes the ctime");
    assert_eq!(mtime, f_mtime, "and not the mtime");
    let (e_mtime, _) = times(&e);
    let (d_mtime, _) = times(&d);
    later();
    fs::rename(d.join("f"), e.join("g")).unwrap();
    assert!(times(&d).0 > d_mtime, "renamed out");
    assert!(times(&e).0 > e_mtime, "renamed in");
    assert!(
        times(&e.join("g")).1 > chmod_ctime,
        "the renamed file's ctime"
    );
    assert_eq!(times(&e.join("g")).0, f_mtime, "not its mtime");
    set_times(&e, 1_600_000_000, 7).unwrap();
    assert_eq!(times(&e).0, (1_600_000_000, 7), "utimens stands");
    m.unmount();

    let m = mount(&server, &prefix);
    let (mtime, ctime) = times(&m.path("e/g"));
    assert_eq!(mtime, f_mtime, "the mtime survives chmod and rename");
    assert_eq!(ctime, chmod_ctime, "the stored ctime is the chmod's");
    assert_eq!(times(&m.path("e")).0, (1_600_000_000, 7));
}

/// A FIFO made on the mount (mkfifo) is a FIFO: what one process writes another reads,
/// through the kernel (never through S3), and it is still a FIFO after a remount.
#[test]
fn a_fifo_on_the_mount_carries_data_between_processes() {
    let server = Server::running();
    let prefix = server.unique_prefix("fifo");
    let m = mount(&server, &prefix);
    let fifo = m.path("pipe");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::write(fifo, b"through the pipe").unwrap())
    };
    assert_eq!(fs::read(&fifo).unwrap(), b"through the pipe");
    writer.join().unwrap();
    m.unmount();
    assert_eq!(
        server.get(&format!("{prefix}/pipe")).unwrap(),
        b"",
        "an empty object"
    );
    let m = mount(&server, &prefix);
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::metadata(m.path("pipe")).unwrap().file_type().is_fifo());
}
