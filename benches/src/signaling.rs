//! The real join path: control REST API for users, a team, conferences
//! (waiting hall off) and room tokens, then one `/v1/ws` WebSocket per
//! peer carrying `join` → `joined`, `offer` → `answer`, and the server's
//! renegotiation `offer`s (the signaling service auto-subscribes everyone
//! to every track) answered with `answer`.

use std::sync::Arc;
use std::time::Duration;

use convene_proto::control::{
    Conference, CreateConferenceRequest, CreateTeamRequest, JoinConferenceResponse, LoginRequest,
    RegisterRequest, Team, TokenResponse,
};
use convene_proto::signaling::{ClientMessage, ServerMessage};
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, warn};
use url::Url;

use crate::peer::{Negotiator, PeerBuilder};
use crate::LoadError;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one signaling step may take.
const STEP: Duration = Duration::from_secs(20);
/// Heartbeat: the server drops sockets silent for 15 s.
const PING_EVERY: Duration = Duration::from_secs(5);

pub struct SignalingApi {
    http: reqwest::Client,
    base: Url,
    ws_url: Url,
    access: String,
    conferences: Vec<String>,
}

impl SignalingApi {
    /// Register a user, log in, create a team and `rooms` conferences with
    /// the waiting hall off.
    pub async fn setup(base: &str, rooms: u32) -> Result<Arc<Self>, LoadError> {
        let base = Url::parse(base)?;
        let mut ws_url = base.join("/v1/ws")?;
        let scheme = if base.scheme() == "https" {
            "wss"
        } else {
            "ws"
        };
        ws_url
            .set_scheme(scheme)
            .map_err(|_| LoadError::Server("cannot make a WebSocket URL".into()))?;
        let http = reqwest::Client::builder().timeout(STEP).build()?;
        let mut api = Self {
            http,
            base,
            ws_url,
            access: String::new(),
            conferences: Vec::new(),
        };
        let tag = format!("{:08x}", rand::random::<u32>());
        let username = format!("load-{tag}");
        let password = "convene-load-generator".to_string();
        let _: serde_json::Value = api
            .post(
                "/v1/auth/register",
                &RegisterRequest {
                    username: username.clone(),
                    email: format!("{username}@example.org"),
                    password: password.clone(),
                },
            )
            .await?;
        let tokens: TokenResponse = api
            .post(
                "/v1/auth/login",
                &LoginRequest {
                    login: username,
                    password,
                },
            )
            .await?;
        api.access = tokens.access_token;
        let team: Team = api
            .post(
                "/v1/teams",
                &CreateTeamRequest {
                    name: format!("load {tag}"),
                    description: "convene-load".into(),
                },
            )
            .await?;
        for r in 0..rooms {
            let conf: Conference = api
                .post(
                    &format!("/v1/teams/{}/conferences", team.id),
                    &CreateConferenceRequest {
                        title: format!("load {tag} room {r}"),
                        starts_at: chrono_now(),
                        waiting_hall: false,
                    },
                )
                .await?;
            api.conferences.push(conf.id.to_string());
        }
        Ok(Arc::new(api))
    }

    pub fn conference(&self, room: u32) -> &str {
        &self.conferences[room as usize]
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, LoadError> {
        let mut req = self.http.post(self.base.join(path)?).json(body);
        if !self.access.is_empty() {
            req = req.bearer_auth(&self.access);
        }
        let res = req.send().await?;
        let status = res.status();
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            return Err(LoadError::Server(format!("POST {path}: {status} {text}")));
        }
        Ok(res.json().await?)
    }

    /// Get a room token, open the WebSocket, `join`, send `peer`'s offer and
    /// apply the answer. The session must then be [`Session::run`].
    pub async fn join(
        &self,
        room: u32,
        offer_sdp: String,
        peer: &mut PeerBuilder,
    ) -> Result<Session, LoadError> {
        let conf = self.conference(room).to_string();
        let join: JoinConferenceResponse = self
            .post(
                &format!("/v1/conferences/{conf}/join"),
                &serde_json::json!({}),
            )
            .await?;
        if join.waiting {
            return Err(LoadError::Server(
                "got a waiting-hall token: the conference has its waiting hall on".into(),
            ));
        }
        let (ws, _) =
            tokio::time::timeout(STEP, tokio_tungstenite::connect_async(self.ws_url.as_str()))
                .await
                .map_err(|_| LoadError::Timeout("WebSocket connect"))??;
        let mut s = Session {
            ws,
            early_offers: Vec::new(),
        };
        s.send(&ClientMessage::Join {
            token: join.token,
            resume_token: None,
        })
        .await?;
        s.expect("joined", |m| {
            matches!(m, ServerMessage::Joined { .. }).then_some(())
        })
        .await?;
        s.send(&ClientMessage::Offer {
            sdp: offer_sdp,
            sources: Default::default(),
        })
        .await?;
        let answer = s
            .expect("answer", |m| match m {
                ServerMessage::Answer { sdp } => Some(sdp.clone()),
                _ => None,
            })
            .await?;
        peer.accept_answer(&answer)?;
        Ok(s)
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// One peer's signaling socket after the join.
pub struct Session {
    ws: Ws,
    /// Server offers that arrived while we waited for our answer.
    early_offers: Vec<String>,
}

impl Session {
    async fn send(&mut self, m: &ClientMessage) -> Result<(), LoadError> {
        let text = serde_json::to_string(m)?;
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    async fn next(&mut self) -> Result<ServerMessage, LoadError> {
        loop {
            let frame = self
                .ws
                .next()
                .await
                .ok_or(LoadError::Closed("signaling socket"))??;
            match frame {
                Message::Text(t) => return Ok(serde_json::from_str(t.as_str())?),
                Message::Close(_) => return Err(LoadError::Closed("signaling socket")),
                _ => {}
            }
        }
    }

    async fn expect<T>(
        &mut self,
        what: &'static str,
        mut pick: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> Result<T, LoadError> {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let m = tokio::time::timeout_at(deadline, self.next())
                .await
                .map_err(|_| LoadError::Timeout(what))??;
            if let Some(v) = pick(&m) {
                return Ok(v);
            }
            match m {
                ServerMessage::Offer { sdp } => self.early_offers.push(sdp),
                ServerMessage::Error { code, message } => {
                    return Err(LoadError::Server(format!(
                        "signaling error while waiting for {what}: {code:?} {message}"
                    )))
                }
                _ => {}
            }
        }
    }

    /// Answer server offers with `peer`, keep the socket alive, and leave
    /// when `stop` turns true.
    pub fn run(mut self, peer: Negotiator, mut stop: watch::Receiver<bool>, name: String) {
        tokio::spawn(async move {
            let mut ping = tokio::time::interval(PING_EVERY);
            for sdp in std::mem::take(&mut self.early_offers) {
                self.answer(&peer, sdp, &name).await;
            }
            loop {
                tokio::select! {
                    _ = stop.changed() => {
                        let _ = self.send(&ClientMessage::Leave).await;
                        let _ = self.ws.close(None).await;
                        return;
                    }
                    _ = ping.tick() => {
                        if self.send(&ClientMessage::Ping).await.is_err() {
                            return;
                        }
                    }
                    m = self.next() => match m {
                        Ok(ServerMessage::Offer { sdp }) => self.answer(&peer, sdp, &name).await,
                        Ok(ServerMessage::Error { code, message }) => {
                            debug!(peer = %name, "signaling error {code:?}: {message}")
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if !*stop.borrow() {
                                warn!(peer = %name, "signaling: {e}");
                            }
                            return;
                        }
                    },
                }
            }
        });
    }

    async fn answer(&mut self, peer: &Negotiator, sdp: String, name: &str) {
        match peer.accept_offer(sdp).await {
            Ok(answer) => {
                if let Err(e) = self.send(&ClientMessage::Answer { sdp: answer }).await {
                    debug!(peer = %name, "answer not sent: {e}");
                }
            }
            Err(e) => debug!(peer = %name, "server offer not accepted: {e}"),
        }
    }
}
