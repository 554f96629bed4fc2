//! Team collaboration: posts, comments, chats and their real-time events.
//!
//! REST bodies of `/v1/teams/{id}/posts`, `/v1/posts/*`, `/v1/comments/*`,
//! `/v1/chats/*` and `/v1/messages/*`, plus the [`ChatEvent`]s the control
//! plane publishes (after commit) on the in-process chat bus or the Redis
//! channel `convene:chat:{chat_id}` for the signaling service to fan out.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Redis pub/sub channel carrying a chat's events.
pub fn chat_channel(chat_id: Uuid) -> String {
    format!("convene:chat:{chat_id}")
}

/// A user as shown next to content they wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserRef {
    pub id: Uuid,
    pub username: String,
}

// ---------------------------------------------------------------- posts

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePostRequest {
    /// 1 to `post_title_max_chars` (default 200) characters.
    pub title: String,
    /// Up to `post_body_max_chars` (default 10000) characters.
    #[serde(default)]
    pub body: String,
}

/// Only the author may edit; absent fields stay unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePostRequest {
    pub title: Option<String>,
    pub body: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Post {
    pub id: Uuid,
    pub team_id: Uuid,
    pub author: UserRef,
    pub title: String,
    pub body: String,
    pub comment_count: i64,
    pub created_at: DateTime<Utc>,
    /// Set by the last edit.
    pub edited_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCommentRequest {
    /// 1 to `comment_max_chars` (default 4000) characters.
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCommentRequest {
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Comment {
    pub id: Uuid,
    pub post_id: Uuid,
    pub author: UserRef,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
}

// ---------------------------------------------------------------- chats

/// `direct`: created with no title and exactly one other member; its
/// membership is fixed and there is at most one per pair of users.
/// `group`: everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatKind {
    Direct,
    Group,
}

impl ChatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatKind::Direct => "direct",
            ChatKind::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "direct" => Some(ChatKind::Direct),
            "group" => Some(ChatKind::Group),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChatRequest {
    /// Up to `chat_title_max_chars` (default 100) characters. Empty with
    /// exactly one other member makes a direct chat.
    #[serde(default)]
    pub title: String,
    /// Registered users to add besides the creator (the creator's own
    /// address and duplicates are ignored).
    #[serde(default)]
    pub member_emails: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddChatMemberRequest {
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChatMember {
    pub user_id: Uuid,
    pub username: String,
    pub joined_at: DateTime<Utc>,
    /// Highest message `seq` this member has read.
    pub last_read_seq: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Chat {
    pub id: Uuid,
    pub kind: ChatKind,
    pub title: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    /// When the chat was created or last received a message.
    pub last_activity_at: DateTime<Utc>,
    pub members: Vec<ChatMember>,
    /// `seq` of the newest message; 0 when there is none.
    pub last_seq: i64,
    pub last_message: Option<ChatMessage>,
    /// The caller's highest read `seq`.
    pub last_read_seq: i64,
    /// Messages from others after `last_read_seq`.
    pub unread_count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    /// 1 to `message_max_chars` (default 4000) characters.
    pub text: String,
    /// Chosen by the client, 1 to `client_id_max_chars` (default 64)
    /// characters. Resending with the same `client_id` returns the message
    /// already stored (HTTP 200) instead of creating a second one.
    pub client_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditMessageRequest {
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChatMessage {
    pub id: Uuid,
    pub chat_id: Uuid,
    /// Per-chat sequence number: 1, 2, 3, … without gaps, in commit order.
    pub seq: i64,
    pub sender: UserRef,
    pub text: String,
    pub client_id: String,
    /// 1 when created; incremented by every edit.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
}

/// A page of messages. Newest first for `?before=`, oldest first for
/// `?after_seq=`; when `has_more`, pass the last item's `seq` as the same
/// parameter to continue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub items: Vec<ChatMessage>,
    pub has_more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkReadRequest {
    /// A message of this chat; everything up to its `seq` counts as read.
    pub up_to_message_id: Uuid,
}

/// The caller's read position after `POST /v1/chats/{id}/read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadState {
    pub chat_id: Uuid,
    pub user_id: Uuid,
    /// Never decreases: marking an older message read leaves it unchanged.
    pub last_read_seq: i64,
    pub unread_count: i64,
}

// ---------------------------------------------------------------- events

/// A change to a chat, as JSON `{"type": "<variant>", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatEvent {
    MessageCreated {
        chat_id: Uuid,
        message: ChatMessage,
    },
    MessageEdited {
        chat_id: Uuid,
        message_id: Uuid,
        /// The edited message's `seq`, so a receiver that has not seen the
        /// message yet can fetch it first.
        seq: i64,
        version: i64,
        text: String,
    },
    /// A member's read position moved forward.
    ReadReceipt {
        chat_id: Uuid,
        user_id: Uuid,
        up_to_seq: i64,
    },
    /// A user was added; fan-out should start delivering to them.
    MemberAdded {
        chat_id: Uuid,
        user_id: Uuid,
    },
    /// A user left or was removed; fan-out should stop delivering to them.
    MemberRemoved {
        chat_id: Uuid,
        user_id: Uuid,
    },
    /// The user now belongs to the chat (created with them, or added).
    /// Unlike every other event this one is routed to the *user's* inbox
    /// (`convene:chat:{user_id}`), because a signaling node only listens to
    /// chats it already knows the user is in.
    Invited {
        chat_id: Uuid,
        user_id: Uuid,
    },
    /// A member is typing (not stored; published by the signaling service).
    Typing {
        chat_id: Uuid,
        user_id: Uuid,
    },
    /// A member came online or went offline on every node (not stored).
    Presence {
        chat_id: Uuid,
        user_id: Uuid,
        online: bool,
    },
}

impl ChatEvent {
    pub fn chat_id(&self) -> Uuid {
        match self {
            ChatEvent::Invited { chat_id, .. } => *chat_id,
            ChatEvent::MessageCreated { chat_id, .. }
            | ChatEvent::MessageEdited { chat_id, .. }
            | ChatEvent::ReadReceipt { chat_id, .. }
            | ChatEvent::MemberAdded { chat_id, .. }
            | ChatEvent::MemberRemoved { chat_id, .. }
            | ChatEvent::Typing { chat_id, .. }
            | ChatEvent::Presence { chat_id, .. } => *chat_id,
        }
    }

    /// The bus key: the chat, or the invited user's inbox.
    pub fn route(&self) -> Uuid {
        match self {
            ChatEvent::Invited { user_id, .. } => *user_id,
            other => other.chat_id(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_events_are_tagged_snake_case() {
        let ev = ChatEvent::ReadReceipt {
            chat_id: Uuid::nil(),
            user_id: Uuid::nil(),
            up_to_seq: 3,
        };
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["type"], "read_receipt");
        assert_eq!(json["up_to_seq"], 3);
        let back: ChatEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, ev);
        assert_eq!(
            chat_channel(Uuid::nil()),
            format!("convene:chat:{}", Uuid::nil())
        );
    }
}
