//! `SfuHandle`: the control API the signaling service calls.
//!
//! Requests are routed to the worker owning the room (a stable hash of the
//! room id, so no lookup table and no lock) and answered over a oneshot.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::mpsc::TrySendError;
use std::sync::Arc;
use std::time::Duration;

use convene_proto::sfu::{
    Grants, JoinRequest, SetMuteRequest, SfuEvent, SubscribeRequest, TrackId, UnsubscribeRequest,
    VideoQuality,
};
use tokio::sync::{broadcast, oneshot};

use crate::error::SfuError;
use crate::shard::{Command, Mailbox, Reply, ShardMsg};

#[derive(Clone)]
pub struct SfuHandle {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Mailbox>,
    events: broadcast::Sender<SfuEvent>,
}

/// Queue-full retries before a request is refused: the worker queue is
/// shared with media, and control must not be lost to a burst.
const SEND_RETRIES: u32 = 200;

impl SfuHandle {
    pub(crate) fn new(shards: Vec<Mailbox>, events: broadcast::Sender<SfuEvent>) -> Self {
        Self {
            inner: Arc::new(Inner { shards, events }),
        }
    }

    /// A new receiver of all SFU events. Slow receivers lose the oldest
    /// events (`RecvError::Lagged`) rather than stalling media workers.
    pub fn events(&self) -> broadcast::Receiver<SfuEvent> {
        self.inner.events.subscribe()
    }

    fn shard_for(&self, room_id: &str) -> &Mailbox {
        let mut h = DefaultHasher::new();
        room_id.hash(&mut h);
        let i = (h.finish() % self.inner.shards.len() as u64) as usize;
        &self.inner.shards[i]
    }

    async fn call<T>(
        &self,
        room_id: &str,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, SfuError> {
        let (tx, rx) = oneshot::channel();
        let mut msg = ShardMsg::Command(Box::new(make(tx)));
        let shard = self.shard_for(room_id);
        let mut tries = 0;
        loop {
            match shard.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if tries < SEND_RETRIES => {
                    msg = m;
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(_) => return Err(SfuError::Unavailable),
            }
        }
        rx.await.map_err(|_| SfuError::Unavailable)?
    }

    /// Add a participant to a room (created on first join) with its offer;
    /// returns the SDP answer.
    pub async fn join(
        &self,
        room_id: &str,
        participant_id: &str,
        identity: &str,
        offer_sdp: &str,
        grants: Grants,
    ) -> Result<String, SfuError> {
        let req = JoinRequest {
            room_id: room_id.to_string(),
            participant_id: participant_id.to_string(),
            identity: identity.to_string(),
            offer_sdp: offer_sdp.to_string(),
            grants,
        };
        self.call(room_id, |r| Command::Join(req, r)).await
    }

    /// The participant's answer to a `RenegotiationOffer`.
    pub async fn handle_answer(
        &self,
        room_id: &str,
        participant_id: &str,
        answer_sdp: &str,
    ) -> Result<(), SfuError> {
        let (room, participant, answer_sdp) = (
            room_id.to_string(),
            participant_id.to_string(),
            answer_sdp.to_string(),
        );
        self.call(room_id, |reply| Command::Answer {
            room,
            participant,
            answer_sdp,
            reply,
        })
        .await
    }

    /// A client-initiated renegotiation (e.g. it publishes another track);
    /// returns the SDP answer. A pending SFU offer is withdrawn and redone.
    pub async fn handle_offer(
        &self,
        room_id: &str,
        participant_id: &str,
        offer_sdp: &str,
    ) -> Result<String, SfuError> {
        let (room, participant, offer_sdp) = (
            room_id.to_string(),
            participant_id.to_string(),
            offer_sdp.to_string(),
        );
        self.call(room_id, |reply| Command::Offer {
            room,
            participant,
            offer_sdp,
            reply,
        })
        .await
    }

    /// Subscribe to tracks (or change the quality cap of existing
    /// subscriptions). New subscriptions produce a `RenegotiationOffer`.
    pub async fn subscribe(
        &self,
        room_id: &str,
        participant_id: &str,
        track_ids: &[TrackId],
        max_quality: VideoQuality,
    ) -> Result<(), SfuError> {
        let req = SubscribeRequest {
            room_id: room_id.to_string(),
            participant_id: participant_id.to_string(),
            track_ids: track_ids.to_vec(),
            max_quality,
        };
        self.call(room_id, |r| Command::Subscribe(req, r)).await
    }

    pub async fn unsubscribe(
        &self,
        room_id: &str,
        participant_id: &str,
        track_ids: &[TrackId],
    ) -> Result<(), SfuError> {
        let req = UnsubscribeRequest {
            room_id: room_id.to_string(),
            participant_id: participant_id.to_string(),
            track_ids: track_ids.to_vec(),
        };
        self.call(room_id, |r| Command::Unsubscribe(req, r)).await
    }

    /// Server-side mute: the SFU stops forwarding the track.
    pub async fn set_mute(
        &self,
        room_id: &str,
        track_id: &str,
        muted: bool,
    ) -> Result<(), SfuError> {
        let req = SetMuteRequest {
            room_id: room_id.to_string(),
            track_id: track_id.to_string(),
            muted,
        };
        self.call(room_id, |r| Command::SetMute(req, r)).await
    }

    pub async fn remove_participant(
        &self,
        room_id: &str,
        participant_id: &str,
    ) -> Result<(), SfuError> {
        let (room, participant) = (room_id.to_string(), participant_id.to_string());
        self.call(room_id, |reply| Command::Remove {
            room,
            participant,
            reply,
        })
        .await
    }

    pub async fn close_room(&self, room_id: &str) -> Result<(), SfuError> {
        let room = room_id.to_string();
        self.call(room_id, |reply| Command::CloseRoom { room, reply })
            .await
    }
}
