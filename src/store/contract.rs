//! The `ObjectStore` contract: what every store must do, written once and run against each
//! backend, so that the filesystem above can rely on one behaviour whichever store it is given
//! (the memory store of the unit tests included: a test that passes on it must mean something
//! on S3).
//!
//! Each spec is an async fn taking the store under test and a [`Scope`] (a key prefix of its
//! own, and how the backend legitimately departs from S3). A [`Fixture`] opens a backend for
//! one spec and cleans up after it, and `contract!` makes one `#[tokio::test]` per backend per
//! spec, in the manner of rclone's fstests. The backends:
//! - `memory`: the in-memory store;
//! - `local`: the local directory store over a temporary directory;
//! - `s3_live`: the S3 store against the Garage server of `scripts/s3-server.sh` (the env file
//!   in `BUCKETFS_TEST_ENV`, by default `/tmp/bucketfs-s3/env`), `#[ignore]`d like the other
//!   live tests: `cargo test s3_live -- --ignored`. The wire tests' canned-answer server
//!   (`s3/tests_wire.rs`) replays fixed responses, so it cannot play a store through a suite.
//!
//! Where a backend differs, the spec says so with `Scope::directories` (the local backend,
//! SEMANTICS.md "The local backend": every directory is an object, listed as its marker
//! `dir/`, kept after its last key is deleted, and a name cannot be a key and a directory at
//! once). Left out, as no behaviour is common to all: the content type of an object stored
//! without one (the S3 store sends a default, the others leave it unset), an UploadPartCopy
//! range past the end of its source (Garage clamps it), and keys the local store refuses
//! (empty, `a//b`, `.` or `..` segments, NUL). Specs a backend is known to fail are named
//! under `known_bugs` in its `contract!` line, `#[ignore]`d there with the reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

use super::local::LocalStore;
use super::memory::MemoryStore;
use super::s3::{S3Settings, S3Store};
use super::*;

/// Where one spec runs, and how its backend departs from S3.
pub struct Scope {
    /// A prefix no other test uses (empty, or ending with `/`): every key a spec makes is
    /// under it.
    pub root: String,
    /// Every directory is an object (the local backend): `a/b` makes the marker `a/`, which
    /// is listed, has a HEAD, outlives its last key, and excludes an object named `a`.
    pub directories: bool,
}

impl Scope {
    /// The full key of `name` (relative to the root).
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.root)
    }

    /// The marker of directory `dir` (relative, `""` for the root) where directories are
    /// objects: it is listed first when its own prefix is. The top of the store has none.
    fn own_marker(&self, dir: &str) -> Option<String> {
        (self.directories && !self.key(dir).is_empty()).then(|| dir.to_string())
    }
}

/// One backend, opened afresh for each spec.
#[async_trait]
trait Fixture: Sized + Send + Sync {
    async fn open() -> Self;
    fn store(&self) -> &dyn ObjectStore;
    fn scope(&self) -> &Scope;
    /// Removes what the spec left behind (shared backends only).
    async fn close(self) {}
}

struct Memory {
    store: MemoryStore,
    scope: Scope,
}

#[async_trait]
impl Fixture for Memory {
    async fn open() -> Self {
        Memory {
            store: MemoryStore::new(),
            scope: Scope {
                root: "spec/".into(),
                directories: false,
            },
        }
    }
    fn store(&self) -> &dyn ObjectStore {
        &self.store
    }
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

struct Local {
    _dir: tempfile::TempDir,
    store: LocalStore,
    scope: Scope,
}

#[async_trait]
impl Fixture for Local {
    async fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf()).unwrap();
        Local {
            _dir: dir,
            store,
            // The temporary directory's root: a fresh one for each spec.
            scope: Scope {
                root: String::new(),
                directories: true,
            },
        }
    }
    fn store(&self) -> &dyn ObjectStore {
        &self.store
    }
    fn scope(&self) -> &Scope {
        &self.scope
    }
}

struct S3Live {
    store: S3Store,
    scope: Scope,
}

/// The running test server's settings, from the env file `scripts/s3-server.sh start`
/// writes (`BUCKETFS_TEST_ENV`, by default `/tmp/bucketfs-s3/env`).
fn live_settings() -> S3Settings {
    let path = std::env::var("BUCKETFS_TEST_ENV").unwrap_or_else(|_| "/tmp/bucketfs-s3/env".into());
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("no S3 test server ({path}: {e}): scripts/s3-server.sh start"));
    super::s3::tests_live::settings_from(|name| {
        text.lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("{name} is not in {path}"))
    })
}

#[async_trait]
impl Fixture for S3Live {
    async fn open() -> Self {
        static RUN: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let n = RUN.fetch_add(1, Ordering::SeqCst);
        S3Live {
            store: S3Store::new(&live_settings()).unwrap(),
            scope: Scope {
                root: format!("contract-{nanos}-{n}/"),
                directories: false,
            },
        }
    }
    fn store(&self) -> &dyn ObjectStore {
        &self.store
    }
    fn scope(&self) -> &Scope {
        &self.scope
    }
    async fn close(self) {
        let root = &self.scope.root;
        for u in self.store.list_multipart_uploads(root).await.unwrap() {
            self.store
                .abort_multipart(&u.key, &u.upload_id)
                .await
                .unwrap();
        }
        for o in list_all(&self.store, root).await.unwrap() {
            self.store.delete(&o.key).await.unwrap();
        }
    }
}

/// One `#[tokio::test]` per spec for a backend:
/// `contract!(module, Fixture, [#[attributes of every spec]], known_bugs: [spec: #[attributes],
/// ...])`. Every invocation names each spec of `known_bugs` (some backend fails it), with
/// `#[ignore = "why"]` where this backend does.
macro_rules! contract {
    (
        $backend:ident, $fixture:ty, [$(#[$attr:meta])*],
        known_bugs: [$($bug:ident: $(#[$bug_attr:meta])*),* $(,)?]
    ) => {
        mod $backend {
            use super::*;
            $(contract!(@one $fixture, [$(#[$bug_attr])*], $bug);)*
            contract!(@specs $fixture, [$(#[$attr])*],
                put_head_get_round_trip_with_content_type_and_metadata,
                an_overwrite_replaces_bytes_metadata_and_etag,
                ranged_gets_return_the_bytes_asked_for_and_stop_at_the_end,
                a_get_if_match_with_a_stale_etag_fails_and_never_returns_another_version,
                missing_keys_are_not_found_and_deleting_one_succeeds,
                a_listing_with_a_delimiter_groups_deeper_keys_into_prefixes,
                a_listing_without_a_delimiter_returns_every_key_below_the_prefix_in_order,
                listed_objects_carry_the_size_and_etag_a_head_gives,
                pages_hold_at_most_max_keys_and_tokens_resume_after_the_last_one,
                a_flat_listing_can_start_after_any_key_and_go_on_with_its_token,
                grouped_pages_count_prefixes_and_never_repeat_one,
                a_copy_keeps_or_replaces_content_type_and_metadata,
                a_copy_conditional_on_its_source_copies_only_the_version_it_names,
                a_multipart_upload_assembles_its_parts_in_number_order,
                an_aborted_multipart_upload_leaves_no_object_and_no_upload,
                completing_with_a_part_the_upload_does_not_hold_is_an_invalid_part,
                upload_part_copy_takes_a_range_of_another_object,
                uploads_in_progress_are_listed_by_prefix_until_completed_or_aborted,
                awkward_keys_come_back_exactly_from_every_request,
                a_name_can_be_an_object_and_a_prefix_at_once,
                a_prefix_is_no_object_and_goes_with_its_last_key,
            );
        }
    };
    (@specs $fixture:ty, $attrs:tt, $($spec:ident),* $(,)?) => {
        $(contract!(@one $fixture, $attrs, $spec);)*
    };
    (@one $fixture:ty, [$(#[$attr:meta])*], $spec:ident) => {
        #[tokio::test]
        $(#[$attr])*
        async fn $spec() {
            use futures_util::FutureExt;
            let fixture = <$fixture as Fixture>::open().await;
            let spec = super::$spec(fixture.store(), fixture.scope());
            let outcome = std::panic::AssertUnwindSafe(spec).catch_unwind().await;
            fixture.close().await; // a failed spec leaves nothing behind either
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        }
    };
}

// Known bugs:
// - s3 on Garage: ListMultipartUploads answers in no key order (not even by prefix), and the
//   S3 store passes that order on although `list_multipart_uploads` promises key order.
// - s3 on Garage 2.5: conditional writes (`If-None-Match`, `If-Match`) are ignored; bucketfs
//   checks before the upload instead (see `bucketfs check` and SEMANTICS.md). It honours a
//   copy's `x-amz-copy-source-if-match`. (moto 5.2.5 honours conditional PUT and DELETE but
//   neither condition of a copy, nor `If-Match` on a completion.)
contract!(memory, Memory, [], known_bugs: [
    a_page_that_ends_at_a_directory_marker_goes_on_after_it:,
    uploads_in_progress_are_listed_in_key_order:,
    a_conditional_put_takes_effect_only_when_the_key_holds_what_it_says:,
    a_conditional_completion_takes_effect_only_when_the_key_holds_what_it_says:,
    a_conditional_delete_removes_only_the_version_it_names:,
    a_conditional_copy_never_replaces_what_its_target_does_not_hold:,
]);
contract!(local, Local, [], known_bugs: [
    a_page_that_ends_at_a_directory_marker_goes_on_after_it:,
    uploads_in_progress_are_listed_in_key_order:,
    a_conditional_put_takes_effect_only_when_the_key_holds_what_it_says:,
    a_conditional_completion_takes_effect_only_when_the_key_holds_what_it_says:,
    a_conditional_delete_removes_only_the_version_it_names:,
    a_conditional_copy_never_replaces_what_its_target_does_not_hold:,
]);
contract!(s3_live, S3Live, [#[ignore]], known_bugs: [
    a_page_that_ends_at_a_directory_marker_goes_on_after_it: #[ignore],
    uploads_in_progress_are_listed_in_key_order:
        #[ignore = "bug with Garage: uploads are not listed in key order"],
    a_conditional_put_takes_effect_only_when_the_key_holds_what_it_says:
        #[ignore = "Garage ignores conditional writes"],
    a_conditional_completion_takes_effect_only_when_the_key_holds_what_it_says:
        #[ignore = "Garage ignores conditional writes"],
    a_conditional_delete_removes_only_the_version_it_names:
        #[ignore = "Garage ignores conditional writes"],
    a_conditional_copy_never_replaces_what_its_target_does_not_hold:
        #[ignore = "Garage ignores conditional writes"],
]);

// ---- Helpers ---------------------------------------------------------------------------

const MIB: usize = 1 << 20;
/// The smallest part S3 accepts (except the last).
const MIN_PART: usize = 5 * MIB;

fn opts(content_type: &str, metadata: &[(&str, &str)]) -> PutOptions {
    PutOptions {
        content_type: Some(content_type.into()),
        metadata: meta(metadata),
        ..PutOptions::default()
    }
}

fn meta(pairs: &[(&str, &str)]) -> UserMetadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn put(store: &dyn ObjectStore, key: &str, body: impl Into<Bytes>) -> Option<String> {
    store
        .put(key, body.into(), &PutOptions::default())
        .await
        .unwrap()
}

async fn put_all(store: &dyn ObjectStore, s: &Scope, names: &[&str]) {
    for name in names {
        put(store, &s.key(name), name.to_string()).await;
    }
}

/// Bytes that differ at every nearby offset (a misplaced range shows).
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

/// An object's bytes, all of them.
async fn read(store: &dyn ObjectStore, key: &str) -> Bytes {
    store.get_range(key, 0..u64::MAX / 2).await.unwrap()
}

fn is_not_found<T: std::fmt::Debug>(r: StoreResult<T>) -> bool {
    matches!(r, Err(StoreError::NotFound))
}

/// Every page of one listing, followed to its end, with names relative to the root.
struct Listing {
    /// (objects, prefixes) of each page.
    pages: Vec<(Vec<String>, Vec<String>)>,
}

impl Listing {
    fn objects(&self) -> Vec<String> {
        self.pages.iter().flat_map(|p| p.0.clone()).collect()
    }
    fn prefixes(&self) -> Vec<String> {
        self.pages.iter().flat_map(|p| p.1.clone()).collect()
    }
}

/// Lists `prefix` (relative to the root) page by page; every page must hold at most
/// `max_keys` entries, and only the last may come without a continuation token.
async fn list(
    store: &dyn ObjectStore,
    s: &Scope,
    prefix: &str,
    delimiter: Option<&str>,
    max_keys: usize,
) -> Listing {
    let relative = |k: String| k.strip_prefix(&s.root).expect("under the root").to_string();
    let mut pages = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .list_page(&s.key(prefix), delimiter, token, max_keys)
            .await
            .unwrap();
        let entries = page.objects.len() + page.prefixes.len();
        assert!(
            entries <= max_keys,
            "{entries} entries > max_keys {max_keys}"
        );
        pages.push((
            page.objects.into_iter().map(|o| relative(o.key)).collect(),
            page.prefixes.into_iter().map(relative).collect(),
        ));
        assert!(pages.len() < 1000, "the listing never ends");
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Listing { pages },
        }
    }
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// What a listing of `prefix` without a delimiter holds once `names` are stored, in key
/// order: the names, and where directories are objects (the local backend) also the marker
/// of every directory they are in, the root's own (`""`) included.
fn stored_below(s: &Scope, prefix: &str, names: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = strings(names);
    if s.directories {
        for name in names {
            let full = s.key(name);
            let dirs = full.match_indices('/').map(|(i, _)| &full[..=i]);
            all.extend(dirs.filter_map(|d| d.strip_prefix(&s.root).map(str::to_string)));
        }
    }
    all.retain(|n| n.starts_with(prefix));
    all.sort();
    all.dedup();
    all
}

// ---- Objects -------------------------------------------------------------------------

async fn put_head_get_round_trip_with_content_type_and_metadata(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    let key = s.key("file.txt");
    let o = opts(
        "text/plain; charset=utf-8",
        &[("mode", "33188"), ("uid", "1000")],
    );
    let before = SystemTime::now() - Duration::from_secs(3600);
    let put_etag = store
        .put(&key, Bytes::from_static(b"hello world"), &o)
        .await
        .unwrap();
    let info = store.head(&key).await.unwrap();
    assert_eq!(info.size, 11);
    assert_eq!(
        info.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(info.metadata, o.metadata, "user metadata, exactly");
    assert!(info.etag.is_some(), "every store names versions");
    if put_etag.is_some() {
        assert_eq!(put_etag, info.etag, "the PUT answers the ETag a HEAD shows");
    }
    let now = SystemTime::now() + Duration::from_secs(3600);
    assert!(info.last_modified > before && info.last_modified < now);
    assert_eq!(read(store, &key).await, "hello world");
}

async fn an_overwrite_replaces_bytes_metadata_and_etag(store: &dyn ObjectStore, s: &Scope) {
    let key = s.key("f");
    let o = opts("text/plain", &[("mode", "33188")]);
    store
        .put(&key, Bytes::from_static(b"one"), &o)
        .await
        .unwrap();
    let first = store.head(&key).await.unwrap();
    put(store, &key, &b"second"[..]).await;
    let second = store.head(&key).await.unwrap();
    assert_eq!(second.size, 6);
    assert_eq!(read(store, &key).await, "second");
    assert!(second.metadata.is_empty(), "{:?}", second.metadata);
    assert_ne!(first.etag, second.etag, "a new version, a new ETag");
}

async fn ranged_gets_return_the_bytes_asked_for_and_stop_at_the_end(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    let key = s.key("digits");
    put(store, &key, &b"0123456789"[..]).await;
    let get = |r: std::ops::Range<u64>| store.get_range(&key, r);
    assert_eq!(get(0..1).await.unwrap(), "0");
    assert_eq!(get(3..7).await.unwrap(), "3456");
    assert_eq!(get(9..10).await.unwrap(), "9");
    assert_eq!(get(5..100).await.unwrap(), "56789", "cut at the end");
    assert!(matches!(get(10..11).await, Err(StoreError::InvalidRange)));
    assert!(matches!(get(20..30).await, Err(StoreError::InvalidRange)));

    let empty = s.key("empty");
    put(store, &empty, Bytes::new()).await;
    assert_eq!(store.head(&empty).await.unwrap().size, 0);
    assert_eq!(
        store.get_range(&empty, 0..4096).await.unwrap(),
        "",
        "an empty object reads as empty, not as a bad range"
    );
}

async fn a_get_if_match_with_a_stale_etag_fails_and_never_returns_another_version(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    let key = s.key("versioned");
    put(store, &key, &b"version one"[..]).await;
    let v1 = store.head(&key).await.unwrap().etag.unwrap();
    let got = store.get_range_if_match(&key, 0..100, Some(&v1)).await;
    assert_eq!(got.unwrap(), "version one");

    put(store, &key, &b"version two!"[..]).await;
    let v2 = store.head(&key).await.unwrap().etag.unwrap();
    assert_ne!(v1, v2);
    for range in [0..100, 8..12, 0..1] {
        let stale = store.get_range_if_match(&key, range, Some(&v1)).await;
        assert!(
            matches!(stale, Err(StoreError::PreconditionFailed)),
            "{stale:?}"
        );
    }
    let fresh = store.get_range_if_match(&key, 8..12, Some(&v2)).await;
    assert_eq!(fresh.unwrap(), "two!");
    let unconditional = store.get_range_if_match(&key, 0..7, None).await;
    assert_eq!(unconditional.unwrap(), "version");
}

async fn missing_keys_are_not_found_and_deleting_one_succeeds(store: &dyn ObjectStore, s: &Scope) {
    let missing = s.key("missing");
    assert!(is_not_found(store.head(&missing).await));
    assert!(is_not_found(store.get_range(&missing, 0..10).await));
    let with_etag = store
        .get_range_if_match(&missing, 0..10, Some("\"0123\""))
        .await;
    assert!(is_not_found(with_etag));
    store.delete(&missing).await.unwrap();
    assert!(is_not_found(store.copy(&missing, &s.key("to"), None).await));
    assert!(is_not_found(store.head(&s.key("to")).await));

    let key = s.key("deleted");
    put(store, &key, &b"x"[..]).await;
    store.delete(&key).await.unwrap();
    assert!(is_not_found(store.head(&key).await));
    assert!(is_not_found(store.get_range(&key, 0..1).await));
    store.delete(&key).await.unwrap();
}

// ---- Listings ------------------------------------------------------------------------

/// a, b/1, b/2, b/c/3, ba, c under the root.
const TREE: [&str; 6] = ["a", "b/1", "b/2", "b/c/3", "ba", "c"];

async fn a_listing_with_a_delimiter_groups_deeper_keys_into_prefixes(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    put_all(store, s, &TREE).await;
    // Local: a directory's marker is listed when the prefix names the directory itself.
    let top = list(store, s, "", Some("/"), 1000).await;
    let want: Vec<String> = s
        .own_marker("")
        .into_iter()
        .chain(strings(&["a", "ba", "c"]))
        .collect();
    assert_eq!(top.objects(), want);
    assert_eq!(top.prefixes(), ["b/"]);

    let b = list(store, s, "b/", Some("/"), 1000).await;
    let want: Vec<String> = s
        .own_marker("b/")
        .into_iter()
        .chain(strings(&["b/1", "b/2"]))
        .collect();
    assert_eq!(b.objects(), want);
    assert_eq!(b.prefixes(), ["b/c/"]);

    let part_of_a_name = list(store, s, "b", Some("/"), 1000).await;
    assert_eq!(part_of_a_name.objects(), ["ba"]);
    assert_eq!(part_of_a_name.prefixes(), ["b/"]);

    let nothing = list(store, s, "zzz", Some("/"), 1000).await;
    assert_eq!(
        nothing.pages,
        [(vec![], vec![])],
        "one empty page, no token"
    );
}

async fn a_listing_without_a_delimiter_returns_every_key_below_the_prefix_in_order(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    put_all(store, s, &TREE).await;
    let all = list(store, s, "", None, 1000).await;
    assert_eq!(all.objects(), stored_below(s, "", &TREE));
    if !s.directories {
        assert_eq!(all.objects(), TREE);
    }
    assert!(all.prefixes().is_empty());
    let b = list(store, s, "b/", None, 1000).await;
    assert_eq!(b.objects(), stored_below(s, "b/", &TREE));
    let nothing = list(store, s, "b/zzz", None, 1000).await;
    assert!(nothing.objects().is_empty());
}

async fn listed_objects_carry_the_size_and_etag_a_head_gives(store: &dyn ObjectStore, s: &Scope) {
    put(store, &s.key("small"), &b"12345"[..]).await;
    put(store, &s.key("d/empty"), Bytes::new()).await;
    let page = store.list_page(&s.root, None, None, 1000).await.unwrap();
    let mut checked = 0;
    for o in page.objects.iter().filter(|o| !o.key.ends_with('/')) {
        let info = store.head(&o.key).await.unwrap();
        assert_eq!((o.size, &o.etag), (info.size, &info.etag), "{}", o.key);
        assert!(o.last_modified > UNIX_EPOCH);
        checked += 1;
    }
    assert_eq!(checked, 2);
}

/// k0..k6, and d/x, d/y grouped under d/ by a delimiter.
const FLAT: [&str; 9] = ["d/x", "d/y", "k0", "k1", "k2", "k3", "k4", "k5", "k6"];

async fn pages_hold_at_most_max_keys_and_tokens_resume_after_the_last_one(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    put_all(store, s, &FLAT).await;
    let want = stored_below(s, "", &FLAT);
    for max_keys in [1, 2, 3, 1000] {
        let listing = list(store, s, "", None, max_keys).await;
        assert_eq!(listing.objects(), want, "max_keys {max_keys}");
        // S3 may answer a page short of max_keys (never longer); every store here fills all
        // pages but the last, and a spec relying on it would say so.
        let full_pages = want.len() / max_keys;
        for (objects, _) in &listing.pages[..full_pages] {
            assert_eq!(objects.len(), max_keys, "{:?}", listing.pages);
        }
    }
    // A token resumes after the page it came from, whatever max_keys the next page asks.
    let first = store.list_page(&s.root, None, None, 4).await.unwrap();
    let rest = store
        .list_page(&s.root, None, first.next_token, 1000)
        .await
        .unwrap();
    let keys: Vec<String> = first
        .objects
        .iter()
        .chain(&rest.objects)
        .map(|o| o.key.clone())
        .collect();
    let full: Vec<String> = want.iter().map(|n| s.key(n)).collect();
    assert_eq!(keys, full);
    assert_eq!(rest.next_token, None);
}

async fn a_flat_listing_can_start_after_any_key_and_go_on_with_its_token(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    put_all(store, s, &FLAT).await;
    let want = stored_below(s, "", &FLAT);
    // After an object, after a name no object has, after a name that is also a prefix.
    for after in ["k1", "k1x", "d"] {
        let first = store
            .list_page_after(&s.root, &s.key(after), 2)
            .await
            .unwrap();
        assert!(first.prefixes.is_empty(), "no delimiter");
        let mut keys: Vec<String> = first.objects.iter().map(|o| o.key.clone()).collect();
        let mut token = first.next_token;
        while let Some(t) = token {
            let page = store.list_page(&s.root, None, Some(t), 2).await.unwrap();
            keys.extend(page.objects.into_iter().map(|o| o.key));
            token = page.next_token;
        }
        let expected: Vec<String> = want
            .iter()
            .map(|n| s.key(n))
            .filter(|k| *k > s.key(after))
            .collect();
        assert_eq!(keys, expected, "after {after}");
    }
}

async fn grouped_pages_count_prefixes_and_never_repeat_one(store: &dyn ObjectStore, s: &Scope) {
    put_all(store, s, &FLAT).await;
    let want_objects: Vec<String> = (s.own_marker("").into_iter())
        .chain(strings(&FLAT[2..]))
        .collect();
    for max_keys in [1, 2, 3] {
        let listing = list(store, s, "", Some("/"), max_keys).await;
        assert_eq!(listing.prefixes(), ["d/"], "max_keys {max_keys}");
        assert_eq!(listing.objects(), want_objects);
        let entries = want_objects.len() + 1;
        assert_eq!(
            listing.pages.len(),
            entries.div_ceil(max_keys),
            "{:?}",
            listing.pages
        );
    }
}

async fn a_page_that_ends_at_a_directory_marker_goes_on_after_it(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    put(store, &s.key("d/"), Bytes::new()).await; // a marker, as `mkdir` makes
    put_all(store, s, &["d/a", "d/b"]).await;
    for max_keys in [1, 2, 1000] {
        let listing = list(store, s, "d/", Some("/"), max_keys).await;
        assert_eq!(
            listing.objects(),
            ["d/", "d/a", "d/b"],
            "max_keys {max_keys}"
        );
    }
}

// ---- Copies --------------------------------------------------------------------------

async fn a_copy_keeps_or_replaces_content_type_and_metadata(store: &dyn ObjectStore, s: &Scope) {
    let src = s.key("src");
    let o = opts("text/plain", &[("mode", "33188")]);
    store
        .put(&src, Bytes::from_static(b"copy me"), &o)
        .await
        .unwrap();

    let kept = s.key("kept");
    let etag = store
        .copy_with_options(&src, &kept, &PutOptions::default(), true)
        .await
        .unwrap();
    let info = store.head(&kept).await.unwrap();
    assert_eq!(info.content_type.as_deref(), Some("text/plain"));
    assert_eq!(info.metadata, meta(&[("mode", "33188")]));
    assert_eq!(read(store, &kept).await, "copy me");
    if etag.is_some() {
        assert_eq!(etag, info.etag, "the copy answers the ETag a HEAD shows");
    }

    let also_kept = s.key("also kept");
    store.copy(&src, &also_kept, None).await.unwrap();
    assert_eq!(store.head(&also_kept).await.unwrap().metadata, o.metadata);

    let replaced = s.key("replaced");
    let new = opts("application/x-new", &[("uid", "7")]);
    store.copy(&src, &replaced, Some(&new)).await.unwrap();
    let info = store.head(&replaced).await.unwrap();
    assert_eq!(info.content_type.as_deref(), Some("application/x-new"));
    assert_eq!(
        info.metadata, new.metadata,
        "nothing of the source's is left"
    );
    assert_eq!(read(store, &replaced).await, "copy me");

    // Onto an existing object: replaced whole.
    put(store, &kept, &b"old and longer"[..]).await;
    store.copy(&src, &kept, None).await.unwrap();
    assert_eq!(read(store, &kept).await, "copy me");
    let source = store.head(&src).await.unwrap();
    assert_eq!(
        (source.size, source.metadata),
        (7, o.metadata),
        "the source is untouched"
    );
}

// ---- Multipart uploads ---------------------------------------------------------------

async fn complete(
    store: &dyn ObjectStore,
    key: &str,
    id: &str,
    etags: Vec<String>,
) -> Option<String> {
    let parts = etags
        .into_iter()
        .zip(1..)
        .map(|(etag, number)| CompletedPart { number, etag })
        .collect();
    store
        .complete_multipart(key, id, parts, None)
        .await
        .unwrap()
}

fn when(condition: Condition) -> PutOptions {
    PutOptions {
        condition: Some(condition),
        ..PutOptions::default()
    }
}

async fn a_conditional_put_takes_effect_only_when_the_key_holds_what_it_says(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    let key = s.key("contended");
    let first = store
        .put(&key, Bytes::from_static(b"one"), &when(Condition::Absent))
        .await
        .expect("nothing there: the create succeeds");
    let refused = store
        .put(&key, Bytes::from_static(b"two"), &when(Condition::Absent))
        .await;
    assert!(matches!(refused, Err(StoreError::PreconditionFailed)));
    assert_eq!(
        read(store, &key).await,
        "one",
        "a refused write changes nothing"
    );

    let etag = first.or(store.head(&key).await.unwrap().etag).unwrap();
    let second = store
        .put(
            &key,
            Bytes::from_static(b"three"),
            &when(Condition::Is(etag.clone())),
        )
        .await
        .expect("the ETag it was based on: the overwrite succeeds");
    assert_ne!(second.as_deref(), Some(etag.as_str()));
    let stale = store
        .put(
            &key,
            Bytes::from_static(b"four"),
            &when(Condition::Is(etag)),
        )
        .await;
    assert!(matches!(stale, Err(StoreError::PreconditionFailed)));
    assert_eq!(read(store, &key).await, "three");

    let gone = store
        .put(
            &s.key("missing"),
            Bytes::from_static(b"x"),
            &when(Condition::Is("\"0\"".into())),
        )
        .await;
    assert!(
        matches!(gone, Err(StoreError::PreconditionFailed)),
        "If-Match on a missing key fails: {gone:?}"
    );
    assert!(is_not_found(store.head(&s.key("missing")).await));
}

async fn a_conditional_completion_takes_effect_only_when_the_key_holds_what_it_says(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    let key = s.key("contended big");
    let first = put(store, &key, "first").await;
    let first = first.or(store.head(&key).await.unwrap().etag).unwrap();
    put(store, &key, "theirs").await;
    let id = store
        .create_multipart(&key, &PutOptions::default())
        .await
        .unwrap();
    let part = store
        .upload_part(&key, &id, 1, Bytes::from_static(b"ours"))
        .await
        .unwrap();
    let parts = vec![CompletedPart {
        number: 1,
        etag: part,
    }];
    let stale_copy = store
        .upload_part_copy(&key, &id, 2, &key, Some(&first), 0..1)
        .await;
    assert!(
        matches!(stale_copy, Err(StoreError::PreconditionFailed)),
        "a part is copied only from the version it names: {stale_copy:?}"
    );
    let refused = store
        .complete_multipart(&key, &id, parts, Some(&Condition::Absent))
        .await;
    assert!(matches!(refused, Err(StoreError::PreconditionFailed)));
    assert_eq!(
        read(store, &key).await,
        "theirs",
        "a refused completion changes nothing"
    );
    store.abort_multipart(&key, &id).await.unwrap();
    assert!(uploads(store, &s.root).await.is_empty());
}

async fn a_conditional_copy_never_replaces_what_its_target_does_not_hold(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    let (from, to) = (s.key("copy source"), s.key("copy target"));
    put(store, &from, "source").await;
    put(store, &to, "taken").await;
    let refused = store
        .copy_with_options(&from, &to, &when(Condition::Absent), true)
        .await;
    assert!(
        matches!(refused, Err(StoreError::PreconditionFailed)),
        "{refused:?}"
    );
    assert_eq!(read(store, &to).await, "taken");
    let free = s.key("free target");
    store
        .copy_with_options(&from, &free, &when(Condition::Absent), true)
        .await
        .expect("a free name: copied");
    assert_eq!(read(store, &free).await, "source");
}

async fn a_copy_conditional_on_its_source_copies_only_the_version_it_names(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    let (from, to) = (s.key("moved"), s.key("moved to"));
    let seen = put(store, &from, "seen").await;
    let seen = seen.or(store.head(&from).await.unwrap().etag).unwrap();
    put(store, &from, "newer").await; // another client
    let of_seen = PutOptions {
        copy_source_etag: Some(seen),
        ..PutOptions::default()
    };
    let refused = store.copy_with_options(&from, &to, &of_seen, true).await;
    assert!(
        matches!(refused, Err(StoreError::PreconditionFailed)),
        "{refused:?}"
    );
    assert!(is_not_found(store.head(&to).await), "nothing was written");
    let current = store.head(&from).await.unwrap().etag;
    let of_current = PutOptions {
        copy_source_etag: current,
        ..PutOptions::default()
    };
    store
        .copy_with_options(&from, &to, &of_current, true)
        .await
        .expect("the current version: copied");
    assert_eq!(read(store, &to).await, "newer");
}

async fn a_conditional_delete_removes_only_the_version_it_names(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    let key = s.key("renamed away");
    let old = put(store, &key, "old").await;
    let old = old.or(store.head(&key).await.unwrap().etag).unwrap();
    put(store, &key, "newer").await; // another client
    let refused = store.delete_if_match(&key, &old).await;
    assert!(matches!(refused, Err(StoreError::PreconditionFailed)));
    assert_eq!(read(store, &key).await, "newer", "the newer version stays");
    let current = store.head(&key).await.unwrap().etag.unwrap();
    store.delete_if_match(&key, &current).await.unwrap();
    assert!(is_not_found(store.head(&key).await));
    store
        .delete_if_match(&key, &current)
        .await
        .expect("a missing key is deleted already");
}

async fn uploads(store: &dyn ObjectStore, prefix: &str) -> Vec<(String, String)> {
    let listed = store.list_multipart_uploads(prefix).await.unwrap();
    listed.into_iter().map(|u| (u.key, u.upload_id)).collect()
}

async fn a_multipart_upload_assembles_its_parts_in_number_order(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    let key = s.key("big file");
    let o = opts("application/x-mp", &[("uid", "1000")]);
    let id = store.create_multipart(&key, &o).await.unwrap();
    assert_eq!(uploads(store, &s.root).await, [(key.clone(), id.clone())]);
    let first = pattern(MIN_PART, 1);
    // Part 2 first, and twice: the last upload of a number is the one used.
    store
        .upload_part(&key, &id, 2, Bytes::from_static(b"wrong"))
        .await
        .unwrap();
    let e2 = store
        .upload_part(&key, &id, 2, Bytes::from_static(b"tail"))
        .await
        .unwrap();
    let e1 = store
        .upload_part(&key, &id, 1, first.clone())
        .await
        .unwrap();
    assert!(
        is_not_found(store.head(&key).await),
        "nothing before completion"
    );
    let etag = complete(store, &key, &id, vec![e1, e2]).await;

    let info = store.head(&key).await.unwrap();
    assert_eq!(info.size, (MIN_PART + 4) as u64);
    assert_eq!(info.content_type.as_deref(), Some("application/x-mp"));
    assert_eq!(info.metadata, o.metadata);
    if etag.is_some() {
        assert_eq!(etag, info.etag);
    }
    let across = (MIN_PART - 3) as u64..(MIN_PART + 4) as u64;
    let got = store.get_range(&key, across).await.unwrap();
    assert_eq!(&got[..3], &first[MIN_PART - 3..]);
    assert_eq!(&got[3..], b"tail");
    assert!(
        read(store, &key).await[..MIN_PART] == first[..],
        "part 1 whole"
    );
    assert!(uploads(store, &s.root).await.is_empty(), "completed: gone");
}

async fn an_aborted_multipart_upload_leaves_no_object_and_no_upload(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    let key = s.key("abandoned");
    let id = store
        .create_multipart(&key, &PutOptions::default())
        .await
        .unwrap();
    store
        .upload_part(&key, &id, 1, Bytes::from_static(b"part"))
        .await
        .unwrap();
    store.abort_multipart(&key, &id).await.unwrap();
    assert!(uploads(store, &s.root).await.is_empty());
    assert!(is_not_found(store.head(&key).await));
    let late = store
        .upload_part(&key, &id, 2, Bytes::from_static(b"late"))
        .await;
    assert!(
        is_not_found(late),
        "an aborted upload takes no more parts (S3: NoSuchUpload)"
    );
    store.abort_multipart(&key, &id).await.unwrap(); // twice: still fine
}

/// S3's `InvalidPart`: a part never uploaded, or named with another ETag than its own. The
/// memory and local stores say which; S3 does not.
async fn completing_with_a_part_the_upload_does_not_hold_is_an_invalid_part(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    let key = s.key("incomplete");
    let id = store
        .create_multipart(&key, &PutOptions::default())
        .await
        .unwrap();
    let etag = store
        .upload_part(&key, &id, 1, Bytes::from_static(b"only part"))
        .await
        .unwrap();
    let part = |number, etag: &str| CompletedPart {
        number,
        etag: etag.to_string(),
    };
    let never_uploaded = store
        .complete_multipart(&key, &id, vec![part(1, &etag), part(2, &etag)], None)
        .await;
    assert!(
        matches!(
            &never_uploaded,
            Err(StoreError::InvalidPart(
                PartMismatch::NeverUploaded { number: 2, .. } | PartMismatch::Reported(_)
            ))
        ),
        "{never_uploaded:?}"
    );
    assert!(is_not_found(store.head(&key).await), "no object");
}

async fn upload_part_copy_takes_a_range_of_another_object(store: &dyn ObjectStore, s: &Scope) {
    let src = s.key("source");
    let source = pattern(MIN_PART + 100, 7);
    put(store, &src, source.clone()).await;
    let key = s.key("assembled");
    let id = store
        .create_multipart(&key, &PutOptions::default())
        .await
        .unwrap();
    let e1 = store
        .upload_part_copy(&key, &id, 1, &src, None, 50..(MIN_PART + 50) as u64)
        .await
        .unwrap();
    let e2 = store
        .upload_part(&key, &id, 2, Bytes::from_static(b"end"))
        .await
        .unwrap();
    let missing = store
        .upload_part_copy(&key, &id, 3, &s.key("nope"), None, 0..1)
        .await;
    assert!(is_not_found(missing));
    let empty = store.upload_part_copy(&key, &id, 3, &src, None, 5..5).await;
    assert!(
        matches!(
            empty,
            Err(StoreError::InvalidRequest(InvalidRequest::EmptyCopyRange {
                start: 5,
                end: 5
            }))
        ),
        "an empty range is refused before it is sent: {empty:?}"
    );
    complete(store, &key, &id, vec![e1, e2]).await;
    let got = read(store, &key).await;
    assert_eq!(got.len(), MIN_PART + 3);
    assert!(
        got[..MIN_PART] == source[50..MIN_PART + 50],
        "the copied range"
    );
    assert_eq!(&got[MIN_PART..], b"end");
}

/// Creates an upload of `name` (relative); its key and id.
async fn start_upload(store: &dyn ObjectStore, s: &Scope, name: &str) -> (String, String) {
    let key = s.key(name);
    let id = store
        .create_multipart(&key, &PutOptions::default())
        .await
        .unwrap();
    (key, id)
}

/// The uploads under `prefix`, sorted (the order is the next spec's concern).
async fn sorted_uploads(store: &dyn ObjectStore, prefix: &str) -> Vec<(String, String)> {
    let mut listed = uploads(store, prefix).await;
    listed.sort();
    listed
}

async fn uploads_in_progress_are_listed_by_prefix_until_completed_or_aborted(
    store: &dyn ObjectStore,
    s: &Scope,
) {
    let b1 = start_upload(store, s, "b").await;
    let a = start_upload(store, s, "a").await;
    let b2 = start_upload(store, s, "b").await;
    let deep = start_upload(store, s, "dir/x").await;
    let sorted = |mut v: Vec<(String, String)>| {
        v.sort();
        v
    };

    let all = vec![a.clone(), b1.clone(), b2.clone(), deep.clone()];
    assert_eq!(
        sorted_uploads(store, &s.root).await,
        sorted(all),
        "two of one key"
    );
    let bs = vec![b1.clone(), b2.clone()];
    assert_eq!(sorted_uploads(store, &s.key("b")).await, sorted(bs));
    assert_eq!(
        uploads(store, &s.key("dir/")).await,
        std::slice::from_ref(&deep)
    );
    assert!(uploads(store, &s.key("zzz")).await.is_empty());

    store.abort_multipart(&b1.0, &b1.1).await.unwrap();
    let done = store
        .upload_part(&a.0, &a.1, 1, Bytes::from_static(b"a"))
        .await
        .unwrap();
    complete(store, &a.0, &a.1, vec![done]).await;
    let left = vec![b2.clone(), deep.clone()];
    assert_eq!(sorted_uploads(store, &s.root).await, sorted(left));
    for (key, id) in [b2, deep] {
        store.abort_multipart(&key, &id).await.unwrap();
    }
}

/// `list_multipart_uploads` promises key order (S3's ListMultipartUploads order).
async fn uploads_in_progress_are_listed_in_key_order(store: &dyn ObjectStore, s: &Scope) {
    for name in ["b", "a", "dir/x", "b", "c"] {
        start_upload(store, s, name).await;
    }
    let keys: Vec<String> = uploads(store, &s.root)
        .await
        .into_iter()
        .map(|(k, _)| k.strip_prefix(&s.root).unwrap().to_string())
        .collect();
    assert_eq!(keys, ["a", "b", "b", "c", "dir/x"]);
    for (key, id) in uploads(store, &s.root).await {
        store.abort_multipart(&key, &id).await.unwrap();
    }
}

// ---- Keys ----------------------------------------------------------------------------

/// Names URL and XML encodings spell differently, or that text cannot carry as they are.
const AWKWARD: [&str; 7] = [
    "a b",
    "a+b",
    "100% sure",
    "ünï 日本",
    "cr\rname",
    "tab\tname",
    "x&y<z>'\"",
];
/// A directory with an awkward name.
const AWKWARD_DIR: &str = "sub +%ü\r/";

async fn awkward_keys_come_back_exactly_from_every_request(store: &dyn ObjectStore, s: &Scope) {
    let mut names = Vec::new();
    for name in AWKWARD {
        for dir in ["", AWKWARD_DIR] {
            let name = format!("{dir}{name}");
            put(store, &s.key(&name), name.clone()).await;
            names.push(name);
        }
    }
    for name in &names {
        let key = s.key(name);
        assert_eq!(store.head(&key).await.unwrap().size, name.len() as u64);
        assert_eq!(read(store, &key).await, name.as_bytes(), "{name:?}");
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();

    let top = list(store, s, "", Some("/"), 1000).await;
    let mut want: Vec<String> = (s.own_marker("").into_iter())
        .chain(strings(&AWKWARD))
        .collect();
    want.sort();
    assert_eq!(top.objects(), want);
    assert_eq!(top.prefixes(), [AWKWARD_DIR]);
    // One key a page: every key and token goes to the server and back.
    let one_by_one = list(store, s, "", None, 1).await;
    assert_eq!(one_by_one.objects(), stored_below(s, "", &names));
    let inside = list(store, s, AWKWARD_DIR, None, 1000).await;
    assert_eq!(inside.objects(), stored_below(s, AWKWARD_DIR, &names));

    let copy = s.key("copy of 100% ü+\r");
    store.copy(&s.key("a+b"), &copy, None).await.unwrap();
    assert_eq!(read(store, &copy).await, "a+b");

    // No CR here: moto ignores encoding-type on ListMultipartUploads (see s3/tests_live.rs).
    let mp = s.key("100% +plus & <lt> ü");
    let id = store
        .create_multipart(&mp, &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(uploads(store, &s.root).await, [(mp.clone(), id.clone())]);
    store.abort_multipart(&mp, &id).await.unwrap();

    for name in names {
        store.delete(&s.key(name)).await.unwrap();
        assert!(is_not_found(store.head(&s.key(name)).await), "{name:?}");
    }
}

// ---- Prefixes and directories --------------------------------------------------------

async fn a_name_can_be_an_object_and_a_prefix_at_once(store: &dyn ObjectStore, s: &Scope) {
    put(store, &s.key("x"), &b"file"[..]).await;
    let below = store
        .put(
            &s.key("x/y"),
            Bytes::from_static(b"below"),
            &PutOptions::default(),
        )
        .await;
    if s.directories {
        // Local: `x` is a file, so there is no directory `x/` to hold `y`.
        let parent = s.key("x");
        assert!(
            matches!(
                &below,
                Err(StoreError::KeyRefused {
                    reason: KeyRefusal::ParentNotADirectory { parent: p, special: false },
                    ..
                }) if *p == parent
            ),
            "{below:?}"
        );
        return;
    }
    below.unwrap();
    assert_eq!(read(store, &s.key("x")).await, "file");
    assert_eq!(read(store, &s.key("x/y")).await, "below");
    let top = list(store, s, "", Some("/"), 1000).await;
    assert_eq!(
        (top.objects(), top.prefixes()),
        (strings(&["x"]), strings(&["x/"]))
    );
}

async fn a_prefix_is_no_object_and_goes_with_its_last_key(store: &dyn ObjectStore, s: &Scope) {
    put(store, &s.key("d/f"), &b"x"[..]).await;
    let marker = store.head(&s.key("d/")).await;
    assert!(is_not_found(store.head(&s.key("d")).await));
    store.delete(&s.key("d/f")).await.unwrap();
    let top = list(store, s, "", Some("/"), 1000).await;
    if s.directories {
        // Local: the directory is the marker object `d/`, and deleting its last file keeps it.
        assert_eq!(marker.unwrap().size, 0);
        assert_eq!(top.prefixes(), ["d/"]);
        return;
    }
    assert!(is_not_found(marker), "no marker was put");
    assert!(top.prefixes().is_empty(), "{:?}", top.pages);
    assert!(top.objects().is_empty());
}
