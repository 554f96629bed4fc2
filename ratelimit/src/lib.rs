//! convene's one rate limiter: a token bucket ([`TokenBucket`]) for one
//! stream of events (a WebSocket connection's messages, a room's chat) and a
//! map of them ([`KeyedLimiter`]) for many callers (logins per account and
//! per address, registrations per address).
//!
//! Time is always an argument, never read here, so every limit is tested on
//! a virtual clock without sleeping; callers pass `Instant::now()`. Depends
//! on no other convene crate; the control plane and the signaling service
//! both use it.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A token bucket: `burst` tokens, refilled at `per_sec` tokens per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(per_sec: f64, burst: u32, now: Instant) -> Self {
        let capacity = f64::from(burst.max(1));
        Self {
            capacity,
            per_sec,
            tokens: capacity,
            last: now,
        }
    }

    /// A bucket allowing `n` events per minute, all of them at once.
    pub fn per_minute(n: u32, now: Instant) -> Self {
        Self::new(f64::from(n) / 60.0, n, now)
    }

    /// A bucket allowing `n` events per `window`, all of them at once.
    pub fn per_window(n: u32, window: Duration, now: Instant) -> Self {
        let secs = window.as_secs_f64().max(1e-3);
        Self::new(f64::from(n.max(1)) / secs, n, now)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
    }

    /// Takes one token; `Err` carries how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.per_sec > 0.0 {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
        } else {
            Err(Duration::MAX)
        }
    }

    /// Whether the bucket is back to its full burst: such a bucket behaves
    /// exactly like a new one, so a map of buckets may forget it.
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.per_sec >= self.capacity
    }
}

/// Above this many keys, full buckets are swept on insert: they carry no
/// information, and without the sweep a caller spraying fresh keys (random
/// logins, many addresses) would grow the map without bound.
const SWEEP_THRESHOLD: usize = 10_000;

/// One [`TokenBucket`] per key, all with the same rate and burst.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    burst: u32,
    window: Duration,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `burst` events at once per key, refilled to `burst` over `window`.
    pub fn new(burst: u32, window: Duration) -> Self {
        KeyedLimiter {
            burst: burst.max(1),
            window: window.max(Duration::from_secs(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event for `key`; `Err` carries how long until the next one
    /// would be allowed.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock();
        if buckets.len() > SWEEP_THRESHOLD && !buckets.contains_key(key) {
            buckets.retain(|_, b| !b.is_full(now));
        }
        buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::per_window(self.burst, self.window, now))
            .try_take(now)
    }

    /// Gives `key` its full burst again (e.g. an account after a successful
    /// login).
    pub fn reset(&self, key: &K) {
        self.buckets.lock().remove(key);
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3, t0);
        assert!(b.try_take(t0).is_ok());
        assert!(b.try_take(t0).is_ok());
        assert!(b.try_take(t0).is_ok());
        let wait = b.try_take(t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        // Half a second refills one token at 2/s.
        assert!(b.try_take(t0 + Duration::from_millis(500)).is_ok());
        assert!(b.try_take(t0 + Duration::from_millis(500)).is_err());
        // A long pause never stores more than the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.try_take(later).is_ok());
        }
        assert!(b.try_take(later).is_err());
    }

    #[test]
    fn per_minute_bucket() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_minute(2, t0);
        assert!(b.try_take(t0).is_ok());
        assert!(b.try_take(t0).is_ok());
        assert!(b.try_take(t0 + Duration::from_secs(10)).is_err());
        assert!(b.try_take(t0 + Duration::from_secs(31)).is_ok());
    }

    #[test]
    fn an_earlier_instant_does_not_refill_or_panic() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1.0, 1, t0);
        assert!(b.try_take(t0).is_ok());
        assert!(b.try_take(t0 - Duration::from_secs(5)).is_err());
        assert!(b.try_take(t0).is_err());
    }

    #[test]
    fn keyed_limits_each_key_and_reports_the_wait() {
        let t0 = Instant::now();
        let rl = KeyedLimiter::new(2, Duration::from_secs(60));
        assert!(rl.check(&"a", t0).is_ok());
        assert!(rl.check(&"a", t0).is_ok());
        let wait = rl.check(&"a", t0).unwrap_err();
        assert_eq!(retry_after_secs(wait), 30);
        assert!(rl.check(&"b", t0).is_ok());
        rl.reset(&"a");
        assert!(rl.check(&"a", t0).is_ok());
        // A refill of one token per 30 s.
        assert!(rl.check(&"b", t0 + Duration::from_secs(29)).is_ok());
        assert!(rl.check(&"b", t0 + Duration::from_secs(29)).is_err());
        assert!(rl.check(&"b", t0 + Duration::from_secs(45)).is_ok());
    }

    #[test]
    fn keyed_map_stays_bounded_under_fresh_keys() {
        let t0 = Instant::now();
        let rl = KeyedLimiter::new(5, Duration::from_secs(1));
        for i in 0..(3 * SWEEP_THRESHOLD as u32) {
            // One second apart at most SWEEP_THRESHOLD times: by then the
            // first buckets are full again and swept.
            let now = t0 + Duration::from_millis(u64::from(i) / 10);
            rl.check(&i, now).unwrap();
        }
        assert!(rl.len() <= SWEEP_THRESHOLD + 1, "{} keys", rl.len());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
