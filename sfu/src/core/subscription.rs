//! One subscriber's view of one published track.

use std::time::Instant;

use convene_proto::sfu::VideoQuality;
use str0m::media::{Mid, Pt};

use super::layer::LayerSelector;
use super::munger::RtpMunger;
use super::ParticipantKey;

/// A subscription exists as soon as it is requested, but only forwards once
/// the subscriber's m-line for it is negotiated (`out_mid` is set).
#[derive(Debug)]
pub struct Subscription {
    pub subscriber: ParticipantKey,
    /// The subscriber-side m-line carrying this track.
    pub out_mid: Option<Mid>,
    /// Publisher PT -> subscriber PT. Publishers and subscribers negotiate
    /// payload types independently, so the numbers differ in general.
    pub pt_map: Vec<(Pt, Pt)>,
    pub selector: LayerSelector,
    pub munger: RtpMunger,
    /// Quality last reported in a LayerChanged event.
    pub reported: Option<VideoQuality>,
    /// Set on mute/unmute or layer loss: the next forwarded packet starts a
    /// new segment for the munger so numbering stays gap-free.
    pub resync: bool,
    pub created_at: Instant,
}

impl Subscription {
    pub fn new(subscriber: ParticipantKey, max_quality: VideoQuality, now: Instant) -> Self {
        Self {
            subscriber,
            out_mid: None,
            pt_map: Vec::new(),
            selector: LayerSelector::new(max_quality),
            munger: RtpMunger::new(),
            reported: None,
            resync: false,
            created_at: now,
        }
    }

    pub fn map_pt(&self, pt: Pt) -> Option<Pt> {
        self.pt_map
            .iter()
            .find_map(|(i, o)| (*i == pt).then_some(*o))
    }
}
