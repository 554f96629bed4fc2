//! [`RemoteUsers`]: the user channel's port over the network.

use async_trait::async_trait;
use convene_bus::ChatBus;
use convene_proto::collab::{Chat, ChatEvent, ChatMessage};
use convene_proto::internal::{AuthenticateRequest, AuthenticateResponse};
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::Method;
use uuid::Uuid;

use super::control::NO_BODY;
use super::{RemoteControl, RemoteError};
use crate::ports::{ChatSummary, PortError, UserPort};

/// The user channel's port over the network: chats and messages from the
/// control plane's internal API, chat events (messages, edits, typing,
/// presence, invitations) on Redis.
#[derive(Clone)]
pub struct RemoteUsers {
    control: RemoteControl,
    chats: ChatBus,
}

impl std::fmt::Debug for RemoteUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteUsers")
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

impl RemoteUsers {
    /// Calls go through `control` (its URL and secret); chat events come
    /// from the Redis at `redis_url`. Returns once that subscription is
    /// active.
    pub async fn connect(control: RemoteControl, redis_url: &str) -> Result<Self, RemoteError> {
        let client = redis::Client::open(redis_url)?;
        let chats = ChatBus::redis(client).await?;
        Ok(Self { control, chats })
    }

    fn user_path(user: Uuid, rest: &str) -> String {
        format!("v1/internal/users/{user}/{rest}")
    }
}

#[async_trait]
impl UserPort for RemoteUsers {
    async fn authenticate(&self, access_token: &str) -> Result<Uuid, PortError> {
        let body = AuthenticateRequest {
            access_token: access_token.to_string(),
        };
        let r: AuthenticateResponse = self
            .control
            .call(Method::POST, "v1/internal/users/authenticate", Some(&body))
            .await?;
        Ok(r.user_id)
    }

    async fn chats(&self, user: Uuid) -> Result<Vec<ChatSummary>, PortError> {
        let chats: Vec<Chat> = self
            .control
            .call(Method::GET, &Self::user_path(user, "chats"), NO_BODY)
            .await?;
        Ok(chats.into_iter().map(ChatSummary::from).collect())
    }

    async fn chat(&self, user: Uuid, chat: Uuid) -> Result<ChatSummary, PortError> {
        let path = Self::user_path(user, &format!("chats/{chat}"));
        let chat: Chat = self.control.call(Method::GET, &path, NO_BODY).await?;
        Ok(chat.into())
    }

    async fn messages_after(
        &self,
        user: Uuid,
        chat: Uuid,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, PortError> {
        // Two integers: no escaping needed.
        let path = Self::user_path(
            user,
            &format!("chats/{chat}/messages?after_seq={after_seq}&limit={limit}"),
        );
        self.control.call(Method::GET, &path, NO_BODY).await
    }

    async fn publish(&self, event: ChatEvent) -> Result<(), PortError> {
        self.chats
            .publish(&event)
            .await
            .map_err(|e| PortError::Unavailable(format!("chat bus: {e}")))
    }

    fn events(&self, chat: Uuid) -> BoxStream<'static, ChatEvent> {
        self.chats.subscribe(chat).into_stream().boxed()
    }
}
