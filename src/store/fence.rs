//! Write fences: the order of the writes to one key, kept when an attempt outlives the call
//! that sent it.
//!
//! A small PUT is hedged (a second attempt starts beside one that runs far past the usual
//! latency, see `retry`), and the call returns with the first answer. The other attempt
//! cannot be taken back: once sent, the server may apply it whatever the client does with
//! its connection. So each attempt runs as a task of its own, to its end (or its attempt
//! bound), holding a [`Fence`] on its key; every later write or delete of that key first
//! waits for the key's fences ([`WriteFences::wait`]). A late twin then always lands before
//! the change that follows it — without this, hedged small PUTs let a PUT land after the
//! DELETE that followed it and brought a deleted file back (`git gc` on a mount failed its
//! repack). Reads need no fence: a twin stores what its call already stored.
//!
//! An attempt that runs past its bound is given up and its fence dropped: what it does after
//! that is as unknown as any request's whose answer was lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The keys with write attempts in flight.
#[derive(Default)]
pub struct WriteFences {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Attempts in flight per key; a key is absent when it has none. A leaf lock, never held
    /// across an await.
    keys: Mutex<HashMap<String, usize>>,
    /// Woken whenever a fence is dropped.
    dropped: Notify,
}

/// One write attempt in flight on `key`; dropped when it has ended.
pub struct Fence {
    inner: Arc<Inner>,
    key: String,
}

impl WriteFences {
    /// A fence on `key`, held by an attempt until it has ended.
    pub fn enter(&self, key: &str) -> Fence {
        *self
            .inner
            .keys
            .lock()
            .unwrap()
            .entry(key.to_string())
            .or_default() += 1;
        Fence {
            inner: self.inner.clone(),
            key: key.to_string(),
        }
    }

    /// Returns once no write attempt on `key` is in flight.
    pub async fn wait(&self, key: &str) {
        self.wait_until(|keys| !keys.contains_key(key)).await
    }

    /// Returns once no write attempt on any key is in flight.
    pub async fn wait_all(&self) {
        self.wait_until(HashMap::is_empty).await
    }

    async fn wait_until(&self, free: impl Fn(&HashMap<String, usize>) -> bool) {
        loop {
            let dropped = self.inner.dropped.notified();
            tokio::pin!(dropped);
            dropped.as_mut().enable();
            if free(&self.inner.keys.lock().unwrap()) {
                return;
            }
            dropped.await;
        }
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        {
            let mut keys = self.inner.keys.lock().unwrap();
            if let Some(n) = keys.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    keys.remove(&self.key);
                }
            }
        }
        self.inner.dropped.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_write_waits_for_the_attempts_in_flight_on_its_key_and_no_other() {
        let fences = Arc::new(WriteFences::default());
        let first = fences.enter("k");
        let second = fences.enter("k");
        fences.wait("other").await; // another key: at once
        let waiter = tokio::spawn({
            let fences = fences.clone();
            async move { fences.wait("k").await }
        });
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one attempt on k is still in flight");
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("k is free once its last attempt ended")
            .unwrap();
        assert!(fences.inner.keys.lock().unwrap().is_empty());
    }
}
