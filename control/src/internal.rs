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

use axum::extract::{FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_extractor_with_state;
use convene_proto::collab::{Chat, ChatMessage};
use convene_proto::control::{Problem, RoomClaims, VerifyTokenRequest, WaitingEntry};
pub use convene_proto::internal::{
    AuthenticateRequest, AuthenticateResponse, InternalDenyRequest, MessagesAfterQuery,
    ModeratorRequest, RoomTokenResponse, TouchResponse,
};
use convene_proto::secret::{self, bearer_secret_matches, LEGACY_INTERNAL_SECRET_HEADER};
use utoipa::openapi::security::SecurityRequirement;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::{Actor, Control};

/// Upper bound on one catch-up answer, whatever the caller asks; the
/// signaling service asks for its `--ws-max-catchup-messages` (500).
pub const MAX_CATCHUP_MESSAGES: usize = 1000;

/// The routes. All but the token check sit behind [`InternalCaller`],
/// applied once here so a new route cannot forget it.
pub(crate) fn routes(c: &Control) -> OpenApiRouter<Control> {
    let guarded = OpenApiRouter::new()
        .routes(routes!(waiting))
        .routes(routes!(admit_all))
        .routes(routes!(touch))
        .routes(routes!(leave))
        .routes(routes!(admit))
        .routes(routes!(deny))
        .routes(routes!(move_to_waiting))
        .routes(routes!(remove))
        .routes(routes!(room_token))
        .routes(routes!(end))
        .routes(routes!(authenticate))
        .routes(routes!(chats))
        .routes(routes!(chat))
        .routes(routes!(messages_after))
        .route_layer(from_extractor_with_state::<InternalCaller, Control>(
            c.clone(),
        ));
    // Outside the guard: a wrong secret is 403 here, see `verify_token`.
    let mut router = guarded.routes(routes!(verify_token));
    document_secret(router.get_openapi_mut());
    router
}

/// Every internal operation takes the secret as a bearer credential, or
/// (deprecated) in the legacy header; the schemes are declared in
/// [`crate::openapi`].
fn document_secret(doc: &mut utoipa::openapi::OpenApi) {
    let requirement = || {
        vec![
            SecurityRequirement::new(crate::openapi::INTERNAL_SECRET, Vec::<String>::new()),
            SecurityRequirement::new(crate::openapi::LEGACY_INTERNAL_SECRET, Vec::<String>::new()),
        ]
    };
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.post].into_iter().flatten() {
            op.security = Some(requirement());
        }
    }
}

/// A request that carries the internal secret; rejects with 401 otherwise
/// (403 when the internal API is disabled).
pub(crate) struct InternalCaller;

impl FromRequestParts<Control> for InternalCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, c: &Control) -> ApiResult<Self> {
        if secret_matches(c, &parts.headers)? {
            Ok(InternalCaller)
        } else {
            Err(ApiError::Unauthorized(
                "missing or invalid internal secret".into(),
            ))
        }
    }
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

/// Service calls take an actor; only the user id matters for permissions.
fn actor(user: Uuid) -> Actor {
    Actor::new(user, String::new())
}

/// The whole queue in order; waiting entries carry their position.
#[utoipa::path(get, path = "/v1/internal/conferences/{id}/waiting", tag = "internal",
    params(("id" = Uuid, Path, description = "conference")),
    responses((status = 200, body = Vec<WaitingEntry>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn waiting(
    State(c): State<Control>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Vec<WaitingEntry>>> {
    Ok(Json(c.waiting_queue(id).await?))
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/waiting/{user_id}/touch", tag = "internal",
    params(("id" = Uuid, Path, description = "conference"), ("user_id" = Uuid, Path, description = "user")),
    responses((status = 200, body = TouchResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn touch(
    State(c): State<Control>,
    Path((id, user)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<TouchResponse>> {
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
    params(("id" = Uuid, Path, description = "conference"), ("user_id" = Uuid, Path, description = "user")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn leave(
    State(c): State<Control>,
    Path((id, user)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    c.leave_waiting(&actor(user), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/waiting/{user_id}/admit", tag = "internal", request_body = ModeratorRequest,
    params(("id" = Uuid, Path, description = "conference"), ("user_id" = Uuid, Path, description = "user")),
    responses((status = 200, body = WaitingEntry), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn admit(
    State(c): State<Control>,
    Path((id, user)): Path<(Uuid, Uuid)>,
    Json(req): Json<ModeratorRequest>,
) -> ApiResult<Json<WaitingEntry>> {
    Ok(Json(c.admit(&actor(req.moderator_id), id, user).await?))
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/waiting/{user_id}/deny", tag = "internal", request_body = InternalDenyRequest,
    params(("id" = Uuid, Path, description = "conference"), ("user_id" = Uuid, Path, description = "user")),
    responses((status = 200, body = WaitingEntry), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn deny(
    State(c): State<Control>,
    Path((id, user)): Path<(Uuid, Uuid)>,
    Json(req): Json<InternalDenyRequest>,
) -> ApiResult<Json<WaitingEntry>> {
    let reason = req.reason.filter(|r| !r.trim().is_empty());
    Ok(Json(
        c.deny(&actor(req.moderator_id), id, user, reason).await?,
    ))
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/waiting/admit-all", tag = "internal", request_body = ModeratorRequest,
    params(("id" = Uuid, Path, description = "conference")),
    responses((status = 200, body = Vec<WaitingEntry>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn admit_all(
    State(c): State<Control>,
    Path(id): Path<Uuid>,
    Json(req): Json<ModeratorRequest>,
) -> ApiResult<Json<Vec<WaitingEntry>>> {
    Ok(Json(c.admit_all(&actor(req.moderator_id), id).await?))
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/participants/{user_id}/move-to-waiting", tag = "internal", request_body = ModeratorRequest,
    params(("id" = Uuid, Path, description = "conference"), ("user_id" = Uuid, Path, description = "user")),
    responses((status = 200, body = WaitingEntry), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn move_to_waiting(
    State(c): State<Control>,
    Path((id, user)): Path<(Uuid, Uuid)>,
    Json(req): Json<ModeratorRequest>,
) -> ApiResult<Json<WaitingEntry>> {
    Ok(Json(
        c.move_to_waiting(&actor(req.moderator_id), id, user)
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/participants/{user_id}/remove", tag = "internal", request_body = ModeratorRequest,
    params(("id" = Uuid, Path, description = "conference"), ("user_id" = Uuid, Path, description = "user")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn remove(
    State(c): State<Control>,
    Path((id, user)): Path<(Uuid, Uuid)>,
    Json(req): Json<ModeratorRequest>,
) -> ApiResult<StatusCode> {
    c.remove_participant(&actor(req.moderator_id), id, user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/internal/conferences/{id}/end", tag = "internal", request_body = ModeratorRequest,
    params(("id" = Uuid, Path, description = "conference")),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn end(
    State(c): State<Control>,
    Path(id): Path<Uuid>,
    Json(req): Json<ModeratorRequest>,
) -> ApiResult<StatusCode> {
    c.end_conference(&actor(req.moderator_id), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A room token for a user the control plane has admitted (or who needs no
/// admission); 403 while the user still has to wait.
#[utoipa::path(post, path = "/v1/internal/conferences/{id}/participants/{user_id}/room-token", tag = "internal",
    params(("id" = Uuid, Path, description = "conference"), ("user_id" = Uuid, Path, description = "user")),
    responses((status = 200, body = RoomTokenResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn room_token(
    State(c): State<Control>,
    Path((id, user)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<RoomTokenResponse>> {
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
async fn authenticate(
    State(c): State<Control>,
    Json(req): Json<AuthenticateRequest>,
) -> ApiResult<Json<AuthenticateResponse>> {
    let actor = c.authenticate(&req.access_token)?;
    Ok(Json(AuthenticateResponse {
        user_id: actor.user_id,
    }))
}

/// Every chat of the user.
#[utoipa::path(get, path = "/v1/internal/users/{user_id}/chats", tag = "internal",
    params(("user_id" = Uuid, Path, description = "user")),
    responses((status = 200, body = Vec<Chat>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn chats(State(c): State<Control>, Path(user): Path<Uuid>) -> ApiResult<Json<Vec<Chat>>> {
    let actor = c.actor(user).await?;
    Ok(Json(c.all_chats(&actor).await?))
}

/// One chat, as the user sees it (404 when not a member).
#[utoipa::path(get, path = "/v1/internal/users/{user_id}/chats/{chat_id}", tag = "internal",
    params(("user_id" = Uuid, Path, description = "user"), ("chat_id" = Uuid, Path, description = "chat")),
    responses((status = 200, body = Chat), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn chat(
    State(c): State<Control>,
    Path((user, chat)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<Chat>> {
    let actor = c.actor(user).await?;
    Ok(Json(c.get_chat(&actor, chat).await?))
}

/// Messages after a sequence number, oldest first.
#[utoipa::path(get, path = "/v1/internal/users/{user_id}/chats/{chat_id}/messages", tag = "internal",
    params(("user_id" = Uuid, Path, description = "user"), ("chat_id" = Uuid, Path, description = "chat"), MessagesAfterQuery),
    responses((status = 200, body = Vec<ChatMessage>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn messages_after(
    State(c): State<Control>,
    Path((user, chat)): Path<(Uuid, Uuid)>,
    Query(q): Query<MessagesAfterQuery>,
) -> ApiResult<Json<Vec<ChatMessage>>> {
    let actor = c.actor(user).await?;
    let limit = q.limit.clamp(1, MAX_CATCHUP_MESSAGES);
    Ok(Json(
        c.messages_after(&actor, chat, q.after_seq, limit).await?,
    ))
}

/// Verify a room token (for signaling services in other processes).
#[utoipa::path(post, path = "/v1/internal/tokens/verify", tag = "internal", request_body = VerifyTokenRequest,
    responses((status = 200, body = RoomClaims), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn verify_token(
    State(c): State<Control>,
    headers: HeaderMap,
    Json(req): Json<VerifyTokenRequest>,
) -> ApiResult<Json<RoomClaims>> {
    // 403 here (the other internal endpoints answer 401), so a wrong secret
    // stays distinguishable from a bad token (401).
    if !secret_matches(&c, &headers)? {
        return Err(ApiError::Forbidden("invalid internal secret".into()));
    }
    let claims = if req.allow_expired {
        c.verify_room_token_for_resume(&req.token).await?
    } else {
        c.verify_room_token(&req.token).await?
    };
    Ok(Json(claims))
}
