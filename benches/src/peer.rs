//! One simulated participant: a str0m `Rtc` in RTP mode on its own loopback
//! UDP socket (a [`convene_peer::Peer`]), driven by a Tokio task.
//!
//! A [`PeerBuilder`] makes the first SDP (a publisher's offer with audio and
//! VP8 video, or a subscriber's data-channel-only offer, or an answer to a
//! server offer for Janus subscribers); [`PeerBuilder::spawn`] moves the
//! `Rtc` into its task. From then on the task owns it: it feeds datagrams
//! (read `recvmmsg` at a time) and timeouts in, drains `poll_output` after
//! every input (str0m's contract), sends what str0m transmits in one
//! `sendmmsg` per drain, writes the publisher's media on schedule, and
//! accounts every received RTP packet in [`RecvStats`]. Signaling talks to
//! the task through [`PeerHandle`] (renegotiation offers, remote
//! candidates).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_peer::{Handler, Peer};
use parking_lot::Mutex;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::Transmit;
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, Rtc};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, trace, warn};

use crate::payload::{self, Stamp, StreamId};
use crate::stats::RecvStats;

/// Simulcast rids, low to high, and each layer's share of `--video-kbps`.
pub const RIDS: [&str; 3] = ["q", "h", "f"];
const LAYER_SHARE: [f64; 3] = [0.1, 0.3, 1.0];
/// A keyframe is this many times the size of a delta frame.
const KEYFRAME_FACTOR: f64 = 4.0;
/// Opus at ~48 kbit/s: 120-byte packets every 20 ms.
const OPUS_BYTES: usize = 120;
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
const RECV_BUFFER_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("WebRTC: {0}")]
    Rtc(#[from] str0m::RtcError),
    #[error("SDP: {0}")]
    Sdp(#[from] str0m::error::SdpError),
    #[error("ICE candidate: {0}")]
    Candidate(String),
    #[error("the peer task has stopped")]
    Gone,
}

/// What a publisher sends.
#[derive(Debug, Clone)]
pub struct PublishSpec {
    /// Global publisher index: names its streams in the payload trailer.
    pub index: u32,
    pub video_kbps: u32,
    pub simulcast: bool,
    pub fps: u32,
    pub keyframe_interval: Duration,
}

/// State shared by every peer of a run.
#[derive(Debug)]
pub struct Shared {
    /// Publishers write media while this is true.
    pub sending: AtomicBool,
    stop_tx: watch::Sender<bool>,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            sending: AtomicBool::new(true),
            stop_tx: watch::channel(false).0,
        })
    }

    /// Ask every peer task to disconnect and end.
    pub fn stop(&self) {
        self.stop_tx.send_replace(true);
    }

    /// Turns true when the run ends.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop_tx.subscribe()
    }
}

/// What a publisher has sent: the last stamp sequence of each stream (for
/// the receivers' tail loss), packets and bytes.
#[derive(Debug, Default, Clone)]
pub struct SentStats {
    pub last_seq: HashMap<StreamId, u32>,
    pub packets: u64,
    pub bytes: u64,
}

enum PeerCmd {
    AcceptOffer {
        sdp: String,
        reply: oneshot::Sender<Result<String, PeerError>>,
    },
    RemoteCandidate(String),
}

/// A peer before its task runs: holds the `Rtc` while the first SDP
/// exchange happens.
pub struct PeerBuilder {
    name: String,
    rtc: Rtc,
    socket: std::net::UdpSocket,
    pending: Option<SdpPendingOffer>,
    publish: Option<(PublishSpec, Mid, Mid)>,
    joined_at: Instant,
}

impl PeerBuilder {
    /// A peer on a fresh socket on `ip` (a loopback address); `joined_at`
    /// is when its join began (join time is measured from there to its
    /// first media packet).
    pub fn new(name: impl Into<String>, ip: IpAddr, joined_at: Instant) -> Result<Self, PeerError> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(SocketAddr::new(ip, 0)),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Bursts of video to many subscribers must not overflow the default
        // buffer (the kernel caps this at net.core.rmem_max).
        if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER_BYTES) {
            debug!("SO_RCVBUF: {e}");
        }
        socket.bind(&SocketAddr::new(ip, 0).into())?;
        socket.set_nonblocking(true)?;
        let socket: std::net::UdpSocket = socket.into();
        let rtc = convene_peer::rtp_mode_rtc(Rtc::builder(), socket.local_addr()?)?;
        Ok(Self {
            name: name.into(),
            rtc,
            socket,
            pending: None,
            publish: None,
            joined_at,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// An offer sending Opus and VP8 (three rids with simulcast).
    pub fn publisher_offer(&mut self, spec: PublishSpec) -> Result<String, PeerError> {
        let stream = format!("load-{}", spec.index);
        let mut change = self.rtc.sdp_api();
        let audio = change.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(stream.clone()),
            Some("mic".into()),
            None,
        );
        let sim = spec.simulcast.then(|| {
            let mut s = Simulcast::new();
            for r in RIDS {
                s.add_send_layer(SimulcastLayer::new(r));
            }
            s
        });
        let video = change.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some(stream),
            Some("cam".into()),
            sim,
        );
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| PeerError::Candidate("no SDP changes".into()))?;
        self.pending = Some(pending);
        self.publish = Some((spec, audio, video));
        Ok(offer.to_sdp_string())
    }

    /// A receive-only start: one data channel, media m-lines come with the
    /// SFU's renegotiation offers.
    pub fn subscriber_offer(&mut self) -> Result<String, PeerError> {
        let mut change = self.rtc.sdp_api();
        change.add_channel("convene-load".into());
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| PeerError::Candidate("no SDP changes".into()))?;
        self.pending = Some(pending);
        Ok(offer.to_sdp_string())
    }

    /// The server's answer to [`Self::publisher_offer`] or
    /// [`Self::subscriber_offer`].
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), PeerError> {
        let answer = SdpAnswer::from_sdp_string(sdp)?;
        let pending = self
            .pending
            .take()
            .ok_or_else(|| PeerError::Candidate("no offer pending".into()))?;
        self.rtc.sdp_api().accept_answer(pending, answer)?;
        Ok(())
    }

    /// Answer a server offer (Janus subscribers start this way).
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String, PeerError> {
        let offer = SdpOffer::from_sdp_string(sdp)?;
        Ok(self.rtc.sdp_api().accept_offer(offer)?.to_sdp_string())
    }

    pub fn add_remote_candidate(&mut self, sdp_candidate: &str) -> Result<(), PeerError> {
        let c = parse_candidate(sdp_candidate)?;
        self.rtc.add_remote_candidate(c);
        Ok(())
    }

    /// Start the peer's task.
    pub fn spawn(self, shared: Arc<Shared>) -> Result<PeerHandle, PeerError> {
        let socket = tokio::net::UdpSocket::from_std(self.socket)?;
        let stats = Arc::new(Mutex::new(RecvStats::new(self.joined_at)));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut sent = None;
        let media = match self.publish {
            Some((spec, audio_mid, video_mid)) => {
                let s = Arc::new(Mutex::new(SentStats::default()));
                sent = Some(s.clone());
                Some(Publisher::new(spec, audio_mid, video_mid, &self.rtc, s))
            }
            None => None,
        };
        let task = PeerTask {
            peer: Peer::new(socket, self.rtc)?,
            cmds: rx,
            state: State {
                name: self.name.clone(),
                media,
                stats: stats.clone(),
                connected: false,
            },
            shared: shared.clone(),
            stop: shared.stop_signal(),
        };
        let join = tokio::spawn(task.run());
        Ok(PeerHandle {
            name: self.name,
            cmds: tx,
            stats,
            sent,
            task: Some(join),
        })
    }
}

fn parse_candidate(s: &str) -> Result<Candidate, PeerError> {
    let s = s.trim().trim_start_matches("a=");
    Candidate::from_sdp_string(s).map_err(|e| PeerError::Candidate(e.to_string()))
}

/// Control of a running peer.
pub struct PeerHandle {
    pub name: String,
    cmds: mpsc::UnboundedSender<PeerCmd>,
    pub stats: Arc<Mutex<RecvStats>>,
    /// Present for publishers.
    pub sent: Option<Arc<Mutex<SentStats>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PeerHandle {
    /// Apply a server offer (renegotiation) and return the answer.
    pub async fn accept_offer(&self, sdp: String) -> Result<String, PeerError> {
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(PeerCmd::AcceptOffer { sdp, reply })
            .map_err(|_| PeerError::Gone)?;
        rx.await.map_err(|_| PeerError::Gone)?
    }

    pub fn add_remote_candidate(&self, candidate: String) {
        let _ = self.cmds.send(PeerCmd::RemoteCandidate(candidate));
    }

    /// Cheap clone for signaling tasks.
    pub fn negotiator(&self) -> Negotiator {
        Negotiator {
            cmds: self.cmds.clone(),
        }
    }

    /// Wait for the task to end (after [`Shared::stop`]).
    pub async fn join(&mut self) {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// The part of a [`PeerHandle`] a signaling task needs.
#[derive(Clone)]
pub struct Negotiator {
    cmds: mpsc::UnboundedSender<PeerCmd>,
}

impl Negotiator {
    pub async fn accept_offer(&self, sdp: String) -> Result<String, PeerError> {
        let (reply, rx) = oneshot::channel();
        self.cmds
            .send(PeerCmd::AcceptOffer { sdp, reply })
            .map_err(|_| PeerError::Gone)?;
        rx.await.map_err(|_| PeerError::Gone)?
    }

    pub fn add_remote_candidate(&self, candidate: String) {
        let _ = self.cmds.send(PeerCmd::RemoteCandidate(candidate));
    }
}

enum Wakeup {
    Stop,
    Cmd(PeerCmd),
    Readable,
    Timer,
}

struct PeerTask {
    peer: Peer<tokio::net::UdpSocket>,
    cmds: mpsc::UnboundedReceiver<PeerCmd>,
    state: State,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
}

/// What the task keeps of str0m's events.
struct State {
    name: String,
    media: Option<Publisher>,
    stats: Arc<Mutex<RecvStats>>,
    connected: bool,
}

impl PeerTask {
    async fn run(mut self) {
        let mut timeout = self.peer.drain(&mut self.state);
        loop {
            let mut wake = match timeout {
                Ok(t) => t,
                Err(e) => {
                    warn!(peer = %self.state.name, "str0m: {e}");
                    break;
                }
            };
            let connected = self.state.connected;
            if !connected {
                // Until connected, tick often: ICE checks are paced by
                // timeouts str0m only reports once its agent has started.
                wake = wake.min(Instant::now() + Duration::from_millis(20));
            }
            if let Some(m) = &self.state.media {
                if connected {
                    wake = wake.min(m.next_due());
                }
            }
            if *self.stop.borrow() {
                break;
            }
            let wakeup = tokio::select! {
                biased;
                _ = self.stop.changed() => Wakeup::Stop,
                cmd = self.cmds.recv() => cmd.map_or(Wakeup::Stop, Wakeup::Cmd),
                r = self.peer.socket().readable() => match r {
                    Ok(()) => Wakeup::Readable,
                    Err(e) => {
                        warn!(peer = %self.state.name, "socket: {e}");
                        Wakeup::Stop
                    }
                },
                _ = tokio::time::sleep_until(wake.into()) => Wakeup::Timer,
            };
            match wakeup {
                Wakeup::Stop => break,
                Wakeup::Cmd(cmd) => self.command(cmd),
                Wakeup::Readable => {
                    if let Err(e) = self.peer.receive(&mut self.state) {
                        debug!(peer = %self.state.name, "receive: {e}");
                    }
                }
                Wakeup::Timer => {}
            }
            let now = Instant::now();
            if self.state.connected && self.shared.sending.load(Ordering::Relaxed) {
                if let Some(m) = &mut self.state.media {
                    m.send_due(&mut self.peer.rtc, now);
                }
            }
            // Sends what the media writes queued, in one batch with
            // whatever str0m's timers add.
            timeout = self.peer.tick(now, &mut self.state);
        }
        self.peer.rtc.disconnect();
        let _ = self.peer.drain(&mut self.state);
        trace!(peer = %self.state.name, "stopped");
    }

    fn command(&mut self, cmd: PeerCmd) {
        match cmd {
            PeerCmd::AcceptOffer { sdp, reply } => {
                let rtc = &mut self.peer.rtc;
                let r = SdpOffer::from_sdp_string(&sdp)
                    .map_err(PeerError::from)
                    .and_then(|o| rtc.sdp_api().accept_offer(o).map_err(PeerError::from))
                    .map(|a| a.to_sdp_string());
                let _ = reply.send(r);
            }
            PeerCmd::RemoteCandidate(c) => match parse_candidate(&c) {
                Ok(c) => self.peer.rtc.add_remote_candidate(c),
                Err(e) => debug!(peer = %self.state.name, "ignored candidate: {e}"),
            },
        }
    }
}

impl Handler for State {
    fn event(&mut self, e: Event) {
        match e {
            Event::Connected => {
                self.connected = true;
                self.stats.lock().connected_at = Some(Instant::now());
                debug!(peer = %self.name, "connected");
            }
            Event::RtpPacket(p) => {
                let stamp = payload::read_stamp(&p.payload).ok();
                let wire = p.payload.len() + p.header.header_len;
                self.stats.lock().on_packet(stamp, wire, p.timestamp);
            }
            Event::KeyframeRequest(r) => {
                if let Some(m) = &mut self.media {
                    m.keyframe_requested(r.mid, r.rid);
                }
            }
            Event::IceConnectionStateChange(s) => {
                trace!(peer = %self.name, "ICE {s:?}");
            }
            _ => {}
        }
    }

    fn send(&mut self, t: &Transmit) -> bool {
        // Load stays on this machine: never send off loopback, whatever
        // candidates a server announces.
        let ok = t.destination.ip().is_loopback();
        if !ok {
            trace!(peer = %self.name, to = %t.destination, "not sent: off loopback");
        }
        ok
    }

    fn receive(&mut self, source: SocketAddr, _datagram: &[u8]) -> bool {
        let mut stats = self.stats.lock();
        if stats.remote.is_none() {
            stats.remote = Some(source);
        }
        true
    }
}

/// One outgoing encoding.
struct Layer {
    rid: Option<Rid>,
    stream: StreamId,
    seq: u32,
    kbps: f64,
    want_key: bool,
    frames_since_key: u64,
    picture_id: u16,
}

/// The publisher's media clock: Opus every 20 ms, a VP8 frame every
/// 1/fps on each layer.
struct Publisher {
    spec: PublishSpec,
    audio_mid: Mid,
    video_mid: Mid,
    audio_pt: Option<Pt>,
    video_pt: Option<Pt>,
    audio_seq: u32,
    audio_stream: StreamId,
    layers: Vec<Layer>,
    next_audio: Instant,
    next_frame: Instant,
    frame: u64,
    sent: Arc<Mutex<SentStats>>,
    started: Instant,
}

impl Publisher {
    fn new(
        spec: PublishSpec,
        audio_mid: Mid,
        video_mid: Mid,
        rtc: &Rtc,
        sent: Arc<Mutex<SentStats>>,
    ) -> Self {
        let pt = |c: Codec| {
            rtc.codec_config()
                .find(|p| p.spec().codec == c)
                .map(|p| p.pt())
        };
        let layers: Vec<Layer> = if spec.simulcast {
            (0..3)
                .map(|i| Layer {
                    rid: Some(Rid::from(RIDS[i])),
                    stream: StreamId::video(spec.index, i as u32),
                    seq: 0,
                    kbps: f64::from(spec.video_kbps) * LAYER_SHARE[i],
                    want_key: true,
                    frames_since_key: 0,
                    picture_id: 0,
                })
                .collect()
        } else {
            vec![Layer {
                rid: None,
                stream: StreamId::video(spec.index, 2),
                seq: 0,
                kbps: f64::from(spec.video_kbps),
                want_key: true,
                frames_since_key: 0,
                picture_id: 0,
            }]
        };
        let now = Instant::now();
        Self {
            audio_stream: StreamId::audio(spec.index),
            spec,
            audio_mid,
            video_mid,
            audio_pt: pt(Codec::Opus),
            video_pt: pt(Codec::Vp8),
            audio_seq: 0,
            layers,
            next_audio: now,
            next_frame: now,
            frame: 0,
            sent,
            started: now,
        }
    }

    fn next_due(&self) -> Instant {
        self.next_audio.min(self.next_frame)
    }

    fn keyframe_requested(&mut self, mid: Mid, rid: Option<Rid>) {
        if mid != self.video_mid {
            return;
        }
        for l in &mut self.layers {
            if rid.is_none() || l.rid == rid {
                l.want_key = true;
            }
        }
    }

    fn frame_interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.spec.fps.max(1)))
    }

    /// Size of a delta frame so that, with a keyframe every interval, the
    /// layer averages its bitrate.
    fn delta_bytes(&self, kbps: f64) -> f64 {
        let fps = f64::from(self.spec.fps.max(1));
        let gop = (self.spec.keyframe_interval.as_secs_f64() * fps).max(1.0);
        kbps * 125.0 * gop / fps / (gop - 1.0 + KEYFRAME_FACTOR)
    }

    /// Write the audio and video now due; what str0m makes of them leaves
    /// with the peer's next drain.
    fn send_due(&mut self, rtc: &mut Rtc, now: Instant) {
        while self.next_audio <= now {
            self.next_audio += AUDIO_INTERVAL;
            self.send_audio(rtc, now);
        }
        if self.next_frame <= now {
            // Late by more than a frame (overload): skip, don't burst.
            let iv = self.frame_interval();
            while self.next_frame <= now {
                self.next_frame += iv;
            }
            self.send_frame(rtc, now);
        }
    }

    fn send_audio(&mut self, rtc: &mut Rtc, now: Instant) {
        let Some(pt) = self.audio_pt else { return };
        let seq = self.audio_seq;
        self.audio_seq += 1;
        let mut p = payload::opus_payload(OPUS_BYTES);
        payload::write_stamp(
            &mut p,
            Stamp {
                stream: self.audio_stream,
                seq,
                sent_us: payload::micros_at(Instant::now()),
            },
        );
        let len = p.len();
        let ts = (u64::from(seq) * 960) as u32;
        let ext = ExtensionValues {
            audio_level: Some(-30),
            voice_activity: Some(true),
            ..Default::default()
        };
        let mut api = rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(self.audio_mid, None) else {
            return;
        };
        tx.write_rtp(RtpWrite::new(pt, u64::from(seq).into(), ts, now, p).ext_vals(ext));
        let mut s = self.sent.lock();
        s.last_seq.insert(self.audio_stream, seq);
        s.packets += 1;
        s.bytes += len as u64;
    }

    fn send_frame(&mut self, rtc: &mut Rtc, now: Instant) {
        let Some(pt) = self.video_pt else { return };
        let frame = self.frame;
        self.frame += 1;
        let ts = (frame * 90_000 / u64::from(self.spec.fps.max(1))) as u32;
        let gop = (self.spec.keyframe_interval.as_secs_f64() * f64::from(self.spec.fps)).max(1.0);
        let mut sent = self.sent.lock();
        for i in 0..self.layers.len() {
            let delta = self.delta_bytes(self.layers[i].kbps);
            let l = &mut self.layers[i];
            let key = l.want_key || l.frames_since_key as f64 + 1.0 >= gop;
            if key {
                l.want_key = false;
                l.frames_since_key = 0;
            } else {
                l.frames_since_key += 1;
            }
            let bytes = if key { delta * KEYFRAME_FACTOR } else { delta };
            l.picture_id = (l.picture_id + 1) & 0x7fff;
            let sizes = payload::split_frame(bytes as usize);
            let last = sizes.len() - 1;
            let mut api = rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(self.video_mid, l.rid) else {
                continue;
            };
            for (k, size) in sizes.into_iter().enumerate() {
                let mut p = payload::vp8_packet(size, k == 0, key, l.picture_id);
                let seq = l.seq;
                l.seq += 1;
                payload::write_stamp(
                    &mut p,
                    Stamp {
                        stream: l.stream,
                        seq,
                        sent_us: payload::micros_at(Instant::now()),
                    },
                );
                sent.packets += 1;
                sent.bytes += p.len() as u64;
                tx.write_rtp(
                    RtpWrite::new(pt, u64::from(seq).into(), ts, now, p)
                        .marker(k == last)
                        .nackable(true),
                );
                sent.last_seq.insert(l.stream, seq);
            }
        }
        if frame == 0 {
            debug!(
                layers = self.layers.len(),
                after_ms = self.started.elapsed().as_millis() as u64,
                "first video frame"
            );
        }
    }
}
