//! Control-plane REST request and response bodies (`/v1/...`), plus the
//! claims of the room tokens the control plane issues and the signaling
//! service verifies.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ice::IceServer;

// ---------------------------------------------------------------- errors

/// RFC 9457 problem details, served as `application/problem+json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the problem kind (`urn:convene:problem:<slug>`).
    #[serde(rename = "type")]
    pub type_: String,
    /// Short human-readable summary; the same for every occurrence of a type.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// Explanation specific to this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

// ---------------------------------------------------------------- pagination

/// One page of a cursor-paginated list. Pass `next_cursor` back as
/// `?cursor=` to get the following page; `null` means this was the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------- auth & users

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// 3–32 characters: letters, digits, `_`, `-`, `.`.
    pub username: String,
    pub email: String,
    /// 8–128 characters.
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email address or username.
    pub login: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// Short-lived bearer token for the REST API.
    pub access_token: String,
    /// Single-use token for `POST /v1/auth/refresh`; rotated on every use.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime of `access_token` in seconds.
    pub expires_in: u64,
    pub user: User,
}

// ---------------------------------------------------------------- teams

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TeamRole {
    Admin,
    Member,
}

impl TeamRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Admin => "admin",
            TeamRole::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(TeamRole::Admin),
            "member" => Some(TeamRole::Member),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeamRequest {
    /// 1–100 characters.
    pub name: String,
    /// Up to 1000 characters.
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeamRequest {
    pub name: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Team {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// The caller's role in the team.
    pub role: TeamRole,
    /// Only present for admins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_code: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTeamRequest {
    pub code: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinRequestStatus {
    Pending,
    Accepted,
    Rejected,
}

impl JoinRequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JoinRequestStatus::Pending => "pending",
            JoinRequestStatus::Accepted => "accepted",
            JoinRequestStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(JoinRequestStatus::Pending),
            "accepted" => Some(JoinRequestStatus::Accepted),
            "rejected" => Some(JoinRequestStatus::Rejected),
            _ => None,
        }
    }
}

/// A request to join a team, created by `POST /v1/teams/join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinRequest {
    pub id: Uuid,
    pub team_id: Uuid,
    pub user_id: Uuid,
    pub username: String,
    pub status: JoinRequestStatus,
    pub created_at: DateTime<Utc>,
}

/// Answer to `POST /v1/teams/join`: either the caller already is a member
/// (`member`, HTTP 200) or a pending request exists (`pending`, HTTP 202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinTeamResponse {
    pub team_id: Uuid,
    pub status: JoinTeamStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<JoinRequest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinTeamStatus {
    Member,
    Pending,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub user_id: Uuid,
    pub username: String,
    pub email: String,
    pub role: TeamRole,
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMemberRequest {
    pub role: TeamRole,
}

// ---------------------------------------------------------------- conferences

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConferenceRequest {
    /// 1–200 characters.
    pub title: String,
    pub starts_at: DateTime<Utc>,
    #[serde(default)]
    pub waiting_hall: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConferenceRequest {
    pub title: Option<String>,
    pub waiting_hall: Option<bool>,
    /// Team members to make moderators.
    #[serde(default)]
    pub add_moderators: Vec<Uuid>,
    /// Moderators to demote; a conference always keeps at least one.
    #[serde(default)]
    pub remove_moderators: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Conference {
    pub id: Uuid,
    pub team_id: Uuid,
    pub title: String,
    pub starts_at: DateTime<Utc>,
    pub waiting_hall: bool,
    pub moderators: Vec<Uuid>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    /// Set once `POST /v1/conferences/{id}/end` was called.
    pub ended_at: Option<DateTime<Utc>>,
}

/// Answer to `POST /v1/conferences/{id}/join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinConferenceResponse {
    /// Room token (JWT) to present to the signaling service.
    pub token: String,
    /// `ws(s)://…/v1/ws`.
    pub signaling_url: String,
    pub ice_servers: Vec<IceServer>,
    /// `true` when `token` only grants a place in the waiting hall.
    pub waiting: bool,
    /// Whether the caller moderates this conference (a named moderator or
    /// an admin of its team), so a client knows to show the moderation
    /// controls without working out the rules itself.
    #[serde(default)]
    pub moderator: bool,
    /// 1-based place in the waiting-hall queue when `waiting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

// ---------------------------------------------------------------- waiting hall

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitingStatus {
    Waiting,
    Admitted,
    Denied,
    Left,
}

impl WaitingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitingStatus::Waiting => "waiting",
            WaitingStatus::Admitted => "admitted",
            WaitingStatus::Denied => "denied",
            WaitingStatus::Left => "left",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "waiting" => Some(WaitingStatus::Waiting),
            "admitted" => Some(WaitingStatus::Admitted),
            "denied" => Some(WaitingStatus::Denied),
            "left" => Some(WaitingStatus::Left),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WaitingEntry {
    pub user_id: Uuid,
    pub username: String,
    /// When the user (last) entered the queue.
    pub since: DateTime<Utc>,
    pub status: WaitingStatus,
    /// 1-based queue position; only for `waiting` entries.
    pub position: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DenyRequest {
    /// Shown to the denied user; up to 500 characters.
    #[serde(default)]
    pub reason: Option<String>,
}

// ---------------------------------------------------------------- room tokens

/// Audience of room tokens; access tokens for the REST API use a different
/// one so neither can stand in for the other.
pub const ROOM_TOKEN_AUDIENCE: &str = "convene:room";

/// What a room token allows inside its conference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Grants {
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_publish_data: bool,
    pub moderator: bool,
    /// The bearer is only in the waiting hall; every media grant is off.
    pub waiting: bool,
}

/// Claims of a room token (JWT, HS256), scoped to one conference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoomClaims {
    /// User id.
    pub sub: Uuid,
    /// Display name (username).
    pub name: String,
    /// Conference id.
    pub conf: Uuid,
    /// Team that owns the conference.
    pub team: Uuid,
    /// Always [`ROOM_TOKEN_AUDIENCE`].
    pub aud: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Unique token id.
    pub jti: Uuid,
    pub grants: Grants,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyTokenRequest {
    pub token: String,
    /// A resume: accept the token past its expiry (the seat is proven by
    /// the resume token, which only the connected client holds). Signature,
    /// revocation and the conference are checked as always.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_expired: bool,
}
