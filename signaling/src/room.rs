//! One conference on this node: the actor that owns its participants,
//! waiters, tracks and chat order.
//!
//! Every change to a conference goes through its actor's queue, so messages
//! reach clients in one order (chat `seq` is that order) without locks. The
//! actor talks to the control plane for waiting-hall decisions and to the SFU
//! for media; it never blocks on a client, whose outbound queue is bounded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_proto::sfu::{
    AnswerRequest, DisconnectReason, Grants, JoinRequest, OfferRequest, SetMuteRequest, SfuEvent,
    SubscribeRequest, TrackInfo, TrackKind, UnsubscribeRequest, VideoQuality,
};
use convene_proto::signaling::{
    ClientMessage, ErrorCode, ParticipantInfo, ServerMessage, WaitingEntryInfo,
};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::config::SignalingConfig;
use crate::connection::{ConnHandle, Ending};
use crate::metrics::Metrics;
use crate::ports::{Admission, ControlPort, HallEvent, MediaPort, PortError};
use crate::ratelimit::TokenBucket;
use crate::room_bus::{LobbyTo, RoomBus, RoomEnvelope, RoomFrame};

mod hall;
mod media;

/// Messages into a room actor.
pub(crate) enum RoomCmd {
    /// A connection presents a verified token (room or waiting hall).
    Enter {
        conn: ConnHandle,
        admission: Admission,
        resume_token: Option<String>,
        /// When the join message arrived, for the join-latency histogram.
        started: Instant,
        reply: oneshot::Sender<Result<(), (ErrorCode, String)>>,
    },
    /// A message from an attached connection.
    Client {
        conn_id: u64,
        msg: ClientMessage,
    },
    /// The connection's heartbeat arrived.
    Heartbeat {
        conn_id: u64,
    },
    /// The socket closed, broke or went silent.
    Disconnected {
        conn_id: u64,
        ending: Ending,
    },
    Sfu(SfuEvent),
    Hall(HallEvent),
    /// From this conference's actors on every node (this one included).
    Frame(RoomEnvelope),
    Tick,
}

#[derive(Clone)]
pub(crate) struct RoomHandle {
    pub tx: mpsc::Sender<RoomCmd>,
}

struct Participant {
    info: ParticipantInfo,
    admission: Admission,
    conn: Option<ConnHandle>,
    resume_token: String,
    /// When the socket dropped; the participant is removed after the grace.
    detached_at: Option<Instant>,
    /// The SFU session exists (first offer answered).
    media_joined: bool,
    /// Why the last media session ended under this participant, until a new
    /// one starts; told again on resume, since it may have happened while
    /// the socket was away.
    media_lost: Option<DisconnectReason>,
    /// Join time, until the first media packet reaches the participant.
    awaiting_media: Option<Instant>,
    lobby_bucket: TokenBucket,
}

struct Waiter {
    admission: Admission,
    conn: Option<ConnHandle>,
    detached_at: Option<Instant>,
    last_touch: Instant,
    lobby_bucket: TokenBucket,
    /// The position this waiter's socket was last told.
    shown_position: Option<u32>,
}

pub(crate) struct RoomActor {
    conference: Uuid,
    room_id: String,
    control: Arc<dyn ControlPort>,
    media: Arc<dyn MediaPort>,
    config: Arc<SignalingConfig>,
    metrics: Metrics,
    participants: HashMap<String, Participant>,
    waiters: HashMap<Uuid, Waiter>,
    /// Which participant or waiter a connection speaks for.
    conns: HashMap<u64, Member>,
    tracks: HashMap<String, TrackInfo>,
    /// Participants connected to other signaling nodes.
    remote: HashMap<String, ParticipantInfo>,
    bus: Arc<RoomBus>,
    last_refresh: Instant,
    knocks: TokenBucket,
    /// This room's share of the waiting-entries gauge.
    waiting_seen: i64,
    /// The waiting list moderators were last sent.
    shown_entries: Option<Vec<WaitingEntryInfo>>,
    rx: mpsc::Receiver<RoomCmd>,
}

#[derive(Clone)]
enum Member {
    Participant(String),
    Waiter(Uuid),
}

/// How often the actor checks heartbeats and resume deadlines.
const TICK: Duration = Duration::from_secs(1);
/// Waiter heartbeats are forwarded to the control plane at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(5);

impl RoomActor {
    pub(crate) fn spawn(
        conference: Uuid,
        control: Arc<dyn ControlPort>,
        media: Arc<dyn MediaPort>,
        config: Arc<SignalingConfig>,
        metrics: Metrics,
        bus: Arc<RoomBus>,
        on_exit: impl FnOnce() + Send + 'static,
    ) -> RoomHandle {
        let (tx, rx) = mpsc::channel(1024);
        let now = Instant::now();
        let knocks = TokenBucket::new(
            f64::from(config.knocks_per_sec),
            config.knocks_per_sec.max(1),
            now,
        );
        let actor = RoomActor {
            conference,
            room_id: conference.to_string(),
            control,
            media,
            config,
            metrics,
            participants: HashMap::new(),
            waiters: HashMap::new(),
            conns: HashMap::new(),
            tracks: HashMap::new(),
            remote: HashMap::new(),
            bus,
            last_refresh: now,
            knocks,
            waiting_seen: 0,
            shown_entries: None,
            rx,
        };
        let handle = RoomHandle { tx: tx.clone() };
        tokio::spawn(async move {
            actor.run(tx).await;
            on_exit();
        });
        handle
    }

    async fn run(mut self, tx: mpsc::Sender<RoomCmd>) {
        // Conference events feed the same queue so they are ordered with
        // client messages.
        let events_task = match self.control.events(self.conference).await {
            Ok(mut events) => {
                let tx = tx.clone();
                Some(tokio::spawn(async move {
                    while let Some(ev) = events.next().await {
                        if tx.send(RoomCmd::Hall(ev)).await.is_err() {
                            break;
                        }
                    }
                }))
            }
            Err(e) => {
                tracing::warn!(conference = %self.conference, error = %e, "no conference events");
                None
            }
        };
        // Subscribed before anything is published, so answers are not missed.
        let frames_task = {
            let mut frames = self.bus.subscribe(self.conference);
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(env) = frames.next().await {
                    if tx.send(RoomCmd::Frame(env)).await.is_err() {
                        break;
                    }
                }
            })
        };
        if self.bus.is_shared() {
            match self.bus.remote_members(self.conference).await {
                Ok(members) => {
                    for m in members {
                        self.remote
                            .insert(m.participant.participant_id.clone(), m.participant);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read room members"),
            }
            if let Err(e) = self.bus.publish(self.conference, RoomFrame::Hello).await {
                tracing::warn!(error = %e, "could not greet other nodes");
            }
        }
        let ticker = {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut iv = tokio::time::interval(TICK);
                loop {
                    iv.tick().await;
                    if tx.send(RoomCmd::Tick).await.is_err() {
                        break;
                    }
                }
            })
        };
        drop(tx);
        while let Some(cmd) = self.rx.recv().await {
            let keep = self.handle(cmd).await;
            if !keep {
                break;
            }
        }
        self.metrics.waiting_entries.sub(self.waiting_seen);
        ticker.abort();
        frames_task.abort();
        if let Some(t) = events_task {
            t.abort();
        }
        tracing::debug!(conference = %self.conference, "room actor stopped");
    }

    /// Returns false when the room has nobody left and can stop.
    async fn handle(&mut self, cmd: RoomCmd) -> bool {
        match cmd {
            RoomCmd::Enter {
                conn,
                admission,
                resume_token,
                started,
                reply,
            } => {
                let result = self.enter(conn, admission, resume_token, started).await;
                let _ = reply.send(result);
            }
            RoomCmd::Client { conn_id, msg } => self.client(conn_id, msg).await,
            RoomCmd::Heartbeat { conn_id } => self.heartbeat(conn_id).await,
            RoomCmd::Disconnected { conn_id, ending } => self.disconnected(conn_id, ending).await,
            RoomCmd::Sfu(ev) => self.sfu_event(ev).await,
            RoomCmd::Hall(ev) => self.hall_event(ev).await,
            RoomCmd::Frame(env) => self.frame(env).await,
            RoomCmd::Tick => self.tick().await,
        }
        !(self.participants.is_empty() && self.waiters.is_empty() && self.conns.is_empty())
    }

    async fn enter(
        &mut self,
        conn: ConnHandle,
        admission: Admission,
        resume_token: Option<String>,
        started: Instant,
    ) -> Result<(), (ErrorCode, String)> {
        if admission.waiting {
            return self.enter_waiting(conn, admission).await;
        }
        // A resume within the grace period re-attaches the same participant.
        if let Some(token) = resume_token {
            let found = self
                .participants
                .iter()
                .find(|(_, p)| p.resume_token == token && p.admission.user_id == admission.user_id)
                .map(|(id, _)| id.clone());
            match found {
                Some(pid) => {
                    let p = self.participants.get_mut(&pid).expect("found above");
                    if let Some(old) = p.conn.take() {
                        self.conns.remove(&old.id);
                        old.close(4000, "resumed elsewhere");
                    }
                    p.conn = Some(conn.clone());
                    p.detached_at = None;
                    let (lost, moderator) = (p.media_lost, p.admission.moderator);
                    self.conns.insert(conn.id, Member::Participant(pid.clone()));
                    self.send_joined(&pid);
                    if let Some(reason) = lost {
                        conn.send(ServerMessage::MediaEnded {
                            participant_id: pid.clone(),
                            reason,
                        });
                    }
                    if moderator {
                        // Changes while the socket was away were not seen.
                        self.show_waiting_to(&conn).await;
                    }
                    return Ok(());
                }
                None => {
                    return Err((
                        ErrorCode::NotFound,
                        "resume token unknown or expired; join again without it".into(),
                    ))
                }
            }
        }
        self.join_room(conn, admission, started).await;
        Ok(())
    }

    async fn enter_waiting(
        &mut self,
        conn: ConnHandle,
        admission: Admission,
    ) -> Result<(), (ErrorCode, String)> {
        let user = admission.user_id;
        let reconnect = self.waiters.contains_key(&user);
        if !reconnect && self.knocks.try_take(Instant::now()).is_err() {
            return Err((
                ErrorCode::RateLimited,
                "too many knocks; retry shortly".into(),
            ));
        }
        let position = match self.control.touch_waiting(self.conference, user).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return Err((
                    ErrorCode::Forbidden,
                    "not waiting for this conference; ask to join again".into(),
                ))
            }
            Err(e) => return Err((e.code(), e.to_string())),
        };
        let now = Instant::now();
        let waiter = self.waiters.entry(user).or_insert_with(|| Waiter {
            admission: admission.clone(),
            conn: None,
            detached_at: None,
            last_touch: now,
            lobby_bucket: TokenBucket::per_minute(self.config.lobby_messages_per_min, now),
            shown_position: None,
        });
        if let Some(old) = waiter.conn.replace(conn.clone()) {
            self.conns.remove(&old.id);
            old.close(4000, "reconnected elsewhere");
        }
        waiter.detached_at = None;
        waiter.last_touch = now;
        // This socket is told its position here; the list refresh below (and
        // the control plane's event for the same knock) must not repeat it.
        waiter.shown_position = Some(position);
        self.conns.insert(conn.id, Member::Waiter(user));
        conn.set_waiting(true);
        conn.send(ServerMessage::Waiting { position });
        self.publish_waiting().await;
        Ok(())
    }

    async fn join_room(&mut self, conn: ConnHandle, admission: Admission, started: Instant) {
        let pid = format!("p-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let info = ParticipantInfo {
            participant_id: pid.clone(),
            user_id: admission.user_id,
            name: admission.name.clone(),
            moderator: admission.moderator,
        };
        let now = Instant::now();
        let participant = Participant {
            info: info.clone(),
            admission,
            conn: Some(conn.clone()),
            resume_token: Uuid::new_v4().simple().to_string(),
            detached_at: None,
            media_joined: false,
            media_lost: None,
            awaiting_media: Some(started),
            lobby_bucket: TokenBucket::per_minute(self.config.lobby_messages_per_min, now),
        };
        let moderator = participant.admission.moderator;
        self.participants.insert(pid.clone(), participant);
        self.conns.insert(conn.id, Member::Participant(pid.clone()));
        conn.set_waiting(false);
        self.send_joined(&pid);
        self.broadcast_except(
            &pid,
            ServerMessage::ParticipantJoined {
                participant: info.clone(),
            },
        );
        self.metrics.participants.inc();
        if self.bus.is_shared() {
            if let Err(e) = self
                .bus
                .claim(self.conference, std::slice::from_ref(&info))
                .await
            {
                tracing::warn!(error = %e, "could not record room member");
            }
            let frame = RoomFrame::Joined { participant: info };
            if let Err(e) = self.bus.publish(self.conference, frame).await {
                tracing::warn!(error = %e, "could not announce participant");
            }
        }
        if moderator {
            self.show_waiting_to(&conn).await;
        }
    }

    fn send_joined(&self, pid: &str) {
        let Some(p) = self.participants.get(pid) else {
            return;
        };
        let Some(conn) = &p.conn else { return };
        let participants = self
            .participants
            .values()
            .filter(|o| o.info.participant_id != pid)
            .map(|o| o.info.clone())
            .chain(self.remote.values().cloned())
            .collect();
        let tracks = self.tracks.values().cloned().collect();
        conn.send(ServerMessage::Joined {
            participant_id: pid.to_string(),
            resume_token: p.resume_token.clone(),
            participants,
            tracks,
            ice_servers: conn.ice_servers.clone(),
        });
    }

    fn broadcast_except(&self, except: &str, msg: ServerMessage) {
        for (pid, p) in &self.participants {
            if pid != except {
                if let Some(c) = &p.conn {
                    c.send(msg.clone());
                }
            }
        }
    }

    fn broadcast(&self, msg: ServerMessage) {
        self.broadcast_except("", msg);
    }

    fn send_to_moderators(&self, msg: ServerMessage) {
        for p in self.participants.values() {
            if p.admission.moderator {
                if let Some(c) = &p.conn {
                    c.send(msg.clone());
                }
            }
        }
    }

    fn conn_of(&self, conn_id: u64) -> Option<ConnHandle> {
        match self.conns.get(&conn_id)? {
            Member::Participant(pid) => self.participants.get(pid)?.conn.clone(),
            Member::Waiter(uid) => self.waiters.get(uid)?.conn.clone(),
        }
    }

    async fn client(&mut self, conn_id: u64, msg: ClientMessage) {
        let Some(member) = self.conns.get(&conn_id).cloned() else {
            return;
        };
        let Some(conn) = self.conn_of(conn_id) else {
            return;
        };
        let result = match member {
            Member::Waiter(uid) => self.waiter_message(uid, msg).await,
            Member::Participant(pid) => self.participant_message(&pid, msg).await,
        };
        if let Err((code, message)) = result {
            self.metrics.error(code);
            conn.send(ServerMessage::Error { code, message });
        }
    }

    async fn waiter_message(
        &mut self,
        uid: Uuid,
        msg: ClientMessage,
    ) -> Result<(), (ErrorCode, String)> {
        match msg {
            ClientMessage::LobbyMessage { text, to: _ } => {
                let text = self.checked_text(text)?;
                let w = self
                    .waiters
                    .get_mut(&uid)
                    .ok_or((ErrorCode::NotFound, "not waiting".to_string()))?;
                w.lobby_bucket.try_take(Instant::now()).map_err(|_| {
                    (
                        ErrorCode::RateLimited,
                        "too many lobby messages".to_string(),
                    )
                })?;
                let frame = RoomFrame::Lobby {
                    to: LobbyTo::Moderators,
                    from_user_id: uid,
                    from_name: w.admission.name.clone(),
                    text,
                    at_ms: chrono::Utc::now().timestamp_millis(),
                };
                self.bus
                    .publish(self.conference, frame)
                    .await
                    .map_err(|e| (ErrorCode::Internal, e.to_string()))
            }
            ClientMessage::Leave => {
                let _ = self.control.leave_waiting(self.conference, uid).await;
                if let Some(w) = self.waiters.remove(&uid) {
                    if let Some(c) = w.conn {
                        self.conns.remove(&c.id);
                        c.close(1000, "left");
                    }
                }
                self.publish_waiting().await;
                Ok(())
            }
            _ => Err((
                ErrorCode::Forbidden,
                "waiting for a moderator to admit you".into(),
            )),
        }
    }

    fn checked_text(&self, text: String) -> Result<String, (ErrorCode, String)> {
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err((ErrorCode::BadMessage, "empty text".into()));
        }
        if text.chars().count() > self.config.max_chat_chars {
            return Err((
                ErrorCode::LimitExceeded,
                format!("text longer than {} characters", self.config.max_chat_chars),
            ));
        }
        Ok(text)
    }

    fn require_moderator(&self, pid: &str) -> Result<Uuid, (ErrorCode, String)> {
        let p = self
            .participants
            .get(pid)
            .ok_or((ErrorCode::NotFound, "unknown participant".to_string()))?;
        if p.admission.moderator {
            Ok(p.admission.user_id)
        } else {
            Err((ErrorCode::Forbidden, "moderators only".into()))
        }
    }

    fn user_of(&self, pid: &str) -> Result<Uuid, (ErrorCode, String)> {
        self.participants
            .get(pid)
            .map(|p| p.admission.user_id)
            .or_else(|| self.remote.get(pid).map(|r| r.user_id))
            .ok_or((ErrorCode::NotFound, format!("no participant {pid}")))
    }

    async fn participant_message(
        &mut self,
        pid: &str,
        msg: ClientMessage,
    ) -> Result<(), (ErrorCode, String)> {
        let port = |e: PortError| (e.code(), e.to_string());
        match msg {
            ClientMessage::Offer { sdp } => {
                let p = self
                    .participants
                    .get(pid)
                    .ok_or((ErrorCode::NotFound, "gone".to_string()))?;
                let answer = if p.media_joined {
                    self.media
                        .offer(OfferRequest {
                            room_id: self.room_id.clone(),
                            participant_id: pid.to_string(),
                            offer_sdp: sdp,
                        })
                        .await
                        .map_err(port)?
                } else {
                    let a = &p.admission;
                    let answer = self
                        .media
                        .join(JoinRequest {
                            room_id: self.room_id.clone(),
                            participant_id: pid.to_string(),
                            identity: a.name.clone(),
                            offer_sdp: sdp,
                            grants: Grants {
                                can_publish: a.can_publish,
                                can_subscribe: a.can_subscribe,
                                can_publish_data: a.can_publish_data,
                            },
                        })
                        .await
                        .map_err(port)?;
                    if let Some(p) = self.participants.get_mut(pid) {
                        p.media_joined = true;
                        p.media_lost = None;
                    }
                    answer
                };
                if let Some(c) = self.participants.get(pid).and_then(|p| p.conn.clone()) {
                    c.send(ServerMessage::Answer { sdp: answer });
                }
                // Everything already published is subscribed to by default,
                // as LiveKit's auto-subscribe does.
                let others: Vec<String> = self
                    .tracks
                    .values()
                    .filter(|t| t.participant_id != pid)
                    .map(|t| t.track_id.clone())
                    .collect();
                if !others.is_empty() && self.can_subscribe(pid) {
                    self.subscribe(pid, others, VideoQuality::High).await;
                }
                Ok(())
            }
            ClientMessage::Answer { sdp } => self
                .media
                .answer(AnswerRequest {
                    room_id: self.room_id.clone(),
                    participant_id: pid.to_string(),
                    answer_sdp: sdp,
                })
                .await
                .map_err(port),
            // The SFU is ICE-lite and learns the client's address from its
            // connectivity checks, so trickled candidates need no relaying.
            ClientMessage::Candidate { .. } => Ok(()),
            ClientMessage::Subscribe {
                track_ids,
                max_quality,
            } => {
                if !self.can_subscribe(pid) {
                    return Err((ErrorCode::Forbidden, "no subscribe grant".into()));
                }
                self.media
                    .subscribe(SubscribeRequest {
                        room_id: self.room_id.clone(),
                        participant_id: pid.to_string(),
                        track_ids,
                        max_quality,
                    })
                    .await
                    .map_err(port)
            }
            ClientMessage::Unsubscribe { track_ids } => self
                .media
                .unsubscribe(UnsubscribeRequest {
                    room_id: self.room_id.clone(),
                    participant_id: pid.to_string(),
                    track_ids,
                })
                .await
                .map_err(port),
            ClientMessage::Mute { track_id, muted } => {
                let own = self
                    .tracks
                    .get(&track_id)
                    .is_some_and(|t| t.participant_id == pid);
                if !own {
                    return Err((ErrorCode::NotFound, format!("no track {track_id} of yours")));
                }
                self.media
                    .set_mute(SetMuteRequest {
                        room_id: self.room_id.clone(),
                        track_id,
                        muted,
                    })
                    .await
                    .map_err(port)
            }
            ClientMessage::Chat { text } => {
                let text = self.checked_text(text)?;
                let p = self
                    .participants
                    .get(pid)
                    .ok_or((ErrorCode::NotFound, "gone".to_string()))?;
                if !p.admission.can_publish_data {
                    return Err((ErrorCode::Forbidden, "no data grant".into()));
                }
                // Delivered when it comes back from the bus, numbered, so
                // every node shows the room's chat in one order.
                let frame = RoomFrame::Chat {
                    from: p.info.clone(),
                    text,
                    at_ms: chrono::Utc::now().timestamp_millis(),
                };
                self.bus
                    .publish_chat(self.conference, frame)
                    .await
                    .map_err(|e| (ErrorCode::Internal, e.to_string()))
            }
            ClientMessage::LobbyMessage { text, to } => {
                let text = self.checked_text(text)?;
                let moderator = self.require_moderator(pid)?;
                let p = self
                    .participants
                    .get_mut(pid)
                    .ok_or((ErrorCode::NotFound, "gone".to_string()))?;
                p.lobby_bucket.try_take(Instant::now()).map_err(|_| {
                    (
                        ErrorCode::RateLimited,
                        "too many lobby messages".to_string(),
                    )
                })?;
                let from_name = p.info.name.clone();
                let to = match to {
                    Some(user_id) => {
                        // The waiter may wait on another node.
                        let known = self.waiters.contains_key(&user_id)
                            || self
                                .control
                                .waiting_entries(self.conference)
                                .await
                                .map_err(port)?
                                .iter()
                                .any(|e| e.user_id == user_id);
                        if !known {
                            return Err((ErrorCode::NotFound, "no such waiter".to_string()));
                        }
                        LobbyTo::Waiter { user_id }
                    }
                    None => LobbyTo::AllWaiters,
                };
                let frame = RoomFrame::Lobby {
                    to,
                    from_user_id: moderator,
                    from_name,
                    text,
                    at_ms: chrono::Utc::now().timestamp_millis(),
                };
                self.bus
                    .publish(self.conference, frame)
                    .await
                    .map_err(|e| (ErrorCode::Internal, e.to_string()))
            }
            ClientMessage::Admit { user_id } => {
                let m = self.require_moderator(pid)?;
                self.control
                    .admit(m, self.conference, user_id)
                    .await
                    .map_err(port)?;
                self.metrics
                    .admissions
                    .with_label_values(&["admitted"])
                    .inc();
                Ok(())
            }
            ClientMessage::Deny { user_id, reason } => {
                let m = self.require_moderator(pid)?;
                self.control
                    .deny(m, self.conference, user_id, &reason)
                    .await
                    .map_err(port)?;
                self.metrics.admissions.with_label_values(&["denied"]).inc();
                Ok(())
            }
            ClientMessage::AdmitAll => {
                let m = self.require_moderator(pid)?;
                self.control
                    .admit_all(m, self.conference)
                    .await
                    .map_err(port)?;
                self.metrics
                    .admissions
                    .with_label_values(&["admitted_all"])
                    .inc();
                Ok(())
            }
            ClientMessage::MoveToWaiting { participant_id } => {
                let m = self.require_moderator(pid)?;
                let user = self.user_of(&participant_id)?;
                self.control
                    .move_to_waiting(m, self.conference, user)
                    .await
                    .map_err(port)
            }
            ClientMessage::Remove { participant_id } => {
                let m = self.require_moderator(pid)?;
                let user = self.user_of(&participant_id)?;
                self.control
                    .remove_participant(m, self.conference, user)
                    .await
                    .map_err(port)
            }
            ClientMessage::MuteParticipant {
                participant_id,
                video,
            } => {
                self.require_moderator(pid)?;
                match self.participants.get(&participant_id) {
                    Some(target) => {
                        if let Some(c) = &target.conn {
                            c.send(ServerMessage::MuteRequested { video });
                        }
                    }
                    None if self.remote.contains_key(&participant_id) => {
                        let frame = RoomFrame::Direct {
                            participant_id: participant_id.clone(),
                            message: ServerMessage::MuteRequested { video },
                        };
                        self.bus
                            .publish(self.conference, frame)
                            .await
                            .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
                    }
                    None => {
                        return Err((
                            ErrorCode::NotFound,
                            format!("no participant {participant_id}"),
                        ))
                    }
                }
                // Enforced on the server too: a client that ignores the
                // request is still silent for everyone else.
                let to_mute: Vec<String> = self
                    .tracks
                    .values()
                    .filter(|t| t.participant_id == participant_id)
                    .filter(|t| t.kind == TrackKind::Audio || video)
                    .map(|t| t.track_id.clone())
                    .collect();
                for track_id in to_mute {
                    self.media
                        .set_mute(SetMuteRequest {
                            room_id: self.room_id.clone(),
                            track_id,
                            muted: true,
                        })
                        .await
                        .map_err(port)?;
                }
                Ok(())
            }
            ClientMessage::EndConference => {
                let m = self.require_moderator(pid)?;
                self.control
                    .end_conference(m, self.conference)
                    .await
                    .map_err(port)
            }
            ClientMessage::Leave => {
                self.remove_participant(pid, None).await;
                Ok(())
            }
            ClientMessage::Join { .. } => Err((ErrorCode::BadMessage, "already joined".into())),
            // Handled by the connection's user channel, never routed here.
            ClientMessage::Hello { .. }
            | ClientMessage::Sync { .. }
            | ClientMessage::Typing { .. } => {
                Err((ErrorCode::BadMessage, "not a room message".into()))
            }
            ClientMessage::Ping => Ok(()),
        }
    }

    fn can_subscribe(&self, pid: &str) -> bool {
        self.participants
            .get(pid)
            .is_some_and(|p| p.admission.can_subscribe)
    }

    async fn subscribe(&self, pid: &str, track_ids: Vec<String>, max_quality: VideoQuality) {
        let req = SubscribeRequest {
            room_id: self.room_id.clone(),
            participant_id: pid.to_string(),
            track_ids,
            max_quality,
        };
        if let Err(e) = self.media.subscribe(req).await {
            tracing::debug!(participant = pid, error = %e, "auto-subscribe failed");
        }
    }

    /// Takes a participant out of the room; `notice` is sent to it first.
    async fn remove_participant(&mut self, pid: &str, notice: Option<ServerMessage>) {
        let Some(p) = self.participants.remove(pid) else {
            return;
        };
        if let Some(c) = &p.conn {
            self.conns.remove(&c.id);
            if let Some(n) = notice {
                c.send(n);
            }
            c.close(1000, "left the room");
        }
        if p.media_joined {
            let _ = self.media.remove_participant(&self.room_id, pid).await;
        }
        self.tracks.retain(|_, t| t.participant_id != pid);
        self.metrics.participants.dec();
        self.broadcast(ServerMessage::ParticipantLeft {
            participant_id: pid.to_string(),
        });
        if self.bus.is_shared() {
            let _ = self.bus.release(self.conference, pid).await;
            let frame = RoomFrame::Left {
                participant_id: pid.to_string(),
            };
            if let Err(e) = self.bus.publish(self.conference, frame).await {
                tracing::warn!(error = %e, "could not announce departure");
            }
        }
    }

    async fn heartbeat(&mut self, conn_id: u64) {
        if let Some(Member::Waiter(uid)) = self.conns.get(&conn_id).cloned() {
            let now = Instant::now();
            let due = self
                .waiters
                .get(&uid)
                .is_some_and(|w| now.duration_since(w.last_touch) >= TOUCH_EVERY);
            if due {
                if let Some(w) = self.waiters.get_mut(&uid) {
                    w.last_touch = now;
                }
                let _ = self.control.touch_waiting(self.conference, uid).await;
            }
        }
    }

    async fn disconnected(&mut self, conn_id: u64, ending: Ending) {
        let Some(member) = self.conns.remove(&conn_id) else {
            return;
        };
        let now = Instant::now();
        match member {
            // A socket that broke or went silent keeps its participant for
            // the resume grace; only a deliberate close leaves at once.
            Member::Participant(pid) => {
                if ending == Ending::Clean {
                    self.remove_participant(&pid, None).await;
                } else if let Some(p) = self.participants.get_mut(&pid) {
                    p.conn = None;
                    p.detached_at = Some(now);
                }
            }
            // A waiter whose socket went away, cleanly or not, may come back
            // and keeps its place until the waiting heartbeat runs out.
            Member::Waiter(uid) => {
                if let Some(w) = self.waiters.get_mut(&uid) {
                    w.conn = None;
                    w.detached_at = Some(now);
                }
            }
        }
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        if self.bus.is_shared() && now.duration_since(self.last_refresh) >= self.bus.refresh_every()
        {
            self.last_refresh = now;
            self.refresh_members().await;
        }
        let grace = self.config.resume_grace();
        let expired: Vec<String> = self
            .participants
            .iter()
            .filter(|(_, p)| {
                p.detached_at
                    .is_some_and(|t| now.duration_since(t) >= grace)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for pid in expired {
            self.remove_participant(&pid, None).await;
        }
        let timeout = self.config.waiting_heartbeat_timeout();
        let gone: Vec<Uuid> = self
            .waiters
            .iter()
            .filter(|(_, w)| {
                w.detached_at
                    .is_some_and(|t| now.duration_since(t) >= timeout)
            })
            .map(|(id, _)| *id)
            .collect();
        if !gone.is_empty() {
            for uid in gone {
                self.waiters.remove(&uid);
                let _ = self.control.leave_waiting(self.conference, uid).await;
            }
            self.publish_waiting().await;
        }
    }

    async fn sfu_event(&mut self, ev: SfuEvent) {
        match ev {
            SfuEvent::TrackPublished { track, .. } => self.track_published(track).await,
            SfuEvent::TrackUnpublished {
                track_id,
                participant_id,
                ..
            } => {
                self.tracks.remove(&track_id);
                self.broadcast_except(
                    &participant_id,
                    ServerMessage::TrackUnpublished { track_id },
                );
            }
            SfuEvent::TrackMuted {
                track_id, muted, ..
            } => {
                if let Some(t) = self.tracks.get_mut(&track_id) {
                    t.muted = muted;
                }
                self.broadcast(ServerMessage::TrackMuted { track_id, muted });
            }
            SfuEvent::ParticipantConnected { participant_id, .. } => {
                tracing::debug!(participant = %participant_id, "media connected");
            }
            SfuEvent::ParticipantDisconnected {
                participant_id,
                reason,
                ..
            } => self.media_ended(participant_id, reason).await,
            SfuEvent::ActiveSpeakersChanged { speakers, .. } => {
                let mut participant_ids: Vec<String> = Vec::with_capacity(speakers.len());
                for s in speakers {
                    if !participant_ids.contains(&s.participant_id) {
                        participant_ids.push(s.participant_id);
                    }
                }
                self.broadcast(ServerMessage::ActiveSpeakers { participant_ids });
            }
            SfuEvent::RenegotiationOffer {
                participant_id,
                offer_sdp,
                ..
            } => {
                if let Some(c) = self
                    .participants
                    .get(&participant_id)
                    .and_then(|p| p.conn.clone())
                {
                    c.send(ServerMessage::Offer { sdp: offer_sdp });
                }
            }
            SfuEvent::MediaStarted { participant_id, .. } => {
                if let Some(started) = self
                    .participants
                    .get_mut(&participant_id)
                    .and_then(|p| p.awaiting_media.take())
                {
                    self.metrics
                        .join_latency
                        .observe(started.elapsed().as_secs_f64());
                }
            }
            SfuEvent::LayerChanged { .. } | SfuEvent::WantedLayers { .. } => {}
        }
    }

    async fn track_published(&mut self, track: TrackInfo) {
        self.tracks.insert(track.track_id.clone(), track.clone());
        let publisher = track.participant_id.clone();
        // The publisher hears of its own track too: that is how it learns
        // the id to use in `mute`.
        self.broadcast(ServerMessage::TrackPublished {
            track: track.clone(),
        });
        let subscribers: Vec<String> = self
            .participants
            .iter()
            .filter(|(pid, p)| **pid != publisher && p.media_joined && p.admission.can_subscribe)
            .map(|(pid, _)| pid.clone())
            .collect();
        for pid in subscribers {
            self.subscribe(&pid, vec![track.track_id.clone()], VideoQuality::High)
                .await;
        }
    }

    /// A user may be in the room more than once (two tabs).
    fn participants_of(&self, user: Uuid) -> Vec<String> {
        self.participants
            .iter()
            .filter(|(_, p)| p.admission.user_id == user)
            .map(|(id, _)| id.clone())
            .collect()
    }

    async fn hall_event(&mut self, ev: HallEvent) {
        match ev {
            HallEvent::WaitingChanged => self.publish_waiting().await,
            HallEvent::Admitted { user_id } => {
                if let Some(w) = self.waiters.remove(&user_id) {
                    if let Some(conn) = w.conn {
                        self.conns.remove(&conn.id);
                        match self.control.room_token(self.conference, user_id).await {
                            Ok(token) => match self.control.verify(&token).await {
                                Ok(admission) if !admission.waiting => {
                                    conn.send(ServerMessage::Admitted { token });
                                    self.join_room(conn, admission, Instant::now()).await;
                                }
                                _ => conn.send(ServerMessage::Error {
                                    code: ErrorCode::Internal,
                                    message: "admitted, but the room token was refused; rejoin"
                                        .into(),
                                }),
                            },
                            Err(e) => conn.send(ServerMessage::Error {
                                code: e.code(),
                                message: e.to_string(),
                            }),
                        }
                    }
                }
                self.publish_waiting().await;
            }
            HallEvent::Denied { user_id, reason } => {
                if let Some(w) = self.waiters.remove(&user_id) {
                    if let Some(conn) = w.conn {
                        self.conns.remove(&conn.id);
                        conn.send(ServerMessage::Denied { reason });
                        conn.close(1000, "denied");
                    }
                }
                self.publish_waiting().await;
            }
            HallEvent::MovedToWaiting { user_id } => {
                for pid in self.participants_of(user_id) {
                    let Some(p) = self.participants.get(&pid) else {
                        continue;
                    };
                    let conn = p.conn.clone();
                    let mut admission = p.admission.clone();
                    // Detach the socket first so remove_participant does not close it.
                    if let Some(p) = self.participants.get_mut(&pid) {
                        p.conn = None;
                    }
                    self.remove_participant(&pid, None).await;
                    if let Some(conn) = conn {
                        self.conns.remove(&conn.id);
                        conn.send(ServerMessage::MovedToWaiting);
                        admission.waiting = true;
                        admission.moderator = false;
                        if let Err((code, message)) =
                            self.enter_waiting(conn.clone(), admission).await
                        {
                            conn.send(ServerMessage::Error { code, message });
                            conn.close(1000, "moved out");
                        }
                    }
                }
                self.publish_waiting().await;
            }
            HallEvent::Removed { user_id } => {
                for pid in self.participants_of(user_id) {
                    let notice = ServerMessage::Removed {
                        reason: "removed by a moderator".into(),
                    };
                    self.remove_participant(&pid, Some(notice)).await;
                }
                if let Some(w) = self.waiters.remove(&user_id) {
                    if let Some(c) = w.conn {
                        self.conns.remove(&c.id);
                        c.send(ServerMessage::Removed {
                            reason: "removed by a moderator".into(),
                        });
                        c.close(1000, "removed");
                    }
                }
            }
            HallEvent::Ended => {
                self.broadcast(ServerMessage::ConferenceEnded);
                for w in self.waiters.values() {
                    if let Some(c) = &w.conn {
                        c.send(ServerMessage::ConferenceEnded);
                    }
                }
                let _ = self.media.close_room(&self.room_id).await;
                for p in self.participants.values() {
                    if let Some(c) = &p.conn {
                        c.close(1000, "conference ended");
                    }
                }
                for w in self.waiters.values() {
                    if let Some(c) = &w.conn {
                        c.close(1000, "conference ended");
                    }
                }
                self.metrics
                    .participants
                    .sub(self.participants.len() as i64);
                self.participants.clear();
                self.waiters.clear();
                self.conns.clear();
            }
        }
    }

    /// Renews this node's member claims and reconciles the other nodes'
    /// participants with the shared list (a node that died stops renewing).
    async fn refresh_members(&mut self) {
        let mine: Vec<ParticipantInfo> =
            self.participants.values().map(|p| p.info.clone()).collect();
        if let Err(e) = self.bus.claim(self.conference, &mine).await {
            tracing::warn!(error = %e, "could not renew room members");
        }
        let live = match self.bus.remote_members(self.conference).await {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %e, "could not read room members");
                return;
            }
        };
        let gone: Vec<String> = self
            .remote
            .keys()
            .filter(|pid| !live.iter().any(|m| &m.participant.participant_id == *pid))
            .cloned()
            .collect();
        for pid in gone {
            self.remote.remove(&pid);
            self.broadcast(ServerMessage::ParticipantLeft {
                participant_id: pid,
            });
        }
        for m in live {
            let pid = m.participant.participant_id.clone();
            if !self.remote.contains_key(&pid) && !self.participants.contains_key(&pid) {
                self.remote.insert(pid, m.participant.clone());
                self.broadcast(ServerMessage::ParticipantJoined {
                    participant: m.participant,
                });
            }
        }
    }

    async fn frame(&mut self, env: RoomEnvelope) {
        let own = env.node == self.bus.node();
        match env.frame {
            RoomFrame::Joined { participant } if !own => {
                let pid = participant.participant_id.clone();
                if self.remote.insert(pid, participant.clone()).is_none() {
                    self.broadcast(ServerMessage::ParticipantJoined { participant });
                }
            }
            RoomFrame::Left { participant_id }
                if !own && self.remote.contains_key(&participant_id) =>
            {
                self.remote.remove(&participant_id);
                self.broadcast(ServerMessage::ParticipantLeft { participant_id });
            }
            RoomFrame::Hello if !own && !self.tracks.is_empty() => {
                let tracks = self.tracks.values().cloned().collect();
                let _ = self
                    .bus
                    .publish(self.conference, RoomFrame::Tracks { tracks })
                    .await;
            }
            RoomFrame::Tracks { tracks } if !own => {
                for track in tracks {
                    if !self.tracks.contains_key(&track.track_id) {
                        self.track_published(track).await;
                    }
                }
            }
            RoomFrame::Chat { from, text, at_ms } => {
                self.broadcast(ServerMessage::Chat {
                    seq: env.seq,
                    from,
                    text,
                    at_ms,
                });
            }
            RoomFrame::Lobby {
                to,
                from_user_id,
                from_name,
                text,
                at_ms,
            } => {
                let msg = ServerMessage::LobbyMessage {
                    from_user_id,
                    from_name,
                    text,
                    at_ms,
                };
                let waiters: Vec<&Waiter> = match &to {
                    LobbyTo::Moderators => Vec::new(),
                    LobbyTo::Waiter { user_id } => self.waiters.get(user_id).into_iter().collect(),
                    LobbyTo::AllWaiters => self.waiters.values().collect(),
                };
                for w in waiters {
                    if let Some(c) = &w.conn {
                        c.send(msg.clone());
                    }
                }
                // Every moderator sees what was said in the lobby.
                self.send_to_moderators(msg);
            }
            RoomFrame::MediaEnded {
                participant_id,
                reason,
            } if !own => self.remote_media_ended(participant_id, reason),
            RoomFrame::Direct {
                participant_id,
                message,
            } => {
                if let Some(c) = self
                    .participants
                    .get(&participant_id)
                    .and_then(|p| p.conn.clone())
                {
                    c.send(message);
                }
            }
            _ => {}
        }
    }
}
