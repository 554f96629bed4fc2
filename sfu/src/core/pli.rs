//! Keyframe request throttling.
//!
//! Every subscriber that joins, loses packets or switches layers wants a
//! keyframe, and a room of N subscribers would otherwise make the publisher
//! encode N keyframes in a burst (each several times a delta frame), which
//! congests the publisher's uplink and makes things worse. One request per
//! interval per encoding is enough: all subscribers share the keyframe.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct PliThrottle {
    min_interval: Duration,
    last_sent: Option<Instant>,
    /// A request that arrived inside the interval; sent when it elapses so the
    /// last asker is not left waiting for the encoder's periodic keyframe.
    deferred: bool,
}

impl PliThrottle {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last_sent: None,
            deferred: false,
        }
    }

    /// Ask for a keyframe; true when the request should go to the publisher now.
    pub fn request(&mut self, now: Instant) -> bool {
        if self.ready(now) {
            self.last_sent = Some(now);
            self.deferred = false;
            true
        } else {
            self.deferred = true;
            false
        }
    }

    /// A keyframe arrived: deferred requests are answered by it.
    pub fn keyframe_received(&mut self) {
        self.deferred = false;
    }

    /// Periodic check: true when a deferred request is due now.
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.deferred && self.ready(now) {
            self.last_sent = Some(now);
            self.deferred = false;
            true
        } else {
            false
        }
    }

    fn ready(&self, now: Instant) -> bool {
        match self.last_sent {
            None => true,
            Some(t) => now.saturating_duration_since(t) >= self.min_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_request_per_interval() {
        let t0 = Instant::now();
        let mut p = PliThrottle::new(Duration::from_millis(500));
        let mut sent = 0;
        // 20 subscribers asking every 10 ms for 2 s.
        for ms in (0..2000).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            for _ in 0..20 {
                if p.request(now) {
                    sent += 1;
                }
            }
        }
        assert_eq!(sent, 4, "0, 500, 1000, 1500 ms");
    }

    #[test]
    fn deferred_request_is_sent_when_interval_elapses() {
        let t0 = Instant::now();
        let mut p = PliThrottle::new(Duration::from_millis(500));
        assert!(p.request(t0));
        assert!(!p.request(t0 + Duration::from_millis(100)));
        assert!(!p.poll(t0 + Duration::from_millis(499)));
        assert!(p.poll(t0 + Duration::from_millis(500)));
        // Nothing left to send.
        assert!(!p.poll(t0 + Duration::from_millis(1200)));
    }

    #[test]
    fn keyframe_cancels_deferred_request() {
        let t0 = Instant::now();
        let mut p = PliThrottle::new(Duration::from_millis(500));
        assert!(p.request(t0));
        assert!(!p.request(t0 + Duration::from_millis(100)));
        p.keyframe_received();
        assert!(!p.poll(t0 + Duration::from_millis(600)));
    }
}
