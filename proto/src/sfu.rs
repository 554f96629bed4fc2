//! The SFU control API used by the signaling service: requests, responses and events.
