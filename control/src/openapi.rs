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

/// Error statuses every operation may answer, whatever its own
/// declaration lists: the extractors and layers in front of the handlers
/// (malformed input, missing token, body limits, an unavailable database)
/// answer them for all routes alike.
fn common_errors(
    path: &str,
    method: &str,
    op: &serde_json::Value,
) -> Vec<(&'static str, &'static str)> {
    let mut out = vec![
        ("400", "Malformed request (path, query or body)"),
        (
            "503",
            "Overloaded or a dependency is unavailable; retry later",
        ),
    ];
    let secured = op["security"].as_array().is_some_and(|s| {
        s.iter()
            .any(|r| r.as_object().is_some_and(|o| !o.is_empty()))
    });
    if secured {
        out.push(("401", "Missing, invalid or expired credentials"));
    }
    if path.contains('{') {
        out.push(("404", "Not found, or not visible to the caller"));
    }
    let has_params = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
    if op.get("requestBody").is_some() {
        out.push(("413", "Request body too large"));
        out.push(("415", "Request body is not JSON"));
    }
    if op.get("requestBody").is_some() || has_params {
        out.push(("422", "Validation failed"));
    }
    if path.starts_with("/v1/conferences/{id}") && method != "get" {
        out.push(("409", "The conference has ended"));
    }
    if path == "/v1/auth/login" || path == "/v1/auth/register" {
        out.push(("429", "Too many attempts; see Retry-After"));
    }
    out
}

/// Makes the document say what the API does on errors: every error is
/// `application/problem+json` (utoipa writes `application/json` for a
/// `body = Problem`), and the statuses in [`common_errors`] are listed on
/// every operation they apply to.
pub(crate) fn document_errors(doc: &utoipa::openapi::OpenApi) -> serde_json::Value {
    use serde_json::{json, Value};
    let mut doc = serde_json::to_value(doc).expect("the OpenAPI document serializes");
    let problem = json!({
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    });
    let Some(paths) = doc["paths"].as_object_mut() else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            if !matches!(method.as_str(), "get" | "put" | "post" | "delete" | "patch") {
                continue;
            }
            let common = common_errors(path, method, op);
            let Some(responses) = op["responses"].as_object_mut() else {
                continue;
            };
            for (status, resp) in responses.iter_mut() {
                if status.starts_with('4') || status.starts_with('5') {
                    if let Some(content) = resp.get_mut("content").and_then(Value::as_object_mut) {
                        if let Some(body) = content.remove("application/json") {
                            content.insert("application/problem+json".into(), body);
                        }
                    }
                }
            }
            for (status, description) in common {
                responses
                    .entry(status)
                    .or_insert_with(|| json!({"description": description, "content": problem}));
            }
        }
    }
    doc
}
