//! Sequence number and timestamp rewriting for one subscription.
//!
//! A subscriber sees one outgoing RTP stream per subscribed track, while the
//! SFU feeds it from whichever simulcast layer is selected. Each layer has its
//! own SSRC, sequence space and timestamp base, so without rewriting the
//! subscriber's jitter buffer would see jumps (and drop or stall) on every
//! switch. The SSRC is the subscriber's own send stream (str0m owns it), so
//! only sequence numbers and timestamps are rewritten here.

use std::time::Instant;

/// Output numbering for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Munged {
    /// Extended (64-bit) sequence number; the low 16 bits go on the wire.
    pub seq: u64,
    pub timestamp: u32,
}

/// A source id no caller uses, so the next packet is seen as a switch.
const RESYNC: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub struct RtpMunger {
    state: Option<State>,
}

#[derive(Debug, Clone)]
struct State {
    /// Source (layer) currently mapped.
    source: u32,
    /// out_seq = in_seq + seq_offset (wrapping in u64 space).
    seq_offset: u64,
    /// out_ts = in_ts + ts_offset (wrapping in u32 space).
    ts_offset: u32,
    /// Packets of the current source below this input seq predate the
    /// switch and must not be forwarded: their output numbers would collide
    /// with packets already sent from the previous source.
    first_in_seq: u64,
    highest_out_seq: u64,
    last_out_ts: u32,
    last_out_at: Instant,
}

impl Default for RtpMunger {
    fn default() -> Self {
        Self::new()
    }
}

impl RtpMunger {
    pub fn new() -> Self {
        Self { state: None }
    }

    /// The source (layer id) currently being forwarded, if any.
    pub fn source(&self) -> Option<u32> {
        self.state.as_ref().map(|s| s.source)
    }

    /// Make the next packet start a new segment, as after a layer switch.
    ///
    /// Used after a pause in forwarding (mute, lost layer): the packets the
    /// SFU skipped must not show up as a sequence gap, or the subscriber
    /// would NACK packets that will never come.
    pub fn resync(&mut self) {
        if let Some(s) = &mut self.state {
            s.source = RESYNC;
        }
    }

    /// Rewrite one packet.
    ///
    /// `source` identifies the input stream (e.g. the layer index); a change
    /// of source is a switch, which the caller only makes at a keyframe.
    /// `in_seq` is the extended input sequence number, `clock_rate` the RTP
    /// clock (used to advance time across a switch). Returns `None` for a
    /// packet that must be dropped (older than the switch point).
    pub fn process(
        &mut self,
        source: u32,
        in_seq: u64,
        in_ts: u32,
        clock_rate: u32,
        now: Instant,
    ) -> Option<Munged> {
        let state = match &mut self.state {
            None => {
                // Start below 2^15 so the first extended output seq has ROC 0
                // (a receiver cannot learn a non-zero SRTP ROC in-band) and a
                // late reordered packet cannot underflow.
                let start = (in_seq & 0x7fff) + 1;
                self.state = Some(State {
                    source,
                    seq_offset: start.wrapping_sub(in_seq),
                    ts_offset: 0,
                    first_in_seq: in_seq,
                    highest_out_seq: start,
                    last_out_ts: in_ts,
                    last_out_at: now,
                });
                return Some(Munged {
                    seq: start,
                    timestamp: in_ts,
                });
            }
            Some(s) => s,
        };

        if source != state.source {
            let next_seq = state.highest_out_seq + 1;
            // Advance the timestamp by the wall time since the last packet so
            // playout stays smooth; at least one tick so it is a new frame.
            let elapsed = now.saturating_duration_since(state.last_out_at);
            let ticks = (elapsed.as_secs_f64() * clock_rate as f64) as u64;
            let ticks = ticks.clamp(1, u32::MAX as u64) as u32;
            let next_ts = state.last_out_ts.wrapping_add(ticks);
            state.source = source;
            state.seq_offset = next_seq.wrapping_sub(in_seq);
            state.ts_offset = next_ts.wrapping_sub(in_ts);
            state.first_in_seq = in_seq;
            state.highest_out_seq = next_seq;
            state.last_out_ts = next_ts;
            state.last_out_at = now;
            return Some(Munged {
                seq: next_seq,
                timestamp: next_ts,
            });
        }

        if in_seq < state.first_in_seq {
            return None;
        }
        let seq = in_seq.wrapping_add(state.seq_offset);
        let timestamp = in_ts.wrapping_add(state.ts_offset);
        if seq > state.highest_out_seq {
            state.highest_out_seq = seq;
            state.last_out_ts = timestamp;
            state.last_out_at = now;
        }
        Some(Munged { seq, timestamp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn passes_through_a_single_source_continuously() {
        let t0 = Instant::now();
        let mut m = RtpMunger::new();
        let first = m.process(0, 1000, 5000, 90_000, t0).unwrap();
        for i in 1..100u64 {
            let out = m
                .process(0, 1000 + i, 5000 + i as u32 * 3000, 90_000, t0)
                .unwrap();
            assert_eq!(out.seq, first.seq + i);
            assert_eq!(out.timestamp, 5000 + i as u32 * 3000);
        }
    }

    #[test]
    fn first_output_has_rollover_counter_zero() {
        let mut m = RtpMunger::new();
        let out = m
            .process(0, 3 * 65536 + 65000, 1, 48_000, Instant::now())
            .unwrap();
        assert!(out.seq < 65536);
    }

    #[test]
    fn wraps_sequence_and_timestamp() {
        let t0 = Instant::now();
        let mut m = RtpMunger::new();
        // Input extended seq crosses 65535 -> 65536 (str0m extends it).
        let mut in_seq = 65530u64;
        let mut in_ts = u32::MAX - 3000 * 3;
        let first = m.process(0, in_seq, in_ts, 90_000, t0).unwrap();
        let mut prev = first;
        for _ in 0..10 {
            in_seq += 1;
            in_ts = in_ts.wrapping_add(3000);
            let out = m.process(0, in_seq, in_ts, 90_000, t0).unwrap();
            assert_eq!(out.seq, prev.seq + 1);
            assert_eq!(out.timestamp, prev.timestamp.wrapping_add(3000));
            prev = out;
        }
        // The output timestamp wrapped through zero.
        assert!(prev.timestamp < first.timestamp);
        // And the wire seq wraps when the extended output crosses 2^16.
        let mut m = RtpMunger::new();
        let start = m.process(0, 32767, 0, 90_000, t0).unwrap();
        assert_eq!(start.seq, 32768);
        let mut last = start;
        for i in 1..=40_000u64 {
            last = m.process(0, 32767 + i, 0, 90_000, t0).unwrap();
        }
        assert_eq!(last.seq, 32768 + 40_000);
        assert_eq!(last.seq as u16, ((32768u64 + 40_000) % 65536) as u16);
    }

    #[test]
    fn layer_switch_keeps_numbering_continuous() {
        let t0 = Instant::now();
        let mut m = RtpMunger::new();
        // Layer 0: seq 100.., ts 1_000_000.., 30 fps.
        let mut last = m.process(0, 100, 1_000_000, 90_000, t0).unwrap();
        for i in 1..10u64 {
            last = m
                .process(
                    0,
                    100 + i,
                    1_000_000 + i as u32 * 3000,
                    90_000,
                    t0 + Duration::from_millis(33 * i),
                )
                .unwrap();
        }
        // Switch to layer 2 with an unrelated seq/ts base, 33 ms later.
        let at = t0 + Duration::from_millis(33 * 10);
        let sw = m.process(2, 50_000, 7, 90_000, at).unwrap();
        assert_eq!(sw.seq, last.seq + 1);
        let dt = sw.timestamp.wrapping_sub(last.timestamp);
        assert!((2900..=3100).contains(&dt), "timestamp advanced by {dt}");
        // Following packets of layer 2 follow on.
        let next = m.process(2, 50_001, 3007, 90_000, at).unwrap();
        assert_eq!(next.seq, sw.seq + 1);
        assert_eq!(next.timestamp, sw.timestamp.wrapping_add(3000));
        // A late packet of layer 2 from before the switch is dropped, not
        // mapped onto numbers already used by layer 0.
        assert_eq!(m.process(2, 49_999, 0, 90_000, at), None);
        assert_eq!(m.source(), Some(2));
    }

    #[test]
    fn resync_hides_skipped_packets() {
        let t0 = Instant::now();
        let mut m = RtpMunger::new();
        let a = m.process(0, 10, 0, 48_000, t0).unwrap();
        m.resync();
        // 50 packets (1 s) were skipped while muted.
        let b = m
            .process(0, 61, 48_000, 48_000, t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(b.seq, a.seq + 1);
        assert!(b.timestamp.wrapping_sub(a.timestamp) >= 47_000);
    }

    #[test]
    fn reordered_packet_on_same_layer_keeps_its_number() {
        let t0 = Instant::now();
        let mut m = RtpMunger::new();
        let a = m.process(0, 10, 0, 48_000, t0).unwrap();
        let c = m.process(0, 12, 1920, 48_000, t0).unwrap();
        let b = m.process(0, 11, 960, 48_000, t0).unwrap();
        assert_eq!(b.seq, a.seq + 1);
        assert_eq!(c.seq, a.seq + 2);
        // Switching later continues after the highest number, not the latest.
        let d = m.process(1, 500, 0, 48_000, t0).unwrap();
        assert_eq!(d.seq, c.seq + 1);
    }
}
