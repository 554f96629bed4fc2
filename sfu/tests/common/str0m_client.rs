//! str0m client peers for the end-to-end tests that write RTP themselves:
//! a [`Client`] is a `convene_peer::Peer` on loopback plus what the test
//! records from its events (the `Handler`), driven by polling loops that
//! block (these tests move few packets).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use convene_peer::{Handler, Peer};
use convene_sfu::{SfuEvent, SfuHandle};
use str0m::change::{SdpAnswer, SdpApi, SdpOffer};
use str0m::format::Codec;
use str0m::media::Pt;
use str0m::RtcConfig;
use tokio::sync::broadcast;

pub struct Client<H> {
    pub peer: Peer<UdpSocket>,
    /// What the test keeps of the client's events and datagrams.
    pub seen: H,
}

impl<H: Handler> Client<H> {
    pub fn new(config: RtcConfig, seen: H) -> Self {
        Self {
            peer: Peer::loopback(config).expect("client socket"),
            seen,
        }
    }

    /// Send what str0m has queued, hand its events to `seen`.
    pub fn drain(&mut self) {
        self.peer.drain(&mut self.seen).expect("poll");
    }

    /// Read what arrived, then let str0m's timers run.
    pub fn pump(&mut self) {
        self.peer.pump(&mut self.seen).expect("pump");
    }

    pub fn pt_of(&self, codec: Codec) -> Pt {
        self.peer
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .expect("codec negotiated")
            .pt()
    }
}

/// Join `c` with the m-lines (or data channel) `media` adds to its offer;
/// returns what `media` returned.
pub async fn join<H: Handler, T>(
    handle: &SfuHandle,
    room: &str,
    id: &str,
    c: &mut Client<H>,
    media: impl FnOnce(&mut SdpApi<'_>) -> T,
) -> T {
    let mut change = c.peer.rtc.sdp_api();
    let added = media(&mut change);
    let (offer, pending) = change.apply().unwrap();
    let answer = handle
        .join(room, id, id, &offer.to_sdp_string(), Default::default())
        .await
        .unwrap();
    c.peer
        .rtc
        .sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    c.drain();
    added
}

/// Wait up to `wait` for the SFU's renegotiation offer to `id` and answer
/// it; returns the other events seen meanwhile.
pub async fn answer_renegotiation<H: Handler>(
    handle: &SfuHandle,
    events: &mut broadcast::Receiver<SfuEvent>,
    room: &str,
    id: &str,
    c: &mut Client<H>,
    wait: Duration,
) -> Vec<SfuEvent> {
    let mut passed = Vec::new();
    let offer = loop {
        match tokio::time::timeout(wait, events.recv())
            .await
            .expect("renegotiation offer in time")
            .unwrap()
        {
            SfuEvent::RenegotiationOffer {
                participant_id,
                offer_sdp,
                ..
            } if participant_id == id => break offer_sdp,
            e => passed.push(e),
        }
    };
    let answer = c
        .peer
        .rtc
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
        .unwrap();
    c.drain();
    handle
        .handle_answer(room, id, &answer.to_sdp_string())
        .await
        .unwrap();
    passed
}

/// Pump every client for `d`, calling `step` before each round.
pub fn run_for<H: Handler>(
    d: Duration,
    clients: &mut [&mut Client<H>],
    mut step: impl FnMut(&mut [&mut Client<H>], Instant),
) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        let now = Instant::now();
        step(clients, now);
        for c in clients.iter_mut() {
            c.pump();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
