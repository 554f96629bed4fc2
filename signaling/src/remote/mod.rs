//! The ports over the network, for `convene signaling` running apart from
//! the control plane and the SFU.
//!
//! - [`RemoteControl`] calls the control plane's `/v1/internal/*` endpoints
//!   (shared secret as `Authorization: Bearer`) and takes conference
//!   events from Redis (`convene:conference:{id}`), where every control-plane
//!   process publishes them.
//! - [`RemoteUsers`] serves the user channel (`hello`: chats, typing,
//!   presence) from the same internal API, with chat events on Redis
//!   (`convene:chat:{id}`) as the control plane publishes them.
//! - [`RemoteSfu`] calls the SFU's HTTP control API (`POST /v1/request`,
//!   bearer secret) and follows its server-sent event stream
//!   (`GET /v1/events`), reconnecting with backoff when it breaks.

mod control;
mod sfu;
mod users;

use std::time::Duration;

use convene_bus::BusError;
use url::Url;

pub use control::RemoteControl;
pub use sfu::RemoteSfu;
pub use users::RemoteUsers;

use crate::ports::PortError;

/// Longest wait for one request to the control plane or the SFU.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a TCP connection to either.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a remote port could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("invalid URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("event bus: {0}")]
    Bus(#[from] BusError),
}

/// Parses a base URL and makes sure joining paths onto it keeps its own path.
fn base_url(url: &str) -> Result<Url, RemoteError> {
    let mut parsed = Url::parse(url).map_err(|e| RemoteError::Url {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(RemoteError::Url {
            url: url.to_string(),
            reason: "expected http:// or https://".into(),
        });
    }
    if !parsed.path().ends_with('/') {
        let path = format!("{}/", parsed.path());
        parsed.set_path(&path);
    }
    Ok(parsed)
}

fn endpoint(base: &Url, path: &str) -> Result<Url, PortError> {
    base.join(path.trim_start_matches('/'))
        .map_err(|e| PortError::Unavailable(format!("bad endpoint {path}: {e}")))
}

fn http_client() -> Result<reqwest::Client, RemoteError> {
    Ok(reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()?)
}

fn transport_error(what: &str, e: reqwest::Error) -> PortError {
    PortError::Unavailable(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use convene_proto::control::Problem;
    use reqwest::StatusCode;

    use super::control::problem_error;
    use super::sfu::sfu_error;
    use super::*;

    #[test]
    fn base_urls_keep_their_path() {
        let b = base_url("http://control:8080").unwrap();
        assert_eq!(
            endpoint(&b, "v1/internal/tokens/verify").unwrap().as_str(),
            "http://control:8080/v1/internal/tokens/verify"
        );
        let b = base_url("https://example.org/convene").unwrap();
        assert_eq!(
            endpoint(&b, "/v1/x").unwrap().as_str(),
            "https://example.org/convene/v1/x"
        );
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("not a url").is_err());
    }

    #[test]
    fn problems_map_like_the_in_process_port() {
        let p = |slug: &str, status: u16| Problem {
            type_: format!("urn:convene:problem:{slug}"),
            title: "t".into(),
            status,
            detail: Some("d".into()),
        };
        let map = |slug, status| {
            problem_error(StatusCode::from_u16(status).unwrap(), Some(p(slug, status)))
        };
        assert!(matches!(
            map("conference-ended", 409),
            PortError::Unauthorized(_)
        ));
        assert!(matches!(
            map("token-revoked", 401),
            PortError::Unauthorized(_)
        ));
        assert!(matches!(map("forbidden", 403), PortError::Forbidden(_)));
        assert!(matches!(map("conflict", 409), PortError::Invalid(_)));
        assert!(matches!(map("rate-limited", 429), PortError::Limit(_)));
        assert!(matches!(
            problem_error(StatusCode::BAD_GATEWAY, None),
            PortError::Unavailable(_)
        ));
        assert!(matches!(
            sfu_error("room_full", "x".into()),
            PortError::Limit(_)
        ));
        assert!(matches!(
            sfu_error("unauthorized", "x".into()),
            PortError::Unavailable(_)
        ));
    }
}
