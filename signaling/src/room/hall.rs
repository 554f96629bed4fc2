//! Telling the waiting hall's state: each waiter its position, moderators
//! the list.
//!
//! One change usually reaches the room twice: a knock is a REST call (its
//! control-plane event arrives here) and then a socket entering the room; a
//! waiter leaving over the socket is the room's own doing and an event too.
//! So every refresh reads the list from the control plane, whose database is
//! the truth, and sends only what differs from what each socket was last
//! told: one frame per change, whichever trigger comes first and on every
//! node.

use convene_proto::signaling::ServerMessage;

use super::RoomActor;
use crate::connection::ConnHandle;

impl RoomActor {
    pub(super) async fn publish_waiting(&mut self) {
        let entries = match self.control.waiting_entries(self.conference).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(conference = %self.conference, error = %e, "could not list waiting entries");
                return;
            }
        };
        let n = entries.len() as i64;
        self.metrics.waiting_entries.add(n - self.waiting_seen);
        self.waiting_seen = n;
        for e in &entries {
            let Some(w) = self.waiters.get_mut(&e.user_id) else {
                continue;
            };
            let Some(c) = &w.conn else { continue };
            if w.shown_position != Some(e.position) {
                w.shown_position = Some(e.position);
                c.send(ServerMessage::Waiting {
                    position: e.position,
                });
            }
        }
        if self.shown_entries.as_ref() != Some(&entries) {
            self.send_to_moderators(ServerMessage::WaitingUpdated {
                entries: entries.clone(),
            });
            self.shown_entries = Some(entries);
        }
    }

    /// A moderator's socket arrived (joined or resumed): it sees the list at
    /// once. A list that changed meanwhile goes to every moderator, this one
    /// included; otherwise only this one is sent the list the others have.
    pub(super) async fn show_waiting_to(&mut self, conn: &ConnHandle) {
        let before = self.shown_entries.clone();
        self.publish_waiting().await;
        if self.shown_entries == before {
            if let Some(entries) = before {
                conn.send(ServerMessage::WaitingUpdated { entries });
            }
        }
    }
}
