//! HTTP handlers of teams and their members.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use convene_proto::control::{
    AddMemberRequest, CreateTeamRequest, JoinRequest, JoinTeamRequest, JoinTeamResponse,
    JoinTeamStatus, Member, Page, Problem, Team, UpdateMemberRequest, UpdateTeamRequest,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::ApiResult;
use crate::extract::{Json, Path, Query};
use crate::pagination::PageParams;
use crate::{Actor, Control};

/// The team and member routes.
pub(crate) fn routes() -> OpenApiRouter<Control> {
    OpenApiRouter::new()
        .routes(routes!(create_team, list_teams))
        .routes(routes!(get_team, update_team, delete_team))
        .routes(routes!(rotate_join_code))
        .routes(routes!(join_team))
        .routes(routes!(list_requests))
        .routes(routes!(accept_request))
        .routes(routes!(reject_request))
        .routes(routes!(list_members, add_member))
        .routes(routes!(update_member, remove_member))
}

#[utoipa::path(post, path = "/v1/teams", tag = "teams", security(("bearer" = [])), request_body = CreateTeamRequest,
    responses((status = 201, body = Team), (status = 422, body = Problem)))]
async fn create_team(
    State(c): State<Control>,
    actor: Actor,
    Json(req): Json<CreateTeamRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(c.create_team(&actor, req).await?)))
}

/// Teams the caller belongs to.
#[utoipa::path(get, path = "/v1/teams", tag = "teams", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<Team>)))]
async fn list_teams(
    State(c): State<Control>,
    actor: Actor,
    Query(p): Query<PageParams>,
) -> ApiResult<Json<Page<Team>>> {
    Ok(Json(c.list_teams(&actor, &p).await?))
}

#[utoipa::path(get, path = "/v1/teams/{id}", tag = "teams", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")),
    responses((status = 200, body = Team), (status = 404, body = Problem)))]
async fn get_team(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Team>> {
    Ok(Json(c.get_team(&actor, id).await?))
}

#[utoipa::path(patch, path = "/v1/teams/{id}", tag = "teams", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id")), request_body = UpdateTeamRequest,
    responses((status = 200, body = Team), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn update_team(
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
async fn delete_team(
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
async fn rotate_join_code(
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
async fn join_team(
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
async fn list_requests(
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
async fn accept_request(
    State(c): State<Control>,
    actor: Actor,
    Path((id, request_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<JoinRequest>> {
    Ok(Json(c.accept_join_request(&actor, id, request_id).await?))
}

#[utoipa::path(post, path = "/v1/teams/{id}/requests/{request_id}/reject", tag = "teams", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id"), ("request_id" = Uuid, Path, description = "Join request id")),
    responses((status = 200, body = JoinRequest), (status = 403, body = Problem), (status = 409, body = Problem)))]
async fn reject_request(
    State(c): State<Control>,
    actor: Actor,
    Path((id, request_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<Json<JoinRequest>> {
    Ok(Json(c.reject_join_request(&actor, id, request_id).await?))
}

#[utoipa::path(get, path = "/v1/teams/{id}/members", tag = "members", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Team id"), PageParams),
    responses((status = 200, body = Page<Member>), (status = 404, body = Problem)))]
async fn list_members(
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
async fn add_member(
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
async fn update_member(
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
async fn remove_member(
    State(c): State<Control>,
    actor: Actor,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    c.remove_member(&actor, id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
