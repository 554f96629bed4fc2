//! `--direct`: joining through the SFU's internal HTTP API
//! (`POST /v1/request`, `GET /v1/events`), the way a signaling service in
//! another process would. The load generator plays that signaling service:
//! it subscribes each subscriber to every track of its room and answers the
//! SFU's renegotiation offers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use convene_proto::sfu::{
    AnswerRequest, CloseRoomRequest, JoinRequest, SfuEvent, SfuRequest, SfuResponse,
    SubscribeRequest, TrackInfo, VideoQuality,
};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, warn};

use crate::peer::{Negotiator, PeerBuilder};
use crate::LoadError;

/// Client of one SFU's HTTP control API with its event stream.
pub struct DirectApi {
    http: reqwest::Client,
    base: String,
    secret: String,
    router: Arc<Router>,
    events_task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Router {
    /// (room, participant) → where its renegotiation offers go.
    offers: Mutex<HashMap<(String, String), mpsc::UnboundedSender<String>>>,
    /// Published tracks per room, as announced.
    tracks: Mutex<HashMap<String, Vec<TrackInfo>>>,
    changed: Notify,
}

impl Drop for DirectApi {
    fn drop(&mut self) {
        self.events_task.abort();
    }
}

impl DirectApi {
    /// Connect the event stream first, so no event of our joins is missed.
    pub async fn connect(base: &str, secret: &str) -> Result<Arc<Self>, LoadError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let base = base.trim_end_matches('/').to_string();
        let events = reqwest::Client::new()
            .get(format!("{base}/v1/events"))
            .bearer_auth(secret)
            .send()
            .await?;
        if !events.status().is_success() {
            return Err(LoadError::Server(format!(
                "GET {base}/v1/events: {}",
                events.status()
            )));
        }
        let router = Arc::new(Router::default());
        let r = router.clone();
        let events_task = tokio::spawn(async move {
            let chunks = futures::stream::try_unfold(events, |mut res| async move {
                Ok::<_, reqwest::Error>(res.chunk().await?.map(|c| (c, res)))
            });
            let mut stream = std::pin::pin!(chunks.eventsource());
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => match serde_json::from_str::<SfuEvent>(&ev.data) {
                        Ok(e) => r.on_event(e),
                        Err(e) => debug!("unparsed SFU event: {e}"),
                    },
                    Err(e) => {
                        warn!("SFU event stream: {e}");
                        break;
                    }
                }
            }
        });
        Ok(Arc::new(Self {
            http,
            base,
            secret: secret.to_string(),
            router,
            events_task,
        }))
    }

    async fn request(&self, req: &SfuRequest) -> Result<SfuResponse, LoadError> {
        let res = self
            .http
            .post(format!("{}/v1/request", self.base))
            .bearer_auth(&self.secret)
            .json(req)
            .send()
            .await?;
        let status = res.status();
        let body: SfuResponse = res.json().await?;
        match body {
            SfuResponse::Error { code, message } => Err(LoadError::Server(format!(
                "SFU answered {status} {code}: {message}"
            ))),
            ok => Ok(ok),
        }
    }

    /// Join `peer` (whose offer is ready) and apply the answer.
    pub async fn join(
        &self,
        room: &str,
        participant: &str,
        offer_sdp: String,
        peer: &mut PeerBuilder,
    ) -> Result<(), LoadError> {
        let req = SfuRequest::Join(JoinRequest {
            room_id: room.to_string(),
            participant_id: participant.to_string(),
            identity: participant.to_string(),
            offer_sdp,
            grants: Default::default(),
            sources: Default::default(),
        });
        match self.request(&req).await? {
            SfuResponse::Answer { answer_sdp } => Ok(peer.accept_answer(&answer_sdp)?),
            other => Err(LoadError::Server(format!("join answered {other:?}"))),
        }
    }

    /// Answer every renegotiation offer the SFU makes to `participant` with
    /// `peer`, until the API is dropped.
    pub fn negotiate(self: &Arc<Self>, room: &str, participant: &str, peer: Negotiator) {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        self.router
            .offers
            .lock()
            .insert((room.to_string(), participant.to_string()), tx);
        let api = Arc::downgrade(self);
        let (room, participant) = (room.to_string(), participant.to_string());
        tokio::spawn(async move {
            while let Some(offer) = rx.recv().await {
                let answer = match peer.accept_offer(offer).await {
                    Ok(a) => a,
                    Err(e) => {
                        debug!(%participant, "offer not accepted: {e}");
                        continue;
                    }
                };
                let Some(api) = api.upgrade() else { return };
                let req = SfuRequest::Answer(AnswerRequest {
                    room_id: room.clone(),
                    participant_id: participant.clone(),
                    answer_sdp: answer,
                });
                if let Err(e) = api.request(&req).await {
                    warn!(%participant, "answer refused: {e}");
                }
            }
        });
    }

    /// Wait until `room` has at least `n` published tracks; returns their ids.
    pub async fn wait_tracks(&self, room: &str, n: usize, within: Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.router.changed.notified();
            let ids: Vec<String> = self
                .router
                .tracks
                .lock()
                .get(room)
                .map(|t| t.iter().map(|t| t.track_id.clone()).collect())
                .unwrap_or_default();
            if ids.len() >= n || tokio::time::Instant::now() >= deadline {
                return ids;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    pub async fn subscribe(
        &self,
        room: &str,
        participant: &str,
        track_ids: Vec<String>,
    ) -> Result<(), LoadError> {
        let req = SfuRequest::Subscribe(SubscribeRequest {
            room_id: room.to_string(),
            participant_id: participant.to_string(),
            track_ids,
            max_quality: VideoQuality::High,
        });
        self.request(&req).await.map(|_| ())
    }

    pub async fn close_room(&self, room: &str) {
        let req = SfuRequest::CloseRoom(CloseRoomRequest {
            room_id: room.to_string(),
        });
        if let Err(e) = self.request(&req).await {
            debug!(room, "close_room: {e}");
        }
    }
}

impl Router {
    fn on_event(&self, e: SfuEvent) {
        match e {
            SfuEvent::RenegotiationOffer {
                room_id,
                participant_id,
                offer_sdp,
            } => {
                if let Some(tx) = self.offers.lock().get(&(room_id, participant_id)) {
                    let _ = tx.send(offer_sdp);
                }
            }
            SfuEvent::TrackPublished { room_id, track } => {
                self.tracks.lock().entry(room_id).or_default().push(track);
                self.changed.notify_waiters();
            }
            SfuEvent::TrackUnpublished {
                room_id, track_id, ..
            } => {
                if let Some(t) = self.tracks.lock().get_mut(&room_id) {
                    t.retain(|t| t.track_id != track_id);
                }
            }
            _ => {}
        }
    }
}
