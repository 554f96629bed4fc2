//! OpenAPI document of the `/v1` API, generated from the handlers'
//! annotations and served at `/openapi.json`.

use convene_proto::control::*;
use convene_proto::ice::IceServer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{internal, routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "convene control plane", description = "Users, teams, conferences, the waiting hall, posts and chats."),
    paths(
        routes::register, routes::login, routes::refresh,
        routes::me, routes::user_by_email,
        routes::create_team, routes::list_teams, routes::get_team, routes::update_team, routes::delete_team,
        routes::rotate_join_code, routes::join_team, routes::list_requests, routes::accept_request,
        routes::reject_request,
        routes::list_members, routes::add_member, routes::update_member, routes::remove_member,
        routes::create_conference, routes::list_conferences, routes::get_conference,
        routes::update_conference, routes::end_conference, routes::join_conference,
        routes::remove_participant,
        routes::move_to_waiting,
        routes::list_waiting, routes::admit, routes::deny, routes::admit_all, routes::leave_waiting,
        routes::verify_token,
        routes::list_posts, routes::create_post, routes::get_post, routes::update_post, routes::delete_post,
        routes::list_comments, routes::create_comment, routes::update_comment, routes::delete_comment,
        routes::list_chats, routes::create_chat, routes::get_chat, routes::add_chat_member,
        routes::remove_chat_member, routes::list_messages, routes::send_message, routes::mark_read,
        routes::edit_message,
        internal::waiting, internal::touch, internal::leave, internal::admit, internal::deny,
        internal::admit_all, internal::move_to_waiting, internal::remove, internal::end,
        internal::room_token, internal::authenticate, internal::chats, internal::chat,
        internal::messages_after,
    ),
    components(schemas(Problem, IceServer, Grants, RoomClaims, convene_proto::events::ConferenceEvent,
        convene_proto::collab::ChatEvent)),
    modifiers(&BearerAuth),
    tags(
        (name = "auth"), (name = "users"), (name = "teams"), (name = "members"),
        (name = "conferences"), (name = "waiting"), (name = "internal"),
        (name = "posts"), (name = "chats"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document as served.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
