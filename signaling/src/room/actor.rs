//! The room's I/O shell: one Tokio task per conference on this node that
//! feeds inputs to [`RoomState`] and executes the effects it returns.
//!
//! The task never awaits a port: calls run in a [`JoinSet`] beside it, at
//! most [`PORT_CALLS_PER_ROOM`] at once, and their results come back as
//! inputs. Room-bus work runs in order on a task of its own, so chat stays
//! in the order it was sent and the task never waits for Redis. Sending to
//! a client never blocks either: its outbound queue is bounded and a client
//! that fills it is disconnected.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use convene_proto::sfu::SfuEvent;
use convene_proto::signaling::{ClientMessage, ErrorCode};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::effects::{
    BusOp, CallId, CallOutput, ControlCall, Effect, EnterId, MediaCall, MetricUpdate, PortCall,
    RoomInput,
};
use super::error::RoomError;
use super::state::{Cluster, RoomState};
use crate::config::SignalingConfig;
use crate::connection::{ConnHandle, Ending};
use crate::metrics::{wire_name, Metrics};
use crate::ports::{Admission, ControlPort, HallEvent, MediaPort, PortError};
use crate::room_bus::{RoomBus, RoomEnvelope, RoomFrame};

/// Port calls one room may have out at once. Each lane (a participant's
/// SDP, a moderator, a waiter, the hall list) has at most one, so this only
/// bites in a big room where many participants negotiate at the same time;
/// it keeps such a room from opening hundreds of requests to the SFU.
pub(crate) const PORT_CALLS_PER_ROOM: usize = 16;

/// Inputs queued to one room before senders wait (connections) or drop
/// (SFU events, see `hub.rs`).
const ROOM_QUEUE: usize = 1024;

/// Where the outcome of a connection's `enter` goes.
type EnterReply = oneshot::Sender<Result<(), (ErrorCode, String)>>;

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
}

#[derive(Clone)]
pub(crate) struct RoomHandle {
    pub tx: mpsc::Sender<RoomCmd>,
}

pub(crate) struct RoomActor {
    conference: Uuid,
    control: Arc<dyn ControlPort>,
    media: Arc<dyn MediaPort>,
    metrics: Metrics,
    bus: Arc<RoomBus>,
    state: RoomState,
    conns: HashMap<u64, ConnHandle>,
    entering: HashMap<EnterId, (u64, EnterReply)>,
    next_enter: EnterId,
    calls: JoinSet<(CallId, Result<CallOutput, PortError>)>,
    permits: Arc<Semaphore>,
    bus_ops: mpsc::UnboundedSender<BusOp>,
    rx: mpsc::Receiver<RoomCmd>,
}

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
        let (tx, rx) = mpsc::channel(ROOM_QUEUE);
        let cluster = Cluster {
            shared: bus.is_shared(),
            node: bus.node().to_string(),
            refresh_every: bus.refresh_every(),
        };
        let state = RoomState::new(conference, config, cluster, Instant::now());
        let (bus_ops, ops_rx) = mpsc::unbounded_channel();
        let actor = RoomActor {
            conference,
            control,
            media,
            metrics,
            bus,
            state,
            conns: HashMap::new(),
            entering: HashMap::new(),
            next_enter: 1,
            calls: JoinSet::new(),
            permits: Arc::new(Semaphore::new(PORT_CALLS_PER_ROOM)),
            bus_ops,
            rx,
        };
        let handle = RoomHandle { tx: tx.clone() };
        tokio::spawn(async move {
            actor.run(tx, ops_rx).await;
            on_exit();
        });
        handle
    }

    async fn run(mut self, tx: mpsc::Sender<RoomCmd>, ops_rx: mpsc::UnboundedReceiver<BusOp>) {
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
        drop(tx);
        // Before the first member is answered, so its `joined` lists the
        // other nodes' participants.
        if self.bus.is_shared() {
            match self.bus.remote_members(self.conference).await {
                Ok(members) => self
                    .state
                    .seed_remote(members.into_iter().map(|m| m.participant).collect()),
                Err(e) => tracing::warn!(error = %e, "could not read room members"),
            }
            if let Err(e) = self.bus.publish(self.conference, RoomFrame::Hello).await {
                tracing::warn!(error = %e, "could not greet other nodes");
            }
        }
        let (bus_results, mut bus_rx) = mpsc::unbounded_channel();
        let bus_task = tokio::spawn(run_bus(
            self.bus.clone(),
            self.conference,
            ops_rx,
            bus_results,
        ));

        let mut stopping = false;
        let mut queue_open = true;
        loop {
            let deadline = self.state.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            let input = tokio::select! {
                cmd = self.rx.recv(), if queue_open => match cmd {
                    Some(cmd) => match self.input(cmd, stopping) {
                        Some(input) => input,
                        None => continue,
                    },
                    None => {
                        queue_open = false;
                        continue;
                    }
                },
                Some(done) = self.calls.join_next() => match done {
                    Ok((call, result)) => RoomInput::Done { call, result },
                    Err(e) => {
                        // A panicked call would leave its lane busy for good.
                        tracing::error!(conference = %self.conference, error = %e, "port call task failed");
                        continue;
                    }
                },
                Some(input) = bus_rx.recv() => input,
                _ = sleep => RoomInput::Timeout,
            };
            let disconnected = match &input {
                RoomInput::Disconnected { conn, .. } => Some(*conn),
                _ => None,
            };
            let effects = self.state.apply(input, Instant::now());
            self.execute(effects);
            if let Some(conn) = disconnected {
                self.conns.remove(&conn);
            }
            if !stopping && self.state.is_empty() {
                // New members go to a new actor (the hub sees this queue
                // closed); this one only finishes the calls still out.
                stopping = true;
                self.rx.close();
            }
            if stopping && !queue_open && self.state.is_idle() {
                break;
            }
        }
        // The bus task finishes what was queued (a departure's release and
        // `left` frame) before the room is gone.
        drop(self.bus_ops);
        let _ = bus_task.await;
        self.metrics.waiting_entries.sub(self.state.waiting_seen());
        frames_task.abort();
        if let Some(t) = events_task {
            t.abort();
        }
        tracing::debug!(conference = %self.conference, "room actor stopped");
    }

    /// A queued command as the state's input; `None` when answered here.
    fn input(&mut self, cmd: RoomCmd, stopping: bool) -> Option<RoomInput> {
        Some(match cmd {
            RoomCmd::Enter {
                conn,
                admission,
                resume_token,
                started,
                reply,
            } => {
                if stopping {
                    let _ = reply.send(Err(RoomError::Stopped.into_wire()));
                    return None;
                }
                let enter = self.next_enter;
                self.next_enter += 1;
                let ice_servers = conn.ice_servers.clone();
                let id = conn.id;
                self.conns.insert(id, conn);
                self.entering.insert(enter, (id, reply));
                RoomInput::Enter {
                    enter,
                    conn: id,
                    ice_servers,
                    admission,
                    resume_token,
                    started,
                }
            }
            RoomCmd::Client { conn_id, msg } => RoomInput::Client {
                conn: conn_id,
                msg,
                at_ms: chrono::Utc::now().timestamp_millis(),
            },
            RoomCmd::Heartbeat { conn_id } => RoomInput::Heartbeat { conn: conn_id },
            RoomCmd::Disconnected { conn_id, ending } => RoomInput::Disconnected {
                conn: conn_id,
                ending,
            },
            RoomCmd::Sfu(ev) => RoomInput::Sfu(ev),
            RoomCmd::Hall(ev) => RoomInput::Hall(ev),
            RoomCmd::Frame(env) => RoomInput::Frame(env),
        })
    }

    fn execute(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { conn, msg } => {
                    if let Some(c) = self.conns.get(&conn) {
                        c.send(msg);
                    }
                }
                Effect::Close { conn, code, reason } => {
                    if let Some(c) = self.conns.get(&conn) {
                        c.close(code, &reason);
                    }
                }
                Effect::SetWaiting { conn, waiting } => {
                    if let Some(c) = self.conns.get(&conn) {
                        c.set_waiting(waiting);
                    }
                }
                Effect::Entered { enter, result } => {
                    let Some((conn, reply)) = self.entering.remove(&enter) else {
                        continue;
                    };
                    if result.is_err() {
                        // Refused: the connection stays unattached and will
                        // not report its end here.
                        self.conns.remove(&conn);
                    }
                    let _ = reply.send(result.map_err(RoomError::into_wire));
                }
                Effect::Bus(op) => {
                    let _ = self.bus_ops.send(op);
                }
                Effect::Call { call, port } => self.spawn_call(call, port),
                Effect::Metric(m) => self.metric(m),
            }
        }
    }

    fn spawn_call(&mut self, call: CallId, port: PortCall) {
        let control = self.control.clone();
        let media = self.media.clone();
        let permits = self.permits.clone();
        let conference = self.conference;
        self.calls.spawn(async move {
            // Never closed, so acquiring only waits.
            let _permit = permits.acquire_owned().await;
            let result = run_call(port, conference, control.as_ref(), media.as_ref()).await;
            (call, result)
        });
    }

    fn metric(&self, m: MetricUpdate) {
        let metrics = &self.metrics;
        match m {
            MetricUpdate::Participants(n) => metrics.participants.add(n),
            MetricUpdate::WaitingEntries(n) => metrics.waiting_entries.add(n),
            MetricUpdate::Admission(outcome) => {
                metrics.admissions.with_label_values(&[outcome]).inc()
            }
            MetricUpdate::Error(code) => metrics.error(code),
            MetricUpdate::MediaEnded(reason) => metrics
                .media_ended
                .with_label_values(&[wire_name(reason).as_str()])
                .inc(),
            MetricUpdate::JoinLatency(secs) => metrics.join_latency.observe(secs),
        }
    }
}

async fn run_call(
    port: PortCall,
    conference: Uuid,
    control: &dyn ControlPort,
    media: &dyn MediaPort,
) -> Result<CallOutput, PortError> {
    let done = |r: Result<(), PortError>| r.map(|()| CallOutput::Done);
    match port {
        PortCall::Media(call) => {
            let room_id = conference.to_string();
            match call {
                MediaCall::Join(req) => media.join(req).await.map(CallOutput::Answer),
                MediaCall::Offer(req) => media.offer(req).await.map(CallOutput::Answer),
                MediaCall::Answer(req) => done(media.answer(req).await),
                MediaCall::Subscribe(req) => done(media.subscribe(req).await),
                MediaCall::Unsubscribe(req) => done(media.unsubscribe(req).await),
                MediaCall::SetMute(req) => done(media.set_mute(req).await),
                MediaCall::RemoveParticipant { participant_id } => {
                    done(media.remove_participant(&room_id, &participant_id).await)
                }
                MediaCall::CloseRoom => done(media.close_room(&room_id).await),
            }
        }
        PortCall::Control(call) => match call {
            ControlCall::WaitingEntries => control
                .waiting_entries(conference)
                .await
                .map(CallOutput::Entries),
            ControlCall::TouchWaiting { user } => control
                .touch_waiting(conference, user)
                .await
                .map(CallOutput::Position),
            ControlCall::LeaveWaiting { user } => {
                done(control.leave_waiting(conference, user).await)
            }
            ControlCall::Admit { moderator, user } => {
                done(control.admit(moderator, conference, user).await)
            }
            ControlCall::Deny {
                moderator,
                user,
                reason,
            } => done(control.deny(moderator, conference, user, &reason).await),
            ControlCall::AdmitAll { moderator } => {
                done(control.admit_all(moderator, conference).await)
            }
            ControlCall::MoveToWaiting { moderator, user } => {
                done(control.move_to_waiting(moderator, conference, user).await)
            }
            ControlCall::RemoveParticipant { moderator, user } => done(
                control
                    .remove_participant(moderator, conference, user)
                    .await,
            ),
            ControlCall::EndConference { moderator } => {
                done(control.end_conference(moderator, conference).await)
            }
            ControlCall::AdmittedToken { user } => {
                let token = control.room_token(conference, user).await?;
                let admission = control.verify(&token, false).await.ok();
                Ok(CallOutput::Token { token, admission })
            }
        },
    }
}

/// Executes one room's bus work in order; what the room must hear back
/// (member reads, failed publishes) goes to `results`.
async fn run_bus(
    bus: Arc<RoomBus>,
    conference: Uuid,
    mut ops: mpsc::UnboundedReceiver<BusOp>,
    results: mpsc::UnboundedSender<RoomInput>,
) {
    while let Some(op) = ops.recv().await {
        match op {
            BusOp::Publish { frame, report } => {
                if let Err(e) = bus.publish(conference, frame).await {
                    tracing::warn!(%conference, error = %e, "could not publish a room frame");
                    if report.is_some() {
                        let _ = results.send(RoomInput::BusFailed {
                            conn: report,
                            error: e.to_string(),
                        });
                    }
                }
            }
            BusOp::PublishChat { frame, report } => {
                if let Err(e) = bus.publish_chat(conference, frame).await {
                    let _ = results.send(RoomInput::BusFailed {
                        conn: Some(report),
                        error: e.to_string(),
                    });
                }
            }
            BusOp::Claim(members) => {
                if let Err(e) = bus.claim(conference, &members).await {
                    tracing::warn!(%conference, error = %e, "could not record room member");
                }
            }
            BusOp::Release(pid) => {
                if let Err(e) = bus.release(conference, &pid).await {
                    tracing::debug!(%conference, error = %e, "could not release room member");
                }
            }
            BusOp::Refresh(mine) => {
                if let Err(e) = bus.claim(conference, &mine).await {
                    tracing::warn!(%conference, error = %e, "could not renew room members");
                }
                match bus.remote_members(conference).await {
                    Ok(live) => {
                        let _ = results.send(RoomInput::Members(live));
                    }
                    Err(e) => {
                        tracing::warn!(%conference, error = %e, "could not read room members")
                    }
                }
            }
        }
    }
}
