//! A worker thread: its media socket, its mailbox, and the loop that feeds
//! both into a [`Worker`] and carries out what it asks (datagrams to the
//! socket, events to the listeners). The only I/O of the media path.
//!
//! Each worker owns one UDP port (first port + worker index) and announces
//! it in the ICE candidates of the participants it hosts, so a datagram is
//! read by the thread that will handle it: no hand-off between threads on
//! the media path (mediasoup's `WebRtcServer` per worker does the same).
//! The loop sleeps in `mio::Poll` until the socket is readable, a command
//! arrives (the mailbox wakes the poll) or the worker's next timer is due.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use convene_proto::sfu::{
    JoinRequest, OfferRequest, SetMuteRequest, SfuEvent, SubscribeRequest, UnsubscribeRequest,
};
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::{broadcast, oneshot};
use tracing::{debug, warn};

use crate::error::SfuError;
use crate::metrics::Metrics;
use crate::placement::Placement;
use crate::udp::{MediaSocket, RecvBatch, SendHeaders};
use crate::worker::{Input, Output, Relay, Worker};

pub type Reply<T> = oneshot::Sender<Result<T, SfuError>>;

/// Receive batches handled per wakeup before timers get a turn, so a flood
/// cannot starve RTCP, retransmissions and liveness checks.
const MAX_BATCHES_PER_WAKEUP: usize = 8;
/// Relayed packets from other workers handled per wakeup, for the same
/// reason.
const MAX_RELAYS_PER_WAKEUP: usize = 1024;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

pub enum Command {
    /// `peers`: the other workers already hosting the room.
    Join {
        req: JoinRequest,
        peers: Vec<usize>,
        reply: Reply<String>,
    },
    Answer {
        room: String,
        participant: String,
        answer_sdp: String,
        reply: Reply<()>,
    },
    Offer(OfferRequest, Reply<String>),
    Subscribe(SubscribeRequest, Reply<()>),
    Unsubscribe(UnsubscribeRequest, Reply<()>),
    SetMute(SetMuteRequest, Reply<()>),
    Remove {
        room: String,
        participant: String,
        reply: Reply<()>,
    },
    CloseRoom {
        room: String,
        reply: Reply<()>,
    },
}

pub enum ShardMsg {
    Command(Box<Command>),
    /// Another worker's news of a room both host (not media: that has its
    /// own queue). In one queue with the commands, so a subscription never
    /// overtakes the track it names.
    Relay(Box<Relay>),
    Shutdown,
}

/// The way into a worker from other threads: a bounded queue of commands,
/// a bounded queue of relayed media, and a wakeup of the worker's poll.
#[derive(Clone)]
pub struct Mailbox {
    tx: SyncSender<ShardMsg>,
    media: SyncSender<Relay>,
    waker: Arc<Waker>,
}

impl Mailbox {
    /// Queue a relay without waking the worker (the sender wakes each
    /// worker once after a round); hands it back when the queue is full.
    fn push_relay(&self, msg: Relay) -> Result<(), Relay> {
        if msg.is_media() {
            self.media.try_send(msg).map_err(|e| match e {
                TrySendError::Full(m) | TrySendError::Disconnected(m) => m,
            })
        } else {
            self.tx
                .try_send(ShardMsg::Relay(Box::new(msg)))
                .map_err(|e| match e {
                    TrySendError::Full(ShardMsg::Relay(m))
                    | TrySendError::Disconnected(ShardMsg::Relay(m)) => *m,
                    _ => unreachable!("a relay was sent"),
                })
        }
    }

    pub fn try_send(&self, msg: ShardMsg) -> Result<(), TrySendError<ShardMsg>> {
        self.tx.try_send(msg)?;
        self.wake();
        Ok(())
    }

    /// Blocking send (shutdown only).
    pub fn send(&self, msg: ShardMsg) {
        if self.tx.send(msg).is_ok() {
            self.wake();
        }
    }

    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            warn!("cannot wake SFU worker: {e}");
        }
    }
}

pub struct Shard {
    pub index: usize,
    pub rx: Receiver<ShardMsg>,
    pub media_rx: Receiver<Relay>,
    pub poll: Poll,
    pub socket: MediaSocket,
    pub worker: Worker,
    /// Where the worker's events go (the control API's listeners).
    pub events: broadcast::Sender<SfuEvent>,
    /// Every worker's mailbox, by index (relays go there).
    pub peers: Vec<Mailbox>,
    pub placement: Arc<Mutex<Placement>>,
    pub metrics: Metrics,
}

/// What a shard is made of besides its socket and worker.
pub struct ShardParts {
    pub index: usize,
    pub events: broadcast::Sender<SfuEvent>,
    pub placement: Arc<Mutex<Placement>>,
    pub metrics: Metrics,
    /// Commands queued before callers are told to retry.
    pub queue: usize,
    /// Relayed media queued before it is dropped.
    pub relay_queue: usize,
}

impl Shard {
    /// A worker on `socket`, with its mailbox. Give it the other workers'
    /// mailboxes ([`Shard::peers`]) before running it.
    pub fn new(
        mut socket: MediaSocket,
        worker: Worker,
        parts: ShardParts,
    ) -> std::io::Result<(Self, Mailbox)> {
        let poll = Poll::new()?;
        poll.registry()
            .register(socket.source(), SOCKET, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = std::sync::mpsc::sync_channel(parts.queue.max(1));
        let (media, media_rx) = std::sync::mpsc::sync_channel(parts.relay_queue.max(1));
        Ok((
            Self {
                index: parts.index,
                rx,
                media_rx,
                poll,
                socket,
                worker,
                events: parts.events,
                peers: Vec::new(),
                placement: parts.placement,
                metrics: parts.metrics,
            },
            Mailbox { tx, media, waker },
        ))
    }

    pub fn run(self) {
        let Shard {
            index,
            rx,
            media_rx,
            mut poll,
            socket,
            mut worker,
            events: listeners,
            peers,
            placement,
            metrics,
        } = self;
        let mut io = Io {
            index,
            socket: &socket,
            headers: SendHeaders::new(&socket),
            listeners: &listeners,
            peers: &peers,
            to_wake: vec![false; peers.len()],
            held: VecDeque::new(),
            placement: &placement,
            metrics: &metrics,
        };
        let mut events = Events::with_capacity(8);
        let mut batch = RecvBatch::new(&socket);
        let mut deadline = io.drive(&mut worker);
        // Set when the last wakeup stopped reading before the socket was
        // empty: poll without sleeping. (mio is edge-triggered, so the
        // readiness event for that data will not come again.)
        let mut backlog = false;
        loop {
            let timeout = if backlog {
                Duration::ZERO
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    warn!("SFU worker poll failed: {e}");
                }
                continue;
            }
            // Commands first: they are few, and a join waits on one.
            loop {
                let input = match rx.try_recv() {
                    Ok(ShardMsg::Command(c)) => Input::Command(*c),
                    Ok(ShardMsg::Relay(r)) => Input::Relay(*r),
                    Ok(ShardMsg::Shutdown) | Err(TryRecvError::Disconnected) => {
                        worker.handle(Input::Shutdown, Instant::now());
                        io.drive(&mut worker);
                        return;
                    }
                    Err(TryRecvError::Empty) => break,
                };
                worker.handle(input, Instant::now());
                io.drive(&mut worker);
            }
            backlog = false;
            // Media relayed from the room's other workers.
            for n in 0.. {
                if n == MAX_RELAYS_PER_WAKEUP {
                    backlog = true;
                    break;
                }
                let Ok(r) = media_rx.try_recv() else { break };
                worker.handle(Input::Relay(r), Instant::now());
                io.drive(&mut worker);
            }
            for round in 0.. {
                if round == MAX_BATCHES_PER_WAKEUP {
                    backlog = true;
                    break;
                }
                let n = match socket.recv(&mut batch) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        // ICMP errors from a gone peer surface here; they
                        // must not stop the media plane.
                        debug!("media socket recv error: {e}");
                        break;
                    }
                };
                let read_at = Instant::now();
                for i in 0..n {
                    let (meta, data) = batch.get(i);
                    let input = Input::Datagram {
                        meta,
                        data,
                        read_at,
                    };
                    worker.handle(input, Instant::now());
                    io.drive(&mut worker);
                }
            }
            worker.handle(Input::Timeout, Instant::now());
            deadline = io.drive(&mut worker);
        }
    }
}

/// The worker's side of the world: its socket, its listeners, the other
/// workers.
struct Io<'a> {
    index: usize,
    socket: &'a MediaSocket,
    headers: SendHeaders,
    listeners: &'a broadcast::Sender<SfuEvent>,
    peers: &'a [Mailbox],
    /// Workers sent a relay since their last wakeup.
    to_wake: Vec<bool>,
    /// Control relays a full queue refused, retried in order.
    held: VecDeque<(usize, Relay)>,
    placement: &'a Mutex<Placement>,
    metrics: &'a Metrics,
}

impl Io<'_> {
    /// Carry out the worker's output until it has nothing more; returns
    /// when it wants its next timeout.
    fn drive(&mut self, worker: &mut Worker) -> Instant {
        loop {
            match worker.poll_output() {
                Output::Transmit(mut batch) => {
                    let sent = self.socket.send(&mut self.headers, &mut batch);
                    worker.handle(Input::Sent { sent, batch }, Instant::now());
                }
                Output::Event(e) => {
                    if let SfuEvent::ParticipantDisconnected {
                        room_id,
                        participant_id,
                        ..
                    } = &e
                    {
                        // Before anyone hears of it: a rejoin then finds
                        // no stale seat.
                        if let Ok(mut p) = self.placement.lock() {
                            p.remove(room_id, participant_id, self.index);
                        }
                    }
                    // No listener is fine: events are advisory.
                    let _ = self.listeners.send(e);
                }
                Output::Relay { to, msg } => self.relay(to, msg),
                Output::Timeout(at) => {
                    self.retry_held();
                    self.wake_peers();
                    return at;
                }
            }
        }
    }

    fn relay(&mut self, to: usize, msg: Relay) {
        let Some(mailbox) = self.peers.get(to) else {
            return;
        };
        if !msg.is_media() && self.held.iter().any(|(w, _)| *w == to) {
            // Keep the order behind what is already held for it.
            self.held.push_back((to, msg));
            return;
        }
        match mailbox.push_relay(msg) {
            Ok(()) => self.to_wake[to] = true,
            Err(m) if m.is_media() => self.metrics.dropped.relay_full.inc(),
            Err(m) => self.held.push_back((to, m)),
        }
    }

    fn retry_held(&mut self) {
        let mut still = VecDeque::new();
        while let Some((to, m)) = self.held.pop_front() {
            if still.iter().any(|(w, _)| *w == to) {
                still.push_back((to, m));
                continue;
            }
            match self.peers[to].push_relay(m) {
                Ok(()) => self.to_wake[to] = true,
                Err(m) => still.push_back((to, m)),
            }
        }
        self.held = still;
    }

    fn wake_peers(&mut self) {
        for (i, wake) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(wake) {
                self.peers[i].wake();
            }
        }
    }
}
