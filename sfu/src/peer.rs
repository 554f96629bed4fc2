//! One participant's WebRTC session: a str0m `Rtc` in RTP mode plus the
//! negotiation bookkeeping the SFU needs around it.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use convene_proto::sfu::{DisconnectReason, Grants, TrackSource, TrackSources};
use str0m::bwe::Bitrate;
use str0m::channel::ChannelId;
use str0m::format::{Codec as StrCodec, PayloadParams};
use str0m::media::{MediaKind, Mid, Pt, Rid};
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};

use crate::config::SfuConfig;
use crate::core::Codec;
use crate::error::SfuError;
use crate::negotiation::Negotiation;

/// Remote addresses remembered per participant (ICE candidate pairs that
/// reached us; a client has a handful).
const MAX_PATHS: usize = 8;

/// Declared track sources remembered per participant: as many as the
/// m-lines an offer may have (`--sfu-max-offer-media-lines` default).
const MAX_SOURCES: usize = 512;

pub struct Peer {
    pub room: String,
    pub participant_id: String,
    pub grants: Grants,
    pub rtc: Rtc,
    pub ufrag: String,
    /// Local candidates, for picking the `destination` of received packets.
    pub local_addrs: Vec<SocketAddr>,
    /// Remote addresses that passed a STUN check for us, with the local
    /// address each sent to (replies must leave from it). Bounded.
    paths: Vec<(SocketAddr, Option<IpAddr>)>,
    pub negotiation: Negotiation,
    pub joined_at: Instant,
    pub ice_connected_at: Option<Instant>,
    pub connected: bool,
    pub next_timeout: Instant,
    pub channel: Option<ChannelId>,
    /// Set when the session must end; the worker removes the peer.
    pub dead: Option<DisconnectReason>,
    /// Last seen NACK count per outgoing m-line (str0m reports totals).
    pub nacks_seen: Vec<(Mid, u64)>,
    /// Last seen count of NACKs sent per incoming stream.
    pub nacks_sent: Vec<(Mid, Option<Rid>, u64)>,
    /// RTX cache age per outgoing video m-line (`core::rtx`).
    pub rtx_ages: Vec<(Mid, Duration)>,
    /// A media packet was written to this participant as a subscriber
    /// (`MediaStarted` was emitted).
    pub media_started: bool,
    /// RTP was written to this subscriber and not yet released to str0m's
    /// pacer (`Worker::release_writes`).
    pub writes_pending: bool,
    /// What its m-lines carry, as its offers declared (bounded by the
    /// offer's m-line limit).
    sources: Vec<(Mid, TrackSource)>,
}

impl Peer {
    pub fn new(
        room: String,
        participant_id: String,
        grants: Grants,
        config: &SfuConfig,
        local_addrs: Vec<SocketAddr>,
        now: Instant,
    ) -> Result<Self, SfuError> {
        let creds = IceCreds::new();
        let ufrag = creds.ufrag.clone();
        let rtc = RtcConfig::new()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            // RED rides through to subscribers that have it; the others get
            // the primary Opus block (see `core::red`).
            .enable_opus(true, config.opus_red)
            .set_local_ice_credentials(creds)
            .enable_bwe(Some(Bitrate::kbps(config.bwe_initial_kbps)))
            .set_send_buffer_video(config.send_buffer_video)
            .set_send_buffer_audio(config.send_buffer_audio.max(1))
            .set_reordering_size_video(config.reorder_buffer_video)
            .set_stats_interval(Some(Duration::from_secs(1)))
            .build(now);
        let mut peer = Self {
            room,
            participant_id,
            grants,
            rtc,
            ufrag,
            local_addrs: local_addrs.clone(),
            paths: Vec::new(),
            sources: Vec::new(),
            negotiation: Negotiation::default(),
            joined_at: now,
            ice_connected_at: None,
            connected: false,
            next_timeout: now,
            channel: None,
            dead: None,
            nacks_seen: Vec::new(),
            nacks_sent: Vec::new(),
            rtx_ages: Vec::new(),
            media_started: false,
            writes_pending: false,
        };
        for addr in local_addrs {
            let c = Candidate::host(addr, "udp")
                .map_err(|e| SfuError::Config(format!("candidate {addr}: {e}")))?;
            peer.rtc.add_local_candidate(c);
        }
        Ok(peer)
    }

    /// The local candidate a datagram from `source` to `local_ip` arrived
    /// on. str0m only accepts STUN for a known local candidate; when the
    /// address it was sent to is not one (an announced address behind 1:1
    /// NAT, or the kernel did not say), the first announced address of the
    /// same family stands in for it.
    pub fn destination_for(&self, source: SocketAddr, local_ip: Option<IpAddr>) -> SocketAddr {
        if let Some(a) = local_ip.and_then(|ip| self.local_addrs.iter().find(|a| a.ip() == ip)) {
            return *a;
        }
        self.local_addrs
            .iter()
            .find(|a| a.is_ipv4() == source.is_ipv4())
            .or(self.local_addrs.first())
            .copied()
            .unwrap_or(source)
    }

    /// Remember a remote address that passed our STUN routing; returns one
    /// that had to go to keep the list bounded.
    pub fn add_path(&mut self, remote: SocketAddr) -> Option<SocketAddr> {
        if self.paths.iter().any(|(r, _)| *r == remote) {
            return None;
        }
        let evicted = (self.paths.len() >= MAX_PATHS).then(|| self.paths.remove(0).0);
        self.paths.push((remote, None));
        evicted
    }

    pub fn forget_path(&mut self, remote: SocketAddr) {
        self.paths.retain(|(r, _)| *r != remote);
    }

    pub fn paths(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.paths.iter().map(|(r, _)| *r)
    }

    /// The local address `remote`'s latest datagram was sent to.
    pub fn note_local_ip(&mut self, remote: SocketAddr, local_ip: Option<IpAddr>) {
        if let Some(p) = self.paths.iter_mut().find(|(r, _)| *r == remote) {
            if local_ip.is_some() {
                p.1 = local_ip;
            }
        }
    }

    /// The source address for a datagram to `remote`: the one it sends to.
    pub fn local_ip_for(&self, remote: SocketAddr) -> Option<IpAddr> {
        self.paths
            .iter()
            .find(|(r, _)| *r == remote)
            .and_then(|(_, l)| *l)
    }

    /// True when an offer of ours is due (see [`Negotiation::wants_offer`]).
    pub fn needs_negotiation(&self) -> bool {
        self.negotiation.wants_offer(self.connected)
    }

    /// The forwarding codec class for an incoming payload type.
    /// Record the sources an offer declared (mids it does not name keep
    /// theirs; mids that are not a valid mid are ignored).
    pub fn declare_sources(&mut self, sources: &TrackSources) {
        for (mid, source) in sources {
            if mid.is_empty() || mid.len() > 16 {
                continue;
            }
            let mid = Mid::from(mid.as_str());
            let full = self.sources.len() >= MAX_SOURCES;
            match self.sources.iter_mut().find(|(m, _)| *m == mid) {
                Some((_, s)) => *s = *source,
                None if !full => self.sources.push((mid, *source)),
                None => {}
            }
        }
    }

    /// What m-line `mid` carries (`Unknown` when never declared).
    pub fn source_of(&self, mid: Mid) -> TrackSource {
        self.sources
            .iter()
            .find(|(m, _)| *m == mid)
            .map_or(TrackSource::Unknown, |(_, s)| *s)
    }

    pub fn codec_for_pt(&self, pt: Pt) -> Codec {
        let cfg = self.rtc.codec_config();
        if let Some(p) = cfg.find(|p| p.pt() == pt) {
            return map_codec(p.spec().codec);
        }
        if cfg.find(|p| p.red() == Some(pt)).is_some() {
            return Codec::Red;
        }
        Codec::OtherVideo
    }

    /// Payload types this peer negotiated for `kind`, with their RED
    /// companions, to map against another peer's.
    pub fn params(&self, kind: MediaKind) -> Vec<PayloadParams> {
        self.rtc
            .codec_config()
            .params()
            .iter()
            .filter(|p| p.spec().codec.kind() == kind)
            .copied()
            .collect()
    }

    /// Publisher PT -> this peer's PT for every codec both negotiated.
    pub fn pt_map(&self, publisher_params: &[PayloadParams]) -> Vec<(Pt, Pt)> {
        let cfg = self.rtc.codec_config();
        let mut map = Vec::new();
        for p in publisher_params {
            if let Some(local) = cfg.match_params(*p) {
                map.push((p.pt(), local.pt()));
                if let (Some(a), Some(b)) = (p.red(), local.red()) {
                    map.push((a, b));
                }
            }
        }
        map
    }
}

fn map_codec(c: StrCodec) -> Codec {
    match c {
        StrCodec::Opus => Codec::Opus,
        StrCodec::Vp8 => Codec::Vp8,
        StrCodec::Vp9 => Codec::Vp9,
        StrCodec::H264 => Codec::H264,
        StrCodec::H265 => Codec::H265,
        StrCodec::Av1 => Codec::Av1,
        StrCodec::Red => Codec::Red,
        c if c.is_audio() => Codec::OtherAudio,
        _ => Codec::OtherVideo,
    }
}
