//! The forwarding core's view of a participant: who it is, what it
//! publishes, what its downlink can take.

use super::TrackKey;

#[derive(Debug)]
pub struct Participant {
    pub id: String,
    pub identity: String,
    pub tracks: Vec<TrackKey>,
    /// Latest egress estimate from the subscriber's BWE (TWCC).
    pub bwe_bps: Option<u64>,
    /// Video subscriptions sharing `bwe_bps`.
    pub video_subscriptions: usize,
}

impl Participant {
    pub fn new(id: String, identity: String) -> Self {
        Self {
            id,
            identity,
            tracks: Vec::new(),
            bwe_bps: None,
            video_subscriptions: 0,
        }
    }

    /// This participant's budget for one video subscription.
    pub fn budget_per_video(&self) -> Option<u64> {
        self.bwe_bps
            .map(|b| b / self.video_subscriptions.max(1) as u64)
    }
}
