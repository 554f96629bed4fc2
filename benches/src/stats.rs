//! Receive-side accounting: loss from the per-stream sequence numbers in the
//! payload trailer, latency in an HDR histogram, all in *windows* so a run
//! (or a ramp step) measures only its steady part.
//!
//! Loss is exact, not sampled: every stream a peer receives has a
//! [`SeqTracker`]; a packet above the highest sequence seen extends what was
//! expected by the gap, a late one (reordered, or repaired by RTX) fills its
//! hole, a duplicate counts for nothing. Packets before the first one a
//! subscriber got (the SFU starts video at a keyframe) are not expected of
//! it. At the end [`RecvStats::finish`] adds the tail: what the publisher
//! sent after the last packet that arrived.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::payload::{Stamp, StreamId};

/// Sequence numbers remembered behind the highest, for duplicates and late
/// packets.
const WINDOW: u32 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// Highest latency the histograms hold (larger values are clamped).
const MAX_LATENCY_US: u64 = 60_000_000;

pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// What one packet changed in the expected/received counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqOutcome {
    /// A new highest sequence number; `expected` packets were due since the
    /// previous highest (1 when in order, more across a gap).
    Advanced {
        expected: u64,
    },
    /// Below the highest and not seen before: fills a hole.
    Late,
    Duplicate,
}

/// Received-set of one stream as a sliding bitmap behind the highest
/// sequence number.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    highest: Option<u32>,
    /// Bit `i` set: `highest - i` was received.
    seen: [u64; WORDS],
    pub last_at: Option<Instant>,
}

impl Default for SeqTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqTracker {
    pub fn new() -> Self {
        Self {
            highest: None,
            seen: [0; WORDS],
            last_at: None,
        }
    }

    pub fn highest(&self) -> Option<u32> {
        self.highest
    }

    fn bit(&self, back: u32) -> bool {
        self.seen[(back / 64) as usize] & (1 << (back % 64)) != 0
    }

    fn set(&mut self, back: u32) {
        self.seen[(back / 64) as usize] |= 1 << (back % 64);
    }

    /// Shift the bitmap by `n` positions (a new highest `n` above the old).
    fn shift(&mut self, n: u32) {
        if n >= WINDOW {
            self.seen = [0; WORDS];
            return;
        }
        let (words, bits) = ((n / 64) as usize, n % 64);
        for i in (0..WORDS).rev() {
            let src = i.checked_sub(words);
            let hi = src.map_or(0, |s| self.seen[s]);
            let lo = src
                .and_then(|s| s.checked_sub(1))
                .map_or(0, |s| self.seen[s]);
            self.seen[i] = if bits == 0 {
                hi
            } else {
                (hi << bits) | (lo >> (64 - bits))
            };
        }
    }

    pub fn on_seq(&mut self, seq: u32) -> SeqOutcome {
        let Some(high) = self.highest else {
            self.highest = Some(seq);
            self.set(0);
            return SeqOutcome::Advanced { expected: 1 };
        };
        if seq > high {
            let d = seq - high;
            self.shift(d);
            self.set(0);
            self.highest = Some(seq);
            return SeqOutcome::Advanced {
                expected: u64::from(d),
            };
        }
        let back = high - seq;
        if back >= WINDOW {
            // Too old to tell a duplicate from a very late packet; the
            // hole it fills was counted as expected, so count it.
            return SeqOutcome::Late;
        }
        if self.bit(back) {
            SeqOutcome::Duplicate
        } else {
            self.set(back);
            SeqOutcome::Late
        }
    }
}

/// Counters of one measurement window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Distinct stamped packets received.
    pub received: u64,
    /// Packets that should have arrived (sequence span, plus tails at the end).
    pub expected: u64,
    pub duplicates: u64,
    /// RTP payload + header bytes of stamped packets received.
    pub bytes: u64,
    /// Packets without a load-generator trailer (padding probes, foreign media).
    pub unstamped: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.received += o.received;
        self.expected += o.expected;
        self.duplicates += o.duplicates;
        self.bytes += o.bytes;
        self.unstamped += o.unstamped;
    }

    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    /// Fraction of expected packets that never arrived, 0.0..=1.0.
    pub fn loss(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            self.lost() as f64 / self.expected as f64
        }
    }
}

/// One measurement window of one or more peers.
#[derive(Debug, Clone)]
pub struct Window {
    pub counts: Counts,
    pub latency_us: Histogram<u64>,
    /// (peer, track) pairs that received at least one packet in the window.
    pub streams: u64,
    /// Peers that received at least one packet in the window.
    pub receivers: u64,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            counts: Counts::default(),
            latency_us: latency_histogram(),
            streams: 0,
            receivers: 0,
        }
    }
}

impl Window {
    pub fn merge(&mut self, o: &Window) {
        self.counts.add(&o.counts);
        // Same bounds on both sides: cannot fail.
        let _ = self.latency_us.add(&o.latency_us);
        self.streams += o.streams;
        self.receivers += o.receivers;
    }

    pub fn latency_ms(&self, q: f64) -> f64 {
        if self.latency_us.is_empty() {
            return 0.0;
        }
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_latency_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1000.0
    }

    pub fn mean_latency_ms(&self) -> f64 {
        self.latency_us.mean() / 1000.0
    }
}

/// Everything one peer received, for the current window and over its life.
#[derive(Debug)]
pub struct RecvStats {
    trackers: HashMap<StreamId, SeqTracker>,
    window: Window,
    tracks_in_window: Vec<u32>,
    pub joined_at: Instant,
    pub first_media_at: Option<Instant>,
    pub connected_at: Option<Instant>,
    /// Where media came from (the SFU's media address), for finding its process.
    pub remote: Option<std::net::SocketAddr>,
}

impl RecvStats {
    pub fn new(joined_at: Instant) -> Self {
        Self {
            trackers: HashMap::new(),
            window: Window::default(),
            tracks_in_window: Vec::new(),
            joined_at,
            first_media_at: None,
            connected_at: None,
            remote: None,
        }
    }

    /// Account one received packet; `at` is when its datagram arrived.
    pub fn on_packet(&mut self, stamp: Option<Stamp>, wire_bytes: usize, at: Instant) {
        let Some(stamp) = stamp else {
            self.window.counts.unstamped += 1;
            return;
        };
        self.first_media_at.get_or_insert(at);
        let t = self.trackers.entry(stamp.stream).or_default();
        t.last_at = Some(at);
        let c = &mut self.window.counts;
        match t.on_seq(stamp.seq) {
            SeqOutcome::Advanced { expected } => {
                c.expected += expected;
                c.received += 1;
            }
            SeqOutcome::Late => c.received += 1,
            SeqOutcome::Duplicate => {
                c.duplicates += 1;
                return;
            }
        }
        c.bytes += wire_bytes as u64;
        let track = stamp.stream.track();
        if !self.tracks_in_window.contains(&track) {
            self.tracks_in_window.push(track);
        }
        let us = crate::payload::latency(&stamp, at).as_micros() as u64;
        self.window.latency_us.saturating_record(us.max(1));
    }

    /// Distinct packets received so far in the current window.
    pub fn peek_received(&self) -> u64 {
        self.window.counts.received
    }

    /// Close the current window and start a new one.
    pub fn take_window(&mut self) -> Window {
        let mut w = std::mem::take(&mut self.window);
        w.streams = self.tracks_in_window.len() as u64;
        w.receivers = u64::from(w.counts.received > 0);
        self.tracks_in_window.clear();
        w
    }

    /// Add the tails: for each track, the stream it received last (its
    /// current simulcast layer) is expected up to the last sequence number
    /// the publisher sent (`last_sent`). Call once, after the senders
    /// stopped and in-flight packets had time to arrive.
    pub fn finish(&mut self, last_sent: &HashMap<StreamId, u32>) {
        let mut current: HashMap<u32, (StreamId, Instant)> = HashMap::new();
        for (id, t) in &self.trackers {
            if let Some(at) = t.last_at {
                let e = current.entry(id.track()).or_insert((*id, at));
                if at > e.1 {
                    *e = (*id, at);
                }
            }
        }
        for (id, _) in current.values() {
            let (Some(high), Some(&sent)) = (self.trackers[id].highest(), last_sent.get(id)) else {
                continue;
            };
            self.window.counts.expected += u64::from(sent.saturating_sub(high));
        }
    }

    pub fn join_time(&self) -> Option<Duration> {
        self.first_media_at.map(|t| t - self.joined_at)
    }
}

/// Percentiles of a small set of durations (join times), in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(durations: &[Duration]) -> Self {
        if durations.is_empty() {
            return Self::default();
        }
        let mut ms: Vec<f64> = durations.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        // Nearest-rank percentile.
        let at = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Self {
            count: ms.len(),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: ms[ms.len() - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{micros_at, StreamId};

    fn stamp(stream: StreamId, seq: u32, sent: Instant) -> Option<Stamp> {
        Some(Stamp {
            stream,
            seq,
            sent_us: micros_at(sent),
        })
    }

    #[test]
    fn in_order_gap_late_and_duplicate() {
        let mut t = SeqTracker::new();
        assert_eq!(t.on_seq(10), SeqOutcome::Advanced { expected: 1 });
        assert_eq!(t.on_seq(11), SeqOutcome::Advanced { expected: 1 });
        assert_eq!(t.on_seq(15), SeqOutcome::Advanced { expected: 4 });
        assert_eq!(t.on_seq(13), SeqOutcome::Late);
        assert_eq!(t.on_seq(13), SeqOutcome::Duplicate);
        assert_eq!(t.on_seq(15), SeqOutcome::Duplicate);
        assert_eq!(t.on_seq(11), SeqOutcome::Duplicate);
        // Far beyond the window: the bitmap resets.
        assert_eq!(t.on_seq(5000), SeqOutcome::Advanced { expected: 4985 });
        assert_eq!(t.on_seq(4999), SeqOutcome::Late);
        assert_eq!(t.on_seq(5000 - WINDOW - 10), SeqOutcome::Late);
    }

    #[test]
    fn bitmap_shifts_across_word_boundaries() {
        let mut t = SeqTracker::new();
        t.on_seq(0);
        t.on_seq(70); // 0 is now 70 back: second word.
        assert_eq!(t.on_seq(0), SeqOutcome::Duplicate);
        assert_eq!(t.on_seq(1), SeqOutcome::Late);
        t.on_seq(200);
        assert_eq!(t.on_seq(70), SeqOutcome::Duplicate);
        assert_eq!(t.on_seq(1), SeqOutcome::Duplicate);
        assert_eq!(t.on_seq(2), SeqOutcome::Late);
    }

    #[test]
    fn loss_and_latency_per_window_with_tail() {
        let t0 = Instant::now();
        let mut s = RecvStats::new(t0);
        let a = StreamId::audio(0);
        // 0..10 with 3 and 7 missing, 5 arriving twice; 2 ms latency each.
        for seq in [0, 1, 2, 4, 5, 5, 6, 8, 9] {
            let sent = t0 + Duration::from_millis(20 * seq as u64);
            s.on_packet(stamp(a, seq, sent), 100, sent + Duration::from_millis(2));
        }
        s.on_packet(None, 50, t0);
        let w = s.take_window();
        assert_eq!(w.counts.expected, 10);
        assert_eq!(w.counts.received, 8);
        assert_eq!(w.counts.duplicates, 1);
        assert_eq!(w.counts.unstamped, 1);
        assert_eq!(w.counts.bytes, 800);
        assert_eq!(w.streams, 1);
        assert!((w.counts.loss() - 0.2).abs() < 1e-9);
        let p50 = w.latency_ms(0.5);
        assert!((1.99..2.01).contains(&p50), "{p50}");
        assert_eq!(s.join_time(), Some(Duration::from_millis(2)));

        // The next window starts empty; the late 7 fills an old hole.
        let t1 = t0 + Duration::from_secs(1);
        s.on_packet(stamp(a, 7, t1), 100, t1);
        s.on_packet(stamp(a, 10, t1), 100, t1);
        // The publisher sent up to 14: 11..=14 never arrived.
        s.finish(&HashMap::from([(a, 14)]));
        let w = s.take_window();
        assert_eq!(w.counts.received, 2);
        assert_eq!(w.counts.expected, 1 + 4);
    }

    #[test]
    fn tail_counts_only_the_current_simulcast_layer() {
        let t0 = Instant::now();
        let mut s = RecvStats::new(t0);
        let (low, high) = (StreamId::video(0, 0), StreamId::video(0, 2));
        for seq in 0..5 {
            s.on_packet(stamp(low, seq, t0), 1000, t0);
        }
        let t1 = t0 + Duration::from_millis(100);
        for seq in 100..105 {
            s.on_packet(stamp(high, seq, t1), 1000, t1);
        }
        s.take_window();
        // The low layer went on to 50 at the publisher but this subscriber
        // had switched away: not lost. The high layer ended at 106.
        s.finish(&HashMap::from([(low, 50), (high, 106)]));
        let w = s.take_window();
        assert_eq!(w.counts.expected, 2);
    }

    #[test]
    fn windows_merge_and_percentiles_rank() {
        let mut a = Window::default();
        a.counts.expected = 10;
        a.counts.received = 9;
        a.latency_us.record(1000).unwrap();
        let mut b = Window::default();
        b.counts.expected = 10;
        b.counts.received = 10;
        b.latency_us.record(3000).unwrap();
        a.merge(&b);
        assert!((a.counts.loss() - 0.05).abs() < 1e-9);
        assert!((a.max_latency_ms() - 3.0).abs() < 0.01);
        let p = Percentiles::of(&(1..=100).map(Duration::from_millis).collect::<Vec<_>>());
        assert_eq!((p.count, p.p50, p.p99, p.max), (100, 50.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(&[]).count, 0);
    }
}
