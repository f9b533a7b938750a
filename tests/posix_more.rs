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
