//! A store that fails on purpose: `FailingStore` wraps any `ObjectStore` and makes chosen
//! requests fail with a chosen `StoreError`, so tests can drive the error paths above the
//! store (retries, aborted multipart uploads, pending files, journal recovery) without a
//! server in trouble.
//!
//! A test adds [`Failure`] rules: which requests (by [`Op`], the S3 operation name the stats
//! use, and optionally by a predicate on the key), when (the next N, every Nth, or always) and
//! with which error. A matching request normally fails *before* it reaches the wrapped store,
//! as a request that never arrived (or was refused); [`Failure::after_forwarding`] instead lets
//! it through and then reports the error, as a reply lost on the way back (the change is made
//! but the caller does not know); [`Failure::stall`] lets it through late, as a server that
//! stalls. Rules apply in the order they were added; the first one that
//! fires decides. [`FailingStore::heal`] removes them all: the server works again.
//!
//! Where the wrapper sits matters. The S3 store retries transient errors inside each of its
//! requests (`retry::with_retries`), so a `FailingStore` *around* a store is what the layers
//! above see once those retries are exhausted; one *below* a retry layer (tests build one over
//! `with_retries`) is one failed attempt that the retry layer may hide.
//!
//! The design follows the failure-injecting client of Mountpoint for Amazon S3 (per-operation
//! counts, failures decided before forwarding), with the rules kept as data so a test reads as
//! "the 2nd UploadPart fails with a 503".

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    CompletedPart, Condition, ListPage, MultipartUploadInfo, ObjectInfo, ObjectStore, PutOptions,
    StoreError, StoreResult, StoreStats,
};

/// One kind of store request, named as S3 names the operation (and as `StoreStats` counts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    HeadObject,
    /// `get_range` and `get_range_if_match`.
    GetObject,
    ListObjectsV2,
    PutObject,
    /// `copy` and `copy_with_options`.
    CopyObject,
    DeleteObject,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListMultipartUploads,
}

impl Op {
    /// The operation's S3 name, as in `StoreStats::requests`.
    pub fn name(self) -> &'static str {
        match self {
            Op::HeadObject => "HeadObject",
            Op::GetObject => "GetObject",
            Op::ListObjectsV2 => "ListObjectsV2",
            Op::PutObject => "PutObject",
            Op::CopyObject => "CopyObject",
            Op::DeleteObject => "DeleteObject",
            Op::CreateMultipartUpload => "CreateMultipartUpload",
            Op::UploadPart => "UploadPart",
            Op::UploadPartCopy => "UploadPartCopy",
            Op::CompleteMultipartUpload => "CompleteMultipartUpload",
            Op::AbortMultipartUpload => "AbortMultipartUpload",
            Op::ListMultipartUploads => "ListMultipartUploads",
        }
    }
}

/// A 503 Slow Down, the transient error S3 answers when it is overloaded.
pub fn slow_down() -> StoreError {
    StoreError::Server {
        status: 503,
        message: "SlowDown (injected)".into(),
    }
}

/// A connection that cannot be made (transient too).
pub fn unreachable() -> StoreError {
    StoreError::Unreachable("connection refused (injected)".into())
}

/// Which of the matching requests fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// The next `n` (then the rule is spent).
    Next(u64),
    /// The `n`th, `2n`th, ... (counting the matching requests from when the rule was added).
    EveryNth(u64),
    /// Only the `n`th (then the rule is spent).
    Nth(u64),
    Always,
}

type KeyPredicate = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// One rule: which requests fail, when, and how. Built with [`Failure::on`] and its setters.
#[derive(Clone)]
pub struct Failure {
    ops: Vec<Op>,
    key: Option<KeyPredicate>,
    when: When,
    error: StoreError,
    after: bool,
    /// Instead of failing: the request waits this long, then goes through (a stalled server).
    stall: Option<std::time::Duration>,
    /// Matching requests seen so far.
    seen: u64,
    /// Failures injected so far.
    fired: u64,
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("ops", &self.ops)
            .field("key", &self.key.as_ref().map(|_| "<predicate>"))
            .field("when", &self.when)
            .field("error", &self.error)
            .field("after", &self.after)
            .field("stall", &self.stall)
            .finish()
    }
}

impl Failure {
    /// Every request of kind `op` fails with a 503 (narrow it with the setters).
    pub fn on(op: Op) -> Failure {
        Failure::on_any(&[op])
    }

    /// Every request of any of these kinds fails with a 503 (narrow it with the setters).
    pub fn on_any(ops: &[Op]) -> Failure {
        Failure {
            ops: ops.to_vec(),
            key: None,
            when: When::Always,
            error: slow_down(),
            after: false,
            stall: None,
            seen: 0,
            fired: 0,
        }
    }

    /// Only the next `n` matching requests fail; later ones go through.
    pub fn next(mut self, n: u64) -> Failure {
        self.when = When::Next(n);
        self
    }

    /// Only the next matching request fails.
    pub fn once(self) -> Failure {
        self.next(1)
    }

    /// Only the `n`th matching request fails (counting from when the rule was added).
    pub fn nth(mut self, n: u64) -> Failure {
        assert!(n > 0, "requests are counted from 1");
        self.when = When::Nth(n);
        self
    }

    /// Every `n`th matching request fails (the `n`th, the `2n`th, ...).
    pub fn every(mut self, n: u64) -> Failure {
        assert!(n > 0, "every 0th request makes no sense");
        self.when = When::EveryNth(n);
        self
    }

    /// Only requests whose key passes `pred` match. The key is the object the request is
    /// addressed to: the target of a copy or UploadPartCopy, the prefix of a listing.
    pub fn key(mut self, pred: impl Fn(&str) -> bool + Send + Sync + 'static) -> Failure {
        self.key = Some(Arc::new(pred));
        self
    }

    /// The error reported (a 503 unless set).
    pub fn with(mut self, error: StoreError) -> Failure {
        self.error = error;
        self
    }

    /// The request reaches the wrapped store, then the error is reported: the reply was lost.
    pub fn after_forwarding(mut self) -> Failure {
        self.after = true;
        self
    }

    /// The request does not fail: it waits `for_`, then reaches the wrapped store — a server
    /// that stalls (for a hung connection, stall longer than the caller's timeout).
    pub fn stall(mut self, for_: std::time::Duration) -> Failure {
        self.stall = Some(for_);
        self
    }

    /// Counts a request of kind `op` on `key`; the error if this rule makes it fail.
    fn check(&mut self, op: Op, key: &str) -> Option<StoreError> {
        if !self.ops.contains(&op) || self.key.as_ref().is_some_and(|pred| !pred(key)) {
            return None;
        }
        self.seen += 1;
        let fires = match self.when {
            When::Next(n) => self.fired < n,
            When::EveryNth(n) => self.seen.is_multiple_of(n),
            When::Nth(n) => self.seen == n,
            When::Always => true,
        };
        fires.then(|| {
            self.fired += 1;
            self.error.clone()
        })
    }

    fn spent(&self) -> bool {
        match self.when {
            When::Next(n) => self.fired >= n,
            When::Nth(n) => self.seen >= n && self.fired > 0,
            When::EveryNth(_) | When::Always => false,
        }
    }
}

/// An `ObjectStore` that fails the requests its [`Failure`] rules pick and passes every other
/// request to the store it wraps.
pub struct FailingStore {
    inner: Arc<dyn ObjectStore>,
    rules: Mutex<Vec<Failure>>,
    injected: Mutex<BTreeMap<Op, u64>>,
}

/// What a rule decided for one request.
enum Verdict {
    Forward,
    Stall(std::time::Duration),
    FailBefore(StoreError),
    FailAfter(StoreError),
}

impl FailingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> FailingStore {
        FailingStore {
            inner,
            rules: Mutex::new(Vec::new()),
            injected: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds a rule (after the existing ones).
    pub fn fail(&self, rule: Failure) {
        self.rules.lock().unwrap().push(rule);
    }

    /// Removes every rule: from now on every request goes through.
    pub fn heal(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// How many requests of kind `op` were made to fail (or stalled) so far.
    pub fn injected(&self, op: Op) -> u64 {
        self.injected.lock().unwrap().get(&op).copied().unwrap_or(0)
    }

    fn verdict(&self, op: Op, key: &str) -> Verdict {
        let mut rules = self.rules.lock().unwrap();
        let mut verdict = Verdict::Forward;
        // Every matching rule counts the request (so "every 2nd" means every 2nd request it
        // saw), but only the first that fires decides.
        for rule in rules.iter_mut() {
            if let Some(error) = rule.check(op, key) {
                if matches!(verdict, Verdict::Forward) {
                    verdict = if let Some(d) = rule.stall {
                        Verdict::Stall(d)
                    } else if rule.after {
                        Verdict::FailAfter(error)
                    } else {
                        Verdict::FailBefore(error)
                    };
                } else {
                    rule.fired -= 1; // did not decide: not used up either
                }
            }
        }
        rules.retain(|r| !r.spent());
        if !matches!(verdict, Verdict::Forward) {
            *self.injected.lock().unwrap().entry(op).or_insert(0) += 1;
        }
        verdict
    }

    /// Runs `request` on the wrapped store unless a rule fails it.
    async fn run<T, F>(&self, op: Op, key: &str, request: F) -> StoreResult<T>
    where
        F: std::future::Future<Output = StoreResult<T>>,
    {
        match self.verdict(op, key) {
            Verdict::Forward => request.await,
            Verdict::Stall(d) => {
                tokio::time::sleep(d).await;
                request.await
            }
            Verdict::FailBefore(error) => Err(error),
            Verdict::FailAfter(error) => {
                let _ = request.await;
                Err(error)
            }
        }
    }
}

#[async_trait]
impl ObjectStore for FailingStore {
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        self.run(Op::HeadObject, key, self.inner.head(key)).await
    }

    async fn get_range_if_match(
        &self,
        key: &str,
        range: Range<u64>,
        etag: Option<&str>,
    ) -> StoreResult<Bytes> {
        let request = self.inner.get_range_if_match(key, range, etag);
        self.run(Op::GetObject, key, request).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: usize,
    ) -> StoreResult<ListPage> {
        let request = self.inner.list_page(prefix, delimiter, token, max_keys);
        self.run(Op::ListObjectsV2, prefix, request).await
    }

    async fn list_page_after(
        &self,
        prefix: &str,
        start_after: &str,
        max_keys: usize,
    ) -> StoreResult<ListPage> {
        let request = self.inner.list_page_after(prefix, start_after, max_keys);
        self.run(Op::ListObjectsV2, prefix, request).await
    }

    async fn put(&self, key: &str, body: Bytes, opts: &PutOptions) -> StoreResult<Option<String>> {
        self.run(Op::PutObject, key, self.inner.put(key, body, opts))
            .await
    }

    async fn copy(&self, from: &str, to: &str, replace: Option<&PutOptions>) -> StoreResult<()> {
        self.run(Op::CopyObject, to, self.inner.copy(from, to, replace))
            .await
    }

    async fn copy_with_options(
        &self,
        from: &str,
        to: &str,
        opts: &PutOptions,
        keep_metadata: bool,
    ) -> StoreResult<Option<String>> {
        let request = self.inner.copy_with_options(from, to, opts, keep_metadata);
        self.run(Op::CopyObject, to, request).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.run(Op::DeleteObject, key, self.inner.delete(key))
            .await
    }

    async fn create_multipart(&self, key: &str, opts: &PutOptions) -> StoreResult<String> {
        let request = self.inner.create_multipart(key, opts);
        self.run(Op::CreateMultipartUpload, key, request).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> StoreResult<String> {
        let request = self.inner.upload_part(key, upload_id, number, body);
        self.run(Op::UploadPart, key, request).await
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        source_key: &str,
        source_etag: Option<&str>,
        range: Range<u64>,
    ) -> StoreResult<String> {
        let request =
            self.inner
                .upload_part_copy(key, upload_id, number, source_key, source_etag, range);
        self.run(Op::UploadPartCopy, key, request).await
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
        condition: Option<&Condition>,
    ) -> StoreResult<Option<String>> {
        let request = self
            .inner
            .complete_multipart(key, upload_id, parts, condition);
        self.run(Op::CompleteMultipartUpload, key, request).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        let request = self.inner.abort_multipart(key, upload_id);
        self.run(Op::AbortMultipartUpload, key, request).await
    }

    async fn list_multipart_uploads(&self, prefix: &str) -> StoreResult<Vec<MultipartUploadInfo>> {
        let request = self.inner.list_multipart_uploads(prefix);
        self.run(Op::ListMultipartUploads, prefix, request).await
    }

    /// The wrapped store's counts: requests failed before forwarding are not in them (see
    /// [`FailingStore::injected`]).
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }

    async fn settle(&self) {
        self.inner.settle().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn wrapped() -> (Arc<MemoryStore>, FailingStore) {
        let mem = Arc::new(MemoryStore::new());
        let store = FailingStore::new(mem.clone());
        (mem, store)
    }

    async fn put(store: &dyn ObjectStore, key: &str) -> StoreResult<Option<String>> {
        store
            .put(key, Bytes::from_static(b"x"), &PutOptions::default())
            .await
    }

    fn outcomes<T>(results: &[StoreResult<T>]) -> String {
        results
            .iter()
            .map(|r| if r.is_ok() { '.' } else { 'X' })
            .collect()
    }

    #[tokio::test]
    async fn the_next_n_requests_of_a_kind_fail_then_it_heals_by_itself() {
        let (mem, store) = wrapped();
        store.fail(Failure::on(Op::PutObject).next(2).with(unreachable()));
        let mut results = Vec::new();
        for i in 0..4 {
            results.push(put(&store, &format!("k{i}")).await);
        }
        assert_eq!(outcomes(&results), "XX..");
        assert!(matches!(results[0], Err(StoreError::Unreachable(_))));
        assert_eq!(mem.keys(), ["k2", "k3"], "failed requests never arrived");
        assert_eq!(store.injected(Op::PutObject), 2);
        assert_eq!(mem.stats().count("PutObject"), 2);
    }

    #[tokio::test]
    async fn every_nth_or_only_the_nth_request_fails_and_other_kinds_go_through() {
        let (_mem, store) = wrapped();
        store.fail(Failure::on(Op::HeadObject).every(3));
        put(&store, "k").await.unwrap();
        let mut results = Vec::new();
        for _ in 0..7 {
            results.push(store.head("k").await);
        }
        assert_eq!(outcomes(&results), "..X..X.");
        assert!(
            matches!(results[2], Err(StoreError::Server { status: 503, .. })),
            "a 503 unless told otherwise"
        );
        store.heal();
        store.fail(Failure::on(Op::HeadObject).nth(2));
        let mut results = Vec::new();
        for _ in 0..4 {
            results.push(store.head("k").await);
        }
        assert_eq!(outcomes(&results), ".X..", "only the 2nd");
        assert_eq!(store.get_range("k", 0..1).await.unwrap(), "x");
    }

    #[tokio::test]
    async fn a_key_predicate_picks_the_requests_that_fail() {
        let (mem, store) = wrapped();
        store.fail(
            Failure::on_any(&[Op::PutObject, Op::CopyObject])
                .key(|k| k.starts_with("bad/"))
                .with(StoreError::AccessDenied("injected".into())),
        );
        put(&store, "good").await.unwrap();
        assert!(matches!(
            put(&store, "bad/x").await,
            Err(StoreError::AccessDenied(_))
        ));
        assert!(store.copy("good", "bad/y", None).await.is_err());
        store.copy("good", "also-good", None).await.unwrap();
        assert_eq!(mem.keys(), ["also-good", "good"]);
        assert_eq!(store.injected(Op::CopyObject), 1);
    }

    #[tokio::test]
    async fn a_lost_reply_fails_the_request_after_the_store_made_the_change() {
        let (mem, store) = wrapped();
        store.fail(Failure::on(Op::PutObject).once().after_forwarding());
        assert!(put(&store, "k").await.is_err());
        assert_eq!(mem.keys(), ["k"], "the change was made");
    }

    #[tokio::test]
    async fn heal_removes_every_rule() {
        let (_mem, store) = wrapped();
        store.fail(Failure::on(Op::PutObject).with(StoreError::NotFound));
        assert!(matches!(put(&store, "k").await, Err(StoreError::NotFound)));
        assert!(put(&store, "k").await.is_err(), "always, until healed");
        store.heal();
        put(&store, "k").await.unwrap();
    }

    #[tokio::test]
    async fn the_first_rule_that_fires_decides_and_others_are_not_used_up() {
        let (_mem, store) = wrapped();
        store.fail(
            Failure::on(Op::PutObject)
                .once()
                .with(StoreError::Timeout(std::time::Duration::from_secs(1))),
        );
        store.fail(Failure::on(Op::PutObject).once().with(StoreError::NotFound));
        assert!(matches!(
            put(&store, "k").await,
            Err(StoreError::Timeout(_))
        ));
        assert!(matches!(put(&store, "k").await, Err(StoreError::NotFound)));
        put(&store, "k").await.unwrap();
        assert_eq!(store.injected(Op::PutObject), 2);
    }

    #[tokio::test]
    async fn multipart_requests_can_each_be_failed() {
        let (mem, store) = wrapped();
        let id = store
            .create_multipart("m", &PutOptions::default())
            .await
            .unwrap();
        store.fail(Failure::on(Op::UploadPart).once());
        store.fail(Failure::on(Op::CompleteMultipartUpload).once());
        let body = Bytes::from_static(b"part");
        assert!(store.upload_part("m", &id, 1, body.clone()).await.is_err());
        let etag = store.upload_part("m", &id, 1, body).await.unwrap();
        let parts = vec![CompletedPart { number: 1, etag }];
        assert!(store
            .complete_multipart("m", &id, parts.clone(), None)
            .await
            .is_err());
        store
            .complete_multipart("m", &id, parts, None)
            .await
            .unwrap();
        assert_eq!(mem.bytes("m").unwrap(), "part");
    }
}
