//! Bodies of the control plane's internal API (`/v1/internal/*`), which a
//! signaling service in another process calls; the control plane serves
//! them and the signaling service's remote port sends them, so both take
//! them from here. Calls carry the shared secret as
//! `Authorization: Bearer <secret>` (see [`crate::secret`]).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// The moderator on whose behalf a moderation call is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModeratorRequest {
    pub moderator_id: Uuid,
}

/// Body of `…/waiting/{user_id}/deny`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InternalDenyRequest {
    pub moderator_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Answer of `…/waiting/{user_id}/touch`: the 1-based queue position, or
/// `None` when the user is no longer waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TouchResponse {
    pub position: Option<u32>,
}

/// Answer of `…/participants/{user_id}/room-token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoomTokenResponse {
    pub token: String,
}

/// Body of `/internal/users/authenticate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthenticateRequest {
    pub access_token: String,
}

/// Answer of `/internal/users/authenticate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthenticateResponse {
    pub user_id: Uuid,
}

/// Query of `…/chats/{chat_id}/messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesAfterQuery {
    pub after_seq: i64,
    pub limit: usize,
}
