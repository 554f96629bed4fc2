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

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use convene_bus::{BusError, ChatBus, EventBus};
use convene_proto::collab::{Chat, ChatEvent, ChatMessage};
use convene_proto::control::{Problem, RoomClaims, VerifyTokenRequest, WaitingEntry};
use convene_proto::events::ConferenceEvent;
use convene_proto::internal::{
    AuthenticateRequest, AuthenticateResponse, InternalDenyRequest, ModeratorRequest,
    RoomTokenResponse, TouchResponse,
};
use convene_proto::secret::LEGACY_INTERNAL_SECRET_HEADER;
use convene_proto::sfu::{
    AnswerRequest, CloseRoomRequest, JoinRequest, OfferRequest, RemoveParticipantRequest,
    SetMuteRequest, SfuEvent, SfuRequest, SfuResponse, SubscribeRequest, UnsubscribeRequest,
};
use convene_proto::signaling::WaitingEntryInfo;
use eventsource_stream::Eventsource as _;
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;
use url::Url;
use uuid::Uuid;

use crate::ports::{
    Admission, ChatSummary, ControlPort, HallEvent, MediaPort, PortError, UserPort,
};

/// Longest wait for one request to the control plane or the SFU.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a TCP connection to either.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The SFU sends a keep-alive comment every 15 s; a stream silent for this
/// long is considered dead and reopened.
const SSE_IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Reconnection backoff of the SFU event stream.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// SFU events buffered per local subscriber before it starts lagging.
const EVENT_CAPACITY: usize = 4096;

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

// ------------------------------------------------------------------ control

/// For calls without a request body.
const NO_BODY: Option<&()> = None;

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
    async fn call<T: DeserializeOwned, B: Serialize + Sync>(
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
}

/// The user channel's port over the network: chats and messages from the
/// control plane's internal API, chat events (messages, edits, typing,
/// presence, invitations) on Redis.
#[derive(Clone)]
pub struct RemoteUsers {
    control: RemoteControl,
    chats: ChatBus,
}

impl std::fmt::Debug for RemoteUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteUsers")
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

impl RemoteUsers {
    /// Calls go through `control` (its URL and secret); chat events come
    /// from the Redis at `redis_url`. Returns once that subscription is
    /// active.
    pub async fn connect(control: RemoteControl, redis_url: &str) -> Result<Self, RemoteError> {
        let client = redis::Client::open(redis_url)?;
        let chats = ChatBus::redis(client).await?;
        Ok(Self { control, chats })
    }

    fn user_path(user: Uuid, rest: &str) -> String {
        format!("v1/internal/users/{user}/{rest}")
    }
}

#[async_trait]
impl UserPort for RemoteUsers {
    async fn authenticate(&self, access_token: &str) -> Result<Uuid, PortError> {
        let body = AuthenticateRequest {
            access_token: access_token.to_string(),
        };
        let r: AuthenticateResponse = self
            .control
            .call(Method::POST, "v1/internal/users/authenticate", Some(&body))
            .await?;
        Ok(r.user_id)
    }

    async fn chats(&self, user: Uuid) -> Result<Vec<ChatSummary>, PortError> {
        let chats: Vec<Chat> = self
            .control
            .call(Method::GET, &Self::user_path(user, "chats"), NO_BODY)
            .await?;
        Ok(chats.into_iter().map(ChatSummary::from).collect())
    }

    async fn chat(&self, user: Uuid, chat: Uuid) -> Result<ChatSummary, PortError> {
        let path = Self::user_path(user, &format!("chats/{chat}"));
        let chat: Chat = self.control.call(Method::GET, &path, NO_BODY).await?;
        Ok(chat.into())
    }

    async fn messages_after(
        &self,
        user: Uuid,
        chat: Uuid,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, PortError> {
        // Two integers: no escaping needed.
        let path = Self::user_path(
            user,
            &format!("chats/{chat}/messages?after_seq={after_seq}&limit={limit}"),
        );
        self.control.call(Method::GET, &path, NO_BODY).await
    }

    async fn publish(&self, event: ChatEvent) -> Result<(), PortError> {
        self.chats
            .publish(&event)
            .await
            .map_err(|e| PortError::Unavailable(format!("chat bus: {e}")))
    }

    fn events(&self, chat: Uuid) -> BoxStream<'static, ChatEvent> {
        self.chats.subscribe(chat).into_stream().boxed()
    }
}

/// Maps the control plane's problem types onto port errors the way the
/// in-process port maps `ApiError`.
fn problem_error(status: StatusCode, problem: Option<Problem>) -> PortError {
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

fn hall_event(ev: ConferenceEvent) -> Option<HallEvent> {
    Some(match ev {
        ConferenceEvent::WaitingJoined { .. } | ConferenceEvent::WaitingLeft { .. } => {
            HallEvent::WaitingChanged
        }
        ConferenceEvent::WaitingAdmitted { user_id, .. } => HallEvent::Admitted { user_id },
        ConferenceEvent::WaitingDenied {
            user_id, reason, ..
        } => HallEvent::Denied {
            user_id,
            reason: reason.unwrap_or_default(),
        },
        ConferenceEvent::MovedToWaiting { user_id, .. } => HallEvent::MovedToWaiting { user_id },
        ConferenceEvent::ParticipantRemoved { user_id, .. } => HallEvent::Removed { user_id },
        ConferenceEvent::ConferenceEnded { .. } => HallEvent::Ended,
        ConferenceEvent::ConferenceUpdated { .. } => return None,
    })
}

#[async_trait]
impl ControlPort for RemoteControl {
    async fn verify(&self, token: &str) -> Result<Admission, PortError> {
        let body = VerifyTokenRequest {
            token: token.to_string(),
        };
        let c: RoomClaims = self
            .call(Method::POST, "v1/internal/tokens/verify", Some(&body))
            .await?;
        Ok(Admission {
            conference_id: c.conf,
            user_id: c.sub,
            name: c.name,
            moderator: c.grants.moderator,
            waiting: c.grants.waiting,
            can_publish: c.grants.can_publish,
            can_subscribe: c.grants.can_subscribe,
            can_publish_data: c.grants.can_publish_data,
        })
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
        let body = ModeratorRequest {
            moderator_id: moderator,
        };
        self.call_unit(
            Method::POST,
            &Self::conference_path(conference, "waiting/admit-all"),
            Some(&body),
        )
        .await
    }

    async fn move_to_waiting(
        &self,
        moderator: Uuid,
        conference: Uuid,
        user: Uuid,
    ) -> Result<(), PortError> {
        let body = ModeratorRequest {
            moderator_id: moderator,
        };
        self.call_unit(
            Method::POST,
            &Self::conference_path(conference, &format!("participants/{user}/move-to-waiting")),
            Some(&body),
        )
        .await
    }

    async fn remove_participant(
        &self,
        moderator: Uuid,
        conference: Uuid,
        user: Uuid,
    ) -> Result<(), PortError> {
        let body = ModeratorRequest {
            moderator_id: moderator,
        };
        self.call_unit(
            Method::POST,
            &Self::conference_path(conference, &format!("participants/{user}/remove")),
            Some(&body),
        )
        .await
    }

    async fn end_conference(&self, moderator: Uuid, conference: Uuid) -> Result<(), PortError> {
        let body = ModeratorRequest {
            moderator_id: moderator,
        };
        self.call_unit(
            Method::POST,
            &Self::conference_path(conference, "end"),
            Some(&body),
        )
        .await
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
            .filter_map(|ev| async move { hall_event(ev) })
            .boxed())
    }
}

// ------------------------------------------------------------------ SFU

/// The SFU in another process, through its HTTP control API.
#[derive(Clone)]
pub struct RemoteSfu {
    inner: Arc<SfuInner>,
}

struct SfuInner {
    http: reqwest::Client,
    request_url: Url,
    secret: Arc<str>,
    events: broadcast::Sender<SfuEvent>,
    connected: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SfuInner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for RemoteSfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSfu")
            .field("request_url", &self.inner.request_url.as_str())
            .finish_non_exhaustive()
    }
}

/// Why the event stream ended; it is reopened either way.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("no data for {0:?}")]
    Idle(Duration),
}

impl RemoteSfu {
    /// `sfu_url` is the base URL of the SFU's HTTP API (`--sfu-http-addr`,
    /// e.g. `http://sfu:7883`), `secret` its `--sfu-http-secret`. Starts
    /// following the event stream in the background (needs a Tokio runtime);
    /// [`RemoteSfu::wait_connected`] waits for the first subscription.
    pub fn new(sfu_url: &str, secret: &str) -> Result<Self, RemoteError> {
        let base = base_url(sfu_url)?;
        let join = |p: &str| {
            base.join(p).map_err(|e| RemoteError::Url {
                url: sfu_url.to_string(),
                reason: e.to_string(),
            })
        };
        let (request_url, events_url) = (join("v1/request")?, join("v1/events")?);
        let http = http_client()?;
        let secret: Arc<str> = Arc::from(secret);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (connected_tx, connected) = watch::channel(false);
        let task = tokio::spawn(follow_events(
            http.clone(),
            events_url,
            secret.clone(),
            events.clone(),
            connected_tx,
        ));
        Ok(Self {
            inner: Arc::new(SfuInner {
                http,
                request_url,
                secret,
                events,
                connected,
                task,
            }),
        })
    }

    /// Resolves once the event stream is (re)connected.
    pub async fn wait_connected(&self) {
        let mut rx = self.inner.connected.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Whether the event stream is connected right now.
    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    async fn request(&self, req: SfuRequest) -> Result<SfuResponse, PortError> {
        let res = self
            .inner
            .http
            .post(self.inner.request_url.clone())
            .timeout(REQUEST_TIMEOUT)
            .bearer_auth(&*self.inner.secret)
            .json(&req)
            .send()
            .await
            .map_err(|e| transport_error("SFU", e))?;
        let status = res.status();
        let body = res.json::<SfuResponse>().await.map_err(|e| {
            PortError::Unavailable(format!("SFU answered {status} without a response: {e}"))
        })?;
        match body {
            SfuResponse::Error { code, message } => Err(sfu_error(&code, message)),
            ok => Ok(ok),
        }
    }

    async fn request_answer(&self, req: SfuRequest) -> Result<String, PortError> {
        match self.request(req).await? {
            SfuResponse::Answer { answer_sdp } => Ok(answer_sdp),
            other => Err(PortError::Unavailable(format!(
                "SFU answered {other:?} where an SDP answer was expected"
            ))),
        }
    }

    async fn request_ok(&self, req: SfuRequest) -> Result<(), PortError> {
        self.request(req).await.map(drop)
    }
}

/// The SFU's error codes (`sfu/src/http.rs`), mapped as the in-process port
/// maps `SfuError`.
fn sfu_error(code: &str, message: String) -> PortError {
    match code {
        "invalid_sdp" | "negotiation_failed" | "duplicate_participant" => {
            PortError::Invalid(message)
        }
        "room_full" | "rejected" | "unknown_track" => PortError::Limit(message),
        "unknown_room" | "unknown_participant" | "no_pending_offer" => PortError::NotFound(message),
        "not_permitted" => PortError::Forbidden(message),
        _ => PortError::Unavailable(format!("{code}: {message}")),
    }
}

/// Follows `GET /v1/events` forever, re-subscribing with exponential backoff
/// whenever the stream cannot be opened, breaks or goes silent. Events that
/// happen while disconnected are lost (logged): rooms resynchronise from the
/// next events.
async fn follow_events(
    http: reqwest::Client,
    url: Url,
    secret: Arc<str>,
    events: broadcast::Sender<SfuEvent>,
    connected: watch::Sender<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut ever_connected = false;
    loop {
        let opened = http
            .get(url.clone())
            .bearer_auth(&*secret)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .and_then(|r| r.error_for_status());
        match opened {
            Ok(res) => {
                if ever_connected {
                    tracing::info!(%url, "SFU event stream reconnected");
                } else {
                    tracing::info!(%url, "SFU event stream connected");
                }
                ever_connected = true;
                backoff = BACKOFF_MIN;
                let _ = connected.send(true);
                let ended = read_events(res, &events).await;
                let _ = connected.send(false);
                match ended {
                    Ok(()) => tracing::warn!(%url, "SFU event stream closed; reconnecting"),
                    Err(e) => {
                        tracing::warn!(%url, error = %e, "SFU event stream broke; reconnecting")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%url, error = %e, retry_in = ?backoff, "SFU event stream unavailable");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Forwards one open event stream until it ends.
async fn read_events(
    res: reqwest::Response,
    events: &broadcast::Sender<SfuEvent>,
) -> Result<(), eventsource_stream::EventStreamError<StreamError>> {
    // The idle timeout applies to bytes, so keep-alive comments (which the
    // SSE parser swallows) keep the stream alive.
    let bytes = futures::stream::unfold(res.bytes_stream().boxed(), |mut s| async move {
        match tokio::time::timeout(SSE_IDLE_TIMEOUT, s.next()).await {
            Ok(Some(chunk)) => Some((chunk.map_err(StreamError::from), s)),
            Ok(None) => None,
            Err(_) => Some((Err(StreamError::Idle(SSE_IDLE_TIMEOUT)), s)),
        }
    })
    .boxed();
    let mut parsed = bytes.eventsource();
    while let Some(ev) = parsed.next().await {
        let ev = ev?;
        match serde_json::from_str::<SfuEvent>(&ev.data) {
            // No receiver yet is fine: nobody is interested.
            Ok(e) => {
                let _ = events.send(e);
            }
            Err(e) => tracing::warn!(error = %e, "undecodable SFU event"),
        }
    }
    Ok(())
}

#[async_trait]
impl MediaPort for RemoteSfu {
    async fn join(&self, r: JoinRequest) -> Result<String, PortError> {
        self.request_answer(SfuRequest::Join(r)).await
    }

    async fn offer(&self, r: OfferRequest) -> Result<String, PortError> {
        self.request_answer(SfuRequest::Offer(r)).await
    }

    async fn answer(&self, r: AnswerRequest) -> Result<(), PortError> {
        self.request_ok(SfuRequest::Answer(r)).await
    }

    async fn subscribe(&self, r: SubscribeRequest) -> Result<(), PortError> {
        self.request_ok(SfuRequest::Subscribe(r)).await
    }

    async fn unsubscribe(&self, r: UnsubscribeRequest) -> Result<(), PortError> {
        self.request_ok(SfuRequest::Unsubscribe(r)).await
    }

    async fn set_mute(&self, r: SetMuteRequest) -> Result<(), PortError> {
        self.request_ok(SfuRequest::SetMute(r)).await
    }

    async fn remove_participant(
        &self,
        room_id: &str,
        participant_id: &str,
    ) -> Result<(), PortError> {
        self.request_ok(SfuRequest::RemoveParticipant(RemoveParticipantRequest {
            room_id: room_id.to_string(),
            participant_id: participant_id.to_string(),
        }))
        .await
    }

    async fn close_room(&self, room_id: &str) -> Result<(), PortError> {
        self.request_ok(SfuRequest::CloseRoom(CloseRoomRequest {
            room_id: room_id.to_string(),
        }))
        .await
    }

    fn events(&self) -> BoxStream<'static, SfuEvent> {
        // A lagging receiver skips what it missed rather than stopping.
        BroadcastStream::new(self.inner.events.subscribe())
            .filter_map(|r| async move { r.ok() })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
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
