//! The browser client (`web/` at the top of the repository), embedded in the
//! binary so `convene up` and `convene signaling` serve it with no files on
//! disk.

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

#[derive(rust_embed::Embed)]
#[folder = "web/"]
struct Assets;

/// One route per embedded file, plus `/` for `index.html`. Explicit routes
/// rather than a fallback, so unknown API paths keep the API's own 404.
pub fn router() -> Router {
    let mut router = Router::new().route("/", get(|| async { asset("index.html") }));
    for path in Assets::iter() {
        let path = path.to_string();
        let route = format!("/{path}");
        router = router.route(&route, get(move || async move { asset(&path) }));
    }
    router
}

/// The client loads only its own modules and styles, talks only to its own
/// origin (REST and the WebSocket), and is never framed: a policy strict
/// enough that injected markup could neither run script nor send data away.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(path: &str) -> Response {
    match Assets::get(path) {
        Some(file) => (
            [
                (header::CONTENT_TYPE, file.metadata.mimetype().to_string()),
                (header::CACHE_CONTROL, "no-cache".to_string()),
                (
                    header::CONTENT_SECURITY_POLICY,
                    CONTENT_SECURITY_POLICY.to_string(),
                ),
                (header::X_FRAME_OPTIONS, "DENY".to_string()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
                (header::REFERRER_POLICY, "no-referrer".to_string()),
            ],
            Body::from(file.data.into_owned()),
        )
            .into_response(),
        // Only reachable if the embedded set changed under us.
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn serves_index_and_modules_with_their_types() {
        for (path, mime) in [
            ("/", "text/html"),
            ("/app.js", "javascript"),
            ("/style.css", "text/css"),
        ] {
            let res = router()
                .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{path}");
            let ct = res.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_string();
            assert!(ct.contains(mime), "{path}: {ct}");
            let h = res.headers();
            let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
            assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{path}");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer", "{path}");
        }
        let res = router()
            .oneshot(
                axum::http::Request::get("/nope.js")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
    }
}
