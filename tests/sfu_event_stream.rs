//! The SFU's HTTP event stream across reconnects and restarts: a stream
//! reopened with `Last-Event-ID` first replays what it missed; one that
//! names another SFU process opens with `event: reset`; and `RemoteSfu`
//! (signaling's client of that stream) turns an SFU restart into
//! `SessionsLost` for the rooms.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use convene_proto::sfu::SfuEvent;
use convene_signaling::remote::RemoteSfu;
use convene_signaling::MediaPort;
use eventsource_stream::{Event, Eventsource};
use futures::{Stream, StreamExt};
use str0m::Rtc;

const SECRET: &str = "test-sfu-secret";
const WAIT: Duration = Duration::from_secs(20);

async fn sfu(http: SocketAddr) -> (convene_sfu::Sfu, convene_sfu::SfuHandle) {
    let config = convene_sfu::SfuConfig {
        http_addr: Some(http),
        http_secret: Some(SECRET.to_string().into()),
        ..convene_sfu::SfuConfig::for_tests()
    };
    convene_sfu::start(config).await.expect("SFU starts")
}

/// A participant joins and is removed: one `ParticipantDisconnected`.
async fn come_and_go(handle: &convene_sfu::SfuHandle, id: &str) {
    let mut rtc = Rtc::builder().build(Instant::now());
    let mut change = rtc.sdp_api();
    change.add_channel("c".into());
    let (offer, _) = change.apply().expect("offer");
    handle
        .join("room", id, id, &offer.to_sdp_string(), Default::default())
        .await
        .expect("join");
    handle.remove_participant("room", id).await.expect("remove");
}

async fn open(addr: SocketAddr, last: Option<&str>) -> impl Stream<Item = Event> + Unpin {
    let mut req = reqwest::Client::new()
        .get(format!("http://{addr}/v1/events"))
        .bearer_auth(SECRET);
    if let Some(id) = last {
        req = req.header("last-event-id", id);
    }
    let res = req.send().await.expect("event stream");
    assert!(res.status().is_success(), "{}", res.status());
    res.bytes_stream()
        .eventsource()
        .map(|e| e.expect("well-formed event"))
        .boxed()
}

async fn next(s: &mut (impl Stream<Item = Event> + Unpin)) -> Event {
    tokio::time::timeout(WAIT, s.next())
        .await
        .expect("an event in time")
        .expect("stream open")
}

fn disconnected(e: &Event) -> String {
    match serde_json::from_str::<SfuEvent>(&e.data) {
        Ok(SfuEvent::ParticipantDisconnected { participant_id, .. }) => participant_id,
        other => panic!("not a disconnect: {other:?} from {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_stream_replays_what_it_missed_and_a_foreign_id_resets() {
    let (sfu, handle) = sfu("127.0.0.1:0".parse().unwrap()).await;
    let addr = sfu.http_addr().expect("HTTP API");

    let mut s = open(addr, None).await;
    let hello = next(&mut s).await;
    assert_eq!(hello.event, "hello");
    assert!(!hello.id.is_empty(), "the stream opens with a position");
    come_and_go(&handle, "a").await;
    let a = next(&mut s).await;
    assert_eq!(disconnected(&a), "a");
    drop(s);

    // Missed while away.
    come_and_go(&handle, "b").await;
    come_and_go(&handle, "c").await;
    let mut s = open(addr, Some(&a.id)).await;
    let b = next(&mut s).await;
    assert_eq!(disconnected(&b), "b");
    assert_eq!(disconnected(&next(&mut s).await), "c");
    come_and_go(&handle, "d").await;
    assert_eq!(disconnected(&next(&mut s).await), "d", "then live");
    drop(s);

    // From the very first position: everything since.
    let mut s = open(addr, Some(&hello.id)).await;
    for id in ["a", "b", "c", "d"] {
        assert_eq!(disconnected(&next(&mut s).await), id);
    }
    drop(s);

    // An id of another SFU process: what the client knew is void.
    let mut s = open(addr, Some("0123abc-7")).await;
    let reset = next(&mut s).await;
    assert_eq!(reset.event, "reset");
    come_and_go(&handle, "e").await;
    assert_eq!(disconnected(&next(&mut s).await), "e");
    sfu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_sfu_tells_the_rooms_when_the_sfu_restarted() {
    let (first, handle) = sfu("127.0.0.1:0".parse().unwrap()).await;
    let addr = first.http_addr().expect("HTTP API");
    let remote = RemoteSfu::new(&format!("http://{addr}"), SECRET).expect("remote SFU");
    let mut events = remote.events();
    tokio::time::timeout(WAIT, remote.wait_connected())
        .await
        .expect("connected");
    come_and_go(&handle, "a").await;
    let e = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("event");
    assert!(
        matches!(&e, Some(SfuEvent::ParticipantDisconnected { participant_id, .. }) if participant_id == "a"),
        "{e:?}"
    );

    // The SFU process is replaced on the same address.
    first.shutdown().await;
    let (second, handle) = sfu(addr).await;
    let lost = tokio::time::timeout(WAIT, async {
        loop {
            match events.next().await {
                Some(SfuEvent::SessionsLost) => return,
                Some(_) => continue,
                None => panic!("event stream ended"),
            }
        }
    })
    .await;
    assert!(lost.is_ok(), "SessionsLost after the restart");
    // And the stream goes on with the new process's events.
    come_and_go(&handle, "b").await;
    let e = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("event");
    assert!(
        matches!(&e, Some(SfuEvent::ParticipantDisconnected { participant_id, .. }) if participant_id == "b"),
        "{e:?}"
    );
    second.shutdown().await;
}
