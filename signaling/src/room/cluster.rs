//! The same room on other signaling nodes: frames from the room bus and the
//! shared member list.
//!
//! Frames come from every node, this one included (chat is delivered when
//! it comes back, numbered). A member read runs on the bus task while
//! frames keep arriving, so a read is only trusted for participants no
//! frame has changed since it was asked for.

use std::collections::HashSet;

use convene_proto::signaling::ServerMessage;

use super::effects::{BusOp, Effects};
use super::state::{RoomState, Waiter};
use crate::room_bus::{LobbyTo, MemberClaim, RoomEnvelope, RoomFrame};

impl RoomState {
    /// Renews this node's member claims and asks for the other nodes'
    /// participants (a node that died stops renewing).
    pub(super) fn refresh_members(&mut self, fx: &mut Effects) {
        let mine = self.participants.values().map(|p| p.info.clone()).collect();
        self.refresh_touched = Some(HashSet::new());
        fx.bus(BusOp::Refresh(mine));
    }

    /// Reconciles the other nodes' participants with a member read.
    pub(super) fn members(&mut self, live: Vec<MemberClaim>, fx: &mut Effects) {
        let touched = self.refresh_touched.take().unwrap_or_default();
        let gone: Vec<String> = self
            .remote
            .keys()
            .filter(|pid| !touched.contains(*pid))
            .filter(|pid| !live.iter().any(|m| &m.participant.participant_id == *pid))
            .cloned()
            .collect();
        for pid in gone {
            self.remote.remove(&pid);
            self.broadcast(
                ServerMessage::ParticipantLeft {
                    participant_id: pid,
                },
                fx,
            );
        }
        for m in live {
            let pid = m.participant.participant_id.clone();
            if touched.contains(&pid) {
                continue;
            }
            if !self.remote.contains_key(&pid) && !self.participants.contains_key(&pid) {
                self.remote.insert(pid, m.participant.clone());
                self.broadcast(
                    ServerMessage::ParticipantJoined {
                        participant: m.participant,
                    },
                    fx,
                );
            }
        }
    }

    fn touch_remote(&mut self, pid: &str) {
        if let Some(t) = &mut self.refresh_touched {
            t.insert(pid.to_string());
        }
    }

    pub(super) fn frame(&mut self, env: RoomEnvelope, fx: &mut Effects) {
        let own = env.node == self.cluster.node;
        match env.frame {
            RoomFrame::Joined { participant } if !own => {
                let pid = participant.participant_id.clone();
                self.touch_remote(&pid);
                if self.remote.insert(pid, participant.clone()).is_none() {
                    self.broadcast(ServerMessage::ParticipantJoined { participant }, fx);
                }
            }
            RoomFrame::Left { participant_id }
                if !own && self.remote.contains_key(&participant_id) =>
            {
                self.touch_remote(&participant_id);
                self.remote.remove(&participant_id);
                self.broadcast(ServerMessage::ParticipantLeft { participant_id }, fx);
            }
            RoomFrame::Hello if !own && !self.tracks.is_empty() => {
                let tracks = self.tracks.values().cloned().collect();
                fx.bus(BusOp::Publish {
                    frame: RoomFrame::Tracks { tracks },
                    report: None,
                });
            }
            RoomFrame::Tracks { tracks } if !own => {
                for track in tracks {
                    if !self.tracks.contains_key(&track.track_id) {
                        self.track_published(track, fx);
                    }
                }
            }
            RoomFrame::Chat { from, text, at_ms } => {
                self.broadcast(
                    ServerMessage::Chat {
                        seq: env.seq,
                        from,
                        text,
                        at_ms,
                    },
                    fx,
                );
            }
            RoomFrame::Lobby {
                to,
                from_user_id,
                from_name,
                text,
                at_ms,
            } => {
                let msg = ServerMessage::LobbyMessage {
                    from_user_id,
                    from_name,
                    text,
                    at_ms,
                };
                let waiters: Vec<&Waiter> = match &to {
                    LobbyTo::Moderators => Vec::new(),
                    LobbyTo::Waiter { user_id } => self.waiters.get(user_id).into_iter().collect(),
                    LobbyTo::AllWaiters => self.waiters.values().collect(),
                };
                for c in waiters.iter().filter_map(|w| w.conn) {
                    fx.send(c, msg.clone());
                }
                // Every moderator sees what was said in the lobby.
                self.send_to_moderators(msg, fx);
            }
            RoomFrame::MediaEnded {
                participant_id,
                reason,
            } if !own => self.remote_media_ended(participant_id, reason, fx),
            RoomFrame::Direct {
                participant_id,
                message,
            } => {
                if let Some(c) = self.conn_of(&participant_id) {
                    fx.send(c, message);
                }
            }
            _ => {}
        }
    }
}
