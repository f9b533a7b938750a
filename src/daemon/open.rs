//! Opening what a mount serves, once the daemon runs where it will serve (in the foreground
//! or as the background child): the async runtime, the store (in the bucket's region, asked of
//! the server when none is configured, and probed with real requests, so a wrong key or
//! bucket is refused before mounting), this daemon's staging directory,
//! the disk cache, the registry of multipart uploads and the write-back journal. Then what an
//! earlier daemon left is settled: its stale multipart uploads are aborted, its journal is
//! replayed to the bucket before the mount shows anything, and its staging files are removed.
//! Each failure is one line for the user, which `serve` reports through `background::Ready`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use crate::cache::disk::DiskCache;
use crate::check;
use crate::config::Config;
use crate::fs::Fs;
use crate::localfile::journal::Journal;
use crate::store::ObjectStore;
use crate::upload::registry::{abort_stale, UploadRegistry};

/// What serving needs, opened and recovered. The fields drop in this order, as the locals
/// they were did: the runtime last.
pub(super) struct Opened {
    pub(super) fs: Arc<Fs>,
    /// The store `fs` uses, kept for its request counts (the metrics, the line at exit).
    pub(super) store_stats: Arc<dyn ObjectStore>,
    pub(super) journal: Arc<Journal>,
    /// This daemon's staging directory (`staging-<pid>`), removed at exit once empty.
    pub(super) staging: PathBuf,
    pub(super) rt: tokio::runtime::Runtime,
}

/// Opens the runtime, the store and the cache directory's parts, and recovers what an
/// earlier daemon left; an error is the line to show the user. The region found for the
/// store is kept in `config`.
pub(super) fn open(config: &mut Config) -> Result<Opened, String> {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Err(format!("cannot start the async runtime: {e}")),
    };
    let (store, _region) = check::open_store(config, &rt).map_err(|f| f.why)?;
    let config = &*config;
    rt.block_on(check::probe(config, &*store))?;
    let staging = config
        .mount_dir()
        .join(format!("staging-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&staging) {
        return Err(format!(
            "cannot create the staging directory {}: {e} (set --cache-dir)",
            staging.display()
        ));
    }
    let disk_cache = match config.fs.disk_cache {
        0 => None,
        bytes => {
            let dir = config.mount_dir().join("blocks");
            match DiskCache::open(&dir, bytes) {
                Ok(c) => Some(c),
                Err(e) => {
                    return Err(format!(
                        "cannot open the disk cache {}: {e} (set --cache-dir, or disk_cache = 0)",
                        dir.display()
                    ))
                }
            }
        }
    };
    let uploads = match UploadRegistry::open(&config.mount_dir().join("multipart")) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            return Err(format!(
                "cannot use the cache directory {}: {e} (set --cache-dir)",
                config.mount_dir().display()
            ))
        }
    };
    let journal_dir = config.mount_dir().join("journal");
    let journal = match Journal::open(&journal_dir) {
        Ok(j) => Arc::new(j),
        Err(e) => {
            return Err(format!(
                "cannot open the write-back journal {}: {e} (set --cache-dir)",
                journal_dir.display()
            ))
        }
    };
    rt.block_on(abort_stale(&*store, &uploads, config.fs.stale_upload_age));
    let store_stats = store.clone();
    let fs = Arc::new(Fs::new(
        store,
        config.prefix.clone(),
        config.fs.clone(),
        staging.clone(),
        disk_cache,
        Some(uploads),
        Some(journal.clone()),
    ));
    // What a killed daemon left pending goes to the bucket before the mount shows anything.
    let (recovered, unrecovered) = rt.block_on(fs.recover());
    if recovered + unrecovered > 0 {
        info!(recovered, unrecovered, "write-back journal replayed");
    }
    remove_old_staging(&config.mount_dir(), &staging, &journal);
    Ok(Opened {
        fs,
        store_stats,
        journal,
        staging,
        rt,
    })
}

/// Removes the staging files earlier daemons of this mount left behind (files open when they
/// died; what was closed is in the journal and was uploaded or is kept for the next mount).
fn remove_old_staging(mount_dir: &Path, own: &Path, journal: &Journal) {
    let keep: std::collections::HashSet<PathBuf> = match journal.staging_files() {
        Ok(k) => k.into_iter().collect(),
        Err(e) => {
            warn!(error = %e, "cannot read the journal; old staging files are kept");
            return;
        }
    };
    let Ok(dirs) = std::fs::read_dir(mount_dir) else {
        return;
    };
    for dir in dirs.flatten().map(|d| d.path()) {
        let is_staging = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("staging-"));
        let pid = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("staging-"))
            .and_then(|p| p.parse::<i32>().ok());
        if !is_staging || dir == own || pid.is_none_or(crate::localfile::journal::pid_alive) {
            continue; // ours, or another running daemon's
        }
        for file in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if !keep.contains(&file.path()) {
                let _ = std::fs::remove_file(file.path());
            }
        }
        let _ = std::fs::remove_dir(&dir); // only once empty
    }
}
