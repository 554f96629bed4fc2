//! Adjustments around str0m's offer/answer so every client reads the
//! answer the same way: directions that match what the SFU really does, and
//! ICE candidates in every m-section.
//!
//! str0m 0.25 has no API for either. Its SDP model (`Sdp`, `MediaLine`,
//! `MediaAttribute`) is reachable through `Deref` on `SdpOffer`/`SdpAnswer`
//! but lives in a private module: its methods and public fields can be
//! used, its types cannot be named. So these work on a clone of the parsed
//! model and turn it back into an offer/answer with `From<Sdp>`.

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::Direction;
use str0m::Rtc;

/// The offer as str0m should see it: on the client's own audio/video
/// m-lines the SFU only ever receives (it sends on sendonly m-lines it adds
/// itself), so `sendrecv` is taken as `sendonly` and `recvonly` as
/// `inactive`. str0m answers with the inverse of the offered direction, and
/// its session state then matches what the answer promises, also in later
/// offers of ours. m-lines the SFU already sends on are left alone (a client
/// may reuse one of those transceivers for `addTrack`).
pub fn restrict_offer(rtc: &Rtc, offer: SdpOffer) -> SdpOffer {
    let receive_only = |mid| !rtc.media(mid).is_some_and(|m| m.direction().is_sending());
    let needs_change = offer.media_lines.iter().any(|l| {
        l.typ.is_media()
            && !l.disabled
            && matches!(l.direction(), Direction::SendRecv | Direction::RecvOnly)
            && receive_only(l.mid())
    });
    if !needs_change {
        return offer;
    }
    let mut sdp = (*offer).clone();
    for line in &mut sdp.media_lines {
        if !line.typ.is_media() || line.disabled || !receive_only(line.mid()) {
            continue;
        }
        match line.direction() {
            Direction::SendRecv => line.set_direction(Direction::SendOnly),
            Direction::RecvOnly => line.set_direction(Direction::Inactive),
            _ => {}
        }
    }
    SdpOffer::from(sdp)
}

/// The answer with our candidates in every m-section and
/// `a=end-of-candidates` after them. str0m writes candidates only into the
/// first m-section, which RFC 8843 allows for a bundled answer, but clients
/// that read candidates per m-section (aiortc) then find none where they
/// look. ICE-lite with host candidates only: the list is complete.
pub fn complete_answer(answer: SdpAnswer) -> SdpAnswer {
    let Some(first) = answer
        .media_lines
        .iter()
        .find(|l| l.ice_candidates().next().is_some())
    else {
        return answer;
    };
    // `MediaLine::ice_candidates` and `end_of_candidates` are the only typed
    // ways to tell those attributes apart; a one-attribute copy of a line
    // asks them.
    let mut probe = first.clone();
    let mut is_candidate = |a: &_| {
        probe.attrs.clear();
        probe.attrs.push(Clone::clone(a));
        probe.ice_candidates().next().is_some()
    };
    let candidates: Vec<_> = first
        .attrs
        .iter()
        .filter(|a| is_candidate(*a))
        .cloned()
        .collect();
    // str0m parses `a=end-of-candidates` but has no constructor for it, and
    // its attribute type cannot be named here: its own parser makes one from
    // a minimal SDP. Upstream: emit it when ICE-lite, or expose attributes.
    let template = SdpAnswer::from_sdp_string(END_OF_CANDIDATES).ok();
    let end = template
        .as_ref()
        .and_then(|t| t.media_lines.first())
        .and_then(|l| {
            let mut probe = l.clone();
            l.attrs
                .iter()
                .find(|a| {
                    probe.attrs.clear();
                    probe.attrs.push(Clone::clone(*a));
                    probe.end_of_candidates()
                })
                .cloned()
        });
    let mut sdp = (*answer).clone();
    for line in &mut sdp.media_lines {
        if line.disabled {
            continue;
        }
        if line.ice_candidates().next().is_none() {
            line.attrs.splice(0..0, candidates.iter().cloned());
        }
        if let Some(end) = &end {
            if !line.end_of_candidates() {
                let at = line
                    .attrs
                    .iter()
                    .rposition(&mut is_candidate)
                    .map_or(0, |i| i + 1);
                line.attrs.insert(at, end.clone());
            }
        }
    }
    SdpAnswer::from(sdp)
}

const END_OF_CANDIDATES: &str = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
    m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
    a=sendrecv\r\na=rtpmap:111 opus/48000/2\r\na=end-of-candidates\r\n";
