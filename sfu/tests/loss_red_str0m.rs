//! Media under packet loss, and Opus RED towards subscribers without RED,
//! with str0m client peers in RTP mode on the virtual network and clock
//! (`convene_sfu::sim`): deterministic, no sockets, no sleeps.
//!
//! Loss is injected on the clients' side of the network: every 10th media
//! RTP datagram (by the stream's main payload type, so never STUN, DTLS,
//! RTCP or RTX retransmissions) is dropped, on the publisher's way out
//! (uplink) or on the subscriber's way in (downlink). The subscriber must
//! still end up with every sequence number: uplink losses are repaired by
//! the SFU NACKing the publisher, downlink losses by the SFU answering the
//! subscriber's NACKs with RTX from its send buffer.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use convene_sfu::sim::{ClientHook, SimNet};
use convene_sfu::{SfuConfig, SfuEvent};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::rtp::RtpWrite;
use str0m::{Event, Rtc, RtcConfig};

/// One step of the virtual clock.
const STEP: Duration = Duration::from_millis(2);

/// Drops every `every`-th RTP datagram of payload type `pt` while `on`.
struct Loss {
    pt: Option<u8>,
    every: u64,
    seen: u64,
    dropped: u64,
    on: bool,
}

impl Loss {
    fn new(every: u64) -> Self {
        Self {
            pt: None,
            every,
            seen: 0,
            dropped: 0,
            on: false,
        }
    }

    /// True when `d` is to be dropped: a media RTP packet (RFC 7983 first
    /// byte 128..=191, not an RTCP type, a real SSRC) of the watched PT.
    fn drop(&mut self, d: &[u8]) -> bool {
        let Some(pt) = self.pt else { return false };
        if !self.on || d.len() < 12 || !(128..=191).contains(&d[0]) {
            return false;
        }
        let rtcp = (64..=95).contains(&(d[1] & 0x7f));
        let ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        if rtcp || d[1] & 0x7f != pt || ssrc == 0 {
            return false;
        }
        self.seen += 1;
        if self.seen % self.every == 0 {
            self.dropped += 1;
            return true;
        }
        false
    }
}

struct Received {
    pt: Pt,
    seq: u64,
    payload: Vec<u8>,
    sender_report_seen: bool,
}

/// What a client saw, and the loss it injects.
struct Seen {
    received: Vec<Received>,
    keyframe_wanted: bool,
    loss_out: Loss,
    loss_in: Loss,
    /// Latest stats: NACKs this client received for its sent media, and
    /// whether a receiver report came back (publisher side).
    egress_nacks: u64,
    egress_rr: bool,
    /// NACKs this client sent, and whether a sender report came in
    /// (subscriber side).
    ingress_nacks: u64,
    ingress_sr: bool,
}

impl ClientHook for Seen {
    fn event(&mut self, event: &Event) {
        match event {
            Event::RtpPacket(p) => self.received.push(Received {
                pt: p.header.payload_type,
                seq: *p.seq_no,
                payload: p.payload.to_vec(),
                sender_report_seen: p.last_sender_info.is_some(),
            }),
            Event::KeyframeRequest(_) => self.keyframe_wanted = true,
            Event::MediaEgressStats(s) => {
                self.egress_nacks = self.egress_nacks.max(s.nacks);
                self.egress_rr |= s.remote.is_some();
            }
            Event::MediaIngressStats(s) => {
                self.ingress_nacks = self.ingress_nacks.max(s.nacks);
                self.ingress_sr |= s.remote.is_some();
            }
            _ => {}
        }
    }

    fn send(&mut self, datagram: &[u8]) -> bool {
        !self.loss_out.drop(datagram)
    }

    fn receive(&mut self, datagram: &[u8]) -> bool {
        !self.loss_in.drop(datagram)
    }
}

type Net = SimNet<Seen>;

fn seen() -> Seen {
    Seen {
        received: Vec::new(),
        keyframe_wanted: true,
        loss_out: Loss::new(10),
        loss_in: Loss::new(10),
        egress_nacks: 0,
        egress_rr: false,
        ingress_nacks: 0,
        ingress_sr: false,
    }
}

fn pt_of(rtc: &Rtc, codec: Codec) -> Pt {
    rtc.codec_config()
        .find(|p| p.spec().codec == codec)
        .expect("codec negotiated")
        .pt()
}

fn red_of(rtc: &Rtc) -> Option<Pt> {
    rtc.codec_config()
        .find(|p| p.spec().codec == Codec::Opus)
        .and_then(|p| p.red())
}

/// The highest sequence number `id` has received.
fn newest_seq(net: &Net, id: &str) -> u64 {
    net.client(id)
        .hook
        .received
        .iter()
        .map(|r| r.seq)
        .max()
        .unwrap()
}

fn write(net: &mut Net, id: &str, mid: Mid, w: RtpWrite) {
    let mut api = net.client_mut(id).rtc.direct_api();
    let stream = api.stream_tx_by_mid(mid, None).expect("tx stream");
    stream.write_rtp(w);
}

/// Join `id` with one send-only m-line of `kind` (or only a data channel);
/// returns the m-line.
fn join(
    net: &mut Net,
    room: &str,
    id: &str,
    config: RtcConfig,
    kind: Option<MediaKind>,
) -> Option<Mid> {
    let config = config.set_stats_interval(Some(Duration::from_millis(200)));
    net.join_with(room, id, config, seen(), |change| match kind {
        Some(k) => Some(change.add_media(
            k,
            Direction::SendOnly,
            Some(id.into()),
            Some("t".into()),
            None,
        )),
        None => {
            change.add_channel("convene".into());
            None
        }
    })
}

/// Step the virtual clock, calling `step` before each step, until `done`
/// or `deadline` of virtual time; panics with `what` on timeout.
fn run_until(
    net: &mut Net,
    room: &str,
    deadline: Duration,
    what: &str,
    mut step: impl FnMut(&mut Net),
    mut done: impl FnMut(&Net) -> bool,
) {
    let end = net.now + deadline;
    while !done(net) {
        assert!(net.now < end, "timed out: {what}");
        step(net);
        net.run_for(room, STEP, STEP);
    }
}

/// Step until the SFU announces a track; returns its id.
fn wait_published(net: &mut Net, room: &str) -> String {
    let published = |net: &Net| {
        net.seen.iter().find_map(|e| match e {
            SfuEvent::TrackPublished { track, .. } => Some(track.track_id.clone()),
            _ => None,
        })
    };
    run_until(
        net,
        room,
        Duration::from_secs(20),
        "track published",
        |_| {},
        |n| published(n).is_some(),
    );
    published(net).expect("published")
}

/// A VP8 publisher at 30 fps, three ~1 kB packets a frame, a keyframe
/// whenever one is requested.
struct Vp8Source {
    mid: Mid,
    seq: u64,
    frame: u32,
    next: Instant,
}

impl Vp8Source {
    fn step(&mut self, net: &mut Net) {
        let now = net.now;
        if now < self.next {
            return;
        }
        self.next = now + Duration::from_millis(33);
        let publisher = net.client_mut("pub");
        let pt = pt_of(&publisher.rtc, Codec::Vp8);
        let key = std::mem::take(&mut publisher.hook.keyframe_wanted);
        for k in 0..3u8 {
            let mut payload = vec![
                if k == 0 { 0x10 } else { 0x00 },
                if key { 0x00 } else { 0x01 },
            ];
            payload.resize(1000, k);
            let w = RtpWrite::new(pt, self.seq.into(), self.frame * 3000, now, payload)
                .marker(k == 2)
                .nackable(true);
            write(net, "pub", self.mid, w);
            self.seq += 1;
        }
        self.frame += 1;
    }
}

#[test]
fn uplink_loss_is_repaired_by_nacks_to_the_publisher() {
    lossy(true, false);
}

#[test]
fn downlink_loss_is_repaired_with_rtx_from_the_sfu() {
    lossy(false, true);
}

fn lossy(uplink: bool, downlink: bool) {
    let mut net: Net = SimNet::with_hooks(SfuConfig::for_tests());
    let room = "lossy";
    let mid = join(
        &mut net,
        room,
        "pub",
        Rtc::builder(),
        Some(MediaKind::Video),
    )
    .unwrap();
    join(&mut net, room, "sub", Rtc::builder(), None);
    let track = wait_published(&mut net, room);

    let mut source = Vp8Source {
        mid,
        seq: 1000,
        frame: 0,
        next: net.now,
    };
    net.subscribe(room, "sub", vec![track]);

    // Warm up without loss: the subscriber starts at a keyframe.
    run_until(
        &mut net,
        room,
        Duration::from_secs(20),
        "first packets at the subscriber",
        |n| source.step(n),
        |n| n.client("sub").hook.received.len() >= 30,
    );
    let vp8_pub = pt_of(&net.client("pub").rtc, Codec::Vp8);
    let vp8_sub = pt_of(&net.client("sub").rtc, Codec::Vp8);
    let p = &mut net.client_mut("pub").hook;
    p.loss_out.pt = Some(*vp8_pub);
    p.loss_out.on = uplink;
    let s = &mut net.client_mut("sub").hook;
    s.loss_in.pt = Some(*vp8_sub);
    s.loss_in.on = downlink;
    let window_start = newest_seq(&net, "sub");

    // 10 % loss until 30 packets are gone (about 300 packets, 3.3 s).
    let dropped =
        |n: &Net| n.client("pub").hook.loss_out.dropped + n.client("sub").hook.loss_in.dropped;
    run_until(
        &mut net,
        room,
        Duration::from_secs(40),
        "30 packets dropped",
        |n| source.step(n),
        |n| dropped(n) >= 30,
    );
    net.client_mut("pub").hook.loss_out.on = false;
    net.client_mut("sub").hook.loss_in.on = false;
    let window_end = newest_seq(&net, "sub");
    assert!(
        window_end >= window_start + 200,
        "{window_start}..{window_end}"
    );

    // Every sequence number of the lossy window arrives, late or not.
    let missing = |n: &Net| -> Vec<u64> {
        let got: BTreeSet<u64> = n
            .client("sub")
            .hook
            .received
            .iter()
            .map(|r| r.seq)
            .collect();
        (window_start..=window_end)
            .filter(|s| !got.contains(s))
            .collect()
    };
    let end = net.now + Duration::from_secs(30);
    while !missing(&net).is_empty() && net.now < end {
        source.step(&mut net);
        net.run_for(room, STEP, STEP);
    }
    let gaps = missing(&net);
    assert!(gaps.is_empty(), "never received: {gaps:?}");
    let pub_dropped = net.client("pub").hook.loss_out.dropped;
    let sub_dropped = net.client("sub").hook.loss_in.dropped;

    // The repairs are visible in the SFU's metrics and the peers' stats
    // (stats events come every 200 ms: wait for them).
    let m = net.metrics.clone();
    run_until(
        &mut net,
        room,
        Duration::from_secs(20),
        "NACK counters",
        |n| source.step(n),
        |n| {
            let (p, s) = (&n.client("pub").hook, &n.client("sub").hook);
            let up = !uplink || (m.nacks_sent.get() > 0 && p.egress_nacks > 0);
            let down = !downlink || (m.nacks.get() > 0 && s.ingress_nacks > 0);
            up && down && s.ingress_sr && p.egress_rr
        },
    );
    // RTCP both ways: the subscriber got sender reports for the forwarded
    // stream (also tagged on its packets), the publisher receiver reports.
    assert!(net
        .client("sub")
        .hook
        .received
        .iter()
        .any(|r| r.sender_report_seen));
    if !uplink {
        assert_eq!(pub_dropped, 0);
    }
    if !downlink {
        assert_eq!(sub_dropped, 0);
    }
    eprintln!(
        "uplink {uplink} downlink {downlink}: window {} packets, dropped up {pub_dropped} down {sub_dropped}; \
         SFU NACKs received {} sent {}; publisher saw {} NACKs, subscriber sent {}; \
         SFU UDP in {} pkts / {} B, out {} pkts / {} B, forwarded {}",
        window_end - window_start + 1,
        m.nacks.get(),
        m.nacks_sent.get(),
        net.client("pub").hook.egress_nacks,
        net.client("sub").hook.ingress_nacks,
        m.packets_received.get(),
        m.bytes_received.get(),
        m.packets_sent.get(),
        m.bytes_sent.get(),
        m.packets_forwarded.get(),
    );
}

/// RFC 2198 payload: one redundant block (the previous frame) and the
/// primary, both of payload type `opus`. `len_bias` corrupts the redundant
/// block's length.
fn red_payload(opus: u8, prev: &[u8], primary: &[u8], len_bias: u16) -> Vec<u8> {
    let len = prev.len() as u16 + len_bias;
    let offset = 960u16;
    let mut v = vec![
        0x80 | opus,
        (offset >> 6) as u8,
        (((offset & 0x3f) << 2) as u8) | ((len >> 8) as u8 & 0x03),
        len as u8,
        opus,
    ];
    v.extend_from_slice(prev);
    v.extend_from_slice(primary);
    v
}

#[test]
fn red_is_unwrapped_for_subscribers_without_red() {
    let mut net: Net = SimNet::with_hooks(SfuConfig::for_tests());
    let room = "red";
    let with_red = || Rtc::builder().enable_opus(true, true);

    let mid = join(&mut net, room, "pub", with_red(), Some(MediaKind::Audio)).unwrap();
    join(&mut net, room, "plain", Rtc::builder(), None);
    join(&mut net, room, "redsub", with_red(), None);
    let track = wait_published(&mut net, room);
    net.subscribe(room, "plain", vec![track.clone()]);
    net.subscribe(room, "redsub", vec![track]);

    let opus = pt_of(&net.client("pub").rtc, Codec::Opus);
    let red_pt = red_of(&net.client("pub").rtc).expect("publisher negotiated RED");
    // Frame n's Opus bytes: a TOC byte and the frame number.
    let frame = |n: u32| -> Vec<u8> {
        let mut f = vec![0xfc];
        f.extend_from_slice(&n.to_be_bytes());
        f
    };
    // Every 10th packet is malformed (its redundant block overruns).
    let malformed = |n: u32| n % 10 == 9;
    let mut n = 0u32;
    let mut next: Instant = net.now;
    let mut sent: HashMap<u64, (u32, Vec<u8>)> = HashMap::new();
    run_until(
        &mut net,
        room,
        Duration::from_secs(40),
        "audio at both subscribers",
        |net| {
            let now = net.now;
            if now < next {
                return;
            }
            next = now + Duration::from_millis(20);
            let prev = frame(n.wrapping_sub(1));
            let bias = if malformed(n) { 500 } else { 0 };
            let payload = red_payload(*opus, &prev, &frame(n), bias);
            let seq = 7000 + n as u64;
            sent.insert(seq, (n, payload.clone()));
            write(
                net,
                "pub",
                mid,
                RtpWrite::new(red_pt, seq.into(), n * 960, now, payload),
            );
            n += 1;
        },
        |n| {
            n.client("plain").hook.received.len() >= 60
                && n.client("redsub").hook.received.len() >= 60
        },
    );

    // Without RED: Opus only, exactly each well-formed packet's primary.
    let plain = net.client("plain");
    let plain_opus = pt_of(&plain.rtc, Codec::Opus);
    assert_eq!(red_of(&plain.rtc), None, "plain subscriber has no RED");
    let mut plain_frames = Vec::new();
    for r in &plain.hook.received {
        assert_eq!(r.pt, plain_opus);
        assert_eq!(r.payload.len(), 5, "primary block only: {:?}", r.payload);
        let f = u32::from_be_bytes(r.payload[1..5].try_into().unwrap());
        assert!(
            !malformed(f),
            "malformed RED packet {f} reached the plain subscriber"
        );
        plain_frames.push(f);
    }
    // With RED: the packets as sent, malformed ones too, on its RED PT.
    let redsub = net.client("redsub");
    let sub_red = red_of(&redsub.rtc).expect("RED negotiated with redsub");
    let mut red_malformed = 0;
    let first_seq = redsub.hook.received[0].seq;
    let (first_n, _) = sent
        .values()
        .find(|(_, p)| *p == redsub.hook.received[0].payload)
        .expect("first RED packet was sent");
    for r in &redsub.hook.received {
        assert_eq!(r.pt, sub_red);
        let n = first_n + (r.seq - first_seq) as u32;
        let (_, p) = &sent[&(7000 + n as u64)];
        assert_eq!(&r.payload, p, "RED packet {n} passed through untouched");
        red_malformed += usize::from(malformed(n));
    }
    assert!(
        red_malformed >= 3,
        "malformed RED reached the RED subscriber"
    );
    // The plain subscriber got every well-formed frame in its span.
    let (lo, hi) = (plain_frames[0], *plain_frames.last().unwrap());
    let want: Vec<u32> = (lo..=hi).filter(|f| !malformed(*f)).collect();
    assert_eq!(plain_frames, want);
    let dropped = net.metrics.dropped.malformed_red.get();
    assert!(dropped >= 3, "malformed_red drops counted: {dropped}");
}
