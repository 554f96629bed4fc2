//! The forwarding core's view of a participant: who it is, what it
//! publishes, what its downlink can take.

use super::TrackKey;

#[derive(Debug)]
pub struct Participant {
    pub id: String,
    pub identity: String,
    pub tracks: Vec<TrackKey>,
    /// Latest egress estimate from the subscriber's BWE (TWCC), shared
    /// over its subscriptions by the allocator.
    pub bwe_bps: Option<u64>,
    /// Hosted by another worker (a room across workers): its tracks arrive
    /// relayed, and the worker hosting it speaks for it (track events).
    pub remote: bool,
}

impl Participant {
    pub fn new(id: String, identity: String) -> Self {
        Self {
            id,
            identity,
            tracks: Vec::new(),
            bwe_bps: None,
            remote: false,
        }
    }
}
