//! Wire types shared by every convene service.
//!
//! Everything that crosses a process or crate boundary lives here so that the
//! control plane, the signaling service and the SFU agree on one definition:
//! control-plane REST bodies ([`control`]), events the control plane publishes
//! for the signaling service ([`events`]), the bodies of the control plane's
//! internal API ([`internal`]), the SFU's control API ([`sfu`]), WebSocket
//! signaling messages ([`signaling`]) and ICE server descriptions ([`ice`]), and how services present and check
//! their shared secrets ([`secret`]). The JSON shapes are documented in `docs/protocol.md`.
//!
//! Depends on no other convene crate, and every other crate may use it.
#![forbid(unsafe_code)]

pub mod collab;
pub mod control;
pub mod events;
pub mod ice;
pub mod internal;
pub mod secret;
pub mod sfu;
pub mod signaling;
