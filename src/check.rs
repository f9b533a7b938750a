//! `bucketfs check`: proves a configuration works before anyone mounts it, one line per
//! check, and turns store errors into hints a user can act on. A mount starts the same way:
//! `open_store` (the store, in the bucket's region) and `probe` (its first requests).

use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use tokio::runtime::Runtime;

use crate::config::{Config, ConflictPolicy, Source};
use crate::store::s3::{BucketRegion, S3Store};
use crate::store::{Honoured, ListPage, ObjectStore, PutOptions, StoreError};

/// A store error worded for the person running bucketfs, with what to try.
pub fn hint(config: &Config, err: &StoreError) -> String {
    let endpoint = config.endpoint_text();
    let bucket = match &config.source {
        Source::S3 { bucket, .. } => bucket.as_str(),
        Source::Local { .. } => "",
    };
    match err {
        StoreError::NoSuchBucket => format!(
            "bucket `{bucket}` does not exist at {endpoint}: check the bucket name, --region, or --force-path-style"
        ),
        StoreError::AccessDenied(m) => format!(
            "access denied (403) at {endpoint}: {m}: check the access keys and the bucket policy"
        ),
        StoreError::BadCredentials(m) if m.contains("AuthorizationHeaderMalformed") => {
            format!("the request was signed for the wrong region ({m}): set --region to the bucket's region")
        }
        StoreError::BadCredentials(m) => format!(
            "the credentials were rejected ({m}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile"
        ),
        StoreError::Unreachable(m) => format!(
            "cannot reach {endpoint} ({m}): is the server running? check --endpoint"
        ),
        StoreError::Timeout(d) => format!(
            "{endpoint} did not answer within {d:?}: check --endpoint and the network"
        ),
        other => format!("{other} (endpoint {endpoint})"),
    }
}

/// The store of a mount or a check, signing for the bucket's region, and that region with how
/// it is known (`None` for a local source).
///
/// Opening it may block (the credential chain may ask the network): call it outside the
/// runtime's tasks. When no region is configured, the server is asked on `rt`
/// (`S3Store::locate`), within the patience of a first request, and the region is kept in
/// `config`, so that stores opened from it later sign for it without asking.
pub fn open_store(
    config: &mut Config,
    rt: &Runtime,
) -> Result<(Arc<dyn ObjectStore>, Option<BucketRegion>), OpenFailure> {
    let failure = |step, why| OpenFailure { step, why };
    let Some(settings) = &config.s3 else {
        let store = config.open_store();
        return Ok((
            store.map_err(|e| failure("credentials", hint(config, &e)))?,
            None,
        ));
    };
    let store = S3Store::new(settings).map_err(|e| failure("credentials", hint(config, &e)))?;
    let located = rt.block_on(async { tokio::time::timeout(PROBE_PATIENCE, store.locate()).await });
    let (store, region) = match located {
        Ok(Ok(located)) => located,
        Ok(Err(e)) => return Err(failure("region", hint(config, &e))),
        Err(_) => return Err(failure("region", no_answer(config))),
    };
    if let Some(settings) = &mut config.s3 {
        settings.region = Some(region.name.clone());
    }
    Ok((Arc::new(store), Some(region)))
}

/// Why `open_store` failed: the step of `bucketfs check` (`credentials`: the store could not
/// be built; `region`: the server did not answer the question of the region), and the line to
/// show the user.
#[derive(Debug)]
pub struct OpenFailure {
    pub step: &'static str,
    pub why: String,
}

/// The first requests of a mount: can we list under the prefix? And, for a writable mount
/// that keeps both versions on a conflict, does the server honour conditional writes (if
/// not, the store checks each condition with a HEAD first, and the user is told once)?
pub async fn probe(config: &Config, store: &dyn ObjectStore) -> Result<(), String> {
    first_listing(config, store, 1).await?;
    if config.fs.read_only || config.fs.conflict == ConflictPolicy::Overwrite {
        return Ok(());
    }
    match store.probe_conditional_writes(&probe_key(config)).await {
        Ok(h) if h == Honoured::ALL => tracing::debug!("the server honours conditional writes"),
        Ok(h) => tracing::warn!("{}", conditions_ignored(h)),
        Err(e) => {
            tracing::warn!(error = %hint(config, &e), "cannot probe conditional writes; assuming the server honours them")
        }
    }
    Ok(())
}

/// The first page under the prefix. A mount waits out an outage of the retry timeout; its
/// start need not: a wrong endpoint is refused in seconds.
async fn first_listing(
    config: &Config,
    store: &dyn ObjectStore,
    max_keys: usize,
) -> Result<ListPage, String> {
    let first = store.list_page(&config.prefix, Some("/"), None, max_keys);
    match tokio::time::timeout(PROBE_PATIENCE, first).await {
        Ok(listed) => listed.map_err(|e| hint(config, &e)),
        Err(_) => Err(no_answer(config)),
    }
}

/// What a user is told when the first requests keep failing for `PROBE_PATIENCE`.
fn no_answer(config: &Config) -> String {
    format!(
        "cannot reach {}: still failing after {} s (the log says why): is the server \
         running? check --endpoint and the network",
        config.endpoint_text(),
        PROBE_PATIENCE.as_secs()
    )
}

/// How long the first request of a mount or a check may keep failing before the start is
/// refused.
const PROBE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// What a user is told when the server ignores some conditional writes.
fn conditions_ignored(h: Honoured) -> String {
    let (ignored, what) = match (h.puts, h.copies) {
        (false, false) => (
            "conditional writes (If-None-Match / If-Match)",
            "upload and copy",
        ),
        (false, true) => (
            "conditional uploads (If-None-Match / If-Match on PUT)",
            "upload",
        ),
        _ => (
            "the conditions of a copy (If-None-Match, x-amz-copy-source-if-match)",
            "copy (rename)",
        ),
    };
    format!(
        "the server ignores {ignored}: bucketfs checks with a HEAD just before each {what} \
         instead, so a write by another host in the moment between is not detected \
         (conflict detection is weakened)"
    )
}

/// A key of its own for one probe, under the mount's prefix.
fn probe_key(config: &Config) -> String {
    format!(
        "{}.bucketfs-check-{:016x}",
        config.prefix,
        rand::random::<u64>()
    )
}

struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, name: &str, result: Result<String, String>) -> bool {
        match result {
            Ok(detail) => {
                println!("ok    {name}: {detail}");
                true
            }
            Err(why) => {
                println!("FAIL  {name}: {why}");
                self.failed = true;
                false
            }
        }
    }
}

pub fn run(mut config: Config) -> ExitCode {
    let mut report = Report { failed: false };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bucketfs: error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let store = match open_store(&mut config, &rt) {
        Ok((store, region)) => {
            report.line("credentials", Ok("found".into()));
            if let Some(region) = region {
                report.line("region", Ok(region.to_string()));
            }
            store
        }
        Err(OpenFailure { step, why }) => {
            if step != "credentials" {
                report.line("credentials", Ok("found".into()));
            }
            report.line(step, Err(why));
            return ExitCode::from(1);
        }
    };
    let config = &config;
    rt.block_on(checks(config, store, &mut report));
    if report.failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn checks(config: &Config, store: Arc<dyn ObjectStore>, report: &mut Report) {
    let where_ = format!("{} under `{}`", config.endpoint_text(), config.prefix);
    let listed = first_listing(config, &*store, 10).await.map(|p| {
        format!(
            "{where_}: {} entries on the first page",
            p.objects.len() + p.prefixes.len()
        )
    });
    if !report.line("bucket and list", listed) {
        return;
    }
    let key = probe_key(config);
    let body = Bytes::from(format!("bucketfs check {key}"));
    let put = store
        .put(&key, body.clone(), &PutOptions::default())
        .await
        .map(|_| format!("wrote `{key}`"))
        .map_err(|e| hint(config, &e));
    if !report.line("put", put) {
        return;
    }
    let get = match store.get_range(&key, 0..body.len() as u64).await {
        Ok(b) if b == body => Ok(format!("read back {} bytes", b.len())),
        Ok(_) => Err("read back different bytes than were written".into()),
        Err(e) => Err(hint(config, &e)),
    };
    report.line("get", get);
    let delete = store
        .delete(&key)
        .await
        .map(|_| format!("removed `{key}`"))
        .map_err(|e| hint(config, &e));
    report.line("delete", delete);
    let conditions = match store.probe_conditional_writes(&probe_key(config)).await {
        Ok(h) if h == Honoured::ALL => {
            Ok("honoured: a write never silently replaces another host's".to_string())
        }
        Ok(h) => Ok(format!("IGNORED: {}", conditions_ignored(h))),
        Err(e) => Err(hint(config, &e)),
    };
    report.line("conditional writes", conditions);
    report.line("key length", key_length(config).await);
}

/// Whether the server holds keys of `max_key_length` bytes, and if not, the longest it
/// holds (Garage on LMDB: 471, refused with a 503 that looks like an outage): PUTs of
/// ever shorter keys, each tried once (a refusal is not an outage to wait out).
async fn key_length(config: &Config) -> Result<String, String> {
    let mut once = config.clone();
    if let Some(s3) = once.s3.as_mut() {
        s3.retry.retry_timeout = std::time::Duration::ZERO;
        s3.retry.max_retries = Some(0);
    }
    let store = once.open_store().map_err(|e| e.to_string())?;
    let base = probe_key(config);
    let max = config.fs.max_key_length;
    let holds = |len: usize| {
        let store = store.clone();
        let key = format!("{base}{}", "k".repeat(len.saturating_sub(base.len())));
        async move {
            let held = store.put(&key, Bytes::new(), &PutOptions::default()).await;
            if held.is_ok() {
                let _ = store.delete(&key).await;
            }
            held.is_ok()
        }
    };
    if holds(max).await {
        return Ok(format!("keys of {max} bytes are held (max_key_length)"));
    }
    // The probe key itself was stored by the put check: search between it and `max`.
    let (mut good, mut bad) = (base.len(), max);
    if !holds(good).await {
        return Err(format!("a key of {good} bytes was refused"));
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if holds(mid).await {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(format!(
        "SHORTER: the server holds keys of at most {good} bytes, not {max}: set \
         max_key_length = {good} (--max-key-length {good}), or creating deeper paths fails \
         with EIO after the retries instead of ENAMETOOLONG"
    ))
}
