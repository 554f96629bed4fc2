//! Active speaker detection from the RFC 6464 audio level header extension.
//!
//! Publishers already measure their level and put it in every audio packet,
//! so the SFU ranks speakers without decoding audio. Levels are smoothed
//! (a single loud packet, a cough or a click, must not steal the spotlight)
//! and the ranking is published at most once per interval so clients are
//! not flooded with UI updates.

use std::time::{Duration, Instant};

/// Levels quieter than this (in -dBov) count as silence.
const SILENCE_DBOV: f32 = 70.0;
/// Weight of the newest sample in the exponential moving average.
const SMOOTHING: f32 = 0.15;
/// A speaker silent for this long drops out of the ranking.
const HOLD: Duration = Duration::from_millis(1000);
/// Smoothed loudness below this is not speech.
const MIN_LEVEL: f32 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeakerLevel<K> {
    pub key: K,
    /// 0.0 = silence, 1.0 = 0 dBov.
    pub level: f32,
}

#[derive(Debug)]
struct Entry<K> {
    key: K,
    smoothed: f32,
    last_voice: Option<Instant>,
}

#[derive(Debug)]
pub struct SpeakerDetector<K> {
    interval: Duration,
    entries: Vec<Entry<K>>,
    last_emit: Option<Instant>,
    last_ranking: Vec<K>,
    scratch: Vec<SpeakerLevel<K>>,
}

impl<K: Copy + PartialEq> SpeakerDetector<K> {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            entries: Vec::new(),
            last_emit: None,
            last_ranking: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// One audio packet's level: `dbov` as carried in RFC 6464 (0 loudest,
    /// 127 silence; str0m gives it negated, either sign is accepted).
    pub fn observe(&mut self, key: K, dbov: i8, voice: Option<bool>, now: Instant) {
        let dbov = (dbov as i16).unsigned_abs().min(127) as f32;
        let loud = if voice == Some(false) || dbov >= SILENCE_DBOV {
            0.0
        } else {
            1.0 - dbov / SILENCE_DBOV
        };
        let e = match self.entries.iter_mut().position(|e| e.key == key) {
            Some(i) => &mut self.entries[i],
            None => {
                self.entries.push(Entry {
                    key,
                    smoothed: 0.0,
                    last_voice: None,
                });
                self.entries.last_mut().expect("just pushed")
            }
        };
        e.smoothed += SMOOTHING * (loud - e.smoothed);
        if loud > 0.0 {
            e.last_voice = Some(now);
        }
    }

    pub fn remove(&mut self, key: K) {
        self.entries.retain(|e| e.key != key);
    }

    /// Returns the new ranking (loudest first) when it changed and the
    /// interval since the last emitted ranking has passed.
    pub fn poll(&mut self, now: Instant) -> Option<&[SpeakerLevel<K>]> {
        if let Some(t) = self.last_emit {
            if now.saturating_duration_since(t) < self.interval {
                return None;
            }
        }
        self.scratch.clear();
        for e in &self.entries {
            let recent = e
                .last_voice
                .is_some_and(|t| now.saturating_duration_since(t) < HOLD);
            if recent && e.smoothed >= MIN_LEVEL {
                self.scratch.push(SpeakerLevel {
                    key: e.key,
                    level: e.smoothed,
                });
            }
        }
        self.scratch.sort_by(|a, b| {
            b.level
                .partial_cmp(&a.level)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let same = self.scratch.len() == self.last_ranking.len()
            && self
                .scratch
                .iter()
                .zip(&self.last_ranking)
                .all(|(a, b)| a.key == *b);
        if same {
            return None;
        }
        self.last_emit = Some(now);
        self.last_ranking.clear();
        self.last_ranking.extend(self.scratch.iter().map(|s| s.key));
        Some(&self.scratch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed 50 packets/s (20 ms audio frames) for `ms` milliseconds.
    fn talk(
        d: &mut SpeakerDetector<u32>,
        t0: Instant,
        from_ms: u64,
        ms: u64,
        levels: &[(u32, i8)],
    ) {
        for t in (from_ms..from_ms + ms).step_by(20) {
            for &(k, l) in levels {
                d.observe(k, l, None, t0 + Duration::from_millis(t));
            }
        }
    }

    #[test]
    fn loudest_speaker_ranks_first() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::new(Duration::from_millis(300));
        talk(&mut d, t0, 0, 500, &[(1, -20), (2, -50), (3, -127)]);
        let r = d.poll(t0 + Duration::from_millis(500)).unwrap();
        let keys: Vec<_> = r.iter().map(|s| s.key).collect();
        assert_eq!(keys, vec![1, 2], "silent participant 3 is not a speaker");
    }

    #[test]
    fn a_single_loud_packet_does_not_take_over() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::new(Duration::from_millis(300));
        talk(&mut d, t0, 0, 1000, &[(1, -30), (2, -127)]);
        assert!(d.poll(t0 + Duration::from_millis(1000)).is_some());
        d.observe(2, 0, None, t0 + Duration::from_millis(1010));
        talk(&mut d, t0, 1020, 300, &[(1, -30), (2, -127)]);
        let r = d.poll(t0 + Duration::from_millis(1400));
        // Either unchanged (None) or still led by 1.
        if let Some(r) = r {
            assert_eq!(r[0].key, 1);
        }
    }

    #[test]
    fn events_at_most_once_per_interval() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::new(Duration::from_millis(300));
        let mut emitted = 0;
        // Speakers alternate every 100 ms for 3 s; poll every 10 ms.
        for step in 0..300u64 {
            let now = t0 + Duration::from_millis(step * 10);
            let speaker = if (step / 10) % 2 == 0 { 1 } else { 2 };
            d.observe(speaker, -10, None, now);
            if d.poll(now).is_some() {
                emitted += 1;
            }
        }
        assert!(emitted <= 10 + 1, "emitted {emitted} in 3 s");
        assert!(emitted >= 1);
    }

    #[test]
    fn speaker_drops_out_after_silence() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::new(Duration::from_millis(300));
        talk(&mut d, t0, 0, 500, &[(1, -20)]);
        assert_eq!(d.poll(t0 + Duration::from_millis(500)).unwrap().len(), 1);
        talk(&mut d, t0, 500, 2000, &[(1, -127)]);
        assert_eq!(d.poll(t0 + Duration::from_millis(2500)).unwrap().len(), 0);
    }
}
