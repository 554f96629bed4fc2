//! Request extractors whose rejections are problem+json [`ApiError`]s
//! instead of axum's plain-text defaults.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;
use crate::{Actor, Control};

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => ApiError::Validation(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "expected request with `Content-Type: application/json`".into(),
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

/// JSON body extractor and response type.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| Json(v))
            .map_err(ApiError::from)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a malformed id is a 400, not a 404 or 500.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e: PathRejection| ApiError::BadRequest(e.body_text()))
    }
}

/// Query string parameters.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e: QueryRejection| ApiError::BadRequest(e.body_text()))
    }
}

/// The caller's address: the connection's peer or, when the peer is one of
/// `--trusted-proxies`, the address that proxy saw (`X-Forwarded-For`, read
/// from the right, skipping trusted proxies: everything to the left of the
/// first untrusted hop was written by the client and proves nothing).
/// `None` when the router is served without connect info (e.g. driven
/// directly in tests).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<Control> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        control: &Control,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let config = control.config();
        Ok(ClientIp(peer.map(|peer| {
            client_ip(peer, &parts.headers, |ip| config.is_trusted_proxy(ip))
        })))
    }
}

fn client_ip(
    peer: IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    if !trusted(peer) {
        return peer;
    }
    // Several headers are one list, in order.
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted(ip) => client = ip,
            Ok(ip) => return ip,
            // Garbage from a hop we cannot vouch for: stop at the last
            // address we can.
            Err(_) => return client,
        }
    }
    client
}

impl FromRequestParts<Control> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        control: &Control,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed authorization header".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::Unauthorized("expected a bearer token".into()))?;
        control.authenticate(token.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy = |a: IpAddr| a == ip("10.0.0.2") || a == ip("10.0.0.3");
        // Not from a proxy: the header is the client's own claim.
        assert_eq!(
            client_ip(ip("203.0.113.9"), &xff(&["198.51.100.1"]), proxy),
            ip("203.0.113.9")
        );
        // From a proxy: the address it saw.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &xff(&["198.51.100.1"]), proxy),
            ip("198.51.100.1")
        );
        // A client prepending a forged hop does not get to choose.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &xff(&["1.2.3.4, 198.51.100.1"]), proxy),
            ip("198.51.100.1")
        );
        // Proxies in a chain are skipped, across several headers.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &xff(&["198.51.100.1", "10.0.0.3"]), proxy),
            ip("198.51.100.1")
        );
        // No header, or garbage: the nearest address we can vouch for.
        assert_eq!(client_ip(ip("10.0.0.2"), &xff(&[]), proxy), ip("10.0.0.2"));
        assert_eq!(
            client_ip(ip("10.0.0.2"), &xff(&["unknown, 10.0.0.3"]), proxy),
            ip("10.0.0.3")
        );
    }
}
