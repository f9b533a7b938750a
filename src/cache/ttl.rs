//! A bounded set of keys that each stay valid for a fixed time: the negative-lookup cache
//! ("this name does not exist", keyed by parent inode and name) and the listing cache ("this
//! directory's children are all known", keyed by directory inode) are both this.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

pub struct TtlSet<K: Hash + Eq> {
    entries: Mutex<LruCache<K, Instant>>,
    ttl: Duration,
}

impl<K: Hash + Eq> TtlSet<K> {
    /// At most `capacity` keys, each valid for `ttl` (a zero TTL or capacity disables it).
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("nonzero");
        TtlSet {
            entries: Mutex::new(LruCache::new(cap)),
            ttl: if capacity == 0 { Duration::ZERO } else { ttl },
        }
    }

    pub fn insert(&self, key: K) {
        if !self.ttl.is_zero() {
            self.entries.lock().unwrap().put(key, Instant::now());
        }
    }

    /// True while `key` was inserted less than the TTL ago.
    pub fn contains(&self, key: &K) -> bool {
        self.entries
            .lock()
            .unwrap()
            .get(key)
            .is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// True when `key` was inserted and not removed since, however long ago (while the set
    /// has room for it): what was true once, to serve when nothing newer can be had.
    pub fn was_inserted(&self, key: &K) -> bool {
        self.entries.lock().unwrap().contains(key)
    }

    pub fn remove(&self, key: &K) {
        self.entries.lock().unwrap().pop(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_expire_after_the_ttl() {
        let set = TtlSet::new(10, Duration::from_millis(30));
        set.insert("a");
        assert!(set.contains(&"a"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!set.contains(&"a"));
        assert!(set.was_inserted(&"a"), "expired, not forgotten");
        set.remove(&"a");
        assert!(!set.was_inserted(&"a"));
    }

    #[test]
    fn the_set_is_bounded_and_a_zero_ttl_disables_it() {
        let set = TtlSet::new(2, Duration::from_secs(60));
        for k in [1, 2, 3] {
            set.insert(k);
        }
        assert!(!set.contains(&1), "evicted");
        assert!(set.contains(&3));
        let off = TtlSet::new(2, Duration::ZERO);
        off.insert(1);
        assert!(!off.contains(&1));
    }
}
