//! One participant's SDP negotiation as the SFU drives it: subscriptions
//! waiting for our next offer, the offer that is out, and lines the client
//! accepted before its session connected.
//!
//! The SFU offers; the client answers. A client offer while ours is out
//! (glare) wins, and what ours carried goes into the next one.

use str0m::change::SdpPendingOffer;
use str0m::media::Mid;

use crate::core::TrackKey;

#[derive(Default)]
pub struct Negotiation {
    /// Our offer awaiting the client's answer.
    pending: Option<SdpPendingOffer>,
    /// Subscriptions in the pending offer: track -> our new m-line.
    offered: Vec<(TrackKey, Mid)>,
    /// Negotiated subscriptions waiting for DTLS: forwarding (and its first
    /// keyframe) must not start before the subscriber can receive it.
    deferred: Vec<(TrackKey, Mid)>,
    /// Subscriptions waiting for the next offer.
    to_add: Vec<TrackKey>,
    /// Our m-lines to stop in the next offer.
    to_stop: Vec<Mid>,
}

/// What the next offer must carry.
pub struct OfferChanges {
    pub add: Vec<TrackKey>,
    pub stop: Vec<Mid>,
}

impl Negotiation {
    /// A new subscription needs an m-line.
    pub fn add(&mut self, track: TrackKey) {
        self.to_add.push(track);
    }

    /// A subscription went away before its m-line was offered.
    pub fn cancel_add(&mut self, track: TrackKey) {
        self.to_add.retain(|t| *t != track);
    }

    /// One of our m-lines must stop.
    pub fn stop(&mut self, mid: Mid) {
        self.to_stop.push(mid);
    }

    /// True when an offer of ours is due. Not before the peer is connected:
    /// a client still starting ICE/DTLS from its own first offer may restart
    /// its ICE agent when a new remote offer lands mid-start (webrtc-rs does,
    /// losing the remote candidates), and nothing can flow to it before then.
    /// The worker's periodic sweep makes the offer once it connects.
    pub fn wants_offer(&self, connected: bool) -> bool {
        connected && self.pending.is_none() && (!self.to_add.is_empty() || !self.to_stop.is_empty())
    }

    /// The changes for the offer being built (taken).
    pub fn take_changes(&mut self) -> OfferChanges {
        OfferChanges {
            add: std::mem::take(&mut self.to_add),
            stop: std::mem::take(&mut self.to_stop),
        }
    }

    /// Our offer is out, adding `lines`.
    pub fn offered(&mut self, pending: SdpPendingOffer, lines: Vec<(TrackKey, Mid)>) {
        self.pending = Some(pending);
        self.offered = lines;
    }

    /// The client answered: our pending offer and the lines it added.
    pub fn answered(&mut self) -> Option<(SdpPendingOffer, Vec<(TrackKey, Mid)>)> {
        let pending = self.pending.take()?;
        Some((pending, std::mem::take(&mut self.offered)))
    }

    /// The client offered while ours was out: ours is dropped, and its
    /// subscriptions go into the next one.
    pub fn glare(&mut self) {
        if self.pending.take().is_some() {
            let back = self.offered.drain(..).map(|(tk, _)| tk);
            self.to_add.extend(back);
        }
    }

    /// Negotiated lines to start once the peer connects.
    pub fn defer(&mut self, lines: Vec<(TrackKey, Mid)>) {
        self.deferred.extend(lines);
    }

    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    pub fn take_deferred(&mut self) -> Vec<(TrackKey, Mid)> {
        std::mem::take(&mut self.deferred)
    }
}
