//! The media socket: batched, non-blocking UDP with the local address of
//! every datagram.
//!
//! A worker owns one socket. Datagrams are read `recvmmsg` at a time and
//! written `sendmmsg` at a time (one system call per fan-out instead of one
//! per subscriber). With a wildcard bind the kernel would pick the source
//! address of a reply by routing, which is not always the address the client
//! sent to (a host with several addresses, or an announced address that is
//! not the default route); strict ICE stacks drop such replies. So every
//! datagram is read with its destination address (`IP_PKTINFO` /
//! `IPV6_RECVPKTINFO`) and replies name that address as their source.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::socket::{
    recvmmsg, sendmmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    MultiHeaders, SockaddrLike, SockaddrStorage,
};
use tracing::{info, warn};

/// Large enough for any datagram WebRTC peers send (MTU-sized).
pub const RECV_BUF_SIZE: usize = 2048;
/// Datagrams per `recvmmsg`.
pub const RECV_BATCH: usize = 32;
/// Datagrams per `sendmmsg` (the kernel caps one call at `UIO_MAXIOV`).
const SEND_BATCH: usize = 256;

/// Kernel buffer sizes asked for; the kernel may cap them (logged).
#[derive(Debug, Clone, Copy)]
pub struct BufferSizes {
    pub recv: usize,
    pub send: usize,
}

pub struct MediaSocket {
    socket: mio::net::UdpSocket,
    local: SocketAddr,
    /// Bound to a wildcard address: replies need an explicit source.
    wildcard: bool,
}

fn cmsg_space(local: SocketAddr) -> Vec<u8> {
    match local {
        SocketAddr::V4(_) => nix::cmsg_space!(libc::in_pktinfo),
        SocketAddr::V6(_) => nix::cmsg_space!(libc::in6_pktinfo),
    }
}

/// `sendmmsg` headers, kept between calls. (Raw pointers inside: made on
/// the thread that uses them.) Headers with a control buffer must carry a
/// control message, or the kernel rejects the empty one: so one set with,
/// one without.
pub struct SendHeaders {
    with_source: MultiHeaders<SockaddrStorage>,
    plain: MultiHeaders<SockaddrStorage>,
}

impl SendHeaders {
    pub fn new(socket: &MediaSocket) -> Self {
        Self {
            with_source: MultiHeaders::preallocate(SEND_BATCH, Some(cmsg_space(socket.local))),
            plain: MultiHeaders::preallocate(SEND_BATCH, None),
        }
    }
}

/// One received datagram's metadata; its bytes are in the batch's buffer.
#[derive(Debug, Clone, Copy)]
pub struct RecvMeta {
    pub len: usize,
    pub source: SocketAddr,
    /// The address the datagram was sent to, when the kernel told us.
    pub local_ip: Option<IpAddr>,
}

/// Reusable receive buffers and headers for one `recvmmsg`.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
    headers: MultiHeaders<SockaddrStorage>,
}

impl RecvBatch {
    pub fn new(socket: &MediaSocket) -> Self {
        Self {
            bufs: (0..RECV_BATCH).map(|_| vec![0; RECV_BUF_SIZE]).collect(),
            meta: Vec::with_capacity(RECV_BATCH),
            headers: MultiHeaders::preallocate(RECV_BATCH, Some(cmsg_space(socket.local))),
        }
    }

    pub fn len(&self) -> usize {
        self.meta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// The `i`th datagram of the last receive.
    pub fn get(&self, i: usize) -> (RecvMeta, &[u8]) {
        let m = self.meta[i];
        (m, &self.bufs[i][..m.len])
    }
}

/// One datagram waiting for the next `sendmmsg`.
pub struct Transmit {
    pub source: Option<IpAddr>,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
    /// When the datagram that caused this one was read, for the egress
    /// latency histogram; `None` for timer-driven output.
    pub caused_by: Option<Instant>,
}

/// What one flush did, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub datagrams: usize,
    pub bytes: usize,
    /// Dropped because the socket's send buffer was full or the kernel
    /// refused them.
    pub failed: usize,
}

impl MediaSocket {
    /// Bind non-blocking with the given buffer sizes and destination
    /// address reporting on.
    pub fn bind(addr: SocketAddr, sizes: BufferSizes) -> io::Result<Self> {
        let std = std::net::UdpSocket::bind(addr)?;
        std.set_nonblocking(true)?;
        let local = std.local_addr()?;
        let wildcard = local.ip().is_unspecified();
        match local {
            SocketAddr::V4(_) => setsockopt(&std, sockopt::Ipv4PacketInfo, &true),
            SocketAddr::V6(_) => setsockopt(&std, sockopt::Ipv6RecvPacketInfo, &true),
        }
        .map_err(io::Error::from)?;
        set_buffer(&std, sizes.recv, Direction::Recv);
        set_buffer(&std, sizes.send, Direction::Send);
        Ok(Self {
            socket: mio::net::UdpSocket::from_std(std),
            local,
            wildcard,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// For registering with a `mio::Poll`.
    pub fn source(&mut self) -> &mut mio::net::UdpSocket {
        &mut self.socket
    }

    /// Read up to [`RECV_BATCH`] datagrams without blocking. `Ok(0)` means
    /// nothing was waiting.
    pub fn recv(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        let RecvBatch {
            bufs,
            meta,
            headers,
        } = batch;
        meta.clear();
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
            .iter_mut()
            .map(|b| [IoSliceMut::new(&mut b[..])])
            .collect();
        let results = match recvmmsg(
            self.socket.as_raw_fd(),
            headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(r) => r,
            Err(Errno::EAGAIN) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        for r in results {
            let Some(source) = r.address.as_ref().and_then(to_std) else {
                // Not from an IP peer; keep the slot so indexes line up.
                meta.push(RecvMeta {
                    len: 0,
                    source: self.local,
                    local_ip: None,
                });
                continue;
            };
            let mut local_ip = None;
            if let Ok(cmsgs) = r.cmsgs() {
                for c in cmsgs {
                    match c {
                        ControlMessageOwned::Ipv4PacketInfo(p) => {
                            let ip = Ipv4Addr::from(u32::from_be(p.ipi_addr.s_addr));
                            local_ip = Some(IpAddr::V4(ip));
                        }
                        ControlMessageOwned::Ipv6PacketInfo(p) => {
                            local_ip = Some(IpAddr::from(p.ipi6_addr.s6_addr));
                        }
                        _ => {}
                    }
                }
            }
            meta.push(RecvMeta {
                len: r.bytes.min(RECV_BUF_SIZE),
                source,
                local_ip,
            });
        }
        Ok(meta.len())
    }

    /// Send every queued datagram, `sendmmsg` at a time, grouped by source
    /// address (one control message serves a whole call). Datagrams the
    /// kernel will not take now are dropped and counted: media that cannot
    /// leave now is worth nothing later.
    pub fn send(&self, headers: &mut SendHeaders, queue: &mut [Transmit]) -> Sent {
        let mut sent = Sent::default();
        if queue.is_empty() {
            return sent;
        }
        if !self.wildcard {
            // The bound address is the only possible source.
            for t in queue.iter_mut() {
                t.source = None;
            }
        }
        // Stable: datagrams to one destination keep their order.
        queue.sort_by_key(|t| t.source);
        let mut start = 0;
        while start < queue.len() {
            let source = queue[start].source;
            let mut end = start;
            while end < queue.len() && end - start < SEND_BATCH && queue[end].source == source {
                end += 1;
            }
            self.send_group(headers, &queue[start..end], source, &mut sent);
            start = end;
        }
        sent
    }

    fn send_group(
        &self,
        headers: &mut SendHeaders,
        group: &[Transmit],
        source: Option<IpAddr>,
        sent: &mut Sent,
    ) {
        let addrs: Vec<Option<SockaddrStorage>> = group
            .iter()
            .map(|t| Some(SockaddrStorage::from(t.destination)))
            .collect();
        let mut offset = 0;
        while offset < group.len() {
            let rest = &group[offset..];
            let iovs: Vec<[IoSlice<'_>; 1]> =
                rest.iter().map(|t| [IoSlice::new(&t.contents)]).collect();
            let v4 = match source {
                Some(IpAddr::V4(ip)) => Some(libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(ip).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                }),
                _ => None,
            };
            let v6 = match source {
                Some(IpAddr::V6(ip)) => Some(libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: 0,
                }),
                _ => None,
            };
            let mut cmsgs = Vec::with_capacity(1);
            if let Some(p) = &v4 {
                cmsgs.push(ControlMessage::Ipv4PacketInfo(p));
            }
            if let Some(p) = &v6 {
                cmsgs.push(ControlMessage::Ipv6PacketInfo(p));
            }
            let result = sendmmsg(
                self.socket.as_raw_fd(),
                if cmsgs.is_empty() {
                    &mut headers.plain
                } else {
                    &mut headers.with_source
                },
                &iovs,
                &addrs[offset..],
                &cmsgs,
                MsgFlags::MSG_DONTWAIT,
            );
            match result {
                Ok(results) => {
                    let mut n = 0;
                    for r in results {
                        sent.bytes += r.bytes;
                        n += 1;
                    }
                    if n == 0 {
                        // Nothing taken and no error: do not spin.
                        sent.failed += rest.len();
                        return;
                    }
                    sent.datagrams += n;
                    offset += n;
                }
                Err(Errno::EAGAIN) => {
                    sent.failed += rest.len();
                    return;
                }
                Err(_) => {
                    // One bad datagram (an unroutable destination, say)
                    // fails the call at its index; skip it, keep the rest.
                    sent.failed += 1;
                    offset += 1;
                }
            }
        }
    }
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    if let Some(v6) = a.as_sockaddr_in6() {
        return Some(SocketAddr::from((v6.ip(), v6.port())));
    }
    let _ = a.family();
    None
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Recv,
    Send,
}

/// Ask for `size` bytes of kernel buffer; as root (`CAP_NET_ADMIN`) past
/// `net.core.{r,w}mem_max`, otherwise up to it. Log what we got when the
/// kernel gave less.
fn set_buffer(socket: &std::net::UdpSocket, size: usize, dir: Direction) {
    if size == 0 {
        return;
    }
    let forced = match dir {
        Direction::Recv => setsockopt(socket, sockopt::RcvBufForce, &size),
        Direction::Send => setsockopt(socket, sockopt::SndBufForce, &size),
    };
    if forced.is_err() {
        let r = match dir {
            Direction::Recv => setsockopt(socket, sockopt::RcvBuf, &size),
            Direction::Send => setsockopt(socket, sockopt::SndBuf, &size),
        };
        if let Err(e) = r {
            warn!(?dir, size, "cannot set socket buffer: {e}");
        }
    }
    let got = match dir {
        Direction::Recv => nix::sys::socket::getsockopt(socket, sockopt::RcvBuf),
        Direction::Send => nix::sys::socket::getsockopt(socket, sockopt::SndBuf),
    };
    // Linux reports twice what it grants (bookkeeping overhead).
    match got {
        Ok(got) if got / 2 < size => warn!(
            ?dir,
            asked = size,
            granted = got / 2,
            "the kernel capped the media socket buffer (raise net.core.rmem_max / wmem_max)"
        ),
        Ok(got) => info!(?dir, granted = got / 2, "media socket buffer"),
        Err(e) => warn!(?dir, "cannot read socket buffer size: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn sizes() -> BufferSizes {
        BufferSizes {
            recv: 1 << 20,
            send: 1 << 20,
        }
    }

    /// Poll `recv` until something arrives or the deadline passes.
    fn recv_some(s: &MediaSocket, b: &mut RecvBatch, want: usize) -> Vec<(RecvMeta, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < want && Instant::now() < deadline {
            let n = s.recv(b).unwrap();
            for i in 0..n {
                let (m, d) = b.get(i);
                got.push((m, d.to_vec()));
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        got
    }

    #[test]
    fn wildcard_socket_reports_destination_and_replies_from_it() {
        let s = MediaSocket::bind((Ipv4Addr::UNSPECIFIED, 0).into(), sizes()).unwrap();
        let port = s.local_addr().port();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let announced: SocketAddr = (Ipv4Addr::new(127, 0, 0, 3), port).into();
        client.send_to(b"hello", announced).unwrap();
        let mut batch = RecvBatch::new(&s);
        let got = recv_some(&s, &mut batch, 1);
        assert_eq!(got.len(), 1);
        let (meta, data) = &got[0];
        assert_eq!(data, b"hello");
        assert_eq!(meta.source, client.local_addr().unwrap());
        assert_eq!(meta.local_ip, Some(announced.ip()));

        let mut queue = vec![Transmit {
            source: meta.local_ip,
            destination: meta.source,
            contents: b"reply".to_vec(),
            caused_by: None,
        }];
        let sent = s.send(&mut SendHeaders::new(&s), &mut queue);
        assert_eq!(sent.datagrams, 1);
        let mut buf = [0u8; 64];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"reply");
        // Without the explicit source the kernel answers from 127.0.0.1.
        assert_eq!(from, announced);
    }

    #[test]
    fn one_flush_sends_a_whole_fan_out_in_order() {
        let s = MediaSocket::bind((Ipv4Addr::LOCALHOST, 0).into(), sizes()).unwrap();
        let sinks: Vec<UdpSocket> = (0..5)
            .map(|_| {
                let u = UdpSocket::bind("127.0.0.1:0").unwrap();
                u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                u
            })
            .collect();
        let mut queue = Vec::new();
        for round in 0..100u16 {
            for sink in &sinks {
                queue.push(Transmit {
                    source: None,
                    destination: sink.local_addr().unwrap(),
                    contents: round.to_be_bytes().to_vec(),
                    caused_by: None,
                });
            }
        }
        let sent = s.send(&mut SendHeaders::new(&s), &mut queue);
        assert_eq!(sent.datagrams, 500);
        assert_eq!(sent.failed, 0);
        for sink in &sinks {
            let mut buf = [0u8; 8];
            for round in 0..100u16 {
                let (n, _) = sink.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], round.to_be_bytes());
            }
        }
    }

    #[test]
    fn reads_a_burst_in_batches() {
        let s = MediaSocket::bind((Ipv4Addr::LOCALHOST, 0).into(), sizes()).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..100u8 {
            client.send_to(&[i; 10], s.local_addr()).unwrap();
        }
        let mut batch = RecvBatch::new(&s);
        let got = recv_some(&s, &mut batch, 100);
        assert_eq!(got.len(), 100);
        for (i, (m, d)) in got.iter().enumerate() {
            assert_eq!(m.len, 10);
            assert_eq!(d[0], i as u8);
        }
        assert_eq!(s.recv(&mut batch).unwrap(), 0);
    }
}
