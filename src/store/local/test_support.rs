//! Helpers shared by the tests of the local store's modules.

use bytes::Bytes;
use tempfile::TempDir;

use super::LocalStore;
use crate::store::{list_all, KeyRefusal, ObjectStore, PutOptions, StoreError, StoreResult};

pub(super) fn store() -> (TempDir, LocalStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().to_path_buf()).unwrap();
    (dir, store)
}

pub(super) fn opts(content_type: &str, pairs: &[(&str, &str)]) -> PutOptions {
    PutOptions {
        content_type: Some(content_type.to_string()),
        metadata: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..PutOptions::default()
    }
}

pub(super) async fn put(store: &LocalStore, key: &str, body: &'static [u8]) {
    store
        .put(key, Bytes::from_static(body), &PutOptions::default())
        .await
        .unwrap();
}

pub(super) async fn all_keys(store: &LocalStore, prefix: &str) -> Vec<String> {
    list_all(store, prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Why `r` refused `key`; panics unless it is a `KeyRefused` of `key`.
pub(super) fn refusal<T: std::fmt::Debug>(key: &str, r: StoreResult<T>) -> KeyRefusal {
    match r {
        Err(StoreError::KeyRefused { key: k, reason }) if k == key => reason,
        other => panic!("{key:?}: expected KeyRefused, got {other:?}"),
    }
}
