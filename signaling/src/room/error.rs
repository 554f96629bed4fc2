//! Why a room refused a client's request.
//!
//! Every refusal is one variant; the wire code a client sees is decided in
//! [`RoomError::code`] only, so the same refusal cannot reach two clients
//! with two different codes.

use convene_proto::signaling::{ErrorCode, ServerMessage};

use crate::ports::PortError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RoomError {
    #[error("resume token unknown or expired; join again without it")]
    ResumeExpired,
    #[error("too many knocks; retry shortly")]
    TooManyKnocks,
    #[error("not waiting for this conference; ask to join again")]
    NoLongerWaiting,
    #[error("not waiting")]
    NotWaiting,
    #[error("waiting for a moderator to admit you")]
    WaitingOnly,
    #[error("too many lobby messages")]
    TooManyLobbyMessages,
    #[error("empty text")]
    EmptyText,
    #[error("text longer than {0} characters")]
    TextTooLong(usize),
    #[error("unknown participant")]
    UnknownSelf,
    #[error("gone")]
    Gone,
    #[error("moderators only")]
    ModeratorsOnly,
    #[error("no participant {0}")]
    NoParticipant(String),
    #[error("no such waiter")]
    NoSuchWaiter,
    #[error("no subscribe grant")]
    NoSubscribeGrant,
    #[error("no data grant")]
    NoDataGrant,
    #[error("no track {0} of yours")]
    NotYourTrack(String),
    #[error("already joined")]
    AlreadyJoined,
    #[error("not a room message")]
    NotRoomMessage,
    #[error("admitted, but the room token was refused; rejoin")]
    AdmissionRefused,
    #[error("room stopped")]
    Stopped,
    /// The room bus (in-process or Redis) refused a publish.
    #[error("{0}")]
    Bus(String),
    #[error(transparent)]
    Port(#[from] PortError),
}

impl RoomError {
    /// The one mapping from a refusal to its wire code.
    pub(crate) fn code(&self) -> ErrorCode {
        use RoomError::*;
        match self {
            ResumeExpired | NotWaiting | UnknownSelf | Gone | NoParticipant(_) | NoSuchWaiter
            | NotYourTrack(_) => ErrorCode::NotFound,
            TooManyKnocks | TooManyLobbyMessages => ErrorCode::RateLimited,
            NoLongerWaiting | WaitingOnly | ModeratorsOnly | NoSubscribeGrant | NoDataGrant => {
                ErrorCode::Forbidden
            }
            EmptyText | AlreadyJoined | NotRoomMessage => ErrorCode::BadMessage,
            TextTooLong(_) => ErrorCode::LimitExceeded,
            AdmissionRefused | Stopped | Bus(_) => ErrorCode::Internal,
            Port(e) => e.code(),
        }
    }

    pub(crate) fn to_message(&self) -> ServerMessage {
        ServerMessage::Error {
            code: self.code(),
            message: self.to_string(),
        }
    }

    /// The shape the connection task reports errors in.
    pub(crate) fn into_wire(self) -> (ErrorCode, String) {
        (self.code(), self.to_string())
    }
}
