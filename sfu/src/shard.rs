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

use std::io::ErrorKind;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_proto::sfu::{
    JoinRequest, SetMuteRequest, SfuEvent, SubscribeRequest, UnsubscribeRequest,
};
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::{broadcast, oneshot};
use tracing::{debug, warn};

use crate::error::SfuError;
use crate::udp::{MediaSocket, RecvBatch, SendHeaders};
use crate::worker::{Input, Output, Worker};

pub type Reply<T> = oneshot::Sender<Result<T, SfuError>>;

/// Receive batches handled per wakeup before timers get a turn, so a flood
/// cannot starve RTCP, retransmissions and liveness checks.
const MAX_BATCHES_PER_WAKEUP: usize = 8;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

pub enum Command {
    Join(JoinRequest, Reply<String>),
    Answer {
        room: String,
        participant: String,
        answer_sdp: String,
        reply: Reply<()>,
    },
    Offer {
        room: String,
        participant: String,
        offer_sdp: String,
        reply: Reply<String>,
    },
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
    Shutdown,
}

/// The way into a worker from other threads: a bounded queue plus a wakeup
/// of the worker's poll.
#[derive(Clone)]
pub struct Mailbox {
    tx: SyncSender<ShardMsg>,
    waker: Arc<Waker>,
}

impl Mailbox {
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
    pub rx: Receiver<ShardMsg>,
    pub poll: Poll,
    pub socket: MediaSocket,
    pub worker: Worker,
    /// Where the worker's events go (the control API's listeners).
    pub events: broadcast::Sender<SfuEvent>,
}

impl Shard {
    /// A worker on `socket`, with its mailbox (queue of `queue` commands).
    pub fn new(
        mut socket: MediaSocket,
        worker: Worker,
        events: broadcast::Sender<SfuEvent>,
        queue: usize,
    ) -> std::io::Result<(Self, Mailbox)> {
        let poll = Poll::new()?;
        poll.registry()
            .register(socket.source(), SOCKET, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(1));
        Ok((
            Self {
                rx,
                poll,
                socket,
                worker,
                events,
            },
            Mailbox { tx, waker },
        ))
    }

    pub fn run(self) {
        let Shard {
            rx,
            mut poll,
            socket,
            mut worker,
            events: listeners,
        } = self;
        let mut io = Io {
            socket: &socket,
            headers: SendHeaders::new(&socket),
            listeners: &listeners,
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

/// The worker's side of the world: its socket and its listeners.
struct Io<'a> {
    socket: &'a MediaSocket,
    headers: SendHeaders,
    listeners: &'a broadcast::Sender<SfuEvent>,
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
                    // No listener is fine: events are advisory.
                    let _ = self.listeners.send(e);
                }
                Output::Timeout(at) => return at,
            }
        }
    }
}
