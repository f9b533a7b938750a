//! Tools that rename and delete within the write-back delay (git's lock-file-then-rename,
//! `cp -r` followed at once by `mv`) leave the bucket exactly as the mount shows it: a deleted
//! name has no key, a moved tree has no key left under its old name. Default write-back delay.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A mount with the default write-back delay (closed files are uploaded 0.5 s later).
fn write_back_mount(server: &Server, prefix: &str, extra: &[&str]) -> Mount {
    let mut args = vec!["--write-back-delay", "0.5"];
    args.extend_from_slice(extra);
    Mount::new(
        server,
        &format!("s3://{}/{prefix}", server.bucket_name()),
        &args,
    )
}

fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_file_replaced_by_rename_then_deleted_stays_deleted() {
    let server = Server::running();
    let prefix = server.unique_prefix("replace-delete");
    let m = write_back_mount(&server, &prefix, &[]);
    fs::create_dir(m.path("rr")).unwrap();
    fs::write(m.path("rr/f"), b"v1\n").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || server
            .get(&format!("{prefix}/rr/f"))
            .is_some()),
        "f is in the bucket"
    );
    // git: write the lock file, rename it over the ref, delete the ref — within the delay.
    sh(&m.dir, "cd rr && echo v2 > f.lock && mv f.lock f && rm f");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sh(&m.dir, "ls -A rr"), "");
    assert!(fs::read(m.path("rr/f")).is_err());
    m.unmount();
    assert_eq!(
        server.keys(&format!("{prefix}/rr/")),
        [format!("{prefix}/rr/")]
    );
    let m = write_back_mount(&server, &prefix, &[]);
    assert!(
        fs::read(m.path("rr/f")).is_err(),
        "not back after a remount"
    );
}

#[test]
fn a_tree_moved_right_after_cp_r_ends_whole_under_its_new_name() {
    let server = Server::running();
    let prefix = server.unique_prefix("mv-after-cp");
    let src = tempfile::tempdir().unwrap();
    for d in 0..10 {
        let dir = src.path().join(format!("d{d}"));
        fs::create_dir(&dir).unwrap();
        for f in 0..100 {
            fs::write(dir.join(format!("f{f}")), random_bytes(8000)).unwrap();
        }
    }
    let m = write_back_mount(&server, &prefix, &[]);
    let copy = Command::new("cp")
        .arg("-r")
        .arg(src.path())
        .arg(m.path("src"))
        .status()
        .unwrap();
    assert!(copy.success());
    fs::rename(m.path("src"), m.path("dst")).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let count = |dir: &str| {
        sh(
            &m.dir,
            &format!("find {dir} -type f 2>/dev/null | wc -l || true"),
        )
        .trim()
        .parse::<usize>()
        .unwrap()
    };
    assert_eq!((count("src"), count("dst")), (0, 1000));
    m.unmount();
    let files = |p: &str| {
        server
            .keys(&format!("{prefix}/{p}/"))
            .into_iter()
            .filter(|k| !k.ends_with('/'))
            .count()
    };
    assert_eq!((files("src"), files("dst")), (0, 1000));
    for d in 0..10 {
        for f in [0, 57, 99] {
            let rel = format!("d{d}/f{f}");
            let want = fs::read(src.path().join(&rel)).unwrap();
            assert_eq!(
                server.get(&format!("{prefix}/dst/{rel}")),
                Some(want),
                "{rel}"
            );
        }
    }
}

#[test]
fn git_history_with_renames_branch_deletes_and_gc_survives_a_remount() {
    let server = Server::running();
    let prefix = server.unique_prefix("git");
    let m = write_back_mount(&server, &prefix, &[]);
    let git = "git -c user.name=t -c user.email=t@e -c init.defaultBranch=main";
    sh(
        &m.dir,
        &format!(
            "{git} init -q repo && cd repo
             for i in $(seq 1 50); do
               echo \"line $i\" >> notes.txt
               echo \"$i\" > \"f$i.txt\"
               if [ $((i % 5)) = 0 ]; then {git} mv -k \"f$((i-1)).txt\" \"moved$i.txt\"; fi
               {git} add -A
               {git} commit -qm \"commit $i\"
               if [ $((i % 10)) = 0 ]; then {git} branch \"b$i\"; {git} branch -d \"b$i\" >/dev/null; fi
             done
             {git} branch keep && {git} branch -d keep >/dev/null
             {git} gc -q --aggressive
             {git} fsck --strict"
        ),
    );
    let log = sh(&m.path("repo"), &format!("{git} log --format=%H%s"));
    assert_eq!(log.lines().count(), 50);
    m.unmount();
    let m = write_back_mount(&server, &prefix, &[]);
    sh(&m.path("repo"), &format!("{git} fsck --strict"));
    assert_eq!(
        sh(&m.path("repo"), &format!("{git} log --format=%H%s")),
        log
    );
    let branches = sh(
        &m.path("repo"),
        &format!("{git} branch '--format=%(refname)'"),
    );
    assert_eq!(
        branches.trim(),
        "refs/heads/main",
        "deleted branches stay deleted"
    );
}
