//! [`RemoteSfu`]: the SFU in another process, through its HTTP control API
//! and server-sent event stream.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use convene_proto::sfu::{
    AnswerRequest, CloseRoomRequest, JoinRequest, OfferRequest, RemoveParticipantRequest,
    SetMuteRequest, SfuEvent, SfuRequest, SfuResponse, SubscribeRequest, UnsubscribeRequest,
};
use eventsource_stream::Eventsource as _;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::BroadcastStream;
use url::Url;

use super::{base_url, http_client, transport_error, RemoteError, REQUEST_TIMEOUT};
use crate::ports::{MediaPort, PortError};

/// The SFU sends a keep-alive comment every 15 s; a stream silent for this
/// long is considered dead and reopened.
const SSE_IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Reconnection backoff of the SFU event stream.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// SFU events buffered per local subscriber before it starts lagging.
const EVENT_CAPACITY: usize = 4096;

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
pub(super) fn sfu_error(code: &str, message: String) -> PortError {
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
/// whenever the stream cannot be opened, breaks or goes silent. A reopened
/// stream resumes after the last event seen (`Last-Event-ID`): the SFU
/// replays what was missed, or, when it cannot (it restarted, or the gap
/// outgrew its log), opens with `event: reset`, passed on to the rooms as
/// [`SfuEvent::SessionsLost`].
async fn follow_events(
    http: reqwest::Client,
    url: Url,
    secret: Arc<str>,
    events: broadcast::Sender<SfuEvent>,
    connected: watch::Sender<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut ever_connected = false;
    let mut last_id: Option<String> = None;
    loop {
        let mut req = http
            .get(url.clone())
            .bearer_auth(&*secret)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = &last_id {
            req = req.header("last-event-id", id);
        }
        let opened = req.send().await.and_then(|r| r.error_for_status());
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
                let ended = read_events(res, &events, &mut last_id).await;
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
    last_id: &mut Option<String>,
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
        if !ev.id.is_empty() {
            *last_id = Some(ev.id.clone());
        }
        match ev.event.as_str() {
            "hello" => continue,
            "reset" => {
                tracing::warn!(sfu = %ev.data, "SFU restarted or events were lost: media sessions are gone");
                let _ = events.send(SfuEvent::SessionsLost);
                continue;
            }
            _ => {}
        }
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
