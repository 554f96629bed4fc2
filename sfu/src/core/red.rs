//! RFC 2198 redundant audio (RED), as browsers use it around Opus.
//!
//! A RED payload is a list of block headers followed by the blocks:
//!
//! ```text
//! redundant block header (4 bytes):  |1| block PT | timestamp offset (14) | length (10) |
//! primary block header (1 byte):     |0| block PT |
//! redundant block data..., primary block data
//! ```
//!
//! The primary block (the newest frame) runs to the end of the payload. A
//! subscriber that did not negotiate RED gets just that block, re-typed as
//! its Opus payload type. The parser takes arbitrary bytes and never panics.

use std::ops::Range;

/// Why a RED payload could not be unwrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedError {
    /// The payload ends inside the block headers.
    Truncated,
    /// The redundant blocks claim more bytes than the payload has.
    BlocksOverrun,
    /// No bytes are left for the primary block.
    EmptyPrimary,
}

/// The primary block of a RED payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedPrimary {
    /// Payload type of the primary block (the publisher's Opus PT).
    pub pt: u8,
    /// Where the primary block's bytes are in the RED payload.
    pub range: Range<usize>,
}

/// Find the primary block of a RED payload.
pub fn primary(payload: &[u8]) -> Result<RedPrimary, RedError> {
    let mut i = 0;
    let mut redundant = 0usize;
    loop {
        let Some(&b) = payload.get(i) else {
            return Err(RedError::Truncated);
        };
        if b & 0x80 == 0 {
            // The last header, one byte: the primary block follows the
            // redundant blocks and runs to the end.
            let start = i + 1 + redundant;
            return match start.cmp(&payload.len()) {
                std::cmp::Ordering::Less => Ok(RedPrimary {
                    pt: b & 0x7f,
                    range: start..payload.len(),
                }),
                std::cmp::Ordering::Equal => Err(RedError::EmptyPrimary),
                std::cmp::Ordering::Greater => Err(RedError::BlocksOverrun),
            };
        }
        let Some(h) = payload.get(i..i + 4) else {
            return Err(RedError::Truncated);
        };
        redundant += (u16::from_be_bytes([h[2], h[3]]) & 0x03ff) as usize;
        i += 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A RED payload as Chrome sends it: one redundant block (the previous
    /// frame, 960 ticks earlier) and the primary.
    fn red(pt: u8, redundant: &[u8], primary: &[u8]) -> Vec<u8> {
        let offset: u16 = 960;
        let len = redundant.len() as u16;
        let mut v = vec![
            0x80 | pt,
            (offset >> 6) as u8,
            (((offset & 0x3f) << 2) as u8) | ((len >> 8) as u8 & 0x03),
            len as u8,
            pt,
        ];
        v.extend_from_slice(redundant);
        v.extend_from_slice(primary);
        v
    }

    #[test]
    fn finds_the_primary_after_a_redundant_block() {
        let p = red(111, &[1, 2, 3], &[9, 8, 7, 6]);
        let r = primary(&p).unwrap();
        assert_eq!(r.pt, 111);
        assert_eq!(&p[r.range], &[9, 8, 7, 6]);
    }

    #[test]
    fn primary_only_and_several_redundant_blocks() {
        let p = [111, 0xaa, 0xbb];
        let r = primary(&p).unwrap();
        assert_eq!((r.pt, &p[r.range]), (111, &[0xaa, 0xbb][..]));

        // Two redundant blocks of 2 and 300 bytes (length spans both bytes).
        let mut p = vec![0x80 | 111, 0, 0, 2, 0x80 | 111, 0, 0x01, 0x2c, 111];
        p.extend_from_slice(&[1; 2]);
        p.extend_from_slice(&[2; 300]);
        p.extend_from_slice(&[3; 5]);
        let r = primary(&p).unwrap();
        assert_eq!(r.range, p.len() - 5..p.len());
        assert!(p[r.range].iter().all(|b| *b == 3));
    }

    #[test]
    fn malformed_payloads_are_errors() {
        assert_eq!(primary(&[]), Err(RedError::Truncated));
        // A redundant header cut short.
        assert_eq!(primary(&[0x80 | 111, 0, 0]), Err(RedError::Truncated));
        // Only redundant headers, no primary header.
        assert_eq!(primary(&[0x80 | 111, 0, 0, 0]), Err(RedError::Truncated));
        // A redundant block longer than what follows.
        assert_eq!(
            primary(&red(111, &[1, 2, 3], &[4])[..7]),
            Err(RedError::BlocksOverrun)
        );
        // Nothing left for the primary.
        assert_eq!(
            primary(&red(111, &[1, 2], &[])),
            Err(RedError::EmptyPrimary)
        );
        assert_eq!(primary(&[111]), Err(RedError::EmptyPrimary));
    }

    proptest! {
        /// Arbitrary bytes never panic, and a success always points at a
        /// non-empty block inside the payload, after the headers.
        #[test]
        fn never_panics_on_garbage(p in proptest::collection::vec(any::<u8>(), 0..1500)) {
            if let Ok(r) = primary(&p) {
                prop_assert!(r.range.start < r.range.end);
                prop_assert_eq!(r.range.end, p.len());
                prop_assert!(r.pt < 128);
            }
        }

        /// Well-formed payloads round-trip, and any truncation inside the
        /// headers or redundant data is an error rather than a wrong block.
        #[test]
        fn well_formed_round_trip_and_truncation(
            pt in 0u8..128,
            blocks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4),
            prim in proptest::collection::vec(any::<u8>(), 1..200),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut p = Vec::new();
            for b in &blocks {
                p.extend_from_slice(&[0x80 | pt, 0, 0, b.len() as u8]);
            }
            p.push(pt);
            let body_start = p.len() + blocks.iter().map(Vec::len).sum::<usize>();
            for b in &blocks {
                p.extend_from_slice(b);
            }
            p.extend_from_slice(&prim);
            let r = primary(&p).unwrap();
            prop_assert_eq!(r.pt, pt);
            prop_assert_eq!(&p[r.range.clone()], &prim[..]);
            prop_assert_eq!(r.range.start, body_start);
            // Cut anywhere up to the start of the primary: never Ok.
            let at = cut.index(body_start + 1);
            prop_assert!(primary(&p[..at]).is_err());
        }
    }
}
