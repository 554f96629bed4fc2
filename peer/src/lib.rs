//! A str0m WebRTC client peer in RTP mode on one non-blocking UDP socket:
//! the network loop that convene's load generator (`convene-load`) and the
//! SFU's str0m end-to-end tests share.
//!
//! [`Peer`] keeps str0m's contract: every input (a datagram, a timeout) is
//! followed by polling `poll_output` until str0m names its next timeout.
//! What str0m transmits is queued and leaves in one `sendmmsg`; datagrams
//! are read `recvmmsg` at a time ([`udp`]). What to do with events, and
//! whether a datagram goes out or comes in at all (tests inject loss, the
//! load generator never sends off loopback), is the [`Handler`]'s.
//!
//! The socket is either a `std` one (blocking test loops that poll) or a
//! Tokio one (the load generator awaits readability, and reads through
//! `try_io` so Tokio's readiness stays right).

pub mod udp;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig, RtcError};
use tracing::debug;

use crate::udp::{RecvBatch, SendQueue};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    #[error("WebRTC: {0}")]
    Rtc(#[from] RtcError),
}

/// What a peer does with str0m's output and the datagrams it moves.
pub trait Handler {
    fn event(&mut self, event: Event);

    /// Whether `t` goes out; false drops it.
    fn send(&mut self, _t: &Transmit) -> bool {
        true
    }

    /// Whether a datagram read from `source` is handed to str0m; false
    /// drops it.
    fn receive(&mut self, _source: SocketAddr, _datagram: &[u8]) -> bool {
        true
    }
}

/// A non-blocking UDP socket a [`Peer`] reads and writes.
pub trait Socket: AsRawFd {
    fn local(&self) -> io::Result<SocketAddr>;

    /// Runs one non-blocking read. An async runtime that tracks readiness
    /// must see its `WouldBlock`.
    fn read_with<R>(&self, read: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        read()
    }
}

impl Socket for UdpSocket {
    fn local(&self) -> io::Result<SocketAddr> {
        self.local_addr()
    }
}

impl Socket for tokio::net::UdpSocket {
    fn local(&self) -> io::Result<SocketAddr> {
        self.local_addr()
    }

    fn read_with<R>(&self, read: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.try_io(tokio::io::Interest::READABLE, read)
    }
}

/// An `Rtc` from `config` in RTP mode with `local` as its host candidate.
pub fn rtp_mode_rtc(config: RtcConfig, local: SocketAddr) -> io::Result<Rtc> {
    let mut rtc = config.set_rtp_mode(true).build(Instant::now());
    let candidate = Candidate::host(local, "udp").map_err(io::Error::other)?;
    rtc.add_local_candidate(candidate);
    Ok(rtc)
}

/// An `Rtc` and the socket it talks through.
pub struct Peer<S> {
    pub rtc: Rtc,
    socket: S,
    local: SocketAddr,
    recv: RecvBatch,
    queue: SendQueue,
}

impl Peer<UdpSocket> {
    /// A peer on a fresh non-blocking socket on 127.0.0.1, its `Rtc` made
    /// from `config` (see [`rtp_mode_rtc`]).
    pub fn loopback(config: RtcConfig) -> io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_nonblocking(true)?;
        let rtc = rtp_mode_rtc(config, socket.local_addr()?)?;
        Self::new(socket, rtc)
    }
}

impl<S: Socket> Peer<S> {
    /// `socket` must be non-blocking; `rtc` should know its address as a
    /// candidate (see [`rtp_mode_rtc`]).
    pub fn new(socket: S, rtc: Rtc) -> io::Result<Self> {
        let local = socket.local()?;
        Ok(Self {
            rtc,
            socket,
            local,
            recv: RecvBatch::default(),
            queue: SendQueue::default(),
        })
    }

    pub fn socket(&self) -> &S {
        &self.socket
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Poll str0m until it wants a timeout, send what it transmitted in
    /// one batch, and return when the timeout is due.
    pub fn drain(&mut self, h: &mut impl Handler) -> Result<Instant, RtcError> {
        let r = self.poll(h);
        self.flush();
        r
    }

    /// Feed str0m the time, then [`Self::drain`].
    pub fn tick(&mut self, now: Instant, h: &mut impl Handler) -> Result<Instant, RtcError> {
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            self.flush();
            return Err(e);
        }
        self.drain(h)
    }

    /// Read every waiting datagram, a batch at a time, polling str0m after
    /// each; the answers go out in one batch per read. Returns how many
    /// datagrams were read. A datagram str0m rejects is skipped.
    pub fn receive(&mut self, h: &mut impl Handler) -> Result<usize, Error> {
        let mut total = 0;
        loop {
            let fd: RawFd = self.socket.as_raw_fd();
            let recv = &mut self.recv;
            let n = match self.socket.read_with(|| recv.recv(fd)) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
                Err(e) => {
                    self.flush();
                    return Err(e.into());
                }
            };
            total += n;
            let now = Instant::now();
            for i in 0..n {
                let (source, datagram) = self.recv.get(i);
                let Some(source) = source else { continue };
                if !h.receive(source, datagram) {
                    continue;
                }
                let Ok(contents) = datagram.try_into() else {
                    continue;
                };
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: self.local,
                        contents,
                    },
                );
                if let Err(e) = self.rtc.handle_input(input) {
                    debug!(from = %source, "str0m input: {e}");
                    continue;
                }
                if let Err(e) = self.poll(h) {
                    self.flush();
                    return Err(e.into());
                }
            }
            self.flush();
        }
    }

    /// [`Self::receive`], then [`Self::tick`] now: one round of a polling
    /// loop. Returns str0m's next timeout.
    pub fn pump(&mut self, h: &mut impl Handler) -> Result<Instant, Error> {
        self.receive(h)?;
        Ok(self.tick(Instant::now(), h)?)
    }

    fn poll(&mut self, h: &mut impl Handler) -> Result<Instant, RtcError> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    if h.send(&t) {
                        self.queue.push(t.destination, t.contents.into());
                    }
                }
                Output::Event(e) => h.event(e),
            }
        }
    }

    fn flush(&mut self) {
        if !self.queue.is_empty() {
            self.queue.flush(self.socket.as_raw_fd());
        }
    }
}
