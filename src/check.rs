//! `bucketfs check`: proves a configuration works before anyone mounts it, one line per
//! check, and turns store errors into hints a user can act on (also used by `mount`).

use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::{Config, Source};
use crate::store::{ObjectStore, PutOptions, StoreError};

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

/// The first request of a mount: can we list under the prefix?
pub async fn probe(config: &Config, store: &dyn ObjectStore) -> Result<(), String> {
    store
        .list_page(&config.prefix, Some("/"), None, 1)
        .await
        .map(|_| ())
        .map_err(|e| hint(config, &e))
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

pub fn run(config: &Config) -> ExitCode {
    let mut report = Report { failed: false };
    let store = match config.open_store() {
        Ok(s) => {
            report.line("credentials", Ok("found".into()));
            s
        }
        Err(e) => {
            report.line("credentials", Err(e.to_string()));
            return ExitCode::from(1);
        }
    };
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
    rt.block_on(checks(config, store, &mut report));
    if report.failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn checks(config: &Config, store: Arc<dyn ObjectStore>, report: &mut Report) {
    let where_ = format!("{} under `{}`", config.endpoint_text(), config.prefix);
    let listed = store
        .list_page(&config.prefix, Some("/"), None, 10)
        .await
        .map(|p| {
            format!(
                "{where_}: {} entries on the first page",
                p.objects.len() + p.prefixes.len()
            )
        })
        .map_err(|e| hint(config, &e));
    if !report.line("bucket and list", listed) {
        return;
    }
    let key = format!(
        "{}.bucketfs-check-{:016x}",
        config.prefix,
        rand::random::<u64>()
    );
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
}
