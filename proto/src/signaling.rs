//! WebSocket signaling messages between browsers and the signaling service
//! (`/v1/ws`).
//!
//! Every frame is one JSON object whose `type` field names the message, in
//! `snake_case`. The first client frame must be [`ClientMessage::Join`] with a
//! room or waiting-hall token; anything else before it (but `ping`) is
//! answered with an `error` and ignored.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::collab::ChatMessage;
use crate::ice::IceServer;
pub use crate::sfu::{DisconnectReason, TrackInfo, TrackKind, VideoQuality};

/// A participant as other participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// Per-session id, distinct from the user id, so a user in two tabs is two
    /// participants.
    pub participant_id: String,
    pub user_id: Uuid,
    pub name: String,
    pub moderator: bool,
}

/// One waiting-hall entry as moderators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingEntryInfo {
    pub user_id: Uuid,
    pub name: String,
    /// 1-based position in the queue.
    pub position: u32,
    /// Unix milliseconds when the user first knocked.
    pub since_ms: i64,
}

/// An ICE candidate in the browser's `RTCIceCandidateInit` shape; `None` in
/// [`ClientMessage::Candidate`] means end of candidates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
}

/// Frames a client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Enter a conference (or its waiting hall) with a token from
    /// `POST /v1/conferences/{id}/join`; `resume_token` resumes a dropped
    /// session within the grace period instead of creating a new participant.
    Join {
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
    },
    /// Heartbeat; answered with `pong`.
    Ping,
    /// SDP offer from the client (initial publish or renegotiation), with
    /// what its m-lines carry by mid (`camera`, `microphone`,
    /// `screen_share`, `screen_share_audio`; undeclared: `unknown`).
    Offer {
        sdp: String,
        #[serde(default, skip_serializing_if = "crate::sfu::TrackSources::is_empty")]
        sources: crate::sfu::TrackSources,
    },
    /// SDP answer to an SFU-initiated offer.
    Answer { sdp: String },
    /// Trickled ICE candidate; `null` ends the candidates.
    Candidate { candidate: Option<IceCandidate> },
    /// Receive these tracks at no more than `max_quality`.
    Subscribe {
        track_ids: Vec<String>,
        #[serde(default = "default_quality")]
        max_quality: VideoQuality,
    },
    /// Stop receiving these tracks.
    Unsubscribe { track_ids: Vec<String> },
    /// Mute or unmute one of the sender's own tracks.
    Mute { track_id: String, muted: bool },
    /// Room chat.
    Chat { text: String },
    /// Waiting-hall chat: a waiter writes to the moderators (`to` absent); a
    /// moderator writes to one waiter (`to` = user id) or to all waiters.
    LobbyMessage {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Uuid>,
    },
    /// Moderator: let a waiter in.
    Admit { user_id: Uuid },
    /// Moderator: turn a waiter away.
    Deny {
        user_id: Uuid,
        #[serde(default)]
        reason: String,
    },
    /// Moderator: let every waiter in.
    AdmitAll,
    /// Moderator: send a participant back to the waiting hall.
    MoveToWaiting { participant_id: String },
    /// Moderator: remove a participant (their tokens are revoked).
    Remove { participant_id: String },
    /// Moderator: mute a participant's microphone (and camera if `video`).
    MuteParticipant {
        participant_id: String,
        #[serde(default)]
        video: bool,
    },
    /// Moderator: end the conference for everyone.
    EndConference,
    /// Leave the conference.
    Leave,
    /// Open the user-level channel (chats, presence) on this socket with an
    /// access token from `/v1/auth/login`. May come before or after `join`.
    Hello { access_token: String },
    /// Catch up on a chat: the server sends every message with a `seq` above
    /// `after_seq` (as `message_created`, in order), then live ones.
    Sync { chat_id: Uuid, after_seq: i64 },
    /// The user is typing in a chat (relayed to the other members).
    Typing { chat_id: Uuid },
}

fn default_quality() -> VideoQuality {
    VideoQuality::High
}

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The client is in the waiting hall at this 1-based position.
    Waiting {
        position: u32,
    },
    /// Moderators: the whole waiting list, sent on every change.
    WaitingUpdated {
        entries: Vec<WaitingEntryInfo>,
    },
    /// The waiter was admitted; the client proceeds on the same socket, the
    /// token is the room token it would use to reconnect.
    Admitted {
        token: String,
    },
    /// The waiter was turned away.
    Denied {
        reason: String,
    },
    /// The client is in the room.
    Joined {
        participant_id: String,
        resume_token: String,
        participants: Vec<ParticipantInfo>,
        tracks: Vec<TrackInfo>,
        ice_servers: Vec<IceServer>,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: String,
    },
    /// A participant's details changed (today: its moderator flag, when the
    /// control plane grants or revokes moderation). Sent to everyone in the
    /// room, the participant it names included; from then on moderator-only
    /// messages from it are accepted or refused accordingly.
    ParticipantUpdated {
        participant: ParticipantInfo,
    },
    TrackPublished {
        track: TrackInfo,
    },
    TrackUnpublished {
        track_id: String,
    },
    TrackMuted {
        track_id: String,
        muted: bool,
    },
    /// SFU-initiated offer (tracks came or went).
    Offer {
        sdp: String,
    },
    /// Answer to the client's offer.
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: Option<IceCandidate>,
    },
    /// A participant's media session on the SFU ended while it stays in the
    /// room (ICE or DTLS did not complete in time, consent expired, the peer
    /// closed, the SFU dropped it). Sent to everyone in the room, the
    /// participant it names included; its tracks are unpublished. That
    /// participant gets media back by sending `offer` from a new peer
    /// connection, which starts a new session as the first offer did.
    MediaEnded {
        participant_id: String,
        reason: DisconnectReason,
    },
    /// Loudest participants first.
    ActiveSpeakers {
        participant_ids: Vec<String>,
    },
    /// Room chat, stamped by the server; `seq` orders messages in the room.
    Chat {
        seq: u64,
        from: ParticipantInfo,
        text: String,
        at_ms: i64,
    },
    /// Waiting-hall chat.
    LobbyMessage {
        from_user_id: Uuid,
        from_name: String,
        text: String,
        at_ms: i64,
    },
    /// A moderator asked this client to mute.
    MuteRequested {
        video: bool,
    },
    /// The client was sent back to the waiting hall.
    MovedToWaiting,
    /// The client was removed by a moderator.
    Removed {
        reason: String,
    },
    ConferenceEnded,
    Error {
        code: ErrorCode,
        message: String,
    },
    Pong,
    /// Answer to `hello`: the user channel is open. `online` lists the
    /// members of the user's chats who are connected right now.
    Welcome {
        user_id: Uuid,
        online: Vec<Uuid>,
    },
    /// A chat message, delivered in `seq` order without gaps per chat.
    MessageCreated {
        chat_id: Uuid,
        message: ChatMessage,
    },
    /// A message changed; apply only if `version` is newer than what the
    /// client shows. Never sent before the message itself.
    MessageEdited {
        chat_id: Uuid,
        message_id: Uuid,
        seq: i64,
        version: i64,
        text: String,
    },
    ReadReceipt {
        chat_id: Uuid,
        user_id: Uuid,
        up_to_seq: i64,
    },
    Typing {
        chat_id: Uuid,
        user_id: Uuid,
    },
    Presence {
        user_id: Uuid,
        online: bool,
    },
    /// Someone joined one of the user's chats (or the user joined a chat).
    ChatMemberAdded {
        chat_id: Uuid,
        user_id: Uuid,
    },
    ChatMemberRemoved {
        chat_id: Uuid,
        user_id: Uuid,
    },
}

/// Stable error codes for [`ServerMessage::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not valid JSON or not a known message.
    BadMessage,
    /// A message that needs `join` first.
    NotJoined,
    /// Token invalid, expired or revoked.
    Unauthorized,
    /// The grants do not allow this.
    Forbidden,
    /// Unknown participant, track or user.
    NotFound,
    /// Too many messages; slow down.
    RateLimited,
    /// A limit was reached (room full, too many tracks, text too long).
    LimitExceeded,
    /// The SFU rejected the SDP.
    BadSdp,
    /// Something on the server side failed; the connection stays open.
    Internal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_use_snake_case_type_tags() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"subscribe","track_ids":["t1"],"max_quality":"low"}"#)
                .unwrap();
        assert_eq!(
            m,
            ClientMessage::Subscribe {
                track_ids: vec!["t1".into()],
                max_quality: VideoQuality::Low
            }
        );
        let m: ClientMessage = serde_json::from_str(r#"{"type":"admit_all"}"#).unwrap();
        assert_eq!(m, ClientMessage::AdmitAll);
        let v = serde_json::to_value(ServerMessage::Waiting { position: 3 }).unwrap();
        assert_eq!(v, serde_json::json!({"type": "waiting", "position": 3}));
    }

    #[test]
    fn unknown_types_and_untagged_frames_are_rejected() {
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"explode"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"admit"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"token":"t"}"#).is_err());
    }

    #[test]
    fn media_ended_names_the_participant_and_the_reason() {
        let v = serde_json::to_value(ServerMessage::MediaEnded {
            participant_id: "p-4f1c".into(),
            reason: DisconnectReason::IceTimeout,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "media_ended", "participant_id": "p-4f1c", "reason": "ice_timeout"})
        );
    }

    #[test]
    fn end_of_candidates_is_null() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"candidate","candidate":null}"#).unwrap();
        assert_eq!(m, ClientMessage::Candidate { candidate: None });
    }
}
