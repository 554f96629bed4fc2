//! The signaling service's ports implemented by the control plane and the
//! SFU running in the same process (`convene up`). They live here, beside
//! the command that wires the three together, so that the signaling crate
//! itself never links the control plane or the SFU.

use async_trait::async_trait;
use convene_control::{Actor, ApiError, ChatEvent, Control};
use convene_proto::collab::ChatMessage;
use convene_proto::sfu::{
    AnswerRequest, JoinRequest, OfferRequest, SetMuteRequest, SfuEvent, SubscribeRequest,
    UnsubscribeRequest,
};
use convene_proto::signaling::WaitingEntryInfo;
use convene_sfu::{SfuError, SfuHandle};
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use uuid::Uuid;

use convene_signaling::ports::{
    Admission, ChatSummary, ControlPort, HallEvent, MediaPort, PortError, UserPort,
};

/// The SFU in this process.
#[derive(Clone)]
pub struct InProcessSfu(pub SfuHandle);

fn media_error(e: SfuError) -> PortError {
    match e {
        SfuError::Sdp(m) | SfuError::Negotiation(m) => PortError::Invalid(m),
        SfuError::RoomFull(_) => PortError::Limit(e.to_string()),
        SfuError::UnknownRoom(_) | SfuError::UnknownParticipant(_) | SfuError::NoPendingOffer => {
            PortError::NotFound(e.to_string())
        }
        SfuError::DuplicateParticipant(_) => PortError::Invalid(e.to_string()),
        SfuError::NotPermitted => PortError::Forbidden(e.to_string()),
        SfuError::Core(ref c) => PortError::Limit(c.to_string()),
        other => PortError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl MediaPort for InProcessSfu {
    async fn join(&self, r: JoinRequest) -> Result<String, PortError> {
        self.0.join_request(r).await.map_err(media_error)
    }

    async fn offer(&self, r: OfferRequest) -> Result<String, PortError> {
        self.0.offer_request(r).await.map_err(media_error)
    }

    async fn answer(&self, r: AnswerRequest) -> Result<(), PortError> {
        self.0
            .handle_answer(&r.room_id, &r.participant_id, &r.answer_sdp)
            .await
            .map_err(media_error)
    }

    async fn subscribe(&self, r: SubscribeRequest) -> Result<(), PortError> {
        self.0
            .subscribe(&r.room_id, &r.participant_id, &r.track_ids, r.max_quality)
            .await
            .map_err(media_error)
    }

    async fn unsubscribe(&self, r: UnsubscribeRequest) -> Result<(), PortError> {
        self.0
            .unsubscribe(&r.room_id, &r.participant_id, &r.track_ids)
            .await
            .map_err(media_error)
    }

    async fn set_mute(&self, r: SetMuteRequest) -> Result<(), PortError> {
        self.0
            .set_mute(&r.room_id, &r.track_id, r.muted)
            .await
            .map_err(media_error)
    }

    async fn remove_participant(
        &self,
        room_id: &str,
        participant_id: &str,
    ) -> Result<(), PortError> {
        self.0
            .remove_participant(room_id, participant_id)
            .await
            .map_err(media_error)
    }

    async fn close_room(&self, room_id: &str) -> Result<(), PortError> {
        self.0.close_room(room_id).await.map_err(media_error)
    }

    fn events(&self) -> BoxStream<'static, SfuEvent> {
        // A lagging receiver skips what it missed rather than stopping.
        BroadcastStream::new(self.0.events())
            .filter_map(|r| async move { r.ok() })
            .boxed()
    }
}

/// The control plane in this process.
#[derive(Clone)]
pub struct InProcessControl(pub Control);

fn control_error(e: ApiError) -> PortError {
    match e {
        ApiError::Unauthorized(_)
        | ApiError::InvalidCredentials
        | ApiError::TokenRevoked
        | ApiError::ConferenceEnded => PortError::Unauthorized(e.to_string()),
        ApiError::Forbidden(_) => PortError::Forbidden(e.to_string()),
        ApiError::NotFound(_) => PortError::NotFound(e.to_string()),
        ApiError::RateLimited { .. } => PortError::Limit(e.to_string()),
        ApiError::BadRequest(_)
        | ApiError::Validation(_)
        | ApiError::Conflict(_)
        | ApiError::LastAdmin
        | ApiError::UnsupportedMediaType(_)
        | ApiError::PayloadTooLarge => PortError::Invalid(e.to_string()),
        ApiError::Unavailable(_) | ApiError::Overloaded { .. } | ApiError::Internal(_) => {
            PortError::Unavailable(e.to_string())
        }
    }
}

/// Service calls take an actor; only the user id matters for permissions.
fn actor(user: Uuid) -> Actor {
    Actor::new(user, String::new())
}

#[async_trait]
impl ControlPort for InProcessControl {
    async fn verify(&self, token: &str, resume: bool) -> Result<Admission, PortError> {
        let c = if resume {
            self.0.verify_room_token_for_resume(token).await
        } else {
            self.0.verify_room_token(token).await
        }
        .map_err(control_error)?;
        Ok(Admission::from_claims_now(c))
    }

    async fn waiting_entries(&self, conference: Uuid) -> Result<Vec<WaitingEntryInfo>, PortError> {
        let entries = self
            .0
            .waiting_queue(conference)
            .await
            .map_err(control_error)?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                Some(WaitingEntryInfo {
                    position: u32::try_from(e.position?).ok()?,
                    user_id: e.user_id,
                    name: e.username,
                    since_ms: e.since.timestamp_millis(),
                })
            })
            .collect())
    }

    async fn touch_waiting(&self, conference: Uuid, user: Uuid) -> Result<Option<u32>, PortError> {
        let position = self
            .0
            .touch_waiting(conference, user)
            .await
            .map_err(control_error)?;
        Ok(position.and_then(|p| u32::try_from(p).ok()))
    }

    async fn leave_waiting(&self, conference: Uuid, user: Uuid) -> Result<(), PortError> {
        self.0
            .leave_waiting(&actor(user), conference)
            .await
            .map_err(control_error)
    }

    async fn admit(&self, moderator: Uuid, conference: Uuid, user: Uuid) -> Result<(), PortError> {
        self.0
            .admit(&actor(moderator), conference, user)
            .await
            .map(drop)
            .map_err(control_error)
    }

    async fn deny(
        &self,
        moderator: Uuid,
        conference: Uuid,
        user: Uuid,
        reason: &str,
    ) -> Result<(), PortError> {
        let reason = (!reason.trim().is_empty()).then(|| reason.to_string());
        self.0
            .deny(&actor(moderator), conference, user, reason)
            .await
            .map(drop)
            .map_err(control_error)
    }

    async fn admit_all(&self, moderator: Uuid, conference: Uuid) -> Result<(), PortError> {
        self.0
            .admit_all(&actor(moderator), conference)
            .await
            .map(drop)
            .map_err(control_error)
    }

    async fn move_to_waiting(
        &self,
        moderator: Uuid,
        conference: Uuid,
        user: Uuid,
    ) -> Result<(), PortError> {
        self.0
            .move_to_waiting(&actor(moderator), conference, user)
            .await
            .map(drop)
            .map_err(control_error)
    }

    async fn remove_participant(
        &self,
        moderator: Uuid,
        conference: Uuid,
        user: Uuid,
    ) -> Result<(), PortError> {
        self.0
            .remove_participant(&actor(moderator), conference, user)
            .await
            .map_err(control_error)
    }

    async fn end_conference(&self, moderator: Uuid, conference: Uuid) -> Result<(), PortError> {
        self.0
            .end_conference(&actor(moderator), conference)
            .await
            .map(drop)
            .map_err(control_error)
    }

    async fn room_token(&self, conference: Uuid, user: Uuid) -> Result<String, PortError> {
        let who = self.0.actor(user).await.map_err(control_error)?;
        let grant = self
            .0
            .join_conference(&who, conference)
            .await
            .map_err(control_error)?;
        if grant.waiting {
            return Err(PortError::Forbidden("still waiting".into()));
        }
        Ok(grant.token)
    }

    async fn events(&self, conference: Uuid) -> Result<BoxStream<'static, HallEvent>, PortError> {
        Ok(self
            .0
            .bus()
            .subscribe(conference)
            .into_stream()
            .filter_map(|ev| async move { HallEvent::from_conference(ev) })
            .boxed())
    }
}

/// Chats and presence served by the control plane in this process. Its chat
/// bus is in-process or Redis, so with Redis the user channel reaches users
/// connected to other signaling nodes.
#[derive(Clone)]
pub struct InProcessUsers(pub Control);

#[async_trait]
impl UserPort for InProcessUsers {
    async fn authenticate(&self, access_token: &str) -> Result<Uuid, PortError> {
        self.0
            .authenticate(access_token)
            .map(|a| a.user_id)
            .map_err(control_error)
    }

    async fn chats(&self, user: Uuid) -> Result<Vec<ChatSummary>, PortError> {
        let actor = self.0.actor(user).await.map_err(control_error)?;
        let chats = self.0.all_chats(&actor).await.map_err(control_error)?;
        Ok(chats.into_iter().map(ChatSummary::from).collect())
    }

    async fn chat(&self, user: Uuid, chat: Uuid) -> Result<ChatSummary, PortError> {
        let actor = self.0.actor(user).await.map_err(control_error)?;
        self.0
            .get_chat(&actor, chat)
            .await
            .map(ChatSummary::from)
            .map_err(control_error)
    }

    async fn messages_after(
        &self,
        user: Uuid,
        chat: Uuid,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, PortError> {
        let actor = self.0.actor(user).await.map_err(control_error)?;
        self.0
            .messages_after(&actor, chat, after_seq, limit)
            .await
            .map_err(control_error)
    }

    async fn publish(&self, event: ChatEvent) -> Result<(), PortError> {
        self.0
            .chat_bus()
            .publish(&event)
            .await
            .map_err(|e| PortError::Unavailable(format!("chat bus: {e}")))
    }

    fn events(&self, chat: Uuid) -> BoxStream<'static, ChatEvent> {
        self.0.subscribe_chat(chat).into_stream().boxed()
    }
}
