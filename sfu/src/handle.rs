//! `SfuHandle`: the control API the signaling service calls.
//!
//! A join is placed on a worker (`placement.rs`: the room's home worker, a
//! stable hash of its id, until the room outgrows it); every later request
//! about a participant goes to the worker hosting it, and is answered over
//! a oneshot.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::mpsc::TrySendError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use convene_proto::sfu::{
    Grants, JoinRequest, OfferRequest, SetMuteRequest, SfuEvent, SubscribeRequest, TrackId,
    UnsubscribeRequest, VideoQuality,
};
use tokio::sync::{broadcast, oneshot};

use crate::error::SfuError;
use crate::placement::Placement;
use crate::shard::{Command, Mailbox, Reply, ShardMsg};

#[derive(Clone)]
pub struct SfuHandle {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Mailbox>,
    events: broadcast::Sender<SfuEvent>,
    placement: Arc<Mutex<Placement>>,
}

/// Queue-full retries before a request is refused: the worker queue is
/// shared with media, and control must not be lost to a burst.
const SEND_RETRIES: u32 = 200;

impl SfuHandle {
    pub(crate) fn new(
        shards: Vec<Mailbox>,
        events: broadcast::Sender<SfuEvent>,
        placement: Arc<Mutex<Placement>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                shards,
                events,
                placement,
            }),
        }
    }

    /// A new receiver of all SFU events. Slow receivers lose the oldest
    /// events (`RecvError::Lagged`) rather than stalling media workers.
    pub fn events(&self) -> broadcast::Receiver<SfuEvent> {
        self.inner.events.subscribe()
    }

    /// Where a room starts: a stable hash of its id.
    fn home(&self, room_id: &str) -> usize {
        let mut h = DefaultHasher::new();
        room_id.hash(&mut h);
        (h.finish() % self.inner.shards.len() as u64) as usize
    }

    fn placement(&self) -> std::sync::MutexGuard<'_, Placement> {
        // A worker that panicked holding it left consistent counts behind.
        self.inner
            .placement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The worker hosting `participant`, or the room's home (which then
    /// answers that it does not know the participant).
    fn worker_for(&self, room_id: &str, participant_id: &str) -> usize {
        self.placement()
            .worker_of(room_id, participant_id)
            .unwrap_or_else(|| self.home(room_id))
    }

    async fn call<T>(
        &self,
        worker: usize,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, SfuError> {
        let (tx, rx) = oneshot::channel();
        let mut msg = ShardMsg::Command(Box::new(make(tx)));
        let shard = &self.inner.shards[worker];
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
        self.join_request(JoinRequest {
            room_id: room_id.to_string(),
            participant_id: participant_id.to_string(),
            identity: identity.to_string(),
            offer_sdp: offer_sdp.to_string(),
            grants,
            sources: Default::default(),
        })
        .await
    }

    /// [`SfuHandle::join`] from the wire request (with the track sources).
    pub async fn join_request(&self, req: JoinRequest) -> Result<String, SfuError> {
        let (room_id, participant_id) = (req.room_id.clone(), req.participant_id.clone());
        let home = self.home(&room_id);
        let placed = self.placement().place(&room_id, &participant_id, home)?;
        let worker = placed.worker;
        let r = self
            .call(worker, |reply| Command::Join {
                req,
                peers: placed.peers,
                reply,
            })
            .await;
        if r.is_err() && placed.new {
            self.placement().remove(&room_id, &participant_id, worker);
        }
        r
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
        let worker = self.worker_for(room_id, participant_id);
        self.call(worker, |reply| Command::Answer {
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
        self.offer_request(OfferRequest {
            room_id: room_id.to_string(),
            participant_id: participant_id.to_string(),
            offer_sdp: offer_sdp.to_string(),
            sources: Default::default(),
        })
        .await
    }

    /// [`SfuHandle::handle_offer`] from the wire request (with the track
    /// sources).
    pub async fn offer_request(&self, req: OfferRequest) -> Result<String, SfuError> {
        let worker = self.worker_for(&req.room_id, &req.participant_id);
        self.call(worker, |reply| Command::Offer(req, reply)).await
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
        let worker = self.worker_for(room_id, participant_id);
        self.call(worker, |r| Command::Subscribe(req, r)).await
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
        let worker = self.worker_for(room_id, participant_id);
        self.call(worker, |r| Command::Unsubscribe(req, r)).await
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
        // Track ids are `{participant}/{mid}`: the publisher's worker.
        let publisher = track_id.rsplit_once('/').map_or(track_id, |(p, _)| p);
        let worker = self.worker_for(room_id, publisher);
        self.call(worker, |r| Command::SetMute(req, r)).await
    }

    pub async fn remove_participant(
        &self,
        room_id: &str,
        participant_id: &str,
    ) -> Result<(), SfuError> {
        let (room, participant) = (room_id.to_string(), participant_id.to_string());
        let worker = self.worker_for(room_id, participant_id);
        self.call(worker, |reply| Command::Remove {
            room,
            participant,
            reply,
        })
        .await
    }

    /// Every worker hosting the room removes its participants.
    pub async fn close_room(&self, room_id: &str) -> Result<(), SfuError> {
        let mut workers = self.placement().workers_of(room_id);
        if workers.is_empty() {
            workers.push(self.home(room_id));
        }
        let mut result = Err(SfuError::UnknownRoom(room_id.to_string()));
        for w in workers {
            let room = room_id.to_string();
            let r = self
                .call(w, |reply| Command::CloseRoom { room, reply })
                .await;
            result = result.or(r);
        }
        result
    }
}
