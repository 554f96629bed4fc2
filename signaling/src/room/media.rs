//! Media: SDP exchanges with the SFU, tracks, subscriptions and the SFU's
//! events.
//!
//! A participant's calls run on its own lane, in the order it sent them,
//! so its offer is answered before its next answer or subscription goes
//! out, and a slow SFU answer delays nobody else.
//!
//! The SFU drops a peer whose ICE or DTLS never completes, whose consent
//! expires or that closes; the participant's socket may be fine. It stays
//! in the room (listed, chat works) and everyone, itself included, is told
//! with `media_ended`, so its client can start a new session with a fresh
//! `offer` and the others stop expecting its media. Participants that left
//! are gone before the SFU's event for their removal arrives, so that event
//! finds nobody and is ignored.

use std::time::Instant;

use convene_proto::sfu::{
    AnswerRequest, DisconnectReason, Grants, JoinRequest, OfferRequest, SetMuteRequest, SfuEvent,
    SubscribeRequest, TrackInfo, TrackSources, UnsubscribeRequest, VideoQuality,
};
use convene_proto::signaling::{ClientMessage, ServerMessage};

use super::effects::{BusOp, CallOutput, Effects, MediaCall, MetricUpdate, PortCall};
use super::error::RoomError;
use super::lanes::Lane;
use super::state::{Job, RoomState, Then};
use crate::ports::PortError;
use crate::room_bus::RoomFrame;

impl RoomState {
    pub(super) fn media_message(
        &mut self,
        pid: &str,
        conn: u64,
        msg: ClientMessage,
        fx: &mut Effects,
    ) -> Result<(), RoomError> {
        let lane = Lane::Media(pid.to_string());
        let call = match msg {
            ClientMessage::Offer { sdp, sources } => {
                self.lanes.push(
                    lane.clone(),
                    Job::Offer {
                        pid: pid.to_string(),
                        sdp,
                        sources,
                    },
                );
                self.pump(&lane, fx);
                return Ok(());
            }
            ClientMessage::Answer { sdp } => MediaCall::Answer(AnswerRequest {
                room_id: self.room_id.clone(),
                participant_id: pid.to_string(),
                answer_sdp: sdp,
            }),
            // The SFU is ICE-lite and learns the client's address from its
            // connectivity checks, so trickled candidates need no relaying.
            ClientMessage::Candidate { .. } => return Ok(()),
            ClientMessage::Subscribe {
                track_ids,
                max_quality,
            } => {
                if !self.can_subscribe(pid) {
                    return Err(RoomError::NoSubscribeGrant);
                }
                MediaCall::Subscribe(SubscribeRequest {
                    room_id: self.room_id.clone(),
                    participant_id: pid.to_string(),
                    track_ids,
                    max_quality,
                })
            }
            ClientMessage::Unsubscribe { track_ids } => {
                MediaCall::Unsubscribe(UnsubscribeRequest {
                    room_id: self.room_id.clone(),
                    participant_id: pid.to_string(),
                    track_ids,
                })
            }
            ClientMessage::Mute { track_id, muted } => {
                let own = self
                    .tracks
                    .get(&track_id)
                    .is_some_and(|t| t.participant_id == pid);
                if !own {
                    return Err(RoomError::NotYourTrack(track_id));
                }
                MediaCall::SetMute(SetMuteRequest {
                    room_id: self.room_id.clone(),
                    track_id,
                    muted,
                })
            }
            _ => unreachable!("only media messages are routed here"),
        };
        self.call(lane, PortCall::Media(call), Then::Report(conn), fx);
        Ok(())
    }

    /// Turns a queued offer into the call it needs now: the first session
    /// is a join, later ones a renegotiation.
    pub(super) fn offer_call(
        &mut self,
        pid: &str,
        sdp: String,
        sources: TrackSources,
    ) -> Option<(PortCall, Then)> {
        let p = self.participants.get_mut(pid)?;
        let pid = pid.to_string();
        if p.media_joined {
            let call = MediaCall::Offer(OfferRequest {
                room_id: self.room_id.clone(),
                participant_id: pid.clone(),
                offer_sdp: sdp,
                sources,
            });
            return Some((
                PortCall::Media(call),
                Then::Answer {
                    pid,
                    joining: false,
                },
            ));
        }
        p.joining = true;
        let a = &p.admission;
        let call = MediaCall::Join(JoinRequest {
            room_id: self.room_id.clone(),
            participant_id: pid.clone(),
            identity: a.name.clone(),
            offer_sdp: sdp,
            grants: Grants {
                can_publish: a.can_publish,
                can_subscribe: a.can_subscribe,
                can_publish_data: a.can_publish_data,
            },
            sources,
        });
        Some((PortCall::Media(call), Then::Answer { pid, joining: true }))
    }

    pub(super) fn answered(
        &mut self,
        pid: &str,
        joining: bool,
        result: Result<CallOutput, PortError>,
        fx: &mut Effects,
    ) {
        let Some(p) = self.participants.get_mut(pid) else {
            return;
        };
        if joining {
            p.joining = false;
        }
        let answer = match result {
            Ok(CallOutput::Answer(sdp)) => sdp,
            Ok(_) => return,
            Err(e) => {
                if let Some(c) = p.conn {
                    fx.fail(c, &e.into());
                }
                return;
            }
        };
        if joining {
            p.media_joined = true;
            p.media_lost = None;
        }
        if let Some(c) = p.conn {
            fx.send(c, ServerMessage::Answer { sdp: answer });
        }
        // Everything already published is subscribed to by default, as
        // LiveKit's auto-subscribe does; before anything else the
        // participant queued, as when the answer was awaited.
        let others: Vec<String> = self
            .tracks
            .values()
            .filter(|t| t.participant_id != pid)
            .map(|t| t.track_id.clone())
            .collect();
        if !others.is_empty() && self.can_subscribe(pid) {
            let call = self.subscription(pid, others);
            self.lanes.push_front(
                Lane::Media(pid.to_string()),
                Job::Call(call, Then::Log("auto-subscribe")),
            );
        }
    }

    fn subscription(&self, pid: &str, track_ids: Vec<String>) -> PortCall {
        PortCall::Media(MediaCall::Subscribe(SubscribeRequest {
            room_id: self.room_id.clone(),
            participant_id: pid.to_string(),
            track_ids,
            max_quality: VideoQuality::High,
        }))
    }

    pub(super) fn can_subscribe(&self, pid: &str) -> bool {
        self.participants
            .get(pid)
            .is_some_and(|p| p.admission.can_subscribe)
    }

    pub(super) fn sfu_event(&mut self, ev: SfuEvent, now: Instant, fx: &mut Effects) {
        match ev {
            SfuEvent::TrackPublished { track, .. } => self.track_published(track, fx),
            SfuEvent::TrackUnpublished {
                track_id,
                participant_id,
                ..
            } => {
                self.tracks.remove(&track_id);
                self.broadcast_except(
                    &participant_id,
                    ServerMessage::TrackUnpublished { track_id },
                    fx,
                );
            }
            SfuEvent::TrackMuted {
                track_id, muted, ..
            } => {
                if let Some(t) = self.tracks.get_mut(&track_id) {
                    t.muted = muted;
                }
                self.broadcast(ServerMessage::TrackMuted { track_id, muted }, fx);
            }
            SfuEvent::ParticipantConnected { participant_id, .. } => {
                tracing::debug!(participant = %participant_id, "media connected");
            }
            SfuEvent::ParticipantDisconnected {
                participant_id,
                reason,
                ..
            } => self.media_ended(participant_id, reason, fx),
            SfuEvent::ActiveSpeakersChanged { speakers, .. } => {
                let mut participant_ids: Vec<String> = Vec::with_capacity(speakers.len());
                for s in speakers {
                    if !participant_ids.contains(&s.participant_id) {
                        participant_ids.push(s.participant_id);
                    }
                }
                self.broadcast(ServerMessage::ActiveSpeakers { participant_ids }, fx);
            }
            SfuEvent::RenegotiationOffer {
                participant_id,
                offer_sdp,
                ..
            } => {
                if let Some(c) = self.conn_of(&participant_id) {
                    fx.send(c, ServerMessage::Offer { sdp: offer_sdp });
                }
            }
            SfuEvent::MediaStarted { participant_id, .. } => {
                if let Some(started) = self
                    .participants
                    .get_mut(&participant_id)
                    .and_then(|p| p.awaiting_media.take())
                {
                    let secs = now.saturating_duration_since(started).as_secs_f64();
                    fx.metric(MetricUpdate::JoinLatency(secs));
                }
            }
            SfuEvent::SessionsLost => {
                let joined: Vec<String> = self
                    .participants
                    .iter()
                    .filter(|(_, p)| p.media_joined)
                    .map(|(pid, _)| pid.clone())
                    .collect();
                // Their tracks are unpublished with them, and come back
                // as they join the media again.
                for pid in joined {
                    self.media_ended(pid, DisconnectReason::Shutdown, fx);
                }
            }
            SfuEvent::LayerChanged { .. } | SfuEvent::WantedLayers { .. } => {}
        }
    }

    pub(super) fn track_published(&mut self, track: TrackInfo, fx: &mut Effects) {
        self.tracks.insert(track.track_id.clone(), track.clone());
        let publisher = track.participant_id.clone();
        // The publisher hears of its own track too: that is how it learns
        // the id to use in `mute`.
        self.broadcast(
            ServerMessage::TrackPublished {
                track: track.clone(),
            },
            fx,
        );
        let subscribers: Vec<String> = self
            .participants
            .iter()
            .filter(|(pid, p)| **pid != publisher && p.media_joined && p.admission.can_subscribe)
            .map(|(pid, _)| pid.clone())
            .collect();
        for pid in subscribers {
            let call = self.subscription(&pid, vec![track.track_id.clone()]);
            self.call(Lane::Media(pid), call, Then::Log("auto-subscribe"), fx);
        }
    }

    /// The SFU ended the media session of a participant of this node.
    fn media_ended(&mut self, participant_id: String, reason: DisconnectReason, fx: &mut Effects) {
        let Some(p) = self.participants.get_mut(&participant_id) else {
            return;
        };
        if !p.media_joined {
            return;
        }
        // The next offer starts a new session, as the first one did.
        p.media_joined = false;
        p.media_lost = Some(reason);
        tracing::info!(
            conference = %self.conference,
            participant = %participant_id,
            ?reason,
            "media session ended; the participant stays in the room"
        );
        fx.metric(MetricUpdate::MediaEnded(reason));
        self.tell_media_ended(&participant_id, reason, fx);
        if self.cluster.shared {
            fx.bus(BusOp::Publish {
                frame: RoomFrame::MediaEnded {
                    participant_id,
                    reason,
                },
                report: None,
            });
        }
    }

    /// Another node's participant lost its media session.
    pub(super) fn remote_media_ended(
        &mut self,
        participant_id: String,
        reason: DisconnectReason,
        fx: &mut Effects,
    ) {
        if self.remote.contains_key(&participant_id) {
            self.tell_media_ended(&participant_id, reason, fx);
        }
    }

    fn tell_media_ended(
        &mut self,
        participant_id: &str,
        reason: DisconnectReason,
        fx: &mut Effects,
    ) {
        // The SFU unpublishes a dropped peer's tracks first; these are the
        // ones whose events were lost (an event stream that reconnected).
        let stale: Vec<String> = self
            .tracks
            .values()
            .filter(|t| t.participant_id == participant_id)
            .map(|t| t.track_id.clone())
            .collect();
        for track_id in stale {
            self.tracks.remove(&track_id);
            self.broadcast_except(
                participant_id,
                ServerMessage::TrackUnpublished { track_id },
                fx,
            );
        }
        self.broadcast(
            ServerMessage::MediaEnded {
                participant_id: participant_id.to_string(),
                reason,
            },
            fx,
        );
    }
}
