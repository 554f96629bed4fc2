//! In-memory fixed-window rate limiter for login attempts, keyed by account
//! and by client IP. Per process: behind several replicas the effective limit
//! multiplies, which is acceptable for slowing down password guessing.

use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Above this many tracked keys, expired windows are swept on insert so
/// spraying random logins cannot grow the map without bound.
const SWEEP_THRESHOLD: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    max: u32,
    window: Duration,
    windows: DashMap<String, (Instant, u32)>,
}

impl RateLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        RateLimiter {
            max: max.max(1),
            window: window.max(Duration::from_secs(1)),
            windows: DashMap::new(),
        }
    }

    /// Counts one attempt. `Err(seconds)` tells how long until the window
    /// resets when the limit is already used up.
    pub fn hit(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        if self.windows.len() > SWEEP_THRESHOLD {
            self.windows
                .retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let mut entry = self.windows.entry(key.to_string()).or_insert((now, 0));
        let (start, count) = entry.value_mut();
        if now.duration_since(*start) >= self.window {
            *start = now;
            *count = 0;
        }
        if *count >= self.max {
            let left = self.window.saturating_sub(now.duration_since(*start));
            return Err(left.as_secs() + u64::from(left.subsec_nanos() > 0));
        }
        *count += 1;
        Ok(())
    }

    /// Forgets a key, e.g. an account after a successful login.
    pub fn reset(&self, key: &str) {
        self.windows.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_reports_retry_after() {
        let rl = RateLimiter::new(2, Duration::from_secs(60));
        assert!(rl.hit("a").is_ok());
        assert!(rl.hit("a").is_ok());
        let retry = rl.hit("a").unwrap_err();
        assert!((59..=60).contains(&retry));
        assert!(rl.hit("b").is_ok());
        rl.reset("a");
        assert!(rl.hit("a").is_ok());
    }
}
