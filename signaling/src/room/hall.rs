//! The waiting hall: knocks, waiters' sockets, the list shown to waiters
//! and moderators, and the control plane's decisions coming back.
//!
//! One change usually reaches the room twice: a knock is a REST call (its
//! control-plane event arrives here) and then a socket entering the room; a
//! waiter leaving over the socket is the room's own doing and an event too.
//! So every refresh reads the list from the control plane, whose database is
//! the truth, and sends only what differs from what each socket was last
//! told: one frame per change, whichever trigger comes first and on every
//! node. Reads run one at a time on the hall lane and coalesce: a refresh
//! asked for while one is queued is that one.

use std::time::{Duration, Instant};

use convene_proto::signaling::{ClientMessage, ServerMessage, WaitingEntryInfo};
use uuid::Uuid;

use super::effects::{BusOp, CallOutput, ControlCall, Effect, Effects, EnterId, MediaCall};
use super::effects::{MetricUpdate, PortCall};
use super::error::RoomError;
use super::lanes::Lane;
use super::state::{Job, Member, RoomState, Then, Waiter};
use crate::ports::{Admission, HallEvent, PortError};
use crate::ratelimit::TokenBucket;
use crate::room_bus::{LobbyTo, RoomFrame};

/// Waiter heartbeats are forwarded to the control plane at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(5);

impl RoomState {
    /// A waiting-hall token arrived (`enter`), or a participant was moved
    /// back to the hall (`None`): the control plane is asked for its place.
    pub(super) fn knock(
        &mut self,
        conn: u64,
        admission: Admission,
        enter: Option<EnterId>,
        now: Instant,
        fx: &mut Effects,
    ) -> Result<(), RoomError> {
        let user = admission.user_id;
        let reconnect = self.waiters.contains_key(&user);
        if !reconnect && self.knocks.try_take(now).is_err() {
            return Err(RoomError::TooManyKnocks);
        }
        self.conns.insert(conn, Member::Pending(user));
        self.call(
            Lane::Waiter(user),
            PortCall::Control(ControlCall::TouchWaiting { user }),
            Then::Touched {
                conn,
                admission,
                enter,
            },
            fx,
        );
        Ok(())
    }

    pub(super) fn touched(
        &mut self,
        conn: u64,
        admission: Admission,
        enter: Option<EnterId>,
        result: Result<CallOutput, PortError>,
        now: Instant,
        fx: &mut Effects,
    ) {
        let position = match result {
            Ok(CallOutput::Position(Some(p))) => Ok(p),
            Ok(_) => Err(RoomError::NoLongerWaiting),
            Err(e) => Err(RoomError::Port(e)),
        };
        match position {
            Ok(position) => self.seat_waiter(conn, admission, position, now, fx),
            Err(e) => {
                self.conns.remove(&conn);
                match enter {
                    Some(enter) => {
                        self.ice.remove(&conn);
                        fx.0.push(Effect::Entered {
                            enter,
                            result: Err(e),
                        });
                    }
                    None => {
                        fx.send(conn, e.to_message());
                        fx.close(conn, 1000, "moved out");
                    }
                }
            }
        }
        if let Some(enter) = enter {
            if self.conns.contains_key(&conn) {
                fx.0.push(Effect::Entered {
                    enter,
                    result: Ok(()),
                });
            }
        }
        self.release(conn, now, fx);
    }

    fn seat_waiter(
        &mut self,
        conn: u64,
        admission: Admission,
        position: u32,
        now: Instant,
        fx: &mut Effects,
    ) {
        let user = admission.user_id;
        let lobby_per_min = self.config.lobby_messages_per_min;
        let waiter = self.waiters.entry(user).or_insert_with(|| Waiter {
            admission,
            conn: None,
            detached_at: None,
            last_touch: now,
            lobby_bucket: TokenBucket::per_minute(lobby_per_min, now),
            shown_position: None,
        });
        if let Some(old) = waiter.conn.replace(conn) {
            self.conns.remove(&old);
            fx.close(old, 4000, "reconnected elsewhere");
        }
        waiter.detached_at = None;
        waiter.last_touch = now;
        // This socket is told its position here; the list refresh below (and
        // the control plane's event for the same knock) must not repeat it.
        waiter.shown_position = Some(position);
        self.conns.insert(conn, Member::Waiter(user));
        fx.0.push(Effect::SetWaiting {
            conn,
            waiting: true,
        });
        fx.send(conn, ServerMessage::Waiting { position });
        self.refresh_waiting(fx);
    }

    pub(super) fn waiter_message(
        &mut self,
        uid: Uuid,
        conn: u64,
        msg: ClientMessage,
        at_ms: i64,
        now: Instant,
        fx: &mut Effects,
    ) -> Result<(), RoomError> {
        match msg {
            ClientMessage::LobbyMessage { text, to: _ } => {
                let text = self.checked_text(text)?;
                let w = self.waiters.get_mut(&uid).ok_or(RoomError::NotWaiting)?;
                w.lobby_bucket
                    .try_take(now)
                    .map_err(|_| RoomError::TooManyLobbyMessages)?;
                let frame = RoomFrame::Lobby {
                    to: LobbyTo::Moderators,
                    from_user_id: uid,
                    from_name: w.admission.name.clone(),
                    text,
                    at_ms,
                };
                fx.bus(BusOp::Publish {
                    frame,
                    report: Some(conn),
                });
                Ok(())
            }
            ClientMessage::Leave => {
                self.leave_waiting(uid, fx);
                if let Some(w) = self.waiters.remove(&uid) {
                    if let Some(c) = w.conn {
                        self.conns.remove(&c);
                        fx.close(c, 1000, "left");
                    }
                }
                Ok(())
            }
            _ => Err(RoomError::WaitingOnly),
        }
    }

    /// Tells the control plane the waiter is gone; the list is read again
    /// once it has committed that.
    fn leave_waiting(&mut self, user: Uuid, fx: &mut Effects) {
        self.call(
            Lane::Waiter(user),
            PortCall::Control(ControlCall::LeaveWaiting { user }),
            Then::RefreshHall,
            fx,
        );
    }

    pub(super) fn heartbeat(&mut self, conn: u64, now: Instant, fx: &mut Effects) {
        let Some(Member::Waiter(uid)) = self.conns.get(&conn).cloned() else {
            return;
        };
        let Some(w) = self.waiters.get_mut(&uid) else {
            return;
        };
        if now.duration_since(w.last_touch) >= TOUCH_EVERY {
            w.last_touch = now;
            self.call(
                Lane::Waiter(uid),
                PortCall::Control(ControlCall::TouchWaiting { user: uid }),
                Then::Log("waiting heartbeat"),
                fx,
            );
        }
    }

    /// Waiters whose socket stayed away past the waiting heartbeat leave.
    pub(super) fn expire_waiters(&mut self, now: Instant, fx: &mut Effects) {
        let timeout = self.config.waiting_heartbeat_timeout();
        let gone: Vec<Uuid> = self
            .waiters
            .iter()
            .filter(|(_, w)| {
                w.detached_at
                    .is_some_and(|t| now.duration_since(t) >= timeout)
            })
            .map(|(id, _)| *id)
            .collect();
        for uid in gone {
            self.waiters.remove(&uid);
            self.leave_waiting(uid, fx);
        }
    }

    /// Reads the waiting list and tells what changed.
    pub(super) fn refresh_waiting(&mut self, fx: &mut Effects) {
        self.read_waiting(None, fx);
    }

    /// A moderator's socket arrived (joined or resumed): it sees the list at
    /// once. A list that changed meanwhile goes to every moderator, this one
    /// included; otherwise only this one is sent the list the others have.
    pub(super) fn show_waiting_to(&mut self, conn: u64, fx: &mut Effects) {
        self.read_waiting(Some(conn), fx);
    }

    fn read_waiting(&mut self, show_to: Option<u64>, fx: &mut Effects) {
        let queued = self.lanes.queued_mut(&Lane::Hall).and_then(|q| {
            q.iter_mut().find_map(|job| match job {
                Job::Call(_, Then::WaitingList { show_to }) => Some(show_to),
                _ => None,
            })
        });
        match queued {
            // A read not yet started sees this change too.
            Some(list) => list.extend(show_to),
            None => self.call(
                Lane::Hall,
                PortCall::Control(ControlCall::WaitingEntries),
                Then::WaitingList {
                    show_to: show_to.into_iter().collect(),
                },
                fx,
            ),
        }
    }

    pub(super) fn waiting_listed(
        &mut self,
        result: Result<CallOutput, PortError>,
        show_to: Vec<u64>,
        fx: &mut Effects,
    ) {
        let entries = match result {
            Ok(CallOutput::Entries(entries)) => entries,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(conference = %self.conference, error = %e, "could not list waiting entries");
                return;
            }
        };
        let before = self.shown_entries.clone();
        self.show_entries(entries, fx);
        if self.shown_entries == before {
            if let Some(entries) = before {
                for conn in show_to {
                    fx.send(
                        conn,
                        ServerMessage::WaitingUpdated {
                            entries: entries.clone(),
                        },
                    );
                }
            }
        }
    }

    fn show_entries(&mut self, entries: Vec<WaitingEntryInfo>, fx: &mut Effects) {
        let n = entries.len() as i64;
        fx.metric(MetricUpdate::WaitingEntries(n - self.waiting_seen));
        self.waiting_seen = n;
        for e in &entries {
            let Some(w) = self.waiters.get_mut(&e.user_id) else {
                continue;
            };
            let Some(c) = w.conn else { continue };
            if w.shown_position != Some(e.position) {
                w.shown_position = Some(e.position);
                fx.send(
                    c,
                    ServerMessage::Waiting {
                        position: e.position,
                    },
                );
            }
        }
        if self.shown_entries.as_ref() != Some(&entries) {
            self.send_to_moderators(
                ServerMessage::WaitingUpdated {
                    entries: entries.clone(),
                },
                fx,
            );
            self.shown_entries = Some(entries);
        }
    }

    pub(super) fn hall_event(&mut self, ev: HallEvent, now: Instant, fx: &mut Effects) {
        // A decision about a user whose knock, admission or move is still
        // out applies after it, as it did when the room awaited the call.
        let wait = match &ev {
            HallEvent::WaitingChanged => false,
            HallEvent::Ended => self.any_pending(),
            HallEvent::Admitted { user_id }
            | HallEvent::Denied { user_id, .. }
            | HallEvent::MovedToWaiting { user_id }
            | HallEvent::Removed { user_id }
            | HallEvent::ModeratorChanged { user_id, .. } => self.is_pending(*user_id),
        };
        if wait {
            self.held_hall.push(ev);
            return;
        }
        match ev {
            HallEvent::WaitingChanged => self.refresh_waiting(fx),
            HallEvent::Admitted { user_id } => {
                if let Some(conn) = self.waiters.remove(&user_id).and_then(|w| w.conn) {
                    self.conns.insert(conn, Member::Pending(user_id));
                    self.call(
                        Lane::Waiter(user_id),
                        PortCall::Control(ControlCall::AdmittedToken { user: user_id }),
                        Then::Admitted { conn },
                        fx,
                    );
                }
                self.refresh_waiting(fx);
            }
            HallEvent::Denied { user_id, reason } => {
                if let Some(conn) = self.waiters.remove(&user_id).and_then(|w| w.conn) {
                    self.conns.remove(&conn);
                    fx.send(conn, ServerMessage::Denied { reason });
                    fx.close(conn, 1000, "denied");
                }
                self.refresh_waiting(fx);
            }
            HallEvent::MovedToWaiting { user_id } => {
                self.moved_to_waiting(user_id, now, fx);
                self.refresh_waiting(fx);
            }
            HallEvent::Removed { user_id } => {
                for pid in self.participants_of(user_id) {
                    let notice = ServerMessage::Removed {
                        reason: "removed by a moderator".into(),
                    };
                    self.remove_participant(&pid, Some(notice), fx);
                }
                if let Some(c) = self.waiters.remove(&user_id).and_then(|w| w.conn) {
                    self.conns.remove(&c);
                    fx.send(
                        c,
                        ServerMessage::Removed {
                            reason: "removed by a moderator".into(),
                        },
                    );
                    fx.close(c, 1000, "removed");
                }
            }
            HallEvent::ModeratorChanged { user_id, moderator } => {
                self.set_moderator(user_id, moderator, fx)
            }
            HallEvent::Ended => self.ended(fx),
        }
    }

    fn moved_to_waiting(&mut self, user_id: Uuid, now: Instant, fx: &mut Effects) {
        for pid in self.participants_of(user_id) {
            let Some(p) = self.participants.get_mut(&pid) else {
                continue;
            };
            let mut admission = p.admission.clone();
            // Detached first so the removal does not close the socket.
            let conn = p.conn.take();
            self.remove_participant(&pid, None, fx);
            if let Some(conn) = conn {
                self.conns.remove(&conn);
                fx.send(conn, ServerMessage::MovedToWaiting);
                admission.waiting = true;
                admission.moderator = false;
                if let Err(e) = self.knock(conn, admission, None, now, fx) {
                    fx.send(conn, e.to_message());
                    fx.close(conn, 1000, "moved out");
                }
            }
        }
    }

    pub(super) fn admitted(
        &mut self,
        conn: u64,
        result: Result<CallOutput, PortError>,
        now: Instant,
        fx: &mut Effects,
    ) {
        self.conns.remove(&conn);
        match result {
            Ok(CallOutput::Token {
                token,
                admission: Some(admission),
            }) if !admission.waiting => {
                fx.send(conn, ServerMessage::Admitted { token });
                self.join_room(conn, admission, now, now, fx);
            }
            Ok(_) => fx.send(conn, RoomError::AdmissionRefused.to_message()),
            Err(e) => fx.send(conn, RoomError::Port(e).to_message()),
        }
        self.release(conn, now, fx);
    }

    fn ended(&mut self, fx: &mut Effects) {
        self.broadcast(ServerMessage::ConferenceEnded, fx);
        for c in self.waiters.values().filter_map(|w| w.conn) {
            fx.send(c, ServerMessage::ConferenceEnded);
        }
        self.call(
            Lane::Room,
            PortCall::Media(MediaCall::CloseRoom),
            Then::Log("close the SFU room"),
            fx,
        );
        for c in self.participants.values().filter_map(|p| p.conn) {
            fx.close(c, 1000, "conference ended");
        }
        for c in self.waiters.values().filter_map(|w| w.conn) {
            fx.close(c, 1000, "conference ended");
        }
        fx.metric(MetricUpdate::Participants(
            -(self.participants.len() as i64),
        ));
        self.participants.clear();
        self.waiters.clear();
        self.conns.clear();
    }

    /// A user may be in the room more than once (two tabs).
    pub(super) fn participants_of(&self, user: Uuid) -> Vec<String> {
        self.participants
            .iter()
            .filter(|(_, p)| p.admission.user_id == user)
            .map(|(id, _)| id.clone())
            .collect()
    }
}
