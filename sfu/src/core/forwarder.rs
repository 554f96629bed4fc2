//! One subscriber's forwarding of one track: which packets go (the layer
//! selector), with which payload type, renumbered how (the munger).
//!
//! The room parses a packet once and hands every subscription's forwarder
//! the same [`LayerPacket`]; each decides for itself. LiveKit's
//! `Forwarder` does the same job per down track.

use std::time::Instant;

use convene_proto::sfu::VideoQuality;
use str0m::media::Pt;

use super::layer::{Decision, LayerSelector};
use super::munger::RtpMunger;

/// What every forwarder of a track needs to know about one packet.
#[derive(Debug, Clone, Copy)]
pub struct LayerPacket {
    /// Index of the packet's layer in the track (0 for a single encoding).
    pub layer: usize,
    pub quality: VideoQuality,
    /// The layer's source id: a change tells the munger a new stream starts.
    pub source: u32,
    pub video: bool,
    /// First packet of a keyframe (video only).
    pub keyframe: bool,
    pub seq: u64,
    pub timestamp: u32,
    pub clock_rate: u32,
    pub now: Instant,
}

/// A packet to send, renumbered for this subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    pub seq: u64,
    pub timestamp: u32,
    /// The subscriber now receives this quality and has not been told.
    pub switched_to: Option<VideoQuality>,
}

#[derive(Debug)]
pub struct Forwarder {
    /// Publisher PT -> subscriber PT. Publishers and subscribers negotiate
    /// payload types independently, so the numbers differ in general.
    pub pt_map: Vec<(Pt, Pt)>,
    pub selector: LayerSelector,
    munger: RtpMunger,
    /// Quality last reported in a LayerChanged event.
    reported: Option<VideoQuality>,
    /// Set on mute/unmute or layer loss: the next forwarded packet starts a
    /// new segment for the munger so numbering stays gap-free.
    resync: bool,
    /// Since when the allocator has found no room for even the lowest
    /// layer (video pauses after `CoreConfig::video_pause_after`).
    pub starved_since: Option<Instant>,
    /// When the allocator last moved this subscription to a lower layer.
    pub downgraded_at: Option<Instant>,
}

impl Forwarder {
    pub fn new(max_quality: VideoQuality) -> Self {
        Self {
            pt_map: Vec::new(),
            selector: LayerSelector::new(max_quality),
            munger: RtpMunger::new(),
            reported: None,
            resync: false,
            starved_since: None,
            downgraded_at: None,
        }
    }

    pub fn map_pt(&self, pt: Pt) -> Option<Pt> {
        self.pt_map
            .iter()
            .find_map(|(i, o)| (*i == pt).then_some(*o))
    }

    /// The next packet starts a new segment (after mute, unmute or a lost
    /// layer), numbered on from the last one sent.
    pub fn resync(&mut self) {
        self.resync = true;
    }

    /// Whether `p` goes to this subscriber, and as what.
    pub fn forward(&mut self, p: &LayerPacket) -> Option<Forwarded> {
        let mut switched_to = None;
        if p.video {
            match self.selector.on_packet(p.layer, p.keyframe) {
                Decision::Drop => return None,
                Decision::Forward => {}
                Decision::SwitchAndForward => {
                    if self.reported != Some(p.quality) {
                        self.reported = Some(p.quality);
                        switched_to = Some(p.quality);
                    }
                }
            }
        }
        if self.resync {
            self.munger.resync();
            self.resync = false;
        }
        let m = self
            .munger
            .process(p.source, p.seq, p.timestamp, p.clock_rate, p.now)?;
        Some(Forwarded {
            seq: m.seq,
            timestamp: m.timestamp,
            switched_to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(layer: usize, seq: u64, keyframe: bool, now: Instant) -> LayerPacket {
        LayerPacket {
            layer,
            quality: [VideoQuality::Low, VideoQuality::High][layer],
            source: layer as u32 + 1,
            video: true,
            keyframe,
            seq,
            timestamp: seq as u32 * 3000,
            clock_rate: 90_000,
            now,
        }
    }

    #[test]
    fn starts_at_a_keyframe_reports_the_switch_once_and_numbers_without_gaps() {
        let now = Instant::now();
        let mut f = Forwarder::new(VideoQuality::High);
        f.selector.set_target(Some(1));
        assert_eq!(
            f.forward(&packet(1, 10, false, now)),
            None,
            "no keyframe yet"
        );
        let first = f.forward(&packet(1, 11, true, now)).expect("keyframe");
        assert_eq!(first.switched_to, Some(VideoQuality::High));
        let next = f.forward(&packet(1, 12, false, now)).expect("delta");
        assert_eq!(next.switched_to, None, "told once");
        assert_eq!(next.seq, first.seq + 1);
        assert_eq!(f.forward(&packet(0, 500, true, now)), None, "other layer");
    }

    #[test]
    fn a_resync_continues_the_numbering_across_a_gap() {
        let now = Instant::now();
        let mut f = Forwarder::new(VideoQuality::High);
        f.selector.set_target(Some(1));
        let a = f.forward(&packet(1, 100, true, now)).expect("keyframe");
        f.resync();
        let b = f
            .forward(&packet(1, 900, false, now))
            .expect("after resync");
        assert_eq!(b.seq, a.seq + 1, "no gap for the receiver to NACK");
    }

    #[test]
    fn maps_payload_types() {
        let mut f = Forwarder::new(VideoQuality::High);
        f.pt_map = vec![(Pt::new_with_value(96), Pt::new_with_value(100))];
        assert_eq!(
            f.map_pt(Pt::new_with_value(96)),
            Some(Pt::new_with_value(100))
        );
        assert_eq!(f.map_pt(Pt::new_with_value(97)), None);
    }
}
