//! `/v1` REST handlers: decode the request, call the service method, encode
//! the answer. No business logic lives here.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, patch, post};
use axum::Router;
use convene_proto::collab::*;
use convene_proto::control::*;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::chats::MessagesQuery;
use crate::error::ApiError;
use crate::extract::{ClientIp, Json, Path, Query};
use crate::pagination::PageParams;
use crate::{Actor, Control};

type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn v1() -> Router<Control> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/users/me", get(me))
        .route("/users", get(user_by_email))
        .route("/teams", post(create_team).get(list_teams))
        .route("/teams/join", post(join_team))
        .route(
            "/teams/{id}",
            get(get_team).patch(update_team).delete(delete_team),
        )
        .route("/teams/{id}/join-code/rotate", post(rotate_join_code))
        .route("/teams/{id}/requests", get(list_requests))
        .route(
            "/teams/{id}/requests/{request_id}/accept",
            post(accept_request),
        )
        .route(
            "/teams/{id}/requests/{request_id}/reject",
            post(reject_request),
        )
        .route("/teams/{id}/members", get(list_members).post(add_member))
        .route(
            "/teams/{id}/members/{user_id}",
            patch(update_member).delete(remove_member),
        )
        .route(
            "/teams/{id}/conferences",
            post(create_conference).get(list_conferences),
        )
        .route(
            "/conferences/{id}",
            get(get_conference).patch(update_conference),
        )
        .route("/conferences/{id}/end", post(end_conference))
        .route("/conferences/{id}/join", post(join_conference))
        .route(
            "/conferences/{id}/participants/{user_id}/remove",
            post(remove_participant),
        )
        .route(
            "/conferences/{id}/participants/{user_id}/move-to-waiting",
            post(move_to_waiting),
        )
        .route("/conferences/{id}/waiting", get(list_waiting))
        .route("/conferences/{id}/waiting/admit-all", post(admit_all))
        .route("/conferences/{id}/waiting/leave", post(leave_waiting))
        .route("/conferences/{id}/waiting/{user_id}/admit", post(admit))
        .route("/conferences/{id}/waiting/{user_id}/deny", post(deny))
        .route("/teams/{id}/posts", get(list_posts).post(create_post))
        .route(
            "/posts/{id}",
            get(get_post).patch(update_post).delete(delete_post),
        )
        .route(
            "/posts/{id}/comments",
            get(list_comments).post(create_comment),
        )
        .route(
            "/comments/{id}",
            patch(update_comment).delete(delete_comment),
        )
        .route("/chats", get(list_chats).post(create_chat))
        .route("/chats/{id}", get(get_chat))
        .route("/chats/{id}/members", post(add_chat_member))
        .route(
            "/chats/{id}/members/{user_id}",
            axum::routing::delete(remove_chat_member),
        )
        .route(
            "/chats/{id}/messages",
            get(list_messages).post(send_message),
        )
        .route("/chats/{id}/read", post(mark_read))
        .route("/messages/{id}", patch(edit_message))
        .route("/internal/tokens/verify", post(verify_token))
        .merge(crate::internal::routes())
}

// ------------------------------------------------------------------ auth

/// Create an account.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = User), (status = 409, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem, headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, body = Problem, headers(("Retry-After" = u64, description = "seconds")))))]
pub(crate) async fn register(
    State(c): State<Control>,
    ClientIp(ip): ClientIp,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(c.register(req, ip).await?)))
}

/// Log in with email or username.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem),
        (status = 429, body = Problem, headers(("Retry-After" = u64, description = "seconds"))),
        (status = 503, body = Problem, headers(("Retry-After" = u64, description = "seconds")))))]
pub(crate) async fn login(
    State(c): State<Control>,
    ClientIp(ip): ClientIp,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    Ok(Json(c.login(req, ip).await?))
}

/// Exchange a refresh token for a new token pair (the old one is invalidated).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem)))]
pub(crate) async fn refresh(
    State(c): State<Control>,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    Ok(Json(c.refresh(req).await?))
}

// ------------------------------------------------------------------ users

#[utoipa::path(get, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = Problem)))]
pub(crate) async fn me(State(c): State<Control>, actor: Actor) -> ApiResult<Json<User>> {
    Ok(Json(c.me(&actor).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EmailQuery {
    /// Exact email address (case-insensitive).
    email: String,
}

/// Look a user up by email.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])), params(EmailQuery),
    responses((status = 200, body = User), (status = 404, body = Problem)))]
pub(crate) async fn user_by_email(
    State(c): State<Control>,
    actor: Actor,
    Query(q): Query<EmailQuery>,
) -> ApiResult<Json<User>> {
    Ok(Json(c.find_user_by_email(&actor, &q.email).await?))
}

// ------------------------------------------------------------------ teams

#[utoipa::path(post, path = "/v1/teams", tag = "teams", security(("bearer" = [])), request_body = CreateTeamRequest,
    responses((status = 201, body = Team), (status = 422, body = Problem)))]
pub(crate) async fn create_team(
    State(c): State<Control>,
    actor: Actor,
    Json(req): Json<CreateTeamRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(c.create_team(&actor, req).await?)))
}

/// Teams the caller belongs to.
#[utoipa::path(get, path = "/v1/teams", tag = "teams", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<Team>)))]
pub(crate) async fn list_teams(
    State(c): State<Control>,
    actor: Actor,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<Page<Team>>> {
    Ok(Json(c.list_teams(&actor, &p).await?))
}

#[utoipa::path(get, path = "/v1/teams/{id}", tag = "teams", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")),
    responses((status = 200, body = Team), (status = 404, body = Problem)))]
pub(crate) async fn get_team(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Team>> {
    Ok(Json(c.get_team(&actor, id).await?))
}

#[utoipa::path(patch, path = "/v1/teams/{id}", tag = "teams", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")), request_body = UpdateTeamRequest,
    responses((status = 200, body = Team), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn update_team(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateTeamRequest>,
) -> ApiResult<Json<Team>> {
    Ok(Json(c.update_team(&actor, id, req).await?))
}

#[utoipa::path(delete, path = "/v1/teams/{id}", tag = "teams", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn delete_team(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    c.delete_team(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/teams/{id}/join-code/rotate", tag = "teams", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")),
    responses((status = 200, body = Team), (status = 403, body = Problem)))]
pub(crate) async fn rotate_join_code(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Team>> {
    Ok(Json(c.rotate_join_code(&actor, id).await?))
}

/// Ask to join a team by its join code.
#[utoipa::path(post, path = "/v1/teams/join", tag = "teams", security(("bearer" = [])), request_body = JoinTeamRequest,
    responses((status = 202, body = JoinTeamResponse, description = "request pending"),
        (status = 200, body = JoinTeamResponse, description = "already a member"),
        (status = 404, body = Problem)))]
pub(crate) async fn join_team(
    State(c): State<Control>,
    actor: Actor,
    Json(req): Json<JoinTeamRequest>,
) -> ApiResult<impl IntoResponse> {
    let resp = c.join_team(&actor, &req.code).await?;
    let status = match resp.status {
        JoinTeamStatus::Member => StatusCode::OK,
        JoinTeamStatus::Pending => StatusCode::ACCEPTED,
    };
    Ok((status, Json(resp)))
}

/// Pending join requests (admins).
#[utoipa::path(get, path = "/v1/teams/{id}/requests", tag = "teams", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id"), PageParams),
    responses((status = 200, body = Page<JoinRequest>), (status = 403, body = Problem)))]
pub(crate) async fn list_requests(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<Page<JoinRequest>>> {
    Ok(Json(c.list_join_requests(&actor, id, &p).await?))
}

#[utoipa::path(post, path = "/v1/teams/{id}/requests/{request_id}/accept", tag = "teams", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id"), ("request_id" = Uuid, Path, description = "Join request id")),
    responses((status = 200, body = JoinRequest), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn accept_request(
    State(c): State<Control>,
    actor: Actor,
    Path((id, request_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<JoinRequest>> {
    Ok(Json(c.accept_join_request(&actor, id, request_id).await?))
}

#[utoipa::path(post, path = "/v1/teams/{id}/requests/{request_id}/reject", tag = "teams", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id"), ("request_id" = Uuid, Path, description = "Join request id")),
    responses((status = 200, body = JoinRequest), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn reject_request(
    State(c): State<Control>,
    actor: Actor,
    Path((id, request_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<JoinRequest>> {
    Ok(Json(c.reject_join_request(&actor, id, request_id).await?))
}

// ------------------------------------------------------------------ members

#[utoipa::path(get, path = "/v1/teams/{id}/members", tag = "members", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id"), PageParams),
    responses((status = 200, body = Page<Member>), (status = 404, body = Problem)))]
pub(crate) async fn list_members(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<Page<Member>>> {
    Ok(Json(c.list_members(&actor, id, &p).await?))
}

/// Add a registered user to the team (admins).
#[utoipa::path(post, path = "/v1/teams/{id}/members", tag = "members", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")), request_body = AddMemberRequest,
    responses((status = 201, body = Member), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn add_member(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<AddMemberRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(c.add_member(&actor, id, &req.email).await?),
    ))
}

#[utoipa::path(patch, path = "/v1/teams/{id}/members/{user_id}", tag = "members", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id"), ("user_id" = Uuid, Path, description = "User id")),
    request_body = UpdateMemberRequest,
    responses((status = 200, body = Member), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn update_member(
    State(c): State<Control>,
    actor: Actor,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
    Json(req): Json<UpdateMemberRequest>,
) -> ApiResult<Json<Member>> {
    Ok(Json(c.update_member(&actor, id, user_id, req.role).await?))
}

/// Remove a member (admins) or leave the team (self).
#[utoipa::path(delete, path = "/v1/teams/{id}/members/{user_id}", tag = "members", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id"), ("user_id" = Uuid, Path, description = "User id")),
    responses((status = 204), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn remove_member(
    State(c): State<Control>,
    actor: Actor,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    c.remove_member(&actor, id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ conferences

#[utoipa::path(post, path = "/v1/teams/{id}/conferences", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")), request_body = CreateConferenceRequest,
    responses((status = 201, body = Conference), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_conference(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<CreateConferenceRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(c.create_conference(&actor, id, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/teams/{id}/conferences", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id"), PageParams),
    responses((status = 200, body = Page<Conference>), (status = 404, body = Problem)))]
pub(crate) async fn list_conferences(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<Page<Conference>>> {
    Ok(Json(c.list_conferences(&actor, id, &p).await?))
}

#[utoipa::path(get, path = "/v1/conferences/{id}", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id")),
    responses((status = 200, body = Conference), (status = 404, body = Problem)))]
pub(crate) async fn get_conference(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Conference>> {
    Ok(Json(c.get_conference(&actor, id).await?))
}

#[utoipa::path(patch, path = "/v1/conferences/{id}", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id")), request_body = UpdateConferenceRequest,
    responses((status = 200, body = Conference), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn update_conference(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateConferenceRequest>,
) -> ApiResult<Json<Conference>> {
    Ok(Json(c.update_conference(&actor, id, req).await?))
}

#[utoipa::path(post, path = "/v1/conferences/{id}/end", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id")),
    responses((status = 200, body = Conference), (status = 403, body = Problem)))]
pub(crate) async fn end_conference(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Conference>> {
    Ok(Json(c.end_conference(&actor, id).await?))
}

/// Get a room token (or a waiting-hall token) for the conference.
#[utoipa::path(post, path = "/v1/conferences/{id}/join", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id")),
    responses((status = 200, body = JoinConferenceResponse), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn join_conference(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<JoinConferenceResponse>> {
    Ok(Json(c.join_conference(&actor, id).await?))
}

#[utoipa::path(post, path = "/v1/conferences/{id}/participants/{user_id}/remove", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id"), ("user_id" = Uuid, Path, description = "User id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn remove_participant(
    State(c): State<Control>,
    actor: Actor,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    c.remove_participant(&actor, id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/conferences/{id}/participants/{user_id}/move-to-waiting", tag = "conferences", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id"), ("user_id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = WaitingEntry), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn move_to_waiting(
    State(c): State<Control>,
    actor: Actor,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<WaitingEntry>> {
    Ok(Json(c.move_to_waiting(&actor, id, user_id).await?))
}

// ------------------------------------------------------------------ waiting hall

#[utoipa::path(get, path = "/v1/conferences/{id}/waiting", tag = "waiting", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id")),
    responses((status = 200, body = Vec<WaitingEntry>), (status = 403, body = Problem)))]
pub(crate) async fn list_waiting(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Vec<WaitingEntry>>> {
    Ok(Json(c.list_waiting(&actor, id).await?))
}

#[utoipa::path(post, path = "/v1/conferences/{id}/waiting/{user_id}/admit", tag = "waiting", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id"), ("user_id" = Uuid, Path, description = "User id")),
    responses((status = 200, body = WaitingEntry), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn admit(
    State(c): State<Control>,
    actor: Actor,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<WaitingEntry>> {
    Ok(Json(c.admit(&actor, id, user_id).await?))
}

/// Deny entry; the body `{"reason": "..."}` is optional.
#[utoipa::path(post, path = "/v1/conferences/{id}/waiting/{user_id}/deny", tag = "waiting", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id"), ("user_id" = Uuid, Path, description = "User id")),
    request_body(content = DenyRequest, description = "optional"),
    responses((status = 200, body = WaitingEntry), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn deny(
    State(c): State<Control>,
    actor: Actor,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
    body: Bytes,
) -> ApiResult<Json<WaitingEntry>> {
    let req: DenyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DenyRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::Validation(e.to_string()),
            _ => ApiError::BadRequest(e.to_string()),
        })?
    };
    Ok(Json(c.deny(&actor, id, user_id, req.reason).await?))
}

#[utoipa::path(post, path = "/v1/conferences/{id}/waiting/admit-all", tag = "waiting", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id")),
    responses((status = 200, body = Vec<WaitingEntry>), (status = 403, body = Problem)))]
pub(crate) async fn admit_all(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Vec<WaitingEntry>>> {
    Ok(Json(c.admit_all(&actor, id).await?))
}

/// Leave the waiting hall.
#[utoipa::path(post, path = "/v1/conferences/{id}/waiting/leave", tag = "waiting", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conference id")),
    responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn leave_waiting(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    c.leave_waiting(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ posts

/// The team's posts, newest first.
#[utoipa::path(get, path = "/v1/teams/{id}/posts", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id"), PageParams),
    responses((status = 200, body = Page<Post>), (status = 404, body = Problem)))]
pub(crate) async fn list_posts(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<Page<Post>>> {
    Ok(Json(c.list_posts(&actor, id, &p).await?))
}

#[utoipa::path(post, path = "/v1/teams/{id}/posts", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")), request_body = CreatePostRequest,
    responses((status = 201, body = Post), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_post(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<CreatePostRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(c.create_post(&actor, id, req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/posts/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")),
    responses((status = 200, body = Post), (status = 404, body = Problem)))]
pub(crate) async fn get_post(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Post>> {
    Ok(Json(c.get_post(&actor, id).await?))
}

/// Edit a post (author only).
#[utoipa::path(patch, path = "/v1/posts/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")), request_body = UpdatePostRequest,
    responses((status = 200, body = Post), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update_post(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdatePostRequest>,
) -> ApiResult<Json<Post>> {
    Ok(Json(c.update_post(&actor, id, req).await?))
}

/// Delete a post and its comments (author or team admin).
#[utoipa::path(delete, path = "/v1/posts/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn delete_post(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    c.delete_post(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The post's comments, oldest first.
#[utoipa::path(get, path = "/v1/posts/{id}/comments", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id"), PageParams),
    responses((status = 200, body = Page<Comment>), (status = 404, body = Problem)))]
pub(crate) async fn list_comments(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<Page<Comment>>> {
    Ok(Json(c.list_comments(&actor, id, &p).await?))
}

#[utoipa::path(post, path = "/v1/posts/{id}/comments", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Post id")), request_body = CreateCommentRequest,
    responses((status = 201, body = Comment), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn create_comment(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<CreateCommentRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(c.create_comment(&actor, id, req).await?),
    ))
}

/// Edit a comment (author only).
#[utoipa::path(patch, path = "/v1/comments/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Comment id")), request_body = UpdateCommentRequest,
    responses((status = 200, body = Comment), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update_comment(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateCommentRequest>,
) -> ApiResult<Json<Comment>> {
    Ok(Json(c.update_comment(&actor, id, req).await?))
}

/// Delete a comment (author or team admin).
#[utoipa::path(delete, path = "/v1/comments/{id}", tag = "posts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Comment id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn delete_comment(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    c.delete_comment(&actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ chats

/// The caller's chats, most recently active first.
#[utoipa::path(get, path = "/v1/chats", tag = "chats", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<Chat>)))]
pub(crate) async fn list_chats(
    State(c): State<Control>,
    actor: Actor,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<Page<Chat>>> {
    Ok(Json(c.list_chats(&actor, &p).await?))
}

/// Create a chat. No title and one other member makes a direct chat; if
/// one with that user exists already it is returned with 200.
#[utoipa::path(post, path = "/v1/chats", tag = "chats", security(("bearer" = [])), request_body = CreateChatRequest,
    responses((status = 201, body = Chat), (status = 200, body = Chat, description = "existing direct chat"),
        (status = 422, body = Problem, description = "invalid input or unknown member email")))]
pub(crate) async fn create_chat(
    State(c): State<Control>,
    actor: Actor,
    Json(req): Json<CreateChatRequest>,
) -> ApiResult<impl IntoResponse> {
    let (chat, created) = c.create_chat(&actor, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(chat)))
}

#[utoipa::path(get, path = "/v1/chats/{id}", tag = "chats", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chat id")),
    responses((status = 200, body = Chat), (status = 404, body = Problem)))]
pub(crate) async fn get_chat(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Chat>> {
    Ok(Json(c.get_chat(&actor, id).await?))
}

/// Add a registered user to a group chat (any member may).
#[utoipa::path(post, path = "/v1/chats/{id}/members", tag = "chats", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chat id")), request_body = AddChatMemberRequest,
    responses((status = 201, body = ChatMember), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn add_chat_member(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<AddChatMemberRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(c.add_chat_member(&actor, id, &req.email).await?),
    ))
}

/// Leave a group chat, or (its creator) remove a member.
#[utoipa::path(delete, path = "/v1/chats/{id}/members/{user_id}", tag = "chats", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chat id"), ("user_id" = Uuid, Path, description = "User id")),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(crate) async fn remove_chat_member(
    State(c): State<Control>,
    actor: Actor,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    c.remove_chat_member(&actor, id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Messages: newest first (`?before=<seq>`), or oldest first after a
/// reconnect (`?after_seq=<seq>`).
#[utoipa::path(get, path = "/v1/chats/{id}/messages", tag = "chats", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chat id"), MessagesQuery),
    responses((status = 200, body = MessagePage), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub(crate) async fn list_messages(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Query(q): Query<MessagesQuery>,
) -> ApiResult<Json<MessagePage>> {
    Ok(Json(c.list_messages(&actor, id, &q).await?))
}

/// Send a message; a retry with the same `client_id` returns the stored
/// message with 200.
#[utoipa::path(post, path = "/v1/chats/{id}/messages", tag = "chats", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chat id")), request_body = SendMessageRequest,
    responses((status = 201, body = ChatMessage), (status = 200, body = ChatMessage, description = "retry of an earlier send"),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn send_message(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<SendMessageRequest>,
) -> ApiResult<impl IntoResponse> {
    let (message, created) = c.send_message(&actor, id, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(message)))
}

/// Mark messages read up to the given one (never moves backwards).
#[utoipa::path(post, path = "/v1/chats/{id}/read", tag = "chats", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Chat id")), request_body = MarkReadRequest,
    responses((status = 200, body = ReadState), (status = 404, body = Problem)))]
pub(crate) async fn mark_read(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<MarkReadRequest>,
) -> ApiResult<Json<ReadState>> {
    Ok(Json(c.mark_read(&actor, id, req).await?))
}

/// Edit a message (author only); `version` increments.
#[utoipa::path(patch, path = "/v1/messages/{id}", tag = "chats", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Message id")), request_body = EditMessageRequest,
    responses((status = 200, body = ChatMessage), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn edit_message(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<EditMessageRequest>,
) -> ApiResult<Json<ChatMessage>> {
    Ok(Json(c.edit_message(&actor, id, req).await?))
}

// ------------------------------------------------------------------ internal

/// Verify a room token (for signaling services in other processes).
#[utoipa::path(post, path = "/v1/internal/tokens/verify", tag = "internal", request_body = VerifyTokenRequest,
    params(("x-convene-internal-secret" = String, Header, description = "shared internal secret")),
    responses((status = 200, body = RoomClaims), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub(crate) async fn verify_token(
    State(c): State<Control>,
    headers: HeaderMap,
    Json(req): Json<VerifyTokenRequest>,
) -> ApiResult<Json<RoomClaims>> {
    // 403 here (the other internal endpoints answer 401), so a wrong secret
    // stays distinguishable from a bad token (401).
    if !crate::internal::secret_matches(&c, &headers)? {
        return Err(ApiError::Forbidden("invalid internal secret".into()));
    }
    Ok(Json(c.verify_room_token(&req.token).await?))
}
