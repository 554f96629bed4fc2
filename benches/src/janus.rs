//! `--target janus`: the same peers against Janus Gateway's VideoRoom
//! plugin through the Janus HTTP API (`POST` requests, long-poll `GET` for
//! events).
//!
//! One Janus session carries every handle of the run. Publishers: attach,
//! `join` as publisher (→ feed id), `configure` with the JSEP offer (→
//! answer). Subscribers: attach, `join` as subscriber to every feed of the
//! room (Janus offers), `start` with our answer. Janus is a full ICE agent
//! (not lite), so its candidates, in its SDP or trickled, go to str0m.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::peer::{Negotiator, PeerBuilder};
use crate::LoadError;

const STEP: Duration = Duration::from_secs(20);

pub struct JanusApi {
    http: reqwest::Client,
    base: String,
    session: u64,
    handles: Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>,
    /// Janus room id of each of our rooms.
    rooms: Vec<u64>,
    /// Feed ids of each room's publishers.
    feeds: Mutex<HashMap<u32, Vec<u64>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for JanusApi {
    fn drop(&mut self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

fn tx() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn error_of(v: &Value) -> Option<String> {
    if v["janus"] == "error" {
        return Some(format!("{}", v["error"]));
    }
    let data = &v["plugindata"]["data"];
    data.get("error")
        .map(|e| format!("{} ({})", e, data["error_code"]))
}

/// A handle attached to the VideoRoom plugin, with its event stream.
pub struct Handle {
    pub id: u64,
    events: mpsc::UnboundedReceiver<Value>,
}

impl JanusApi {
    /// Create the session, start the long poll and create `rooms` rooms
    /// (each allowing `publishers` publishers).
    pub async fn setup(base: &str, rooms: u32, publishers: u32) -> Result<Arc<Self>, LoadError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = base.trim_end_matches('/').to_string();
        let v = post(
            &http,
            &base,
            json!({"janus": "create", "transaction": tx()}),
        )
        .await?;
        let session = v["data"]["id"]
            .as_u64()
            .ok_or_else(|| LoadError::Server(format!("Janus create answered {v}")))?;
        let mut api = Self {
            http,
            base,
            session,
            handles: Mutex::new(HashMap::new()),
            rooms: Vec::new(),
            feeds: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        };
        let control = api.attach().await?;
        for _ in 0..rooms {
            let room = u64::from(rand::random::<u32>() | 1);
            let v = api
                .message(
                    control.id,
                    json!({
                        "request": "create",
                        "room": room,
                        "publishers": publishers + 1,
                        "bitrate": 0,
                        "audiocodec": "opus",
                        "videocodec": "vp8",
                        "permanent": false,
                    }),
                    None,
                )
                .await?;
            if let Some(e) = error_of(&v) {
                return Err(LoadError::Server(format!("Janus room create: {e}")));
            }
            api.rooms.push(room);
        }
        let api = Arc::new(api);
        let poll = tokio::spawn(long_poll(Arc::downgrade(&api)));
        let keep = tokio::spawn(keepalive(Arc::downgrade(&api)));
        api.tasks.lock().extend([poll, keep]);
        Ok(api)
    }

    fn session_url(&self) -> String {
        format!("{}/{}", self.base, self.session)
    }

    async fn attach(&self) -> Result<Handle, LoadError> {
        let v = post(
            &self.http,
            &self.session_url(),
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": tx()}),
        )
        .await?;
        let id = v["data"]["id"]
            .as_u64()
            .ok_or_else(|| LoadError::Server(format!("Janus attach answered {v}")))?;
        let (txs, events) = mpsc::unbounded_channel();
        self.handles.lock().insert(id, txs);
        Ok(Handle { id, events })
    }

    /// A plugin message; synchronous requests answer with plugindata here,
    /// asynchronous ones with an ack (the result comes as an event).
    async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<Value, LoadError> {
        let mut m = json!({"janus": "message", "transaction": tx(), "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        post(&self.http, &format!("{}/{handle}", self.session_url()), m).await
    }

    async fn trickle_done(&self, handle: u64) {
        let m = json!({"janus": "trickle", "transaction": tx(), "candidate": {"completed": true}});
        if let Err(e) = post(&self.http, &format!("{}/{handle}", self.session_url()), m).await {
            debug!("trickle completed: {e}");
        }
    }

    /// Publisher: `join`, then `configure` with our offer; applies the answer.
    pub async fn join_publisher(
        &self,
        room: u32,
        name: &str,
        offer_sdp: String,
        peer: &mut PeerBuilder,
    ) -> Result<Handle, LoadError> {
        let mut h = self.attach().await?;
        let r = self.rooms[room as usize];
        self.message(
            h.id,
            json!({"request": "join", "ptype": "publisher", "room": r, "display": name}),
            None,
        )
        .await?;
        let joined = h
            .wait("publisher joined", |v| {
                v["plugindata"]["data"]["videoroom"] == "joined"
            })
            .await?;
        let feed = joined["plugindata"]["data"]["id"]
            .as_u64()
            .ok_or_else(|| LoadError::Server(format!("no feed id in {joined}")))?;
        self.message(
            h.id,
            json!({"request": "configure", "audio": true, "video": true}),
            Some(json!({"type": "offer", "sdp": offer_sdp})),
        )
        .await?;
        let ev = h
            .wait("publisher answer", |v| v["jsep"]["type"] == "answer")
            .await?;
        let sdp = ev["jsep"]["sdp"].as_str().unwrap_or_default();
        debug!(%sdp, "Janus answer");
        peer.accept_answer(sdp)?;
        self.trickle_done(h.id).await;
        self.feeds.lock().entry(room).or_default().push(feed);
        Ok(h)
    }

    /// Subscriber: `join` as subscriber to every publisher of the room,
    /// answer Janus's offer, `start`.
    pub async fn join_subscriber(
        &self,
        room: u32,
        peer: &mut PeerBuilder,
    ) -> Result<Handle, LoadError> {
        let feeds = self.feeds.lock().get(&room).cloned().unwrap_or_default();
        if feeds.is_empty() {
            return Err(LoadError::Server("no publisher in the Janus room".into()));
        }
        let mut h = self.attach().await?;
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        self.message(
            h.id,
            json!({"request": "join", "ptype": "subscriber", "room": self.rooms[room as usize], "streams": streams}),
            None,
        )
        .await?;
        let ev = h
            .wait("subscriber offer", |v| v["jsep"]["type"] == "offer")
            .await?;
        let answer = peer.accept_offer(ev["jsep"]["sdp"].as_str().unwrap_or_default())?;
        self.message(
            h.id,
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": answer})),
        )
        .await?;
        self.trickle_done(h.id).await;
        Ok(h)
    }

    /// Feed Janus's trickled candidates to the peer for the rest of the run.
    pub fn forward_candidates(&self, mut h: Handle, peer: Negotiator) {
        let t = tokio::spawn(async move {
            while let Some(v) = h.events.recv().await {
                if v["janus"] == "trickle" {
                    if let Some(c) = v["candidate"]["candidate"].as_str() {
                        peer.add_remote_candidate(c.to_string());
                    }
                }
            }
        });
        self.tasks.lock().push(t);
    }

    /// Destroy the rooms and the session.
    pub async fn close(&self) {
        let url = self.session_url();
        let _ = post(
            &self.http,
            &url,
            json!({"janus": "destroy", "transaction": tx()}),
        )
        .await;
    }
}

impl Handle {
    async fn wait(
        &mut self,
        what: &'static str,
        f: impl Fn(&Value) -> bool,
    ) -> Result<Value, LoadError> {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let v = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| LoadError::Timeout(what))?
                .ok_or(LoadError::Closed("Janus event stream"))?;
            if f(&v) {
                return Ok(v);
            }
            if let Some(e) = error_of(&v) {
                return Err(LoadError::Server(format!("Janus, waiting for {what}: {e}")));
            }
            if v["janus"] == "trickle" {
                // Candidates before the answer: the SDP has them too; str0m
                // gets trickled ones once the peer runs.
                debug!("early trickle: {v}");
            }
        }
    }
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> Result<Value, LoadError> {
    let res = http.post(url).json(&body).send().await?;
    let v: Value = res.json().await?;
    if v["janus"] == "error" {
        return Err(LoadError::Server(format!("Janus: {}", v["error"])));
    }
    Ok(v)
}

async fn long_poll(api: std::sync::Weak<JanusApi>) {
    loop {
        let Some(a) = api.upgrade() else { return };
        let url = format!("{}?maxev=10", a.session_url());
        let http = a.http.clone();
        drop(a);
        let res = match http.get(&url).send().await {
            Ok(r) => r.json::<Value>().await,
            Err(e) => Err(e),
        };
        let v = match res {
            Ok(v) => v,
            Err(e) => {
                warn!("Janus long poll: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Some(a) = api.upgrade() else { return };
        let events = match v {
            Value::Array(a) => a,
            v => vec![v],
        };
        for e in events {
            if let Some(sender) = e["sender"].as_u64() {
                if let Some(tx) = a.handles.lock().get(&sender) {
                    let _ = tx.send(e);
                }
            }
        }
    }
}

async fn keepalive(api: std::sync::Weak<JanusApi>) {
    loop {
        tokio::time::sleep(Duration::from_secs(20)).await;
        let Some(a) = api.upgrade() else { return };
        let url = a.session_url();
        let _ = post(
            &a.http,
            &url,
            json!({"janus": "keepalive", "transaction": tx()}),
        )
        .await;
    }
}
