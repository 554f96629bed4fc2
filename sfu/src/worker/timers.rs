//! A timer heap: which participants' str0m timeouts are due, without
//! looking at the others.
//!
//! Each key has at most one armed deadline. Moving it earlier pushes a new
//! entry and leaves the old one stale (skipped when popped); moving it later
//! keeps the earlier entry, and the caller re-arms when it fires early. So
//! the heap holds about one entry per key, and an iteration costs
//! O(due · log n) instead of a scan of every participant.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::Instant;

pub struct Timers<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    armed: HashMap<K, Instant>,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            armed: HashMap::new(),
        }
    }
}

impl<K: Copy + Ord + Hash> Timers<K> {
    /// Wake `key` no later than `at`.
    pub fn set(&mut self, key: K, at: Instant) {
        match self.armed.get(&key) {
            Some(t) if *t <= at => {}
            _ => {
                self.armed.insert(key, at);
                self.heap.push(Reverse((at, key)));
            }
        }
    }

    /// Forget `key` (its heap entries turn stale).
    pub fn remove(&mut self, key: K) {
        self.armed.remove(&key);
    }

    /// The earliest deadline (possibly of a stale entry: waking early is
    /// harmless, late is not).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// A key whose armed deadline is at or before `now`, disarmed.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        while let Some(Reverse((t, k))) = self.heap.peek().copied() {
            if t > now {
                return None;
            }
            self.heap.pop();
            if self.armed.get(&k) == Some(&t) {
                self.armed.remove(&k);
                return Some(k);
            }
        }
        None
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(base: Instant, n: u64) -> Instant {
        base + Duration::from_millis(n)
    }

    #[test]
    fn pops_only_what_is_due_in_order() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.set(1u64, ms(t0, 30));
        timers.set(2, ms(t0, 10));
        timers.set(3, ms(t0, 20));
        assert_eq!(timers.next(), Some(ms(t0, 10)));
        assert_eq!(timers.pop_due(ms(t0, 5)), None);
        assert_eq!(timers.pop_due(ms(t0, 25)), Some(2));
        assert_eq!(timers.pop_due(ms(t0, 25)), Some(3));
        assert_eq!(timers.pop_due(ms(t0, 25)), None);
        assert_eq!(timers.pop_due(ms(t0, 30)), Some(1));
    }

    #[test]
    fn moving_earlier_replaces_and_later_keeps_the_earlier() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.set(7u64, ms(t0, 50));
        timers.set(7, ms(t0, 10));
        // The 50 ms entry is stale: one wakeup only.
        assert_eq!(timers.pop_due(ms(t0, 60)), Some(7));
        assert_eq!(timers.pop_due(ms(t0, 60)), None);
        // Later than armed: the earlier stays, the caller re-arms.
        timers.set(7, ms(t0, 70));
        timers.set(7, ms(t0, 90));
        assert_eq!(timers.pop_due(ms(t0, 80)), Some(7));
        assert_eq!(timers.pop_due(ms(t0, 100)), None);
    }

    #[test]
    fn removed_keys_never_fire_and_the_heap_stays_small() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for k in 0..100u64 {
            timers.set(k, ms(t0, k));
            // Many later updates per key add nothing.
            for j in 1..10 {
                timers.set(k, ms(t0, k + j));
            }
        }
        assert_eq!(timers.len(), 100);
        timers.remove(5);
        let mut fired = Vec::new();
        while let Some(k) = timers.pop_due(ms(t0, 1000)) {
            fired.push(k);
        }
        assert_eq!(fired.len(), 99);
        assert!(!fired.contains(&5));
    }
}
