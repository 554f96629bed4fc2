//! SDP offers are untrusted input: mutated offers (lines dropped, repeated,
//! swapped, bytes flipped, attributes truncated) are answered or refused
//! with an error, never a panic, and the SFU keeps serving real joins.
//!
//! `PROPTEST_CASES` raises the case count for a longer run.

use std::time::Instant;

use convene_sfu::{Grants, SfuConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;

/// A real offer: audio, video and a data channel, as a browser sends.
fn offer() -> String {
    let mut rtc = Rtc::new(Instant::now());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    change.add_channel("chat".into());
    let (offer, _) = change.apply().unwrap();
    offer.to_sdp_string()
}

#[derive(Debug, Clone)]
enum Edit {
    Drop(usize),
    Repeat(usize),
    Swap(usize, usize),
    Truncate(usize, usize),
    Flip(usize, u8),
    Insert(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Drop),
        any::<usize>().prop_map(Edit::Repeat),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        (any::<usize>(), 0usize..40).prop_map(|(a, n)| Edit::Truncate(a, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Flip(a, b)),
        (any::<usize>(), "[a-z=:0-9 /.-]{0,40}").prop_map(|(a, l)| Edit::Insert(a, l)),
    ]
}

fn mutate(sdp: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = sdp.lines().map(String::from).collect();
    for e in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match e {
            Edit::Drop(i) => {
                lines.remove(i % n);
            }
            Edit::Repeat(i) => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::Swap(a, b) => lines.swap(a % n, b % n),
            Edit::Truncate(i, keep) => {
                let l = &mut lines[i % n];
                let cut = l.char_indices().nth(*keep).map_or(l.len(), |(k, _)| k);
                l.truncate(cut);
            }
            Edit::Flip(i, b) => {
                let mut bytes = lines[i % n].clone().into_bytes();
                if !bytes.is_empty() {
                    let k = usize::from(*b) % bytes.len();
                    bytes[k] ^= b | 1;
                }
                lines[i % n] = String::from_utf8_lossy(&bytes).into_owned();
            }
            Edit::Insert(i, l) => lines.insert(i % n, l.clone()),
        }
    }
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out
}

#[test]
fn mutated_offers_never_take_the_sfu_down() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sfu, h) = rt
        .block_on(convene_sfu::start(SfuConfig::for_tests()))
        .unwrap();
    let base = offer();
    // The harness itself: an unmutated offer passes through it intact.
    let same = mutate(&base, &[]);
    rt.block_on(h.join("r", "x", "x", &same, Grants::default()))
        .expect("an unmutated offer is answered");
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let counter = std::sync::atomic::AtomicU64::new(0);
    let answered = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&proptest::collection::vec(edit(), 1..6), |edits| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sdp = mutate(&base, &edits);
        let (room, id) = (format!("r{n}"), format!("p{n}"));
        // Ok or a clean error: both are fine; a panic in the worker
        // would make the next real join below fail.
        if rt
            .block_on(h.join(&room, &id, &id, &sdp, Grants::default()))
            .is_ok()
        {
            answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // A renegotiation with the mutated offer, on a real session.
        let real = format!("q{n}");
        rt.block_on(h.join(&room, &real, &real, &offer(), Grants::default()))
            .map_err(|e| TestCaseError::fail(format!("real join after {sdp:?}: {e}")))?;
        let _ = rt.block_on(h.handle_offer(&room, &real, &sdp));
        Ok(())
    });
    rt.block_on(sfu.shutdown());
    result.unwrap();
    // Both outcomes occur, or the mutations were not testing much.
    let (total, ok) = (counter.into_inner(), answered.into_inner());
    eprintln!(
        "{total} mutated offers: {ok} answered, {} refused",
        total - ok
    );
    assert!(ok > 0 && ok < total, "{ok} of {total} answered");
}
