//! One WebSocket connection: framing, limits, heartbeat, and handing
//! messages to the conference's room actor.
//!
//! Bad input never ends a connection except a frame over the size limit:
//! malformed JSON, unknown types and messages in the wrong state are answered
//! with an `error` frame and counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use convene_proto::ice::IceServer;
use convene_proto::signaling::{ClientMessage, ErrorCode, ServerMessage};
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::ratelimit::TokenBucket;
use crate::room::{RoomCmd, RoomHandle};
use crate::user_channel::UserChannel;
use crate::Inner;

/// What the room actor asks a connection to do.
pub(crate) enum Outbound {
    Msg(ServerMessage),
    Close(u16, String),
}

/// The room actor's side of a connection. Sending never blocks: a client
/// whose queue is full is too slow to keep and is disconnected.
#[derive(Clone)]
pub(crate) struct ConnHandle {
    pub id: u64,
    tx: mpsc::Sender<Outbound>,
    kill: Arc<Notify>,
    waiting: Arc<AtomicBool>,
    pub ice_servers: Vec<IceServer>,
}

impl ConnHandle {
    pub fn send(&self, msg: ServerMessage) {
        if self.tx.try_send(Outbound::Msg(msg)).is_err() {
            self.kill.notify_one();
        }
    }

    pub fn close(&self, code: u16, reason: &str) {
        if self
            .tx
            .try_send(Outbound::Close(code, reason.to_string()))
            .is_err()
        {
            self.kill.notify_one();
        }
    }

    /// Waiters get the longer waiting-hall heartbeat timeout.
    pub fn set_waiting(&self, waiting: bool) {
        self.waiting.store(waiting, Ordering::Relaxed);
    }
}

/// How a connection ended, which decides whether its participant may resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Normal close or `leave`: the participant leaves now.
    Clean,
    /// The socket broke: the participant keeps its place for the grace period.
    Lost,
    /// Nothing arrived for the heartbeat timeout (close 4001). Resumable like
    /// `Lost`: a client silenced by a network stall is exactly one that
    /// needs to resume.
    Silent,
}

impl Ending {
    fn label(self) -> &'static str {
        match self {
            Ending::Clean => "clean",
            Ending::Lost => "lost",
            Ending::Silent => "heartbeat",
        }
    }
}

/// A waiter's liveness reaches the room (and the control plane's entry) at
/// most this often, however chatty its socket is.
const FORWARD_HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// How long a socket the server closed may take to answer the close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

fn message_type(msg: &ClientMessage) -> &'static str {
    match msg {
        ClientMessage::Join { .. } => "join",
        ClientMessage::Ping => "ping",
        ClientMessage::Offer { .. } => "offer",
        ClientMessage::Answer { .. } => "answer",
        ClientMessage::Candidate { .. } => "candidate",
        ClientMessage::Subscribe { .. } => "subscribe",
        ClientMessage::Unsubscribe { .. } => "unsubscribe",
        ClientMessage::Mute { .. } => "mute",
        ClientMessage::Chat { .. } => "chat",
        ClientMessage::LobbyMessage { .. } => "lobby_message",
        ClientMessage::Admit { .. } => "admit",
        ClientMessage::Deny { .. } => "deny",
        ClientMessage::AdmitAll => "admit_all",
        ClientMessage::MoveToWaiting { .. } => "move_to_waiting",
        ClientMessage::Remove { .. } => "remove",
        ClientMessage::MuteParticipant { .. } => "mute_participant",
        ClientMessage::EndConference => "end_conference",
        ClientMessage::Leave => "leave",
        ClientMessage::Hello { .. } => "hello",
        ClientMessage::Sync { .. } => "sync",
        ClientMessage::Typing { .. } => "typing",
    }
}

pub(crate) async fn serve(socket: WebSocket, inner: Arc<Inner>) {
    let config = inner.config.clone();
    let metrics = inner.metrics.clone();
    metrics.connections.inc();
    metrics.connections_total.inc();

    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel(config.outbound_queue.max(8));
    let kill = Arc::new(Notify::new());
    let waiting = Arc::new(AtomicBool::new(false));
    let conn = ConnHandle {
        id: inner.next_conn_id(),
        tx,
        kill: kill.clone(),
        waiting: waiting.clone(),
        ice_servers: Vec::new(),
    };
    let mut room: Option<RoomHandle> = None;
    let mut user: Option<UserChannel> = None;
    // The connection keeps a sender so `recv` pends instead of ending.
    let (chat_tx, mut chat_rx) = mpsc::channel(config.outbound_queue.max(8));
    let mut bucket = TokenBucket::new(
        f64::from(config.messages_per_sec),
        config.message_burst,
        Instant::now(),
    );
    let mut last_heard = tokio::time::Instant::now();
    let mut last_forwarded: Option<tokio::time::Instant> = None;
    // Standard WebSocket stacks (browsers, Python's `websockets`, tungstenite)
    // answer a Ping by themselves, so a live client stays live without
    // sending anything of its own; three chances per timeout.
    let period = ping_every(&config);
    let mut pinger = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    pinger.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // Set when the server sent a close frame, so the handshake is finished.
    let mut closing = false;

    let ending = loop {
        let timeout = if waiting.load(Ordering::Relaxed) {
            config.waiting_heartbeat_timeout()
        } else {
            config.heartbeat_timeout()
        };
        tokio::select! {
            frame = stream.next() => {
                if let Some(Ok(_)) = &frame {
                    // Any frame at all proves the client is there.
                    let now = tokio::time::Instant::now();
                    last_heard = now;
                    // Waiters' entries expire in the control plane unless
                    // renewed, whatever kind of frame keeps them alive.
                    let due = last_forwarded.is_none_or(|t| now - t >= FORWARD_HEARTBEAT_EVERY);
                    if due && waiting.load(Ordering::Relaxed) {
                        if let Some(r) = &room {
                            last_forwarded = Some(now);
                            let _ = r.tx.send(RoomCmd::Heartbeat { conn_id: conn.id }).await;
                        }
                    }
                }
                let text = match frame {
                    Some(Err(e)) if is_too_large(&e) => {
                        // Beyond the transport's own limit: the frame was
                        // never buffered, and the client is told why as for
                        // one our own check refuses.
                        metrics.rejected_frames.with_label_values(&["too_large"]).inc();
                        let _ = sink.send(close_frame(1009, "frame too large")).await;
                        closing = true;
                        break Ending::Lost;
                    }
                    None | Some(Err(_)) => break Ending::Lost,
                    Some(Ok(Message::Close(frame))) => {
                        let normal = frame.as_ref().is_none_or(|f| f.code == 1000);
                        break if normal { Ending::Clean } else { Ending::Lost };
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(_))) => {
                        metrics.rejected_frames.with_label_values(&["binary"]).inc();
                        conn.send(error(ErrorCode::BadMessage, "frames are JSON text"));
                        continue;
                    }
                    Some(Ok(Message::Text(t))) => t,
                };
                if text.len() > config.max_frame_bytes {
                    metrics.rejected_frames.with_label_values(&["too_large"]).inc();
                    let _ = sink.send(close_frame(1009, "frame too large")).await;
                    closing = true;
                    break Ending::Lost;
                }
                if bucket.try_take(Instant::now()).is_err() {
                    metrics.rejected_frames.with_label_values(&["rate_limited"]).inc();
                    metrics.error(ErrorCode::RateLimited);
                    conn.send(error(ErrorCode::RateLimited, "too many messages; slow down"));
                    continue;
                }
                let msg: ClientMessage = match serde_json::from_str(text.as_str()) {
                    Ok(m) => m,
                    Err(e) => {
                        metrics.rejected_frames.with_label_values(&["malformed"]).inc();
                        metrics.error(ErrorCode::BadMessage);
                        conn.send(error(ErrorCode::BadMessage, &format!("unreadable message: {e}")));
                        continue;
                    }
                };
                metrics.messages.with_label_values(&[message_type(&msg)]).inc();
                match (&room, msg) {
                    (_, ClientMessage::Ping) => conn.send(ServerMessage::Pong),
                    (_, ClientMessage::Hello { access_token }) => {
                        if user.is_some() {
                            conn.send(error(ErrorCode::BadMessage, "hello was already sent"));
                            continue;
                        }
                        match UserChannel::open(&inner, &access_token, chat_tx.clone()).await {
                            Ok((channel, welcome)) => {
                                user = Some(channel);
                                conn.send(welcome);
                            }
                            Err((code, message)) => {
                                metrics.error(code);
                                conn.send(ServerMessage::Error { code, message });
                            }
                        }
                    }
                    (_, ClientMessage::Sync { chat_id, after_seq }) => {
                        let Some(u) = user.as_mut() else {
                            metrics.error(ErrorCode::NotJoined);
                            conn.send(error(ErrorCode::NotJoined, "send hello first"));
                            continue;
                        };
                        match u.sync(chat_id, after_seq).await {
                            Ok(out) => {
                                if !send_all(&mut sink, out).await {
                                    break Ending::Lost;
                                }
                            }
                            Err((code, message)) => {
                                metrics.error(code);
                                conn.send(ServerMessage::Error { code, message });
                            }
                        }
                    }
                    (_, ClientMessage::Typing { chat_id }) => {
                        let Some(u) = user.as_ref() else {
                            metrics.error(ErrorCode::NotJoined);
                            conn.send(error(ErrorCode::NotJoined, "send hello first"));
                            continue;
                        };
                        if let Err((code, message)) = u.typing(chat_id).await {
                            metrics.error(code);
                            conn.send(ServerMessage::Error { code, message });
                        }
                    }
                    (None, ClientMessage::Join { token, resume_token }) => {
                        let started = Instant::now();
                        match enter(&inner, &conn, &token, resume_token, started).await {
                            Ok(r) => {
                                metrics.join_answer_latency.observe(started.elapsed().as_secs_f64());
                                room = Some(r);
                            }
                            Err((code, message)) => {
                                metrics.error(code);
                                conn.send(ServerMessage::Error { code, message });
                            }
                        }
                    }
                    (None, _) => {
                        metrics.error(ErrorCode::NotJoined);
                        conn.send(error(ErrorCode::NotJoined, "send join with a token (or hello) first"));
                    }
                    (Some(r), msg) => {
                        if r.tx.send(RoomCmd::Client { conn_id: conn.id, msg }).await.is_err() {
                            conn.send(error(ErrorCode::Internal, "the room closed"));
                            room = None;
                        }
                    }
                }
            }
            Some(ev) = chat_rx.recv() => {
                if let Some(u) = user.as_mut() {
                    let out = u.event(&inner.presence, ev).await;
                    if !send_all(&mut sink, out).await {
                        break Ending::Lost;
                    }
                }
            }
            out = rx.recv() => match out {
                Some(Outbound::Msg(m)) => {
                    let Ok(json) = serde_json::to_string(&m) else { continue };
                    if sink.send(Message::Text(json.into())).await.is_err() {
                        break Ending::Lost;
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    let _ = sink.send(close_frame(code, &reason)).await;
                    closing = true;
                    break Ending::Clean;
                }
                None => break Ending::Lost,
            },
            _ = kill.notified() => {
                metrics.rejected_frames.with_label_values(&["slow_consumer"]).inc();
                let _ = sink.send(close_frame(1008, "too slow to keep up")).await;
                closing = true;
                break Ending::Lost;
            }
            _ = pinger.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break Ending::Lost;
                }
            }
            _ = tokio::time::sleep_until(last_heard + timeout) => {
                let _ = sink.send(close_frame(4001, "heartbeat timeout")).await;
                closing = true;
                break Ending::Silent;
            }
        }
    };
    metrics
        .disconnects
        .with_label_values(&[ending.label()])
        .inc();
    tracing::debug!(conn = conn.id, ?ending, "connection ended");
    if let Some(r) = room {
        let _ =
            r.tx.send(RoomCmd::Disconnected {
                conn_id: conn.id,
                ending,
            })
            .await;
    }
    if let Some(u) = user {
        u.close(&inner).await;
    }
    metrics.connections.dec();
    if closing {
        // The session is over; this only completes the closing handshake. A
        // client still writing (answering pings it had not read yet) to a
        // socket dropped at once would get a reset and lose the close code,
        // and with it what to do next (4001: resume).
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// How often the server pings: a third of the shorter heartbeat timeout.
fn ping_every(config: &crate::SignalingConfig) -> Duration {
    let shortest = config
        .heartbeat_timeout()
        .min(config.waiting_heartbeat_timeout());
    (shortest / 3).max(Duration::from_millis(100))
}

/// Writes messages straight to the socket (chat catch-up can be longer than
/// the outbound queue). False when the socket is gone.
async fn send_all(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    msgs: Vec<ServerMessage>,
) -> bool {
    for m in msgs {
        let Ok(json) = serde_json::to_string(&m) else {
            continue;
        };
        if sink.send(Message::Text(json.into())).await.is_err() {
            return false;
        }
    }
    true
}

fn error(code: ErrorCode, message: &str) -> ServerMessage {
    ServerMessage::Error {
        code,
        message: message.to_string(),
    }
}

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }))
}

async fn enter(
    inner: &Arc<Inner>,
    conn: &ConnHandle,
    token: &str,
    resume_token: Option<String>,
    started: Instant,
) -> Result<RoomHandle, (ErrorCode, String)> {
    let admission = inner
        .control
        .verify(token, resume_token.is_some())
        .await
        .map_err(|e| (e.code(), e.to_string()))?;
    // TURN credentials name the user, so they are made once the token is known.
    let mut conn = conn.clone();
    conn.ice_servers = inner
        .ice
        .ice_servers(&admission.user_id.to_string(), std::time::SystemTime::now());
    // The actor may stop between lookup and send; a second try gets a new one.
    for _ in 0..2 {
        let room = inner.hub.room(admission.conference_id, inner);
        let (reply, answer) = oneshot::channel();
        let cmd = RoomCmd::Enter {
            conn: conn.clone(),
            admission: admission.clone(),
            resume_token: resume_token.clone(),
            started,
            reply,
        };
        if room.tx.send(cmd).await.is_err() {
            inner.hub.forget(admission.conference_id);
            continue;
        }
        return match answer.await {
            Ok(Ok(())) => Ok(room),
            Ok(Err(e)) => Err(e),
            Err(_) => Err((ErrorCode::Internal, "room stopped".into())),
        };
    }
    Err((ErrorCode::Internal, "room unavailable".into()))
}

/// Whether the WebSocket layer refused a frame for its size.
fn is_too_large(e: &axum::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|inner| inner.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}
