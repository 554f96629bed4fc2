//! The route table of the REST API: every domain module declares its routes
//! next to its handlers (with `utoipa-axum`, so the OpenAPI document is
//! derived from the same declaration); this only puts them together.
//!
//! One `routes!(..)` call per path: `utoipa-axum` mounts every handler of a
//! call on every path of that call, so mixing paths would serve methods the
//! document does not list.

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::openapi::ApiDoc;
use crate::{auth, chats, conferences, internal, posts, teams, waiting, Control};

/// Every `/v1` route, and the OpenAPI document describing exactly those.
pub(crate) fn api(c: &Control) -> OpenApiRouter<Control> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes())
        .merge(teams::routes())
        .merge(conferences::routes())
        .merge(waiting::routes())
        .merge(posts::routes())
        .merge(chats::routes())
        .merge(internal::routes(c))
}
