//! The write-back queue: which local files are due for upload, ordered by due time, with a
//! timer of its own. The write-back loop sleeps in `wait` until the earliest due time (or
//! until an earlier one is scheduled) and then takes what is due — no periodic tick, and no
//! scan of every file to find the few that are due.
//!
//! An item has at most one due time: scheduling it again moves it. Items are not removed
//! when their file is stored or dropped meanwhile; whoever takes a due item checks it still
//! needs an upload.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

pub struct DueQueue<T> {
    /// A leaf lock, never held across an await.
    inner: Mutex<Inner<T>>,
    /// Woken when an item is scheduled earlier than every other.
    wake: tokio::sync::Notify,
}

struct Inner<T> {
    /// Invariant: `by_time` and `at` hold the same items; `seq` keeps equal times apart.
    by_time: BTreeMap<(Instant, u64), T>,
    at: HashMap<T, (Instant, u64)>,
    seq: u64,
}

impl<T: Clone + Eq + Hash> Default for DueQueue<T> {
    fn default() -> Self {
        DueQueue {
            inner: Mutex::new(Inner {
                by_time: BTreeMap::new(),
                at: HashMap::new(),
                seq: 0,
            }),
            wake: tokio::sync::Notify::new(),
        }
    }
}

impl<T: Clone + Eq + Hash> DueQueue<T> {
    /// Makes `item` due at `at` (replacing an earlier due time of it).
    pub fn schedule(&self, item: T, at: Instant) {
        let earliest = {
            let mut q = self.inner.lock().unwrap();
            if let Some(old) = q.at.remove(&item) {
                q.by_time.remove(&old);
            }
            q.seq += 1;
            let slot = (at, q.seq);
            q.by_time.insert(slot, item.clone());
            q.at.insert(item, slot);
            q.by_time.keys().next() == Some(&slot)
        };
        if earliest {
            self.wake.notify_one();
        }
    }

    /// True when `item` has a due time.
    pub fn contains(&self, item: &T) -> bool {
        self.inner.lock().unwrap().at.contains_key(item)
    }

    /// Takes every item due at `now` or before, earliest first.
    pub fn take_due(&self, now: Instant) -> Vec<T> {
        let mut q = self.inner.lock().unwrap();
        let mut due = Vec::new();
        while let Some(entry) = q.by_time.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let item = entry.remove();
            q.at.remove(&item);
            due.push(item);
        }
        due
    }

    fn earliest(&self) -> Option<Instant> {
        self.inner
            .lock()
            .unwrap()
            .by_time
            .keys()
            .next()
            .map(|k| k.0)
    }

    /// Returns once the earliest due time has come (at once if it has).
    pub async fn wait(&self) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.earliest() {
                Some(at) if at <= Instant::now() => return,
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {}
                        _ = woken => {}
                    }
                }
                None => woken.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn items_come_due_in_time_order_and_a_reschedule_moves_them() {
        let q = DueQueue::default();
        let now = Instant::now();
        q.schedule("b", now + Duration::from_secs(2));
        q.schedule("a", now + Duration::from_secs(1));
        q.schedule("c", now + Duration::from_secs(3));
        q.schedule("c", now); // moved, not added twice
        assert_eq!(q.take_due(now), vec!["c"]);
        assert!(!q.contains(&"c"));
        assert_eq!(q.take_due(now + Duration::from_secs(5)), vec!["a", "b"]);
        assert!(q.take_due(now + Duration::from_secs(9)).is_empty());
    }

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn wait_sleeps_until_the_earliest_due_time() {
        let q = DueQueue::default();
        let start = Instant::now();
        q.schedule(1, start + 200 * MS);
        q.wait().await;
        assert!(start.elapsed() >= 200 * MS);
    }

    #[tokio::test]
    async fn an_earlier_item_scheduled_during_a_wait_ends_it_sooner() {
        let q = std::sync::Arc::new(DueQueue::default());
        let start = Instant::now();
        q.schedule(1, start + Duration::from_secs(300));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.wait().await }
        });
        tokio::time::sleep(50 * MS).await;
        q.schedule(2, Instant::now() + 100 * MS);
        tokio::time::timeout(Duration::from_secs(20), waiter)
            .await
            .expect("woken by the earlier item")
            .unwrap();
        assert!(start.elapsed() >= 150 * MS);
        assert_eq!(q.take_due(Instant::now()), vec![2]);
    }

    #[tokio::test]
    async fn an_empty_queue_waits_for_its_first_item() {
        let q = std::sync::Arc::new(DueQueue::default());
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.wait().await }
        });
        tokio::time::sleep(200 * MS).await;
        assert!(!waiter.is_finished());
        q.schedule(7, Instant::now());
        tokio::time::timeout(Duration::from_secs(20), waiter)
            .await
            .expect("woken by the first item")
            .unwrap();
    }
}
