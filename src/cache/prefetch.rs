//! Adaptive prefetch for one open file handle.
//!
//! The object is read in fixed-size blocks. A read near where the previous ones ended is
//! sequential: the read-ahead window doubles, from one block up to `max_window`, and every
//! block inside the window that is not cached or already on its way is requested, in chunks
//! of up to `chunk` bytes, each chunk one ranged GET running in parallel with the others.
//! The blocks a read needs get a GET of their own, so the first bytes of a file do not wait
//! for a whole chunk. A read elsewhere (a seek) resets the window, so random reads fetch
//! only their own blocks.
//!
//! A fetched block stays with the handle until every byte of it has been read, or until it
//! is a whole window behind the reading (abandoned). The kernel's read-ahead sends two
//! streams of reads about its window apart, so a block may be read well after later ones:
//! holding it here, rather than relying on the shared LRU (smaller than the window), is
//! what keeps it from being fetched twice.
//!
//! Backpressure: a chunk read ahead takes permits (KiB) from a semaphore shared by all
//! handles, from before its GET until no handle holds it any more, so the prefetch memory of
//! the daemon (in flight and fetched but not yet read) stays within its budget however many
//! files are read at once. The blocks a read itself needs take permits if there are any but
//! never wait for them, nor does read-ahead once a read waits for it: a reader always makes
//! progress, even while another handle holds the budget unread. Fetched blocks go to the
//! shared memory cache (and the disk cache if enabled).
//! Every GET of one handle is pinned to the ETag seen at open, so a concurrent overwrite
//! fails the read (ESTALE) instead of mixing two versions.
//!
//! Cache hits and misses and the bytes read ahead, used or not, are counted here, where they
//! happen (`Caches::counters`, see `stats`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::blocks::{BlockCache, BlockId};
use super::disk::DiskCache;
use super::stats::{CacheCounters, CacheStats};
use crate::store::{ObjectStore, StoreError};

/// Where fetched blocks live, shared by every handle of the mount.
pub struct Caches {
    pub memory: BlockCache,
    pub disk: Option<Arc<DiskCache>>,
    /// Prefetch memory budget in KiB.
    pub budget: Arc<Semaphore>,
    pub block_size: u64,
    pub counters: CacheCounters,
}

impl Caches {
    /// Caches with `memory` bytes of blocks and `budget` bytes of prefetch in flight.
    pub fn new(memory: u64, budget: u64, disk: Option<Arc<DiskCache>>) -> Caches {
        Caches {
            memory: BlockCache::new(memory as usize),
            disk,
            budget: Arc::new(Semaphore::new((budget / 1024).max(1) as usize)),
            block_size: BLOCK_SIZE,
            counters: CacheCounters::default(),
        }
    }

    /// What the caches and the read-ahead did so far, and what the caches hold now.
    pub fn stats(&self) -> CacheStats {
        let disk_size = self.disk.as_ref().map(|d| d.size());
        self.counters.snapshot(self.memory.size() as u64, disk_size)
    }
}

/// The unit of caching and of random reads.
pub const BLOCK_SIZE: u64 = 1 << 20;

/// The version of the object a handle reads.
#[derive(Debug, Clone)]
pub struct Version {
    pub key: Arc<str>,
    /// Identifies the content for the caches (the ETag, or size and mtime without one).
    pub etag: Arc<str>,
    /// The ETag every GET is pinned to (`If-Match`), when the store gave one.
    pub pin: Option<Arc<str>>,
    pub size: u64,
}

/// A chunk's bytes and its share of the prefetch budget, given back when the last handle
/// holding the chunk lets it go.
#[derive(Clone)]
struct Chunk {
    data: Bytes,
    _budget: Option<Arc<OwnedSemaphorePermit>>,
}

type Fetch = Shared<BoxFuture<'static, Result<Chunk, StoreError>>>;

pub struct Prefetcher {
    store: Arc<dyn ObjectStore>,
    caches: Arc<Caches>,
    version: Version,
    max_window: u64,
    chunk: u64,
    /// Locked only for bookkeeping, never across a fetch: the kernel sends reads of one
    /// handle in parallel, and a read of a block already here must not wait behind a read
    /// whose GET is still on its way.
    state: Mutex<Window>,
}

/// Where a handle's reading is and what it has requested.
struct Window {
    window: u64,
    next: u64,
    /// First block read-ahead has not requested yet: blocks below it were requested once
    /// already and, if they are not held, were read (or skipped), so are not fetched again.
    ahead_from: u64,
    /// Blocks fetched or on their way and not yet read.
    inflight: BTreeMap<u64, Held>,
}

/// One block the handle holds: its chunk's fetch, and how much of it has been read.
#[derive(Clone)]
struct Held {
    /// First block of the chunk `fetch` gets.
    chunk_first: u64,
    fetch: Fetch,
    /// Set when a read waits for the chunk: a read-ahead GET waiting for the budget then
    /// starts at once, without it.
    hurry: Arc<watch::Sender<bool>>,
    read: u64,
    /// The chunk was read ahead: what of it is read is counted there.
    ahead: Option<Arc<ReadAhead>>,
}

/// A chunk fetched by read-ahead: how many of its bytes arrived and how many the handle
/// read. Those it let go unread are counted when the last holder (a block the handle holds,
/// or the fetch itself) drops it.
struct ReadAhead {
    caches: Arc<Caches>,
    fetched: AtomicU64,
    read: AtomicU64,
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        let fetched = self.fetched.load(Ordering::Relaxed);
        let unused = fetched.saturating_sub(self.read.load(Ordering::Relaxed));
        if unused > 0 {
            self.caches.counters.read_ahead_unused(unused);
        }
    }
}

/// Where a read finds one of its blocks.
enum Source {
    Cached(Bytes),
    Fetching(Held),
}

impl Prefetcher {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        caches: Arc<Caches>,
        version: Version,
        max_window: u64,
    ) -> Self {
        let block = caches.block_size;
        Prefetcher {
            store,
            version,
            max_window: max_window.max(block),
            chunk: (8 * block).min(max_window.max(block)),
            state: Mutex::new(Window {
                window: block,
                next: 0,
                ahead_from: 0,
                inflight: BTreeMap::new(),
            }),
            caches,
        }
    }

    fn block_id(&self, index: u64) -> BlockId {
        BlockId {
            key: self.version.key.clone(),
            etag: self.version.etag.clone(),
            index,
        }
    }

    /// Reads `len` bytes at `offset` (fewer at the end of the object).
    pub async fn read(&self, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        let end = offset.saturating_add(len).min(self.version.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let bs = self.caches.block_size;
        let (first, last) = (offset / bs, (end - 1) / bs);
        let sources: Vec<Source> = {
            let mut w = self.state.lock().unwrap();
            self.advance(&mut w, offset, end);
            (first..=last).map(|i| self.source(&mut w, i)).collect()
        };
        let mut blocks = Vec::with_capacity(sources.len());
        for (index, source) in (first..).zip(sources) {
            blocks.push(match source {
                Source::Cached(data) => data,
                Source::Fetching(held) => self.wait(index, held).await?,
            });
        }
        let mut w = self.state.lock().unwrap();
        if let [block] = &blocks[..] {
            // Within one block (the usual 1 MiB aligned kernel read): no copy, just a slice.
            let from = (offset - first * bs) as usize;
            let to = ((end - first * bs) as usize).min(block.len()).max(from);
            mark_read(&mut w, first, (to - from) as u64, block.len() as u64);
            return Ok(block.slice(from..to));
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for (index, block) in (first..).zip(&blocks) {
            let block_start = index * bs;
            let from = offset.max(block_start) - block_start;
            let to = (end.min(block_start + block.len() as u64) - block_start).max(from);
            out.extend_from_slice(&block[from as usize..to as usize]);
            mark_read(&mut w, index, to - from, block.len() as u64);
        }
        Ok(out.freeze())
    }

    /// Moves the window for a read of `offset..end` and requests what it needs and the
    /// read-ahead beyond it.
    fn advance(&self, w: &mut Window, offset: u64, end: u64) {
        let size = self.version.size;
        let bs = self.caches.block_size;
        // The kernel sends read-ahead requests in parallel and they may reach us out of order,
        // so "sequential" means near where the reading is, not exactly at its end.
        let near = offset.abs_diff(w.next) <= self.max_window;
        if near {
            w.window = (w.window * 2).min(self.max_window);
            w.next = w.next.max(end);
        } else {
            w.window = bs;
            w.next = end;
            w.ahead_from = offset / bs;
            // A seek: what was read ahead for the old position will not be read now (a
            // random reader would otherwise keep every block it touched).
            let here = offset / bs..=(end - 1) / bs;
            w.inflight.retain(|index, _| here.contains(index));
        }
        let (first, last) = (offset / bs, (end - 1) / bs);
        let ahead_end = end.saturating_add(w.window).min(size);
        let mut wanted = (ahead_end - 1) / bs;
        if w.window > bs {
            // Sequential: extend to the end of a whole chunk, so the window advances in
            // chunk-sized GETs rather than one block per read.
            let per_chunk = self.chunk / bs;
            wanted = ((wanted / per_chunk + 1) * per_chunk - 1).min((size - 1) / bs);
        }
        // This read's own blocks, in a GET of their own so that no read-ahead delays them,
        // then the read-ahead beyond what was already requested.
        self.request(w, first, last, last);
        let ahead_from = w.ahead_from.max(last + 1);
        self.request(w, ahead_from, wanted, last);
        w.ahead_from = w.ahead_from.max(wanted + 1);
        // Blocks a whole window behind the reading were skipped: let them go.
        let abandoned = w.next.saturating_sub(self.max_window) / bs;
        w.inflight = w.inflight.split_off(&abandoned);
    }

    /// Where block `index` comes from: the handle's fetches, the memory cache, or a new GET.
    fn source(&self, w: &mut Window, index: u64) -> Source {
        if !w.inflight.contains_key(&index) {
            if let Some(data) = self.caches.memory.get(&self.block_id(index)) {
                self.caches.counters.memory_hit(data.len() as u64);
                return Source::Cached(data);
            }
            self.request(w, index, index, index);
        }
        Source::Fetching(w.inflight[&index].clone())
    }

    /// Block `index` of the chunk `held` fetches, once it is here.
    async fn wait(&self, index: u64, held: Held) -> Result<Bytes, StoreError> {
        held.hurry.send_replace(true);
        let chunk = match held.fetch.clone().await {
            Ok(c) => c.data,
            Err(e) => {
                // Let a later read try again instead of repeating this error forever.
                let mut w = self.state.lock().unwrap();
                w.inflight.retain(|_, h| !h.fetch.ptr_eq(&held.fetch));
                return Err(e);
            }
        };
        let bs = self.caches.block_size as usize;
        let from = ((index - held.chunk_first) as usize * bs).min(chunk.len());
        let to = (from + bs).min(chunk.len());
        Ok(chunk.slice(from..to))
    }

    /// Starts fetches for the blocks `first..=last` that are neither cached nor in flight;
    /// blocks up to `needed` are needed by the read now, the others are read-ahead.
    fn request(&self, w: &mut Window, first: u64, last: u64, needed: u64) {
        let per_chunk = (self.chunk / self.caches.block_size).max(1);
        let missing = |w: &Window, index: u64| {
            !w.inflight.contains_key(&index)
                && self.caches.memory.get(&self.block_id(index)).is_none()
        };
        let mut index = first;
        while index <= last {
            if !missing(w, index) {
                index += 1;
                continue;
            }
            // Chunks are aligned, so they line up with the ones the window will ask for next.
            let mut end = index + 1;
            while end <= last && !end.is_multiple_of(per_chunk) && missing(w, end) {
                end += 1;
            }
            let read_now = index <= needed;
            let ahead = match read_now {
                true => {
                    self.caches.counters.memory_misses(end - index);
                    None
                }
                false => Some(Arc::new(ReadAhead {
                    caches: self.caches.clone(),
                    fetched: AtomicU64::new(0),
                    read: AtomicU64::new(0),
                })),
            };
            let (hurry, hurried) = watch::channel(read_now);
            let fetch = self.spawn_fetch(index, end, hurried, ahead.clone());
            let hurry = Arc::new(hurry);
            for b in index..end {
                let held = Held {
                    chunk_first: index,
                    fetch: fetch.clone(),
                    hurry: hurry.clone(),
                    read: 0,
                    ahead: ahead.clone(),
                };
                w.inflight.insert(b, held);
            }
            index = end;
        }
    }

    /// Fetches blocks `first..end` (from the disk cache if it has them all, else one GET).
    /// Until `needed` is true (a read waits for the blocks), the fetch is read-ahead: it
    /// waits for its share of the budget, and gives up if nobody holds the chunk any more
    /// (a seek). `ahead`: the chunk is read ahead of any read, and its bytes count so.
    fn spawn_fetch(
        &self,
        first: u64,
        end: u64,
        needed: watch::Receiver<bool>,
        ahead: Option<Arc<ReadAhead>>,
    ) -> Fetch {
        let bs = self.caches.block_size;
        let start = first * bs;
        let stop = (end * bs).min(self.version.size);
        let ids: Vec<BlockId> = (first..end).map(|i| self.block_id(i)).collect();
        let (store, caches, version) = (
            self.store.clone(),
            self.caches.clone(),
            self.version.clone(),
        );
        let task = tokio::spawn(async move {
            let kib = ((stop - start).div_ceil(1024)).min(u32::MAX as u64) as u32;
            let budget = caches.budget.clone();
            let budget = tokio::select! {
                biased;
                wanted = needed_now(needed) => match wanted {
                    true => budget.try_acquire_many_owned(kib).ok(),
                    false => return Err(StoreError::ReadAheadDropped),
                },
                permit = budget.clone().acquire_many_owned(kib) => permit.ok(),
            };
            let chunk = |data: Bytes| {
                if let Some(ahead) = &ahead {
                    ahead.fetched.store(data.len() as u64, Ordering::Relaxed);
                    caches.counters.read_ahead(data.len() as u64);
                }
                Chunk {
                    data,
                    _budget: budget.map(Arc::new),
                }
            };
            let blocks = ids.len() as u64;
            if let Some(disk) = &caches.disk {
                if let Some(data) = from_disk(disk, &ids).await {
                    caches.counters.disk_hits(blocks, data.len() as u64);
                    for (id, block) in ids.iter().zip(split(&data, bs)) {
                        caches.memory.insert(id.clone(), block);
                    }
                    return Ok(chunk(data));
                }
                caches.counters.disk_misses(blocks);
            }
            let data = store
                .get_range_if_match(&version.key, start..stop, version.pin.as_deref())
                .await?;
            for (id, block) in ids.iter().zip(split(&data, bs)) {
                caches.memory.insert(id.clone(), block.clone());
                if let Some(disk) = &caches.disk {
                    disk.put(id, block).await;
                }
            }
            Ok(chunk(data))
        });
        async move {
            task.await
                .map_err(|e| StoreError::task_failed("a block fetch task", e))?
        }
        .boxed()
        .shared()
    }
}

/// True once a read needs the chunk; false when nobody holds it any more (a seek).
async fn needed_now(mut needed: watch::Receiver<bool>) -> bool {
    needed.wait_for(|now| *now).await.is_ok()
}

/// Counts `n` bytes of block `index` as read, and lets the block go once all `len` were.
fn mark_read(w: &mut Window, index: u64, n: u64, len: u64) {
    if let Some(held) = w.inflight.get_mut(&index) {
        held.read += n;
        if let Some(ahead) = &held.ahead {
            ahead.read.fetch_add(n, Ordering::Relaxed);
        }
        if held.read >= len {
            w.inflight.remove(&index);
        }
    }
}

fn split(data: &Bytes, block: u64) -> Vec<Bytes> {
    (0..data.len())
        .step_by(block as usize)
        .map(|from| data.slice(from..(from + block as usize).min(data.len())))
        .collect()
}

async fn from_disk(disk: &Arc<DiskCache>, ids: &[BlockId]) -> Option<Bytes> {
    let mut out = BytesMut::new();
    for id in ids {
        out.extend_from_slice(&disk.get(id).await?);
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::PutOptions;

    /// Caches of 1 KiB blocks: `memory` bytes of them, and a prefetch budget in KiB.
    fn caches(memory: usize, budget: Arc<Semaphore>) -> Arc<Caches> {
        Arc::new(Caches {
            memory: BlockCache::new(memory),
            disk: None,
            budget,
            block_size: 1024,
            counters: CacheCounters::default(),
        })
    }

    fn window(p: &Prefetcher) -> u64 {
        p.state.lock().unwrap().window
    }

    /// How many blocks the handle holds.
    fn held(p: &Prefetcher) -> usize {
        p.state.lock().unwrap().inflight.len()
    }

    async fn setup(len: usize) -> (Arc<MemoryStore>, Arc<Caches>, Version, Vec<u8>) {
        let mem = Arc::new(MemoryStore::new());
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        mem.put("obj", Bytes::from(data.clone()), &PutOptions::default())
            .await
            .unwrap();
        let etag = mem.head("obj").await.unwrap().etag.unwrap();
        let caches = caches(64 << 10, Arc::new(Semaphore::new(1 << 20)));
        let version = Version {
            key: "obj".into(),
            etag: etag.clone().into(),
            pin: Some(etag.into()),
            size: len as u64,
        };
        (mem, caches, version, data)
    }

    #[tokio::test]
    async fn sequential_reads_return_the_bytes_and_grow_the_window() {
        let (mem, caches, version, data) = setup(100_000).await;
        let p = Prefetcher::new(mem.clone(), caches, version, 16 * 1024);
        let mut got = Vec::new();
        while got.len() < data.len() {
            let chunk = p.read(got.len() as u64, 4000).await.unwrap();
            assert!(!chunk.is_empty());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, data);
        assert_eq!(window(&p), 16 * 1024, "the window grew to its maximum");
        let gets = mem.stats().count("GetObject");
        assert!(gets < 20, "chunks, not one GET per read: {gets}");
    }

    #[tokio::test]
    async fn a_whole_read_counts_its_misses_and_read_ahead_and_leaves_nothing_unused() {
        let (mem, caches, version, data) = setup(100_000).await;
        let p = Prefetcher::new(mem.clone(), caches.clone(), version.clone(), 16 * 1024);
        let mut read = 0;
        while read < data.len() {
            read += p.read(read as u64, 4000).await.unwrap().len();
        }
        drop(p);
        let st = caches.stats();
        assert!(st.memory_misses >= 1, "the first blocks: {st:?}");
        assert_eq!(st.memory_hits, 0, "{st:?}");
        let fetched = mem.stats().bytes_received;
        assert!(
            st.read_ahead_bytes > fetched / 2 && st.read_ahead_bytes < fetched,
            "most was read ahead of the reads, not the first blocks: {st:?}"
        );
        assert_eq!(st.read_ahead_unused_bytes, 0, "all of it was read");
        assert_eq!(st.disk_size, None);
        assert!(st.memory_size > 0);

        // Another handle finds the last block (672 bytes) in the memory cache.
        let again = Prefetcher::new(mem.clone(), caches.clone(), version, 16 * 1024);
        again.read(99_500, 500).await.unwrap();
        let st = caches.stats();
        assert_eq!((st.memory_hits, st.memory_hit_bytes), (1, 672), "{st:?}");
        assert_eq!(mem.stats().bytes_received, fetched, "no GET");
    }

    #[tokio::test]
    async fn what_a_handle_read_ahead_and_let_go_unread_is_counted_unused() {
        let (mem, caches, version, _) = setup(100_000).await;
        let p = Prefetcher::new(mem.clone(), caches.clone(), version, 16 * 1024);
        for block in 0..4 {
            p.read(block * 1024, 1024).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await; // fetches land
        drop(p); // closed after 4 KiB
        let st = caches.stats();
        assert!(st.read_ahead_bytes > 4096, "{st:?}");
        assert!(
            st.read_ahead_unused_bytes > 0
                && st.read_ahead_unused_bytes + 4096 >= st.read_ahead_bytes,
            "all read ahead but what the four reads took: {st:?}"
        );
    }

    #[tokio::test]
    async fn reads_out_of_order_like_the_kernels_read_ahead_fetch_each_block_once() {
        // A cache of two blocks, far smaller than the 16-block window, as with the defaults.
        let (mem, _, version, data) = setup(64 * 1024).await;
        let caches = caches(2 * 1024, Arc::new(Semaphore::new(1 << 20)));
        let p = Prefetcher::new(mem.clone(), caches, version, 16 * 1024);
        // Two streams of reads eight blocks apart, as the kernel's sync and async read-ahead
        // send them: 8, 0, 9, 1, 10, 2, ...
        let order = (0..64).map(|i| if i % 2 == 0 { i / 2 + 8 } else { i / 2 });
        let mut got = vec![0u8; data.len()];
        let mut seen = std::collections::BTreeSet::new();
        let order: Vec<usize> = order.chain(0..64).filter(|b| seen.insert(*b)).collect();
        assert_eq!(order.len(), 64);
        for block in order {
            let at = block * 1024;
            let chunk = p.read(at as u64, 1024).await.unwrap();
            got[at..at + chunk.len()].copy_from_slice(&chunk);
        }
        assert_eq!(got, data);
        assert_eq!(
            mem.stats().bytes_received,
            data.len() as u64,
            "no block was fetched twice"
        );
    }

    #[tokio::test]
    async fn a_reader_is_not_stalled_by_another_file_that_holds_the_budget_unread() {
        let (mem, _, version, data) = setup(64 * 1024).await;
        let budget = Arc::new(Semaphore::new(24)); // KiB: three chunks of 8 blocks
        let caches = caches(0, budget.clone());
        // One reader reads a little and pauses, its read-ahead fetched and held unread.
        let paused = Prefetcher::new(mem.clone(), caches.clone(), version.clone(), 32 * 1024);
        for block in 0..4 {
            paused.read(block * 1024, 1024).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            budget.available_permits() < 16,
            "the paused reader holds the budget"
        );

        // Another reads the whole file: its read-ahead waits, but what it reads may not.
        let reader = Prefetcher::new(mem.clone(), caches, version, 32 * 1024);
        let whole = async {
            let mut got = Vec::new();
            while got.len() < data.len() {
                got.extend_from_slice(&reader.read(got.len() as u64, 1024).await.unwrap());
            }
            got
        };
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), whole)
            .await
            .expect("the second reader finished while the first stayed paused");
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn read_ahead_waits_for_the_budget_that_unread_blocks_hold() {
        let (mem, _, version, data) = setup(64 * 1024).await;
        let budget = Arc::new(Semaphore::new(12)); // KiB: one chunk of 8 blocks and a half
        let caches = caches(0, budget.clone());
        let p = Prefetcher::new(mem.clone(), caches, version, 16 * 1024);
        for block in 0..4 {
            p.read(block * 1024, 1024).await.unwrap(); // the window grows to 16 blocks
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            mem.stats().bytes_received,
            8 * 1024,
            "the next chunk waits while the first is held unread"
        );
        let mut got = data[..4096].to_vec();
        while got.len() < data.len() {
            got.extend_from_slice(&p.read(got.len() as u64, 1024).await.unwrap());
        }
        assert_eq!(
            got, data,
            "reading gives the budget back, so the reading goes on"
        );
        drop(p);
        assert_eq!(budget.available_permits(), 12);
    }

    #[tokio::test]
    async fn the_first_read_of_a_file_gets_its_block_in_a_get_of_its_own() {
        let (mem, caches, version, data) = setup(256 * 1024).await;
        let gate = Arc::new(Semaphore::new(0)); // no GET ends until the test says so
        mem.gate_gets(gate.clone());
        let p = Arc::new(Prefetcher::new(mem.clone(), caches, version, 64 * 1024));
        let first = tokio::spawn({
            let p = p.clone();
            async move { p.read(0, 1024).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        gate.add_permits(1); // the GET asked first
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), first)
            .await
            .expect("the first read did not wait for the rest of its chunk")
            .unwrap()
            .unwrap();
        assert_eq!(&got[..], &data[..1024]);
        assert_eq!(mem.stats().bytes_received, 1024);
        gate.add_permits(1000);
    }

    #[tokio::test]
    async fn a_seek_drops_the_read_ahead_still_waiting_for_the_budget() {
        let (mem, _, version, data) = setup(256 * 1024).await;
        let budget = Arc::new(Semaphore::new(8)); // KiB: the first chunk takes it all
        let p = Prefetcher::new(mem.clone(), caches(0, budget), version, 64 * 1024);
        for block in 0..4 {
            p.read(block * 1024, 1024).await.unwrap(); // the window grows to 64 blocks
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            mem.stats().count("GetObject"),
            2,
            "the rest waits for the budget"
        );

        let got = p.read(200 * 1024, 1024).await.unwrap();
        assert_eq!(&got[..], &data[200 * 1024..201 * 1024]);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(
            mem.stats().count("GetObject"),
            4,
            "after the seek, block 200 and one ahead only: what waited for the budget was dropped"
        );
    }

    #[tokio::test]
    async fn random_reads_hold_only_the_blocks_of_the_last_read() {
        let (mem, caches, version, data) = setup(100_000).await;
        let p = Prefetcher::new(mem, caches, version, 16 * 1024);
        for at in [90_000, 10_000, 70_000, 30_000, 50_000, 5_000, 80_000] {
            let got = p.read(at, 100).await.unwrap();
            assert_eq!(&got[..], &data[at as usize..at as usize + 100]);
        }
        assert!(held(&p) <= 2, "{} blocks held", held(&p));
    }

    #[tokio::test]
    async fn a_seek_fetches_only_the_blocks_it_needs() {
        let (mem, caches, version, data) = setup(100_000).await;
        let p = Prefetcher::new(mem.clone(), caches, version, 16 * 1024);
        let got = p.read(50_000, 10).await.unwrap();
        assert_eq!(&got[..], &data[50_000..50_010]);
        assert_eq!(window(&p), 1024);
        assert!(held(&p) <= 2, "{} blocks requested", held(&p));
    }

    #[tokio::test]
    async fn an_overwritten_object_fails_the_read_instead_of_mixing_versions() {
        let (mem, caches, version, _) = setup(10_000).await;
        mem.put(
            "obj",
            Bytes::from(vec![9u8; 10_000]),
            &PutOptions::default(),
        )
        .await
        .unwrap();
        let p = Prefetcher::new(mem, caches, version, 4096);
        assert!(matches!(
            p.read(0, 100).await,
            Err(StoreError::PreconditionFailed)
        ));
    }
}
