//! The room as a state machine: inputs and the time in, effects out.
//!
//! Nothing here awaits, reads a clock or touches a socket, so every
//! decision of the room can be replayed in a unit test on a virtual clock.
//! Port calls leave as [`Effect::Call`] and come back as
//! [`RoomInput::Done`]; meanwhile the room keeps taking inputs. The parts
//! live beside this file: `hall.rs` (waiting hall), `media.rs` (SDP, tracks,
//! SFU events), `moderation.rs`, `cluster.rs` (other nodes).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_proto::ice::IceServer;
use convene_proto::sfu::{DisconnectReason, TrackInfo, TrackSources};
use convene_proto::signaling::{ClientMessage, ParticipantInfo, ServerMessage, WaitingEntryInfo};
use uuid::Uuid;

use super::effects::{
    BusOp, CallOutput, Effect, Effects, EnterId, MediaCall, MetricUpdate, PortCall, RoomInput,
};
use super::error::RoomError;
use super::lanes::{Lane, Lanes};
use crate::config::SignalingConfig;
use crate::connection::Ending;
use crate::ports::{Admission, HallEvent, PortError};
use crate::ratelimit::TokenBucket;
use crate::room_bus::RoomFrame;

pub(crate) struct Participant {
    pub info: ParticipantInfo,
    pub admission: Admission,
    pub conn: Option<u64>,
    pub resume_token: String,
    /// When the socket dropped; the participant is removed after the grace.
    pub detached_at: Option<Instant>,
    /// The SFU session exists (first offer answered).
    pub media_joined: bool,
    /// A join is out at the SFU: leaving must remove the session it makes.
    pub joining: bool,
    /// Why the last media session ended under this participant, until a new
    /// one starts; told again on resume, since it may have happened while
    /// the socket was away.
    pub media_lost: Option<DisconnectReason>,
    /// Join time, until the first media packet reaches the participant.
    pub awaiting_media: Option<Instant>,
    pub lobby_bucket: TokenBucket,
}

pub(crate) struct Waiter {
    pub admission: Admission,
    pub conn: Option<u64>,
    pub detached_at: Option<Instant>,
    pub last_touch: Instant,
    pub lobby_bucket: TokenBucket,
    /// The position this waiter's socket was last told.
    pub shown_position: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Member {
    Participant(String),
    Waiter(Uuid),
    /// Between two states while a port call decides (knocking, admitted,
    /// moved back to the hall): its inputs wait until the call returns,
    /// as they waited behind the call when the room awaited it.
    Pending(Uuid),
}

/// What a node needs to know about the other nodes serving this room.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    /// Several nodes share the room over Redis.
    pub shared: bool,
    pub node: String,
    /// How often member claims are renewed and the others' read.
    pub refresh_every: Duration,
}

/// A job on a lane; an offer picks join or renegotiation when it starts,
/// since an earlier offer on the lane may have created the session.
// Jobs are few and short-lived (one per pending port call), so boxing the
// large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Job {
    Call(PortCall, Then),
    Offer {
        pid: String,
        sdp: String,
        sources: TrackSources,
    },
}

/// What a port call's result is for.
#[derive(Debug)]
pub(crate) enum Then {
    /// Nobody waits for the result; a failure is logged.
    Log(&'static str),
    /// A failure goes to this connection as an error frame.
    Report(u64),
    /// The SDP answer for a participant (`joining`: its first session).
    Answer { pid: String, joining: bool },
    /// A moderator's decision, counted by outcome when it succeeds.
    Decision {
        conn: u64,
        outcome: Option<&'static str>,
    },
    /// The waiting list; `show_to` are moderators' sockets that just
    /// arrived and are sent the list even when it did not change.
    WaitingList { show_to: Vec<u64> },
    /// A waiter left; the list is read again once that is committed.
    RefreshHall,
    /// A waiter's knock (or a participant moved back to the hall) got its
    /// position, or was refused.
    Touched {
        conn: u64,
        admission: Admission,
        enter: Option<EnterId>,
    },
    /// An admitted waiter's room token.
    Admitted { conn: u64 },
    /// A moderator's lobby message to a waiter that may wait on another
    /// node, sent once the list shows it waits.
    LobbyTo {
        conn: u64,
        user: Uuid,
        frame: RoomFrame,
    },
}

pub(crate) struct RoomState {
    pub(super) conference: Uuid,
    pub(super) room_id: String,
    pub(super) config: Arc<SignalingConfig>,
    pub(super) cluster: Cluster,
    pub(super) participants: HashMap<String, Participant>,
    pub(super) waiters: HashMap<Uuid, Waiter>,
    /// Which participant or waiter a connection speaks for.
    pub(super) conns: HashMap<u64, Member>,
    /// Each connection's ICE servers (TURN credentials name its user).
    pub(super) ice: HashMap<u64, Vec<IceServer>>,
    pub(super) tracks: HashMap<String, TrackInfo>,
    /// Participants connected to other signaling nodes.
    pub(super) remote: HashMap<String, ParticipantInfo>,
    pub(super) last_refresh: Instant,
    /// While a member read is out: remote participants frames changed
    /// since, whom the (older) read must not contradict.
    pub(super) refresh_touched: Option<HashSet<String>>,
    pub(super) knocks: TokenBucket,
    /// This room's share of the waiting-entries gauge.
    pub(super) waiting_seen: i64,
    /// The waiting list moderators were last sent.
    pub(super) shown_entries: Option<Vec<WaitingEntryInfo>>,
    pub(super) lanes: Lanes<Job, Then>,
    /// Inputs of `Member::Pending` connections, replayed in order.
    pub(super) held_inputs: HashMap<u64, Vec<RoomInput>>,
    /// Hall events about a user whose transition is out, replayed in order.
    pub(super) held_hall: Vec<HallEvent>,
}

impl RoomState {
    pub(crate) fn new(
        conference: Uuid,
        config: Arc<SignalingConfig>,
        cluster: Cluster,
        now: Instant,
    ) -> Self {
        let knocks = TokenBucket::new(
            f64::from(config.knocks_per_sec),
            config.knocks_per_sec.max(1),
            now,
        );
        Self {
            conference,
            room_id: conference.to_string(),
            config,
            cluster,
            participants: HashMap::new(),
            waiters: HashMap::new(),
            conns: HashMap::new(),
            ice: HashMap::new(),
            tracks: HashMap::new(),
            remote: HashMap::new(),
            last_refresh: now,
            refresh_touched: None,
            knocks,
            waiting_seen: 0,
            shown_entries: None,
            lanes: Lanes::default(),
            held_inputs: HashMap::new(),
            held_hall: Vec::new(),
        }
    }

    /// The other nodes' participants known when the actor started.
    pub(crate) fn seed_remote(&mut self, members: Vec<ParticipantInfo>) {
        for m in members {
            self.remote.insert(m.participant_id.clone(), m);
        }
    }

    /// Nobody is left: the actor may stop taking new members.
    pub(crate) fn is_empty(&self) -> bool {
        self.participants.is_empty() && self.waiters.is_empty() && self.conns.is_empty()
    }

    /// Empty and no port call queued or out: nothing more will happen.
    pub(crate) fn is_idle(&self) -> bool {
        self.is_empty() && self.lanes.is_idle()
    }

    #[cfg(test)]
    pub(crate) fn calls_in_flight(&self) -> usize {
        self.lanes.in_flight()
    }

    /// This room's share of the waiting-entries gauge, to give back on stop.
    pub(crate) fn waiting_seen(&self) -> i64 {
        self.waiting_seen
    }

    /// When the room next needs `RoomInput::Timeout`.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let grace = self.config.resume_grace();
        let waiting = self.config.waiting_heartbeat_timeout();
        let participants = self
            .participants
            .values()
            .filter_map(|p| p.detached_at.map(|t| t + grace));
        let waiters = self
            .waiters
            .values()
            .filter_map(|w| w.detached_at.map(|t| t + waiting));
        let refresh = self
            .cluster
            .shared
            .then(|| self.last_refresh + self.cluster.refresh_every);
        participants.chain(waiters).chain(refresh).min()
    }

    pub(crate) fn apply(&mut self, input: RoomInput, now: Instant) -> Vec<Effect> {
        let mut fx = Effects::default();
        self.apply_into(input, now, &mut fx);
        fx.0
    }

    pub(super) fn apply_into(&mut self, input: RoomInput, now: Instant, fx: &mut Effects) {
        match input {
            RoomInput::Enter {
                enter,
                conn,
                ice_servers,
                admission,
                resume_token,
                started,
            } => {
                self.ice.insert(conn, ice_servers);
                if let Err(e) = self.enter(enter, conn, admission, resume_token, started, now, fx) {
                    self.ice.remove(&conn);
                    fx.0.push(Effect::Entered {
                        enter,
                        result: Err(e),
                    });
                }
            }
            RoomInput::Client { conn, .. }
            | RoomInput::Heartbeat { conn }
            | RoomInput::Disconnected { conn, .. }
                if matches!(self.conns.get(&conn), Some(Member::Pending(_))) =>
            {
                self.held_inputs.entry(conn).or_default().push(input);
            }
            RoomInput::Client { conn, msg, at_ms } => self.client(conn, msg, at_ms, now, fx),
            RoomInput::Heartbeat { conn } => self.heartbeat(conn, now, fx),
            RoomInput::Disconnected { conn, ending } => {
                self.disconnected(conn, ending, now, fx);
                self.ice.remove(&conn);
            }
            RoomInput::Sfu(ev) => self.sfu_event(ev, now, fx),
            RoomInput::Hall(ev) => self.hall_event(ev, now, fx),
            RoomInput::Frame(env) => self.frame(env, fx),
            RoomInput::Members(live) => self.members(live, fx),
            RoomInput::BusFailed { conn, error } => match conn {
                Some(c) => fx.fail(c, &RoomError::Bus(error)),
                None => {
                    tracing::warn!(conference = %self.conference, %error, "room bus publish failed")
                }
            },
            RoomInput::Done { call, result } => self.done(call, result, now, fx),
            RoomInput::Timeout => self.timeout(now, fx),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn enter(
        &mut self,
        enter: EnterId,
        conn: u64,
        admission: Admission,
        resume_token: Option<String>,
        started: Instant,
        now: Instant,
        fx: &mut Effects,
    ) -> Result<(), RoomError> {
        if admission.expired && (admission.waiting || resume_token.is_none()) {
            // Accepted past its expiry only to resume a live seat.
            return Err(RoomError::Port(PortError::Unauthorized(
                "token has expired".into(),
            )));
        }
        if admission.waiting {
            // Answered when the control plane has the knock.
            return self.knock(conn, admission, Some(enter), now, fx);
        }
        // A resume within the grace period re-attaches the same participant.
        if let Some(token) = resume_token {
            let pid = self
                .participants
                .iter()
                .find(|(_, p)| p.resume_token == token && p.admission.user_id == admission.user_id)
                .map(|(id, _)| id.clone())
                .ok_or(RoomError::ResumeExpired)?;
            self.resume(&pid, conn, fx);
            // The token was verified just now: its grant is the current one,
            // should an event about it have been missed meanwhile.
            self.set_moderator(admission.user_id, admission.moderator, fx);
        } else {
            self.join_room(conn, admission, started, now, fx);
        }
        fx.0.push(Effect::Entered {
            enter,
            result: Ok(()),
        });
        Ok(())
    }

    fn resume(&mut self, pid: &str, conn: u64, fx: &mut Effects) {
        let p = self.participants.get_mut(pid).expect("resumed participant");
        if let Some(old) = p.conn.replace(conn) {
            self.conns.remove(&old);
            fx.close(old, 4000, "resumed elsewhere");
        }
        p.detached_at = None;
        let (lost, moderator) = (p.media_lost, p.admission.moderator);
        self.conns
            .insert(conn, Member::Participant(pid.to_string()));
        self.send_joined(pid, fx);
        if let Some(reason) = lost {
            fx.send(
                conn,
                ServerMessage::MediaEnded {
                    participant_id: pid.to_string(),
                    reason,
                },
            );
        }
        if moderator {
            // Changes while the socket was away were not seen.
            self.show_waiting_to(conn, fx);
        }
    }

    pub(super) fn join_room(
        &mut self,
        conn: u64,
        admission: Admission,
        started: Instant,
        now: Instant,
        fx: &mut Effects,
    ) {
        let pid = format!("p-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let info = ParticipantInfo {
            participant_id: pid.clone(),
            user_id: admission.user_id,
            name: admission.name.clone(),
            moderator: admission.moderator,
        };
        let moderator = admission.moderator;
        let participant = Participant {
            info: info.clone(),
            admission,
            conn: Some(conn),
            resume_token: Uuid::new_v4().simple().to_string(),
            detached_at: None,
            media_joined: false,
            joining: false,
            media_lost: None,
            awaiting_media: Some(started),
            lobby_bucket: TokenBucket::per_minute(self.config.lobby_messages_per_min, now),
        };
        self.participants.insert(pid.clone(), participant);
        self.conns.insert(conn, Member::Participant(pid.clone()));
        fx.0.push(Effect::SetWaiting {
            conn,
            waiting: false,
        });
        self.send_joined(&pid, fx);
        self.broadcast_except(
            &pid,
            ServerMessage::ParticipantJoined {
                participant: info.clone(),
            },
            fx,
        );
        fx.metric(MetricUpdate::Participants(1));
        if self.cluster.shared {
            fx.bus(BusOp::Claim(vec![info.clone()]));
            fx.bus(BusOp::Publish {
                frame: RoomFrame::Joined { participant: info },
                report: None,
            });
        }
        if moderator {
            self.show_waiting_to(conn, fx);
        }
    }

    fn send_joined(&self, pid: &str, fx: &mut Effects) {
        let Some(p) = self.participants.get(pid) else {
            return;
        };
        let Some(conn) = p.conn else { return };
        let participants = self
            .participants
            .values()
            .filter(|o| o.info.participant_id != pid)
            .map(|o| o.info.clone())
            .chain(self.remote.values().cloned())
            .collect();
        fx.send(
            conn,
            ServerMessage::Joined {
                participant_id: pid.to_string(),
                resume_token: p.resume_token.clone(),
                participants,
                tracks: self.tracks.values().cloned().collect(),
                ice_servers: self.ice.get(&conn).cloned().unwrap_or_default(),
            },
        );
    }

    pub(super) fn broadcast_except(&self, except: &str, msg: ServerMessage, fx: &mut Effects) {
        for (pid, p) in &self.participants {
            if pid != except {
                if let Some(c) = p.conn {
                    fx.send(c, msg.clone());
                }
            }
        }
    }

    pub(super) fn broadcast(&self, msg: ServerMessage, fx: &mut Effects) {
        self.broadcast_except("", msg, fx);
    }

    pub(super) fn send_to_moderators(&self, msg: ServerMessage, fx: &mut Effects) {
        for p in self.participants.values() {
            if p.admission.moderator {
                if let Some(c) = p.conn {
                    fx.send(c, msg.clone());
                }
            }
        }
    }

    pub(super) fn conn_of(&self, pid: &str) -> Option<u64> {
        self.participants.get(pid).and_then(|p| p.conn)
    }

    fn client(
        &mut self,
        conn: u64,
        msg: ClientMessage,
        at_ms: i64,
        now: Instant,
        fx: &mut Effects,
    ) {
        let Some(member) = self.conns.get(&conn).cloned() else {
            return;
        };
        let result = match member {
            Member::Waiter(uid) => self.waiter_message(uid, conn, msg, at_ms, now, fx),
            Member::Participant(pid) => self.participant_message(&pid, conn, msg, at_ms, now, fx),
            Member::Pending(_) => Ok(()),
        };
        if let Err(e) = result {
            fx.fail(conn, &e);
        }
    }

    fn participant_message(
        &mut self,
        pid: &str,
        conn: u64,
        msg: ClientMessage,
        at_ms: i64,
        now: Instant,
        fx: &mut Effects,
    ) -> Result<(), RoomError> {
        match msg {
            ClientMessage::Offer { .. }
            | ClientMessage::Answer { .. }
            | ClientMessage::Candidate { .. }
            | ClientMessage::Subscribe { .. }
            | ClientMessage::Unsubscribe { .. }
            | ClientMessage::Mute { .. } => self.media_message(pid, conn, msg, fx),
            ClientMessage::Chat { text } => {
                let text = self.checked_text(text)?;
                let p = self.participants.get(pid).ok_or(RoomError::Gone)?;
                if !p.admission.can_publish_data {
                    return Err(RoomError::NoDataGrant);
                }
                // Delivered when it comes back from the bus, numbered, so
                // every node shows the room's chat in one order.
                let frame = RoomFrame::Chat {
                    from: p.info.clone(),
                    text,
                    at_ms,
                };
                fx.bus(BusOp::PublishChat {
                    frame,
                    report: conn,
                });
                Ok(())
            }
            ClientMessage::LobbyMessage { .. }
            | ClientMessage::Admit { .. }
            | ClientMessage::Deny { .. }
            | ClientMessage::AdmitAll
            | ClientMessage::MoveToWaiting { .. }
            | ClientMessage::Remove { .. }
            | ClientMessage::MuteParticipant { .. }
            | ClientMessage::EndConference => {
                self.moderator_message(pid, conn, msg, at_ms, now, fx)
            }
            ClientMessage::Leave => {
                self.remove_participant(pid, None, fx);
                Ok(())
            }
            ClientMessage::Join { .. } => Err(RoomError::AlreadyJoined),
            // Handled by the connection's user channel, never routed here.
            ClientMessage::Hello { .. }
            | ClientMessage::Sync { .. }
            | ClientMessage::Typing { .. } => Err(RoomError::NotRoomMessage),
            ClientMessage::Ping => Ok(()),
        }
    }

    pub(super) fn checked_text(&self, text: String) -> Result<String, RoomError> {
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err(RoomError::EmptyText);
        }
        if text.chars().count() > self.config.max_chat_chars {
            return Err(RoomError::TextTooLong(self.config.max_chat_chars));
        }
        Ok(text)
    }

    /// Takes a participant out of the room; `notice` is sent to it first.
    pub(super) fn remove_participant(
        &mut self,
        pid: &str,
        notice: Option<ServerMessage>,
        fx: &mut Effects,
    ) {
        let Some(p) = self.participants.remove(pid) else {
            return;
        };
        if let Some(c) = p.conn {
            self.conns.remove(&c);
            if let Some(n) = notice {
                fx.send(c, n);
            }
            fx.close(c, 1000, "left the room");
        }
        if p.media_joined || p.joining {
            // Behind the participant's SDP calls, so a join still out at the
            // SFU is undone too.
            self.call(
                Lane::Media(pid.to_string()),
                PortCall::Media(MediaCall::RemoveParticipant {
                    participant_id: pid.to_string(),
                }),
                Then::Log("remove media session"),
                fx,
            );
        }
        self.tracks.retain(|_, t| t.participant_id != pid);
        fx.metric(MetricUpdate::Participants(-1));
        self.broadcast(
            ServerMessage::ParticipantLeft {
                participant_id: pid.to_string(),
            },
            fx,
        );
        if self.cluster.shared {
            fx.bus(BusOp::Release(pid.to_string()));
            fx.bus(BusOp::Publish {
                frame: RoomFrame::Left {
                    participant_id: pid.to_string(),
                },
                report: None,
            });
        }
    }

    fn disconnected(&mut self, conn: u64, ending: Ending, now: Instant, fx: &mut Effects) {
        let Some(member) = self.conns.remove(&conn) else {
            return;
        };
        match member {
            // A socket that broke or went silent keeps its participant for
            // the resume grace; only a deliberate close leaves at once.
            Member::Participant(pid) => {
                if ending == Ending::Clean {
                    self.remove_participant(&pid, None, fx);
                } else if let Some(p) = self.participants.get_mut(&pid) {
                    p.conn = None;
                    p.detached_at = Some(now);
                }
            }
            // A waiter whose socket went away, cleanly or not, may come back
            // and keeps its place until the waiting heartbeat runs out.
            Member::Waiter(uid) => {
                if let Some(w) = self.waiters.get_mut(&uid) {
                    w.conn = None;
                    w.detached_at = Some(now);
                }
            }
            Member::Pending(_) => unreachable!("pending connections' inputs are held"),
        }
    }

    fn timeout(&mut self, now: Instant, fx: &mut Effects) {
        if self.cluster.shared
            && now.duration_since(self.last_refresh) >= self.cluster.refresh_every
        {
            self.last_refresh = now;
            self.refresh_members(fx);
        }
        let grace = self.config.resume_grace();
        let expired: Vec<String> = self
            .participants
            .iter()
            .filter(|(_, p)| {
                p.detached_at
                    .is_some_and(|t| now.duration_since(t) >= grace)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for pid in expired {
            self.remove_participant(&pid, None, fx);
        }
        self.expire_waiters(now, fx);
    }

    /// Queues a port call on its lane and starts it if the lane is free.
    pub(super) fn call(&mut self, lane: Lane, port: PortCall, then: Then, fx: &mut Effects) {
        self.lanes.push(lane.clone(), Job::Call(port, then));
        self.pump(&lane, fx);
    }

    /// Starts the lane's next job unless one is out.
    pub(super) fn pump(&mut self, lane: &Lane, fx: &mut Effects) {
        while let Some(job) = self.lanes.take_next(lane) {
            let (port, then) = match job {
                Job::Call(port, then) => (port, then),
                Job::Offer { pid, sdp, sources } => match self.offer_call(&pid, sdp, sources) {
                    Some(c) => c,
                    // Left before its turn: nothing to negotiate.
                    None => continue,
                },
            };
            let call = self.lanes.start(lane.clone(), then);
            fx.0.push(Effect::Call { call, port });
            return;
        }
    }

    fn done(
        &mut self,
        call: u64,
        result: Result<CallOutput, PortError>,
        now: Instant,
        fx: &mut Effects,
    ) {
        let Some((lane, then)) = self.lanes.finish(call) else {
            return;
        };
        match then {
            Then::Log(what) => {
                if let Err(e) = result {
                    tracing::debug!(conference = %self.conference, error = %e, "{what} failed");
                }
            }
            Then::Report(conn)
            | Then::Decision {
                conn,
                outcome: None,
            } => {
                if let Err(e) = result {
                    fx.fail(conn, &e.into());
                }
            }
            Then::Decision {
                conn,
                outcome: Some(outcome),
            } => match result {
                Ok(_) => fx.metric(MetricUpdate::Admission(outcome)),
                Err(e) => fx.fail(conn, &e.into()),
            },
            Then::Answer { pid, joining } => self.answered(&pid, joining, result, fx),
            Then::WaitingList { show_to } => self.waiting_listed(result, show_to, fx),
            Then::RefreshHall => self.refresh_waiting(fx),
            Then::Touched {
                conn,
                admission,
                enter,
            } => self.touched(conn, admission, enter, result, now, fx),
            Then::Admitted { conn } => self.admitted(conn, result, now, fx),
            Then::LobbyTo { conn, user, frame } => {
                self.lobby_to_listed(conn, user, frame, result, fx)
            }
        }
        self.pump(&lane, fx);
    }

    /// A pending connection is settled: what it sent meanwhile, and hall
    /// events about users no longer pending, are applied now.
    pub(super) fn release(&mut self, conn: u64, now: Instant, fx: &mut Effects) {
        if let Some(inputs) = self.held_inputs.remove(&conn) {
            for input in inputs {
                self.apply_into(input, now, fx);
            }
        }
        let held = std::mem::take(&mut self.held_hall);
        for ev in held {
            self.hall_event(ev, now, fx);
        }
    }

    /// Whether a hall event must wait for a transition still out.
    pub(super) fn is_pending(&self, user: Uuid) -> bool {
        self.conns
            .values()
            .any(|m| matches!(m, Member::Pending(u) if *u == user))
    }

    pub(super) fn any_pending(&self) -> bool {
        self.conns.values().any(|m| matches!(m, Member::Pending(_)))
    }
}
