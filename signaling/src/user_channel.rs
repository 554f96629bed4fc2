//! The user-level channel of a connection (after `hello`): chat messages,
//! edits, read receipts, typing and presence for every chat of the user.
//!
//! Chat events come from the control plane's chat bus, which is in-process or
//! Redis, so they may arrive from any node and, across nodes, out of order.
//! Each chat keeps a cursor, the highest `seq` this client has been sent:
//! a message right after it is sent at once, an older one is a duplicate, and
//! a newer one means a gap, filled from the database first. So a client sees
//! every message once, in `seq` order, and never an edit before its message.

use std::collections::HashMap;
use std::sync::Arc;

use convene_proto::collab::ChatEvent;
use convene_proto::signaling::{ErrorCode, ServerMessage};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::ports::{ChatSummary, PortError, UserPort};
use crate::presence::Presence;
use crate::Inner;

type Failure = (ErrorCode, String);

fn port_err(e: PortError) -> Failure {
    (e.code(), e.to_string())
}

struct ChatState {
    cursor: i64,
    members: Vec<Uuid>,
    forwarder: JoinHandle<()>,
}

impl Drop for ChatState {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

pub(crate) struct UserChannel {
    pub user_id: Uuid,
    port: Arc<dyn UserPort>,
    chats: HashMap<Uuid, ChatState>,
    /// Last presence told to this client per user, to send changes only
    /// (a user sharing three chats with us would otherwise arrive thrice).
    shown_online: HashMap<Uuid, bool>,
    events: mpsc::Sender<ChatEvent>,
    inbox: Option<JoinHandle<()>>,
    max_catchup: usize,
}

impl Drop for UserChannel {
    fn drop(&mut self) {
        if let Some(t) = self.inbox.take() {
            t.abort();
        }
    }
}

impl UserChannel {
    /// Authenticates, subscribes to every chat of the user and marks them
    /// online. Returns the channel and the `welcome` to send.
    pub(crate) async fn open(
        inner: &Arc<Inner>,
        access_token: &str,
        events: mpsc::Sender<ChatEvent>,
    ) -> Result<(Self, ServerMessage), Failure> {
        let port = inner.users.clone().ok_or((
            ErrorCode::Forbidden,
            "this node has no user channel".to_string(),
        ))?;
        let user_id = port.authenticate(access_token).await.map_err(port_err)?;
        let summaries = port.chats(user_id).await.map_err(port_err)?;
        let mut channel = UserChannel {
            user_id,
            port: port.clone(),
            chats: HashMap::new(),
            shown_online: HashMap::new(),
            events,
            inbox: None,
            max_catchup: inner.config.max_catchup_messages.max(1),
        };
        for s in summaries {
            channel.track(s);
        }
        // The user's inbox: chats they are added to from now on.
        channel.inbox = Some(channel.forward(user_id));
        if inner.presence.connect(user_id).await {
            channel.announce(true).await;
        }
        let mut others: Vec<Uuid> = channel
            .chats
            .values()
            .flat_map(|c| c.members.iter().copied())
            .filter(|u| *u != user_id)
            .collect();
        others.sort();
        others.dedup();
        let online = inner.presence.online(&others).await;
        for u in &others {
            channel.shown_online.insert(*u, online.contains(u));
        }
        Ok((channel, ServerMessage::Welcome { user_id, online }))
    }

    /// Feeds one bus key's events (a chat, or the user's inbox) into this
    /// connection.
    fn forward(&self, key: Uuid) -> JoinHandle<()> {
        let mut stream = self.port.events(key);
        let tx = self.events.clone();
        tokio::spawn(async move {
            while let Some(ev) = stream.next().await {
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
        })
    }

    /// Starts delivering a chat's events to this connection.
    fn track(&mut self, s: ChatSummary) {
        let forwarder = self.forward(s.chat_id);
        self.chats.insert(
            s.chat_id,
            ChatState {
                cursor: s.last_seq,
                members: s.members,
                forwarder,
            },
        );
    }

    async fn announce(&self, online: bool) {
        for chat_id in self.chats.keys() {
            let ev = ChatEvent::Presence {
                chat_id: *chat_id,
                user_id: self.user_id,
                online,
            };
            if let Err(e) = self.port.publish(ev).await {
                tracing::warn!(error = %e, "presence not published");
            }
        }
    }

    /// The connection closed.
    pub(crate) async fn close(self, inner: &Arc<Inner>) {
        if inner.presence.disconnect(self.user_id).await {
            self.announce(false).await;
        }
    }

    pub(crate) async fn typing(&self, chat_id: Uuid) -> Result<(), Failure> {
        if !self.chats.contains_key(&chat_id) {
            return Err((ErrorCode::NotFound, format!("no chat {chat_id} of yours")));
        }
        self.port
            .publish(ChatEvent::Typing {
                chat_id,
                user_id: self.user_id,
            })
            .await
            .map_err(port_err)
    }

    /// Sends what the client missed after `after_seq`.
    pub(crate) async fn sync(
        &mut self,
        chat_id: Uuid,
        after_seq: i64,
    ) -> Result<Vec<ServerMessage>, Failure> {
        let Some(state) = self.chats.get_mut(&chat_id) else {
            return Err((ErrorCode::NotFound, format!("no chat {chat_id} of yours")));
        };
        if after_seq < 0 {
            return Err((ErrorCode::BadMessage, "after_seq must be >= 0".into()));
        }
        // The client states where it is; later live messages continue from
        // what this sends.
        state.cursor = after_seq;
        self.fill(chat_id).await
    }

    /// Sends the messages after the chat's cursor and moves it.
    async fn fill(&mut self, chat_id: Uuid) -> Result<Vec<ServerMessage>, Failure> {
        let Some(state) = self.chats.get(&chat_id) else {
            return Ok(Vec::new());
        };
        let missed = self
            .port
            .messages_after(self.user_id, chat_id, state.cursor, self.max_catchup)
            .await
            .map_err(port_err)?;
        let mut out = Vec::with_capacity(missed.len());
        if let Some(state) = self.chats.get_mut(&chat_id) {
            for m in missed {
                if m.seq > state.cursor {
                    state.cursor = m.seq;
                    out.push(ServerMessage::MessageCreated {
                        chat_id,
                        message: m,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Turns one bus event into what this client should receive.
    pub(crate) async fn event(&mut self, presence: &Presence, ev: ChatEvent) -> Vec<ServerMessage> {
        let me = self.user_id;
        match ev {
            ChatEvent::MessageCreated { chat_id, message } => {
                let Some(state) = self.chats.get_mut(&chat_id) else {
                    return Vec::new();
                };
                if message.seq <= state.cursor {
                    return Vec::new();
                }
                if message.seq == state.cursor + 1 {
                    state.cursor = message.seq;
                    return vec![ServerMessage::MessageCreated { chat_id, message }];
                }
                self.fill_logged(chat_id).await
            }
            ChatEvent::MessageEdited {
                chat_id,
                message_id,
                seq,
                version,
                text,
            } => {
                let Some(state) = self.chats.get(&chat_id) else {
                    return Vec::new();
                };
                let mut out = Vec::new();
                if seq > state.cursor {
                    // The message itself has not reached this client yet:
                    // send it (and anything before it) first.
                    out = self.fill_logged(chat_id).await;
                }
                out.push(ServerMessage::MessageEdited {
                    chat_id,
                    message_id,
                    seq,
                    version,
                    text,
                });
                out
            }
            ChatEvent::ReadReceipt {
                chat_id,
                user_id,
                up_to_seq,
            } => {
                if !self.chats.contains_key(&chat_id) {
                    return Vec::new();
                }
                vec![ServerMessage::ReadReceipt {
                    chat_id,
                    user_id,
                    up_to_seq,
                }]
            }
            ChatEvent::Typing { chat_id, user_id } => {
                if user_id == me || !self.chats.contains_key(&chat_id) {
                    return Vec::new();
                }
                vec![ServerMessage::Typing { chat_id, user_id }]
            }
            ChatEvent::Presence {
                user_id, online, ..
            } => {
                if user_id == me || self.shown_online.get(&user_id) == Some(&online) {
                    return Vec::new();
                }
                self.shown_online.insert(user_id, online);
                vec![ServerMessage::Presence { user_id, online }]
            }
            ChatEvent::Invited { chat_id, user_id } => {
                if user_id != me || self.chats.contains_key(&chat_id) {
                    return Vec::new();
                }
                self.join_chat(presence, chat_id).await
            }
            ChatEvent::MemberAdded { chat_id, user_id } => {
                if user_id == me {
                    if self.chats.contains_key(&chat_id) {
                        return Vec::new();
                    }
                    return self.join_chat(presence, chat_id).await;
                }
                let Some(state) = self.chats.get_mut(&chat_id) else {
                    return Vec::new();
                };
                if !state.members.contains(&user_id) {
                    state.members.push(user_id);
                }
                let mut out = vec![ServerMessage::ChatMemberAdded { chat_id, user_id }];
                out.extend(self.presence_of(presence, &[user_id]).await);
                out
            }
            ChatEvent::MemberRemoved { chat_id, user_id } => {
                let Some(state) = self.chats.get_mut(&chat_id) else {
                    return Vec::new();
                };
                state.members.retain(|u| *u != user_id);
                if user_id == me {
                    self.chats.remove(&chat_id);
                }
                vec![ServerMessage::ChatMemberRemoved { chat_id, user_id }]
            }
        }
    }

    /// The user was added to a chat: deliver it from its start.
    async fn join_chat(&mut self, presence: &Presence, chat_id: Uuid) -> Vec<ServerMessage> {
        let me = self.user_id;
        match self.port.chat(me, chat_id).await {
            Ok(mut s) => {
                s.last_seq = 0;
                let members = s.members.clone();
                self.track(s);
                let mut out = vec![ServerMessage::ChatMemberAdded {
                    chat_id,
                    user_id: me,
                }];
                out.extend(self.fill_logged(chat_id).await);
                out.extend(self.presence_of(presence, &members).await);
                out
            }
            Err(e) => {
                tracing::debug!(error = %e, "added to a chat that is gone");
                Vec::new()
            }
        }
    }

    /// Presence of users who just came to share a chat with this client.
    /// Their presence events so far went to chats this client was not in
    /// (or they came online before the chat existed), so it is looked up;
    /// only what differs from what the client was shown is sent, and
    /// offline is what a client assumes of a user it was never told about.
    async fn presence_of(&mut self, presence: &Presence, users: &[Uuid]) -> Vec<ServerMessage> {
        let users: Vec<Uuid> = users
            .iter()
            .copied()
            .filter(|u| *u != self.user_id)
            .collect();
        if users.is_empty() {
            return Vec::new();
        }
        let online = presence.online(&users).await;
        let mut out = Vec::new();
        for u in users {
            let now = online.contains(&u);
            let shown = self.shown_online.insert(u, now);
            if shown.unwrap_or(false) != now {
                out.push(ServerMessage::Presence {
                    user_id: u,
                    online: now,
                });
            }
        }
        out
    }

    async fn fill_logged(&mut self, chat_id: Uuid) -> Vec<ServerMessage> {
        match self.fill(chat_id).await {
            Ok(out) => out,
            Err((_, e)) => {
                tracing::warn!(chat = %chat_id, error = %e, "could not fill a chat gap");
                Vec::new()
            }
        }
    }
}
