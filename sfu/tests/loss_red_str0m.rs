//! Media under packet loss, and Opus RED towards subscribers without RED,
//! end to end over loopback UDP with str0m client peers in RTP mode.
//!
//! Loss is injected in the clients' own network loops: every 10th media RTP
//! datagram (by the stream's main payload type, so never STUN, DTLS, RTCP or
//! RTX retransmissions) is dropped, on the publisher's way out (uplink) or
//! on the subscriber's way in (downlink). The subscriber must still end up
//! with every sequence number: uplink losses are repaired by the SFU NACKing
//! the publisher, downlink losses by the SFU answering the subscriber's
//! NACKs with RTX from its send buffer.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::str0m_client::{self, answer_renegotiation, run_for, run_until};
use convene_peer::Handler;
use convene_sfu::{SfuConfig, SfuEvent, SfuHandle, VideoQuality};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::Transmit;
use str0m::rtp::RtpWrite;
use str0m::{Event, Rtc, RtcConfig};
use tokio::sync::broadcast;

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

impl Handler for Seen {
    fn event(&mut self, event: Event) {
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

    fn send(&mut self, t: &Transmit) -> bool {
        !self.loss_out.drop(&t.contents)
    }

    fn receive(&mut self, _source: SocketAddr, datagram: &[u8]) -> bool {
        !self.loss_in.drop(datagram)
    }
}

type Client = str0m_client::Client<Seen>;

fn client(config: RtcConfig) -> Client {
    let seen = Seen {
        received: Vec::new(),
        keyframe_wanted: true,
        loss_out: Loss::new(10),
        loss_in: Loss::new(10),
        egress_nacks: 0,
        egress_rr: false,
        ingress_nacks: 0,
        ingress_sr: false,
    };
    Client::new(
        config.set_stats_interval(Some(Duration::from_millis(200))),
        seen,
    )
}

fn red_of(c: &Client) -> Option<Pt> {
    c.peer
        .rtc
        .codec_config()
        .find(|p| p.spec().codec == Codec::Opus)
        .and_then(|p| p.red())
}

/// The highest sequence number `c` has received.
fn newest_seq(c: &Client) -> u64 {
    c.seen.received.iter().map(|r| r.seq).max().unwrap()
}

fn write(c: &mut Client, mid: Mid, w: RtpWrite) {
    let mut api = c.peer.rtc.direct_api();
    let stream = api.stream_tx_by_mid(mid, None).expect("tx stream");
    stream.write_rtp(w);
    c.drain();
}

/// Join `c` with one send-only m-line of `kind` (or only a data channel);
/// returns the m-line.
async fn join(
    handle: &SfuHandle,
    room: &str,
    id: &str,
    c: &mut Client,
    kind: Option<MediaKind>,
) -> Option<Mid> {
    str0m_client::join(handle, room, id, c, |change| match kind {
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
    .await
}

/// Subscribe `sub` and answer the SFU's renegotiation offer.
async fn subscribe(
    handle: &SfuHandle,
    events: &mut broadcast::Receiver<SfuEvent>,
    room: &str,
    id: &str,
    c: &mut Client,
    track: &str,
) {
    handle
        .subscribe(room, id, &[track.to_string()], VideoQuality::High)
        .await
        .unwrap();
    answer_renegotiation(handle, events, room, id, c, Duration::from_secs(10)).await;
}

/// Wait (pumping both peers, blocking: these tests have few packets) until
/// the SFU announces the publisher's track.
fn wait_published(
    events: &mut broadcast::Receiver<SfuEvent>,
    clients: &mut [&mut Client],
) -> String {
    let mut track = None;
    run_until(
        Duration::from_secs(20),
        "track published",
        clients,
        |_, _| {},
        |_| {
            while let Ok(e) = events.try_recv() {
                if let SfuEvent::TrackPublished { track: t, .. } = e {
                    track = Some(t.track_id);
                }
            }
            track.is_some()
        },
    );
    track.unwrap()
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
    fn step(&mut self, publisher: &mut Client, now: Instant) {
        if now < self.next {
            return;
        }
        self.next = now + Duration::from_millis(33);
        let pt = publisher.pt_of(Codec::Vp8);
        let key = std::mem::take(&mut publisher.seen.keyframe_wanted);
        for k in 0..3u8 {
            let mut payload = vec![
                if k == 0 { 0x10 } else { 0x00 },
                if key { 0x00 } else { 0x01 },
            ];
            payload.resize(1000, k);
            let w = RtpWrite::new(pt, self.seq.into(), self.frame * 3000, now, payload)
                .marker(k == 2)
                .nackable(true);
            write(publisher, self.mid, w);
            self.seq += 1;
        }
        self.frame += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_loss_is_repaired_by_nacks_to_the_publisher() {
    tokio::time::timeout(Duration::from_secs(120), lossy(true, false))
        .await
        .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downlink_loss_is_repaired_with_rtx_from_the_sfu() {
    tokio::time::timeout(Duration::from_secs(120), lossy(false, true))
        .await
        .expect("test timed out");
}

async fn lossy(uplink: bool, downlink: bool) {
    common::init_log();
    let (sfu, handle) = convene_sfu::start(SfuConfig::for_tests()).await.unwrap();
    let mut events = handle.events();
    let room = "lossy";

    let mut publisher = client(Rtc::builder());
    let mid = join(&handle, room, "pub", &mut publisher, Some(MediaKind::Video))
        .await
        .unwrap();
    let mut subscriber = client(Rtc::builder());
    join(&handle, room, "sub", &mut subscriber, None).await;
    let track = wait_published(&mut events, &mut [&mut publisher, &mut subscriber]);

    let mut source = Vp8Source {
        mid,
        seq: 1000,
        frame: 0,
        next: Instant::now(),
    };
    subscribe(&handle, &mut events, room, "sub", &mut subscriber, &track).await;
    let mut clients = [&mut publisher, &mut subscriber];
    let step = |c: &mut [&mut Client], now| source.step(c[0], now);
    let mut step = step;

    // Warm up without loss: the subscriber starts at a keyframe.
    run_until(
        Duration::from_secs(20),
        "first packets at the subscriber",
        &mut clients,
        &mut step,
        |c| c[1].seen.received.len() >= 30,
    );
    let vp8_pub = clients[0].pt_of(Codec::Vp8);
    let vp8_sub = clients[1].pt_of(Codec::Vp8);
    clients[0].seen.loss_out.pt = Some(*vp8_pub);
    clients[1].seen.loss_in.pt = Some(*vp8_sub);
    clients[0].seen.loss_out.on = uplink;
    clients[1].seen.loss_in.on = downlink;
    let window_start = newest_seq(clients[1]);

    // 10 % loss until 30 packets are gone (about 300 packets, 3.3 s).
    run_until(
        Duration::from_secs(40),
        "30 packets dropped",
        &mut clients,
        &mut step,
        |c| c[0].seen.loss_out.dropped + c[1].seen.loss_in.dropped >= 30,
    );
    clients[0].seen.loss_out.on = false;
    clients[1].seen.loss_in.on = false;
    let window_end = newest_seq(clients[1]);
    assert!(
        window_end >= window_start + 200,
        "{window_start}..{window_end}"
    );

    // Every sequence number of the lossy window arrives, late or not.
    let missing = |c: &Client| -> Vec<u64> {
        let got: BTreeSet<u64> = c.seen.received.iter().map(|r| r.seq).collect();
        (window_start..=window_end)
            .filter(|s| !got.contains(s))
            .collect()
    };
    let end = Instant::now() + Duration::from_secs(30);
    while !missing(clients[1]).is_empty() && Instant::now() < end {
        run_for(Duration::from_millis(50), &mut clients, &mut step);
    }
    let gaps = missing(clients[1]);
    assert!(gaps.is_empty(), "never received: {gaps:?}");
    let pub_dropped = clients[0].seen.loss_out.dropped;
    let sub_dropped = clients[1].seen.loss_in.dropped;

    // The repairs are visible in the SFU's metrics and the peers' stats
    // (stats events come every second: wait for them).
    let m = sfu.metrics().clone();
    run_until(
        Duration::from_secs(20),
        "NACK counters",
        &mut clients,
        &mut step,
        |c| {
            let up = !uplink || (m.nacks_sent.get() > 0 && c[0].seen.egress_nacks > 0);
            let down = !downlink || (m.nacks.get() > 0 && c[1].seen.ingress_nacks > 0);
            up && down && c[1].seen.ingress_sr && c[0].seen.egress_rr
        },
    );
    // RTCP both ways: the subscriber got sender reports for the forwarded
    // stream (also tagged on its packets), the publisher receiver reports.
    assert!(clients[1]
        .seen
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
        clients[0].seen.egress_nacks,
        clients[1].seen.ingress_nacks,
        m.packets_received.get(),
        m.bytes_received.get(),
        m.packets_sent.get(),
        m.bytes_sent.get(),
        m.packets_forwarded.get(),
    );
    sfu.shutdown().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_is_unwrapped_for_subscribers_without_red() {
    tokio::time::timeout(Duration::from_secs(120), red())
        .await
        .expect("test timed out");
}

async fn red() {
    common::init_log();
    let (sfu, handle) = convene_sfu::start(SfuConfig::for_tests()).await.unwrap();
    let mut events = handle.events();
    let room = "red";
    let with_red = || Rtc::builder().enable_opus(true, true);

    let mut publisher = client(with_red());
    let mid = join(&handle, room, "pub", &mut publisher, Some(MediaKind::Audio))
        .await
        .unwrap();
    let mut plain = client(Rtc::builder());
    join(&handle, room, "plain", &mut plain, None).await;
    let mut redsub = client(with_red());
    join(&handle, room, "redsub", &mut redsub, None).await;
    let track = wait_published(&mut events, &mut [&mut publisher, &mut plain, &mut redsub]);
    subscribe(&handle, &mut events, room, "plain", &mut plain, &track).await;
    subscribe(&handle, &mut events, room, "redsub", &mut redsub, &track).await;

    let opus = publisher.pt_of(Codec::Opus);
    let red_pt = red_of(&publisher).expect("publisher negotiated RED");
    // Frame n's Opus bytes: a TOC byte and the frame number.
    let frame = |n: u32| -> Vec<u8> {
        let mut f = vec![0xfc];
        f.extend_from_slice(&n.to_be_bytes());
        f
    };
    // Every 10th packet is malformed (its redundant block overruns).
    let malformed = |n: u32| n % 10 == 9;
    let mut n = 0u32;
    let mut next = Instant::now();
    let mut sent: HashMap<u64, (u32, Vec<u8>)> = HashMap::new();
    let mut clients = [&mut publisher, &mut plain, &mut redsub];
    run_until(
        Duration::from_secs(40),
        "audio at both subscribers",
        &mut clients,
        |c, now| {
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
                c[0],
                mid,
                RtpWrite::new(red_pt, seq.into(), n * 960, now, payload),
            );
            n += 1;
        },
        |c| c[1].seen.received.len() >= 60 && c[2].seen.received.len() >= 60,
    );

    // Without RED: Opus only, exactly each well-formed packet's primary.
    let plain_opus = clients[1].pt_of(Codec::Opus);
    assert_eq!(red_of(clients[1]), None, "plain subscriber has no RED");
    let mut plain_frames = Vec::new();
    for r in &clients[1].seen.received {
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
    let sub_red = red_of(clients[2]).expect("RED negotiated with redsub");
    let mut red_malformed = 0;
    let first_seq = clients[2].seen.received[0].seq;
    let (first_n, _) = sent
        .values()
        .find(|(_, p)| *p == clients[2].seen.received[0].payload)
        .expect("first RED packet was sent");
    for r in &clients[2].seen.received {
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
    let dropped = sfu.metrics().dropped.malformed_red.get();
    assert!(dropped >= 3, "malformed_red drops counted: {dropped}");
    sfu.shutdown().await;
}
