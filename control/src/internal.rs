//! `/v1/internal/*` for a signaling service in another process: the calls
//! its `ControlPort` makes, over HTTP. Every request carries the shared
//! secret in `x-convene-internal-secret`; a missing or wrong secret is 401
//! (403 when the internal API is disabled because no secret is configured).
//!
//! Moderation calls name the moderator in the body: the signaling service has
//! already verified that user's room token, and the control plane checks the
//! user's moderator rights exactly as for the REST endpoints.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use convene_proto::control::WaitingEntry;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::tokens::constant_time_eq;
use crate::{Actor, Control};

/// Header carrying the shared secret.
pub const SECRET_HEADER: &str = crate::routes::INTERNAL_SECRET_HEADER;

/// The moderator on whose behalf a moderation call is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeratorRequest {
    pub moderator_id: Uuid,
}

/// Body of `…/waiting/{user_id}/deny`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalDenyRequest {
    pub moderator_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Answer of `…/waiting/{user_id}/touch`: the 1-based queue position, or
/// `None` when the user is no longer waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TouchResponse {
    pub position: Option<u32>,
}

/// Answer of `…/participants/{user_id}/room-token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomTokenResponse {
    pub token: String,
}

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
}

/// Checks the shared secret in constant time.
fn authorize(c: &Control, headers: &HeaderMap) -> ApiResult<()> {
    let expected = c
        .config()
        .internal_secret
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::Forbidden("internal API is disabled".into()))?;
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if given.is_empty() || !constant_time_eq(given, expected.as_bytes()) {
        return Err(ApiError::Unauthorized(
            "missing or invalid internal secret".into(),
        ));
    }
    Ok(())
}

/// Service calls take an actor; only the user id matters for permissions.
fn actor(user: Uuid) -> Actor {
    Actor::new(user, String::new())
}

/// The whole queue in order; waiting entries carry their position.
async fn waiting(
    State(c): State<Control>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Vec<WaitingEntry>>> {
    authorize(&c, &headers)?;
    Ok(Json(c.waiting_queue(id).await?))
}

async fn touch(
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

async fn leave(
    State(c): State<Control>,
    headers: HeaderMap,
    Path((id, user)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    authorize(&c, &headers)?;
    c.leave_waiting(&actor(user), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn admit(
    State(c): State<Control>,
    headers: HeaderMap,
    Path((id, user)): Path<(Uuid, Uuid)>,
    Json(req): Json<ModeratorRequest>,
) -> ApiResult<Json<WaitingEntry>> {
    authorize(&c, &headers)?;
    Ok(Json(c.admit(&actor(req.moderator_id), id, user).await?))
}

async fn deny(
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

async fn admit_all(
    State(c): State<Control>,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(req): Json<ModeratorRequest>,
) -> ApiResult<Json<Vec<WaitingEntry>>> {
    authorize(&c, &headers)?;
    Ok(Json(c.admit_all(&actor(req.moderator_id), id).await?))
}

async fn move_to_waiting(
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

async fn remove(
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

async fn end(
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
async fn room_token(
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
