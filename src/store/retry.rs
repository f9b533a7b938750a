//! Retries, backoff, per-attempt timeouts and hedged attempts for the S3 store.
//!
//! rust-s3 has one process-wide retry counter, retries only some request kinds, and waits whole
//! seconds between attempts; its own request timeout is per `Bucket`. A filesystem needs more
//! control than that: every request must be bounded in time (a hung request would hang a
//! `read(2)` forever), transient failures (5xx, throttling, dropped connections, timeouts)
//! should be retried quickly for every request that is safe to repeat, and an outage of tens
//! of seconds (a failover) should be waited out rather than turned into `EIO`. So the S3 store
//! turns rust-s3's retries off and runs each request through [`with_retries`]:
//!
//! - transient errors ([`StoreError::is_transient`]) are retried with capped exponential
//!   backoff and full jitter (a random delay between zero and the exponential bound, so many
//!   clients failing together do not retry in lockstep) until `retry_timeout` has passed since
//!   the first attempt (and at most `max_retries` times when that is set). Anything else (not
//!   found, access denied, ...) is returned at once;
//! - each attempt is bounded: a small request (HEAD, LIST, DELETE, the multipart bookkeeping
//!   calls) by `min(request_timeout, SMALL_REQUEST_TIMEOUT)`, a data transfer by
//!   `request_timeout`, so one stalled connection costs a HEAD seconds, not half a minute;
//! - a request that is safe to send twice (reads, and parts, which are idempotent) may be
//!   *hedged*: when its attempt runs far past the usual latency of its kind ([`Latency`]), a
//!   second attempt starts beside it (and more, further apart, while all run long) and the
//!   first answer wins. One stalled request out of a thousand then costs a few times the
//!   usual latency, not the stall;
//! - the pause before a retry follows what the recent answers of the request's kind say: a
//!   503 SlowDown among answers that rarely are is a one-off, and a request of a server that
//!   answers most requests is retried quickly however often it failed (`pause`).
//!
//! Since every request passes here, a counted call ([`Call::counted`]) is counted here too,
//! each request as it is sent and as it ends (its outcome and, when answered, its latency),
//! and each retry: `StoreStats`, which the metrics show.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use rand::Rng;

use super::{StatsCounter, StoreError, StoreResult};

/// Upper bound of one attempt of a small request, whatever `request_timeout` says: HEAD, LIST
/// and DELETE answer in milliseconds from a healthy server.
pub const SMALL_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A request with less body than this is small (see `Call::sized`): 1 MiB.
pub const SMALL_BODY: usize = 1 << 20;

/// How hard to try one store request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Transient failures are retried until this long after the first attempt started
    /// (zero: never retried).
    pub retry_timeout: Duration,
    /// At most this many retries, when set (else `retry_timeout` alone bounds them).
    pub max_retries: Option<u32>,
    /// Upper bound of the first backoff; it doubles with each retry...
    pub base_delay: Duration,
    /// ...up to this cap.
    pub max_delay: Duration,
    /// Bound on one attempt of a data transfer, response body included. `Duration::ZERO`
    /// means no bound.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retry_timeout: Duration::from_secs(90),
            max_retries: None,
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

    /// Whether retry number `retry` (1-based) may start `elapsed` after the first attempt.
    fn may_retry(&self, retry: u32, elapsed: Duration) -> bool {
        elapsed < self.retry_timeout && self.max_retries.is_none_or(|max| retry <= max)
    }

    /// How long one attempt of `call` may run before it is given up (zero: no bound).
    pub fn attempt_timeout<T>(&self, call: &Call<T>) -> Duration {
        match call.size {
            Size::Small if self.request_timeout.is_zero() => SMALL_REQUEST_TIMEOUT,
            Size::Small => self.request_timeout.min(SMALL_REQUEST_TIMEOUT),
            Size::Data => self.request_timeout,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    Small,
    Data,
}

/// One request as the retry loop sees it: its name for log lines, whether it is small, the
/// latency record of its kind when it may be hedged, and where it is counted. `T` is what
/// an answer gives.
pub struct Call<'a, T> {
    what: &'a str,
    size: Size,
    hedge: Option<&'a Latency>,
    counted: Option<Counted<'a>>,
    /// The outcome of an answer the request gives as a value but that is a refusal (a
    /// 400/403 the S3 store keeps raw to read it closer), `None` for a success.
    refusal: fn(&T) -> Option<&'static str>,
}

/// Where and under which operation name the requests of a call are counted.
struct Counted<'a> {
    stats: &'a StatsCounter,
    kind: &'static str,
    /// Object data in each request's body.
    body_bytes: u64,
}

impl<'a, T> Call<'a, T> {
    fn new(what: &'a str, size: Size) -> Self {
        Call {
            what,
            size,
            hedge: None,
            counted: None,
            refusal: |_| None,
        }
    }

    /// A request that answers in milliseconds when all is well (HEAD, LIST, DELETE, ...).
    pub fn small(what: &'a str) -> Self {
        Call::new(what, Size::Small)
    }

    /// A request whose time grows with the bytes it moves (GET, PUT, UploadPart, copies).
    pub fn data(what: &'a str) -> Self {
        Call::new(what, Size::Data)
    }

    /// Small below `SMALL_BODY` bytes of body, else data.
    pub fn sized(what: &'a str, bytes: usize) -> Self {
        if bytes < SMALL_BODY {
            Call::small(what)
        } else {
            Call::data(what)
        }
    }

    /// Allows a second attempt beside a slow one. Only for requests that are safe to have
    /// in flight twice.
    pub fn hedged(self, latency: &'a Latency) -> Self {
        Call {
            hedge: Some(latency),
            ..self
        }
    }

    /// Counts each request in `stats` as one of `kind` with `body_bytes` of object data in
    /// its body, when it is sent and when it ends; and each retry.
    pub fn counted(self, stats: &'a StatsCounter, kind: &'static str, body_bytes: u64) -> Self {
        Call {
            counted: Some(Counted {
                stats,
                kind,
                body_bytes,
            }),
            ..self
        }
    }

    /// Answers `refusal` says are refusals count under its outcome instead of `ok`.
    pub fn refusals(self, refusal: fn(&T) -> Option<&'static str>) -> Self {
        Call { refusal, ..self }
    }

    /// Sends one request of this call (`request`), counted as sent and as ended. One dropped
    /// before its answer ended `timeout` when `timed_out` is set by then, else `cancelled`.
    async fn send<Fut>(&self, request: Fut, timed_out: &AtomicBool) -> StoreResult<T>
    where
        Fut: Future<Output = StoreResult<T>>,
    {
        let Some(counted) = &self.counted else {
            return request.await;
        };
        counted.stats.request(counted.kind, counted.body_bytes);
        let mut on_its_way = OnItsWay {
            counted,
            timed_out,
            answered: false,
        };
        let began = Instant::now();
        let result = request.await;
        let outcome = match &result {
            Ok(answer) => (self.refusal)(answer).unwrap_or("ok"),
            Err(e) => e.outcome(),
        };
        on_its_way.answered = true;
        counted
            .stats
            .ended(counted.kind, outcome, Some(began.elapsed()));
        result
    }

    fn retried(&self) {
        if let Some(counted) = &self.counted {
            counted.stats.retried(counted.kind);
        }
    }
}

/// A counted request until its answer: dropped before, it ended unanswered.
struct OnItsWay<'a> {
    counted: &'a Counted<'a>,
    timed_out: &'a AtomicBool,
    answered: bool,
}

impl Drop for OnItsWay<'_> {
    fn drop(&mut self) {
        if !self.answered {
            let outcome = match self.timed_out.load(Ordering::Relaxed) {
                true => "timeout",
                false => "cancelled",
            };
            self.counted.stats.ended(self.counted.kind, outcome, None);
        }
    }
}

/// The usual latency of one kind of request (a moving average of recent answers), which says
/// when an attempt of that kind is slow enough to hedge.
#[derive(Debug)]
pub struct Latency {
    average_micros: AtomicU64,
    /// Of the recent answers, the share that asked to slow down (503 SlowDown), and the share
    /// that failed in a way a retry may mend (those included), in parts per million (moving
    /// averages over about the last 256 answers).
    throttled_ppm: AtomicU64,
    failed_ppm: AtomicU64,
    /// Hedged attempts made so far.
    hedges: AtomicU64,
    floor: Duration,
    ceiling: Duration,
    /// Attempts of one call in flight at once at most (`MAX_STARTED`, or `ONE_TWIN`).
    max_in_flight: usize,
}

/// Throttling is common for a kind of request once this share of its recent answers asked to
/// slow down (10 %); below it, a 503 SlowDown is a one-off and retried like a 500.
const THROTTLING_COMMON_PPM: u64 = 100_000;

/// Failures are common for a kind of request (the server is down, not flaky) once half of its
/// recent answers failed.
const FAILING_COMMON_PPM: u64 = 500_000;

/// An attempt is hedged after this many times the usual latency of its kind...
const HEDGE_FACTOR: u32 = 4;

impl Latency {
    /// For small requests: hedged after 20 ms at the earliest, 2 s at the latest (4x a loaded
    /// local server's usual HEAD; a remote one's usual latency sets it higher).
    pub fn small() -> Self {
        Latency::new(Duration::from_millis(20), Duration::from_secs(2))
    }

    /// For pages of a listing (more than one key): hedged after 200 ms at the earliest, 2 s at
    /// the latest, with one twin in flight at most (a twin that failed is replaced). The
    /// server's work for a page varies with the directory, not with the page: a delimiter
    /// listing of 1,000 subdirectories over 100,000 keys takes Garage 165-195 ms, and it runs
    /// listings one after another, so the next listing waited behind the twins. With the
    /// floor of small requests (20 ms), `find` of that tree sent its first page at 0, 20, 60
    /// and 140 ms; with one twin, the twin still cost the walk's first listing ~160 ms of
    /// waiting behind it. A stalled page now costs 200 ms before its twin (3 % of requests
    /// stalled in the bench's bad network: a few pages of a walk's hundred).
    pub fn page() -> Self {
        Latency {
            max_in_flight: ONE_TWIN,
            ..Latency::new(Duration::from_millis(200), Duration::from_secs(2))
        }
    }

    /// For uploads of data: hedged after 1 s at the earliest, 5 s at the latest (a part of
    /// 8 MiB takes a few hundred milliseconds on a good link; its twin sends it all again).
    pub fn upload() -> Self {
        Latency::new(Duration::from_secs(1), Duration::from_secs(5))
    }

    /// For downloads of data (ranges of 1 MiB and more): hedged after 200 ms at the earliest,
    /// 5 s at the latest. A sequential read waits for each range in turn, and its read-ahead
    /// (64 MiB, a tenth of a second at local speed) cannot hide a stall: with a floor of 1 s,
    /// three stalls cost a cold read of 1 GiB 3.3 s (3.0x), while 8 ranges of 8 MiB in
    /// flight answer in 100-250 ms each; the usual latency sets the point higher on a slower
    /// link.
    pub fn download() -> Self {
        Latency::new(Duration::from_millis(200), Duration::from_secs(5))
    }

    fn new(floor: Duration, ceiling: Duration) -> Self {
        Latency {
            average_micros: AtomicU64::new(0),
            throttled_ppm: AtomicU64::new(0),
            failed_ppm: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
            floor,
            ceiling,
            max_in_flight: MAX_STARTED,
        }
    }

    /// Hedged attempts made so far (each also counts as a request of its kind).
    pub fn hedges(&self) -> u64 {
        self.hedges.load(Ordering::Relaxed)
    }

    /// How long an attempt may run before a second one starts beside it.
    pub fn hedge_after(&self) -> Duration {
        let average = Duration::from_micros(self.average_micros.load(Ordering::Relaxed));
        (average * HEDGE_FACTOR).clamp(self.floor, self.ceiling)
    }

    /// Records an answer that took `took`. An answer slower than the hedge point counts as
    /// the hedge point, so a few stalls do not teach the average to wait for stalls.
    pub fn record(&self, took: Duration) {
        let sample = took.min(self.hedge_after()).as_micros() as u64;
        // An exponentially weighted average over about the last 8 answers; racing updates
        // may lose a sample, which an average can afford.
        let old = self.average_micros.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        self.average_micros.store(new, Ordering::Relaxed);
    }

    /// Records an answer, `Err` with its error: averages over about the last 256 (over 64,
    /// 4 % of answers throttled at random now and then looked like 10 %).
    fn answered<T>(&self, result: &StoreResult<T>) {
        let (throttled, failed) = match result {
            Ok(_) => (false, false),
            Err(e) => (e.is_throttling(), e.is_transient()),
        };
        for (share, sample) in [(&self.throttled_ppm, throttled), (&self.failed_ppm, failed)] {
            let old = share.load(Ordering::Relaxed);
            share.store(
                (old * 255 + u64::from(sample) * 1_000_000) / 256,
                Ordering::Relaxed,
            );
        }
    }

    /// What the recent answers of this kind say of the server.
    fn recent(&self) -> Recent {
        Recent {
            throttling_is_common: self.throttled_ppm.load(Ordering::Relaxed)
                >= THROTTLING_COMMON_PPM,
            failing_is_common: self.failed_ppm.load(Ordering::Relaxed) >= FAILING_COMMON_PPM,
        }
    }
}

/// Retries of a failure other than throttling that come sooner than the backoff says.
const QUICK_RETRIES: u32 = 4;

/// A quick retry waits a quarter of the backoff of the retry before, of this one at most (up
/// to 50 ms with the default base of 100 ms): a request of a flaky server that failed four
/// times in a row (one HEAD in two `du` of 2,000 files under the issue-14 mix) waited 200 ms
/// more at each retry, while a request the server answers takes milliseconds.
const QUICK_PAUSE_GROWS_UNTIL: u32 = 2;

/// How long retry number `retry` (1-based) of a request that failed with `error` waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pause {
    None,
    /// A quarter of the backoff of the retry before (see `QUICK_PAUSE_GROWS_UNTIL`).
    QuarterBackoff,
    Backoff,
}

/// What the recent answers of a kind of request say of the server; for requests that keep no
/// record of their answers (the unhedged ones), the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recent {
    throttling_is_common: bool,
    failing_is_common: bool,
}

impl Recent {
    const UNKNOWN: Recent = Recent {
        throttling_is_common: true,
        failing_is_common: true,
    };
}

/// A one-off failure (a reset, a pooled connection the server closed, a 500) is retried at
/// once the first time and after a quarter of the backoff for the next few (six 500s in a row
/// on one HEAD held an `ls -l` for 1.5 s); one that persists (an outage) gets the whole
/// backoff. Persists: past `QUICK_RETRIES`, when failures are common for its kind of request;
/// while most of them are answered, the server is flaky, not down, and the request goes on
/// being retried quickly (five failures in a row of one HEAD in 2,400 cost a `du` 1.3 s of
/// backoff). A server asking to slow down gets the whole backoff from the first retry when it
/// says so to a good share of the requests of that kind: else the 503 is a one-off too (4 %
/// of HEADs throttled at random held `du` up for a backoff of up to 100-200 ms in one
/// directory out of four, while the other requests went on at full rate).
fn pause(retry: u32, error: &StoreError, recent: Recent) -> Pause {
    if (retry > QUICK_RETRIES && recent.failing_is_common)
        || (error.is_throttling() && recent.throttling_is_common)
    {
        Pause::Backoff
    } else if retry == 1 {
        Pause::None
    } else {
        Pause::QuarterBackoff
    }
}

/// Runs `f` until it succeeds, fails with a non-transient error, or the policy's retries are
/// used up. Each attempt is bounded (an attempt that runs over becomes
/// `StoreError::Timeout`) and, for a hedged call, may run twice at once.
///
/// `f` must build a fresh request on every call (S3 signatures carry a timestamp).
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    call: Call<'_, T>,
    f: F,
) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    with_retries_if(policy, call, StoreError::is_transient, f).await
}

/// Like [`with_retries`], but `retryable` decides which errors are retried. Used for requests
/// that are only safe to repeat when the previous attempt certainly never reached the server.
pub async fn with_retries_if<T, F, Fut, R>(
    policy: &RetryPolicy,
    call: Call<'_, T>,
    retryable: R,
    mut f: F,
) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
    R: Fn(&StoreError) -> bool,
{
    let started = Instant::now();
    let timeout = policy.attempt_timeout(&call);
    let mut retry = 0u32;
    loop {
        let timed_out = AtomicBool::new(false);
        let result = {
            let attempt = attempt(&call, &mut f, &timed_out);
            if timeout.is_zero() {
                attempt.await
            } else {
                // Pinned here, so that its requests still in flight are dropped (and counted
                // as timed out) only at the end of this block, after the flag is set.
                let attempt = std::pin::pin!(tokio::time::timeout(timeout, attempt));
                match attempt.await {
                    Ok(result) => result,
                    Err(_) => {
                        timed_out.store(true, Ordering::Relaxed);
                        Err(StoreError::Timeout(timeout))
                    }
                }
            }
        };
        match result {
            Ok(value) => return Ok(value),
            Err(error) if retryable(&error) && policy.may_retry(retry + 1, started.elapsed()) => {
                retry += 1;
                call.retried();
                let left = policy.retry_timeout.saturating_sub(started.elapsed());
                let recent = call.hedge.map_or(Recent::UNKNOWN, Latency::recent);
                let delay = match pause(retry, &error, recent) {
                    Pause::None => Duration::ZERO,
                    Pause::QuarterBackoff => {
                        policy.backoff((retry - 1).min(QUICK_PAUSE_GROWS_UNTIL)) / 4
                    }
                    Pause::Backoff => policy.backoff(retry),
                };
                let delay = delay.min(left);
                // The first retries are routine under a flaky network; a request still
                // failing after several is worth a warning.
                if retry <= 2 {
                    tracing::debug!(operation = call.what, attempt = retry, delay_ms = delay.as_millis() as u64, error = %error, "store request failed, retrying");
                } else {
                    tracing::warn!(operation = call.what, attempt = retry, failing_for_s = started.elapsed().as_secs(), delay_ms = delay.as_millis() as u64, error = %error, "store request still failing, retrying");
                }
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Attempts of one hedged call at most. Under the issue-14 mix (3 % of requests stall for
/// 2-5 s) a cap of three in flight left a stall on the path of about one `du` of 2,000 files
/// in ten (all three attempts of one HEAD stalled: 2.3 s of a 3.0 s `du`); with six, all
/// stall once in a billion calls.
const MAX_STARTED: usize = 6;

/// Attempts of one call in flight at once for a kind whose attempts cost the server much
/// (`page`).
const ONE_TWIN: usize = 2;

/// How long after the last start or failure of an attempt of a hedged call the next one
/// starts, `running` attempts being in flight and `hedge_after` the usual latency's hedge
/// point: the hedge point, doubled for each attempt running beyond the first. A call that is
/// merely slow gets one twin; only one whose twins stall too gets more, ever further apart
/// (h, 3h, 7h, ... after the first), so a server that is slow for everyone sees a few extra
/// requests per call, not six at once; a twin that failed at once is replaced a hedge point
/// later.
fn hedge_pause(running: usize, hedge_after: Duration) -> Duration {
    hedge_after * (1u32 << running.saturating_sub(1).min(16))
}

/// One attempt of `call`: `f` once, or, when hedged and slow, up to `MAX_STARTED` (at most its
/// kind's `max_in_flight` at once), started as `hedge_pause` says, the first answer winning —
/// a success or a definite error such as 404; a transient failure of one waits for the others
/// (and the next start), the last one's is the attempt's error.
async fn attempt<T, F, Fut>(call: &Call<'_, T>, f: &mut F, timed_out: &AtomicBool) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    let Some(latency) = call.hedge else {
        return call.send(f(), timed_out).await;
    };
    let hedge_after = latency.hedge_after();
    let mut in_flight = FuturesUnordered::new();
    let timed = |fut| async move {
        let began = Instant::now();
        (fut.await, began.elapsed())
    };
    in_flight.push(timed(call.send(f(), timed_out)));
    let mut started = 1;
    let mut last_event = tokio::time::Instant::now();
    loop {
        let next_hedge =
            tokio::time::sleep_until(last_event + hedge_pause(in_flight.len(), hedge_after));
        tokio::select! {
            Some((result, took)) = in_flight.next() => {
                latency.answered(&result);
                match result {
                    Ok(value) => {
                        latency.record(took);
                        return Ok(value);
                    }
                    Err(e) if e.is_transient() && !in_flight.is_empty() => {
                        last_event = tokio::time::Instant::now();
                    }
                    Err(e) => return Err(e),
                }
            }
            () = next_hedge,
                if started < MAX_STARTED && in_flight.len() < latency.max_in_flight =>
            {
                tracing::debug!(operation = call.what, after_ms = hedge_after.as_millis() as u64, in_flight = in_flight.len(), "slow answer, hedging with another attempt");
                in_flight.push(timed(call.send(f(), timed_out)));
                started += 1;
                last_event = tokio::time::Instant::now();
                latency.hedges.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // tokio's `test-util` (paused time) is not enabled in this crate: the policies below use
    // millisecond delays so the tests stay fast in real time.
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            retry_timeout: Duration::from_secs(10),
            max_retries: Some(max_retries),
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            request_timeout: Duration::from_millis(50),
        }
    }

    /// No retries, and attempts bounded far beyond the stalls of the hedging specs.
    fn hedging_policy() -> RetryPolicy {
        RetryPolicy {
            request_timeout: Duration::from_secs(30),
            ..policy(0)
        }
    }

    /// A 503 SlowDown: transient, and throttling.
    fn server_error() -> StoreError {
        StoreError::Server {
            status: 503,
            message: "SlowDown".into(),
        }
    }

    /// A 500 InternalError: transient, not throttling.
    fn internal_error() -> StoreError {
        StoreError::Server {
            status: 500,
            message: "InternalError".into(),
        }
    }

    /// Recent answers of a server that fails now and then and rarely asks to slow down.
    const FLAKY: Recent = Recent {
        throttling_is_common: false,
        failing_is_common: false,
    };

    /// A hedged small call under `p` whose attempt number `n` (from 0) does what `attempt(n)`
    /// says: what it gave, and how long it took.
    async fn hedged_call<Fut>(
        p: &RetryPolicy,
        latency: &Latency,
        attempt: impl Fn(u32) -> Fut,
    ) -> (StoreResult<u32>, Duration)
    where
        Fut: Future<Output = StoreResult<u32>>,
    {
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let call = Call::small("test").hedged(latency);
        let result = with_retries(p, call, || attempt(calls.fetch_add(1, Ordering::SeqCst))).await;
        (result, started.elapsed())
    }

    #[tokio::test]
    async fn transient_error_is_retried_then_succeeds() {
        let calls = AtomicU32::new(0);
        let result = with_retries(&policy(3), Call::small("test"), || async {
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
    async fn a_one_off_failure_is_retried_at_once_and_throttling_backs_off() {
        let slow = RetryPolicy {
            base_delay: Duration::from_millis(300),
            max_delay: Duration::from_millis(300),
            ..policy(1)
        };
        let timed = |error: StoreError| async move {
            let calls = AtomicU32::new(0);
            let started = Instant::now();
            let result = with_retries(&slow, Call::small("test"), || {
                let error = error.clone();
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        Err(error)
                    } else {
                        Ok(())
                    }
                }
            })
            .await;
            assert!(result.is_ok());
            started.elapsed()
        };
        let reset = timed(StoreError::Unreachable("connection reset".into())).await;
        assert!(reset < Duration::from_millis(50), "{reset:?}");
        let internal = timed(internal_error()).await;
        assert!(internal < Duration::from_millis(50), "{internal:?}");
        // Full jitter may pick a short delay: try a few times for one that shows the backoff.
        let mut longest = Duration::ZERO;
        for _ in 0..10 {
            longest = longest.max(timed(server_error()).await);
        }
        assert!(
            longest > Duration::from_millis(60),
            "503 SlowDown backs off: {longest:?}"
        );
    }

    #[tokio::test]
    async fn non_transient_error_returns_after_one_call() {
        let calls = AtomicU32::new(0);
        let result: StoreResult<()> = with_retries(&policy(5), Call::small("test"), || async {
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
        let result: StoreResult<()> = with_retries(&policy(3), Call::small("test"), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Unreachable("connection refused".into()))
        })
        .await;
        assert!(matches!(result, Err(StoreError::Unreachable(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn an_outage_shorter_than_the_retry_timeout_is_waited_out() {
        let p = RetryPolicy {
            max_retries: None,
            retry_timeout: Duration::from_secs(5),
            ..policy(0)
        };
        let outage_ends = Instant::now() + Duration::from_millis(300);
        let calls = AtomicU32::new(0);
        let result = with_retries(&p, Call::small("test"), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            if Instant::now() < outage_ends {
                Err(StoreError::Unreachable("connection refused".into()))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
        assert!(
            calls.load(Ordering::SeqCst) > 5,
            "retried through the outage"
        );
    }

    #[tokio::test]
    async fn retries_stop_once_the_retry_timeout_has_passed() {
        let p = RetryPolicy {
            max_retries: None,
            retry_timeout: Duration::from_millis(200),
            ..policy(0)
        };
        let started = Instant::now();
        let result: StoreResult<()> = with_retries(&p, Call::small("test"), || async {
            Err(StoreError::Unreachable("connection refused".into()))
        })
        .await;
        assert!(matches!(result, Err(StoreError::Unreachable(_))));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_millis(400), "{took:?}");
    }

    #[tokio::test]
    async fn a_zero_retry_timeout_means_one_attempt() {
        let p = RetryPolicy {
            max_retries: None,
            retry_timeout: Duration::ZERO,
            ..policy(0)
        };
        let calls = AtomicU32::new(0);
        let result: StoreResult<()> = with_retries(&p, Call::small("test"), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(server_error())
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn hung_attempt_times_out_and_is_retried() {
        let calls = AtomicU32::new(0);
        let p = policy(1);
        let started = Instant::now();
        let result: StoreResult<()> = with_retries(&p, Call::data("test"), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok(())
        })
        .await;
        assert!(matches!(result, Err(StoreError::Timeout(d)) if d == p.request_timeout));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(started.elapsed() >= 2 * p.request_timeout);
    }

    #[test]
    fn small_requests_have_a_short_attempt_bound() {
        let p = RetryPolicy {
            request_timeout: Duration::from_secs(30),
            ..RetryPolicy::default()
        };
        assert_eq!(
            p.attempt_timeout(&Call::<()>::small("HEAD")),
            SMALL_REQUEST_TIMEOUT
        );
        assert_eq!(
            p.attempt_timeout(&Call::<()>::data("GET")),
            Duration::from_secs(30)
        );
        assert_eq!(
            p.attempt_timeout(&Call::<()>::sized("PUT", 4096)),
            SMALL_REQUEST_TIMEOUT
        );
        assert_eq!(
            p.attempt_timeout(&Call::<()>::sized("PUT", 8 << 20)),
            Duration::from_secs(30)
        );
        let short = RetryPolicy {
            request_timeout: Duration::from_secs(2),
            ..p
        };
        assert_eq!(
            short.attempt_timeout(&Call::<()>::small("HEAD")),
            Duration::from_secs(2)
        );
    }

    #[tokio::test]
    async fn a_stalled_hedged_attempt_is_overtaken_by_a_second_one() {
        let latency = Latency::small();
        let calls = AtomicU32::new(0);
        let p = hedging_policy();
        let started = Instant::now();
        let result = with_retries(&p, Call::small("test").hedged(&latency), || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_secs(3)).await; // a stall
                Ok(1)
            } else {
                Ok(2)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2, "the second attempt answered first");
        let took = started.elapsed();
        assert!(took >= latency.floor, "{took:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
    }

    #[tokio::test]
    async fn a_counted_hedge_that_wins_leaves_its_twin_counted_as_cancelled() {
        let latency = Latency::small();
        let stats = StatsCounter::default();
        let calls = AtomicU32::new(0);
        let call = Call::small("test")
            .hedged(&latency)
            .counted(&stats, "GetObject", 0);
        let result = with_retries(&hedging_policy(), call, || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_secs(3)).await; // a stall
            }
            Ok(())
        })
        .await;
        assert!(result.is_ok());
        let st = stats.snapshot();
        assert_eq!(st.count("GetObject"), 2, "both were sent");
        let outcomes: Vec<_> = st.outcomes.into_iter().collect();
        assert_eq!(
            outcomes,
            [(("GetObject", "cancelled"), 1), (("GetObject", "ok"), 1)]
        );
        assert_eq!(st.latency["GetObject"].count(), 1, "only the answer's");
        assert!(st.retries.is_empty(), "a hedge is no retry");
    }

    #[tokio::test]
    async fn when_the_hedge_stalls_too_a_third_attempt_answers() {
        let latency = Latency::small();
        let calls = AtomicU32::new(0);
        let p = hedging_policy();
        let started = Instant::now();
        let result = with_retries(&p, Call::small("test").hedged(&latency), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n < 2 {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Ok(n)
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn when_three_attempts_stall_a_fourth_answers() {
        // 3 % of requests stalling (issue 14) met three stalled attempts of one HEAD about
        // once in ten `du` of 2,000 files; the fourth must not wait for them.
        let (result, took) = hedged_call(&hedging_policy(), &Latency::small(), |n| async move {
            if n < 3 {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Ok(n)
        })
        .await;
        assert_eq!(result.unwrap(), 3);
        assert!(took < Duration::from_secs(1), "{took:?}");
    }

    /// `hedged_call` whose every attempt answers after `each_takes`: how many attempts
    /// started, and which one's answer won.
    async fn attempts_answering_after(latency: &Latency, each_takes: Duration) -> (u32, u32) {
        let attempts = AtomicU32::new(0);
        let (result, _) = hedged_call(&hedging_policy(), latency, |n| {
            attempts.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(each_takes).await;
                Ok(n)
            }
        })
        .await;
        (attempts.load(Ordering::SeqCst), result.unwrap())
    }

    #[tokio::test]
    async fn a_page_the_server_is_slow_to_list_gets_one_twin_not_more() {
        // Every attempt takes 250 ms, more than a delimiter listing of 1,000 subdirectories
        // takes Garage (which lists one at a time): small requests start attempts at 20, 60
        // and 140 ms (the next would be at 300); a page only its twin, at 200 ms.
        let slow = Duration::from_millis(250);
        assert_eq!(attempts_answering_after(&Latency::small(), slow).await.0, 4);
        assert_eq!(attempts_answering_after(&Latency::page(), slow).await.0, 2);
    }

    #[tokio::test]
    async fn a_page_the_server_lists_in_100_ms_gets_no_twin() {
        // Well within what a delimiter page of 1,000 subdirectories takes Garage (165 ms),
        // which would list the twin after it, and the walk's next listing after the twin.
        let listed = Duration::from_millis(100);
        assert_eq!(
            attempts_answering_after(&Latency::page(), listed).await,
            (1, 0),
            "one attempt, and its answer"
        );
    }

    #[tokio::test]
    async fn a_page_whose_twin_fails_at_once_gets_another() {
        let (result, took) = hedged_call(&hedging_policy(), &Latency::page(), |n| async move {
            match n {
                0 => tokio::time::sleep(Duration::from_secs(3)).await,
                1 => return Err(server_error()),
                _ => {}
            }
            Ok(n)
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        assert!(took < Duration::from_secs(1), "{took:?}");
    }

    #[test]
    fn each_attempt_still_running_doubles_the_pause_before_the_next() {
        let h = Duration::from_millis(20);
        let pauses: Vec<u128> = (1..MAX_STARTED)
            .map(|running| hedge_pause(running, h).as_millis())
            .collect();
        assert_eq!(pauses, [20, 40, 80, 160, 320]);
    }

    #[tokio::test]
    async fn a_twin_that_fails_at_once_is_replaced_a_hedge_point_later() {
        // Hedge point 200 ms: the first attempt stalls, twins 2 and 3 fail at once, the
        // fourth answers. Replacing each failed twin after one pause: at 200, 400, 600 ms;
        // counting the pauses as if the failed twins still ran: 200, 600, 1,400 ms.
        let latency = Latency::new(Duration::from_millis(200), Duration::from_secs(2));
        let (result, took) = hedged_call(&hedging_policy(), &latency, |n| async move {
            match n {
                0 => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(0)
                }
                1 | 2 => Err(server_error()),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
        assert!(took >= Duration::from_millis(600), "{took:?}");
        assert!(took < Duration::from_millis(1_200), "{took:?}");
    }

    #[test]
    fn a_503_waits_the_whole_backoff_only_when_throttling_is_common() {
        let e500 = internal_error();
        let slow_down = server_error();
        assert!(slow_down.is_throttling());
        let throttling = Recent {
            throttling_is_common: true,
            ..FLAKY
        };
        // A one-off 503 is retried like a 500...
        for recent in [FLAKY, throttling] {
            assert_eq!(pause(1, &e500, recent), Pause::None);
            assert_eq!(pause(2, &e500, recent), Pause::QuarterBackoff);
        }
        assert_eq!(pause(1, &slow_down, FLAKY), Pause::None);
        assert_eq!(pause(2, &slow_down, FLAKY), Pause::QuarterBackoff);
        // ...but when many answers ask to slow down, every retry waits the backoff.
        assert_eq!(pause(1, &slow_down, throttling), Pause::Backoff);
        assert_eq!(pause(2, &slow_down, throttling), Pause::Backoff);
        assert_eq!(pause(1, &slow_down, Recent::UNKNOWN), Pause::Backoff);
    }

    #[test]
    fn a_failure_that_persists_gets_the_whole_backoff_only_while_failures_are_common() {
        let e500 = internal_error();
        let down = Recent {
            failing_is_common: true,
            ..FLAKY
        };
        let many = QUICK_RETRIES + 3;
        assert_eq!(pause(many, &e500, FLAKY), Pause::QuarterBackoff);
        assert_eq!(pause(many, &e500, down), Pause::Backoff);
        assert_eq!(pause(many, &e500, Recent::UNKNOWN), Pause::Backoff);
    }

    #[test]
    fn throttling_is_common_once_a_tenth_of_the_recent_answers_asked_to_slow_down() {
        let latency = Latency::small();
        for _ in 0..200 {
            latency.answered(&Ok(()));
        }
        latency.answered::<()>(&Err(server_error()));
        assert!(!latency.recent().throttling_is_common, "one in 200");
        for i in 0..400 {
            let answer = if i % 4 == 0 {
                Err(server_error())
            } else {
                Ok(())
            };
            latency.answered(&answer);
        }
        assert!(latency.recent().throttling_is_common, "one in four");
        assert!(!latency.recent().failing_is_common, "one in four");
        for _ in 0..400 {
            latency.answered::<()>(&Err(StoreError::Timeout(Duration::from_secs(5))));
        }
        assert!(latency.recent().failing_is_common, "all");
    }

    #[tokio::test]
    async fn a_hedged_request_failing_again_and_again_while_others_are_answered_keeps_retrying_quickly(
    ) {
        // Retries 5 to 9 waiting the whole backoff would wait 4.9 s on average.
        let p = RetryPolicy {
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(5),
            ..policy(12)
        };
        let latency = Latency::small();
        for _ in 0..100 {
            latency.answered(&Ok(()));
        }
        let (result, took) = hedged_call(&p, &latency, |n| async move {
            match n {
                0..9 => Err(StoreError::Server {
                    status: 500,
                    message: format!("failure {n}"),
                }),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 9);
        assert!(took < Duration::from_secs(1), "{took:?}");
    }

    #[tokio::test]
    async fn a_lone_503_on_a_hedged_request_is_retried_at_once() {
        // With a backoff of up to 10 s, a retry that waited it would take 5 s on average.
        let p = RetryPolicy {
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(10),
            ..policy(3)
        };
        let (result, took) = hedged_call(&p, &Latency::small(), |n| async move {
            match n {
                0 => Err(server_error()), // 503 SlowDown
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 1);
        assert!(took < Duration::from_millis(500), "{took:?}");
    }

    #[tokio::test]
    async fn a_hedge_that_fails_leaves_the_first_attempt_to_answer() {
        // Hedged at 200 ms; the hedge fails at once; the next would start at 400 ms.
        let latency = Latency::new(Duration::from_millis(200), Duration::from_secs(2));
        let calls = AtomicU32::new(0);
        let p = hedging_policy();
        let result = with_retries(&p, Call::small("test").hedged(&latency), || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(1)
            } else {
                Err(server_error())
            }
        })
        .await;
        assert_eq!(result.unwrap(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_hedge_that_answers_not_found_wins_over_a_stalled_first_attempt() {
        let latency = Latency::small();
        let calls = AtomicU32::new(0);
        let p = hedging_policy();
        let started = Instant::now();
        let result: StoreResult<()> =
            with_retries(&p, Call::small("test").hedged(&latency), || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                Err(StoreError::NotFound)
            })
            .await;
        assert!(matches!(result, Err(StoreError::NotFound)));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn an_unhedged_call_never_runs_twice_at_once() {
        let calls = AtomicU32::new(0);
        let p = hedging_policy();
        let result = with_retries(&p, Call::small("test"), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(1)
        })
        .await;
        assert_eq!(result.unwrap(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_hedge_point_follows_the_usual_latency_and_ignores_stalls() {
        let latency = Latency::small();
        assert_eq!(
            latency.hedge_after(),
            Duration::from_millis(20),
            "the floor at first"
        );
        for _ in 0..50 {
            latency.record(Duration::from_millis(300));
        }
        let usual = latency.hedge_after();
        assert!(
            usual > Duration::from_millis(1100) && usual <= Duration::from_millis(1200),
            "{usual:?}"
        );
        // A few 5 s stalls count as the hedge point, not as 5 s.
        for _ in 0..3 {
            latency.record(Duration::from_secs(5));
        }
        assert_eq!(latency.hedge_after(), Latency::small().ceiling);
        for _ in 0..50 {
            latency.record(Duration::from_millis(1));
        }
        assert_eq!(latency.hedge_after(), Duration::from_millis(20));
    }

    #[tokio::test]
    async fn custom_predicate_limits_retries() {
        let calls = AtomicU32::new(0);
        let result: StoreResult<()> = with_retries_if(
            &policy(3),
            Call::small("test"),
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
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            ..RetryPolicy::default()
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
