//! Reading chats, messages and memberships: the shared SELECTs, row
//! decoding, and the per-request lookups the handlers build on.

use std::collections::HashMap;

use convene_proto::collab::{Chat, ChatKind, ChatMember, ChatMessage, UserRef};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use crate::db::{ms_to_dt, uuid_col};
use crate::error::ApiError;
use crate::validate;

pub(super) const MESSAGE_SELECT: &str = "SELECT msg.id, msg.chat_id, msg.seq, msg.sender_id,
        u.username AS sender_username, msg.text, msg.client_id, msg.version,
        msg.created_at, msg.edited_at
     FROM chat_messages msg JOIN users u ON u.id = msg.sender_id";

/// Joined with the caller's membership row `m`; the last message is the one
/// whose seq equals the counter (messages are never deleted).
pub(super) const CHAT_SELECT: &str = "SELECT c.id, c.kind, c.title, c.created_by, c.created_at,
        c.last_seq, c.last_activity_at, m.last_read_seq,
        (SELECT COUNT(*) FROM chat_messages x
          WHERE x.chat_id = c.id AND x.seq > m.last_read_seq AND x.sender_id <> m.user_id)
          AS unread_count,
        lm.id AS lm_id, lm.seq AS lm_seq, lm.sender_id AS lm_sender_id,
        lu.username AS lm_sender_username, lm.text AS lm_text, lm.client_id AS lm_client_id,
        lm.version AS lm_version, lm.created_at AS lm_created_at, lm.edited_at AS lm_edited_at
     FROM chats c
     JOIN chat_members m ON m.chat_id = c.id
     LEFT JOIN chat_messages lm ON lm.chat_id = c.id AND lm.seq = c.last_seq
     LEFT JOIN users lu ON lu.id = lm.sender_id";

pub(super) fn message_from_row(row: &AnyRow) -> Result<ChatMessage, ApiError> {
    Ok(ChatMessage {
        id: uuid_col(&row.try_get::<String, _>("id")?)?,
        chat_id: uuid_col(&row.try_get::<String, _>("chat_id")?)?,
        seq: row.try_get("seq")?,
        sender: UserRef {
            id: uuid_col(&row.try_get::<String, _>("sender_id")?)?,
            username: row.try_get("sender_username")?,
        },
        text: row.try_get("text")?,
        client_id: row.try_get("client_id")?,
        version: row.try_get("version")?,
        created_at: ms_to_dt(row.try_get("created_at")?),
        edited_at: row.try_get::<Option<i64>, _>("edited_at")?.map(ms_to_dt),
    })
}

pub(super) fn chat_from_row(row: &AnyRow) -> Result<Chat, ApiError> {
    let id = uuid_col(&row.try_get::<String, _>("id")?)?;
    let last_message = match row.try_get::<Option<String>, _>("lm_id")? {
        None => None,
        Some(lm_id) => Some(ChatMessage {
            id: uuid_col(&lm_id)?,
            chat_id: id,
            seq: row.try_get("lm_seq")?,
            sender: UserRef {
                id: uuid_col(&row.try_get::<String, _>("lm_sender_id")?)?,
                username: row.try_get("lm_sender_username")?,
            },
            text: row.try_get("lm_text")?,
            client_id: row.try_get("lm_client_id")?,
            version: row.try_get("lm_version")?,
            created_at: ms_to_dt(row.try_get("lm_created_at")?),
            edited_at: row.try_get::<Option<i64>, _>("lm_edited_at")?.map(ms_to_dt),
        }),
    };
    Ok(Chat {
        id,
        kind: ChatKind::parse(&row.try_get::<String, _>("kind")?)
            .ok_or_else(|| ApiError::Internal("corrupt chat kind".into()))?,
        title: row.try_get("title")?,
        created_by: uuid_col(&row.try_get::<String, _>("created_by")?)?,
        created_at: ms_to_dt(row.try_get("created_at")?),
        last_activity_at: ms_to_dt(row.try_get("last_activity_at")?),
        members: Vec::new(),
        last_seq: row.try_get("last_seq")?,
        last_message,
        last_read_seq: row.try_get("last_read_seq")?,
        unread_count: row.try_get("unread_count")?,
    })
}

/// Fills in the members of every chat in `chats` with one query.
pub(super) async fn attach_members(
    conn: &mut AnyConnection,
    chats: &mut [Chat],
) -> Result<(), ApiError> {
    if chats.is_empty() {
        return Ok(());
    }
    let placeholders = (1..=chats.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT cm.chat_id, cm.user_id, u.username, cm.joined_at, cm.last_read_seq
         FROM chat_members cm JOIN users u ON u.id = cm.user_id
         WHERE cm.chat_id IN ({placeholders})
         ORDER BY cm.joined_at, cm.user_id"
    );
    let mut query = sqlx::query(&sql);
    for chat in chats.iter() {
        query = query.bind(chat.id.to_string());
    }
    let mut by_chat: HashMap<Uuid, Vec<ChatMember>> = HashMap::new();
    for row in query.fetch_all(&mut *conn).await? {
        by_chat
            .entry(uuid_col(&row.try_get::<String, _>("chat_id")?)?)
            .or_default()
            .push(ChatMember {
                user_id: uuid_col(&row.try_get::<String, _>("user_id")?)?,
                username: row.try_get("username")?,
                joined_at: ms_to_dt(row.try_get("joined_at")?),
                last_read_seq: row.try_get("last_read_seq")?,
            });
    }
    for chat in chats.iter_mut() {
        chat.members = by_chat.remove(&chat.id).unwrap_or_default();
    }
    Ok(())
}

pub(super) async fn chat_view(
    conn: &mut AnyConnection,
    user_id: Uuid,
    chat_id: Uuid,
) -> Result<Chat, ApiError> {
    let row = sqlx::query(&format!("{CHAT_SELECT} WHERE c.id = $1 AND m.user_id = $2"))
        .bind(chat_id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ApiError::not_found("chat"))?;
    let mut chat = [chat_from_row(&row)?];
    attach_members(conn, &mut chat).await?;
    let [chat] = chat;
    Ok(chat)
}

pub(super) async fn message_view(
    conn: &mut AnyConnection,
    message_id: Uuid,
) -> Result<ChatMessage, ApiError> {
    let row = sqlx::query(&format!("{MESSAGE_SELECT} WHERE msg.id = $1"))
        .bind(message_id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    message_from_row(&row)
}

/// What the caller's membership row says about a chat.
pub(super) struct ChatAccess {
    pub(super) kind: ChatKind,
    pub(super) created_by: Uuid,
}

/// The chat as seen by a member; 404 for anyone else.
pub(super) async fn chat_access(
    conn: &mut AnyConnection,
    chat_id: Uuid,
    user_id: Uuid,
) -> Result<ChatAccess, ApiError> {
    let row = sqlx::query(
        "SELECT c.kind, c.created_by FROM chats c JOIN chat_members m ON m.chat_id = c.id
         WHERE c.id = $1 AND m.user_id = $2",
    )
    .bind(chat_id.to_string())
    .bind(user_id.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| ApiError::not_found("chat"))?;
    Ok(ChatAccess {
        kind: ChatKind::parse(&row.try_get::<String, _>("kind")?)
            .ok_or_else(|| ApiError::Internal("corrupt chat kind".into()))?,
        created_by: uuid_col(&row.try_get::<String, _>("created_by")?)?,
    })
}

pub(super) async fn unread_count(
    conn: &mut AnyConnection,
    chat_id: Uuid,
    user_id: Uuid,
    last_read_seq: i64,
) -> Result<i64, ApiError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM chat_messages
         WHERE chat_id = $1 AND seq > $2 AND sender_id <> $3",
    )
    .bind(chat_id.to_string())
    .bind(last_read_seq)
    .bind(user_id.to_string())
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get("n")?)
}

/// A registered user by email, or `None`.
pub(super) async fn user_by_email(
    conn: &mut AnyConnection,
    email: &str,
) -> Result<Option<(Uuid, String)>, ApiError> {
    let email = email.trim().to_lowercase();
    if email.is_empty() || email.chars().count() > validate::EMAIL_MAX {
        return Ok(None);
    }
    let row = sqlx::query("SELECT id, username FROM users WHERE email_lower = $1")
        .bind(email)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| {
        Ok((
            uuid_col(&r.try_get::<String, _>("id")?)?,
            r.try_get("username")?,
        ))
    })
    .transpose()
}
