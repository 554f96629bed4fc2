//! Sessions: join, SDP offers and answers, subscriptions, leaving; the
//! commands the control API sends a worker.

use std::sync::atomic::Ordering;
use std::time::Instant;

use convene_proto::sfu::{
    DisconnectReason, JoinRequest, OfferRequest, SfuEvent, SubscribeRequest, TrackKind,
    UnsubscribeRequest,
};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid};
use tracing::{info, warn};

use super::{Relay, Worker};
use crate::core::{ParticipantKey, Room, TrackKey};
use crate::error::SfuError;
use crate::peer::Peer;
use crate::sdp;
use crate::shard::Command;

impl Worker {
    pub(super) fn negotiate(&mut self, key: ParticipantKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.needs_negotiation() {
            return;
        }
        let Some(room) = self.rooms.get(&peer.room) else {
            return;
        };
        let mut change = peer.rtc.sdp_api();
        let changes = peer.negotiation.take_changes();
        let mut added = Vec::new();
        for tk in changes.add {
            let Some(t) = room.track(tk) else { continue };
            let kind = match t.kind {
                TrackKind::Audio => MediaKind::Audio,
                TrackKind::Video => MediaKind::Video,
            };
            // A screen share is a stream of its own, so viewers show it in
            // a tile of its own: `{participant}|screen` (`|` is a token
            // char, which str0m keeps in an msid; LiveKit's separator too).
            let stream_id = room.participant(t.publisher).map(|p| {
                if t.source.is_screen() {
                    format!("{}|screen", p.id)
                } else {
                    p.id.clone()
                }
            });
            let mid = change.add_media(
                kind,
                Direction::SendOnly,
                stream_id,
                Some(t.id.clone()),
                None,
            );
            added.push((tk, mid));
        }
        for mid in changes.stop {
            change.stop_media(mid);
        }
        if !change.has_changes() {
            return;
        }
        let Some((offer, pending)) = change.apply() else {
            return;
        };
        peer.negotiation.offered(pending, added);
        let e = SfuEvent::RenegotiationOffer {
            room_id: peer.room.clone(),
            participant_id: peer.participant_id.clone(),
            offer_sdp: offer.to_sdp_string(),
        };
        self.emit(e);
        self.drain(key, now);
    }

    pub(super) fn remove_peer(&mut self, key: ParticipantKey, reason: DisconnectReason) {
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        info!(participant = %peer.participant_id, room = %peer.room, ?reason, "participant removed");
        self.by_ufrag.remove(&peer.ufrag);
        for addr in peer.paths() {
            if self.by_addr.get(&addr) == Some(&key) {
                self.by_addr.remove(&addr);
            }
        }
        self.timers.remove(key);
        self.by_id
            .remove(&(peer.room.clone(), peer.participant_id.clone()));
        peer.rtc.disconnect();
        self.metrics.participants.dec();
        if let Some(room) = self.rooms.get_mut(&peer.room) {
            let before = room.track_count();
            let stop = room.remove_participant(key, &mut self.scratch);
            self.metrics
                .tracks
                .sub((before - room.track_count()) as i64);
            let empty = room.local_participant_count() == 0;
            self.queue.extend(self.scratch.drain(..));
            self.stop_lines(stop);
            let room_id = peer.room.clone();
            self.relay_to_room(&room_id, || Relay::Leave {
                room: room_id.clone(),
                publisher: key,
            });
            if empty {
                self.rooms.remove(&peer.room);
                self.metrics.rooms.dec();
                self.detach(&peer.room);
            }
        }
        // Subscribers that were about to get one of its tracks.
        self.emit(SfuEvent::ParticipantDisconnected {
            room_id: peer.room,
            participant_id: peer.participant_id,
            reason,
        });
    }

    /// Parses a client's offer and refuses one with more m-sections than
    /// `max_offer_media_lines`: str0m would build state for every one.
    fn parse_offer(&self, sdp: &str) -> Result<SdpOffer, SfuError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| SfuError::Sdp(e.to_string()))?;
        let lines = offer.media_lines.len();
        let max = self.config.max_offer_media_lines;
        if lines > max {
            return Err(SfuError::Sdp(format!(
                "the offer has {lines} m-lines; at most {max} are accepted"
            )));
        }
        Ok(offer)
    }

    fn key_of(&self, room: &str, participant: &str) -> Result<ParticipantKey, SfuError> {
        self.by_id
            .get(&(room.to_string(), participant.to_string()))
            .copied()
            .ok_or_else(|| SfuError::UnknownParticipant(participant.to_string()))
    }

    pub(super) fn on_command(&mut self, c: Command, now: Instant) {
        match c {
            Command::Join { req, peers, reply } => {
                let _ = reply.send(self.join(req, &peers, now));
            }
            Command::Answer {
                room,
                participant,
                answer_sdp,
                reply,
            } => {
                let _ = reply.send(self.answer(&room, &participant, &answer_sdp, now));
            }
            Command::Offer(req, reply) => {
                let _ = reply.send(self.offer(req, now));
            }
            Command::Subscribe(req, reply) => {
                let _ = reply.send(self.subscribe(req, now));
            }
            Command::Unsubscribe(req, reply) => {
                let _ = reply.send(self.unsubscribe(req, now));
            }
            Command::SetMute(req, reply) => {
                let r = match self.rooms.get_mut(&req.room_id) {
                    None => Err(SfuError::UnknownRoom(req.room_id.clone())),
                    Some(room) => room
                        .set_muted(&req.track_id, req.muted, &mut self.scratch)
                        .map_err(SfuError::from),
                };
                self.queue.extend(self.scratch.drain(..));
                if r.is_ok() {
                    self.relay_to_room(&req.room_id, || Relay::Muted {
                        room: req.room_id.clone(),
                        track_id: req.track_id.clone(),
                        muted: req.muted,
                    });
                }
                let _ = reply.send(r);
            }
            Command::Remove {
                room,
                participant,
                reply,
            } => {
                let r = self
                    .key_of(&room, &participant)
                    .map(|k| self.remove_peer(k, DisconnectReason::Removed));
                let _ = reply.send(r);
            }
            Command::CloseRoom { room, reply } => {
                if !self.rooms.contains_key(&room) {
                    let _ = reply.send(Err(SfuError::UnknownRoom(room)));
                    return;
                }
                let keys: Vec<ParticipantKey> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| p.room == room)
                    .map(|(k, _)| *k)
                    .collect();
                for k in keys {
                    self.remove_peer(k, DisconnectReason::RoomClosed);
                }
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// `peers`: the other workers hosting the room, by the placement.
    fn join(
        &mut self,
        req: JoinRequest,
        peers: &[usize],
        now: Instant,
    ) -> Result<String, SfuError> {
        let id = (req.room_id.clone(), req.participant_id.clone());
        if self.by_id.contains_key(&id) {
            return Err(SfuError::DuplicateParticipant(req.participant_id));
        }
        if self
            .rooms
            .get(&req.room_id)
            .is_some_and(|r| r.participant_count() >= self.config.max_participants_per_room)
        {
            return Err(SfuError::RoomFull(req.room_id));
        }
        let offer = self.parse_offer(&req.offer_sdp)?;
        let key = ParticipantKey(self.next_key.fetch_add(1, Ordering::Relaxed));
        let mut peer = Peer::new(
            req.room_id.clone(),
            req.participant_id.clone(),
            req.grants,
            &self.config,
            self.local_addrs.clone(),
            now,
        )?;
        peer.declare_sources(&req.sources);
        let offer = sdp::restrict_offer(&peer.rtc, offer);
        let answer = peer
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::Negotiation(e.to_string()))?;
        let answer = sdp::complete_answer(answer);
        if !self.rooms.contains_key(&req.room_id) {
            self.rooms.insert(
                req.room_id.clone(),
                Room::new(req.room_id.clone(), self.config.core()),
            );
            self.metrics.rooms.inc();
        }
        let room = self.rooms.get_mut(&req.room_id).expect("inserted above");
        room.add_participant(key, req.participant_id.clone(), req.identity.clone());
        self.by_ufrag.insert(peer.ufrag.clone(), key);
        self.by_id.insert(id, key);
        self.peers.insert(key, peer);
        self.metrics.participants.inc();
        self.attach(&req.room_id, peers);
        info!(participant = %req.participant_id, room = %req.room_id, "joined");
        self.drain(key, now);
        Ok(answer.to_sdp_string())
    }

    fn answer(
        &mut self,
        room: &str,
        participant: &str,
        sdp: &str,
        now: Instant,
    ) -> Result<(), SfuError> {
        let key = self.key_of(room, participant)?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| SfuError::Sdp(e.to_string()))?;
        let peer = self.peers.get_mut(&key).expect("by_id and peers agree");
        let (pending, negotiated) = peer
            .negotiation
            .answered()
            .ok_or(SfuError::NoPendingOffer)?;
        peer.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| SfuError::Negotiation(e.to_string()))?;
        if !peer.connected {
            peer.negotiation.defer(negotiated);
            self.drain(key, now);
            self.negotiate(key, now);
            return Ok(());
        }
        self.drain(key, now);
        self.activate_all(key, negotiated, now);
        self.negotiate(key, now);
        Ok(())
    }

    pub(super) fn activate_all(
        &mut self,
        key: ParticipantKey,
        lines: Vec<(TrackKey, Mid)>,
        now: Instant,
    ) {
        for (tk, mid) in lines {
            let activated = self.activate(key, tk, mid, now);
            if !activated {
                // The track went away while the offer was out.
                if let Some(p) = self.peers.get_mut(&key) {
                    p.negotiation.stop(mid);
                }
            }
        }
        self.queue.extend(self.scratch.drain(..));
    }

    fn activate(&mut self, key: ParticipantKey, tk: TrackKey, mid: Mid, now: Instant) -> bool {
        let Some(room_id) = self.peers.get(&key).map(|p| p.room.clone()) else {
            return false;
        };
        let Some(t) = self.rooms.get(&room_id).and_then(|r| r.track(tk)) else {
            return false;
        };
        let kind = match t.kind {
            TrackKind::Audio => MediaKind::Audio,
            TrackKind::Video => MediaKind::Video,
        };
        let Some(params) = self.publisher_params(t.publisher, kind) else {
            return false;
        };
        let Some(sub) = self.peers.get(&key) else {
            return false;
        };
        let map = sub.pt_map(&params);
        if map.is_empty() {
            warn!(participant = %sub.participant_id, "no common codec for track");
        }
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return false;
        };
        let activated = room.activate_subscription(key, tk, mid, map, now, &mut self.scratch);
        if activated && kind == MediaKind::Video {
            self.size_rtx_cache(key, mid, None);
        }
        activated
    }

    fn offer(&mut self, req: OfferRequest, now: Instant) -> Result<String, SfuError> {
        let key = self.key_of(&req.room_id, &req.participant_id)?;
        let offer = self.parse_offer(&req.offer_sdp)?;
        let peer = self.peers.get_mut(&key).expect("by_id and peers agree");
        peer.declare_sources(&req.sources);
        // Glare: the client's offer wins; ours is redone afterwards.
        peer.negotiation.glare();
        let offer = sdp::restrict_offer(&peer.rtc, offer);
        let answer = peer
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::Negotiation(e.to_string()))?;
        let answer = sdp::complete_answer(answer);
        // An ICE restart from the client gives us new local credentials: the
        // new ufrag routes here from now on.
        let ufrag = peer.rtc.direct_api().local_ice_credentials().ufrag;
        if ufrag != peer.ufrag {
            info!(participant = %peer.participant_id, "ICE restart");
            self.by_ufrag.insert(ufrag.clone(), key);
            self.by_ufrag
                .remove(&std::mem::replace(&mut peer.ufrag, ufrag));
        }
        self.drain(key, now);
        Ok(answer.to_sdp_string())
    }

    fn subscribe(&mut self, req: SubscribeRequest, now: Instant) -> Result<(), SfuError> {
        let key = self.key_of(&req.room_id, &req.participant_id)?;
        let peer = self.peers.get_mut(&key).expect("by_id and peers agree");
        if !peer.grants.can_subscribe {
            return Err(SfuError::NotPermitted);
        }
        let room = self
            .rooms
            .get_mut(&req.room_id)
            .ok_or_else(|| SfuError::UnknownRoom(req.room_id.clone()))?;
        let mut first_err = None;
        for id in &req.track_ids {
            match room.subscribe(key, id, req.max_quality, now) {
                Ok(Some(tk)) => peer.negotiation.add(tk),
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert(SfuError::from(e));
                }
            }
        }
        self.negotiate(key, now);
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn unsubscribe(&mut self, req: UnsubscribeRequest, now: Instant) -> Result<(), SfuError> {
        let key = self.key_of(&req.room_id, &req.participant_id)?;
        let peer = self.peers.get_mut(&key).expect("by_id and peers agree");
        let room = self
            .rooms
            .get_mut(&req.room_id)
            .ok_or_else(|| SfuError::UnknownRoom(req.room_id.clone()))?;
        for id in &req.track_ids {
            if let Some(t) = room.track_by_id(id) {
                let tk = t.key;
                peer.negotiation.cancel_add(tk);
            }
            if let Some(mid) = room.unsubscribe(key, id) {
                peer.negotiation.stop(mid);
            }
        }
        self.negotiate(key, now);
        Ok(())
    }

    pub(super) fn shutdown(&mut self, now: Instant) {
        let keys: Vec<ParticipantKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.remove_peer(k, DisconnectReason::Shutdown);
        }
        self.flush(now);
    }
}
