//! What goes into a [`super::state::RoomState`] and what comes out of it.
//!
//! Connections are named by id: the state never holds a socket, the actor
//! keeps the handles and executes what the state asks for. Port calls are
//! data too, numbered, so their results come back as inputs whenever the
//! network answers and the room keeps going meanwhile.

use std::time::Instant;

use convene_proto::ice::IceServer;
use convene_proto::sfu::{
    AnswerRequest, DisconnectReason, JoinRequest, OfferRequest, SetMuteRequest, SfuEvent,
    SubscribeRequest, UnsubscribeRequest,
};
use convene_proto::signaling::{ClientMessage, ErrorCode, ServerMessage, WaitingEntryInfo};
use uuid::Uuid;

use super::error::RoomError;
use crate::connection::Ending;
use crate::ports::{Admission, HallEvent, PortError};
use crate::room_bus::{MemberClaim, RoomEnvelope, RoomFrame};

/// Names one `Enter` so its answer finds the connection waiting for it.
pub(crate) type EnterId = u64;
/// Names one port call so its result finds what it was for.
pub(crate) type CallId = u64;

/// Everything that can happen to a room.
#[derive(Debug)]
pub(crate) enum RoomInput {
    /// A connection presents a verified token (room or waiting hall).
    Enter {
        enter: EnterId,
        conn: u64,
        ice_servers: Vec<IceServer>,
        admission: Admission,
        resume_token: Option<String>,
        /// When the join message arrived, for the join-latency histogram.
        started: Instant,
    },
    /// A message from an attached connection; `at_ms` is the wall-clock
    /// time it arrived, which chat and lobby messages carry.
    Client {
        conn: u64,
        msg: ClientMessage,
        at_ms: i64,
    },
    /// The connection's heartbeat arrived.
    Heartbeat {
        conn: u64,
    },
    /// The socket closed, broke or went silent.
    Disconnected {
        conn: u64,
        ending: Ending,
    },
    Sfu(SfuEvent),
    Hall(HallEvent),
    /// From this conference's actors on every node (this one included).
    Frame(RoomEnvelope),
    /// The other nodes' live participants, read for a member refresh.
    Members(Vec<MemberClaim>),
    /// A publish on the room bus failed; `conn` asked for it.
    BusFailed {
        conn: Option<u64>,
        error: String,
    },
    /// A port call finished.
    Done {
        call: CallId,
        result: Result<CallOutput, PortError>,
    },
    /// `poll_timeout` passed.
    Timeout,
}

/// Everything a room asks the outside world to do, in order.
#[derive(Debug, PartialEq)]
pub(crate) enum Effect {
    Send {
        conn: u64,
        msg: ServerMessage,
    },
    Close {
        conn: u64,
        code: u16,
        reason: String,
    },
    /// Waiters get the longer waiting-hall heartbeat timeout.
    SetWaiting {
        conn: u64,
        waiting: bool,
    },
    /// The answer to `RoomInput::Enter`.
    Entered {
        enter: EnterId,
        result: Result<(), RoomError>,
    },
    Bus(BusOp),
    /// Run outside the room; the result comes back as `RoomInput::Done`.
    Call {
        call: CallId,
        port: PortCall,
    },
    Metric(MetricUpdate),
}

/// Room-bus work, done in order by one task per room.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BusOp {
    /// `report` is told of a failure as an error frame.
    Publish {
        frame: RoomFrame,
        report: Option<u64>,
    },
    /// Room chat, numbered by the bus.
    PublishChat {
        frame: RoomFrame,
        report: u64,
    },
    Claim(Vec<convene_proto::signaling::ParticipantInfo>),
    Release(String),
    /// Renew these claims, then read the others' (`RoomInput::Members`).
    Refresh(Vec<convene_proto::signaling::ParticipantInfo>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PortCall {
    Media(MediaCall),
    Control(ControlCall),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MediaCall {
    Join(JoinRequest),
    Offer(OfferRequest),
    Answer(AnswerRequest),
    Subscribe(SubscribeRequest),
    Unsubscribe(UnsubscribeRequest),
    SetMute(SetMuteRequest),
    RemoveParticipant { participant_id: String },
    CloseRoom,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ControlCall {
    WaitingEntries,
    TouchWaiting {
        user: Uuid,
    },
    LeaveWaiting {
        user: Uuid,
    },
    Admit {
        moderator: Uuid,
        user: Uuid,
    },
    Deny {
        moderator: Uuid,
        user: Uuid,
        reason: String,
    },
    AdmitAll {
        moderator: Uuid,
    },
    MoveToWaiting {
        moderator: Uuid,
        user: Uuid,
    },
    RemoveParticipant {
        moderator: Uuid,
        user: Uuid,
    },
    EndConference {
        moderator: Uuid,
    },
    /// A room token for an admitted waiter, verified: `None` when the
    /// control plane refused its own token.
    AdmittedToken {
        user: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CallOutput {
    Done,
    /// The SFU's SDP answer.
    Answer(String),
    Entries(Vec<WaitingEntryInfo>),
    Position(Option<u32>),
    Token {
        token: String,
        admission: Option<Admission>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MetricUpdate {
    Participants(i64),
    WaitingEntries(i64),
    Admission(&'static str),
    Error(ErrorCode),
    MediaEnded(DisconnectReason),
    JoinLatency(f64),
}

/// The effects of one input, with the helpers the state's parts use.
#[derive(Debug, Default)]
pub(crate) struct Effects(pub Vec<Effect>);

impl Effects {
    pub fn send(&mut self, conn: u64, msg: ServerMessage) {
        self.0.push(Effect::Send { conn, msg });
    }

    pub fn close(&mut self, conn: u64, code: u16, reason: &str) {
        self.0.push(Effect::Close {
            conn,
            code,
            reason: reason.to_string(),
        });
    }

    pub fn bus(&mut self, op: BusOp) {
        self.0.push(Effect::Bus(op));
    }

    pub fn metric(&mut self, m: MetricUpdate) {
        self.0.push(Effect::Metric(m));
    }

    /// A refusal for the client on `conn`, counted by code.
    pub fn fail(&mut self, conn: u64, err: &RoomError) {
        self.metric(MetricUpdate::Error(err.code()));
        self.send(conn, err.to_message());
    }
}
