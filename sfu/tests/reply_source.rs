//! The SFU answers from the address the client sent to.
//!
//! Bound to the wildcard address and announcing 127.0.0.3, the SFU gets a
//! strict client's checks on 127.0.0.3; the kernel would route the replies
//! to 127.0.0.1 out of 127.0.0.1, and a strict ICE stack (aiortc) drops
//! replies from an address it never sent to. Every datagram the client gets
//! must come from the announced candidate.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use convene_sfu::{SfuConfig, SfuEvent};
use str0m::change::SdpAnswer;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_leave_from_the_announced_address_with_a_wildcard_bind() {
    common::init_log();
    let announced = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let config = SfuConfig {
        bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        public_ips: vec![announced],
        ..SfuConfig::for_tests()
    };
    let (sfu, handle) = convene_sfu::start(config).await.unwrap();
    let mut events = handle.events();
    let candidate = SocketAddr::new(announced, sfu.local_addr().port());

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let addr = socket.local_addr().unwrap();
    let mut rtc = Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let mut change = rtc.sdp_api();
    change.add_channel("convene".into());
    let (offer, pending) = change.apply().unwrap();
    let answer = handle
        .join(
            "src",
            "strict",
            "strict",
            &offer.to_sdp_string(),
            Default::default(),
        )
        .await
        .unwrap();
    assert!(
        answer.contains(&format!("{} {} typ host", announced, candidate.port())),
        "the answer announces {candidate}: {answer}"
    );
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();

    let mut sources = Vec::new();
    let mut ice_connected = false;
    let mut channel_open = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 2048];
    while !(ice_connected && channel_open) && Instant::now() < deadline {
        let now = Instant::now();
        loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(_) => break,
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination);
                }
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Connected | IceConnectionState::Completed,
                )) => ice_connected = true,
                Output::Event(Event::ChannelOpen(..)) => channel_open = true,
                Output::Event(_) => {}
            }
        }
        while let Ok((n, source)) = socket.recv_from(&mut buf) {
            sources.push(source);
            // A strict client keeps only what its candidate pair expects.
            if source != candidate {
                continue;
            }
            if let Ok(contents) = buf[..n].try_into() {
                let _ = rtc.handle_input(Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: addr,
                        contents,
                    },
                ));
            }
        }
        rtc.handle_input(Input::Timeout(Instant::now())).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(!sources.is_empty(), "no reply at all");
    let wrong: Vec<_> = sources.iter().filter(|s| **s != candidate).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} datagrams came from elsewhere than {candidate}: {:?}",
        wrong.len(),
        sources.len(),
        &wrong[..wrong.len().min(3)]
    );
    assert!(ice_connected && channel_open, "the session came up");
    let connected = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(SfuEvent::ParticipantConnected { participant_id, .. }) = events.recv().await {
                if participant_id == "strict" {
                    return;
                }
            }
        }
    })
    .await;
    assert!(connected.is_ok(), "SFU saw the participant connect");
    sfu.shutdown().await;
}
