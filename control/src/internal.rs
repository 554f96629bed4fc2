//! `/v1/internal/*` for a signaling service in another process: the calls
//! its `ControlPort` makes, over HTTP. Every request carries the shared
//! secret as `Authorization: Bearer <secret>` (for one release the
//! deprecated `x-convene-internal-secret` header is accepted too); a missing
//! or wrong secret is 401 (403 when the internal API is disabled because no
//! secret is configured).
//!
//! Moderation calls name the moderator in the body: the signaling service has
//! already verified that user's room token, and the control plane checks the
//! user's moderator rights exactly as for the REST endpoints.

use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use convene_proto::collab::{Chat, ChatMessage};
use convene_proto::control::{Problem, WaitingEntry};
pub use convene_proto::internal::{
    AuthenticateRequest, AuthenticateResponse, InternalDenyRequest, MessagesAfterQuery,
    ModeratorRequest, RoomTokenResponse, TouchResponse,
};
use convene_proto::secret::{self, bearer_secret_matches, LEGACY_INTERNAL_SECRET_HEADER};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{Json, Path, Query};
use crate::{Actor, Control};

/// Upper bound on one catch-up answer, whatever the caller asks; the
/// signaling service asks for its `--ws-max-catchup-messages` (500).
pub const MAX_CATCHUP_MESSAGES: usize = 1000;

type ApiResult<T> = Result<T, ApiError>;

/// The routes, relative to `/v1`.
pub(crate) fn routes() -> Router<Control> {
    Router::new()
        .route("/internal/conferences/{id}/waiting", get(waiting))
        .route(
            "/internal/conferences/{id}/waiting/admit-all",
            post(admit_all),
        )
        .route(
            "/internal/conferences/{id}/waiting/{user_id}/touch",
            post(touch),
        )
        .route(
            "/internal/conferences/{id}/waiting/{user_id}/leave",
            post(leave),
        )
        .route(
            "/internal/conferences/{id}/waiting/{user_id}/admit",
            post(admit),
        )
        .route(
            "/internal/conferences/{id}/waiting/{user_id}/deny",
            post(deny),
        )
        .route(
            "/internal/conferences/{id}/participants/{user_id}/move-to-waiting",
            post(move_to_waiting),
        )
        .route(
            "/internal/conferences/{id}/participants/{user_id}/remove",
            post(remove),
        )
        .route(
            "/internal/conferences/{id}/participants/{user_id}/room-token",
            post(room_token),
        )
        .route("/internal/conferences/{id}/end", post(end))
        .route("/internal/users/authenticate", post(authenticate))
        .route("/internal/users/{user_id}/chats", get(chats))
        .route("/internal/users/{user_id}/chats/{chat_id}", get(chat))
        .route(
            "/internal/users/{user_id}/chats/{chat_id}/messages",
            get(messages_after),
        )
}

/// Whether the request carries the shared secret; 403 when the internal API
/// is disabled (no secret configured).
pub(crate) fn secret_matches(c: &Control, headers: &HeaderMap) -> ApiResult<bool> {
    let expected = c
        .config()
        .internal_secret
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::Forbidden("internal API is disabled".into()))?;
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    Ok(
        bearer_secret_matches(header(AUTHORIZATION.as_str()), expected)
            // Deprecated: callers of the previous release send only this.
            || header(LEGACY_INTERNAL_SECRET_HEADER)
                .is_some_and(|given| secret::secret_matches(given, expected)),
    )
}

/// 401 without the shared secret.
fn authorize(c: &Control, headers: &HeaderMap) -> ApiResult<()> {
    if secret_matches(c, headers)? {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "missing or invalid internal secret".into(),
        ))
    }
}

/// Service calls take an actor; only the user id matters for permissions.
fn actor(user: Uuid) -> Actor {
    Actor::new(user, String::new())
}

/// The whole queue in order; waiting entries carry their position.
#[utoipa::path(get, path = "/v1/internal/conferences/{id}/waiting", tag = "internal",
    params(("id" = Uuid, Path, description = "conference"), ("x-convene-internal-secret" = String, Header, description = "shared internal secret")),
    responses((status = 200, body = Vec<WaitingEntry>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn waiting(
    State(c): State<Control>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Vec<WaitingEntry>>> {
    authorize(&c, &headers)?;
    Ok(Json(c.waiting_queue(id).await?))
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/waiting/{user_id}/touch", tag = "internal",
    params(("id" = Uuid, Path, description = "conference"), ("user_id" = Uuid, Path, description = "user"), ("x-convene-internal-secret" = String, Header, description = "shared internal secret")),
    responses((status = 200, body = TouchResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn touch(
    State(c): State<Control>,
    headers: HeaderMap,
    Path((id, user)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<TouchResponse>> {
    authorize(&c, &headers)?;
    let position = c
        .waiting_queue(id)
        .await?
        .into_iter()
        .find(|e| e.user_id == user)
        .and_then(|e| e.position)
        .and_then(|p| u32::try_from(p).ok());
    Ok(Json(TouchResponse { position }))
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/waiting/{user_id}/leave", tag = "internal",
    params(("id" = Uuid, Path, description = "conference"), ("user_id" = Uuid, Path, description = "user"), ("x-convene-internal-secret" = String, Header, description = "shared internal secret")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn leave(
    State(c): State<Control>,
    headers: HeaderMap,
    Path((id, user)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    authorize(&c, &headers)?;
    c.leave_waiting(&actor(user), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/waiting/{user_id}/admit", tag = "internal", request_body = ModeratorRequest,
    params(("id" = Uuid, Path, description = "conference"), ("user_id" = Uuid, Path, description = "user"), ("x-convene-internal-secret" = String, Header, description = "shared internal secret")),
    responses((status = 200, body = WaitingEntry), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn admit(
    State(c): State<Control>,
    headers: HeaderMap,
    Path((id, user)): Path<(Uuid, Uuid)>,
    Json(req): Json<ModeratorRequest>,
) -> ApiResult<Json<WaitingEntry>> {
    authorize(&c, &headers)?;
    Ok(Json(c.admit(&actor(req.moderator_id), id, user).await?))
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/waiting/{user_id}/deny", tag = "internal", request_body = InternalDenyRequest,
    params(("id" = Uuid, Path, description = "conference"), ("user_id" = Uuid, Path, description = "user"), ("x-convene-internal-secret" = String, Header, description = "shared internal secret")),
    responses((status = 200, body = WaitingEntry), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn deny(
    State(c): State<Control>,
    headers: HeaderMap,
    Path((id, user)): Path<(Uuid, Uuid)>,
    Json(req): Json<InternalDenyRequest>,
) -> ApiResult<Json<WaitingEntry>> {
    authorize(&c, &headers)?;
    let reason = req.reason.filter(|r| !r.trim().is_empty());
    Ok(Json(
        c.deny(&actor(req.moderator_id), id, user, reason).await?,
    ))
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/waiting/admit-all", tag = "internal", request_body = ModeratorRequest,
    params(("id" = Uuid, Path, description = "conference"), ("x-convene-internal-secret" = String, Header, description = "shared internal secret")),
    responses((status = 200, body = Vec<WaitingEntry>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn admit_all(
    State(c): State<Control>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(req): Json<ModeratorRequest>,
) -> ApiResult<Json<Vec<WaitingEntry>>> {
    authorize(&c, &headers)?;
    Ok(Json(c.admit_all(&actor(req.moderator_id), id).await?))
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/participants/{user_id}/move-to-waiting", tag = "internal", request_body = ModeratorRequest,
    params(("id" = Uuid, Path, description = "conference"), ("user_id" = Uuid, Path, description = "user"), ("x-convene-internal-secret" = String, Header, description = "shared internal secret")),
    responses((status = 200, body = WaitingEntry), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn move_to_waiting(
    State(c): State<Control>,
    headers: HeaderMap,
    Path((id, user)): Path<(Uuid, Uuid)>,
    Json(req): Json<ModeratorRequest>,
) -> ApiResult<Json<WaitingEntry>> {
    authorize(&c, &headers)?;
    Ok(Json(
        c.move_to_waiting(&actor(req.moderator_id), id, user)
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/participants/{user_id}/remove", tag = "internal", request_body = ModeratorRequest,
    params(("id" = Uuid, Path, description = "conference"), ("user_id" = Uuid, Path, description = "user"), ("x-convene-internal-secret" = String, Header, description = "shared internal secret")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn remove(
    State(c): State<Control>,
    headers: HeaderMap,
    Path((id, user)): Path<(Uuid, Uuid)>,
    Json(req): Json<ModeratorRequest>,
) -> ApiResult<StatusCode> {
    authorize(&c, &headers)?;
    c.remove_participant(&actor(req.moderator_id), id, user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/end", tag = "internal", request_body = ModeratorRequest,
    params(("id" = Uuid, Path, description = "conference"), ("x-convene-internal-secret" = String, Header, description = "shared internal secret")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn end(
    State(c): State<Control>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(req): Json<ModeratorRequest>,
) -> ApiResult<StatusCode> {
    authorize(&c, &headers)?;
    c.end_conference(&actor(req.moderator_id), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A room token for a user the control plane has admitted (or who needs no
/// admission); 403 while the user still has to wait.
#[utoipa::path(post, path = "/v1/internal/conferences/{id}/participants/{user_id}/room-token", tag = "internal",
    params(("id" = Uuid, Path, description = "conference"), ("user_id" = Uuid, Path, description = "user"), ("x-convene-internal-secret" = String, Header, description = "shared internal secret")),
    responses((status = 200, body = RoomTokenResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn room_token(
    State(c): State<Control>,
    headers: HeaderMap,
    Path((id, user)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<RoomTokenResponse>> {
    authorize(&c, &headers)?;
    let who = c.actor(user).await?;
    let grant = c.join_conference(&who, id).await?;
    if grant.waiting {
        return Err(ApiError::Forbidden("still waiting".into()));
    }
    Ok(Json(RoomTokenResponse { token: grant.token }))
}

/// An access token (as sent in the WebSocket's `hello`) → its user.
#[utoipa::path(post, path = "/v1/internal/users/authenticate", tag = "internal", request_body = AuthenticateRequest,
    params(("x-convene-internal-secret" = String, Header, description = "shared internal secret")),
    responses((status = 200, body = AuthenticateResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn authenticate(
    State(c): State<Control>,
    headers: HeaderMap,
    Json(req): Json<AuthenticateRequest>,
) -> ApiResult<Json<AuthenticateResponse>> {
    authorize(&c, &headers)?;
    let actor = c.authenticate(&req.access_token)?;
    Ok(Json(AuthenticateResponse {
        user_id: actor.user_id,
    }))
}

/// Every chat of the user.
#[utoipa::path(get, path = "/v1/internal/users/{user_id}/chats", tag = "internal",
    params(("user_id" = Uuid, Path, description = "user"), ("x-convene-internal-secret" = String, Header, description = "shared internal secret")),
    responses((status = 200, body = Vec<Chat>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn chats(
    State(c): State<Control>,
    headers: HeaderMap,
    Path(user): Path<Uuid>,
) -> ApiResult<Json<Vec<Chat>>> {
    authorize(&c, &headers)?;
    let actor = c.actor(user).await?;
    Ok(Json(c.all_chats(&actor).await?))
}

/// One chat, as the user sees it (404 when not a member).
#[utoipa::path(get, path = "/v1/internal/users/{user_id}/chats/{chat_id}", tag = "internal",
    params(("user_id" = Uuid, Path, description = "user"), ("chat_id" = Uuid, Path, description = "chat"), ("x-convene-internal-secret" = String, Header, description = "shared internal secret")),
    responses((status = 200, body = Chat), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn chat(
    State(c): State<Control>,
    headers: HeaderMap,
    Path((user, chat)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<Chat>> {
    authorize(&c, &headers)?;
    let actor = c.actor(user).await?;
    Ok(Json(c.get_chat(&actor, chat).await?))
}

/// Messages after a sequence number, oldest first.
#[utoipa::path(get, path = "/v1/internal/users/{user_id}/chats/{chat_id}/messages", tag = "internal",
    params(("user_id" = Uuid, Path, description = "user"), ("chat_id" = Uuid, Path, description = "chat"), ("x-convene-internal-secret" = String, Header, description = "shared internal secret"), MessagesAfterQuery),
    responses((status = 200, body = Vec<ChatMessage>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn messages_after(
    State(c): State<Control>,
    headers: HeaderMap,
    Path((user, chat)): Path<(Uuid, Uuid)>,
    Query(q): Query<MessagesAfterQuery>,
) -> ApiResult<Json<Vec<ChatMessage>>> {
    authorize(&c, &headers)?;
    let actor = c.actor(user).await?;
    let limit = q.limit.clamp(1, MAX_CATCHUP_MESSAGES);
    Ok(Json(
        c.messages_after(&actor, chat, q.after_seq, limit).await?,
    ))
}
