//! What the signaling service needs from the control plane and the SFU.
//!
//! Signaling runs either inside `convene up`, next to the control plane and
//! the SFU, or as its own process talking to them over the network. These
//! traits are that seam: the in-process implementations (in the `convene`
//! crate, beside `convene up`) wrap the control plane's `Control` and the
//! SFU's `SfuHandle`, the remote ones ([`crate::remote`]) call them over
//! HTTP. Either way the database stays the source of truth for the waiting
//! hall and the SFU for media.

use async_trait::async_trait;
use convene_proto::control::RoomClaims;
use convene_proto::sfu::{
    AnswerRequest, JoinRequest, OfferRequest, SetMuteRequest, SfuEvent, SubscribeRequest,
    UnsubscribeRequest,
};
use convene_proto::signaling::{ErrorCode, WaitingEntryInfo};
use futures::stream::BoxStream;
use uuid::Uuid;

/// Why a port call failed, mapped onto the client-facing error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("limit exceeded: {0}")]
    Limit(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl PortError {
    pub fn code(&self) -> ErrorCode {
        match self {
            PortError::Unauthorized(_) => ErrorCode::Unauthorized,
            PortError::Forbidden(_) => ErrorCode::Forbidden,
            PortError::NotFound(_) => ErrorCode::NotFound,
            PortError::Invalid(_) => ErrorCode::BadSdp,
            PortError::Limit(_) => ErrorCode::LimitExceeded,
            PortError::Unavailable(_) => ErrorCode::Internal,
        }
    }
}

/// A verified room or waiting-hall token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub conference_id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub moderator: bool,
    /// A waiting-hall token: the holder may only wait.
    pub waiting: bool,
    /// The token is past its expiry (accepted for a resume only).
    pub expired: bool,
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_publish_data: bool,
}

impl Admission {
    /// What verified claims admit to, judged now.
    pub fn from_claims_now(c: RoomClaims) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Self::from_claims(c, now)
    }

    /// What verified claims admit to, judged at `now_unix` (seconds).
    pub fn from_claims(c: RoomClaims, now_unix: i64) -> Self {
        Self {
            conference_id: c.conf,
            user_id: c.sub,
            name: c.name,
            moderator: c.grants.moderator,
            waiting: c.grants.waiting,
            can_publish: c.grants.can_publish,
            can_subscribe: c.grants.can_subscribe,
            can_publish_data: c.grants.can_publish_data,
            expired: c.exp <= now_unix,
        }
    }
}

/// Waiting-hall and conference changes, as the room actor needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HallEvent {
    /// The waiting list changed (someone knocked, left, was admitted or denied).
    WaitingChanged,
    Admitted {
        user_id: Uuid,
    },
    Denied {
        user_id: Uuid,
        reason: String,
    },
    MovedToWaiting {
        user_id: Uuid,
    },
    Removed {
        user_id: Uuid,
    },
    /// The user's moderator grant is now `moderator`.
    ModeratorChanged {
        user_id: Uuid,
        moderator: bool,
    },
    Ended,
}

#[async_trait]
pub trait ControlPort: Send + Sync + 'static {
    /// Checks a room token: signature, expiry, revocation and that the
    /// conference runs. With `resume`, an expired one is accepted and
    /// marked `expired`: the room takes it only to resume a live seat.
    async fn verify(&self, token: &str, resume: bool) -> Result<Admission, PortError>;
    /// The waiting list in queue order.
    async fn waiting_entries(&self, conference: Uuid) -> Result<Vec<WaitingEntryInfo>, PortError>;
    /// Records a waiter's heartbeat; returns its 1-based queue position, or
    /// `None` when it is no longer waiting.
    async fn touch_waiting(&self, conference: Uuid, user: Uuid) -> Result<Option<u32>, PortError>;
    /// The waiter went away for good.
    async fn leave_waiting(&self, conference: Uuid, user: Uuid) -> Result<(), PortError>;
    async fn admit(&self, moderator: Uuid, conference: Uuid, user: Uuid) -> Result<(), PortError>;
    async fn deny(
        &self,
        moderator: Uuid,
        conference: Uuid,
        user: Uuid,
        reason: &str,
    ) -> Result<(), PortError>;
    async fn admit_all(&self, moderator: Uuid, conference: Uuid) -> Result<(), PortError>;
    async fn move_to_waiting(
        &self,
        moderator: Uuid,
        conference: Uuid,
        user: Uuid,
    ) -> Result<(), PortError>;
    async fn remove_participant(
        &self,
        moderator: Uuid,
        conference: Uuid,
        user: Uuid,
    ) -> Result<(), PortError>;
    async fn end_conference(&self, moderator: Uuid, conference: Uuid) -> Result<(), PortError>;
    /// A room token for a user the control plane has admitted.
    async fn room_token(&self, conference: Uuid, user: Uuid) -> Result<String, PortError>;
    /// Changes to one conference, from whichever node made them.
    async fn events(&self, conference: Uuid) -> Result<BoxStream<'static, HallEvent>, PortError>;
}

#[async_trait]
pub trait MediaPort: Send + Sync + 'static {
    /// Creates the participant's session from its offer; returns the answer.
    async fn join(&self, req: JoinRequest) -> Result<String, PortError>;
    /// A client-initiated renegotiation; returns the answer.
    async fn offer(&self, req: OfferRequest) -> Result<String, PortError>;
    /// The client's answer to an SFU-initiated offer.
    async fn answer(&self, req: AnswerRequest) -> Result<(), PortError>;
    async fn subscribe(&self, req: SubscribeRequest) -> Result<(), PortError>;
    async fn unsubscribe(&self, req: UnsubscribeRequest) -> Result<(), PortError>;
    async fn set_mute(&self, req: SetMuteRequest) -> Result<(), PortError>;
    async fn remove_participant(
        &self,
        room_id: &str,
        participant_id: &str,
    ) -> Result<(), PortError>;
    async fn close_room(&self, room_id: &str) -> Result<(), PortError>;
    /// Every SFU event, for all rooms.
    fn events(&self) -> BoxStream<'static, SfuEvent>;
}

/// A chat the user belongs to, as the user channel needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSummary {
    pub chat_id: Uuid,
    /// `seq` of the newest message (0 when empty).
    pub last_seq: i64,
    pub members: Vec<Uuid>,
}

impl From<convene_proto::collab::Chat> for ChatSummary {
    fn from(chat: convene_proto::collab::Chat) -> Self {
        Self {
            chat_id: chat.id,
            last_seq: chat.last_seq,
            members: chat.members.iter().map(|m| m.user_id).collect(),
        }
    }
}

/// What the user-level channel (`hello`: chats, typing, presence) needs from
/// the control plane, whose database and chat bus are the source of truth.
#[async_trait]
pub trait UserPort: Send + Sync + 'static {
    /// Checks an access token; returns the user id.
    async fn authenticate(&self, access_token: &str) -> Result<Uuid, PortError>;
    /// Every chat of the user.
    async fn chats(&self, user: Uuid) -> Result<Vec<ChatSummary>, PortError>;
    /// One chat of the user (`NotFound` when not a member).
    async fn chat(&self, user: Uuid, chat: Uuid) -> Result<ChatSummary, PortError>;
    /// Messages with `seq > after_seq`, oldest first, at most `limit`.
    async fn messages_after(
        &self,
        user: Uuid,
        chat: Uuid,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<convene_proto::collab::ChatMessage>, PortError>;
    /// Publishes a transient event (typing, presence) to the chat's members
    /// on every node.
    async fn publish(&self, event: convene_proto::collab::ChatEvent) -> Result<(), PortError>;
    /// The chat's events, from whichever node produced them.
    fn events(&self, chat: Uuid) -> BoxStream<'static, convene_proto::collab::ChatEvent>;
}

impl HallEvent {
    /// What a room needs to know of a control-plane event, whichever port
    /// (in-process or remote) delivered it; `None` for events rooms ignore.
    pub fn from_conference(ev: convene_proto::events::ConferenceEvent) -> Option<HallEvent> {
        use convene_proto::events::ConferenceEvent as E;
        Some(match ev {
            E::WaitingJoined { .. } | E::WaitingLeft { .. } => HallEvent::WaitingChanged,
            E::WaitingAdmitted { user_id, .. } => HallEvent::Admitted { user_id },
            E::WaitingDenied {
                user_id, reason, ..
            } => HallEvent::Denied {
                user_id,
                reason: reason.unwrap_or_default(),
            },
            E::MovedToWaiting { user_id, .. } => HallEvent::MovedToWaiting { user_id },
            E::ParticipantRemoved { user_id, .. } => HallEvent::Removed { user_id },
            E::ConferenceEnded { .. } => HallEvent::Ended,
            E::ModeratorChanged {
                user_id, moderator, ..
            } => HallEvent::ModeratorChanged { user_id, moderator },
            // Moderator changes come one by one as `ModeratorChanged`, with
            // team admins accounted for; nothing else here concerns rooms.
            E::ConferenceUpdated { .. } => return None,
        })
    }
}
