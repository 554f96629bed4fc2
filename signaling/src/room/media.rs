//! A participant's media session ending under a live room membership.
//!
//! The SFU drops a peer whose ICE or DTLS never completes, whose consent
//! expires or that closes; the participant's socket may be fine. It stays
//! in the room (listed, chat works) and everyone, itself included, is told
//! with `media_ended`, so its client can start a new session with a fresh
//! `offer` and the others stop expecting its media. Participants that left
//! are gone before the SFU's event for their removal arrives, so that event
//! finds nobody and is ignored.

use convene_proto::sfu::DisconnectReason;
use convene_proto::signaling::ServerMessage;

use super::RoomActor;
use crate::metrics::wire_name;
use crate::room_bus::RoomFrame;

impl RoomActor {
    /// The SFU ended the media session of a participant of this node.
    pub(super) async fn media_ended(&mut self, participant_id: String, reason: DisconnectReason) {
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
        self.metrics
            .media_ended
            .with_label_values(&[wire_name(reason).as_str()])
            .inc();
        self.tell_media_ended(&participant_id, reason);
        if self.bus.is_shared() {
            let frame = RoomFrame::MediaEnded {
                participant_id,
                reason,
            };
            if let Err(e) = self.bus.publish(self.conference, frame).await {
                tracing::warn!(error = %e, "could not announce the end of a media session");
            }
        }
    }

    /// Another node's participant lost its media session.
    pub(super) fn remote_media_ended(&mut self, participant_id: String, reason: DisconnectReason) {
        if self.remote.contains_key(&participant_id) {
            self.tell_media_ended(&participant_id, reason);
        }
    }

    fn tell_media_ended(&mut self, participant_id: &str, reason: DisconnectReason) {
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
            self.broadcast_except(participant_id, ServerMessage::TrackUnpublished { track_id });
        }
        self.broadcast(ServerMessage::MediaEnded {
            participant_id: participant_id.to_string(),
            reason,
        });
    }
}
