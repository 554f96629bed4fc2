//! Errors of the SFU's control API.

use crate::core::CoreError;

#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("binding UDP socket {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid SDP: {0}")]
    Sdp(String),
    #[error("negotiation failed: {0}")]
    Negotiation(String),
    #[error("room {0} is full")]
    RoomFull(String),
    #[error("participant {0} is already in the room")]
    DuplicateParticipant(String),
    #[error("unknown room {0}")]
    UnknownRoom(String),
    #[error("unknown participant {0}")]
    UnknownParticipant(String),
    #[error("no renegotiation offer is pending for this participant")]
    NoPendingOffer,
    #[error("not permitted by the participant's grants")]
    NotPermitted,
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("the SFU is overloaded or shutting down")]
    Unavailable,
}
