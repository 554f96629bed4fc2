//! How long a subscriber's outgoing video stream keeps sent packets to
//! answer NACKs with RTX.
//!
//! A count alone (str0m keeps up to `send-buffer-video` packets for 3 s)
//! makes every stream hold hundreds of entries whatever the path: most of a
//! subscriber stream's memory. A NACK can only usefully ask for packets a
//! few round trips old, so the cache is sized by time: `rtt_factor` round
//! trips, never below `min` (the first receiver report takes a while, and
//! loopback or LAN round trips are tiny), never above `max`.

use std::time::Duration;

/// Ages are kept in steps of this, so jitter in the measured round trip
/// does not resize the cache.
const STEP: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtxCachePolicy {
    pub min: Duration,
    pub max: Duration,
    pub rtt_factor: u32,
}

impl RtxCachePolicy {
    /// The age to keep for a stream whose round trip is `rtt` (None before
    /// the first receiver report).
    pub fn age(&self, rtt: Option<Duration>) -> Duration {
        let max = self.max.max(self.min);
        let want = rtt.map_or(self.min, |r| r.saturating_mul(self.rtt_factor));
        let age = want.clamp(self.min, max);
        // Up to the next step, but never past `max`.
        let steps = age.as_nanos().div_ceil(STEP.as_nanos());
        Duration::from_nanos((steps * STEP.as_nanos()) as u64).min(max)
    }

    /// Whether to resize a cache of age `current` to `new`. str0m drops the
    /// cached packets on a resize, so it follows the round trip only on a
    /// real change: at once when it must grow (a longer path NACKs older
    /// packets), and when it would shrink by a quarter or more.
    pub fn should_resize(current: Duration, new: Duration) -> bool {
        new > current || new * 4 <= current * 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> RtxCachePolicy {
        RtxCachePolicy {
            min: 300 * MS,
            max: 3000 * MS,
            rtt_factor: 3,
        }
    }

    #[test]
    fn age_is_three_round_trips_within_the_bounds() {
        let p = policy();
        assert_eq!(p.age(None), 300 * MS, "before any report: the minimum");
        assert_eq!(p.age(Some(MS)), 300 * MS, "loopback: the minimum");
        assert_eq!(
            p.age(Some(150 * MS)),
            500 * MS,
            "450 ms up to the next step"
        );
        assert_eq!(p.age(Some(400 * MS)), 1200 * MS);
        assert_eq!(
            p.age(Some(10 * 1000 * MS)),
            3000 * MS,
            "a bogus report: the maximum"
        );
        assert_eq!(p.age(Some(Duration::MAX)), 3000 * MS, "no overflow");
    }

    #[test]
    fn a_maximum_below_the_minimum_gives_the_minimum() {
        let p = RtxCachePolicy {
            max: 100 * MS,
            ..policy()
        };
        assert_eq!(p.age(Some(400 * MS)), 300 * MS);
    }

    #[test]
    fn resizes_to_grow_at_once_and_to_shrink_only_by_a_quarter() {
        assert!(RtxCachePolicy::should_resize(300 * MS, 400 * MS));
        assert!(!RtxCachePolicy::should_resize(400 * MS, 400 * MS));
        assert!(!RtxCachePolicy::should_resize(400 * MS, 350 * MS));
        assert!(RtxCachePolicy::should_resize(400 * MS, 300 * MS));
    }
}
