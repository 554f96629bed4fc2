//! Shared helpers for the integration tests: webrtc-rs client peers that
//! only use loopback, and event waiting with timeouts.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use convene_sfu::{SfuEvent, SfuHandle};
use tokio::sync::{broadcast, Mutex};
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;

pub mod str0m_client;

pub fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "convene_sfu=info,str0m=warn,webrtc=error".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A webrtc-rs API that gathers only loopback UDP candidates (no mDNS, no
/// STUN servers): tests must not send traffic off this machine.
pub fn loopback_api() -> API {
    let mut m = MediaEngine::default();
    m.register_default_codecs().expect("codecs");
    let registry = register_default_interceptors(Registry::new(), &mut m).expect("interceptors");
    let mut s = SettingEngine::default();
    s.set_network_types(vec![NetworkType::Udp4]);
    s.set_include_loopback_candidate(true);
    s.set_ip_filter(Box::new(|ip| ip.is_loopback()));
    s.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    APIBuilder::new()
        .with_media_engine(m)
        .with_interceptor_registry(registry)
        .with_setting_engine(s)
        .build()
}

pub async fn new_pc(api: &API) -> Arc<RTCPeerConnection> {
    Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .expect("peer connection"),
    )
}

/// Create an offer with all candidates in it (no trickle in these tests).
pub async fn full_offer(pc: &RTCPeerConnection) -> String {
    let offer = pc.create_offer(None).await.expect("offer");
    let mut done = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await.expect("set local");
    let _ = tokio::time::timeout(Duration::from_secs(5), done.recv()).await;
    pc.local_description().await.expect("local description").sdp
}

pub async fn join(handle: &SfuHandle, room: &str, id: &str, pc: &RTCPeerConnection) {
    let offer = full_offer(pc).await;
    let answer = handle
        .join(room, id, id, &offer, Default::default())
        .await
        .expect("join");
    pc.set_remote_description(RTCSessionDescription::answer(answer).expect("answer sdp"))
        .await
        .expect("set remote answer");
}

/// Plays the signaling service: answers every SFU renegotiation offer for
/// the registered peers, and hands all other events to the test.
pub fn spawn_signaling(
    handle: SfuHandle,
    peers: Arc<Mutex<HashMap<String, Arc<RTCPeerConnection>>>>,
) -> tokio::sync::mpsc::UnboundedReceiver<SfuEvent> {
    let mut rx = handle.events();
    let (tx, out) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let ev = match rx.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            if let SfuEvent::RenegotiationOffer {
                room_id,
                participant_id,
                offer_sdp,
            } = &ev
            {
                let pc = peers.lock().await.get(participant_id).cloned();
                if let Some(pc) = pc {
                    // A peer closed at the end of a test may still get an
                    // offer (its publisher left): that is not a failure.
                    if let Err(e) =
                        answer_offer(&handle, &pc, room_id, participant_id, offer_sdp).await
                    {
                        tracing::debug!("renegotiation with {participant_id} failed: {e}");
                    }
                }
            }
            if tx.send(ev).is_err() {
                return;
            }
        }
    });
    out
}

async fn answer_offer(
    handle: &SfuHandle,
    pc: &RTCPeerConnection,
    room_id: &str,
    participant_id: &str,
    offer_sdp: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let offer = RTCSessionDescription::offer(offer_sdp.to_string())?;
    pc.set_remote_description(offer).await?;
    let answer = pc.create_answer(None).await?;
    pc.set_local_description(answer).await?;
    let sdp = pc
        .local_description()
        .await
        .ok_or("no local description")?
        .sdp;
    handle.handle_answer(room_id, participant_id, &sdp).await?;
    Ok(())
}

/// Wait for an event matching `f`, dropping others; panics on timeout.
pub async fn wait_event<T>(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<SfuEvent>,
    timeout: Duration,
    mut f: impl FnMut(&SfuEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(timeout, async {
        loop {
            let ev = rx.recv().await.expect("event stream ended");
            if let Some(t) = f(&ev) {
                return t;
            }
            tracing::debug!("event not waited for: {ev:?}");
        }
    })
    .await
    .expect("timed out waiting for event")
}

/// True when `seqs` increase by exactly one each step (mod 2^16).
pub fn continuous(seqs: &[u16]) -> bool {
    seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1))
}
