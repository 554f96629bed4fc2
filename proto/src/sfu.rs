//! The SFU control API used by the signaling service: requests, responses and events.
//!
//! The in-process `SfuHandle` (crate `convene-sfu`) takes and returns these
//! types directly; they derive serde so that a network form of the same API
//! (HTTP/JSON on an internal port) can carry them unchanged later.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A room (conference) as the SFU knows it. Chosen by the control plane.
pub type RoomId = String;
/// A participant, unique within its room. Chosen by the control plane.
pub type ParticipantId = String;
/// A published track, unique within its room. Assigned by the SFU as
/// `{participant_id}/{mid}` so signaling can tell the publisher at a glance.
pub type TrackId = String;

/// Quality a subscriber asks for, and the simulcast layer it receives.
///
/// Ordered: `Off < Low < Medium < High`, so "at most Medium" is a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoQuality {
    /// Receive no video for this track (the m-line stays, no packets flow).
    Off,
    Low,
    Medium,
    High,
}

/// What a track carries, as its publisher declares it (LiveKit's
/// `TrackSource`): viewers show a screen share as a tile of its own, and
/// the bandwidth allocator serves it before cameras.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Camera,
    Microphone,
    ScreenShare,
    ScreenShareAudio,
    /// Not declared (a client that sends no `sources`).
    #[default]
    Unknown,
}

impl TrackSource {
    pub fn is_screen(self) -> bool {
        matches!(
            self,
            TrackSource::ScreenShare | TrackSource::ScreenShareAudio
        )
    }
}

/// The sources of a client's m-lines, by mid, sent with its offer.
pub type TrackSources = BTreeMap<String, TrackSource>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Audio,
    Video,
}

/// What the control plane allows a participant to do, from its access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_publish_data: bool,
}

impl Default for Grants {
    fn default() -> Self {
        Self {
            can_publish: true,
            can_subscribe: true,
            can_publish_data: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub room_id: RoomId,
    pub participant_id: ParticipantId,
    /// Human-readable identity, echoed in events; not used for routing.
    pub identity: String,
    pub offer_sdp: String,
    #[serde(default)]
    pub grants: Grants,
    /// What the offer's m-lines carry, by mid (undeclared: `unknown`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: TrackSources,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    pub answer_sdp: String,
}

/// The client's answer to an SFU-initiated renegotiation offer
/// ([`SfuEvent::RenegotiationOffer`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerRequest {
    pub room_id: RoomId,
    pub participant_id: ParticipantId,
    pub answer_sdp: String,
}

/// A client-initiated renegotiation (e.g. it adds a camera track later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferRequest {
    pub room_id: RoomId,
    pub participant_id: ParticipantId,
    pub offer_sdp: String,
    /// As in [`JoinRequest::sources`]; mids not named keep what they had.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: TrackSources,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeRequest {
    pub room_id: RoomId,
    pub participant_id: ParticipantId,
    pub track_ids: Vec<TrackId>,
    /// Upper bound for video; ignored for audio.
    pub max_quality: VideoQuality,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsubscribeRequest {
    pub room_id: RoomId,
    pub participant_id: ParticipantId,
    pub track_ids: Vec<TrackId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetMuteRequest {
    pub room_id: RoomId,
    pub track_id: TrackId,
    pub muted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveParticipantRequest {
    pub room_id: RoomId,
    pub participant_id: ParticipantId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseRoomRequest {
    pub room_id: RoomId,
}

/// Every request of the control API in one enum, for a network form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SfuRequest {
    Join(JoinRequest),
    Answer(AnswerRequest),
    Offer(OfferRequest),
    Subscribe(SubscribeRequest),
    Unsubscribe(UnsubscribeRequest),
    SetMute(SetMuteRequest),
    RemoveParticipant(RemoveParticipantRequest),
    CloseRoom(CloseRoomRequest),
}

/// The reply to an [`SfuRequest`] in the network form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SfuResponse {
    /// For `join` and `offer`.
    Answer {
        answer_sdp: String,
    },
    Ok,
    Error {
        code: String,
        message: String,
    },
}

/// A track as announced to the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    pub track_id: TrackId,
    pub participant_id: ParticipantId,
    pub kind: TrackKind,
    /// Simulcast layers the publisher announced, lowest first; empty when
    /// the track is a single encoding.
    pub layers: Vec<VideoQuality>,
    pub muted: bool,
    #[serde(default)]
    pub source: TrackSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisconnectReason {
    /// `remove_participant` was called.
    Removed,
    /// The room was closed.
    RoomClosed,
    /// ICE never connected within the configured timeout, or consent expired.
    IceTimeout,
    /// ICE connected but DTLS did not complete within the configured timeout.
    DtlsTimeout,
    /// The peer closed the connection (DTLS close_notify or fatal error).
    PeerClosed,
    /// The SFU is shutting down.
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveSpeaker {
    pub participant_id: ParticipantId,
    pub track_id: TrackId,
    /// Smoothed loudness, 0.0 (silence) to 1.0 (0 dBov).
    pub level: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SfuEvent {
    TrackPublished {
        room_id: RoomId,
        track: TrackInfo,
    },
    TrackUnpublished {
        room_id: RoomId,
        participant_id: ParticipantId,
        track_id: TrackId,
    },
    TrackMuted {
        room_id: RoomId,
        track_id: TrackId,
        muted: bool,
    },
    ParticipantConnected {
        room_id: RoomId,
        participant_id: ParticipantId,
    },
    ParticipantDisconnected {
        room_id: RoomId,
        participant_id: ParticipantId,
        reason: DisconnectReason,
    },
    /// Loudest first; empty when nobody speaks.
    ActiveSpeakersChanged {
        room_id: RoomId,
        speakers: Vec<ActiveSpeaker>,
    },
    /// The simulcast layer a subscriber receives for a track changed.
    LayerChanged {
        room_id: RoomId,
        subscriber_id: ParticipantId,
        track_id: TrackId,
        quality: VideoQuality,
    },
    /// Dynacast: the layers of a track that at least one subscriber wants.
    /// The publisher may pause the others.
    WantedLayers {
        room_id: RoomId,
        participant_id: ParticipantId,
        track_id: TrackId,
        layers: Vec<VideoQuality>,
    },
    /// The SFU changed the participant's session (tracks added or removed);
    /// deliver the offer and return the answer via `handle_answer`.
    RenegotiationOffer {
        room_id: RoomId,
        participant_id: ParticipantId,
        offer_sdp: String,
    },
    /// The first media packet was forwarded to this participant (as a
    /// subscriber) in this session: media flows. Sent once per session; the
    /// signaling service measures join latency up to here.
    MediaStarted {
        room_id: RoomId,
        participant_id: ParticipantId,
    },
    /// Every media session is gone: the SFU behind the event stream is a
    /// new process (it restarted), or events were lost beyond replay. Not
    /// sent by the SFU: its remote client (signaling) raises it when the
    /// reopened stream says so (`event: reset`). Rooms tell their
    /// participants their media ended, so they join the media again.
    SessionsLost,
}

impl SfuEvent {
    pub fn room_id(&self) -> &str {
        match self {
            SfuEvent::TrackPublished { room_id, .. }
            | SfuEvent::TrackUnpublished { room_id, .. }
            | SfuEvent::TrackMuted { room_id, .. }
            | SfuEvent::ParticipantConnected { room_id, .. }
            | SfuEvent::ParticipantDisconnected { room_id, .. }
            | SfuEvent::ActiveSpeakersChanged { room_id, .. }
            | SfuEvent::LayerChanged { room_id, .. }
            | SfuEvent::WantedLayers { room_id, .. }
            | SfuEvent::RenegotiationOffer { room_id, .. }
            | SfuEvent::MediaStarted { room_id, .. } => room_id,
            SfuEvent::SessionsLost => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_orders_from_off_to_high() {
        assert!(VideoQuality::Off < VideoQuality::Low);
        assert!(VideoQuality::Medium < VideoQuality::High);
    }

    #[test]
    fn event_json_is_tagged() {
        let ev = SfuEvent::ParticipantConnected {
            room_id: "r".into(),
            participant_id: "p".into(),
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert!(
            json.contains("\"type\":\"participant_connected\""),
            "{json}"
        );
        let back: SfuEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
    }
}
