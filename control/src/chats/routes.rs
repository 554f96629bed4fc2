//! HTTP handlers of chats and their messages.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use convene_proto::collab::{
    AddChatMemberRequest, Chat, ChatMember, ChatMessage, CreateChatRequest, EditMessageRequest,
    MarkReadRequest, MessagePage, ReadState, SendMessageRequest,
};
use convene_proto::control::{Page, Problem};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::MessagesQuery;
use crate::error::ApiResult;
use crate::extract::{Json, Path, Query};
use crate::pagination::PageParams;
use crate::{Actor, Control};

/// The chat routes.
pub(crate) fn routes() -> OpenApiRouter<Control> {
    OpenApiRouter::new()
        .routes(routes!(list_chats, create_chat))
        .routes(routes!(get_chat))
        .routes(routes!(add_chat_member))
        .routes(routes!(remove_chat_member))
        .routes(routes!(list_messages, send_message))
        .routes(routes!(mark_read))
        .routes(routes!(edit_message))
}

/// The caller's chats, most recently active first.
#[utoipa::path(get, path = "/v1/chats", tag = "chats", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = Page<Chat>)))]
async fn list_chats(
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
async fn create_chat(
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
async fn get_chat(
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
async fn add_chat_member(
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
async fn remove_chat_member(
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
async fn list_messages(
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
async fn send_message(
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
async fn mark_read(
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
async fn edit_message(
    State(c): State<Control>,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(req): Json<EditMessageRequest>,
) -> ApiResult<Json<ChatMessage>> {
    Ok(Json(c.edit_message(&actor, id, req).await?))
}
