//! Single flight: one task does a piece of work for a key (the HEAD of a node's metadata, a
//! read-ahead listing of a directory) while the others that need it wait for it to end
//! instead of asking the store again.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The keys whose work is under way, each with the wake-up of its waiters.
pub struct InFlight<K> {
    map: Mutex<HashMap<K, Arc<Notify>>>,
}

impl<K> Default for InFlight<K> {
    fn default() -> Self {
        InFlight {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> InFlight<K> {
    /// Takes on the work for `key`: `None` when another task already has. The work is over
    /// when the claim is dropped, however the task ends (even cancelled).
    pub fn claim(&self, key: K) -> Option<Claim<'_, K>> {
        self.take(&key).then(|| Claim { owner: self, key })
    }

    /// `claim`, for work handed to another task: the claim holds its own reference to the
    /// `InFlight`, so it is taken before the task starts (no other task slips in between).
    pub fn claim_owned(self: &Arc<Self>, key: K) -> Option<OwnedClaim<K>> {
        self.take(&key).then(|| OwnedClaim {
            owner: self.clone(),
            key,
        })
    }

    /// Marks `key`'s work as under way; false when it already was.
    fn take(&self, key: &K) -> bool {
        let mut map = self.map.lock().unwrap();
        if map.contains_key(key) {
            return false;
        }
        map.insert(key.clone(), Arc::default());
        true
    }

    /// The work for `key` is over: its waiters wake.
    fn release(&self, key: &K) {
        if let Some(done) = self.map.lock().unwrap().remove(key) {
            done.notify_waiters();
        }
    }

    pub fn contains(&self, key: &K) -> bool {
        self.map.lock().unwrap().contains_key(key)
    }

    /// Waits until no work for `key` is under way.
    pub async fn settled(&self, key: &K) {
        loop {
            let Some(done) = self.map.lock().unwrap().get(key).cloned() else {
                return;
            };
            let wait = done.notified();
            tokio::pin!(wait);
            wait.as_mut().enable();
            // Ended between the lookup and `enable`: its notification is gone, look again.
            if !self.contains(key) {
                return;
            }
            wait.await;
        }
    }
}

/// The work for one key; dropping it ends the work and wakes the waiters.
pub struct Claim<'a, K: Hash + Eq + Clone> {
    owner: &'a InFlight<K>,
    key: K,
}

impl<K: Hash + Eq + Clone> Drop for Claim<'_, K> {
    fn drop(&mut self) {
        self.owner.release(&self.key);
    }
}

/// A claim that owns a reference to its `InFlight` (see `claim_owned`).
pub struct OwnedClaim<K: Hash + Eq + Clone> {
    owner: Arc<InFlight<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Drop for OwnedClaim<K> {
    fn drop(&mut self) {
        self.owner.release(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_key_has_one_claim_at_a_time() {
        let inflight = InFlight::default();
        let claim = inflight.claim(1).expect("free");
        assert!(inflight.claim(1).is_none());
        assert!(inflight.claim(2).is_some());
        drop(claim);
        assert!(inflight.claim(1).is_some());
    }

    #[tokio::test]
    async fn waiters_wake_when_the_claim_is_dropped_even_by_a_cancelled_task() {
        let inflight: Arc<InFlight<u32>> = Arc::default();
        let worker = {
            let inflight = inflight.clone();
            tokio::spawn(async move {
                let _claim = inflight.claim(7).unwrap();
                std::future::pending::<()>().await;
            })
        };
        while !inflight.contains(&7) {
            tokio::task::yield_now().await;
        }
        let waiter = {
            let inflight = inflight.clone();
            tokio::spawn(async move { inflight.settled(&7).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "settled returned while the work was under way"
        );
        worker.abort();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was not woken")
            .unwrap();
    }
}
