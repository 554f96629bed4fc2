//! One conference on this node: its participants, waiters, tracks and chat
//! order.
//!
//! The room is a state machine ([`state::RoomState`]): inputs (client
//! messages, connection events, SFU and hall events, bus frames, timeouts,
//! port results) and the time go in, effects come out. Every change to a
//! conference goes through it one input at a time, so messages reach
//! clients in one order (chat `seq` is that order) without locks. The
//! actor ([`actor`]) is its I/O shell: it feeds the inputs, sends to
//! sockets, publishes frames and runs port calls beside the room, whose
//! results come back as inputs, so one slow round trip to the SFU or the
//! control plane holds only what waits for it.

mod actor;
mod cluster;
mod effects;
mod error;
mod hall;
mod lanes;
mod media;
mod moderation;
mod state;
#[cfg(test)]
mod tests;

pub(crate) use actor::{RoomActor, RoomCmd, RoomHandle};
