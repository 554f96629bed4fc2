//! Token buckets for per-connection and per-conference limits.
//!
//! Time is an argument so the limits are unit-tested without sleeping; the
//! connection task passes `Instant::now()`.

use std::time::{Duration, Instant};

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

    /// Takes one token; `Err` carries how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.per_sec > 0.0 {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
        } else {
            Err(Duration::MAX)
        }
    }
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
}
