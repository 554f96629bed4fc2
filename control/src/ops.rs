//! Operational endpoints, outside `/v1` and the OpenAPI document: health,
//! readiness, Prometheus metrics and the document itself.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::Control;

/// The routes; `doc` is served as `/openapi.json`, rendered once.
pub(crate) fn routes(doc: &utoipa::openapi::OpenApi) -> Router<Control> {
    let doc = crate::openapi::document_errors(doc);
    let doc = Bytes::from(serde_json::to_vec(&doc).expect("the OpenAPI document serializes"));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route(
            "/openapi.json",
            get(move || async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    doc,
                )
            }),
        )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(c): State<Control>) -> Result<&'static str, ApiError> {
    c.db()
        .ping()
        .await
        .map(|_| "ready")
        .map_err(|e| ApiError::Unavailable(format!("database unreachable: {e}")))
}

async fn metrics_text(State(c): State<Control>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        c.metrics().render(),
    )
        .into_response()
}
