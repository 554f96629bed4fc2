//! A virtual network and clock around the SFU's [`Worker`]s: str0m client
//! peers and the workers exchange datagrams (and the workers their relays,
//! for a room across workers) in memory, and time moves only when the test
//! says so. Logic tests (and the egress benchmark) run on it
//! deterministically, without sockets or sleeps; the real-socket tests stay
//! for the socket code itself.
//!
//! Every client is a str0m `Rtc` in RTP mode on its own virtual address;
//! worker `i` is on `10.0.0.1:5000 + i` (`SfuConfig::workers` of them),
//! and joins are placed as the control API places them. Joins,
//! subscriptions and renegotiation go through the same [`Command`]s and
//! [`SfuEvent`]s the control API uses, answered in the same step.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_proto::sfu::{
    Grants, JoinRequest, SfuEvent, SubscribeRequest, TrackSources, VideoQuality,
};
use str0m::change::{SdpAnswer, SdpApi, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input as RtcInput, Output as RtcOutput, Rtc, RtcConfig};
use tokio::sync::oneshot;

use crate::config::SfuConfig;
use crate::error::SfuError;
use crate::metrics::Metrics;
use crate::placement::Placement;
use crate::shard::Command;
use crate::udp::{RecvMeta, Sent, Transmit};
use crate::worker::{Input, Output, Relay, Worker};

/// The first worker's address on the virtual network.
pub const SFU_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 5000);

/// Worker `i`'s address on the virtual network.
pub fn worker_addr(i: usize) -> SocketAddr {
    SocketAddr::new(SFU_ADDR.ip(), SFU_ADDR.port() + i as u16)
}

/// What a test sees of one client, and the loss it injects on the
/// client's side of the virtual network.
pub trait ClientHook {
    /// Every str0m event of the client.
    fn event(&mut self, _event: &Event) {}
    /// False drops the client's datagram on its way out.
    fn send(&mut self, _datagram: &[u8]) -> bool {
        true
    }
    /// False drops a datagram on its way in to the client.
    fn receive(&mut self, _datagram: &[u8]) -> bool {
        true
    }
}

impl ClientHook for () {}

/// A client peer on the virtual network.
pub struct SimClient<H = ()> {
    pub id: String,
    pub rtc: Rtc,
    pub addr: SocketAddr,
    /// The worker hosting it.
    pub worker: usize,
    inbox: VecDeque<Vec<u8>>,
    /// RTP packets received: (mid, sequence number, payload length).
    pub received: Vec<(Mid, u16, usize)>,
    /// Keyframe requests (PLI/FIR) received, as a publisher.
    pub keyframe_requests: usize,
    pub connected: bool,
    /// Video and audio m-lines this client sends on (publishers).
    pub video_mid: Option<Mid>,
    pub audio_mid: Option<Mid>,
    next_seq: u64,
    pub hook: H,
}

impl<H: ClientHook> SimClient<H> {
    /// Poll the client's output until its timeout: datagrams for the SFU
    /// into `to_sfu`, received RTP into `received`.
    fn drain(&mut self, to_sfu: &mut Vec<Vec<u8>>) {
        loop {
            let out = self.rtc.poll_output();
            if let Ok(RtcOutput::Event(e)) = &out {
                self.hook.event(e);
            }
            match out {
                Ok(RtcOutput::Timeout(_)) | Err(_) => break,
                Ok(RtcOutput::Transmit(t)) => {
                    if self.hook.send(&t.contents) {
                        to_sfu.push(Vec::from(t.contents));
                    }
                }
                Ok(RtcOutput::Event(Event::Connected)) => self.connected = true,
                Ok(RtcOutput::Event(Event::KeyframeRequest(_))) => self.keyframe_requests += 1,
                Ok(RtcOutput::Event(Event::RtpPacket(p))) => {
                    let mid = self
                        .rtc
                        .direct_api()
                        .stream_rx(&p.header.ssrc)
                        .map(|s| s.mid())
                        .or(p.header.ext_vals.mid)
                        .unwrap_or_else(|| Mid::from("?"));
                    self.received.push((mid, *p.seq_no as u16, p.payload.len()));
                }
                Ok(RtcOutput::Event(_)) => {}
            }
        }
    }
}

pub struct SimNet<H = ()> {
    workers: Vec<Worker>,
    placement: Placement,
    /// Relays between workers, not yet delivered.
    relays: VecDeque<(usize, Relay)>,
    /// Relayed RTP packets delivered, per receiving worker.
    pub relayed_rtp: Vec<usize>,
    pub clients: Vec<SimClient<H>>,
    pub now: Instant,
    /// The worker's events not yet looked at.
    events: VecDeque<SfuEvent>,
    /// Events the harness did not consume itself.
    pub seen: Vec<SfuEvent>,
    /// The SFU's renegotiation offers, as sent: (participant, SDP).
    pub offers: Vec<(String, String)>,
    pub metrics: Metrics,
    /// Datagrams the worker handed to the network (what would hit the
    /// socket), not yet delivered.
    pub wire: Vec<Transmit>,
    /// Keep the worker's datagrams in `wire` instead of delivering them
    /// (for the benchmark, which sends them through a real socket).
    pub capture: bool,
}

impl SimNet {
    pub fn new(config: SfuConfig) -> Self {
        Self::with_hooks(config)
    }

    /// A client joins `room`. Publishers send one Opus and one VP8 m-line;
    /// others open a data channel only.
    pub fn join(&mut self, room: &str, id: &str, publish: bool) {
        let (audio_mid, video_mid) = self.join_with(room, id, Rtc::builder(), (), |change| {
            if publish {
                let audio = change.add_media(
                    MediaKind::Audio,
                    Direction::SendOnly,
                    Some(id.into()),
                    Some("mic".into()),
                    None,
                );
                let video = change.add_media(
                    MediaKind::Video,
                    Direction::SendOnly,
                    Some(id.into()),
                    Some("cam".into()),
                    None,
                );
                (Some(audio), Some(video))
            } else {
                change.add_channel("convene".into());
                (None, None)
            }
        });
        let c = self.clients.last_mut().expect("just joined");
        c.audio_mid = audio_mid;
        c.video_mid = video_mid;
    }
}

impl<H: ClientHook> SimNet<H> {
    /// A network whose clients carry a `H` each (see [`SimNet::join_with`]).
    pub fn with_hooks(config: SfuConfig) -> Self {
        let now = Instant::now();
        let metrics = Metrics::new().expect("metrics");
        let n = config.workers.max(1);
        let placement = Placement::new(
            n,
            config.room_spread_after,
            config.max_participants_per_room,
        );
        let config = Arc::new(config);
        let next_key = Arc::new(AtomicU64::new(1));
        let workers = (0..n)
            .map(|i| {
                Worker::new(
                    i,
                    config.clone(),
                    vec![worker_addr(i)],
                    metrics.clone(),
                    next_key.clone(),
                    now,
                )
            })
            .collect();
        Self {
            workers,
            placement,
            relays: VecDeque::new(),
            relayed_rtp: vec![0; n],
            clients: Vec::new(),
            now,
            events: VecDeque::new(),
            seen: Vec::new(),
            offers: Vec::new(),
            metrics,
            wire: Vec::new(),
            capture: false,
        }
    }

    fn client_index(&self, id: &str) -> usize {
        self.clients
            .iter()
            .position(|c| c.id == id)
            .expect("client exists")
    }

    pub fn client(&self, id: &str) -> &SimClient<H> {
        &self.clients[self.client_index(id)]
    }

    fn command<T>(
        &mut self,
        worker: usize,
        make: impl FnOnce(oneshot::Sender<Result<T, SfuError>>) -> Command,
    ) -> Result<T, SfuError> {
        let (tx, mut rx) = oneshot::channel();
        self.workers[worker].handle(Input::Command(make(tx)), self.now);
        let out = self.drive(worker);
        self.wire_or_deliver(worker, out);
        rx.try_recv().expect("the worker answers at once")
    }

    /// The worker hosting `id` in `room`.
    fn worker_of(&self, room: &str, id: &str) -> usize {
        self.placement.worker_of(room, id).unwrap_or(0)
    }

    /// A client with `config` (in RTP mode) and `hook` joins `room` with
    /// the m-lines (or data channel) `media` adds to its offer; returns what
    /// `media` returned.
    pub fn join_with<T>(
        &mut self,
        room: &str,
        id: &str,
        config: RtcConfig,
        hook: H,
        media: impl FnOnce(&mut SdpApi<'_>) -> T,
    ) -> T {
        self.join_declaring(room, id, config, hook, media, |_| TrackSources::new())
    }

    /// [`SimNet::join_with`], declaring what the m-lines carry: `sources`
    /// gets what `media` returned (its mids).
    pub fn join_declaring<T>(
        &mut self,
        room: &str,
        id: &str,
        config: RtcConfig,
        hook: H,
        media: impl FnOnce(&mut SdpApi<'_>) -> T,
        sources: impl FnOnce(&T) -> TrackSources,
    ) -> T {
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(
                10,
                1,
                (self.clients.len() / 250) as u8,
                (self.clients.len() % 250 + 1) as u8,
            )),
            6000,
        );
        let mut rtc = config.set_rtp_mode(true).build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut change = rtc.sdp_api();
        let added = media(&mut change);
        let sources = sources(&added);
        let (offer, pending) = change.apply().expect("offer");
        let req = JoinRequest {
            room_id: room.into(),
            participant_id: id.into(),
            identity: id.into(),
            offer_sdp: offer.to_sdp_string(),
            grants: Grants::default(),
            sources,
        };
        let placed = self.placement.place(room, id, 0).expect("placed");
        let worker = placed.worker;
        let peers = placed.peers;
        let answer = self
            .command(worker, |reply| Command::Join { req, peers, reply })
            .expect("join");
        rtc.sdp_api()
            .accept_answer(
                pending,
                SdpAnswer::from_sdp_string(&answer).expect("answer"),
            )
            .expect("accept answer");
        self.clients.push(SimClient {
            id: id.into(),
            rtc,
            addr,
            worker,
            inbox: VecDeque::new(),
            received: Vec::new(),
            keyframe_requests: 0,
            connected: false,
            video_mid: None,
            audio_mid: None,
            next_seq: 1,
            hook,
        });
        added
    }

    pub fn client_mut(&mut self, id: &str) -> &mut SimClient<H> {
        let i = self.client_index(id);
        &mut self.clients[i]
    }

    /// Subscribe `id` to tracks (`"{publisher}/{mid}"`); the renegotiation
    /// completes in the following steps.
    pub fn subscribe(&mut self, room: &str, id: &str, track_ids: Vec<String>) {
        self.subscribe_at(room, id, track_ids, VideoQuality::High);
    }

    /// [`SimNet::subscribe`] with a quality cap (or a new cap for existing
    /// subscriptions).
    pub fn subscribe_at(
        &mut self,
        room: &str,
        id: &str,
        track_ids: Vec<String>,
        max_quality: VideoQuality,
    ) {
        let req = SubscribeRequest {
            room_id: room.into(),
            participant_id: id.into(),
            track_ids,
            max_quality,
        };
        let worker = self.worker_of(room, id);
        self.command(worker, |r| Command::Subscribe(req, r))
            .expect("subscribe");
        self.handle_events(room);
    }

    /// `id` is removed from `room`, as signaling removes a participant.
    pub fn leave(&mut self, room: &str, id: &str) {
        let worker = self.worker_of(room, id);
        let (room, participant) = (room.to_string(), id.to_string());
        self.command(worker, |reply| Command::Remove {
            room,
            participant,
            reply,
        })
        .expect("remove");
    }

    /// Server-side mute of `track_id` (`"{publisher}/{mid}"`).
    pub fn set_mute(&mut self, room: &str, track_id: &str, muted: bool) {
        let publisher = track_id.rsplit_once('/').expect("track id").0;
        let worker = self.worker_of(room, publisher);
        let req = convene_proto::sfu::SetMuteRequest {
            room_id: room.into(),
            track_id: track_id.into(),
            muted,
        };
        self.command(worker, |r| Command::SetMute(req, r))
            .expect("mute");
    }

    /// The worker hosting client `id`.
    pub fn worker_of_client(&self, id: &str) -> usize {
        self.client(id).worker
    }

    /// Answer SFU renegotiation offers as a client would.
    fn handle_events(&mut self, room: &str) {
        while let Some(e) = self.events.pop_front() {
            match e {
                SfuEvent::RenegotiationOffer {
                    participant_id,
                    offer_sdp,
                    ..
                } => {
                    let i = self.client_index(&participant_id);
                    self.offers
                        .push((participant_id.clone(), offer_sdp.clone()));
                    let offer = SdpOffer::from_sdp_string(&offer_sdp).expect("offer");
                    let answer = self.clients[i]
                        .rtc
                        .sdp_api()
                        .accept_offer(offer)
                        .expect("accept offer");
                    let worker = self.worker_of(room, &participant_id);
                    let (room, participant, answer_sdp) =
                        (room.to_string(), participant_id, answer.to_sdp_string());
                    self.command(worker, |reply| Command::Answer {
                        room,
                        participant,
                        answer_sdp,
                        reply,
                    })
                    .expect("answer");
                }
                e => self.seen.push(e),
            }
        }
    }

    /// Write one RTP packet on a publisher's video (or audio) m-line.
    pub fn publish_packet(&mut self, id: &str, video: bool, keyframe: bool, len: usize) {
        let now = self.now;
        let i = self.client_index(id);
        let c = &mut self.clients[i];
        let (mid, codec) = if video {
            (c.video_mid.expect("publisher"), Codec::Vp8)
        } else {
            (c.audio_mid.expect("publisher"), Codec::Opus)
        };
        let pt = c
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .expect("codec")
            .pt();
        let seq = c.next_seq;
        c.next_seq += 1;
        let mut payload = vec![0u8; len.max(3)];
        if video {
            // VP8 descriptor with S set; payload header P clear on a keyframe.
            payload[0] = 0x10;
            payload[1] = if keyframe { 0x00 } else { 0x01 };
        }
        let mut api = c.rtc.direct_api();
        if let Some(tx) = api.stream_tx_by_mid(mid, None) {
            // As a browser sends a frame's packets: together, not one per
            // pacer timeout.
            tx.set_unpaced(true);
            tx.write_rtp(
                RtpWrite::new(pt, seq.into(), (seq * 3000) as u32, now, payload)
                    .marker(true)
                    .nackable(video),
            );
        }
    }

    /// Advance the clock by `dt` and move every datagram until the network
    /// is quiet (bounded).
    pub fn step(&mut self, dt: Duration) {
        self.now += dt;
        let now = self.now;
        for _ in 0..64 {
            let mut moved = false;
            for i in 0..self.clients.len() {
                moved |= self.pump_client(i, now);
            }
            for w in 0..self.workers.len() {
                self.workers[w].handle(Input::Timeout, now);
                moved |= self.deliver_output_of(w);
            }
            moved |= self.deliver_relays();
            if !moved {
                break;
            }
        }
    }

    /// Step for `total` in increments of `dt`, answering renegotiations.
    pub fn run_for(&mut self, room: &str, total: Duration, dt: Duration) {
        let end = self.now + total;
        while self.now < end {
            self.step(dt);
            self.handle_events(room);
        }
    }

    fn pump_client(&mut self, i: usize, now: Instant) -> bool {
        let mut moved = false;
        let c = &mut self.clients[i];
        let mut to_sfu = Vec::new();
        // str0m's contract: drain the output after every input (a second
        // datagram before the drain would overwrite the first's packet).
        while let Some(d) = c.inbox.pop_front() {
            if !c.hook.receive(&d) {
                continue;
            }
            let Ok(contents) = d.as_slice().try_into() else {
                continue;
            };
            let _ = c.rtc.handle_input(RtcInput::Receive(
                now,
                Receive {
                    proto: Protocol::Udp,
                    source: worker_addr(c.worker),
                    destination: c.addr,
                    contents,
                },
            ));
            c.drain(&mut to_sfu);
            moved = true;
        }
        let _ = c.rtc.handle_input(RtcInput::Timeout(now));
        c.drain(&mut to_sfu);
        let (source, w) = (c.addr, c.worker);
        for d in to_sfu {
            moved = true;
            let meta = RecvMeta {
                len: d.len(),
                source,
                local_ip: Some(worker_addr(w).ip()),
            };
            let input = Input::Datagram {
                meta,
                data: &d,
                read_at: now,
            };
            self.workers[w].handle(input, now);
            self.deliver_output_of(w);
        }
        moved
    }

    /// Hand every queued relay to its worker (and what that causes).
    fn deliver_relays(&mut self) -> bool {
        let mut moved = false;
        while let Some(to) = self.hand_over_relay() {
            moved = true;
            self.deliver_output_of(to);
        }
        moved
    }

    /// The next queued relay into its worker; returns that worker.
    fn hand_over_relay(&mut self) -> Option<usize> {
        let (to, msg) = self.relays.pop_front()?;
        if matches!(msg, Relay::Rtp(_)) {
            self.relayed_rtp[to] += 1;
        }
        self.workers[to].handle(Input::Relay(msg), self.now);
        Some(to)
    }

    /// Carry out worker `w`'s output as the thread loop would: events
    /// kept for the harness, relays queued for their worker, datagrams
    /// returned (as if the kernel took them all).
    fn drive(&mut self, w: usize) -> Vec<Transmit> {
        let mut out = Vec::new();
        loop {
            match self.workers[w].poll_output() {
                Output::Transmit(mut batch) => {
                    let sent = Sent {
                        datagrams: batch.len(),
                        bytes: batch.iter().map(|t| t.contents.len()).sum(),
                        failed: 0,
                    };
                    out.append(&mut batch);
                    self.workers[w].handle(Input::Sent { sent, batch }, self.now);
                }
                Output::Event(e) => {
                    if let SfuEvent::ParticipantDisconnected {
                        room_id,
                        participant_id,
                        ..
                    } = &e
                    {
                        self.placement.remove(room_id, participant_id, w);
                    }
                    self.events.push_back(e)
                }
                Output::Relay { to, msg } => self.relays.push_back((to, msg)),
                Output::Timeout(_) => return out,
            }
        }
    }

    /// Every worker's queued datagrams: to the clients' inboxes, or to
    /// `wire` when capturing.
    pub fn deliver_worker_output(&mut self) -> bool {
        let mut moved = false;
        for w in 0..self.workers.len() {
            moved |= self.deliver_output_of(w);
        }
        moved
    }

    fn deliver_output_of(&mut self, w: usize) -> bool {
        let out = self.drive(w);
        self.wire_or_deliver(w, out)
    }

    fn wire_or_deliver(&mut self, w: usize, out: Vec<Transmit>) -> bool {
        if out.is_empty() {
            return false;
        }
        if self.capture {
            self.wire.extend(out);
            return true;
        }
        for t in out {
            if let Some(c) = self
                .clients
                .iter_mut()
                .find(|c| c.addr == t.destination && c.worker == w)
            {
                c.inbox.push_back(t.contents);
            }
        }
        true
    }

    /// The datagrams client `id` has to send now (the benchmark's way in:
    /// feed them to [`SimNet::to_worker`]).
    pub fn client_transmits(&mut self, id: &str) -> Vec<Vec<u8>> {
        let i = self.client_index(id);
        let c = &mut self.clients[i];
        let _ = c.rtc.handle_input(RtcInput::Timeout(self.now));
        let mut out = Vec::new();
        loop {
            match c.rtc.poll_output() {
                Ok(RtcOutput::Transmit(t)) => out.push(Vec::from(t.contents)),
                Ok(RtcOutput::Timeout(_)) | Err(_) => break,
                Ok(RtcOutput::Event(_)) => {}
            }
        }
        out
    }

    /// One datagram from client `id` into its worker.
    pub fn to_worker(&mut self, id: &str, datagram: &[u8]) {
        let (source, w) = (self.client(id).addr, self.client(id).worker);
        let meta = RecvMeta {
            len: datagram.len(),
            source,
            local_ip: Some(SFU_ADDR.ip()),
        };
        let input = Input::Datagram {
            meta,
            data: datagram,
            read_at: self.now,
        };
        self.workers[w].handle(input, self.now);
    }

    /// Every worker's queued datagrams, taken (relays between them
    /// delivered first).
    pub fn take_worker_output(&mut self) -> Vec<Transmit> {
        let mut out = Vec::new();
        for w in 0..self.workers.len() {
            out.extend(self.drive(w));
        }
        while let Some(to) = self.hand_over_relay() {
            out.extend(self.drive(to));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A room on the virtual network: `subs` subscribers of one publisher's
    /// camera, connected and negotiated.
    fn room(subs: usize) -> SimNet {
        let mut net = SimNet::new(SfuConfig::for_tests());
        net.join("r", "pub", true);
        for i in 0..subs {
            net.join("r", &format!("s{i}"), false);
        }
        net.run_for("r", Duration::from_millis(300), 5 * MS);
        assert!(net.clients.iter().all(|c| c.connected), "all connected");
        let cam = format!("pub/{}", net.client("pub").video_mid.unwrap());
        for i in 0..subs {
            net.subscribe("r", &format!("s{i}"), vec![cam.clone()]);
        }
        net.run_for("r", Duration::from_millis(200), 5 * MS);
        net
    }

    #[test]
    fn fan_out_reaches_every_subscriber_in_order_on_a_virtual_clock() {
        let mut net = room(3);
        // 2 s of 30 fps video, a keyframe first.
        for frame in 0..60 {
            net.publish_packet("pub", true, frame == 0, 1000);
            net.run_for("r", Duration::from_millis(33), 11 * MS);
        }
        for i in 0..3 {
            let c = net.client(&format!("s{i}"));
            let video: Vec<u16> = c
                .received
                .iter()
                .filter(|(_, _, len)| *len >= 1000)
                .map(|(_, seq, _)| *seq)
                .collect();
            assert!(video.len() >= 55, "s{i} got {} of 60", video.len());
            assert!(
                video.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
                "s{i}: continuous sequence numbers"
            );
        }
        // The publisher is not sent its own video.
        assert!(net
            .client("pub")
            .received
            .iter()
            .all(|(_, _, len)| *len < 1000));
    }

    #[test]
    fn forwarded_media_leaves_with_the_fan_out_not_later() {
        let mut net = room(5);
        net.publish_packet("pub", true, true, 1000);
        net.run_for("r", Duration::from_millis(100), 5 * MS);
        net.capture = true;
        for _ in 0..20 {
            net.publish_packet("pub", true, false, 1000);
            for d in net.client_transmits("pub") {
                net.to_worker("pub", &d);
            }
            // Every subscriber's copy is queued before the clock moves: no
            // pacer holds any of it for a later timeout.
            let out = net.take_worker_output();
            let media = out.iter().filter(|t| t.contents.len() >= 1000).count();
            assert_eq!(media, 5, "one copy per subscriber at once");
            assert!(out.iter().all(|t| t.caused_by.is_some()));
            net.step(10 * MS);
            net.wire.clear();
        }
    }

    #[test]
    fn with_the_pacer_on_the_fan_out_waits() {
        let config = SfuConfig {
            pace_media: true,
            bwe_initial_kbps: 300,
            ..SfuConfig::for_tests()
        };
        let mut net = SimNet::new(config);
        net.join("r", "pub", true);
        for i in 0..5 {
            net.join("r", &format!("s{i}"), false);
        }
        net.run_for("r", Duration::from_millis(300), 5 * MS);
        let cam = format!("pub/{}", net.client("pub").video_mid.unwrap());
        for i in 0..5 {
            net.subscribe("r", &format!("s{i}"), vec![cam.clone()]);
        }
        net.run_for("r", Duration::from_millis(200), 5 * MS);
        net.publish_packet("pub", true, true, 1000);
        net.run_for("r", Duration::from_millis(100), 5 * MS);
        net.capture = true;
        let mut immediate = 0;
        for _ in 0..20 {
            net.publish_packet("pub", true, false, 1000);
            for d in net.client_transmits("pub") {
                net.to_worker("pub", &d);
            }
            immediate += net
                .take_worker_output()
                .iter()
                .filter(|t| t.contents.len() >= 1000)
                .count();
            net.step(10 * MS);
            net.wire.clear();
        }
        // The control for the test above: paced, most copies leave later.
        assert!(immediate < 50, "paced: {immediate} of 100 left at once");
    }
}
