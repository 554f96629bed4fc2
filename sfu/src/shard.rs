//! A worker thread: owns a set of rooms, their participants' `Rtc`
//! instances, and drives them with datagrams, timeouts and commands.
//!
//! Everything a room touches lives on one worker, so forwarding from a
//! publisher's `Rtc` to its subscribers' needs no lock. Every str0m mutation
//! is followed by a full `poll_output` drain (str0m's contract).

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_proto::sfu::{
    DisconnectReason, JoinRequest, SetMuteRequest, SfuEvent, SubscribeRequest, TrackKind,
    UnsubscribeRequest,
};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};
use str0m::{Event, IceConnectionState, Input, Output};
use tokio::sync::{broadcast, oneshot};
use tracing::{debug, info, warn};

use crate::config::SfuConfig;
use crate::core::{Action, DropReason, Forward, InboundRtp, ParticipantKey, Room};
use crate::edge::{Datagram, Route, Routes};
use crate::error::SfuError;
use crate::metrics::Metrics;
use crate::peer::Peer;

/// Periodic work (layer selection, speakers, liveness) runs this often.
const TICK: Duration = Duration::from_millis(20);
/// Publishers are reminded of the bitrate cap this often.
const REMB_INTERVAL: Duration = Duration::from_secs(1);
/// Datagrams handled per wakeup before timeouts get a turn.
const BATCH: usize = 64;

pub type Reply<T> = oneshot::Sender<Result<T, SfuError>>;

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
    Datagram(Datagram),
    Command(Box<Command>),
    Shutdown,
}

pub struct Shard {
    pub index: usize,
    pub rx: Receiver<ShardMsg>,
    pub socket: UdpSocket,
    pub routes: Arc<Routes>,
    pub buffers: SyncSender<Vec<u8>>,
    pub events: broadcast::Sender<SfuEvent>,
    pub metrics: Metrics,
    pub config: Arc<SfuConfig>,
    pub local_addrs: Vec<SocketAddr>,
    pub next_key: Arc<AtomicU64>,
}

struct Worker {
    index: usize,
    socket: UdpSocket,
    routes: Arc<Routes>,
    buffers: SyncSender<Vec<u8>>,
    events: broadcast::Sender<SfuEvent>,
    metrics: Metrics,
    config: Arc<SfuConfig>,
    local_addrs: Vec<SocketAddr>,
    next_key: Arc<AtomicU64>,
    rooms: HashMap<String, Room>,
    peers: HashMap<ParticipantKey, Peer>,
    by_id: HashMap<(String, String), ParticipantKey>,
    /// The core appends here; moved to `queue` after each call.
    scratch: Vec<Action>,
    queue: VecDeque<Action>,
    data_out: Vec<(ParticipantKey, Vec<u8>, bool)>,
    due: Vec<ParticipantKey>,
    /// Arrival time of the datagram being handled, for latency metrics.
    received_at: Instant,
    last_remb: Instant,
}

impl Shard {
    pub fn run(self) {
        let Shard {
            index,
            rx,
            socket,
            routes,
            buffers,
            events,
            metrics,
            config,
            local_addrs,
            next_key,
        } = self;
        let now = Instant::now();
        let mut w = Worker {
            index,
            socket,
            routes,
            buffers,
            events,
            metrics,
            config,
            local_addrs,
            next_key,
            rooms: HashMap::new(),
            peers: HashMap::new(),
            by_id: HashMap::new(),
            scratch: Vec::with_capacity(256),
            queue: VecDeque::with_capacity(256),
            data_out: Vec::new(),
            due: Vec::new(),
            received_at: now,
            last_remb: now,
        };
        let mut next_tick = now;
        loop {
            let now = Instant::now();
            let next = w
                .peers
                .values()
                .map(|p| p.next_timeout)
                .min()
                .unwrap_or(next_tick)
                .min(next_tick);
            let wait = next.saturating_duration_since(now);
            let first = match rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut msg = first;
            let mut handled = 0;
            while let Some(m) = msg.take() {
                match m {
                    ShardMsg::Datagram(d) => w.on_datagram(d),
                    ShardMsg::Command(c) => w.on_command(*c),
                    ShardMsg::Shutdown => {
                        w.shutdown();
                        return;
                    }
                }
                w.flush();
                handled += 1;
                if handled < BATCH {
                    msg = rx.try_recv().ok();
                }
            }
            let now = Instant::now();
            w.handle_timeouts(now);
            if now >= next_tick {
                w.tick(now);
                next_tick = now + TICK;
            }
            w.flush();
        }
        w.shutdown();
    }
}

impl Worker {
    fn emit(&self, e: SfuEvent) {
        // No receiver is fine: events are advisory.
        let _ = self.events.send(e);
    }

    fn on_datagram(&mut self, d: Datagram) {
        let now = Instant::now();
        self.received_at = d.received_at;
        let Datagram {
            peer: key,
            source,
            buf,
            len,
            ..
        } = d;
        match self.peers.get_mut(&key) {
            None => self.metrics.dropped.unknown_peer.inc(),
            Some(peer) => match (&buf[..len]).try_into() {
                Err(_) => self.metrics.dropped.malformed.inc(),
                Ok(contents) => {
                    let destination = peer.destination_for(source).unwrap_or(source);
                    let input = Input::Receive(
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
                    self.drain(key, now);
                }
            },
        }
        // Back to the edge for reuse; if its pool is full, let it go.
        let _ = self.buffers.try_send(buf);
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
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    peer.next_timeout = t;
                    return;
                }
                Output::Transmit(t) => match self.socket.send_to(&t.contents, t.destination) {
                    Ok(n) => {
                        self.metrics.packets_sent.inc();
                        self.metrics.bytes_sent.inc_by(n as u64);
                    }
                    Err(e) => debug!("send to {} failed: {e}", t.destination),
                },
                Output::Event(e) => self.on_event(key, e, now),
            }
        }
    }

    fn on_event(&mut self, key: ParticipantKey, ev: Event, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !matches!(ev, Event::RtpPacket(_)) {
            tracing::trace!(participant = %peer.participant_id, "rtc event {ev:?}");
        }
        match ev {
            Event::Connected => {
                peer.connected = true;
                // Warm-up: start the estimate where the config says, and let
                // BWE probe towards the top layer instead of crawling up
                // from the lowest one.
                let initial = Bitrate::kbps(self.config.bwe_initial_kbps);
                peer.rtc.bwe().reset(initial);
                // No padding floor: an audio-only subscriber must not be
                // sent padding. The desired rate follows its subscriptions
                // (see `update_bwe_targets`).
                peer.rtc.bwe().set_bitrate(Bitrate::kbps(0), initial);
                info!(participant = %peer.participant_id, room = %peer.room, "connected");
                let e = SfuEvent::ParticipantConnected {
                    room_id: peer.room.clone(),
                    participant_id: peer.participant_id.clone(),
                };
                self.emit(e);
            }
            Event::IceConnectionStateChange(s) => match s {
                IceConnectionState::Connected | IceConnectionState::Completed => {
                    peer.ice_connected_at.get_or_insert(now);
                }
                IceConnectionState::Disconnected => {
                    peer.dead.get_or_insert(DisconnectReason::IceTimeout);
                }
                _ => {}
            },
            Event::MediaAdded(m) if m.direction.is_receiving() => {
                let rids = m
                    .simulcast
                    .map(|s| s.recv.iter().map(|l| l.rid).collect())
                    .unwrap_or_default();
                self.publish(key, m.mid, m.kind, rids);
            }
            Event::MediaChanged(m) => {
                if !m.direction.is_receiving() {
                    self.unpublish(key, m.mid);
                } else {
                    let kind = peer.rtc.media(m.mid).map(|x| x.kind());
                    if let Some(kind) = kind {
                        self.publish(key, m.mid, kind, Vec::new());
                    }
                }
            }
            Event::RtpPacket(p) => self.on_rtp(key, p, now),
            Event::KeyframeRequest(r) => {
                self.metrics.plis.inc();
                let room = &peer.room;
                if let Some(room) = self.rooms.get_mut(room) {
                    room.on_keyframe_request(now, key, r.mid, &mut self.scratch);
                }
            }
            Event::StreamPaused(p) => {
                if let Some(room) = self.rooms.get_mut(&peer.room) {
                    room.on_stream_paused(key, p.mid, p.rid, p.paused);
                }
            }
            Event::EgressBitrateEstimate(b) => {
                let bps = match b {
                    BweKind::Twcc { estimate, .. } => estimate.as_u64(),
                    BweKind::Remb { estimate, .. } => estimate.as_u64(),
                    _ => return,
                };
                self.metrics.bwe_estimate_bps.observe(bps as f64);
                if let Some(room) = self.rooms.get_mut(&peer.room) {
                    room.set_bandwidth(key, bps);
                }
            }
            Event::ChannelOpen(id, _) => peer.channel = Some(id),
            Event::ChannelData(d) if peer.grants.can_publish_data => {
                self.data_out.push((key, d.data, d.binary));
            }
            Event::MediaEgressStats(s) => {
                let seen = match peer.nacks_seen.iter_mut().find(|(m, _)| *m == s.mid) {
                    Some((_, n)) => n,
                    None => {
                        peer.nacks_seen.push((s.mid, 0));
                        &mut peer.nacks_seen.last_mut().expect("just pushed").1
                    }
                };
                if s.nacks > *seen {
                    self.metrics.nacks.inc_by(s.nacks - *seen);
                    *seen = s.nacks;
                }
            }
            Event::MediaIngressStats(s) => {
                let seen = match peer
                    .nacks_sent
                    .iter_mut()
                    .find(|(m, r, _)| *m == s.mid && *r == s.rid)
                {
                    Some((_, _, n)) => n,
                    None => {
                        peer.nacks_sent.push((s.mid, s.rid, 0));
                        &mut peer.nacks_sent.last_mut().expect("just pushed").2
                    }
                };
                if s.nacks > *seen {
                    self.metrics.nacks_sent.inc_by(s.nacks - *seen);
                    *seen = s.nacks;
                }
            }
            Event::Closed => {
                peer.dead.get_or_insert(DisconnectReason::PeerClosed);
            }
            _ => {}
        }
        self.queue.extend(self.scratch.drain(..));
    }

    fn on_rtp(&mut self, key: ParticipantKey, p: RtpPacket, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let ssrc = p.header.ssrc;
        // The stream knows mid/rid even when the packet no longer carries
        // the header extensions (browsers stop sending them once acked).
        let ids = peer
            .rtc
            .direct_api()
            .stream_rx(&ssrc)
            .map(|s| (s.mid(), s.rid()));
        let Some((mid, rid)) = ids.or(p.header.ext_vals.mid.map(|m| (m, p.header.ext_vals.rid)))
        else {
            self.metrics.dropped.unknown_stream.inc();
            return;
        };
        let pt = p.header.payload_type;
        let inbound = InboundRtp {
            publisher: key,
            mid,
            rid,
            pt,
            codec: peer.codec_for_pt(pt),
            seq: *p.seq_no,
            timestamp: p.header.timestamp,
            marker: p.header.marker,
            payload: p.payload,
            audio_level: p.header.ext_vals.audio_level,
            voice_activity: p.header.ext_vals.voice_activity,
            received_at: self.received_at,
        };
        let Some(room) = self.rooms.get_mut(&peer.room) else {
            return;
        };
        match room.on_rtp(now, &inbound, &mut self.scratch) {
            Ok(_) => {}
            Err(DropReason::Muted) => self.metrics.dropped.muted.inc(),
            Err(DropReason::UnknownTrack) => self.metrics.dropped.unknown_track.inc(),
            Err(DropReason::MalformedRed) => self.metrics.dropped.malformed_red.inc(),
        }
    }

    fn publish(
        &mut self,
        key: ParticipantKey,
        mid: Mid,
        kind: MediaKind,
        rids: Vec<str0m::media::Rid>,
    ) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        if !peer.grants.can_publish {
            warn!(participant = %peer.participant_id, "publishing not granted; ignoring m-line {mid}");
            return;
        }
        let Some(room) = self.rooms.get_mut(&peer.room) else {
            return;
        };
        let kind = match kind {
            MediaKind::Audio => TrackKind::Audio,
            MediaKind::Video => TrackKind::Video,
        };
        let before = room.track_count();
        match room.publish(key, mid, kind, rids, &mut self.scratch) {
            Ok(_) => {
                if room.track_count() > before {
                    self.metrics.tracks.inc();
                }
            }
            Err(e) => warn!(participant = %peer.participant_id, "not published: {e}"),
        }
    }

    fn unpublish(&mut self, key: ParticipantKey, mid: Mid) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&peer.room) else {
            return;
        };
        let before = room.track_count();
        let stop = room.unpublish(key, mid, &mut self.scratch);
        self.metrics
            .tracks
            .sub((before - room.track_count()) as i64);
        self.stop_lines(stop);
    }

    fn stop_lines(&mut self, stop: Vec<(ParticipantKey, Mid)>) {
        for (sub, mid) in stop {
            if let Some(p) = self.peers.get_mut(&sub) {
                p.to_stop.push(mid);
            }
        }
    }

    /// Run queued actions to completion (writes may cause more actions).
    fn flush(&mut self) {
        let now = Instant::now();
        while let Some(a) = self.queue.pop_front() {
            match a {
                Action::Forward(f) => self.forward(f, now),
                Action::RequestKeyframe {
                    publisher,
                    mid,
                    rid,
                } => {
                    if let Some(p) = self.peers.get_mut(&publisher) {
                        let mut api = p.rtc.direct_api();
                        if let Some(s) = api.stream_rx_by_mid(mid, rid) {
                            s.request_keyframe(KeyframeRequestKind::Pli);
                            self.metrics.keyframe_requests.inc();
                        }
                        self.drain(publisher, now);
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

    fn forward(&mut self, f: Forward, now: Instant) {
        let Some(peer) = self.peers.get_mut(&f.to) else {
            return;
        };
        if !peer.connected {
            self.metrics.dropped.not_connected.inc();
            return;
        }
        let mut api = peer.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(f.mid, None) else {
            self.metrics.dropped.unknown_stream.inc();
            return;
        };
        let len = f.payload.len() as u64;
        let first = !peer.media_started;
        peer.media_started = true;
        let ext = ExtensionValues {
            audio_level: f.audio_level,
            voice_activity: f.voice_activity,
            ..Default::default()
        };
        tx.write_rtp(
            RtpWrite::new(f.pt, f.seq.into(), f.timestamp, f.received_at, f.payload)
                .marker(f.marker)
                .nackable(f.nackable)
                .ext_vals(ext),
        );
        self.metrics.packets_forwarded.inc();
        self.metrics.bytes_forwarded.inc_by(len);
        self.metrics
            .forwarding_latency
            .observe(f.received_at.elapsed().as_secs_f64());
        if first {
            // Once per session: `media_started` lives and dies with the Peer.
            if let Some(p) = self.peers.get(&f.to) {
                info!(participant = %p.participant_id, room = %p.room, "media started");
                let e = SfuEvent::MediaStarted {
                    room_id: p.room.clone(),
                    participant_id: p.participant_id.clone(),
                };
                self.emit(e);
            }
        }
        self.drain(f.to, now);
    }

    /// DataChannel room broadcast. The SFU stamps the sender so receivers
    /// can trust it: text becomes `{"from": id, "data": text}`, binary gets
    /// a one-byte id length and the id in front.
    fn broadcast_data(&mut self, from: ParticipantKey, data: &[u8], binary: bool, now: Instant) {
        let Some(sender) = self.peers.get(&from) else {
            return;
        };
        let room = sender.room.clone();
        let id = sender.participant_id.clone();
        let stamped: Vec<u8> = if binary {
            let id = &id.as_bytes()[..id.len().min(255)];
            let mut v = Vec::with_capacity(1 + id.len() + data.len());
            v.push(id.len() as u8);
            v.extend_from_slice(id);
            v.extend_from_slice(data);
            v
        } else {
            let text = String::from_utf8_lossy(data);
            serde_json::json!({ "from": id, "data": text })
                .to_string()
                .into_bytes()
        };
        let targets: Vec<ParticipantKey> = self
            .peers
            .iter()
            .filter(|(k, p)| **k != from && p.room == room && p.channel.is_some())
            .map(|(k, _)| *k)
            .collect();
        for k in targets {
            if let Some(p) = self.peers.get_mut(&k) {
                if let Some(mut ch) = p.channel.and_then(|c| p.rtc.channel(c)) {
                    if let Err(e) = ch.write(binary, &stamped) {
                        debug!("data channel write failed: {e}");
                    }
                }
                self.drain(k, now);
            }
        }
    }

    fn handle_timeouts(&mut self, now: Instant) {
        self.due.clear();
        self.due.extend(
            self.peers
                .iter()
                .filter(|(_, p)| p.next_timeout <= now)
                .map(|(k, _)| *k),
        );
        for i in 0..self.due.len() {
            let key = self.due[i];
            if let Some(p) = self.peers.get_mut(&key) {
                if p.rtc.is_alive() {
                    if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                        warn!(participant = %p.participant_id, "timeout input failed: {e}");
                        p.dead.get_or_insert(DisconnectReason::PeerClosed);
                    }
                    self.drain(key, now);
                } else {
                    p.next_timeout = now + TICK;
                }
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        for room in self.rooms.values_mut() {
            room.tick(now, &mut self.scratch);
        }
        self.queue.extend(self.scratch.drain(..));

        // Liveness.
        let ice_timeout = Duration::from_millis(self.config.ice_timeout_ms);
        let dtls_timeout = Duration::from_millis(self.config.dtls_timeout_ms);
        let mut dead = Vec::new();
        for (k, p) in &mut self.peers {
            if p.dead.is_none() {
                if !p.rtc.is_alive() {
                    p.dead = Some(DisconnectReason::PeerClosed);
                } else if !p.connected {
                    match p.ice_connected_at {
                        Some(t) if now.saturating_duration_since(t) > dtls_timeout => {
                            p.dead = Some(DisconnectReason::DtlsTimeout)
                        }
                        None if now.saturating_duration_since(p.joined_at) > ice_timeout => {
                            p.dead = Some(DisconnectReason::IceTimeout)
                        }
                        _ => {}
                    }
                }
            }
            if let Some(r) = p.dead {
                dead.push((*k, r));
            }
        }
        for (k, r) in dead {
            self.remove_peer(k, r);
        }

        // Subscriptions negotiated before the subscriber connected.
        let ready: Vec<ParticipantKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.connected && !p.deferred.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for k in ready {
            if let Some(lines) = self
                .peers
                .get_mut(&k)
                .map(|p| std::mem::take(&mut p.deferred))
            {
                self.activate_all(k, lines, now);
            }
        }

        // Renegotiation for peers whose subscriptions changed.
        let keys: Vec<ParticipantKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.needs_negotiation())
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.negotiate(k, now);
        }

        if now.saturating_duration_since(self.last_remb) >= REMB_INTERVAL {
            self.last_remb = now;
            self.send_remb(now);
            self.update_bwe_targets(now);
        }
    }

    /// Cap publishers at the configured bitrate with REMB.
    fn send_remb(&mut self, now: Instant) {
        let cap = Bitrate::kbps(self.config.max_publisher_bitrate_kbps);
        let mut streams = Vec::new();
        for room in self.rooms.values() {
            for t in room.tracks() {
                if t.kind == TrackKind::Video {
                    for l in &t.layers {
                        streams.push((t.publisher, t.mid, l.rid));
                    }
                }
            }
        }
        for (k, mid, rid) in streams {
            if let Some(p) = self.peers.get_mut(&k) {
                if !p.connected {
                    continue;
                }
                if let Some(s) = p.rtc.direct_api().stream_rx_by_mid(mid, rid) {
                    s.request_remb(cap);
                }
                self.drain(k, now);
            }
        }
    }

    /// Tell each subscriber's BWE what to probe for: the top layers of
    /// the video it subscribes to, so the estimate can grow into them.
    fn update_bwe_targets(&mut self, now: Instant) {
        let mut want: HashMap<ParticipantKey, u64> = HashMap::new();
        for room in self.rooms.values() {
            for t in room.tracks() {
                if t.kind != TrackKind::Video {
                    continue;
                }
                let top = t.layers.iter().map(|l| l.bitrate_bps).max().unwrap_or(0);
                for s in t.subscriptions.iter().filter(|s| s.out_mid.is_some()) {
                    *want.entry(s.subscriber).or_default() += top;
                }
            }
        }
        let floor = self.config.bwe_initial_kbps * 1000;
        for (k, bps) in want {
            if let Some(p) = self.peers.get_mut(&k) {
                if !p.connected {
                    continue;
                }
                // Headroom over the measured rate: encoders burst on keyframes.
                let desired = (bps + bps / 4).max(floor);
                p.rtc
                    .bwe()
                    .set_bitrate(Bitrate::kbps(0), Bitrate::bps(desired));
                self.drain(k, now);
            }
        }
    }

    fn negotiate(&mut self, key: ParticipantKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.needs_negotiation() {
            return;
        }
        let Some(room) = self.rooms.get(&peer.room) else {
            return;
        };
        let mut change = peer.rtc.sdp_api();
        let mut added = Vec::new();
        for tk in peer.to_add.drain(..) {
            let Some(t) = room.track(tk) else { continue };
            let kind = match t.kind {
                TrackKind::Audio => MediaKind::Audio,
                TrackKind::Video => MediaKind::Video,
            };
            let stream_id = room.participant(t.publisher).map(|p| p.id.clone());
            let mid = change.add_media(
                kind,
                Direction::SendOnly,
                stream_id,
                Some(t.id.clone()),
                None,
            );
            added.push((tk, mid));
        }
        for mid in peer.to_stop.drain(..) {
            change.stop_media(mid);
        }
        if !change.has_changes() {
            return;
        }
        let Some((offer, pending)) = change.apply() else {
            return;
        };
        peer.pending = Some(pending);
        peer.negotiating = added;
        let e = SfuEvent::RenegotiationOffer {
            room_id: peer.room.clone(),
            participant_id: peer.participant_id.clone(),
            offer_sdp: offer.to_sdp_string(),
        };
        self.emit(e);
        self.drain(key, now);
    }

    fn remove_peer(&mut self, key: ParticipantKey, reason: DisconnectReason) {
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        info!(participant = %peer.participant_id, room = %peer.room, ?reason, "participant removed");
        self.routes.by_ufrag.remove(&peer.ufrag);
        self.by_id
            .remove(&(peer.room.clone(), peer.participant_id.clone()));
        peer.rtc.disconnect();
        self.metrics.participants.dec();
        if let Some(room) = self.rooms.get_mut(&peer.room) {
            let before = room.track_count();
            let stop = room.remove_participant(key, &mut self.scratch);
            self.metrics
                .tracks
                .sub((before - room.track_count()) as i64);
            let empty = room.participant_count() == 0;
            self.queue.extend(self.scratch.drain(..));
            self.stop_lines(stop);
            if empty {
                self.rooms.remove(&peer.room);
                self.metrics.rooms.dec();
            }
        }
        // Subscribers that were about to get one of its tracks.
        self.emit(SfuEvent::ParticipantDisconnected {
            room_id: peer.room,
            participant_id: peer.participant_id,
            reason,
        });
    }

    fn key_of(&self, room: &str, participant: &str) -> Result<ParticipantKey, SfuError> {
        self.by_id
            .get(&(room.to_string(), participant.to_string()))
            .copied()
            .ok_or_else(|| SfuError::UnknownParticipant(participant.to_string()))
    }

    fn on_command(&mut self, c: Command) {
        let now = Instant::now();
        match c {
            Command::Join(req, reply) => {
                let _ = reply.send(self.join(req, now));
            }
            Command::Answer {
                room,
                participant,
                answer_sdp,
                reply,
            } => {
                let _ = reply.send(self.answer(&room, &participant, &answer_sdp, now));
            }
            Command::Offer {
                room,
                participant,
                offer_sdp,
                reply,
            } => {
                let _ = reply.send(self.offer(&room, &participant, &offer_sdp, now));
            }
            Command::Subscribe(req, reply) => {
                let _ = reply.send(self.subscribe(req, now));
            }
            Command::Unsubscribe(req, reply) => {
                let _ = reply.send(self.unsubscribe(req, now));
            }
            Command::SetMute(req, reply) => {
                let r = match self.rooms.get_mut(&req.room_id) {
                    None => Err(SfuError::UnknownRoom(req.room_id)),
                    Some(room) => room
                        .set_muted(&req.track_id, req.muted, &mut self.scratch)
                        .map_err(SfuError::from),
                };
                self.queue.extend(self.scratch.drain(..));
                let _ = reply.send(r);
            }
            Command::Remove {
                room,
                participant,
                reply,
            } => {
                let r = self
                    .key_of(&room, &participant)
                    .map(|k| self.remove_peer(k, DisconnectReason::Removed));
                let _ = reply.send(r);
            }
            Command::CloseRoom { room, reply } => {
                if !self.rooms.contains_key(&room) {
                    let _ = reply.send(Err(SfuError::UnknownRoom(room)));
                    return;
                }
                let keys: Vec<ParticipantKey> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| p.room == room)
                    .map(|(k, _)| *k)
                    .collect();
                for k in keys {
                    self.remove_peer(k, DisconnectReason::RoomClosed);
                }
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn join(&mut self, req: JoinRequest, now: Instant) -> Result<String, SfuError> {
        let id = (req.room_id.clone(), req.participant_id.clone());
        if self.by_id.contains_key(&id) {
            return Err(SfuError::DuplicateParticipant(req.participant_id));
        }
        if self
            .rooms
            .get(&req.room_id)
            .is_some_and(|r| r.participant_count() >= self.config.max_participants_per_room)
        {
            return Err(SfuError::RoomFull(req.room_id));
        }
        let offer =
            SdpOffer::from_sdp_string(&req.offer_sdp).map_err(|e| SfuError::Sdp(e.to_string()))?;
        let key = ParticipantKey(self.next_key.fetch_add(1, Ordering::Relaxed));
        let mut peer = Peer::new(
            req.room_id.clone(),
            req.participant_id.clone(),
            req.grants,
            &self.config,
            self.local_addrs.clone(),
            now,
        )?;
        let answer = peer
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::Negotiation(e.to_string()))?;
        if !self.rooms.contains_key(&req.room_id) {
            self.rooms.insert(
                req.room_id.clone(),
                Room::new(req.room_id.clone(), self.config.core()),
            );
            self.metrics.rooms.inc();
        }
        let room = self.rooms.get_mut(&req.room_id).expect("inserted above");
        room.add_participant(key, req.participant_id.clone(), req.identity.clone());
        self.routes.by_ufrag.insert(
            peer.ufrag.clone(),
            Route {
                shard: self.index,
                peer: key,
            },
        );
        self.by_id.insert(id, key);
        self.peers.insert(key, peer);
        self.metrics.participants.inc();
        info!(participant = %req.participant_id, room = %req.room_id, "joined");
        self.drain(key, now);
        Ok(answer.to_sdp_string())
    }

    fn answer(
        &mut self,
        room: &str,
        participant: &str,
        sdp: &str,
        now: Instant,
    ) -> Result<(), SfuError> {
        let key = self.key_of(room, participant)?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| SfuError::Sdp(e.to_string()))?;
        let peer = self.peers.get_mut(&key).expect("by_id and peers agree");
        let pending = peer.pending.take().ok_or(SfuError::NoPendingOffer)?;
        peer.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| SfuError::Negotiation(e.to_string()))?;
        let negotiated = std::mem::take(&mut peer.negotiating);
        if !peer.connected {
            peer.deferred.extend(negotiated);
            self.drain(key, now);
            self.negotiate(key, now);
            return Ok(());
        }
        self.drain(key, now);
        self.activate_all(key, negotiated, now);
        self.negotiate(key, now);
        Ok(())
    }

    fn activate_all(
        &mut self,
        key: ParticipantKey,
        lines: Vec<(crate::core::TrackKey, Mid)>,
        now: Instant,
    ) {
        for (tk, mid) in lines {
            let activated = self.activate(key, tk, mid, now);
            if !activated {
                // The track went away while the offer was out.
                if let Some(p) = self.peers.get_mut(&key) {
                    p.to_stop.push(mid);
                }
            }
        }
        self.queue.extend(self.scratch.drain(..));
    }

    fn activate(
        &mut self,
        key: ParticipantKey,
        tk: crate::core::TrackKey,
        mid: Mid,
        now: Instant,
    ) -> bool {
        let Some(room_id) = self.peers.get(&key).map(|p| p.room.clone()) else {
            return false;
        };
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return false;
        };
        let Some(t) = room.track(tk) else {
            return false;
        };
        let kind = match t.kind {
            TrackKind::Audio => MediaKind::Audio,
            TrackKind::Video => MediaKind::Video,
        };
        let Some(publisher) = self.peers.get(&t.publisher) else {
            return false;
        };
        let params = publisher.params(kind);
        let Some(sub) = self.peers.get(&key) else {
            return false;
        };
        let map = sub.pt_map(&params);
        if map.is_empty() {
            warn!(participant = %sub.participant_id, "no common codec for track");
        }
        room.activate_subscription(key, tk, mid, map, now, &mut self.scratch)
    }

    fn offer(
        &mut self,
        room: &str,
        participant: &str,
        sdp: &str,
        now: Instant,
    ) -> Result<String, SfuError> {
        let key = self.key_of(room, participant)?;
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| SfuError::Sdp(e.to_string()))?;
        let peer = self.peers.get_mut(&key).expect("by_id and peers agree");
        // Glare: the client's offer wins; ours is redone afterwards.
        if peer.pending.take().is_some() {
            let back: Vec<_> = peer.negotiating.drain(..).map(|(tk, _)| tk).collect();
            peer.to_add.extend(back);
        }
        let answer = peer
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::Negotiation(e.to_string()))?;
        // An ICE restart from the client gives us new local credentials: the
        // edge must route the new ufrag from now on.
        let ufrag = peer.rtc.direct_api().local_ice_credentials().ufrag;
        if ufrag != peer.ufrag {
            info!(participant = %peer.participant_id, "ICE restart");
            let route = Route {
                shard: self.index,
                peer: key,
            };
            self.routes.by_ufrag.insert(ufrag.clone(), route);
            self.routes
                .by_ufrag
                .remove(&std::mem::replace(&mut peer.ufrag, ufrag));
        }
        self.drain(key, now);
        Ok(answer.to_sdp_string())
    }

    fn subscribe(&mut self, req: SubscribeRequest, now: Instant) -> Result<(), SfuError> {
        let key = self.key_of(&req.room_id, &req.participant_id)?;
        let peer = self.peers.get_mut(&key).expect("by_id and peers agree");
        if !peer.grants.can_subscribe {
            return Err(SfuError::NotPermitted);
        }
        let room = self
            .rooms
            .get_mut(&req.room_id)
            .ok_or_else(|| SfuError::UnknownRoom(req.room_id.clone()))?;
        let mut first_err = None;
        for id in &req.track_ids {
            match room.subscribe(key, id, req.max_quality, now) {
                Ok(Some(tk)) => peer.to_add.push(tk),
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert(SfuError::from(e));
                }
            }
        }
        self.negotiate(key, now);
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn unsubscribe(&mut self, req: UnsubscribeRequest, now: Instant) -> Result<(), SfuError> {
        let key = self.key_of(&req.room_id, &req.participant_id)?;
        let peer = self.peers.get_mut(&key).expect("by_id and peers agree");
        let room = self
            .rooms
            .get_mut(&req.room_id)
            .ok_or_else(|| SfuError::UnknownRoom(req.room_id.clone()))?;
        for id in &req.track_ids {
            if let Some(t) = room.track_by_id(id) {
                let tk = t.key;
                peer.to_add.retain(|k| *k != tk);
            }
            if let Some(mid) = room.unsubscribe(key, id) {
                peer.to_stop.push(mid);
            }
        }
        self.negotiate(key, now);
        Ok(())
    }

    fn shutdown(&mut self) {
        let keys: Vec<ParticipantKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.remove_peer(k, DisconnectReason::Shutdown);
        }
        self.flush();
    }
}
