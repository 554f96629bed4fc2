//! [`RemoteControl`]: the control plane in another process, through its
//! `/v1/internal/*` API, with conference events from Redis.

use std::sync::Arc;

use async_trait::async_trait;
use convene_bus::EventBus;
use convene_proto::control::{Problem, RoomClaims, VerifyTokenRequest, WaitingEntry};
use convene_proto::internal::{
    InternalDenyRequest, ModeratorRequest, RoomTokenResponse, TouchResponse,
};
use convene_proto::secret::LEGACY_INTERNAL_SECRET_HEADER;
use convene_proto::signaling::WaitingEntryInfo;
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use url::Url;
use uuid::Uuid;

use super::{base_url, endpoint, http_client, transport_error, RemoteError, REQUEST_TIMEOUT};
use crate::ports::{Admission, ControlPort, HallEvent, PortError};

/// For calls without a request body.
pub(super) const NO_BODY: Option<&()> = None;

/// The control plane in another process.
#[derive(Clone)]
pub struct RemoteControl {
    http: reqwest::Client,
    base: Url,
    secret: Arc<str>,
    bus: EventBus,
}

impl std::fmt::Debug for RemoteControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteControl")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl RemoteControl {
    /// `control_url` is the control plane's base URL (e.g.
    /// `http://control:8080`), `secret` its `--internal-secret`; conference
    /// events come from the Redis at `redis_url`. Returns once the Redis
    /// subscription is active.
    pub async fn connect(
        control_url: &str,
        secret: &str,
        redis_url: &str,
    ) -> Result<Self, RemoteError> {
        let client = redis::Client::open(redis_url)?;
        let bus = EventBus::redis(client).await?;
        Self::with_bus(control_url, secret, bus)
    }

    /// Like [`RemoteControl::connect`] with an existing event bus.
    pub fn with_bus(control_url: &str, secret: &str, bus: EventBus) -> Result<Self, RemoteError> {
        Ok(Self {
            http: http_client()?,
            base: base_url(control_url)?,
            secret: Arc::from(secret),
            bus,
        })
    }

    /// One call to `/v1/internal/…`; decodes the answer as `T`, or maps the
    /// problem+json error onto a [`PortError`].
    pub(super) async fn call<T: DeserializeOwned, B: Serialize + Sync>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, PortError> {
        let res = self.send(method, path, body).await?;
        res.json::<T>()
            .await
            .map_err(|e| PortError::Unavailable(format!("control plane answer to {path}: {e}")))
    }

    /// Like [`RemoteControl::call`] for endpoints whose answer is not needed.
    async fn call_unit<B: Serialize + Sync>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), PortError> {
        self.send(method, path, body).await.map(drop)
    }

    async fn send<B: Serialize + Sync>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, PortError> {
        let url = endpoint(&self.base, path)?;
        let mut req = self
            .http
            .request(method, url)
            .timeout(REQUEST_TIMEOUT)
            .bearer_auth(&*self.secret)
            // Deprecated, for one release: a control plane of the previous
            // version only reads this header, and during a rolling upgrade
            // this node may reach one.
            .header(LEGACY_INTERNAL_SECRET_HEADER, &*self.secret);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .map_err(|e| transport_error("control plane", e))?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status();
        let problem = res.json::<Problem>().await.ok();
        Err(problem_error(status, problem))
    }

    fn conference_path(conference: Uuid, rest: &str) -> String {
        format!("v1/internal/conferences/{conference}/{rest}")
    }

    /// A moderator's action on a conference: a POST naming the moderator,
    /// whose rights the control plane checks.
    async fn moderator_post(
        &self,
        moderator: Uuid,
        conference: Uuid,
        rest: &str,
    ) -> Result<(), PortError> {
        let body = ModeratorRequest {
            moderator_id: moderator,
        };
        self.call_unit(
            Method::POST,
            &Self::conference_path(conference, rest),
            Some(&body),
        )
        .await
    }
}

/// Maps the control plane's problem types onto port errors the way the
/// in-process port maps `ApiError`.
pub(super) fn problem_error(status: StatusCode, problem: Option<Problem>) -> PortError {
    let slug = problem
        .as_ref()
        .and_then(|p| p.type_.rsplit(':').next().map(str::to_string))
        .unwrap_or_default();
    let message = problem
        .map(|p| p.detail.unwrap_or(p.title))
        .unwrap_or_else(|| status.to_string());
    match slug.as_str() {
        "unauthorized" | "invalid-credentials" | "token-revoked" | "conference-ended" => {
            PortError::Unauthorized(message)
        }
        "forbidden" => PortError::Forbidden(message),
        "not-found" => PortError::NotFound(message),
        "rate-limited" => PortError::Limit(message),
        "bad-request"
        | "validation-failed"
        | "conflict"
        | "last-admin"
        | "unsupported-media-type"
        | "payload-too-large" => PortError::Invalid(message),
        "service-unavailable" | "internal-error" => PortError::Unavailable(message),
        _ => match status {
            StatusCode::UNAUTHORIZED => PortError::Unauthorized(message),
            StatusCode::FORBIDDEN => PortError::Forbidden(message),
            StatusCode::NOT_FOUND => PortError::NotFound(message),
            StatusCode::TOO_MANY_REQUESTS => PortError::Limit(message),
            s if s.is_client_error() => PortError::Invalid(message),
            _ => PortError::Unavailable(message),
        },
    }
}

#[async_trait]
impl ControlPort for RemoteControl {
    async fn verify(&self, token: &str, resume: bool) -> Result<Admission, PortError> {
        let body = VerifyTokenRequest {
            token: token.to_string(),
            allow_expired: resume,
        };
        let c: RoomClaims = self
            .call(Method::POST, "v1/internal/tokens/verify", Some(&body))
            .await?;
        Ok(Admission::from_claims_now(c))
    }

    async fn waiting_entries(&self, conference: Uuid) -> Result<Vec<WaitingEntryInfo>, PortError> {
        let entries: Vec<WaitingEntry> = self
            .call(
                Method::GET,
                &Self::conference_path(conference, "waiting"),
                NO_BODY,
            )
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                Some(WaitingEntryInfo {
                    position: u32::try_from(e.position?).ok()?,
                    user_id: e.user_id,
                    name: e.username,
                    since_ms: e.since.timestamp_millis(),
                })
            })
            .collect())
    }

    async fn touch_waiting(&self, conference: Uuid, user: Uuid) -> Result<Option<u32>, PortError> {
        let t: TouchResponse = self
            .call(
                Method::POST,
                &Self::conference_path(conference, &format!("waiting/{user}/touch")),
                NO_BODY,
            )
            .await?;
        Ok(t.position)
    }

    async fn leave_waiting(&self, conference: Uuid, user: Uuid) -> Result<(), PortError> {
        self.call_unit(
            Method::POST,
            &Self::conference_path(conference, &format!("waiting/{user}/leave")),
            NO_BODY,
        )
        .await
    }

    async fn admit(&self, moderator: Uuid, conference: Uuid, user: Uuid) -> Result<(), PortError> {
        let body = ModeratorRequest {
            moderator_id: moderator,
        };
        self.call_unit(
            Method::POST,
            &Self::conference_path(conference, &format!("waiting/{user}/admit")),
            Some(&body),
        )
        .await
    }

    async fn deny(
        &self,
        moderator: Uuid,
        conference: Uuid,
        user: Uuid,
        reason: &str,
    ) -> Result<(), PortError> {
        let body = InternalDenyRequest {
            moderator_id: moderator,
            reason: (!reason.trim().is_empty()).then(|| reason.to_string()),
        };
        self.call_unit(
            Method::POST,
            &Self::conference_path(conference, &format!("waiting/{user}/deny")),
            Some(&body),
        )
        .await
    }

    async fn admit_all(&self, moderator: Uuid, conference: Uuid) -> Result<(), PortError> {
        self.moderator_post(moderator, conference, "waiting/admit-all")
            .await
    }

    async fn move_to_waiting(
        &self,
        moderator: Uuid,
        conference: Uuid,
        user: Uuid,
    ) -> Result<(), PortError> {
        let path = format!("participants/{user}/move-to-waiting");
        self.moderator_post(moderator, conference, &path).await
    }

    async fn remove_participant(
        &self,
        moderator: Uuid,
        conference: Uuid,
        user: Uuid,
    ) -> Result<(), PortError> {
        let path = format!("participants/{user}/remove");
        self.moderator_post(moderator, conference, &path).await
    }

    async fn end_conference(&self, moderator: Uuid, conference: Uuid) -> Result<(), PortError> {
        self.moderator_post(moderator, conference, "end").await
    }

    async fn room_token(&self, conference: Uuid, user: Uuid) -> Result<String, PortError> {
        let t: RoomTokenResponse = self
            .call(
                Method::POST,
                &Self::conference_path(conference, &format!("participants/{user}/room-token")),
                NO_BODY,
            )
            .await?;
        Ok(t.token)
    }

    async fn events(&self, conference: Uuid) -> Result<BoxStream<'static, HallEvent>, PortError> {
        Ok(self
            .bus
            .subscribe(conference)
            .into_stream()
            .filter_map(|ev| async move { HallEvent::from_conference(ev) })
            .boxed())
    }
}
