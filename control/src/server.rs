//! Router assembly, middleware and the HTTP server.

use std::future::Future;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::Response;
use axum::Router;
use convene_proto::control::Problem;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::error::{problem_response, problem_type, ApiError, PROBLEM_CONTENT_TYPE};
use crate::{metrics, ops, routes, Control};

pub(crate) fn router(control: Control) -> Router {
    let config = control.config().clone();
    let (api, doc) = routes::api(&control).split_for_parts();
    let mut app = api
        .merge(ops::routes(&doc))
        .fallback(not_found)
        .with_state(control.clone())
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(map_response(ensure_problem))
        // Tokens, accounts and everything else here are one user's: no
        // browser or shared cache may keep them.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(from_fn_with_state(control, metrics::track))
        .layer(TraceLayer::new_for_http());
    if let Some(cors) = cors_layer(&config.cors_origins) {
        app = app.layer(cors);
    }
    app
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.contains(&"*") {
        AllowOrigin::from(Any)
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// Turns any error response not produced by [`ApiError`] (axum's 405, a
/// layer's plain-text rejection) into problem+json, keeping its headers.
async fn ensure_problem(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_CONTENT_TYPE));
    if is_problem {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let detail = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|s| !s.trim().is_empty() && !status.is_server_error());
    let slug = match status {
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation-failed",
        s if s.is_server_error() => "internal-error",
        _ => "bad-request",
    };
    let problem = Problem {
        type_: problem_type(slug),
        title: status.canonical_reason().unwrap_or("Error").to_string(),
        status: status.as_u16(),
        detail,
    };
    let fresh = problem_response(&problem);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    Response::from_parts(parts, fresh.into_body())
}

/// Serves `router` with the default connection limits until `shutdown`
/// resolves, then drains open requests (see [`convene_httpd::serve`]; the
/// binary calls that with the configured limits and exported metrics).
/// Connect info is attached so per-IP limits see the peer address.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    convene_httpd::serve(
        listener,
        router,
        &convene_httpd::ConnLimits::default(),
        &convene_httpd::ConnMetrics::new(),
        shutdown,
    )
    .await
}
