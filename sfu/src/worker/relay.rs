//! A room across workers.
//!
//! When a room outgrows one worker (`placement.rs`), each worker hosting
//! some of its participants keeps its own [`Room`] for them. A publisher's
//! worker hands every packet it receives to each other worker of the room
//! once, as the shared payload and its metadata; there the room holds the
//! publisher as a remote participant and forwards the packet to its local
//! subscribers like any other. Keyframe requests travel back the same way,
//! and track changes (publish, unpublish, mute, leave) follow the packets.
//! It is the in-process form of a cascade between SFU nodes.
//!
//! Workers learn of each other per room: a worker that starts hosting a
//! room sends `Attach` to the workers the placement names, which answer
//! with their local tracks and relay to it from then on; `Detach` ends it.
//! The lowest-numbered worker of a room announces its active speakers.

use std::sync::Arc;
use std::time::Instant;

use convene_proto::sfu::{TrackKind, TrackSource, VideoQuality};
use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};
use tracing::debug;

use super::Worker;
use crate::core::{DropReason, InboundRtp, ParticipantKey, Room};

/// What one worker tells another about a room they share.
#[derive(Debug)]
pub enum Relay {
    /// `from` now hosts participants of `room`: send it your tracks.
    Attach { room: String, from: usize },
    /// `from` hosts nobody of `room` any more.
    Detach { room: String, from: usize },
    /// A track published on the sending worker (new, or its state after
    /// an `Attach`).
    Track(Box<RelayedTrack>),
    Untrack {
        room: String,
        publisher: ParticipantKey,
        mid: Mid,
    },
    /// The publisher left the room, and its tracks with it.
    Leave {
        room: String,
        publisher: ParticipantKey,
    },
    Muted {
        room: String,
        track_id: String,
        muted: bool,
    },
    /// The layers of a track published on the receiving worker that the
    /// sender's subscribers want (dynacast; empty: none).
    Wanted {
        room: String,
        track_id: String,
        from: usize,
        layers: Vec<VideoQuality>,
    },
    /// One received packet, for the other worker's subscribers.
    Rtp(InboundRtp),
    /// A subscriber on the sending worker needs a keyframe of a track
    /// published on the receiving one (already throttled there).
    Keyframe {
        publisher: ParticipantKey,
        mid: Mid,
        rid: Option<Rid>,
    },
    /// A data-channel message, already stamped with its sender.
    Data {
        room: String,
        data: Arc<[u8]>,
        binary: bool,
    },
}

impl Relay {
    /// Media and keyframe requests go on the lossy media queue; the rest
    /// goes with the control commands, in order with them.
    pub fn is_media(&self) -> bool {
        matches!(
            self,
            Relay::Rtp(_) | Relay::Keyframe { .. } | Relay::Data { .. }
        )
    }
}

#[derive(Debug, Clone)]
pub struct RelayedTrack {
    pub room: String,
    pub from: usize,
    pub publisher: ParticipantKey,
    pub participant_id: String,
    pub identity: String,
    pub mid: Mid,
    pub kind: TrackKind,
    pub rids: Vec<Rid>,
    /// The publisher's negotiated payload types (all kinds), to map for
    /// subscribers.
    pub params: Vec<PayloadParams>,
    pub muted: bool,
    pub source: TrackSource,
}

/// A publisher hosted by another worker.
pub(super) struct RemotePublisher {
    pub room: String,
    pub worker: usize,
    pub params: Vec<PayloadParams>,
}

impl Worker {
    /// Queue `msg` for every other worker hosting `room`.
    pub(super) fn relay_to_room(&mut self, room: &str, mut make: impl FnMut() -> Relay) {
        let Some(peers) = self.room_peers.get(room) else {
            return;
        };
        for &to in peers {
            self.relays.push_back((to, make()));
        }
    }

    /// This worker starts (or goes on) hosting `room`, which `peers` host
    /// too, by the placement: attach to those not known yet.
    pub(super) fn attach(&mut self, room: &str, peers: &[usize]) {
        let known = self.room_peers.entry(room.to_string()).or_default();
        let mut new = Vec::new();
        for &w in peers {
            if w != self.index && !known.contains(&w) {
                known.push(w);
                new.push(w);
            }
        }
        for w in new {
            let msg = Relay::Attach {
                room: room.to_string(),
                from: self.index,
            };
            self.relays.push_back((w, msg));
        }
        self.update_speaker_role(room);
    }

    /// The last local participant of `room` left: the room is gone here.
    pub(super) fn detach(&mut self, room: &str) {
        let Some(peers) = self.room_peers.remove(room) else {
            return;
        };
        for w in peers {
            let msg = Relay::Detach {
                room: room.to_string(),
                from: self.index,
            };
            self.relays.push_back((w, msg));
        }
        self.remotes.retain(|_, r| r.room != room);
    }

    fn update_speaker_role(&mut self, room: &str) {
        let first = self
            .room_peers
            .get(room)
            .is_none_or(|ps| ps.iter().all(|w| *w > self.index));
        if let Some(r) = self.rooms.get_mut(room) {
            r.set_speaker_events(first);
        }
    }

    /// The relayed description of a local publisher's track.
    fn describe(&self, room: &Room, publisher: ParticipantKey, mid: Mid) -> Option<RelayedTrack> {
        let peer = self.peers.get(&publisher)?;
        let p = room.participant(publisher)?;
        let t = room
            .tracks()
            .find(|t| t.publisher == publisher && t.mid == mid)?;
        // Every kind's: the far side keeps one set per publisher.
        let mut params = peer.params(MediaKind::Audio);
        params.extend(peer.params(MediaKind::Video));
        Some(RelayedTrack {
            room: room.id().to_string(),
            from: self.index,
            publisher,
            participant_id: p.id.clone(),
            identity: p.identity.clone(),
            mid,
            kind: t.kind,
            rids: t.announced_rids.clone(),
            params,
            muted: t.muted,
            source: t.source,
        })
    }

    /// A local track was published: tell the room's other workers.
    pub(super) fn relay_track(&mut self, room: &str, publisher: ParticipantKey, mid: Mid) {
        if self.room_peers.get(room).is_none_or(|p| p.is_empty()) {
            return;
        }
        let Some(t) = self
            .rooms
            .get(room)
            .and_then(|r| self.describe(r, publisher, mid))
        else {
            return;
        };
        let peers = self.room_peers.get(room).cloned().unwrap_or_default();
        for to in peers {
            self.relays
                .push_back((to, Relay::Track(Box::new(t.clone()))));
        }
    }

    pub(super) fn on_relay(&mut self, msg: Relay, now: Instant) {
        match msg {
            Relay::Attach { room, from } => {
                let known = self.room_peers.entry(room.clone()).or_default();
                if !known.contains(&from) {
                    known.push(from);
                }
                self.update_speaker_role(&room);
                // Our local tracks, for the newcomer's subscribers.
                let Some(r) = self.rooms.get(&room) else {
                    return;
                };
                let local: Vec<(ParticipantKey, Mid)> = r
                    .tracks()
                    .filter(|t| r.participant(t.publisher).is_some_and(|p| !p.remote))
                    .map(|t| (t.publisher, t.mid))
                    .collect();
                for (publisher, mid) in local {
                    let Some(t) = self
                        .rooms
                        .get(&room)
                        .and_then(|r| self.describe(r, publisher, mid))
                    else {
                        continue;
                    };
                    self.relays.push_back((from, Relay::Track(Box::new(t))));
                }
            }
            Relay::Detach { room, from } => {
                if let Some(ps) = self.room_peers.get_mut(&room) {
                    ps.retain(|w| *w != from);
                }
                let gone: Vec<ParticipantKey> = self
                    .remotes
                    .iter()
                    .filter(|(_, r)| r.room == room && r.worker == from)
                    .map(|(k, _)| *k)
                    .collect();
                for k in gone {
                    self.remove_remote(&room, k);
                }
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.forget_far(from);
                }
                self.update_speaker_role(&room);
            }
            Relay::Track(t) => self.add_remote_track(*t),
            Relay::Untrack {
                room,
                publisher,
                mid,
            } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    let stop = r.unpublish(publisher, mid, &mut self.scratch);
                    self.queue.extend(self.scratch.drain(..));
                    self.stop_lines(stop);
                }
            }
            Relay::Leave { room, publisher } => self.remove_remote(&room, publisher),
            Relay::Muted {
                room,
                track_id,
                muted,
            } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    let _ = r.set_muted(&track_id, muted, &mut self.scratch);
                    self.queue.extend(self.scratch.drain(..));
                }
            }
            Relay::Wanted {
                room,
                track_id,
                from,
                layers,
            } => {
                if let Some(r) = self.rooms.get_mut(&room) {
                    r.set_far_wanted(&track_id, from, layers);
                }
            }
            Relay::Rtp(p) => {
                let Some(r) = self
                    .remotes
                    .get(&p.publisher)
                    .and_then(|remote| self.rooms.get_mut(&remote.room))
                else {
                    self.metrics.dropped.unknown_track.inc();
                    return;
                };
                self.received_at = Some(p.received_at);
                self.batch_read_at.get_or_insert(p.received_at);
                match r.on_rtp(now, &p, &mut self.scratch) {
                    Ok(_) => {}
                    Err(DropReason::Muted) => self.metrics.dropped.muted.inc(),
                    Err(DropReason::UnknownTrack) => self.metrics.dropped.unknown_track.inc(),
                    Err(DropReason::MalformedRed) => self.metrics.dropped.malformed_red.inc(),
                }
                self.queue.extend(self.scratch.drain(..));
                self.flush(now);
                self.received_at = None;
            }
            Relay::Keyframe {
                publisher,
                mid,
                rid,
            } => self.request_keyframe(publisher, mid, rid, now),
            Relay::Data { room, data, binary } => {
                let targets: Vec<ParticipantKey> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| p.room == room && p.channel.is_some())
                    .map(|(k, _)| *k)
                    .collect();
                for k in targets {
                    self.write_data(k, &data, binary, now);
                }
            }
        }
    }

    fn add_remote_track(&mut self, t: RelayedTrack) {
        let Some(room) = self.rooms.get_mut(&t.room) else {
            debug!(room = %t.room, "relayed track for a room not hosted here");
            return;
        };
        if room.participant(t.publisher).is_none() {
            room.add_remote_participant(t.publisher, t.participant_id.clone(), t.identity);
        }
        self.remotes.insert(
            t.publisher,
            RemotePublisher {
                room: t.room.clone(),
                worker: t.from,
                params: t.params,
            },
        );
        match room.publish_as(
            t.publisher,
            t.mid,
            t.kind,
            t.rids,
            t.source,
            &mut self.scratch,
        ) {
            Ok(_) if t.muted => {
                let id = format!("{}/{}", t.participant_id, t.mid);
                let _ = room.set_muted(&id, true, &mut self.scratch);
            }
            Ok(_) => {}
            Err(e) => debug!(room = %t.room, "relayed track refused: {e}"),
        }
        self.queue.extend(self.scratch.drain(..));
    }

    fn remove_remote(&mut self, room: &str, publisher: ParticipantKey) {
        self.remotes.remove(&publisher);
        if let Some(r) = self.rooms.get_mut(room) {
            let stop = r.remove_participant(publisher, &mut self.scratch);
            self.queue.extend(self.scratch.drain(..));
            self.stop_lines(stop);
        }
    }

    /// The payload types a track's publisher negotiated, local or remote.
    pub(super) fn publisher_params(
        &self,
        publisher: ParticipantKey,
        kind: MediaKind,
    ) -> Option<Vec<PayloadParams>> {
        if let Some(p) = self.peers.get(&publisher) {
            return Some(p.params(kind));
        }
        let r = self.remotes.get(&publisher)?;
        Some(
            r.params
                .iter()
                .filter(|p| p.spec().codec.kind() == kind)
                .copied()
                .collect(),
        )
    }

    /// Ask a publisher for a keyframe: its own session, or its worker.
    pub(super) fn request_keyframe(
        &mut self,
        publisher: ParticipantKey,
        mid: Mid,
        rid: Option<Rid>,
        now: Instant,
    ) {
        if let Some(p) = self.peers.get_mut(&publisher) {
            let mut api = p.rtc.direct_api();
            if let Some(s) = api.stream_rx_by_mid(mid, rid) {
                s.request_keyframe(KeyframeRequestKind::Pli);
                self.metrics.keyframe_requests.inc();
            }
            self.drain(publisher, now);
        } else if let Some(r) = self.remotes.get(&publisher) {
            let msg = Relay::Keyframe {
                publisher,
                mid,
                rid,
            };
            self.relays.push_back((r.worker, msg));
        }
    }
}
