//! The sans-IO forwarding core.
//!
//! Nothing here touches a socket, a thread or the clock: callers pass the
//! current `Instant` in and get back [`Action`]s (packets to write to which
//! participant, keyframe requests, events). That keeps the forwarding logic
//! deterministic and testable with a virtual clock.

pub mod allocator;
pub mod codec;
pub mod forwarder;
pub mod layer;
pub mod munger;
pub mod participant;
pub mod pli;
pub mod red;
pub mod room;
pub mod rtx;
pub mod speaker;
pub mod subscription;
pub mod track;

pub use allocator::{allocate, Allocation, Priority, VideoDemand};
pub use codec::Codec;
pub use forwarder::{Forwarded, Forwarder, LayerPacket};
pub use layer::{Decision, LayerInfo, LayerSelector};
pub use munger::{Munged, RtpMunger};
pub use participant::Participant;
pub use pli::PliThrottle;
pub use room::{Action, CoreConfig, CoreError, DropReason, Forward, InboundRtp, Room};
pub use rtx::RtxCachePolicy;
pub use speaker::SpeakerDetector;
pub use subscription::Subscription;
pub use track::PublishedTrack;

/// A participant inside the SFU. Strings (participant ids) stay at the API
/// edge; the hot path hashes and compares plain integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantKey(pub u64);

/// A published track inside the SFU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackKey(pub u64);
