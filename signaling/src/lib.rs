//! convene's signaling service: the WebSocket endpoint browsers talk to,
//! bridging them to the control plane (tokens, waiting hall) and the SFU.
#![forbid(unsafe_code)]
