//! Classifying datagrams on the shared UDP port and finding their owner.
//!
//! All participants share one port, so the edge must tell whose packet it
//! is before any decryption. A STUN binding request names the server-side
//! ufrag (chosen by us per participant) in USERNAME; everything else (DTLS,
//! SRTP) is matched by the remote address a STUN check came from.

/// RFC 7983 first-byte demultiplexing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketClass {
    Stun,
    Dtls,
    Rtp,
    Unknown,
}

pub fn classify(buf: &[u8]) -> PacketClass {
    match buf.first() {
        Some(0..=3) => PacketClass::Stun,
        Some(20..=63) => PacketClass::Dtls,
        Some(128..=191) => PacketClass::Rtp,
        _ => PacketClass::Unknown,
    }
}

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

/// The local (server) ufrag of a STUN message's USERNAME
/// (`<server ufrag>:<client ufrag>`), if it is a well-formed STUN message
/// carrying one.
pub fn stun_local_ufrag(buf: &[u8]) -> Option<&str> {
    if buf.len() < 20 || buf[0] & 0xc0 != 0 || buf[4..8] != MAGIC_COOKIE {
        return None;
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let body = buf.get(20..20 + len)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[i], body[i + 1]]);
        let alen = u16::from_be_bytes([body[i + 2], body[i + 3]]) as usize;
        let value = body.get(i + 4..i + 4 + alen)?;
        if typ == ATTR_USERNAME {
            let s = std::str::from_utf8(value).ok()?;
            return s.split(':').next().filter(|u| !u.is_empty());
        }
        // Attributes are padded to 4 bytes.
        i += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = vec![];
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        // A PRIORITY attribute after it, to check we stop at USERNAME.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn finds_local_ufrag() {
        let m = binding_request("srvUfrag:cli");
        assert_eq!(classify(&m), PacketClass::Stun);
        assert_eq!(stun_local_ufrag(&m), Some("srvUfrag"));
    }

    #[test]
    fn rejects_truncated_and_foreign() {
        let m = binding_request("abc:def");
        for n in 0..m.len() {
            let _ = stun_local_ufrag(&m[..n]);
        }
        assert_eq!(stun_local_ufrag(&m[..m.len() - 10]), None);
        assert_eq!(classify(&[0x80, 0x60]), PacketClass::Rtp);
        assert_eq!(classify(&[22, 0xfe]), PacketClass::Dtls);
        assert_eq!(classify(&[]), PacketClass::Unknown);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = classify(&bytes);
            let _ = stun_local_ufrag(&bytes);
        }

        #[test]
        fn arbitrary_stun_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut m = vec![0x00, 0x01];
            m.extend_from_slice(&(body.len() as u16).to_be_bytes());
            m.extend_from_slice(&MAGIC_COOKIE);
            m.extend_from_slice(&[0; 12]);
            m.extend_from_slice(&body);
            let _ = stun_local_ufrag(&m);
        }
    }
}
