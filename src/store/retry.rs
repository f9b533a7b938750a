//! Retries, backoff and per-request timeouts for the S3 store.
//!
//! rust-s3 has one process-wide retry counter, retries only some request kinds, and waits whole
//! seconds between attempts; its own request timeout is per `Bucket`. A filesystem needs more
//! control than that: every request must be bounded in time (a hung request would hang a
//! `read(2)` forever), and transient failures (5xx, throttling, dropped connections, timeouts)
//! should be retried quickly for every request that is safe to repeat. So the S3 store turns
//! rust-s3's retries off and runs each request through [`with_retries`]: each attempt is
//! wrapped in `tokio::time::timeout`, and errors that [`StoreError::is_transient`] calls
//! transient are retried with capped exponential backoff and full jitter (a random delay
//! between zero and the exponential bound, so many clients failing together do not retry in
//! lockstep). Anything else (not found, access denied, ...) is returned at once.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::{StoreError, StoreResult};

/// How hard to try one store request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so at most `max_retries + 1` attempts).
    pub max_retries: u32,
    /// Upper bound of the first backoff; it doubles with each retry...
    pub base_delay: Duration,
    /// ...up to this cap.
    pub max_delay: Duration,
    /// Bound on one attempt, response body included. `Duration::ZERO` means no bound.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The largest delay before retry number `retry` (1-based): `base * 2^(retry-1)`, capped.
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// A random delay in `0..=backoff_cap(retry)` ("full jitter").
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self.backoff_cap(retry);
        let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        if cap_nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rand::thread_rng().gen_range(0..=cap_nanos))
    }
}

/// Runs `f` until it succeeds, fails with a non-transient error, or `policy.max_retries`
/// retries are used up. Each attempt is bounded by `policy.request_timeout` (an attempt that
/// runs over becomes `StoreError::Timeout`). `what` names the operation in log lines.
///
/// `f` must build a fresh request on every call (S3 signatures carry a timestamp).
pub async fn with_retries<T, F, Fut>(policy: &RetryPolicy, what: &str, f: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    with_retries_if(policy, what, StoreError::is_transient, f).await
}

/// Like [`with_retries`], but `retryable` decides which errors are retried. Used for requests
/// that are only safe to repeat when the previous attempt certainly never reached the server.
pub async fn with_retries_if<T, F, Fut, R>(
    policy: &RetryPolicy,
    what: &str,
    retryable: R,
    mut f: F,
) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
    R: Fn(&StoreError) -> bool,
{
    let mut retry = 0u32;
    loop {
        let result = if policy.request_timeout.is_zero() {
            f().await
        } else {
            match tokio::time::timeout(policy.request_timeout, f()).await {
                Ok(result) => result,
                Err(_) => Err(StoreError::Timeout(policy.request_timeout)),
            }
        };
        match result {
            Ok(value) => return Ok(value),
            Err(error) if retry < policy.max_retries && retryable(&error) => {
                retry += 1;
                let delay = policy.backoff(retry);
                tracing::warn!(
                    operation = what,
                    attempt = retry,
                    max_retries = policy.max_retries,
                    delay_ms = delay.as_millis() as u64,
                    error = %error,
                    "store request failed, retrying"
                );
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    // tokio's `test-util` (paused time) is not enabled in this crate: the policies below use
    // millisecond delays so the tests stay fast in real time.
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            request_timeout: Duration::from_millis(50),
        }
    }

    fn server_error() -> StoreError {
        StoreError::Server {
            status: 503,
            message: "SlowDown".into(),
        }
    }

    #[tokio::test]
    async fn transient_error_is_retried_then_succeeds() {
        let calls = AtomicU32::new(0);
        let result = with_retries(&policy(3), "test", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(server_error())
            } else {
                Ok(42)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 42);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn non_transient_error_returns_after_one_call() {
        let calls = AtomicU32::new(0);
        let result: StoreResult<()> = with_retries(&policy(5), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::NotFound)
        })
        .await;
        assert!(matches!(result, Err(StoreError::NotFound)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gives_up_after_max_retries() {
        let calls = AtomicU32::new(0);
        let result: StoreResult<()> = with_retries(&policy(3), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Unreachable("connection refused".into()))
        })
        .await;
        assert!(matches!(result, Err(StoreError::Unreachable(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn hung_attempt_times_out_and_is_retried() {
        let calls = AtomicU32::new(0);
        let p = policy(1);
        let started = tokio::time::Instant::now();
        let result: StoreResult<()> = with_retries(&p, "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok(())
        })
        .await;
        assert!(matches!(result, Err(StoreError::Timeout(d)) if d == p.request_timeout));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(started.elapsed() >= 2 * p.request_timeout);
    }

    #[tokio::test]
    async fn custom_predicate_limits_retries() {
        let calls = AtomicU32::new(0);
        let result: StoreResult<()> = with_retries_if(
            &policy(3),
            "test",
            |e| matches!(e, StoreError::Unreachable(_)),
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(server_error())
            },
        )
        .await;
        assert!(matches!(
            result,
            Err(StoreError::Server { status: 503, .. })
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 100,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            request_timeout: Duration::from_secs(1),
        };
        assert_eq!(p.backoff_cap(1), Duration::from_millis(100));
        assert_eq!(p.backoff_cap(2), Duration::from_millis(200));
        assert_eq!(p.backoff_cap(3), Duration::from_millis(400));
        assert_eq!(p.backoff_cap(10), Duration::from_secs(5));
        assert_eq!(p.backoff_cap(64), Duration::from_secs(5));
        for retry in 1..40 {
            assert!(p.backoff(retry) <= p.backoff_cap(retry));
        }
    }
}
