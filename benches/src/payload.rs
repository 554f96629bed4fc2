//! What the load generator puts in an RTP payload, and how a receiver reads
//! it back.
//!
//! Every payload ends with a fixed 20-byte [`Stamp`] trailer: stream id,
//! per-stream sequence number, send time and a magic number. SFUs forward
//! payload bytes unchanged (convene and Janus both do), so the receiver
//! recovers exactly what the sender wrote and measures one-way latency and
//! loss without depending on RTP header rewriting (sequence munging,
//! simulcast layer switches).
//!
//! The bytes in front of the trailer look like real media: an Opus TOC byte
//! for audio, and for video an RFC 7741 VP8 payload descriptor (extended,
//! 15-bit picture id) followed on the first packet of a frame by a VP8
//! payload header whose P bit tells key from delta frames, plus the keyframe
//! start code and dimensions. That is what `convene_sfu::core::codec` reads
//! to start a subscriber (or switch layers) at a keyframe.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Trailer length in bytes.
pub const STAMP_LEN: usize = 20;
/// "CVLD": marks a load-generator trailer.
pub const MAGIC: u32 = 0x4356_4c44;
/// Largest video RTP payload the generator writes; with the RTP header and
/// extensions the packet is ~1200 bytes, like a browser's.
pub const MAX_VIDEO_PAYLOAD: usize = 1160;

/// One process-wide time origin: senders and receivers run in the same
/// process, so a monotonic clock is exact and immune to wall-clock steps.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`] at `t` (0 for instants before it).
pub fn micros_at(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_micros() as u64
}

/// What a receiver learns from one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Which sent stream this is: see [`StreamId`].
    pub stream: StreamId,
    /// Per-stream packet counter, from 0.
    pub seq: u32,
    /// Send time, microseconds since [`epoch`].
    pub sent_us: u64,
}

/// A sent stream: one publisher's audio, or one simulcast layer of its video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

impl StreamId {
    /// Slot 0 is audio, slots 1..=3 the video layers (low to high).
    pub fn new(publisher: u32, slot: u32) -> Self {
        Self(publisher * 4 + (slot & 3))
    }

    pub fn audio(publisher: u32) -> Self {
        Self::new(publisher, 0)
    }

    pub fn video(publisher: u32, layer: u32) -> Self {
        Self::new(publisher, 1 + layer.min(2))
    }

    pub fn publisher(self) -> u32 {
        self.0 / 4
    }

    pub fn is_audio(self) -> bool {
        self.0 % 4 == 0
    }

    /// The published track this stream belongs to (all layers of one video
    /// track share it): a subscriber receives one stream per track.
    pub fn track(self) -> u32 {
        self.publisher() * 2 + u32::from(!self.is_audio())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StampError {
    #[error("payload of {0} bytes is shorter than the trailer")]
    TooShort(usize),
    #[error("no load-generator trailer (magic mismatch)")]
    NoMagic,
}

/// Write the trailer into the last [`STAMP_LEN`] bytes of `payload`.
///
/// # Panics
/// When `payload` is shorter than the trailer (a bug in the caller).
pub fn write_stamp(payload: &mut [u8], stamp: Stamp) {
    let n = payload.len();
    assert!(n >= STAMP_LEN, "payload too short for the stamp");
    let t = &mut payload[n - STAMP_LEN..];
    t[0..4].copy_from_slice(&stamp.stream.0.to_be_bytes());
    t[4..8].copy_from_slice(&stamp.seq.to_be_bytes());
    t[8..16].copy_from_slice(&stamp.sent_us.to_be_bytes());
    t[16..20].copy_from_slice(&MAGIC.to_be_bytes());
}

/// Read the trailer back. Never panics on arbitrary input.
pub fn read_stamp(payload: &[u8]) -> Result<Stamp, StampError> {
    let n = payload.len();
    if n < STAMP_LEN {
        return Err(StampError::TooShort(n));
    }
    let t = &payload[n - STAMP_LEN..];
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if be32(&t[16..20]) != MAGIC {
        return Err(StampError::NoMagic);
    }
    let mut sent = [0u8; 8];
    sent.copy_from_slice(&t[8..16]);
    Ok(Stamp {
        stream: StreamId(be32(&t[0..4])),
        seq: be32(&t[4..8]),
        sent_us: u64::from_be_bytes(sent),
    })
}

/// One-way latency of a packet stamped `sent_us` and received at `at`.
pub fn latency(stamp: &Stamp, at: Instant) -> Duration {
    Duration::from_micros(micros_at(at).saturating_sub(stamp.sent_us))
}

/// An Opus packet of `len` bytes (at least the trailer plus the TOC byte):
/// TOC 0x78 (SILK-only wideband, 20 ms, one frame), then filler.
pub fn opus_payload(len: usize) -> Vec<u8> {
    let mut p = vec![0x5a; len.max(STAMP_LEN + 1)];
    p[0] = 0x78;
    p
}

/// Bytes of the VP8 payload descriptor written by [`vp8_packet`].
pub const VP8_DESCRIPTOR_LEN: usize = 4;

/// One VP8 RTP payload of `len` bytes: the first packet of a frame
/// (`frame_start`) carries the VP8 payload header, and on a keyframe the
/// start code and dimensions (RFC 6386 §9.1). `picture_id` is the 15-bit
/// picture id of the frame.
pub fn vp8_packet(len: usize, frame_start: bool, keyframe: bool, picture_id: u16) -> Vec<u8> {
    let min = VP8_DESCRIPTOR_LEN + if frame_start { 10 } else { 0 } + STAMP_LEN;
    let mut p = vec![0u8; len.max(min)];
    // Descriptor: X=1, S on the first packet, PID 0; I=1; M=1 + 15-bit id.
    p[0] = 0x80 | if frame_start { 0x10 } else { 0x00 };
    p[1] = 0x80;
    p[2] = 0x80 | ((picture_id >> 8) as u8 & 0x7f);
    p[3] = picture_id as u8;
    let mut i = VP8_DESCRIPTOR_LEN;
    if frame_start {
        // Frame tag: P (bit 0) clear on keyframes, version 0, show_frame.
        p[i] = 0x10 | u8::from(!keyframe);
        p[i + 1] = 0x02;
        p[i + 2] = 0x00;
        i += 3;
        if keyframe {
            p[i..i + 3].copy_from_slice(&[0x9d, 0x01, 0x2a]);
            p[i + 3..i + 5].copy_from_slice(&1280u16.to_le_bytes());
            p[i + 5..i + 7].copy_from_slice(&720u16.to_le_bytes());
            i += 7;
        }
    }
    let end = p.len() - STAMP_LEN;
    for (k, b) in p[i..end].iter_mut().enumerate() {
        *b = (k as u8).wrapping_mul(31) ^ 0x55;
    }
    p
}

/// True when `payload` is the first packet of a VP8 keyframe, by the same
/// rule the SFU applies (RFC 7741 descriptor, then the P bit). Used by
/// tests and by the receiver's statistics.
pub fn vp8_is_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    if b0 & 0x10 == 0 || b0 & 0x07 != 0 {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = p.get(1) else { return false };
        i += 1;
        if x & 0x80 != 0 {
            let Some(&pic) = p.get(i) else { return false };
            i += if pic & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    p.get(i).is_some_and(|h| h & 0x01 == 0)
}

/// Sizes of the RTP payloads of one video frame of `bytes`: full packets of
/// [`MAX_VIDEO_PAYLOAD`] and a last, shorter one (as an encoder's packetizer
/// does), never below a minimal packet.
pub fn split_frame(bytes: usize) -> Vec<usize> {
    let min = VP8_DESCRIPTOR_LEN + 10 + STAMP_LEN + 16;
    let bytes = bytes.max(min);
    let mut out = Vec::with_capacity(bytes / MAX_VIDEO_PAYLOAD + 1);
    let mut left = bytes;
    while left > 0 {
        let n = left.min(MAX_VIDEO_PAYLOAD);
        // Avoid a runt last packet: fold it into the previous split.
        if left - n > 0 && left - n < min {
            let half = left / 2;
            out.push(half);
            out.push(left - half);
            break;
        }
        out.push(n);
        left -= n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_at_the_end_of_any_payload() {
        let s = Stamp {
            stream: StreamId::video(7, 2),
            seq: 0xdead_beef,
            sent_us: 123_456_789_012,
        };
        for len in [STAMP_LEN, 21, 200, 1160] {
            let mut p = vec![0xaa; len];
            write_stamp(&mut p, s);
            assert_eq!(read_stamp(&p), Ok(s), "len {len}");
        }
    }

    #[test]
    fn garbage_is_rejected_not_misread() {
        assert_eq!(read_stamp(&[]), Err(StampError::TooShort(0)));
        assert_eq!(read_stamp(&[0; 19]), Err(StampError::TooShort(19)));
        assert_eq!(read_stamp(&[0; 64]), Err(StampError::NoMagic));
    }

    #[test]
    fn stream_ids_name_publisher_track_and_layer() {
        let a = StreamId::audio(3);
        let v = [0, 1, 2].map(|l| StreamId::video(3, l));
        assert!(a.is_audio() && v.iter().all(|s| !s.is_audio()));
        assert!(v.iter().all(|s| s.publisher() == 3 && s.track() == 7));
        assert_eq!(a.track(), 6);
        assert_ne!(v[0], v[2]);
        assert_ne!(StreamId::audio(4).track(), v[0].track());
    }

    #[test]
    fn vp8_packets_mark_keyframes_as_the_sfu_expects() {
        let key = vp8_packet(1160, true, true, 0x1234);
        let delta = vp8_packet(1160, true, false, 0x1235);
        let cont = vp8_packet(1160, false, true, 0x1234);
        assert!(vp8_is_keyframe_start(&key));
        assert!(!vp8_is_keyframe_start(&delta));
        assert!(!vp8_is_keyframe_start(&cont), "not the start of a frame");
        assert_eq!(&key[7..10], &[0x9d, 0x01, 0x2a], "keyframe start code");
        // The stamp fits behind the codec bytes.
        let mut p = key.clone();
        let s = Stamp {
            stream: StreamId::video(0, 0),
            seq: 1,
            sent_us: 2,
        };
        write_stamp(&mut p, s);
        assert!(vp8_is_keyframe_start(&p));
        assert_eq!(read_stamp(&p), Ok(s));
    }

    #[test]
    fn frames_split_into_mtu_sized_packets() {
        let sizes = split_frame(6000);
        assert_eq!(sizes.iter().sum::<usize>(), 6000);
        assert!(sizes.iter().all(|n| (50..=MAX_VIDEO_PAYLOAD).contains(n)));
        assert_eq!(sizes[0], MAX_VIDEO_PAYLOAD);
        let tiny = split_frame(10);
        assert_eq!(tiny.len(), 1);
        assert!(tiny[0] >= STAMP_LEN + 14);
        // A frame just above the MTU does not leave a runt.
        let s = split_frame(MAX_VIDEO_PAYLOAD + 5);
        assert!(s.iter().all(|&n| n >= 50), "{s:?}");
    }

    #[test]
    fn latency_is_measured_against_the_process_epoch() {
        let _ = epoch();
        let now = Instant::now();
        let s = Stamp {
            stream: StreamId::audio(0),
            seq: 0,
            sent_us: micros_at(now),
        };
        let later = now + Duration::from_millis(3);
        let l = latency(&s, later);
        assert!(l >= Duration::from_millis(3) && l < Duration::from_millis(4));
    }
}
