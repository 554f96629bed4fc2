//! The worker: the rooms, participants and str0m `Rtc`s of one thread.
//!
//! Sans-IO like str0m and the core: it does no I/O and reads no clock. The
//! thread loop (`shard.rs`) hands it an [`Input`] and the time with
//! [`Worker::handle`], then calls [`Worker::poll_output`] until it says
//! [`Output::Timeout`], sending each [`Output::Transmit`] batch to the
//! socket and each [`Output::Event`] to the control API's listeners. The
//! virtual network (`sim.rs`) drives it the same way. Everything a worker
//! touches is its own, so forwarding from a publisher's `Rtc` to its
//! subscribers' needs no lock; a room across workers is relayed between
//! them as [`Output::Relay`] / [`Input::Relay`] messages (`relay.rs`).
//! Every str0m mutation is followed by a full `poll_output` drain (str0m's
//! contract).

mod events;
mod media;
mod relay;
mod session;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_proto::sfu::{DisconnectReason, SfuEvent};
use str0m::net::{Protocol, Receive};
use str0m::{Input as RtcInput, Output as RtcOutput};
use tracing::{debug, warn};

use crate::config::SfuConfig;
use crate::core::{Action, ParticipantKey, Room};
use crate::demux::{classify, stun_local_ufrag, PacketClass};
use crate::metrics::Metrics;
use crate::peer::Peer;
use crate::shard::Command;
use crate::udp::{RecvMeta, Sent, Transmit};

pub use relay::Relay;
pub use timers::Timers;

use relay::RemotePublisher;

/// Periodic work (layer selection, speakers, liveness) runs this often.
const TICK: Duration = Duration::from_millis(20);
/// Publishers are reminded of the bitrate cap this often.
const REMB_INTERVAL: Duration = Duration::from_secs(1);

/// What the thread loop hands the worker.
pub enum Input<'a> {
    /// A datagram read from the media socket at `read_at`.
    Datagram {
        meta: RecvMeta,
        data: &'a [u8],
        read_at: Instant,
    },
    /// A command from the control API.
    Command(Command),
    /// Time passed: run what is due.
    Timeout,
    /// The socket took (or refused) a batch from [`Output::Transmit`]; the
    /// batch comes back to be reused.
    Sent { sent: Sent, batch: Vec<Transmit> },
    /// Another worker's message about a room both host.
    Relay(Relay),
    /// Every participant leaves.
    Shutdown,
}

/// What the worker asks of the thread loop.
pub enum Output {
    /// Hand these datagrams to the kernel (one `sendmmsg`), then return
    /// them with [`Input::Sent`].
    Transmit(Vec<Transmit>),
    /// For the control API's listeners.
    Event(SfuEvent),
    /// For worker `to`, as its [`Input::Relay`].
    Relay { to: usize, msg: Relay },
    /// Nothing more now: [`Input::Timeout`] is due at this time (earlier
    /// input is welcome).
    Timeout(Instant),
}

pub struct Worker {
    /// This worker's index among the SFU's workers.
    index: usize,
    /// Events for the next [`Worker::poll_output`].
    events: VecDeque<SfuEvent>,
    /// Messages for other workers, for the next [`Worker::poll_output`].
    relays: VecDeque<(usize, Relay)>,
    /// Room -> the other workers hosting some of its participants.
    room_peers: HashMap<String, Vec<usize>>,
    /// Publishers of local rooms hosted by other workers.
    remotes: HashMap<ParticipantKey, RemotePublisher>,
    metrics: Metrics,
    config: Arc<SfuConfig>,
    /// This worker's candidates: every announced IP with its port.
    local_addrs: Vec<SocketAddr>,
    next_key: Arc<AtomicU64>,
    rooms: HashMap<String, Room>,
    peers: HashMap<ParticipantKey, Peer>,
    by_id: HashMap<(String, String), ParticipantKey>,
    /// Server ufrag -> owner: how a STUN check finds its participant.
    by_ufrag: HashMap<String, ParticipantKey>,
    /// Remote address -> owner, learned from STUN checks: how DTLS and
    /// SRTP find theirs.
    by_addr: HashMap<SocketAddr, ParticipantKey>,
    timers: Timers<ParticipantKey>,
    /// Scratch list of due participants, reused.
    due: Vec<ParticipantKey>,
    /// The core appends here; moved to `queue` after each call.
    scratch: Vec<Action>,
    queue: VecDeque<Action>,
    data_out: Vec<(ParticipantKey, Vec<u8>, bool)>,
    /// Datagrams for the next [`Worker::poll_output`].
    out: Vec<Transmit>,
    /// A returned batch, to swap in for `out` (no allocation per batch).
    spare: Vec<Transmit>,
    /// Read time of the datagram being handled: the forwarding latency
    /// metrics start here.
    received_at: Option<Instant>,
    /// Read time of the first datagram of the current receive batch.
    batch_read_at: Option<Instant>,
    /// Subscribers written to since the last [`Worker::release_writes`].
    written: Vec<ParticipantKey>,
    next_tick: Instant,
    last_remb: Instant,
}

impl Worker {
    /// Worker number `index`; `next_key` is shared by all workers, so a
    /// participant's key names it across them.
    pub fn new(
        index: usize,
        config: Arc<SfuConfig>,
        local_addrs: Vec<SocketAddr>,
        metrics: Metrics,
        next_key: Arc<AtomicU64>,
        now: Instant,
    ) -> Self {
        Self {
            index,
            events: VecDeque::new(),
            relays: VecDeque::new(),
            room_peers: HashMap::new(),
            remotes: HashMap::new(),
            metrics,
            config,
            local_addrs,
            next_key,
            rooms: HashMap::new(),
            peers: HashMap::new(),
            by_id: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            timers: Timers::default(),
            due: Vec::new(),
            scratch: Vec::with_capacity(256),
            queue: VecDeque::with_capacity(256),
            data_out: Vec::new(),
            out: Vec::with_capacity(1024),
            spare: Vec::with_capacity(1024),
            received_at: None,
            batch_read_at: None,
            written: Vec::new(),
            next_tick: now,
            last_remb: now,
        }
    }

    /// Feed one input at `now`. Follow with [`Worker::poll_output`].
    pub fn handle(&mut self, input: Input<'_>, now: Instant) {
        match input {
            Input::Datagram {
                meta,
                data,
                read_at,
            } => {
                self.on_datagram(meta, data, read_at, now);
                // One fan-out leaves before the next packet is handled: no
                // queue in the server beyond one fan-out. (Releasing once
                // per receive batch instead saved no measurable CPU at
                // 60-80 subscribers; benches/README.md.)
                self.release_writes(now);
            }
            Input::Command(c) => {
                self.on_command(c, now);
                self.release_writes(now);
            }
            Input::Relay(r) => {
                self.on_relay(r, now);
                self.flush(now);
                self.release_writes(now);
            }
            Input::Timeout => self.on_timeout(now),
            Input::Sent { sent, batch } => self.on_sent(sent, batch, now),
            Input::Shutdown => self.shutdown(now),
        }
    }

    /// What to do next, until [`Output::Timeout`]: events first, then
    /// messages for other workers, then the datagrams queued so far as one
    /// batch.
    pub fn poll_output(&mut self) -> Output {
        if let Some(e) = self.events.pop_front() {
            return Output::Event(e);
        }
        if let Some((to, msg)) = self.relays.pop_front() {
            return Output::Relay { to, msg };
        }
        if !self.out.is_empty() {
            let next = std::mem::take(&mut self.spare);
            return Output::Transmit(std::mem::replace(&mut self.out, next));
        }
        Output::Timeout(self.next_deadline())
    }

    /// When [`Input::Timeout`] is due.
    fn next_deadline(&self) -> Instant {
        self.timers
            .next()
            .map_or(self.next_tick, |t| t.min(self.next_tick))
    }

    fn emit(&mut self, e: SfuEvent) {
        self.events.push_back(e);
    }

    /// One datagram from the media socket, read at `read_at`.
    fn on_datagram(&mut self, meta: RecvMeta, data: &[u8], read_at: Instant, now: Instant) {
        self.metrics.packets_received.inc();
        self.metrics.bytes_received.inc_by(meta.len as u64);
        let source = meta.source;
        let key = match classify(data) {
            PacketClass::Unknown => {
                self.metrics.dropped.malformed.inc();
                return;
            }
            PacketClass::Stun => match stun_local_ufrag(data).and_then(|u| self.by_ufrag.get(u)) {
                Some(&key) => {
                    if self.by_addr.get(&source) != Some(&key) {
                        self.learn_path(key, source);
                    }
                    Some(key)
                }
                // Binding responses/indications carry no USERNAME.
                None => self.by_addr.get(&source).copied(),
            },
            PacketClass::Dtls | PacketClass::Rtp => self.by_addr.get(&source).copied(),
        };
        let Some(peer) = key.and_then(|k| self.peers.get_mut(&k)) else {
            self.metrics.dropped.unknown_peer.inc();
            return;
        };
        let key = key.expect("peer found by key");
        peer.note_local_ip(source, meta.local_ip);
        let Ok(contents) = data.try_into() else {
            self.metrics.dropped.malformed.inc();
            return;
        };
        let destination = peer.destination_for(source, meta.local_ip);
        let input = RtcInput::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        if let Err(e) = peer.rtc.handle_input(input) {
            debug!(participant = %peer.participant_id, "input rejected: {e}");
            self.metrics.dropped.rtc_error.inc();
        }
        self.received_at = Some(read_at);
        self.batch_read_at.get_or_insert(read_at);
        self.drain(key, now);
        self.flush(now);
        self.received_at = None;
    }

    /// A STUN check from a new address for `key`: route that address to it
    /// from now on. The remembered paths per participant are bounded, so a
    /// spoofed flood of checks cannot grow the table.
    fn learn_path(&mut self, key: ParticipantKey, source: SocketAddr) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if let Some(evicted) = peer.add_path(source) {
            if self.by_addr.get(&evicted) == Some(&key) {
                self.by_addr.remove(&evicted);
            }
        }
        if let Some(old) = self.by_addr.insert(source, key) {
            if let Some(p) = self.peers.get_mut(&old) {
                p.forget_path(source);
            }
        }
    }

    /// Drain one peer's output until its next timeout.
    fn drain(&mut self, key: ParticipantKey, now: Instant) {
        loop {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            let out = match peer.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    warn!(participant = %peer.participant_id, "rtc failed: {e}");
                    peer.dead.get_or_insert(DisconnectReason::PeerClosed);
                    // Poll again later only to notice it is dead.
                    peer.next_timeout = now + TICK;
                    self.timers.set(key, peer.next_timeout);
                    return;
                }
            };
            match out {
                RtcOutput::Timeout(t) => {
                    peer.next_timeout = t;
                    self.timers.set(key, t);
                    return;
                }
                RtcOutput::Transmit(t) => {
                    let source = peer.local_ip_for(t.destination);
                    self.out.push(Transmit {
                        source,
                        destination: t.destination,
                        contents: t.contents.into(),
                        caused_by: self.received_at,
                    });
                }
                RtcOutput::Event(e) => self.on_event(key, e, now),
            }
        }
    }

    /// The socket took (or refused) `batch` at `now`: close the egress
    /// latency of those a received datagram caused.
    fn on_sent(&mut self, sent: Sent, mut batch: Vec<Transmit>, now: Instant) {
        for t in &batch {
            if let Some(at) = t.caused_by {
                self.metrics
                    .egress_latency
                    .observe(now.saturating_duration_since(at).as_secs_f64());
            }
        }
        batch.clear();
        if batch.capacity() > self.spare.capacity() {
            self.spare = batch;
        }
        self.metrics.packets_sent.inc_by(sent.datagrams as u64);
        self.metrics.bytes_sent.inc_by(sent.bytes as u64);
        self.metrics.dropped.send_failed.inc_by(sent.failed as u64);
    }

    /// Let str0m send what was written to subscribers since the last call:
    /// one `handle_timeout` per subscriber written to (it is what makes
    /// str0m's pacer see new queue entries, and the costly part of a
    /// write). The loop calls it after every received datagram, command
    /// and timeout round, so a copy never waits for a later timeout.
    fn release_writes(&mut self, now: Instant) {
        if self.written.is_empty() {
            self.batch_read_at = None;
            return;
        }
        self.received_at = self.batch_read_at.take();
        let mut written = std::mem::take(&mut self.written);
        for &key in &written {
            let Some(p) = self.peers.get_mut(&key) else {
                continue;
            };
            p.writes_pending = false;
            if let Err(e) = p.rtc.handle_input(RtcInput::Timeout(now)) {
                debug!(participant = %p.participant_id, "timeout after write failed: {e}");
            }
            self.drain(key, now);
        }
        written.clear();
        self.written = written;
        self.flush(now);
        self.received_at = None;
    }

    /// Timers that are due, the periodic tick, and their consequences.
    fn on_timeout(&mut self, now: Instant) {
        self.handle_timeouts(now);
        if now >= self.next_tick {
            self.tick(now);
            self.next_tick = now + TICK;
        }
        self.flush(now);
        self.release_writes(now);
    }

    /// Run queued actions to completion (writes may cause more actions).
    fn flush(&mut self, now: Instant) {
        while let Some(a) = self.queue.pop_front() {
            match a {
                Action::Forward(f) => self.forward(f, now),
                Action::RequestKeyframe {
                    publisher,
                    mid,
                    rid,
                } => self.request_keyframe(publisher, mid, rid, now),
                Action::FarWanted {
                    publisher,
                    track_id,
                    layers,
                } => {
                    if let Some(r) = self.remotes.get(&publisher) {
                        let msg = Relay::Wanted {
                            room: r.room.clone(),
                            track_id,
                            from: self.index,
                            layers,
                        };
                        self.relays.push_back((r.worker, msg));
                    }
                }
                Action::Event(e) => {
                    if matches!(e, SfuEvent::LayerChanged { .. }) {
                        self.metrics.layer_switches.inc();
                    }
                    self.emit(e);
                }
            }
        }
        if !self.data_out.is_empty() {
            let out = std::mem::take(&mut self.data_out);
            for (from, data, binary) in &out {
                self.broadcast_data(*from, data, *binary, now);
            }
            self.data_out = out;
            self.data_out.clear();
        }
    }

    /// Only the participants whose str0m timeout is due: O(work due), not
    /// O(participants).
    fn handle_timeouts(&mut self, now: Instant) {
        // Collect first: a participant handled here may ask to be woken at
        // `now` again, which must wait for the next iteration, not spin.
        let mut due = std::mem::take(&mut self.due);
        while let Some(key) = self.timers.pop_due(now) {
            due.push(key);
        }
        for &key in &due {
            let Some(p) = self.peers.get_mut(&key) else {
                continue;
            };
            if p.next_timeout > now {
                // Woken early by an earlier deadline that moved later.
                self.timers.set(key, p.next_timeout);
                continue;
            }
            if p.rtc.is_alive() {
                if let Err(e) = p.rtc.handle_input(RtcInput::Timeout(now)) {
                    warn!(participant = %p.participant_id, "timeout input failed: {e}");
                    p.dead.get_or_insert(DisconnectReason::PeerClosed);
                }
                self.drain(key, now);
            } else {
                p.next_timeout = now + TICK;
                self.timers.set(key, p.next_timeout);
            }
        }
        due.clear();
        self.due = due;
    }
}
