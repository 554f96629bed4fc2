//! Events the control plane publishes for the signaling service, on the
//! in-process bus or the Redis channel `convene:conference:{id}`.
//!
//! Events only say *what* changed; they never carry credentials. A signaling
//! service that sees `waiting_admitted` asks the control plane (in-process or
//! over REST) for the admitted user's room token.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Redis pub/sub channel carrying a conference's events.
pub fn conference_channel(conference_id: Uuid) -> String {
    format!("convene:conference:{conference_id}")
}

/// Why a participant was removed from a conference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    /// A moderator removed them from the conference.
    Moderator,
    /// They were removed from (or left) the team owning the conference.
    TeamMembership,
}

/// A change to a conference, as JSON `{"type": "<variant>", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConferenceEvent {
    /// A user entered the waiting hall (first time, or again after leaving).
    WaitingJoined {
        conference_id: Uuid,
        user_id: Uuid,
        username: String,
        /// 1-based queue position.
        position: i64,
    },
    /// A moderator admitted a waiting user; the user may now fetch a room token.
    WaitingAdmitted { conference_id: Uuid, user_id: Uuid },
    /// A moderator denied a waiting user; their waiting token is revoked.
    WaitingDenied {
        conference_id: Uuid,
        user_id: Uuid,
        reason: Option<String>,
    },
    /// A waiting user left the queue.
    WaitingLeft { conference_id: Uuid, user_id: Uuid },
    /// A moderator sent a participant back to the waiting hall; their room
    /// tokens are revoked and they wait at the end of the queue.
    MovedToWaiting { conference_id: Uuid, user_id: Uuid },
    /// A participant lost access; their room tokens are revoked and the
    /// signaling service should disconnect them.
    ParticipantRemoved {
        conference_id: Uuid,
        user_id: Uuid,
        reason: RemovalReason,
    },
    /// The conference ended; every token for it is now invalid.
    ConferenceEnded { conference_id: Uuid },
    /// Title, waiting-hall flag or moderators changed.
    ConferenceUpdated {
        conference_id: Uuid,
        title: String,
        waiting_hall: bool,
        moderators: Vec<Uuid>,
    },
    /// A user's moderator grant for this conference changed (named as a
    /// moderator or no longer, made team admin or member); `moderator` is
    /// the grant as it stands now. Connected participants gain or lose
    /// moderator powers at once.
    ModeratorChanged {
        conference_id: Uuid,
        user_id: Uuid,
        moderator: bool,
    },
}

impl ConferenceEvent {
    pub fn conference_id(&self) -> Uuid {
        match self {
            ConferenceEvent::WaitingJoined { conference_id, .. }
            | ConferenceEvent::WaitingAdmitted { conference_id, .. }
            | ConferenceEvent::WaitingDenied { conference_id, .. }
            | ConferenceEvent::WaitingLeft { conference_id, .. }
            | ConferenceEvent::MovedToWaiting { conference_id, .. }
            | ConferenceEvent::ParticipantRemoved { conference_id, .. }
            | ConferenceEvent::ConferenceEnded { conference_id }
            | ConferenceEvent::ConferenceUpdated { conference_id, .. }
            | ConferenceEvent::ModeratorChanged { conference_id, .. } => *conference_id,
        }
    }

    /// The user the event is about, if any.
    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            ConferenceEvent::WaitingJoined { user_id, .. }
            | ConferenceEvent::WaitingAdmitted { user_id, .. }
            | ConferenceEvent::WaitingDenied { user_id, .. }
            | ConferenceEvent::WaitingLeft { user_id, .. }
            | ConferenceEvent::MovedToWaiting { user_id, .. }
            | ConferenceEvent::ParticipantRemoved { user_id, .. }
            | ConferenceEvent::ModeratorChanged { user_id, .. } => Some(*user_id),
            ConferenceEvent::ConferenceEnded { .. } | ConferenceEvent::ConferenceUpdated { .. } => {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_snake_case() {
        let ev = ConferenceEvent::WaitingAdmitted {
            conference_id: Uuid::nil(),
            user_id: Uuid::nil(),
        };
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["type"], "waiting_admitted");
        let back: ConferenceEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, ev);
    }
}
