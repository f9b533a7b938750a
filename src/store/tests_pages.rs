//! Specs of paged listings: every store's (`one_by_one`) and the one that asks for the next
//! page before it decodes a page (`decoded_behind`), against a book of canned pages that
//! notes when each page is asked for and decoded.

use std::future::Future;
use std::sync::{Arc, Mutex};

use super::*;
use crate::store::memory::MemoryStore;
use crate::store::{BadResponse, ListedObject, PutOptions};

async fn all(mut pages: Pages) -> Vec<StoreResult<ListPage>> {
    let mut out = Vec::new();
    while let Some(page) = pages.recv().await {
        out.push(page);
    }
    out
}

fn keys(page: &ListPage) -> Vec<&str> {
    page.objects.iter().map(|o| o.key.as_str()).collect()
}

async fn store_with(keys: impl IntoIterator<Item = String>) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    for key in keys {
        store
            .put(&key, bytes::Bytes::new(), &PutOptions::default())
            .await
            .unwrap();
    }
    store
}

#[tokio::test]
async fn every_store_reads_a_listing_page_after_page_to_its_end() {
    let store = store_with((0..2500).map(|i| format!("d/f{i:04}"))).await;
    let pages = all(store.list_pages(PagedList::grouped("d/", "/"))).await;
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p.as_ref().unwrap().objects.len())
        .collect();
    assert_eq!(sizes, [1000, 1000, 500]);
    let last = pages.last().unwrap().as_ref().unwrap();
    assert_eq!(keys(last).last(), Some(&"d/f2499"));
}

#[tokio::test]
async fn every_store_reads_a_flat_listing_from_after_a_key_and_no_further_than_asked() {
    let names = (0..5000).map(|i| format!("t/d{:02}/f{i:04}", i / 100));
    let store = store_with(names).await;
    let first_keys = |pages: &[StoreResult<ListPage>]| -> Vec<String> {
        let first = |p: &StoreResult<ListPage>| keys(p.as_ref().unwrap())[0].to_string();
        pages.iter().map(first).collect()
    };
    // Up to the page past the bound.
    let list = PagedList::flat("t/", "t/d04/", "t/d16/~", 10);
    let pages = all(store.clone().list_pages(list)).await;
    assert_eq!(first_keys(&pages), ["t/d04/f0400", "t/d14/f1400"]);
    // Up to the most pages asked for.
    let list = PagedList::flat("t/", "t/d04/", "t/d99/", 3);
    let pages = all(store.list_pages(list)).await;
    assert_eq!(
        first_keys(&pages),
        ["t/d04/f0400", "t/d14/f1400", "t/d24/f2400"]
    );
    assert!(
        pages[2].as_ref().unwrap().next_token.is_some(),
        "pages left unread"
    );
}

/// What the book was asked, in order: `ask N` when page N was asked for, `decode N` when its
/// answer was decoded.
type Log = Arc<Mutex<Vec<String>>>;

/// What a page's answer tells as its token before it is decoded.
#[derive(Clone, Copy)]
enum Guess {
    /// The token the decoded page names.
    Right,
    /// The token of the page after that.
    Skip,
    /// None.
    Blind,
}

/// `count` pages, page N's token naming page N+1; page `bad` (if any) cannot be decoded,
/// and the request for page `fail_request` fails.
struct Book {
    count: usize,
    guess: Guess,
    bad: Option<usize>,
    fail_request: Option<usize>,
    log: Log,
    /// Each request sends its page's number here when it runs.
    ran: std::sync::mpsc::Sender<usize>,
    ran_seen: Mutex<std::sync::mpsc::Receiver<usize>>,
    /// Decoding a page waits (a while) for the next page's request to run, and logs whether
    /// it did: `decode N while N+1 runs`.
    wait_for_next: bool,
}

fn token(n: usize) -> String {
    format!("t{n}")
}

fn book(count: usize) -> Book {
    let (ran, ran_seen) = std::sync::mpsc::channel();
    Book {
        count,
        guess: Guess::Right,
        bad: None,
        fail_request: None,
        log: Log::default(),
        ran,
        ran_seen: Mutex::new(ran_seen),
        wait_for_next: false,
    }
}

impl Book {
    fn token_after(&self, n: usize) -> Option<String> {
        (n + 1 < self.count).then(|| token(n + 1))
    }

    fn guess(&self, n: usize) -> Option<String> {
        match self.guess {
            Guess::Right => self.token_after(n),
            Guess::Skip => self.token_after(n + 1),
            Guess::Blind => None,
        }
    }
}

impl PageAnswers for Book {
    type Answer = (usize, Option<String>);

    fn ask(
        self: &Arc<Self>,
        _list: &PagedList,
        token: Option<String>,
    ) -> impl Future<Output = StoreResult<Self::Answer>> + Send + 'static {
        let n = token.map_or(0, |t| t[1..].parse().unwrap());
        self.log.lock().unwrap().push(format!("ask {n}"));
        let answer = match self.fail_request == Some(n) {
            true => Err(StoreError::Unreachable("no route".into())),
            false => Ok((n, self.guess(n))),
        };
        let ran = self.ran.clone();
        async move {
            let _ = ran.send(n);
            answer
        }
    }

    fn token_in(answer: &Self::Answer) -> Option<String> {
        answer.1.clone()
    }

    fn last_key_in(answer: &Self::Answer) -> Option<String> {
        Some(format!("k{}", answer.0))
    }

    fn decode(&self, (n, _): Self::Answer) -> StoreResult<ListPage> {
        if self.wait_for_next && self.token_after(n).is_some() {
            let ran = self.ran_seen.lock().unwrap();
            let wait = std::time::Duration::from_secs(5);
            if std::iter::from_fn(|| ran.recv_timeout(wait).ok()).any(|r| r == n + 1) {
                self.log
                    .lock()
                    .unwrap()
                    .push(format!("decode {n} while {} runs", n + 1));
            }
        }
        self.log.lock().unwrap().push(format!("decode {n}"));
        if self.bad == Some(n) {
            return Err(StoreError::BadResponse(BadResponse::Unparsable(
                "not XML".into(),
            )));
        }
        Ok(ListPage {
            objects: vec![ListedObject {
                key: format!("k{n}"),
                size: 0,
                last_modified: std::time::UNIX_EPOCH,
                etag: None,
            }],
            prefixes: Vec::new(),
            next_token: self.token_after(n),
        })
    }
}

/// Reads every page of `book` through `decoded_behind` (at most `max_pages`): the keys of the
/// pages read (an error as `error`), and the book's log.
async fn read_behind(book: Book, max_pages: usize) -> (Vec<String>, Vec<String>) {
    let mut list = PagedList::grouped("", "/");
    list.max_pages = max_pages;
    read(book, list).await
}

async fn read(book: Book, list: PagedList) -> (Vec<String>, Vec<String>) {
    let log = book.log.clone();
    let pages = all(decoded_behind(Arc::new(book), list)).await;
    let read = pages
        .iter()
        .map(|p| match p {
            Ok(page) => keys(page).join(","),
            Err(_) => "error".to_string(),
        })
        .collect();
    let log = log.lock().unwrap().clone();
    (read, log)
}

/// `read_behind` of a flat listing that stops after the page past `until`.
async fn read_bounded(book: Book, until: &str) -> (Vec<String>, Vec<String>) {
    read(book, PagedList::flat("", "", until, usize::MAX)).await
}

#[tokio::test]
async fn the_next_page_is_asked_for_before_a_page_is_decoded() {
    let (read, log) = read_behind(book(3), usize::MAX).await;
    assert_eq!(read, ["k0", "k1", "k2"]);
    assert_eq!(
        log,
        ["ask 0", "ask 1", "decode 0", "ask 2", "decode 1", "decode 2"]
    );
}

/// On a runtime of one thread, where a decode that held the thread would keep the next
/// page's request from being sent until it ends.
#[tokio::test(flavor = "current_thread")]
async fn a_page_is_decoded_while_the_next_pages_request_runs() {
    let mut waiting = book(3);
    waiting.wait_for_next = true;
    let (read, log) = read_behind(waiting, usize::MAX).await;
    assert_eq!(read, ["k0", "k1", "k2"]);
    for n in 0..2 {
        let overlapped = format!("decode {n} while {} runs", n + 1);
        assert!(log.contains(&overlapped), "{overlapped:?} not in {log:?}");
    }
}

#[tokio::test]
async fn a_wrong_guess_of_the_token_is_given_up_for_the_decoded_one() {
    let mut wrong = book(3);
    wrong.guess = Guess::Skip;
    let (read, log) = read_behind(wrong, usize::MAX).await;
    assert_eq!(read, ["k0", "k1", "k2"], "no page skipped, none twice");
    assert_eq!(log[..4], ["ask 0", "ask 2", "decode 0", "ask 1"]);
}

#[tokio::test]
async fn without_a_guess_the_next_page_is_asked_for_once_a_page_is_decoded() {
    let mut blind = book(2);
    blind.guess = Guess::Blind;
    let (read, log) = read_behind(blind, usize::MAX).await;
    assert_eq!(read, ["k0", "k1"]);
    assert_eq!(log, ["ask 0", "decode 0", "ask 1", "decode 1"]);
}

#[tokio::test]
async fn a_listing_asks_for_no_page_past_the_last_it_reads() {
    let (read, log) = read_behind(book(5), 2).await;
    assert_eq!(read, ["k0", "k1"]);
    assert!(!log.contains(&"ask 2".to_string()), "{log:?}");
}

#[tokio::test]
async fn a_bounded_listing_asks_for_no_page_after_the_one_past_its_bound() {
    let (s, log) = read_bounded(book(6), "k2x").await;
    assert_eq!(s, ["k0", "k1", "k2", "k3"], "up to the page past the bound");
    assert!(!log.contains(&"ask 4".to_string()), "{log:?}");
}

#[tokio::test]
async fn a_bounded_listing_guesses_the_next_page_only_within_its_bound() {
    let (s, log) = read_bounded(book(3), "k0x").await;
    assert_eq!(s, ["k0", "k1"]);
    assert_eq!(log, ["ask 0", "ask 1", "decode 0", "decode 1"]);
}

#[tokio::test]
async fn a_page_that_cannot_be_decoded_ends_the_listing_with_its_error() {
    let mut broken = book(4);
    broken.bad = Some(1);
    let (read, _) = read_behind(broken, usize::MAX).await;
    assert_eq!(read, ["k0", "error"]);
}

#[tokio::test]
async fn a_failed_request_ends_the_listing_with_its_error() {
    let mut cut = book(4);
    cut.fail_request = Some(2);
    let (read, log) = read_behind(cut, usize::MAX).await;
    assert_eq!(read, ["k0", "k1", "error"]);
    assert!(!log.contains(&"ask 3".to_string()), "{log:?}");
}
