//! One subscriber's view of one published track.

use std::time::Instant;

use convene_proto::sfu::VideoQuality;
use str0m::media::Mid;

use super::forwarder::Forwarder;
use super::ParticipantKey;

/// A subscription exists as soon as it is requested, but only forwards once
/// the subscriber's m-line for it is negotiated (`out_mid` is set).
#[derive(Debug)]
pub struct Subscription {
    pub subscriber: ParticipantKey,
    /// The subscriber-side m-line carrying this track.
    pub out_mid: Option<Mid>,
    pub forwarder: Forwarder,
    pub created_at: Instant,
}

impl Subscription {
    pub fn new(subscriber: ParticipantKey, max_quality: VideoQuality, now: Instant) -> Self {
        Self {
            subscriber,
            out_mid: None,
            forwarder: Forwarder::new(max_quality),
            created_at: now,
        }
    }
}
