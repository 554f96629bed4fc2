//! ICE server descriptions handed to clients, in the shape of the browser's
//! `RTCIceServer` dictionary so a client can pass them to `RTCPeerConnection`
//! unchanged.

use serde::{Deserialize, Serialize};

/// One STUN or TURN server entry, as `RTCIceServer` expects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IceServer {
    /// `stun:` / `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN REST username (`expiry:user`); absent for STUN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN REST password (base64 HMAC-SHA1); absent for STUN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}
