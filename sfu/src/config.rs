//! SFU configuration: every limit has a name, a default and a CLI flag.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::core::{CoreConfig, RtxCachePolicy};

/// Video packets kept per outgoing stream to answer subscriber NACKs with
/// RTX. LiveKit keeps 500: about 1.2 s of a 4 Mbit/s layer with 1200-byte
/// packets and several seconds of a low layer, enough for a few NACK rounds
/// at a few hundred ms RTT (str0m also drops entries older than 3 s).
pub const DEFAULT_SEND_BUFFER_VIDEO: usize = 500;
/// Audio packets kept per outgoing stream for RTX (LiveKit: 200, 4 s of
/// Opus at 20 ms). Forwarded audio is not marked nackable (browsers
/// negotiate no audio RTX), so today this cache stays empty.
pub const DEFAULT_SEND_BUFFER_AUDIO: usize = 200;

/// 8 MiB: about 7,000 MTU-sized datagrams, a keyframe burst to a few
/// hundred subscribers.
pub const DEFAULT_SOCKET_BUFFER: usize = 8 << 20;

fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Flags are prefixed `--sfu-` so they can be flattened into `convene up`,
/// except `--udp-port`, the one every deployment sets.
#[derive(clap::Args, Clone, Debug)]
pub struct SfuConfig {
    /// First UDP media port. Worker `i` owns port `udp_port + i` and
    /// multiplexes all media of its participants on it (open the range
    /// `udp_port .. udp_port + workers - 1`). 0 picks ephemeral ports.
    #[arg(
        long = "udp-port",
        env = "CONVENE_SFU_UDP_PORT",
        default_value_t = 7882
    )]
    pub udp_port: u16,

    /// Local address the UDP socket binds to.
    #[arg(long = "sfu-bind-ip", env = "CONVENE_SFU_BIND_IP", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind_ip: IpAddr,

    /// Addresses announced to clients as host candidates (comma separated).
    #[arg(
        long = "sfu-public-ip",
        env = "CONVENE_SFU_PUBLIC_IPS",
        value_delimiter = ',',
        default_value = "127.0.0.1"
    )]
    pub public_ips: Vec<IpAddr>,

    /// Worker threads rooms are sharded over.
    #[arg(long = "sfu-workers", env = "CONVENE_SFU_WORKERS", default_value_t = default_workers())]
    pub workers: usize,

    #[arg(long = "sfu-max-participants-per-room", default_value_t = 100)]
    pub max_participants_per_room: usize,

    /// Participants of one room a worker takes before the room's next
    /// participants go to the least loaded other worker, the room then
    /// spanning both (each packet crosses to each worker once). 0: a room
    /// never leaves its first worker.
    #[arg(long = "sfu-room-spread-after", default_value_t = 50)]
    pub room_spread_after: usize,

    /// Events the HTTP event stream keeps to replay to a client that
    /// reconnects (`Last-Event-ID`); one that missed more is told to reset.
    #[arg(long = "sfu-event-replay", default_value_t = 4096)]
    pub event_replay: usize,

    /// Packets (and keyframe requests) queued from one worker to another
    /// for a room across workers; past it they are dropped and counted.
    #[arg(long = "sfu-relay-queue", default_value_t = 8192)]
    pub relay_queue: usize,

    #[arg(long = "sfu-max-tracks-per-participant", default_value_t = 8)]
    pub max_tracks_per_participant: usize,

    /// m-sections an SDP offer may have; a longer offer is refused before
    /// str0m builds state for it. A client's offer repeats every m-line the
    /// SFU added for its subscriptions, so this must stay above what a full
    /// room gives one subscriber (two per other participant today).
    #[arg(long = "sfu-max-offer-media-lines", default_value_t = 512)]
    pub max_offer_media_lines: usize,

    /// Announced to publishers as REMB, capping what their encoder sends.
    #[arg(long = "sfu-max-publisher-bitrate-kbps", default_value_t = 4000)]
    pub max_publisher_bitrate_kbps: u64,

    /// Minimum spacing of keyframe requests per published encoding.
    #[arg(long = "sfu-pli-min-interval-ms", default_value_t = 500)]
    pub pli_min_interval_ms: u64,

    /// Video packets kept per outgoing stream to answer NACKs with RTX.
    #[arg(long = "sfu-send-buffer-video", default_value_t = DEFAULT_SEND_BUFFER_VIDEO)]
    pub send_buffer_video: usize,

    /// Audio packets kept per outgoing stream for RTX (at least 1).
    #[arg(long = "sfu-send-buffer-audio", default_value_t = DEFAULT_SEND_BUFFER_AUDIO)]
    pub send_buffer_audio: usize,

    /// Sent video packets are kept for RTX at least this long (ms), and
    /// `rtx-cache-rtt-factor` round trips when that is longer: the cache is
    /// sized by time as well as by `send-buffer-video`.
    #[arg(long = "sfu-rtx-cache-min-ms", default_value_t = 300)]
    pub rtx_cache_min_ms: u64,

    /// Round trips of history the RTX cache keeps (a NACK needs one to
    /// arrive, a lost retransmission another).
    #[arg(long = "sfu-rtx-cache-rtt-factor", default_value_t = 3)]
    pub rtx_cache_rtt_factor: u32,

    /// Upper bound of the RTX cache's age (ms), whatever receiver reports
    /// claim the round trip is.
    #[arg(long = "sfu-rtx-cache-max-ms", default_value_t = 3000)]
    pub rtx_cache_max_ms: u64,

    /// Negotiate Opus RED (RFC 2198) with clients that offer it. Subscribers
    /// without RED get the primary Opus block of a RED publisher's packets.
    #[arg(
        long = "sfu-opus-red",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub opus_red: bool,

    /// Incoming video packets held for reordering/NACK recovery.
    #[arg(long = "sfu-reorder-buffer-video", default_value_t = 250)]
    pub reorder_buffer_video: usize,

    /// Minimum spacing of active-speaker events per room.
    #[arg(long = "sfu-speaker-interval-ms", default_value_t = 300)]
    pub speaker_interval_ms: u64,

    /// Give up on a participant whose ICE does not connect within this time.
    #[arg(long = "sfu-ice-timeout-ms", default_value_t = 15_000)]
    pub ice_timeout_ms: u64,

    /// Give up on a participant whose DTLS does not complete within this
    /// time after ICE connected.
    #[arg(long = "sfu-dtls-timeout-ms", default_value_t = 10_000)]
    pub dtls_timeout_ms: u64,

    /// Video whose lowest layer does not fit a subscriber's bandwidth
    /// estimate for this long (ms) is paused for it; audio goes on, and the
    /// video resumes (at a keyframe) once it fits again. 0: never pause,
    /// the default: without probing before a resume, a subscriber whose
    /// estimate started below its need stayed paused (docs/architecture.md).
    #[arg(long = "sfu-video-pause-after-ms", default_value_t = 0)]
    pub video_pause_after_ms: u64,

    /// Starting egress estimate, so video does not begin at the lowest layer.
    #[arg(long = "sfu-bwe-initial-kbps", default_value_t = 1500)]
    pub bwe_initial_kbps: u64,

    /// Control commands (join, answer, subscribe...) queued per worker
    /// before callers are told to retry.
    #[arg(long = "sfu-worker-queue", default_value_t = 8192)]
    pub worker_queue: usize,

    /// Kernel receive buffer asked for each media socket (bytes). Above
    /// `net.core.rmem_max` it needs CAP_NET_ADMIN; the granted size is logged.
    #[arg(long = "sfu-socket-recv-buffer", default_value_t = DEFAULT_SOCKET_BUFFER)]
    pub socket_recv_buffer: usize,

    /// Kernel send buffer asked for each media socket (bytes): one fan-out
    /// of a keyframe must fit.
    #[arg(long = "sfu-socket-send-buffer", default_value_t = DEFAULT_SOCKET_BUFFER)]
    pub socket_send_buffer: usize,

    /// Pace forwarded media through str0m's leaky-bucket pacer. Off: media
    /// leaves with the fan-out that produced it and congestion is answered
    /// by the layer choice. On only to compare.
    #[arg(
        long = "sfu-pace-media",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub pace_media: bool,

    /// Serve the control API as HTTP/JSON on this (internal) address.
    /// Off unless set; needs `http_secret`.
    #[arg(
        id = "sfu_http_addr",
        long = "sfu-http-addr",
        env = "CONVENE_SFU_HTTP_ADDR"
    )]
    pub http_addr: Option<SocketAddr>,

    /// Shared secret callers of the HTTP control API send as a bearer token.
    #[arg(
        long = "sfu-http-secret",
        env = "CONVENE_SFU_HTTP_SECRET",
        hide_env_values = true
    )]
    pub http_secret: Option<Secret>,
}

/// A secret that never shows in `Debug` output (configs get logged).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl SfuConfig {
    /// Loopback-only settings for tests: ephemeral port, 127.0.0.1, one worker.
    pub fn for_tests() -> Self {
        Self {
            udp_port: 0,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            public_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            workers: 1,
            ..Self::default()
        }
    }

    pub fn pli_min_interval(&self) -> Duration {
        Duration::from_millis(self.pli_min_interval_ms)
    }

    pub(crate) fn rtx_cache(&self) -> RtxCachePolicy {
        RtxCachePolicy {
            min: Duration::from_millis(self.rtx_cache_min_ms),
            max: Duration::from_millis(self.rtx_cache_max_ms),
            rtt_factor: self.rtx_cache_rtt_factor,
        }
    }

    pub(crate) fn core(&self) -> CoreConfig {
        CoreConfig {
            pli_min_interval: self.pli_min_interval(),
            speaker_interval: Duration::from_millis(self.speaker_interval_ms),
            layer_timeout: Duration::from_millis(1500),
            max_tracks_per_participant: self.max_tracks_per_participant,
            video_pause_after: (self.video_pause_after_ms > 0)
                .then(|| Duration::from_millis(self.video_pause_after_ms)),
        }
    }
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            udp_port: 7882,
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            public_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            workers: default_workers(),
            max_participants_per_room: 100,
            room_spread_after: 50,
            relay_queue: 8192,
            event_replay: 4096,
            max_tracks_per_participant: 8,
            max_offer_media_lines: 512,
            max_publisher_bitrate_kbps: 4000,
            pli_min_interval_ms: 500,
            send_buffer_video: DEFAULT_SEND_BUFFER_VIDEO,
            send_buffer_audio: DEFAULT_SEND_BUFFER_AUDIO,
            rtx_cache_min_ms: 300,
            rtx_cache_rtt_factor: 3,
            rtx_cache_max_ms: 3000,
            opus_red: true,
            reorder_buffer_video: 250,
            speaker_interval_ms: 300,
            ice_timeout_ms: 15_000,
            dtls_timeout_ms: 10_000,
            video_pause_after_ms: 0,
            bwe_initial_kbps: 1500,
            worker_queue: 8192,
            socket_recv_buffer: DEFAULT_SOCKET_BUFFER,
            socket_send_buffer: DEFAULT_SOCKET_BUFFER,
            pace_media: false,
            http_addr: None,
            http_secret: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sfu: SfuConfig,
    }

    #[test]
    fn cli_defaults_match_default_impl() {
        let cli = Cli::parse_from(["x"]);
        let d = SfuConfig::default();
        assert_eq!(cli.sfu.udp_port, 7882);
        assert_eq!(cli.sfu.pli_min_interval_ms, d.pli_min_interval_ms);
        assert_eq!(cli.sfu.public_ips, d.public_ips);
        assert_eq!(cli.sfu.send_buffer_video, DEFAULT_SEND_BUFFER_VIDEO);
        assert_eq!(cli.sfu.send_buffer_audio, DEFAULT_SEND_BUFFER_AUDIO);
        assert_eq!(cli.sfu.send_buffer_video, d.send_buffer_video);
        assert_eq!(cli.sfu.send_buffer_audio, d.send_buffer_audio);
        assert_eq!(cli.sfu.rtx_cache_min_ms, d.rtx_cache_min_ms);
        assert_eq!(cli.sfu.rtx_cache_rtt_factor, d.rtx_cache_rtt_factor);
        assert_eq!(cli.sfu.rtx_cache_max_ms, d.rtx_cache_max_ms);
        assert_eq!(cli.sfu.room_spread_after, d.room_spread_after);
        assert_eq!(cli.sfu.relay_queue, d.relay_queue);
        assert!(cli.sfu.opus_red && d.opus_red);
        let cli = Cli::parse_from(["x", "--sfu-opus-red", "false"]);
        assert!(!cli.sfu.opus_red);
        let cli = Cli::parse_from(["x", "--sfu-public-ip", "10.0.0.1,192.0.2.7"]);
        assert_eq!(cli.sfu.public_ips.len(), 2);
        let cli = Cli::parse_from(["x", "--sfu-http-secret", "hunter2"]);
        assert!(!format!("{:?}", cli.sfu).contains("hunter2"));
    }
}
