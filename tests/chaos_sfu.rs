//! Chaos, split mode: the SFU process is killed (SIGKILL, no goodbye) under
//! a conference, and a new one takes its address. Signaling (on
//! `RemoteSfu`) learns from the reopened event stream that the sessions
//! are gone (`event: reset` → `SessionsLost`) and tells the participant,
//! whose next offer joins the new SFU. Prints the time from the kill to the
//! new answer. Needs Redis on 127.0.0.1:6379 for the control plane's
//! events (`CONVENE_TEST_REDIS_URL`); skipped without it unless `CI` is set.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use convene_control::{Control, ControlConfig};
use convene_proto::signaling::{ClientMessage, ServerMessage};
use convene_signaling::remote::{RemoteControl, RemoteSfu};
use convene_signaling::{Signaling, SignalingConfig};
use convene_testkit::{free_tcp_addr, redis_available};
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;

mod support;

use support::rest::{serve, Rest};
use support::{Client, STEP};

const INTERNAL_SECRET: &str = "test-internal-secret";
const SFU_SECRET: &str = "test-sfu-secret";

/// A `convene sfu` child process, killed when dropped.
struct SfuProcess(Child);

impl Drop for SfuProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_sfu(addr: SocketAddr, log: &Path) -> SfuProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_convene"))
        .args(["sfu", "--udp-port", "0", "--sfu-bind-ip", "127.0.0.1"])
        .args(["--sfu-public-ip", "127.0.0.1", "--sfu-workers", "1"])
        .args(["--sfu-http-addr", &addr.to_string()])
        .env("CONVENE_SFU_HTTP_SECRET", SFU_SECRET)
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("convene sfu starts");
    let http = reqwest::Client::new();
    let end = Instant::now() + STEP;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "convene sfu exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await {
            if r.status().is_success() {
                return SfuProcess(child);
            }
        }
        assert!(Instant::now() < end, "convene sfu never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An audio offer from a str0m peer; the peer never connects (the test is
/// about signaling and sessions, not media).
fn offer() -> String {
    let mut rtc = Rtc::new(Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, _) = change.apply().expect("an offer");
    offer.to_sdp_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sfu_ends_the_rooms_media_and_the_participant_rejoins_the_new_one() {
    let Some(redis) = redis_available().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("convene.db");
    let mut cc = ControlConfig::for_tests(format!("sqlite://{}?mode=rwc", db.display()));
    cc.redis_url = Some(redis.clone());
    let control = Control::start(cc).await.expect("control plane starts");
    let (control_addr, control_task) = serve(control.router()).await;

    let sfu_addr = free_tcp_addr();
    let log = dir.path().join("sfu.log");
    let sfu = start_sfu(sfu_addr, &log).await;

    let remote_control =
        RemoteControl::connect(&format!("http://{control_addr}"), INTERNAL_SECRET, &redis)
            .await
            .expect("remote control");
    let remote_sfu = RemoteSfu::new(&format!("http://{sfu_addr}"), SFU_SECRET).expect("remote SFU");
    tokio::time::timeout(STEP, remote_sfu.wait_connected())
        .await
        .expect("SFU event stream connects");
    let signaling = Signaling::new(
        SignalingConfig::default(),
        Arc::new(remote_control),
        Arc::new(remote_sfu),
        Default::default(),
    )
    .expect("signaling starts");
    let (sig_addr, sig_task) = serve(signaling.router()).await;

    let rest = Rest::new(control_addr);
    let (alice, _) = rest.user("alice").await;
    let conf = rest.conference(&alice, &[], false).await;
    let (token, waiting) = rest.join_token(&alice, &conf).await;
    assert!(!waiting);
    let mut client = Client::connect(sig_addr).await;
    client.join(&token).await;
    let me = client
        .expect_ok("joined", |m| match m {
            ServerMessage::Joined { participant_id, .. } => Some(participant_id.clone()),
            _ => None,
        })
        .await;
    client
        .send(&ClientMessage::Offer {
            sdp: offer(),
            sources: Default::default(),
        })
        .await;
    client
        .expect_ok("answer", |m| {
            matches!(m, ServerMessage::Answer { .. }).then_some(())
        })
        .await;

    // kill -9, and a new SFU process on the same address.
    drop(sfu);
    let killed = Instant::now();
    let sfu = start_sfu(sfu_addr, &log).await;
    let restarted = killed.elapsed();

    let reason = client
        .expect_ok("media_ended", |m| match m {
            ServerMessage::MediaEnded {
                participant_id,
                reason,
            } if *participant_id == me => Some(*reason),
            _ => None,
        })
        .await;
    let told = killed.elapsed();
    // The participant joins the media again: a fresh join on the new SFU.
    client
        .send(&ClientMessage::Offer {
            sdp: offer(),
            sources: Default::default(),
        })
        .await;
    client
        .expect_ok("answer from the new SFU", |m| {
            matches!(m, ServerMessage::Answer { .. }).then_some(())
        })
        .await;
    eprintln!(
        "SFU killed: new process healthy after {restarted:?}, participant told ({reason:?}) after \
         {told:?}, new answer after {:?}",
        killed.elapsed()
    );

    sig_task.abort();
    control_task.abort();
    drop(sfu);
    control.close().await;
}
