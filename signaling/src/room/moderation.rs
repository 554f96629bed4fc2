//! What moderators ask for: waiting-hall decisions, moving and removing
//! participants, muting them, ending the conference, lobby messages.
//!
//! Decisions go to the control plane, which commits them and publishes the
//! outcome as a conference event; the room acts on that event (in
//! `hall.rs`), not on the call's success, so a decision made over REST or
//! on another node reaches everyone the same way. One moderator's calls
//! run in order on its own lane.

use std::time::Instant;

use convene_proto::sfu::{SetMuteRequest, TrackKind};
use convene_proto::signaling::{ClientMessage, ServerMessage};
use uuid::Uuid;

use super::effects::{BusOp, CallOutput, ControlCall, Effects, MediaCall, PortCall};
use super::error::RoomError;
use super::lanes::Lane;
use super::state::{RoomState, Then};
use crate::ports::PortError;
use crate::room_bus::{LobbyTo, RoomFrame};

impl RoomState {
    pub(super) fn moderator_message(
        &mut self,
        pid: &str,
        conn: u64,
        msg: ClientMessage,
        at_ms: i64,
        now: Instant,
        fx: &mut Effects,
    ) -> Result<(), RoomError> {
        let (call, outcome) = match msg {
            ClientMessage::LobbyMessage { text, to } => {
                return self.moderator_lobby(pid, conn, text, to, at_ms, now, fx)
            }
            ClientMessage::MuteParticipant {
                participant_id,
                video,
            } => return self.mute_participant(pid, conn, participant_id, video, fx),
            ClientMessage::Admit { user_id } => {
                let moderator = self.require_moderator(pid)?;
                let call = ControlCall::Admit {
                    moderator,
                    user: user_id,
                };
                (call, Some("admitted"))
            }
            ClientMessage::Deny { user_id, reason } => {
                let moderator = self.require_moderator(pid)?;
                let call = ControlCall::Deny {
                    moderator,
                    user: user_id,
                    reason,
                };
                (call, Some("denied"))
            }
            ClientMessage::AdmitAll => {
                let moderator = self.require_moderator(pid)?;
                (ControlCall::AdmitAll { moderator }, Some("admitted_all"))
            }
            ClientMessage::MoveToWaiting { participant_id } => {
                let moderator = self.require_moderator(pid)?;
                let user = self.user_of(&participant_id)?;
                (ControlCall::MoveToWaiting { moderator, user }, None)
            }
            ClientMessage::Remove { participant_id } => {
                let moderator = self.require_moderator(pid)?;
                let user = self.user_of(&participant_id)?;
                (ControlCall::RemoveParticipant { moderator, user }, None)
            }
            ClientMessage::EndConference => {
                let moderator = self.require_moderator(pid)?;
                (ControlCall::EndConference { moderator }, None)
            }
            _ => unreachable!("only moderation messages are routed here"),
        };
        self.call(
            Lane::Moderator(pid.to_string()),
            PortCall::Control(call),
            Then::Decision { conn, outcome },
            fx,
        );
        Ok(())
    }

    /// The control plane granted or revoked a user's moderation. The flag
    /// lives on the participant, so the next moderator-only message is
    /// judged by it; everyone is told, the participant included. Remote
    /// participants are updated too: every node sees the event, and the
    /// owning node re-claims with the new flag for nodes that read later.
    pub(super) fn set_moderator(&mut self, user: Uuid, moderator: bool, fx: &mut Effects) {
        let (mut changed, mut shown) = (Vec::new(), Vec::new());
        for pid in self.participants_of(user) {
            let Some(p) = self.participants.get_mut(&pid) else {
                continue;
            };
            if p.admission.moderator == moderator {
                continue;
            }
            p.admission.moderator = moderator;
            p.info.moderator = moderator;
            tracing::info!(
                conference = %self.conference, participant = %pid, moderator,
                "moderator grant changed"
            );
            changed.push(p.info.clone());
            if let Some(conn) = p.conn.filter(|_| moderator) {
                shown.push(conn);
            }
        }
        // A new moderator sees the waiting list at once, as on join.
        for conn in shown {
            self.show_waiting_to(conn, fx);
        }
        if self.cluster.shared && !changed.is_empty() {
            fx.bus(BusOp::Claim(changed.clone()));
        }
        for info in self.remote.values_mut() {
            if info.user_id == user && info.moderator != moderator {
                info.moderator = moderator;
                changed.push(info.clone());
            }
        }
        for participant in changed {
            self.broadcast(ServerMessage::ParticipantUpdated { participant }, fx);
        }
    }

    fn require_moderator(&self, pid: &str) -> Result<Uuid, RoomError> {
        let p = self.participants.get(pid).ok_or(RoomError::UnknownSelf)?;
        if p.admission.moderator {
            Ok(p.admission.user_id)
        } else {
            Err(RoomError::ModeratorsOnly)
        }
    }

    fn user_of(&self, pid: &str) -> Result<Uuid, RoomError> {
        self.participants
            .get(pid)
            .map(|p| p.admission.user_id)
            .or_else(|| self.remote.get(pid).map(|r| r.user_id))
            .ok_or_else(|| RoomError::NoParticipant(pid.to_string()))
    }

    #[allow(clippy::too_many_arguments)]
    fn moderator_lobby(
        &mut self,
        pid: &str,
        conn: u64,
        text: String,
        to: Option<Uuid>,
        at_ms: i64,
        now: Instant,
        fx: &mut Effects,
    ) -> Result<(), RoomError> {
        let text = self.checked_text(text)?;
        let moderator = self.require_moderator(pid)?;
        let p = self.participants.get_mut(pid).ok_or(RoomError::Gone)?;
        p.lobby_bucket
            .try_take(now)
            .map_err(|_| RoomError::TooManyLobbyMessages)?;
        let from_name = p.info.name.clone();
        let frame = |to| RoomFrame::Lobby {
            to,
            from_user_id: moderator,
            from_name,
            text,
            at_ms,
        };
        match to {
            None => fx.bus(BusOp::Publish {
                frame: frame(LobbyTo::AllWaiters),
                report: Some(conn),
            }),
            Some(user_id) if self.waiters.contains_key(&user_id) => fx.bus(BusOp::Publish {
                frame: frame(LobbyTo::Waiter { user_id }),
                report: Some(conn),
            }),
            // The waiter may wait on another node: the list decides.
            Some(user_id) => self.call(
                Lane::Moderator(pid.to_string()),
                PortCall::Control(ControlCall::WaitingEntries),
                Then::LobbyTo {
                    conn,
                    user: user_id,
                    frame: frame(LobbyTo::Waiter { user_id }),
                },
                fx,
            ),
        }
        Ok(())
    }

    pub(super) fn lobby_to_listed(
        &mut self,
        conn: u64,
        user: Uuid,
        frame: RoomFrame,
        result: Result<CallOutput, PortError>,
        fx: &mut Effects,
    ) {
        match result {
            Ok(CallOutput::Entries(entries)) if entries.iter().any(|e| e.user_id == user) => {
                fx.bus(BusOp::Publish {
                    frame,
                    report: Some(conn),
                });
            }
            Ok(_) => fx.fail(conn, &RoomError::NoSuchWaiter),
            Err(e) => fx.fail(conn, &e.into()),
        }
    }

    fn mute_participant(
        &mut self,
        pid: &str,
        conn: u64,
        participant_id: String,
        video: bool,
        fx: &mut Effects,
    ) -> Result<(), RoomError> {
        self.require_moderator(pid)?;
        if let Some(target) = self.participants.get(&participant_id) {
            if let Some(c) = target.conn {
                fx.send(c, ServerMessage::MuteRequested { video });
            }
        } else if self.remote.contains_key(&participant_id) {
            fx.bus(BusOp::Publish {
                frame: RoomFrame::Direct {
                    participant_id: participant_id.clone(),
                    message: ServerMessage::MuteRequested { video },
                },
                report: Some(conn),
            });
        } else {
            return Err(RoomError::NoParticipant(participant_id));
        }
        // Enforced on the server too: a client that ignores the request is
        // still silent for everyone else. On the target's lane, after its
        // own mute calls.
        let to_mute: Vec<String> = self
            .tracks
            .values()
            .filter(|t| t.participant_id == participant_id)
            .filter(|t| t.kind == TrackKind::Audio || video)
            .map(|t| t.track_id.clone())
            .collect();
        for track_id in to_mute {
            let call = MediaCall::SetMute(SetMuteRequest {
                room_id: self.room_id.clone(),
                track_id,
                muted: true,
            });
            self.call(
                Lane::Media(participant_id.clone()),
                PortCall::Media(call),
                Then::Report(conn),
                fx,
            );
        }
        Ok(())
    }
}
