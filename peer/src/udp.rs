//! Batched non-blocking UDP for one client socket: `recvmmsg` and
//! `sendmmsg` through `nix` (as the SFU's media socket does), so a burst
//! costs one system call instead of one per datagram.
//!
//! `nix`'s message headers hold raw pointers and so are not `Send`; they
//! are made for each call, which lets a peer live in a Tokio task.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};

/// Large enough for any datagram WebRTC peers send (MTU-sized).
pub const RECV_BUF_SIZE: usize = 2048;
/// Datagrams per `recvmmsg`.
pub const RECV_BATCH: usize = 32;
/// Datagrams per `sendmmsg` (the kernel caps one call at `UIO_MAXIOV`).
pub const SEND_BATCH: usize = 256;

/// Reusable buffers for one `recvmmsg`.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    /// Length and source of each datagram of the last read.
    meta: Vec<(usize, Option<SocketAddr>)>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            bufs: (0..RECV_BATCH).map(|_| vec![0; RECV_BUF_SIZE]).collect(),
            meta: Vec::with_capacity(RECV_BATCH),
        }
    }
}

impl RecvBatch {
    /// Read up to [`RECV_BATCH`] datagrams; `WouldBlock` when none waits
    /// (an async runtime clears its readiness on that).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.meta.clear();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(RECV_BATCH, None);
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
            .bufs
            .iter_mut()
            .map(|b| [IoSliceMut::new(&mut b[..])])
            .collect();
        let results = recvmmsg(
            fd,
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        for r in results {
            let source = r.address.as_ref().and_then(to_std);
            self.meta.push((r.bytes.min(RECV_BUF_SIZE), source));
        }
        Ok(self.meta.len())
    }

    /// The `i`th datagram of the last read and its source (`None`: not
    /// from an IP peer).
    pub fn get(&self, i: usize) -> (Option<SocketAddr>, &[u8]) {
        let (len, source) = self.meta[i];
        (source, &self.bufs[i][..len])
    }
}

/// Datagrams waiting for the next [`SendQueue::flush`].
#[derive(Default)]
pub struct SendQueue {
    queue: Vec<(SocketAddr, Vec<u8>)>,
}

impl SendQueue {
    pub fn push(&mut self, destination: SocketAddr, contents: Vec<u8>) {
        self.queue.push((destination, contents));
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Send everything queued, `sendmmsg` at a time; returns how many
    /// datagrams the kernel took. What it will not take now (a full send
    /// buffer) is dropped, as a plain non-blocking `send_to` would: late
    /// media is worth nothing.
    pub fn flush(&mut self, fd: RawFd) -> usize {
        let mut taken = 0;
        let mut offset = 0;
        while offset < self.queue.len() {
            let rest = &self.queue[offset..self.queue.len().min(offset + SEND_BATCH)];
            let addrs: Vec<Option<SockaddrStorage>> = rest
                .iter()
                .map(|(d, _)| Some(SockaddrStorage::from(*d)))
                .collect();
            let iovs: Vec<[IoSlice<'_>; 1]> = rest.iter().map(|(_, c)| [IoSlice::new(c)]).collect();
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(rest.len(), None);
            match sendmmsg(fd, &mut headers, &iovs, &addrs, [], MsgFlags::MSG_DONTWAIT) {
                Ok(results) => {
                    let n = results.count();
                    if n == 0 {
                        break;
                    }
                    taken += n;
                    offset += n;
                }
                Err(Errno::EAGAIN) => break,
                // One bad datagram fails the call at its index: skip it.
                Err(_) => offset += 1,
            }
        }
        self.queue.clear();
        taken
    }
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    #[test]
    fn a_burst_goes_out_in_one_flush_and_comes_in_batches() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        let mut q = SendQueue::default();
        for i in 0..100u8 {
            q.push(b.local_addr().unwrap(), vec![i; 10]);
        }
        assert_eq!(q.flush(a.as_raw_fd()), 100);
        assert!(q.is_empty());

        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 100 && Instant::now() < deadline {
            match batch.recv(b.as_raw_fd()) {
                Ok(n) => {
                    assert!(n <= RECV_BATCH);
                    for i in 0..n {
                        let (source, d) = batch.get(i);
                        assert_eq!(source, Some(a.local_addr().unwrap()));
                        got.push(d.to_vec());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(got.len(), 100);
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d, &vec![i as u8; 10]);
        }
        let e = batch.recv(b.as_raw_fd()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
