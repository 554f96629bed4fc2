//! convene's selective forwarding unit.
//!
//! Every conference is a room; each participant publishes its tracks once and
//! the SFU forwards their RTP to every subscriber without transcoding. The
//! forwarding core is sans-IO: it takes packets and the current time and
//! returns what to send, so it is tested with a virtual clock and no sockets.
#![forbid(unsafe_code)]
