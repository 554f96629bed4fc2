//! Codec knowledge the forwarder needs without depacketizing: where a
//! keyframe starts.
//!
//! Layer switches must land on the first packet of a keyframe, and the SFU
//! forwards RTP as-is, so it peeks at the payload descriptor of each video
//! packet. All parsers take arbitrary bytes and never panic.

/// Codec of a published track, as far as forwarding cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Opus,
    /// Audio with Opus in RFC 2198 RED: passed through untouched.
    Red,
    OtherAudio,
    Vp8,
    Vp9,
    H264,
    H265,
    Av1,
    OtherVideo,
}

impl Codec {
    pub fn is_video(self) -> bool {
        matches!(
            self,
            Codec::Vp8 | Codec::Vp9 | Codec::H264 | Codec::H265 | Codec::Av1 | Codec::OtherVideo
        )
    }

    pub fn clock_rate(self) -> u32 {
        if self.is_video() {
            90_000
        } else {
            48_000
        }
    }
}

/// True when `payload` is the first packet of a keyframe.
///
/// Unknown codecs answer false, and the layer selector only starts a
/// subscriber at a keyframe, so a video codec without a parser here would
/// never be forwarded: `Peer` therefore does not negotiate such codecs.
pub fn is_keyframe_start(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => vp8_keyframe_start(payload),
        Codec::Vp9 => vp9_keyframe_start(payload),
        Codec::H264 => h264_keyframe_start(payload),
        Codec::H265 => h265_keyframe_start(payload),
        Codec::Av1 => av1_keyframe_start(payload),
        _ => false,
    }
}

/// RFC 7741 §4.2/4.3.
fn vp8_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let x = b0 & 0x80 != 0;
    let s = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    if !s || pid != 0 {
        return false;
    }
    let mut i = 1;
    if x {
        let Some(&b1) = p.get(i) else { return false };
        i += 1;
        if b1 & 0x80 != 0 {
            // I: picture id, 7 or 15 bits.
            let Some(&pic) = p.get(i) else { return false };
            i += if pic & 0x80 != 0 { 2 } else { 1 };
        }
        if b1 & 0x40 != 0 {
            i += 1; // L: TL0PICIDX
        }
        if b1 & 0x30 != 0 {
            i += 1; // T or K: TID/Y/KEYIDX
        }
    }
    // VP8 payload header: P bit (inverse key frame flag) is bit 0.
    p.get(i).is_some_and(|h| h & 0x01 == 0)
}

/// draft-ietf-payload-vp9 §4.2: B (start of frame) set, P (inter-picture
/// predicted) clear.
fn vp9_keyframe_start(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b & 0x08 != 0 && b & 0x40 == 0)
}

/// RFC 6184: an SPS or the start of an IDR slice.
fn h264_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1f {
        5 | 7 => true,
        // STAP-A: 16-bit size, then a NAL unit.
        24 => {
            let mut i = 1;
            while i + 2 < p.len() {
                let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                if let Some(nal) = p.get(i + 2) {
                    if matches!(nal & 0x1f, 5 | 7) {
                        return true;
                    }
                }
                i += 2 + size;
            }
            false
        }
        // FU-A start fragment of an IDR.
        28 => p.get(1).is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == 5),
        _ => false,
    }
}

/// H.265 NAL unit types that start a keyframe: the IRAP pictures (BLA,
/// IDR, CRA: 16..=21) and the VPS, which encoders send (with SPS and PPS)
/// right before one, so a switch there keeps the parameter sets.
fn h265_starts_keyframe(nal_type: u8) -> bool {
    matches!(nal_type, 16..=21 | 32)
}

/// The NAL unit type in an H.265 NAL unit (or RTP payload) header.
fn h265_nal_type(header: u8) -> u8 {
    (header >> 1) & 0x3f
}

/// RFC 7798: a single NAL unit, an aggregation packet (48) holding one, or
/// the start fragment of a fragmentation unit (49) of one. Assumes no DONL
/// fields (sprop-max-don-diff = 0, as WebRTC senders use).
fn h265_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    if p.len() < 3 {
        return false;
    }
    match h265_nal_type(b0) {
        t if h265_starts_keyframe(t) => true,
        // AP: after the 2-byte payload header, 16-bit sizes each followed
        // by a NAL unit.
        48 => {
            let mut i = 2;
            while i + 2 < p.len() {
                let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                if h265_starts_keyframe(h265_nal_type(p[i + 2])) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        // FU: 2-byte payload header, then S|E|FuType.
        49 => p
            .get(2)
            .is_some_and(|fu| fu & 0x80 != 0 && h265_starts_keyframe(fu & 0x3f)),
        _ => false,
    }
}

/// AV1 RTP spec §4.4: N (new coded video sequence) set and Z (continuation) clear.
fn av1_keyframe_start(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b & 0x08 != 0 && b & 0x80 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Keyframe detection reads untrusted payloads: any bytes, for any
        /// codec, give an answer and never a panic (out-of-range indexing in
        /// aggregation packets, FU headers, OBU sizes).
        #[test]
        fn any_payload_for_any_codec_is_answered(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            codec in 0usize..9,
        ) {
            let codec = [
                Codec::Opus, Codec::Red, Codec::OtherAudio, Codec::Vp8, Codec::Vp9,
                Codec::H264, Codec::H265, Codec::Av1, Codec::OtherVideo,
            ][codec];
            let _ = is_keyframe_start(codec, &payload);
        }
    }

    #[test]
    fn vp8_keyframe_and_delta() {
        // S=1, PID=0, no extension; payload header P=0 -> keyframe.
        assert!(vp8_keyframe_start(&[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        // P=1 -> delta frame.
        assert!(!vp8_keyframe_start(&[0x10, 0x01]));
        // Not a start of partition.
        assert!(!vp8_keyframe_start(&[0x00, 0x00]));
        // Extended with a 15-bit picture id, TL0PICIDX and TID.
        assert!(vp8_keyframe_start(&[
            0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x00
        ]));
        assert!(!vp8_keyframe_start(&[
            0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x01
        ]));
        // Truncated.
        assert!(!vp8_keyframe_start(&[0x90, 0xe0, 0x81]));
        assert!(!vp8_keyframe_start(&[]));
    }

    #[test]
    fn h264_idr_sps_and_fragments() {
        assert!(h264_keyframe_start(&[0x65, 0x88]));
        assert!(h264_keyframe_start(&[0x67, 0x42]));
        assert!(!h264_keyframe_start(&[0x41, 0x9a]));
        // STAP-A with SPS.
        assert!(h264_keyframe_start(&[
            0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68
        ]));
        // FU-A start of IDR, and a middle fragment.
        assert!(h264_keyframe_start(&[0x7c, 0x85, 0x00]));
        assert!(!h264_keyframe_start(&[0x7c, 0x05, 0x00]));
    }

    /// H.265 payload header for a NAL unit type (layer 0, TID 1).
    fn h265(t: u8) -> [u8; 2] {
        [t << 1, 0x01]
    }

    #[test]
    fn h265_irap_in_single_aggregated_and_fragmented_packets() {
        // Single NAL units: every IRAP type and the VPS start a keyframe;
        // TRAIL_R (1), SPS (33), PPS (34), SEI (39) and RASL (8) do not.
        for t in 16..=21u8 {
            let [a, b] = h265(t);
            assert!(h265_keyframe_start(&[a, b, 0xaf]), "type {t}");
        }
        for t in [0u8, 1, 8, 15, 22, 33, 34, 39, 47] {
            let [a, b] = h265(t);
            assert!(!h265_keyframe_start(&[a, b, 0xaf]), "type {t}");
        }
        assert!(h265_keyframe_start(&[h265(32)[0], 1, 0x0c]));

        // AP with SPS, PPS, then an IDR_W_RADL (19).
        let [ap0, ap1] = h265(48);
        let mut ap = vec![ap0, ap1];
        for (t, len) in [(33u8, 4u16), (34, 3), (19, 5)] {
            ap.extend_from_slice(&len.to_be_bytes());
            let mut nal = vec![0u8; len as usize];
            nal[..2].copy_from_slice(&h265(t));
            ap.extend_from_slice(&nal);
        }
        assert!(h265_keyframe_start(&ap));
        // The same AP with a TRAIL_R in place of the IDR.
        let n = ap.len();
        ap[n - 5] = 1 << 1;
        assert!(!h265_keyframe_start(&ap));
        // Sizes pointing past the end stop the walk.
        assert!(!h265_keyframe_start(&[ap0, ap1, 0xff, 0xff, 1 << 1, 1]));

        // FU: start fragment of a CRA (21), a middle fragment, and the
        // start of a non-IRAP picture.
        let [fu0, fu1] = h265(49);
        assert!(h265_keyframe_start(&[fu0, fu1, 0x80 | 21, 0xaa]));
        assert!(!h265_keyframe_start(&[fu0, fu1, 21, 0xaa]));
        assert!(!h265_keyframe_start(&[fu0, fu1, 0x40 | 21, 0xaa]));
        assert!(!h265_keyframe_start(&[fu0, fu1, 0x80 | 1, 0xaa]));
        // Truncated.
        assert!(!h265_keyframe_start(&[fu0, fu1]));
        assert!(!h265_keyframe_start(&[]));
        assert!(is_keyframe_start(Codec::H265, &[fu0, fu1, 0x80 | 19]));
    }

    #[test]
    fn vp9_and_av1() {
        assert!(vp9_keyframe_start(&[0x08]));
        assert!(!vp9_keyframe_start(&[0x48]));
        assert!(av1_keyframe_start(&[0x18]));
        assert!(!av1_keyframe_start(&[0x98]));
    }
}
