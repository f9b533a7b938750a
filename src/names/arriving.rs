//! A directory listing as it arrives: the entries of each LIST page are appended as soon as
//! they are in the inode table, and a readdir handle serves them by offset while the next
//! pages are listed. An `ls -f` of 100,000 names then costs the LIST's pages, not the pages
//! and then the readdir calls that hand the kernel the names. Entries are only appended, so
//! an offset stays valid for the life of the handle.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::error::{NameError, NameResult};
use super::listing::DirEntry;

/// The entries of one listing so far, and how it ended once it has.
#[derive(Default)]
pub struct Arriving {
    state: Mutex<State>,
    /// Woken at each append and at the end.
    grew: Notify,
}

#[derive(Default)]
struct State {
    /// The entries in the chunks they arrived in (a page each): a listing that grows copies
    /// no entry, and holds no block twice its size.
    chunks: Vec<Vec<DirEntry>>,
    /// The offset of each chunk's first entry.
    starts: Vec<usize>,
    len: usize,
    /// Set once nothing more will arrive: the listing is complete, or failed.
    end: Option<Result<(), NameError>>,
}

impl State {
    fn append(&mut self, entries: Vec<DirEntry>) {
        self.starts.push(self.len);
        self.len += entries.len();
        self.chunks.push(entries);
    }

    /// Copies of the entries from `start` to `end` (as far as they go).
    fn slice(&self, start: usize, end: usize) -> Vec<DirEntry> {
        let end = end.min(self.len);
        let mut out = Vec::with_capacity(end.saturating_sub(start));
        let first = self
            .starts
            .partition_point(|&s| s <= start)
            .saturating_sub(1);
        for (chunk, &from) in self.chunks.iter().zip(&self.starts).skip(first) {
            if from >= end {
                break;
            }
            let lo = start.saturating_sub(from).min(chunk.len());
            let hi = (end - from).min(chunk.len());
            out.extend_from_slice(&chunk[lo..hi]);
        }
        out
    }
}

impl Arriving {
    /// A listing still to arrive.
    pub(super) fn new() -> Arc<Arriving> {
        Arc::default()
    }

    /// A listing already complete (from the table).
    pub fn complete(entries: Vec<DirEntry>) -> Arc<Arriving> {
        let mut state = State {
            end: Some(Ok(())),
            ..State::default()
        };
        state.append(entries);
        Arc::new(Arriving {
            state: Mutex::new(state),
            grew: Notify::new(),
        })
    }

    /// Appends entries and wakes the readers waiting for them.
    pub(super) fn push(&self, entries: Vec<DirEntry>) {
        if entries.is_empty() {
            return;
        }
        self.state.lock().unwrap().append(entries);
        self.grew.notify_waiters();
    }

    /// Nothing more arrives: the listing is complete (`Ok`) or failed. Only the first end
    /// counts.
    pub(super) fn end(&self, result: NameResult<()>) {
        self.state.lock().unwrap().end.get_or_insert(result);
        self.grew.notify_waiters();
    }

    /// How many entries have arrived so far.
    pub fn arrived_len(&self) -> usize {
        self.state.lock().unwrap().len
    }

    /// The entries from `start` to `end` that have arrived (none waited for).
    pub fn arrived(&self, start: usize, end: usize) -> Vec<DirEntry> {
        self.state.lock().unwrap().slice(start, end)
    }

    /// The names of the entries that have arrived, but `.` and `..`.
    pub(super) fn names(&self) -> Vec<Arc<str>> {
        let state = self.state.lock().unwrap();
        let mut names = Vec::with_capacity(state.len);
        for chunk in &state.chunks {
            let listed = chunk.iter().filter(|e| &*e.name != "." && &*e.name != "..");
            names.extend(listed.map(|e| e.name.clone()));
        }
        names
    }

    /// Up to `count` entries from `start`, once that many have arrived or the listing
    /// ended (fewer, or none, at its end); the listing's error if it failed.
    pub async fn get(&self, start: usize, count: usize) -> NameResult<Vec<DirEntry>> {
        let end = start.saturating_add(count);
        self.when(|s| s.len >= end, |s| s.slice(start, end)).await
    }

    /// Every entry, once the listing is complete; its error if it failed.
    pub async fn all(&self) -> NameResult<Vec<DirEntry>> {
        self.when(|_| false, |s| s.slice(0, s.len)).await
    }

    /// Waits until `ready` or the end, then takes what `take` reads (an error instead when
    /// the listing failed).
    async fn when<T>(
        &self,
        ready: impl Fn(&State) -> bool,
        take: impl Fn(&State) -> T,
    ) -> NameResult<T> {
        loop {
            let grew = self.grew.notified();
            tokio::pin!(grew);
            // Registered before the state is read: an append in between still wakes us.
            grew.as_mut().enable();
            {
                let state = self.state.lock().unwrap();
                match &state.end {
                    Some(Err(e)) => return Err(e.clone()),
                    Some(Ok(())) => return Ok(take(&state)),
                    None if ready(&state) => return Ok(take(&state)),
                    None => {}
                }
            }
            grew.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::inode::Kind;
    use std::time::Duration;

    fn entry(i: u64) -> DirEntry {
        DirEntry {
            ino: i,
            kind: Kind::File,
            name: format!("f{i}").into(),
        }
    }

    #[tokio::test]
    async fn a_reader_gets_what_arrived_and_waits_only_for_entries_still_to_come() {
        let listing = Arriving::new();
        listing.push((0..10).map(entry).collect());
        let first = listing.get(0, 5).await.unwrap();
        assert_eq!(
            first.iter().map(|e| e.ino).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        let later = {
            let listing = listing.clone();
            tokio::spawn(async move { listing.get(8, 5).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!later.is_finished(), "served before the entries arrived");
        listing.push((10..13).map(entry).collect());
        let got = tokio::time::timeout(Duration::from_secs(5), later)
            .await
            .expect("woken by the append")
            .unwrap()
            .unwrap();
        assert_eq!(
            got.iter().map(|e| e.ino).collect::<Vec<_>>(),
            [8, 9, 10, 11, 12]
        );
    }

    #[tokio::test]
    async fn the_end_serves_the_rest_and_a_failure_is_every_readers_error() {
        let listing = Arriving::new();
        listing.push((0..3).map(entry).collect());
        let waiting = {
            let listing = listing.clone();
            tokio::spawn(async move { listing.get(2, 64).await })
        };
        listing.end(Ok(()));
        assert_eq!(waiting.await.unwrap().unwrap().len(), 1, "the last entry");
        assert!(listing.get(3, 64).await.unwrap().is_empty(), "past the end");
        assert_eq!(listing.all().await.unwrap().len(), 3);

        let failed = Arriving::new();
        failed.push((0..3).map(entry).collect());
        failed.end(Err(NameError::NotFound));
        failed.end(Ok(()));
        assert!(matches!(failed.get(0, 1).await, Err(NameError::NotFound)));
        assert!(failed.all().await.is_err());
    }
}
