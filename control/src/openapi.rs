//! The parts of the OpenAPI document that belong to no route: info, tags,
//! security schemes and schemas only reached through events. The paths come
//! from the route table ([`crate::routes`]); the whole document is served at
//! `/openapi.json`.

use convene_proto::control::*;
use convene_proto::ice::IceServer;
use convene_proto::secret::LEGACY_INTERNAL_SECRET_HEADER;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Security scheme of user access tokens.
pub(crate) const USER_BEARER: &str = "bearer";
/// Security scheme of the internal API's shared secret.
pub(crate) const INTERNAL_SECRET: &str = "internal_secret";
/// The deprecated header form of the internal secret.
pub(crate) const LEGACY_INTERNAL_SECRET: &str = "internal_secret_header";

#[derive(OpenApi)]
#[openapi(
    info(title = "convene control plane", description = "Users, teams, conferences, the waiting hall, posts and chats."),
    components(schemas(Problem, IceServer, Grants, RoomClaims, convene_proto::events::ConferenceEvent,
        convene_proto::collab::ChatEvent)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth"), (name = "users"), (name = "teams"), (name = "members"),
        (name = "conferences"), (name = "waiting"), (name = "internal"),
        (name = "posts"), (name = "chats"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            USER_BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            INTERNAL_SECRET,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("the shared internal secret (`--internal-secret`)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            LEGACY_INTERNAL_SECRET,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                LEGACY_INTERNAL_SECRET_HEADER,
                "deprecated: the shared internal secret in the header of earlier releases; accepted for one more release, send `Authorization: Bearer` instead",
            ))),
        );
    }
}
