//! Listings read page after page by a task of their own (`ObjectStore::list_pages`): a
//! directory listing and a walk's flat listing ask for the next page as soon as they can, not
//! after the filesystem entered the page before.
//!
//! Every store can do that much (`one_by_one`: the next page is asked for once the page before
//! it is back and decoded). An S3 answer can do better (`decoded_behind`): its continuation
//! token is found in the answer's text without decoding the rest, so the next page's request
//! leaves before the page is decoded, and the page is decoded on a blocking thread: decoding
//! inline held the runtime's worker, and the request just spawned waited on that worker's
//! queue until the decode ended, which undid the gain. Decoding a page of 1,000 keys takes
//! ~1.8 ms against ~5 ms for Garage to list it on loopback; `ls -f` of 100,000 names took
//! 0.58-0.62 s instead of 0.79-0.84 s (pages every 5.4 ms instead of 7.4 ms), against 0.68-0.72
//! s for a raw client asking page after page (by hand, three runs each). The token found that
//! way is only a guess: when the decoded page names another token (or none), the page asked
//! for on the guess is given up and the right one asked for, so a wrong guess costs a
//! request, never a wrong page.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};

use super::{ListPage, ObjectStore, StoreError, StoreResult};

/// Keys per page (the most S3 hands out at once).
pub const PAGE_KEYS: usize = 1000;

/// Pages read but not taken yet, at most (and one more asked for).
const PAGES_AHEAD: usize = 2;

/// Which listing to read in pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagedList {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Keys after this one only (ListObjectsV2's StartAfter; only without a delimiter).
    pub start_after: Option<String>,
    /// No page is asked for after one whose last key is past this one (a walk's listing
    /// that reached the end of what it claimed).
    pub until: Option<String>,
    /// Pages read at most: a listing that stops early asks for no page it will not read.
    pub max_pages: usize,
}

impl PagedList {
    /// Every page of the keys under `prefix`, grouped by `delimiter`.
    pub fn grouped(prefix: &str, delimiter: &str) -> PagedList {
        PagedList {
            prefix: prefix.to_string(),
            delimiter: Some(delimiter.to_string()),
            start_after: None,
            until: None,
            max_pages: usize::MAX,
        }
    }

    /// At most `max_pages` pages of the flat listing (no delimiter) of the keys under
    /// `prefix` after `start_after`, up to the page that goes past `until`.
    pub fn flat(prefix: &str, start_after: &str, until: &str, max_pages: usize) -> PagedList {
        PagedList {
            prefix: prefix.to_string(),
            delimiter: None,
            start_after: Some(start_after.to_string()),
            until: Some(until.to_string()),
            max_pages,
        }
    }

    /// True when no page is to be asked for after one whose last key is `last`.
    fn past_until(&self, last: Option<&str>) -> bool {
        match (&self.until, last) {
            (Some(until), Some(last)) => last > until.as_str(),
            _ => false,
        }
    }

    /// True when `page` is the last to read of this listing (see `until`).
    fn ends_with(&self, page: &ListPage) -> bool {
        page.next_token.is_none() || self.past_until(page.objects.last().map(|o| o.key.as_str()))
    }
}

/// The pages of one listing in order. The last one received is the page without a token, an
/// error, or the `max_pages`th; dropping the receiver stops the listing, and gives up the
/// request in flight.
pub type Pages = mpsc::Receiver<StoreResult<ListPage>>;

/// `ObjectStore::list_pages` for any store: each page asked for with `list_page` (the first
/// with `list_page_after` when the listing starts after a key) once the one before is back.
pub fn one_by_one<S: ObjectStore + ?Sized>(store: Arc<S>, list: PagedList) -> Pages {
    let (tx, rx) = mpsc::channel(PAGES_AHEAD);
    tokio::spawn(async move {
        let mut token = None;
        for _ in 0..list.max_pages {
            let delimiter = list.delimiter.as_deref();
            let asked = async {
                match (token.take(), &list.start_after) {
                    (None, Some(after)) => {
                        store.list_page_after(&list.prefix, after, PAGE_KEYS).await
                    }
                    (token, _) => {
                        store
                            .list_page(&list.prefix, delimiter, token, PAGE_KEYS)
                            .await
                    }
                }
            };
            let page = tokio::select! {
                page = asked => page,
                _ = tx.closed() => return,
            };
            let next = match &page {
                Ok(p) if !list.ends_with(p) => p.next_token.clone(),
                _ => None,
            };
            if tx.send(page).await.is_err() {
                return;
            }
            match next {
                Some(t) => token = Some(t),
                None => return,
            }
        }
    });
    rx
}

/// A store whose answers to a page's request can be read for their token before they are
/// decoded (see `decoded_behind`).
pub trait PageAnswers: Send + Sync + 'static {
    /// One page's answer as it came.
    type Answer: Send + 'static;

    /// Asks for the first page of `list` (`token` `None`) or the page `token` names.
    fn ask(
        self: &Arc<Self>,
        list: &PagedList,
        token: Option<String>,
    ) -> impl Future<Output = StoreResult<Self::Answer>> + Send + 'static;

    /// The answer's continuation token if it can be read without decoding the answer (a
    /// guess: `decode` has the last word).
    fn token_in(answer: &Self::Answer) -> Option<String>;

    /// The answer's last key, if it can be read without decoding the answer.
    fn last_key_in(answer: &Self::Answer) -> Option<String>;

    fn decode(&self, answer: Self::Answer) -> StoreResult<ListPage>;
}

/// The request for a page, in flight; dropping it gives the request up.
struct Asked<T>(JoinHandle<T>);

impl<T> Drop for Asked<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Asked<T> {
    fn spawn(request: impl Future<Output = T> + Send + 'static) -> Asked<T>
    where
        T: Send + 'static,
    {
        Asked(tokio::spawn(request))
    }

    async fn answer(mut self) -> Result<T, JoinError> {
        (&mut self.0).await
    }
}

/// `ObjectStore::list_pages` for a store whose answers tell their token before they are
/// decoded: the next page is asked for as soon as its token is found in the answer, and the
/// answer is decoded while the store lists the next page.
pub fn decoded_behind<P: PageAnswers>(source: Arc<P>, list: PagedList) -> Pages {
    let (tx, rx) = mpsc::channel(PAGES_AHEAD);
    tokio::spawn(async move {
        let mut asked = Asked::spawn(source.ask(&list, None));
        for n in 1..=list.max_pages {
            let more = n < list.max_pages;
            let answer = tokio::select! {
                answer = asked.answer() => answer,
                _ = tx.closed() => return,
            };
            let answer = answer
                .unwrap_or_else(|e| Err(StoreError::task_failed("a listing's page request", e)));
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            // With a bound, the next page is only guessed at when this one is seen not to go
            // past it.
            let within = match &list.until {
                None => true,
                Some(_) => P::last_key_in(&answer).is_some_and(|k| !list.past_until(Some(&k))),
            };
            let guess = P::token_in(&answer).filter(|_| more && within);
            let mut next = guess
                .clone()
                .map(|t| Asked::spawn(source.ask(&list, Some(t))));
            let decoding = source.clone();
            let page = tokio::task::spawn_blocking(move || decoding.decode(answer))
                .await
                .unwrap_or_else(|e| Err(StoreError::task_failed("a listing's page decoding", e)));
            let token = match &page {
                Ok(p) if !list.ends_with(p) => p.next_token.clone(),
                _ => None,
            };
            if token != guess {
                next = token
                    .filter(|_| more)
                    .map(|t| Asked::spawn(source.ask(&list, Some(t))));
            }
            let failed = page.is_err();
            if tx.send(page).await.is_err() || failed {
                return;
            }
            match next {
                Some(n) => asked = n,
                None => return,
            }
        }
    });
    rx
}

#[cfg(test)]
#[path = "tests_pages.rs"]
mod tests;
