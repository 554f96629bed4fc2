//! Direct and group chats: membership, messages with a per-chat sequence
//! number, idempotent sends, edits and read receipts.
//!
//! Rules:
//! - A chat does not exist (404) for anyone who is not its member.
//! - A chat created with no title and exactly one other member is `direct`:
//!   one per pair of users (creating it again returns the existing chat) and
//!   its membership never changes (409).
//! - In a group chat any member may add members; a member may remove
//!   themself (leave); only the creator may remove others. The chat is
//!   deleted when its last member leaves.
//! - `seq` comes from the chat row's counter (`chats.last_seq`), incremented
//!   in the message's insert transaction. That row update serialises
//!   concurrent senders of one chat on PostgreSQL (row lock) and SQLite
//!   (single writer), so seqs are 1, 2, 3, … without gaps or duplicates;
//!   `UNIQUE (chat_id, seq)` backs it up.
//! - `(sender, chat, client_id)` is unique: a retried send returns the stored
//!   message. The duplicate check runs after the counter row is locked, so
//!   concurrent retries cannot both insert.
//! - Sending marks the chat read up to the sent message for its sender;
//!   unread counts only count other members' messages.
//! - Events are published on the chat bus after commit.

mod routes;
mod rows;

pub(crate) use routes::routes;

use std::collections::HashSet;

use convene_proto::collab::{
    Chat, ChatEvent, ChatKind, ChatMember, ChatMessage, CreateChatRequest, EditMessageRequest,
    MarkReadRequest, MessagePage, ReadState, SendMessageRequest, UserRef,
};
use convene_proto::control::Page;
use serde::Deserialize;
use sqlx::Row;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::db::{is_unique_violation, ms_to_dt, now_ms, uuid_col};
use crate::error::ApiError;
use crate::pagination::{Cursor, PageParams};
use crate::posts::{desc_bound, long_text};
use crate::{validate, Actor, Control};

use rows::{
    attach_members, chat_access, chat_from_row, chat_view, message_from_row, message_view,
    unread_count, user_by_email, CHAT_SELECT, MESSAGE_SELECT,
};

/// `?before=&after_seq=&limit=` of `GET /v1/chats/{id}/messages`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Newest-first page of messages with `seq` below this (default: the
    /// newest messages).
    pub before: Option<i64>,
    /// Oldest-first page of messages with `seq` above this, for catching up
    /// after a reconnect. Not combinable with `before`.
    pub after_seq: Option<i64>,
    /// Page size; capped at the configured maximum.
    pub limit: Option<u32>,
}

fn direct_key(a: Uuid, b: Uuid) -> String {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    format!("{lo}:{hi}")
}

impl Control {
    /// Whether the user is a member of the chat (for fan-out by the
    /// signaling service).
    pub async fn is_chat_member(&self, chat_id: Uuid, user_id: Uuid) -> Result<bool, ApiError> {
        let row =
            sqlx::query("SELECT 1 AS one FROM chat_members WHERE chat_id = $1 AND user_id = $2")
                .bind(chat_id.to_string())
                .bind(user_id.to_string())
                .fetch_optional(&self.db().pool)
                .await?;
        Ok(row.is_some())
    }

    /// Creates a chat, or returns the existing direct chat with the same
    /// other user. The flag is `true` when a chat was created.
    pub async fn create_chat(
        &self,
        actor: &Actor,
        req: CreateChatRequest,
    ) -> Result<(Chat, bool), ApiError> {
        let config = self.config();
        let title = validate::text("title", &req.title, 0, config.chat_title_max_chars)?;
        if req.member_emails.len() > config.chat_max_members {
            return Err(ApiError::Validation(format!(
                "a chat has at most {} members",
                config.chat_max_members
            )));
        }
        let mut conn = self.db().pool.acquire().await?;
        let mut others: Vec<Uuid> = Vec::new();
        let mut seen = HashSet::new();
        for email in &req.member_emails {
            let email = validate::email(email).map_err(|_| {
                ApiError::Validation(format!("member_emails: {email:?} is not a valid address"))
            })?;
            let (id, _) = user_by_email(&mut conn, &email).await?.ok_or_else(|| {
                ApiError::Validation(format!("member_emails: no user with email {email}"))
            })?;
            if id != actor.user_id && seen.insert(id) {
                others.push(id);
            }
        }
        drop(conn);
        if others.len() + 1 > config.chat_max_members {
            return Err(ApiError::Validation(format!(
                "a chat has at most {} members",
                config.chat_max_members
            )));
        }
        if title.is_empty() && others.is_empty() {
            return Err(ApiError::Validation(
                "a chat needs a title or at least one other member".into(),
            ));
        }
        let (kind, key) = if title.is_empty() && others.len() == 1 {
            (ChatKind::Direct, Some(direct_key(actor.user_id, others[0])))
        } else {
            (ChatKind::Group, None)
        };

        for attempt in 0..2 {
            let mut tx = self.db().pool.begin().await?;
            if let Some(key) = &key {
                let existing = sqlx::query("SELECT id FROM chats WHERE direct_key = $1")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(row) = existing {
                    let id = uuid_col(&row.try_get::<String, _>("id")?)?;
                    return Ok((chat_view(&mut tx, actor.user_id, id).await?, false));
                }
            }
            let id = Uuid::now_v7();
            let now = now_ms();
            let inserted = sqlx::query(
                "INSERT INTO chats (id, kind, title, direct_key, created_by, created_at, last_seq, last_activity_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 0, $6)",
            )
            .bind(id.to_string())
            .bind(kind.as_str())
            .bind(&title)
            .bind(key.clone())
            .bind(actor.user_id.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                // A concurrent identical direct chat won; return it instead.
                Err(e) if is_unique_violation(&e) && attempt == 0 => continue,
                other => other?,
            };
            for user_id in std::iter::once(actor.user_id).chain(others.iter().copied()) {
                sqlx::query(
                    "INSERT INTO chat_members (chat_id, user_id, joined_at, last_read_seq)
                     VALUES ($1, $2, $3, 0)",
                )
                .bind(id.to_string())
                .bind(user_id.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let chat = chat_view(&mut tx, actor.user_id, id).await?;
            tx.commit().await?;
            for user_id in std::iter::once(actor.user_id).chain(others.iter().copied()) {
                self.emit_chat(ChatEvent::Invited {
                    chat_id: id,
                    user_id,
                })
                .await;
            }
            return Ok((chat, true));
        }
        Err(ApiError::Conflict(
            "chat changed concurrently; retry".into(),
        ))
    }

    /// The caller's chats, most recently active first, each with its last
    /// message and the caller's unread count. A chat that receives a message
    /// while the client pages moves to the front (deliver it through the
    /// real-time events); the key is `(last_activity_at, id)`.
    pub async fn list_chats(
        &self,
        actor: &Actor,
        params: &PageParams,
    ) -> Result<Page<Chat>, ApiError> {
        let page = self.page(params)?;
        let (ts, id) = desc_bound(&page);
        let mut conn = self.db().pool.acquire().await?;
        let rows = sqlx::query(&format!(
            "{CHAT_SELECT} WHERE m.user_id = $1
               AND (c.last_activity_at < $2 OR (c.last_activity_at = $2 AND c.id < $3))
             ORDER BY c.last_activity_at DESC, c.id DESC LIMIT $4"
        ))
        .bind(actor.user_id.to_string())
        .bind(ts)
        .bind(id)
        .bind(page.fetch_limit())
        .fetch_all(&mut *conn)
        .await?;
        let items = rows
            .iter()
            .map(chat_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let (mut items, next_cursor) = page.finish(items, |c| Cursor {
            ts: c.last_activity_at.timestamp_millis(),
            id: c.id.to_string(),
        });
        attach_members(&mut conn, &mut items).await?;
        Ok(Page { items, next_cursor })
    }

    /// Every chat of the caller (all pages of [`Control::list_chats`]), for
    /// a real-time connection that follows them all.
    pub async fn all_chats(&self, actor: &Actor) -> Result<Vec<Chat>, ApiError> {
        let mut out = Vec::new();
        let mut params = PageParams {
            cursor: None,
            limit: None,
        };
        loop {
            let page = self.list_chats(actor, &params).await?;
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => params.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Up to `limit` messages with `seq > after_seq`, oldest first, across
    /// as many pages as that takes (catch-up after a reconnect).
    pub async fn messages_after(
        &self,
        actor: &Actor,
        chat_id: Uuid,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, ApiError> {
        let mut out: Vec<ChatMessage> = Vec::new();
        let mut after = after_seq;
        while out.len() < limit {
            let q = MessagesQuery {
                before: None,
                after_seq: Some(after),
                limit: None,
            };
            let page = self.list_messages(actor, chat_id, &q).await?;
            let Some(last) = page.items.last().map(|m| m.seq) else {
                break;
            };
            out.extend(page.items);
            after = last;
            if !page.has_more {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    pub async fn get_chat(&self, actor: &Actor, chat_id: Uuid) -> Result<Chat, ApiError> {
        let mut conn = self.db().pool.acquire().await?;
        chat_view(&mut conn, actor.user_id, chat_id).await
    }

    /// Any member of a group chat may add a registered user by email.
    pub async fn add_chat_member(
        &self,
        actor: &Actor,
        chat_id: Uuid,
        email: &str,
    ) -> Result<ChatMember, ApiError> {
        let mut tx = self.db().pool.begin().await?;
        let access = chat_access(&mut tx, chat_id, actor.user_id).await?;
        if access.kind == ChatKind::Direct {
            return Err(ApiError::Conflict(
                "the members of a direct chat cannot change".into(),
            ));
        }
        let (user_id, username) = user_by_email(&mut tx, email)
            .await?
            .ok_or_else(|| ApiError::NotFound("no user with this email".into()))?;
        // Serialises concurrent adds so the member limit holds (PostgreSQL).
        let last_seq: i64 =
            sqlx::query("UPDATE chats SET last_seq = last_seq WHERE id = $1 RETURNING last_seq")
                .bind(chat_id.to_string())
                .fetch_one(&mut *tx)
                .await?
                .try_get("last_seq")?;
        let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM chat_members WHERE chat_id = $1")
            .bind(chat_id.to_string())
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if count >= self.config().chat_max_members as i64 {
            return Err(ApiError::Conflict(format!(
                "a chat has at most {} members",
                self.config().chat_max_members
            )));
        }
        let now = now_ms();
        // New members can read the history but start with nothing unread.
        let inserted = sqlx::query(
            "INSERT INTO chat_members (chat_id, user_id, joined_at, last_read_seq)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(chat_id.to_string())
        .bind(user_id.to_string())
        .bind(now)
        .bind(last_seq)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(ApiError::Conflict("user is already a member".into()))
            }
            other => other?,
        };
        tx.commit().await?;
        self.emit_chat(ChatEvent::MemberAdded { chat_id, user_id })
            .await;
        self.emit_chat(ChatEvent::Invited { chat_id, user_id })
            .await;
        Ok(ChatMember {
            user_id,
            username,
            joined_at: ms_to_dt(now),
            last_read_seq: last_seq,
        })
    }

    /// A member may leave; the creator may remove anyone. The chat goes
    /// away with its last member.
    pub async fn remove_chat_member(
        &self,
        actor: &Actor,
        chat_id: Uuid,
        user_id: Uuid,
    ) -> Result<(), ApiError> {
        let mut tx = self.db().pool.begin().await?;
        let access = chat_access(&mut tx, chat_id, actor.user_id).await?;
        if access.kind == ChatKind::Direct {
            return Err(ApiError::Conflict(
                "the members of a direct chat cannot change".into(),
            ));
        }
        if user_id != actor.user_id && access.created_by != actor.user_id {
            return Err(ApiError::Forbidden(
                "only the chat's creator may remove other members".into(),
            ));
        }
        let done = sqlx::query("DELETE FROM chat_members WHERE chat_id = $1 AND user_id = $2")
            .bind(chat_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(ApiError::not_found("member"));
        }
        let left: i64 = sqlx::query("SELECT COUNT(*) AS n FROM chat_members WHERE chat_id = $1")
            .bind(chat_id.to_string())
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if left == 0 {
            sqlx::query("DELETE FROM chats WHERE id = $1")
                .bind(chat_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.emit_chat(ChatEvent::MemberRemoved { chat_id, user_id })
            .await;
        Ok(())
    }

    /// Appends a message. The flag is `true` when it was created, `false`
    /// when `client_id` matched a message this sender already sent here.
    pub async fn send_message(
        &self,
        actor: &Actor,
        chat_id: Uuid,
        req: SendMessageRequest,
    ) -> Result<(ChatMessage, bool), ApiError> {
        let text = long_text("text", &req.text, 1, self.config().message_max_chars)?;
        let client_id = validate::text(
            "client_id",
            &req.client_id,
            1,
            self.config().client_id_max_chars,
        )?;
        for attempt in 0..3 {
            let mut tx = self.db().pool.begin().await?;
            chat_access(&mut tx, chat_id, actor.user_id).await?;
            let now = now_ms();
            // Takes the chat row's lock until commit: senders of this chat
            // queue here, so the seq they get is their commit order.
            let seq: i64 = sqlx::query(
                "UPDATE chats SET last_seq = last_seq + 1,
                    last_activity_at = CASE WHEN last_activity_at < $2 THEN $2 ELSE last_activity_at END
                 WHERE id = $1 RETURNING last_seq",
            )
            .bind(chat_id.to_string())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .try_get("last_seq")?;
            let existing = sqlx::query(&format!(
                "{MESSAGE_SELECT} WHERE msg.chat_id = $1 AND msg.sender_id = $2 AND msg.client_id = $3"
            ))
            .bind(chat_id.to_string())
            .bind(actor.user_id.to_string())
            .bind(&client_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = existing {
                // Dropping `tx` rolls the counter back.
                return Ok((message_from_row(&row)?, false));
            }
            let id = Uuid::now_v7();
            let inserted = sqlx::query(
                "INSERT INTO chat_messages (id, chat_id, seq, sender_id, client_id, text, version, created_at, edited_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 1, $7, NULL)",
            )
            .bind(id.to_string())
            .bind(chat_id.to_string())
            .bind(seq)
            .bind(actor.user_id.to_string())
            .bind(&client_id)
            .bind(&text)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                // Cannot happen while the counter row serialises senders;
                // if it ever does, the retry re-reads under the lock.
                Err(e) if is_unique_violation(&e) && attempt < 2 => continue,
                other => other?,
            };
            sqlx::query(
                "UPDATE chat_members SET last_read_seq = $1
                 WHERE chat_id = $2 AND user_id = $3 AND last_read_seq < $1",
            )
            .bind(seq)
            .bind(chat_id.to_string())
            .bind(actor.user_id.to_string())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            let message = ChatMessage {
                id,
                chat_id,
                seq,
                sender: UserRef {
                    id: actor.user_id,
                    username: actor.username.clone(),
                },
                text,
                client_id,
                version: 1,
                created_at: ms_to_dt(now),
                edited_at: None,
            };
            self.emit_chat(ChatEvent::MessageCreated {
                chat_id,
                message: message.clone(),
            })
            .await;
            return Ok((message, true));
        }
        Err(ApiError::Conflict(
            "message changed concurrently; retry".into(),
        ))
    }

    /// Newest first below `before`, or oldest first above `after_seq`.
    pub async fn list_messages(
        &self,
        actor: &Actor,
        chat_id: Uuid,
        q: &MessagesQuery,
    ) -> Result<MessagePage, ApiError> {
        if q.before.is_some() && q.after_seq.is_some() {
            return Err(ApiError::BadRequest(
                "use either before or after_seq, not both".into(),
            ));
        }
        let limit = q
            .limit
            .unwrap_or(self.config().default_message_page_limit)
            .clamp(1, self.config().max_message_page_limit.max(1));
        let mut conn = self.db().pool.acquire().await?;
        chat_access(&mut conn, chat_id, actor.user_id).await?;
        let (sql, bound) = match q.after_seq {
            Some(after) => (
                format!("{MESSAGE_SELECT} WHERE msg.chat_id = $1 AND msg.seq > $2 ORDER BY msg.seq LIMIT $3"),
                after,
            ),
            None => (
                format!("{MESSAGE_SELECT} WHERE msg.chat_id = $1 AND msg.seq < $2 ORDER BY msg.seq DESC LIMIT $3"),
                q.before.unwrap_or(i64::MAX),
            ),
        };
        let rows = sqlx::query(&sql)
            .bind(chat_id.to_string())
            .bind(bound)
            .bind(i64::from(limit) + 1)
            .fetch_all(&mut *conn)
            .await?;
        let mut items = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Ok(MessagePage { items, has_more })
    }

    /// The author replaces the text; `version` goes up by one.
    pub async fn edit_message(
        &self,
        actor: &Actor,
        message_id: Uuid,
        req: EditMessageRequest,
    ) -> Result<ChatMessage, ApiError> {
        let text = long_text("text", &req.text, 1, self.config().message_max_chars)?;
        let mut tx = self.db().pool.begin().await?;
        let row = sqlx::query("SELECT chat_id, sender_id FROM chat_messages WHERE id = $1")
            .bind(message_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ApiError::not_found("message"))?;
        let chat_id = uuid_col(&row.try_get::<String, _>("chat_id")?)?;
        let sender_id = uuid_col(&row.try_get::<String, _>("sender_id")?)?;
        chat_access(&mut tx, chat_id, actor.user_id)
            .await
            .map_err(|e| match e {
                ApiError::NotFound(_) => ApiError::not_found("message"),
                other => other,
            })?;
        if sender_id != actor.user_id {
            return Err(ApiError::Forbidden(
                "only the author may edit this message".into(),
            ));
        }
        sqlx::query(
            "UPDATE chat_messages SET text = $1, version = version + 1, edited_at = $2 WHERE id = $3",
        )
        .bind(&text)
        .bind(now_ms())
        .bind(message_id.to_string())
        .execute(&mut *tx)
        .await?;
        let message = message_view(&mut tx, message_id).await?;
        tx.commit().await?;
        self.emit_chat(ChatEvent::MessageEdited {
            chat_id,
            message_id,
            seq: message.seq,
            version: message.version,
            text: message.text.clone(),
        })
        .await;
        Ok(message)
    }

    /// Moves the caller's read position up to the given message; an older
    /// message leaves it where it is.
    pub async fn mark_read(
        &self,
        actor: &Actor,
        chat_id: Uuid,
        req: MarkReadRequest,
    ) -> Result<ReadState, ApiError> {
        let mut tx = self.db().pool.begin().await?;
        chat_access(&mut tx, chat_id, actor.user_id).await?;
        let seq: i64 = sqlx::query("SELECT seq FROM chat_messages WHERE id = $1 AND chat_id = $2")
            .bind(req.up_to_message_id.to_string())
            .bind(chat_id.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ApiError::not_found("message"))?
            .try_get("seq")?;
        let moved = sqlx::query(
            "UPDATE chat_members SET last_read_seq = $1
             WHERE chat_id = $2 AND user_id = $3 AND last_read_seq < $1",
        )
        .bind(seq)
        .bind(chat_id.to_string())
        .bind(actor.user_id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        let last_read_seq: i64 = sqlx::query(
            "SELECT last_read_seq FROM chat_members WHERE chat_id = $1 AND user_id = $2",
        )
        .bind(chat_id.to_string())
        .bind(actor.user_id.to_string())
        .fetch_one(&mut *tx)
        .await?
        .try_get("last_read_seq")?;
        let unread = unread_count(&mut tx, chat_id, actor.user_id, last_read_seq).await?;
        tx.commit().await?;
        if moved {
            self.emit_chat(ChatEvent::ReadReceipt {
                chat_id,
                user_id: actor.user_id,
                up_to_seq: last_read_seq,
            })
            .await;
        }
        Ok(ReadState {
            chat_id,
            user_id: actor.user_id,
            last_read_seq,
            unread_count: unread,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_key_is_symmetric() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(direct_key(a, b), direct_key(b, a));
        assert_ne!(direct_key(a, b), direct_key(a, a));
    }
}
